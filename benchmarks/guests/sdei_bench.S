// SDEI round trip benchmark: SDEI_COUNT times EVENT_SIGNAL(0, self) -> handler -> COMPLETE,
// then HVC_COUNT times HVC PSCI_VERSION, then SYSTEM_OFF. Both counts are set with -D (>= 1).
#define SDEI(fn) (0xC4000000 | (fn))
    .global main, sdei_loop, hvc_only_loop, bench_handler
main:
    ldr x0, =SDEI(0x21)            // EVENT_REGISTER(0, bench_handler, 0, flags 0, affinity 0)
    mov x1, #0
    adr x2, bench_handler
    mov x3, #0
    mov x4, #0
    mov x5, #0
    hvc #0
    cbnz x0, fail
    ldr x0, =SDEI(0x22)            // EVENT_ENABLE(0)
    mov x1, #0
    hvc #0
    cbnz x0, fail
    ldr x0, =SDEI(0x2C)            // PE_UNMASK
    hvc #0
    ldr x19, =SDEI_COUNT
sdei_loop:
    ldr x0, =SDEI(0x2F)            // EVENT_SIGNAL(0, this CPU: affinity 0)
    mov x1, #0
    mov x2, #0
    hvc #0                         // the handler runs right after this returns
    cbnz x0, fail
    subs x19, x19, #1
    b.ne sdei_loop
    ldr x19, =HVC_COUNT
hvc_only_loop:
    ldr x0, =0x84000000            // PSCI_VERSION
    hvc #0
    subs x19, x19, #1
    b.ne hvc_only_loop
    ldr x0, =0x84000008            // SYSTEM_OFF
    hvc #0
fail:
    b fail

bench_handler:                     // x19 is the loop counter: the handler leaves x18-x30 alone
    ldr x0, =SDEI(0x25)            // EVENT_COMPLETE(HANDLED)
    mov x1, #0
    hvc #0
