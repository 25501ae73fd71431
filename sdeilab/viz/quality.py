"""Is a figure readable? Checks a drawn figure for the faults that make a picture hard to read.

``figure_problems(fig)`` draws the figure and returns one line per problem found, empty when
the figure passes:

- text smaller than ``min_points`` at the size the figure is displayed (a point is 1/72 inch of
  the displayed image; JupyterLab shows a PNG rendered at 100 dpi at its pixel size, so the
  figure's own font sizes count, scaled down when ``display_width`` makes the image shrink);
- two texts whose bounding boxes overlap (tick labels, legend entries, titles, annotations);
- text that leaves the figure, or that is clipped at its axes' edge;
- more than one legend in the figure;
- tick labels of one axis that say the same thing twice ("1.0005 s" six times).

Only what is drawn counts: tick labels outside the view, annotations whose point lies outside
their axes (``annotation_clip``) and invisible or empty texts are skipped. The checks work on
window extents after a draw, so they hold for any backend that can render (Agg, ipympl), and
the dashboard's figures can go through the same function.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING

from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.backend_bases import RendererBase
from matplotlib.figure import Figure, SubFigure
from matplotlib.legend import Legend
from matplotlib.text import Annotation, Text
from matplotlib.transforms import Bbox, BboxBase

if TYPE_CHECKING:
    from matplotlib.axes._base import _AxesBase  # what Artist.axes is typed as

MIN_POINTS = 10.0
SLACK_PX = 1.0  # extents are computed from font metrics: a pixel of touching is not overprinting


@dataclass(frozen=True)
class _Shown:
    """A text as drawn: the artist, what it is (for the message), and its extent in pixels."""

    text: Text
    role: str
    box: Bbox


def figure_problems(fig: Figure, *, min_points: float = MIN_POINTS,
                    display_width: float | None = None) -> list[str]:
    """Problems of ``fig`` as drawn now, one line each; an empty list means the figure passes.

    ``display_width`` is the width in pixels the image gets where it is shown (a notebook's
    output column): a wider figure is scaled down to it, and so is its text. None: shown at
    its pixel size (figure inches times ``fig.dpi``).
    """
    renderer = _draw(fig)
    width_px = fig.bbox.width
    scale = min(1.0, display_width / width_px) if display_width else 1.0
    shown = _drawn_texts(fig, renderer)
    problems: list[str] = []

    for item in shown:
        size = item.text.get_fontproperties().get_size_in_points() * scale  # get_fontsize(), typed as a float
        if size < min_points - 1e-6:
            problems.append(f"small text: {item.role} {_quote(item.text)} is {size:.1f} pt (< {min_points:g})")
        if not _inside(item.box, fig.bbox):
            problems.append(f"outside the figure: {item.role} {_quote(item.text)}")
        clip = item.text.get_clip_box() if item.text.get_clip_on() else None
        if clip is not None and not _inside(item.box, clip):
            problems.append(f"clipped at its axes' edge: {item.role} {_quote(item.text)}")

    for a, b in combinations(shown, 2):
        if _overlap(a.box, b.box):
            problems.append(f"overlap: {a.role} {_quote(a.text)} and {b.role} {_quote(b.text)}")

    legends = list(_legends(fig))
    if len(legends) > 1:
        problems.append(f"{len(legends)} legends in one figure (at most one)")

    for ax in fig.get_axes():
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            labels = [t.get_text() for t in _tick_labels(axis) if t.get_text().strip()]
            repeated = sorted(label for label, n in Counter(labels).items() if n > 1)
            if repeated:
                problems.append(f"repeated {name} tick labels in {_axes_name(ax)}: {', '.join(repeated)}")
    return problems


def _draw(fig: Figure) -> RendererBase:
    canvas = fig.canvas
    if not hasattr(canvas, "get_renderer"):  # a bare Figure(): give it an Agg canvas to measure with
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _drawn_texts(fig: Figure, renderer: RendererBase) -> list[_Shown]:
    ticks: dict[int, str] = {}  # id of every tick label, drawn or not -> its role if drawn, "" if not
    for ax in fig.get_axes():
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                ticks[id(tick.label1)] = ticks[id(tick.label2)] = ""
            for label in _tick_labels(axis):
                ticks[id(label)] = f"{name} tick label of {_axes_name(ax)}"
    roles = _roles(fig)
    shown: list[_Shown] = []
    seen: set[int] = set()
    for text in fig.findobj(Text):
        if id(text) in seen:
            continue
        seen.add(id(text))
        role = ticks.get(id(text), roles.get(id(text), "text"))
        if not role or not text.get_visible() or not text.get_text().strip():
            continue
        if not _really_drawn(text, renderer):
            continue
        box = Text.get_window_extent(text, renderer)  # the text alone: an annotation's arrow is no text
        clip = text.get_clip_box() if text.get_clip_on() else None
        if clip is not None and not Bbox.intersection(box, clip):
            continue  # wholly clipped away: not drawn
        shown.append(_Shown(text, role, box))
    return shown


def _really_drawn(text: Text, renderer: RendererBase) -> bool:
    """Whether the text's ancestors are visible and, for an annotation, its point is in view."""
    # private API (matplotlib's own test, absent from its stubs)
    if isinstance(text, Annotation) and not text._check_xy(renderer):  # type: ignore[attr-defined]
        return False
    ax = text.axes
    return ax is None or (ax.get_visible() and (ax.axison or not _is_axis_text(text, ax)))


def _is_axis_text(text: Text, ax: _AxesBase) -> bool:
    return text in (ax.xaxis.label, ax.yaxis.label, ax.xaxis.offsetText, ax.yaxis.offsetText)


def _tick_labels(axis: Axis) -> list[Text]:
    """The tick labels the axis draws: those of the ticks in view (Axis.draw's own selection)."""
    if not axis.get_visible() or (axis.axes is not None and not axis.axes.axison):
        return []
    out = []
    # private API (absent from matplotlib's stubs): the ticks Axis.draw draws, with their labels set
    for tick in axis._update_ticks():  # type: ignore[attr-defined]
        out += [label for label in (tick.label1, tick.label2) if label.get_visible()]
    return out


def _roles(fig: Figure) -> dict[int, str]:
    roles: dict[int, str] = {}
    for ax in fig.get_axes():
        where = _axes_name(ax)
        # private API (absent from matplotlib's stubs): the three title slots
        for title in (ax.title, ax._left_title, ax._right_title):  # type: ignore[attr-defined]
            roles[id(title)] = f"title of {where}"
        roles[id(ax.xaxis.label)] = f"x label of {where}"
        roles[id(ax.yaxis.label)] = f"y label of {where}"
        roles[id(ax.xaxis.offsetText)] = f"x offset of {where}"
        roles[id(ax.yaxis.offsetText)] = f"y offset of {where}"
        for text in ax.texts:
            roles[id(text)] = f"{'annotation' if isinstance(text, Annotation) else 'text'} in {where}"
    for legend in _legends(fig):
        for text in legend.get_texts():
            roles[id(text)] = "legend entry"
        roles[id(legend.get_title())] = "legend title"
    for figure in [fig, *fig.subfigs]:
        for attr in ("_suptitle", "_supxlabel", "_supylabel"):
            sup = getattr(figure, attr, None)
            if sup is not None:
                roles[id(sup)] = "figure title" if attr == "_suptitle" else "figure label"
    return roles


def _legends(fig: Figure | SubFigure) -> list[Legend]:
    found = [*fig.legends, *(ax.get_legend() for ax in fig.get_axes() if ax.get_legend() is not None)]
    return [legend for legend in found if legend is not None and legend.get_visible()]


def _axes_name(ax: Axes) -> str:
    title = ax.get_title() or ax.get_ylabel() or ""
    index = ax.figure.get_axes().index(ax) if ax.figure is not None else 0
    return f"axes {index}" + (f" ({title[:40]})" if title else "")


def _inside(box: BboxBase, frame: BboxBase) -> bool:
    return (box.x0 >= frame.x0 - SLACK_PX and box.y0 >= frame.y0 - SLACK_PX
            and box.x1 <= frame.x1 + SLACK_PX and box.y1 <= frame.y1 + SLACK_PX)


def _overlap(a: Bbox, b: Bbox) -> bool:
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > SLACK_PX) and (min(a.y1, b.y1) - max(a.y0, b.y0) > SLACK_PX)


def _quote(text: Text) -> str:
    words = " ".join(text.get_text().split())
    return repr(words if len(words) <= 48 else words[:45] + "...")
