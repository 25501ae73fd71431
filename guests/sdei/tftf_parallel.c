/*
 * tftf_parallel.c - TFTF test_sdei_event_parallel (test_sdei.c): "SDEI event handling on all
 * cores in parallel" (reference section 4, row 3).
 *
 * What TFTF does: IRQs off; the lead binds the per-CPU hypervisor physical timer PPI
 * (IRQ_PCPU_HP_TIMER), which gives one *private* event, powers on every other CPU (CPU_ON, no
 * wait), and then every CPU, the lead included, runs sdei_event() at once behind a barrier on a
 * shared counter: REGISTER(bound event, sdei_entrypoint_resume, cookie 0xDEADBEEF, RM_PE, own
 * MPIDR), ENABLE, PE_UNMASK, start its private timer (10 ms), wait for the handler (which asserts
 * the cookie and stops the timer), PE_MASK, DISABLE, UNREGISTER.  The lead then polls
 * AFFINITY_INFO until every other CPU is OFF and RELEASEs the binding.
 *
 * The point: a private event has independent registration state on every PE (reference 2.1),
 * so four PEs register, enable and take the same event number at the same time; a shared event
 * would refuse the second REGISTER (DENIED).
 *
 * Deliberate differences from TFTF:
 *  - the PPI is the EL1 physical timer (INTID 30), the one this EL1 guest owns (TFTF runs at
 *    EL2 and uses the EL2 timer); it fires after 12500 counts = 200 us (CNTFRQ 62.5 MHz)
 *    instead of 10 ms;
 *  - a second barrier after ENABLE holds every CPU until all four registrations exist at once,
 *    and each CPU checks EVENT_STATUS = registered + enabled (3) there: without it, the
 *    registrations would overlap only as the scheduler happens to interleave the CPUs;
 *  - the handler also checks x0 (the event number) and counts its runs per CPU, PE_MASK must
 *    return exactly 1 (TF-A: it masked an unmasked PE), the other calls >= 0 as in TFTF;
 *  - nothing is printed while the CPUs run concurrently (the order would depend on scheduling):
 *    each CPU records its results and the lead prints them in CPU order after joining; only a
 *    failed check prints at once (under print_lock);
 *  - the guest's IRQs stay masked throughout (TFTF's disable_irq()).
 */
#include "sdei.h"

#define TIMER_COUNTS    12500       /* CNTP counts at 62.5 MHz: 200 us (TFTF: 10 ms) */
#define EV_COOKIE       0xDEADBEEF  /* TFTF's handler argument; its handler asserts it */
#define BARRIER_SPINS   20000000    /* far longer than 4 CPUs take to arrive; bounded all the same */

static int64_t bound_ev;            /* the private event INTERRUPT_BIND(30) gave */
static struct sdei_intr_ctx intr_ctx;
static unsigned participants;       /* CPUs taking part: all of them (TFTF's participating_cpu_count) */

static volatile uint64_t arrived_start, arrived_enabled;   /* the barriers' counters */
static volatile uint32_t handler_runs[MAX_CPUS];           /* by the CPU the handler ran on */
static volatile int64_t handler_ev[MAX_CPUS];              /* x0 at the last run there */
static volatile uint64_t cpu_ok[MAX_CPUS];                 /* 1: every check on that CPU passed */


/* Arrive, then wait until every participant has (TFTF wait_for_participating_cpus). */
static bool barrier(volatile uint64_t *arrived)
{
    __atomic_fetch_add(arrived, 1, __ATOMIC_ACQ_REL);
    for (uint64_t spins = 0; spins < BARRIER_SPINS; spins++)
        if (load_acquire(arrived) == participants)
            return true;
    test_fail("barrier: not every CPU arrived");
    return false;
}

/* Called by sdei_entrypoint_resume on each CPU, possibly on several CPUs at the same time. */
int sdei_event_handler(int64_t ev, uint64_t arg, uint64_t pc, uint64_t pstate)
{
    (void)pc, (void)pstate;
    unsigned me = cpu_index();
    cntp_stop();                    /* TFTF private_timer_stop: this CPU's PPI drops */
    handler_ev[me] = ev;
    handler_runs[me]++;
    expect_eq("handler x1 (cookie)", (int64_t)arg, EV_COOKIE);
    return 0;
}

/* TFTF sdei_event(), on every CPU at once. */
static void sdei_event(uint64_t unused)
{
    (void)unused;
    unsigned me = cpu_index();
    bool ok = false;
    test_step("private event handled in parallel");
    if (!barrier(&arrived_start))
        return;
    int64_t ret = sdei_event_register(bound_ev, sdei_entrypoint_resume, EV_COOKIE, SDEI_REGF_RM_PE, my_mpidr());
    if (call_ok("EVENT_REGISTER", ret)) {
        if (call_ok("EVENT_ENABLE", sdei_event_enable(bound_ev))) {
            ok = barrier(&arrived_enabled)
                && expect_eq("EVENT_STATUS with all CPUs registered", sdei_event_status(bound_ev),
                             SDEI_STATUS_REGISTERED | SDEI_STATUS_ENABLED)
                && call_ok("PE_UNMASK", sdei_pe_unmask());
            if (ok) {
                cntp_start(TIMER_COUNTS);
                if (!sdei_handler_done(SDEI_WAIT_SPINS)) {
                    cntp_stop();
                    test_fail("the SDEI handler did not run");
                    ok = false;
                }
                ok = expect_ret("PE_MASK (1: it was unmasked)", sdei_pe_mask(), 1) && ok;
            }
            ok = call_ok("EVENT_DISABLE", sdei_event_disable(bound_ev)) && ok;
        }
        ok = call_ok("EVENT_UNREGISTER", sdei_event_unregister(bound_ev)) && ok;
    }
    store_release(&cpu_ok[me], ok);
}

int main(void)
{
    test_begin("tftf_parallel", "TFTF test_sdei_event_parallel, a private PPI event handled on all cores at once");
    participants = test_cpu_count();

    bound_ev = sdei_interrupt_bind_ctx(TIMER_PHYS_INTID, &intr_ctx);
    puts("INTERRUPT_BIND(30) = ");
    print_ret(bound_ev);
    putc('\n');
    if (!expect_true("INTERRUPT_BIND(30) >= 0", bound_ev >= 0))
        test_finish();
    expect_eq("EVENT_GET_INFO(EV_TYPE) (private)", sdei_event_get_info(bound_ev, SDEI_INFO_EV_TYPE), 0);

    /* Start the others without waiting, then take part; they wait at the barrier. */
    for (unsigned cpu = 1; cpu < participants; cpu++)
        if (!cpu_run(cpu, sdei_event, 0))
            test_finish();          /* the started ones would wait at the barrier for ever */
    sdei_event(0);
    for (unsigned cpu = 1; cpu < participants; cpu++)
        cpu_wait_off(cpu);

    /* Joined: print what every CPU recorded, in CPU order. */
    test_step("summary");
    for (unsigned cpu = 0; cpu < participants; cpu++) {
        puts("CPU ");
        put_udec(cpu);
        puts(": handler ran ");
        put_udec(handler_runs[cpu]);
        puts(" time(s), event ");
        print_ret(handler_ev[cpu]);
        puts(load_acquire(&cpu_ok[cpu]) ? ": ok\n" : ": FAILED\n");
        char step[] = "summary of CPU n";
        step[sizeof(step) - 2] = (char)('0' + cpu);     /* cpu < MAX_CPUS = 8 */
        test_step(step);
        expect_eq("handler runs", handler_runs[cpu], 1);
        expect_eq("handler x0 (event)", handler_ev[cpu], bound_ev);
        expect_true("every call and check on that CPU passed", load_acquire(&cpu_ok[cpu]));
        test_step("summary");
    }

    test_release_binding(bound_ev, &intr_ctx);
    test_finish();
}
