/*
 * tftf_serial.c - TFTF test_sdei_event_serial (test_sdei.c): "SDEI event handling on all cores
 * in sequence" (reference section 4, row 2).
 *
 * What TFTF does: IRQs off; the platform timer's SPI is bound once (INTERRUPT_BIND gives one
 * shared event).  Each non-lead CPU in turn is powered on (CPU_ON; AFFINITY_INFO polled until it
 * is OFF again) and runs sdei_event(): REGISTER(bound event, sdei_entrypoint_resume, cookie
 * 0xDEADBEEF, RM_PE, its own MPIDR), ENABLE, PE_UNMASK, arm the timer, wait for the handler
 * (which asserts the cookie and cancels the timer), PE_MASK, DISABLE, UNREGISTER.  Then the lead
 * CPU does the same, and finally RELEASE.  Every call must return >= 0 and the handler must run on
 * every core.  On failure TFTF cleans up with PRIVATE_RESET, SHARED_RESET and RELEASE.
 *
 * The point: one *shared* event is re-registered with RM_PE on successive PEs, so the routing of
 * the SPI must follow each registration's affinity (reference sections 2.8 and 2.9: REGISTER
 * reprograms the SPI routing, UNREGISTER hands the interrupt back).
 *
 * Deliberate differences from TFTF:
 *  - the timer is the lab's SP804 (INTID 42), not the FVP's system timer, and it fires after
 *    200 us instead of TFTF's 10 ms (virtual time costs real time here);
 *  - the handler also checks x0 (the event number) and counts its runs per CPU (the CPU it ran
 *    on, from MPIDR_EL1): each CPU's registration must be handled on that CPU, exactly once;
 *  - PE_MASK must return exactly 1 (TF-A: this call masked an unmasked PE, reference 1.1),
 *    which shows the PE was unmasked until then; the other calls must return >= 0 as in TFTF;
 *  - the guest's IRQs are never unmasked (DAIF stays masked from reset), which is TFTF's
 *    disable_irq(): a bound interrupt reaches the guest only as the SDEI event.
 */
#include "sdei.h"

#define TIMER_TICKS     200         /* SP804 ticks of 1 us: TFTF waits 10 ms, 200 us do here */
#define EV_COOKIE       0xDEADBEEF  /* TFTF's handler argument; its handler asserts it */

static int64_t bound_ev;            /* the event INTERRUPT_BIND(42) gave, used by every CPU */
static struct sdei_intr_ctx intr_ctx;
static volatile uint32_t handler_runs[MAX_CPUS];    /* handler runs, by the CPU they ran on */


/*
 * Called by sdei_entrypoint_resume in the SDEI handler, on the CPU the event was dispatched to.
 * It prints nothing unless a check fails; the stub then marks this CPU's handled flag and
 * resumes the interrupted code (the wait loop in sdei_handler_done).
 */
int sdei_event_handler(int64_t ev, uint64_t arg, uint64_t pc, uint64_t pstate)
{
    (void)pc, (void)pstate;
    sp804_stop();                   /* TFTF tftf_cancel_timer: the level SPI drops */
    handler_runs[cpu_index()]++;
    expect_eq("handler x0 (event)", ev, bound_ev);
    expect_eq("handler x1 (cookie)", (int64_t)arg, EV_COOKIE);
    return 0;
}

/* TFTF sdei_event(): one CPU registers the shared event for itself and takes it once. */
static void sdei_event(uint64_t unused)
{
    (void)unused;
    unsigned before = test_failure_count();
    test_step("shared event handled here (RM_PE)");
    int64_t ret = sdei_event_register(bound_ev, sdei_entrypoint_resume, EV_COOKIE, SDEI_REGF_RM_PE, my_mpidr());
    if (call_ok("EVENT_REGISTER", ret)) {
        ret = sdei_event_enable(bound_ev);
        if (call_ok("EVENT_ENABLE", ret)) {
            if (call_ok("PE_UNMASK", sdei_pe_unmask())) {
                sp804_start(TIMER_TICKS);
                if (!sdei_handler_done(SDEI_WAIT_SPINS)) {
                    sp804_stop();
                    test_fail("the SDEI handler did not run");
                }
                expect_ret("PE_MASK (1: it was unmasked)", sdei_pe_mask(), 1);
            }
            call_ok("EVENT_DISABLE", sdei_event_disable(bound_ev));
        }
        /* As TFTF: unregister whatever happened above, so the next CPU can register. */
        call_ok("EVENT_UNREGISTER", sdei_event_unregister(bound_ev));
    }
    step_done(before);
}

int main(void)
{
    test_begin("tftf_serial", "TFTF test_sdei_event_serial, a shared SPI event handled on every core in turn");
    unsigned cpus = test_cpu_count();

    bound_ev = sdei_interrupt_bind_ctx(SP804_INTID, &intr_ctx);
    puts("INTERRUPT_BIND(42) = ");
    print_ret(bound_ev);
    putc('\n');
    if (!expect_true("INTERRUPT_BIND(42) >= 0", bound_ev >= 0))
        test_finish();
    expect_eq("EVENT_GET_INFO(EV_TYPE) (shared)", sdei_event_get_info(bound_ev, SDEI_INFO_EV_TYPE), 1);

    /* The other CPUs first, one at a time, then the lead (TFTF's order). */
    for (unsigned cpu = 1; cpu < cpus && !test_failed(); cpu++)
        cpu_run_and_wait(cpu, sdei_event, 0);
    if (!test_failed())
        sdei_event(0);

    test_step("summary");
    test_release_binding(bound_ev, &intr_ctx);

    /* Every CPU (not only "some CPU, N times") took its own registration exactly once. */
    puts("handler runs per CPU:");
    for (unsigned cpu = 0; cpu < cpus; cpu++) {
        puts(" ");
        put_udec(handler_runs[cpu]);
    }
    putc('\n');
    for (unsigned cpu = 0; cpu < cpus; cpu++) {
        char what[] = "handler runs on CPU n";
        what[sizeof(what) - 2] = (char)('0' + cpu);     /* cpu < MAX_CPUS = 8 */
        expect_eq(what, handler_runs[cpu], 1);
    }
    test_finish();
}
