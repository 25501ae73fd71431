/*
 * guest.h - shared definitions for sdeilab guest programs (assembly and C).
 *
 * The platform is QEMU's `-M virt,gic-version=3 -cpu cortex-a57` as described in
 * shared/DESIGN.md section 2: CPU 0 enters `_start` at EL1h with the MMU off and
 * DAIF masked; the other CPUs are off until PSCI CPU_ON.
 *
 * Firmware calls follow the SMC Calling Convention (Arm DEN0028): function ID in
 * x0, arguments in x1..x17, result in x0.  The conduit is `HVC #0` unless the
 * guest is built with -DCONDUIT_SMC (profiles with EL3 firmware).
 *
 * Everything before the __ASSEMBLER__ split is plain #defines usable from both.
 */
#ifndef SDEILAB_GUEST_H
#define SDEILAB_GUEST_H

/* ------------------------------------------------------------------ platform */
#define RAM_BASE            0x40000000
#define RAM_SIZE            0x08000000      /* -m 128M */
#define GUEST_LOAD_ADDR     0x40080000      /* see virt.ld: QEMU puts the DTB at RAM_BASE */

#define MAX_CPUS            8               /* per-CPU stacks and slots; index = Aff1 * 8 + Aff0 */
#define STACK_SIZE          0x4000          /* 16 KiB per CPU */

#define UART0_BASE          0x09000000      /* PL011 */
#define UART_DR             0x000           /* data register */
#define UART_FR             0x018           /* flag register */
#define UART_FR_TXFF        (1 << 5)        /* transmit FIFO full */
#define UART0_INTID         33              /* SPI 1 */

#define GICD_BASE           0x08000000      /* GICv3 distributor, 64 KiB */
#define GICR_BASE           0x080A0000      /* first redistributor */
#define GICR_STRIDE         0x20000         /* RD_base frame + SGI_base frame, 64 KiB each */

#define TIMER_HYP_INTID     26
#define TIMER_VIRT_INTID    27              /* EL1 virtual timer (CNTV_*) */
#define TIMER_SPHYS_INTID   29
#define TIMER_PHYS_INTID    30              /* EL1 physical timer (CNTP_*) */

/* MPIDR_EL1 affinity fields (Arm ARM, MPIDR_EL1).  PSCI takes only these bits as a
 * target_cpu / target_affinity (DEN0022, CPU_ON and AFFINITY_INFO): bit 31 (RES1) and U/MT must be 0. */
#define MPIDR_AFF_MASK      0xff00ffffff

/* ------------------------------------------------------------------ SMCCC (DEN0028) */
#define SMCCC_VERSION               0x80000000
#define SMCCC_ARCH_FEATURES         0x80000001
#define SMCCC_ARCH_SOC_ID           0x80000002
#define SMCCC_ARCH_WORKAROUND_1     0x80008000
#define SMCCC_ARCH_WORKAROUND_2     0x80007FFF
#define SMCCC_ARCH_WORKAROUND_3     0x80003FFF

#define SMCCC_RET_SUCCESS           0
#define SMCCC_RET_NOT_SUPPORTED     (-1)
#define SMCCC_RET_NOT_REQUIRED      (-2)
#define SMCCC_RET_INVALID_PARAMETER (-3)

/* ------------------------------------------------------------------ PSCI 1.1 (DEN0022) */
#define PSCI_VERSION                0x84000000
#define PSCI_CPU_SUSPEND            0x84000001
#define PSCI_CPU_SUSPEND64          0xC4000001
#define PSCI_CPU_OFF                0x84000002
#define PSCI_CPU_ON                 0x84000003
#define PSCI_CPU_ON64               0xC4000003
#define PSCI_AFFINITY_INFO          0x84000004
#define PSCI_AFFINITY_INFO64        0xC4000004
#define PSCI_MIGRATE                0x84000005
#define PSCI_MIGRATE64              0xC4000005
#define PSCI_MIGRATE_INFO_TYPE      0x84000006
#define PSCI_MIGRATE_INFO_UP_CPU    0x84000007
#define PSCI_MIGRATE_INFO_UP_CPU64  0xC4000007
#define PSCI_SYSTEM_OFF             0x84000008
#define PSCI_SYSTEM_RESET           0x84000009
#define PSCI_FEATURES               0x8400000A
#define PSCI_CPU_FREEZE             0x8400000B
#define PSCI_CPU_DEFAULT_SUSPEND    0x8400000C
#define PSCI_CPU_DEFAULT_SUSPEND64  0xC400000C
#define PSCI_NODE_HW_STATE          0x8400000D
#define PSCI_NODE_HW_STATE64        0xC400000D
#define PSCI_SYSTEM_SUSPEND         0x8400000E
#define PSCI_SYSTEM_SUSPEND64       0xC400000E
#define PSCI_SET_SUSPEND_MODE       0x8400000F
#define PSCI_STAT_RESIDENCY         0x84000010
#define PSCI_STAT_RESIDENCY64       0xC4000010
#define PSCI_STAT_COUNT             0x84000011
#define PSCI_STAT_COUNT64           0xC4000011
#define PSCI_SYSTEM_RESET2          0x84000012
#define PSCI_SYSTEM_RESET2_64       0xC4000012
#define PSCI_MEM_PROTECT            0x84000013
#define PSCI_MEM_PROTECT_CHECK_RANGE    0x84000014
#define PSCI_MEM_PROTECT_CHECK_RANGE64  0xC4000014
#define PSCI_SYSTEM_OFF2            0x84000015      /* PSCI 1.3 */
#define PSCI_SYSTEM_OFF2_64         0xC4000015

#define PSCI_RET_SUCCESS            0
#define PSCI_RET_NOT_SUPPORTED      (-1)
#define PSCI_RET_INVALID_PARAMETERS (-2)
#define PSCI_RET_DENIED             (-3)
#define PSCI_RET_ALREADY_ON         (-4)
#define PSCI_RET_ON_PENDING         (-5)
#define PSCI_RET_INTERNAL_FAILURE   (-6)
#define PSCI_RET_NOT_PRESENT        (-7)
#define PSCI_RET_DISABLED           (-8)
#define PSCI_RET_INVALID_ADDRESS    (-9)

/* AFFINITY_INFO results (not error codes) */
#define PSCI_AFF_ON                 0
#define PSCI_AFF_OFF                1
#define PSCI_AFF_ON_PENDING         2

/* ------------------------------------------------------------------ SDEI 1.1 (DEN0054), SMC64 only */
#define SDEI_VERSION                0xC4000020
#define SDEI_EVENT_REGISTER         0xC4000021
#define SDEI_EVENT_ENABLE           0xC4000022
#define SDEI_EVENT_DISABLE          0xC4000023
#define SDEI_EVENT_CONTEXT          0xC4000024
#define SDEI_EVENT_COMPLETE         0xC4000025
#define SDEI_EVENT_COMPLETE_AND_RESUME  0xC4000026
#define SDEI_EVENT_UNREGISTER       0xC4000027
#define SDEI_EVENT_STATUS           0xC4000028
#define SDEI_EVENT_GET_INFO         0xC4000029
#define SDEI_EVENT_ROUTING_SET      0xC400002A
#define SDEI_PE_MASK                0xC400002B
#define SDEI_PE_UNMASK              0xC400002C
#define SDEI_INTERRUPT_BIND         0xC400002D
#define SDEI_INTERRUPT_RELEASE      0xC400002E
#define SDEI_EVENT_SIGNAL           0xC400002F
#define SDEI_FEATURES               0xC4000030
#define SDEI_PRIVATE_RESET          0xC4000031
#define SDEI_SHARED_RESET           0xC4000032

#define SDEI_RET_SUCCESS            0
#define SDEI_RET_NOT_SUPPORTED      (-1)
#define SDEI_RET_INVALID_PARAMETERS (-2)
#define SDEI_RET_DENIED             (-3)
#define SDEI_RET_PENDING            (-5)
#define SDEI_RET_OUT_OF_RESOURCE    (-10)

/* ------------------------------------------------------------------ GICv3 registers */
#define GICD_CTLR           0x0000
#define GICD_CTLR_RWP       (1 << 31)
#define GICD_CTLR_ARE       (1 << 4)        /* ARE_NS when security is enabled */
#define GICD_CTLR_GRP1      (1 << 1)        /* EnableGrp1 (DS=1) / EnableGrp1NS */
#define GICD_TYPER          0x0004
#define GICD_IGROUPR        0x0080
#define GICD_ISENABLER      0x0100
#define GICD_ICENABLER      0x0180
#define GICD_ICPENDR        0x0280
#define GICD_IPRIORITYR     0x0400
#define GICD_ICFGR          0x0C00
#define GICD_IROUTER        0x6000

#define GICR_CTLR           0x0000          /* in the RD_base frame */
#define GICR_TYPER          0x0008
#define GICR_WAKER          0x0014
#define GICR_WAKER_PROCESSOR_SLEEP  (1 << 1)
#define GICR_WAKER_CHILDREN_ASLEEP  (1 << 2)
#define GICR_SGI_OFFSET     0x10000         /* the SGI_base frame */
#define GICR_IGROUPR0       0x0080          /* in the SGI_base frame */
#define GICR_ISENABLER0     0x0100
#define GICR_ICENABLER0     0x0180
#define GICR_IPRIORITYR     0x0400
#define GICR_ICFGR1         0x0C04

#define GIC_SPURIOUS_INTID  1023

/* ------------------------------------------------------------------ exception vector kinds */
#define VEC_SYNC            0
#define VEC_IRQ             1
#define VEC_FIQ             2
#define VEC_SERROR          3

/* ESR_ELx.EC values used by the guests (Arm ARM, ESR_EL1) */
#define ESR_EC_SHIFT        26
#define ESR_EC_UNKNOWN      0x00
#define ESR_EC_HVC64        0x16
#define ESR_EC_SMC64        0x17

#ifdef __ASSEMBLER__
/* ======================================================================== assembly */

/* The SMCCC conduit.  `smc #0` is spelled as its encoding because LLVM only accepts
 * the mnemonic for CPUs it models with EL3, and the set varies between versions. */
.macro smccc_conduit
#ifdef CONDUIT_SMC
    .inst 0xd4000003            /* smc #0 */
#else
    hvc #0
#endif
.endm

/* smccc FID: x0 = FID, then call the firmware; x1..x3 must already hold arguments. */
.macro smccc fid
    ldr x0, =\fid
    smccc_conduit
.endm

/* adr_l reg, sym: PC-relative address of sym anywhere within +-4 GiB. */
.macro adr_l reg, sym
    adrp \reg, \sym
    add \reg, \reg, :lo12:\sym
.endm

/* cpu_index dst: this CPU's index Aff1 * 8 + Aff0 (QEMU virt puts 8 CPUs per cluster). */
.macro cpu_index dst, tmp
    mrs \dst, mpidr_el1
    ubfx \tmp, \dst, #8, #8         /* Aff1 */
    and \dst, \dst, #0xff           /* Aff0 */
    add \dst, \dst, \tmp, lsl #3
.endm

/* print "text": puts a string literal kept in .rodata (clobbers x0..x18, x30). */
.macro print text
    .pushsection .rodata.str, "aMS", %progbits, 1
.Lprint_text\@:
    .asciz "\text"
    .popsection
    adr_l x0, .Lprint_text\@
    bl puts
.endm

#else
/* ======================================================================== C */
#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>

#define read_sysreg(reg) ({ uint64_t __v; __asm__ volatile("mrs %0, " #reg : "=r"(__v)); __v; })
#define write_sysreg(reg, v) __asm__ volatile("msr " #reg ", %0" : : "r"((uint64_t)(v)) : "memory")

static inline void isb(void) { __asm__ volatile("isb" : : : "memory"); }
static inline void dsb_sy(void) { __asm__ volatile("dsb sy" : : : "memory"); }
static inline void wfi(void) { __asm__ volatile("wfi" : : : "memory"); }
static inline void irq_enable(void) { __asm__ volatile("msr daifclr, #2\n\tisb" : : : "memory"); }
static inline void irq_disable(void) { __asm__ volatile("msr daifset, #2" : : : "memory"); }

static inline uint32_t mmio_read32(uintptr_t addr) { return *(volatile uint32_t *)addr; }
static inline void mmio_write32(uintptr_t addr, uint32_t v) { *(volatile uint32_t *)addr = v; }
static inline uint64_t mmio_read64(uintptr_t addr) { return *(volatile uint64_t *)addr; }
static inline void mmio_write64(uintptr_t addr, uint64_t v) { *(volatile uint64_t *)addr = v; }
static inline void mmio_write8(uintptr_t addr, uint8_t v) { *(volatile uint8_t *)addr = v; }

/* Shared-memory flags between CPUs: load-acquire / store-release (Arm ARM, "Load-Acquire, Store-Release"). */
static inline uint64_t load_acquire(const volatile uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void store_release(volatile uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

/* start.S */
int main(void);
unsigned cpu_index(void);                   /* Aff1 * 8 + Aff0 */
uint64_t cpu_mpidr(unsigned index);         /* PSCI target_cpu value of CPU `index` */
void secondary_entry(uint64_t context_id);  /* PSCI CPU_ON entry point for secondaries */
typedef void (*secondary_fn_t)(uint64_t context_id);
extern secondary_fn_t secondary_fn[MAX_CPUS];   /* what secondary_entry calls, per CPU */

/* uart.c: PL011 output.  puts writes the string only (no newline added). */
void putc(char c);
void puts(const char *s);
void put_hex64(uint64_t v);                 /* 0x + 16 hex digits */
void put_hex(uint64_t v);                   /* 0x + minimal hex digits */
void put_dec(int64_t v);                    /* signed decimal */
void put_udec(uint64_t v);                  /* unsigned decimal */

/* smccc.c */
int64_t smccc_call(uint64_t fid, uint64_t a1, uint64_t a2, uint64_t a3);
/* An SMCCC call: function ID in x0, arguments in x1..x5 (SDEI's EVENT_REGISTER takes five),
 * the result in x0. SMCCC 1.1 (section 2.6) lets the callee clobber x0..x3 and later versions
 * x0..x17, so x6..x17 are declared clobbered (x1..x5 are operands): correct for any version. */
static inline __attribute__((always_inline)) int64_t
smccc_call5(uint64_t fid, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5)
{
    register uint64_t x0 __asm__("x0") = fid;
    register uint64_t x1 __asm__("x1") = a1;
    register uint64_t x2 __asm__("x2") = a2;
    register uint64_t x3 __asm__("x3") = a3;
    register uint64_t x4 __asm__("x4") = a4;
    register uint64_t x5 __asm__("x5") = a5;
    __asm__ volatile(
#ifdef CONDUIT_SMC
        ".inst 0xd4000003   /* smc #0 */"
#else
        "hvc #0"
#endif
        : "+r"(x0), "+r"(x1), "+r"(x2), "+r"(x3), "+r"(x4), "+r"(x5)
        :
        : "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14", "x15", "x16", "x17", "memory");
    return (int64_t)x0;
}
int64_t psci_version(void);
int64_t psci_features(uint64_t fid);
int64_t psci_cpu_on(uint64_t target_mpidr, uint64_t entry, uint64_t context_id);
void psci_cpu_off(void) __attribute__((noreturn));
int64_t psci_affinity_info(uint64_t target_affinity, uint64_t lowest_level);
int64_t psci_migrate_info_type(void);
void psci_system_off(void) __attribute__((noreturn));
void psci_system_reset(void) __attribute__((noreturn));
/* Start CPU `index` at secondary_entry, which calls fn(context_id) on its own stack. */
int64_t cpu_start(unsigned index, secondary_fn_t fn, uint64_t context_id);

/* spinlock.S: test-and-test-and-set lock on an LDAXR/STXR pair (Arm ARM, "Synchronization and semaphores"). */
typedef struct { volatile uint32_t locked; } spinlock_t;
void spin_lock(spinlock_t *lock);
void spin_unlock(spinlock_t *lock);

/* gic.c: GICv3 with system-register CPU interface, one security state (QEMU virt without EL3). */
void gic_dist_init(void);                   /* once, on CPU 0 */
void gic_redist_init(void);                 /* on each CPU: wake its redistributor */
void gic_cpu_init(void);                    /* on each CPU: ICC_SRE/PMR/BPR1/IGRPEN1 */
void gic_enable_ppi(unsigned intid, uint8_t priority);      /* SGI/PPI of this CPU, group 1 */
void gic_enable_spi(unsigned intid, uint8_t priority, uint64_t target_mpidr);
void gic_disable(unsigned intid);
uint32_t gic_iar(void);                     /* ICC_IAR1_EL1: acknowledge */
void gic_eoir(uint32_t intid);              /* ICC_EOIR1_EL1: priority drop + deactivate */

/* vectors.S calls these; each is weak, define your own to override. */
void handle_sync(uint64_t esr, uint64_t elr, uint64_t far);
void handle_irq(void);
void handle_fiq(void);
void handle_serror(void);
extern char vectors[];

#endif /* __ASSEMBLER__ */
#endif /* SDEILAB_GUEST_H */
