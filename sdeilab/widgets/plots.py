"""The dashboard's plots: the per-event SDEI state machine and the per-CPU timeline, as PNG images.

The drawing is sdeilab.viz's (pure matplotlib on an Axes); this module only makes a Figure
(no pyplot: nothing global changes, and it works under any backend), calls the view, and
renders it. PNG in an ``ipywidgets.Image`` shows the same in JupyterLab, Voila and a headless
test. Where sdeilab.viz lacks a view, a small stand-in draws the counts of SDEI transitions, so
the dashboard still works (and says so in the figure's title).
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from sdeilab.trace import SdeiTransition, TraceLog
from sdeilab.viz.state_machine import Tally


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
        if (event is None or fact.event == event) and (cpu is None or fact.cpu == cpu):  # type: ignore[attr-defined]
            counts[fact.action] += 1  # type: ignore[attr-defined]
    names = sorted(counts)
    bars = ax.barh(names, [counts[n] for n in names], color="#4C72B0")
    ax.set_xlabel("transitions taken")
    ax.set_title("SDEI transitions (placeholder view)")
    return [bars]


def state_machine_png(trace: TraceLog, event: int | None, cpu: int | None, size: tuple[float, float] = (12, 8),
                      dpi: int = 60) -> bytes:
    """The state machine of ``event`` (on ``cpu``), 720 x 480 pixels by default.

    Drawn at the size the view is laid out for (sdeilab.viz.state_machine: about 12 x 8 inches;
    at half that its labels overlap), at a resolution that keeps the picture's pixel count and
    drawing time about what they were at the smaller size.
    """
    view = _view("state_machine")
    fig = Figure(figsize=size, dpi=dpi)
    ax = fig.add_subplot()
    if view is None:
        placeholder(ax, trace, event, cpu)
    else:
        view(ax, trace, event=event, cpu=cpu)
        who = "all CPUs" if cpu is None else f"CPU {cpu}"
        ax.set_title(f"SDEI event {event} ({who})", fontsize=12)
    return _png(fig)


def current_state(trace: TraceLog, event: int, cpu: int | None) -> str | None:
    """The state the state machine highlights for ``event`` (on ``cpu``): the same rule, Tally's."""
    return Tally.of(trace, event, cpu).current


def timeline_png(trace: TraceLog, cpus: int, size: tuple[float, float] = (12, 4.5), dpi: int = 64) -> bytes:
    """The per-CPU timeline, 768 x 288 pixels by default: at 8 x 3.2 inches the view's 12-14 pt
    tick labels ran into each other; this size costs the same to draw."""
    view = _view("timeline")
    fig = Figure(figsize=size, dpi=dpi)
    ax = fig.add_subplot()
    if view is None:
        placeholder(ax, trace)
    elif len(trace) == 0:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no facts yet", ha="center", va="center", transform=ax.transAxes)
    else:
        view(ax, trace, cpus=list(range(cpus)))
    return _png(fig)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
