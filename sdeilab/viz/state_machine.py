"""An SDEI event's state machine, drawn from the very table the firmware enforces.

States and arrows come from ``sdeilab.firmware.sdei.table.TABLE`` (DEN0054A section 6.1, as
TF-A's sdei_state.c has it): an arrow for every action that moves an event to another state,
and inside each state's box the actions it accepts without moving (↻) and, given a trace, the
ones it refused (✗) with how often. Given a trace, each arrow's label counts the SdeiTransition
facts that took it, and the event's current state (the last transition's ``new``) is
highlighted. The layout is fixed by hand: idle states on top, running ones below, registration
flowing left to right, so the picture never moves between two runs.

Drawn in data units on an equal-aspect axes: give it a figure of about 12 x 8 inches.

``compact=True`` draws the same machine for a picture about 6.5 inches wide (the dashboard's,
shown at 624 CSS pixels: every text at 10-11 pt as displayed). Its data units are inches: give
it a figure of ``COMPACT_SIZE`` with the axes filling it. The six boxes keep their places (idle
states on top, running ones below), the highlight and every arrow with its counts; what does not
fit in a box moves out of it: a box names its state and counts the calls it accepted without
moving (↻) and the calls it refused (✗), and one line below the boxes says what the marks mean
and how many calls were refused before the table. The lists of refused calls and the status bits
(DEN0054 6.1) are the full drawing's.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.path import Path
from matplotlib.text import Text

from sdeilab.firmware.sdei.table import DENIED, LABELS, TABLE, Action, EventState
from sdeilab.trace.log import TraceLog
from sdeilab.trace.records import SdeiTransition
from sdeilab.viz import style
from sdeilab.viz.names import SDEI_REFUSALS
from sdeilab.viz.tables import Table

S = EventState
POSITIONS: dict[EventState, tuple[float, float]] = {
    S.UNREGISTERED: (0.0, 5.4), S.REGISTERED: (7.5, 5.4), S.ENABLED: (15.0, 5.4),
    S.UNREGISTER_PENDING: (0.0, 0.0), S.REGISTERED_RUNNING: (7.5, 0.0), S.ENABLED_RUNNING: (15.0, 0.0),
}
BOX = (4.8, 2.4)  # a state's box, width and height
BEND = 0.1  # how far an arrow bows to its left, as a fraction of its length (two directions: two sides)
BENDS = {(S.ENABLED, S.UNREGISTERED): -0.22,  # over the top, clear of REGISTERED
         (S.ENABLED_RUNNING, S.UNREGISTER_PENDING): 0.22}  # under the bottom, clear of REGISTERED_RUNNING
_BY_LABEL = {label: state for state, label in LABELS.items()}
TIMES = "\u00d7"  # the multiplication sign: "enable" TIMES "3" reads "taken three times"

# --- the compact drawing (the dashboard's), in inches on a figure of COMPACT_SIZE ---------------
COMPACT_SIZE = (6.5, 3.375)  # 624 x 324 CSS pixels at 96 per inch
COMPACT_TOP, COMPACT_BOTTOM = 2.54, 1.11  # the rows' centres
COMPACT_POSITIONS: dict[EventState, tuple[float, float]] = {
    S.UNREGISTERED: (0.85, COMPACT_TOP), S.REGISTERED: (3.25, COMPACT_TOP), S.ENABLED: (5.65, COMPACT_TOP),
    S.UNREGISTER_PENDING: (0.85, COMPACT_BOTTOM), S.REGISTERED_RUNNING: (3.25, COMPACT_BOTTOM),
    S.ENABLED_RUNNING: (5.65, COMPACT_BOTTOM),
}
COMPACT_BOX = (1.2, 0.68)  # as wide as "unregistered" in bold, the widest word
COMPACT_NAME, COMPACT_TEXT = 11, 10  # points: state names; counts, arrow labels and the summary line
COMPACT_GAP = 0.05  # between a box and the end of an arrow
COMPACT_PAIR = 0.07  # how far the two arrows of a pair between neighbours run above and below the row's centre
COMPACT_ARC = 0.44  # how high the arcs over the top and under the bottom bow (their control point)
# Where a vertical arrow runs, from its column's centre. Its label is to its left (the two of the
# right column: the dispatch arrow's label sits on it), so that no two labels share the band between
# the rows: a box is 1.2 inches wide, a label up to 1.2.
COMPACT_COLUMN_X = {(S.UNREGISTER_PENDING, S.UNREGISTERED): 0.5, (S.REGISTERED_RUNNING, S.REGISTERED): 0.5,
                    (S.ENABLED_RUNNING, S.ENABLED): -0.3, (S.ENABLED, S.ENABLED_RUNNING): 0.28}
# Shorter names for a label of a few lines: "complete TIMES 2" above "…and-resume TIMES 0" reads as
# SDEI_EVENT_COMPLETE twice, SDEI_EVENT_COMPLETE_AND_RESUME never.
COMPACT_ACTIONS = {"complete-and-resume": "\u2026and-resume"}


@dataclass
class Tally:
    """How often each kind of SdeiTransition fact occurred, keyed as the drawing needs them."""

    moves: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (old, new, action), old != new
    stays: Counter[tuple[str, str]] = field(default_factory=Counter)  # (state, action): accepted, no move
    refused: Counter[tuple[str, str, int]] = field(default_factory=Counter)  # (state, action, result)
    early: Counter[tuple[str, int]] = field(default_factory=Counter)  # (action, result): refused before the table
    current: str | None = None  # the last transition's new state

    @classmethod
    def of(cls, log: TraceLog, event: int | None, cpu: int | None) -> Tally:
        tally = cls()
        for fact in log.select(SdeiTransition, cpu=cpu, event=event):
            assert isinstance(fact, SdeiTransition)
            if fact.old not in _BY_LABEL:  # "-": refused before the table (no such event, bad parameters)
                tally.early[(fact.action, fact.result)] += 1
                continue
            tally.current = fact.new
            if fact.old != fact.new:
                tally.moves[(fact.old, fact.new, fact.action)] += 1
            elif _accepts(fact.old, fact.action):
                tally.stays[(fact.old, fact.action)] += 1
            else:
                tally.refused[(fact.old, fact.action, fact.result)] += 1
        return tally


def _accepts(state: str, action: str) -> bool:
    try:
        return TABLE[_BY_LABEL[state]][Action(action)].allowed
    except ValueError:  # an action the table does not know (the dispatcher's own, like cpu-on-reset)
        return True


@dataclass
class _Look:
    """What the picture shows beside the fixed table: every text and colour that a trace sets."""

    current: str | None  # the highlighted state
    stays: dict[str, str]  # state -> its "↻" line (compact: the count of calls accepted there)
    refused: dict[str, str]  # state -> its "✗" lines, for the states that refused something (not compact)
    edges: dict[str, tuple[str, str]]  # "OLD->NEW" -> (the arrow's label, its colour), the table's arrows
    extras: dict[str, str]  # "OLD->NEW" -> the label of a move the table does not list
    early: str | None  # refusals before the table (not compact)
    title: str
    rejected: dict[str, str] = field(default_factory=dict)  # compact: state -> the count of calls it refused
    summary: str | None = None  # compact: the line below the boxes

    @classmethod
    def of(cls, trace: TraceLog | None, event: int | None, cpu: int | None, compact: bool = False) -> _Look:
        tally = Tally.of(trace, event, cpu) if trace is not None else None
        if tally is not None and event is None:
            tally.current = None  # counts over every event, but no single event's state to highlight
        stays, refused, rejected = {}, {}, {}
        for state in POSITIONS:
            label = LABELS[state]
            actions = _accepted(state)
            if compact:
                if tally is not None:
                    stays[label] = f"↻ {sum(n for (s, _), n in tally.stays.items() if s == label)}"
                    rejected[label] = f"✗ {sum(n for (s, _, _), n in tally.refused.items() if s == label)}"
                continue
            if actions:
                counts = [f"{a} {TIMES}{tally.stays[(label, a)]}" if tally else a for a in actions]
                stays[label] = "↻ " + ", ".join(counts)
            if tally is not None:
                taken = sorted((a, r, n) for (s, a, r), n in tally.refused.items() if s == label)
                if taken:
                    # Two to a line: three ran past the box into the arrows' labels beside it.
                    lines = _wrap([f"{a} {TIMES}{n}" + (f" ({SDEI_REFUSALS.get(r, r)})" if r != DENIED else "")
                                   for a, r, n in taken], 2)
                    refused[label] = "✗ " + "\n   ".join(lines)
        names = COMPACT_ACTIONS if compact else {}
        edges = {}
        for (src, dst), actions in EDGES.items():
            moves = [tally.moves[(LABELS[src], LABELS[dst], a)] for a in actions] if tally else []
            text = "\n".join(f"{names.get(a, a)} {TIMES}{n}" for a, n in zip(actions, moves, strict=True)) \
                if tally else "\n".join(names.get(a, a) for a in actions)
            used = tally is None or sum(moves) > 0
            edges[f"{LABELS[src]}->{LABELS[dst]}"] = (text, style.BLACK if used else style.MUTED)
        extras: dict[str, list[str]] = {}
        early = summary = None
        if tally is not None:
            for (old, new, action), n in sorted(tally.moves.items()):
                # A move the table does not list (the dispatcher's cpu-on-reset, or a quirk's deviation).
                if new in _BY_LABEL and action not in EDGES.get((_BY_LABEL[old], _BY_LABEL[new]), []):
                    extras.setdefault(f"{old}->{new}", []).append(f"{names.get(action, action)} {TIMES}{n}")
            if compact:
                summary = (f"↻ accepted, state kept \u00b7 ✗ refused (DEN0054 6.1) \u00b7 "
                           f"{sum(tally.early.values())} refused before the table")
            elif tally.early:
                early = "✗ refused before the table (no such event, no dispatch, bad parameters):\n" + ", ".join(
                    f"{a} {TIMES}{n} ({SDEI_REFUSALS.get(r, r)})" for (a, r), n in sorted(tally.early.items()))
        where = f" on CPU {cpu}" if cpu is not None else ""
        title = f"SDEI event {event}{where}" if event is not None else "SDEI event states (DEN0054 6.1)"
        return cls(tally.current if tally else None, stays, refused, edges,
                   {name: "\n".join(texts) for name, texts in extras.items()}, early, title, rejected, summary)


def state_table(trace: TraceLog, event: int, cpu: int | None = None) -> Table:
    """What the compact drawing counts, spelled out: for each state of ``event`` (on ``cpu``) its
    status bits (DEN0054 6.1), the calls it accepted without moving, those it refused (with their
    result names) and the moves out of it, each with how often; the caption counts the calls
    refused before the table. The notebooks show it under ``state_machine(..., compact=True)``."""
    tally = Tally.of(trace, event, cpu)
    rows = []
    for state in POSITIONS:
        label = LABELS[state]
        accepted = [f"{a} {TIMES}{tally.stays[(label, a)]}" for a in _accepted(state)]
        refused = [f"{a} {TIMES}{n} ({SDEI_REFUSALS.get(r, r)})"
                   for (s, a, r), n in sorted(tally.refused.items()) if s == label]
        moves = [f"{a} → {LABELS[dst]} {TIMES}{tally.moves[(label, LABELS[dst], a)]}"
                 for (src, dst), actions in EDGES.items() if src is state for a in actions]
        rows.append((label + (" (now)" if tally.current == label else ""), f"0b{int(state):03b}",
                     ", ".join(accepted) or "-", ", ".join(refused) or "-", ", ".join(moves)))
    early = ", ".join(f"{a} {TIMES}{n} ({SDEI_REFUSALS.get(r, r)})" for (a, r), n in sorted(tally.early.items()))
    where = f" on CPU {cpu}" if cpu is not None else ""
    title = f"SDEI event {event}{where}, state by state" + (
        f"; refused before the table (no such event, no dispatch, bad parameters): {early}" if early else "")
    return Table(["state", "status", "↻ accepted, state kept", "✗ refused here", "moves out"], rows, title)


def _accepted(state: EventState) -> list[str]:
    """The actions ``state`` accepts without moving (DEN0054 6.1: the table's cells that stay)."""
    return [action.value for action, cell in TABLE[state].items() if cell.next is state]


def _table_edges() -> dict[tuple[EventState, EventState], list[str]]:
    """The table's arrows: (from, to) -> the actions that take an event from one state to the other."""
    edges: dict[tuple[EventState, EventState], list[str]] = {}
    for state, row in TABLE.items():
        for action, cell in row.items():
            if cell.next is not None and cell.next is not state:
                edges.setdefault((state, cell.next), []).append(action.value)
    return edges


EDGES = _table_edges()


def state_machine(ax: Axes, trace: TraceLog | None = None, event: int | None = None,
                  cpu: int | None = None, *, compact: bool = False) -> list[Artist]:
    """Draw the SDEI state machine on ``ax``; with a trace, count and highlight ``event`` (on ``cpu``).

    ``cpu`` keeps only the transitions that CPU made: a private event's state is per PE (for a
    shared event the highlight is then where that CPU's last call left it). Without ``event``
    the counts add up every event's transitions and nothing is highlighted. Gids:
    "state:LABEL" for each state's box, "current:LABEL" for the highlight, "edge:OLD->NEW" and
    "edge-label:OLD->NEW" for the arrows from the table, "extra:OLD->NEW" and
    "extra-label:OLD->NEW" for transitions the trace shows outside it, "refused-early".
    ``update_state_machine`` brings the artists up to date with a longer trace.

    ``compact``: the dashboard's drawing (module docstring), in inches on a figure of
    ``COMPACT_SIZE``; no title (the dashboard names the event above it). Its gids: as above, and
    "stays:LABEL" and "refusals:LABEL" for a box's two counts, "summary" for the line below.
    """
    look = _Look.of(trace, event, cpu, compact)
    if compact:
        return _draw_compact(ax, look)
    artists: list[Artist] = []
    # Patches go in with add_artist, not add_patch: add_patch widens the data limits to each
    # patch's path (an arrow's is computed in display units), half the view's time, and the
    # limits are set below anyway.

    for state, (x, y) in POSITIONS.items():
        label = LABELS[state]
        box = FancyBboxPatch((x - BOX[0] / 2, y - BOX[1] / 2), BOX[0], BOX[1], boxstyle="round,pad=0.1",
                             facecolor=_fill(look.current == label), edgecolor=style.BLACK,
                             linewidth=1.5, zorder=2, gid=f"state:{label}")
        artists.append(ax.add_artist(box))
        if look.current == label:
            halo = FancyBboxPatch((x - BOX[0] / 2, y - BOX[1] / 2), BOX[0], BOX[1], boxstyle="round,pad=0.22",
                                  facecolor="none", edgecolor=style.CURRENT, linewidth=5, zorder=1,
                                  gid=f"current:{label}")
            artists.append(ax.add_artist(halo))
        artists.append(ax.text(x, y + 0.75, label, ha="center", va="center", fontsize=style.FONT,
                               fontweight="bold", zorder=3))
        artists.append(ax.text(x, y + 0.35, f"status 0b{int(state):03b}", ha="center", va="center",
                               fontsize=style.SMALL - 2, color="#555555", zorder=3))
        if label in look.stays:
            artists.append(ax.text(x, y - 0.05, look.stays[label], ha="center", va="center",
                                   fontsize=style.SMALL - 1, zorder=3, gid=f"stays:{label}"))
        if label in look.refused:
            artists.append(ax.text(x, y - 0.35, look.refused[label], ha="center", va="top",
                                   fontsize=style.SMALL - 1, color=style.REFUSED, zorder=3,
                                   gid=f"refused:{label}"))

    for src, dst in EDGES:
        name = f"{LABELS[src]}->{LABELS[dst]}"
        text, colour = look.edges[name]
        artists += _arrow(ax, src, dst, BENDS.get((src, dst), BEND), text, colour, "-", f"edge:{name}",
                          f"edge-label:{name}")
    for name, text in look.extras.items():
        old, new = name.split("->")
        artists += _arrow(ax, _BY_LABEL[old], _BY_LABEL[new], -BEND * 2, text, style.PURPLE, "--",
                          f"extra:{name}", f"extra-label:{name}")
    if look.early is not None:
        artists.append(ax.text(7.5, -3.6, look.early, ha="center", va="top", fontsize=style.SMALL - 1,
                               color=style.REFUSED, gid="refused-early"))

    ax.set_title(look.title, fontsize=style.TITLE)
    ax.set_xlim(-2.8, 17.8)
    ax.set_ylim(-5.0, 9.0)
    ax.set_aspect("equal", adjustable="box")
    ax.set_axis_off()
    return artists


def update_state_machine(artists: list[Artist], trace: TraceLog, event: int | None = None,
                         cpu: int | None = None, *, compact: bool = False) -> list[Artist] | None:
    """Show ``trace`` with the artists of an earlier ``state_machine(ax, some_trace, ...)``, in place.

    Returns the artists it changed, or None when the picture needs artists that are not there
    or no longer needs some (refusals in a state that had none, a move outside the table, the
    highlight's first appearance): then draw it afresh. Afterwards the artists are what a
    ``state_machine`` call with ``trace`` would have made (the dashboard redraws only the
    pixels they cover: widgets/plots.py, checked against a fresh drawing in tests/test_widgets.py).
    """
    look = _Look.of(trace, event, cpu, compact)
    by_gid = {str(a.get_gid()): a for a in artists if a.get_gid() is not None}
    if ("summary" in by_gid) != compact:
        return None  # drawn the other way
    halos = [gid for gid in by_gid if gid.startswith("current:")]
    shape = ({gid for gid in by_gid if gid.startswith(("refused:", "extra:", "extra-label:", "refused-early"))},
             len(halos))
    wanted = ({f"refused:{label}" for label in look.refused} | {f"extra:{n}" for n in look.extras}
              | {f"extra-label:{n}" for n in look.extras} | ({"refused-early"} if look.early is not None else set()),
              int(look.current is not None))
    if shape != wanted or not artists or artists[0].axes is None:
        return None
    changed: list[Artist] = []

    def put(artist: Artist, text: str | None = None, colour: str | None = None, face: str | None = None) -> None:
        if isinstance(artist, Text) and text is not None and artist.get_text() != text:
            artist.set_text(text)
            changed.append(artist)
        if isinstance(artist, Text) and colour is not None and to_rgba(artist.get_color()) != to_rgba(colour):
            artist.set_color(colour)
            changed.append(artist)
        if isinstance(artist, FancyArrowPatch) and colour is not None and artist.get_edgecolor() != to_rgba(colour):
            artist.set_color(colour)
            changed.append(artist)
        if isinstance(artist, FancyBboxPatch) and face is not None and artist.get_facecolor() != to_rgba(face):
            artist.set_facecolor(face)
            changed.append(artist)

    for label in LABELS.values():
        put(by_gid[f"state:{label}"], face=_fill(look.current == label))
        if label in look.stays:
            put(by_gid[f"stays:{label}"], text=look.stays[label])
        if label in look.refused:
            put(by_gid[f"refused:{label}"], text=look.refused[label])
        if label in look.rejected:
            put(by_gid[f"refusals:{label}"], text=look.rejected[label])
    if look.summary is not None:
        put(by_gid["summary"], text=look.summary)
    if halos and halos[0] != f"current:{look.current}":
        halo = by_gid[halos[0]]
        assert isinstance(halo, FancyBboxPatch) and look.current is not None
        positions, box = (COMPACT_POSITIONS, COMPACT_BOX) if compact else (POSITIONS, BOX)
        x, y = positions[_BY_LABEL[look.current]]
        halo.set_bounds(x - box[0] / 2, y - box[1] / 2, box[0], box[1])
        halo.set_gid(f"current:{look.current}")
        changed.append(halo)
    for name, (text, colour) in look.edges.items():
        put(by_gid[f"edge:{name}"], colour=colour)
        put(by_gid[f"edge-label:{name}"], text=text, colour=colour)
    for name, text in look.extras.items():
        put(by_gid[f"extra-label:{name}"], text=text)
    if look.early is not None:
        put(by_gid["refused-early"], text=look.early)
    if not compact:
        ax = artists[0].axes
        assert isinstance(ax, Axes)  # the diagram's artists are drawn in one Axes
        if ax.get_title() != look.title:
            ax.set_title(look.title, fontsize=style.TITLE)
            changed.append(ax.title)
    return list(dict.fromkeys(changed))


def _draw_compact(ax: Axes, look: _Look) -> list[Artist]:
    """The compact drawing of ``look`` (``state_machine(..., compact=True)``), in inches."""
    artists: list[Artist] = []
    width, height = COMPACT_BOX
    for state, (x, y) in COMPACT_POSITIONS.items():
        label = LABELS[state]
        box = FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.03",
                             facecolor=_fill(look.current == label), edgecolor=style.BLACK,
                             linewidth=1.2, zorder=2, gid=f"state:{label}")
        artists.append(ax.add_artist(box))
        if look.current == label:
            halo = FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.07",
                                  facecolor="none", edgecolor=style.CURRENT, linewidth=3.5, zorder=1,
                                  gid=f"current:{label}")
            artists.append(ax.add_artist(halo))
        counted = label in look.stays
        # "unregister-pending" on two lines: the box is as wide as "unregistered", the widest word.
        name = label.replace("-", "-\n") if "-" in label else label
        artists.append(ax.text(x, y + (0.1 if counted else 0.0), name, ha="center", va="center",
                               fontsize=COMPACT_NAME, fontweight="bold", linespacing=1.1, zorder=3))
        if counted:
            artists.append(ax.text(x - 0.27, y - 0.2, look.stays[label], ha="center", va="center",
                                   fontsize=COMPACT_TEXT, zorder=3, gid=f"stays:{label}"))
            artists.append(ax.text(x + 0.27, y - 0.2, look.rejected[label], ha="center", va="center",
                                   fontsize=COMPACT_TEXT, color=style.REFUSED, zorder=3, gid=f"refusals:{label}"))

    for src, dst in EDGES:
        name = f"{LABELS[src]}->{LABELS[dst]}"
        text, colour = look.edges[name]
        path, (lx, ly), ha, va, on_line = _compact_route(src, dst)
        artists += _compact_arrow(ax, path, (lx, ly), ha, va, on_line, text, colour, "-", f"edge:{name}",
                                  f"edge-label:{name}")
    for name, text in look.extras.items():
        old, new = name.split("->")
        path, mid = _curve(COMPACT_POSITIONS, COMPACT_BOX, _BY_LABEL[old], _BY_LABEL[new], -BEND * 2, 0.08)
        artists += _compact_arrow(ax, path, mid, "center", "center", True, text, style.PURPLE, "--",
                                  f"extra:{name}", f"extra-label:{name}")
    if look.summary is not None:
        artists.append(ax.text(COMPACT_SIZE[0] / 2, 0.15, look.summary, ha="center", va="center",
                               fontsize=COMPACT_TEXT, color="#333333", gid="summary"))

    ax.set_xlim(0, COMPACT_SIZE[0])
    ax.set_ylim(0, COMPACT_SIZE[1])
    ax.set_aspect("equal", adjustable="box")
    ax.set_axis_off()
    return artists


def _compact_route(src: EventState, dst: EventState) -> tuple[Path, tuple[float, float], str, str, bool]:
    """The compact drawing's arrow from ``src`` to ``dst``: its path, where its label goes (the
    point, its alignment, and whether it sits on the arrow), by the rules of COMPACT_* above."""
    (x0, y0), (x1, y1) = COMPACT_POSITIONS[src], COMPACT_POSITIONS[dst]
    width, height = COMPACT_BOX
    if y0 == y1 and abs(x1 - x0) < 3:  # neighbours in a row: east above the centre line, west below
        paired = (dst, src) in EDGES
        east = x1 > x0
        y = y0 + (COMPACT_PAIR if east else -COMPACT_PAIR) * paired
        sign = 1 if east else -1
        start, end = (x0 + sign * (width / 2 + COMPACT_GAP), y), (x1 - sign * (width / 2 + COMPACT_GAP), y)
        label = ((x0 + x1) / 2, y + 0.04) if east else ((x0 + x1) / 2, y - 0.04)
        return _line(start, end), label, "center", "bottom" if east else "top", False
    if y0 == y1:  # over the top (idle row) or under the bottom (running row), clear of the middle box
        up = y0 == COMPACT_TOP
        sign = 1 if up else -1
        edge = y0 + sign * (height / 2 + COMPACT_GAP)
        start, end = (x0 - 0.35 * (1 if x1 < x0 else -1), edge), (x1 + 0.35 * (1 if x1 < x0 else -1), edge)
        ctrl = ((start[0] + end[0]) / 2, edge + sign * COMPACT_ARC)
        peak = edge + sign * COMPACT_ARC / 2
        path = Path([start, ctrl, end], [Path.MOVETO, Path.CURVE3, Path.CURVE3])
        return path, ((x0 + x1) / 2, peak + sign * 0.03), "center", "bottom" if up else "top", False
    # Between the rows, in a column.
    x = x0 + COMPACT_COLUMN_X[(src, dst)]
    down = y1 < y0
    sign = -1 if down else 1
    start, end = (x, y0 + sign * (height / 2 + COMPACT_GAP)), (x, y1 - sign * (height / 2 + COMPACT_GAP))
    middle = (x, (y0 + y1) / 2)
    if (src, dst) == (S.ENABLED, S.ENABLED_RUNNING):
        return _line(start, end), middle, "center", "center", True
    return _line(start, end), (x - 0.08, middle[1]), "right", "center", False


def _line(start: tuple[float, float], end: tuple[float, float]) -> Path:
    return Path([start, end], [Path.MOVETO, Path.LINETO])


def _compact_arrow(ax: Axes, path: Path, where: tuple[float, float], ha: str, va: str, on_line: bool, text: str,
                   colour: str, linestyle: str, gid: str, label_gid: str) -> list[Artist]:
    arrow = FancyArrowPatch(path=path, arrowstyle="-|>", mutation_scale=12, linewidth=1.3, color=colour,
                            linestyle=linestyle, zorder=1, gid=gid)
    # A label on its arrow hides the line behind it; one beside it needs no box.
    box = {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"} if on_line else None
    label = ax.text(*where, text, ha=ha, va=va, multialignment=ha if ha != "center" else "center",
                    fontsize=COMPACT_TEXT, color=colour, zorder=4, gid=label_gid, bbox=box, linespacing=1.1)
    return [ax.add_artist(arrow), label]


def _curve(positions: dict[EventState, tuple[float, float]], box: tuple[float, float], src: EventState,
           dst: EventState, bend: float, gap: float) -> tuple[Path, tuple[float, float]]:
    """A quadratic Bézier between two boxes, bowing ``bend`` to its left, and its middle point."""
    (x0, y0), (x1, y1) = positions[src], positions[dst]
    ctrl = ((x0 + x1) / 2 - bend * (y1 - y0), (y0 + y1) / 2 + bend * (x1 - x0))
    start, end = _leave(positions[src], ctrl, box, gap), _leave(positions[dst], ctrl, box, gap)
    mid = (0.25 * start[0] + 0.5 * ctrl[0] + 0.25 * end[0], 0.25 * start[1] + 0.5 * ctrl[1] + 0.25 * end[1])
    return Path([start, ctrl, end], [Path.MOVETO, Path.CURVE3, Path.CURVE3]), mid


def _fill(current: bool) -> str:
    return "#FDEBC8" if current else "white"


def _wrap(items: list[str], per_line: int) -> list[str]:
    return [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]


def _arrow(ax: Axes, src: EventState, dst: EventState, bend: float, text: str, colour: str, linestyle: str,
           gid: str, label_gid: str) -> list[Artist]:
    """A quadratic Bézier arrow between two boxes, bowing ``bend`` to its left, labelled at its middle."""
    (x0, y0), (x1, y1) = POSITIONS[src], POSITIONS[dst]
    ctrl = ((x0 + x1) / 2 - bend * (y1 - y0), (y0 + y1) / 2 + bend * (x1 - x0))
    start, end = _leave(POSITIONS[src], ctrl, BOX, 0.25), _leave(POSITIONS[dst], ctrl, BOX, 0.25)
    path = Path([start, ctrl, end], [Path.MOVETO, Path.CURVE3, Path.CURVE3])
    arrow = FancyArrowPatch(path=path, arrowstyle="-|>", mutation_scale=22, linewidth=2.0, color=colour,
                            linestyle=linestyle, zorder=1, gid=gid)
    mid = (0.25 * start[0] + 0.5 * ctrl[0] + 0.25 * end[0], 0.25 * start[1] + 0.5 * ctrl[1] + 0.25 * end[1])
    # The label sits on the outer side of the bow, so the two arrows of a pair keep theirs apart.
    out_x, out_y = -bend * (y1 - y0), bend * (x1 - x0)
    ha = "center" if abs(out_x) < 1e-9 else ("left" if out_x > 0 else "right")
    va = "center" if abs(out_y) < 1e-9 else ("bottom" if out_y > 0 else "top")
    label = ax.text(*mid, text, ha=ha, va=va, fontsize=style.SMALL, color=colour, zorder=4, gid=label_gid,
                    bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.85})
    return [ax.add_artist(arrow), label]


def _leave(centre: tuple[float, float], toward: tuple[float, float], box: tuple[float, float],
           gap: float) -> tuple[float, float]:
    """Where the line from a box's centre toward ``toward`` crosses the box's edge (plus ``gap``)."""
    dx, dy = toward[0] - centre[0], toward[1] - centre[1]
    half_w, half_h = box[0] / 2 + gap, box[1] / 2 + gap
    t = min(half_w / abs(dx) if dx else math.inf, half_h / abs(dy) if dy else math.inf)
    return centre[0] + t * dx, centre[1] + t * dy
