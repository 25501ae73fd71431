/*
 * sdei_entry.S - SDEI handler entry stubs (a port of TFTF's sdei_entrypoint.S) and a probe
 * that records the exact register state around a dispatch.
 *
 * What a handler may clobber (reference section 2.4): the dispatcher saves x0..x17, the
 * interrupted PC and PSTATE, and restores them at COMPLETE (x0..x17 also at
 * COMPLETE_AND_RESUME).  Everything else - x18..x30, SP_EL1, ELR_EL1, SPSR_EL1 - is the
 * client's to preserve.  The handler is entered at EL1h on SP_EL1 (the interrupted SP: the
 * guests run at EL1h, and AAPCS64 has no red zone below SP), so each stub keeps x18
 * (a temporary register for clang on this target), x29 and x30 on that stack; the C code it
 * calls keeps x19..x28.  COMPLETE and COMPLETE_AND_RESUME do not return: if one does, it
 * failed, and sdei_complete_returned(ret, fid) ends the run with a FAIL verdict.
 */
#include "sdei.h"

/* sdei_finish fid: issue COMPLETE or COMPLETE_AND_RESUME (x1 already set). Neither returns; if
 * one does, the dispatcher refused it: sdei_complete_returned(x0 = its error, x1 = fid). */
.macro sdei_finish fid
    ldr x0, =\fid
    smccc_conduit
    ldr x1, =\fid
    b sdei_complete_returned
.endm

/* mark_handled n1, n2: sdei_event_handled[cpu] = 1 with store-release, then SEV (TFTF does
 * the same for its WFE loop).  Clobbers x<n1>, x<n2>. */
.macro mark_handled n1, n2
    cpu_index x\n1, x\n2
    adr_l x\n2, sdei_event_handled
    add x\n2, x\n2, x\n1, lsl #2
    mov w\n1, #1
    stlr w\n1, [x\n2]
    sev
.endm

/* probe_base dst, tmp, table: dst = &table[cpu] (struct sdei_probe_regs, PROBE_SIZE bytes).
 * Uses only AND/UBFX/ADD/MUL/ADRP: none of them writes NZCV. */
.macro probe_base dst, tmp, table
    mrs \dst, mpidr_el1
    ubfx \tmp, \dst, #8, #8
    and \dst, \dst, #0xff
    add \dst, \dst, \tmp, lsl #3
    mov \tmp, #PROBE_SIZE
    mul \dst, \dst, \tmp
    adr_l \tmp, \table
    add \dst, \dst, \tmp
.endm

/* probe_record base, sp_adjust: store x0..x17 and the PSTATE/system register view at \base
 * (which must not be one of x0..x17).  Clobbers x0 after storing it. */
.macro probe_record base, sp_adjust
    stp x0, x1, [\base, #0 * 16]
    stp x2, x3, [\base, #1 * 16]
    stp x4, x5, [\base, #2 * 16]
    stp x6, x7, [\base, #3 * 16]
    stp x8, x9, [\base, #4 * 16]
    stp x10, x11, [\base, #5 * 16]
    stp x12, x13, [\base, #6 * 16]
    stp x14, x15, [\base, #7 * 16]
    stp x16, x17, [\base, #8 * 16]
    mrs x0, nzcv
    str x0, [\base, #PROBE_NZCV]
    mrs x0, daif
    str x0, [\base, #PROBE_DAIF]
    mrs x0, spsel
    str x0, [\base, #PROBE_SPSEL]
    mrs x0, currentel
    str x0, [\base, #PROBE_CURRENTEL]
    mrs x0, elr_el1
    str x0, [\base, #PROBE_ELR]
    mrs x0, spsr_el1
    str x0, [\base, #PROBE_SPSR]
    add x0, sp, #\sp_adjust
    str x0, [\base, #PROBE_SP]
    mov x0, #1
    str x0, [\base, #PROBE_VALID]
.endm

    .text

/* sdei_entrypoint: sdei_event_handler(ev, arg, pc, pstate), then COMPLETE(HANDLED). */
    .globl sdei_entrypoint
    .type sdei_entrypoint, %function
    .balign 4
sdei_entrypoint:
    stp x29, x30, [sp, #-32]!
    str x18, [sp, #16]
    mov x29, sp
    bl sdei_event_handler
    ldr x18, [sp, #16]
    ldp x29, x30, [sp], #32
    mov x1, #SDEI_EV_HANDLED
    sdei_finish SDEI_EVENT_COMPLETE
    .size sdei_entrypoint, . - sdei_entrypoint

/* sdei_entrypoint_resume: sdei_event_handler(...), mark handled, COMPLETE_AND_RESUME(x2):
 * execution goes on at the interrupted PC with DAIF masked, ELR_EL1/SPSR_EL1 = the interrupted
 * PC/PSTATE, as TFTF's stub does. */
    .globl sdei_entrypoint_resume
    .type sdei_entrypoint_resume, %function
    .balign 4
sdei_entrypoint_resume:
    stp x2, x30, [sp, #-32]!
    stp x18, x29, [sp, #16]
    add x29, sp, #16
    bl sdei_event_handler
    mark_handled 0, 1
    ldp x18, x29, [sp, #16]
    ldp x1, x30, [sp], #32
    sdei_finish SDEI_EVENT_COMPLETE_AND_RESUME
    .size sdei_entrypoint_resume, . - sdei_entrypoint_resume

/* sdei_state_entrypoint: ((sdei_state_fn)x1)(ev, arg), mark handled, COMPLETE(HANDLED). */
    .globl sdei_state_entrypoint
    .type sdei_state_entrypoint, %function
    .balign 4
sdei_state_entrypoint:
    stp x29, x30, [sp, #-32]!
    str x18, [sp, #16]
    mov x29, sp
    blr x1
    mark_handled 0, 1
    ldr x18, [sp, #16]
    ldp x29, x30, [sp], #32
    mov x1, #SDEI_EV_HANDLED
    sdei_finish SDEI_EVENT_COMPLETE
    .size sdei_state_entrypoint, . - sdei_state_entrypoint

/* sdei_probe_entrypoint: record the entry state in sdei_probe_entry[cpu] first, then mark
 * handled and COMPLETE_AND_RESUME(x2) (handler argument 1) or COMPLETE(HANDLED) (argument 0). */
    .globl sdei_probe_entrypoint
    .type sdei_probe_entrypoint, %function
    .balign 4
sdei_probe_entrypoint:
    stp x18, x30, [sp, #-16]!
    probe_base x18, x30, sdei_probe_entry
    probe_record x18, 16
    ldr x1, [x18, #PROBE_X + 1 * 8]         /* the handler argument: resume or not */
    ldr x2, [x18, #PROBE_X + 2 * 8]         /* the interrupted PC */
    mark_handled 3, 4
    ldp x18, x30, [sp], #16
    cbz x1, 1f
    mov x1, x2
    sdei_finish SDEI_EVENT_COMPLETE_AND_RESUME
1:  mov x1, #SDEI_EV_HANDLED
    sdei_finish SDEI_EVENT_COMPLETE
    .size sdei_probe_entrypoint, . - sdei_probe_entrypoint

/*
 * int64_t sdei_signal_probe(int64_t ev, uint64_t target_mpidr, uint64_t nzcv, uint64_t daif)
 * EVENT_SIGNAL with x4..x17 = SDEI_PROBE_PATTERN(n), ELR_EL1 = SDEI_PROBE_ELR_CANARY, and
 * PSTATE.NZCV/DAIF as given; records the state right after the conduit (see sdei.h).
 */
    .globl sdei_signal_probe
    .type sdei_signal_probe, %function
    .globl sdei_signal_probe_return
    .balign 4
sdei_signal_probe:
    stp x29, x30, [sp, #-32]!
    str x18, [sp, #16]
    mov x29, sp
    ldr x9, =SDEI_PROBE_ELR_CANARY
    msr elr_el1, x9
    mov x9, x1                              /* target */
    mov x1, x0                              /* x1 = event */
    mov x10, x2                             /* NZCV */
    mov x11, x3                             /* DAIF */
    mov x2, x9                              /* x2 = target */
    mov x3, xzr
    ldr x4, =SDEI_PROBE_PATTERN(4)
    ldr x5, =SDEI_PROBE_PATTERN(5)
    ldr x6, =SDEI_PROBE_PATTERN(6)
    ldr x7, =SDEI_PROBE_PATTERN(7)
    ldr x8, =SDEI_PROBE_PATTERN(8)
    ldr x9, =SDEI_PROBE_PATTERN(9)
    ldr x12, =SDEI_PROBE_PATTERN(12)
    ldr x13, =SDEI_PROBE_PATTERN(13)
    ldr x14, =SDEI_PROBE_PATTERN(14)
    ldr x15, =SDEI_PROBE_PATTERN(15)
    ldr x16, =SDEI_PROBE_PATTERN(16)
    ldr x17, =SDEI_PROBE_PATTERN(17)
    ldr x0, =SDEI_EVENT_SIGNAL
    msr nzcv, x10
    msr daif, x11
    ldr x10, =SDEI_PROBE_PATTERN(10)
    ldr x11, =SDEI_PROBE_PATTERN(11)
    smccc_conduit
sdei_signal_probe_return:
    probe_base x18, x30, sdei_probe_after
    probe_record x18, 32
    msr daifset, #0xf
    ldr x0, [x18, #PROBE_X]                 /* SIGNAL's result */
    ldr x18, [sp, #16]
    ldp x29, x30, [sp], #32
    ret
    .size sdei_signal_probe, . - sdei_signal_probe

/*
 * bool sdei_handler_done(uint64_t spins): wait for this CPU's handled flag, clear it, return 1;
 * or return 0 after `spins` polls.  Written without flag-setting instructions: a resume stub
 * continues here through COMPLETE_AND_RESUME, which restores x0..x17 but gives the resumed
 * code a new PSTATE (TF-A: NZCV = 0), so the loop must not depend on NZCV.
 */
    .text
    .globl sdei_handler_done
    .type sdei_handler_done, %function
    .balign 4
sdei_handler_done:
    cpu_index x2, x3
    adr_l x1, sdei_event_handled
    add x1, x1, x2, lsl #2
1:  ldar w2, [x1]
    cbnz w2, 2f
    sub x0, x0, #1
    cbnz x0, 1b
    ret
2:  str wzr, [x1]
    mov x0, #1
    ret
    .size sdei_handler_done, . - sdei_handler_done

    .bss
    .balign 8
    .globl sdei_event_handled
sdei_event_handled:
    .skip 4 * MAX_CPUS
    .size sdei_event_handled, . - sdei_event_handled

    .balign 16
    .globl sdei_probe_entry
sdei_probe_entry:
    .skip PROBE_SIZE * MAX_CPUS
    .size sdei_probe_entry, . - sdei_probe_entry

    .globl sdei_probe_after
sdei_probe_after:
    .skip PROBE_SIZE * MAX_CPUS
    .size sdei_probe_after, . - sdei_probe_after
