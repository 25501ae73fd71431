"""Guests with the MMU on, doing what Linux does to the machine: exceptions from EL0, code
patched by one CPU through an alias and run by another.

Exception entry from EL0 with the MMU on, as an OS takes it:

The guest maps RAM three times with 1 GiB blocks (EL1 only, EL0 read/write, and an EL1-only
alias that holds the vector table, so VBAR_EL1 is a virtual address unlike any physical one),
drops to EL0 and there calls SVC and touches memory it may not. Every value it prints is fixed
by the architecture (ARM ARM D1.10 exception entry, D17.2.37 ESR_EL1, D8 translation), so the
expected output is written down here and QEMU prints the same bytes:

* the handler runs at EL1 (``mrs CurrentEL`` is UNDEFINED at EL0 and the vector's alias is
  EL1-only), on SP_EL1, with SP_EL0 holding the EL0 stack pointer, and ERET gives EL0 back its SP;
* SVC's syndrome carries the immediate; a read of an unmapped address is a level-1 translation
  fault and a read of an EL1-only page a level-1 permission fault, both data aborts from a lower
  EL (EC 0x24) with FAR the address.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sdeilab.lab.platform import make_platform
from sdeilab.machine.machine import Machine
from sdeilab.machine.outcome import StopReason
from sdeilab.toolchain import build_source_text
from sdeilab.trace import ExceptionTaken

GUEST = r"""
#include "guest.h"

/* Stage 1 block descriptors at level 1, 4 KiB granule (ARM ARM D8.3). */
#define BLOCK     0x1UL
#define ATTR(n)   ((uint64_t)(n) << 2)   /* MAIR_EL1 index: 0 Device-nGnRnE, 1 Normal write-back */
#define AP_EL0    (1UL << 6)             /* AP[2:1] = 01: read/write at EL1 and at EL0 */
#define SH_INNER  (3UL << 8)
#define AF        (1UL << 10)
#define PXN       (1UL << 53)
#define UXN       (1UL << 54)
#define USER_ALIAS   0x40000000UL        /* VA 0x8000_0000 + x = PA 0x4000_0000 + x, for EL0 */
#define VECTOR_ALIAS 0x80000000UL        /* VA 0xC000_0000 + x = PA 0x4000_0000 + x, EL1 only */

static uint64_t l1[512] __attribute__((aligned(4096))) = {
    [0] = 0x00000000UL | BLOCK | ATTR(0) | AF | PXN | UXN,                    /* devices (UART) */
    [1] = 0x40000000UL | BLOCK | ATTR(1) | SH_INNER | AF | UXN,               /* RAM, EL1 only */
    [2] = 0x40000000UL | BLOCK | ATTR(1) | SH_INNER | AF | AP_EL0 | PXN,      /* RAM, EL0 */
    [3] = 0x40000000UL | BLOCK | ATTR(1) | SH_INNER | AF | UXN,               /* RAM, EL1 vectors */
};
static uint8_t user_stack[4096] __attribute__((aligned(16)));
uint64_t el1_sp;  /* SP_EL1 when EL0 was entered: where every exception from EL0 must start */

extern char el0_vectors[], user_code[];
void enter_el0(uint64_t pc, uint64_t sp);

struct frame { uint64_t x[32]; };

#define READ_SYSREG(name) ({ uint64_t v_; __asm__ volatile("mrs %0, " #name : "=r"(v_)); v_; })

void lower_sync(struct frame *f, uint64_t sp_at_entry)
{
    uint64_t esr = READ_SYSREG(esr_el1), far = READ_SYSREG(far_el1), elr = READ_SYSREG(elr_el1);
    uint64_t el = READ_SYSREG(CurrentEL), sp_el0 = READ_SYSREG(sp_el0);
    unsigned ec = esr >> 26, imm = esr & 0xffff;
    if (ec == 0x15 && imm == 0x99) {
        puts("done\n");
        psci_system_off();
    }
    if (ec == 0x15) {
        puts("svc from EL0: ESR ");
        put_hex(esr);
        puts(" CurrentEL ");
        put_hex(el);
        puts(sp_at_entry == el1_sp ? " on SP_EL1" : " on the WRONG stack");
        puts(sp_el0 == f->x[0] ? ", SP_EL0 = EL0's SP" : ", SP_EL0 LOST");
        if (imm == 0x16)
            puts(f->x[1] == f->x[0] ? ", EL0's SP unchanged after ERET" : ", EL0's SP CHANGED");
        putc('\n');
        return;
    }
    if (ec == 0x24) {
        puts("data abort from EL0: ESR ");
        put_hex(esr);
        puts(" FAR ");
        put_hex(far);
        putc('\n');
        __asm__ volatile("msr elr_el1, %0" : : "r"(elr + 4));  /* skip the load */
        return;
    }
    puts("unexpected: ESR ");
    put_hex(esr);
    puts(" ELR ");
    put_hex(elr);
    putc('\n');
    psci_system_off();
}

int main(void)
{
    __asm__ volatile("msr mair_el1, %0" : : "r"(0xff00UL));
    /* T0SZ = 25 (39-bit VA, walks start at level 1), IRGN0 = ORGN0 = write-back, SH0 inner,
     * TG0 = 4 KiB, EPD1 = 1 (no TTBR1 walks). */
    __asm__ volatile("msr tcr_el1, %0" : : "r"(25UL | 1UL << 8 | 1UL << 10 | 3UL << 12 | 1UL << 23));
    __asm__ volatile("msr ttbr0_el1, %0" : : "r"((uint64_t)l1));
    isb();
    __asm__ volatile("msr sctlr_el1, %0" : : "r"(READ_SYSREG(sctlr_el1) | 1));  /* M */
    isb();
    __asm__ volatile("msr vbar_el1, %0" : : "r"((uint64_t)el0_vectors + VECTOR_ALIAS));
    isb();
    enter_el0((uint64_t)user_code + USER_ALIAS, (uint64_t)(user_stack + sizeof user_stack) + USER_ALIAS);
    return 0;
}

__asm__(
"   .text\n"
"   .global enter_el0\n"
"enter_el0:\n"                       /* x0 = EL0 pc, x1 = EL0 sp (virtual addresses) */
"   msr sp_el0, x1\n"
"   msr elr_el1, x0\n"
"   msr spsr_el1, xzr\n"             /* EL0t, DAIF clear */
"   mov x2, sp\n"
"   adrp x3, el1_sp\n"
"   str x2, [x3, :lo12:el1_sp]\n"
"   eret\n"
"lower_sync_entry:\n"
"   sub sp, sp, #256\n"
"   stp x0, x1, [sp, #0]\n"   "   stp x2, x3, [sp, #16]\n"   "   stp x4, x5, [sp, #32]\n"
"   stp x6, x7, [sp, #48]\n"  "   stp x8, x9, [sp, #64]\n"   "   stp x10, x11, [sp, #80]\n"
"   stp x12, x13, [sp, #96]\n" "  stp x14, x15, [sp, #112]\n" "  stp x16, x17, [sp, #128]\n"
"   stp x18, x30, [sp, #144]\n"
"   mov x0, sp\n"
"   add x1, sp, #256\n"
"   bl lower_sync\n"
"   ldp x0, x1, [sp, #0]\n"   "   ldp x2, x3, [sp, #16]\n"   "   ldp x4, x5, [sp, #32]\n"
"   ldp x6, x7, [sp, #48]\n"  "   ldp x8, x9, [sp, #64]\n"   "   ldp x10, x11, [sp, #80]\n"
"   ldp x12, x13, [sp, #96]\n" "  ldp x14, x15, [sp, #112]\n" "  ldp x16, x17, [sp, #128]\n"
"   ldp x18, x30, [sp, #144]\n"
"   add sp, sp, #256\n"
"   eret\n"
"unexpected_vector:\n"
"   mrs x0, esr_el1\n"
"   b unexpected_entry\n"
"   .balign 0x800\n"
"   .global el0_vectors\n"
"el0_vectors:\n"
"   .rept 8\n"                       /* current EL: nothing expected there */
"   .balign 0x80\n"
"   b unexpected_vector\n"
"   .endr\n"
"   .balign 0x80\n"                  /* lower EL, AArch64, synchronous: VBAR_EL1 + 0x400 */
"   b lower_sync_entry\n"
"   .rept 7\n"
"   .balign 0x80\n"
"   b unexpected_vector\n"
"   .endr\n"
"   .global user_code\n"
"user_code:\n"                       /* EL0 */
"   mov x0, sp\n"
"   svc #0x15\n"
"   mov x1, sp\n"
"   svc #0x16\n"
"   movz x2, #1, lsl #32\n"          /* 0x1_0000_0000: level-1 entry 4 is invalid */
"   ldr x3, [x2]\n"
"   mov x2, #0x40000000\n"           /* EL1-only RAM */
"   ldr x3, [x2]\n"
"   svc #0x99\n"
);

void unexpected_entry(uint64_t esr)
{
    puts("unexpected exception at the current EL: ESR ");
    put_hex(esr);
    putc('\n');
    psci_system_off();
}
"""

EXPECTED = (
    b"svc from EL0: ESR 0x56000015 CurrentEL 0x4 on SP_EL1, SP_EL0 = EL0's SP\n"
    b"svc from EL0: ESR 0x56000016 CurrentEL 0x4 on SP_EL1, SP_EL0 = EL0's SP, EL0's SP unchanged after ERET\n"
    b"data abort from EL0: ESR 0x92000005 FAR 0x100000000\n"  # EC 0x24, IL, DFSC translation fault level 1
    b"data abort from EL0: ESR 0x9200000d FAR 0x40000000\n"  # DFSC permission fault level 1
    b"done\n"
)


@pytest.fixture(scope="module")
def el0_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_source_text(GUEST, "c", tmp_path_factory.mktemp("el0") / "el0.elf")


def test_el0_svc_and_aborts_reach_the_el1_vectors(el0_elf: Path) -> None:
    platform = make_platform(1)
    platform.load(el0_elf)
    outcome = platform.run(2_000_000)
    machine = platform.machine
    assert outcome.reason is StopReason.SYSTEM_OFF, (outcome, bytes(machine.uart_output))
    assert bytes(machine.uart_output) == EXPECTED
    taken = [f for f in machine.trace if isinstance(f, ExceptionTaken)]
    vbar = machine.vcpus[0].backend.read("VBAR_EL1")
    assert vbar >= 0xC000_0000  # the virtual alias: has_vectors translated it
    assert [(f.reason, f.vector - vbar, f.esr, f.far) for f in taken] == [
        ("svc", 0x400, 0x5600_0015, 0),
        ("svc", 0x400, 0x5600_0016, 0),
        ("data abort", 0x400, 0x9200_0005, 0x1_0000_0000),
        ("data abort", 0x400, 0x9200_000D, 0x4000_0000),
        ("svc", 0x400, 0x5600_0099, 0),
    ]


@pytest.mark.qemu
@pytest.mark.skipif(shutil.which("qemu-system-aarch64") is None, reason="qemu-system-aarch64 is not installed")
def test_qemu_prints_the_same(el0_elf: Path) -> None:
    from .test_guests_qemu import run_qemu

    assert run_qemu(el0_elf, smp=1) == EXPECTED


# An unaligned exclusive load with VBAR_EL1 = 0: a data abort (alignment fault) and no vectors.
ABORT_WITHOUT_VECTORS = """
    .global main
main:
    msr vbar_el1, xzr
    ldr x0, =0x40100003
    ldxr x1, [x0]
"""


def test_an_abort_without_vectors_is_still_a_fault_report(asm_guest) -> None:  # type: ignore[no-untyped-def]
    # An unaligned exclusive load is an alignment fault in any state: a data abort with the
    # CPU model's syndrome (DFSC 0x21), and with no vectors the run stops with a report.
    elf = asm_guest(ABORT_WITHOUT_VECTORS)
    machine = Machine(1)
    machine.load(elf)
    outcome = machine.run(100_000)
    assert outcome.reason is StopReason.FAULT
    assert outcome.fault is not None
    assert "data abort (ESR 0x96000021) and no exception vectors" in outcome.fault.reason
    assert outcome.exit_status == 3


# Code written by CPU 0 through a data alias of its page (not executable) and run by CPU 1 through
# an executable alias, as Linux writes a user page through its linear map: CPU 0's IC IVAU names a
# virtual address that CPU 1 cannot fetch from, so the machine must tell CPU 1's engine the
# physical line (ARM ARM D7.5.9: IC IVAU invalidates by the physical address VA translates to).
# While CPU 0 patches, CPU 1 waits on tables where RAM's identity map is not executable either
# (it runs its wait loop from the executable alias), so nothing at all maps the physical address
# as itself for an instruction fetch there.
PATCH_GUEST = r"""
#include "guest.h"

#define BLOCK     0x1UL
#define ATTR(n)   ((uint64_t)(n) << 2)
#define AP_RO     (2UL << 6)              /* AP[2:1] = 10: read-only at EL1 */
#define SH_INNER  (3UL << 8)
#define AF        (1UL << 10)
#define PXN       (1UL << 53)
#define UXN       (1UL << 54)
#define DATA_ALIAS 0x40000000UL           /* VA 0x8000_0000 + x = PA 0x4000_0000 + x: read/write, never executable */
#define EXEC_ALIAS 0x80000000UL           /* VA 0xC000_0000 + x = PA 0x4000_0000 + x: read-only, executable */

static uint64_t l1[512] __attribute__((aligned(4096))) = {
    [0] = 0x00000000UL | BLOCK | ATTR(0) | AF | PXN | UXN,
    [1] = 0x40000000UL | BLOCK | ATTR(1) | SH_INNER | AF | UXN,
    [2] = 0x40000000UL | BLOCK | ATTR(1) | SH_INNER | AF | PXN | UXN,
    [3] = 0x40000000UL | BLOCK | ATTR(1) | SH_INNER | AF | AP_RO | UXN,
};
static uint64_t l1_no_identity_exec[512] __attribute__((aligned(4096))) = {
    [0] = 0x00000000UL | BLOCK | ATTR(0) | AF | PXN | UXN,
    [1] = 0x40000000UL | BLOCK | ATTR(1) | SH_INNER | AF | PXN | UXN,
    [2] = 0x40000000UL | BLOCK | ATTR(1) | SH_INNER | AF | PXN | UXN,
    [3] = 0x40000000UL | BLOCK | ATTR(1) | SH_INNER | AF | AP_RO | UXN,
};
static uint32_t code_page[1024] __attribute__((aligned(4096)));
volatile uint64_t step;
/* Switch to `tables`, wait for *flag == value, switch back to `back`: called through EXEC_ALIAS. */
void wait_elsewhere(uint64_t tables, uint64_t back, volatile uint64_t *flag, uint64_t value);

__asm__(
"   .text\n"
"   .global wait_elsewhere\n"
"wait_elsewhere:\n"
"   msr ttbr0_el1, x0\n"
"   isb\n"
"   tlbi vmalle1\n"
"   dsb nsh\n"
"   isb\n"
"1: ldr x4, [x2]\n"
"   cmp x4, x3\n"
"   b.ne 1b\n"
"   msr ttbr0_el1, x1\n"
"   isb\n"
"   tlbi vmalle1\n"
"   dsb nsh\n"
"   isb\n"
"   ret\n"
);

static void mmu_on(void)
{
    __asm__ volatile("msr mair_el1, %0" : : "r"(0xff00UL));
    __asm__ volatile("msr tcr_el1, %0" : : "r"(25UL | 1UL << 8 | 1UL << 10 | 3UL << 12 | 1UL << 23));
    __asm__ volatile("msr ttbr0_el1, %0" : : "r"((uint64_t)l1));
    isb();
    uint64_t sctlr;
    __asm__ volatile("mrs %0, sctlr_el1" : "=r"(sctlr));
    __asm__ volatile("msr sctlr_el1, %0" : : "r"(sctlr | 1));
    isb();
}

/* Write "mov x0, #value; ret" through the data alias and make it visible to instruction fetches
 * of every CPU (ARM ARM B2.4.4): clean to PoU, invalidate the I-cache line, both broadcast. */
static void patch(uint64_t value)
{
    volatile uint32_t *data = (volatile uint32_t *)((uint64_t)code_page + DATA_ALIAS);
    data[0] = 0xd2800000u | (uint32_t)(value << 5);
    data[1] = 0xd65f03c0u;
    __asm__ volatile("dc cvau, %0\n\tdsb ish\n\tic ivau, %0\n\tdsb ish\n\tisb" : : "r"(data) : "memory");
}

static uint64_t call_patched(void)
{
    uint64_t (*fn)(void) = (uint64_t (*)(void))((uint64_t)code_page + EXEC_ALIAS);
    return fn();
}

static void cpu1(uint64_t context_id)
{
    (void)context_id;
    mmu_on();
    uint64_t first = call_patched();
    step = 1;
    void (*wait)(uint64_t, uint64_t, volatile uint64_t *, uint64_t) =
        (void (*)(uint64_t, uint64_t, volatile uint64_t *, uint64_t))((uint64_t)wait_elsewhere + EXEC_ALIAS);
    wait((uint64_t)l1_no_identity_exec, (uint64_t)l1, &step, 2);
    isb();
    uint64_t second = call_patched();
    puts("CPU 1 ran ");
    put_udec(first);
    puts(" then ");
    put_udec(second);
    putc('\n');
    step = 3;
    psci_cpu_off();
}

int main(void)
{
    mmu_on();
    patch(1);
    cpu_start(1, cpu1, 0);
    while (step != 1)
        ;
    patch(2);
    step = 2;
    while (step != 3)
        ;
    return 0;
}
"""


@pytest.fixture(scope="module")
def patch_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_source_text(PATCH_GUEST, "c", tmp_path_factory.mktemp("patch") / "patch.elf")


def test_code_patched_through_an_alias_reaches_the_other_cpu(patch_elf: Path) -> None:
    platform = make_platform(2)
    platform.load(patch_elf)
    outcome = platform.run(50_000_000)
    assert outcome.reason is StopReason.SYSTEM_OFF, (outcome, bytes(platform.machine.uart_output))
    assert bytes(platform.machine.uart_output) == b"CPU 1 ran 1 then 2\n"


@pytest.mark.qemu
@pytest.mark.skipif(shutil.which("qemu-system-aarch64") is None, reason="qemu-system-aarch64 is not installed")
def test_qemu_runs_the_patched_code_too(patch_elf: Path) -> None:
    from .test_guests_qemu import run_qemu

    assert run_qemu(patch_elf, smp=2) == b"CPU 1 ran 1 then 2\n"


def test_dczid_says_dc_zva_is_prohibited_yet_dc_zva_still_zeroes(tmp_path: Path) -> None:
    # The lab reports DZP = 1 so that Linux zeroes pages with stores (DC ZVA is slow in Unicorn:
    # docs/machine.md); a guest that executes DC ZVA anyway gets its 64-byte block zeroed.
    elf = build_source_text(r"""
#include "guest.h"
static uint8_t block[128] __attribute__((aligned(64)));
int main(void)
{
    uint64_t dczid;
    __asm__ volatile("mrs %0, dczid_el0" : "=r"(dczid));
    for (int i = 0; i < 128; i++)
        block[i] = 0xff;
    __asm__ volatile("dc zva, %0" : : "r"(block + 64) : "memory");
    unsigned zeros = 0;
    for (int i = 0; i < 128; i++)
        zeros += block[i] == 0;
    puts("DCZID_EL0 ");
    put_hex(dczid);
    puts(", zeroed ");
    put_udec(zeros);
    putc('\n');
    return 0;
}
""", "c", tmp_path / "dczid.elf")
    platform = make_platform(1)
    platform.load(elf)
    assert platform.run(1_000_000).reason is StopReason.SYSTEM_OFF
    assert bytes(platform.machine.uart_output) == b"DCZID_EL0 0x14, zeroed 64\n"  # BS = 4: 64-byte blocks
