"""Tier 3 of the widget tests (issue 4 item 6): JupyterLab and the Voila dashboard in a real browser.

``sdeilab lab`` and ``sdeilab dashboard`` are started as a user starts them (loopback, token kept)
and Debian's chromium, driven by Playwright, runs a notebook, checks that the ipywidgets rendered
with no error, clicks, and checks that the page changed. The harness is tests/browser.py; the
notebooks here are small self-contained fixtures in tests/notebooks/, so a failure points at the
browser tier itself rather than at the lab's widgets; the last tests then drive the lab's own
dashboard, notebooks/01_dashboard.ipynb, the same way. Screenshots: see tests/browser.py.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from .conftest import run_cli

pytest_plugins = ("tests.browser",)

TEST_NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"
COUNTER = TEST_NOTEBOOKS / "counter.ipynb"
NOTEBOOKS = TEST_NOTEBOOKS.parent.parent / "notebooks"
DASHBOARD = NOTEBOOKS / "01_dashboard.ipynb"
# Every control of the Lab that is a button, by its text label (a projector may lack the icons).
LAB_BUTTONS = ("Run", "Pause", "Step", "Step firmware", "Run until", "Step back", "Reset", "Add", "Break on",
               "Remove")
WAIT_MS = 30_000  # a step or a run in the kernel plus the plots it redraws, on a loaded 2-core machine
# The screens the dashboard is checked on; at DESK the controls and both pictures must all be on the first screen.
VIEWPORTS = ((1280, 800), (1440, 900), (1920, 1080))
DESK = (1440, 900)
DASHBOARD_PARTS = (".sdeilab-controls", ".sdeilab-status", "img.sdeilab-picture")
NARROW = (1280, 800)  # JupyterLab's side bar open: about 860 CSS pixels for the dashboard
# What is wrong with how the dashboard fits its place, at any size (the page scrolled to it): a
# picture shown smaller than the CSS size its text is sized for (half its pixels: plots.PIXEL_RATIO),
# an element of the dashboard whose content is wider than it and that clips it or scrolls sideways
# (form fields aside: their text scrolls inside them by design), a part of the dashboard outside
# its output area or the window, a panel around it that scrolls sideways; with ``lists``, also a
# recent-calls entry wider than its list (a <select> clips its options without a scroll bar).
FIT_PROBLEMS_JS = """([ratio, lists]) => {
    const problems = [];
    const lab = document.querySelector('.sdeilab-lab');
    if (!lab) return ['no dashboard on the page'];
    const name = el => el.tagName.toLowerCase() + [...el.classList].map(c => '.' + c).join('');
    for (const img of lab.querySelectorAll('img.sdeilab-picture')) {
        const r = img.getBoundingClientRect(), designed = img.naturalWidth / ratio;
        if (r.width < designed - 0.5)
            problems.push(`${name(img)} shown ${r.width.toFixed(0)} px wide, designed for ${designed} px`);
    }
    for (const el of [lab, ...lab.querySelectorAll('*')]) {
        if (el.closest('select, input, textarea, .widget-readout') || el.offsetParent === null) continue;
        const overflow = getComputedStyle(el).overflowX;
        if (overflow !== 'visible' && el.scrollWidth > el.clientWidth + 1)
            problems.push(`${name(el)} (overflow-x ${overflow}) holds ${el.scrollWidth} px in ${el.clientWidth} px`);
    }
    const area = (lab.closest('.jp-OutputArea-output') || document.body).getBoundingClientRect();
    for (const el of lab.querySelectorAll('table, pre, img, .widget-button, select')) {
        const r = el.getBoundingClientRect();
        if (r.width === 0) continue;
        if (r.left < area.left - 1 || r.right > area.right + 1 || r.left < -1 || r.right > window.innerWidth + 1)
            problems.push(`${name(el)} at x ${r.left.toFixed(0)}..${r.right.toFixed(0)}: outside its area `
                          + `${area.left.toFixed(0)}..${area.right.toFixed(0)} or the window`);
    }
    for (let el = lab.parentElement; el; el = el.parentElement) {
        const overflow = getComputedStyle(el).overflowX;
        if (el.scrollWidth > el.clientWidth + 1 && (overflow === 'auto' || overflow === 'scroll'
                                                    || el === document.scrollingElement))
            problems.push(`${name(el)} scrolls sideways: ${el.scrollWidth} px in ${el.clientWidth} px`);
    }
    if (lists) {
        const context = document.createElement('canvas').getContext('2d');
        for (const select of lab.querySelectorAll('.sdeilab-calls select')) {
            const style = getComputedStyle(select);
            context.font = `${style.fontSize} ${style.fontFamily}`;
            for (const option of select.options) {
                const width = context.measureText(option.text).width;
                if (width > select.clientWidth - 8)
                    problems.push(`recent call cut: ${width.toFixed(0)} px in ${select.clientWidth} px: `
                                  + option.text);
            }
        }
    }
    return problems;
}"""
KERNEL_GONE_S = 30.0  # a closed page's kernel is shut down at once; the slack is for a loaded machine
CULL_AFTER_S = 3  # `sdeilab dashboard --cull-after` for the culling test: a kernel with no page, idle this long


# --- the commands' contract, without a browser -------------------------------------------------------------


def test_dashboard_names_a_missing_notebook(tmp_path: Path) -> None:
    result = run_cli("dashboard", tmp_path / "nope.ipynb")
    assert result.returncode == 2
    assert "no such notebook" in result.stderr.decode() and "Traceback" not in result.stderr.decode()


def test_lab_names_a_missing_folder(tmp_path: Path) -> None:
    result = run_cli("lab", tmp_path / "nowhere", "--no-browser")
    assert result.returncode == 2
    assert "no notebook folder" in result.stderr.decode()


# --- servers keep their token ------------------------------------------------------------------------------


@pytest.mark.browser
def test_lab_keeps_its_token(lab_server) -> None:  # type: ignore[no-untyped-def]
    lab = lab_server(TEST_NOTEBOOKS)
    assert lab.get("api/contents") == 200
    assert lab.get("api/contents", token=False) == 403


@pytest.mark.browser
def test_dashboard_keeps_its_token(voila_server) -> None:  # type: ignore[no-untyped-def]
    voila = voila_server(COUNTER)
    # Without the token Voila sends the browser to its login page instead of running the notebook.
    status = voila.get("", token=False)
    assert status in (302, 403), status


# --- widgets in JupyterLab ---------------------------------------------------------------------------------


@pytest.mark.browser
def test_widgets_render_and_respond_in_jupyterlab(lab_server, widget_page) -> None:  # type: ignore[no-untyped-def]
    widget_page.open_notebook(lab_server(TEST_NOTEBOOKS), "counter.ipynb")
    widget_page.expect_widgets_ok(buttons=["Increment"])
    label = widget_page.page.locator(".widget-label")
    picture = widget_page.images().first
    assert label.inner_text() == "count = 0"
    widget_page.shot("rendered")
    src, pixels = picture.get_attribute("src"), widget_page.snapshot(picture)

    widget_page.click("Increment")
    # The kernel ran the handler and the page shows its three effects: label, new image, new pixels.
    from playwright.sync_api import expect

    expect(label).to_have_text("count = 1")
    pixels = widget_page.expect_changed(picture, pixels)
    assert picture.get_attribute("src") != src
    widget_page.shot("clicked")

    widget_page.click("Increment")
    expect(label).to_have_text("count = 2")
    widget_page.expect_changed(picture, pixels)
    widget_page.expect_widgets_ok()


@pytest.mark.browser
def test_the_harness_sees_a_widget_error(lab_server, widget_page) -> None:  # type: ignore[no-untyped-def]
    # A widget whose JavaScript is missing shows an error box; the check every test relies on must fail.
    widget_page.open_notebook(lab_server(TEST_NOTEBOOKS), "broken_widget.ipynb")
    with pytest.raises(AssertionError, match=r"a widget shows an error.*Failed to load model class"):
        widget_page.expect_widgets_ok(buttons=["Fine"])


@pytest.mark.browser
def test_the_harness_fails_when_widgets_do_not_render(lab_server, widget_page) -> None:  # type: ignore[no-untyped-def]
    # ipywidgets' front end (the widget manager's JavaScript) cannot be loaded: the kernel still sends
    # widgets, but the page shows only their text form, as on a machine whose front end is missing.
    widget_page.block_widget_manager()
    widget_page.open_notebook(lab_server(TEST_NOTEBOOKS), "counter.ipynb")
    with pytest.raises(AssertionError, match="widgets did not render"):
        widget_page.expect_widgets_ok(buttons=["Increment"], timeout_ms=3_000)
    assert widget_page.page.get_by_text("VBox(children=").count() >= 1


# --- the Voila dashboard -----------------------------------------------------------------------------------


@pytest.mark.browser
def test_widgets_render_and_respond_in_the_dashboard(voila_server, widget_page) -> None:  # type: ignore[no-untyped-def]
    widget_page.open_dashboard(voila_server(COUNTER))
    widget_page.expect_widgets_ok(buttons=["Increment"])
    from playwright.sync_api import expect

    label = widget_page.page.locator(".widget-label")
    picture = widget_page.images().first
    expect(label).to_have_text("count = 0")
    widget_page.shot("rendered")
    pixels = widget_page.snapshot(picture)
    widget_page.click("Increment")
    expect(label).to_have_text("count = 1")
    widget_page.expect_changed(picture, pixels)
    widget_page.shot("clicked")
    widget_page.expect_widgets_ok()
    # Voila hides the sources: a projector shows the app, not the code.
    assert widget_page.page.get_by_text("button.on_click(increment)").count() == 0


def test_the_fixture_notebooks_are_stored_without_outputs() -> None:
    paths = sorted(TEST_NOTEBOOKS.glob("*.ipynb"))
    assert COUNTER in paths
    for path in paths:
        cells = json.loads(path.read_text())["cells"]
        assert all(not cell.get("outputs") for cell in cells if cell["cell_type"] == "code"), path


# --- the lab's dashboard (notebooks/01_dashboard.ipynb) ----------------------------------------------------


def _retired(status: str) -> int:
    match = re.search(r"([\d,]+) instructions retired", status)
    assert match, status
    return int(match.group(1).replace(",", ""))


def _step_and_run(widget_page, shots: str) -> None:  # type: ignore[no-untyped-def]
    """Press Step, then Run, through the page; check the status line, the state label and both pictures.

    Where the notebook leaves the machine (its section 5): CPU 2 is back inside the state-machine
    scenario right after sub-test c's COMPLETE, event 2000 is ``registered``, and the breakpoint
    "SDEI_EVENT_COMPLETE on CPU 2" is set. One instruction changes no SDEI state; Run goes on to
    CPU 2's next COMPLETE, sub-test d's, which ends unregister-pending: the event is ``unregistered``.
    """
    from playwright.sync_api import expect

    page = widget_page.page
    status, state = page.locator(".sdeilab-status"), page.locator(".sdeilab-state")
    pictures = widget_page.images()
    expect(pictures).to_have_count(2, timeout=WAIT_MS)  # the state machine, then the timeline
    state_picture, timeline_picture = pictures.nth(0), pictures.nth(1)
    expect(status).to_contain_text("step-back: back 25 instructions", timeout=WAIT_MS)
    expect(state).to_have_text("registered", timeout=WAIT_MS)
    retired = _retired(status.inner_text())
    state_before = widget_page.steady_snapshot(state_picture)
    timeline_before = widget_page.steady_snapshot(timeline_picture)
    sources = state_picture.get_attribute("src"), timeline_picture.get_attribute("src")
    widget_page.shot(f"{shots}-rendered")

    widget_page.click("Step")
    expect(status).to_contain_text("stepped 1 instruction (all CPUs)", timeout=WAIT_MS)
    expect(status).to_contain_text(f"{retired + 1:,} instructions retired", timeout=WAIT_MS)
    expect(state).to_have_text("registered")
    widget_page.shot(f"{shots}-stepped")

    widget_page.click("Run")
    # The stop speaks: the call with its argument, and that it returns nowhere (it resumes CPU 2).
    expect(status).to_contain_text("SDEI_EVENT_COMPLETE(0) on CPU 2", timeout=WAIT_MS)
    expect(status).to_contain_text("no return")
    expect(state).to_have_text("unregistered", timeout=WAIT_MS)
    widget_page.expect_changed(state_picture, state_before)
    widget_page.expect_changed(timeline_picture, timeline_before)
    assert (state_picture.get_attribute("src"), timeline_picture.get_attribute("src")) != sources
    assert _retired(status.inner_text()) > retired + 1
    widget_page.shot(f"{shots}-ran")
    widget_page.expect_widgets_ok()


def _check_layout(widget_page, where: str) -> None:  # type: ignore[no-untyped-def]
    """At each of VIEWPORTS: no picture stretched out of its aspect (2% at most) or shown smaller
    than designed, nothing of the dashboard cut or scrolling sideways (FIT_PROBLEMS_JS; at NARROW
    no recent call cut either), a screenshot; at DESK, the controls, the status line and both
    pictures all on the first screen. In JupyterLab
    with the file browser open beside the notebook, the dashboard scrolled to the top of its panel
    (the cell's code is above it); in Voila the page as it opens."""
    from playwright.sync_api import expect

    page = widget_page.page
    expect(page.locator("img.sdeilab-picture")).to_have_count(2, timeout=WAIT_MS)
    page.wait_for_function("""() => [...document.querySelectorAll('img.sdeilab-picture')]
                                     .every(img => img.complete && img.naturalWidth > 0)""", timeout=WAIT_MS)
    if where == "lab":
        page.evaluate("() => window.jupyterapp.commands.execute('filebrowser:activate')")
        page.wait_for_function("() => !window.jupyterapp.shell.leftCollapsed", timeout=WAIT_MS)
    problems: list[str] = []
    misfits: list[str] = []
    for width, height in VIEWPORTS:
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(500)  # the layout settles (JupyterLab resizes its panels on a timer)
        if where == "lab":
            page.locator(".sdeilab-lab").first.evaluate("el => el.scrollIntoView({block: 'start'})")
        else:
            page.evaluate("() => window.scrollTo(0, 0)")
        page.wait_for_timeout(200)
        widget_page.viewport_shot(f"{where}-{width}x{height}")
        widget_page.expect_aspects_kept()
        if (width, height) == DESK:
            problems = widget_page.boxes_outside_viewport(DASHBOARD_PARTS)
        fit = page.evaluate(FIT_PROBLEMS_JS, [2, (width, height) == NARROW])
        misfits += [f"{width}x{height}: {problem}" for problem in fit]
    page.set_viewport_size({"width": 1280, "height": 900})
    assert not problems, f"not on the first screen at {DESK[0]}x{DESK[1]} ({where}): {problems}"
    assert not misfits, f"the dashboard does not fit ({where}):\n" + "\n".join(misfits)


@pytest.mark.browser
def test_the_dashboard_notebook_steps_and_runs_in_jupyterlab(lab_server, widget_page) -> None:  # type: ignore[no-untyped-def]
    widget_page.open_notebook(lab_server(NOTEBOOKS), DASHBOARD.name)
    widget_page.expect_widgets_ok(buttons=LAB_BUTTONS)
    _check_layout(widget_page, "lab")
    _step_and_run(widget_page, "lab")


@pytest.mark.browser
def test_the_dashboard_notebook_as_a_voila_app(voila_server, widget_page) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    widget_page.open_dashboard(voila_server(DASHBOARD))
    widget_page.expect_widgets_ok(buttons=LAB_BUTTONS)
    # Voila shows the dashboard while the later cells still run: clicks wait for the last one.
    expect(widget_page.page.get_by_text("all checks passed")).to_be_visible(timeout=WAIT_MS * 2)
    widget_page.expect_widgets_ok(buttons=LAB_BUTTONS)
    _check_layout(widget_page, "voila")
    _step_and_run(widget_page, "voila")
    assert widget_page.page.get_by_text("from sdeilab.widgets import Lab").count() == 0  # the app, not its code


# --- kernels do not leak -------------------------------------------------------------------------------------


@pytest.mark.browser
def test_a_closed_dashboard_page_shuts_its_kernel_down(voila_server, widget_page) -> None:  # type: ignore[no-untyped-def]
    # Each page load starts a kernel; closing the page (its "beforeunload") must end it, so that a
    # projector session of many reloads does not pile kernels up.
    voila = voila_server(COUNTER)
    before = len(voila.kernels())
    widget_page.open_dashboard(voila)
    widget_page.expect_widgets_ok(buttons=["Increment"])
    assert len(voila.kernels()) == before + 1
    widget_page.page.close(run_before_unload=True)
    took = voila.wait_for_kernels(before, KERNEL_GONE_S)
    print(f"[browser] the closed page's kernel was gone after {took:.1f} s")


@pytest.mark.browser
def test_a_dashboard_kernel_whose_page_vanished_is_culled(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # A page that could not say goodbye (a crashed tab, a laptop that slept): no "beforeunload", only
    # the websocket drops. The server's culler ends the kernel once it has been idle with no
    # connection for --cull-after seconds.
    from .browser import run_server

    root = tmp_path / "notebooks"
    shutil.copytree(TEST_NOTEBOOKS, root)
    with run_server("voila", ["dashboard", str(root / COUNTER.name), "--cull-after", str(CULL_AFTER_S)],
                    root=root, home=tmp_path) as voila:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        try:
            page = context.new_page()
            page.goto(voila.url(), timeout=120_000)
            page.locator(".widget-button", has_text="Increment").wait_for(timeout=WAIT_MS * 2)
            assert len(voila.kernels()) == 1
            page.close(run_before_unload=False)  # the page goes without running its unload handlers
        finally:
            context.close()
        took = voila.wait_for_kernels(0, KERNEL_GONE_S + 2 * CULL_AFTER_S)
        print(f"[browser] the abandoned kernel was culled after {took:.1f} s")
