/*
 * cpu_on_masking.c - a PE must come out of PSCI CPU_ON with SDEI masked and its private events
 * reset (reference section 3.1; TF-A sdei_cpu_on_init), or an event can enter a handler of the
 * PE's previous life before the new life has a stack and vectors.
 *
 * CPU 1, life 1: registers event 0 with `stale_handler`, enables it, unmasks, and powers off
 * WITHOUT masking first, as TFTF's test_sdei_state does (it relies on CPU_ON re-masking).
 * CPU 0 then starts CPU 1 again (life 2, entry `secondary_entry`) and at once signals event 0
 * to it, while it is still ON_PENDING.
 *
 * Where SDEI sees PSCI's CPU_ON (virt, firmware, kvm-vmm-psci-sdei, kvm-sdei) the pending signal
 * and the registration go with the reset: life 2 finds event 0 unregistered, the PE masked
 * (PE_MASK returns 0: nothing to mask), and no handler runs: PASS.
 * Where SDEI lives in the VMM but PSCI in the kernel (kvm-vmm-sdei), the VMM never hears of
 * CPU_ON: the signal is dispatched to life 1's handler at the very first instruction of life 2,
 * with SP = 0 and VBAR_EL1 = 0 from the reset. `stale_handler` uses no stack, so it can record
 * that and COMPLETE; the verdict is FAIL, deterministically. (A handler using its stack would
 * fault instead: `sdeilab run` would exit 3 with CPU 1's fault report.)
 */
#include "sdei.h"

#define LIFE1_COOKIE 0x11FE1

/* Written by stale_handler: how often it ran, and the state it found. */
struct stale_entry {
    uint64_t count, event, arg, pc, sp, vbar;
};
struct stale_entry stale;

#ifdef CONDUIT_SMC
#define CONDUIT_INSN ".inst 0xd4000003\n"   /* smc #0 */
#else
#define CONDUIT_INSN "hvc #0\n"
#endif

/* The handler of CPU 1's first life. It touches neither the stack nor x18..x30 (the dispatcher
 * saved x0..x17 for it, reference section 2.4), records what it found, and COMPLETEs. */
void stale_handler(void);
__asm__(
    ".text\n"
    ".globl stale_handler\n"
    ".balign 4\n"
    "stale_handler:\n"
    "    adrp x4, stale\n"
    "    add x4, x4, :lo12:stale\n"
    "    ldr x5, [x4]\n"
    "    add x5, x5, #1\n"
    "    stp x5, x0, [x4]\n"            /* count, event */
    "    stp x1, x2, [x4, #16]\n"       /* argument, interrupted PC */
    "    mov x5, sp\n"
    "    mrs x6, vbar_el1\n"
    "    stp x5, x6, [x4, #32]\n"       /* SP and VBAR_EL1 at entry */
    "    mov x1, #0\n"                  /* SDEI_EV_HANDLED */
    "    movz x0, #0x0025\n"
    "    movk x0, #0xc400, lsl #16\n"   /* SDEI_EVENT_COMPLETE */
    CONDUIT_INSN
    "1:  b 1b\n");

static volatile int64_t life2_status, life2_mask;

static void life1(uint64_t unused)
{
    (void)unused;
    test_step("life 1");
    unsigned before = test_failure_count();
    expect_ret("EVENT_REGISTER(0)", sdei_event_register(0, stale_handler, LIFE1_COOKIE, SDEI_REGF_RM_PE,
                                                        my_mpidr()), 0);
    expect_ret("EVENT_ENABLE(0)", sdei_event_enable(0), 0);
    expect_ret("PE_UNMASK", sdei_pe_unmask(), 0);
    step_done(before);
    /* return: CPU_OFF, still unmasked and registered */
}

static void life2(uint64_t unused)
{
    (void)unused;
    life2_status = sdei_event_status(0);
    life2_mask = sdei_pe_mask();        /* 1 if the PE was still unmasked, 0 if CPU_ON masked it */
}

int main(void)
{
    test_begin("cpu_on_masking", "a PE comes out of CPU_ON masked, its private events reset");
    if (test_cpu_count() < 2) {
        test_fail("needs 2 CPUs");
        test_finish();
    }
    if (!cpu_run_and_wait(1, life1, 0))
        test_finish();

    test_step("life 2");
    if (!cpu_run(1, life2, 0))
        test_finish();
    int64_t signal = sdei_event_signal(0, cpu_mpidr(1));   /* CPU 1 is ON_PENDING */
    bool off = cpu_wait_off(1);

    print_lock();
    puts("CPU 0: CPU_ON(1) then EVENT_SIGNAL(0, CPU 1) = ");
    print_ret(signal);
    puts("\nCPU 1: life 2: EVENT_STATUS(0) = ");
    print_ret(life2_status);
    puts(", PE_MASK = ");
    print_ret(life2_mask);
    putc('\n');
    print_unlock();

    if (stale.count) {
        print_lock();
        puts("CPU 1: life 1's handler ran ");
        put_udec(stale.count);
        puts(" time(s) in life 2: event ");
        put_dec((int64_t)stale.event);
        puts(", argument ");
        put_hex(stale.arg);
        puts(", interrupted PC ");
        put_hex(stale.pc);
        puts(stale.pc == (uint64_t)(uintptr_t)secondary_entry ? " (secondary_entry: before any instruction)"
                                                              : "");
        puts(", SP ");
        put_hex(stale.sp);
        puts(", VBAR_EL1 ");
        put_hex(stale.vbar);
        putc('\n');
        print_unlock();
        test_fail("a handler of the previous life ran after CPU_ON, before the new life had a stack and vectors");
    }
    expect_true("CPU 1 reached OFF", off);
    expect_eq("EVENT_STATUS(0) after CPU_ON (unregistered)", life2_status, 0);
    expect_eq("PE_MASK after CPU_ON (already masked)", life2_mask, 0);
    test_finish();
}
