/*
 * start.S - boot code shared by every sdeilab guest.
 *
 * _start            CPU 0 enters here (the ELF entry point) at EL1h, MMU and caches off,
 *                   DAIF masked (DESIGN.md section 2; QEMU boots an ELF `-kernel` the same way).
 * secondary_entry   the entry point to pass to PSCI CPU_ON.  PSCI starts the CPU at EL1 with
 *                   x0 = context_id (DEN0022, CPU_ON); this code gives it its own
 *                   stack and the vector table, then calls secondary_fn[cpu](context_id).
 *
 * Every CPU finds its stack from MPIDR_EL1: index = Aff1 * 8 + Aff0, and the stack of
 * CPU i is the i-th STACK_SIZE slice of .stacks counted down from the top.
 */
#include "guest.h"

    .section .text.boot, "ax"
    .globl _start
    .type _start, %function
_start:
    /* Interrupts stay masked until a guest unmasks them itself (PSTATE.DAIF). */
    msr daifset, #0xf

    cpu_index x19, x20
    bl set_stack                    /* uses x19 = index; no stack needed yet */

    /* Zero .bss (C expects it; the ELF leaves it as p_memsz beyond p_filesz).
     * The bounds are 16-byte aligned by virt.ld.  .stacks is not zeroed: stacks
     * need no initial value, and zeroing 128 KiB would cost every boot time. */
    adr_l x0, __bss_start
    adr_l x1, __bss_end
1:  cmp x0, x1
    b.hs 2f
    stp xzr, xzr, [x0], #16
    b 1b
2:
    bl set_vbar
    bl main
    /* main returned: power the machine off as every guest must end. */
    b psci_system_off
    .size _start, . - _start

/*
 * secondary_entry(context_id): PSCI CPU_ON entry.  Reset state as for CPU 0: EL1h, MMU off,
 * DAIF masked, SP undefined, VBAR_EL1 UNKNOWN, hence set both before anything can fault.
 */
    .globl secondary_entry
    .type secondary_entry, %function
secondary_entry:
    msr daifset, #0xf
    mov x21, x0                     /* context_id (callee-saved across the calls below) */
    cpu_index x19, x20
    cmp x19, #MAX_CPUS
    b.hs park                       /* no stack for this CPU: switch it off again */
    bl set_stack
    bl set_vbar
    /* Read this CPU's slot with load-acquire: CPU 0 wrote it before CPU_ON. */
    adr_l x1, secondary_fn
    add x1, x1, x19, lsl #3
    ldar x1, [x1]
    cbz x1, park
    mov x0, x21
    blr x1
park:
    /* The secondary's function returned, or there is none, or no stack: CPU_OFF.  Done
     * here without a stack; CPU_OFF does not return on success (DEN0022, CPU_OFF). */
    smccc PSCI_CPU_OFF
1:  wfi
    b 1b
    .size secondary_entry, . - secondary_entry

/* set_stack: SP = __stacks_end - x19 * STACK_SIZE (16-byte aligned, as AAPCS64 requires at every public interface). */
    .type set_stack, %function
set_stack:
    adr_l x0, __stacks_end
    mov x1, #STACK_SIZE
    msub x0, x19, x1, x0
    mov sp, x0
    ret
    .size set_stack, . - set_stack

/* set_vbar: VBAR_EL1 = vectors (2 KiB aligned: VBAR_EL1 bits [10:0] are RES0); ISB so it takes effect. */
    .type set_vbar, %function
set_vbar:
    adr_l x0, vectors
    msr vbar_el1, x0
    isb
    ret
    .size set_vbar, . - set_vbar

/* unsigned cpu_index(void) */
    .text
    .globl cpu_index
    .type cpu_index, %function
cpu_index:
    cpu_index x0, x1
    ret
    .size cpu_index, . - cpu_index

/* uint64_t cpu_mpidr(unsigned index): the affinity value PSCI expects for CPU `index`:
 * Aff0 = index % 8, Aff1 = index / 8 (QEMU virt with GICv3 has 8 CPUs per cluster). */
    .globl cpu_mpidr
    .type cpu_mpidr, %function
cpu_mpidr:
    mov w0, w0
    and x1, x0, #7
    lsr x0, x0, #3
    orr x0, x1, x0, lsl #8
    ret
    .size cpu_mpidr, . - cpu_mpidr

/* Per-CPU function pointers read by secondary_entry (zero: just switch off again). */
    .bss
    .balign 8
    .globl secondary_fn
secondary_fn:
    .skip 8 * MAX_CPUS
    .size secondary_fn, . - secondary_fn

/* The stacks: their own NOLOAD section, so not part of the .bss that _start zeroes. */
    .section .stacks, "aw", %nobits
    .balign 16
    .skip STACK_SIZE * MAX_CPUS
