/*
 * spinlock.c - four CPUs increment one counter under a spinlock.
 *
 * CPU 0 starts CPUs 1..3 with PSCI CPU_ON; all four then add 1 to a shared counter
 * ITERATIONS times each.  The increment is a plain, non-atomic load, add and store, so
 * only the lock (spin_lock/spin_unlock in guests/lib/spinlock.S: LDAXR/STXR to take it,
 * STLR to release it) keeps two CPUs from losing each other's updates.  CPU 0 waits until
 * all four have finished and prints the total.
 *
 * Build with -DNO_LOCK to see what happens without the lock (the total then depends on
 * the interleaving, and usually falls short).
 */
#include "guest.h"

#define NCPUS       4
#define ITERATIONS  100000

static spinlock_t lock;
static volatile uint64_t counter;
static uint64_t finished;       /* CPUs done; read and written under the lock */

static void locked(void)
{
#ifndef NO_LOCK
    spin_lock(&lock);
#endif
}

static void unlocked(void)
{
#ifndef NO_LOCK
    spin_unlock(&lock);
#endif
}

static void work(void)
{
    for (unsigned i = 0; i < ITERATIONS; i++) {
        locked();
        uint64_t v = counter;                   /* load */
        __asm__ volatile("nop\n\tnop\n\tnop");  /* widen the window a broken lock would show */
        counter = v + 1;                        /* store */
        unlocked();
    }
    spin_lock(&lock);
    finished++;
    spin_unlock(&lock);
}

static void secondary(uint64_t context_id)
{
    (void)context_id;
    work();
    psci_cpu_off();
}

static uint64_t finished_count(void)
{
    spin_lock(&lock);
    uint64_t n = finished;
    spin_unlock(&lock);
    return n;
}

int main(void)
{
    puts("spinlock: ");
    put_dec(NCPUS);
    puts(" CPUs x ");
    put_dec(ITERATIONS);
    puts(" increments of one counter\n");
    for (unsigned cpu = 1; cpu < NCPUS; cpu++) {
        int64_t r = cpu_start(cpu, secondary, cpu);
        puts("CPU_ON(CPU ");
        put_dec(cpu);
        puts(") = ");
        put_dec(r);
        putc('\n');
        if (r != PSCI_RET_SUCCESS) {
            puts("spinlock: needs ");
            put_dec(NCPUS);
            puts(" CPUs (-smp 4)\n");
            psci_system_off();
        }
    }
    work();
    while (finished_count() < NCPUS)
        ;
    uint64_t total = counter;
    puts("spinlock: total = ");
    put_udec(total);
    puts(", expected ");
    put_udec((uint64_t)NCPUS * ITERATIONS);
    puts(total == (uint64_t)NCPUS * ITERATIONS ? ": exact\n" : ": LOST UPDATES\n");
    psci_system_off();
}
