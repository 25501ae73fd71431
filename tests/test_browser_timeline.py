"""The interactive timeline (sdeilab/widgets/timeline_view.py) in a real browser, JupyterLab and Voila.

Notebook 31 shows it (section 4, "Explore it yourself"); the test runs that notebook as a student
would, then drives the figure with the mouse as a student would: hovering a handler bar must
write that handler's fact below the figure, a wheel turn over it must narrow the window it shows
and a drag must move it (both read back from the window line above the figure, which the kernel
writes, and from the canvas's pixels), and the reset button must bring back the first window.
Both at 1280x800 and 1920x1080. Screenshots of the page and of the widget go where
tests/browser.py puts them (the test's tmp folder, and test-artifacts/ with SDEILAB_ARTIFACTS=1).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from sdeilab.viz.timeline import HANDLER_BAND
from sdeilab.widgets import timeline_view as tv

if TYPE_CHECKING:
    from .browser import WidgetPage

pytest_plugins = ("tests.browser",)

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOK = NOTEBOOKS / "31_normal_vs_critical.ipynb"
VIEWPORTS = [(1280, 800), (1920, 1080)]
WAIT_MS = 30_000  # a redraw in the kernel and its picture on its way back, on a loaded 2-core machine


def _window(page: Any) -> tuple[float, float]:
    span = page.locator(".sdeilab-timeline-window span[data-lo]")
    return float(span.get_attribute("data-lo")), float(span.get_attribute("data-hi"))


def _wait_window(widget_page: WidgetPage, before: tuple[float, float]) -> tuple[float, float]:
    """The window once it differs from ``before`` (the kernel answered the pointer)."""
    widget_page.page.wait_for_function(
        """before => { const s = document.querySelector('.sdeilab-timeline-window span[data-lo]');
                       return s && (Number(s.dataset.lo) !== before[0] || Number(s.dataset.hi) !== before[1]); }""",
        arg=list(before), timeout=WAIT_MS)
    return _window(widget_page.page)


def _widget_shot(widget_page: WidgetPage, label: str) -> Path:
    """The timeline widget alone, beside the page screenshots."""
    from .browser import STEP_TIMEOUT_MS, _keep_artifact  # imported late: pytest loads it as a plugin first

    path = widget_page.shots_dir / f"{widget_page.name}-timeline-{label}.png"
    widget_page.page.locator(".sdeilab-timeline").screenshot(path=str(path), timeout=STEP_TIMEOUT_MS)
    widget_page.shots.append(path)
    _keep_artifact(path, path.name)
    return path


def _drive(widget_page: WidgetPage) -> None:
    from playwright.sync_api import expect

    page = widget_page.page
    view = page.locator(".sdeilab-timeline")
    expect(view).to_be_visible(timeout=WAIT_MS)
    view.scroll_into_view_if_needed()
    # ipympl draws on one canvas and takes the pointer on a transparent one above it.
    canvases = view.locator("canvas")
    expect(canvases.first).to_be_visible(timeout=WAIT_MS)
    picture = canvases.first
    pointer = canvases.last
    widget_page.steady_snapshot(picture)
    box = pointer.bounding_box()
    assert box is not None
    # The figure is shown at its own size (DPI CSS pixels an inch): the frame's constants say where
    # the axes are; lane 0 (CPU 0) is the only one, its handler band a little above its centre.
    assert abs(box["width"] - tv.WIDTH_IN * tv.DPI) <= 2, box
    left, right = box["x"] + tv.LEFT_IN * tv.DPI, box["x"] + (tv.WIDTH_IN - tv.RIGHT_IN) * tv.DPI
    handler_y = box["y"] + (tv.TOP_IN + tv.LANE_IN * (0.5 + sum(HANDLER_BAND) / 2)) * tv.DPI
    _widget_shot(widget_page, "rendered")
    home = _window(page)
    assert home[1] > home[0]

    # Hover: sweep along the handler band until the line below the figure names a handler.
    fact = page.locator(".sdeilab-timeline-fact")
    found = ""
    x = left + 4
    while x < right and "SDEI handler" not in found:
        page.mouse.move(x, handler_y)
        page.wait_for_timeout(90)  # ipympl sends pointer moves at most every 33 ms
        found = fact.inner_text()
        x += 8
    assert "SDEI handler of event" in found, f"no handler's fact shown along the band; last: {found!r}"
    assert "interrupted <" in found and "depth" in found, found
    widget_page.shot("hover")
    _widget_shot(widget_page, "hover")

    # Wheel: zoom in around the pointer; the window narrows and the picture changes.
    before_pixels = widget_page.steady_snapshot(picture)
    centre = (left + right) / 2
    page.mouse.move(centre, handler_y)
    page.mouse.wheel(0, -120)
    zoomed = _wait_window(widget_page, home)
    assert zoomed[1] - zoomed[0] < (home[1] - home[0]) * 0.95, (home, zoomed)
    assert home[0] <= zoomed[0] and zoomed[1] <= home[1], (home, zoomed)
    widget_page.expect_changed(picture, before_pixels, timeout_ms=WAIT_MS)
    widget_page.shot("wheel")
    _widget_shot(widget_page, "wheel")

    # Drag to the right: the window moves to earlier vtimes, keeping its width.
    before_pixels = widget_page.steady_snapshot(picture)
    page.mouse.move(centre, handler_y)
    page.mouse.down()
    page.mouse.move(centre + 100, handler_y, steps=6)
    page.mouse.up()
    page.wait_for_timeout(200)
    dragged = _wait_window(widget_page, zoomed)
    dragged = _window(page)  # the last of the moves
    width = zoomed[1] - zoomed[0]
    assert dragged[0] < zoomed[0], (zoomed, dragged)
    assert abs((dragged[1] - dragged[0]) - width) <= width * 0.01, (zoomed, dragged)
    widget_page.expect_changed(picture, before_pixels, timeout_ms=WAIT_MS)
    widget_page.shot("drag")
    _widget_shot(widget_page, "drag")

    # Reset: the first window again.
    widget_page.click("Reset view")
    expect(page.locator(".sdeilab-timeline-window span[data-lo]")).to_have_attribute(
        "data-lo", f"{home[0]:.0f}", timeout=WAIT_MS)
    assert _window(page) == home
    widget_page.expect_widgets_ok()


@pytest.mark.browser
@pytest.mark.parametrize(("width", "height"), VIEWPORTS, ids=[f"{w}x{h}" for w, h in VIEWPORTS])
def test_timeline_in_jupyterlab(lab_server, widget_page, width: int, height: int) -> None:  # type: ignore[no-untyped-def]
    widget_page.page.set_viewport_size({"width": width, "height": height})
    widget_page.open_notebook(lab_server(NOTEBOOKS), NOTEBOOK.name)
    widget_page.expect_widgets_ok(buttons=["Reset view"])
    _drive(widget_page)


@pytest.mark.browser
@pytest.mark.parametrize(("width", "height"), VIEWPORTS, ids=[f"{w}x{h}" for w, h in VIEWPORTS])
def test_timeline_in_voila(voila_server, widget_page, width: int, height: int) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    widget_page.page.set_viewport_size({"width": width, "height": height})
    widget_page.open_dashboard(voila_server(NOTEBOOK))
    widget_page.expect_widgets_ok(buttons=["Reset view"])
    # Voila shows widgets while later cells still run; the pointer's messages would wait behind them.
    # The last cells are the two that check (the notebook's own, and its exercise's): wait for both.
    expect(widget_page.page.get_by_text(re.compile(r"all \d+ claims hold"))).to_have_count(2, timeout=WAIT_MS * 2)
    _drive(widget_page)
