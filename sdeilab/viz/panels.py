"""Figures that answer one notebook question each, built on the timeline and the sequence diagram.

- ``call_ladder``: firmware calls as a ladder (one row per call, in the order the firmware saw
  them), each labelled with its name, arguments (addresses symbolized) and result by name. It
  reads where a timeline cannot: calls microseconds apart inside a window of seconds.
- ``cpu_on_panel``: a timeline around a CPU's CPU_ON, with what SDEI requires of it marked: the
  PE comes out of CPU_ON masked with its private events reset (DEN0054 5.1.10 and 5.2 on
  PSCI CPU_ON), or, where the SDEI implementation missed the CPU_ON, a handler of the
  previous life dispatched at the entry point.
- ``state_columns``: registers before and after, in columns, with what changed highlighted and
  where a value moved drawn as an arrow (COMPLETE vs COMPLETE_AND_RESUME, DEN0054 5.2.2).

Every mark a check cell may want to read carries a gid ("mark:...", "row:...", "cell:...") and
``marks`` lists them, so a notebook asserts on the figure it shows, not on a parallel computation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.text import Text

from sdeilab.lab.session import pstate_text
from sdeilab.trace.log import TraceLog
from sdeilab.trace.records import (
    Fact,
    PowerTransition,
    SdeiComplete,
    SdeiDispatch,
    SdeiMask,
    SdeiTransition,
    SmcccCall,
    SmcccReturn,
)
from sdeilab.trace.vocabulary import PowerCause, PowerState
from sdeilab.viz import style
from sdeilab.viz.names import result_name
from sdeilab.viz.sequence import FIRMWARE, Message, sequence
from sdeilab.viz.timeline import timeline

Symbolize = Callable[[int], str]  # an address to "symbol+offset", "" when unknown
NO_RETURN = ("CPU_OFF", "SYSTEM_OFF", "SYSTEM_RESET", "SDEI_EVENT_COMPLETE", "SDEI_EVENT_COMPLETE_AND_RESUME")
EVENT_STATUS_BITS = ("registered", "enabled", "running")  # SDEI_EVENT_STATUS bits 0..2 (DEN0054 5.1.7)


# --- words: addresses, PSTATE, calls and results ------------------------------------------------------

def address_text(address: int, symbolize: Symbolize | None = None) -> str:
    """``<symbol+off>`` when ``symbolize`` knows the address, else hex."""
    name = symbolize(address) if symbolize is not None else ""
    return f"<{name}>" if name else f"{address:#x}"


def pstate_hex(pstate: int) -> str:
    """``0x3c5 (EL1h nzcv DAIF)``: the raw value and what it says."""
    return f"{pstate:#x} ({pstate_text(pstate)})"


def call_text(name: str, args: Sequence[int], symbolize: Symbolize | None = None) -> str:
    """A call as a reader wants it: ``CPU_ON64(MPIDR 0x1, <secondary_entry>, ctx 0x1001)``, ``SDEI_EVENT_ENABLE(0)``."""
    if name.startswith("CPU_ON") and len(args) >= 2:
        ctx = f", ctx {args[2]:#x}" if len(args) > 2 else ""
        return f"{name}(MPIDR {args[0]:#x}, {address_text(args[1], symbolize)}{ctx})"
    if name.startswith("AFFINITY_INFO") and args:
        return f"{name}(MPIDR {args[0]:#x})"
    if name == "SDEI_EVENT_SIGNAL" and len(args) >= 2:
        return f"{name}({args[0]}, PE {args[1]:#x})"
    if name == "SDEI_EVENT_REGISTER" and len(args) >= 2:
        return f"{name}({args[0]}, {address_text(args[1], symbolize)})"
    if name.startswith("SDEI_EVENT_COMPLETE_AND_RESUME") and args:
        return f"{name}({address_text(args[0], symbolize)})"
    if name.startswith("SDEI_EVENT_") and name != "SDEI_EVENT_COMPLETE" and args:
        return f"{name}({args[0]})"  # the event number, as the specification writes it
    if name in ("SDEI_EVENT_COMPLETE", "CPU_OFF", "SYSTEM_OFF", "SDEI_PE_MASK", "SDEI_PE_UNMASK") or not args:
        return name
    return f"{name}({', '.join(hex(a) for a in args)})"


def result_text(name: str, x0: int) -> str:
    """The firmware's x0 for call ``name``, by name: SUCCESS, PENDING, ON, v1.0, "3 (registered, enabled)"."""
    if name == "SDEI_VERSION":
        return f"v{x0 >> 48 & 0x7FFF}.{x0 >> 32 & 0xFFFF}"  # major in bits 62:48, minor in 47:32 (DEN0054 5.1.1)
    if name == "SDEI_PE_MASK" and x0 in (0, 1):
        # TF-A answers 1 when the call masked an unmasked PE, 0 when it was masked already.
        return "1 (was unmasked)" if x0 else "0 (was masked)"
    if name == "SDEI_EVENT_STATUS" and 0 <= x0 < 8:
        bits = [word for bit, word in enumerate(EVENT_STATUS_BITS) if x0 >> bit & 1]
        return f"{x0} ({', '.join(bits) or 'unregistered'})"
    return result_name(x0, name)


def fact_text(fact: Fact, symbolize: Symbolize | None = None) -> str:
    """One fact in words, addresses symbolized and PSTATE decoded (for tables, not dumps)."""
    if isinstance(fact, SdeiDispatch):
        kind = "critical " if fact.critical else ""
        return (f"dispatch {kind}event {fact.event} ({fact.source}) to {address_text(fact.handler, symbolize)}, "
                f"interrupting {address_text(fact.interrupted_pc, symbolize)} "
                f"in {pstate_text(fact.interrupted_pstate)}")
    if isinstance(fact, SdeiComplete):
        return f"{fact.how} of event {fact.event}: resume at {address_text(fact.resume_pc, symbolize)}"
    if isinstance(fact, SdeiTransition):
        result = "" if not fact.result else f" → {result_name(fact.result)}"
        return f"event {fact.event}: {fact.action}, {fact.old} → {fact.new}{result}"
    if isinstance(fact, SdeiMask):
        return f"PE {'masked' if fact.masked else 'unmasked'} ({fact.cause})"
    if isinstance(fact, PowerTransition):
        return f"power {fact.old} → {fact.new} ({fact.cause})"
    if isinstance(fact, SmcccCall):
        return call_text(fact.name, fact.args, symbolize)
    if isinstance(fact, SmcccReturn):
        return f"{fact.name} → {result_text(fact.name, fact.results[0])}, answered by {fact.layer}"
    return f"{type(fact).__name__} {fact.payload()}"


# --- the call ladder ------------------------------------------------------------------------------------

def ladder_rows(log: TraceLog, facts: Iterable[Fact] | None = None, *, cpus: Sequence[int] | None = None,
                symbolize: Symbolize | None = None) -> list[Message]:
    """The rows of a call ladder: each firmware call with its result, and what the firmware did to a CPU
    on its own (powered it on for CPU_ON, masked it, dispatched or resumed it, reset its events).

    ``facts`` picks the facts (default: the whole log), ``cpus`` the CPUs whose facts count.
    """
    chosen = list(log) if facts is None else sorted(facts, key=lambda f: f.seq)
    returns = {(f.cpu, f.seq): f for f in log.of_kind(SmcccReturn)}
    next_seq = _next_of_cpu(log)
    rows: list[Message] = []
    for fact in chosen:
        if cpus is not None and fact.cpu not in cpus:
            continue
        row = _ladder_row(fact, returns, next_seq, symbolize)
        if row is not None:
            rows.append(row)
    return rows


def _next_of_cpu(log: TraceLog) -> Mapping[int, int]:
    """For each call's seq, the seq of its CPU's return if that is the CPU's next call-or-return fact."""
    answered: dict[int, int] = {}
    open_call: dict[int, int] = {}
    for fact in log.of_kind(SmcccCall, SmcccReturn):
        if isinstance(fact, SmcccCall):
            open_call[fact.cpu] = fact.seq
        elif fact.cpu in open_call:
            answered[open_call.pop(fact.cpu)] = fact.seq
    return answered


def _ladder_row(fact: Fact, returns: Mapping[tuple[int, int], SmcccReturn], answered: Mapping[int, int],
                symbolize: Symbolize | None) -> Message | None:
    def row(src: int, dst: int, text: str, kind: str) -> Message:
        return Message(fact.seq, fact.vtime, src, dst, text, kind)

    if isinstance(fact, SmcccCall):
        text = call_text(fact.name, fact.args, symbolize)
        ret = returns.get((fact.cpu, answered[fact.seq])) if fact.seq in answered else None
        if ret is None:
            return row(fact.cpu, FIRMWARE, f"{text}: no return", "call")
        x0 = ret.results[0] - (1 << 64) if ret.results[0] >> 63 else ret.results[0]
        refused = x0 < 0 and not fact.name.startswith("AFFINITY_INFO")
        return row(fact.cpu, FIRMWARE, f"{text} → {result_text(fact.name, ret.results[0])} [{ret.layer}]",
                   "refused" if refused else "call")
    if isinstance(fact, SdeiDispatch):
        return row(FIRMWARE, fact.cpu, f"dispatch event {fact.event} to {address_text(fact.handler, symbolize)}, "
                   f"interrupting {address_text(fact.interrupted_pc, symbolize)}", "dispatch")
    if isinstance(fact, SdeiComplete):
        return row(FIRMWARE, fact.cpu, f"resume at {address_text(fact.resume_pc, symbolize)}", "resume")
    if isinstance(fact, SdeiTransition) and fact.action == "cpu-on-reset":
        return row(FIRMWARE, fact.cpu, f"CPU_ON resets event {fact.event}: {fact.old} → {fact.new}", "reset")
    if isinstance(fact, SdeiMask) and fact.cause != "call":  # a call's own mask change is in its row
        cause = fact.cause.upper().replace("-", "_")  # "cpu-on" reads as the call: CPU_ON
        return row(FIRMWARE, fact.cpu, f"{'masked' if fact.masked else 'unmasked'} by {cause}", "mask")
    if isinstance(fact, PowerTransition) and fact.cause == PowerCause.CPU_ON and fact.old == PowerState.OFF:
        return row(FIRMWARE, fact.cpu, f"CPU {fact.cpu} powered on (on-pending)", "power")
    if isinstance(fact, PowerTransition) and fact.new == PowerState.OFF and fact.cause != PowerCause.CPU_OFF:
        return row(FIRMWARE, fact.cpu, f"CPU {fact.cpu} off ({fact.cause})", "power")
    return None


def call_ladder(ax: Axes, log: TraceLog, facts: Iterable[Fact] | None = None, *, cpus: Sequence[int] | None = None,
                symbolize: Symbolize | None = None, title: str = "firmware calls, in the order the firmware saw them"
                ) -> list[Message]:
    """Draw the call ladder of ``facts`` on ``ax`` (a lifeline per CPU and one for the firmware); returns
    its rows. Each row's label carries the gid "row:KIND" (call, refused, power, mask, dispatch, resume,
    reset). Give the figure about 0.32 inch of height per row, plus 2."""
    rows = ladder_rows(log, facts, cpus=cpus, symbolize=symbolize)
    artists = sequence(ax, rows, 0, cpus=cpus)
    texts = [a for a in artists if isinstance(a, Text) and a.get_text() and a.get_position()[1] > -0.5]
    # sequence() draws one label per row after that row's arrow (a note row has its text only),
    # in row order: the labels are the texts below the lifelines' names (y -1), one per row.
    for text in texts:
        at = text.get_position()[1]
        y = round(at + 0.12) if text.get_verticalalignment() == "bottom" else round(at)
        if 0 <= y < len(rows):
            text.set_gid(f"row:{rows[y].kind}")
    # The title says the rows are in the firmware's order: the y label keeps only the time origin,
    # short enough for a ladder of a few rows.
    ax.set_ylabel(ax.get_ylabel().split(" (")[0], fontsize=style.FONT - 2)
    ax.set_title(title, fontsize=style.TITLE)
    return rows


def ladder_labels(ax: Axes) -> list[str]:
    """The row labels of a call ladder drawn on ``ax``, top to bottom: what the reader sees."""
    texts = [t for t in ax.texts if (t.get_gid() or "").startswith("row:")]
    return [t.get_text() for t in sorted(texts, key=lambda t: t.get_position()[1])]


# --- the CPU_ON panel ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CpuOnFindings:
    """What ``cpu_on_panel`` marked: read by a check cell, drawn by the panel."""

    power_on: int  # vtime CPU ``cpu`` turned on
    stale: SdeiDispatch | None  # a dispatch at that power-on: a handler of the previous life
    cpu_on_mask: SdeiMask | None  # the SdeiMask(cause="cpu-on") of that power-on
    resets: tuple[SdeiTransition, ...]  # cpu-on-reset transitions of that power-on


def cpu_on_findings(log: TraceLog, cpu: int, power_on: PowerTransition) -> CpuOnFindings:
    """What happened to ``cpu`` as ``power_on`` (its on-pending -> on transition) made it run."""
    at = power_on.vtime
    dispatches = [f for f in log.of_kind(SdeiDispatch, cpu=cpu) if isinstance(f, SdeiDispatch) and f.vtime == at]
    masks = [f for f in log.of_kind(SdeiMask, cpu=cpu) if isinstance(f, SdeiMask) and f.cause == PowerCause.CPU_ON
             and f.vtime == at]
    resets = tuple(f for f in log.of_kind(SdeiTransition, cpu=cpu)
                   if isinstance(f, SdeiTransition) and f.action == "cpu-on-reset" and f.vtime == at)
    return CpuOnFindings(at, dispatches[0] if dispatches else None, masks[0] if masks else None, resets)


NOTE_DEPTH = 0.75  # the marks' words: this far below the last lane's edge (the y axis points down)


def cpu_on_panel(ax: Axes, log: TraceLog, cpu: int, window: tuple[int, int], *, cpus: Sequence[int] | None = None,
                 symbolize: Symbolize | None = None, title: str = "") -> CpuOnFindings:
    """A timeline of ``window`` with ``cpu``'s last power-on by CPU_ON in it marked: either it came out
    masked (gid "mark:cpu-on-mask", and "mark:cpu-on-reset" for its private events), or it did not
    ("mark:no-cpu-on-mask"); and a handler dispatched at that instant ("mark:stale-dispatch", naming
    the handler and the interrupted PC). The words go below the last lane, left and right of the
    power-on, each with an arrow straight up to what it is about: the power-on wants to lie in the
    middle third of the window.
    """
    lanes = list(cpus) if cpus is not None else [cpu]
    timeline(ax, log, cpus=lanes, window=window)
    ons = [f for f in log.of_kind(PowerTransition, cpu=cpu) if isinstance(f, PowerTransition)
           and f.cause == PowerCause.CPU_ON and f.new == PowerState.ON and window[0] <= f.vtime <= window[1]]
    if not ons:
        raise ValueError(f"no CPU_ON of CPU {cpu} in {window}")
    found = cpu_on_findings(log, cpu, ons[-1])
    lane = lanes.index(cpu)
    words = len(lanes) - 0.5 + NOTE_DEPTH
    ax.set_ylim(words + 0.55, -0.5)
    at, ok, bad = found.power_on, style.GREEN, style.VERMILLION
    # Left of the power-on: the mask, which is (or is not) there from that instant on.
    if found.cpu_on_mask is not None:
        _note(ax, "mark:cpu-on-mask", "✓ CPU_ON masks the PE\n(SdeiMask, cause cpu-on)", (at, lane), words,
              "left", ok)
    else:
        _note(ax, "mark:no-cpu-on-mask", f"✗ no cpu-on mask:\nCPU {cpu} comes up unmasked", (at, lane), words,
              "left", bad)
    # Right of it: what else happened at that instant, to the events of the previous life.
    if found.stale is not None:
        d = found.stale
        _note(ax, "mark:stale-dispatch", f"✗ stale dispatch at {address_text(d.interrupted_pc, symbolize)}:\n"
              f"event {d.event} → {address_text(d.handler, symbolize)}", (d.vtime, lane + HANDLER_BOTTOM), words,
              "right", bad)
    elif found.resets:
        resets = "\n".join(f"event {r.event}: {r.old} → {r.new}" for r in found.resets)
        _note(ax, "mark:cpu-on-reset", f"✓ private events reset\n{resets}", (at, lane), words, "right", ok)
    if title:
        ax.set_title(title, fontsize=style.TITLE)
    return found


HANDLER_BOTTOM = 0.16  # the lower edge of a lane's handler band (timeline.HANDLER_BAND)


def _note(ax: Axes, gid: str, text: str, point: tuple[float, float], y: float, side: str, colour: str) -> None:
    """Words at height ``y``, on ``side`` of ``point``'s x, with an arrow from their inner top corner
    straight up to ``point``: two notes of one instant, left and right, never cross arrows."""
    right = side == "right"
    lo, hi = ax.get_xlim()
    gap = 0.015 * (hi - lo) * (1 if right else -1)  # the boxes' padding apart: two notes of one instant
    note = ax.annotate(text, point, xytext=(point[0] + gap, y), textcoords="data", ha="left" if right else "right",
                       multialignment="left", va="center", fontsize=style.SMALL + 1, fontweight="bold", color=colour,
                       zorder=8,
                       annotation_clip=False, linespacing=1.3,
                       bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": colour},
                       arrowprops={"arrowstyle": "-|>", "color": colour, "linewidth": 2.0, "shrinkA": 0,
                                   "shrinkB": 1, "mutation_scale": 18, "relpos": (0.0 if right else 1.0, 1.0)})
    note.set_gid(gid)


def marks(ax: Axes) -> dict[str, str]:
    """The marks drawn on ``ax`` by this module's panels: gid -> the words shown."""
    return {gid: t.get_text() for t in ax.texts if (gid := t.get_gid() or "").startswith(("mark:", "cell:"))}


# --- registers before and after ------------------------------------------------------------------------

CHANGED = "#FBE3C4"  # a pale orange: the cells that differ from the first column


def state_columns(ax: Axes, rows: Sequence[str], columns: Sequence[tuple[str, Mapping[str, str]]], *,
                  moves: Sequence[tuple[str, str]] = (), title: str = "") -> dict[tuple[str, str], bool]:
    """A grid of register values: one column per moment (the first is the reference), one row per
    register. A cell that differs from the first column's value of its row is shaded and bold; each
    (source row, target row) in ``moves`` draws an arrow from the first column's source cell to the last
    column's target cell (the interrupted PC becoming ELR_EL1). Cells carry gids "cell:COLUMN:ROW".
    Returns, per (column, row), whether the cell was shown as changed.
    """
    ax.set_xlim(0, len(columns) + 0.55)
    ax.set_ylim(len(rows) + 0.1, -0.9)
    ax.set_axis_off()
    reference = columns[0][1]
    changed: dict[tuple[str, str], bool] = {}
    for r, name in enumerate(rows):
        ax.text(0.5, r, name, ha="right", va="center", fontsize=style.FONT, fontweight="bold", family="monospace")
    for c, (heading, values) in enumerate(columns):
        x = 0.55 + c + 0.5
        ax.text(x, -0.75, heading, ha="center", va="center", fontsize=style.FONT, fontweight="bold")
        for r, name in enumerate(rows):
            differs = c > 0 and values.get(name) != reference.get(name)
            changed[(heading, name)] = differs
            ax.add_patch(FancyBboxPatch((x - 0.46, r - 0.36), 0.92, 0.72, boxstyle="round,pad=0,rounding_size=0.08",
                                        facecolor=CHANGED if differs else "white",
                                        edgecolor=style.ORANGE if differs else style.GREY, linewidth=1.6 if differs
                                        else 1.0, zorder=1))
            ax.text(x, r, values.get(name, ""), ha="center", va="center", fontsize=style.SMALL + 1,
                    fontweight="bold" if differs else "normal", family="monospace", zorder=3,
                    gid=f"cell:{heading}:{name}")
    last = 0.55 + len(columns) - 0.5
    for source, target in moves:
        # From the reference cell's right edge to the target cell's left edge, curving between the rows.
        start, end = (0.55 + 0.5 + 0.46, rows.index(source)), (last - 0.46, rows.index(target))
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=18, color=style.BLUE, linewidth=2.0,
                                     connectionstyle="arc3,rad=0.12", zorder=2, gid=f"move:{source}:{target}"))
    if title:
        ax.set_title(title, fontsize=style.TITLE)
    return changed


def panel_artists(ax: Axes, prefix: str) -> list[Artist]:
    """The artists on ``ax`` whose gid starts with ``prefix`` (a check cell reads them)."""
    return [a for a in ax.get_children() if (a.get_gid() or "").startswith(prefix)]
