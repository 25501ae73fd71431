/*
 * smp_boot.S - bring up every CPU with PSCI CPU_ON, one at a time.
 *
 * CPU 0 starts CPU 1, 2, ... with CPU_ON(target, secondary_entry, context_id = 0x1000 + n)
 * (DEN0022, CPU_ON).  Each secondary prints its MPIDR_EL1 and the context ID it received in
 * x0 (DEN0022, CPU_ON: the new CPU gets context_id in x0), raises a flag in memory, and
 * switches itself off with CPU_OFF.  CPU 0 waits for the flag, THEN polls AFFINITY_INFO
 * until the CPU reads OFF, and only then starts the next one, so the output never
 * interleaves and does not depend on timing.
 *
 * Why the flag first: right after a successful CPU_ON the spec says AFFINITY_INFO answers
 * ON_PENDING (2) or ON (0), but QEMU 7.2 starts the CPU asynchronously and may still answer
 * OFF (1) (guests/QEMU-DEVIATIONS.md), so polling for OFF straight away could end too early.
 *
 * The number of CPUs is discovered, not configured: CPU_ON for the next MPIDR answers
 * INVALID_PARAMETERS (-2) when no such CPU exists.  Works for -smp 1..8.
 */
#include "guest.h"

    .text
    .globl main
    .type main, %function
main:
    stp x29, x30, [sp, #-48]!
    mov x29, sp
    stp x19, x20, [sp, #16]
    stp x21, x22, [sp, #32]

    print "smp_boot: CPU 0 is up, MPIDR_EL1="
    mrs x0, mpidr_el1
    bl put_hex
    print "\n"

    mov x19, #1                     /* x19 = index of the next CPU to start */
next_cpu:
    cmp x19, #MAX_CPUS
    b.hs max_reached

    /* secondary_entry will call secondary_main on that CPU (start.S reads the slot with LDAR). */
    adr_l x0, secondary_fn
    adr_l x1, secondary_main
    add x0, x0, x19, lsl #3
    stlr x1, [x0]
    adr_l x0, cpu_up                /* lower the flag before the CPU exists */
    stlr xzr, [x0]

    mov x0, x19
    bl cpu_mpidr                    /* Aff1 = n / 8, Aff0 = n % 8; bit 31 must be 0 for PSCI */
    mov x20, x0                     /* x20 = target affinity */

    /* Announce the call first: nothing else is running yet, so nothing can interleave. */
    print "CPU_ON("
    mov x0, x20
    bl put_hex
    print ", secondary_entry, "
    add x0, x19, #0x1000
    bl put_hex
    print ")\n"

    mov x1, x20                     /* target_cpu */
    adr_l x2, secondary_entry       /* entry_point_address */
    add x3, x19, #0x1000            /* context_id */
    smccc PSCI_CPU_ON64
    mov x21, x0
    cmp x21, #PSCI_RET_INVALID_PARAMETERS
    b.eq no_such_cpu
    cbnz x21, cpu_on_failed

    /* 1. wait for the secondary's flag (load-acquire pairs with its store-release);
     *    the secondary prints meanwhile, so CPU 0 prints only after the flag */
1:  adr_l x0, cpu_up
    ldar x0, [x0]
    cbz x0, 1b

    /* 2. then wait until PSCI reports it OFF: CPU_OFF completes asynchronously */
2:  mov x1, x20                     /* target_affinity */
    mov x2, #0                      /* lowest_affinity_level 0: this one CPU */
    smccc PSCI_AFFINITY_INFO64
    cmp x0, #PSCI_AFF_OFF
    b.ne 2b

    print "  = 0 (SUCCESS); CPU "
    mov x0, x19
    bl put_dec
    print " came up, and AFFINITY_INFO now says OFF\n"
    add x19, x19, #1
    b next_cpu

cpu_on_failed:
    print "  = "
    mov x0, x21
    bl put_dec
    print " (unexpected)\n"
    b summary
no_such_cpu:
    print "  = -2 (INVALID_PARAMETERS): no such CPU\n"
    b summary
max_reached:
    print "no CPU_ON beyond the guest library's MAX_CPUS (8)\n"

summary:
    print "smp_boot: "
    mov x0, x19                     /* CPUs seen = CPU 0 + the secondaries started */
    bl put_dec
    print " CPU(s): CPU 0 and "
    sub x0, x19, #1
    bl put_dec
    print " secondary CPU(s), each started, reported and switched off\n"
    bl psci_system_off
    .size main, . - main

/*
 * secondary_main(context_id): runs on the new CPU, on its own stack (start.S).
 */
    .type secondary_main, %function
secondary_main:
    mov x19, x0                     /* context_id from CPU_ON, via secondary_entry */
    print "  CPU "
    bl cpu_index
    bl put_dec
    print " up: MPIDR_EL1="
    mrs x0, mpidr_el1
    bl put_hex
    print " context_id="
    mov x0, x19
    bl put_hex
    print "\n"
    /* Raise the flag only after the last byte is out, so CPU 0 prints after us. */
    adr_l x0, cpu_up
    mov x1, #1
    stlr x1, [x0]
    smccc PSCI_CPU_OFF              /* does not return on success (DEN0022, CPU_OFF) */
    print "  CPU_OFF failed\n"
    bl psci_system_off
    .size secondary_main, . - secondary_main

    .bss
    .balign 8
cpu_up:
    .skip 8
