/*
 * nesting.c - how normal and critical SDEI events nest on one PE (reference sections 2.4 and
 * 2.5): a critical event may pre-empt a running normal handler; nothing pre-empts a critical
 * handler; a normal event never pre-empts any handler. So at most two dispatches are
 * outstanding on a PE, normal below and critical on top, and whatever cannot be taken waits.
 *
 * Everything runs on CPU 0. It registers and enables event 0 (private, normal, signalled by
 * the guest) and, where the platform offers them (GET_INFO(EV_PRIORITY) answers), the
 * hypervisor-originated events 5000 (normal) and 5001 (critical) of the lab's profiles
 * (docs/sdei.md). The handler argument is the event's priority as GET_INFO reports it, so the
 * handler knows which kind it is running as (Linux's GHES picks its callback the same way).
 *
 *   1. PE_UNMASK, then EVENT_SIGNAL(0, self): the handler of event 0 is entered on the way out
 *      of the call (depth 1).
 *   2. Inside that handler, EVENT_SIGNAL(0, self) again: it succeeds (event 0 is enabled), but
 *      the handler is not entered a second time while it runs (a normal event cannot pre-empt
 *      a handler, reference 2.4 condition 5): the signal waits. At COMPLETE the interrupted
 *      context is restored and the waiting signal is taken at once, so the second run
 *      interrupts the very instruction the first one did.
 *   3. Each normal handler then spends WINDOW_POLLS firmware calls (EVENT_STATUS) in
 *      normal_window(), each critical handler WINDOW_POLLS in critical_window(). Those two
 *      functions are where the host side may raise events 5000/5001 (platform.sdei.raise_event,
 *      e.g. from a debugger breakpoint on them): the dispatcher takes whatever is due on the way
 *      out of the next call, so a critical raised in normal_window() nests at once (depth 2),
 *      and anything raised in critical_window() waits for that handler's COMPLETE. Nothing in
 *      the guest raises 5000/5001: run on its own (tests/test_sdei_guests.py) only event 0
 *      runs, twice; notebooks/31_normal_vs_critical.py raises them.
 *
 * Every handler entry is checked against the rules as it happens: a normal handler only when
 * no handler runs on this PE, a critical one only when no critical runs, never deeper than
 * two; a critical handler nested over a normal one sees that event's EVENT_STATUS with the
 * running bit set. The entries and exits are logged and printed by main afterwards, indented
 * by depth (handlers print nothing unless a check fails, so the output does not depend on
 * timing).
 */
#include "sdei.h"

#define EV_SIGNAL           SDEI_EVENT_SW_SIGNALLED     /* 0 */
#define EV_HYP_NORMAL       SDEI_LAB_EVENT_NORMAL       /* 5000 */
#define EV_HYP_CRITICAL     SDEI_LAB_EVENT_CRITICAL     /* 5001 */
#define MAX_NESTING         2       /* TF-A MAX_EVENT_NESTING: one normal, one critical over it */
#define WINDOW_POLLS        16      /* firmware calls per handler window (dispatch points) */
#define LOG_MAX             32
#define PRIORITY_CRITICAL   1       /* GET_INFO(EV_PRIORITY): 0 normal, 1 critical */

static const int64_t events[] = {EV_SIGNAL, EV_HYP_NORMAL, EV_HYP_CRITICAL};
#define NUM_EVENTS (sizeof(events) / sizeof(events[0]))
static bool offered[NUM_EVENTS];

/* The guest's own view of this PE's dispatch stack (only CPU 0 takes events). */
static volatile unsigned depth;
static int64_t stack_event[MAX_NESTING];
static bool stack_critical[MAX_NESTING];

struct log_entry {
    int64_t event;
    bool enter;             /* false: the handler is about to COMPLETE */
    bool critical;
    unsigned depth;         /* 1 or 2 at entry, the depth it leaves from at exit */
    int64_t over;           /* the event of the handler beneath, or -1 */
    int64_t over_status;    /* EVENT_STATUS of that event, read from the nested handler */
};
static struct log_entry log_entries[LOG_MAX];
static volatile unsigned log_count;

static unsigned runs_of_signal;         /* handler entries for event 0 */
static unsigned critical_runs;
static uint64_t signal_pc[2];           /* x2 (interrupted PC) of event 0's first two runs */
static int64_t inner_signal_ret = 1;    /* the second EVENT_SIGNAL, made from inside run 1 */
static unsigned runs_after_inner_signal;

static void log_add(int64_t ev, bool enter, bool critical, unsigned d, int64_t over, int64_t over_status)
{
    unsigned n = log_count;
    if (!expect_true("handler log overflow", n < LOG_MAX))
        return;
    log_entries[n] = (struct log_entry){ev, enter, critical, d, over, over_status};
    log_count = n + 1;
}

/* Where the host may raise a critical event over this normal handler. noinline: a debugger
 * breakpoint on the symbol must hit. Each EVENT_STATUS is a firmware call, on whose way out
 * the dispatcher takes whatever is due on this PE (docs/sdei.md, "Dispatch"); the conduit is
 * inlined (smccc_call5) so that a handler nested here interrupts a PC inside this function. */
__attribute__((noinline)) void normal_window(int64_t ev)
{
    for (unsigned i = 0; i < WINDOW_POLLS; i++)
        (void)smccc_call5(SDEI_EVENT_STATUS, (uint64_t)ev, 0, 0, 0, 0);
}

/* Where the host may raise events over a critical handler: none of them can be taken here. */
__attribute__((noinline)) void critical_window(int64_t ev)
{
    for (unsigned i = 0; i < WINDOW_POLLS; i++)
        (void)smccc_call5(SDEI_EVENT_STATUS, (uint64_t)ev, 0, 0, 0, 0);
}

/* Called by sdei_entrypoint (x0..x3 at entry), which then COMPLETEs. x1 is the priority. */
int sdei_event_handler(int64_t ev, uint64_t arg, uint64_t pc, uint64_t pstate)
{
    (void)pstate;
    bool critical = arg == PRIORITY_CRITICAL;
    unsigned below = depth;
    if (!expect_true("nesting deeper than two", below < MAX_NESTING))
        return 0;
    int64_t over = below ? stack_event[below - 1] : -1;
    /* Pushed before the first firmware call below: each call is a point where the dispatcher
     * could enter another handler, which must find this one on the stack. */
    stack_event[below] = ev;
    stack_critical[below] = critical;
    depth = below + 1;
    int64_t over_status = below ? sdei_event_status(over) : 0;

    /* The dispatch rules (reference 2.4 conditions 5 and 6, 2.5), checked as they happen. */
    if (critical) {
        expect_true("a critical handler entered over a critical one", !(below && stack_critical[below - 1]));
        if (below)
            expect_true("the event beneath a nested handler is running (EVENT_STATUS bit 2)",
                        over_status & SDEI_STATUS_RUNNING);
    } else {
        expect_eq("handlers running when a normal handler was entered", below, 0);
    }
    expect_eq("EVENT_STATUS of the event in its own handler",
              sdei_event_status(ev), SDEI_STATUS_RUNNING | SDEI_STATUS_ENABLED | SDEI_STATUS_REGISTERED);
    log_add(ev, true, critical, below + 1, over, over_status);

    if (ev == EV_SIGNAL) {
        unsigned run = runs_of_signal++;
        if (run < 2)
            signal_pc[run] = pc;
        if (run == 0) {
            inner_signal_ret = sdei_event_signal(EV_SIGNAL, my_mpidr());
            runs_after_inner_signal = runs_of_signal;   /* still 1 if the signal waited */
        }
    }
    if (critical) {
        critical_runs++;
        critical_window(ev);
    } else {
        normal_window(ev);
    }

    log_add(ev, false, critical, below + 1, -1, 0);
    depth = below;
    return 0;
}

static const char *priority_name(bool critical) { return critical ? "critical" : "normal"; }

static void register_all(void)
{
    test_step("register");
    for (unsigned i = 0; i < NUM_EVENTS; i++) {
        int64_t ev = events[i];
        int64_t priority = sdei_event_get_info(ev, SDEI_INFO_EV_PRIORITY);
        puts("event ");
        put_dec(ev);
        if (priority < 0) {
            /* Not on this platform (Gavin Shan's KVM SDEI has no critical events): event 0 is
             * the only one the scenario needs. */
            puts(": not offered here, GET_INFO(EV_PRIORITY) = ");
            print_ret(priority);
            putc('\n');
            expect_true("event 0 is offered", ev != EV_SIGNAL);
            continue;
        }
        int64_t reg = sdei_event_register(ev, sdei_entrypoint, (uint64_t)priority, SDEI_REGF_RM_PE, my_mpidr());
        int64_t en = sdei_event_enable(ev);
        puts(": ");
        puts(priority_name(priority == PRIORITY_CRITICAL));
        puts(", REGISTER = ");
        print_ret(reg);
        puts(", ENABLE = ");
        print_ret(en);
        putc('\n');
        offered[i] = expect_ret("EVENT_REGISTER", reg, 0) && expect_ret("EVENT_ENABLE", en, 0);
        expect_eq("GET_INFO(EV_PRIORITY) of the lab's events", priority, ev == EV_HYP_CRITICAL);
    }
}

static void print_log(void)
{
    puts("handler log (indented by nesting depth):\n");
    for (unsigned i = 0; i < log_count; i++) {
        const struct log_entry *e = &log_entries[i];
        for (unsigned d = 0; d < e->depth; d++)
            puts("  ");
        puts(e->enter ? "enter event " : "leave event ");
        put_dec(e->event);
        if (e->enter) {
            puts(" (");
            puts(priority_name(e->critical));
            puts(") at depth ");
            put_udec(e->depth);
            if (e->over >= 0) {
                puts(", over event ");
                put_dec(e->over);
                puts(" (its EVENT_STATUS here: ");
                put_dec(e->over_status);
                puts(")");
            }
        }
        putc('\n');
    }
}

int main(void)
{
    test_begin("nesting", "a critical event pre-empts a normal handler, never the reverse");
    register_all();
    if (test_failed())
        test_finish();

    test_step("signal");
    puts("PE_UNMASK = ");
    print_ret(sdei_pe_unmask());
    putc('\n');
    int64_t ret = sdei_event_signal(EV_SIGNAL, my_mpidr());
    /* By now every handler has run: each COMPLETE took the next waiting event at once. */
    puts("EVENT_SIGNAL(0, self) = ");
    print_ret(ret);
    putc('\n');
    expect_ret("EVENT_SIGNAL(0, self)", ret, 0);
    puts("  inside its handler: EVENT_SIGNAL(0, self) = ");
    print_ret(inner_signal_ret);
    puts(", handler entered again before COMPLETE: ");
    puts(runs_after_inner_signal == 1 ? "no" : "yes");
    putc('\n');
    expect_ret("EVENT_SIGNAL(0, self) inside the handler", inner_signal_ret, 0);
    expect_eq("event 0 handler entries before the first COMPLETE", runs_after_inner_signal, 1);
    expect_eq("event 0 handler runs (the waiting signal ran after COMPLETE)", runs_of_signal, 2);
    bool same_pc = runs_of_signal >= 2 && signal_pc[0] == signal_pc[1];
    puts("  the waiting signal ran right after COMPLETE, at the same interrupted PC: ");
    puts(same_pc ? "yes" : "no");
    putc('\n');
    expect_true("the second run of event 0 interrupted the first run's PC", same_pc);

    print_log();
    unsigned deepest = 0;
    for (unsigned i = 0; i < log_count; i++)
        if (log_entries[i].depth > deepest)
            deepest = log_entries[i].depth;
    puts("critical handler runs: ");
    put_udec(critical_runs);
    puts(", deepest nesting: ");
    put_udec(deepest);
    putc('\n');
    expect_eq("handlers still running in main", depth, 0);

    test_step("clean up");
    puts("PE_MASK = ");
    print_ret(sdei_pe_mask());
    puts(", UNREGISTER =");
    for (unsigned i = 0; i < NUM_EVENTS; i++) {
        if (!offered[i])
            continue;
        int64_t un = sdei_event_unregister(events[i]);
        putc(' ');
        print_ret(un);
        expect_ret("EVENT_UNREGISTER", un, 0);
    }
    putc('\n');
    test_finish();
}
