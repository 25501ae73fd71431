"""Architectural corner cases, each checked against what QEMU 7.2's virt board with a Cortex-A57 does
(the command from sdeilab.machine.qemu, with -nic none).

Each guest prints what its synchronous exception handler saw (ESR_EL1, and ELR_EL1/FAR_EL1 as
offsets from ``main`` so that the bytes do not depend on the link address); the expected bytes
were taken from QEMU and the ``qemu`` tests compare them again. Also here: multi-access stores to
a device (they must complete once), WFI with an interrupt that PSTATE masks (a deadlock the lab
reports at once) and branches into device memory.

AArch32 EL0 (an ERET with SPSR_EL1.M = 0x10): an SVC, an UNDEF, an abort or an IRQ there is taken
to the "Lower EL using AArch32" vectors, VBAR_EL1 + 0x600 (+0x680 for an IRQ), with SPSR_EL1 the
AArch32 CPSR, ELR_EL1 R15's preferred return address and X0-X14 = R0-R14 (ARM ARM D1.10.2, D1.20).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from sdeilab.lab.platform import make_platform
from sdeilab.machine.outcome import StopReason
from sdeilab.machine.qemu import qemu_virt_command

QEMU = shutil.which("qemu-system-aarch64")

CORNERS = r"""#include "guest.h"
    .macro case label, recover
    adr_l x9, \recover
    adr_l x10, recover_at
    str x9, [x10]
    print "\label: "
    .endm
    .macro eret_to spsr, target
    ldr x0, =\spsr
    msr spsr_el1, x0
    adr_l x0, \target
    msr elr_el1, x0
    eret
    .endm

    .text
    .globl main
main:
    case "dczva", 1f
    ldr x0, =0x50000000
dczva_insn:
    dc zva, x0
    print "no fault\n"
1:
    case "eret-el2h", 1f
    eret_to 0x3c9, 2f
2:  nop
    print "no fault\n"
1:
    case "eret-el3h", 1f
    eret_to 0x3cd, 2f
2:  nop
    print "no fault\n"
1:
    case "eret-reserved", 1f
    eret_to 0x3c6, 2f
2:  nop
    print "no fault\n"
1:
    case "eret-il", 1f
    eret_to 0x1003c5, 2f
2:  nop
    print "no fault\n"
1:
    case "eret-a32-el1", 1f
    eret_to 0x1d3, 2f
2:  nop
    print "no fault\n"
1:
    case "eret-a32-el0", 1f
    eret_to 0x1d0, a32code
1:
    case "a32-undef", 1f
    eret_to 0x1d0, a32undef
1:
    case "a32-load-unmapped", 1f
    ldr x1, =0x50000000
    eret_to 0x800001d0, a32load
1:
    case "t32-svc", 1f
    eret_to 0x1f0, t32code
1:
    case "br-unaligned", 1f
    adr_l x0, 2f
    add x0, x0, #2
    br x0
2:  nop
    print "no fault\n"
1:
    print "end\n"
    bl psci_system_off

    .balign 16
a32code:
    .inst 0xef000000   /* A32 svc #0 */
    .inst 0xef000000
a32undef:
    .inst 0xe7f000f0   /* A32 udf #0 */
a32load:
    .inst 0xe5910000   /* A32 ldr r0, [r1] */
t32code:
    .hword 0xdf01      /* T32 svc #1 */
    .hword 0xdf01

    .globl handle_sync
handle_sync:
    mov x22, x30
    mov x19, x0
    mov x20, x1
    mov x21, x2
    print "ESR="
    mov x0, x19
    bl put_hex64
    print " ELR="
    adr_l x1, main
    sub x0, x20, x1
    bl put_hex64
    print " FAR="
    adr_l x1, main
    sub x0, x21, x1
    cmp x21, #0
    csel x0, x21, x0, eq
    bl put_hex64
    print " SPSR="
    mrs x0, spsr_el1
    bl put_hex64
    print "\n"
    adr_l x10, recover_at
    ldr x9, [x10]
    msr elr_el1, x9
    mov x0, #0x3c5
    msr spsr_el1, x0
    mov x30, x22
    ret
    .data
    .balign 8
recover_at: .quad 0
"""

# QEMU 7.2's output for CORNERS: DC ZVA to nothing is a data abort at the DC ZVA itself with FAR the
# block; an ERET naming EL2h, EL3h, a reserved mode, SPSR.IL or AArch32 EL1 is an illegal return
# (EC 0x0E at the target, SPSR.IL set); a branch to PC bits [1:0] != 0 is a PC alignment fault (EC 0x22).
# From AArch32 EL0: an A32 SVC is EC 0x11 with ELR past it (a T32 one: IL = 0, ELR + 2), a UDF EC 0x00
# at the UDF, a load from nothing EC 0x24 (from a lower EL), SPSR_EL1 the CPSR (N, T, A I F, M = 0x10).
CORNERS_EXPECTED = b"""\
dczva: ESR=0x0000000096000050 ELR=0x0000000000000024 FAR=0x000000000ff7e420 SPSR=0x00000000600003c5
eret-el2h: ESR=0x000000003a000000 ELR=0x000000000000006c FAR=0x000000000ff7e420 SPSR=0x00000000001003c5
eret-el3h: ESR=0x000000003a000000 ELR=0x00000000000000b4 FAR=0x000000000ff7e420 SPSR=0x00000000001003c5
eret-reserved: ESR=0x000000003a000000 ELR=0x00000000000000fc FAR=0x000000000ff7e420 SPSR=0x00000000001003c5
eret-il: ESR=0x000000003a000000 ELR=0x0000000000000144 FAR=0x000000000ff7e420 SPSR=0x00000000001003c5
eret-a32-el1: ESR=0x000000003a000000 ELR=0x000000000000018c FAR=0x000000000ff7e420 SPSR=0x00000000001001c5
eret-a32-el0: ESR=0x0000000046000000 ELR=0x00000000000002d4 FAR=0x000000000ff7e420 SPSR=0x00000000000001d0
a32-undef: ESR=0x0000000002000000 ELR=0x00000000000002d8 FAR=0x000000000ff7e420 SPSR=0x00000000000001d0
a32-load-unmapped: ESR=0x0000000092000010 ELR=0x00000000000002dc FAR=0x000000000ff7e420 SPSR=0x00000000800001d0
t32-svc: ESR=0x0000000044000001 ELR=0x00000000000002e2 FAR=0x000000000ff7e420 SPSR=0x00000000000001f0
br-unaligned: ESR=0x000000008a000000 ELR=0x00000000000002b2 FAR=0x00000000000002b2 SPSR=0x00000000000003c5
end
"""

A32_ENTRY = r"""#include "guest.h"
    .text
    .globl main
main:
#ifdef NOVEC
    msr vbar_el1, xzr
#else
    adr_l x0, a32vectors
    msr vbar_el1, x0
#endif
    isb
#if IRQ
    bl gic_dist_init
    bl gic_redist_init
    bl gic_cpu_init
    mov x0, #27
    mov x1, #0x80
    bl gic_enable_ppi
    msr cntv_cval_el0, xzr
    mov x0, #1
    msr cntv_ctl_el0, x0
    isb
    ldr x0, =0x10
    adr_l x1, a32spin
#elif defined(NOVEC)
    ldr x0, =0x10
    adr_l x1, a32udf
#else
    ldr x0, =0x800f0010
    adr_l x1, a32regs
#endif
    msr spsr_el1, x0
    msr elr_el1, x1
    /* x0-x30 with both halves set: which halves come back from AArch32 EL0 */
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30
    ldr x\n, =(0xA5A50000C3C30000 + \n * 0x0000010100000101)
    .endr
    eret

    .balign 16
a32spin:
    .inst 0xeafffffe   /* A32 b . */
a32regs:
    .inst 0xe2800001   /* add r0, r0, #1 */
    .inst 0xe28dd010   /* add sp, sp, #16 */
    .inst 0xe28ee002   /* add lr, lr, #2 */
    .inst 0xef000000   /* svc #0 */
a32udf:
    .inst 0xe7f000f0   /* udf #0 */

    .balign 0x800
a32vectors:
    .irp idx, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    .balign 0x80
    msr tpidr_el1, x0
    mov x0, #(\idx * 0x80)
    b entry_common
    .endr

entry_common:
    msr tpidrro_el0, x1
    adr_l x1, frame
    .irp n, 2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29
    str x\n, [x1, #\n * 8]
    .endr
    str x30, [x1, #30 * 8]
    mrs x2, tpidr_el1
    str x2, [x1]
    mrs x2, tpidrro_el0
    str x2, [x1, #8]
    mov x19, x0
    print "vector=+"
    mov x0, x19
    bl put_hex64
    print " ESR="
    mrs x0, esr_el1
    bl put_hex64
    print " ELR="
    mrs x0, elr_el1
    adr_l x1, main
    sub x0, x0, x1
    bl put_hex64
    print " SPSR="
    mrs x0, spsr_el1
    bl put_hex64
    print "\n"
    mov x20, #0
1:  adr_l x1, frame
    ldr x0, [x1, x20, lsl #3]
    bl put_hex64
    print "\n"
    add x20, x20, #1
    cmp x20, #31
    b.ne 1b
    bl psci_system_off

    .data
    .balign 8
frame: .skip 31 * 8
"""

# QEMU 7.2's output for A32_ENTRY: the vector offset from VBAR_EL1, ESR, ELR (from ``main``) and SPSR,
# then X0-X30 as the vector found them. The A32 code changed R0, R13 (SP) and R14 (LR) before its SVC;
# X0-X14 are R0-R14 zero-extended and X15-X30, which no User-mode register maps to, keep only their
# low halves (QEMU holds them in 32-bit banked registers while AArch32 runs). The IRQ (the virtual
# timer, pending before the ERET) is taken at the A32 loop to +0x680 with SPSR = CPSR = 0x10.
def a32_frame(header: str, changed: dict[int, int]) -> bytes:
    """A32_ENTRY's output: ``header``, then X0-X30 as the guest set them (0xc3c3nnnn, n the register's
    number twice) but for those the A32 code ``changed``."""
    rows = [header, *(f"0x{changed.get(n, 0xC3C3_0000 | n << 8 | n):016x}" for n in range(31))]
    return ("\n".join(rows) + "\n").encode()


A32_SVC_EXPECTED = a32_frame(
    "vector=+0x0000000000000600 ESR=0x0000000046000000 ELR=0x00000000000000c4 SPSR=0x00000000800f0010",
    {0: 0xC3C3_0001, 13: 0xC3C3_0D1D, 14: 0xC3C3_0E10})  # R0 += 1, SP and LR set by the A32 code

A32_IRQ_EXPECTED = a32_frame(
    "vector=+0x0000000000000680 ESR=0x0000000000000000 ELR=0x00000000000000d0 SPSR=0x0000000000000010", {})

BRANCH_TO = r"""#include "guest.h"
    .text
    .globl main
main:
#ifdef NOVEC
    msr vbar_el1, xzr
#endif
    ldr x0, =TARGET
    br x0

    .globl handle_sync
handle_sync:
    mov x19, x0
    mov x20, x1
    mov x21, x2
    print "sync ESR="
    mov x0, x19
    bl put_hex64
    print " ELR="
    mov x0, x20
    bl put_hex64
    print " FAR="
    mov x0, x21
    bl put_hex64
    print "\n"
    bl psci_system_off
"""

STORM = r"""#include "guest.h"
    .text
    .globl main
main:
    ldr x0, =0x090C0000
    mov x1, #0x100
    mov x2, #0
1:
#if KIND == 1
    str x1, [x0]
#elif KIND == 2
    str w1, [x0, #1]
#elif KIND == 3
    stp w1, w2, [x0]
#elif KIND == 4
    stp x1, x2, [x0]
#elif KIND == 5
    str w1, [x0]
#elif KIND == 6
    str x1, [x0, #4]
#endif
    add x3, x3, #1
    b 1b
"""

WFI_MASKED = r"""#include "guest.h"
    .text
    .globl main
main:
    bl gic_dist_init
    bl gic_redist_init
    bl gic_cpu_init
    mov x0, #27
    mov x1, #0x80
    bl gic_enable_ppi
    msr cntv_cval_el0, xzr
    mov x0, #1
    msr cntv_ctl_el0, x0
    isb
    print "waiting\n"
1:  wfi
    b 1b
"""

WFI_MASKED_COUNTING = r"""#include "guest.h"
    .text
    .globl main
main:
    bl gic_dist_init
    bl gic_redist_init
    bl gic_cpu_init
    mov x0, #27
    mov x1, #0x80
    bl gic_enable_ppi
    msr cntv_cval_el0, xzr
    mov x0, #1
    msr cntv_ctl_el0, x0
    isb
    adr_l x0, counter
1:  ldr x1, [x0]
    add x1, x1, #1
    str x1, [x0]
    cmp x1, #3000
    b.eq 2f
    mov x1, #0
    wfi
    b 1b
2:  print "done\n"
    bl psci_system_off
    .data
    .balign 8
counter: .quad 0
"""


def build(tmp_path: Path, name: str, text: str, **defines: str) -> Path:
    from sdeilab.toolchain import build_source_text

    return build_source_text(text, "asm", tmp_path / f"{name}.elf", defines=defines)


def run_lab(elf: Path, budget: int = 2_000_000, cpus: int = 1):
    platform = make_platform(cpus)
    platform.load(elf)
    outcome = platform.run(budget)
    return platform, outcome


def run_qemu(elf: Path, timeout: float = 30.0) -> bytes:
    cmd = qemu_virt_command(elf, 1, extra=["-monitor", "none", "-serial", "stdio"])
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


@pytest.fixture(scope="module")
def corners_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("corners"), "corners", CORNERS)


@pytest.mark.fast_paths("aarch32")  # the fallback refuses AArch32 EL0 (tests/test_fallbacks.py)
def test_corners_match_qemu_output(corners_elf: Path) -> None:
    """DC ZVA's ELR and FAR, illegal exception returns, PC alignment faults (each line one bug)."""
    platform, outcome = run_lab(corners_elf)
    assert outcome.reason is StopReason.SYSTEM_OFF, outcome.detail
    assert bytes(platform.machine.uart_output).splitlines() == CORNERS_EXPECTED.splitlines()


@pytest.mark.qemu
@pytest.mark.skipif(QEMU is None, reason="qemu-system-aarch64 is not installed")
def test_corners_on_qemu(corners_elf: Path) -> None:
    assert run_qemu(corners_elf) == CORNERS_EXPECTED


A32_CASES = {"svc": ({}, A32_SVC_EXPECTED), "irq": ({"IRQ": "1"}, A32_IRQ_EXPECTED)}


@pytest.fixture(scope="module")
def a32_elfs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    where = tmp_path_factory.mktemp("a32")
    return {name: build(where, f"a32-{name}", A32_ENTRY, **defines) for name, (defines, _) in A32_CASES.items()}


@pytest.mark.fast_paths("aarch32")
@pytest.mark.parametrize("case", A32_CASES)
def test_aarch32_el0_exception_entry(a32_elfs: dict[str, Path], case: str) -> None:
    """An SVC at AArch32 EL0 was a false "svc inside its own exception vector" (exit 3): the entry
    read the stale AArch64 PSTATE and PC, and left the CPU in AArch32 state at the vector."""
    platform, outcome = run_lab(a32_elfs[case])
    assert outcome.reason is StopReason.SYSTEM_OFF, outcome.detail
    assert bytes(platform.machine.uart_output) == A32_CASES[case][1]


@pytest.mark.qemu
@pytest.mark.skipif(QEMU is None, reason="qemu-system-aarch64 is not installed")
@pytest.mark.parametrize("case", A32_CASES)
def test_aarch32_el0_exception_entry_on_qemu(a32_elfs: dict[str, Path], case: str) -> None:
    assert run_qemu(a32_elfs[case]) == A32_CASES[case][1]


@pytest.mark.fast_paths("aarch32")
def test_aarch32_el0_fault_report(tmp_path: Path) -> None:
    """With no vectors an A32 UDF stops the run; the report disassembles the A32 instruction at R15."""
    elf = build(tmp_path, "a32-novec", A32_ENTRY, NOVEC="1")
    platform, outcome = run_lab(elf)
    assert outcome.reason is StopReason.FAULT and outcome.exit_status == 3, outcome.detail
    assert outcome.fault is not None and "no exception vectors" in outcome.fault.reason
    assert platform.machine.image is not None
    assert platform.machine.image.symbolize(outcome.fault.pc) == "a32udf"
    assert outcome.fault.instruction == "udf #0"
    assert outcome.fault.registers["PSTATE"] == 0x10


DEVICES = {"gicd": 0x0800_0000, "gicr": 0x080A_0000, "uart": 0x0900_0000, "sp804": 0x090C_0000}


@pytest.mark.parametrize("device", DEVICES)
def test_branch_into_device_memory(tmp_path: Path, device: str) -> None:
    """A fetch from a device was a UcError traceback; QEMU reads the register (0: UDF) and UNDEFs."""
    target = DEVICES[device]
    platform, outcome = run_lab(build(tmp_path, device, BRANCH_TO, TARGET=hex(target)))
    assert outcome.reason is StopReason.SYSTEM_OFF, outcome.detail
    assert bytes(platform.machine.uart_output) == (
        f"sync ESR=0x0000000002000000 ELR=0x{target:016x} FAR=0x0000000000000000\n".encode())
    platform, outcome = run_lab(build(tmp_path, device + "-novec", BRANCH_TO, TARGET=hex(target), NOVEC="1"))
    assert outcome.reason is StopReason.FAULT and outcome.exit_status == 3
    assert outcome.fault is not None and outcome.fault.pc == target


@pytest.mark.qemu
@pytest.mark.skipif(QEMU is None, reason="qemu-system-aarch64 is not installed")
@pytest.mark.parametrize("device", ["gicd", "gicr", "uart"])
def test_branch_into_device_memory_on_qemu(tmp_path: Path, device: str) -> None:
    target = DEVICES[device]
    elf = build(tmp_path, device, BRANCH_TO, TARGET=hex(target))
    platform, _ = run_lab(elf)
    assert run_qemu(elf) == bytes(platform.machine.uart_output)


@pytest.mark.parametrize("kind,writes", [(1, 2), (2, 4), (3, 2), (4, 4), (5, 1), (6, 2)],
                         ids=["str-x", "str-w-unaligned", "stp-w", "stp-x", "str-w", "str-x-offset4"])
def test_multi_access_device_stores_complete(tmp_path: Path, kind: int, writes: int) -> None:
    """A store that makes several device writes stopped the slice at each try and restarted the
    store for ever (its first write swallowed, the next one stopping the replay): it must complete."""
    platform, outcome = run_lab(build(tmp_path, f"storm{kind}", STORM, KIND=str(kind)), budget=3000)
    machine = platform.machine
    assert outcome.reason is StopReason.BUDGET and machine.retired == 3000
    loops = machine.vcpus[0].backend.x(3)
    assert loops >= 900, f"the store loop went round {loops} times in 3000 instructions"


def test_device_store_writes_each_register_once(tmp_path: Path) -> None:
    platform = make_platform(1)
    platform.load(build(tmp_path, "storm4", STORM, KIND="4"))
    seen: list[tuple[int, int, int]] = []
    write = platform.machine.sp804.write

    def spy(offset: int, size: int, value: int, now: int) -> None:
        seen.append((offset, size, value))
        write(offset, size, value, now)

    platform.machine.sp804.write = spy  # type: ignore[method-assign]
    platform.run(300)
    loops = platform.machine.vcpus[0].backend.x(3)
    assert loops > 10
    per_store = len(seen) / (loops + (platform.machine.vcpus[0].backend.pc % 16 != 0xC))
    assert seen[:4] == [(0, 4, 0x100), (4, 4, 0), (8, 4, 0), (12, 4, 0)], seen[:8]
    assert 3.5 < per_store <= 4.5


def test_wfi_with_masked_interrupt_is_a_deadlock(tmp_path: Path) -> None:
    """WFI woken for ever by an interrupt PSTATE masks ran the default budget for hours."""
    started = time.monotonic()
    platform, outcome = run_lab(build(tmp_path, "wfim", WFI_MASKED), budget=10**9)
    assert outcome.reason is StopReason.DEADLOCK and outcome.exit_status == 4, outcome.detail
    assert "masks" in outcome.detail
    assert platform.machine.retired < 10_000
    assert time.monotonic() - started < 20


def test_wfi_loop_that_counts_in_memory_is_no_deadlock(tmp_path: Path) -> None:
    """Same registers at every WFI but a counter in RAM: the guest ends by itself."""
    platform, outcome = run_lab(build(tmp_path, "wfic", WFI_MASKED_COUNTING), budget=10**9)
    assert outcome.reason is StopReason.SYSTEM_OFF, outcome.detail
    assert bytes(platform.machine.uart_output).endswith(b"done\n")
