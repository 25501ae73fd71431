// Loops for benchmarks/guest_time.py (issue 15): guest time, MRS cost, exceptions taken.
//
//   busy_wait(x0 = ms)          read CNTFRQ_EL0, spin on CNTVCT_EL0 until ms milliseconds of counter
//                               ticks have passed; returns the number of ticks waited for
//   mrs_loop(x0 = iterations)   3 MRS (SP_EL0, MPIDR_EL1, CNTVCT_EL0) + 5 ALU + subs + b.ne:
//                               10 instructions per iteration, as alu_loop (alu_loop.S)
//   svc_loop(x0 = n)            n x SVC #0 with VBAR_EL1 = svc_vectors (the entry just ERETs);
//                               returns the number of exceptions the handler counted
//   fault_loop(x0 = n, x1 = a)  n x LDR from address a, with VBAR_EL1 = fault_vectors (the data
//                               abort handler advances ELR_EL1 by 4 and ERETs); returns the count
//   align_loop(x0 = n, x1 = a)  the same with LDXR from a misaligned a (an alignment fault)
// The loops keep their count in x17, which only these handlers touch. Any other exception goes
// to the guest library's vector of the same kind (prints FAULT and powers off).
    .global busy_wait, mrs_loop, svc_loop, fault_loop, align_loop
    .text
busy_wait:
    mrs x1, cntfrq_el0
    mul x1, x1, x0
    mov x2, #1000
    udiv x1, x1, x2                 // ticks to wait
    isb
    mrs x3, cntvct_el0
1:  mrs x4, cntvct_el0
    sub x5, x4, x3
    cmp x5, x1
    b.lo 1b
    mov x0, x1
    ret

mrs_loop:
    cbz x0, 2f
1:  mrs x1, sp_el0
    mrs x2, mpidr_el1
    mrs x3, cntvct_el0
    add x4, x4, x1
    add x5, x5, x2
    add x6, x6, x3
    add x7, x7, #7
    add x8, x8, #8
    subs x0, x0, #1
    b.ne 1b
2:  ret

// n x the instruction \insn (x0 = n, x1 = its operand) with VBAR_EL1 = \vectors, whose handler
// counts in x17; VBAR_EL1 restored, the count returned.
.macro exception_loop name, vectors, insn:vararg
\name:
    mov x17, #0
    mrs x10, vbar_el1
    adr x11, \vectors
    msr vbar_el1, x11
    isb
    cbz x0, 2f
1:  \insn
    subs x0, x0, #1
    b.ne 1b
2:  msr vbar_el1, x10
    isb
    mov x0, x17
    ret
.endm

    exception_loop svc_loop, svc_vectors, svc #0
    // unmapped: a synchronous external abort, skipped by the handler
    exception_loop fault_loop, fault_vectors, ldr x2, [x1]
    // align_loop(x0 = n, x1 = a): a misaligned, an alignment fault the CPU model raises (DFSC
    // 0x21): an exclusive load always checks alignment
    exception_loop align_loop, fault_vectors, ldxr x2, [x1]

// A vector table whose current-EL SP_ELx synchronous entry is \body; every other entry goes
// to the library's (vectors.S) entry at the same offset.
.macro table name, body
    .balign 0x800
\name:
    .irp n, 0, 1, 2, 3
    .balign 0x80
    b vectors + \n * 0x80
    .endr
    .balign 0x80
    \body
    .irp n, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    .balign 0x80
    b vectors + \n * 0x80
    .endr
.endm

.macro svc_body
    add x17, x17, #1
    eret
.endm

.macro fault_body
    add x17, x17, #1
    mrs x16, elr_el1
    add x16, x16, #4
    msr elr_el1, x16
    eret
.endm

    table svc_vectors, svc_body
    table fault_vectors, fault_body
