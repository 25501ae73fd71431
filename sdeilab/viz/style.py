"""Colours and sizes every view shares: the Okabe-Ito palette, and fonts that read on a projector.

Okabe and Ito's eight colours stay distinguishable under the common colour-vision deficiencies;
where two categories could still be confused (normal and critical handlers, masked time) a
hatch tells them apart as well. Sizes are in points, passed to each artist: a view never
changes matplotlib's global ``rcParams``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.ticker import Formatter, MaxNLocator

from sdeilab.trace.vocabulary import PowerState

BLACK = "#000000"
WHITE = "#ffffff"
ORANGE = "#E69F00"
SKY_BLUE = "#56B4E9"
GREEN = "#009E73"  # bluish green
YELLOW = "#F0E442"
BLUE = "#0072B2"
VERMILLION = "#D55E00"
PURPLE = "#CC79A7"  # reddish purple
GREY = "#BBBBBB"
MUTED = "#767676"  # text and lines for what did not happen: 4.5:1 on white (WCAG AA), GREY is 1.9:1
PALE = "#F2F2F2"

# JupyterLab's output column in a 1280-px window, in CSS px (tests/test_browser_notebooks.py
# measures it), and a notebook figure's width in inches at the inline backend's 100 dpi: a
# figure this wide is shown at its own size there and wider, its text as large as drawn.
NOTEBOOK_COLUMN_PX = 848
NOTEBOOK_DPI = 100
NOTEBOOK_WIDTH = 8.4
FONT = 14  # tick labels, node labels
SMALL = 12  # legends, edge labels, message labels
TITLE = 16

POWER_COLOURS: dict[str, str] = {  # the power states (sdeilab.trace.vocabulary): a fact's plain string finds its colour
    PowerState.OFF: PALE,
    PowerState.ON_PENDING: ORANGE,
    PowerState.ON: GREEN,
    PowerState.STANDBY: SKY_BLUE,
    PowerState.POWERDOWN: GREY,
}
LAYER_COLOURS = {"kvm": BLACK, "vmm": PURPLE, "el3": ORANGE}
NORMAL_HANDLER = BLUE
CRITICAL_HANDLER = VERMILLION
NORMAL_EDGE = "#003A5C"  # the handler colours, darkened: the boundary between two runs back to back
CRITICAL_EDGE = "#6A2E00"
MASKED = VERMILLION
IRQ = YELLOW  # drawn with a black edge: yellow alone is faint on white
REFUSED = VERMILLION
CURRENT = ORANGE


def layer_colour(layer: str) -> str:
    return LAYER_COLOURS.get(layer, GREY)


def vtime_axis(ax: Axes, label: str = "virtual time", fontsize: float = FONT) -> None:
    """Label the x axis in virtual time (vtime counts nanoseconds: 1 instruction = 1 ns at the default time scale).

    A window far from zero (the microseconds of a hotplug cycle a second into a boot) is
    labelled from a round origin, named in the axis label ("+200 ns", "+400 ns" after 2.1638 ms)
    instead of repeating its leading digits ("2.1639 ms", "2.164 ms", "2.1641 ms").
    """
    ax.xaxis.set_major_formatter(VtimeFormatter(label))
    ax.xaxis.set_major_locator(VtimeLocator(fontsize))
    ax.set_xlabel(label, fontsize=fontsize)
    ax.tick_params(axis="both", labelsize=fontsize)


UNITS = ((1e9, "s"), (1e6, "ms"), (1e3, "µs"), (1.0, "ns"))


def unit_for(magnitude: float) -> tuple[float, str]:
    """The largest of s, ms, µs, ns in which ``magnitude`` nanoseconds is at least 1."""
    return next(((scale, name) for scale, name in UNITS if magnitude >= scale), UNITS[-1])


def vtime_text(ns: float, unit: tuple[float, str] | None = None, decimals: int | None = None) -> str:
    """``ns`` nanoseconds in ``unit`` (default: the one that fits it), with as few decimals as it needs."""
    scale, name = unit or unit_for(abs(ns))
    value = ns / scale
    if decimals is None:
        decimals = next((d for d in range(7) if abs(round(value, d) - value) < 1e-9 * max(1.0, abs(value))), 6)
    return f"{value:,.{decimals}f} {name}".replace(",", "\u2009")  # a thin space groups the thousands


def vtime_labels(values: Sequence[float], origin: float = 0.0) -> list[str]:
    """Labels for ticks at ``values`` (ns), relative to ``origin``: one unit for all, as few decimals
    as keep them exact and distinct; "+" before each when they count from a non-zero origin."""
    offsets = [float(v) - origin for v in values]
    unit = unit_for(max((abs(o) for o in offsets), default=0.0))
    decimals = 0
    for decimals in range(7):
        exact = all(abs(round(o / unit[0], decimals) - o / unit[0]) < 1e-9 * max(1.0, abs(o / unit[0]))
                    for o in offsets)
        if exact:
            break
    sign = "+" if origin else ""
    return ["0" if o == 0 and not origin else (sign if o >= 0 else "") + vtime_text(o, unit, decimals) for o in offsets]


def vtime_origin(lo: float, hi: float) -> float:
    """0, or a round vtime just below ``lo`` when the window [lo, hi] is narrow for its distance from 0."""
    span = hi - lo
    if lo <= 0 or span <= 0 or span * 20 > lo:
        return 0.0
    step = 10.0 ** math.floor(math.log10(span))
    return math.floor(lo / step) * step


class VtimeLocator(MaxNLocator):
    """Round vtime ticks, as many as the axis has room for at its width and font size.

    matplotlib's automatic choice budgets three characters' width a tick; a vtime label
    ("+2.5 µs", "2.164 ms") is up to nine, and at 14 pt on an 8-inch axis the labels ran into
    each other. Recomputed at each draw, so a zoom or a narrower figure gets fewer ticks.
    """

    LABEL_EMS = 6.5  # nine characters of about 0.6 em, and an em of space between two labels

    def __init__(self, fontsize: float = FONT) -> None:
        super().__init__(nbins="auto", steps=[1, 2, 2.5, 5, 10])
        self.fontsize = fontsize  # the tick labels': asking the axis would ask this locator again

    def tick_values(self, vmin: float, vmax: float) -> Sequence[float]:
        axis = self.axis
        if isinstance(axis, Axis) and axis.axes is not None:  # not a dummy axis (matplotlib.ticker)
            width_pt = axis.axes.bbox.width * 72 / axis.axes.figure.dpi
            self.set_params(nbins=max(2, int(width_pt / (self.LABEL_EMS * self.fontsize))))
        return super().tick_values(vmin, vmax)


class VtimeFormatter(Formatter):
    """Tick labels for a vtime axis; from a round origin when the view is narrow and far from 0.

    The origin follows the view (a zoom in an interactive figure moves it) and goes into the
    axis label, "virtual time after 1.0005 s", so each tick label stays short and distinct.
    """

    def __init__(self, label: str = "virtual time") -> None:
        self.label = label

    def __call__(self, x: float, pos: int | None = None) -> str:
        return self.format_ticks([x])[0]

    def format_ticks(self, values: Sequence[float]) -> list[str]:
        axis = self.axis
        lo, hi = sorted(axis.get_view_interval()) if axis is not None else (0.0, 0.0)
        origin = vtime_origin(lo, hi)
        # A dummy axis (matplotlib.ticker) has no label; an axis label cleared (sharex) stays clear.
        if isinstance(axis, Axis) and axis.label.get_text():
            axis.set_label_text(f"{self.label} after {vtime_text(origin)}" if origin else self.label)
        return vtime_labels(list(values), origin)
