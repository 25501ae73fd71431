/*
 * psci_tour.c - what the firmware says about itself: SMCCC and PSCI 1.1 discovery calls,
 * the answers to the calls a guest can make without side effects, and the error codes for
 * CPU_ON / AFFINITY_INFO misuse.  Every call goes through the HVC #0 conduit (DEN0028,
 * "Conduits").
 *
 * The output is meant to be byte-identical on QEMU 7.2 and on the lab's emulator, which
 * answers as the specifications say.  Where QEMU 7.2 answers differently (QEMU_DIFFERS
 * below), the call is still made but its value is not printed, unless built with -DSHOW_ALL.
 * guests/QEMU-DEVIATIONS.md lists each such difference with QEMU's value, the specified
 * one, and why.
 */
#include "guest.h"

#define QEMU_DIFFERS 1      /* QEMU 7.2 departs from the spec for this call: hide the value */

struct query {
    const char *name;
    uint32_t fid;
    int hide;
};

/* PSCI_FEATURES of every PSCI 1.1 function ID (DEN0022, PSCI_FEATURES), both SMC32 and SMC64 forms
 * where the spec defines both, plus PSCI 1.3's SYSTEM_OFF2 and SMCCC_VERSION (which SMCCC
 * 1.1 says to discover through PSCI_FEATURES, DEN0028, SMCCC_VERSION). */
static const struct query features[] = {
    {"PSCI_VERSION", PSCI_VERSION, 0},
    {"CPU_SUSPEND", PSCI_CPU_SUSPEND, 0},
    {"CPU_SUSPEND (SMC64)", PSCI_CPU_SUSPEND64, 0},
    {"CPU_OFF", PSCI_CPU_OFF, 0},
    {"CPU_ON", PSCI_CPU_ON, 0},
    {"CPU_ON (SMC64)", PSCI_CPU_ON64, 0},
    {"AFFINITY_INFO", PSCI_AFFINITY_INFO, 0},
    {"AFFINITY_INFO (SMC64)", PSCI_AFFINITY_INFO64, 0},
    {"MIGRATE", PSCI_MIGRATE, 0},
    {"MIGRATE (SMC64)", PSCI_MIGRATE64, 0},
    {"MIGRATE_INFO_TYPE", PSCI_MIGRATE_INFO_TYPE, 0},
    {"MIGRATE_INFO_UP_CPU", PSCI_MIGRATE_INFO_UP_CPU, 0},
    {"MIGRATE_INFO_UP_CPU (SMC64)", PSCI_MIGRATE_INFO_UP_CPU64, 0},
    {"SYSTEM_OFF", PSCI_SYSTEM_OFF, 0},
    {"SYSTEM_RESET", PSCI_SYSTEM_RESET, 0},
    {"PSCI_FEATURES", PSCI_FEATURES, 0},
    {"CPU_FREEZE", PSCI_CPU_FREEZE, 0},
    {"CPU_DEFAULT_SUSPEND", PSCI_CPU_DEFAULT_SUSPEND, 0},
    {"CPU_DEFAULT_SUSPEND (SMC64)", PSCI_CPU_DEFAULT_SUSPEND64, 0},
    {"NODE_HW_STATE", PSCI_NODE_HW_STATE, 0},
    {"NODE_HW_STATE (SMC64)", PSCI_NODE_HW_STATE64, 0},
    {"SYSTEM_SUSPEND", PSCI_SYSTEM_SUSPEND, 0},
    {"SYSTEM_SUSPEND (SMC64)", PSCI_SYSTEM_SUSPEND64, 0},
    {"SET_SUSPEND_MODE", PSCI_SET_SUSPEND_MODE, 0},
    {"STAT_RESIDENCY", PSCI_STAT_RESIDENCY, 0},
    {"STAT_RESIDENCY (SMC64)", PSCI_STAT_RESIDENCY64, 0},
    {"STAT_COUNT", PSCI_STAT_COUNT, 0},
    {"STAT_COUNT (SMC64)", PSCI_STAT_COUNT64, 0},
    {"SYSTEM_RESET2", PSCI_SYSTEM_RESET2, QEMU_DIFFERS},
    {"SYSTEM_RESET2 (SMC64)", PSCI_SYSTEM_RESET2_64, QEMU_DIFFERS},
    {"MEM_PROTECT", PSCI_MEM_PROTECT, 0},
    {"MEM_PROTECT_CHECK_RANGE", PSCI_MEM_PROTECT_CHECK_RANGE, 0},
    {"MEM_PROTECT_CHECK_RANGE (SMC64)", PSCI_MEM_PROTECT_CHECK_RANGE64, 0},
    {"SYSTEM_OFF2", PSCI_SYSTEM_OFF2, 0},
    {"SYSTEM_OFF2 (SMC64)", PSCI_SYSTEM_OFF2_64, 0},
    {"SMCCC_VERSION", SMCCC_VERSION, QEMU_DIFFERS},
};

/* SMCCC_ARCH_FEATURES (DEN0028, SMCCC_ARCH_FEATURES) of the Arm architecture calls. */
static const struct query arch_features[] = {
    {"SMCCC_VERSION", SMCCC_VERSION, QEMU_DIFFERS},
    {"SMCCC_ARCH_FEATURES", SMCCC_ARCH_FEATURES, QEMU_DIFFERS},
    {"SMCCC_ARCH_SOC_ID", SMCCC_ARCH_SOC_ID, QEMU_DIFFERS},
    {"SMCCC_ARCH_WORKAROUND_1", SMCCC_ARCH_WORKAROUND_1, QEMU_DIFFERS},
    {"SMCCC_ARCH_WORKAROUND_2", SMCCC_ARCH_WORKAROUND_2, QEMU_DIFFERS},
    {"SMCCC_ARCH_WORKAROUND_3", SMCCC_ARCH_WORKAROUND_3, QEMU_DIFFERS},
};

/* Function IDs that no service owns: the answer must be NOT_SUPPORTED (DEN0028, "Unknown Function Identifier"). */
static const uint32_t unknown_fids[] = {
    0x8400001F,     /* standard service, fast SMC32, unassigned PSCI function number */
    0xC400001F,     /* the same as SMC64 */
    0xC2000000,     /* SiP service, fast SMC64, function 0: no SiP calls on this platform */
};

static const char *ret_name(int64_t v)
{
    switch (v) {
    case 0: return "SUCCESS";
    case PSCI_RET_NOT_SUPPORTED: return "NOT_SUPPORTED";
    case PSCI_RET_INVALID_PARAMETERS: return "INVALID_PARAMETERS";
    case PSCI_RET_DENIED: return "DENIED";
    case PSCI_RET_ALREADY_ON: return "ALREADY_ON";
    case PSCI_RET_ON_PENDING: return "ON_PENDING";
    case PSCI_RET_INTERNAL_FAILURE: return "INTERNAL_FAILURE";
    case PSCI_RET_NOT_PRESENT: return "NOT_PRESENT";
    case PSCI_RET_DISABLED: return "DISABLED";
    case PSCI_RET_INVALID_ADDRESS: return "INVALID_ADDRESS";
    default: return "?";
    }
}

/* A value QEMU 7.2 gets wrong.  Build with -DSHOW_ALL to print it anyway (then the output
 * is no longer the same on QEMU and on the lab). */
static void hidden(int64_t v)
{
#ifdef SHOW_ALL
    puts(" = ");
    put_dec(v);
    puts(" (");
    put_hex((uint64_t)v);
    puts(") [QEMU 7.2 differs]\n");
#else
    (void)v;
    puts(": (differs on QEMU 7.2, not printed)\n");
#endif
}

static void show_ret(int64_t v)
{
    puts(" = ");
    put_dec(v);
    puts(" (");
    puts(ret_name(v));
    puts(")\n");
}

static void show_query(const struct query *q, int64_t v)
{
    puts("  ");
    puts(q->name);
    puts(" ");
    put_hex(q->fid);
    if (q->hide) {
        hidden(v);
        return;
    }
    /* FEATURES answers: >= 0 implemented (a flags word, 0 for the plain case), < 0 an error. */
    puts(" = ");
    put_dec(v);
    puts(v >= 0 ? " (implemented)\n" : v == PSCI_RET_NOT_SUPPORTED ? " (NOT_SUPPORTED)\n" : " (error)\n");
}

static void affinity_state(const char *what, uint64_t target, uint64_t level, int hide)
{
    int64_t v = psci_affinity_info(target, level);
    puts("AFFINITY_INFO(");
    puts(what);
    puts(", level ");
    put_dec((int64_t)level);
    puts(")");
    if (hide) {
        hidden(v);
        return;
    }
    puts(" = ");
    put_dec(v);
    puts(" (");
    puts(v == PSCI_AFF_ON ? "ON" : v == PSCI_AFF_OFF ? "OFF" : v == PSCI_AFF_ON_PENDING ? "ON_PENDING"
         : ret_name(v));
    puts(")\n");
}

int main(void)
{
    int64_t v;

    puts("psci_tour: SMCCC and PSCI through HVC #0\n");

    /* SMCCC_VERSION (DEN0028, SMCCC_VERSION): 0x10001 means SMCCC 1.1. */
    v = smccc_call(SMCCC_VERSION, 0, 0, 0);
    puts("SMCCC_VERSION");
    hidden(v);

    puts("SMCCC_ARCH_FEATURES:\n");
    for (size_t i = 0; i < sizeof(arch_features) / sizeof(arch_features[0]); i++)
        show_query(&arch_features[i], smccc_call(SMCCC_ARCH_FEATURES, arch_features[i].fid, 0, 0));

    /* PSCI_VERSION (DEN0022, PSCI_VERSION): [31:16] major, [15:0] minor. */
    v = psci_version();
    puts("PSCI_VERSION = ");
    put_hex((uint64_t)v);
    puts(" (");
    put_dec(v >> 16);
    putc('.');
    put_dec(v & 0xffff);
    puts(")\n");

    puts("PSCI_FEATURES:\n");
    for (size_t i = 0; i < sizeof(features) / sizeof(features[0]); i++)
        show_query(&features[i], psci_features(features[i].fid));

    /* MIGRATE_INFO_TYPE (DEN0022, MIGRATE_INFO_TYPE): 2 = no Trusted OS that needs migrating. */
    puts("MIGRATE_INFO_TYPE = ");
    put_dec(psci_migrate_info_type());
    putc('\n');

    /* AFFINITY_INFO (DEN0022, AFFINITY_INFO).  0xff00ff (Aff2 = 0xff, Aff0 = 0xff) exists on no board. */
    affinity_state("CPU 0", cpu_mpidr(0), 0, 0);
    affinity_state("0xff00ff", 0xff00ff, 0, 0);
    affinity_state("CPU 0", cpu_mpidr(0), 1, QEMU_DIFFERS);

    /* CPU_ON misuse (DEN0022, CPU_ON).  None of these may start a CPU. */
    puts("CPU_ON(CPU 0, the caller itself)");
    show_ret(psci_cpu_on(cpu_mpidr(0), (uint64_t)(uintptr_t)secondary_entry, 0));
    puts("CPU_ON(0xff00ff, no such CPU)");
    show_ret(psci_cpu_on(0xff00ff, (uint64_t)(uintptr_t)secondary_entry, 0));
    v = psci_cpu_on(cpu_mpidr(1), (uint64_t)(uintptr_t)secondary_entry + 2, 0);
    puts("CPU_ON(CPU 1, entry point not 4-byte aligned)");
    hidden(v);

    puts("unknown function IDs:\n");
    for (size_t i = 0; i < sizeof(unknown_fids) / sizeof(unknown_fids[0]); i++) {
        puts("  ");
        put_hex(unknown_fids[i]);
        show_ret(smccc_call(unknown_fids[i], 0, 0, 0));
    }

    puts("psci_tour: done\n");
    psci_system_off();
}
