"""Handler and masked intervals, reconstructed per CPU from trace facts, against what the guests print.

The issue: "Trace facts let a test reconstruct, per CPU, every handler interval and every masked
interval, and they match what the guests print."  The intervals come from the pure functions of
``sdeilab.trace.intervals`` (``handler_intervals``, ``masked_intervals``) over the run's TraceLog;
the guests print, after the fact and from one CPU, what they saw:

- ``linux_client`` prints every SDEI handler run of every CPU (event, priority, interrupted PC,
  PSTATE.I, how it left: COMPLETE or COMPLETE_AND_RESUME to VBAR_EL1 + 0x280) and the sequence of
  its own PE_MASK/PE_UNMASK calls and power points ("on", "UNMASK", "MASK", "off").
- ``tftf_state`` prints one line per sub-test and CPU; sub-tests c and d each run one handler.

Also checked on every run: a handler starts only on an unmasked PE, and no masked interval starts
inside a handler (neither guest masks from a handler).  The comparisons are functions that raise
AssertionError, so the last tests can show that they fail once a fact is dropped from the trace.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pytest

from sdeilab.lab.platform import Platform, make_platform
from sdeilab.machine.outcome import StopReason
from sdeilab.machine.vcpu import Vcpu
from sdeilab.trace.intervals import Interval, handler_intervals, masked_intervals
from sdeilab.trace.log import TraceLog
from sdeilab.trace.records import Fact, PowerTransition, SdeiComplete, SdeiDispatch, SdeiMask, SmcccCall
from tests.test_sdei_guests import PROFILES, run_scenario, sdei_elf

CPUS = 4
PSTATE_I = 1 << 7
STUCK_CPU = 2  # linux_client's CPU that locks up with IRQs masked
WATCHDOG_EVENT = 1000  # INTERRUPT_BIND(30): the first dynamic private event
CRITICAL_EVENT = 5001  # the profile's hypervisor-originated critical event


@dataclass(frozen=True)
class Run:
    platform: Platform
    trace: TraceLog
    output: str

    def symbol(self, name: str) -> int:
        image = self.platform.machine.image
        assert image is not None
        return next(address for address, sym in image.symbols.items() if sym == name)


def _run(name: str, profile: str = "virt") -> Run:
    platform, trace = run_scenario(name, profile, CPUS)
    return Run(platform, trace, bytes(platform.machine.uart_output).decode())


def _run_with_critical_raise() -> Run:
    """linux_client with the host raising event 5001 on the stuck CPU while its first watchdog
    handler runs: the critical handler nests over the normal one (depth 2) on the critical stack."""
    trace = TraceLog()
    platform = make_platform(CPUS, "virt", trace=trace)
    platform.load(sdei_elf("linux_client"))
    raised: list[int] = []

    def raise_during_normal_handler(vcpu: Vcpu) -> None:
        pe = platform.sdei.pes[STUCK_CPU]
        if vcpu.index == STUCK_CPU and not raised and pe.stack and not pe.stack[-1].event.critical:
            platform.sdei.raise_event(CRITICAL_EVENT, STUCK_CPU)
            raised.append(vcpu.index)

    platform.machine.slice_hooks.append(raise_during_normal_handler)  # after the dispatcher's own hook
    outcome = platform.run(2_000_000_000)
    output = bytes(platform.machine.uart_output).decode()
    assert outcome.reason is StopReason.SYSTEM_OFF, f"{outcome.reason}: {outcome.detail}\n{output}"
    assert raised == [STUCK_CPU]
    return Run(platform, trace, output)


@pytest.fixture(scope="module", params=list(PROFILES))
def linux_client(request: pytest.FixtureRequest) -> Run:
    return _run("linux_client", request.param)


@pytest.fixture(scope="module")
def linux_client_critical() -> Run:
    return _run_with_critical_raise()


@pytest.fixture(scope="module")
def tftf_state() -> Run:
    return _run("tftf_state")


# ---------------------------------------------------------------------------- what linux_client prints

_NMI = re.compile(r"CPU (\d+): NMI (\d+): event (\d+) \((normal|critical)\), PC (0x[0-9a-f]+)(?: \(\S+\))?, "
                  r"PSTATE\.I ([01]) -> (?:COMPLETE_AND_RESUME\(VBAR_EL1 \+ (0x[0-9a-f]+)\)|COMPLETE),")
_RUNS = re.compile(r"CPU (\d+): SDEI handler runs (\d+)$")
_MASKS = re.compile(r"CPU (\d+): PE mask points:((?: \S+)*)$")
_LOCKUP = re.compile(r"CPU (\d+): watchdog: .*hard LOCKUP, interrupted PC (0x[0-9a-f]+) = stuck_loop\+")


@dataclass(frozen=True)
class PrintedRun:
    number: int  # 1, 2, ... in the order the CPU entered its handlers
    event: int
    critical: bool
    pc: int
    irqs_masked: bool
    resume_offset: int | None  # COMPLETE_AND_RESUME(VBAR_EL1 + offset); None for COMPLETE


@dataclass(frozen=True)
class Printed:
    runs: dict[int, int]
    handlers: dict[int, list[PrintedRun]]
    mask_points: dict[int, list[str]]
    lockups: dict[int, int]


def parse_linux_client(output: str) -> Printed:
    assert output.splitlines()[-1] == "linux_client: PASS", output
    runs: dict[int, int] = {}
    handlers: dict[int, list[PrintedRun]] = {cpu: [] for cpu in range(CPUS)}
    mask_points: dict[int, list[str]] = {}
    lockups: dict[int, int] = {}
    for line in output.splitlines():
        if m := _RUNS.match(line):
            runs[int(m[1])] = int(m[2])
        elif m := _NMI.match(line):
            handlers[int(m[1])].append(PrintedRun(int(m[2]), int(m[3]), m[4] == "critical", int(m[5], 16),
                                                  m[6] == "1", None if m[7] is None else int(m[7], 16)))
        elif m := _MASKS.match(line):
            mask_points[int(m[1])] = m[2].split()
        elif m := _LOCKUP.match(line):
            lockups[int(m[1])] = int(m[2], 16)
    assert sorted(runs) == sorted(mask_points) == list(range(CPUS)), output
    return Printed(runs, handlers, mask_points, lockups)


# ---------------------------------------------------------------------------- the comparisons


IntervalT = TypeVar("IntervalT", bound=Interval)


def _by_cpu(intervals: list[IntervalT], cpu: int) -> list[IntervalT]:
    return [i for i in intervals if i.cpu == cpu]


def check_handlers_match_printed(run: Run, trace: TraceLog | None = None) -> None:
    """Per CPU: as many handler intervals as the guest counted, in entry order, each with the
    printed event, priority, interrupted PC, PSTATE.I and exit (COMPLETE back to the interrupted
    PC, or COMPLETE_AND_RESUME to VBAR_EL1 + the printed offset)."""
    trace = run.trace if trace is None else trace
    printed = parse_linux_client(run.output)
    vbar = run.symbol("vectors")
    intervals = handler_intervals(trace)
    dispatch = {(f.cpu, f.vtime, f.event): f for f in trace.of_kind(SdeiDispatch)}
    complete = {(f.cpu, f.vtime, f.event): f for f in trace.of_kind(SdeiComplete)}
    for cpu in range(CPUS):
        mine = _by_cpu(intervals, cpu)
        assert len(mine) == printed.runs[cpu] == len(printed.handlers[cpu]), f"CPU {cpu}: {mine}"
        for interval, seen in zip(mine, printed.handlers[cpu], strict=True):
            where = f"CPU {cpu} handler run {seen.number}: {interval}"
            assert interval.end is not None, where
            assert (interval.event, interval.critical) == (seen.event, seen.critical), where
            assert interval.interrupted_pc == seen.pc, where
            assert interval.depth == 1 or seen.critical, where  # only a critical event nests
            entered = dispatch[(cpu, interval.start, interval.event)]
            assert bool(entered.interrupted_pstate & PSTATE_I) == seen.irqs_masked, where
            left = complete[(cpu, interval.end, interval.event)]
            if seen.resume_offset is None:
                assert interval.how == "complete" and left.resume_pc == seen.pc, where
            else:
                assert interval.how == "complete-and-resume", where
                assert left.resume_pc == vbar + seen.resume_offset, where


def _trace_mask_points(trace: TraceLog, cpu: int) -> list[str]:
    """The CPU's power-ons and power-offs and its own PE_MASK/PE_UNMASK calls, in trace order."""
    points: list[str] = []
    for fact in trace.of_kind(PowerTransition, SmcccCall, cpu=cpu):
        if isinstance(fact, PowerTransition):
            if fact.new == "on" and fact.old in ("off", "on-pending"):
                points.append("on")
            elif fact.new == "off":
                points.append("off")
        elif isinstance(fact, SmcccCall) and fact.name in ("SDEI_PE_MASK", "SDEI_PE_UNMASK"):
            points.append(fact.name.removeprefix("SDEI_PE_"))
    return points


def _expected_masked(points: list[str]) -> list[tuple[str, str | None]]:
    """Masked intervals as the guest's points imply (DEN0054 5.1.10: a PE comes up masked):
    (what opened it, what closed it; None: still masked at the end)."""
    out: list[tuple[str, str | None]] = []
    opened: str | None = None
    for point in points:
        if point in ("on", "MASK") and opened is None:
            opened = point
        elif point in ("UNMASK", "off") and opened is not None:
            out.append((opened, point))
            opened = None
    if opened is not None:
        out.append((opened, None))
    return out


def _boundary(trace: TraceLog, cpu: int, vtime: int | None, opening: bool) -> str | None:
    """What happened on ``cpu`` at ``vtime``: a power-on/off, or a PE_MASK/PE_UNMASK the guest called."""
    if vtime is None:
        return None
    calls = {f.name for f in trace.of_kind(SmcccCall, cpu=cpu) if f.vtime == vtime}
    for fact in trace.of_kind(PowerTransition, SdeiMask, cpu=cpu):
        if fact.vtime != vtime:
            continue
        if isinstance(fact, PowerTransition):
            if opening and fact.new == "on" and fact.old in ("off", "on-pending"):
                return "on"
            if not opening and fact.new == "off":
                return "off"
        elif isinstance(fact, SdeiMask) and fact.masked == opening and fact.cause == "call":
            name = "MASK" if opening else "UNMASK"
            if f"SDEI_PE_{name}" in calls:
                return name
    return "?"


def check_masked_match_printed(run: Run, trace: TraceLog | None = None) -> None:
    """Per CPU: the guest's printed mask points are the trace's, and every masked interval starts at
    a power-on or a PE_MASK and ends at a PE_UNMASK or a power-off, as those points say."""
    trace = run.trace if trace is None else trace
    printed = parse_linux_client(run.output)
    intervals = masked_intervals(trace)
    for cpu in range(CPUS):
        assert _trace_mask_points(trace, cpu) == printed.mask_points[cpu], f"CPU {cpu}"
        mine = _by_cpu(intervals, cpu)
        found = [(_boundary(trace, cpu, i.start, True), _boundary(trace, cpu, i.end, False)) for i in mine]
        assert found == _expected_masked(printed.mask_points[cpu]), f"CPU {cpu}: {mine}"


def check_handlers_only_while_unmasked(trace: TraceLog) -> None:
    """Dispatch needs an unmasked PE (reference 2.4); no masked interval starts inside a handler."""
    masked = masked_intervals(trace)
    for handler in handler_intervals(trace):
        mine = _by_cpu(masked, handler.cpu)
        assert not any(m.covers(handler.start) for m in mine), handler
        assert not any(handler.covers(m.start) and m.start != handler.start for m in mine), handler


def _without(trace: TraceLog, drop: Callable[[Fact], bool]) -> TraceLog:
    """A copy of ``trace`` without the first fact ``drop`` selects (a mutation)."""
    out = TraceLog()
    dropped = False
    for fact in trace:
        if not dropped and drop(fact):
            dropped = True
            continue
        out.add(type(fact), fact.cpu, fact.vtime, *fact.payload().values())
    assert dropped
    return out


# ---------------------------------------------------------------------------- linux_client


def test_linux_client_handler_intervals_match_what_it_prints(linux_client: Run) -> None:
    check_handlers_match_printed(linux_client)


def test_linux_client_masked_intervals_match_its_mask_points(linux_client: Run) -> None:
    check_masked_match_printed(linux_client)
    # The hotplug CPU: masked at boot until its up path, by its down path until CPU_OFF, from
    # CPU_ON until its up path again.
    points = parse_linux_client(linux_client.output).mask_points[3]
    assert _expected_masked(points) == [("on", "UNMASK"), ("MASK", "off"), ("on", "UNMASK")]


def test_linux_client_handlers_run_only_while_unmasked(linux_client: Run) -> None:
    check_handlers_only_while_unmasked(linux_client.trace)


def test_linux_client_stuck_cpu_is_caught_in_stuck_loop(linux_client: Run) -> None:
    """The stuck CPU's watchdog handlers interrupted exactly stuck_loop, with IRQs masked, and
    went back there (COMPLETE); the CPUs idling with IRQs unmasked were sent to the IRQ vector."""
    printed = parse_linux_client(linux_client.output)
    stuck_loop = linux_client.symbol("stuck_loop")
    assert printed.lockups == {STUCK_CPU: stuck_loop}
    for handler in handler_intervals(linux_client.trace):
        assert handler.event == WATCHDOG_EVENT
        if handler.cpu == STUCK_CPU:
            assert (handler.interrupted_pc, handler.how) == (stuck_loop, "complete")
        else:
            assert (handler.interrupted_pc, handler.how) == (linux_client.symbol("cpu_idle_woken"),
                                                             "complete-and-resume")


def test_linux_client_critical_event_nests_on_the_stuck_cpu(linux_client_critical: Run) -> None:
    run = linux_client_critical
    check_handlers_match_printed(run)
    check_masked_match_printed(run)
    check_handlers_only_while_unmasked(run.trace)
    mine = _by_cpu(handler_intervals(run.trace), STUCK_CPU)
    normal, critical = mine[0], mine[1]
    assert (normal.event, normal.depth, critical.event, critical.depth) == (WATCHDOG_EVENT, 1, CRITICAL_EVENT, 2)
    assert normal.end is not None and critical.end is not None
    assert normal.start < critical.start < critical.end < normal.end
    assert "critical stack: yes" in run.output


# ---------------------------------------------------------------------------- tftf_state


def test_tftf_state_intervals_match_its_sub_tests(tftf_state: Run) -> None:
    """Sub-tests c and d each run one handler per CPU, on the event bound to the SP804 SPI, that
    ends with COMPLETE; each CPU is masked from its power-on until the PE_UNMASK of sub-test c."""
    output = tftf_state.output
    assert output.splitlines()[-1] == "tftf_state: PASS"
    trace = tftf_state.trace
    handlers = handler_intervals(trace)
    masked = masked_intervals(trace)
    check_handlers_only_while_unmasked(trace)
    for cpu in range(CPUS):
        event = int(re.search(rf"^CPU {cpu}: INTERRUPT_BIND\(42\) = (\d+)$", output, re.M)[1])  # type: ignore[index]
        ran = [line for line in output.splitlines()
               if line in (f"CPU {cpu}: c. registered and running: ok", f"CPU {cpu}: d. unregister-pending: ok")]
        mine = _by_cpu(handlers, cpu)
        assert len(mine) == len(ran) == 2, mine
        assert all((h.event, h.depth, h.how) == (event, 1, "complete") and h.end is not None for h in mine)
        mine_masked = _by_cpu(masked, cpu)
        assert [(_boundary(trace, cpu, m.start, True), _boundary(trace, cpu, m.end, False))
                for m in mine_masked] == [("on", "UNMASK")]
        assert mine_masked[0].end is not None and mine_masked[0].end <= mine[0].start


# ---------------------------------------------------------------------------- the checks can fail


def test_the_comparisons_fail_when_a_fact_is_dropped(linux_client: Run) -> None:
    run = linux_client
    copy = TraceLog()  # a faithful copy passes: the failures below come from the dropped fact alone
    for fact in run.trace:
        copy.add(type(fact), fact.cpu, fact.vtime, *fact.payload().values())
    check_handlers_match_printed(run, copy)
    check_masked_match_printed(run, copy)
    mutated = _without(run.trace, lambda f: isinstance(f, SdeiDispatch) and f.cpu == 1)
    with pytest.raises(AssertionError):
        check_handlers_match_printed(run, mutated)
    unmask = _without(run.trace, lambda f: isinstance(f, SdeiMask) and f.cpu == 3 and not f.masked)
    with pytest.raises(AssertionError):
        check_masked_match_printed(run, unmask)
    mask_call = _without(run.trace, lambda f: isinstance(f, SmcccCall) and f.cpu == 3 and f.name == "SDEI_PE_MASK")
    with pytest.raises(AssertionError):
        check_masked_match_printed(run, mask_call)
