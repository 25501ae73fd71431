/*
 * smccc.c - firmware calls through the SMC Calling Convention (Arm DEN0028).
 *
 * The conduit itself is smccc_call5 in guest.h, inlined, so a call's HVC/SMC sits in the
 * wrapper that makes it (a debugger stopped there shows sdei_event_complete, not a helper).
 */
#include "guest.h"

int64_t smccc_call(uint64_t fid, uint64_t a1, uint64_t a2, uint64_t a3)
{
    return smccc_call5(fid, a1, a2, a3, 0, 0);
}

/* PSCI (Arm DEN0022).  The SMC64 forms pass 64-bit addresses and context IDs. */
int64_t psci_version(void) { return smccc_call(PSCI_VERSION, 0, 0, 0); }
int64_t psci_features(uint64_t fid) { return smccc_call(PSCI_FEATURES, fid, 0, 0); }
int64_t psci_migrate_info_type(void) { return smccc_call(PSCI_MIGRATE_INFO_TYPE, 0, 0, 0); }

int64_t psci_cpu_on(uint64_t target_mpidr, uint64_t entry, uint64_t context_id)
{
    return smccc_call(PSCI_CPU_ON64, target_mpidr, entry, context_id);
}

int64_t psci_affinity_info(uint64_t target_affinity, uint64_t lowest_level)
{
    return smccc_call(PSCI_AFFINITY_INFO64, target_affinity, lowest_level, 0);
}

void psci_cpu_off(void)
{
    smccc_call(PSCI_CPU_OFF, 0, 0, 0);
    for (;;)            /* CPU_OFF returns only on failure (DENIED) */
        wfi();
}

void psci_system_off(void)
{
    smccc_call(PSCI_SYSTEM_OFF, 0, 0, 0);
    for (;;)
        wfi();
}

void psci_system_reset(void)
{
    smccc_call(PSCI_SYSTEM_RESET, 0, 0, 0);
    for (;;)
        wfi();
}

int64_t cpu_start(unsigned index, secondary_fn_t fn, uint64_t context_id)
{
    if (index >= MAX_CPUS)
        return PSCI_RET_INVALID_PARAMETERS;
    /* Publish the slot before the CPU can run: the store-release orders it before the
     * CPU_ON call, and secondary_entry reads it with a load-acquire. */
    __atomic_store_n(&secondary_fn[index], fn, __ATOMIC_RELEASE);
    return psci_cpu_on(cpu_mpidr(index), (uint64_t)(uintptr_t)secondary_entry, context_id);
}
