/*
 * timer_irq.c - the EL1 virtual timer through the GICv3, handled in the IRQ vector.
 *
 * The generic timer's EL1 virtual timer (Arm ARM, "The Generic Timer in AArch64 state") raises PPI 27
 * while CNTV_CTL_EL0.ENABLE = 1, IMASK = 0 and CNTVCT_EL0 >= CNTV_CVAL_EL0.  Writing
 * CNTV_TVAL_EL0 = t sets CVAL = now + t.  The interrupt is level-sensitive: the handler
 * acknowledges it (ICC_IAR1_EL1), re-arms or disables the timer so the line drops, then
 * ends it (ICC_EOIR1_EL1), GICv3 spec, "Interrupt handling and prioritization".
 *
 * Between ticks the CPU sleeps in WFI with IRQs masked: a pending interrupt wakes WFI even
 * when PSTATE.I masks it (Arm ARM, "Wait for Interrupt"), and the IRQ is then taken by
 * briefly unmasking.  Checking the tick count and sleeping with IRQs masked means a tick
 * cannot slip in between the check and the WFI (which could otherwise sleep forever after
 * the last tick).
 *
 * Only the tick numbers are printed, never counter values: the output does not depend on
 * the timer frequency or on how fast the host is.
 */
#include "guest.h"

#define TICKS       5
#define TICK_HZ     100         /* 10 ms of timer time per tick */

static volatile unsigned ticks;
static uint64_t period;

void handle_irq(void)
{
    uint32_t intid = gic_iar();
    if (intid == GIC_SPURIOUS_INTID)
        return;                 /* nothing pending any more: no EOI for 1023 */
    if (intid == TIMER_VIRT_INTID) {
        ticks++;
        puts("tick ");
        put_dec(ticks);
        putc('\n');
        if (ticks < TICKS)
            write_sysreg(cntv_tval_el0, period);    /* next deadline; the line drops */
        else
            write_sysreg(cntv_ctl_el0, 0);          /* ENABLE = 0: no more ticks */
        isb();
    } else {
        puts("unexpected INTID ");
        put_dec(intid);
        putc('\n');
    }
    gic_eoir(intid);
}

int main(void)
{
    puts("timer_irq: EL1 virtual timer, PPI 27, through the GICv3\n");
    gic_dist_init();
    gic_redist_init();
    gic_cpu_init();
    gic_enable_ppi(TIMER_VIRT_INTID, 0x80);

    period = read_sysreg(cntfrq_el0) / TICK_HZ;
    write_sysreg(cntv_tval_el0, period);
    write_sysreg(cntv_ctl_el0, 1);              /* ENABLE = 1, IMASK = 0 */
    isb();

    while (ticks < TICKS) {
        wfi();                  /* IRQs masked: wakes when one is pending */
        irq_enable();           /* taken here (the ISB makes the unmask take effect) */
        irq_disable();
    }
    gic_disable(TIMER_VIRT_INTID);
    puts("timer_irq: ");
    put_dec(TICKS);
    puts(" ticks, each acknowledged and ended; done\n");
    psci_system_off();
}
