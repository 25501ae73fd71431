/*
 * linux_client - a guest that uses SDEI the way Linux's driver does (drivers/firmware/arm_sdei.c
 * with arch/arm64/kernel/sdei.c and entry.S; reference section 3.3), running an NMI watchdog:
 * a CPU spinning with IRQs masked is caught by an SDEI event that PSTATE.I does not mask.
 *
 * Boot, as Linux boots: smp_init brings CPUs 1..3 up (PSCI CPU_ON) before the driver probes.
 * Probe (sdei_probe): SDEI_VERSION must have major 1; the platform reset is PRIVATE_RESET on
 * every online CPU (a cross-call) and SHARED_RESET; the hotplug state is installed, which runs
 * the CPU-up path (sdei_cpuhp_up: PE_UNMASK) on every online CPU.
 *
 * The watchdog's event.  Choice: the EL1 physical timer, PPI 30, bound with INTERRUPT_BIND to a
 * private event (1000), rather than the SP804's SPI 42 as a shared event routed RM_PE.  A
 * hard-lockup detector needs a timer per CPU, and the SDEI NMI watchdog that arm64 kernels
 * derived from Linux carry (arch/arm64/kernel/watchdog_sdei.c in Alibaba's cloud-kernel and
 * openEuler) does exactly this with the secure physical timer: INTERRUPT_BIND(29), then
 * sdei_event_register of the private event, callback watchdog_hardlockup_check.  PPI 29 is the
 * secure side's; PPI 30 is the one this guest owns.  Upstream Linux never calls INTERRUPT_BIND
 * (reference 3.3).  A private event is also what Linux's hotplug path is about:
 * sdei_event_register registers it on every online CPU (REGISTER with flags 0, affinity 0,
 * argument = that CPU's struct sdei_registered_event), sdei_cpuhp_up registers and enables it
 * again on a CPU that comes online, sdei_cpuhp_down unregisters it before the CPU goes off; a
 * shared event would not move with hotplug at all.  The driver also
 * registers event 5001, a hypervisor-originated critical event, as APEI GHES registers a
 * critical event (GET_INFO(EV_PRIORITY) picks the critical callback).  The guest cannot raise
 * 5001 (only the host can: platform.sdei.raise_event), so in this scenario it never fires;
 * tests/test_sdei_intervals.py raises it from the host.
 *
 * The handler (entry.S, __sdei_asm_handler): saves x4..x30 and SP in this CPU's registered
 * event, switches SP to this CPU's normal or critical SDEI stack by the event's priority, calls
 * __sdei_handler (do_sdei_event), which reads x0..x3 back with EVENT_CONTEXT, runs the callback,
 * and decides how to leave exactly as arch/arm64/kernel/sdei.c does:
 *   - interrupted at the kernel's own EL (PSTATE.M == CurrentEL | SPSel) with IRQs masked
 *     (PSTATE.I set; Linux's interrupts_enabled() also checks the GIC PMR under pseudo-NMI,
 *     which this guest does not use): SDEI_EV_HANDLED, i.e. EVENT_COMPLETE, back where it was;
 *   - otherwise "pretend this was an IRQ": EVENT_COMPLETE_AND_RESUME to VBAR_EL1 + 0x280
 *     (current EL with SP_ELx, IRQ), + 0x480 from AArch64 EL0, + 0x680 from AArch32;
 *   - a callback error: SDEI_EV_FAILED, EVENT_COMPLETE with status FAILED.
 * The resume enters the IRQ vector as an exception would (ELR_EL1 = interrupted PC, SPSR_EL1 =
 * interrupted PSTATE; DEN0054 5.2.2); the library's IRQ handler finds nothing to acknowledge
 * (spurious INTID) and returns there.
 *
 * The watchdog (Linux's hard-lockup check): an NMI takes a sample of the CPU's IRQ count and
 * re-arms the timer; the next NMI compares: no IRQ taken in between means a hard lockup.  A CPU
 * idling with IRQs unmasked passes (the first NMI's own resume at the IRQ vector is an IRQ it
 * took); CPU 2, spinning in stuck_loop with DAIF.I set, takes none and is caught.  It stays
 * stuck to the end (Linux would panic here).  Then the hotplug path on CPU 3: its down path
 * (UNREGISTER its private events, PE_MASK), CPU_OFF, CPU_ON, its up path (REGISTER, ENABLE,
 * PE_UNMASK), and the watchdog once more on it.
 *
 * Nothing is printed from a handler or from CPUs that run concurrently: handlers and secondaries
 * record (NMI records, mask/unmask points, call results) and CPU 0 prints everything afterwards
 * in CPU order.  The printed PCs are exact: each loop waits in one instruction (B or WFI) at a
 * fixed address (entry.S).  tests/test_sdei_intervals.py checks these lines against the trace.
 */
#include "sdei.h"
#include "linux_client.h"

#define STUCK_CPU       2
#define HOTPLUG_CPU     3
#define SCENARIO_CPUS   4
#define WD_PERIOD       4000            /* CNTP counts at 62.5 MHz: 64 us, some 64,000 instructions */
#define MAX_NMI         8               /* records kept per CPU */
#define MAX_CHECKS      4
#define MASK_LOG_LEN    16

/* arch/arm64/include/uapi/asm/ptrace.h */
#define PSR_MODE_MASK   0x0000000f
#define PSR_MODE32_BIT  0x00000010
#define PSR_I_BIT       0x00000080

#define SDEI_EVENT_TYPE_PRIVATE 0
#define SDEI_EVENT_TYPE_SHARED  1

/* ------------------------------------------------------------------ Linux's structures */

struct pt_regs {
    uint64_t regs[31];
    uint64_t sp;
    uint64_t pc;
    uint64_t pstate;
};

typedef int sdei_event_callback(uint32_t event, struct pt_regs *regs, void *arg);

/* What the firmware hands back as the handler argument: one per CPU for a private event. */
struct sdei_registered_event {
    struct pt_regs interrupted_regs;
    sdei_event_callback *callback;
    void *callback_arg;
    uint32_t event_num;
    uint8_t priority;
};

_Static_assert(offsetof(struct pt_regs, regs[30]) == S_LR, "S_LR");
_Static_assert(offsetof(struct pt_regs, sp) == S_SP, "S_SP");
_Static_assert(offsetof(struct pt_regs, pc) == S_PC, "S_PC");
_Static_assert(offsetof(struct pt_regs, pstate) == S_PSTATE, "S_PSTATE");
_Static_assert(offsetof(struct sdei_registered_event, interrupted_regs) == SDEI_EVENT_INTREGS, "INTREGS");
_Static_assert(offsetof(struct sdei_registered_event, callback) == SDEI_EVENT_CALLBACK, "CALLBACK");
_Static_assert(offsetof(struct sdei_registered_event, event_num) == SDEI_EVENT_NUM, "EVENT_NUM");
_Static_assert(offsetof(struct sdei_registered_event, priority) == SDEI_EVENT_PRIORITY, "PRIORITY");
_Static_assert(sizeof(struct sdei_registered_event) == SDEI_REGISTERED_EVENT_SIZE, "SIZE");

/* The driver's view of an event (struct sdei_event), private events only in this guest. */
struct sdei_event {
    uint32_t event_num;
    uint8_t type;
    uint8_t priority;
    bool reregister;                /* re-REGISTER on a CPU that comes online */
    bool reenable;                  /* re-ENABLE on a CPU that comes online */
    struct sdei_registered_event private_registered[MAX_CPUS];
};

#define MAX_EVENTS 2
static struct sdei_event sdei_list[MAX_EVENTS];
static unsigned sdei_list_len;
static bool sdei_cpuhp_installed;   /* cpuhp_setup_state(CPUHP_AP_ARM_SDEI_STARTING) done */

/* entry.S */
void __sdei_asm_handler(void);
void hard_lockup(volatile uint32_t *lock) __attribute__((noreturn));
void cpu_idle(volatile uint32_t *stop);
extern char stuck_loop[], stuck_loop_end[], cpu_idle_woken[], cpu_idle_end[];
extern uint8_t sdei_stack_normal[], sdei_stack_critical[];

/* ------------------------------------------------------------------ what CPU 0 prints later */

/* One handler run, written by the CPU that took it (at entry, then the decision). */
struct nmi_record {
    uint32_t event;
    bool critical;
    uint64_t pc, pstate, x0;        /* interrupted PC/PSTATE (x2/x3), x0 from EVENT_CONTEXT(0) */
    bool right_stack;               /* SP inside this CPU's SDEI stack of the event's priority */
    uint64_t ret;                   /* SDEI_EV_HANDLED, SDEI_EV_FAILED or the resume address */
    uint64_t vbar;
    volatile uint64_t done;
};
static struct nmi_record nmi_log[MAX_CPUS][MAX_NMI];
static volatile uint32_t nmi_entries[MAX_CPUS];
static volatile uint32_t nmi_unsafe[MAX_CPUS];      /* ELR_EL1 changed in the handler: an exception */

/* The hard-lockup check of the second NMI of a watchdog round. */
struct wd_check {
    uint32_t irqs_saved, irqs_now;
    bool lockup;
    uint64_t pc;
};
struct watchdog {
    bool sampled;
    uint32_t irqs_saved;
    volatile uint32_t checked;      /* cpu_idle's stop flag */
    unsigned nchecks;
    struct wd_check checks[MAX_CHECKS];
};
static struct watchdog watchdog[MAX_CPUS];
static volatile uint32_t lockup_lock;       /* never released */

/* The CPU's own PE_MASK/PE_UNMASK calls and power points, in order: "on", "UNMASK", "MASK", "off". */
static const char *mask_log[MAX_CPUS][MASK_LOG_LEN];
static unsigned mask_log_len[MAX_CPUS];

static void mask_log_add(const char *what)
{
    unsigned cpu = cpu_index();
    if (mask_log_len[cpu] < MASK_LOG_LEN)
        mask_log[cpu][mask_log_len[cpu]++] = what;
    else
        test_fail("mask log full");
}

/* Results of the calls a CPU made in its up/down paths, for CPU 0 to print. */
struct hp_result {
    int64_t private_reset, unmask, mask;
    int64_t reg[MAX_EVENTS], enable[MAX_EVENTS], unreg[MAX_EVENTS], status[MAX_EVENTS];
};
static struct hp_result hp[MAX_CPUS];

/* ------------------------------------------------------------------ waiting, cross-calls */

static void wait_u64(volatile uint64_t *p, uint64_t want, const char *what)
{
    for (uint64_t spin = 0; load_acquire(p) != want; spin++) {
        if (spin > 4 * (uint64_t)SDEI_WAIT_SPINS) {
            test_fail(what);
            test_finish();
        }
    }
}

static void wait_u32(volatile uint32_t *p, uint32_t at_least, const char *what)
{
    for (uint64_t spin = 0; __atomic_load_n(p, __ATOMIC_ACQUIRE) < at_least; spin++) {
        if (spin > 4 * (uint64_t)SDEI_WAIT_SPINS) {
            test_fail(what);
            test_finish();
        }
    }
}

/* smp_call_function_single without IPIs: each online secondary polls its slot. */
typedef void (*smp_call_func_t)(void *info);
struct call_slot {
    smp_call_func_t func;
    void *info;
    volatile uint64_t req, done;
};
static struct call_slot call_slot[MAX_CPUS];
static volatile uint64_t cpu_online[MAX_CPUS];
static bool cpu_dying[MAX_CPUS];
static unsigned nr_cpus;

static void smp_call_function_single(unsigned cpu, smp_call_func_t func, void *info, bool wait)
{
    if (cpu == cpu_index()) {
        func(info);
        return;
    }
    struct call_slot *slot = &call_slot[cpu];
    wait_u64(&slot->done, slot->req, "cross-call: the previous call did not finish");
    slot->func = func;
    slot->info = info;
    uint64_t seq = slot->req + 1;
    store_release(&slot->req, seq);
    if (wait)
        wait_u64(&slot->done, seq, "cross-call did not finish");
}

/* on_each_cpu: every online CPU in turn (Linux runs them in parallel; in turn keeps the trace
 * in a fixed order). */
static void on_each_cpu(smp_call_func_t func, void *info)
{
    for (unsigned cpu = 0; cpu < nr_cpus; cpu++)
        if (load_acquire(&cpu_online[cpu]))
            smp_call_function_single(cpu, func, info, true);
}

/* ------------------------------------------------------------------ the driver (arm_sdei.c) */

static int64_t sdei_mask_local_cpu(void)
{
    int64_t ret = sdei_pe_mask();
    mask_log_add("MASK");
    return ret;
}

static int64_t sdei_unmask_local_cpu(void)
{
    int64_t ret = sdei_pe_unmask();
    mask_log_add("UNMASK");
    return ret;
}

static void _ipi_private_reset(void *unused)
{
    (void)unused;
    hp[cpu_index()].private_reset = sdei_private_reset();
}

static int64_t sdei_platform_reset(void)
{
    on_each_cpu(_ipi_private_reset, NULL);
    return sdei_shared_reset();
}

static unsigned event_index(const struct sdei_event *event) { return (unsigned)(event - sdei_list); }

/* The hotplug callbacks run these on the CPU itself ("call the cross-call function locally"). */
static void _local_event_register(void *data)
{
    struct sdei_event *event = data;
    unsigned cpu = cpu_index();
    hp[cpu].reg[event_index(event)] =
        sdei_event_register(event->event_num, __sdei_asm_handler,
                            (uint64_t)(uintptr_t)&event->private_registered[cpu], 0, 0);
}

static void _local_event_enable(void *data)
{
    struct sdei_event *event = data;
    hp[cpu_index()].enable[event_index(event)] = sdei_event_enable(event->event_num);
}

static void _local_event_unregister(void *data)
{
    struct sdei_event *event = data;
    hp[cpu_index()].unreg[event_index(event)] = sdei_event_unregister(event->event_num);
}

static bool all_online_ok(int64_t (*results)(unsigned cpu, unsigned i), unsigned i, const char *what)
{
    bool ok = true;
    for (unsigned cpu = 0; cpu < nr_cpus; cpu++)
        if (load_acquire(&cpu_online[cpu]))
            ok &= expect_ret(what, results(cpu, i), 0);
    return ok;
}

static int64_t reg_result(unsigned cpu, unsigned i) { return hp[cpu].reg[i]; }
static int64_t enable_result(unsigned cpu, unsigned i) { return hp[cpu].enable[i]; }

/* sdei_event_create: the firmware's type and priority decide how the event is handled. */
static struct sdei_event *sdei_event_create(uint32_t event_num, sdei_event_callback *cb, void *arg)
{
    int64_t type = sdei_event_get_info(event_num, SDEI_INFO_EV_TYPE);
    int64_t priority = sdei_event_get_info(event_num, SDEI_INFO_EV_PRIORITY);
    if (!expect_eq("EVENT_GET_INFO(EV_TYPE) (private)", type, SDEI_EVENT_TYPE_PRIVATE)
        || !expect_true("EVENT_GET_INFO(EV_PRIORITY) is 0 or 1", priority == 0 || priority == 1)
        || !expect_true("room in the event list", sdei_list_len < MAX_EVENTS))
        return NULL;
    struct sdei_event *event = &sdei_list[sdei_list_len++];
    event->event_num = event_num;
    event->type = (uint8_t)type;
    event->priority = (uint8_t)priority;
    for (unsigned cpu = 0; cpu < MAX_CPUS; cpu++) {
        struct sdei_registered_event *reg = &event->private_registered[cpu];
        reg->callback = cb;
        reg->callback_arg = arg;
        reg->event_num = event_num;
        reg->priority = (uint8_t)priority;
    }
    return event;
}

/* sdei_event_register + sdei_event_enable for a private event: a cross-call to every online CPU;
 * the flags make CPUs that come online later do the same in sdei_cpuhp_up. */
static struct sdei_event *sdei_event_register_enable(uint32_t event_num, sdei_event_callback *cb, void *arg)
{
    struct sdei_event *event = sdei_event_create(event_num, cb, arg);
    if (!event)
        return NULL;
    unsigned i = event_index(event);
    on_each_cpu(_local_event_register, event);
    if (!all_online_ok(reg_result, i, "EVENT_REGISTER")) {
        on_each_cpu(_local_event_unregister, event);
        return NULL;
    }
    event->reregister = true;
    on_each_cpu(_local_event_enable, event);
    if (!all_online_ok(enable_result, i, "EVENT_ENABLE"))
        return NULL;
    event->reenable = true;
    return event;
}

/* CPUHP_AP_ARM_SDEI_STARTING, on the CPU itself. */
static void sdei_cpuhp_up(void *unused)
{
    (void)unused;
    for (unsigned i = 0; i < sdei_list_len; i++) {
        if (sdei_list[i].reregister)
            _local_event_register(&sdei_list[i]);
        if (sdei_list[i].reenable)
            _local_event_enable(&sdei_list[i]);
    }
    hp[cpu_index()].unmask = sdei_unmask_local_cpu();
}

static void sdei_cpuhp_down(void *unused)
{
    (void)unused;
    for (unsigned i = 0; i < sdei_list_len; i++)
        _local_event_unregister(&sdei_list[i]);
    hp[cpu_index()].mask = sdei_mask_local_cpu();
}

/* ------------------------------------------------------------------ the arch handler (sdei.c) */

static bool on_sdei_stack(unsigned cpu, bool critical, uintptr_t sp)
{
    uintptr_t base = (uintptr_t)(critical ? sdei_stack_critical : sdei_stack_normal) + cpu * SDEI_STACK_SIZE;
    return sp > base && sp <= base + SDEI_STACK_SIZE;
}

/* do_sdei_event (called by __sdei_handler, which also does Linux's NMI entry accounting). */
uint64_t __sdei_handler(struct pt_regs *regs, struct sdei_registered_event *arg);
uint64_t __sdei_handler(struct pt_regs *regs, struct sdei_registered_event *arg)
{
    unsigned cpu = cpu_index();
    /* The record slot first, so that records are in entry order: a critical event can come in
     * on the way out of any SDEI call below (or between any two instructions), so the slot is
     * taken atomically. */
    uint32_t n = __atomic_fetch_add(&nmi_entries[cpu], 1, __ATOMIC_RELAXED);
    struct nmi_record *rec = n < MAX_NMI ? &nmi_log[cpu][n] : NULL;
    uint64_t elr = read_sysreg(elr_el1);
    uint64_t kernel_mode = read_sysreg(CurrentEL) | 1;         /* + SPSel: EL1h = 0b0101 */
    uint64_t vbar = read_sysreg(vbar_el1);

    /* x0..x3 now hold the event, argument, PC and PSTATE: the interrupted ones come back with
     * EVENT_CONTEXT, which cannot fail inside a handler. */
    for (unsigned i = 0; i < 4; i++)
        regs->regs[i] = (uint64_t)sdei_event_context(i);

    if (rec) {
        volatile uint8_t here;
        rec->event = arg->event_num;
        rec->critical = arg->priority != 0;
        rec->pc = regs->pc;
        rec->pstate = regs->pstate;
        rec->x0 = regs->regs[0];
        rec->right_stack = on_sdei_stack(cpu, rec->critical, (uintptr_t)&here);
        rec->vbar = vbar;
    }

    uint64_t ret;
    if (arg->callback(arg->event_num, regs, arg->callback_arg)) {
        ret = SDEI_EV_FAILED;
    } else {
        if (elr != read_sysreg(elr_el1))
            nmi_unsafe[cpu]++;      /* Linux: "unsafe: exception during handler" */
        uint64_t mode = regs->pstate & (PSR_MODE32_BIT | PSR_MODE_MASK);
        if (mode == kernel_mode && (regs->pstate & PSR_I_BIT))
            ret = SDEI_EV_HANDLED;  /* the kernel with interrupts masked: back where it was */
        else if (mode == kernel_mode)
            ret = vbar + 0x280;     /* pretend it was an IRQ: current EL with SP_ELx, IRQ */
        else if (mode & PSR_MODE32_BIT)
            ret = vbar + 0x680;     /* lower EL, AArch32, IRQ */
        else
            ret = vbar + 0x480;     /* lower EL, AArch64, IRQ */
    }
    if (rec) {
        rec->ret = ret;
        store_release(&rec->done, 1);
    }
    return ret;
}

/* ------------------------------------------------------------------ the callbacks */

/* The hard-lockup detector: sample the IRQ count, re-arm; next time, compare. */
static int sdei_watchdog_callback(uint32_t event, struct pt_regs *regs, void *arg)
{
    (void)event, (void)arg;
    unsigned cpu = cpu_index();
    struct watchdog *wd = &watchdog[cpu];
    uint32_t irqs = irq_spurious_count[cpu];        /* IRQ exceptions this CPU took (library) */
    if (!wd->sampled) {
        wd->sampled = true;
        wd->irqs_saved = irqs;
        cntp_start(WD_PERIOD);                      /* the level drops until the next period */
        return 0;
    }
    cntp_stop();
    if (wd->nchecks < MAX_CHECKS) {
        struct wd_check *check = &wd->checks[wd->nchecks++];
        check->irqs_saved = wd->irqs_saved;
        check->irqs_now = irqs;
        check->lockup = irqs == wd->irqs_saved;
        check->pc = regs->pc;
    }
    __atomic_store_n(&wd->checked, 1, __ATOMIC_RELEASE);
    return 0;
}

/* APEI GHES registers a critical callback for a critical event; this one only returns. */
static int ghes_sdei_critical_callback(uint32_t event, struct pt_regs *regs, void *arg)
{
    (void)event, (void)regs, (void)arg;
    return 0;
}

/* ------------------------------------------------------------------ the CPUs' work */

/* The secondary CPUs' kernel: the STARTING hotplug callbacks, then cross-calls until told to die. */
static void secondary_start_kernel(uint64_t unused)
{
    (void)unused;
    unsigned cpu = cpu_index();
    mask_log_add("on");             /* the PE comes out of CPU_ON masked (DEN0054 5.1.10) */
    cpu_dying[cpu] = false;
    if (sdei_cpuhp_installed)
        sdei_cpuhp_up(NULL);
    store_release(&cpu_online[cpu], 1);
    struct call_slot *slot = &call_slot[cpu];
    uint64_t seen = slot->done;
    for (;;) {
        uint64_t req = load_acquire(&slot->req);
        if (req == seen)
            continue;
        slot->func(slot->info);
        seen = req;
        store_release(&slot->done, req);
        if (cpu_dying[cpu])
            return;                 /* secondary_entry: PSCI CPU_OFF */
    }
}

/* takedown_cpu: the down path on the CPU, then CPU_OFF. */
static void take_cpu_down(void *unused)
{
    (void)unused;
    unsigned cpu = cpu_index();
    sdei_cpuhp_down(NULL);
    store_release(&cpu_online[cpu], 0);
    cpu_dying[cpu] = true;
    mask_log_add("off");
}

static void watchdog_idle(void *unused)
{
    (void)unused;
    unsigned cpu = cpu_index();
    cntp_start(WD_PERIOD);
    cpu_idle(&watchdog[cpu].checked);
}

static void watchdog_lockup(void *unused)
{
    (void)unused;
    cntp_start(WD_PERIOD);
    hard_lockup(&lockup_lock);
}

static void watchdog_reset(unsigned cpu)
{
    watchdog[cpu].sampled = false;
    watchdog[cpu].checked = 0;
}

static void status_check(void *unused)
{
    (void)unused;
    unsigned cpu = cpu_index();
    for (unsigned i = 0; i < sdei_list_len; i++)
        hp[cpu].status[i] = sdei_event_status(sdei_list[i].event_num);
}

/* ------------------------------------------------------------------ printing */

static void print_pc(uint64_t pc)
{
    put_hex(pc);
    if (pc >= (uintptr_t)stuck_loop && pc < (uintptr_t)stuck_loop_end) {
        puts(" (stuck_loop+");
        put_hex(pc - (uintptr_t)stuck_loop);
        putc(')');
    } else if (pc >= (uintptr_t)cpu_idle && pc < (uintptr_t)cpu_idle_end) {
        puts(" (cpu_idle+");
        put_hex(pc - (uintptr_t)cpu_idle);
        putc(')');
    }
}

static void print_events_calls(const char *call, const int64_t *results)
{
    for (unsigned i = 0; i < sdei_list_len; i++) {
        puts(i ? ", " : "");
        puts(call);
        putc('(');
        put_udec(sdei_list[i].event_num);
        puts(") = ");
        print_ret(results[i]);
    }
}

static void print_up_path(unsigned cpu)
{
    puts("CPU ");
    put_udec(cpu);
    puts(" up: ");
    print_events_calls("REGISTER", hp[cpu].reg);
    puts(", ");
    print_events_calls("ENABLE", hp[cpu].enable);
    puts(", PE_UNMASK = ");
    print_ret(hp[cpu].unmask);
    putc('\n');
}

/* CPU `cpu`'s handler runs first..last-1; checks what each one must show. */
static void report_nmis(unsigned cpu, unsigned first, unsigned last)
{
    for (unsigned n = first; n < last && n < MAX_NMI; n++) {
        struct nmi_record *rec = &nmi_log[cpu][n];
        wait_u64(&rec->done, 1, "an SDEI handler did not finish");   /* the stuck CPU's may be late */
        puts("CPU ");
        put_udec(cpu);
        puts(": NMI ");
        put_udec(n + 1);
        puts(": event ");
        put_udec(rec->event);
        puts(rec->critical ? " (critical), PC " : " (normal), PC ");
        print_pc(rec->pc);
        puts(", PSTATE.I ");
        put_udec((rec->pstate & PSR_I_BIT) ? 1 : 0);
        puts(" -> ");
        if (rec->ret == SDEI_EV_HANDLED) {
            puts("COMPLETE");
        } else if (rec->ret == SDEI_EV_FAILED) {
            puts("COMPLETE(FAILED)");
        } else {
            puts("COMPLETE_AND_RESUME(VBAR_EL1 + ");
            put_hex(rec->ret - rec->vbar);
            putc(')');
        }
        puts(rec->critical ? ", critical stack: " : ", normal stack: ");
        puts(rec->right_stack ? "yes\n" : "NO\n");
        expect_true("the handler ran on this CPU's SDEI stack of its priority", rec->right_stack);
        /* Linux's rule: COMPLETE exactly when the kernel was interrupted with IRQs masked. */
        bool masked = rec->pstate & PSR_I_BIT;
        expect_eq("exit (0 = COMPLETE, else the resume address)", (int64_t)rec->ret,
                  masked ? SDEI_EV_HANDLED : (int64_t)(rec->vbar + 0x280));
        if (rec->pc == (uintptr_t)stuck_loop)
            expect_eq("EVENT_CONTEXT(0) in stuck_loop (the lock)", (int64_t)rec->x0,
                      (int64_t)(uintptr_t)&lockup_lock);
        if (rec->pc == (uintptr_t)cpu_idle_woken)
            expect_eq("EVENT_CONTEXT(0) in cpu_idle (its stop flag)", (int64_t)rec->x0,
                      (int64_t)(uintptr_t)&watchdog[cpu].checked);
    }
}

/* The watchdog round that ended with check `c` on CPU `cpu`: two NMIs, then the verdict. */
static void report_check(unsigned cpu, unsigned c, bool want_lockup)
{
    struct wd_check *check = &watchdog[cpu].checks[c];
    puts("CPU ");
    put_udec(cpu);
    puts(": watchdog: IRQs taken ");
    put_udec(check->irqs_saved);
    puts(" -> ");
    put_udec(check->irqs_now);
    if (!check->lockup) {
        puts(": no lockup\n");
    } else {
        bool inside = check->pc >= (uintptr_t)stuck_loop && check->pc < (uintptr_t)stuck_loop_end;
        puts(": hard LOCKUP, interrupted PC ");
        put_hex(check->pc);
        puts(" = stuck_loop+");
        put_hex(check->pc - (uintptr_t)stuck_loop);
        puts(", inside stuck_loop: ");
        puts(inside ? "yes\n" : "NO\n");
        expect_true("the locked-up PC is inside stuck_loop", inside);
    }
    expect_eq("hard lockup detected (1) or not (0)", check->lockup, want_lockup);
}

static void report_irq_vector(unsigned cpu, uint32_t want)
{
    uint32_t count = irq_spurious_count[cpu];
    puts("CPU ");
    put_udec(cpu);
    puts(": IRQ vector entries ");
    put_udec(count);
    if (count) {
        bool same = irq_last_elr[cpu] == (uintptr_t)cpu_idle_woken;
        puts(", ELR_EL1 = the interrupted PC: ");
        puts(same ? "yes" : "NO");
        expect_true("ELR_EL1 at the IRQ vector is the interrupted PC", same);
    }
    putc('\n');
    expect_eq("IRQ vector entries", count, want);
}

/* The first n records of `cpu` must be its watchdog's event. */
static unsigned watchdog_nmis(unsigned cpu, uint32_t watchdog_event)
{
    unsigned count = 0;
    for (unsigned n = 0; n < nmi_entries[cpu] && n < MAX_NMI; n++)
        count += nmi_log[cpu][n].event == watchdog_event;
    return count;
}

/* ------------------------------------------------------------------ the scenario */

int main(void)
{
    mask_log_add("on");             /* CPU 0 boots masked */
    test_begin("linux_client", "Linux's SDEI driver: an NMI watchdog catches a CPU spinning with IRQs masked");
    nr_cpus = test_cpu_count();
    if (!expect_eq("CPUs (the scenario needs 4)", nr_cpus, SCENARIO_CPUS))
        test_finish();
    store_release(&cpu_online[0], 1);

    /* smp_init: the secondaries come up before any driver probes. */
    test_step("smp_init");
    for (unsigned cpu = 1; cpu < nr_cpus; cpu++) {
        if (!cpu_run(cpu, secondary_start_kernel, 0))
            test_finish();
        wait_u64(&cpu_online[cpu], 1, "a secondary CPU did not come online");
    }
    puts("smp: CPUs 1-3 online (CPU_ON)\n");

    /* sdei_probe */
    test_step("probe");
    int64_t version = sdei_version();
    puts("probe: SDEI_VERSION major = ");
    put_udec((uint64_t)version >> 48);
    putc('\n');
    if (!expect_eq("SDEI_VERSION major", (uint64_t)version >> 48, 1))
        test_finish();
    int64_t shared_reset = sdei_platform_reset();
    puts("probe: platform reset: PRIVATE_RESET on CPUs 0-3 = ");
    for (unsigned cpu = 0; cpu < nr_cpus; cpu++) {
        puts(cpu ? ", " : "");
        print_ret(hp[cpu].private_reset);
        expect_ret("PRIVATE_RESET", hp[cpu].private_reset, 0);
    }
    puts("; SHARED_RESET = ");
    print_ret(shared_reset);
    putc('\n');
    expect_ret("SHARED_RESET", shared_reset, 0);
    sdei_cpuhp_installed = true;    /* cpuhp_setup_state runs the up path on every online CPU */
    on_each_cpu(sdei_cpuhp_up, NULL);
    puts("probe: cpuhp up on CPUs 0-3: PE_UNMASK = ");
    for (unsigned cpu = 0; cpu < nr_cpus; cpu++) {
        puts(cpu ? ", " : "");
        print_ret(hp[cpu].unmask);
        expect_ret("PE_UNMASK", hp[cpu].unmask, 0);
    }
    putc('\n');
    if (test_failed())
        test_finish();

    /* The watchdog driver: its event, registered and enabled on every online CPU. */
    test_step("watchdog init");
    int64_t wd_event = sdei_interrupt_bind(TIMER_PHYS_INTID);
    puts("watchdog: INTERRUPT_BIND(30) = ");
    print_ret(wd_event);
    putc('\n');
    if (!expect_true("INTERRUPT_BIND(30) >= 0", wd_event >= 0))
        test_finish();
    struct sdei_event *wd = sdei_event_register_enable((uint32_t)wd_event, sdei_watchdog_callback, NULL);
    /* GHES-style: the critical event gets the critical callback. */
    test_step("ghes init");
    struct sdei_event *ghes = sdei_event_register_enable(SDEI_LAB_EVENT_CRITICAL, ghes_sdei_critical_callback, NULL);
    if (!wd || !ghes)
        test_finish();
    for (unsigned i = 0; i < sdei_list_len; i++) {
        puts("driver: event ");
        put_udec(sdei_list[i].event_num);
        puts(sdei_list[i].priority ? " (private, critical)" : " (private, normal)");
        puts(": REGISTER and ENABLE on CPUs 0-3 = 0\n");
    }

    /* The watchdog runs: CPUs 1 and 3 idle with IRQs unmasked, CPU 2 locks up. */
    test_step("watchdog");
    for (unsigned cpu = 1; cpu < nr_cpus; cpu++) {
        watchdog_reset(cpu);
        smp_call_function_single(cpu, cpu == STUCK_CPU ? watchdog_lockup : watchdog_idle, NULL, false);
    }
    puts("watchdog: armed on CPUs 1-3 (EL1 physical timer); CPU 2 spins in stuck_loop with IRQs masked\n");
    for (unsigned cpu = 1; cpu < nr_cpus; cpu++) {
        if (cpu == STUCK_CPU)
            wait_u32(&watchdog[cpu].checked, 1, "the watchdog did not check the stuck CPU");
        else
            wait_u64(&call_slot[cpu].done, call_slot[cpu].req, "an idle CPU's watchdog did not finish");
    }

    /* CPU hotplug: CPU 3 down (its down path, then CPU_OFF) and up again (CPU_ON, its up path). */
    test_step("hotplug");
    unsigned before = test_failure_count();
    smp_call_function_single(HOTPLUG_CPU, take_cpu_down, NULL, true);
    if (!cpu_wait_off(HOTPLUG_CPU))
        test_finish();
    puts("hotplug: CPU 3 down: ");
    print_events_calls("UNREGISTER", hp[HOTPLUG_CPU].unreg);
    puts(", PE_MASK = ");
    print_ret(hp[HOTPLUG_CPU].mask);
    puts("; CPU_OFF: AFFINITY_INFO = OFF\n");
    for (unsigned i = 0; i < sdei_list_len; i++)
        expect_ret("UNREGISTER in the down path", hp[HOTPLUG_CPU].unreg[i], 0);
    expect_ret("PE_MASK in the down path (1: it was unmasked)", hp[HOTPLUG_CPU].mask, 1);
    if (!cpu_run(HOTPLUG_CPU, secondary_start_kernel, 0))
        test_finish();
    wait_u64(&cpu_online[HOTPLUG_CPU], 1, "CPU 3 did not come online again");
    puts("hotplug: ");
    print_up_path(HOTPLUG_CPU);
    smp_call_function_single(HOTPLUG_CPU, status_check, NULL, true);
    puts("hotplug: CPU 3 EVENT_STATUS: ");
    print_events_calls("STATUS", hp[HOTPLUG_CPU].status);
    puts(" (registered, enabled)\n");
    for (unsigned i = 0; i < sdei_list_len; i++) {
        expect_ret("REGISTER in the up path", hp[HOTPLUG_CPU].reg[i], 0);
        expect_ret("ENABLE in the up path", hp[HOTPLUG_CPU].enable[i], 0);
        expect_eq("EVENT_STATUS after the up path", hp[HOTPLUG_CPU].status[i],
                  SDEI_STATUS_REGISTERED | SDEI_STATUS_ENABLED);
    }
    expect_ret("PE_UNMASK in the up path", hp[HOTPLUG_CPU].unmask, 0);
    watchdog_reset(HOTPLUG_CPU);
    smp_call_function_single(HOTPLUG_CPU, watchdog_idle, NULL, true);
    puts("hotplug: the watchdog on CPU 3 again: ");
    puts(watchdog[HOTPLUG_CPU].nchecks == 2 ? "checked\n" : "NOT checked\n");
    expect_eq("watchdog checks on CPU 3", watchdog[HOTPLUG_CPU].nchecks, 2);
    step_done(before);

    /* After the fact, in CPU order. */
    test_step("report");
    for (unsigned cpu = 0; cpu < nr_cpus; cpu++) {
        unsigned rounds = cpu == 0 ? 0 : cpu == HOTPLUG_CPU ? 2 : 1;
        unsigned entries = __atomic_load_n(&nmi_entries[cpu], __ATOMIC_ACQUIRE);
        puts("CPU ");
        put_udec(cpu);
        puts(": SDEI handler runs ");
        put_udec(entries);
        putc('\n');
        report_nmis(cpu, 0, entries);
        expect_eq("watchdog NMIs", watchdog_nmis(cpu, wd->event_num), 2 * rounds);
        report_irq_vector(cpu, cpu == STUCK_CPU ? 0 : 2 * rounds);
        for (unsigned c = 0; c < watchdog[cpu].nchecks && c < rounds; c++)
            report_check(cpu, c, cpu == STUCK_CPU);
        expect_eq("watchdog verdicts", watchdog[cpu].nchecks, rounds);
        expect_eq("exceptions taken inside a handler", nmi_unsafe[cpu], 0);
    }
    for (unsigned cpu = 0; cpu < nr_cpus; cpu++) {
        puts("CPU ");
        put_udec(cpu);
        puts(": PE mask points:");
        for (unsigned i = 0; i < mask_log_len[cpu]; i++) {
            putc(' ');
            puts(mask_log[cpu][i]);
        }
        putc('\n');
    }
    test_finish();
}
