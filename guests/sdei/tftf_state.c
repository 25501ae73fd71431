/*
 * tftf_state.c - TFTF test_sdei_state (test_sdei_state.c): the SDEI handler state machine,
 * on the lead CPU and then on each other CPU in turn (CPU_ON; AFFINITY_INFO polled until OFF).
 *
 * Each CPU runs five sub-tests on the SP804's SPI (INTID 42, >= 32 as TFTF asserts), bound
 * afresh with INTERRUPT_BIND each time and released at the end; every return code must be
 * exactly what TF-A returns (reference section 2.2 and section 4, "Test 1 sub-tests"):
 *   a. unregistered        STATUS 0; ENABLE/DISABLE/UNREGISTER/ROUTING_SET DENIED;
 *                          CONTEXT/COMPLETE/COMPLETE_AND_RESUME DENIED (no dispatch); RELEASE ok
 *   b. registered          STATUS 1; REGISTER again and RELEASE DENIED; CONTEXT/COMPLETE/
 *                          COMPLETE_AND_RESUME DENIED; UNREGISTER, RELEASE ok
 *   c. registered+running  the timer fires; in the handler STATUS 7, DISABLE -> STATUS 5,
 *                          REGISTER/RELEASE/ROUTING_SET DENIED; after COMPLETE UNREGISTER and
 *                          RELEASE ok
 *   d. unregister-pending  in the handler UNREGISTER -> PENDING, STATUS 4, REGISTER/RELEASE/
 *                          ENABLE/DISABLE DENIED, UNREGISTER PENDING again, ROUTING_SET DENIED;
 *                          after COMPLETE UNREGISTER DENIED, RELEASE ok
 *   e. enabled             STATUS 3; REGISTER/RELEASE/ROUTING_SET DENIED; CONTEXT/COMPLETE/
 *                          COMPLETE_AND_RESUME DENIED; UNREGISTER (from enabled) and RELEASE ok
 * Like TFTF, PE_UNMASK (sub-test c) is never undone before CPU_OFF: the next CPU_ON re-masks.
 * Additions to TFTF: the handler checks x0 (event) and x1 (argument), the bound event is a
 * shared one (GET_INFO EV_TYPE = 1).  ROUTING_SET passes RM_PE with this CPU's MPIDR.
 */
#include "sdei.h"

#define TIMER_TICKS     200         /* SP804 ticks of 1 us: TFTF waits 10 ms, 200 us do here */

static int64_t ev;                  /* the event bound in the current sub-test */
static struct sdei_intr_ctx intr_ctx;
static volatile int handler_success;

/* Registered in a, b and e, never dispatched (TFTF panics if it runs). */
static void unreachable_handler(void)
{
    test_fail("the unregistered-state handler was dispatched");
    test_finish();
}

static bool bind_event(void)
{
    ev = sdei_interrupt_bind_ctx(SP804_INTID, &intr_ctx);
    return expect_true("INTERRUPT_BIND(42) >= 0", ev >= 0);
}

static int64_t register_unreachable(void)
{
    return sdei_event_register(ev, unreachable_handler, 0, SDEI_REGF_RM_PE, my_mpidr());
}

/* CONTEXT, COMPLETE and COMPLETE_AND_RESUME with no dispatch outstanding on this PE. */
static bool no_dispatch_calls_denied(void)
{
    return expect_ret("EVENT_CONTEXT(0)", sdei_event_context(0), SDEI_RET_DENIED)
        && expect_ret("EVENT_COMPLETE(HANDLED)", sdei_event_complete(SDEI_EV_HANDLED), SDEI_RET_DENIED)
        && expect_ret("EVENT_COMPLETE_AND_RESUME(0)", sdei_event_complete_and_resume(0), SDEI_RET_DENIED);
}

static bool routing_set_denied(void)
{
    return expect_ret("EVENT_ROUTING_SET(RM_PE)", sdei_event_routing_set(ev, SDEI_REGF_RM_PE, my_mpidr()),
                      SDEI_RET_DENIED);
}

static bool hdlr_unregistered(bool first_on_cpu)
{
    if (!bind_event())
        return false;
    if (first_on_cpu) {
        print_lock();
        puts("CPU ");
        put_udec(cpu_index());
        puts(": INTERRUPT_BIND(42) = ");
        print_ret(ev);
        putc('\n');
        print_unlock();
    }
    return expect_eq("EVENT_GET_INFO(EV_TYPE) (shared)", sdei_event_get_info(ev, SDEI_INFO_EV_TYPE), 1)
        && expect_eq("EVENT_STATUS", sdei_event_status(ev), 0)
        && expect_ret("EVENT_ENABLE", sdei_event_enable(ev), SDEI_RET_DENIED)
        && expect_ret("EVENT_DISABLE", sdei_event_disable(ev), SDEI_RET_DENIED)
        && expect_ret("EVENT_UNREGISTER", sdei_event_unregister(ev), SDEI_RET_DENIED)
        && routing_set_denied()
        && no_dispatch_calls_denied()
        && expect_ret("INTERRUPT_RELEASE", sdei_interrupt_release_ctx(ev, &intr_ctx), 0);
}

static bool hdlr_registered(void)
{
    if (!bind_event())
        return false;
    return expect_ret("EVENT_REGISTER", register_unreachable(), 0)
        && expect_eq("EVENT_STATUS", sdei_event_status(ev), SDEI_STATUS_REGISTERED)
        && expect_ret("EVENT_REGISTER again", register_unreachable(), SDEI_RET_DENIED)
        && expect_ret("INTERRUPT_RELEASE", sdei_interrupt_release_ctx(ev, &intr_ctx), SDEI_RET_DENIED)
        && no_dispatch_calls_denied()
        && expect_ret("EVENT_UNREGISTER", sdei_event_unregister(ev), 0)
        && expect_ret("INTERRUPT_RELEASE", sdei_interrupt_release_ctx(ev, &intr_ctx), 0);
}

/* Called from the SDEI handler (sdei_state_entrypoint) in sub-test c. */
static void running_handler(int64_t event, uint64_t arg)
{
    sp804_stop();                   /* cancel the timer: no further triggers */
    handler_success = 0;
    if (!expect_eq("handler x0 (event)", event, ev)
        || !expect_eq("handler x1 (argument)", (int64_t)arg, (int64_t)(uintptr_t)running_handler)
        || !expect_eq("EVENT_STATUS in the handler", sdei_event_status(ev),
                      SDEI_STATUS_RUNNING | SDEI_STATUS_ENABLED | SDEI_STATUS_REGISTERED)
        || !expect_ret("EVENT_DISABLE in the handler", sdei_event_disable(ev), 0)
        || !expect_eq("EVENT_STATUS after DISABLE", sdei_event_status(ev),
                      SDEI_STATUS_RUNNING | SDEI_STATUS_REGISTERED)
        || !expect_ret("EVENT_REGISTER in the handler", register_unreachable(), SDEI_RET_DENIED)
        || !expect_ret("INTERRUPT_RELEASE in the handler", sdei_interrupt_release(ev), SDEI_RET_DENIED)
        || !routing_set_denied())
        return;
    handler_success = 1;
}

/* Called from the SDEI handler (sdei_state_entrypoint) in sub-test d. */
static void ureg_running_handler(int64_t event, uint64_t arg)
{
    sp804_stop();
    handler_success = 0;
    if (!expect_eq("handler x0 (event)", event, ev)
        || !expect_eq("handler x1 (argument)", (int64_t)arg, (int64_t)(uintptr_t)ureg_running_handler)
        || !expect_true("EVENT_STATUS in the handler has RUNNING", sdei_event_status(ev) & SDEI_STATUS_RUNNING)
        || !expect_ret("EVENT_UNREGISTER in the handler", sdei_event_unregister(ev), SDEI_RET_PENDING)
        || !expect_eq("EVENT_STATUS after UNREGISTER", sdei_event_status(ev), SDEI_STATUS_RUNNING)
        || !expect_ret("EVENT_REGISTER (unregister-pending)", register_unreachable(), SDEI_RET_DENIED)
        || !expect_ret("INTERRUPT_RELEASE (unregister-pending)", sdei_interrupt_release(ev), SDEI_RET_DENIED)
        || !expect_ret("EVENT_ENABLE (unregister-pending)", sdei_event_enable(ev), SDEI_RET_DENIED)
        || !expect_ret("EVENT_DISABLE (unregister-pending)", sdei_event_disable(ev), SDEI_RET_DENIED)
        || !expect_ret("EVENT_UNREGISTER again", sdei_event_unregister(ev), SDEI_RET_PENDING)
        || !routing_set_denied())
        return;
    handler_success = 1;
}

/* Register with sdei_state_entrypoint, enable, unmask, fire the SP804 and wait for the handler. */
static bool run_handler(sdei_state_fn fn)
{
    handler_success = 0;
    if (!expect_ret("EVENT_REGISTER", sdei_event_register(ev, sdei_state_entrypoint, (uint64_t)(uintptr_t)fn,
                                                          SDEI_REGF_RM_PE, my_mpidr()), 0)
        || !expect_eq("EVENT_STATUS", sdei_event_status(ev), SDEI_STATUS_REGISTERED)
        || !expect_ret("EVENT_ENABLE", sdei_event_enable(ev), 0))
        return false;
    sdei_pe_unmask();
    sp804_start(TIMER_TICKS);
    if (!sdei_handler_done(SDEI_WAIT_SPINS)) {
        sp804_stop();
        test_fail("the SDEI handler did not run");
        return false;
    }
    return true;
}

static bool hdlr_registered_running(void)
{
    if (!bind_event() || !run_handler(running_handler))
        return false;
    return expect_ret("EVENT_UNREGISTER after COMPLETE", sdei_event_unregister(ev), 0)
        && expect_ret("INTERRUPT_RELEASE", sdei_interrupt_release_ctx(ev, &intr_ctx), 0)
        && expect_true("the handler's checks passed", handler_success);
}

static bool hdlr_unregistered_running(void)
{
    if (!bind_event() || !run_handler(ureg_running_handler))
        return false;
    return expect_ret("EVENT_UNREGISTER after COMPLETE", sdei_event_unregister(ev), SDEI_RET_DENIED)
        && expect_ret("INTERRUPT_RELEASE", sdei_interrupt_release_ctx(ev, &intr_ctx), 0)
        && expect_true("the handler's checks passed", handler_success);
}

static bool hdlr_enabled(void)
{
    if (!bind_event())
        return false;
    return expect_ret("EVENT_REGISTER", sdei_event_register(ev, sdei_state_entrypoint,
                                                            (uint64_t)(uintptr_t)ureg_running_handler,
                                                            SDEI_REGF_RM_PE, my_mpidr()), 0)
        && expect_ret("EVENT_ENABLE", sdei_event_enable(ev), 0)
        && expect_eq("EVENT_STATUS", sdei_event_status(ev), SDEI_STATUS_ENABLED | SDEI_STATUS_REGISTERED)
        && expect_ret("EVENT_REGISTER again", register_unreachable(), SDEI_RET_DENIED)
        && expect_ret("INTERRUPT_RELEASE", sdei_interrupt_release_ctx(ev, &intr_ctx), SDEI_RET_DENIED)
        && routing_set_denied()
        && no_dispatch_calls_denied()
        && expect_ret("EVENT_UNREGISTER", sdei_event_unregister(ev), 0)
        && expect_ret("INTERRUPT_RELEASE", sdei_interrupt_release_ctx(ev, &intr_ctx), 0);
}

static const struct {
    const char *name;
    bool (*run)(void);
} subtests[] = {
    {"b. registered", hdlr_registered},
    {"c. registered and running", hdlr_registered_running},
    {"d. unregister-pending", hdlr_unregistered_running},
    {"e. enabled", hdlr_enabled},
};

static void iterate_state_machine(uint64_t unused)
{
    (void)unused;
    unsigned before = test_failure_count();
    test_step("a. unregistered");
    bool ok = hdlr_unregistered(true);
    step_done(before);
    for (unsigned i = 0; ok && i < sizeof(subtests) / sizeof(subtests[0]); i++) {
        before = test_failure_count();
        test_step(subtests[i].name);
        ok = subtests[i].run();
        step_done(before);
    }
}

int main(void)
{
    test_begin("tftf_state", "TFTF test_sdei_state, the handler state machine on a bound SP804 SPI");
    unsigned cpus = test_cpu_count();
    iterate_state_machine(0);
    for (unsigned cpu = 1; cpu < cpus && !test_failed(); cpu++)
        cpu_run_and_wait(cpu, iterate_state_machine, 0);
    test_finish();
}
