// The ALU loop the speed benchmark times: 8 adds, a subtract and a branch per iteration,
// no memory access. alu_loop(x0 = iterations) returns at alu_loop_ret.
    .global alu_loop, alu_loop_ret, hvc_loop, hvc_loop_ret
    .text
alu_loop:
1:  add x1, x1, #1
    add x2, x2, #2
    add x3, x3, #3
    add x4, x4, #4
    add x5, x5, #5
    add x6, x6, #6
    add x7, x7, #7
    add x8, x8, #8
    subs x0, x0, #1
    b.ne 1b
alu_loop_ret:
    ret

// hvc_loop(x0 = count): PSCI_VERSION through the conduit, count times.
hvc_loop:
    mov x9, x0
2:  movz x0, #0x8400, lsl #16      // PSCI_VERSION
    hvc #0
    subs x9, x9, #1
    b.ne 2b
hvc_loop_ret:
    ret
