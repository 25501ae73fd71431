"""The views draw what the facts say: artists of real runs checked against the trace by brute force.

Runs the shipped guests (the TF-A state-machine scenario on 4 CPUs, smp_boot, timer_irq), draws
each view under Agg, and compares what was drawn (bars, markers, labels, the highlight) with
counts and pairings computed here straight from the facts. PNGs go to the test's tmp folder,
and to test-artifacts/ too when SDEILAB_ARTIFACTS is set ("1"; any other value names the folder).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.text import Annotation, Text

from sdeilab.firmware.sdei.table import LABELS, TABLE, Action
from sdeilab.trace import (
    IrqAcknowledged,
    IrqCompleted,
    PowerTransition,
    SdeiComplete,
    SdeiDispatch,
    SdeiMask,
    SdeiTransition,
    SmcccCall,
    SmcccReturn,
    TraceLog,
)
from sdeilab.trace.intervals import firmware_calls
from sdeilab.viz import TimelineData, sequence, state_machine, style, timeline, update_state_machine
from sdeilab.viz.quality import figure_problems
from sdeilab.viz.sequence import FIRMWARE, messages
from sdeilab.viz.state_machine import COMPACT_ACTIONS, COMPACT_SIZE, TIMES
from sdeilab.viz.timeline import call_marks, compact_legend_height, recent_window

from .test_trace_queries import run

ROOT = Path(__file__).resolve().parent.parent
EVENT = 2000  # the event tftf_state binds to SPI 42 on each CPU in turn


def save(figure: Figure, name: str, tmp_path: Path, dpi: int = 72) -> Path:
    path = tmp_path / f"{name}.png"
    figure.savefig(path, dpi=dpi)
    assert path.stat().st_size > 5000  # something was drawn
    value = os.environ.get("SDEILAB_ARTIFACTS", "")
    if value not in ("", "0"):
        folder = ROOT / "test-artifacts" if value == "1" else Path(value)
        folder.mkdir(parents=True, exist_ok=True)
        figure.savefig(folder / f"viz-{name}.png", dpi=100)
    return path


def by_gid(artists: list, gid: str) -> list:  # type: ignore[type-arg]
    return [a for a in artists if a.get_gid() == gid]


def spans(collection: PolyCollection) -> list[tuple[float, float, float]]:
    """(start, end, vertical centre) of each rectangle in a collection."""
    out = []
    for path in collection.get_paths():
        xs, ys = path.vertices[:4, 0], path.vertices[:4, 1]
        out.append((float(xs.min()), float(xs.max()), float(ys.mean())))
    return sorted(out)


def lane_of(y: float) -> int:
    return round(y)


# --- timeline ----------------------------------------------------------------------------------------


def expected_handlers(log: TraceLog) -> list[tuple[int, int, int]]:
    """(cpu, dispatch vtime, complete vtime), paired by a stack per CPU as the facts come."""
    stacks: dict[int, list[int]] = {}
    out = []
    for f in log:
        if isinstance(f, SdeiDispatch):
            stacks.setdefault(f.cpu, []).append(f.vtime)
        elif isinstance(f, SdeiComplete):
            out.append((f.cpu, stacks[f.cpu].pop(), f.vtime))
    return sorted(out)


def expected_masked(log: TraceLog) -> list[tuple[int, int, int]]:
    """A PE comes up masked at every power-on (boot, CPU_ON) until it unmasks (DEN0054 5.1.10)."""
    since: dict[int, int] = {}
    out = []
    for f in log:
        powered_on = isinstance(f, PowerTransition) and f.new == "on" and f.old in ("off", "on-pending")
        if powered_on or (isinstance(f, SdeiMask) and f.masked):
            since.setdefault(f.cpu, f.vtime)
        elif ((isinstance(f, SdeiMask) and not f.masked) or (isinstance(f, PowerTransition) and f.new == "off")) \
                and f.cpu in since:
            out.append((f.cpu, since.pop(f.cpu), f.vtime))
    return sorted(out)


def test_timeline_of_the_tftf_scenario_agrees_with_the_facts(tmp_path: Path) -> None:
    log = run("tftf_state")
    figure = Figure(figsize=(16, 6), layout="constrained")
    ax = figure.add_subplot()
    artists = timeline(ax, log)
    save(figure, "timeline-tftf_state", tmp_path)

    assert [t.get_text() for t in ax.get_yticklabels()] == ["CPU 0", "CPU 1", "CPU 2", "CPU 3"]
    pad = 0.015 * log.max_vtime()  # the whole run, with a margin each side for the marks at its ends
    assert ax.get_xlim() == pytest.approx((-pad, log.max_vtime() + pad))

    # One bar per handler run, from its dispatch to its COMPLETE, on its CPU's lane.
    normal, critical = by_gid(artists, "handlers-normal")[0], by_gid(artists, "handlers-critical")[0]
    assert len(normal.get_paths()) + len(critical.get_paths()) == log.count(SdeiDispatch) == 8
    assert [(lane_of(y), a, b) for a, b, y in spans(normal)] == expected_handlers(log)

    # Masked shading: one interval per power-on, ending at PE_UNMASK; so one starts at each CPU_ON.
    masked = [(lane_of(y), a, b) for a, b, y in spans(by_gid(artists, "masked")[0])]
    assert sorted(masked) == expected_masked(log)
    cpu_on = [(f.cpu, f.vtime) for f in log.of_kind(PowerTransition) if f.cause == "cpu-on" and f.old == "off"]
    assert len(cpu_on) == 3
    assert all((cpu, t) in {(c, a) for c, a, _ in masked} for cpu, t in cpu_on)

    # CPU_ON / CPU_OFF markers where the power transitions are.
    on_marks = by_gid(artists, "cpu-on")[0]
    assert sorted(zip([lane_of(y) for y in on_marks.get_ydata()], on_marks.get_xdata(), strict=True)) == cpu_on
    off = [(f.cpu, f.vtime) for f in log.of_kind(PowerTransition) if f.new == "off" and f.cause == "cpu-off"]
    off_marks = by_gid(artists, "cpu-off")[0]
    assert sorted(zip([lane_of(y) for y in off_marks.get_ydata()], off_marks.get_xdata(), strict=True)) == off

    # Power strip: every state each CPU went through, in order, starting with the state before.
    power = by_gid(artists, "power")[0]
    colours = [tuple(c) for c in power.get_facecolors()]
    for cpu in log.cpus():
        lane = sorted((a, b, c) for (a, b, y), c in zip(spans_unsorted(power), colours, strict=True)
                      if lane_of(y) == cpu)
        facts = [f for f in log.of_kind(PowerTransition, cpu=cpu)]
        states = ([facts[0].old] if facts[0].vtime > 0 else []) + [f.new for f in facts]
        assert len(lane) == len(states)

    # Interrupt handling bars: acknowledge to EOI.
    acked: dict[tuple[int, int], int] = {}
    handled = []
    for f in log:
        if isinstance(f, IrqAcknowledged):
            acked[(f.cpu, f.intid)] = f.vtime
        elif isinstance(f, IrqCompleted):
            handled.append((f.cpu, acked.pop((f.cpu, f.intid)), f.vtime))
    assert [(lane_of(y), a, b) for a, b, y in spans(by_gid(artists, "irq")[0])] == sorted(handled)

    # One tick per firmware call, coloured by the layer that answered; the unanswered ones apart.
    ticks = {a.get_gid(): a for a in artists if isinstance(a, Line2D) and str(a.get_gid()).startswith("calls:")}
    assert sum(len(t.get_xdata()) for t in ticks.values()) == log.count(SmcccCall)
    layers = Counter(f.layer for f in log.of_kind(SmcccReturn))
    assert {gid: len(t.get_xdata()) for gid, t in ticks.items()} == {
        **{f"calls:{layer}": n for layer, n in layers.items()},
        "calls:no-return": log.count(SmcccCall) - log.count(SmcccReturn)}
    labels = [t.get_text() for t in by_gid(artists, "legend")[0].get_texts()]
    assert "SDEI masked" in labels and "CPU_ON" in labels and "SDEI handler (normal)" in labels


def spans_unsorted(collection: PolyCollection) -> list[tuple[float, float, float]]:
    return [(float(p.vertices[:4, 0].min()), float(p.vertices[:4, 0].max()), float(p.vertices[:4, 1].mean()))
            for p in collection.get_paths()]


def test_timeline_zooms_to_a_window_and_draws_only_what_is_in_it(tmp_path: Path) -> None:
    log = run("tftf_state")
    cpu_on = next(f for f in log.of_kind(PowerTransition) if f.cpu == 1 and f.cause == "cpu-on")
    window = (cpu_on.vtime - 5_000, cpu_on.vtime + 250_000)  # CPU 1's CPU_ON and its first handler
    figure = Figure(figsize=(16, 6), layout="constrained")
    ax = figure.add_subplot()
    artists = timeline(ax, log, window=window)
    save(figure, "timeline-tftf_state-zoom", tmp_path)
    assert ax.get_xlim() == window
    inside = [h for h in expected_handlers(log) if h[1] <= window[1] and h[2] >= window[0]]
    assert 0 < len(inside) < log.count(SdeiDispatch)
    assert [(lane_of(y), a, b) for a, b, y in spans(by_gid(artists, "handlers-normal")[0])] == inside
    ticks = sum(len(a.get_xdata()) for a in artists if str(a.get_gid()).startswith("calls:"))
    assert ticks == len([f for f in log.of_kind(SmcccCall) if window[0] <= f.vtime <= window[1]])
    texts = [a.get_text() for a in artists if isinstance(a, Annotation)]
    assert texts.count("CPU_ON") == 1


def test_timeline_lanes_follow_the_cpus_asked_for() -> None:
    log = run("tftf_state")
    data = TimelineData.from_trace(log)
    ax = Figure().add_subplot()
    artists = timeline(ax, data, cpus=[2, 0])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["CPU 2", "CPU 0"]
    lanes = {lane_of(y) for _, _, y in spans(by_gid(artists, "handlers-normal")[0])}
    assert lanes == {0, 1}  # row 0 is CPU 2, row 1 is CPU 0
    assert len(by_gid(artists, "handlers-normal")[0].get_paths()) == 4


def test_call_marks_pair_calls_as_firmware_calls_does() -> None:
    for name in ("tftf_state", "smp_boot", "timer_irq"):
        log = run(name)
        expected = sorted((c.cpu, c.start, c.layer if c.returned else "") for c in firmware_calls(log))
        assert sorted(call_marks(log)) == expected
        middle = log.max_vtime() // 2
        assert sorted(call_marks(log, (middle, log.max_vtime() + 1))) == [m for m in expected if m[1] >= middle]


def test_timeline_of_smp_boot_and_timer_irq(tmp_path: Path) -> None:
    log = run("smp_boot")
    figure = Figure(figsize=(14, 5), layout="constrained")
    artists = timeline(figure.add_subplot(), log)
    save(figure, "timeline-smp_boot", tmp_path)
    assert len(by_gid(artists, "cpu-on")[0].get_xdata()) == 3 == len(by_gid(artists, "cpu-off")[0].get_xdata())
    assert len(by_gid(artists, "handlers-normal")[0].get_paths()) == 0

    log = run("timer_irq")
    figure = Figure(figsize=(14, 3), layout="constrained")
    artists = timeline(figure.add_subplot(), log)
    save(figure, "timeline-timer_irq", tmp_path)
    assert len(by_gid(artists, "irq")[0].get_paths()) == log.count(IrqAcknowledged) == 5
    power = by_gid(artists, "power")[0]
    assert len(power.get_paths()) == log.count(PowerTransition)  # boot at 0: no state before it
    standby = [f for f in log.of_kind(PowerTransition) if f.new == "standby"]
    blue = to_rgba(style.POWER_COLOURS["standby"])
    assert len([c for c in power.get_facecolors() if tuple(c) == blue]) == len(standby) > 0


def test_the_window_follows_the_stop() -> None:
    """The dashboard's window: the burst of firmware calls the stop is in (not the one before a
    long pause), a round width, the stop a tenth of it or more from the right edge, and still
    while the stop moves a few instructions without a call."""
    log = run("tftf_state")
    calls = sorted(f.vtime for f in log.of_kind(SmcccCall))
    for now in (calls[len(calls) // 2], calls[-1], calls[-1] + 3, log.max_vtime()):
        lo, hi = recent_window(log, now)
        span = hi - lo
        assert lo <= now <= hi - span // 10
        assert str(span).rstrip("0") in ("1", "15", "2", "3", "4", "5", "6", "8")
        recent = [t for t in calls if t <= now][-12:]
        shown = [t for t in recent if lo <= t]
        assert shown and shown[-1] == recent[-1]
        gaps = [b - a for a, b in pairwise(recent)]
        assert len(shown) == len(recent) or max(gaps) > span  # what it leaves out is across a long pause
    now = calls[-1]
    assert recent_window(log, now) == recent_window(log, now + 1)  # a step moves the cursor, not the window
    assert recent_window(log, 0) == (0, 200)  # nothing before the stop: the narrowest window, from 0


def test_the_compact_timeline_reads_at_10_points_with_its_cursor_and_legend_below(tmp_path: Path) -> None:
    """The dashboard's timeline: 6.5 inches wide at 96 dpi shown 624 CSS pixels wide, every lane
    named, a cursor at the stop, the legend below the time axis listing every kind of mark the
    whole trace has (not only the window's), no text under 10 pt, none overlapping or cut."""
    log = run("tftf_state")
    now = [f.vtime for f in log.of_kind(SmcccCall)][-1]
    window = recent_window(log, now)
    figure = Figure(figsize=(6.5, 2.8125), dpi=96)  # the dashboard's: 624 x 270 CSS pixels
    ax = figure.add_subplot()
    artists = timeline(ax, log, cpus=[0, 1, 2, 3], window=window, now=now, compact=True)
    bottom = compact_legend_height(ax) + 0.06
    ax.set_position((0.58 / 6.5, bottom / 2.8125, 1 - 0.94 / 6.5, 1 - (bottom + 0.22) / 2.8125))
    save(figure, "timeline-compact", tmp_path, dpi=192)
    assert figure_problems(figure, display_width=624) == []
    assert [t.get_text() for t in ax.get_yticklabels()] == ["CPU 0", "CPU 1", "CPU 2", "CPU 3"]
    assert ax.get_xlim() == window
    cursor = by_gid(artists, "now")[0]
    assert list(cursor.get_xdata()) == [now, now] and by_gid(artists, "now-label")[0].get_text() == "now"
    legend = ax.get_legend()
    renderer = figure.canvas.get_renderer()
    assert legend.get_window_extent(renderer).y1 < ax.xaxis.get_tightbbox(renderer).y0  # below the time axis
    entries = [t.get_text() for t in legend.get_texts()]
    assert "SDEI handler" in entries and "now (the stop)" in entries  # the handlers are outside the window
    assert not [h for h in expected_handlers(log) if h[1] <= window[1] and h[2] >= window[0]]
    # Intervals still open reach the cursor.
    power = spans(by_gid(artists, "power")[0])
    assert max(end for _, end, _ in power) == now


# --- state machine ----------------------------------------------------------------------------------


def table_edges() -> set[str]:
    return {f"{LABELS[s]}->{LABELS[c.next]}" for s, row in TABLE.items() for c in row.values()
            if c.next is not None and c.next is not s}


def test_state_machine_without_a_trace_is_the_table() -> None:
    ax = Figure(figsize=(12, 8)).add_subplot()
    artists = state_machine(ax)
    assert {a.get_gid()[5:] for a in artists if isinstance(a, FancyArrowPatch)} == table_edges()
    assert {a.get_gid()[6:] for a in artists if isinstance(a, FancyBboxPatch)} == set(LABELS.values())
    assert not [a for a in artists if str(a.get_gid()).startswith("current:")]
    for label in (a for a in artists if str(a.get_gid()).startswith("edge-label:")):
        old, new = label.get_gid()[11:].split("->")
        actions = {a.value for a, c in TABLE[_state(old)].items() if c.next is not None and LABELS[c.next] == new}
        assert set(label.get_text().split("\n")) == actions


def prefix(log: TraceLog, end: int) -> TraceLog:
    """The trace as it stood when fact ``end`` was appended: what a live view shows mid-run."""
    cut = TraceLog()
    for fact in log[: end + 1]:
        cut.add(type(fact), fact.cpu, fact.vtime, *fact.payload().values())
    return cut


def test_state_machine_highlight_follows_the_run() -> None:
    """Cut the run after each of CPU 0's transitions of the event: the highlight is where it went."""
    log = run("tftf_state")
    seen = set()
    for fact in log.of_kind(SdeiTransition, cpu=0):
        if fact.event != EVENT or fact.old == "-":
            continue
        artists = state_machine(Figure(figsize=(12, 8)).add_subplot(), prefix(log, fact.seq), event=EVENT, cpu=0)
        highlighted = [a.get_gid() for a in artists if str(a.get_gid()).startswith("current:")]
        assert highlighted == [f"current:{fact.new}"], fact
        seen.add(fact.new)
    assert len(seen) >= 5  # the scenario visits all but one state on CPU 0


def _state(label: str):  # type: ignore[no-untyped-def]
    return next(s for s, name in LABELS.items() if name == label)


COUNT = re.compile(r"([a-z-]+) \u00d7(\d+)")


@pytest.mark.parametrize("cpu", [None, 0, 1, 2, 3])
def test_state_machine_counts_and_highlight_match_the_facts(cpu: int | None, tmp_path: Path) -> None:
    log = run("tftf_state")
    figure = Figure(figsize=(13, 9), layout="constrained")
    ax = figure.add_subplot()
    artists = state_machine(ax, log, event=EVENT, cpu=cpu)
    save(figure, f"state-machine-cpu{cpu}", tmp_path)
    facts = [f for f in log.of_kind(SdeiTransition) if f.event == EVENT and (cpu is None or f.cpu == cpu)]
    assert facts

    # The highlight is the event's state after its last transition.
    final = [f.new for f in facts if f.old != "-"][-1]
    assert [a.get_gid() for a in artists if str(a.get_gid()).startswith("current:")] == [f"current:{final}"]

    # Each arrow's label counts the transitions that took it.
    moves = Counter((f.old, f.new, f.action) for f in facts if f.old != "-" and f.old != f.new)
    drawn: Counter[tuple[str, str, str]] = Counter()
    for text in artists:
        gid = str(text.get_gid())
        if isinstance(text, Text) and (gid.startswith("edge-label:") or gid.startswith("extra-label:")):
            old, new = gid.split(":", 1)[1].split("->")
            for action, n in COUNT.findall(text.get_text()):
                drawn[(old, new, action)] += int(n)
    assert +drawn == moves
    assert sum(moves.values()) > 0

    # Refused calls: per state, the actions the table refused, with how often.
    refused = Counter((f.old, f.action) for f in facts if f.old == f.new and f.old != "-"
                      and not TABLE[_state(f.old)][Action(f.action)].allowed)
    shown: Counter[tuple[str, str]] = Counter()
    for text in artists:
        if str(text.get_gid()).startswith("refused:"):
            state = text.get_gid()[8:]
            for action, n in COUNT.findall(text.get_text()):
                shown[(state, action)] += int(n)
    assert shown == refused and sum(refused.values()) > 0
    early = [a for a in artists if a.get_gid() == "refused-early"]
    assert bool(early) == any(f.old == "-" for f in facts)


def looks(ax) -> tuple[list[tuple[str, object]], dict[int, object]]:  # type: ignore[no-untyped-def]
    """The state machine on ``ax`` as drawn: each artist in drawing order (zorder, then the order
    added) with its gid and what a trace sets on it, and the same keyed by the artist."""
    shown: list[tuple[str, object]] = []
    by_artist: dict[int, object] = {}
    for artist in sorted(ax.get_children(), key=lambda a: a.get_zorder()):
        if isinstance(artist, Text):
            look: object = (artist.get_text(), to_rgba(artist.get_color()), artist.get_fontsize())
        elif isinstance(artist, FancyBboxPatch | FancyArrowPatch):
            look = (tuple(artist.get_facecolor()), tuple(artist.get_edgecolor()), artist.get_linestyle(),
                    tuple(artist.get_path().vertices.round(9).ravel()) if isinstance(artist, FancyBboxPatch) else None)
        else:
            continue
        shown.append((str(artist.get_gid()), look))
        by_artist[id(artist)] = look
    return shown, by_artist


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("cpu", [None, 2])
def test_update_state_machine_makes_what_a_fresh_drawing_makes(cpu: int | None, compact: bool) -> None:
    """The dashboard changes the state machine's artists in place at each step and repaints what
    they report changed: after each of the event's transitions they must be what a fresh
    drawing makes, in the same drawing order, and every artist changed must be reported."""
    log = run("tftf_state")
    cuts = [f.seq for f in log.of_kind(SdeiTransition) if f.event == EVENT and (cpu is None or f.cpu == cpu)]
    ax = Figure(figsize=(12, 8)).add_subplot()
    artists = state_machine(ax, prefix(log, cuts[0]), event=EVENT, cpu=cpu, compact=compact)
    assert update_state_machine(artists, log, event=EVENT, cpu=cpu, compact=not compact) is None  # drawn the other way
    in_place = afresh = 0
    for seq in cuts[1:]:
        cut = prefix(log, seq)
        before = looks(ax)[1]
        changed = update_state_machine(artists, cut, event=EVENT, cpu=cpu, compact=compact)
        if changed is None:  # the picture needs other artists: drawn afresh, as the dashboard does
            afresh += 1
            for artist in artists:
                artist.remove()
            artists = state_machine(ax, cut, event=EVENT, cpu=cpu, compact=compact)
            continue
        in_place += 1
        fresh = Figure(figsize=(12, 8)).add_subplot()
        state_machine(fresh, cut, event=EVENT, cpu=cpu, compact=compact)
        assert looks(ax)[0] == looks(fresh)[0], seq
        after = looks(ax)[1]
        moved = {key for key, look in after.items() if before.get(key) != look}
        assert moved <= {id(a) for a in changed}, seq
        assert changed, seq  # a transition of the event changes a count at least
    if compact:  # every box has its two counts from the start: only the highlight's first appearance
        assert in_place > 3 * afresh and afresh <= 1
    else:
        assert in_place > 3 * afresh and afresh > 0  # structure changes (refusals appear) are the rare case


@pytest.mark.parametrize("cpu", [None, 0, 1, 2, 3])
def test_the_compact_state_machine_counts_what_the_facts_say_and_reads_at_10_points(cpu: int | None,
                                                                                      tmp_path: Path) -> None:
    """The dashboard's drawing: the same arrows and counts, each box's accepted and refused calls
    counted, the highlight where the event is; 6.5 inches wide, shown at 624 CSS pixels (96 an
    inch), no text under 10 pt, none overlapping or cut."""
    log = run("tftf_state")
    figure = Figure(figsize=COMPACT_SIZE, dpi=96)
    ax = figure.add_axes((0, 0, 1, 1))
    artists = state_machine(ax, log, event=EVENT, cpu=cpu, compact=True)
    save(figure, f"state-machine-compact-cpu{cpu}", tmp_path, dpi=192)
    assert figure_problems(figure, display_width=624) == []
    facts = [f for f in log.of_kind(SdeiTransition) if f.event == EVENT and (cpu is None or f.cpu == cpu)]
    final = [f.new for f in facts if f.old != "-"][-1]
    assert [a.get_gid() for a in artists if str(a.get_gid()).startswith("current:")] == [f"current:{final}"]
    assert {a.get_gid()[5:] for a in artists if isinstance(a, FancyArrowPatch)} == table_edges()
    assert ax.get_title() == ""  # the dashboard names the event above the picture

    short = {name: action for action, name in COMPACT_ACTIONS.items()}
    moves = Counter((f.old, f.new, f.action) for f in facts if f.old != "-" and f.old != f.new)
    drawn: Counter[tuple[str, str, str]] = Counter()
    for text in artists:
        gid = str(text.get_gid())
        if isinstance(text, Text) and gid.startswith(("edge-label:", "extra-label:")):
            old, new = gid.split(":", 1)[1].split("->")
            for line in text.get_text().split("\n"):
                name, n = line.rsplit(f" {TIMES}", 1)
                drawn[(old, new, short.get(name, name))] += int(n)
    assert +drawn == moves and sum(moves.values()) > 0

    def count(prefix: str) -> Counter[str]:
        return Counter({str(a.get_gid())[len(prefix):]: int(a.get_text().split()[1]) for a in artists
                        if str(a.get_gid()).startswith(prefix)})

    def allowed(f: SdeiTransition) -> bool:
        return TABLE[_state(f.old)][Action(f.action)].allowed

    inside = [f for f in facts if f.old == f.new and f.old != "-"]
    assert +count("stays:") == Counter(f.old for f in inside if allowed(f))
    assert +count("refusals:") == Counter(f.old for f in inside if not allowed(f))
    assert set(count("refusals:")) == set(LABELS.values())  # every box shows both counts, 0 included
    summary = by_gid(artists, "summary")[0].get_text()
    assert f"{sum(1 for f in facts if f.old == '-')} refused before the table" in summary


# --- sequence ---------------------------------------------------------------------------------------


def test_sequence_follows_the_event_across_cpu_on() -> None:
    log = run("tftf_state")
    rows = messages(log, EVENT)
    assert [m.seq for m in rows] == sorted(m.seq for m in rows)
    figure = Figure(figsize=(16, 0.3 * len(rows) + 2), layout="constrained")
    ax = figure.add_subplot()
    artists = sequence(ax, log, EVENT)

    lifelines = sorted(str(a.get_gid())[9:] for a in artists if str(a.get_gid()).startswith("lifeline:"))
    assert lifelines == ["CPU 0", "CPU 1", "CPU 2", "CPU 3", "firmware"]
    dispatches = [a for a in artists if a.get_gid() == "msg:dispatch"]
    assert len(dispatches) == len([f for f in log.of_kind(SdeiDispatch) if f.event == EVENT]) == 8
    # Each dispatch arrow points from the firmware to the CPU that ran the handler, in fact order.
    column = {name: i for i, name in enumerate(["CPU 0", "CPU 1", "CPU 2", "CPU 3", "firmware"])}
    targets = [round(a.xy[0]) for a in dispatches]
    assert targets == [column[f"CPU {f.cpu}"] for f in log.of_kind(SdeiDispatch) if f.event == EVENT]
    assert len([a for a in artists if a.get_gid() == "msg:resume"]) == 8
    assert len([a for a in artists if a.get_gid() == "activation"]) == 8
    # CPU_ON: the call from CPU 0, then the firmware powering each secondary up.
    powered = [m for m in rows if m.kind == "power" and m.src == FIRMWARE]
    assert [m.dst for m in powered] == [1, 2, 3]
    calls = [m for m in rows if m.kind == "power" and m.dst == FIRMWARE and m.text.startswith("CPU_ON")]
    assert [m.src for m in calls] == [0, 0, 0]
    transitions = [f for f in log.of_kind(SdeiTransition) if f.event == EVENT and f.action != "dispatch"]
    assert len([m for m in rows if m.kind in ("call", "refused") and "INTERRUPT" not in m.text]) == len(transitions)
    refused = [f for f in transitions if f.result != 0 and f.old == f.new]
    assert len([m for m in rows if m.kind == "refused"]) == len(refused)


def test_sequence_window_keeps_only_its_rows(tmp_path: Path) -> None:
    log = run("tftf_state")
    window = (400_000, 700_000)  # CPU 0's second handler, CPU_ON of CPU 1, CPU 1's first handler
    rows = messages(log, EVENT, window)
    assert rows and all(window[0] <= m.vtime < window[1] for m in rows)
    figure = Figure(figsize=(16, 0.3 * len(rows) + 2), layout="constrained")
    ax = figure.add_subplot()
    artists = sequence(ax, rows, EVENT)
    save(figure, "sequence-tftf_state-window", tmp_path)
    assert len([a for a in artists if a.get_gid() == "msg:dispatch"]) == 2
    drawn = [a for a in artists if str(a.get_gid()).startswith("msg:")]
    assert len(drawn) == len(rows)
    assert ax.get_ylim()[0] >= len(rows)


# --- layering ----------------------------------------------------------------------------------------


def test_viz_needs_no_pyplot_and_draws_under_agg() -> None:
    code = ("import sys, sdeilab.viz; from matplotlib.figure import Figure; "
            "f = Figure(); sdeilab.viz.state_machine(f.add_subplot()); f.canvas.draw(); "
            "print('matplotlib.pyplot' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "False"  # pyplot never imported: no global figure state
