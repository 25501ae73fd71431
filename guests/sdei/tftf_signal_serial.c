/*
 * tftf_signal_serial.c - TFTF test_sdei_event_signal_serial (test_sdei.c): "SDEI event
 * signaling: each core signals itself" (reference section 4, row 5).
 *
 * What TFTF does, IRQs off: each non-lead CPU in turn is powered on (CPU_ON; AFFINITY_INFO
 * polled until it is OFF again) and runs sdei_event_signal_self(1, 1): REGISTER event 0
 * (sdei_entrypoint_resume, cookie 0xDEADBEEF, RM_PE, own MPIDR), ENABLE, PE_UNMASK,
 * EVENT_SIGNAL(0, own MPIDR), wait for the handler, PE_MASK, DISABLE, UNREGISTER.  Then the lead
 * does the same.  Everything must succeed.
 *
 * The point: event 0 is private (reference 2.1), so each PE has its own registration of it, and
 * a PE starts masked after CPU_ON with its private events reset (reference 3.2): each CPU must
 * register and unmask afresh, and a signal to itself is dispatched on the way out of SIGNAL.
 *
 * Deliberate differences from TFTF:
 *  - TFTF ignores what the secondaries' function returns; here every CPU's results count;
 *  - every call must return exactly 0 (PE_MASK exactly 1: it masked an unmasked PE, reference
 *    1.1) rather than >= 0, and TFTF ignores the cleanup calls' results;
 *  - the handler also checks x0 (event 0) and that it ran on the CPU that signalled itself,
 *    exactly once (runs counted per CPU).
 */
#include "sdei.h"

#define EV_COOKIE       0xDEADBEEF  /* TFTF's handler argument; its handler asserts it */

static volatile uint32_t handler_runs[MAX_CPUS];    /* by the CPU the handler ran on */

/* Called by sdei_entrypoint_resume in the SDEI handler for event 0. */
int sdei_event_handler(int64_t ev, uint64_t arg, uint64_t pc, uint64_t pstate)
{
    (void)pc, (void)pstate;
    handler_runs[cpu_index()]++;
    expect_eq("handler x0 (event)", ev, SDEI_EVENT_SW_SIGNALLED);
    expect_eq("handler x1 (cookie)", (int64_t)arg, EV_COOKIE);
    return 0;
}

/* TFTF sdei_event_signal_self(true, true) on the calling CPU. */
static void signal_self(uint64_t unused)
{
    (void)unused;
    unsigned me = cpu_index();
    unsigned before = test_failure_count();
    test_step("event 0 signalled to itself");
    if (expect_ret("EVENT_REGISTER(0)", sdei_event_register(SDEI_EVENT_SW_SIGNALLED, sdei_entrypoint_resume,
                                                            EV_COOKIE, SDEI_REGF_RM_PE, my_mpidr()), 0)) {
        if (expect_ret("EVENT_ENABLE(0)", sdei_event_enable(SDEI_EVENT_SW_SIGNALLED), 0)) {
            if (expect_ret("PE_UNMASK", sdei_pe_unmask(), 0)) {
                if (expect_ret("EVENT_SIGNAL(0, self)", sdei_event_signal(SDEI_EVENT_SW_SIGNALLED, my_mpidr()), 0)
                    && !sdei_handler_done(SDEI_WAIT_SPINS))
                    test_fail("the SDEI handler did not run");
                expect_ret("PE_MASK (1: it was unmasked)", sdei_pe_mask(), 1);
            }
            expect_ret("EVENT_DISABLE(0)", sdei_event_disable(SDEI_EVENT_SW_SIGNALLED), 0);
        }
        expect_ret("EVENT_UNREGISTER(0)", sdei_event_unregister(SDEI_EVENT_SW_SIGNALLED), 0);
    }
    expect_eq("handler runs on this CPU", handler_runs[me], 1);
    step_done(before);
}

int main(void)
{
    test_begin("tftf_signal_serial", "TFTF test_sdei_event_signal_serial, each core signals event 0 to itself");
    unsigned cpus = test_cpu_count();
    /* The other CPUs first, one at a time, then the lead (TFTF's order). */
    for (unsigned cpu = 1; cpu < cpus && !test_failed(); cpu++)
        cpu_run_and_wait(cpu, signal_self, 0);
    if (!test_failed())
        signal_self(0);

    test_step("summary");
    puts("handler runs per CPU:");
    for (unsigned cpu = 0; cpu < cpus; cpu++) {
        puts(" ");
        put_udec(handler_runs[cpu]);
    }
    putc('\n');
    test_finish();
}
