// The SDEI and SMC round trips of benchmarks/sdei_vs_tfa.py (issue 18 item 4): one source, built
// with -DCONDUIT_SMC for the lab's `firmware` profile and, linked at 0x6000_0000, as TF-A's BL33.
//
//   SDEI_COUNT times: EVENT_SIGNAL(0, this PE) -> handler -> EVENT_COMPLETE(HANDLED), each followed
//                     by a wait until the handler has counted it
//   SMC_COUNT times:  PSCI_VERSION
//
// Each loop is bracketed by CNTVCT_EL0 reads (after an ISB, so the read is not taken early: Arm ARM,
// CNTVCT_EL0). On QEMU without -icount the counter follows the host's clock, so the
// ticks are real time; on the lab the counter is virtual, and the benchmark times run() instead.
// The lines that do not hold ticks are the same on both sides (the benchmark checks them).
// Both counts are set with -D (0 allowed).
#include "guest.h"

// The function IDs (SDEI_*, PSCI_VERSION) are guest.h's.

    .global main, bench_handler
    .text
main:
    stp x29, x30, [sp, #-16]!
    mov x29, sp
    adr_l x23, handled              // x23: the handler's count (memory: the handler may not touch x18-x30)
    str xzr, [x23]
    // EVENT_REGISTER(event 0, bench_handler, arg 0, flags RM_ANY, affinity 0): DEN0054 5.1.2;
    // event 0 is private (DEN0054 5.1.16 EVENT_SIGNAL), so the routing arguments are ignored.
    ldr x0, =SDEI_EVENT_REGISTER
    mov x1, #0
    adr_l x2, bench_handler
    mov x3, #0
    mov x4, #0
    mov x5, #0
    smccc_conduit
    mov x24, #1                     // x24: the failing step, for the FAIL line
    cbnz x0, fail
    ldr x0, =SDEI_EVENT_ENABLE      // DEN0054 5.1.3
    mov x1, #0
    smccc_conduit
    mov x24, #2
    cbnz x0, fail
    ldr x0, =SDEI_PE_UNMASK         // DEN0054 5.1.13
    smccc_conduit
    mov x24, #3
    cbnz x0, fail
    // EVENT_SIGNAL's target (DEN0054 5.1.16) is this PE's affinity fields Aff3..Aff0 of MPIDR_EL1.
    mrs x26, mpidr_el1
    ldr x1, =0xff00ffffff
    and x26, x26, x1

    mov x21, #0                     // x21: events signalled
    ldr x19, =SDEI_COUNT
    isb
    mrs x27, cntvct_el0
    cbz x19, 2f
1:  ldr x0, =SDEI_EVENT_SIGNAL
    mov x1, #0
    mov x2, x26
    smccc_conduit                   // the handler runs once the call returns (the PE is unmasked)
    mov x24, #4
    cbnz x0, fail
    add x21, x21, #1
3:  ldr x2, [x23]                   // wait for the handler, should its entry lag (it does not on
    cmp x2, x21                     // either side: then this is one load and compare)
    b.ne 3b
    subs x19, x19, #1
    b.ne 1b
2:  isb
    mrs x28, cntvct_el0
    sub x28, x28, x27               // x28: SDEI loop ticks

    ldr x19, =SMC_COUNT
    mov x25, #0                     // x25: PSCI_VERSION's answer (the same every time)
    isb
    mrs x27, cntvct_el0
    cbz x19, 5f
4:  ldr x0, =PSCI_VERSION         // DEN0022D 5.1.1
    smccc_conduit
    mov x25, x0
    subs x19, x19, #1
    b.ne 4b
5:  isb
    mrs x22, cntvct_el0
    sub x22, x22, x27               // x22: SMC loop ticks

    print "sdei round trips: "
    mov x0, x21
    bl put_udec
    print " signalled, "
    ldr x0, [x23]
    bl put_udec
    print " handled\nsdei ticks: "
    mov x0, x28
    bl put_udec
    print "\nsmc PSCI_VERSION: "
    ldr x0, =SMC_COUNT
    bl put_udec
    print " calls, version "
    mov x0, x25
    bl put_hex
    print "\nsmc ticks: "
    mov x0, x22
    bl put_udec
    print "\ncntfrq: "
    mrs x0, cntfrq_el0
    bl put_udec
    print "\nbench: PASS\n"
    mov x0, #0
    ldp x29, x30, [sp], #16
    ret                             // start.S powers off (DEN0022D 5.1.9 SYSTEM_OFF)

fail:
    mov x25, x0
    print "bench: FAIL at step "
    mov x0, x24
    bl put_udec
    print ": x0 = "
    mov x0, x25
    bl put_hex
    print "\n"
    mov x0, #1
    ldp x29, x30, [sp], #16
    ret

// The handler (DEN0054 5.1.2: entered with x0 = event, x1 = its argument). It counts the event in
// memory and completes it: EVENT_COMPLETE (DEN0054 5.1.6) resumes the interrupted context
// with x0..x17 restored, so only those are used here.
    .balign 4
bench_handler:
    adr_l x1, handled
    ldr x2, [x1]
    add x2, x2, #1
    str x2, [x1]
    ldr x0, =SDEI_EVENT_COMPLETE
    mov x1, #0                      // SDEI_EV_HANDLED
    smccc_conduit
    b .                             // COMPLETE does not return

    .data
    .balign 8
handled:
    .quad 0
