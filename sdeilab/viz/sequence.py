"""One SDEI event's life as a sequence diagram: a lifeline per CPU and one for the firmware.

Time runs down, one row per fact in ``seq`` order (the order the firmware saw them), each row
labelled with its vtime. Calls go from a CPU to the firmware (dashed and red when refused),
dispatches and resumptions come back, CPU_ON is drawn from the caller to the firmware and on
to the CPU it powers up (which comes up SDEI-masked: reference/sdei-psci-smccc.md 2.3 and 3),
and each handler run is an activation bar on its CPU's lifeline. The rows come from
``messages``, a pure function, so a test can compare them with the facts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backend_bases import RendererBase
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.text import Text
from matplotlib.textpath import TextPath
from matplotlib.transforms import Bbox

from sdeilab.firmware.sdei.table import TABLE, Action, EventState
from sdeilab.trace.log import TraceLog
from sdeilab.trace.records import (
    Fact,
    IrqAsserted,
    PowerTransition,
    SdeiBinding,
    SdeiComplete,
    SdeiDispatch,
    SdeiMask,
    SdeiTransition,
    SmcccCall,
)
from sdeilab.trace.vocabulary import PowerCause, PowerState
from sdeilab.viz import style
from sdeilab.viz.names import result_name
from sdeilab.viz.placing import LabelPlacer

if TYPE_CHECKING:
    from matplotlib.typing import LineStyleType

FIRMWARE = -1  # the firmware's lifeline, in Message.src / Message.dst
Symbolize = Callable[[int], str]  # an address to "symbol+offset" (Session.symbolize, LoadedImage.symbolize)
LABEL_GAP = 0.1  # a message's label starts this far right of its left lifeline: clear of an activation bar
_STATES = {state.name.lower().replace("_", "-"): state for state in EventState}
_STYLE = {  # kind: (colour, line style, line width)
    "call": (style.BLACK, "-", 1.6), "refused": (style.REFUSED, "--", 1.6), "dispatch": (style.BLUE, "-", 3.0),
    "resume": (style.BLUE, "--", 1.6), "power": (style.GREEN, "-", 2.4), "mask": (style.PURPLE, "-", 1.6),
    "reset": (style.PURPLE, "--", 1.6), "note": (style.BLACK, "-", 1.0),
}


@dataclass(frozen=True)
class Message:
    """One row: ``src`` to ``dst`` (a CPU number, or FIRMWARE); ``src == dst`` is a note on a lifeline."""

    seq: int
    vtime: int
    src: int
    dst: int
    text: str
    kind: str  # a key of _STYLE


def messages(log: TraceLog, event: int, window: tuple[int, int] | None = None,
             symbolize: Symbolize | None = None) -> list[Message]:
    """The rows of ``event``'s sequence diagram: its own facts, and around them (from its first fact
    to its last) the CPU_ON/CPU_OFF, masking, signals and bound-interrupt assertions that shaped it.
    Addresses are shown as ``<symbol+offset>`` when ``symbolize`` is given."""
    start, end = window if window is not None else (None, None)
    own = log.select(event=event, start=start, end=end)
    if not own:
        return []
    first, last = own[0].seq, own[-1].seq
    intids = {f.intid for f in own if isinstance(f, SdeiBinding)}
    stamps = [f.vtime for f in own]  # vtime is not monotonic in seq order: bound it both ways
    around = [f for f in log.select(PowerTransition, SdeiMask, SmcccCall, IrqAsserted, start=min(stamps),
                                    end=max(stamps) + 1) if first <= f.seq <= last]
    return [m for f in sorted(own + around, key=lambda f: f.seq) for m in _rows(f, event, intids, symbolize)]


def _address(address: int, symbolize: Symbolize | None) -> str:
    name = symbolize(address) if symbolize is not None else ""
    return f"<{name}>" if name else f"{address:#x}"


def _rows(fact: Fact, event: int, intids: set[int], symbolize: Symbolize | None = None) -> list[Message]:
    def to_fw(text: str, kind: str = "call") -> list[Message]:
        return [Message(fact.seq, fact.vtime, fact.cpu, FIRMWARE, text, kind)]

    def from_fw(text: str, kind: str) -> list[Message]:
        return [Message(fact.seq, fact.vtime, FIRMWARE, fact.cpu, text, kind)]

    # SdeiDispatch and SdeiComplete are transitions too: the more particular kinds first.
    if isinstance(fact, SdeiDispatch):
        kind = "critical " if fact.critical else ""
        return from_fw(f"dispatch {kind}handler ({fact.source}), depth {fact.depth}", "dispatch")
    if isinstance(fact, SdeiComplete):
        return (to_fw(f"{fact.action}: {fact.old} → {fact.new}")
                + from_fw(f"{fact.how}: resume at {_address(fact.resume_pc, symbolize)}", "resume"))
    if isinstance(fact, SdeiTransition):
        if fact.action == "cpu-on-reset":
            return from_fw(f"CPU_ON reset: {fact.old} → {fact.new}", "reset")
        result = result_name(fact.result)
        if fact.old != fact.new:
            return to_fw(f"{fact.action}: {fact.old} → {fact.new}" + (f", returns {result}" if fact.result else ""))
        if fact.old not in _STATES:  # refused before the table: no such event, bad parameters, no dispatch
            return to_fw(f"{fact.action} ✗ {result} (before the state table)", "refused")
        if _accepted(fact.old, fact.action):
            return to_fw(f"{fact.action} ✓ in {fact.old}")
        return to_fw(f"{fact.action} ✗ {result} in {fact.old}", "refused")
    if isinstance(fact, SdeiBinding):
        return to_fw(f"INTERRUPT_BIND({fact.intid}) → event {fact.event}" if fact.bound
                     else f"INTERRUPT_RELEASE(event {fact.event}) frees INTID {fact.intid}")
    if isinstance(fact, SmcccCall):
        if fact.name == "SDEI_EVENT_SIGNAL" and fact.args[:1] == (event,):
            target = f", PE {fact.args[1]:#x}" if len(fact.args) > 1 else ""
            return to_fw(f"EVENT_SIGNAL({event}{target})")
        if fact.name.startswith("CPU_ON"):
            return to_fw(f"{fact.name}(MPIDR {fact.args[0]:#x}, entry {_address(fact.args[1], symbolize)})"
                         if len(fact.args) > 1 else fact.name, "power")
        return []
    if isinstance(fact, PowerTransition):
        if fact.cause == PowerCause.CPU_ON and fact.old == PowerState.OFF:
            return from_fw("powered on by CPU_ON: SDEI-masked, private events reset", "power")
        if fact.new == PowerState.OFF:
            return to_fw(f"power off ({fact.cause})", "power")
        return []
    if isinstance(fact, SdeiMask):
        if fact.cause == "call":
            return to_fw("PE_MASK" if fact.masked else "PE_UNMASK", "mask")
        return from_fw(f"{'masked' if fact.masked else 'unmasked'} ({fact.cause})", "mask")
    if isinstance(fact, IrqAsserted) and fact.intid in intids:
        return [Message(fact.seq, fact.vtime, FIRMWARE, FIRMWARE, f"INTID {fact.intid} pending for CPU {fact.cpu}",
                        "note")]
    return []


def _accepted(state: str, action: str) -> bool:
    try:
        return TABLE[_STATES[state]][Action(action)].allowed
    except ValueError:
        return True


def sequence(ax: Axes, trace: TraceLog | Sequence[Message], event: int, cpus: Sequence[int] | None = None,
             window: tuple[int, int] | None = None, symbolize: Symbolize | None = None) -> list[Artist]:
    """Draw ``event``'s sequence diagram on ``ax``; returns the artists drawn.

    ``trace`` is a TraceLog or the rows ``messages`` computed; ``cpus`` fixes the CPU lifelines
    (default: every CPU that appears in a row); ``window`` keeps the facts in a vtime range;
    ``symbolize`` names addresses. Give the figure about 0.3 inch of height per row. Gids:
    "lifeline:CPU n", "lifeline:firmware", "msg:KIND" per row (KIND: call, refused, dispatch,
    resume, power, mask, reset, note), "activation".
    """
    rows = list(trace) if not isinstance(trace, TraceLog) else messages(trace, event, window, symbolize)
    shown = sorted({c for m in rows for c in (m.src, m.dst) if c != FIRMWARE}) if cpus is None else list(cpus)
    column = {cpu: i for i, cpu in enumerate(shown)}
    column[FIRMWARE] = len(shown)
    rows = [m for m in rows if m.src in column and m.dst in column]
    artists: list[Artist] = []
    height = max(len(rows), 1)

    for who, x in column.items():
        name = "firmware" if who == FIRMWARE else f"CPU {who}"
        artists.append(ax.add_line(_line([x, x], [-0.6, height], style.GREY, "-", 1.5, f"lifeline:{name}")))
        artists.append(ax.text(x, -1.0, name, ha="center", va="bottom", fontsize=style.FONT, fontweight="bold",
                               bbox={"boxstyle": "round,pad=0.3", "facecolor": "#EEEEEE", "edgecolor": style.BLACK}))

    running: dict[int, list[int]] = {}  # cpu -> rows where a handler of this event started, still running
    labels: list[Text] = []
    for y, m in enumerate(rows):
        colour, linestyle, width = _STYLE[m.kind]
        x0, x1 = column[m.src], column[m.dst]
        if m.src == m.dst:
            artists.append(ax.text(x0, y, m.text, ha="center", va="center", fontsize=style.SMALL - 1,
                                   gid=f"msg:{m.kind}", bbox={"boxstyle": "round,pad=0.2", "facecolor": "#FFF6D5",
                                                              "edgecolor": style.GREY}))
            continue
        arrow = ax.annotate("", xy=(x1, y), xytext=(x0, y), annotation_clip=False,
                            arrowprops={"arrowstyle": "-|>", "color": colour, "linestyle": linestyle,
                                        "linewidth": width, "shrinkA": 0, "shrinkB": 0, "mutation_scale": 16})
        arrow.set_gid(f"msg:{m.kind}")
        artists.append(arrow)
        # Left-aligned just past the left lifeline (and its activation bar), on white: a label
        # centred between two lifelines ran over the handler's bar and became unreadable.
        label = ax.text(min(x0, x1) + LABEL_GAP, y - 0.12, m.text, ha="left", va="bottom",
                        fontsize=style.SMALL - 1, color=colour, zorder=3,
                        bbox={"boxstyle": "square,pad=0.05", "facecolor": "white", "edgecolor": "none",
                              "alpha": 0.85})
        label.set_in_layout(False)  # kept inside the axes at draw time (_KeepInside), not by the layout
        labels.append(label)
        artists.append(label)
        if m.kind == "dispatch":
            running.setdefault(m.dst, []).append(y)
        elif m.kind == "resume" and running.get(m.dst):
            top = running[m.dst].pop()
            artists.append(ax.add_patch(Rectangle((column[m.dst] - 0.06, top), 0.12, y - top, facecolor=style.BLUE,
                                                  edgecolor=style.BLACK, zorder=1, gid="activation")))

    if labels:
        artists.append(ax.add_artist(_KeepInside(labels)))
    ax.set_xlim(-0.7, _right_edge(ax, rows, column, len(shown) + 0.7))
    ax.set_ylim(height + 0.2, -2.4)
    # A row is labelled with its vtime where a new vtime first appears: rows are in the order
    # the firmware saw the facts, and the vCPUs' clocks interleave, so vtime may step back.
    stamps = [m.vtime for m in rows]
    origin = style.vtime_origin(min(stamps, default=0), max(stamps, default=0))
    texts = style.vtime_labels(stamps, origin) if stamps else []
    first: dict[int, int] = {}  # vtime -> the first row it labels
    for i, stamp in enumerate(stamps):
        first.setdefault(stamp, i)
    ax.set_yticks(range(len(rows)), labels=[t if first[v] == i else "" for i, (v, t) in enumerate(zip(stamps, texts,
                                                                                                       strict=True))],
                  fontsize=style.SMALL - 2)
    ax.tick_params(axis="y", length=0)
    ax.set_xticks([])
    after = f" after {style.vtime_text(origin)}" if origin else ""
    ax.set_ylabel(f"vtime{after} (rows in the order the firmware saw them)", fontsize=style.FONT - 2)
    ax.set_title(f"SDEI event {event}: its life across CPUs", fontsize=style.TITLE)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    return artists


def _right_edge(ax: Axes, rows: Sequence[Message], column: dict[int, int], least: float) -> float:
    """The x limit that keeps every label inside the axes, from each label's width in points
    (measured on its glyphs, no renderer needed) and the axes' width when the call is made."""
    figure = ax.get_figure()
    if not isinstance(figure, Figure) or not rows:  # none, or a SubFigure: no figure width to measure by
        return least
    width_pt = ax.get_position().width * figure.get_figwidth() * 72 * 0.92  # less the y tick labels' room
    widest = {m.text: TextPath((0, 0), m.text, size=style.SMALL - 1).get_extents().width for m in rows}
    # Solve for the right limit r: left + gap + width / (pt per unit) <= r, with pt per unit = width_pt / (r + 0.7).
    right = least
    for m in rows:
        start = min(column[m.src], column[m.dst]) + LABEL_GAP + 0.7
        share = widest[m.text] / width_pt  # the label's share of the axes' width
        if share < 0.95:
            right = max(right, start / (1 - share) - 0.7 + 0.05)
    # The lifelines' names must not run into each other: a unit (one lifeline to the next) at least
    # as wide as the widest name in its box. A label that then lacks room right of its lifeline
    # ends at the axes' edge instead (_KeepInside).
    names = ["firmware", *(f"CPU {cpu}" for cpu in column if cpu != FIRMWARE)]
    name_pt = max(TextPath((0, 0), name, size=style.FONT, prop=FontProperties(weight="bold")).get_extents().width
                  for name in names) + style.FONT  # the box's padding, and a little air
    return max(least, min(right, 0.9 * width_pt / name_pt - 0.7))


class _KeepInside(LabelPlacer):
    """Moves a message's label left, at draw time, when it would run past the axes' right edge.

    ``_right_edge`` widens the view for long labels from an estimate of the axes' width made
    before the layout; on a narrow figure a label can still be too long for the room right of
    its lifeline (a refused CPU_ON with three arguments and a result name). It then ends at the
    axes' edge, on its white box, over the lifelines to its left. Drawn just before the labels.
    """

    def __init__(self, labels: list[Text]) -> None:
        super().__init__(labels)
        self.starts = [label.get_position()[0] for label in labels]

    def place(self, ax: Axes, frame: Bbox, renderer: RendererBase) -> None:
        lo, hi = ax.get_xlim()
        per_unit = frame.width / (hi - lo) if hi != lo else 1.0
        for label, start in zip(self.labels, self.starts, strict=True):
            label.set_x(start)
            excess = Text.get_window_extent(label, renderer).x1 - frame.x1
            if excess > 0:
                label.set_x(max(lo + 0.02, start - (excess + 2) / per_unit))


def _line(xs: list[float], ys: list[float], colour: str, linestyle: LineStyleType, width: float, gid: str) -> Line2D:
    return Line2D(xs, ys, color=colour, linestyle=linestyle, linewidth=width, zorder=0, gid=gid)
