/* Guest for benchmarks/guest_time.py (issue 15). MODE (set with -D) picks one measurement:
 *   MODE_BUSY   busy_wait(BUSY_MS) on CNTVCT_EL0
 *   MODE_MRS    mrs_loop(ITERATIONS)      (3 MRS per 10 instructions)
 *   MODE_ALU    alu_loop(ITERATIONS)      (alu_loop.S, the machine_speed.py baseline)
 *   MODE_SVC    svc_loop(COUNT)           (SVC #0 to a vector that ERETs)
 *   MODE_FAULT  fault_loop(COUNT, FAULT_ADDRESS)  (a data abort skipped by its handler)
 *   MODE_ALIGN  align_loop(COUNT, a misaligned RAM address)  (an alignment fault, skipped likewise)
 * Each prints one line of timing-independent text, then main returns: PSCI SYSTEM_OFF. */
#include "guest.h"

#define MODE_BUSY 1
#define MODE_MRS 2
#define MODE_ALU 3
#define MODE_SVC 4
#define MODE_FAULT 5
#define MODE_ALIGN 6

/* RAM_BASE + RAM_SIZE: nothing is mapped there on QEMU virt -m 128M nor on the lab. */
#define FAULT_ADDRESS (RAM_BASE + RAM_SIZE)

uint64_t busy_wait(uint64_t ms);
void mrs_loop(uint64_t iterations);
void alu_loop(uint64_t iterations);
uint64_t svc_loop(uint64_t n);
uint64_t fault_loop(uint64_t n, uint64_t address);
uint64_t align_loop(uint64_t n, uint64_t address);
#if MODE == MODE_ALIGN
static uint64_t align_target[2];
#endif

int main(void)
{
#if MODE == MODE_BUSY
    uint64_t ticks = busy_wait(BUSY_MS);
    puts("busy-wait ");
    put_udec(BUSY_MS);
    puts(" ms: ");
    put_udec(ticks);
    puts(" ticks at ");
    put_udec(read_sysreg(cntfrq_el0));
    puts(" Hz\n");
#elif MODE == MODE_MRS
    mrs_loop(ITERATIONS);
    puts("mrs loop done\n");
#elif MODE == MODE_ALU
    alu_loop(ITERATIONS);
    puts("alu loop done\n");
#elif MODE == MODE_SVC
    uint64_t taken = svc_loop(COUNT);
    puts("svc taken ");
    put_udec(taken);
    if (COUNT) {
        puts(" esr=");
        put_hex(read_sysreg(esr_el1));
    }
    puts("\n");
#elif MODE == MODE_FAULT
    uint64_t taken = fault_loop(COUNT, FAULT_ADDRESS);
    puts("faults taken ");
    put_udec(taken);
    if (COUNT) {
        puts(" esr=");
        put_hex(read_sysreg(esr_el1));
        puts(" far=");
        put_hex(read_sysreg(far_el1));
    }
    puts("\n");
#elif MODE == MODE_ALIGN
    uint64_t taken = align_loop(COUNT, (uint64_t)align_target + 1);
    puts("alignment faults taken ");
    put_udec(taken);
    if (COUNT) {
        puts(" esr=");
        put_hex(read_sysreg(esr_el1));
    }
    puts("\n");
#else
#error "unknown MODE"
#endif
    return 0;
}
