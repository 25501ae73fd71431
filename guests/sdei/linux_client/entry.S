/*
 * entry.S - linux_client's assembly: the SDEI entry point (after Linux's __sdei_asm_handler,
 * arch/arm64/kernel/entry.S), the per-CPU SDEI stacks, and the two loops the watchdog
 * interrupts (stuck_loop, cpu_idle).
 *
 * The dispatcher saves and restores x0..x17, PC and PSTATE only (reference section 2.4): the
 * entry point keeps everything else of the interrupted context itself - x18..x30 and SP go into
 * this CPU's struct sdei_registered_event (pt_regs), and it runs the C handler on its own stack,
 * never on the interrupted SP (Linux: "entry.S may have been using sp as a scratch register").
 */
#include "guest.h"
#include "linux_client.h"

#define SDEI_EV_FAILED  1

    .text
/*
 * __sdei_asm_handler(x0 = event, x1 = this CPU's struct sdei_registered_event,
 *                    x2 = interrupted PC, x3 = interrupted PSTATE)
 * The handler argument given at REGISTER is the per-CPU struct (Linux _local_event_register
 * passes per_cpu_ptr(event->private_registered, cpu)).
 */
    .globl __sdei_asm_handler
    .type __sdei_asm_handler, %function
    .balign 4
__sdei_asm_handler:
    stp x2, x3, [x1, #SDEI_EVENT_INTREGS + S_PC]
    stp x4, x5, [x1, #SDEI_EVENT_INTREGS + 16 * 2]
    stp x6, x7, [x1, #SDEI_EVENT_INTREGS + 16 * 3]
    stp x8, x9, [x1, #SDEI_EVENT_INTREGS + 16 * 4]
    stp x10, x11, [x1, #SDEI_EVENT_INTREGS + 16 * 5]
    stp x12, x13, [x1, #SDEI_EVENT_INTREGS + 16 * 6]
    stp x14, x15, [x1, #SDEI_EVENT_INTREGS + 16 * 7]
    stp x16, x17, [x1, #SDEI_EVENT_INTREGS + 16 * 8]
    stp x18, x19, [x1, #SDEI_EVENT_INTREGS + 16 * 9]
    stp x20, x21, [x1, #SDEI_EVENT_INTREGS + 16 * 10]
    stp x22, x23, [x1, #SDEI_EVENT_INTREGS + 16 * 11]
    stp x24, x25, [x1, #SDEI_EVENT_INTREGS + 16 * 12]
    stp x26, x27, [x1, #SDEI_EVENT_INTREGS + 16 * 13]
    stp x28, x29, [x1, #SDEI_EVENT_INTREGS + 16 * 14]
    mov x4, sp
    stp x30, x4, [x1, #SDEI_EVENT_INTREGS + S_LR]

    mov x19, x1

    /* Two stacks per CPU, as Linux's CONFIG_VMAP_STACK build: a critical event may interrupt
     * a normal handler (reference section 2.5), which must not find its stack reused.  The
     * priority byte of the registered event picks one; SP = top of this CPU's slice. */
    ldrb w4, [x19, #SDEI_EVENT_PRIORITY]
    cpu_index x5, x6
    add x5, x5, #1
    cbnz w4, 1f
    adr_l x6, sdei_stack_normal
    b 2f
1:  adr_l x6, sdei_stack_critical
2:  mov x7, #SDEI_STACK_SIZE
    madd x6, x5, x7, x6
    mov sp, x6

    add x0, x19, #SDEI_EVENT_INTREGS
    mov x1, x19
    bl __sdei_handler               /* x0 = SDEI_EV_HANDLED, SDEI_EV_FAILED or a resume address */

    /* Restore what the C code may have changed beyond x0..x17 (AAPCS64 keeps x19..x28, but
     * x18 is a temporary register for clang on this target) and the interrupted SP and LR. */
    mov x4, x19
    ldp x28, x29, [x4, #SDEI_EVENT_INTREGS + 16 * 14]
    ldp x18, x19, [x4, #SDEI_EVENT_INTREGS + 16 * 9]
    ldp x30, x1, [x4, #SDEI_EVENT_INTREGS + S_LR]
    mov sp, x1

    /* Linux: x0 = (x0 <= SDEI_EV_FAILED) ? EVENT_COMPLETE : EVENT_COMPLETE_AND_RESUME, with
     * x1 = the status or the resume address.  Two call sites instead of one CSEL, so that a
     * refused call is reported by name. */
    mov x1, x0
    cmp x0, #SDEI_EV_FAILED
    b.hi 3f
    ldr x0, =SDEI_EVENT_COMPLETE
    smccc_conduit
    ldr x1, =SDEI_EVENT_COMPLETE
    b sdei_complete_returned
3:  ldr x0, =SDEI_EVENT_COMPLETE_AND_RESUME
    smccc_conduit
    ldr x1, =SDEI_EVENT_COMPLETE_AND_RESUME
    b sdei_complete_returned
    .size __sdei_asm_handler, . - __sdei_asm_handler
    .ltorg

/*
 * The loops the watchdog interrupts.  Their addresses are printed in hex, so they sit at a
 * fixed place: in .text.boot, which virt.ld puts first, at its 1 KiB mark - in the padding
 * start.S's boot code leaves before the 2 KiB-aligned vector table.  The library can change
 * without moving them (start.S's boot code would have to pass 1 KiB).  Each waits in a
 * single instruction (B or WFI), so the PC an NMI interrupts is exact, whatever the timing.
 */
    .section .text.boot, "ax"
    .balign 0x400

/* void hard_lockup(volatile uint32_t *lock) __noreturn: spin with IRQs masked (DAIF.I) on a
 * lock that is never released - the hard lockup the NMI watchdog exists for.  x0 stays the
 * lock's address: the handler reads it back with EVENT_CONTEXT(0). */
    .globl hard_lockup
    .type hard_lockup, %function
hard_lockup:
    msr daifset, #2
    .globl stuck_loop
    .type stuck_loop, %function
stuck_loop:
    b stuck_loop
    .size stuck_loop, . - stuck_loop
    .globl stuck_loop_end
stuck_loop_end:
    .size hard_lockup, . - hard_lockup

/* void cpu_idle(volatile uint32_t *stop): WFI with IRQs unmasked until *stop != 0, then
 * mask IRQs again and return.  An NMI here interrupts the instruction after the WFI. */
    .balign 16
    .globl cpu_idle
    .type cpu_idle, %function
cpu_idle:
    msr daifclr, #2
1:  wfi
    .globl cpu_idle_woken
cpu_idle_woken:
    ldar w1, [x0]
    cbz w1, 1b
    msr daifset, #2
    ret
    .globl cpu_idle_end
cpu_idle_end:
    .size cpu_idle, . - cpu_idle

/* The per-CPU SDEI stacks (Linux allocates them at probe: init_sdei_stacks). */
    .bss
    .balign 16
    .globl sdei_stack_normal
sdei_stack_normal:
    .skip SDEI_STACK_SIZE * MAX_CPUS
    .size sdei_stack_normal, . - sdei_stack_normal
    .globl sdei_stack_critical
sdei_stack_critical:
    .skip SDEI_STACK_SIZE * MAX_CPUS
    .size sdei_stack_critical, . - sdei_stack_critical
