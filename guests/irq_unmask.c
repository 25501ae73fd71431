/*
 * irq_unmask.c - an interrupt that waits behind PSTATE.I is taken at the instruction that unmasks it.
 *
 * The EL1 virtual timer (PPI 27) fires while IRQs are masked; the CPU then does some work and
 * unmasks with MSR DAIFClr.  The interrupt must be taken right after that MSR (ELR_EL1 = the next
 * instruction), not some instructions later (Arm ARM, "Asynchronous exception types, routing,
 * masking and priorities": an unmasked pending interrupt is taken before the next instruction
 * completes, once the PSTATE write is synchronized; QEMU ends the translation block there).
 * Two ways to wait: asleep in WFI (the timer wakes the CPU, IRQs still masked), and polling
 * CNTV_CTL_EL0.ISTATUS.  Each prints how many instructions after the unmask the IRQ came.
 */
#include "guest.h"

extern char after_unmask[];
static volatile uint64_t elr;

void handle_irq(void)
{
    uint32_t intid = gic_iar();
    if (intid == GIC_SPURIOUS_INTID)
        return;
    elr = read_sysreg(elr_el1);
    write_sysreg(cntv_ctl_el0, 0);      /* the line drops */
    isb();
    gic_eoir(intid);
}

/* Unmask, then 64 NOPs in which the interrupt must come; mask again. */
static __attribute__((noinline)) void open_window(void)
{
    elr = 0;
    __asm__ volatile("msr daifclr, #2\n"
                     ".globl after_unmask\n"
                     "after_unmask:\n"
                     ".rept 64\n"
                     "nop\n"
                     ".endr\n"
                     "msr daifset, #2\n" ::: "memory");
}

static void report(const char *how)
{
    puts(how);
    if (elr < (uint64_t)after_unmask || elr > (uint64_t)after_unmask + 64 * 4) {
        puts(": IRQ not taken in the 64 instructions after the unmask\n");
        return;
    }
    puts(": IRQ taken ");
    put_dec((elr - (uint64_t)after_unmask) / 4);
    puts(" instructions after the unmask\n");
}

static void arm_timer(void)
{
    write_sysreg(cntv_tval_el0, read_sysreg(cntfrq_el0) / 1000);   /* 1 ms */
    write_sysreg(cntv_ctl_el0, 1);
    isb();
}

int main(void)
{
    puts("irq_unmask: PPI 27 pending behind PSTATE.I, then MSR DAIFClr\n");
    gic_dist_init();
    gic_redist_init();
    gic_cpu_init();
    gic_enable_ppi(TIMER_VIRT_INTID, 0x80);

    arm_timer();
    wfi();                                          /* a real sleep: the timer wakes it */
    for (volatile int i = 0; i < 20; i++)           /* some work, IRQs still masked */
        ;
    open_window();
    report("after WFI and some work");

    arm_timer();
    while (!(read_sysreg(cntv_ctl_el0) & 4))        /* ISTATUS: the timer condition is met */
        ;
    open_window();
    report("after polling ISTATUS");

    gic_disable(TIMER_VIRT_INTID);
    puts("irq_unmask: done\n");
    psci_system_off();
    return 0;
}
