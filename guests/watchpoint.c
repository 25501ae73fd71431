/*
 * watchpoint.c - hardware watchpoints (DBGWVR<n>_EL1, DBGWCR<n>_EL1) at EL1 and EL0.
 *
 * ARM ARM (DDI 0487) D2, "Watchpoint exceptions".  A watchpoint enabled in DBGWCR<n>_EL1 (E)
 * matches a data access that touches one of the bytes it watches (BAS, a byte mask from the
 * address in DBGWVR<n>_EL1, or MASK, an aligned power-of-two range), of the kind LSC selects
 * (load, store or both), from the Exception level PAC selects.  With MDSCR_EL1.MDE set and
 * debug exceptions enabled (from EL1: MDSCR_EL1.KDE set and PSTATE.D clear; from EL0 always)
 * the access does not happen and a Watchpoint exception is taken: EC 0x35 (same EL) or 0x34
 * (from EL0), ISS.WnR and DFSC 0x22, FAR an address in the watched range, ELR the instruction.
 * The handler returns past it (ELR + 4).
 *
 * Each access below is the first instruction of a little function, so the ELR a trap leaves
 * tells whether the exception came at that instruction; after a trapped load the destination
 * still holds the address (the load did not happen), after a trapped store memory is unchanged.
 */
#include "guest.h"

#define MDSCR_MDE       (1u << 15)
#define MDSCR_KDE       (1u << 13)
#define WCR_E           1u
#define PAC_EL1         (1u << 1)
#define PAC_EL0         (2u << 1)
#define PAC_ANY         (3u << 1)
#define LSC_LOAD        (1u << 3)
#define LSC_STORE       (2u << 3)
#define LSC_ANY         (3u << 3)
#define BAS(b)          ((uint64_t)(b) << 5)
#define SSC(s)          ((uint64_t)(s) << 14)
#define MASK(m)         ((uint64_t)(m) << 24)

static volatile uint64_t buf[16] __attribute__((aligned(64)));

/* The accessors: (address, value, value) -> the loaded value, or the address if nothing loaded. */
typedef uint64_t (*accessor)(uintptr_t p, uint64_t v, uint64_t w);
extern uint64_t ld8(uintptr_t, uint64_t, uint64_t), ld16(uintptr_t, uint64_t, uint64_t);
extern uint64_t ld32(uintptr_t, uint64_t, uint64_t), ld64(uintptr_t, uint64_t, uint64_t);
extern uint64_t st8(uintptr_t, uint64_t, uint64_t), st16(uintptr_t, uint64_t, uint64_t);
extern uint64_t st32(uintptr_t, uint64_t, uint64_t), st64(uintptr_t, uint64_t, uint64_t);
extern uint64_t ldp64(uintptr_t, uint64_t, uint64_t), stp64(uintptr_t, uint64_t, uint64_t);
extern uint64_t run_el0(accessor fn, uintptr_t p, uint64_t v);
extern char el0_return[];
__asm__(".globl ld8, ld16, ld32, ld64, st8, st16, st32, st64, ldp64, stp64, run_el0, el0_return\n"
        "ld8:   ldrb w0, [x0]\n ret\n"
        "ld16:  ldrh w0, [x0]\n ret\n"
        "ld32:  ldr w0, [x0]\n ret\n"
        "ld64:  ldr x0, [x0]\n ret\n"
        "st8:   strb w1, [x0]\n ret\n"
        "st16:  strh w1, [x0]\n ret\n"
        "st32:  str w1, [x0]\n ret\n"
        "st64:  str x1, [x0]\n ret\n"
        "ldp64: ldp x1, x2, [x0]\n ret\n"
        "stp64: stp x1, x2, [x0]\n ret\n"
        /* EL0: the accessor runs at EL0t from ERET and ends with SVC #0 back here (handle_sync). */
        "run_el0:\n"
        "    msr elr_el1, x0\n"
        "    mov x0, x1\n"
        "    mov x1, x2\n"
        "    msr spsr_el1, xzr\n"
        "    eret\n"
        "el0_return:\n"
        "    ret\n"
        ".globl el0_st64, el0_ld64\n"
        "el0_st64: str x1, [x0]\n svc #0\n"
        "el0_ld64: ldr x0, [x0]\n svc #0\n");
extern uint64_t el0_st64(uintptr_t, uint64_t, uint64_t), el0_ld64(uintptr_t, uint64_t, uint64_t);

static volatile int traps;
static int masked;                          /* leave PSTATE.D set for the access */
static volatile uint64_t trap_esr, trap_far, trap_elr;

void handle_sync(uint64_t esr, uint64_t elr, uint64_t far)
{
    uint64_t ec = esr >> 26;
    if (ec == 0x34 || ec == 0x35) {
        traps++;
        trap_esr = esr;
        trap_far = far;
        trap_elr = elr;
        write_sysreg(elr_el1, elr + 4);
        return;
    }
    if (ec == 0x15) {                       /* SVC #0 from EL0: back to run_el0's caller at EL1 */
        write_sysreg(elr_el1, (uint64_t)el0_return);
        write_sysreg(spsr_el1, 0x1c5);      /* EL1h, A I F masked, D clear */
        return;
    }
    puts("FAULT esr=");
    put_hex64(esr);
    puts(" elr=");
    put_hex64(elr);
    puts(" far=");
    put_hex64(far);
    putc('\n');
    psci_system_off();
}

static void offset(uint64_t address)
{
    uintptr_t base = (uintptr_t)buf;
    if (address >= base && address < base + sizeof(buf)) {
        puts("+");
        put_hex(address - base);
    } else {
        put_hex(address);
    }
}

static void fill(void)
{
    for (int i = 0; i < 16; i++)
        buf[i] = 0x1111111111111111ull * (uint64_t)(i + 1);
}

static void watch(int n, uint64_t wvr, uint64_t wcr)
{
    switch (n) {
    case 0: write_sysreg(dbgwvr0_el1, wvr); write_sysreg(dbgwcr0_el1, wcr); break;
    case 1: write_sysreg(dbgwvr1_el1, wvr); write_sysreg(dbgwcr1_el1, wcr); break;
    case 2: write_sysreg(dbgwvr2_el1, wvr); write_sysreg(dbgwcr2_el1, wcr); break;
    default: write_sysreg(dbgwvr3_el1, wvr); write_sysreg(dbgwcr3_el1, wcr); break;
    }
    isb();
}

static void unwatch(void)
{
    for (int n = 0; n < 4; n++)
        watch(n, 0, 0);
}

/* One access; prints whether it trapped and what the exception said. */
static void try(const char *name, accessor fn, uint64_t off, int el0)
{
    uintptr_t p = (uintptr_t)buf + off;
    int store = fn == st8 || fn == st16 || fn == st32 || fn == st64 || fn == stp64 || fn == el0_st64;
    /* The bookkeeping's own accesses to buf run with debug exceptions masked (PSTATE.D). */
    __asm__ volatile("msr daifset, #8\n\tisb" : : : "memory");
    fill();
    uint64_t before = buf[off / 8];
    int was = traps;
    if (!masked)
        __asm__ volatile("msr daifclr, #8\n\tisb" : : : "memory");
    uint64_t got = el0 ? run_el0(fn, p, 0xa5a5a5a5a5a5a5a5ull) : fn(p, 0xa5a5a5a5a5a5a5a5ull, 0x5a5a5a5a5a5a5a5aull);
    __asm__ volatile("msr daifset, #8\n\tisb" : : : "memory");
    puts("  ");
    puts(name);
    puts(" ");
    offset(p);
    if (traps == was) {
        puts(": no trap");
    } else {
        puts(": trap ESR ");
        put_hex(trap_esr);
        puts(" (EC ");
        put_hex(trap_esr >> 26);
        puts(" WnR ");
        put_dec((int64_t)(trap_esr >> 6 & 1));
        puts(" DFSC ");
        put_hex(trap_esr & 0x3f);
        puts(") FAR ");
        offset(trap_far);
        puts(trap_elr == (uint64_t)fn ? " ELR the access" : " ELR elsewhere");
        if (store)
            puts(buf[off / 8] == before ? ", memory unchanged" : ", memory written");
        else if (fn != ldp64)
            puts(got == p ? ", register unchanged" : ", register loaded");
        if (fn == stp64)
            puts(buf[off / 8 + 1] == 0x5a5a5a5a5a5a5a5aull ? ", second half written" : ", second half not written");
    }
    putc('\n');
    if (!masked)
        __asm__ volatile("msr daifclr, #8\n\tisb" : : : "memory");
}

static void mdscr(uint64_t v)
{
    write_sysreg(mdscr_el1, v);
    isb();
}

int main(void)
{
    uintptr_t b = (uintptr_t)buf;
    puts("watchpoint: ID_AA64DFR0_EL1.WRPs ");
    put_dec((int64_t)(read_sysreg(id_aa64dfr0_el1) >> 20 & 0xf));
    putc('\n');

    write_sysreg(oslar_el1, 0);
    mdscr(MDSCR_MDE | MDSCR_KDE);
    __asm__ volatile("msr daifclr, #8\n\tisb" : : : "memory");

    puts("registers: DBGWVR0 written with bits [1:0] set reads ");
    watch(0, b + 8 + 3, BAS(0xff) | LSC_STORE | PAC_ANY);
    offset(read_sysreg(dbgwvr0_el1));
    puts(", DBGWCR0 reads ");
    put_hex(read_sysreg(dbgwcr0_el1));
    putc('\n');

    puts("8 bytes at +0x8, stores, EL0 and EL1:\n");
    watch(0, b + 8, WCR_E | BAS(0xff) | LSC_STORE | PAC_ANY);
    try("st64", st64, 8, 0);
    try("ld64", ld64, 8, 0);
    try("st64", st64, 16, 0);
    try("st64", st64, 0, 0);
    try("st8", st8, 15, 0);
    try("st32", st32, 4, 0);

    puts("bytes 0-3 at +0x8 (BAS 0x0f), loads:\n");
    watch(0, b + 8, WCR_E | BAS(0x0f) | LSC_LOAD | PAC_ANY);
    try("ld8", ld8, 10, 0);
    try("ld8", ld8, 12, 0);
    try("ld64", ld64, 8, 0);
    try("ld32", ld32, 12, 0);
    try("ld16", ld16, 6, 0);
    try("st8", st8, 9, 0);

    puts("bytes 4-5 at +0x8 (BAS 0x30), loads and stores:\n");
    watch(0, b + 8, WCR_E | BAS(0x30) | LSC_ANY | PAC_ANY);
    try("st16", st16, 12, 0);
    try("ld64", ld64, 8, 0);
    try("ld8", ld8, 14, 0);
    try("ld32", ld32, 8, 0);
    try("st64", st64, 8, 0);

    puts("DBGWVR 4-aligned (+0x4): BAS 0x03, then BAS 0xf0 (ignored half):\n");
    watch(0, b + 4, WCR_E | BAS(0x03) | LSC_ANY | PAC_ANY);
    try("ld8", ld8, 5, 0);
    try("ld8", ld8, 6, 0);
    watch(0, b + 4, WCR_E | BAS(0xf0) | LSC_ANY | PAC_ANY);
    try("ld8", ld8, 4, 0);

    puts("MASK 5 (32 bytes at +0x0):\n");
    watch(0, b, WCR_E | BAS(0xff) | MASK(5) | LSC_ANY | PAC_ANY);
    try("ld64", ld64, 24, 0);
    try("ld64", ld64, 32, 0);
    try("st8", st8, 31, 0);
    try("st64", st64, 0, 0);

    puts("pairs: stores to +0x8, loads from +0x8:\n");
    watch(0, b + 8, WCR_E | BAS(0xff) | LSC_STORE | PAC_ANY);
    try("stp64", stp64, 0, 0);
    try("stp64", stp64, 8, 0);
    watch(0, b + 8, WCR_E | BAS(0xff) | LSC_LOAD | PAC_ANY);
    try("ldp64", ldp64, 0, 0);

    puts("two watchpoints (0: +0x20 stores, 3: +0x28 loads and stores):\n");
    watch(0, b + 0x20, WCR_E | BAS(0xff) | LSC_STORE | PAC_ANY);
    watch(3, b + 0x28, WCR_E | BAS(0xff) | LSC_ANY | PAC_ANY);
    try("st64", st64, 0x20, 0);
    try("ld64", ld64, 0x20, 0);
    try("ld64", ld64, 0x28, 0);
    try("stp64", stp64, 0x20, 0);
    unwatch();

    puts("watchpoints that never match:\n");
    watch(1, b + 8, BAS(0xff) | LSC_ANY | PAC_ANY);
    try("st64 (E clear)", st64, 8, 0);
    watch(1, b + 8, WCR_E | BAS(0xff) | PAC_ANY);
    try("st64 (LSC 0)", st64, 8, 0);
    watch(1, b + 8, WCR_E | BAS(0) | LSC_ANY | PAC_ANY);
    try("st64 (BAS 0)", st64, 8, 0);
    watch(1, b + 8, WCR_E | BAS(0xff) | LSC_ANY | PAC_EL0);
    try("st64 (PAC EL0 only)", st64, 8, 0);
    watch(1, b + 8, WCR_E | BAS(0xff) | LSC_ANY | PAC_ANY | SSC(2));
    try("st64 (SSC Secure only)", st64, 8, 0);
    watch(1, b, WCR_E | BAS(0xff) | MASK(1) | LSC_ANY | PAC_ANY);
    try("st64 (MASK 1, reserved)", st64, 0, 0);
    unwatch();

    puts("enables (watchpoint 2 on +0x8, loads and stores):\n");
    watch(2, b + 8, WCR_E | BAS(0xff) | LSC_ANY | PAC_ANY);
    mdscr(MDSCR_KDE);
    try("st64 (MDE clear)", st64, 8, 0);
    mdscr(MDSCR_MDE);
    try("st64 (KDE clear)", st64, 8, 0);
    mdscr(MDSCR_MDE | MDSCR_KDE);
    masked = 1;
    try("st64 (PSTATE.D set)", st64, 8, 0);
    masked = 0;
    try("st64 (enabled again)", st64, 8, 0);
    try("ld64 after a store trap", ld64, 8, 0);
    write_sysreg(oslar_el1, 1);                 /* OS lock set: QEMU 7.2 still takes it */
    isb();
    try("st64 (OS lock set)", st64, 8, 0);
    write_sysreg(oslar_el1, 0);
    isb();

    puts("EL0:\n");
    watch(2, b + 8, WCR_E | BAS(0xff) | LSC_ANY | PAC_ANY);
    try("el0 st64", el0_st64, 8, 1);
    try("el0 ld64", el0_ld64, 8, 1);
    watch(2, b + 8, WCR_E | BAS(0xff) | LSC_ANY | PAC_EL1);
    try("el0 st64 (PAC EL1 only)", el0_st64, 8, 1);
    watch(2, b + 8, WCR_E | BAS(0xff) | LSC_ANY | PAC_EL0);
    mdscr(MDSCR_MDE);
    try("el0 st64 (PAC EL0 only, KDE clear)", el0_st64, 8, 1);
    mdscr(MDSCR_KDE);
    try("el0 st64 (MDE clear)", el0_st64, 8, 1);
    unwatch();
    mdscr(0);

    puts("watchpoint: done\n");
    return 0;
}
