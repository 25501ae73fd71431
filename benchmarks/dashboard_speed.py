"""The dashboard's step latency and the trace's record rate, measured in one run.

Step latency: how long a click takes to reach every view. The clock starts when a ``Lab`` button
is clicked (``button.click()`` calls the button's handler, the public method a notebook calls
too: ``lab.step()``, ``lab.step_firmware()``, ...). That method drives the session and refreshes
the text views (status, registers, disassembly, memory, UART, breakpoints), then asks for the
plots. The clock stops when ``lab.wait_plots()`` returns, that is, when the state machine and
the timeline show the stop as well; the plots are drawn in a worker thread. The text views alone
(the click's return) are printed too. The Lab redraws a picture only when what it shows changed.
So most one-instruction Steps draw nothing, and the share of steps that drew is printed beside
the figures, with what one redraw took. A redraw paints only what changed, on the figure the Lab
kept from the drawing before (sdeilab/widgets/plots.py: Picture); the first drawing, and one
after the layout changed, is made on a fresh Figure, which is broken down step by step. "Step
firmware" records a fact every time, so each one redraws the timeline. The steps start where
notebooks/01_dashboard stops: CPU 2 has just entered its SDEI handler in sub-test c of
guests/sdei/tftf_state (4 CPUs). Target: under 100 ms a step.

Records per second: facts appended to the trace / wall seconds of a whole run of a 4-CPU guest.
The run goes through the dashboard's Run button (``lab.start()``: a background thread, the
progress bar, the views refreshed every half second, and the plots drawn meanwhile). It also
goes through a bare ``Platform.run`` with the trace, and with a log that drops every fact: the
instructions per second with and without the trace. Wall and process CPU seconds are both
printed, because on a shared machine the wall clock counts the other users too.

Run: .venv/bin/python benchmarks/dashboard_speed.py [--steps N] [--runs N] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import inspect
import io
import pstats
import statistics
import time
from collections.abc import Callable
from functools import partial, wraps
from itertools import pairwise
from pathlib import Path

import ipywidgets as w
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from sdeilab.lab.platform import make_platform
from sdeilab.trace import Fact, TraceLog
from sdeilab.viz import state_machine, timeline
from sdeilab.widgets import Lab, plots

ROOT = Path(__file__).resolve().parent.parent
SDEI = ROOT / "guests" / "sdei"
STATE_GUEST = SDEI / "tftf_state.elf"  # the dashboard notebook's guest
EVENT = 2000  # the event its INTERRUPT_BIND(42) returns
RUN_GUESTS = ("tftf_rm_any", "tftf_state")  # the shipped 4-CPU scenario with the most facts, and the notebook's
TARGET_S = 0.100


class DroppingLog(TraceLog):
    """A trace that keeps nothing: the machine and firmware as they run with no trace at all."""

    __slots__ = ()

    def add(self, kind: type[Fact], cpu: int, vtime: int, *payload: object) -> None:
        return None


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def summary(samples: list[float]) -> str:
    p95 = statistics.quantiles(samples, n=20, method="inclusive")[-1]
    return f"median {ms(statistics.median(samples))}  p95 {ms(p95)}  max {ms(max(samples))}"


class Redraws:
    """How many times the Lab drew each picture, and how long each drawing took (wall seconds in
    the plot worker): plots.py's two functions, counted where the Lab calls them."""

    def __init__(self) -> None:
        self.counts = {"state_machine_png": 0, "timeline_png": 0}
        self.seconds: dict[str, list[float]] = {name: [] for name in self.counts}
        for name in self.counts:
            setattr(plots, name, self._counting(name, getattr(plots, name)))

    def _counting(self, name: str, draw: Callable[..., bytes]) -> Callable[..., bytes]:
        @wraps(draw)  # keeps its signature, whose defaults picture_breakdown reads
        def counted(*args: object, **kwargs: object) -> bytes:
            self.counts[name] += 1
            began = time.perf_counter()
            try:
                return draw(*args, **kwargs)
            finally:
                self.seconds[name].append(time.perf_counter() - began)
        return counted

    @property
    def state(self) -> int:
        return self.counts["state_machine_png"]

    @property
    def timeline(self) -> int:
        return self.counts["timeline_png"]


def clicks(lab: Lab, button: w.Button, count: int) -> tuple[list[float], list[float], int, float]:
    """Click ``button`` ``count`` times: (time to every view, time to the text views, clicks that
    redrew a picture, process CPU seconds: this thread's and the plot worker's)."""
    full, text, drew = [], [], 0
    cpu_began = time.process_time()
    for _ in range(count):
        drawn = lab.plots_drawn
        began = time.perf_counter()
        button.click()
        text.append(time.perf_counter() - began)
        assert lab.wait_plots(120), "the plots did not finish in two minutes"
        full.append(time.perf_counter() - began)
        assert lab.error == "" and lab.plot_error == "", (lab.error, lab.plot_error)
        drew += lab.plots_drawn != drawn
    return full, text, drew, time.process_time() - cpu_began


def step_latency(steps: int) -> None:
    redraws = Redraws()
    lab = Lab(STATE_GUEST, cpus=4)
    lab.show_event(EVENT)
    lab.run_until("SdeiDispatch", cpu=2)
    assert lab.wait_plots(120)
    print(f"Step latency, {STATE_GUEST.name} (4 CPUs), from CPU 2's first SDEI dispatch "
          f"({lab.session.retired:,} instructions, {len(lab.session.trace):,} facts); target < {ms(TARGET_S).strip()}")
    for name, button, count in (("Step (n = 1)", lab.step_button, steps),
                                ("Step firmware", lab.step_firmware_button, steps),
                                ("Step back (n = 1)", lab.step_back_button, max(5, steps // 5))):
        state, timeline = redraws.state, redraws.timeline
        fast = lab.state_picture.fast, lab.timeline_picture.fast
        full, text, drew, cpu = clicks(lab, button, count)
        within = sum(t < TARGET_S for t in full)
        print(f"  {name:<18} x{count}: to every view {summary(full)}; {within}/{count} under target")
        print(f"  {'':<18}      text views alone {summary(text)}; CPU {cpu / count * 1000:.1f} ms per click")
        print(f"  {'':<18}      {drew}/{count} clicks redrew a picture: the state machine "
              f"{redraws.state - state} times, the timeline {redraws.timeline - timeline} times")
        each = []
        for label, key, before, picture, was in (
                ("state machine", "state_machine_png", state, lab.state_picture, fast[0]),
                ("timeline", "timeline_png", timeline, lab.timeline_picture, fast[1])):
            seconds = redraws.seconds[key][before:]
            if seconds:
                each.append(f"{label} median {ms(statistics.median(seconds)).strip()} "
                            f"({picture.fast - was}/{len(seconds)} on the kept figure)")
        if each:
            print(f"  {'':<18}      one redraw (wall, plot worker): {', '.join(each)}")
    picture_breakdown(lab.session.trace, lab.session.cpus)


def picture_breakdown(trace: TraceLog, cpus: int, count: int = 5) -> None:
    """Where a drawing on a fresh Figure spends its time (the first drawing of a picture, or one
    after its layout changed; a redraw on the kept figure skips all but the view and the
    encoding, and draws only the part that changed): plots.py's steps for each picture, timed
    one by one (process CPU time, median of ``count``), on the trace as it now is. The PNG is
    encoded both ways: matplotlib's savefig (Pillow) and plots.encode_png (what the Lab uses)."""
    print(f"  a drawing on a fresh Figure, step by step (CPU ms, median of {count}; {len(trace):,} facts):")
    views: dict[str, tuple[Callable[..., object], Callable[[Axes], object]]] = {
        "state machine": (plots.state_machine_png, lambda ax: state_machine(ax, trace, event=EVENT, cpu=None)),
        "timeline": (plots.timeline_png, lambda ax: timeline(ax, trace, cpus=list(range(cpus)))),
    }
    for label, (function, view) in views.items():
        size = inspect.signature(function).parameters["size"].default  # as plots.py draws it
        dpi = inspect.signature(function).parameters["dpi"].default
        steps: dict[str, list[float]] = {}
        for _ in range(count):
            marks = [time.process_time()]
            fig = Figure(figsize=size, dpi=dpi)
            ax = fig.add_subplot()
            marks.append(time.process_time())
            view(ax)
            marks.append(time.process_time())
            fig.tight_layout()
            marks.append(time.process_time())
            canvas = FigureCanvasAgg(fig)
            canvas.draw()
            marks.append(time.process_time())
            # What savefig does after drawing: PIL encodes the RGBA buffer as PNG.
            Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1) \
                .save(io.BytesIO(), format="png")
            marks.append(time.process_time())
            plots.encode_png(np.asarray(canvas.buffer_rgba()))
            marks.append(time.process_time())
            took = [b - a for a, b in pairwise(marks)]
            for name, seconds in zip(("Figure and Axes", "the view's artists", "tight_layout", "Agg drawing",
                                      "PNG by savefig", "PNG by encode_png"), took, strict=True):
                steps.setdefault(name, []).append(seconds)
        # The total is the Lab's way: encode_png, not savefig.
        total = sum(statistics.median(v) for name, v in steps.items() if name != "PNG by savefig")
        parts = ", ".join(f"{name} {statistics.median(v) * 1000:.0f}" for name, v in steps.items())
        print(f"    {label:<14} {total * 1000:4.0f} ms: {parts}")


def profile_step_firmware(count: int) -> None:
    """cProfile ``count`` Step firmware clicks with the plots drawn in the click (not in the worker
    thread, which cProfile would not see): where a click's time goes."""
    lab = Lab(STATE_GUEST, cpus=4, plots_async=False)
    lab.show_event(EVENT)
    lab.run_until("SdeiDispatch", cpu=2)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(count):
        lab.step_firmware_button.click()
    profiler.disable()
    print(f"\nProfile of {count} Step firmware clicks, plots drawn in the click:")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def run_button(elf: Path, plots_enabled: bool) -> tuple[float, float, int, int]:
    """One whole run through the Run button (``lab.start()``, a background thread; ``lab.wait()``
    joins it): (wall s, process CPU s, facts, instructions)."""
    lab = Lab(elf, cpus=4, plots_enabled=plots_enabled)
    assert lab.wait_plots(120)
    wall, cpu = time.perf_counter(), time.process_time()
    lab.start()
    info = lab.wait(600)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert info is not None and info.reason == "system-off", info
    assert lab.wait_plots(120)  # never leave a drawing behind: the next measurement would pay for it
    return wall, cpu, len(lab.session.trace), lab.session.retired


def bare_run(elf: Path, log_class: type[TraceLog]) -> tuple[float, float, int, int]:
    log = log_class()
    platform = make_platform(4, trace=log)
    platform.load(elf)
    wall, cpu = time.perf_counter(), time.process_time()
    outcome = platform.run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert outcome.exit_status == 0, outcome
    return wall, cpu, len(log), platform.machine.retired


def record_rate(repeats: int) -> None:
    print(f"\nRecords appended per second, a whole run of each guest (4 CPUs, profile virt; "
          f"each the median of {repeats} runs by wall time):")
    for name in RUN_GUESTS:
        elf = SDEI / f"{name}.elf"
        ways: list[tuple[str, Callable[[], tuple[float, float, int, int]]]] = [
            ("Run button", partial(run_button, elf, True)),
            ("Run button, plots off", partial(run_button, elf, False)),
            ("Platform.run", partial(bare_run, elf, TraceLog)),
            ("Platform.run, no trace", partial(bare_run, elf, DroppingLog)),
        ]
        results = {label: sorted(way() for _ in range(repeats))[repeats // 2] for label, way in ways}
        retired = {r[3] for r in results.values()}
        assert len(retired) == 1, retired  # the same run every way
        facts = results["Platform.run"][2]
        print(f"  {name}: {facts:,} facts, {retired.pop():,} instructions")
        for label, (wall, cpu, appended, instructions) in results.items():
            rate = f"{appended / wall:10,.0f} facts/s" if appended else f"{'-':>10} facts/s"
            print(f"    {label:<24} {rate}  {instructions / wall / 1e6:6.1f} MIPS  "
                  f"({wall:.3f} s wall, {cpu:.3f} s CPU)")
        with_trace, without = results["Platform.run"][1], results["Platform.run, no trace"][1]
        print(f"    the trace's cost: {with_trace / without:.2f}x the CPU time of the same run without it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="clicks per button (default 50)")
    parser.add_argument("--runs", type=int, default=5, help="whole runs per way of running (default 5)")
    parser.add_argument("--profile", action="store_true", help="also cProfile 10 Step firmware clicks")
    args = parser.parse_args()
    step_latency(args.steps)
    record_rate(args.runs)
    if args.profile:
        profile_step_firmware(10)


if __name__ == "__main__":
    main()
