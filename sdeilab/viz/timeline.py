"""The per-CPU timeline: one lane per CPU with what it was doing, over virtual time.

A lane, from top to bottom: interrupt handling (acknowledge to EOI), firmware calls (a tick
per call, coloured by the layer that answered), SDEI handlers over the SDEI-masked shading
(critical handlers drawn over the normal ones they pre-empt: reference/sdei-psci-smccc.md 2.5), and
the power state strip, with CPU_ON and CPU_OFF marked on it. Everything drawn comes from the
pure interval functions of ``sdeilab.trace.intervals``, so a test can check the picture against
the facts. Each category is one collection, so a million-fact trace is a handful of artists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backend_bases import RendererBase
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure, SubFigure
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Annotation
from matplotlib.transforms import Bbox

from sdeilab.trace.intervals import (
    HandlerInterval,
    Interval,
    IrqInterval,
    handler_intervals,
    irq_intervals,
    masked_intervals,
    power_intervals,
)
from sdeilab.trace.log import TraceLog
from sdeilab.trace.records import PowerTransition, SmcccCall, SmcccReturn
from sdeilab.viz import style

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
            cpu_on=[(f.cpu, f.vtime) for f in transitions
                    if f.cause == "cpu-on" and f.old == "off"],
            cpu_off=[(f.cpu, f.vtime) for f in transitions if f.cause == "cpu-off" and f.new == "off"],
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
            per_cpu.setdefault(cpu, ([], []))[which].append(seq)  # type: ignore[call-overload]
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
                marks.append((cpu, stamps[i], str(layers[j])))  # type: ignore[arg-type]
                j += 1
            else:
                marks.append((cpu, stamps[i], ""))  # type: ignore[arg-type]
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
             window: tuple[int, int] | None = None) -> list[Artist]:
    """Draw the per-CPU timeline of ``trace`` on ``ax``; returns the artists drawn.

    ``cpus`` picks and orders the lanes (default: every CPU in the trace); ``window`` is a
    (start, end) vtime range to zoom to, which becomes the x limits. Artists carry gids naming
    what they show: "power", "masked", "handlers-normal", "handlers-critical", "irq",
    "calls:LAYER" ("calls:no-return" for calls that never return), "cpu-on", "cpu-off", "legend".
    """
    data = trace if isinstance(trace, TimelineData) else TimelineData.from_trace(trace, window)
    lanes = list(cpus) if cpus is not None else list(data.cpus)
    row = {cpu: r for r, cpu in enumerate(lanes)}
    lo, hi = window if window is not None else (0, max(data.end, 1))

    width = (hi - lo) / TICK_BINS  # below this, two boxes or ticks are one on any screen

    def bars(intervals: Sequence[Interval], band: tuple[float, float], key: Callable[[Interval], str],
             inset: Callable[[Interval], float] = lambda iv: 0.0) -> tuple[np.ndarray, list[str]]:
        """Rectangles (and their keys) for the intervals in view; past MAX_BARS, merged at screen resolution."""
        boxes: list[Box] = [
            (iv.cpu, iv.start, iv.end if iv.end is not None else max(data.end, iv.start), key(iv), inset(iv))
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
    artists.append(ax.add_collection(PolyCollection(
        verts, facecolors=[style.POWER_COLOURS.get(state, style.GREY) for state in states], edgecolors=style.BLACK,
        linewidths=0.3, zorder=1, gid="power"), autolim=False))
    for state, colour in style.POWER_COLOURS.items():
        if state in states:
            legend.append(Patch(facecolor=colour, edgecolor=style.BLACK, linewidth=0.3, label=f"power: {state}"))

    verts, _ = bars(data.masked, MASKED_BAND, lambda iv: "masked")
    hatch = "//" if len(verts) <= MAX_HATCHED else None  # hatching costs; thousands of boxes read as a tint
    artists.append(ax.add_collection(PolyCollection(
        verts, facecolors=(0.84, 0.37, 0.0, 0.10 if hatch else 0.25), edgecolors=style.MASKED, linewidths=0,
        hatch=hatch, zorder=2, gid="masked"), autolim=False))
    if len(verts):
        legend.append(Patch(facecolor=(0.84, 0.37, 0.0, 0.10), edgecolor=style.MASKED, hatch="//",
                            linewidth=0, label="SDEI masked"))

    for critical, colour, hatch, gid, label in ((False, style.NORMAL_HANDLER, "", "handlers-normal",
                                                 "SDEI handler (normal)"),
                                                (True, style.CRITICAL_HANDLER, "xx", "handlers-critical",
                                                 "SDEI handler (critical)")):
        handlers = [iv for iv in data.handlers if iv.critical is critical]
        verts, _ = bars(handlers, HANDLER_BAND, lambda iv: "handler",
                        lambda iv: NESTED_INSET * (iv.depth - 1) if isinstance(iv, HandlerInterval) else 0.0)
        # A bar keeps at least a pixel's width (its edge) however short the handler ran.
        # The hatch is drawn in white over the fill: in the edge colour (matplotlib's default for
        # a hatch) it would vanish into a bar of that same colour.
        artists.append(ax.add_collection(PolyCollection(
            verts, facecolors=colour, edgecolors=colour, linewidths=1.0, hatch=hatch or None,
            hatchcolor=style.WHITE, zorder=4 if critical else 3, gid=gid), autolim=False))
        if len(verts):
            legend.append(Patch(facecolor=colour, edgecolor=colour, hatch=hatch or None, hatchcolor=style.WHITE,
                                label=label))

    verts, _ = bars(data.irqs, IRQ_BAND, lambda iv: "irq")
    artists.append(ax.add_collection(PolyCollection(
        verts, facecolors=style.IRQ, edgecolors=style.BLACK, linewidths=0.8, zorder=3, gid="irq"), autolim=False))
    if len(verts):
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
    for layer in sorted(by_layer):
        calls = by_layer[layer]
        marker, colour = ("|", style.layer_colour(layer)) if layer else ("x", style.BLACK)
        name = f"firmware call, answered by {layer}" if layer else "firmware call with no return"
        line = Line2D([t for _, t, _ in calls], [row[c] + CALL_ROW for c, _, _ in calls], linestyle="none",
                      marker=marker, markersize=11, markeredgewidth=1.6, color=colour, zorder=5,
                      gid=f"calls:{layer or 'no-return'}", label=name)
        artists.append(ax.add_line(line))
        legend.append(Line2D([], [], linestyle="none", marker=marker, markersize=11, markeredgewidth=1.6,
                             color=colour, label=name))

    labels: list[Annotation] = []
    for marks, marker, colour, gid, name in ((data.cpu_on, "^", style.GREEN, "cpu-on", "CPU_ON"),
                                             (data.cpu_off, "v", style.BLACK, "cpu-off", "CPU_OFF")):
        seen = [(cpu, t) for cpu, t in marks if cpu in row and lo <= t <= hi]
        line = Line2D([t for _, t in seen], [row[cpu] + POWER_MARK_ROW for cpu, _ in seen], linestyle="none",
                      marker=marker, markersize=15, markerfacecolor=colour, markeredgecolor=style.BLACK, zorder=6,
                      gid=gid, label=name)
        artists.append(ax.add_line(line))
        if seen:
            legend.append(Line2D([], [], linestyle="none", marker=marker, markersize=15, markerfacecolor=colour,
                                 markeredgecolor=style.BLACK, label=name))
        if len(seen) <= MAX_LABELLED_MARKS:
            for cpu, t in seen:
                label = ax.annotate(name, (t, row[cpu] + POWER_MARK_ROW), xytext=(9, 0),
                                    textcoords="offset points", va="center", fontsize=style.SMALL,
                                    fontweight="bold", zorder=7, annotation_clip=True)
                label.set_in_layout(False)  # placed inside the axes at draw time: no room to reserve
                labels.append(label)
                artists.append(label)
    if labels:
        artists.append(ax.add_artist(_Declutter(labels)))

    ax.set_xlim(lo, hi)
    ax.set_ylim(len(lanes) - 0.5, -0.5)  # CPU 0 on top
    ax.set_yticks(range(len(lanes)), labels=[f"CPU {cpu}" for cpu in lanes])
    style.vtime_axis(ax)
    ax.grid(axis="x", color=style.GREY, linewidth=0.6, alpha=0.6)
    ax.set_axisbelow(True)
    if legend:
        key = ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=style.SMALL,
                        frameon=False, borderaxespad=0.0)
        key.set_gid("legend")
        artists.append(key)
    return artists


class _Declutter(Artist):
    """Places the CPU_ON / CPU_OFF labels at draw time, when their sizes in pixels are known.

    A label that would run past the axes' right edge (into the legend) goes to the left of its
    mark; a label that would print over one already placed (CPU_ON and CPU_OFF of a short life,
    "CPU_ONF") is not drawn, and the placed one names both marks ("CPU_ON, CPU_OFF"). Drawn just
    before the labels (zorder), so a zoom in an interactive figure places them again.
    """

    def __init__(self, labels: list[Annotation]) -> None:
        super().__init__()
        self.labels = labels
        self.names = [label.get_text() for label in labels]
        self.set_zorder(min(label.get_zorder() for label in labels) - 0.01)
        self.set_in_layout(False)

    def draw(self, renderer: RendererBase) -> None:
        ax = self.axes
        if ax is None:
            return
        frame = ax.get_window_extent(renderer)
        placed: list[tuple[Annotation, list[str]]] = []
        for label, name in sorted(zip(self.labels, self.names, strict=True), key=lambda ln: ln[0].xy[0]):
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
                    self._place(clash[0], frame, renderer, right=clash[0].get_ha() == "left")
                continue
            placed.append((label, [name]))
        self.stale = False

    @staticmethod
    def _place(label: Annotation, frame: Bbox, renderer: RendererBase, right: bool) -> None:
        label.set_position((9, 0) if right else (-9, 0))
        label.set_ha("left" if right else "right")
        if right and label.get_window_extent(renderer).x1 > frame.x1:
            _Declutter._place(label, frame, renderer, right=False)


def _overlap(a: Bbox, b: Bbox) -> bool:
    return min(a.x1, b.x1) > max(a.x0, b.x0) and min(a.y1, b.y1) > max(a.y0, b.y0)


def figure_legend(fig: Figure | SubFigure) -> Legend | None:
    """One legend for a figure of several timelines: each axes' legend goes, their entries are
    merged (each label once, in order of first appearance) into one legend at the figure's right.

    Call it after the last ``timeline`` of the figure. A figure with constrained layout keeps
    room for it outside the axes; otherwise it goes in the upper right corner.
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
    legend = fig.legend(list(handles.values()), list(handles), loc="outside right upper" if constrained
                        else "upper right", fontsize=style.SMALL, frameon=False)
    legend.set_gid("legend")
    return legend
