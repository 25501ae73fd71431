/*
 * vmm_watchdog.c - an NMI watchdog on a device the VMM emulates: the SP804's SPI (INTID 42),
 * bound as a shared SDEI event, interrupts a CPU that spins with IRQs masked (reference
 * sections 6 and 7.1).
 *
 * Why this device: the 2019 QEMU series tested its SDEI with an emulated watchdog (section 7.2,
 * "tested by an emulated watchdog firing every 10 s"), and James Morse's point was that SDEI in
 * userspace should emulate the source, never bind a physical interrupt (section 7.1). A VMM can
 * turn only its own devices' SPIs into events: the timer PPIs belong to KVM (section 6, "hard
 * part (a)"), so a VMM-side SDEI must refuse them. The SP804 is a VMM device here, so the same
 * guest works wherever SDEI can bind an SPI: virt and firmware (SDEI beside the GIC),
 * kvm-vmm-sdei and kvm-vmm-psci-sdei (SDEI in the VMM). It is refused cleanly where it cannot:
 * kvm (SDEI_VERSION NOT_SUPPORTED: no SDEI, section 3.4) and kvm-sdei (INTERRUPT_BIND
 * NOT_SUPPORTED: Gavin Shan's v7 had no binding, section 5).
 *
 * The scenario:
 *   CPU 0  INTERRUPT_BIND(42), REGISTER(bound event, RM_PE, CPU 1's MPIDR), ENABLE.
 *   CPU 1  (CPU_ON) PE_UNMASK, reports ready, masks IRQs (DAIF.I) and spins in
 *          watchdog_spin_loop, as a CPU stuck with interrupts off would: an ordinary IRQ could
 *          never get in, which is what a watchdog NMI is for.
 *   CPU 0  arms the SP804 WATCHDOG_BARKS times, each time waiting for the handler on CPU 1,
 *          which records x2 (the interrupted PC), x3 (its PSTATE) and the CPU it ran on, stops
 *          the SP804 (its interrupt is level: it would fire again at COMPLETE) and COMPLETEs,
 *          returning into the loop. Then CPU 0 stops the spinner, which PE_MASKs (1: it was
 *          unmasked all along) and powers off.
 *   CPU 0  prints each bark in order: the CPU, whether the PC was inside the spin loop, and
 *          PSTATE.I of the interrupted code; then DISABLE, UNREGISTER, RELEASE and the verdict.
 * Only CPU 0 prints, after the handler has run (the handler itself prints nothing unless a
 * check fails), so the output does not depend on timing. The PC itself is not printed: which
 * instruction of the loop was interrupted depends on when the timer fires, not its range.
 */
#include "sdei.h"

#define TIMER_TICKS         200         /* SP804 ticks of 1 us: 200 us between arming and the bark */
#define WATCHDOG_BARKS      3
#define WATCHDOG_COOKIE     0x3D06      /* the handler argument, checked in the handler */
#define SPIN_CPU            1
#define PSTATE_I            (1 << 7)    /* SPSR/PSTATE.I: IRQs masked */

/* The spin loop, in assembly so that its extent is known exactly: [watchdog_spin_loop,
 * watchdog_spin_end) holds the only instructions CPU 1 executes while it waits. The load is an
 * acquire so that CPU 0's stop request is seen without a barrier in the loop. */
void watchdog_spin(volatile uint64_t *stop);
extern char watchdog_spin_loop[], watchdog_spin_end[];
__asm__(
    ".text\n"
    ".globl watchdog_spin, watchdog_spin_loop, watchdog_spin_end\n"
    ".balign 4\n"
    "watchdog_spin:\n"
    "    msr daifset, #2\n"             /* DAIF.I: no IRQ can interrupt the loop */
    "    isb\n"
    "watchdog_spin_loop:\n"
    "    ldar x1, [x0]\n"
    "    cbz x1, watchdog_spin_loop\n"
    "watchdog_spin_end:\n"
    "    ret\n");

static int64_t bound_ev;
static struct sdei_intr_ctx intr_ctx;

/* Written by the handler on CPU 1, read by CPU 0 once `barks` says the entry is complete. */
static uint64_t bark_pc[WATCHDOG_BARKS], bark_pstate[WATCHDOG_BARKS];
static uint32_t bark_cpu[WATCHDOG_BARKS];
static volatile uint64_t barks;         /* handler runs, published with store-release */
static volatile uint64_t spinner_ready, stop_spinning;
static volatile int64_t spinner_unmask, spinner_mask;

/* Called by sdei_entrypoint on CPU 1, then COMPLETE(HANDLED) resumes the spin loop. */
int sdei_event_handler(int64_t ev, uint64_t arg, uint64_t pc, uint64_t pstate)
{
    sp804_stop();                       /* the level SPI drops: one bark per arming */
    expect_eq("handler x0 (event)", ev, bound_ev);
    expect_eq("handler x1 (argument)", (int64_t)arg, WATCHDOG_COOKIE);
    uint64_t n = barks;
    if (n < WATCHDOG_BARKS) {
        bark_pc[n] = pc;
        bark_pstate[n] = pstate;
        bark_cpu[n] = cpu_index();
    }
    store_release(&barks, n + 1);
    return 0;
}

/* CPU 1: unmask, then spin with IRQs masked until CPU 0 says stop. */
static void spinner(uint64_t unused)
{
    (void)unused;
    test_step("spinning with IRQs masked");
    spinner_unmask = sdei_pe_unmask();
    store_release(&spinner_ready, 1);
    watchdog_spin(&stop_spinning);
    spinner_mask = sdei_pe_mask();      /* 1: the PE was unmasked all along */
    /* return: CPU_OFF */
}

/* Wait until the handler has run `n` times, at most SDEI_WAIT_SPINS iterations. */
static bool wait_barks(uint64_t n)
{
    for (uint64_t spin = 0; spin < SDEI_WAIT_SPINS; spin++)
        if (load_acquire(&barks) >= n)
            return true;
    return false;
}

static void print_bark(unsigned i)
{
    uint64_t pc = bark_pc[i];
    bool in_loop = pc >= (uint64_t)(uintptr_t)watchdog_spin_loop && pc < (uint64_t)(uintptr_t)watchdog_spin_end;
    puts("bark ");
    put_udec(i + 1);
    puts(": handled on CPU ");
    put_udec(bark_cpu[i]);
    puts(", interrupted PC in watchdog_spin_loop: ");
    puts(in_loop ? "yes" : "no");
    puts(", interrupted PSTATE.I = ");
    put_udec((bark_pstate[i] & PSTATE_I) ? 1 : 0);
    putc('\n');
    expect_eq("the CPU a bark was handled on", bark_cpu[i], SPIN_CPU);
    expect_true("the interrupted PC is inside watchdog_spin_loop", in_loop);
    expect_true("the interrupted code had IRQs masked (PSTATE.I)", bark_pstate[i] & PSTATE_I);
}

int main(void)
{
    test_begin("vmm_watchdog", "an NMI watchdog: a VMM device's SPI, bound as an SDEI event, "
                               "interrupts a CPU spinning with IRQs masked");
    if (test_cpu_count() <= SPIN_CPU) {
        test_fail("needs 2 CPUs");
        test_finish();
    }

    test_step("bind and register");
    bound_ev = sdei_interrupt_bind_ctx(SP804_INTID, &intr_ctx);
    puts("INTERRUPT_BIND(42) = ");
    print_ret(bound_ev);
    putc('\n');
    if (!expect_true("INTERRUPT_BIND(42) >= 0", bound_ev >= 0))
        test_finish();
    unsigned before = test_failure_count();
    expect_eq("EVENT_GET_INFO(EV_TYPE) (shared)", sdei_event_get_info(bound_ev, SDEI_INFO_EV_TYPE), 1);
    /* RM_PE to CPU 1, registered from CPU 0: REGISTER routes the SPI to that PE (reference 2.8). */
    if (!expect_ret("EVENT_REGISTER(RM_PE, CPU 1)", sdei_event_register(bound_ev, sdei_entrypoint,
                                                                        WATCHDOG_COOKIE, SDEI_REGF_RM_PE,
                                                                        cpu_mpidr(SPIN_CPU)), 0)
        || !expect_ret("EVENT_ENABLE", sdei_event_enable(bound_ev), 0)) {
        step_done(before);
        sdei_interrupt_release_ctx(bound_ev, &intr_ctx);
        test_finish();
    }
    step_done(before);

    test_step("watchdog");
    before = test_failure_count();
    if (!cpu_run(SPIN_CPU, spinner, 0))
        test_finish();
    bool ready = false;
    for (uint64_t spin = 0; !ready && spin < SDEI_WAIT_SPINS; spin++)
        ready = load_acquire(&spinner_ready);
    expect_true("CPU 1 became ready", ready);
    for (unsigned i = 0; ready && i < WATCHDOG_BARKS; i++) {
        sp804_start(TIMER_TICKS);
        if (!wait_barks(i + 1)) {
            sp804_stop();
            test_fail("the watchdog handler did not run");
            break;
        }
    }
    store_release(&stop_spinning, 1);
    bool off = cpu_wait_off(SPIN_CPU);
    step_done(before);

    /* Everything below reads what CPU 1 recorded; its handler and loop are over. */
    test_step("summary");
    puts("CPU 1: PE_UNMASK = ");
    print_ret(spinner_unmask);
    puts(", PE_MASK after the loop = ");
    print_ret(spinner_mask);
    puts("\nhandler runs: ");
    put_udec(barks);
    putc('\n');
    expect_ret("CPU 1: PE_UNMASK", spinner_unmask, 0);
    expect_true("CPU 1 reached OFF", off);
    expect_eq("CPU 1: PE_MASK after the loop (1: it was unmasked)", spinner_mask, 1);
    expect_eq("handler runs", (int64_t)barks, WATCHDOG_BARKS);
    for (unsigned i = 0; i < WATCHDOG_BARKS && i < barks; i++)
        print_bark(i);

    test_step("cleanup");
    int64_t disable = sdei_event_disable(bound_ev);
    int64_t unregister = sdei_event_unregister(bound_ev);
    int64_t release = sdei_interrupt_release_ctx(bound_ev, &intr_ctx);
    puts("EVENT_DISABLE = ");
    print_ret(disable);
    puts(", EVENT_UNREGISTER = ");
    print_ret(unregister);
    puts(", INTERRUPT_RELEASE = ");
    print_ret(release);
    putc('\n');
    expect_ret("EVENT_DISABLE", disable, 0);
    expect_ret("EVENT_UNREGISTER", unregister, 0);
    expect_ret("INTERRUPT_RELEASE", release, 0);
    test_finish();
}
