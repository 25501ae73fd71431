/*
 * entry.S - the assembly half of the random SDEI/PSCI sequence runner (tests/sdei_sequences.py).
 *
 * rnd_call issues one SMCCC call with every register it can fix fixed: x1..x5 the arguments,
 * x6..x17 RND_PATTERN(n), NZCV = Z|C. So whatever a handler dispatched on the way out of the
 * call reads of the interrupted context (x2 = PC, x3 = PSTATE, EVENT_CONTEXT(0..17)) is the same
 * on every run and on both firmwares; the PC is printed relative to _start, which differs only by
 * the link address.
 *
 * rnd_handler_a / rnd_handler_b are the two handler entry points the sequences register. Each
 * records x0..x17, NZCV, DAIF and SPSel at entry into rnd_entry[cpu] before touching anything,
 * then calls rnd_handler_body(which), which prints and runs the handler's own calls and returns
 * the completion call (x0 = FID, x1 = argument), issued here: COMPLETE(status) or
 * COMPLETE_AND_RESUME(address). The dispatcher saves only x0..x17, PC and PSTATE (reference 2.4),
 * so x18, x29 and x30 are kept on the interrupted stack.
 */
#include "guest.h"

#define RND_PATTERN(n)  (0x5EC0000000000000 | ((n) << 8) | (n))
#define RND_NZCV        0x60000000              /* Z and C */
#define RND_REGS_SIZE   (21 * 8)                /* struct rnd_regs: x0..x17, nzcv, daif, spsel */

    .text

/* int64_t rnd_call(const uint64_t args[6]): x0 = args[0] (FID), x1..x5 = args[1..5]. */
    .globl rnd_call
    .type rnd_call, %function
    .balign 4
rnd_call:
    stp x29, x30, [sp, #-32]!
    str x18, [sp, #16]
    mov x29, sp
    ldp x1, x2, [x0, #8]
    ldp x3, x4, [x0, #24]
    ldr x5, [x0, #40]
    ldr x0, [x0]
    ldr x6, =RND_PATTERN(6)
    ldr x7, =RND_PATTERN(7)
    ldr x8, =RND_PATTERN(8)
    ldr x9, =RND_PATTERN(9)
    ldr x10, =RND_PATTERN(10)
    ldr x11, =RND_PATTERN(11)
    ldr x12, =RND_PATTERN(12)
    ldr x13, =RND_PATTERN(13)
    ldr x14, =RND_PATTERN(14)
    ldr x15, =RND_PATTERN(15)
    ldr x17, =RND_NZCV
    msr nzcv, x17
    ldr x16, =RND_PATTERN(16)
    ldr x17, =RND_PATTERN(17)
    smccc_conduit
    .globl rnd_call_return
rnd_call_return:
    ldr x18, [sp, #16]
    ldp x29, x30, [sp], #32
    ret
/* A COMPLETE_AND_RESUME target: note the resume, then go on as the call's return would. */
    .globl rnd_resumed
rnd_resumed:
    cpu_index x9, x10
    adr_l x10, rnd_resume_flag
    mov w11, #1
    str w11, [x10, x9, lsl #2]
    b rnd_call_return
    .size rnd_call, . - rnd_call

.macro rnd_stub name, which
    .globl \name
    .type \name, %function
    .balign 4
\name:
    stp x18, x30, [sp, #-16]!
    mrs x18, mpidr_el1
    ubfx x30, x18, #8, #8
    and x18, x18, #0xff
    add x18, x18, x30, lsl #3
    mov x30, #RND_REGS_SIZE
    mul x18, x18, x30
    adr_l x30, rnd_entry
    add x18, x18, x30
    stp x0, x1, [x18, #0 * 16]
    stp x2, x3, [x18, #1 * 16]
    stp x4, x5, [x18, #2 * 16]
    stp x6, x7, [x18, #3 * 16]
    stp x8, x9, [x18, #4 * 16]
    stp x10, x11, [x18, #5 * 16]
    stp x12, x13, [x18, #6 * 16]
    stp x14, x15, [x18, #7 * 16]
    stp x16, x17, [x18, #8 * 16]
    mrs x0, nzcv
    str x0, [x18, #18 * 8]
    mrs x0, daif
    str x0, [x18, #19 * 8]
    mrs x0, spsel
    str x0, [x18, #20 * 8]
    ldp x18, x30, [sp], #16
    stp x29, x30, [sp, #-32]!
    str x18, [sp, #16]
    mov x29, sp
    mov x0, #\which
    bl rnd_handler_body
    ldr x18, [sp, #16]
    ldp x29, x30, [sp], #32
    smccc_conduit
    bl rnd_complete_returned        /* COMPLETE returns only when refused */
    .size \name, . - \name
.endm

    rnd_stub rnd_handler_a, 0
    rnd_stub rnd_handler_b, 1
