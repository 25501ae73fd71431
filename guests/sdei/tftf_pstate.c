/*
 * tftf_pstate.c - TFTF test_sdei_event_check_pstate (test_sdei_pstate.c): the PSTATE an SDEI
 * handler is entered with, adapted from TFTF's NS-EL2 to the lab's NS-EL1 client (reference
 * section 2.4 and section 4, test 8).
 *
 * TFTF, on the lead CPU: REGISTER event 0 (RM_PE, own MPIDR), ENABLE, PE_UNMASK, EVENT_SIGNAL
 * to itself; the handler reads DAIF and SPSel, which must be 0x3C0 (D, A, I, F all masked) and
 * 1 (SP_ELx), as TakeException to the client EL gives (TF-A create_spsr).  With FEAT_PAN it
 * then checks PAN across SCTLR_EL2.SPAN and HCR_EL2.TGE, with FEAT_DIT that DIT is kept;
 * finally PE_MASK, DISABLE, UNREGISTER.
 *
 * Here, with sdei_probe_entrypoint / sdei_signal_probe (sdei.h), which record the exact
 * register state at handler entry and right after the conduit, the same event 0 is signalled
 * to this CPU twice:
 *   1. handler argument 0: the probe ends with COMPLETE.  At entry: DAIF = 0x3C0, SPSel = 1,
 *      CurrentEL = EL1, NZCV unchanged; x0 = event 0, x1 = the argument, x2 = the interrupted
 *      PC (the instruction after the conduit), x3 = the interrupted PSTATE (the NZCV and DAIF
 *      set before signalling, EL1h), x4..x17 as interrupted (TF-A keeps them), ELR_EL1 and
 *      SPSR_EL1 untouched.  After COMPLETE: x0 = SIGNAL's result (0), x1..x17, NZCV and DAIF
 *      of the interrupted context restored, ELR_EL1/SPSR_EL1 untouched (reference 2.6).
 *   2. handler argument 1: the probe ends with COMPLETE_AND_RESUME(x2), TFTF's resume stub.
 *      Execution continues at the resume address (here the interrupted PC, where the probe
 *      records again) with x0..x17 restored, DAIF = 0x3C0, EL1h, ELR_EL1 = the interrupted PC
 *      and SPSR_EL1 = the interrupted PSTATE (the handler's x3), as a synchronous exception
 *      taken from the interrupted context (DEN0054 5.2.2, reference 2.6).  NZCV after the
 *      resume is not checked: TF-A (sdei_event_complete) enters the resume address with a
 *      fresh SPSR_64(client EL, SP_ELx, all masked), so NZCV = 0 there, while an exception
 *      entry keeps the flags (the lab keeps them); the interrupted NZCV is in SPSR_EL1.
 * Two different NZCV/DAIF patterns are used so that a stale value cannot pass.
 *
 * Deliberate differences from TFTF: EL1 instead of EL2 (CurrentEL checked; no SCTLR_EL2/HCR_EL2
 * PAN variants); the handler argument selects COMPLETE or COMPLETE_AND_RESUME (the probe's
 * protocol) instead of TFTF's cookie 0xDEADBEEF, and x1 is checked against it; everything past
 * TFTF's DAIF/SPSel checks is an addition.  The lab's CPU is a Cortex-A57 (ARMv8.0): without
 * FEAT_PAN (ID_AA64MMFR1_EL1.PAN = 0) and FEAT_DIT (ID_AA64PFR0_EL1.DIT = 0) those parts are
 * skipped, as TFTF skips them; a CPU that has them fails here, as this port has no EL1 version
 * of those checks.
 */
#include "sdei.h"

#define PSTATE_NZCV_MASK    0xF0000000ull
#define PSTATE_DAIF_MASK    0x3C0ull
#define PSTATE_M_MASK       0x1Full         /* M[4] = 0 (AArch64), M[3:0] = EL and SP */
#define PSTATE_EL1H         0x5ull
#define DAIF_ALL_MASKED     0x3C0           /* TFTF's all_interrupts_masked */
#define CURRENTEL_EL1       (1 << 2)        /* CurrentEL.EL in bits [3:2] */
#define SPSR_CANARY         0x600003C4ull   /* SPSR_EL1 before signalling: a recognisable valid value */

#define ARG_COMPLETE        0               /* sdei_probe_entrypoint: x1 selects how it ends */
#define ARG_RESUME          1

struct run {
    const char *name;
    uint64_t arg;
    uint64_t nzcv;                          /* PSTATE bits 31:28 as set before the conduit */
    uint64_t daif;                          /* PSTATE bits 9:6 */
};

static const struct run runs[] = {
    {"COMPLETE", ARG_COMPLETE, 0xA0000000, 0x280},                 /* N, C; D, I */
    {"COMPLETE_AND_RESUME", ARG_RESUME, 0x50000000, 0x140},        /* Z, V; A, F */
};

static void put_field(const char *name, uint64_t v)
{
    puts(name);
    puts(" = ");
    if (v < 10)
        put_udec(v);            /* 0, 1: SPSel, x0, x1 */
    else
        put_hex(v);
}

static unsigned preserved_x4_x17(const struct sdei_probe_regs *r)
{
    unsigned n = 0;
    for (unsigned i = 4; i < SDEI_NUM_SAVED_GPREGS; i++)
        n += r->x[i] == SDEI_PROBE_PATTERN((uint64_t)i);
    return n;
}

/* The handler's entry state (sdei_probe_entry) for one run. */
static bool check_entry(const struct run *run, const struct sdei_probe_regs *e)
{
    uint64_t pc = (uint64_t)(uintptr_t)sdei_signal_probe_return;
    uint64_t interrupted = run->nzcv | run->daif | PSTATE_EL1H;
    unsigned kept = preserved_x4_x17(e);
    puts("  handler entry: ");
    put_field("DAIF", e->daif);
    put_field(", SPSel", e->spsel);
    puts(e->currentel == CURRENTEL_EL1 ? ", CurrentEL = EL1" : ", CurrentEL = ?");
    put_field(", NZCV", e->nzcv);
    putc('\n');
    puts("  handler entry: ");
    put_field("x0", e->x[0]);
    put_field(", x1", e->x[1]);
    puts(e->x[2] == pc ? ", x2 = the interrupted PC" : ", x2 = ?");
    put_field(", x3", e->x[3]);
    puts(", x4..x17 kept: ");
    put_udec(kept);
    puts(" of 14\n");
    return expect_eq("handler entry recorded", e->valid, 1)
        && expect_eq("DAIF at entry", e->daif, DAIF_ALL_MASKED)
        && expect_eq("SPSel at entry", e->spsel, 1)
        && expect_eq("CurrentEL at entry", e->currentel, CURRENTEL_EL1)
        && expect_eq("NZCV at entry (unchanged)", e->nzcv, run->nzcv)
        && expect_eq("x0 at entry (event)", e->x[0], SDEI_EVENT_SW_SIGNALLED)
        && expect_eq("x1 at entry (argument)", e->x[1], run->arg)
        && expect_eq("x2 at entry (interrupted PC)", e->x[2], pc)
        && expect_eq("x3 at entry (interrupted PSTATE: NZCV, DAIF, M)",
                      e->x[3] & (PSTATE_NZCV_MASK | PSTATE_DAIF_MASK | PSTATE_M_MASK), interrupted)
        && expect_eq("x4..x17 at entry as interrupted", kept, 14)
        && expect_eq("ELR_EL1 at entry (untouched)", e->elr, SDEI_PROBE_ELR_CANARY)
        && expect_eq("SPSR_EL1 at entry (untouched)", e->spsr, SPSR_CANARY);
}

/* The state right after the conduit (sdei_probe_after), reached by COMPLETE or by
 * COMPLETE_AND_RESUME to the interrupted PC. */
static bool check_after(const struct run *run, const struct sdei_probe_regs *a, const struct sdei_probe_regs *e)
{
    uint64_t pc = (uint64_t)(uintptr_t)sdei_signal_probe_return;
    bool resume = run->arg == ARG_RESUME;
    unsigned kept = preserved_x4_x17(a);
    bool x1_x3 = a->x[1] == SDEI_EVENT_SW_SIGNALLED && a->x[2] == my_mpidr() && a->x[3] == 0;
    puts("  after ");
    puts(run->name);
    puts(": ");
    put_field("x0", a->x[0]);
    puts(x1_x3 ? ", x1..x3 restored" : ", x1..x3 = ?");
    puts(", x4..x17 restored: ");
    put_udec(kept);
    puts(" of 14\n");
    puts("  after ");
    puts(run->name);
    puts(": ");
    put_field("DAIF", a->daif);
    put_field(", SPSel", a->spsel);
    if (!resume)
        put_field(", NZCV", a->nzcv);
    if (a->elr == SDEI_PROBE_ELR_CANARY)
        puts(", ELR_EL1 untouched");
    else
        puts(a->elr == pc ? ", ELR_EL1 = the interrupted PC" : ", ELR_EL1 = ?");
    if (a->spsr == SPSR_CANARY)
        puts(", SPSR_EL1 untouched\n");
    else
        puts(a->spsr == e->x[3] ? ", SPSR_EL1 = the interrupted PSTATE\n" : ", SPSR_EL1 = ?\n");
    bool ok = expect_eq("state after the conduit recorded", a->valid, 1)
           && expect_eq("x0 after (SIGNAL's result)", a->x[0], 0)
           && expect_eq("x1 after (event, as interrupted)", a->x[1], SDEI_EVENT_SW_SIGNALLED)
           && expect_eq("x2 after (target, as interrupted)", a->x[2], my_mpidr())
           && expect_eq("x3 after (as interrupted)", a->x[3], 0)
           && expect_eq("x4..x17 after as interrupted", kept, 14)
           && expect_eq("SPSel after", a->spsel, 1)
           && expect_eq("CurrentEL after", a->currentel, CURRENTEL_EL1);
    if (!ok)
        return false;
    if (!resume)    /* COMPLETE: the interrupted PSTATE comes back; ELR/SPSR are the client's */
        return expect_eq("NZCV after COMPLETE", a->nzcv, run->nzcv)
            && expect_eq("DAIF after COMPLETE", a->daif, run->daif)
            && expect_eq("ELR_EL1 after COMPLETE (untouched)", a->elr, SDEI_PROBE_ELR_CANARY)
            && expect_eq("SPSR_EL1 after COMPLETE (untouched)", a->spsr, SPSR_CANARY);
    /* COMPLETE_AND_RESUME: a synchronous exception taken from the interrupted context */
    return expect_eq("DAIF after COMPLETE_AND_RESUME", a->daif, DAIF_ALL_MASKED)
        && expect_eq("ELR_EL1 after COMPLETE_AND_RESUME (interrupted PC)", a->elr, pc)
        && expect_eq("SPSR_EL1 after COMPLETE_AND_RESUME (interrupted PSTATE = handler x3)", a->spsr, e->x[3]);
}

static bool signal_and_check(const struct run *run)
{
    unsigned me = cpu_index();
    struct sdei_probe_regs *e = &sdei_probe_entry[me];
    struct sdei_probe_regs *a = &sdei_probe_after[me];
    e->valid = 0;
    a->valid = 0;
    write_sysreg(spsr_el1, SPSR_CANARY);
    int64_t ret = sdei_signal_probe(SDEI_EVENT_SW_SIGNALLED, my_mpidr(), run->nzcv, run->daif);
    bool handled = sdei_handler_done(1);    /* a signal to self is taken on the way out of SIGNAL */
    puts("  ");
    put_field("NZCV", run->nzcv);
    put_field(", DAIF", run->daif);
    puts(", then EVENT_SIGNAL(0, self) = ");
    print_ret(ret);
    puts(handled ? ", handler ran\n" : ", no handler\n");
    if (!expect_ret("EVENT_SIGNAL(0, self)", ret, 0) || !expect_true("the handler ran", handled))
        return false;
    bool ok = check_entry(run, e);
    return check_after(run, a, e) && ok;
}

static bool register_enable(uint64_t arg)
{
    return expect_ret("EVENT_REGISTER(0)", sdei_event_register(SDEI_EVENT_SW_SIGNALLED, sdei_probe_entrypoint,
                                                                arg, SDEI_REGF_RM_PE, my_mpidr()), 0)
        && expect_ret("EVENT_ENABLE(0)", sdei_event_enable(SDEI_EVENT_SW_SIGNALLED), 0);
}

/* FEAT_PAN / FEAT_DIT: TFTF runs those parts only when the feature exists. */
static void feature_checks(void)
{
    uint64_t pan = (read_sysreg(id_aa64mmfr1_el1) >> 20) & 0xf;
    uint64_t dit = (read_sysreg(id_aa64pfr0_el1) >> 48) & 0xf;
    puts("ID_AA64MMFR1_EL1.PAN = ");
    put_udec(pan);
    puts(pan ? ": FEAT_PAN present\n" : ": no FEAT_PAN, the PAN checks are skipped (as TFTF does)\n");
    puts("ID_AA64PFR0_EL1.DIT = ");
    put_udec(dit);
    puts(dit ? ": FEAT_DIT present\n" : ": no FEAT_DIT, the DIT checks are skipped (as TFTF does)\n");
    expect_eq("ID_AA64MMFR1_EL1.PAN (this port has no EL1 PAN checks)", pan, 0);
    expect_eq("ID_AA64PFR0_EL1.DIT (this port has no DIT checks)", dit, 0);
}

int main(void)
{
    test_begin("tftf_pstate", "TFTF test_sdei_event_check_pstate, handler entry and return state at EL1");

    unsigned before = test_failure_count();
    test_step("EVENT_REGISTER(0, argument 0), EVENT_ENABLE(0), PE_UNMASK");
    if (!register_enable(ARG_COMPLETE) || !expect_ret("PE_UNMASK", sdei_pe_unmask(), 0)) {
        step_done(before);
        test_finish();
    }
    step_done(before);

    before = test_failure_count();
    test_step("signal, handler entry, COMPLETE");
    signal_and_check(&runs[0]);
    step_done(before);

    before = test_failure_count();
    test_step("EVENT_UNREGISTER(0), EVENT_REGISTER(0, argument 1), EVENT_ENABLE(0)");
    if (!expect_ret("EVENT_UNREGISTER(0)", sdei_event_unregister(SDEI_EVENT_SW_SIGNALLED), 0)
        || !register_enable(ARG_RESUME)) {
        step_done(before);
        test_finish();
    }
    step_done(before);

    before = test_failure_count();
    test_step("signal, handler entry, COMPLETE_AND_RESUME");
    signal_and_check(&runs[1]);
    step_done(before);

    before = test_failure_count();
    test_step("FEAT_PAN, FEAT_DIT");
    feature_checks();
    step_done(before);

    before = test_failure_count();
    test_step("PE_MASK, EVENT_DISABLE(0), EVENT_UNREGISTER(0)");
    expect_ret("PE_MASK", sdei_pe_mask(), 1);
    expect_ret("EVENT_DISABLE(0)", sdei_event_disable(SDEI_EVENT_SW_SIGNALLED), 0);
    expect_ret("EVENT_UNREGISTER(0)", sdei_event_unregister(SDEI_EVENT_SW_SIGNALLED), 0);
    step_done(before);
    test_finish();
}
