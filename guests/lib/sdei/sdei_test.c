/*
 * sdei_test.c - bookkeeping shared by the SDEI scenarios: checks that remember the first
 * failure, the verdict line, running functions on other CPUs, and exception handlers that turn
 * anything unexpected into a FAIL verdict instead of a silent power-off.
 *
 * Output must not depend on timing (the expected output is compared byte for byte), so only
 * one CPU prints at a time (print_lock) and the scenarios print from code whose order is fixed
 * by the test itself, never from SDEI handlers.
 */
#include "sdei.h"

static const char *test_name = "sdei";
static const char *volatile steps[MAX_CPUS];

static spinlock_t print_spin;
static volatile uint32_t print_owner = 0xffffffff;
static uint32_t print_depth;

static spinlock_t fail_spin;
static volatile uint32_t failures;
static char first_failure[192];
static unsigned first_len;

volatile uint32_t irq_spurious_count[MAX_CPUS];
volatile uint64_t irq_last_elr[MAX_CPUS];
volatile uint64_t irq_last_spsr[MAX_CPUS];

/* ------------------------------------------------------------------ printing */

void print_lock(void)
{
    uint32_t me = cpu_index();
    if (__atomic_load_n(&print_owner, __ATOMIC_RELAXED) == me) {    /* an SDEI handler on this CPU */
        print_depth++;
        return;
    }
    spin_lock(&print_spin);
    print_owner = me;
    print_depth = 1;
}

void print_unlock(void)
{
    if (--print_depth == 0) {
        print_owner = 0xffffffff;
        spin_unlock(&print_spin);
    }
}

/* Values up to +-1,000,000 in decimal (return codes, counts, event numbers), others in hex. */
static bool small(int64_t v) { return v >= -1000000 && v <= 1000000; }

static void put_value(int64_t v)
{
    if (small(v))
        put_dec(v);
    else
        put_hex((uint64_t)v);
}

void print_ret(int64_t ret)
{
    put_value(ret);
    const char *name = ret < 0 ? sdei_ret_name(ret) : NULL;
    if (name) {
        puts(" (");
        puts(name);
        putc(')');
    }
}

/* ------------------------------------------------------------------ the first failure, as text */

static void fb_puts(const char *s)
{
    while (*s && first_len < sizeof(first_failure) - 1)
        first_failure[first_len++] = *s++;
    first_failure[first_len] = '\0';
}

static void fb_value(int64_t v, bool ret)
{
    char buf[24];
    int i = sizeof(buf) - 1;
    buf[i] = '\0';
    uint64_t u;
    if (small(v)) {
        u = v < 0 ? -(uint64_t)v : (uint64_t)v;
        do {
            buf[--i] = (char)('0' + u % 10);
            u /= 10;
        } while (u);
        if (v < 0)
            buf[--i] = '-';
    } else {
        u = (uint64_t)v;
        do {
            buf[--i] = "0123456789abcdef"[u & 0xf];
            u >>= 4;
        } while (u);
        buf[--i] = 'x';
        buf[--i] = '0';
    }
    fb_puts(&buf[i]);
    const char *name = ret && v < 0 ? sdei_ret_name(v) : NULL;
    if (name) {
        fb_puts(" (");
        fb_puts(name);
        fb_puts(")");
    }
}

static void fail_where(unsigned cpu, const char *step)
{
    fb_puts("CPU ");
    fb_value(cpu, false);
    if (step) {
        fb_puts(": ");
        fb_puts(step);
    }
    fb_puts(": ");
}

static void print_where(unsigned cpu, const char *step)
{
    puts("  CPU ");
    put_udec(cpu);
    if (step) {
        puts(": ");
        puts(step);
    }
    puts(": ");
}

static void record(const char *what, bool has_values, int64_t got, int64_t want, bool ret)
{
    unsigned cpu = cpu_index();
    const char *step = steps[cpu];
    spin_lock(&fail_spin);
    if (failures++ == 0) {
        fail_where(cpu, step);
        fb_puts(what);
        if (has_values) {
            fb_puts(" = ");
            fb_value(got, ret);
            fb_puts(", expected ");
            fb_value(want, ret);
        }
    }
    spin_unlock(&fail_spin);
    print_lock();
    print_where(cpu, step);
    puts("FAIL: ");
    puts(what);
    if (has_values) {
        puts(" = ");
        if (ret)
            print_ret(got);
        else
            put_value(got);
        puts(", expected ");
        if (ret)
            print_ret(want);
        else
            put_value(want);
    }
    putc('\n');
    print_unlock();
}

void test_step(const char *step) { steps[cpu_index()] = step; }

bool step_done(unsigned failures_before)
{
    unsigned me = cpu_index();
    bool ok = test_failure_count() == failures_before;
    print_lock();
    puts("CPU ");
    put_udec(me);
    puts(": ");
    puts(steps[me] ? steps[me] : "");
    puts(ok ? ": ok\n" : ": FAILED\n");
    print_unlock();
    return ok;
}

bool expect_eq(const char *what, int64_t got, int64_t want)
{
    if (got == want)
        return true;
    record(what, true, got, want, false);
    return false;
}

bool expect_ret(const char *what, int64_t got, int64_t want)
{
    if (got == want)
        return true;
    record(what, true, got, want, true);
    return false;
}

bool call_ok(const char *what, int64_t ret)
{
    return ret >= 0 || expect_ret(what, ret, SDEI_RET_SUCCESS);
}

void test_release_binding(int64_t ev, const struct sdei_intr_ctx *ctx)
{
    if (test_failed()) {
        /* TFTF's err0 path: leave no registration or binding behind. */
        sdei_private_reset();
        sdei_shared_reset();
        sdei_interrupt_release_ctx(ev, ctx);
        test_finish();
    }
    int64_t ret = sdei_interrupt_release_ctx(ev, ctx);
    puts("INTERRUPT_RELEASE = ");
    print_ret(ret);
    putc('\n');
    call_ok("INTERRUPT_RELEASE", ret);
}

bool expect_true(const char *what, bool ok)
{
    if (!ok)
        record(what, false, 0, 0, false);
    return ok;
}

void test_fail(const char *what) { record(what, false, 0, 0, false); }

bool test_failed(void) { return __atomic_load_n(&failures, __ATOMIC_ACQUIRE) != 0; }

unsigned test_failure_count(void) { return __atomic_load_n(&failures, __ATOMIC_ACQUIRE); }

void test_begin(const char *name, const char *title)
{
    test_name = name;
    test_step("SDEI_VERSION");
    puts(name);
    puts(": ");
    puts(title);
    putc('\n');
    int64_t version = sdei_version();
    puts("SDEI_VERSION = ");
    print_ret(version);
    putc('\n');
    /* TFTF skips every SDEI test unless the version is exactly 1.0.0; here that is a failure. */
    if (!expect_eq("SDEI_VERSION (TFTF runs only on 1.0.0)", version, SDEI_VERSION_1_0_0))
        test_finish();
}

void test_finish(void)
{
    print_lock();
    puts(test_name);
    if (test_failed()) {
        puts(": FAIL (");
        puts(first_failure);
        puts(")\n");
    } else {
        puts(": PASS\n");
    }
    print_unlock();
    psci_system_off();
}

/* ------------------------------------------------------------------ other CPUs */

static secondary_fn_t run_fn[MAX_CPUS];
static volatile uint64_t run_done[MAX_CPUS];

static void cpu_trampoline(uint64_t arg)
{
    unsigned me = cpu_index();
    secondary_fn_t fn = run_fn[me];
    test_step(NULL);
    fn(arg);
    store_release(&run_done[me], 1);
    /* returning to secondary_entry powers this CPU off (PSCI CPU_OFF) */
}

bool cpu_run(unsigned cpu, secondary_fn_t fn, uint64_t arg)
{
    run_fn[cpu] = fn;
    store_release(&run_done[cpu], 0);
    int64_t ret = cpu_start(cpu, cpu_trampoline, arg);
    return expect_ret("PSCI CPU_ON", ret, PSCI_RET_SUCCESS);
}

/* The CPU's function sets run_done just before CPU_OFF; polling memory first keeps the
 * number of AFFINITY_INFO calls small (TFTF polls AFFINITY_INFO alone). */
bool cpu_wait_off(unsigned cpu)
{
    for (uint64_t spin = 0; !load_acquire(&run_done[cpu]); spin++) {
        if (spin > 4 * (uint64_t)SDEI_WAIT_SPINS) {
            test_fail("timeout waiting for the CPU to finish");
            return false;
        }
    }
    for (unsigned tries = 0; tries < 100000; tries++) {
        int64_t state = psci_affinity_info(cpu_mpidr(cpu), 0);
        if (state == PSCI_AFF_OFF)
            return true;
        if (state < 0)
            return expect_ret("PSCI AFFINITY_INFO", state, PSCI_AFF_OFF);
        for (volatile int delay = 0; delay < 200; delay++)
            ;
    }
    test_fail("CPU did not reach OFF after its function returned");
    return false;
}

bool cpu_run_and_wait(unsigned cpu, secondary_fn_t fn, uint64_t arg)
{
    return cpu_run(cpu, fn, arg) && cpu_wait_off(cpu);
}

unsigned test_cpu_count(void)
{
    unsigned n = 1;
    while (n < MAX_CPUS && psci_affinity_info(cpu_mpidr(n), 0) >= 0)
        n++;
    return n;
}

/* ------------------------------------------------------------------ exceptions */

/* COMPLETE or COMPLETE_AND_RESUME returned to the handler: the dispatcher refused it. */
void sdei_complete_returned(int64_t ret, uint64_t fid) __attribute__((noreturn));
void sdei_complete_returned(int64_t ret, uint64_t fid)
{
    record(fid == SDEI_EVENT_COMPLETE ? "COMPLETE returned to the handler"
                                      : "COMPLETE_AND_RESUME returned to the handler",
           true, ret, 0, true);
    test_finish();
}

void handle_sync(uint64_t esr, uint64_t elr, uint64_t far)
{
    /* A second fault while reporting the first (e.g. an SMC build on a platform where SMC is
     * UNDEFINED: SYSTEM_OFF is an SMC too) must not recurse: park this CPU, and the machine
     * ends the run (every CPU waiting) instead of spinning until the instruction budget. */
    static volatile uint32_t reporting[MAX_CPUS];
    if (reporting[cpu_index()]++)
        for (;;)
            __asm__ volatile("msr daifset, #0xf\n wfi");
    print_lock();
    puts("  unexpected synchronous exception: ESR_EL1 = ");
    put_hex(esr);
    puts(", ELR_EL1 = ");
    put_hex(elr);
    puts(", FAR_EL1 = ");
    put_hex(far);
    putc('\n');
    print_unlock();
    test_fail("unexpected synchronous exception");
    test_finish();
}

/* The guests enable no interrupt of their own: an IRQ exception is an SDEI client's
 * COMPLETE_AND_RESUME at the IRQ vector (Linux's "pretend it was an IRQ"), which finds
 * nothing to acknowledge.  Record it, and return: ERET goes back to ELR_EL1/SPSR_EL1. */
void handle_irq(void)
{
    unsigned me = cpu_index();
    uint32_t intid = gic_iar();
    if (intid == GIC_SPURIOUS_INTID) {
        irq_last_elr[me] = read_sysreg(elr_el1);
        irq_last_spsr[me] = read_sysreg(spsr_el1);
        irq_spurious_count[me]++;
        return;
    }
    gic_eoir(intid);
    record("unexpected IRQ, INTID", true, intid, GIC_SPURIOUS_INTID, false);
    test_finish();
}

void handle_fiq(void)
{
    test_fail("unexpected FIQ");
    test_finish();
}

void handle_serror(void)
{
    test_fail("unexpected SError");
    test_finish();
}

/* The scenario's handler for sdei_entrypoint/sdei_entrypoint_resume; this default fails. */
__attribute__((weak)) int sdei_event_handler(int64_t ev, uint64_t arg, uint64_t pc, uint64_t pstate)
{
    (void)ev, (void)arg, (void)pc, (void)pstate;
    test_fail("sdei_event_handler is not defined by this scenario");
    test_finish();
}
