/*
 * tftf_signal_all.c - TFTF test_sdei_event_signal_all (test_sdei.c): one core signals the
 * software event 0 to every other core (reference section 2.10 and section 4, test 6).
 *
 * As in TFTF: the lead (CPU 0) powers each other CPU on in turn (PSCI CPU_ON) and waits for its
 * "ready" report; each secondary registers event 0 (sdei_entrypoint_resume, cookie 0xDEADBEEF,
 * RM_PE, its own MPIDR), enables it, unmasks the PE, reports ready and waits for its handler.
 * When all are ready the lead issues EVENT_SIGNAL(0, target MPIDR) to each in turn; every
 * SIGNAL must return >= 0.  Each secondary's handler runs (TFTF asserts the cookie), the
 * secondary masks the PE, disables and unregisters event 0 and powers off (CPU_OFF).
 *
 * Differences from TFTF, all additions: the handler's x0 (event 0) is checked besides the
 * cookie in x1, and each handler must run exactly once; the secondaries' REGISTER, ENABLE,
 * UNMASK, MASK, DISABLE and UNREGISTER must each return 0 (TFTF: >= 0); the lead waits for
 * each secondary to be OFF (AFFINITY_INFO), as TFTF's framework does at the end of a test.
 * A secondary's bounded wait for its handler starts when the lead says the signals are coming
 * (`signals_coming`), not when the secondary is ready: the lead powers the others on one at a
 * time, and under QEMU and TF-A bringing up seven more CPUs outlasts any fixed spin count, so
 * the first secondaries gave up before their signal (their spin counts suit the lab's scheduler,
 * not a host's threads).  That wait has no bound of its own: the lead either gives the word or
 * ends the run (test_finish powers the system off).  Every other wait is bounded, so a missing
 * handler is a FAIL verdict rather than a hang.  With one CPU there is nothing to signal: TFTF
 * passes vacuously, this port fails.
 *
 * Output: only the lead prints, from points whose order the scenario fixes (after a ready
 * report, after each SIGNAL, after a CPU is OFF); the secondaries record what they saw.
 */
#include "sdei.h"

#define EV_COOKIE       0xDEADBEEF
#define READY_SPINS     (4 * (uint64_t)SDEI_WAIT_SPINS)

static volatile uint64_t cpu_ready[MAX_CPUS];       /* TFTF: event_t cpu_ready[] */
static volatile uint64_t signals_coming;            /* set by the lead once every CPU is ready */

/* What each secondary saw, written by that CPU only, read by the lead after `cpu_ready` or
 * after the CPU is OFF (cpu_wait_off orders the reads after the CPU's last writes). */
static volatile bool setup_ok[MAX_CPUS];
static volatile bool handled_ok[MAX_CPUS];
static volatile bool cleanup_ok[MAX_CPUS];
static volatile int64_t handler_ev[MAX_CPUS];
static volatile uint64_t handler_arg[MAX_CPUS];
static volatile uint32_t handler_runs[MAX_CPUS];

/* Called by sdei_entrypoint_resume on the signalled CPU; it then resumes the interrupted
 * code (the wait in sdei_handler_done) with COMPLETE_AND_RESUME.  No printing here. */
int sdei_event_handler(int64_t ev, uint64_t arg, uint64_t pc, uint64_t pstate)
{
    (void)pc, (void)pstate;
    unsigned me = cpu_index();
    handler_ev[me] = ev;
    handler_arg[me] = arg;
    handler_runs[me]++;
    return 0;
}

/* TFTF sdei_wait_for_event_signal, on each secondary. */
static void wait_for_event_signal(uint64_t unused)
{
    (void)unused;
    unsigned me = cpu_index();
    handler_ev[me] = -1;
    handler_arg[me] = 0;
    handler_runs[me] = 0;

    test_step("register, enable, unmask");
    bool ok = expect_ret("EVENT_REGISTER(0)", sdei_event_register(SDEI_EVENT_SW_SIGNALLED, sdei_entrypoint_resume,
                                                                  EV_COOKIE, SDEI_REGF_RM_PE, my_mpidr()), 0)
           && expect_ret("EVENT_ENABLE(0)", sdei_event_enable(SDEI_EVENT_SW_SIGNALLED), 0)
           && expect_ret("PE_UNMASK", sdei_pe_unmask(), 0);
    setup_ok[me] = ok;
    store_release(&cpu_ready[me], 1);       /* reported even on failure: the lead must not hang */

    test_step("wait for the handler");
    while (!load_acquire(&signals_coming))  /* the handler may run meanwhile: its flag waits */
        ;
    if (ok) {
        ok = expect_true("the handler ran", sdei_handler_done(SDEI_WAIT_SPINS))
          && expect_eq("handler x0 (event)", handler_ev[me], SDEI_EVENT_SW_SIGNALLED)
          && expect_eq("handler x1 (argument)", (int64_t)handler_arg[me], EV_COOKIE);
    }
    handled_ok[me] = ok;

    test_step("mask, disable, unregister");
    bool clean = expect_ret("PE_MASK", sdei_pe_mask(), 1)       /* 1: this call masked the PE */
              && expect_ret("EVENT_DISABLE(0)", sdei_event_disable(SDEI_EVENT_SW_SIGNALLED), 0)
              && expect_ret("EVENT_UNREGISTER(0)", sdei_event_unregister(SDEI_EVENT_SW_SIGNALLED), 0)
              && expect_eq("handler runs", handler_runs[me], 1);
    cleanup_ok[me] = clean;
    /* Returning powers this CPU off (CPU_OFF). */
}

static bool wait_ready(unsigned cpu)
{
    for (uint64_t spin = 0; spin < READY_SPINS; spin++)
        if (load_acquire(&cpu_ready[cpu]))
            return true;
    test_fail("timeout waiting for the CPU's ready report");
    return false;
}

static void print_cpu_line(unsigned cpu, const char *what, bool ok)
{
    puts("CPU ");
    put_udec(cpu);
    puts(": ");
    puts(what);
    puts(ok ? ": ok\n" : ": FAILED\n");
}

int main(void)
{
    test_begin("tftf_signal_all", "TFTF test_sdei_event_signal_all, one core signals event 0 to all others");
    test_step("count the CPUs");
    unsigned cpus = test_cpu_count();
    if (!expect_true("at least 2 CPUs", cpus >= 2))
        test_finish();

    /* Power each secondary on and wait for its ready report, one at a time (TFTF). */
    test_step("CPU_ON and wait for ready");
    for (unsigned cpu = 1; cpu < cpus; cpu++) {
        if (!cpu_run(cpu, wait_for_event_signal, 0) || !wait_ready(cpu))
            test_finish();
        print_cpu_line(cpu, "EVENT_REGISTER(0), EVENT_ENABLE(0), PE_UNMASK, ready", setup_ok[cpu]);
    }

    /* Signal every secondary from the lead. */
    test_step("EVENT_SIGNAL");
    store_release(&signals_coming, 1);
    for (unsigned cpu = 1; cpu < cpus; cpu++) {
        int64_t ret = sdei_event_signal(SDEI_EVENT_SW_SIGNALLED, cpu_mpidr(cpu));
        puts("EVENT_SIGNAL(0, ");
        put_hex(cpu_mpidr(cpu));
        puts(") = ");
        print_ret(ret);
        putc('\n');
        expect_true("EVENT_SIGNAL(0, target) >= 0", ret >= 0);
    }

    /* Each secondary handles the event, cleans up and powers off. */
    test_step("wait for OFF");
    for (unsigned cpu = 1; cpu < cpus; cpu++) {
        bool off = cpu_wait_off(cpu);
        print_cpu_line(cpu, "handler ran with x0 = 0, x1 = 0xdeadbeef", handled_ok[cpu]);
        print_cpu_line(cpu, "PE_MASK, EVENT_DISABLE(0), EVENT_UNREGISTER(0), handler ran once", cleanup_ok[cpu]);
        print_cpu_line(cpu, "OFF (AFFINITY_INFO)", off);
        if (!off)
            break;
    }
    test_finish();
}
