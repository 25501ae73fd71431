/*
 * tftf_signal_state.c - TFTF test_sdei_event_signal_state (test_sdei.c): "SDEI event signaling
 * state: registered, enabled, unmasked" (reference section 4, row 4).
 *
 * What TFTF does, on the lead CPU only, IRQs off: sdei_event_signal_self(enable, unmask) four
 * times, with (enable, unmask) = (1,1), (0,1), (1,0), (0,0).  Each REGISTERs event 0
 * (sdei_entrypoint_resume, cookie 0xDEADBEEF, RM_PE, own MPIDR), ENABLEs it if `enable`,
 * PE_UNMASKs if `unmask`, then EVENT_SIGNAL(0, own MPIDR); on success it waits for the handler.
 * Then PE_MASK, DISABLE, UNREGISTER, whatever happened.  Only (1,1) may succeed; the other three
 * must fail (< 0).
 *
 * Why: TF-A refuses SIGNAL with INVALID_PARAMETERS when the target PE is masked or event 0 is
 * not registered and enabled on it (TF-A commit b142ede74, 2024; reference sections 1.1 and
 * 2.10).  Before that fix a signal to a masked PE was raised and lost.
 *
 * Deliberate differences from TFTF:
 *  - the three refusals must be exactly INVALID_PARAMETERS (TF-A's answer), not just < 0;
 *  - no handler may run in the refused cases: the handler counts its runs, and after each
 *    case's cleanup (event unregistered, PE masked) the count must be 1 for (1,1) and 0 for the
 *    others, i.e. a refused signal was not kept pending either;
 *  - every other call (REGISTER, ENABLE, PE_UNMASK, DISABLE, UNREGISTER) must return exactly 0,
 *    and PE_MASK exactly 1 if this case unmasked the PE and 0 otherwise (TF-A: 1 if the call
 *    masked an unmasked PE, reference 1.1); TFTF ignores the cleanup calls' results;
 *  - the handler also checks x0 (event 0) besides the cookie.
 */
#include "sdei.h"

#define EV_COOKIE       0xDEADBEEF  /* TFTF's handler argument; its handler asserts it */
#define NO_HANDLER_SPINS 50000      /* ~200 us: a refused signal must not bring a handler later */

static volatile uint32_t handler_runs;

/* Called by sdei_entrypoint_resume in the SDEI handler for event 0. */
int sdei_event_handler(int64_t ev, uint64_t arg, uint64_t pc, uint64_t pstate)
{
    (void)pc, (void)pstate;
    handler_runs++;
    expect_eq("handler x0 (event)", ev, SDEI_EVENT_SW_SIGNALLED);
    expect_eq("handler x1 (cookie)", (int64_t)arg, EV_COOKIE);
    return 0;
}

/* TFTF sdei_event_signal_self(enable, unmask), with exact results. */
static void signal_self(bool enable, bool unmask)
{
    static char step[] = "enable n, unmask n";
    step[7] = enable ? '1' : '0';
    step[17] = unmask ? '1' : '0';
    unsigned before = test_failure_count();
    test_step(step);
    bool should_work = enable && unmask;
    handler_runs = 0;

    if (!expect_ret("EVENT_REGISTER(0)", sdei_event_register(SDEI_EVENT_SW_SIGNALLED, sdei_entrypoint_resume,
                                                             EV_COOKIE, SDEI_REGF_RM_PE, my_mpidr()), 0)) {
        step_done(before);
        return;
    }
    if (enable)
        expect_ret("EVENT_ENABLE(0)", sdei_event_enable(SDEI_EVENT_SW_SIGNALLED), 0);
    if (unmask)
        expect_ret("PE_UNMASK", sdei_pe_unmask(), 0);

    int64_t ret = sdei_event_signal(SDEI_EVENT_SW_SIGNALLED, my_mpidr());
    bool handled;
    if (ret == 0) {
        handled = sdei_handler_done(SDEI_WAIT_SPINS);
    } else {
        /* Nothing should come; give a late dispatch the time to show itself all the same. */
        handled = sdei_handler_done(NO_HANDLER_SPINS);
    }

    expect_ret("PE_MASK", sdei_pe_mask(), unmask ? 1 : 0);
    expect_ret("EVENT_DISABLE(0)", sdei_event_disable(SDEI_EVENT_SW_SIGNALLED), 0);
    expect_ret("EVENT_UNREGISTER(0)", sdei_event_unregister(SDEI_EVENT_SW_SIGNALLED), 0);

    puts("  EVENT_SIGNAL(0, self) = ");
    print_ret(ret);
    puts(", handler runs: ");
    put_udec(handler_runs);
    putc('\n');
    expect_ret("EVENT_SIGNAL(0, self)", ret, should_work ? 0 : SDEI_RET_INVALID_PARAMETERS);
    expect_true(should_work ? "the handler ran (its flag)" : "no handler ran (its flag)", handled == should_work);
    expect_eq("handler runs", handler_runs, should_work ? 1 : 0);
    step_done(before);
}

int main(void)
{
    test_begin("tftf_signal_state",
               "TFTF test_sdei_event_signal_state, EVENT_SIGNAL needs registered, enabled and unmasked");
    /* TFTF's order; it stops at the first unexpected result, this port tries all four. */
    signal_self(true, true);
    signal_self(false, true);
    signal_self(true, false);
    signal_self(false, false);
    test_finish();
}
