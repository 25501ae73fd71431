"""The dashboard's plots: the per-event SDEI state machine and the per-CPU timeline, as PNG images.

The drawing is sdeilab.viz's (pure matplotlib on an Axes); this module only makes a Figure
(no pyplot: nothing global changes, and it works under any backend), calls the view, and
renders it. PNG in an ``ipywidgets.Image`` shows the same in JupyterLab, Voila and a headless
test. Where sdeilab.viz lacks a view, a small stand-in draws the counts of SDEI transitions, so
the dashboard still works (and says so in the figure's title).

Readable where shown. Each picture is as many inches wide as the CSS pixels it is shown at over
96, rendered at twice that for HiDPI screens, so the views' compact drawings (``compact=True``:
10-11 pt text, sdeilab.viz.state_machine and sdeilab.viz.timeline) are read at their own point
sizes: on a projector too. The state machine keeps the six boxes, the highlight and every
arrow's counts, with the refusal lists and status bits left to the full drawing; the timeline
shows the burst of firmware calls around the debugger's stop (``recent_window``), with a cursor
at the stop and its legend below the time axis.

Redrawing fast. Matplotlib 3.11's Agg renders every glyph with FreeType at every draw (about
0.1-0.2 ms a glyph here), so a picture full of labels costs 0.1-0.2 s however little changed,
and ``tight_layout`` measures every text again (benchmarks/dashboard_speed.py breaks a drawing
down). A :class:`Picture` keeps its Figure from one drawing to the next and paints only what
changed, and the result is, pixel for pixel, the picture a fresh Figure gives (tests/test_widgets.py
compares them):

* The layout is the drawing's own (the dashboard's pictures put their axes where they go: in
  inches, or in a frame of its own) or ``tight_layout``'s, computed on a fresh Figure and kept
  while what it depends on stays; when that changes it is computed again as on a fresh Figure,
  and if the axes move the picture starts over on a fresh Figure.
* The state machine ("tiles"): its geometry is fixed, and a step changes a few labels and moves
  the highlight. ``sdeilab.viz.update_state_machine`` changes the artists in place; each artist
  is described (what it shows, where); the picture is cut in 32-pixel tiles, each known by the
  descriptions of the artists that reach into it, and only the tiles whose artists changed are
  painted again, or taken from a cache of tiles seen before.
* The timeline ("layers"): it moves as a whole (its window follows the stop), but its legend
  (which lists what the whole trace has) and lane names stay; they are drawn once into a
  background, which each drawing restores before drawing the rest of the axes over it.
* The PNG is written at zlib level 1 without row filters: a quarter of the time of matplotlib's
  savefig (Pillow at level 6, trying every filter), for a file about as big (these pictures are
  mostly flat colour). The state machine's is deflated a row of tiles at a time, and only the
  rows of tiles that changed are deflated again.
"""

from __future__ import annotations

import struct
import zlib
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Iterable
from operator import attrgetter
from typing import Any, Literal

import numpy as np
from matplotlib import rcParams
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch
from matplotlib.path import Path
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from sdeilab.trace import SdeiTransition, TraceLog
from sdeilab.viz.state_machine import COMPACT_SIZE, Tally, state_machine
from sdeilab.viz.timeline import COMPACT_FONT, compact_legend_height, recent_window, timeline

# Pictures are rendered at twice the CSS pixels they are shown at, so that a screen of device-pixel
# ratio 2 shows every pixel (and one of ratio 1 a sharp reduction); the Lab sizes each <img> from
# these, so the browser never stretches a picture out of its aspect. A figure is as many inches
# wide as the picture's CSS pixels over 96 (CSS's pixels per inch), so that a font's points are
# the points shown: the views' compact drawings use 10-11 pt, the least that reads on a projector
# (sdeilab.viz.quality checks it). The dashboard never shows a picture narrower than its CSS width
# (lab.py: on a narrow page the pictures go below the code; on a wide and tall one they grow, up to
# 1.25 times), and at 1440 x 900 both pictures must fit under the controls, in Voila too, where the
# notebook's heading is above them (tests/test_browser.py): 594 CSS pixels for both.
PIXEL_RATIO = 2
CSS_DPI = 96
STATE_SIZE = COMPACT_SIZE  # inches: the compact state machine is drawn in inches
STATE_DISPLAY = (round(STATE_SIZE[0] * CSS_DPI), round(STATE_SIZE[1] * CSS_DPI))  # CSS pixels: 624 x 324
TIMELINE_DISPLAY = (624, 270)
TIMELINE_SIZE = (TIMELINE_DISPLAY[0] / CSS_DPI, TIMELINE_DISPLAY[1] / CSS_DPI)
STATE_DPI = TIMELINE_DPI = CSS_DPI * PIXEL_RATIO  # 1248 x 648 and 1248 x 540 pixels
# The timeline's frame, in inches: the lane names left of the axes, room for the last tick label
# right of them, the cursor's "now" above them; below them the time axis and the legend
# (sdeilab.viz.timeline.compact_legend_height), and a margin.
TIMELINE_LEFT, TIMELINE_RIGHT, TIMELINE_TOP, TIMELINE_MARGIN = 0.58, 0.36, 0.22, 0.06


def _view(name: str) -> Callable[..., Any] | None:
    try:
        from sdeilab import viz
    except ImportError:
        return None
    return getattr(viz, name, None)


def placeholder(ax: Axes, trace: TraceLog, event: int | None = None, cpu: int | None = None) -> list[Any]:
    """Stand-in view: how often each SDEI action was taken (accepted or refused) for ``event``."""
    counts: Counter[str] = Counter()
    for fact in trace.of_kind(SdeiTransition):
        if (event is None or fact.event == event) and (cpu is None or fact.cpu == cpu):
            counts[fact.action] += 1
    names = sorted(counts)
    bars = ax.barh(names, [counts[n] for n in names], color="#4C72B0")
    ax.set_xlabel("transitions taken")
    ax.set_title("SDEI transitions (placeholder view)")
    return [bars]


def draw_state_machine(ax: Axes, trace: TraceLog, event: int | None, cpu: int | None) -> list[Artist]:
    """The dashboard's state machine on ``ax``: the compact drawing, its axes filling the figure
    (its data units are inches). No title: the dashboard names the event and CPU above it."""
    ax.set_position((0.0, 0.0, 1.0, 1.0))
    return list(state_machine(ax, trace, event=event, cpu=cpu, compact=True))


def state_machine_png(trace: TraceLog, event: int | None, cpu: int | None, size: tuple[float, float] = STATE_SIZE,
                      dpi: int = STATE_DPI, picture: Picture | None = None) -> bytes:
    """The state machine of ``event`` (on ``cpu``), 1248 x 648 pixels by default, shown at half
    that (``STATE_DISPLAY``): sharp on a screen of device-pixel ratio 2, such as a laptop's.

    The view's compact drawing (sdeilab.viz.state_machine: 6.5 inches wide, its text at 10-11 pt).
    ``picture`` keeps the figure for the next call, which then paints only what changed;
    without it the figure is new.
    """
    view, update_view = _view("state_machine"), _view("update_state_machine")

    def draw(ax: Axes) -> list[Artist]:
        if view is None:
            return placeholder(ax, trace, event, cpu)
        return draw_state_machine(ax, trace, event, cpu)

    def update(artists: list[Artist]) -> list[Artist] | None:
        if update_view is None:
            return None
        changed = update_view(artists, trace, event=event, cpu=cpu, compact=True)
        return None if changed is None else list(changed)

    # The stand-in's bars (axes with ticks) are not described: it is drawn afresh every time.
    return (picture or Picture()).png(draw, size, dpi, kind="state_machine" if view else "placeholder",
                                      redraw="tiles" if view else None, update=update,
                                      layout="fixed" if view else "tight")


def current_state(trace: TraceLog, event: int, cpu: int | None) -> str | None:
    """The state the state machine highlights for ``event`` (on ``cpu``): the same rule, Tally's."""
    return Tally.of(trace, event, cpu).current


def timeline_now(trace: TraceLog, stop: int | None) -> int:
    """Where the timeline's cursor goes: the debugger's stop at vtime ``stop`` (the clock of the
    CPU that stopped: another CPU's facts may lie later), or, while a run goes on (None), the
    latest fact."""
    return stop if stop is not None else trace.max_vtime()


def draw_timeline(ax: Axes, trace: TraceLog, cpus: int, now: int) -> list[Artist]:
    """The dashboard's timeline on ``ax``: the compact drawing of the window that follows the stop
    at ``now`` (``sdeilab.viz.timeline.recent_window``: the last few firmware calls, ``now``
    a tenth of the width or more from the right edge), with the cursor, in the frame of
    ``TIMELINE_*`` (the legend's rows decide where the axes end)."""
    fig = ax.figure
    assert isinstance(fig, Figure)
    width, height = fig.get_size_inches()
    if len(trace) == 0:
        ax.set_position((0.0, 0.0, 1.0, 1.0))
        ax.set_axis_off()
        return [ax.text(0.5, 0.5, "no facts yet", ha="center", va="center", transform=ax.transAxes,
                        fontsize=COMPACT_FONT)]
    artists = list(timeline(ax, trace, cpus=list(range(cpus)), window=recent_window(trace, now), now=now,
                            compact=True))
    bottom = compact_legend_height(ax) + TIMELINE_MARGIN
    ax.set_position((TIMELINE_LEFT / width, bottom / height, 1 - (TIMELINE_LEFT + TIMELINE_RIGHT) / width,
                     1 - (bottom + TIMELINE_TOP) / height))
    return artists


def timeline_png(trace: TraceLog, cpus: int, now: int | None = None, size: tuple[float, float] = TIMELINE_SIZE,
                 dpi: int = TIMELINE_DPI, picture: Picture | None = None) -> bytes:
    """The per-CPU timeline around the debugger's stop at vtime ``now`` (default: the latest fact),
    1248 x 540 pixels by default, shown at half that (``TIMELINE_DISPLAY``). ``picture``: as for
    :func:`state_machine_png`."""
    view = _view("timeline")
    kind = "placeholder" if view is None else "empty" if len(trace) == 0 else "timeline"
    at = timeline_now(trace, now)

    def draw(ax: Axes) -> list[Artist]:
        if view is None:
            return placeholder(ax, trace)
        return draw_timeline(ax, trace, cpus, at)

    # The legend (below the time axis) and the lane names keep still while the window moves.
    return (picture or Picture()).png(draw, size, dpi, kind=kind, redraw="layers" if kind == "timeline" else None,
                                      layout="tight" if view is None else "fixed")


Redraw = Literal["tiles", "layers"] | None
Layout = Literal["tight", "fixed"]  # tight_layout, or the axes where the drawing put them
Frame = tuple[str, tuple[float, ...], int, Redraw, Layout]  # kind, size, dpi, redraw, layout (Plotter.png)
Shape = tuple[Artist, Hashable, Bbox | None]  # an artist, what it shows, where (None: nowhere)
TILE = 32  # pixels a side: a label or a box spans a few tiles
CACHED_TILES = 2048  # 8 MB of 32 x 32 RGBA tiles (6 pictures' worth), the oldest forgotten first


class Picture:
    """A Figure kept from one drawing to the next, and the means to redraw only what changed.

    One per picture the dashboard shows; it is not thread-safe (the Lab draws one at a time).
    """

    def __init__(self) -> None:
        self.figure: Figure | None = None
        self._frame: Frame | None = None  # the kind of drawing, size and dpi the figure was made for
        self._layout: Hashable = None  # what the kept layout was computed for
        self._pixels: np.ndarray | None = None  # "tiles": the picture last encoded, rows top down
        self._shown: list[Hashable] = []  # "tiles": what each tile of it shows
        self._known: dict[Hashable, Bbox | None] = {}  # "tiles": the extents of what it shows
        self._cache: OrderedDict[tuple[int, Hashable], np.ndarray] = OrderedDict()  # tiles seen before
        self._bands: list[bytes | None] = []  # "tiles": its PNG data, deflated a row of tiles at a time
        self._background: Any = None  # "layers": the still artists alone, a region of the canvas
        self._artists: list[Artist] = []  # what the view drew last
        self._shapes: dict[Artist, tuple[Hashable, Bbox | None]] = {}  # "tiles": each of its artists described
        self.fast = 0  # drawings that took the fast path
        self.tiles_drawn = 0  # tiles the fast path drew, not found unchanged or in the cache

    def png(self, draw: Callable[[Axes], list[Artist]], size: tuple[float, float], dpi: int, *, kind: str,
            redraw: Redraw, update: Callable[[list[Artist]], list[Artist] | None] | None = None,
            layout: Layout = "tight") -> bytes:
        """Draw with ``draw`` (a view on the Axes, returning its artists) and return the PNG.

        ``redraw``: how to do it fast when the figure is kept (None: always a fresh Figure).
        ``update``, if given, brings the artists ``draw`` returned last time up to date in
        place and returns those it changed (None: it can't, draw again); for "tiles" only.
        ``layout``: "tight" lays the figure out with ``tight_layout``; "fixed" leaves the axes
        where ``draw`` put them (a drawing in inches, or a frame of its own).
        """
        frame: Frame = (kind, tuple(size), dpi, redraw, layout)
        if (self.figure is None or frame != self._frame or redraw is None
                or (redraw == "tiles" and self._pixels is None)):
            return self._afresh(draw, size, dpi, frame)
        try:
            ax = self.figure.axes[0]
            changed = update(self._artists) if update is not None and redraw == "tiles" and self._artists else None
            if changed is None:
                _clear(ax)
                self._artists = draw(ax)
            result = self._tiles(ax, changed) if redraw == "tiles" else self._layers(ax)
        except BaseException:
            self.figure = None  # half updated: the next drawing starts afresh
            raise
        if result is None:  # the layout moved, or something the fast path can't describe
            return self._afresh(draw, size, dpi, frame)
        self.fast += 1
        return result

    # --- a fresh Figure: the reference every fast path must agree with -------------------
    def _afresh(self, draw: Callable[[Axes], list[Artist]], size: tuple[float, float], dpi: int,
                frame: Frame) -> bytes:
        fig = Figure(figsize=size, dpi=dpi)
        canvas = FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        self._artists = draw(ax)
        if frame[4] == "tight":
            fig.tight_layout()
        canvas.draw()
        self.figure, self._frame, self._background, self._pixels = fig, frame, None, None
        self._shown, self._known, self._shapes = [], {}, {}
        self._cache.clear()
        renderer = canvas.get_renderer()
        pixels = np.asarray(canvas.buffer_rgba())
        if frame[3] == "tiles":
            shapes = _shapes(ax, renderer, {}, {})
            if shapes is not None:
                self._pixels, self._layout = pixels.copy(), _layout_key(ax, shapes, frame[4] == "tight")
                self._shown = _tile_keys(shapes, self._pixels.shape, fig.dpi)[0]
                self._known = {what: where for _, what, where in shapes}
                self._shapes = {artist: (what, where) for artist, what, where in shapes}
                for index, shown in enumerate(self._shown):
                    self._remember(index, shown)
                self._bands = [None] * -(-pixels.shape[0] // TILE)
                return encode_png(pixels, self._bands)
        elif frame[3] == "layers":
            self._layout = _layers_key(ax) if _layers_fit(ax, renderer) else object()  # object(): no match
        return encode_png(pixels)

    # --- tiles: draw again only the tiles whose artists changed -------------------------
    def _tiles(self, ax: Axes, changed: list[Artist] | None) -> bytes | None:
        """The picture in tiles, each known by what reaches into it (the descriptions of those
        artists, in drawing order): a tile that shows what it showed keeps its pixels, one that
        shows what some earlier picture showed there takes them from the cache (stepping through
        an SDEI handler moves the highlight back and forth between the same boxes), and the rest
        are drawn: every artist that reaches into one of them is drawn whole, in drawing order,
        on a cleared canvas, and only those tiles are copied. Inside a tile the pixels are
        a full drawing's, as nothing else reaches into it. ``changed``: the artists an update
        changed in place (the others are described as they were); None: all are new."""
        assert self.figure is not None and self._pixels is not None and self._frame is not None
        fig, pixels, frame = self.figure, self._pixels, self._frame
        canvas = fig.canvas
        assert isinstance(canvas, FigureCanvasAgg)
        renderer = canvas.get_renderer()
        ax.apply_aspect()
        moved = set(changed or [])
        kept = {} if changed is None else {a: d for a, d in self._shapes.items() if a not in moved}
        shapes = _shapes(ax, renderer, self._known, kept)
        if shapes is None:
            return None
        layout = _layout_key(ax, shapes, frame[4] == "tight")
        if layout != self._layout:
            if frame[4] != "tight" or not _same_layout(ax):
                return None
            self._layout = layout
        self._known = {what: where for _, what, where in shapes}
        self._shapes = {artist: (what, where) for artist, what, where in shapes}
        shown, reach = _tile_keys(shapes, pixels.shape, fig.dpi)
        rows, cols = -(-pixels.shape[0] // TILE), -(-pixels.shape[1] // TILE)
        missing = np.zeros((rows, cols), dtype=bool)
        for index, what in enumerate(shown):
            if what == self._shown[index]:
                continue
            self._bands[index // cols] = None
            cached = self._cache.get((index, what))
            if cached is None:
                missing.flat[index] = True
            else:
                self._cache.move_to_end((index, what))
                pixels[_tile(index, cols)] = cached
        if missing.any():
            renderer.clear()
            fig.patch.draw(renderer)
            for (artist, _, _), (top, bottom, left, right) in zip(shapes, reach, strict=True):
                if missing[top:bottom, left:right].any():
                    artist.draw(renderer)
            drawn = np.asarray(canvas.buffer_rgba())
            for index in np.flatnonzero(missing).tolist():
                pixels[_tile(index, cols)] = drawn[_tile(index, cols)]
                self._remember(index, shown[index])
            self.tiles_drawn += int(missing.sum())
        self._shown = shown
        return encode_png(pixels, self._bands)

    def _remember(self, index: int, shown: Hashable) -> None:
        assert self._pixels is not None
        cols = -(-self._pixels.shape[1] // TILE)
        self._cache[(index, shown)] = self._pixels[_tile(index, cols)].copy()
        self._cache.move_to_end((index, shown))
        while len(self._cache) > CACHED_TILES:
            self._cache.popitem(last=False)

    # --- layers: a still background, the rest drawn over it ------------------------------
    def _layers(self, ax: Axes) -> bytes | None:
        """The legend and the lane names keep still while the time axis moves: they are drawn
        once into a background, restored at each drawing, and the rest of the axes is drawn
        over it, in the order ``Axes.draw`` has (the still artists don't overlap the rest:
        ``_layers_fit``)."""
        assert self.figure is not None
        canvas = self.figure.canvas
        assert isinstance(canvas, FigureCanvasAgg)
        renderer = canvas.get_renderer()
        if _layers_key(ax) != self._layout:
            return None
        legend, labels = ax.get_legend(), ax.get_yticklabels()
        if self._background is None:
            renderer.clear()
            self.figure.patch.draw(renderer)
            ax.patch.draw(renderer)
            for artist in [*labels, *([legend] if legend is not None else [])]:
                artist.draw(renderer)
            self._background = canvas.copy_from_bbox(self.figure.bbox)
        canvas.restore_region(self._background)
        # Without the axes' patch (the background has it; painting it again would cover the
        # lane names' tick marks where they meet the frame), the legend (Axes.draw skips an
        # animated artist) and the lane names (hidden: their tick marks are still drawn, in
        # their place in the order, after the x axis's grid line at time 0 that they touch).
        patch_visible = ax.patch.get_visible()
        try:
            ax.patch.set_visible(False)
            if legend is not None:
                legend.set_animated(True)
            for label in labels:
                label.set_visible(False)
            ax.draw(renderer)
        finally:
            ax.patch.set_visible(patch_visible)
            if legend is not None:
                legend.set_animated(False)
            for label in labels:
                label.set_visible(True)
        return encode_png(np.asarray(canvas.buffer_rgba()))


def _tile(index: int, cols: int) -> tuple[slice, slice]:
    row, col = divmod(index, cols)
    return slice(row * TILE, (row + 1) * TILE), slice(col * TILE, (col + 1) * TILE)


def _tile_keys(shapes: list[Shape], shape: tuple[int, ...], dpi: float) -> tuple[list[Hashable],
                                                                                 list[tuple[int, int, int, int]]]:
    """What each tile shows (the descriptions of the artists that reach into it, in drawing
    order), and the tiles each artist reaches (rows top to bottom, columns left to right)."""
    height, width = shape[:2]
    rows, cols = -(-height // TILE), -(-width // TILE)
    tiles: list[list[Hashable]] = [[] for _ in range(rows * cols)]
    reach: list[tuple[int, int, int, int]] = []
    for artist, what, where in shapes:
        if where is None:
            reach.append((0, 0, 0, 0))
            continue
        left, top, right, bottom = _pixel_box(_grown(artist, where, dpi), width, height)
        span = (top // TILE, -(-bottom // TILE), left // TILE, -(-right // TILE)) if left < right and top < bottom \
            else (0, 0, 0, 0)
        reach.append(span)
        for row in range(span[0], span[1]):
            for col in range(span[2], span[3]):
                tiles[row * cols + col].append(what)
    return [tuple(t) for t in tiles], reach


def _same_layout(ax: Axes) -> bool:
    """Lay the figure out again as a fresh one is (default margins, then ``tight_layout``): True
    when the axes stay where they were, as they do when a label at the edge only changed length."""
    fig = ax.figure
    assert isinstance(fig, Figure)
    before = (ax.get_position(original=True).bounds, ax.get_position().bounds)
    fig.subplots_adjust(left=rcParams["figure.subplot.left"], right=rcParams["figure.subplot.right"],
                        bottom=rcParams["figure.subplot.bottom"], top=rcParams["figure.subplot.top"],
                        wspace=rcParams["figure.subplot.wspace"], hspace=rcParams["figure.subplot.hspace"])
    fig.tight_layout()
    ax.apply_aspect()
    return (ax.get_position(original=True).bounds, ax.get_position().bounds) == before


def _clear(ax: Axes) -> None:
    """Remove what the view drew (``Axes.cla`` would rebuild the axes: as slow as a new figure)."""
    for group in (ax.artists, ax.collections, ax.images, ax.lines, ax.patches, ax.tables, ax.texts):
        for artist in list(group):
            artist.remove()
    legend = ax.get_legend()
    if legend is not None:
        legend.remove()


def _layers_key(ax: Axes) -> Hashable:
    """What the kept layout and the background show: where the axes are, the lanes' names,
    the legend's entries. (The axes' frame leaves room for the legend and the lane names, be it
    ``tight_layout``'s or the drawing's own, which follows from the legend's rows; the x axis's
    tick labels change, but not their height.)"""
    labels = tuple((t.get_text(), tuple(t.get_position())) for t in ax.get_yticklabels())
    legend = ax.get_legend()
    entries: Hashable = None
    if legend is not None:
        entries = tuple((t.get_text(), type(h).__name__, _colours(h))
                        for t, h in zip(legend.get_texts(), legend.legend_handles, strict=True))
    return (tuple(ax.get_position().bounds), ax.get_ylim(), ax.get_ylabel(), labels, entries)


def _layers_fit(ax: Axes, renderer: Any) -> bool:
    """Whether the still artists stay clear of the rest: the legend outside the axes and clear of
    the x axis's ticks and labels (what a full drawing paints over it, the CPU_ON labels, comes
    after it here too), no y grid lines (they would run under the data)."""
    legend = ax.get_legend()
    if legend is not None:
        box = legend.get_window_extent(renderer)
        axis = ax.xaxis.get_tightbbox(renderer)
        if any(other is not None and Bbox.intersection(box, other) is not None for other in (ax.bbox, axis)):
            return False
    return not any(line.get_visible() for line in ax.get_ygridlines())


def _colours(artist: Artist | None) -> Hashable:
    if isinstance(artist, Patch):
        return (tuple(artist.get_facecolor()), tuple(artist.get_edgecolor()), artist.get_hatch(),
                artist.get_linewidth())
    get = getattr(artist, "get_color", None)
    marker = getattr(artist, "get_marker", None)
    return (str(get()) if get else None, str(marker()) if marker else None)


def _drawn(ax: Axes) -> list[Artist] | None:
    """What ``Axes.draw`` draws, in its order (the artists sorted by zorder; no frame, no axes
    when the axis is off); None where the tiles can't follow it."""
    fig = ax.figure
    if not isinstance(fig, Figure) or fig.get_children() != [fig.patch, ax] or ax.axison:
        return None  # other figure-level artists, or axes with ticks (their tick labels move)
    artists = [a for a in ax.get_children() if a is not ax.patch and a not in ax.spines.values()
               and a not in (ax.xaxis, ax.yaxis) and not a.get_animated()]
    return sorted(artists, key=attrgetter("zorder"))


def _shapes(ax: Axes, renderer: Any, known: dict[Hashable, Bbox | None],
            kept: dict[Artist, tuple[Hashable, Bbox | None]]) -> list[Shape] | None:
    """Each artist the axes draw, what it shows and where; ``known``: the extents of descriptions
    seen before (measuring a text is most of the cost of describing it); ``kept``: artists that
    have not changed since they were described."""
    drawn = _drawn(ax)
    if drawn is None:
        return None
    shapes: list[Shape] = []
    for artist in drawn:
        described = kept.get(artist) or _describe(artist, renderer, known)
        if described is None:
            return None
        shapes.append((artist, *described))
    return shapes


def _layout_key(ax: Axes, shapes: Iterable[Shape], tight: bool = True) -> Hashable:
    """What ``tight_layout`` looks at: where the axes are and the extent of what they draw (a
    fixed layout: where the axes are)."""
    if not tight:
        return (tuple(ax.get_position().bounds), ax.get_xlim(), ax.get_ylim())
    where = [w for a, _, w in shapes if w is not None and a.get_in_layout()]
    union = Bbox.union(where) if where else Bbox.null()
    return (tuple(ax.get_position().bounds), ax.get_xlim(), ax.get_ylim(), tuple(np.round(union.extents, 3)))


def _describe(artist: Artist, renderer: Any, known: dict[Hashable, Bbox | None]) -> tuple[Hashable, Bbox | None] | None:
    """What ``artist`` shows (equal descriptions draw equal pixels) and where (its extent in
    display units, None: nothing drawn); None for an artist this does not know how to describe."""
    if (artist.get_path_effects() or artist.get_sketch_params() is not None or artist.get_agg_filter() is not None
            or artist.get_rasterized()):
        return None
    clip_box = artist.get_clip_box()
    clip = (artist.get_clip_on(), None if clip_box is None else tuple(clip_box.extents),
            artist.get_clip_path() is not None)
    common = (type(artist).__name__, artist.get_zorder(), artist.get_alpha(), artist.get_visible(), clip)
    if type(artist) is Text:
        if not artist.get_visible() or artist.get_text() == "":
            return (*common, "nothing"), None
        font = artist.get_fontproperties()
        box = artist.get_bbox_patch()
        box_paint: Hashable = None
        if box is not None:  # its size and place follow from the text's
            if type(box) is not FancyBboxPatch:
                return None
            box_paint = (_style(box.get_boxstyle()), box.get_mutation_aspect(), _paint(box))
        what = (
            *common, artist.get_text(), tuple(artist.get_transform().transform(artist.get_unitless_position())),
            to_rgba(artist.get_color()), tuple(font.get_family()), font.get_style(), font.get_variant(),
            font.get_weight(), font.get_stretch(), font.get_size(), font.get_file(),
            artist.get_horizontalalignment(), artist.get_verticalalignment(), artist.get_rotation(),
            artist.get_rotation_mode(), artist.get_wrap(), artist.get_usetex(), artist.get_antialiased(),
            artist.get_parse_math(), box_paint,
            # Read-only, and not in every matplotlib this runs on (>= 3.8): no public getter for
            # multialignment; line spacing, font features and language have one in newer ones.
            getattr(artist, "_multialignment", None), repr(getattr(artist, "_linespacing", None)),
            *(repr(getattr(artist, f"get_{name}", lambda: None)()) for name in ("fontfeatures", "language")))
        if what in known:
            return what, known[what]
        where = artist.get_window_extent(renderer)
        if box is not None:
            artist.update_bbox_position_size(renderer)
            where = Bbox.union([where, _hull(box.get_transform().transform_path(box.get_path()))])
        return what, where
    if isinstance(artist, Patch) and (type(artist).draw is Patch.draw or type(artist) is FancyArrowPatch):
        if not artist.get_visible():
            return (*common, "nothing"), None
        if isinstance(artist, FancyArrowPatch):
            # Its path (head included) scales with the dpi correction that its draw() sets
            # first: before a first draw, get_path() is the arrow at 72 dpi, not the one drawn.
            # (private, absent from matplotlib's stubs)
            artist._dpi_cor = renderer.points_to_pixels(1.0)  # type: ignore[attr-defined]
        path = artist.get_transform().transform_path(artist.get_path())  # in display units
        arrow = _style(artist.get_arrowstyle()) if isinstance(artist, FancyArrowPatch) else None
        # Path's vertices and codes are ndarrays (its stub says ArrayLike): asarray makes no copy.
        codes = None if path.codes is None else np.asarray(path.codes).tobytes()
        return (*common, np.asarray(path.vertices).tobytes(), codes, _paint(artist), arrow), _hull(path)
    return None


def _paint(patch: Patch) -> Hashable:
    return (tuple(patch.get_facecolor()), tuple(patch.get_edgecolor()), patch.get_linewidth(),
            repr(patch.get_linestyle()), patch.get_hatch(), patch.get_fill(), patch.get_capstyle(),
            patch.get_joinstyle(), patch.get_antialiased())


def _style(style: object) -> Hashable:
    """A box or arrow style (their instances do not compare): its class and parameters."""
    return type(style).__name__, tuple(sorted((k, repr(v)) for k, v in vars(style).items()))


def _hull(path: Path) -> Bbox:
    """The extent of a path's vertices: Bézier curves lie inside their control points' hull, so
    this contains the path (``Path.get_extents`` finds the curves' extrema: slower)."""
    points = np.asarray(path.vertices)  # an ndarray already (Path's stub says ArrayLike): no copy
    if path.codes is not None:
        codes = np.asarray(path.codes)
        points = points[(codes != Path.CLOSEPOLY) & (codes != Path.STOP)]
    if len(points) == 0:
        return Bbox.null()
    return Bbox([points.min(axis=0), points.max(axis=0)])


def _grown(artist: Artist, where: Bbox, dpi: float) -> Bbox:
    """``where`` grown by what paints outside an extent: a stroke's half width, a miter join
    (Agg's limit is 4 half widths), antialiasing; a glyph's ink beyond the font's line box."""
    if isinstance(artist, Text):
        pad = 2 + artist.get_fontproperties().get_size_in_points() * dpi / 72 * 0.25  # get_fontsize(), as a float
        box = artist.get_bbox_patch()
        if box is not None:
            pad += 2 * box.get_linewidth() * dpi / 72
    else:
        pad = 2 + 2 * float(getattr(artist, "get_linewidth", lambda: 1.0)()) * dpi / 72
    return where.padded(pad)


def _pixel_box(region: Bbox, width: int, height: int) -> tuple[int, int, int, int]:
    """A region in display units as whole pixels of the picture array (rows top down), rounded out."""
    x0, y0, x1, y1 = region.extents
    left, right = max(0, int(np.floor(x0))), min(width, int(np.ceil(x1)))
    top, bottom = max(0, int(np.floor(height - y1))), min(height, int(np.ceil(height - y0)))
    return left, top, right, bottom


ZLIB_HEADER = b"\x78\x01"  # RFC 1950: deflate with a 32 KiB window, "fastest" (FLEVEL 0), check bits
LAST_BLOCK = zlib.compressobj(1, zlib.DEFLATED, -15).flush()  # RFC 1951: an empty final block


def encode_png(pixels: np.ndarray, bands: list[bytes | None] | None = None) -> bytes:
    """``pixels`` (rows top down, RGBA) as a PNG: every row unfiltered, deflated at zlib level 1
    (PNG spec, ISO/IEC 15948: filter type 0, compression method 0). Matplotlib's savefig lets
    Pillow try every filter at level 6: four times the time, for a file about as big (within 10%
    either way on the dashboard's pictures of flat colour).

    ``bands``: the rows deflated at an earlier call, ``TILE`` rows a band, None where they
    changed since. Each band is deflated on its own and ends on a full flush (RFC 1951: a byte
    boundary and no reference to the data before it), so unchanged bands are reused as they are
    and only the others are deflated again, in place in the list.
    """
    height, width = pixels.shape[:2]
    rows = np.empty((height, width * 4 + 1), dtype=np.uint8)
    rows[:, 0] = 0  # filter type None
    rows[:, 1:] = pixels.reshape(height, width * 4)
    if bands is None:
        data = zlib.compress(rows.data, 1)
    else:
        assert len(bands) == -(-height // TILE)
        for index, band in enumerate(bands):
            if band is None:
                packer = zlib.compressobj(1, zlib.DEFLATED, -15)  # raw deflate: the header is written below
                band_rows = rows[index * TILE:(index + 1) * TILE].data
                bands[index] = packer.compress(band_rows) + packer.flush(zlib.Z_FULL_FLUSH)
        data = ZLIB_HEADER + b"".join(b for b in bands if b is not None) + LAST_BLOCK + \
            struct.pack(">I", zlib.adler32(rows.data))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8 bits, RGBA, deflate, no filter, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
