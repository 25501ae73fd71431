/*
 * sdei.h - SDEI client library for sdeilab guests (Arm DEN0054), and the test helpers the
 * SDEI scenarios in guests/sdei/ share.
 *
 * The sources are in lib/sdei/ (not in lib/ itself, so they are linked only into the
 * programs that use them: the toolchain adds them to every guest in guests/sdei/).
 *
 *   sdei.c          the SDEI calls as C functions (SMCCC: x0 = function ID, x1..x5 arguments),
 *                   TFTF-style INTERRUPT_BIND/RELEASE that save and restore the interrupt's GIC
 *                   state, the SP804 and EL1 physical timer helpers
 *   sdei_entry.S    handler entry stubs (TFTF's sdei_entrypoint.S, ported) and the per-CPU
 *                   "handled" flags; sdei_signal_probe for exact checks of dispatch state
 *   sdei_test.c     scenario bookkeeping: checks, first failure, verdict line, running a
 *                   function on another CPU, default exception handlers that end with a verdict
 *
 * SDEI is reached through the SMCCC conduit of guest.h: HVC #0, or SMC #0 with -DCONDUIT_SMC.
 * Error codes and function IDs are in guest.h (reference section 1.1 / 1.2).
 */
#ifndef SDEILAB_SDEI_H
#define SDEILAB_SDEI_H

#include "guest.h"

/* ------------------------------------------------------------------ SDEI constants */
#define SDEI_VERSION_1_0_0          0x1000000000000     /* [62:48] major 1, [47:32] minor 0, [31:0] vendor 0 */

#define SDEI_EV_HANDLED             0       /* COMPLETE status */
#define SDEI_EV_FAILED              1

#define SDEI_REGF_RM_ANY            0       /* REGISTER flags bit 0 / ROUTING_SET mode */
#define SDEI_REGF_RM_PE             1

#define SDEI_STATUS_REGISTERED      (1 << 0)    /* EVENT_STATUS bits (reference 2.2) */
#define SDEI_STATUS_ENABLED         (1 << 1)
#define SDEI_STATUS_RUNNING         (1 << 2)

/* EVENT_GET_INFO info types, Linux's numbering (reference 2.7) */
#define SDEI_INFO_EV_TYPE           0       /* 0 private, 1 shared */
#define SDEI_INFO_EV_SIGNALED       1
#define SDEI_INFO_EV_PRIORITY       2       /* 0 normal, 1 critical */
#define SDEI_INFO_EV_ROUTING_MODE   3
#define SDEI_INFO_EV_ROUTING_AFF    4

#define SDEI_FEATURE_BIND_SLOTS     0       /* [15:0] private slots, [31:16] shared slots */
#define SDEI_FEATURE_RELATIVE_MODE  1

#define SDEI_NUM_SAVED_GPREGS       18      /* x0..x17: what CONTEXT reads and COMPLETE restores */

/* Events of the lab's `virt` and `firmware` profiles (DESIGN.md section 4) */
#define SDEI_EVENT_SW_SIGNALLED     0       /* event 0: private, normal, EVENT_SIGNAL only */
#define SDEI_DYN_PRIVATE_BASE       1000    /* INTERRUPT_BIND of a PPI: 1000, 1001, ... */
#define SDEI_DYN_SHARED_BASE        2000    /* INTERRUPT_BIND of an SPI: 2000, 2001, ... */
#define SDEI_LAB_EVENT_NORMAL       5000    /* raised by the host side only */
#define SDEI_LAB_EVENT_CRITICAL     5001

/* ------------------------------------------------------------------ the lab's SP804 */
/* sdeilab adds an Arm SP804 dual timer to the virt map (QEMU has none: SDEI guests run on the
 * lab only).  TIMCLK 1 MHz, timer 1 at +0x00, interrupt SPI 10 = INTID 42, level (DDI 0271). */
#define SP804_BASE                  0x090C0000
#define SP804_INTID                 42
#define SP804_TIMCLK_HZ             1000000
#define SP804_LOAD                  0x00
#define SP804_VALUE                 0x04
#define SP804_CONTROL               0x08
#define SP804_INTCLR                0x0C
#define SP804_RIS                   0x10
#define SP804_MIS                   0x14
#define SP804_BGLOAD                0x18
#define SP804_CTRL_ENABLE           (1 << 7)
#define SP804_CTRL_PERIODIC         (1 << 6)
#define SP804_CTRL_INTEN            (1 << 5)
#define SP804_CTRL_32BIT            (1 << 1)
#define SP804_CTRL_ONESHOT          (1 << 0)

/* Per-CPU test bookkeeping */
#define SDEI_PROBE_PATTERN(n)       (0x5DE1000000000000 | ((n) << 8) | (n))    /* x<n> before a probe */
#define SDEI_PROBE_ELR_CANARY       0x40FFFFF0      /* ELR_EL1 before a probe: any recognisable value */

/* Layout of struct sdei_probe_regs (shared with sdei_entry.S) */
#define PROBE_X             0                   /* x0..x17 */
#define PROBE_DAIF          (18 * 8)
#define PROBE_NZCV          (19 * 8)
#define PROBE_SPSEL         (20 * 8)
#define PROBE_CURRENTEL     (21 * 8)
#define PROBE_ELR           (22 * 8)
#define PROBE_SPSR          (23 * 8)
#define PROBE_SP            (24 * 8)
#define PROBE_VALID         (25 * 8)
#define PROBE_SIZE          (26 * 8)

#ifndef __ASSEMBLER__
/* ======================================================================== C */

/* ---- the SDEI calls (sdei.c).  Each returns x0 as the firmware left it. */
int64_t sdei_call(uint64_t fid, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5);
int64_t sdei_version(void);
int64_t sdei_event_register(int64_t ev, void (*entry)(void), uint64_t arg, uint64_t flags, uint64_t mpidr);
int64_t sdei_event_enable(int64_t ev);
int64_t sdei_event_disable(int64_t ev);
int64_t sdei_event_context(uint64_t index);
int64_t sdei_event_complete(uint64_t status);              /* returns only on error */
int64_t sdei_event_complete_and_resume(uint64_t addr);     /* returns only on error */
int64_t sdei_event_unregister(int64_t ev);
int64_t sdei_event_status(int64_t ev);
int64_t sdei_event_get_info(int64_t ev, uint64_t info);
int64_t sdei_event_routing_set(int64_t ev, uint64_t mode, uint64_t affinity);
int64_t sdei_pe_mask(void);
int64_t sdei_pe_unmask(void);
int64_t sdei_interrupt_bind(uint64_t intid);
int64_t sdei_interrupt_release(int64_t ev);
int64_t sdei_event_signal(int64_t ev, uint64_t target_mpidr);
int64_t sdei_features(uint64_t feature);
int64_t sdei_private_reset(void);
int64_t sdei_shared_reset(void);

/* TFTF's lib/sdei/sdei.c: BIND saves the interrupt's guest-visible GIC priority and enable, and
 * disables it; a failed BIND or a successful RELEASE puts them back. */
struct sdei_intr_ctx {
    unsigned intid;
    uint8_t priority;
    bool enabled;
};
int64_t sdei_interrupt_bind_ctx(unsigned intid, struct sdei_intr_ctx *ctx);
int64_t sdei_interrupt_release_ctx(int64_t ev, const struct sdei_intr_ctx *ctx);

/* Name of an SDEI return code ("DENIED"), or NULL for other values. */
const char *sdei_ret_name(int64_t ret);

uint64_t my_mpidr(void);                    /* MPIDR_EL1 affinity fields of this CPU */

/* ---- timers (sdei.c) */
void sp804_start(uint32_t ticks);           /* one-shot, interrupt enabled (TFTF tftf_program_timer) */
void sp804_stop(void);                      /* disable and clear the interrupt (tftf_cancel_timer) */
void cntp_start(uint64_t counts);           /* EL1 physical timer, PPI 30 (TFTF private_timer_start) */
void cntp_stop(void);                       /* CNTP_CTL_EL0 = 0: the PPI drops (private_timer_stop) */

/* ---- handler entry stubs (sdei_entry.S).  Register them, never call them. */
/* sdei_entrypoint: calls sdei_event_handler(x0..x3), then COMPLETE(HANDLED). */
void sdei_entrypoint(void);
/* sdei_entrypoint_resume: calls sdei_event_handler(x0..x3), marks this CPU's handled flag,
 * then COMPLETE_AND_RESUME(interrupted PC). */
void sdei_entrypoint_resume(void);
/* sdei_state_entrypoint: x1 (the handler argument) is a sdei_state_fn; calls it, marks the
 * handled flag, then COMPLETE(HANDLED). */
void sdei_state_entrypoint(void);
typedef void (*sdei_state_fn)(int64_t ev, uint64_t arg);
/* sdei_probe_entrypoint: records the entry state (x0..x17, DAIF, NZCV, SPSel, CurrentEL,
 * ELR_EL1, SPSR_EL1, SP) into sdei_probe_entry[cpu] before touching anything, marks the
 * handled flag, then COMPLETE_AND_RESUME(x2) if x1 is 1, or COMPLETE(HANDLED) if x1 is 0. */
void sdei_probe_entrypoint(void);

/* What the C-calling stubs call (x0..x3 at entry); define it in the scenario. */
int sdei_event_handler(int64_t ev, uint64_t arg, uint64_t pc, uint64_t pstate);

/* Per-CPU flag set by the stubs; sdei_handler_done waits for it (at most `spins` loop
 * iterations, about 4 instructions each), clears it and returns true, or false on timeout. */
extern volatile uint32_t sdei_event_handled[MAX_CPUS];
bool sdei_handler_done(uint64_t spins);
#define SDEI_WAIT_SPINS     5000000         /* ~20 ms of virtual time: 100 times the timers below */

struct sdei_probe_regs {
    uint64_t x[SDEI_NUM_SAVED_GPREGS];
    uint64_t daif, nzcv, spsel, currentel, elr, spsr, sp, valid;
};
extern struct sdei_probe_regs sdei_probe_entry[MAX_CPUS];   /* at handler entry */
extern struct sdei_probe_regs sdei_probe_after[MAX_CPUS];   /* right after the conduit of a probe */
/* sdei_signal_probe: EVENT_SIGNAL(ev, target) with x4..x17 = SDEI_PROBE_PATTERN(n),
 * ELR_EL1 = SDEI_PROBE_ELR_CANARY and the given NZCV (bits 31:28) and DAIF (bits 9:6) in
 * PSTATE; the instruction after the conduit is `sdei_signal_probe_return`, where x0..x17,
 * DAIF, NZCV, SPSel, ELR_EL1, SPSR_EL1 and SP are recorded in sdei_probe_after[cpu] before
 * anything else.  Restores DAIF to all-masked and returns SIGNAL's x0. */
int64_t sdei_signal_probe(int64_t ev, uint64_t target_mpidr, uint64_t nzcv, uint64_t daif);
extern char sdei_signal_probe_return[];

/* ---- scenario bookkeeping (sdei_test.c) */
/* Print "<name>: <title>", check SDEI_VERSION == 1.0.0 exactly as every TFTF test does
 * (a mismatch ends the run with the FAIL verdict).  Call first, on CPU 0. */
void test_begin(const char *name, const char *title);
void test_step(const char *step);           /* this CPU's current step, named in failures */
/* Print "CPU n: <step>: ok" (or "FAILED" if failures were recorded since `failures_before`). */
bool step_done(unsigned failures_before);
/* Checks: on mismatch, print "  CPU n: <step>: <what> = <got>, expected <want>", remember
 * the first failure for the verdict, return false. */
bool expect_eq(const char *what, int64_t got, int64_t want);
bool expect_ret(const char *what, int64_t got, int64_t want);      /* the same, names SDEI codes */
bool expect_true(const char *what, bool ok);
void test_fail(const char *what);           /* a failure with no values */
/* TFTF's success test for a call: a negative value is an error code (reference 1.2). */
bool call_ok(const char *what, int64_t ret);
bool test_failed(void);
unsigned test_failure_count(void);          /* failures so far (compare before/after a step) */
/* Print "<name>: PASS" or "<name>: FAIL (<first failure>)" and SYSTEM_OFF. */
void test_finish(void) __attribute__((noreturn));
/* The end of a test that bound `ev`: after a failure TFTF's err0 path (PRIVATE_RESET, SHARED_RESET,
 * release, then test_finish); else "INTERRUPT_RELEASE = <ret>" printed and checked. */
void test_release_binding(int64_t ev, const struct sdei_intr_ctx *ctx);

/* Printing from several CPUs: one line at a time under a lock. */
void print_lock(void);
void print_unlock(void);
void print_ret(int64_t ret);                /* "0", "-3 (DENIED)", ... */

/* Run fn(arg) on CPU `cpu` (PSCI CPU_ON at secondary_entry); fn's return powers it off
 * (CPU_OFF).  cpu_run_and_wait also polls AFFINITY_INFO until the CPU is OFF again, as
 * TFTF does. Both return false (and record a failure) if CPU_ON or the wait fails. */
bool cpu_run(unsigned cpu, secondary_fn_t fn, uint64_t arg);
bool cpu_wait_off(unsigned cpu);
bool cpu_run_and_wait(unsigned cpu, secondary_fn_t fn, uint64_t arg);
unsigned test_cpu_count(void);              /* CPUs present: CPU_ON/AFFINITY_INFO probing, max MAX_CPUS */

/* Counters kept by the library's IRQ handler (a resume at the IRQ vector finds no IRQ). */
extern volatile uint32_t irq_spurious_count[MAX_CPUS];
extern volatile uint64_t irq_last_elr[MAX_CPUS];
extern volatile uint64_t irq_last_spsr[MAX_CPUS];

#endif /* !__ASSEMBLER__ */
#endif /* SDEILAB_SDEI_H */
