"""The boot progress widget (sdeilab.widgets.boot_progress) driven by a small guest through the
machine's slice hooks, as notebook 40 drives it around a Linux boot: the bar rises to the retired
count, the console holds the guest's UART text, refreshes are throttled, and Ctrl-C stops the
machine cleanly with the trace kept."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from sdeilab.lab.platform import Platform, make_platform
from sdeilab.machine.outcome import StopReason
from sdeilab.widgets import BootProgress

ROOT = Path(__file__).resolve().parent.parent
TFTF_STATE = ROOT / "guests" / "sdei" / "tftf_state.elf"
BUDGET = 10_000_000
LAST_LINE = "tftf_state: PASS"


def platform(quantum: int = 10_000) -> Platform:
    p = make_platform(4, "virt", quantum=quantum)
    p.load(TFTF_STATE)
    return p


class FakeClock:
    """A wall clock that advances ``step`` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.step = step
        self.now = 0.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        self.now += self.step
        return self.now


def test_the_bar_rises_to_the_retired_count_and_the_console_holds_the_uart() -> None:
    p = platform()
    machine = p.machine
    seen: list[tuple[int, int, str]] = []  # (bar value, bar max, console text) before each slice
    with BootProgress(machine, BUDGET, every=0.0) as progress:
        # After the widget's own hook: what it shows before each slice.
        machine.slice_hooks.append(lambda vcpu: seen.append((progress.bar.value, progress.bar.max,
                                                             progress.console_text)))
        outcome = machine.run(BUDGET)
    assert outcome.reason is StopReason.SYSTEM_OFF
    values = [value for value, _, _ in seen]
    assert values == sorted(values) and len(set(values)) > 10  # it rose during the run, not only at its end
    assert all(top == BUDGET for _, top, _ in seen)  # against the budget while it runs
    assert 0 < values[-1] < machine.retired
    # The end: the bar is at the retired count (and full), the label says so.
    assert progress.bar.value == progress.retired == machine.retired == outcome.instructions
    assert progress.bar.max == machine.retired and progress.bar.bar_style == "success"
    assert progress.label.value.startswith(f"done: {machine.retired:,} instructions retired in ")
    # The console streamed the UART: partial text during the run, its last lines at the end.
    uart = machine.uart_output.decode()
    assert any(text and LAST_LINE not in text for _, _, text in seen)
    assert progress.console_text == "\n".join(uart.splitlines()[-progress.lines:])
    assert progress.console_text.endswith(LAST_LINE) and "CPU 3: e. enabled: ok" in progress.console.value
    assert machine.slice_hooks.count(progress._on_slice) == 0  # unhooked at the end of the block


def test_the_console_keeps_only_its_last_lines_and_the_output_since_the_block() -> None:
    p = platform()
    machine = p.machine
    machine.run(300_000)  # some output before the block: not the block's
    before = len(machine.uart_output)
    assert before > 0
    with BootProgress(machine, BUDGET, lines=3) as progress:
        machine.run(BUDGET)
    since = machine.uart_output[before:].decode()
    assert progress.console_text.splitlines() == since.splitlines()[-3:]
    assert progress.retired == machine.retired - 300_000


def test_refreshes_are_throttled_to_every_seconds_of_wall_time() -> None:
    p = platform(quantum=1_000)  # many slices
    machine = p.machine
    slices = [0]
    clock = FakeClock(0.01)  # each slice hook reads the clock once: 25 slices make 0.25 s
    with BootProgress(machine, BUDGET, every=0.25, clock=clock) as progress:
        machine.slice_hooks.append(lambda vcpu: slices.__setitem__(0, slices[0] + 1))
        machine.run(BUDGET)
    assert slices[0] > 1_000
    # One refresh on entering, one at the end, and one per 25 clock reads in between.
    assert slices[0] // 25 - 2 <= progress.updates <= slices[0] // 25 + 3
    # A real clock and a long interval: nothing in between.
    p = platform(quantum=1_000)
    with BootProgress(p.machine, BUDGET, every=3600) as progress:
        p.machine.run(BUDGET)
    assert progress.updates == 2 and progress.bar.value == p.machine.retired


def test_ctrl_c_stops_the_machine_cleanly_and_the_trace_is_kept() -> None:
    reference = platform()
    reference.machine.run(BUDGET)
    expected = list(reference.machine.trace)

    p = platform()
    machine = p.machine
    line = bytearray()

    def ctrl_c(byte: int) -> None:  # the user presses Ctrl-C as CPU 2 starts its checks
        line.append(byte)
        if byte == 0x0A:
            if line.startswith(b"CPU 2: a."):
                os.kill(os.getpid(), signal.SIGINT)
            line.clear()

    machine.uart_sinks.append(ctrl_c)
    handler = signal.getsignal(signal.SIGINT)
    outcomes = []
    with pytest.raises(KeyboardInterrupt, match="interrupted at") as raised, BootProgress(machine, BUDGET) as progress:
        outcomes.append(machine.run(BUDGET))
        at = machine.retired
        outcomes.append(machine.run(BUDGET))  # a driver that runs on (run_watchdog) gets nowhere
        assert machine.retired == at
    assert [o.reason for o in outcomes] == [StopReason.PAUSED, StopReason.PAUSED]
    stopped = machine.retired
    assert 0 < stopped < reference.machine.retired
    assert progress.interrupted and progress.label.value.startswith(f"interrupted at {stopped:,} instructions")
    assert progress.bar.value == stopped and progress.bar.bar_style == "danger"
    assert f"{len(machine.trace):,} facts" in str(raised.value)
    assert signal.getsignal(signal.SIGINT) == handler and progress._on_slice not in machine.slice_hooks
    # The trace holds every fact up to the stop, exactly those of an uninterrupted run.
    facts = list(machine.trace)
    assert 0 < len(facts) < len(expected) and facts == expected[:len(facts)]
    assert "CPU 2: a." in progress.console_text and LAST_LINE not in progress.console_text
    # And the stop was a clean one: running on gives the uninterrupted run's history.
    machine.uart_sinks.remove(ctrl_c)
    assert machine.run(BUDGET).reason is StopReason.SYSTEM_OFF
    assert list(machine.trace) == expected and machine.retired == reference.machine.retired


def test_an_error_in_the_block_is_shown_and_passes_through() -> None:
    p = platform()
    with pytest.raises(RuntimeError, match="the driver gave up"), BootProgress(p.machine, BUDGET) as progress:
        p.machine.run(500_000)
        raise RuntimeError("the driver gave up")
    assert progress.label.value.startswith(f"stopped by RuntimeError at {p.machine.retired:,} instructions")
    assert not progress.interrupted and progress.bar.bar_style == "danger"


def test_without_a_front_end_it_prints_status_lines_and_a_broken_view_does_not_stop_the_run(
        capsys: pytest.CaptureFixture[str]) -> None:
    p = platform(quantum=1_000)
    with BootProgress(p.machine, BUDGET, every=0.0, text_every=0.5, clock=FakeClock(0.01)) as progress:
        p.machine.run(BUDGET)
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) > 3 and printed[-1] == progress.summary and printed[-1].startswith("done: ")
    assert all(" / 10,000,000 instructions retired (" in text for text in printed[:-1])
    assert progress._repr_mimebundle_()["text/plain"] == progress.summary  # nbclient's output: the last line

    class Broken:
        @property
        def value(self) -> str:
            return ""

        @value.setter
        def value(self, _: str) -> None:
            raise RuntimeError("no front end")

    p = platform()
    with BootProgress(p.machine, BUDGET, show=False) as progress:
        progress.console = Broken()  # type: ignore[assignment]
        progress.label = Broken()  # type: ignore[assignment]
        outcome = p.machine.run(BUDGET)
    assert outcome.reason is StopReason.SYSTEM_OFF and progress.summary.startswith("done: ")
