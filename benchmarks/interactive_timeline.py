"""The interactive timeline at 10^5 and 10^6 facts: first draw, one wheel step, one drag step (goal: each < 1 s).

The facts are those of benchmarks/trace_scale.py: a real 4-CPU run of the TF-A state-machine
scenario (guests/sdei/tftf_state.elf), replayed with shifted vtimes to the size asked. Each log is
indexed first (as after any query: a live session's log is queried by the dashboard all along).

- first draw: ``TimelineView(log)`` (intervals derived, the figure made) and the canvas drawn as
  when the front end first asks for it: lanes built for the whole trace, rendered by Agg, and the
  picture ipympl sends (PNG, whole) made.
- wheel step: one wheel turn at the middle of the axes (the window narrows to 80% around the
  pointer) and the redraw the front end then asks for (ipympl sends a diff of the picture).
- drag step: a 100-pixel drag, then its redraw.

Wall and CPU seconds are printed (on a shared machine the wall clock also counts others).

Run: .venv/bin/python benchmarks/interactive_timeline.py [--sizes 100000 1000000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from matplotlib.backend_bases import MouseButton, MouseEvent

sys.path.insert(0, str(Path(__file__).resolve().parent))  # trace_scale's replayed run
from trace_scale import build, template

from sdeilab.trace import TraceLog
from sdeilab.widgets.timeline_view import TimelineView

GOAL_S = 1.0


def timed(what: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    what()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(log: TraceLog) -> list[tuple[str, float, float, int]]:
    """(step, wall s, CPU s, calls in the window it shows) for the first draw, a wheel step and a drag step."""
    made: list[TimelineView] = []

    def first() -> None:
        made.append(TimelineView(log))
        made[0].canvas.draw()

    results = [("first draw", *timed(first))]
    view = made[0]
    ax, canvas = view.ax, view.canvas
    x, y = ax.bbox.x0 + ax.bbox.width / 2, ax.bbox.y0 + ax.bbox.height / 2

    def wheel() -> None:
        MouseEvent("scroll_event", canvas, x, y, step=1)._process()
        canvas.draw()

    def drag() -> None:
        MouseEvent("button_press_event", canvas, x, y, MouseButton.LEFT)._process()
        MouseEvent("motion_notify_event", canvas, x + 100, y, MouseButton.LEFT)._process()
        MouseEvent("button_release_event", canvas, x + 100, y, MouseButton.LEFT)._process()
        canvas.draw()

    windows = [view.window]
    for name, step in (("wheel step", wheel), ("drag step", drag)):
        results.append((name, *timed(step)))
        assert view.window != windows[-1], f"{name} did not move the window"
        windows.append(view.window)
    out = []
    for (name, wall, cpu), (lo, hi) in zip(results, windows, strict=True):
        calls = view.source.calls(lo, hi)
        shown = int(calls.vtime.searchsorted(hi, side="right") - calls.vtime.searchsorted(lo))
        out.append((name, wall, cpu, shown))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    sizes = parser.parse_args().sizes
    facts = template()
    print(f"template: {len(facts)} facts of one 4-CPU run, replayed; goal: each step under {GOAL_S:.0f} s")
    print(f"{'facts':>10s} {'step':<12s} {'wall':>8s} {'CPU':>8s}  {'calls in view':>13s}  goal")
    for count in sizes:
        log = build(facts, count)[0]
        log.seqs(cpu=0, start=0, end=1)  # indexes built
        for name, wall, cpu, shown in measure(log):
            verdict = "ok" if wall < GOAL_S else "OVER"
            print(f"{count:>10,} {name:<12s} {wall:7.3f}s {cpu:7.3f}s  {shown:>13,}  {verdict}")


if __name__ == "__main__":
    main()
