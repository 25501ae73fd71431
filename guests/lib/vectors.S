/*
 * vectors.S - the EL1 exception vector table shared by every sdeilab guest.
 *
 * VBAR_EL1 points here (start.S).  The table has 16 entries of 0x80 bytes: four groups
 * (current EL with SP_EL0, current EL with SP_ELx, lower EL AArch64, lower EL AArch32)
 * of four kinds (synchronous, IRQ, FIQ, SError), Arm ARM, "Exception vectors".
 * The guests run at EL1h, so only the second group is expected; every entry does the
 * same thing anyway: save x0-x30, call the C handler for its kind, restore, ERET.
 *
 *   synchronous  handle_sync(ESR_EL1, ELR_EL1, FAR_EL1)
 *   IRQ          handle_irq()
 *   FIQ          handle_fiq()
 *   SError       handle_serror()
 *
 * ELR_EL1 and SPSR_EL1 are not saved: a handler may write ELR_EL1 (for example to skip
 * the faulting instruction) and ERET then resumes there.  Handlers run with DAIF masked
 * (exception entry sets PSTATE.DAIF) and must not unmask, or a nested exception
 * would overwrite ELR_EL1/SPSR_EL1.
 */
#include "guest.h"

#define FRAME_SIZE  (32 * 8)        /* x0..x30 plus one pad slot keeps SP 16-byte aligned */

/* One vector entry: 19 instructions, within the 32 that fit in 0x80 bytes. */
.macro vector_entry kind
    .balign 0x80
    sub sp, sp, #FRAME_SIZE
    stp x0, x1, [sp, #0 * 16]
    stp x2, x3, [sp, #1 * 16]
    stp x4, x5, [sp, #2 * 16]
    stp x6, x7, [sp, #3 * 16]
    stp x8, x9, [sp, #4 * 16]
    stp x10, x11, [sp, #5 * 16]
    stp x12, x13, [sp, #6 * 16]
    stp x14, x15, [sp, #7 * 16]
    stp x16, x17, [sp, #8 * 16]
    stp x18, x19, [sp, #9 * 16]
    stp x20, x21, [sp, #10 * 16]
    stp x22, x23, [sp, #11 * 16]
    stp x24, x25, [sp, #12 * 16]
    stp x26, x27, [sp, #13 * 16]
    stp x28, x29, [sp, #14 * 16]
    str x30, [sp, #15 * 16]
    mov x0, #\kind
    b exception_common
.endm

    .section .text.vectors, "ax"
    .balign 0x800                   /* VBAR_EL1 bits [10:0] are RES0 */
    .globl vectors
vectors:
    /* current EL, SP_EL0 */
    vector_entry VEC_SYNC
    vector_entry VEC_IRQ
    vector_entry VEC_FIQ
    vector_entry VEC_SERROR
    /* current EL, SP_ELx: the ones the guests take */
    vector_entry VEC_SYNC
    vector_entry VEC_IRQ
    vector_entry VEC_FIQ
    vector_entry VEC_SERROR
    /* lower EL, AArch64 */
    vector_entry VEC_SYNC
    vector_entry VEC_IRQ
    vector_entry VEC_FIQ
    vector_entry VEC_SERROR
    /* lower EL, AArch32 */
    vector_entry VEC_SYNC
    vector_entry VEC_IRQ
    vector_entry VEC_FIQ
    vector_entry VEC_SERROR

/* x0 = kind; x0..x30 are saved in the frame at SP. */
exception_common:
    cmp x0, #VEC_IRQ
    b.eq 1f
    cmp x0, #VEC_FIQ
    b.eq 2f
    cmp x0, #VEC_SERROR
    b.eq 3f
    /* synchronous: the syndrome, return address and fault address (Arm ARM, ESR_EL1, ELR_EL1, FAR_EL1) */
    mrs x0, esr_el1
    mrs x1, elr_el1
    mrs x2, far_el1
    bl handle_sync
    b exception_return
1:  bl handle_irq
    b exception_return
2:  bl handle_fiq
    b exception_return
3:  bl handle_serror

exception_return:
    ldp x0, x1, [sp, #0 * 16]
    ldp x2, x3, [sp, #1 * 16]
    ldp x4, x5, [sp, #2 * 16]
    ldp x6, x7, [sp, #3 * 16]
    ldp x8, x9, [sp, #4 * 16]
    ldp x10, x11, [sp, #5 * 16]
    ldp x12, x13, [sp, #6 * 16]
    ldp x14, x15, [sp, #7 * 16]
    ldp x16, x17, [sp, #8 * 16]
    ldp x18, x19, [sp, #9 * 16]
    ldp x20, x21, [sp, #10 * 16]
    ldp x22, x23, [sp, #11 * 16]
    ldp x24, x25, [sp, #12 * 16]
    ldp x26, x27, [sp, #13 * 16]
    ldp x28, x29, [sp, #14 * 16]
    ldr x30, [sp, #15 * 16]
    add sp, sp, #FRAME_SIZE
    eret                            /* PC = ELR_EL1, PSTATE = SPSR_EL1 (Arm ARM, ERET) */
