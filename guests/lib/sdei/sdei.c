/*
 * sdei.c - the SDEI calls (Arm DEN0054) as C functions, TFTF's BIND/RELEASE wrappers, timers.
 *
 * SDEI calls are SMC64 fast calls in the standard-service range (0xC4000020..0xC4000032): the
 * function ID in x0, up to five arguments in x1..x5, the result in x0 (SMCCC, DEN0028).
 * EVENT_REGISTER is the only call with five arguments.  The callee may clobber x0..x17.
 */
#include "sdei.h"

int64_t sdei_call(uint64_t fid, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5)
{
    return smccc_call5(fid, a1, a2, a3, a4, a5);
}

int64_t sdei_version(void) { return sdei_call(SDEI_VERSION, 0, 0, 0, 0, 0); }

int64_t sdei_event_register(int64_t ev, void (*entry)(void), uint64_t arg, uint64_t flags, uint64_t mpidr)
{
    return sdei_call(SDEI_EVENT_REGISTER, (uint64_t)ev, (uint64_t)(uintptr_t)entry, arg, flags, mpidr);
}

int64_t sdei_event_enable(int64_t ev) { return sdei_call(SDEI_EVENT_ENABLE, (uint64_t)ev, 0, 0, 0, 0); }
int64_t sdei_event_disable(int64_t ev) { return sdei_call(SDEI_EVENT_DISABLE, (uint64_t)ev, 0, 0, 0, 0); }
int64_t sdei_event_context(uint64_t index) { return sdei_call(SDEI_EVENT_CONTEXT, index, 0, 0, 0, 0); }
int64_t sdei_event_complete(uint64_t status) { return sdei_call(SDEI_EVENT_COMPLETE, status, 0, 0, 0, 0); }

int64_t sdei_event_complete_and_resume(uint64_t addr)
{
    return sdei_call(SDEI_EVENT_COMPLETE_AND_RESUME, addr, 0, 0, 0, 0);
}

int64_t sdei_event_unregister(int64_t ev) { return sdei_call(SDEI_EVENT_UNREGISTER, (uint64_t)ev, 0, 0, 0, 0); }
int64_t sdei_event_status(int64_t ev) { return sdei_call(SDEI_EVENT_STATUS, (uint64_t)ev, 0, 0, 0, 0); }

int64_t sdei_event_get_info(int64_t ev, uint64_t info)
{
    return sdei_call(SDEI_EVENT_GET_INFO, (uint64_t)ev, info, 0, 0, 0);
}

int64_t sdei_event_routing_set(int64_t ev, uint64_t mode, uint64_t affinity)
{
    return sdei_call(SDEI_EVENT_ROUTING_SET, (uint64_t)ev, mode, affinity, 0, 0);
}

int64_t sdei_pe_mask(void) { return sdei_call(SDEI_PE_MASK, 0, 0, 0, 0, 0); }
int64_t sdei_pe_unmask(void) { return sdei_call(SDEI_PE_UNMASK, 0, 0, 0, 0, 0); }
int64_t sdei_interrupt_bind(uint64_t intid) { return sdei_call(SDEI_INTERRUPT_BIND, intid, 0, 0, 0, 0); }
int64_t sdei_interrupt_release(int64_t ev) { return sdei_call(SDEI_INTERRUPT_RELEASE, (uint64_t)ev, 0, 0, 0, 0); }

int64_t sdei_event_signal(int64_t ev, uint64_t target_mpidr)
{
    return sdei_call(SDEI_EVENT_SIGNAL, (uint64_t)ev, target_mpidr, 0, 0, 0);
}

int64_t sdei_features(uint64_t feature) { return sdei_call(SDEI_FEATURES, feature, 0, 0, 0, 0); }
int64_t sdei_private_reset(void) { return sdei_call(SDEI_PRIVATE_RESET, 0, 0, 0, 0, 0); }
int64_t sdei_shared_reset(void) { return sdei_call(SDEI_SHARED_RESET, 0, 0, 0, 0, 0); }

const char *sdei_ret_name(int64_t ret)
{
    switch (ret) {
    case SDEI_RET_SUCCESS: return "SUCCESS";
    case SDEI_RET_NOT_SUPPORTED: return "NOT_SUPPORTED";
    case SDEI_RET_INVALID_PARAMETERS: return "INVALID_PARAMETERS";
    case SDEI_RET_DENIED: return "DENIED";
    case SDEI_RET_PENDING: return "PENDING";
    case SDEI_RET_OUT_OF_RESOURCE: return "OUT_OF_RESOURCE";
    default: return NULL;
    }
}

uint64_t my_mpidr(void)
{
    return read_sysreg(mpidr_el1) & MPIDR_AFF_MASK;
}

/* ------------------------------------------------------------------ GIC state around BIND */
/* The guest-visible (Non-secure) view of one interrupt: its priority byte and enable bit, in
 * the distributor for SPIs and in this CPU's redistributor SGI frame for SGIs/PPIs. */

static uintptr_t intid_frame(unsigned intid)
{
    if (intid < 32)
        return GICR_BASE + (uintptr_t)cpu_index() * GICR_STRIDE + GICR_SGI_OFFSET;
    return GICD_BASE;
}

static uint8_t gic_get_priority(unsigned intid)
{
    uintptr_t word = intid_frame(intid) + GICD_IPRIORITYR + (intid & ~3u);    /* same offset in GICR */
    return (uint8_t)(mmio_read32(word) >> ((intid & 3u) * 8));
}

static void gic_set_priority(unsigned intid, uint8_t priority)
{
    uintptr_t word = intid_frame(intid) + GICD_IPRIORITYR + (intid & ~3u);
    unsigned shift = (intid & 3u) * 8;
    mmio_write32(word, (mmio_read32(word) & ~(0xffu << shift)) | ((uint32_t)priority << shift));
}

static bool gic_is_enabled(unsigned intid)
{
    uintptr_t reg = intid_frame(intid) + GICD_ISENABLER + 4 * (intid / 32);
    return (mmio_read32(reg) >> (intid % 32)) & 1;
}

static void gic_enable(unsigned intid)
{
    mmio_write32(intid_frame(intid) + GICD_ISENABLER + 4 * (intid / 32), 1u << (intid % 32));
}

int64_t sdei_interrupt_bind_ctx(unsigned intid, struct sdei_intr_ctx *ctx)
{
    bool valid = intid < 1020;      /* the GIC registers cover INTIDs 0..1019 only */
    ctx->intid = intid;
    ctx->priority = valid ? gic_get_priority(intid) : 0;
    ctx->enabled = valid ? gic_is_enabled(intid) : false;
    if (valid)
        gic_disable(intid);
    int64_t ret = sdei_interrupt_bind(intid);
    if (ret < 0 && valid) {
        gic_set_priority(intid, ctx->priority);
        if (ctx->enabled)
            gic_enable(intid);
    }
    return ret;
}

int64_t sdei_interrupt_release_ctx(int64_t ev, const struct sdei_intr_ctx *ctx)
{
    int64_t ret = sdei_interrupt_release(ev);
    if (ret == 0 && ctx->intid < 1020) {
        gic_set_priority(ctx->intid, ctx->priority);
        if (ctx->enabled)
            gic_enable(ctx->intid);
    }
    return ret;
}

/* ------------------------------------------------------------------ timers */

void sp804_start(uint32_t ticks)
{
    mmio_write32(SP804_BASE + SP804_CONTROL, 0);
    mmio_write32(SP804_BASE + SP804_INTCLR, 1);
    mmio_write32(SP804_BASE + SP804_LOAD, ticks);
    mmio_write32(SP804_BASE + SP804_CONTROL,
                 SP804_CTRL_ENABLE | SP804_CTRL_INTEN | SP804_CTRL_32BIT | SP804_CTRL_ONESHOT);
}

void sp804_stop(void)
{
    mmio_write32(SP804_BASE + SP804_CONTROL, 0);
    mmio_write32(SP804_BASE + SP804_INTCLR, 1);     /* the level interrupt drops */
}

void cntp_start(uint64_t counts)
{
    write_sysreg(cntp_ctl_el0, 0);
    write_sysreg(cntp_tval_el0, counts);
    write_sysreg(cntp_ctl_el0, 1);                  /* ENABLE = 1, IMASK = 0 */
    isb();
}

void cntp_stop(void)
{
    write_sysreg(cntp_ctl_el0, 0);
    isb();
}
