"""Self-hosted debug (issue 15 item 1): hardware watchpoints and software step.

guests/watchpoint.c and guests/single_step.c print the same bytes on the lab and on QEMU 7.2;
the watchpoint decoding follows QEMU's hw_watchpoint_update; the engine's memory hooks exist
only while a watchpoint is armed (a Linux boot never pays for them).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sdeilab.lab.platform import make_platform
from sdeilab.machine.debug import Watch, Watchpoints, decode
from sdeilab.machine.outcome import StopReason
from sdeilab.toolchain import shipped_elf, shipped_guests

from .conftest import run_cli
from .test_guests_qemu import QEMU, expected_output, run_qemu

GUESTS = {g.stem if g.is_file() else g.name: shipped_elf(g) for g in shipped_guests()}
DEBUG_GUESTS = ["watchpoint", "single_step"]
E, LOADS, STORES, ANY, PAC_ANY = 1, 1 << 3, 2 << 3, 3 << 3, 3 << 1


def bas(mask: int) -> int:
    return mask << 5


def run_on_lab(name: str) -> tuple[bytes, object, object]:
    platform = make_platform(4)
    platform.load(GUESTS[name])
    outcome = platform.run(2_000_000_000)
    return bytes(platform.machine.uart_output), outcome, platform.machine


@pytest.mark.parametrize("name", DEBUG_GUESTS)
def test_debug_guest_prints_the_expected_bytes_on_the_lab(name: str) -> None:
    output, outcome, machine = run_on_lab(name)
    assert outcome.reason is StopReason.SYSTEM_OFF, outcome  # type: ignore[attr-defined]
    assert output == expected_output(name)
    # The guest disarms its watchpoints at the end: no memory hook is left behind.
    assert all(not vcpu.backend._watch_hooks for vcpu in machine.vcpus)  # type: ignore[attr-defined]


@pytest.mark.qemu
@pytest.mark.skipif(QEMU is None, reason="qemu-system-aarch64 is not installed")
@pytest.mark.parametrize("name", DEBUG_GUESTS)
def test_debug_guest_lab_and_qemu_print_identical_bytes(name: str) -> None:
    lab, _, _ = run_on_lab(name)
    assert lab == run_qemu(GUESTS[name], smp=4)


@pytest.mark.parametrize("name", DEBUG_GUESTS)
def test_debug_guest_traces_are_deterministic(tmp_path: Path, name: str) -> None:
    files = []
    for attempt in range(2):
        trace = tmp_path / f"{name}{attempt}.jsonl"
        result = run_cli("run", GUESTS[name], "--cpus", "4", "--trace", trace)
        assert result.returncode == 0, result.stderr
        files.append(trace.read_bytes())
    assert files[0] == files[1]
    reason = b"watchpoint" if name == "watchpoint" else b"software step"
    assert reason in files[0]  # the exceptions are in the trace, with their reason


def test_no_memory_hook_without_an_armed_watchpoint() -> None:
    platform = make_platform(2)
    platform.load(GUESTS["timer_irq"])
    platform.run(2_000_000_000)
    assert all(not vcpu.backend._watch_hooks for vcpu in platform.machine.vcpus)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("wvr", "wcr", "expected"), [
    (0x1000, E | bas(0xFF) | STORES | PAC_ANY, (0x1000, 8, False, True)),
    (0x1000, E | bas(0x0F) | LOADS | PAC_ANY, (0x1000, 4, True, False)),
    (0x1000, E | bas(0x30) | ANY | PAC_ANY, (0x1004, 2, True, True)),
    (0x1000, E | bas(0x05) | ANY | PAC_ANY, (0x1000, 1, True, True)),  # not contiguous: the first run
    (0x1004, E | bas(0x03) | ANY | PAC_ANY, (0x1004, 2, True, True)),
    (0x1004, E | bas(0xF0) | ANY | PAC_ANY, None),  # 4-aligned: BAS[7:4] ignored
    (0x1010, E | bas(0xFF) | 5 << 24 | ANY | PAC_ANY, (0x1000, 32, True, True)),  # MASK: BAS ignored
    (0x1000, E | bas(0xFF) | 2 << 24 | ANY | PAC_ANY, None),  # reserved MASK
    (0x1000, bas(0xFF) | ANY | PAC_ANY, None),  # E clear
    (0x1000, E | bas(0xFF) | PAC_ANY, None),  # LSC 0
    (0x1000, E | ANY | PAC_ANY, None),  # BAS 0
])
def test_decode_follows_qemu(wvr: int, wcr: int, expected: tuple[int, int, bool, bool] | None) -> None:
    watch = decode(0, wvr, wcr)
    if expected is None:
        assert watch is None
    else:
        assert isinstance(watch, Watch)
        assert (watch.start, watch.length, watch.loads, watch.stores) == expected


def test_match_gives_the_syndrome_and_far() -> None:
    unit = Watchpoints()
    unit.write(0, False, 0x1000)
    unit.write(0, True, E | bas(0x30) | ANY | PAC_ANY)
    regs = {(2, 0, 0, 2, 2): 1 << 15 | 1 << 13}  # MDSCR_EL1: MDE, KDE
    el1, el1_masked, el0 = 0x5, 0x5 | 1 << 9, 0x0
    hit = unit.match(0x1000, 8, True, el1, regs.__getitem__)
    assert hit is not None and (hit.esr, hit.far) == (0xD600_0062, 0x1004)
    hit = unit.match(0x1004, 1, False, el0, regs.__getitem__)
    assert hit is not None and (hit.esr, hit.far) == (0xD200_0022, 0x1004)
    assert unit.match(0x1006, 2, False, el1, regs.__getitem__) is None  # past the watched bytes
    assert unit.match(0x1000, 8, True, el1_masked, regs.__getitem__) is None  # PSTATE.D
    assert unit.match(0x1000, 8, True, el1, {(2, 0, 0, 2, 2): 1 << 13}.__getitem__) is None  # MDE clear
