"""The interactive timeline: the per-CPU timeline of ``sdeilab.viz`` in an ipympl figure that a
student zooms (wheel), pans (drag) and reads by pointing (hover), with a "now" cursor that
follows the debugger's stop.

Why ipympl: it keeps matplotlib as the one drawing layer, so the lanes are drawn by the very
function that draws the static figures (``sdeilab.viz.timeline``), and it is an ipywidget, so
it works in JupyterLab, in Voila and next to the dashboard's other widgets (docs/viz.md).

Level of detail, so that a view stays quick at a million facts:

* Firmware calls (most of a trace) are fetched through the log's indexed vtime-window queries,
  for the window shown plus one window's width on each side (a drag within that needs no new
  query), and paired with their returns in numpy. Past ``MAX_TICKS`` calls in view, calls that
  fall into the same pixel column of one lane, answered by the same layer, become one tick.
* Intervals (power, masked, handlers, interrupts) are derived once per trace length by the pure
  functions of ``sdeilab.trace.intervals`` (an interval open at a window's start needs the facts
  before it) and kept as numpy arrays; a view selects the intervals it overlaps, and past
  ``MAX_BARS`` of one kind merges those less than a pixel apart (per lane, kind and nesting depth).
* The figure is rebuilt only when the front end asks for a picture (ipympl's draw): a drag sends
  many pointer events, and only the last window before each picture is drawn.

Hover reads the fact under the pointer from the same data (a handler's dispatch, a call and
its return through a window query of a few pixels) and writes it below the figure.
"""

from __future__ import annotations

import html
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import ipywidgets as w
import numpy as np
from matplotlib.backend_bases import MouseEvent
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

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
from sdeilab.trace.records import PowerTransition, SdeiComplete, SdeiDispatch, SmcccCall, SmcccReturn
from sdeilab.viz import style
from sdeilab.viz.names import result_name
from sdeilab.viz.timeline import (
    CALL_ROW,
    HANDLER_BAND,
    IRQ_BAND,
    MASKED_BAND,
    NOW_LABEL,
    POWER_BAND,
    TimelineData,
    fit_legend,
    now_cursor,
    timeline,
)


def _import_ipympl() -> None:
    """Import ipympl without letting it take over pyplot.

    ``import ipympl`` calls ``matplotlib.use("module://ipympl.backend_nbagg")`` when matplotlib is
    loaded: every later ``plt.subplots`` of the notebook would become an interactive widget, and
    with pyplot loaded the switch also closes every open pyplot figure. This view needs only its
    classes, so its package is imported while matplotlib is out of ``sys.modules`` (its
    ``__init__`` imports nothing else), and put back at once.
    """
    if "ipympl" in sys.modules:
        return
    matplotlib = sys.modules.pop("matplotlib", None)
    try:
        import ipympl  # noqa: F401
    finally:
        if matplotlib is not None:
            sys.modules["matplotlib"] = matplotlib


_import_ipympl()
from ipympl.backend_nbagg import Canvas, FigureManager  # noqa: E402

MAX_TICKS = 6000  # calls in view past which one tick stands for a lane's calls in one pixel column
MAX_BARS = 3000  # boxes of one kind in view past which those less than a pixel apart merge
MAX_LABELS = 40  # calls in view up to which each is named on the figure (where its label fits)
MAX_EVENT_LABELS = 40  # handlers in view up to which each shows its event number (where it fits)
MIN_SPAN = 20  # ns: the narrowest window (20 instructions) a wheel can zoom to
ZOOM = 0.8  # one wheel step up shows 80% of the window, down 125%
HOVER_PX = 5  # how far (pixels) from a call tick or a box the pointer may be and still read it
DPI = 100  # JupyterLab and Voila show the canvas at this many CSS pixels per inch (Canvas at ratio 1)
LABEL_FONT = 10  # points: call names inside a lane, the smallest text that reads on a projector

# The figure's frame in inches, fixed so that a redraw never moves the axes (and a test knows where
# the lanes are): room for the lane names at the left, the time axis and the legend below.
WIDTH_IN = 8.4  # 840 CSS pixels: fits a notebook's output at 1280 px with JupyterLab's side bar open
LANE_IN = 1.25
LEFT_IN, RIGHT_IN, TOP_IN = 0.95, 0.4, 0.45  # right: half a tick label at the axis end (10 pt "12.5 µs")
AXIS_IN = 0.75  # tick labels and the axis label below the lanes
LEGEND_ROW_IN = 0.27
LEGEND_COLUMNS = 4


def figure_height(lanes: int, legend_rows: int) -> float:
    return TOP_IN + LANE_IN * lanes + AXIS_IN + LEGEND_ROW_IN * legend_rows + 0.15


IntervalT = TypeVar("IntervalT", bound=Interval)


@dataclass
class _Boxes(Generic[IntervalT]):
    """One kind of interval as arrays sorted by start; ``items`` keeps the intervals themselves."""

    items: list[IntervalT]
    cpu: np.ndarray
    start: np.ndarray
    end: np.ndarray  # an interval still open ends at the trace's end
    key: np.ndarray  # what may merge with what: power state, nesting depth, ...

    @classmethod
    def of(cls, items: Sequence[IntervalT], end: int, key: Callable[[IntervalT], int]) -> _Boxes[IntervalT]:
        ordered = sorted(items, key=lambda iv: iv.start)
        return cls(ordered, np.array([iv.cpu for iv in ordered], dtype=np.int64),
                   np.array([iv.start for iv in ordered], dtype=np.int64),
                   np.array([max(iv.end, iv.start) if iv.end is not None else max(end, iv.start) for iv in ordered],
                            dtype=np.int64),
                   np.array([key(iv) for iv in ordered], dtype=np.int64))

    def overlapping(self, lo: float, hi: float, cpus: set[int]) -> np.ndarray:
        """Indexes of the intervals of ``cpus`` that reach into [lo, hi]."""
        stop = int(np.searchsorted(self.start, hi, side="right"))
        picked = np.flatnonzero(self.end[:stop] >= lo)
        if picked.size and len(cpus) < len(np.unique(self.cpu)):
            picked = picked[np.isin(self.cpu[picked], list(cpus))]
        return picked

    def at(self, cpu: int, lo: float, hi: float) -> list[IntervalT]:
        """The intervals of ``cpu`` that reach into [lo, hi]."""
        return [self.items[i] for i in self.overlapping(lo, hi, {cpu}) if self.cpu[i] == cpu]


def merge_boxes(cpu: np.ndarray, key: np.ndarray, start: np.ndarray, end: np.ndarray,
                width: float) -> tuple[np.ndarray, ...]:
    """Boxes merged per (cpu, key) where less than ``width`` apart, in numpy: (cpu, key, start, end).

    Within a (cpu, key) group sorted by start, a box opens a new merged box when it starts more
    than ``width`` after the furthest end of every box before it in the group.
    """
    if start.size == 0:
        return cpu, key, start, end
    order = np.lexsort((start, key, cpu))
    cpu, key, start, end = cpu[order], key[order], start[order], end[order]
    group = np.r_[True, (cpu[1:] != cpu[:-1]) | (key[1:] != key[:-1])]
    # The running maximum of ends within each group: offset each group far above the one before.
    span = float(end.max() - start.min()) + width + 1.0
    offset = np.cumsum(group) * span
    reach = np.maximum.accumulate(end + offset) - offset
    opens = group.copy()
    opens[1:] |= start[1:] > reach[:-1] + width
    first = np.flatnonzero(opens)
    last_reach = np.maximum.reduceat(end, first)
    return cpu[first], key[first], start[first], last_reach


@dataclass
class _Calls:
    """Firmware calls fetched for a vtime range: per call its CPU, vtime, answering layer and seqs."""

    lo: int
    hi: int
    cpu: np.ndarray
    vtime: np.ndarray
    layer: np.ndarray  # index into ``layers``; -1: the call never returned
    call_seq: np.ndarray
    return_seq: np.ndarray  # -1 where it never returned
    layers: list[str] = field(default_factory=list)


def fetch_calls(log: TraceLog, lo: int | None, hi: int | None) -> _Calls:
    """The calls with ``lo <= vtime < hi`` (None: unbounded) and their returns, through window queries.

    A call is answered by the next call-or-return fact of its CPU if that is a return (the rule
    of ``sdeilab.trace.intervals.firmware_calls``); a return carries its call's vtime, so a call
    in the window finds its return in it too.
    """
    calls = np.array(log.seqs(SmcccCall, start=lo, end=hi), dtype=np.int64)
    returns = np.array(log.seqs(SmcccReturn, start=lo, end=hi), dtype=np.int64)
    layer_names = [str(x) for x in log.column("layer", returns.tolist())]
    layers = sorted(set(layer_names))
    code = {name: i for i, name in enumerate(layers)}
    seq = np.concatenate([calls, returns])
    is_return = np.r_[np.zeros(calls.size, dtype=bool), np.ones(returns.size, dtype=bool)]
    cpu = np.array(log.column("cpu", seq.tolist()), dtype=np.int64)
    vtime = np.array(log.column("vtime", calls.tolist()), dtype=np.int64)
    layer_of = np.r_[np.full(calls.size, -1, dtype=np.int64),
                     np.array([code[n] for n in layer_names], dtype=np.int64)]
    order = np.lexsort((seq, cpu))
    s_seq, s_ret, s_cpu, s_layer = seq[order], is_return[order], cpu[order], layer_of[order]
    answered = np.zeros(seq.size, dtype=bool)
    answered[:-1] = ~s_ret[:-1] & s_ret[1:] & (s_cpu[:-1] == s_cpu[1:])
    mine = ~s_ret  # the calls, in (cpu, seq) order
    ret_seq = np.full(seq.size, -1, dtype=np.int64)
    ret_layer = np.full(seq.size, -1, dtype=np.int64)
    ret_seq[:-1] = np.where(answered[:-1], s_seq[1:], -1)
    ret_layer[:-1] = np.where(answered[:-1], s_layer[1:], -1)
    call_seq, call_cpu = s_seq[mine], s_cpu[mine]
    # Back to vtime order (vtime is not monotonic in seq order across CPUs).
    stamp = vtime[np.searchsorted(calls, call_seq)] if calls.size else np.zeros(0, dtype=np.int64)
    by_time = np.argsort(stamp, kind="stable")
    return _Calls(lo if lo is not None else -(1 << 62), hi if hi is not None else 1 << 62,
                  call_cpu[by_time], stamp[by_time], ret_layer[mine][by_time], call_seq[by_time],
                  ret_seq[mine][by_time], layers)


class TimelineSource:
    """What the interactive timeline draws from a trace, cached per trace length."""

    def __init__(self, trace: TraceLog) -> None:
        self.trace = trace
        self._length = -1
        self._calls: _Calls | None = None
        self.refresh()

    def refresh(self) -> bool:
        """Derive the intervals again if the trace grew; True if it did."""
        length = len(self.trace)
        if length == self._length:
            return False
        log = self.trace
        self._length = length
        self.end = max(log.max_vtime(), 1)
        self.cpus = tuple(log.cpus())
        transitions = [f for f in log.of_kind(PowerTransition) if isinstance(f, PowerTransition)]
        # Before its first transition a CPU was in that transition's old state (as sdeilab.viz draws it).
        first: dict[int, PowerTransition] = {}
        for fact in transitions:
            first.setdefault(fact.cpu, fact)
        lead = [Interval(cpu, 0, f.vtime, f.old) for cpu, f in first.items() if f.vtime > 0]
        power = lead + power_intervals(log)
        states = {state: i for i, state in enumerate(sorted({iv.label for iv in power}))}
        self.power = _Boxes.of(power, self.end, lambda iv: states[iv.label])
        self.masked = _Boxes.of(masked_intervals(log), self.end, lambda iv: 0)
        handlers = handler_intervals(log)
        self.normal = _Boxes.of([h for h in handlers if not h.critical], self.end,
                                lambda iv: iv.depth if isinstance(iv, HandlerInterval) else 1)
        self.critical = _Boxes.of([h for h in handlers if h.critical], self.end,
                                  lambda iv: iv.depth if isinstance(iv, HandlerInterval) else 1)
        self.irqs = _Boxes.of(irq_intervals(log), self.end, lambda iv: 0)
        self.cpu_on, self.cpu_off = power_marks(transitions)
        self.transitions = transitions
        self._calls = None
        return True

    def calls(self, lo: float, hi: float) -> _Calls:
        """The calls in [lo, hi], from the last fetch if it covers that, else fetched with a margin."""
        kept = self._calls
        if kept is None or lo < kept.lo or hi >= kept.hi:
            span = hi - lo
            start, stop = math.floor(lo - span), math.ceil(hi + span) + 1
            whole = start <= 0 and stop > self.end
            # The whole trace needs no window check on each fact: unbounded queries walk the indexes only.
            kept = self._calls = fetch_calls(self.trace, None if whole else max(start, 0),
                                             None if whole else stop)
        return kept

    def data(self, lo: float, hi: float, pixels: float, cpus: Sequence[int]) -> TimelineData:
        """What ``sdeilab.viz.timeline`` draws for the window [lo, hi] shown ``pixels`` wide."""
        width = (hi - lo) / max(pixels, 1.0)  # vtime per pixel
        lanes = set(cpus)

        def pick(boxes: _Boxes[IntervalT], make: Callable[[int, int, int, int], IntervalT]) -> list[IntervalT]:
            index = boxes.overlapping(lo, hi, lanes)
            if index.size <= MAX_BARS:
                return [boxes.items[i] for i in index]
            merged = merge_boxes(boxes.cpu[index], boxes.key[index], boxes.start[index], boxes.end[index], width)
            return [make(*map(int, box)) for box in zip(*merged, strict=True)]

        names = {i: iv.label for iv, i in zip(self.power.items, self.power.key.tolist(), strict=True)}
        power = pick(self.power, lambda c, k, s, e: Interval(c, s, e, names[k]))
        masked = pick(self.masked, lambda c, k, s, e: Interval(c, s, e, "masked"))
        handlers = [*pick(self.normal, lambda c, k, s, e: HandlerInterval(c, s, e, "", critical=False, depth=k)),
                    *pick(self.critical, lambda c, k, s, e: HandlerInterval(c, s, e, "", critical=True, depth=k))]
        irqs = pick(self.irqs, lambda c, k, s, e: IrqInterval(c, s, e, "IRQ"))
        return TimelineData(cpus=tuple(cpus), end=self.end, power=power, masked=masked, handlers=handlers,
                            irqs=irqs, calls=self.call_marks(lo, hi, width, lanes), cpu_on=self.cpu_on,
                            cpu_off=self.cpu_off)

    def call_marks(self, lo: float, hi: float, width: float, lanes: set[int]) -> list[tuple[int, int, str]]:
        calls = self.calls(lo, hi)
        a, b = np.searchsorted(calls.vtime, lo, side="left"), np.searchsorted(calls.vtime, hi, side="right")
        cpu, vtime, layer = calls.cpu[a:b], calls.vtime[a:b], calls.layer[a:b]
        if len(lanes) < len(self.cpus):
            keep = np.isin(cpu, list(lanes))
            cpu, vtime, layer = cpu[keep], vtime[keep], layer[keep]
        if vtime.size > MAX_TICKS:
            # One tick per lane, layer and pixel column: the first call in it stands for them all.
            column = ((vtime - lo) // max(width, 1.0)).astype(np.int64)
            # One integer per (lane, layer, column): a 1-d unique sorts a tenth as long as a 3-row one.
            lane = cpu - cpu.min()
            key = (lane * (len(calls.layers) + 1) + layer + 1) * (int(column.max()) + 1) + column
            _, first = np.unique(key, return_index=True)
            cpu, vtime, layer = cpu[first], vtime[first], layer[first]
        names = [*calls.layers, ""]  # index -1: no return
        return list(zip(cpu.tolist(), vtime.tolist(), [names[i] for i in layer.tolist()], strict=True))

    def calls_in(self, lo: float, hi: float, cpu: int | None = None) -> list[tuple[SmcccCall, SmcccReturn | None]]:
        """The calls (with their returns) in [lo, hi], in vtime order: for labels and hover."""
        calls = self.calls(lo, hi)
        a, b = np.searchsorted(calls.vtime, lo, side="left"), np.searchsorted(calls.vtime, hi, side="right")
        out: list[tuple[SmcccCall, SmcccReturn | None]] = []
        for i in range(a, b):
            if cpu is not None and calls.cpu[i] != cpu:
                continue
            call = self.trace[int(calls.call_seq[i])]
            ret = self.trace[int(calls.return_seq[i])] if calls.return_seq[i] >= 0 else None
            assert isinstance(call, SmcccCall) and (ret is None or isinstance(ret, SmcccReturn))
            out.append((call, ret))
        return out


def call_label(call: SmcccCall, ret: SmcccReturn | None) -> str:
    """A call as a lane names it: ``SDEI_EVENT_SIGNAL → SUCCESS (kvm)``."""
    if ret is None:
        return f"{call.name} (no return)"
    return f"{call.name} → {result_name(ret.results[0], call.name) if ret.results else '?'} ({ret.layer})"


class TimelineView:
    """The per-CPU timeline of ``trace`` as an ipympl widget: wheel to zoom, drag to pan, hover to read.

    ``cpus``: the lanes (a count, or which CPUs; default every CPU in the trace); ``window``: the
    (start, end) vtime shown first and restored by the reset button (default: the whole trace);
    ``symbolize``: address -> ``name+0xoff`` (``Session.symbolize``, ``image.symbolize``) for the
    PCs the hover shows. Display it as the last expression of a cell, or ``view.widget`` in a box.
    """

    def __init__(self, trace: TraceLog, cpus: int | Sequence[int] | None = None,
                 window: tuple[int, int] | None = None, symbolize: Callable[[int], str] | None = None,
                 title: str | None = None, now: int | None = None) -> None:
        self.source = TimelineSource(trace)
        self.symbolize = symbolize
        self.title = title
        self.now = now
        if cpus is None:
            self.cpus = list(self.source.cpus) or [0]
        elif isinstance(cpus, int):
            self.cpus = list(range(cpus))
        else:
            self.cpus = list(cpus)
        self.home = window
        self.window: tuple[float, float] = self._home()
        self.redraws = 0  # times the lanes were built (a test and the benchmark read it)
        self._stale = True
        self._drag: tuple[float, tuple[float, float]] | None = None  # (pointer x in pixels, window) at press

        lanes = len(self.cpus)
        self.figure = Figure(figsize=(WIDTH_IN, figure_height(lanes, 4)), dpi=DPI)
        self.canvas = _Canvas(self.figure, self)
        self.manager = FigureManager(self.canvas, 0)  # the canvas talks to the front end through it
        # No pyplot: the figure is in no global registry, and the toolbar's own pan and zoom modes
        # (which would fight the drag below) stay hidden; the reset button replaces its Home.
        self.canvas.toolbar_visible = False
        self.canvas.header_visible = False
        self.canvas.footer_visible = False
        self.canvas.resizable = False
        self.canvas.capture_scroll = True  # the wheel zooms the timeline, not the page
        self.ax = self.figure.add_axes((0, 0, 1, 1))
        self._legend_rows = 4
        self._build()
        self._frame()

        self.reset_button = w.Button(description="Reset view", icon="home",
                                     tooltip="Show the whole trace again (or the window the view opened with)")
        self.reset_button.on_click(lambda _: self.reset())
        self.window_label = w.HTML(layout=w.Layout(margin="0 0 0 12px"))
        self.window_label.add_class("sdeilab-timeline-window")
        self.fact = w.HTML(value=_HINT, layout=w.Layout(min_height="3.6em"))
        self.fact.add_class("sdeilab-timeline-fact")
        self.widget = w.VBox([w.HBox([self.reset_button, self.window_label]), self.canvas, self.fact])
        self.widget.add_class("sdeilab-timeline")
        self._show_window()
        for name, handler in (("scroll_event", self._on_scroll), ("button_press_event", self._on_press),
                              ("button_release_event", self._on_release),
                              ("motion_notify_event", self._on_motion), ("figure_leave_event", self._on_leave)):
            self.canvas.mpl_connect(name, handler)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # --- what it shows ---------------------------------------------------------------------
    def _home(self) -> tuple[float, float]:
        return (float(self.home[0]), float(self.home[1])) if self.home else (0.0, float(self.source.end))

    def set_window(self, lo: float, hi: float) -> None:
        """Show vtime [lo, hi] (kept at least ``MIN_SPAN`` wide and within the trace, give or take a window)."""
        span = max(hi - lo, MIN_SPAN)
        end = max(float(self.source.end), self._home()[1])
        span = min(span, end * 1.5 + MIN_SPAN)
        centre = min(max((lo + hi) / 2, -span / 2 + span * 0.05), end + span / 2 - span * 0.05)
        self.window = (centre - span / 2, centre + span / 2)
        self._changed()

    def reset(self) -> None:
        """Back to the window the view opened with (the whole trace by default)."""
        self.source.refresh()
        self.window = self._home()
        self._changed()

    def refresh(self) -> None:
        """Draw again, with whatever the trace gained since."""
        self.source.refresh()
        self._changed()

    def follow(self, vtime: int) -> None:
        """Put the "now" cursor at ``vtime`` (the debugger's stop) and bring it into view.

        A view of the whole trace grows with the trace; a zoomed view keeps its width and pans
        just enough to show ``vtime`` a tenth of the width from its edge.
        """
        whole = self.home is None and self.window == self._home()
        self.source.refresh()
        self.now = vtime
        lo, hi = self.window
        if whole:
            self.window = self._home()
        elif not lo <= vtime <= hi:
            span = hi - lo
            lo = vtime - span * 0.9 if vtime > hi else vtime - span * 0.1
            self.window = (lo, lo + span)
        self._changed()

    def _changed(self) -> None:
        self._stale = True
        self.ax.set_xlim(*self.window)  # what is drawn keeps showing, moved, until the redraw
        self._show_window()
        self.canvas.draw_idle()

    def _show_window(self) -> None:
        lo, hi = self.window
        self.window_label.value = (f"<span data-lo='{lo:.0f}' data-hi='{hi:.0f}'>showing {style.vtime_text(lo)} to "
                                   f"{style.vtime_text(hi)} ({style.vtime_text(hi - lo)} wide)</span>")

    def _pixels(self) -> float:
        return max(self.ax.get_position().width * WIDTH_IN * DPI, 1.0)

    def _build(self) -> None:
        """Build the lanes for the current window: sdeilab.viz draws them, this adds what a live view needs."""
        lo, hi = self.window
        ax = self.ax
        ax.clear()
        data = self.source.data(lo, hi, self._pixels(), self.cpus)
        timeline(ax, data, cpus=self.cpus, window=(math.floor(lo), math.ceil(hi)))
        ax.set_xlim(lo, hi)
        legend = ax.get_legend()
        if legend is not None:
            entries = dict(zip([t.get_text() for t in legend.get_texts()], legend.legend_handles, strict=True))
            legend.remove()
            self._legend(entries)
        self._boundaries(data.handlers, (hi - lo) / self._pixels())
        self._event_labels(data.handlers, lo, hi)
        self._call_labels(lo, hi)
        if self.now is not None:
            now_cursor(ax, self.now)
        if self.title:
            ax.set_title(self.title, fontsize=style.FONT, loc="left")
        self._stale = False
        self.redraws += 1

    def _legend(self, entries: dict[str, Any]) -> None:
        """One legend below the axes, kept from the first drawing on (it lists what the whole trace has),
        so that zooming never moves it; new kinds of entry (a trace that grew) join it."""
        old = self.figure.legends[0] if self.figure.legends else None
        if self.now is not None:
            entries.setdefault(NOW_LABEL, Line2D([], [], color=style.CURRENT, linewidth=2.5))
        known: dict[str, Any] = {}
        if old is not None:
            known = dict(zip([t.get_text() for t in old.get_texts()], old.legend_handles, strict=True))
            if set(entries) <= set(known):
                return
            old.remove()
        known.update({k: v for k, v in entries.items() if k not in known})
        canvas = self.figure.canvas
        assert isinstance(canvas, FigureCanvasAgg)  # ipympl's Canvas is an Agg canvas
        legend, columns = fit_legend(  # as many columns as fit the figure's width
            lambda columns: self.figure.legend(list(known.values()), list(known), loc="lower center", ncols=columns,
                                               fontsize=style.SMALL, frameon=False, bbox_to_anchor=(0.5, 0.0)),
            self.figure.bbox.width, canvas.get_renderer(), LEGEND_COLUMNS)
        legend.set_gid("legend")
        rows = -(-len(known) // columns)
        if rows != self._legend_rows:
            self._legend_rows = rows
            self.figure.set_size_inches(WIDTH_IN, figure_height(len(self.cpus), rows), forward=True)
            self._frame()

    def _frame(self) -> None:
        height = self.figure.get_figheight()
        bottom = AXIS_IN + LEGEND_ROW_IN * self._legend_rows + 0.15
        self.ax.set_position((LEFT_IN / WIDTH_IN, bottom / height, 1 - (LEFT_IN + RIGHT_IN) / WIDTH_IN,
                              LANE_IN * len(self.cpus) / height))

    def _boundaries(self, handlers: Sequence[Interval], per_pixel: float) -> None:
        """A white line where a handler starts within a pixel of the end of the one before it on the
        same lane and depth (back-to-back runs), which would otherwise read as one long bar."""
        row = {cpu: r for r, cpu in enumerate(self.cpus)}
        ends: dict[tuple[int, bool, int], int] = {}
        segments = []
        for h in sorted((h for h in handlers if isinstance(h, HandlerInterval) and h.end is not None),
                        key=lambda h: h.start):
            lane = (h.cpu, h.critical, h.depth)
            if lane in ends and abs(h.start - ends[lane]) <= per_pixel and h.cpu in row:
                inset = 0.07 * (h.depth - 1)
                y = row[h.cpu]
                segments.append([(h.start, y + HANDLER_BAND[0] + inset), (h.start, y + HANDLER_BAND[1] - inset)])
            ends[lane] = h.end  # type: ignore[assignment]
        if segments:
            self.ax.add_collection(LineCollection(segments, colors="white", linewidths=2.0, zorder=4.5,
                                                  gid="handler-boundaries"), autolim=False)

    def _event_labels(self, handlers: Sequence[Interval], lo: float, hi: float) -> None:
        """Each handler's event number at its start, where the bar is wide enough to hold it."""
        named = [h for h in handlers if isinstance(h, HandlerInterval) and h.label]
        if len(named) > MAX_EVENT_LABELS:
            return
        row = {cpu: r for r, cpu in enumerate(self.cpus)}
        per_pixel = (hi - lo) / self._pixels()
        for h in named:
            end = h.end if h.end is not None else self.source.end
            text = f" {h.event}"
            if h.cpu not in row or (min(end, hi) - max(h.start, lo)) / per_pixel < len(text) * 9 + 6:
                continue
            self.ax.text(max(h.start, lo), row[h.cpu] - 0.04 + 0.08 * (h.depth - 1), text, color="white",
                         fontsize=style.SMALL, fontweight="bold", va="center", ha="left", clip_on=True, zorder=8,
                         gid="event-label")

    def _call_labels(self, lo: float, hi: float) -> None:
        """Name each call (result and layer) when few are in view, where its label has room."""
        calls = self.source.calls(lo, hi)
        a, b = np.searchsorted(calls.vtime, lo), np.searchsorted(calls.vtime, hi, side="right")
        if b - a > MAX_LABELS or b == a:
            return
        row = {cpu: r for r, cpu in enumerate(self.cpus)}
        per_pixel = (hi - lo) / self._pixels()
        free: dict[int, float] = {}  # lane -> the first vtime not taken by a label
        for call, ret in self.source.calls_in(lo, hi):
            if call.cpu not in row or call.vtime < free.get(call.cpu, -math.inf):
                continue
            text = call_label(call, ret)
            width = (len(text) * LABEL_FONT * 0.62 * DPI / 72 + 8) * per_pixel  # a label's width, estimated
            if call.vtime + width > hi:
                continue
            self.ax.annotate(text, (call.vtime, row[call.cpu] + CALL_ROW + 0.11), xytext=(2, 0),
                             textcoords="offset points", fontsize=LABEL_FONT, va="center", ha="left", zorder=8,
                             annotation_clip=True, gid="call-label",
                             bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none",
                                   "alpha": 0.85})
            free[call.cpu] = call.vtime + width

    # --- the pointer -------------------------------------------------------------------------
    def _on_scroll(self, event: Any) -> None:
        if event.inaxes is not self.ax or event.xdata is None:
            return
        factor = ZOOM ** float(event.step)  # step > 0: the wheel turned away from the user, zoom in
        lo, hi = self.window
        x = float(event.xdata)
        self.set_window(x - (x - lo) * factor, x + (hi - x) * factor)

    def _on_press(self, event: Any) -> None:
        if event.inaxes is self.ax and event.button == 1:
            self._drag = (float(event.x), self.window)

    def _on_release(self, event: Any) -> None:
        self._drag = None

    def _on_motion(self, event: MouseEvent) -> None:
        if self._drag is not None:
            x0, (lo, hi) = self._drag
            shift = (float(event.x) - x0) * (hi - lo) / (self.ax.bbox.width or 1.0)
            self.set_window(lo - shift, hi - shift)
            return
        if event.inaxes is not self.ax or event.xdata is None or event.ydata is None:
            return
        self.fact.value = self.describe(float(event.xdata), float(event.ydata)) or _HINT

    def _on_leave(self, event: Any) -> None:
        self._drag = None

    def describe(self, x: float, y: float) -> str | None:
        """The fact under the point (x: vtime, y: the axes' data units, lane r centred on r), as HTML."""
        r = round(y)
        if not 0 <= r < len(self.cpus):
            return None
        cpu, dy = self.cpus[r], y - r
        lo, hi = self.window
        slack = HOVER_PX * (hi - lo) / self._pixels()
        near = (x - slack, x + slack)
        if IRQ_BAND[0] - 0.04 <= dy < (IRQ_BAND[1] + CALL_ROW) / 2:
            irqs = [iv for iv in self.source.irqs.at(cpu, *near) if isinstance(iv, IrqInterval)]
            return _irq_text(irqs[-1], self.source.end) if irqs else None
        if dy < (CALL_ROW + HANDLER_BAND[0]) / 2:
            calls = self.source.calls_in(*near, cpu=cpu)
            if not calls:
                return None
            call, ret = min(calls, key=lambda cr: abs(cr[0].vtime - x))
            return self._call_text(call, ret)
        if dy < (MASKED_BAND[1] + POWER_BAND[0]) / 2:
            handlers = [h for boxes in (self.source.normal, self.source.critical) for h in boxes.at(cpu, *near)]
            handlers = [h for h in handlers if isinstance(h, HandlerInterval)]
            if handlers:
                # The one under the point; of nested runs the innermost (critical over normal), as drawn.
                under = [h for h in handlers if h.covers(int(x)) or h.start == int(x)] or handlers
                return self._handler_text(max(under, key=lambda h: (h.depth, h.start)))
            masked = self.source.masked.at(cpu, x, x)
            return _span_text("SDEI events masked", masked[0], cpu, self.source.end) if masked else None
        power = self.source.power.at(cpu, x, x)
        marks = [(t, "CPU_ON") for c, t in self.source.cpu_on if c == cpu and abs(t - x) <= slack]
        marks += [(t, "CPU_OFF") for c, t in self.source.cpu_off if c == cpu and abs(t - x) <= slack]
        lines = [f"<b>{name}</b> on CPU {cpu} at {style.vtime_text(t)}" for t, name in marks]
        if power:
            lines.append(_span_text(f"power state <b>{power[-1].label}</b>", power[-1], cpu, self.source.end))
        return "<br>".join(lines) or None

    def _where(self, address: int) -> str:
        name = self.symbolize(address) if self.symbolize is not None and address else ""
        return f"&lt;{html.escape(name)}&gt; (0x{address:x})" if name else f"0x{address:x}"

    def _call_text(self, call: SmcccCall, ret: SmcccReturn | None) -> str:
        args = ", ".join(f"0x{a:x}" for a in call.args)
        head = f"<b>{html.escape(call.name)}</b>({args}) on CPU {call.cpu} at {style.vtime_text(call.vtime)}, " \
               f"{call.conduit.upper()} (function ID 0x{call.fid:08x})"
        if ret is None:
            return f"{head}<br>no return: the call does not come back to its caller (COMPLETE resumes the " \
                   "interrupted context, CPU_OFF powers the CPU down)"
        code = ret.results[0] if ret.results else 0
        rest = ", ".join(f"0x{r:x}" for r in ret.results[1:])
        then = f", then {rest}" if rest else ""
        return (f"{head}<br>→ <b>{html.escape(result_name(code, call.name))}</b> (x0 = {_signed(code)}{then}), "
                f"answered by <b>{html.escape(ret.layer)}</b>")

    def _handler_text(self, h: HandlerInterval) -> str:
        kind = "critical" if h.critical else "normal"
        dispatch = next((f for f in self.source.trace.select(SdeiDispatch, cpu=h.cpu, event=h.event, start=h.start,
                                                             end=h.start + 1) if isinstance(f, SdeiDispatch)), None)
        lines = [f"<b>SDEI handler of event {h.event}</b> ({kind}, depth {h.depth}) on CPU {h.cpu}: "
                 + _duration(h, self.source.end)]
        if dispatch is not None:
            lines.append(f"dispatched by {html.escape(dispatch.source)}: handler {self._where(dispatch.handler)}, "
                         f"interrupted {self._where(dispatch.interrupted_pc)}")
        else:
            lines.append(f"interrupted {self._where(h.interrupted_pc)}")
        if h.end is not None:
            done = next((f for f in self.source.trace.select(SdeiComplete, cpu=h.cpu, event=h.event, start=h.end,
                                                             end=h.end + 1) if isinstance(f, SdeiComplete)), None)
            where = f", resumed at {self._where(done.resume_pc)}" if done is not None else ""
            lines.append(f"ended by SDEI_EVENT_{h.how.upper().replace('-', '_')}{where}")
        else:
            lines.append("still running at the end of the trace")
        return "<br>".join(lines)

    def _on_canvas_draw(self) -> None:
        if self._stale:
            self._build()


class _Canvas(Canvas):
    """ipympl's canvas, building the lanes of the window asked for just before it renders: pointer
    events only move the window, and the front end asks for a picture when it can show one."""

    def __init__(self, figure: Figure, view: TimelineView) -> None:
        self._view = view
        super().__init__(figure)

    def draw(self) -> None:
        self._view._on_canvas_draw()
        super().draw()


_HINT = "<i>Wheel: zoom. Drag: pan. Point at a bar or a tick to read its fact here.</i>"


def _signed(code: int) -> str:
    """x0 as a person reads it: a return code in decimal (-5), anything else in hex."""
    value = code - (1 << 64) if code >= 1 << 63 else code
    return str(value) if -(1 << 31) <= value < 1 << 16 else hex(value)


def _duration(iv: Interval, end: int) -> str:
    if iv.end is None:
        return f"from {style.vtime_text(iv.start)}, still open at the end of the trace ({style.vtime_text(end)})"
    return f"{style.vtime_text(iv.start)} to {style.vtime_text(iv.end)} ({style.vtime_text(iv.end - iv.start)})"


def _span_text(what: str, iv: Interval, cpu: int, end: int) -> str:
    return f"{what} on CPU {cpu}: {_duration(iv, end)}"


def _irq_text(iv: IrqInterval, end: int) -> str:
    who = "the firmware (bound to an SDEI event)" if iv.group == 0 else "the guest"
    nested = f", nested at depth {iv.depth}" if iv.depth > 1 else ""
    return (f"<b>interrupt {iv.intid}</b> on CPU {iv.cpu}, acknowledged by {who} to its EOI{nested}: "
            f"{_duration(iv, end)}")


__all__ = ["TimelineSource", "TimelineView", "call_label", "fetch_calls", "merge_boxes"]
