"""Trace queries and derived intervals, checked against brute force over real runs of shipped guests.

Every indexed answer (by kind, CPU, SDEI event, vtime window, and their combinations) must equal
a plain filter over all facts; the intervals must pair the facts the way the facts say; the
Perfetto export must keep one track group per CPU with properly nested slices.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdeilab.lab.platform import make_platform
from sdeilab.trace import (
    FACT_KINDS,
    IrqAcknowledged,
    IrqCompleted,
    PowerTransition,
    SdeiDispatch,
    SdeiMask,
    SdeiTransition,
    SmcccCall,
    SmcccReturn,
    TraceLog,
)
from sdeilab.trace.export import trace_events
from sdeilab.trace.intervals import firmware_calls, handler_intervals, irq_intervals, masked_intervals
from sdeilab.trace.log import BLOCK
from sdeilab.trace.records import Fact

GUESTS = Path(__file__).resolve().parent.parent / "guests"
RUNS = {"tftf_state": (GUESTS / "sdei" / "tftf_state.elf", 4), "smp_boot": (GUESTS / "smp_boot.elf", 4),
        "timer_irq": (GUESTS / "timer_irq.elf", 1)}
_CACHE: dict[str, TraceLog] = {}


def run(name: str) -> TraceLog:
    """The trace of a real run of a shipped guest (run once per test session)."""
    if name not in _CACHE:
        elf, cpus = RUNS[name]
        log = TraceLog()
        platform = make_platform(cpus, trace=log)
        platform.load(elf)
        outcome = platform.run(2_000_000_000)
        assert outcome.exit_status == 0, outcome
        _CACHE[name] = log
    return _CACHE[name]


def brute(log: TraceLog | list[Fact], kinds: tuple[type[Fact], ...] = (), cpu: int | None = None,
          event: int | None = None, start: int | None = None, end: int | None = None) -> list[int]:
    """The answer by a plain filter over every fact."""
    return [f.seq for f in log
            if (not kinds or isinstance(f, kinds)) and (cpu is None or f.cpu == cpu)
            and (event is None or getattr(f, "event", None) == event)
            and (start is None or f.vtime >= start) and (end is None or f.vtime < end)]


def windows(log: TraceLog, rng: random.Random, count: int) -> Iterator[tuple[int | None, int | None]]:
    top = log.max_vtime()
    yield None, None
    yield 0, top + 1
    yield top, None
    yield None, 0
    for _ in range(count):
        a, b = sorted(rng.randrange(0, top + 2) for _ in range(2))
        yield a, b
        yield a, None
        yield None, b


@pytest.mark.parametrize("name", sorted(RUNS))
def test_every_query_equals_a_full_scan(name: str) -> None:
    log = run(name)
    rng = random.Random(name)
    present = sorted({type(f) for f in log}, key=lambda k: k.CODE)
    kind_sets: list[tuple[type[Fact], ...]] = [(), *((k,) for k in present), (SmcccCall, SmcccReturn),
                                               (PowerTransition, SdeiMask, IrqAcknowledged)]
    facts = list(log)
    checked = 0
    for start, end in windows(log, rng, 4):
        for kinds in kind_sets:
            for cpu in [None, *log.cpus(), -1]:
                for event in [None, *log.events()][:2]:
                    got = log.seqs(*kinds, cpu=cpu, event=event, start=start, end=end)
                    assert got == brute(facts, kinds, cpu, event, start, end), (kinds, cpu, event, start, end)
                    checked += 1
    assert log.seqs(event=12345) == log.seqs(cpu=7) == []
    assert checked > 300
    # The facts a query returns are the facts themselves, not copies that differ.
    assert log.select(SdeiDispatch, cpu=log.cpus()[-1]) == [log[s] for s in brute(log, (SdeiDispatch,),
                                                                                    log.cpus()[-1])]


def test_queries_know_the_cpus_and_events_of_the_run() -> None:
    log = run("tftf_state")
    assert log.cpus() == sorted({f.cpu for f in log if f.cpu >= 0}) == [0, 1, 2, 3]
    assert log.events() == sorted({f.event for f in log if isinstance(f, SdeiTransition) and f.event >= 0})
    assert log.max_vtime() == max(f.vtime for f in log)
    assert log.column("layer", log.seqs(SmcccReturn)) == [f.layer for f in log.of_kind(SmcccReturn)]
    assert [log.field_at(s, "event") for s in log.seqs(SdeiDispatch)] == [f.event for f in log.of_kind(SdeiDispatch)]
    with pytest.raises(AttributeError):
        log.field_at(0, "no-such-field")


def test_sharing_payloads_changes_no_fact() -> None:
    """The index pass shares equal payload tuples: every fact reads back equal, bools still bools."""
    elf, cpus = RUNS["tftf_state"]
    log = TraceLog()
    platform = make_platform(cpus, trace=log)
    platform.load(elf)
    platform.run()
    before = [(type(f), f, tuple(type(v) for v in f.payload().values())) for f in log]
    log.count(SmcccCall)  # builds the indexes
    after = [(type(f), f, tuple(type(v) for v in f.payload().values())) for f in log]
    assert before == after


# A synthetic log where vtime runs backwards now and then (as when a CPU's fact is stamped with
# another CPU's earlier time): windows must still find exactly the facts inside them.
steps = st.one_of(st.integers(-50, 400), st.integers(-400, 400), st.integers(-30_000, -1000))
facts_strategy = st.lists(st.tuples(st.integers(0, 3), st.integers(-1, 3), steps), min_size=2 * BLOCK,
                          max_size=6 * BLOCK + 7)


@settings(max_examples=80, deadline=None)
@given(facts_strategy, st.integers(0, 20_000), st.integers(0, 60_000), st.integers(0, 60_000), st.integers(0, 3))
def test_windows_hold_when_vtime_is_out_of_order(rows: list[tuple[int, int, int]], base: int, a: int, b: int,
                                                 pick: int) -> None:
    kinds = (SmcccCall, SdeiDispatch, PowerTransition, SdeiMask)
    log = TraceLog()
    clock = base
    half = len(rows) // 2
    for i, (k, cpu, step) in enumerate(rows):
        clock = max(0, clock + step)
        add_fact(log, kinds[k], cpu, clock)
        if i == half:  # query half way, so the second query extends the indexes from where they stopped
            assert log.seqs(start=min(a, b) + base, end=max(a, b) + base) == brute(log, (), None, None,
                                                                                   min(a, b) + base,
                                                                                   max(a, b) + base)
    start, end = min(a, b) + base, max(a, b) + base
    assert log.seqs(start=start, end=end) == brute(log, (), None, None, start, end)
    assert log.seqs(kinds[pick], start=start) == brute(log, (kinds[pick],), None, None, start, None)
    assert log.seqs(cpu=pick - 1, end=end) == brute(log, (), pick - 1, None, None, end)
    assert log.seqs(event=pick, start=start, end=end) == brute(log, (), None, pick, start, end)
    lo, hi = log.seq_range(start, end)
    assert all(lo <= s < hi for s in brute(log, (), None, None, start, end))


def add_fact(log: TraceLog, kind: type[Fact], cpu: int, vtime: int) -> None:
    payloads: dict[type[Fact], tuple[object, ...]] = {
        SmcccCall: ("hvc", 0x84000000, "PSCI_VERSION", ()),
        SdeiDispatch: (vtime % 4, "dispatch", "enabled", "enabled-running", 0, False, 0x1000, 0x2000, 0x3C5, 1,
                       "signal"),
        PowerTransition: ("on", "standby", "wfi"),
        SdeiMask: (True, "call"),
    }
    log.add(kind, cpu, vtime, *payloads[kind])


# --- derived intervals ------------------------------------------------------------------------------


def test_irq_intervals_pair_each_acknowledge_with_its_eoi() -> None:
    for name in ("timer_irq", "tftf_state"):
        log = run(name)
        expected = []
        for cpu in log.cpus():
            acks = [f for f in log.of_kind(IrqAcknowledged, IrqCompleted, cpu=cpu)]
            open_at: dict[int, int] = {}
            for f in acks:
                if isinstance(f, IrqAcknowledged):
                    open_at[f.intid] = f.vtime
                elif isinstance(f, IrqCompleted) and f.intid in open_at:
                    expected.append((cpu, open_at.pop(f.intid), f.vtime, f.intid))
        got = [(i.cpu, i.start, i.end, i.intid) for i in irq_intervals(log)]
        assert got == sorted(expected)
        assert len(got) == log.count(IrqAcknowledged) > 0
    # In the SDEI scenario the bound interrupt is handled exactly while the handler runs.
    log = run("tftf_state")
    assert [(i.cpu, i.start, i.end) for i in irq_intervals(log)] == \
        [(h.cpu, h.start, h.end) for h in handler_intervals(log)]
    assert {i.group for i in irq_intervals(log)} == {0}
    assert {i.group for i in irq_intervals(run("timer_irq"))} == {1}


def test_firmware_calls_name_the_layer_that_answered() -> None:
    log = run("tftf_state")
    calls = firmware_calls(log)
    assert len(calls) == log.count(SmcccCall)
    assert sum(c.returned for c in calls) == log.count(SmcccReturn)
    returns = {(f.cpu, f.vtime, f.fid): f for f in log.of_kind(SmcccReturn)}
    for call in calls:
        if call.returned:
            ret = returns[(call.cpu, call.start, call.fid)]
            assert (call.layer, call.results, call.end) == (ret.layer, ret.results, ret.vtime)
        else:
            assert call.layer == "" and call.end == call.start
    # The calls that never return: each COMPLETE (the interrupted context resumes instead), the
    # secondaries' CPU_OFF, and SYSTEM_OFF.
    unanswered = sorted(c.label for c in calls if not c.returned)
    assert unanswered == sorted(["SDEI_EVENT_COMPLETE"] * log.count(SdeiDispatch) + ["CPU_OFF"] * 3
                                + ["SYSTEM_OFF"])


def test_masked_intervals_start_at_each_cpu_on() -> None:
    log = run("tftf_state")
    ons = [(f.cpu, f.vtime) for f in log.of_kind(PowerTransition) if f.new == "on" and f.old in ("off", "on-pending")]
    masked = masked_intervals(log)
    assert sorted((m.cpu, m.start) for m in masked) == sorted(ons)
    unmasks = {(f.cpu, f.vtime) for f in log.of_kind(SdeiMask) if not f.masked}
    assert all((m.cpu, m.end) in unmasks for m in masked)


# --- Perfetto export --------------------------------------------------------------------------------


def test_perfetto_export_has_a_track_group_per_cpu_with_nested_slices() -> None:
    log = run("tftf_state")
    events = json.loads(json.dumps(trace_events(log)))  # plain JSON, as the file holds it
    processes = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert processes == {cpu + 1: f"CPU {cpu}" for cpu in log.cpus()}
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert len(threads) == 4 * len(log.cpus())
    slices = [e for e in events if e["ph"] == "X"]
    assert all((e["pid"], e["tid"]) in threads for e in slices)
    # Complete events on one thread must nest (the Trace Event format's rule, which Perfetto enforces).
    by_thread: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for e in slices:
        by_thread.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"]))
    for spans in by_thread.values():
        stack: list[tuple[float, float]] = []
        for begin, finish in sorted(spans, key=lambda s: (s[0], -s[1])):
            while stack and stack[-1][1] <= begin and stack[-1] != (begin, finish):
                stack.pop()
            assert not stack or finish <= stack[-1][1] + 1e-9, (stack[-1], (begin, finish))
            stack.append((begin, finish))
    named = [e for e in slices if e["cat"] == "sdei" and e["name"].startswith("SDEI event")]
    assert len(named) == log.count(SdeiDispatch)
    assert len([e for e in slices if e["cat"] == "smccc"]) == log.count(SmcccCall)
    assert {e["args"].get("layer") for e in slices if e["cat"] == "smccc"} <= {"kvm", "vmm", "el3", None}
    masked = sorted((e["pid"] - 1, round(e["ts"] * 1000)) for e in slices if e["name"] == "SDEI masked")
    assert masked == sorted((m.cpu, m.start) for m in masked_intervals(log))
    instants = [e for e in events if e["ph"] == "i"]
    assert {e["name"] for e in instants} >= {"SdeiTransition", "SdeiBinding", "MachineStopped"}
    assert {k.__name__ for k in FACT_KINDS} >= {e["name"] for e in instants}


def test_subscribers_are_told_of_their_kinds_as_facts_are_kept() -> None:
    from sdeilab.trace import PowerTransition, SmcccCall, TraceLog

    log = TraceLog(limit=3)
    told: list[tuple[str, int]] = []
    calls = log.subscribe([SmcccCall], lambda kind: told.append((kind.__name__, len(log))))
    everything = log.subscribe(None, lambda kind: told.append(("any", log[len(log) - 1].seq)))
    log.add(PowerTransition, 0, 0, "off", "on", "boot")
    log.add(SmcccCall, 0, 5, "hvc", 0x84000000, "PSCI_VERSION", ())
    calls.cancel()
    log.add(SmcccCall, 0, 6, "hvc", 0x84000000, "PSCI_VERSION", ())
    log.add(SmcccCall, 0, 7, "hvc", 0x84000000, "PSCI_VERSION", ())  # past the limit: not kept, not told
    everything.cancel()
    with log.subscribe(None, lambda kind: told.append(("late", 0))):
        pass
    log.add(PowerTransition, 0, 9, "on", "off", "cpu-off")
    assert told == [("any", 0), ("SmcccCall", 2), ("any", 1), ("any", 2)]
    assert log.dropped == 2
