"""The shipped guests on the lab: the same UART bytes as QEMU, and a deterministic trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdeilab.lab.platform import make_platform
from sdeilab.machine.outcome import StopReason
from sdeilab.toolchain import shipped_elf, shipped_guests
from sdeilab.trace.export import write_trace

from .conftest import run_cli
from .test_guests_qemu import QEMU, expected_output, run_qemu

GUESTS = {g.stem if g.is_file() else g.name: shipped_elf(g) for g in shipped_guests()}
ISSUE2_GUESTS = ["psci_tour", "smp_boot", "timer_irq", "smc_undef", "spinlock"]


def run_on_lab(elf: Path, cpus: int = 4) -> tuple[bytes, object]:
    platform = make_platform(cpus)
    platform.load(elf)
    outcome = platform.run(2_000_000_000)
    return bytes(platform.machine.uart_output), outcome


@pytest.mark.parametrize("name", ISSUE2_GUESTS)
def test_guest_prints_the_expected_bytes_on_the_lab(name: str) -> None:
    output, outcome = run_on_lab(GUESTS[name])
    assert outcome.reason is StopReason.SYSTEM_OFF, outcome  # type: ignore[attr-defined]
    assert output == expected_output(name)


@pytest.mark.qemu
@pytest.mark.skipif(QEMU is None, reason="qemu-system-aarch64 is not installed")
@pytest.mark.parametrize("name", ISSUE2_GUESTS)
def test_lab_and_qemu_print_identical_bytes(name: str) -> None:
    lab, _ = run_on_lab(GUESTS[name])
    assert lab == run_qemu(GUESTS[name], smp=4)


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_two_runs_give_byte_identical_traces(tmp_path: Path, suffix: str) -> None:
    for name in ("smp_boot", "timer_irq", "rtc", "pmu"):  # rtc and pmu: time is the run's, never the host's
        files = []
        for attempt in range(2):
            result = run_cli("run", GUESTS[name], "--cpus", "4", "--trace", tmp_path / f"{name}{attempt}{suffix}")
            assert result.returncode == 0, result.stderr
            files.append((tmp_path / f"{name}{attempt}{suffix}").read_bytes())
        assert files[0] == files[1]
        assert len(files[0]) > 500
        source = {"rtc": b'"source":"pl031"', "pmu": b'"source":"pmu"'}.get(name)
        assert source is None or source in files[0]  # the alarm or the overflow, at the same vtime both times


def test_trace_records_calls_power_and_interrupts(tmp_path: Path) -> None:
    platform = make_platform(4)
    platform.load(GUESTS["timer_irq"])
    platform.run()
    kinds = {type(f).__name__ for f in platform.machine.trace}
    platform = make_platform(4)
    platform.load(GUESTS["smp_boot"])
    platform.run()
    kinds |= {type(f).__name__ for f in platform.machine.trace}
    assert {"SmcccCall", "SmcccReturn", "PowerTransition", "IrqAsserted", "IrqAcknowledged",
            "IrqCompleted", "ExceptionTaken", "MachineStopped"} <= kinds
    write_trace(platform.machine.trace, tmp_path / "t.json")
    # JSON Lines: every row keeps its kind; ExceptionTaken's own ``kind`` field is ``kind_``.
    platform = make_platform(4)
    platform.load(GUESTS["timer_irq"])
    platform.run()
    write_trace(platform.machine.trace, tmp_path / "t.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [row["kind"] for row in rows] == [type(f).__name__ for f in platform.machine.trace]
    taken = [row for row in rows if row["kind"] == "ExceptionTaken"]
    assert taken and all(row["kind_"] == "irq" for row in taken), taken[:2]
