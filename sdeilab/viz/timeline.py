"""The per-CPU timeline: one lane per CPU with what it was doing, over virtual time.

A lane, from top to bottom: interrupt handling (acknowledge to EOI), firmware calls (a tick
per call, coloured by the layer that answered), SDEI handlers over the SDEI-masked shading
(critical handlers drawn over the normal ones they pre-empt: reference/sdei-psci-smccc.md 2.5), and
the power state strip, with CPU_ON and CPU_OFF marked on it. Everything drawn comes from the
pure interval functions of ``sdeilab.trace.intervals``, so a test can check the picture against
the facts. Each category is one collection, so a million-fact trace is a handful of artists.

``compact=True`` draws it for a picture about 6.5 inches wide (the dashboard's, shown at 624 CSS
pixels): 10 pt text, smaller marks, and the legend below the time axis in as many columns as the
figure's width holds, listing every kind of mark the trace has (not only those in view), so that
it keeps still while the window moves. ``now`` draws the debugger's stop as a cursor (the
interactive view, sdeilab.widgets.timeline_view, draws it the same way), and
``recent_window`` picks a window that follows it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backend_bases import RendererBase
from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure, SubFigure
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Annotation
from matplotlib.transforms import Bbox, offset_copy

from sdeilab.trace.intervals import (
    HandlerInterval,
    Interval,
    IrqInterval,
    handler_intervals,
    irq_intervals,
    masked_intervals,
    power_intervals,
    power_marks,
)
from sdeilab.trace.log import TraceLog
from sdeilab.trace.records import PowerTransition, SmcccCall, SmcccReturn
from sdeilab.viz import style
from sdeilab.viz.placing import LabelPlacer

# Vertical layout of a lane, as offsets from its centre row (the y axis points down).
IRQ_BAND = (-0.46, -0.37)
CALL_ROW = -0.32
HANDLER_BAND = (-0.25, 0.16)
NESTED_INSET = 0.07  # each level of nesting makes a handler bar this much thinner on both sides
MASKED_BAND = (-0.27, 0.19)
POWER_BAND = (0.22, 0.44)
POWER_MARK_ROW = 0.33
MAX_LABELLED_MARKS = 16  # CPU_ON / CPU_OFF get a text label when no more than this many are in view
MAX_TICKS = 20_000  # beyond this many call ticks in view, ticks closer than 1/TICK_BINS of it merge
MAX_BARS = 4000  # the same for the boxes of one category (power states, handlers, ...)
MAX_HATCHED = 500  # the masked shading is hatched up to this many boxes in view
TICK_BINS = 4000  # finer than any screen or projector: merged ticks and boxes look the same

NOW_LABEL = "now (the debugger's stop)"  # the cursor's entry in a legend

# The compact drawing (module docstring): sizes in points.
COMPACT_FONT = 10  # every text: the smallest that reads on a projector
COMPACT_CALL_MARK = 7  # a call's tick (the full drawing's 11 pt would fill a 0.4-inch lane)
COMPACT_POWER_MARK = 9  # CPU_ON / CPU_OFF
# From the bottom of the axes to the top of the legend: the tick marks and their labels, the axis
# label (whose text names the window's origin), and a gap.
COMPACT_AXIS_PT = 36.0
COMPACT_LEGEND_COLUMNS = 4  # at most; fewer when the figure is too narrow for them
COMPACT_LABELS = {  # the legend's shorter entries
    "interrupt handled (ack to EOI)": "IRQ, ack to EOI", "SDEI handler (normal)": "SDEI handler",
    "SDEI handler (critical)": "critical handler", "firmware call with no return": "call, no return",
    **{f"power: {state}": f"power {state}" for state in style.POWER_COLOURS}, NOW_LABEL: "now (the stop)",
}

# The window that follows the stop (``recent_window``).
RECENT_CALLS = 12  # it shows the last this many firmware calls before the stop
MIN_WINDOW = 200  # ns: the narrowest (200 instructions)


@dataclass(frozen=True)
class TimelineData:
    """What the timeline draws; ``from_trace`` derives it, or pass intervals computed elsewhere."""

    cpus: tuple[int, ...]
    end: int  # where intervals still open at the end of the trace stop
    power: list[Interval]
    masked: list[Interval]
    handlers: list[HandlerInterval]
    irqs: list[IrqInterval]
    calls: list[tuple[int, int, str]]  # (cpu, vtime, layer) per firmware call ("": never returned), maybe windowed
    cpu_on: list[tuple[int, int]]  # (cpu, vtime): CPU_ON started this CPU
    cpu_off: list[tuple[int, int]]  # (cpu, vtime): the CPU called CPU_OFF

    @classmethod
    def from_trace(cls, log: TraceLog, window: tuple[int, int] | None = None) -> TimelineData:
        """The timeline's data; ``window`` limits the firmware calls (the bulk of a trace) to a vtime range."""
        transitions = [f for f in log.of_kind(PowerTransition) if isinstance(f, PowerTransition)]
        cpu_on, cpu_off = power_marks(transitions)
        # Before its first transition a CPU was in that transition's ``old`` state (off, for a
        # secondary CPU until CPU_ON): a fact, so the lane need not start blank.
        first: dict[int, PowerTransition] = {}
        for fact in transitions:
            first.setdefault(fact.cpu, fact)
        lead = [Interval(cpu, 0, f.vtime, f.old) for cpu, f in first.items() if f.vtime > 0]
        power = sorted(lead + power_intervals(log), key=lambda i: (i.cpu, i.start))
        return cls(
            cpus=tuple(log.cpus()),
            end=log.max_vtime(),
            power=power,
            masked=masked_intervals(log),
            handlers=handler_intervals(log),
            irqs=irq_intervals(log),
            calls=call_marks(log, window),
            cpu_on=cpu_on,
            cpu_off=cpu_off,
        )


def call_marks(log: TraceLog, window: tuple[int, int] | None = None) -> list[tuple[int, int, str]]:
    """(cpu, vtime, layer) for each firmware call, built from the log's columns, not from facts.

    The same pairing as ``sdeilab.trace.intervals.firmware_calls`` (a call is answered by the
    next call-or-return fact of its CPU if that is a return), at a fraction of the cost: a run of
    a million facts is mostly calls, and the timeline needs three numbers of each.
    """
    start, end = window if window is not None else (None, None)
    per_cpu: dict[int, tuple[list[int], list[int]]] = {}  # cpu -> (its calls' seqs, its returns' seqs)
    for which, kind in enumerate((SmcccCall, SmcccReturn)):
        seqs = log.seqs(kind, start=start, end=end)
        for seq, cpu in zip(seqs, log.column("cpu", seqs), strict=True):
            per_cpu.setdefault(cpu, ([], []))[which].append(seq)
    marks: list[tuple[int, int, str]] = []
    for cpu, (calls, returns) in sorted(per_cpu.items()):
        stamps = log.column("vtime", calls)
        layers = log.column("layer", returns)
        j, count = 0, len(returns)
        for i, call in enumerate(calls):
            while j < count and returns[j] < call:
                j += 1  # a return whose call lies before the window
            following = calls[i + 1] if i + 1 < len(calls) else len(log)
            if j < count and returns[j] < following:
                marks.append((cpu, stamps[i], str(layers[j])))
                j += 1
            else:
                marks.append((cpu, stamps[i], ""))
    return marks


Box = tuple[int, int, int, str, float]  # cpu, start, end, key (colour), inset


def _coalesce(boxes: list[Box], width: float) -> list[Box]:
    """Boxes merged per lane and key where less than ``width`` apart (merged ones lose their inset)."""
    merged: list[Box] = []
    growing: dict[tuple[int, str], int] = {}  # (cpu, key) -> index in merged of the box still growing
    for cpu, start, end, key, _ in sorted(boxes):
        at = growing.get((cpu, key))
        if at is not None and start - merged[at][2] < width:
            if end > merged[at][2]:
                merged[at] = (cpu, merged[at][1], end, key, 0.0)
        else:
            growing[(cpu, key)] = len(merged)
            merged.append((cpu, start, end, key, 0.0))
    return merged


def timeline(ax: Axes, trace: TraceLog | TimelineData, cpus: Sequence[int] | None = None,
             window: tuple[int, int] | None = None, *, now: int | None = None,
             compact: bool = False) -> list[Artist]:
    """Draw the per-CPU timeline of ``trace`` on ``ax``; returns the artists drawn.

    ``cpus`` picks and orders the lanes (default: every CPU in the trace); ``window`` is a
    (start, end) vtime range to zoom to, which becomes the x limits. Artists carry gids naming
    what they show: "power", "masked", "handlers-normal", "handlers-critical", "irq",
    "calls:LAYER" ("calls:no-return" for calls that never return), "cpu-on", "cpu-off", "legend",
    and "now" and "now-label" for the cursor at ``now`` (a vtime: the debugger's stop; intervals
    still open reach it). ``compact``: the drawing for a small figure (module docstring), its
    legend ``COMPACT_AXIS_PT`` below the axes; ``compact_legend_height`` says how much room it takes.
    """
    data = trace if isinstance(trace, TimelineData) else TimelineData.from_trace(trace, window)
    lanes = list(cpus) if cpus is not None else list(data.cpus)
    row = {cpu: r for r, cpu in enumerate(lanes)}
    end = max(data.end, now) if now is not None else data.end  # where intervals still open stop
    lo, hi = window if window is not None else (0, max(end, 1))
    small, call_mark, power_mark = (COMPACT_FONT, COMPACT_CALL_MARK, COMPACT_POWER_MARK) if compact else \
        (style.SMALL, 11, 15)
    # The compact legend lists what the whole trace has, so that it keeps still as the window moves.
    has = _kinds(trace, data) if compact else None  # (power states, gids of other marks, call layers)

    width = (hi - lo) / TICK_BINS  # below this, two boxes or ticks are one on any screen

    def bars(intervals: Sequence[Interval], band: tuple[float, float], key: Callable[[Interval], str],
             inset: Callable[[Interval], float] = lambda iv: 0.0) -> tuple[np.ndarray, list[str]]:
        """Rectangles (and their keys) for the intervals in view; past MAX_BARS, merged at screen resolution."""
        boxes: list[Box] = [
            (iv.cpu, iv.start, iv.end if iv.end is not None else max(end, iv.start), key(iv), inset(iv))
            for iv in intervals if iv.cpu in row and iv.start <= hi and (iv.end is None or iv.end >= lo)]
        if len(boxes) > MAX_BARS:
            boxes = _coalesce(boxes, width)
        # One (n, 4, 2) array: PolyCollection takes it without checking each polygon.
        verts = np.empty((len(boxes), 4, 2))
        if boxes:
            cpu_, start_, end_, _, pad_ = (np.array(column) for column in zip(*boxes, strict=True))
            rows = np.array([row[c] for c in cpu_.tolist()], dtype=float)
            top, bottom = rows + band[0] + pad_.astype(float), rows + band[1] - pad_.astype(float)
            verts[:, :, 0] = np.stack([start_, end_, end_, start_], axis=1)
            verts[:, :, 1] = np.stack([top, top, bottom, bottom], axis=1)
        return verts, [b[3] for b in boxes]

    artists: list[Artist] = []
    legend: list[Artist] = []

    verts, states = bars(data.power, POWER_BAND, lambda iv: iv.label)
    # matplotlib's stub wants a Sequence; PolyCollection takes the (n, 4, 2) array whole (bars)
    artists.append(ax.add_collection(PolyCollection(
        verts, facecolors=[style.POWER_COLOURS.get(state, style.GREY) for state in states], edgecolors=style.BLACK,  # type: ignore[arg-type]
        linewidths=0.3, zorder=1, gid="power"), autolim=False))
    # The legend names what is drawn: a state held for no time (on-pending, when CPU_ON's target
    # starts at once) has a box of no width.
    shown_states = {state for box, state in zip(verts, states, strict=True) if box[1, 0] > box[0, 0]}
    for state, colour in style.POWER_COLOURS.items():
        if state in (has[0] if has else shown_states):
            legend.append(Patch(facecolor=colour, edgecolor=style.BLACK, linewidth=0.3, label=f"power: {state}"))

    verts, _ = bars(data.masked, MASKED_BAND, lambda iv: "masked")
    hatch = "//" if len(verts) <= MAX_HATCHED else None  # hatching costs; thousands of boxes read as a tint
    # matplotlib's stub wants a Sequence; PolyCollection takes the (n, 4, 2) array whole (bars)
    artists.append(ax.add_collection(PolyCollection(
        verts, facecolors=(0.84, 0.37, 0.0, 0.10 if hatch else 0.25), edgecolors=style.MASKED, linewidths=0,  # type: ignore[arg-type]
        hatch=hatch, zorder=2, gid="masked"), autolim=False))
    if "masked" in has[1] if has else len(verts):
        legend.append(Patch(facecolor=(0.84, 0.37, 0.0, 0.10), edgecolor=style.MASKED, hatch="//",
                            linewidth=0, label="SDEI masked"))

    for critical, colour, edge, hatch, gid, label in (
            (False, style.NORMAL_HANDLER, style.NORMAL_EDGE, "", "handlers-normal", "SDEI handler (normal)"),
            (True, style.CRITICAL_HANDLER, style.CRITICAL_EDGE, "xx", "handlers-critical", "SDEI handler (critical)")):
        handlers = [iv for iv in data.handlers if iv.critical is critical]
        verts, _ = bars(handlers, HANDLER_BAND, lambda iv: "handler",
                        lambda iv: NESTED_INSET * (iv.depth - 1) if isinstance(iv, HandlerInterval) else 0.0)
        # A bar keeps at least a pixel's width (its edge) however short the handler ran, and an
        # edge darker than its fill: two runs back to back (a COMPLETE and the next dispatch at one
        # vtime) show where one ends (an edge of the fill's colour merged them into one bar), and a
        # run too short for a pixel still reads as its colour.
        # The hatch is drawn in white over the fill: in the edge colour (matplotlib's default for
        # a hatch) it would vanish into a bar of that same colour.
        # matplotlib's stub wants a Sequence; PolyCollection takes the (n, 4, 2) array whole (bars)
        artists.append(ax.add_collection(PolyCollection(
            verts, facecolors=colour, edgecolors=edge, linewidths=1.0, hatch=hatch or None,  # type: ignore[arg-type]
            hatchcolor=style.WHITE, zorder=4 if critical else 3, gid=gid), autolim=False))
        if gid in has[1] if has else len(verts):
            legend.append(Patch(facecolor=colour, edgecolor=edge, hatch=hatch or None, hatchcolor=style.WHITE,
                                label=label))

    verts, _ = bars(data.irqs, IRQ_BAND, lambda iv: "irq")
    # matplotlib's stub wants a Sequence; PolyCollection takes the (n, 4, 2) array whole (bars)
    artists.append(ax.add_collection(PolyCollection(
        verts, facecolors=style.IRQ, edgecolors=style.BLACK, linewidths=0.8, zorder=3, gid="irq"), autolim=False))  # type: ignore[arg-type]
    if "irq" in has[1] if has else len(verts):
        legend.append(Patch(facecolor=style.IRQ, edgecolor=style.BLACK, linewidth=0.8,
                            label="interrupt handled (ack to EOI)"))

    by_layer: dict[str, list[tuple[int, int, str]]] = {}
    for mark in data.calls:
        if mark[0] in row and lo <= mark[1] <= hi:
            by_layer.setdefault(mark[2], []).append(mark)
    if sum(len(marks) for marks in by_layer.values()) > MAX_TICKS:
        # A million calls make a solid band anyway: keep one tick per lane, layer and 1/TICK_BINS.
        bin_width = max(width, 1.0)
        by_layer = {layer: list({(c, int((t - lo) // bin_width)): (c, t, layer) for c, t, _ in marks}.values())
                    for layer, marks in by_layer.items()}
    mark_width = 1.2 if compact else 1.6
    for layer in sorted(set(by_layer) | (has[2] if has else set())):
        calls = by_layer.get(layer, [])
        marker, colour = ("|", style.layer_colour(layer)) if layer else ("x", style.BLACK)
        name = f"firmware call, answered by {layer}" if layer else "firmware call with no return"
        if compact and layer:
            name = f"answered by {layer}"
        line = Line2D([t for _, t, _ in calls], [row[c] + CALL_ROW for c, _, _ in calls], linestyle="none",
                      marker=marker, markersize=call_mark, markeredgewidth=mark_width, color=colour, zorder=5,
                      gid=f"calls:{layer or 'no-return'}", label=name)
        if calls:
            artists.append(ax.add_line(line))
        legend.append(Line2D([], [], linestyle="none", marker=marker, markersize=call_mark,
                             markeredgewidth=mark_width, color=colour, label=name))

    labels: list[Annotation] = []
    for marks, marker, colour, gid, name in ((data.cpu_on, "^", style.GREEN, "cpu-on", "CPU_ON"),
                                             (data.cpu_off, "v", style.BLACK, "cpu-off", "CPU_OFF")):
        seen = [(cpu, t) for cpu, t in marks if cpu in row and lo <= t <= hi]
        line = Line2D([t for _, t in seen], [row[cpu] + POWER_MARK_ROW for cpu, _ in seen], linestyle="none",
                      marker=marker, markersize=power_mark, markerfacecolor=colour, markeredgecolor=style.BLACK,
                      zorder=6, gid=gid, label=name)
        artists.append(ax.add_line(line))
        if gid in has[1] if has else seen:
            legend.append(Line2D([], [], linestyle="none", marker=marker, markersize=power_mark,
                                 markerfacecolor=colour, markeredgecolor=style.BLACK, label=name))
        if len(seen) <= MAX_LABELLED_MARKS:
            for cpu, t in seen:
                note = ax.annotate(name, (t, row[cpu] + POWER_MARK_ROW), xytext=(9, 0),
                                   textcoords="offset points", va="center", fontsize=small,
                                   fontweight="bold", zorder=7, annotation_clip=True)
                note.set_in_layout(False)  # placed inside the axes at draw time: no room to reserve
                labels.append(note)
                artists.append(note)
    if labels:
        artists.append(ax.add_artist(_Declutter(labels)))

    if now is not None:
        artists += now_cursor(ax, now, fontsize=small, linewidth=2.0 if compact else 2.5)
        if compact:
            legend.append(Line2D([], [], color=style.CURRENT, linewidth=2.0, label=NOW_LABEL))

    # The whole run: a margin each side, so that the marks at its ends (the boot CPU_ON, the last
    # call's no-return mark) are drawn whole rather than cut in half by the axes' edge. A window is kept exact.
    pad = 0.015 * (hi - lo) if window is None else 0
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(len(lanes) - 0.5, -0.5)  # CPU 0 on top
    ax.set_yticks(range(len(lanes)), labels=[f"CPU {cpu}" for cpu in lanes])
    style.vtime_axis(ax, fontsize=COMPACT_FONT if compact else style.FONT)
    ax.grid(axis="x", color=style.GREY, linewidth=0.6, alpha=0.6)
    ax.set_axisbelow(True)
    if legend and compact:
        for handle in legend:
            handle.set_label(COMPACT_LABELS.get(str(handle.get_label()), handle.get_label()))
        figure = _root(ax)
        below = offset_copy(ax.transAxes, fig=figure, y=-COMPACT_AXIS_PT, units="points")

        def make(columns: int) -> Legend:
            return ax.legend(handles=legend, loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=below,
                             ncols=columns, fontsize=COMPACT_FONT, frameon=False, borderaxespad=0.0,
                             handlelength=1.5, handletextpad=0.5, columnspacing=1.0, labelspacing=0.3)

        # Measuring a legend lays out all its text (a tenth of a drawing): its columns and height
        # are kept per entries and figure width, as a live picture draws the same legend again.
        shape = _legend_shape(figure, [str(handle.get_label()) for handle in legend])
        layout = _LEGEND_LAYOUTS.get(shape)
        if layout is None:
            key, columns = fit_legend(make, figure.bbox.width, _renderer(figure), COMPACT_LEGEND_COLUMNS)
            if len(_LEGEND_LAYOUTS) >= 64:
                _LEGEND_LAYOUTS.clear()
            _LEGEND_LAYOUTS[shape] = (columns, key.get_window_extent(_renderer(figure)).height / figure.dpi)
        else:
            key = make(layout[0])
        key.set_gid("legend")
        artists.append(key)
    elif legend:
        key = ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=style.SMALL,
                        frameon=False, borderaxespad=0.0)
        key.set_gid("legend")
        artists.append(key)
    return artists


def _kinds(trace: TraceLog | TimelineData, data: TimelineData) -> tuple[set[str], set[str], set[str]]:
    """What kinds of mark the whole trace has, for a legend that lists them all: its power states;
    the gids of the other marks it has ("masked", "handlers-normal", "handlers-critical", "irq",
    "cpu-on", "cpu-off"); the layers that answered calls ("": a call that never returned; only
    the calls of ``data``, windowed, when there is no log to count them in)."""
    marks = {gid for gid, present in (
        ("masked", data.masked), ("handlers-normal", any(not h.critical for h in data.handlers)),
        ("handlers-critical", any(h.critical for h in data.handlers)), ("irq", data.irqs),
        ("cpu-on", data.cpu_on), ("cpu-off", data.cpu_off)) if present}
    if isinstance(trace, TraceLog):
        layers = {str(layer) for layer in trace.column("layer", trace.seqs(SmcccReturn))}
        if trace.count(SmcccCall) > trace.count(SmcccReturn):  # each return answers one call
            layers.add("")
    else:
        layers = {layer for _, _, layer in data.calls}
    return {iv.label for iv in data.power}, marks, layers


def now_cursor(ax: Axes, now: float, fontsize: float = style.SMALL, linewidth: float = 2.5) -> list[Artist]:
    """The debugger's stop at vtime ``now``: a line across the lanes and "now" above the axes (drawn
    only while ``now`` is in view). Gids "now" and "now-label"."""
    line = ax.axvline(now, color=style.CURRENT, linewidth=linewidth, zorder=9, gid="now")
    label = ax.annotate("now", (now, 1), xycoords=("data", "axes fraction"), xytext=(0, 2),
                        textcoords="offset points", ha="center", va="bottom", fontsize=fontsize,
                        color=style.BLACK, fontweight="bold", annotation_clip=True, gid="now-label")
    return [line, label]


def fit_legend(make: Callable[[int], Legend], width: float, renderer: RendererBase, columns: int,
               margin: float = 8.0) -> tuple[Legend, int]:
    """The legend ``make(columns)`` makes with the most columns (``columns`` at most) whose width
    stays ``margin`` pixels inside ``width`` (one column if none does), and that number of
    columns; the legends tried before it are removed. A legend below a figure's axes in as many
    columns as fit, rather than one column beside them that takes a third of the width."""
    for count in range(columns, 0, -1):
        legend = make(count)
        if count == 1 or legend.get_window_extent(renderer).width <= width - margin:
            return legend, count
        legend.remove()
    raise ValueError("columns must be at least 1")


def compact_legend_height(ax: Axes) -> float:
    """Inches from the bottom of the axes to the bottom of a compact timeline's legend (the room
    to leave below the axes): ``COMPACT_AXIS_PT`` and the legend's own height."""
    legend = ax.get_legend()
    if legend is None:
        return COMPACT_AXIS_PT / 72
    figure = _root(ax)
    layout = _LEGEND_LAYOUTS.get(_legend_shape(figure, [t.get_text() for t in legend.get_texts()]))
    height = layout[1] if layout is not None else legend.get_window_extent(_renderer(figure)).height / figure.dpi
    return COMPACT_AXIS_PT / 72 + height


# A compact legend's (columns, height in inches), by ``_legend_shape``.
_LEGEND_LAYOUTS: dict[tuple[object, ...], tuple[int, float]] = {}


def _legend_shape(figure: Figure, labels: list[str]) -> tuple[object, ...]:
    """What a compact legend's columns and height follow from: its entries, the figure's width and dpi."""
    return tuple(labels), round(figure.bbox.width, 3), figure.dpi


def _root(ax: Axes) -> Figure:
    figure = ax.figure
    while isinstance(figure, SubFigure):
        figure = figure.figure
    assert isinstance(figure, Figure)
    return figure


def _renderer(figure: Figure) -> RendererBase:
    """The figure's renderer to measure text with; a bare Figure's canvas has none: Agg's, made for it."""
    get = getattr(figure.canvas, "get_renderer", None)
    return get() if get is not None else RendererAgg(int(figure.bbox.width), int(figure.bbox.height), figure.dpi)


def recent_window(log: TraceLog, now: int, calls: int = RECENT_CALLS, min_span: int = MIN_WINDOW) -> tuple[int, int]:
    """A window on the recent activity before the debugger's stop at ``now``: back over the last
    ``calls`` firmware calls (vtime up to ``now``), as far as the burst of calls ``now`` is in
    reaches, ending after ``now``.

    Its width is a round number of nanoseconds (``_round_up``, at least ``min_span``) and its
    end moves in tenths of it, with ``now`` at least a tenth of the width from the right edge:
    a step that makes no call moves the cursor, not the window. Facts are looked up through
    vtime-window queries, back from ``now`` until enough calls are found.
    """
    back, stamps = max(min_span, 1_000), []
    while True:
        start = max(now - back, 0)
        seqs = log.seqs(SmcccCall, start=start, end=now + 1)
        if len(seqs) >= calls or start == 0:
            stamps = log.column("vtime", seqs[-calls:])
            break
        back *= 16
    # Back from now, call by call, up to a pause longer than what the window holds so far: the
    # burst of calls the stop is in, not also the one before it, a long pause earlier.
    first = now
    for stamp in sorted((int(t) for t in stamps), reverse=True):
        if now - stamp > 4 * (now - first) + min_span:
            break
        first = stamp
    span = _round_up(max((now - first) * 1.4, min_span))
    step = span // 10
    hi = (now // step + 2) * step
    lo = hi - span
    return (0, span) if lo < 0 else (lo, hi)


def _round_up(ns: float) -> int:
    """The smallest of 1, 1.5, 2, 3, 4, 5, 6, 8 times a power of ten that is at least ``ns`` (and
    at least 10): round, and within a third of ``ns`` (1, 2, 5 would leave up to half the width empty)."""
    power = 10 ** max(1, math.floor(math.log10(max(ns, 1.0))))
    return next(int(m * power) for m in (1, 1.5, 2, 3, 4, 5, 6, 8, 10) if m * power >= ns)


class _Declutter(LabelPlacer):
    """Places the CPU_ON / CPU_OFF labels at draw time, when their sizes in pixels are known.

    A label that would run past the axes' right edge (into the legend) goes to the left of its
    mark; a label that would print over one already placed (CPU_ON and CPU_OFF of a short life,
    "CPU_ONF") is not drawn, and the placed one names both marks ("CPU_ON, CPU_OFF"). Drawn just
    before the labels (zorder), so a zoom in an interactive figure places them again.
    """

    def __init__(self, labels: list[Annotation]) -> None:
        super().__init__(labels)
        self.marks = labels
        self.names = [label.get_text() for label in labels]

    def place(self, ax: Axes, frame: Bbox, renderer: RendererBase) -> None:
        placed: list[tuple[Annotation, list[str]]] = []
        for label, name in sorted(zip(self.marks, self.names, strict=True), key=lambda ln: ln[0].xy[0]):
            label.set_text(name)
            label.set_visible(True)
            self._place(label, frame, renderer, right=True)
            box = label.get_window_extent(renderer)
            clash = next((p for p in placed if _overlap(box, p[0].get_window_extent(renderer))), None)
            if clash is not None:
                label.set_visible(False)
                if name not in clash[1]:
                    clash[1].append(name)
                    clash[0].set_text(", ".join(clash[1]))
                    self._place(clash[0], frame, renderer, right=clash[0].get_horizontalalignment() == "left")
                continue
            placed.append((label, [name]))

    @staticmethod
    def _place(label: Annotation, frame: Bbox, renderer: RendererBase, right: bool) -> None:
        label.set_position((9, 0) if right else (-9, 0))
        label.set_horizontalalignment("left" if right else "right")
        if right and label.get_window_extent(renderer).x1 > frame.x1:
            _Declutter._place(label, frame, renderer, right=False)


def _overlap(a: Bbox, b: Bbox) -> bool:
    return min(a.x1, b.x1) > max(a.x0, b.x0) and min(a.y1, b.y1) > max(a.y0, b.y0)


def figure_legend(fig: Figure | SubFigure, columns: int = 4) -> Legend | None:
    """One legend for a figure of timelines: each axes' legend goes, their entries are merged
    (each label once, in order of first appearance) into one legend below the figure's axes, in
    as many columns as fit its width (``columns`` at most).

    Below rather than beside: a notebook's figure is about 8 inches wide (the width JupyterLab
    shows unshrunk at 1280 px), and a legend at its right took a third of it from the time axis.
    Call it after the last ``timeline`` of the figure. A figure with constrained layout keeps
    room for it below the axes; otherwise it goes in the lower centre, over the figure.
    """
    handles: dict[str, Artist] = {}
    for ax in fig.get_axes():
        legend = ax.get_legend()
        if legend is None:
            continue
        for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=True):
            if handle is not None:
                handles.setdefault(text.get_text(), handle)
        legend.remove()
    if not handles:
        return None
    constrained = fig.get_layout_engine() is not None and type(fig.get_layout_engine()).__name__ == \
        "ConstrainedLayoutEngine"

    def make(count: int) -> Legend:
        return fig.legend(list(handles.values()), list(handles), loc="outside lower center" if constrained
                          else "lower center", fontsize=style.SMALL, frameon=False, ncols=count,
                          columnspacing=1.2, handletextpad=0.5)

    root = fig if isinstance(fig, Figure) else _root(fig.get_axes()[0])
    legend, _ = fit_legend(make, fig.bbox.width, _renderer(root), min(columns, len(handles)))
    legend.set_gid("legend")
    return legend
