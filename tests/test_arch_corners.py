"""Architectural corner cases, each checked against what QEMU 7.2 (``-M virt -cpu cortex-a57``) does.

Each guest prints what its synchronous exception handler saw (ESR_EL1, and ELR_EL1/FAR_EL1 as
offsets from ``main`` so that the bytes do not depend on the link address); the expected bytes
were taken from QEMU and the ``qemu`` tests compare them again. Also here: multi-access stores to
a device (they must complete once), WFI with an interrupt that PSTATE masks (a deadlock the lab
reports at once) and branches into device memory.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from sdeilab.firmware.platform import make_platform
from sdeilab.machine.outcome import StopReason

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
#ifdef A32 /* left out: the lab does not model AArch32 EL0 */
    case "eret-a32-el0", 1f
    eret_to 0x1d0, a32code
1:
#endif
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
CORNERS_EXPECTED = b"""\
dczva: ESR=0x0000000096000050 ELR=0x0000000000000024 FAR=0x000000000ff7e420 SPSR=0x00000000600003c5
eret-el2h: ESR=0x000000003a000000 ELR=0x000000000000006c FAR=0x000000000ff7e420 SPSR=0x00000000001003c5
eret-el3h: ESR=0x000000003a000000 ELR=0x00000000000000b4 FAR=0x000000000ff7e420 SPSR=0x00000000001003c5
eret-reserved: ESR=0x000000003a000000 ELR=0x00000000000000fc FAR=0x000000000ff7e420 SPSR=0x00000000001003c5
eret-il: ESR=0x000000003a000000 ELR=0x0000000000000144 FAR=0x000000000ff7e420 SPSR=0x00000000001003c5
eret-a32-el1: ESR=0x000000003a000000 ELR=0x000000000000018c FAR=0x000000000ff7e420 SPSR=0x00000000001001c5
br-unaligned: ESR=0x000000008a000000 ELR=0x00000000000001ce FAR=0x00000000000001ce SPSR=0x00000000000003c5
end
"""

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
    cmd = [QEMU or "qemu-system-aarch64", "-M", "virt,gic-version=3", "-cpu", "cortex-a57", "-smp", "1",
           "-m", "128M", "-nographic", "-nic", "none", "-monitor", "none", "-serial", "stdio", "-kernel", str(elf)]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


@pytest.fixture(scope="module")
def corners_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("corners"), "corners", CORNERS)


def test_corners_match_qemu_output(corners_elf: Path) -> None:
    """DC ZVA's ELR and FAR, illegal exception returns, PC alignment faults (each line one bug)."""
    platform, outcome = run_lab(corners_elf)
    assert outcome.reason is StopReason.SYSTEM_OFF, outcome.detail
    assert bytes(platform.machine.uart_output).splitlines() == CORNERS_EXPECTED.splitlines()


@pytest.mark.qemu
@pytest.mark.skipif(QEMU is None, reason="qemu-system-aarch64 is not installed")
def test_corners_on_qemu(corners_elf: Path) -> None:
    assert run_qemu(corners_elf) == CORNERS_EXPECTED


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
