/*
 * pmu.c - the Performance Monitors Extension (PMUv3) of the Cortex-A57, at EL1.
 *
 * ARM ARM (DDI 0487) chapter D12.  PMCR_EL0 names the PMU (implementer, ID code, N counters);
 * PMCCNTR_EL0 counts cycles while PMCR_EL0.E and PMCNTENSET_EL0 bit 31 are set; an event
 * counter counts the event its PMEVTYPER<n>_EL0 names; SW_INCR (event 0) counts the writes of
 * its bit to PMSWINC_EL0; a counter that overflows sets its PMOVSSET_EL0 bit, and with its
 * PMINTENSET_EL1 bit set the PMU's interrupt (PPI 23 on the virt board) is asserted.
 *
 * Cycle counts depend on the host under QEMU (its cycles are its virtual clock at 1 GHz), so
 * only comparisons are printed, never a count of cycles.  INST_RETIRED (event 8) counts only
 * where PMCEID0_EL0 says it does (QEMU: under -icount), so the guest checks that it behaves as
 * advertised rather than printing the bit.  Last, EL0 reads what PMUSERENR_EL0 opens to it and
 * traps on the rest.
 */
#include "guest.h"

#define PMU_INTID       23
#define PMCR_E          (1u << 0)
#define PMCR_P          (1u << 1)
#define PMCR_C          (1u << 2)
#define CYCLE           (1u << 31)
#define SW_INCR         0x00
#define INST_RETIRED    0x08
#define CPU_CYCLES      0x11

static void yes_no(const char *what, int ok)
{
    puts(what);
    puts(ok ? ": yes\n" : ": no\n");
}

extern char el0_reads[], el0_read_pmccntr_done[];
__asm__(".globl el0_reads, el0_read_pmccntr_done\n"
        "el0_reads:\n"
        "    mrs x0, pmccntr_el0\n"
        "el0_read_pmccntr_done:\n"
        "    mrs x1, pmcr_el0\n"
        "1:  b 1b\n");

void handle_sync(uint64_t esr, uint64_t elr, uint64_t far)
{
    (void)far;
    yes_no("EL0 read PMCCNTR_EL0 (PMUSERENR_EL0.CR)", elr == (uint64_t)el0_read_pmccntr_done);
    puts("EL0 read of PMCR_EL0: EC ");
    put_hex(esr >> 26);
    puts(", ISS ");
    put_hex(esr & 0x1ffffff);
    putc('\n');
    write_sysreg(pmcr_el0, 0);
    puts("pmu: done\n");
    psci_system_off();
}

static void work(void)
{
    for (volatile int i = 0; i < 1000; i++)
        ;
}

int main(void)
{
    uint64_t pmcr = read_sysreg(pmcr_el0);
    puts("pmu: PMCR_EL0 ");
    put_hex(pmcr);
    puts(" (N = ");
    put_dec((pmcr >> 11) & 0x1f);
    puts(")\n");
    uint64_t ceid0 = read_sysreg(pmceid0_el0);
    yes_no("PMCEID0_EL0 lists SW_INCR and CPU_CYCLES", (ceid0 & 1) && (ceid0 >> CPU_CYCLES & 1));

    /* The cycle counter: still while disabled, rising while enabled, back near 0 after PMCR.C. */
    uint64_t a = read_sysreg(pmccntr_el0);
    work();
    yes_no("the cycle counter stands still while PMCR_EL0.E is clear", read_sysreg(pmccntr_el0) == a);
    write_sysreg(pmcntenset_el0, CYCLE);
    write_sysreg(pmcr_el0, PMCR_E | PMCR_C);
    isb();
    a = read_sysreg(pmccntr_el0);
    work();
    uint64_t b = read_sysreg(pmccntr_el0);
    yes_no("it counts once enabled", b > a);
    write_sysreg(pmcr_el0, PMCR_E | PMCR_C);
    isb();
    yes_no("PMCR_EL0.C sets it back below what it had reached", read_sysreg(pmccntr_el0) < b);
    write_sysreg(pmcntenclr_el0, CYCLE);
    isb();
    a = read_sysreg(pmccntr_el0);
    work();
    yes_no("PMCNTENCLR_EL0 stops it", read_sysreg(pmccntr_el0) == a);

    /* Event counter 0 on SW_INCR. */
    write_sysreg(pmevtyper0_el0, SW_INCR);
    write_sysreg(pmevcntr0_el0, 0);
    write_sysreg(pmcntenset_el0, 1);
    isb();
    for (int i = 0; i < 3; i++)
        write_sysreg(pmswinc_el0, 1);
    isb();
    puts("three writes to PMSWINC_EL0: counter 0 reads ");
    put_dec(read_sysreg(pmevcntr0_el0));
    write_sysreg(pmselr_el0, 0);
    isb();
    puts(", through PMSELR/PMXEVCNTR ");
    put_dec(read_sysreg(pmxevcntr_el0));
    putc('\n');

    /* Its overflow, and the PMU interrupt through the GIC (IRQs stay masked: polled). */
    gic_dist_init();
    gic_redist_init();
    gic_cpu_init();
    gic_enable_ppi(PMU_INTID, 0x80);
    write_sysreg(pmovsclr_el0, 0xffffffff);
    write_sysreg(pmevcntr0_el0, 0xffffffff);
    write_sysreg(pmintenset_el1, 1);
    write_sysreg(pmswinc_el0, 1);
    isb();
    puts("overflow: counter 0 ");
    put_dec(read_sysreg(pmevcntr0_el0));
    puts(", PMOVSSET_EL0 ");
    put_hex(read_sysreg(pmovsset_el0));
    uint32_t intid = gic_iar();
    puts(", INTID ");
    put_dec(intid);
    write_sysreg(pmovsclr_el0, 1);
    isb();
    gic_eoir(intid);
    puts(", after PMOVSCLR pending ");
    put_dec(gic_iar() != GIC_SPURIOUS_INTID);
    putc('\n');
    write_sysreg(pmintenclr_el1, 1);

    /* The cycle counter's own overflow (32 bits: PMCR_EL0.LC clear) wakes a WFI. */
    write_sysreg(pmccntr_el0, 0xfffff000);
    write_sysreg(pmintenset_el1, CYCLE);
    write_sysreg(pmcntenset_el0, CYCLE);
    isb();
    while ((intid = gic_iar()) == GIC_SPURIOUS_INTID)
        wfi();
    puts("cycle counter overflow: INTID ");
    put_dec(intid);
    puts(", PMOVSSET_EL0 ");
    put_hex(read_sysreg(pmovsset_el0));
    yes_no(", the 64-bit count went on past 2^32", read_sysreg(pmccntr_el0) > 0xffffffffu);
    write_sysreg(pmovsclr_el0, CYCLE);
    isb();
    gic_eoir(intid);

    /* INST_RETIRED counts exactly where PMCEID0_EL0 advertises it. */
    write_sysreg(pmevtyper1_el0, INST_RETIRED);
    write_sysreg(pmevcntr1_el0, 0);
    write_sysreg(pmcntenset_el0, 2);
    isb();
    work();
    uint64_t retired = read_sysreg(pmevcntr1_el0);
    yes_no("INST_RETIRED behaves as PMCEID0_EL0 says", (ceid0 >> INST_RETIRED & 1) ? retired > 1000 : retired == 0);
    write_sysreg(pmcr_el0, PMCR_E);

    /* EL0: PMUSERENR_EL0.CR lets it read PMCCNTR_EL0 and nothing else; PMCR_EL0 traps to EL1
     * (EC 0x18, the trapped MRS in the syndrome), where handle_sync ends the run. */
    write_sysreg(pmuserenr_el0, 1u << 2);
    write_sysreg(spsr_el1, 0);                  /* EL0t, interrupts unmasked */
    write_sysreg(elr_el1, (uint64_t)el0_reads);
    isb();
    __asm__ volatile("eret");
    return 0;
}
