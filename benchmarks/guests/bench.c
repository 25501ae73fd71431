/* Speed benchmark guest: every CPU runs alu_loop(ITERATIONS), CPU 0 also runs hvc_loop(HVCS).
 * CPUS, ITERATIONS and HVCS are set with -D by benchmarks/machine_speed.py. */
#include "guest.h"

void alu_loop(uint64_t iterations);
void hvc_loop(uint64_t count);

static volatile uint32_t finished;

static void worker(uint64_t context_id)
{
    (void)context_id;
    alu_loop(ITERATIONS);
    __atomic_fetch_add(&finished, 1, __ATOMIC_RELEASE);
}

int main(void)
{
    for (unsigned cpu = 1; cpu < CPUS; cpu++)
        cpu_start(cpu, worker, cpu);
    if (HVCS)
        hvc_loop(HVCS);
    worker(0);
    while (__atomic_load_n(&finished, __ATOMIC_ACQUIRE) != CPUS)
        ;
    psci_system_off();
}
