"""The interactive timeline without a browser: what it draws, what the pointer does to it, what hover reads.

The browser tier (tests/test_browser_timeline.py) drives the same widget with a real mouse.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from matplotlib.backend_bases import MouseButton, MouseEvent

from sdeilab.lab.platform import make_platform
from sdeilab.toolchain import guests_dir
from sdeilab.trace import SmcccCall, SmcccReturn, TraceLog
from sdeilab.trace.intervals import firmware_calls, handler_intervals
from sdeilab.viz.quality import figure_problems
from sdeilab.widgets.timeline_view import TimelineView, fetch_calls, merge_boxes

GUEST = guests_dir() / "sdei" / "nesting.elf"


@pytest.fixture(scope="module")
def nesting() -> TraceLog:
    log = TraceLog()
    platform = make_platform(1, "virt", trace=log)
    platform.load(GUEST)
    platform.run(10_000_000)
    return log


def test_calls_pair_as_firmware_calls_does(nesting: TraceLog) -> None:
    calls = fetch_calls(nesting, None, None)
    want = sorted((c.start, c.layer) for c in firmware_calls(nesting))
    got = sorted(zip(calls.vtime.tolist(), [([*calls.layers, ""])[i] for i in calls.layer.tolist()], strict=True))
    assert got == want
    # A window query finds the same calls as the whole trace cut to that window.
    lo, hi = nesting.max_vtime() // 3, nesting.max_vtime() // 2
    part = fetch_calls(nesting, lo, hi)
    assert part.vtime.tolist() == [v for v in calls.vtime.tolist() if lo <= v < hi]


def test_merge_boxes_matches_a_plain_merge() -> None:
    rng = random.Random(7)
    boxes = [(rng.randrange(3), rng.randrange(2), s, s + rng.randrange(0, 40))
             for s in (rng.randrange(10_000) for _ in range(2000))]
    cpu, key, start, end = (np.array(column) for column in zip(*boxes, strict=True))
    got = sorted(zip(*(a.tolist() for a in merge_boxes(cpu, key, start, end, 5.0)), strict=True))
    want: list[tuple[int, int, int, int]] = []
    for c, k, s, e in sorted(boxes):
        if want and want[-1][:2] == (c, k) and s - want[-1][3] <= 5:
            want[-1] = (c, k, want[-1][2], max(e, want[-1][3]))
        else:
            want.append((c, k, s, e))
    assert got == want


def _view(log: TraceLog) -> TimelineView:
    handlers = handler_intervals(log)
    first, last = handlers[0].start, max(h.end or h.start for h in handlers)
    view = TimelineView(log, cpus=[0], window=(first - 100, last + 100), symbolize=lambda a: "sym")
    view.canvas.draw()
    return view


def test_wheel_drag_and_reset_move_the_window(nesting: TraceLog) -> None:
    view = _view(nesting)
    home = view.window
    canvas, bbox = view.canvas, view.ax.bbox
    x, y = bbox.x0 + bbox.width / 2, bbox.y0 + bbox.height / 2
    MouseEvent("scroll_event", canvas, x, y, step=1)._process()
    zoomed = view.window
    assert zoomed[1] - zoomed[0] == pytest.approx((home[1] - home[0]) * 0.8)
    assert view.ax.get_xlim() == zoomed
    MouseEvent("button_press_event", canvas, x, y, MouseButton.LEFT)._process()
    MouseEvent("motion_notify_event", canvas, x + 100, y, MouseButton.LEFT)._process()
    MouseEvent("button_release_event", canvas, x + 100, y, MouseButton.LEFT)._process()
    shift = 100 * (zoomed[1] - zoomed[0]) / bbox.width
    assert view.window == pytest.approx((zoomed[0] - shift, zoomed[1] - shift))
    builds = view.redraws
    canvas.draw()  # the lanes are built again when the picture is drawn, not at each pointer event
    assert view.redraws == builds + 1
    view.reset()
    assert view.window == home


def test_the_figure_is_readable_and_shows_back_to_back_handlers(nesting: TraceLog) -> None:
    view = _view(nesting)
    assert figure_problems(view.figure) == []
    gids = {a.get_gid() for a in view.ax.get_children()}
    assert {"handlers-normal", "handler-boundaries", "event-label"} <= gids
    view.follow(nesting.max_vtime())  # past the window: it pans to show "now"
    view.canvas.draw()
    lo, hi = view.window
    assert lo <= nesting.max_vtime() <= hi and "now" in {a.get_gid() for a in view.ax.get_children()}
    assert figure_problems(view.figure) == []


def test_hover_reads_handlers_and_calls(nesting: TraceLog) -> None:
    view = _view(nesting)
    first = handler_intervals(nesting)[0]
    assert first.end is not None
    text = view.describe((first.start + first.end) / 2, 0.0)
    assert text is not None and f"SDEI handler of event {first.event}</b> (normal, depth 1)" in text
    assert "interrupted &lt;sym&gt;" in text and "ended by SDEI_EVENT_COMPLETE" in text
    call = next(f for f in nesting.of_kind(SmcccCall) if f.vtime > view.window[0] and f.name == "SDEI_EVENT_SIGNAL")
    text = view.describe(call.vtime, -0.32)
    ret = next(f for f in nesting.of_kind(SmcccReturn) if f.seq > call.seq)
    assert text is not None and "SDEI_EVENT_SIGNAL</b>(0x0" in text and f"answered by <b>{ret.layer}" in text
    assert "SUCCESS" in text
    assert view.describe(view.window[0] - 1e6, 5.0) is None  # no lane there
