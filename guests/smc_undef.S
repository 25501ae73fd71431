/*
 * smc_undef.S - SMC at EL1 on a platform without EL3 is UNDEFINED.
 *
 * On the default `virt` platform (and QEMU -M virt without secure=on) there is no EL3, so
 * SMC is UNDEFINED (Arm ARM, A64 instruction "SMC": UNDEFINED if EL3 is not implemented)
 * and is taken as a synchronous exception to EL1 with ESR_EL1.EC = 0 "Unknown reason",
 * IL = 1, ISS = 0, i.e. ESR_EL1 = 0x02000000, and ELR_EL1 = the address of the SMC
 * itself (for an exception taken because an instruction is UNDEFINED the preferred
 * return address is that instruction's own: Arm ARM, "Preferred exception return
 * address").  No firmware sees the call: x0 keeps the function ID.
 *
 * The guest's handle_sync (overriding the library's weak default) checks both, moves
 * ELR_EL1 past the SMC and returns; execution carries on.  Then the same call through the
 * platform's real conduit, HVC #0, works.
 *
 * Build WITHOUT -DCONDUIT_SMC.  The SMC is spelled as its encoding: LLVM only accepts the
 * `smc` mnemonic for CPUs it models with EL3.
 */
#include "guest.h"

    .text
    .globl main
    .type main, %function
main:
    stp x29, x30, [sp, #-32]!
    mov x29, sp
    str x19, [sp, #16]

    print "smc_undef: executing SMC #0 at EL1 (no EL3)\n"
    ldr x0, =PSCI_VERSION
    .globl smc_insn
smc_insn:
    .inst 0xd4000003                /* smc #0 */
    mov x19, x0
    print "smc_undef: resumed after the SMC, x0="
    mov x0, x19
    bl put_hex
    print " (the function ID, unchanged: no firmware saw the call)\n"

    print "smc_undef: HVC #0 PSCI_VERSION = "
    smccc PSCI_VERSION
    bl put_hex
    print "\n"
    bl psci_system_off
    .size main, . - main

/*
 * handle_sync(esr = x0, elr = x1, far = x2), called by vectors.S with x0-x30 saved.
 */
    .globl handle_sync
    .type handle_sync, %function
handle_sync:
    stp x29, x30, [sp, #-32]!
    mov x29, sp
    stp x19, x20, [sp, #16]
    mov x19, x0
    mov x20, x1

    print "  synchronous exception: ESR_EL1="
    mov x0, x19
    bl put_hex64
    print " EC="
    ubfx x0, x19, #ESR_EC_SHIFT, #6
    bl put_hex
    print " IL="
    ubfx x0, x19, #25, #1
    bl put_dec
    print "\n  ELR_EL1 is the address of the SMC: "
    adr_l x0, smc_insn
    cmp x20, x0
    b.ne not_ours
    print "yes\n"
    lsr x0, x19, #ESR_EC_SHIFT
    cmp x0, #ESR_EC_UNKNOWN
    b.ne unexpected

    /* Skip the 4-byte SMC: ERET goes to ELR_EL1 (vectors.S does not save or restore it). */
    add x20, x20, #4
    msr elr_el1, x20
    ldp x19, x20, [sp, #16]
    ldp x29, x30, [sp], #32
    ret

not_ours:
    print "no\n"
unexpected:
    print "FAULT elr="
    mov x0, x20
    bl put_hex64
    print "\n"
    bl psci_system_off
    .size handle_sync, . - handle_sync
