"""Colours and sizes every view shares: the Okabe-Ito palette, and fonts that read on a projector.

Okabe and Ito's eight colours stay distinguishable under the common colour-vision deficiencies;
where two categories could still be confused (normal and critical handlers, masked time) a
hatch tells them apart as well. Sizes are in points, passed to each artist: a view never
changes matplotlib's global ``rcParams``.
"""

from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.ticker import EngFormatter, FuncFormatter

BLACK = "#000000"
ORANGE = "#E69F00"
SKY_BLUE = "#56B4E9"
GREEN = "#009E73"  # bluish green
YELLOW = "#F0E442"
BLUE = "#0072B2"
VERMILLION = "#D55E00"
PURPLE = "#CC79A7"  # reddish purple
GREY = "#BBBBBB"
PALE = "#F2F2F2"

FONT = 14  # tick labels, node labels
SMALL = 12  # legends, edge labels, message labels
TITLE = 16

POWER_COLOURS = {  # the vCPU states of sdeilab.machine.vcpu.VcpuState, by their trace names
    "off": PALE,
    "on-pending": ORANGE,
    "on": GREEN,
    "standby": SKY_BLUE,
    "powerdown": GREY,
}
LAYER_COLOURS = {"kvm": BLACK, "vmm": PURPLE, "el3": ORANGE}
NORMAL_HANDLER = BLUE
CRITICAL_HANDLER = VERMILLION
MASKED = VERMILLION
IRQ = YELLOW  # drawn with a black edge: yellow alone is faint on white
REFUSED = VERMILLION
CURRENT = ORANGE


def layer_colour(layer: str) -> str:
    return LAYER_COLOURS.get(layer, GREY)


def vtime_axis(ax: Axes, label: str = "virtual time") -> None:
    """Label the x axis in seconds of virtual time (vtime counts nanoseconds: 1 instruction = 1 ns)."""
    seconds = EngFormatter(unit="s", sep=" ")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda ns, _pos: seconds(ns * 1e-9) if ns else "0"))
    ax.set_xlabel(label, fontsize=FONT)
    ax.tick_params(axis="both", labelsize=FONT)
