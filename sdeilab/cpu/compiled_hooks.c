/* The hot hooks of a Unicorn vCPU, compiled (sdeilab/cpu/native.py builds this file with the ziglang
 * wheel's C compiler and sdeilab/cpu/unicorn_backend.py installs it): the MRS, MSR and SYS hook
 * (sdeilab_sysreg_hook) and the interrupt hook (sdeilab_exception_hook, further down).
 *
 * Unicorn 2.1 calls a UC_HOOK_INSN hook for every MRS, MSR or SYS instruction, whatever the
 * register (there is no filter by encoding). Through a Python callback each call costs a few
 * microseconds, which a guest pays millions of times: Linux reads SP_EL0 and TPIDR_EL1 and zeroes
 * pages with DC ZVA, and a delay loop reads CNTVCT_EL0 tens of millions of times for 100 ms of
 * guest time. This hook decides in C, from a table indexed by the instruction's encoding:
 *
 *   DECLINE  the host neither emulates nor watches it: the CPU model executes it (returns 0);
 *   FORWARD  call the Python hook, which does what it always did;
 *   COUNTER  CNTPCT_EL0 / CNTVCT_EL0 (ARM ARM D11.1.2, "The system counter"): the value is
 *            virtual time divided by the counter period, where virtual time is the slice's
 *            start plus the instructions the slice retired so far times the instruction period,
 *            exactly what the Python path computes. Only while the slice has budget left: a read
 *            by the slice's last instruction may be the one that meets a timer's CompareValue
 *            (the machine ends slices at timer deadlines), and the Python path raises that
 *            timer's interrupt from inside the read, so that read is forwarded.
 *
 * The counter period and instruction period are integers, so every value is a pure function of
 * the instruction count: runs stay deterministic and equal to the pure-Python path.
 */
#include <stdint.h>

enum { DECLINE = 0, FORWARD = 1, COUNTER = 2 };

typedef int (*reg_write_fn)(void *uc, int regid, const void *value);
typedef uint32_t (*sys_hook_fn)(void *uc, int reg, const void *cp, void *user);

/* Mirrored by native.SysregFilter: keep the two in step. */
struct sysreg_filter {
    const uint64_t *emu_counter; /* uc_struct.emu_counter: instructions this slice counted */
    uint64_t budget;             /* the slice's instruction budget */
    uint64_t clock;              /* virtual time (ns) at the slice's start */
    uint64_t ns_per_instruction;
    uint64_t ns_per_count;
    reg_write_fn reg_write;      /* libunicorn's uc_reg_write */
    sys_hook_fn forward;         /* the Python hook */
    int32_t xzr;                 /* UC_ARM64_REG_XZR: a read into it is discarded */
    uint32_t reserved;
    uint64_t counter_reads;      /* reads answered here: tests check the fast path is taken */
    uint8_t action[1 << 16];     /* by sysreg_filter_index(crn, crm, op0, op1, op2) */
};

/* uc_arm64_cp_reg: uint32_t crn, crm, op0, op1, op2 (4, 4, 2, 3 and 3 significant bits). */
static inline unsigned sysreg_filter_index(const uint32_t *cp) {
    return (cp[0] & 15u) | (cp[1] & 15u) << 4 | (cp[2] & 3u) << 8 | (cp[3] & 7u) << 10 | (cp[4] & 7u) << 13;
}

uint32_t sdeilab_sysreg_hook(void *uc, int reg, const void *cp_reg, void *user) {
    struct sysreg_filter *filter = (struct sysreg_filter *)user;
    switch (filter->action[sysreg_filter_index((const uint32_t *)cp_reg)]) {
    case DECLINE:
        return 0;
    case COUNTER: {
        uint64_t retired = *filter->emu_counter;
        if (retired >= filter->budget)
            break;
        uint64_t value = (filter->clock + retired * filter->ns_per_instruction) / filter->ns_per_count;
        if (reg != filter->xzr)
            filter->reg_write(uc, reg, &value);
        filter->counter_reads++;
        return 1;
    }
    default:
        break;
    }
    return filter->forward(uc, reg, cp_reg, 0);
}

/* ---- Synchronous exceptions to EL1 ---------------------------------------------------------
 *
 * With an interrupt hook installed Unicorn performs no exception entry; the lab does it. For
 * the common synchronous exceptions (SVC, BRK, data and instruction aborts) that the CPU model
 * routes to EL1 from AArch64 state, this hook lets QEMU's own entry code do it
 * (arm_cpu_do_interrupt, exported by libunicorn): SPSR_EL1, ELR_EL1, ESR_EL1, FAR_EL1 for aborts,
 * PSTATE = EL1h with D, A, I, F set, the stack pointer and the cached flags, PC = VBAR_EL1 + the
 * vector offset (ARM ARM D1.10.2). QEMU clears NZCV there, which the architecture leaves
 * unchanged; the lab's entry keeps them, so they are put back. The fact that the machine records
 * for each entry is queued here, stamped with the instruction count, and the host records the
 * queue before anything else it does (every Python hook drains it first), so the trace is the
 * one the Python path writes, in the same order.
 *
 * Everything else goes to the Python hook: HVC and SMC, UNDEFINED (PC alignment, software step),
 * AArch32 state, an exception the CPU model routes elsewhere, a vector table the machine has not
 * checked under the current VBAR_EL1, SCTLR_EL1 and translation table base (an unset or unmapped
 * table is a fault report, not an entry), an exception taken inside its own vector (likewise),
 * a full queue, and any exception while the host asks for the Python path (a debugger run). */

typedef int (*reg_read_fn)(void *uc, int regid, void *value);
typedef void (*intr_hook_fn)(void *uc, uint32_t intno, void *user);
typedef void (*do_interrupt_fn)(void *cs);

struct taken_exception {
    uint64_t retired;  /* instructions of the slice before the entry */
    uint64_t vector;
    uint64_t elr;
    uint64_t far;
    uint32_t esr;
    uint32_t intno;
};

#define TAKEN_QUEUE 1024

/* Mirrored by native.ExceptionFilter: keep the two in step. */
struct exception_filter {
    struct sysreg_filter *slice;      /* emu_counter and budget of the running slice */
    void *cpu;                        /* CPUState * */
    do_interrupt_fn do_interrupt;
    reg_read_fn reg_read;
    reg_write_fn reg_write;
    intr_hook_fn forward;             /* the Python hook */
    const uint32_t *record;           /* env->exception: syndrome, fsr, vaddress (2 words), target_el */
    const uint32_t *aarch64;          /* env->aarch64 */
    int32_t pc_id, pstate_id, nzcv_id, vbar_id, cp_reg_id, ttbr0_id, ttbr1_id, enabled;
    uint32_t intnos;                  /* bit n: intno n may be taken here */
    uint32_t count;                   /* entries queued in taken[] */
    uint64_t vectors_checked[3];      /* VBAR_EL1, SCTLR_EL1, TTBRn_EL1 the host last checked */
    uint64_t entries;                 /* entries made here: tests check the fast path is taken */
    struct taken_exception taken[TAKEN_QUEUE];
};

struct cp_reg {  /* uc_arm64_cp_reg */
    uint32_t crn, crm, op0, op1, op2;
    uint64_t val;
};

/* The values the vector table's check depends on: VBAR_EL1, SCTLR_EL1 and the translation table
 * base that maps VBAR_EL1 (TTBR1_EL1 for an address with bit 55 set, ARM ARM D8.1). */
static void vectors_key(void *uc, struct exception_filter *f, uint64_t key[3]) {
    struct cp_reg sctlr = {1, 0, 3, 0, 0, 0};
    f->reg_read(uc, f->vbar_id, &key[0]);
    f->reg_read(uc, f->cp_reg_id, &sctlr);
    key[1] = sctlr.val;
    f->reg_read(uc, (key[0] >> 55) & 1 ? f->ttbr1_id : f->ttbr0_id, &key[2]);
}

void sdeilab_vectors_checked(void *uc, struct exception_filter *f) {
    vectors_key(uc, f, f->vectors_checked);
}

void sdeilab_exception_hook(void *uc, uint32_t intno, void *user) {
    struct exception_filter *f = (struct exception_filter *)user;
    if (!f->enabled || intno >= 32 || !((f->intnos >> intno) & 1) || *f->aarch64 != 1 || f->record[4] != 1
        || f->count == TAKEN_QUEUE)
        goto forward;
    uint64_t key[3];
    vectors_key(uc, f, key);
    if (key[0] != f->vectors_checked[0] || key[1] != f->vectors_checked[1] || key[2] != f->vectors_checked[2])
        goto forward;
    uint64_t pstate, pc;
    f->reg_read(uc, f->pstate_id, &pstate);
    f->reg_read(uc, f->pc_id, &pc);
    /* The vector offset (ARM ARM D1.10.2): from EL0 0x400 (lower EL, AArch64), from EL1 with
     * SP_EL0 0x000, with SP_EL1 0x200; synchronous exceptions at +0. */
    uint64_t vector = key[0] + (((pstate >> 2) & 3) == 0 ? 0x400 : (pstate & 1) ? 0x200 : 0);
    if (vector <= pc && pc < vector + 0x80)
        goto forward;
    uint64_t retired = *f->slice->emu_counter;
    if (retired > f->slice->budget)
        retired = f->slice->budget;
    struct taken_exception *entry = &f->taken[f->count++];
    entry->retired = retired;
    entry->vector = vector;
    entry->elr = pc;
    entry->esr = f->record[0];
    entry->far = (intno == 3 || intno == 4) ? ((uint64_t)f->record[3] << 32 | f->record[2]) : 0;
    entry->intno = intno;
    uint64_t nzcv = pstate & 0xF0000000u;
    f->do_interrupt(f->cpu);
    f->reg_write(uc, f->nzcv_id, &nzcv);
    f->entries++;
    return;
forward:
    f->forward(uc, intno, 0);
}
