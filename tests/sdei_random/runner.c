/*
 * runner.c - runs the random SDEI/PSCI call sequences that tests/sdei_sequences.py generates
 * (the generated table, table.c, is linked with it), printing every result in hex.
 *
 * The table is a list of programs, one per sequence, run in order on CPU 0. A program is a list
 * of operations: an SMCCC call (x0..x5 given; printed as "<text> = <x0 in hex>"), or "run program
 * P on CPU k" (CPU_ON, print its result, then poll AFFINITY_INFO until the CPU is off again,
 * printing nothing meanwhile). Only one CPU prints at a time: CPU k prints nothing before CPU 0
 * has printed CPU_ON's result and released it (rnd_go), and CPU 0 nothing until CPU k is off.
 * Without that handshake the two lines race on QEMU, whose vCPUs are host threads: a CPU 0
 * preempted by the host amid "run on cpu k: CPU_ON = 0x0" printed the rest of that line after
 * CPU k's whole program (the lab's scheduler always ran CPU 0 to the end of the line first).
 * A program also carries its handler plans: the
 * n-th dispatch of the program runs plan n (its own calls, then COMPLETE(status) or
 * COMPLETE_AND_RESUME to a fixed address); later dispatches run no calls and COMPLETE(0).
 *
 * The only rule the runner adds: once a handler's own EVENT_SIGNAL succeeded (a signal that can
 * only be taken after COMPLETE), that handler skips EVENT_DISABLE and PE_MASK, printing that it
 * did. TF-A 2.12.1 cannot survive either: a signal taken for a registered but disabled event 0 is
 * set pending again for ever (the PE loops at EL3), and one taken on a masked PE is never EOIed
 * (event 0's SGI stays active). See docs/sdei.md, "Divergences from TF-A".
 */
#include "guest.h"

#define K_CALL      0
#define K_RUN_CPU   1

#define RES_COMPLETE        0   /* COMPLETE(status) */
#define RES_RESUME_MARK     1   /* COMPLETE_AND_RESUME(rnd_resumed): notes the resume */
#define RES_RESUME_PC       2   /* COMPLETE_AND_RESUME(interrupted PC), as TFTF's stub */

struct rnd_prog;

struct rnd_op {
    uint32_t kind;
    uint32_t cpu;                   /* K_RUN_CPU: the CPU */
    const char *text;               /* what is printed before " = " */
    uint64_t args[6];               /* K_CALL: x0 (FID), x1..x5 */
    const struct rnd_prog *prog;    /* K_RUN_CPU: what that CPU runs */
};

struct rnd_plan {
    const struct rnd_op *ops;
    uint32_t nops;
    uint32_t completion;            /* RES_* */
    uint64_t status;                /* COMPLETE's argument */
};

struct rnd_prog {
    const char *title;
    const struct rnd_op *ops;
    uint32_t nops;
    const struct rnd_plan *plans;
    uint32_t nplans;
};

struct rnd_regs {
    uint64_t x[18];
    uint64_t nzcv, daif, spsel;
};

struct rnd_ret {
    uint64_t fid, arg;
};

/* table.c */
extern const char rnd_title[];
extern const struct rnd_prog rnd_progs[];
extern const uint32_t rnd_nprogs;
extern const uint32_t rnd_guard_signal;    /* 1: the rule above; 0 (a divergence's own guest): none */

/* entry.S */
int64_t rnd_call(const uint64_t args[6]);
void rnd_handler_a(void);
void rnd_handler_b(void);
extern char rnd_resumed[];
extern char _start[];

struct rnd_regs rnd_entry[MAX_CPUS];
volatile uint32_t rnd_resume_flag[MAX_CPUS];
static const struct rnd_prog *current[MAX_CPUS];
static uint32_t dispatches[MAX_CPUS];
static uint32_t handler_signalled[MAX_CPUS];
static uint32_t handler_depth[MAX_CPUS];
/* 1 once CPU 0 has printed CPU_ON's result for CPU k: CPU k may print (run_cpu, secondary_main). */
static volatile uint64_t rnd_go[MAX_CPUS];

#define RND_PATTERN(n)  (0x5EC0000000000000ull | ((uint64_t)(n) << 8) | (n))

static void run_ops(unsigned cpu, const struct rnd_op *ops, uint32_t n, const char *indent);

static void run_call(unsigned cpu, const struct rnd_op *op, const char *indent)
{
    bool in_handler = handler_depth[cpu] != 0;
    uint64_t fid = op->args[0];
    if (rnd_guard_signal && in_handler && handler_signalled[cpu] && (fid == SDEI_EVENT_DISABLE || fid == SDEI_PE_MASK)) {
        puts(indent);
        puts(op->text);
        puts(" skipped (a signal is pending)\n");
        return;
    }
    rnd_resume_flag[cpu] = 0;
    int64_t ret = rnd_call(op->args);
    bool resumed = rnd_resume_flag[cpu] != 0;
    puts(indent);
    puts(op->text);
    puts(" = ");
    put_hex((uint64_t)ret);
    if (resumed)
        puts(" (resumed)");
    putc('\n');
    if (in_handler && fid == SDEI_EVENT_SIGNAL && ret == 0)
        handler_signalled[cpu] = 1;
}

static void secondary_main(uint64_t context)
{
    const struct rnd_prog *prog = (const struct rnd_prog *)(uintptr_t)context;
    unsigned cpu = cpu_index();
    /* No event can interrupt this wait: a PE comes out of CPU_ON masked, as out of reset
     * (DEN0054 5.1.10). */
    while (load_acquire(&rnd_go[cpu]) == 0)
        ;
    current[cpu] = prog;
    dispatches[cpu] = 0;
    puts("  [cpu ");
    put_udec(cpu);
    puts("] ");
    puts(prog->title);
    putc('\n');
    run_ops(cpu, prog->ops, prog->nops, "    ");
}

static void run_cpu(const struct rnd_op *op, const char *indent)
{
    rnd_go[op->cpu] = 0;    /* ordered before CPU_ON by cpu_start's store-release */
    int64_t ret = cpu_start(op->cpu, secondary_main, (uint64_t)(uintptr_t)op->prog);
    puts(indent);
    puts(op->text);
    puts(" = ");
    put_hex((uint64_t)ret);
    putc('\n');
    if (ret != 0)
        return;
    /* The line is out (the UART's data register is written by the time put* returns): let CPU k
     * print. The barrier completes the UART writes, Device memory, before the flag's store. */
    __asm__ volatile("dsb sy" ::: "memory");
    store_release(&rnd_go[op->cpu], 1);
    /* Wait for CPU k's CPU_OFF, without a bound: a bound in polls is one in host time on QEMU,
     * where a preempted CPU k can take any time. A CPU k that never turns off is reported by the
     * test instead (QEMU's timeout, the lab's instruction budget), with the last lines printed. */
    int64_t state;
    while ((state = psci_affinity_info(cpu_mpidr(op->cpu), 0)) != PSCI_AFF_OFF) {
        if (state < 0) {
            puts(indent);
            puts("AFFINITY_INFO = ");
            put_hex((uint64_t)state);
            putc('\n');
            psci_system_off();
        }
        for (volatile unsigned d = 0; d < 200; d++)
            ;
    }
    puts(indent);
    puts("cpu ");
    put_udec(op->cpu);
    puts(" is off\n");
}

static void run_ops(unsigned cpu, const struct rnd_op *ops, uint32_t n, const char *indent)
{
    for (uint32_t i = 0; i < n; i++) {
        if (ops[i].kind == K_RUN_CPU)
            run_cpu(&ops[i], indent);
        else
            run_call(cpu, &ops[i], indent);
    }
}

/* Called by rnd_handler_a/b with x0..x17, NZCV, DAIF, SPSel at entry in rnd_entry[cpu]. */
struct rnd_ret rnd_handler_body(unsigned which)
{
    unsigned cpu = cpu_index();
    const struct rnd_regs *r = &rnd_entry[cpu];
    uint32_t k = dispatches[cpu]++;
    puts("    > handler_");
    putc((char)('a' + which));
    puts(" #");
    put_udec(k);
    puts(": x0=");
    put_hex(r->x[0]);
    puts(" x1=");
    put_hex(r->x[1]);
    puts(" pc=_start+");
    put_hex(r->x[2] - (uint64_t)(uintptr_t)_start);
    puts(" pstate=");
    put_hex(r->x[3]);
    puts(" x4=");
    put_hex(r->x[4]);
    puts(" x5=");
    put_hex(r->x[5]);
    for (unsigned i = 6; i < 18; i++) {
        if (r->x[i] != RND_PATTERN(i)) {
            puts(" x");
            put_udec(i);
            putc('=');
            put_hex(r->x[i]);
        }
    }
    puts(" nzcv=");
    put_hex(r->nzcv);
    puts(" daif=");
    put_hex(r->daif);
    puts(" spsel=");
    put_hex(r->spsel);
    putc('\n');

    const struct rnd_prog *prog = current[cpu];
    const struct rnd_plan *plan = prog && k < prog->nplans ? &prog->plans[k] : 0;
    uint32_t saved_signalled = handler_signalled[cpu];
    handler_signalled[cpu] = 0;
    handler_depth[cpu]++;
    if (plan)
        run_ops(cpu, plan->ops, plan->nops, "      ");
    handler_depth[cpu]--;
    handler_signalled[cpu] = saved_signalled;

    struct rnd_ret ret = {SDEI_EVENT_COMPLETE, 0};
    uint32_t completion = plan ? plan->completion : RES_COMPLETE;
    puts("    < ");
    if (completion == RES_COMPLETE) {
        ret.arg = plan ? plan->status : 0;
        puts("COMPLETE(");
        put_hex(ret.arg);
        puts(")\n");
    } else {
        ret.fid = SDEI_EVENT_COMPLETE_AND_RESUME;
        ret.arg = completion == RES_RESUME_MARK ? (uint64_t)(uintptr_t)rnd_resumed : r->x[2];
        puts(completion == RES_RESUME_MARK ? "COMPLETE_AND_RESUME(rnd_resumed)\n"
                                           : "COMPLETE_AND_RESUME(interrupted pc)\n");
    }
    return ret;
}

void rnd_complete_returned(int64_t err)
{
    puts("    COMPLETE refused: ");
    put_hex((uint64_t)err);
    putc('\n');
    psci_system_off();
}

void handle_sync(uint64_t esr, uint64_t elr, uint64_t far)
{
    puts("FAULT esr=");
    put_hex(esr);
    puts(" elr=_start+");
    put_hex(elr - (uint64_t)(uintptr_t)_start);
    puts(" far=");
    put_hex(far);
    putc('\n');
    psci_system_off();
}

int main(void)
{
    puts(rnd_title);
    putc('\n');
    for (uint32_t s = 0; s < rnd_nprogs; s++) {
        const struct rnd_prog *prog = &rnd_progs[s];
        current[0] = prog;
        dispatches[0] = 0;
        puts(prog->title);
        putc('\n');
        run_ops(0, prog->ops, prog->nops, "  ");
    }
    puts("done\n");
    psci_system_off();
}
