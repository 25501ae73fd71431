/*
 * busy_forever.c - a 4-CPU guest that never stops, for the step-back and checkpoint benchmark
 * (benchmarks/step_back.py): something to step back into at 10^6 and 10^8 instructions.
 *
 * CPU 0 powers the others on (PSCI CPU_ON). Every CPU registers the software-signalled event 0
 * for itself (DEN0054 EVENT_REGISTER, RM_PE), enables it and unmasks itself, then loops for
 * ever: it writes a counter through its own 1 MiB window of a 4 MiB buffer (so RAM changes
 * between checkpoints), and every SIGNAL_EVERY rounds it signals event 0 to the next CPU
 * (EVENT_SIGNAL), whose handler counts it. CPU 0 prints a line every PRINT_EVERY rounds.
 */
#include "sdei.h"

#define WINDOW          (1u << 20)
#define SIGNAL_EVERY    4096u
#define PRINT_EVERY     (1u << 18)

static volatile uint64_t buffer[4 * WINDOW / 8];
static volatile uint64_t handled[MAX_CPUS];

int sdei_event_handler(int64_t ev, uint64_t arg, uint64_t pc, uint64_t pstate)
{
    (void)ev, (void)arg, (void)pc, (void)pstate;
    handled[cpu_index()]++;
    return 0;
}

static void work(uint64_t cpus)
{
    unsigned me = cpu_index();
    sdei_event_register(SDEI_EVENT_SW_SIGNALLED, sdei_entrypoint, 0, SDEI_REGF_RM_PE, my_mpidr());
    sdei_event_enable(SDEI_EVENT_SW_SIGNALLED);
    sdei_pe_unmask();
    volatile uint64_t *mine = buffer + me * (WINDOW / 8);
    for (uint64_t round = 1;; round++) {
        mine[(round * 8) % (WINDOW / 8)] = round;
        if (round % SIGNAL_EVERY == 0)
            sdei_event_signal(SDEI_EVENT_SW_SIGNALLED, cpu_mpidr((me + 1) % cpus));
        if (me == 0 && round % PRINT_EVERY == 0) {
            puts("round ");
            put_udec(round);
            puts(", events handled on CPU 0: ");
            put_udec(handled[0]);
            putc('\n');
        }
    }
}

int main(void)
{
    unsigned cpus = 4;
    for (unsigned cpu = 1; cpu < cpus; cpu++)
        cpu_start(cpu, work, cpus);
    work(cpus);
    return 0;
}
