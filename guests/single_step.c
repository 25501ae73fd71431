/*
 * single_step.c - software step (MDSCR_EL1.SS, PSTATE.SS), at EL1 and EL0.
 *
 * ARM ARM (DDI 0487) D2, "Software Step exceptions".  With MDSCR_EL1.SS set and debug
 * exceptions enabled (from EL1: MDSCR_EL1.KDE set and PSTATE.D clear; from EL0 always), an ERET
 * with SPSR_EL1.SS = 1 steps one instruction and then takes a Software Step exception: EC 0x33
 * (same EL) or 0x32 (from EL0), ISS.ISV = 1 and ISS.EX = 1 if the instruction was a
 * load-exclusive, ELR the next instruction.  With PSTATE.SS = 0 (an ERET with SPSR.SS = 0, or
 * `msr daifclr, #8` unmasking debug exceptions) the exception is taken before any instruction,
 * with ISV = 0.  A stepped instruction that takes an exception of its own (SVC) takes that one,
 * with SPSR.SS = 0.  The handler steps on by setting SPSR_EL1.SS, or stops by clearing
 * MDSCR_EL1.SS; every exception is logged and printed after each run.
 */
#include "guest.h"

#define MDSCR_SS        (1u << 0)
#define MDSCR_KDE       (1u << 13)
#define SPSR_SS         (1u << 21)
#define SPSR_EL1H_AIF   0x1c5u      /* EL1h, A I F masked, D clear */
#define SPSR_D          (1u << 9)

extern char stepped[], stepped_end[], daifclr_code[], el0_code[], svc_code[], el0_return[];
extern uint64_t run_at(uint64_t pc, uint64_t spsr, uint64_t x0);
extern uint64_t run_daifclr(uint64_t x0);
volatile uint64_t word = 0x5de1;     /* what the stepped LDXR loads */

__asm__(".globl stepped, stepped_end, daifclr_code, el0_code, svc_code, run_at, run_daifclr, el0_return\n"
        /* x0 = pc, x1 = spsr, x2 = x0 for the code: ERET there; the code returns to our caller. */
        "run_at:\n"
        "    msr elr_el1, x0\n"
        "    msr spsr_el1, x1\n"
        "    mov x0, x2\n"
        "    eret\n"
        "el0_return:\n"
        "    ret\n"
        "stepped:\n"
        "    add x0, x0, #1\n"
        "    add x0, x0, #2\n"
        "    adr x3, word\n"
        "    ldxr x1, [x3]\n"
        "    clrex\n"
        "    add x0, x0, #3\n"
        "    ret\n"
        "stepped_end:\n"
        "run_daifclr:\n"
        "daifclr_code:\n"
        "    msr daifclr, #8\n"
        "    add x0, x0, #1\n"
        "    add x0, x0, #2\n"
        "    add x0, x0, #3\n"
        "    msr daifset, #8\n"
        "    ret\n"
        "svc_code:\n"
        "    add x0, x0, #1\n"
        "    svc #1\n"
        "    add x0, x0, #2\n"
        "    add x0, x0, #3\n"
        "    ret\n"
        "el0_code:\n"
        "    add x0, x0, #1\n"
        "    add x0, x0, #2\n"
        "    svc #0\n");

#define LOG 16
static volatile int events, limit, steps;
static volatile uint64_t log_esr[LOG], log_elr[LOG], log_spsr[LOG];
static uint64_t base;

void handle_sync(uint64_t esr, uint64_t elr, uint64_t far)
{
    uint64_t ec = esr >> 26;
    uint64_t spsr = read_sysreg(spsr_el1);
    (void)far;
    if (events < LOG) {
        log_esr[events] = esr;
        log_elr[events] = elr;
        log_spsr[events] = spsr;
    }
    events++;
    if (ec == 0x32 || ec == 0x33) {
        if (++steps < limit) {
            write_sysreg(spsr_el1, spsr | SPSR_SS);     /* step one more */
        } else {
            write_sysreg(mdscr_el1, read_sysreg(mdscr_el1) & ~(uint64_t)MDSCR_SS);
        }
        return;
    }
    if (ec == 0x15 && (spsr & 0xf) == 0) {             /* SVC #0 from EL0: back to run_at's caller */
        write_sysreg(elr_el1, (uint64_t)el0_return);
        write_sysreg(spsr_el1, SPSR_EL1H_AIF | SPSR_D);
        return;
    }
    if (ec == 0x15)                                     /* SVC #1 at EL1: resume after it */
        return;
    puts("FAULT esr=");
    put_hex64(esr);
    puts(" elr=");
    put_hex64(elr);
    putc('\n');
    psci_system_off();
}

static void begin(const char *what, uint64_t mdscr, int steps_wanted, uint64_t code)
{
    __asm__ volatile("msr daifset, #8\n\tisb" : : : "memory");   /* nothing steps until a run starts */
    puts(what);
    putc('\n');
    events = 0;
    steps = 0;
    limit = steps_wanted;
    base = code;
    write_sysreg(mdscr_el1, mdscr);
    isb();
}

static void report(uint64_t x0)
{
    write_sysreg(mdscr_el1, 0);
    isb();
    for (int i = 0; i < events && i < LOG; i++) {
        uint64_t ec = log_esr[i] >> 26;
        puts("  ");
        if (ec == 0x32 || ec == 0x33) {
            puts("step ESR ");
            put_hex(log_esr[i]);
            puts(" (EC ");
            put_hex(ec);
            puts(" ISV ");
            put_dec((int64_t)(log_esr[i] >> 24 & 1));
            puts(" EX ");
            put_dec((int64_t)(log_esr[i] >> 6 & 1));
            puts(")");
        } else {
            puts("exception ESR ");
            put_hex(log_esr[i]);
        }
        puts(" ELR +");
        put_hex(log_elr[i] - base);
        puts(" SPSR.SS ");
        put_dec((int64_t)(log_spsr[i] >> 21 & 1));
        puts(" SPSR.D ");
        put_dec((int64_t)(log_spsr[i] >> 9 & 1));
        putc('\n');
    }
    puts("  ");
    put_dec(events);
    puts(" exceptions, x0 = ");
    put_dec((int64_t)x0);
    putc('\n');
}

int main(void)
{
    uint64_t x0;
    puts("single step: MDSCR_EL1.SS\n");
    write_sysreg(oslar_el1, 0);
    isb();

    begin("EL1, ERET with SPSR.SS = 1, KDE set: 5 steps", MDSCR_SS | MDSCR_KDE, 5, (uint64_t)stepped);
    x0 = run_at((uint64_t)stepped, SPSR_EL1H_AIF | SPSR_SS, 100);
    report(x0);

    begin("EL1, ERET with SPSR.SS = 0, KDE set: pending at once, then 2 steps", MDSCR_SS | MDSCR_KDE, 3,
          (uint64_t)stepped);
    x0 = run_at((uint64_t)stepped, SPSR_EL1H_AIF, 100);
    report(x0);

    begin("EL1, msr daifclr, #8 with SS and KDE set: pending at once, then 2 steps", MDSCR_SS | MDSCR_KDE, 3,
          (uint64_t)daifclr_code);
    x0 = run_daifclr(100);
    report(x0);

    begin("EL1, stepping an SVC: 4 steps", MDSCR_SS | MDSCR_KDE, 4, (uint64_t)svc_code);
    x0 = run_at((uint64_t)svc_code, SPSR_EL1H_AIF | SPSR_SS, 100);
    report(x0);

    begin("EL1, KDE clear: no step", MDSCR_SS, 5, (uint64_t)stepped);
    x0 = run_at((uint64_t)stepped, SPSR_EL1H_AIF | SPSR_SS, 100);
    report(x0);

    begin("EL1, SPSR.D set: no step", MDSCR_SS | MDSCR_KDE, 5, (uint64_t)stepped);
    x0 = run_at((uint64_t)stepped, SPSR_EL1H_AIF | SPSR_D | SPSR_SS, 100);
    report(x0);

    begin("EL1, MDSCR_EL1.SS clear: no step", MDSCR_KDE, 5, (uint64_t)stepped);
    x0 = run_at((uint64_t)stepped, SPSR_EL1H_AIF | SPSR_SS, 100);
    report(x0);

    begin("EL0, ERET with SPSR.SS = 1, KDE clear: 2 steps, then the SVC", MDSCR_SS, 2, (uint64_t)el0_code);
    x0 = run_at((uint64_t)el0_code, SPSR_SS, 100);
    report(x0);

    begin("EL0, stepping until the SVC", MDSCR_SS, 5, (uint64_t)el0_code);
    x0 = run_at((uint64_t)el0_code, SPSR_SS, 100);
    report(x0);

    puts("single step: done\n");
    return 0;
}
