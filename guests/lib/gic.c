/*
 * gic.c - minimal GICv3 set-up with the system-register CPU interface.
 *
 * QEMU virt without EL3 has a GIC with one security state (GICD_CTLR.DS = 1), so the
 * guest at EL1 owns the whole GIC.  All interrupts used here are Group 1, delivered as
 * IRQ through ICC_IAR1_EL1 / ICC_EOIR1_EL1.  References are to the GICv3/v4
 * Architecture Specification (Arm IHI 0069H).
 *
 * Register accesses are 32-bit (64-bit for GICD_IROUTER), as the spec requires every
 * implementation to support; priority bytes are set by read-modify-write of their word.
 */
#include "guest.h"

static uintptr_t redist_base(void)
{
    /* QEMU virt lays out the redistributors contiguously in CPU order (one RD_base +
     * SGI_base pair of 64 KiB frames each, GICv3 spec, "The GIC Redistributor"), so CPU i's is at GICR_BASE + i * 128 KiB. */
    return GICR_BASE + (uintptr_t)cpu_index() * GICR_STRIDE;
}

static void set_priority(uintptr_t ipriorityr, unsigned intid, uint8_t priority)
{
    uintptr_t word = ipriorityr + (intid & ~3u);
    unsigned shift = (intid & 3u) * 8;
    uint32_t v = mmio_read32(word);
    v = (v & ~(0xffu << shift)) | ((uint32_t)priority << shift);
    mmio_write32(word, v);
}

static void dist_wait_rwp(void)
{
    /* GICD_CTLR.RWP: a write to GICD_CTLR is still taking effect (GICD_CTLR description). */
    while (mmio_read32(GICD_BASE + GICD_CTLR) & GICD_CTLR_RWP)
        ;
}

void gic_dist_init(void)
{
    /* Affinity routing first (GICD_CTLR.ARE), then enable Group 1 forwarding. */
    mmio_write32(GICD_BASE + GICD_CTLR, 0);
    dist_wait_rwp();
    mmio_write32(GICD_BASE + GICD_CTLR, GICD_CTLR_ARE);
    dist_wait_rwp();
    mmio_write32(GICD_BASE + GICD_CTLR, GICD_CTLR_ARE | GICD_CTLR_GRP1);
    dist_wait_rwp();
}

void gic_redist_init(void)
{
    /* Wake the redistributor: clear GICR_WAKER.ProcessorSleep, then wait for
     * ChildrenAsleep to read 0 (GICR_WAKER description, and "Power management" in the GICv3 spec). */
    uintptr_t waker = redist_base() + GICR_WAKER;
    mmio_write32(waker, mmio_read32(waker) & ~(uint32_t)GICR_WAKER_PROCESSOR_SLEEP);
    while (mmio_read32(waker) & GICR_WAKER_CHILDREN_ASLEEP)
        ;
}

void gic_cpu_init(void)
{
    /* ICC_SRE_EL1.SRE = 1: use the system-register interface (ICC_SRE_EL1 description). */
    write_sysreg(icc_sre_el1, read_sysreg(icc_sre_el1) | 1);
    isb();
    write_sysreg(icc_pmr_el1, 0xff);      /* let every priority through */
    write_sysreg(icc_bpr1_el1, 0);        /* no priority grouping */
    write_sysreg(icc_igrpen1_el1, 1);     /* Group 1 on */
    isb();
}

void gic_enable_ppi(unsigned intid, uint8_t priority)
{
    uintptr_t sgi = redist_base() + GICR_SGI_OFFSET;
    uint32_t bit = 1u << intid;
    mmio_write32(sgi + GICR_IGROUPR0, mmio_read32(sgi + GICR_IGROUPR0) | bit);  /* Group 1 */
    set_priority(sgi + GICR_IPRIORITYR, intid, priority);
    mmio_write32(sgi + GICR_ISENABLER0, bit);       /* write-1-to-set */
}

void gic_enable_spi(unsigned intid, uint8_t priority, uint64_t target_mpidr)
{
    uintptr_t n = intid / 32;
    uint32_t bit = 1u << (intid % 32);
    mmio_write32(GICD_BASE + GICD_IGROUPR + 4 * n, mmio_read32(GICD_BASE + GICD_IGROUPR + 4 * n) | bit);
    set_priority(GICD_BASE + GICD_IPRIORITYR, intid, priority);
    /* GICD_IROUTER<n>: Interrupt_Routing_Mode 0, deliver to the PE with this affinity. */
    mmio_write64(GICD_BASE + GICD_IROUTER + 8 * (uintptr_t)intid, target_mpidr & MPIDR_AFF_MASK);
    mmio_write32(GICD_BASE + GICD_ISENABLER + 4 * n, bit);
}

void gic_disable(unsigned intid)
{
    if (intid < 32) {
        uintptr_t rd = redist_base();
        mmio_write32(rd + GICR_SGI_OFFSET + GICR_ICENABLER0, 1u << intid);
        while (mmio_read32(rd + GICR_CTLR) & (1u << 3))     /* GICR_CTLR.RWP */
            ;
    } else {
        mmio_write32(GICD_BASE + GICD_ICENABLER + 4 * (intid / 32), 1u << (intid % 32));
        dist_wait_rwp();
    }
}

uint32_t gic_iar(void)
{
    return (uint32_t)read_sysreg(icc_iar1_el1);    /* acknowledge: INTID, or 1023 if none */
}

void gic_eoir(uint32_t intid)
{
    write_sysreg(icc_eoir1_el1, intid);    /* EOImode 0: priority drop and deactivate */
}
