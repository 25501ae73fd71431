"""The real-browser harness (issue 4 item 6, tier 3; shared/reference A3): JupyterLab and Voila in Debian's chromium.

A server is started the way a user starts it, through ``sdeilab lab`` or ``sdeilab dashboard``, on a
free loopback port, with a token the test knows (``JUPYTER_TOKEN``: authentication stays on) and a
throw-away Jupyter configuration, so nothing from the user's ~/.jupyter leaks in and nothing leaks out.
Debian's chromium (/usr/bin/chromium) is driven by the Playwright Python package; no browser is ever
downloaded (``playwright install`` is never run). Every wait is bounded, and a server is torn down
with its whole process tree, kernels included, even when the test fails.

Use from a test module with ``pytest_plugins = ("tests.browser",)``; the fixtures:

``lab_server(folder)``
    JupyterLab (``sdeilab lab --no-browser``) on a temporary copy of ``folder``; one per folder per session.
``voila_server(notebook)``
    ``sdeilab dashboard NOTEBOOK`` on a temporary copy of the notebook's folder.
``voila_folder_server(folder)``
    ``sdeilab dashboard FOLDER`` on a temporary copy of ``folder``, every notebook of it an app
    (:meth:`WidgetPage.start_dashboard` names one); one per folder per session.
``widget_page``
    A fresh :class:`WidgetPage` (a Playwright page plus the checks below); its last screenshot is
    taken after the test, pass or fail.
``reused_widget_page``
    The same, but one page (companions included) for the whole test module, kept from test to test
    (JupyterLab loaded once: :meth:`WidgetPage.start_notebook` with ``reuse``); its last screenshot is
    taken only when the test failed.

A dashboard test is then a few lines::

    def test_dashboard(lab_server, widget_page):
        widget_page.open_notebook(lab_server(NOTEBOOKS), "02_dashboard.ipynb")
        widget_page.expect_widgets_ok(buttons=["Step", "Run"])
        before = widget_page.snapshot(widget_page.images().nth(0))
        widget_page.click("Step")
        widget_page.expect_changed(widget_page.images().nth(0), before)

A notebook's figures (tests/test_browser_notebooks.py): :meth:`WidgetPage.expect_figures` waits for
the figures the cells draw, :meth:`WidgetPage.figure_problems` scrolls to each, saves its screenshot
and says what is wrong with it (not loaded, stretched, shrunk, wider than its output area); a page can run
beside another (:meth:`WidgetPage.companion`), e.g. Voila while JupyterLab runs the same notebook
(:meth:`WidgetPage.start_notebook`, :meth:`WidgetPage.begin_run_all`, :meth:`WidgetPage.start_dashboard`).

Screenshots go to the test's temporary folder, and also to ``test-artifacts/`` when the environment
variable ``SDEILAB_ARTIFACTS`` is set (``1``; any other value names the folder), with the server logs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
# The flags the machine's probe and A3 found to work headless as root with no network: without the
# background-networking ones chromium keeps trying Google's hosts and gets refused, many at a time.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
VIEWPORT = {"width": 1280, "height": 900}
LOOPBACK = "http://127.0.0.1:"

SERVER_START_TIMEOUT_S = 90.0   # JupyterLab needs ~5 s here; the rest is slack for a loaded 2-core machine
SERVER_STOP_TIMEOUT_S = 10.0
STEP_TIMEOUT_MS = 30_000        # any single wait in the browser
RUN_ALL_TIMEOUT_MS = 120_000    # a whole notebook, run top to bottom in the page

# JupyterLab's first-start "news" toast covers part of the page; switching the plugin off is what
# works (A2: --LabApp.news_url=None does not).
ANNOUNCEMENTS = "@jupyterlab/apputils-extension:announcements"
# Where JupyterLab fetches ipywidgets' front end from; a test blocks it to see a page without widgets.
WIDGET_MANAGER_JS = "**/lab/extensions/@jupyter-widgets/jupyterlab-manager/**"

# What ipywidgets' front end writes where a widget should be when it cannot show it (strings from
# @jupyter-widgets/base and jupyterlab-manager 5), and what a failed cell looks like in Lab and Voila.
WIDGET_ERROR_TEXTS = ("Error displaying widget", "model not found", "Failed to load model class",
                      "Failed to create view", "Could not create a model", "Could not create a view",
                      "Traceback (most recent call last)", "There was an error when executing cell")
WIDGET_ERROR_SELECTOR = ".jupyter-widgets-error-widget"
STDERR_OUTPUT = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'

# A notebook's figures as JupyterLab and Voila show them: every <img> in a cell's output (inline
# matplotlib's PNGs, Image widgets) and every canvas (ipympl draws on one and takes the pointer on
# a transparent one above it: their parent is the figure). Each is numbered in page order with
# data-sdeilab-figure, so that a test can scroll to it and take its picture.
MARK_FIGURES_JS = """() => {
    const cells = [...document.querySelectorAll('.jp-Notebook .jp-Cell')];
    const figures = [];
    for (const el of document.querySelectorAll('.jp-OutputArea-output img, .jp-OutputArea-output canvas')) {
        const figure = el.tagName === 'IMG' ? el : el.parentElement;
        if (!figures.includes(figure)) figures.push(figure);
    }
    document.querySelectorAll('[data-sdeilab-figure]').forEach(el => el.removeAttribute('data-sdeilab-figure'));
    return figures.map((figure, index) => {
        figure.dataset.sdeilabFigure = String(index);
        return {index, cell: cells.indexOf(figure.closest('.jp-Cell')), kind: figure.tagName.toLowerCase(),
                hidden: figure.offsetParent === null};
    });
}"""
# One figure's geometry and what is wrong with it: a picture not loaded, shown at another aspect
# than its own (more than `tolerance`), shown narrower than it was drawn to be shown (more than a
# pixel: shrunk, so its text is smaller than designed), wider than its output area or clipped by a
# scroll bar in it, or (once scrolled to) not inside the window.
#
# A picture's own size, "intended" (CSS pixels), is the one it asks to be shown at: an <img>'s
# width/height attributes when set (matplotlib-inline's "retina" PNGs have twice the pixels and
# those attributes at half: its natural aspect must then agree with theirs), else its natural size;
# an ipympl canvas's CSS size as the widget sets it (style.width/height, the figure's pixels at
# dpi; its width/height attributes are the backing store, devicePixelRatio times that), else the
# figure's (canvas_div) style size, else its declared size.
FIGURE_FACTS_JS = """([figure, tolerance]) => {
    const box = figure.getBoundingClientRect();
    const out = figure.closest('.jp-OutputArea-output');
    const area = out.getBoundingClientRect();
    const pictures = figure.tagName === 'IMG' ? [figure] : [...figure.querySelectorAll('canvas')];
    const problems = [], sizes = [];
    const px = value => /^[0-9.]+px$/.test(value || '') ? parseFloat(value) : 0;
    for (const picture of pictures) {
        const shown = picture.getBoundingClientRect();
        let natural, intended;
        if (picture.tagName === 'IMG') {
            natural = [picture.naturalWidth, picture.naturalHeight];
            const attr = [Number(picture.getAttribute('width')) || 0, Number(picture.getAttribute('height')) || 0];
            intended = [attr[0] || natural[0], attr[1] || (attr[0] && natural[0] ? attr[0] * natural[1] / natural[0]
                                                                                : natural[1])];
            if (attr[0] > 0 && attr[1] > 0 && natural[0] > 0 && natural[1] > 0) {
                // Each attribute is its side's pixels halved, rounded down: allow that half pixel.
                const error = (attr[0] / attr[1]) / (natural[0] / natural[1]) - 1;
                const slack = 0.5 / Math.min(attr[0], attr[1]) * 2;
                if (Math.abs(error) > tolerance + slack)
                    problems.push(`its width/height attributes ${attr[0]} x ${attr[1]} are not the aspect of its `
                                  + `${natural[0]} x ${natural[1]} pixels: off by ${(100 * error).toFixed(1)}%`);
            }
        } else {
            natural = [picture.width, picture.height];
            intended = [px(picture.style.width) || px(figure.style.width) || picture.width,
                        px(picture.style.height) || px(figure.style.height) || picture.height];
        }
        sizes.push({shown: [shown.width, shown.height], natural, intended});
        if (picture.tagName === 'IMG' && !(picture.complete && picture.naturalWidth > 0)) {
            problems.push('not loaded');
        } else if (!(shown.width > 0 && shown.height > 0 && natural[0] > 0 && natural[1] > 0)) {
            problems.push(`shown at ${shown.width} x ${shown.height} (natural ${natural[0]} x ${natural[1]})`);
        } else {
            const error = (shown.width / shown.height) / (natural[0] / natural[1]) - 1;
            if (Math.abs(error) > tolerance)
                problems.push(`shown at ${shown.width.toFixed(0)} x ${shown.height.toFixed(0)} but it is `
                              + `${natural[0]} x ${natural[1]}: aspect off by ${(100 * error).toFixed(1)}%`);
            const kept = 100 * shown.width / intended[0];
            if (shown.width < intended[0] - 1)
                problems.push(`shrunk to ${kept.toFixed(kept < 99 ? 0 : 1)}% of its `
                              + `${intended[0].toFixed(0)} px (shown ${shown.width.toFixed(0)} px wide): `
                              + `its text is drawn smaller than it was designed`);
        }
    }
    if (box.left < area.left - 1 || box.right > area.right + 1)
        problems.push(`wider than its output area: x ${box.left.toFixed(0)}..${box.right.toFixed(0)}, `
                      + `the area ${area.left.toFixed(0)}..${area.right.toFixed(0)}`);
    for (let el = figure.parentElement; el && el !== out.parentElement; el = el.parentElement)
        if (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX !== 'visible')
            problems.push(`clipped: ${el.tagName.toLowerCase()}.${[...el.classList].join('.')} scrolls `
                          + `sideways (${el.scrollWidth} px in ${el.clientWidth})`);
    if (box.left < -1 || box.right > window.innerWidth + 1)
        problems.push(`outside the window: x ${box.left.toFixed(0)}..${box.right.toFixed(0)} `
                      + `of ${window.innerWidth}`);
    // What of the page is visible around the figure: the window, cut by the element that scrolls it.
    let top = 0, bottom = window.innerHeight;
    for (let el = figure.parentElement; el; el = el.parentElement) {
        const overflow = getComputedStyle(el).overflowY;
        if ((overflow === 'auto' || overflow === 'scroll') && el.scrollHeight > el.clientHeight) {
            const rect = el.getBoundingClientRect();
            top = Math.max(top, rect.top);
            bottom = Math.min(bottom, rect.top + el.clientHeight);
            break;
        }
    }
    return {box: {x: box.left, y: box.top, width: box.width, height: box.height},
            fits: box.top >= top - 1 && box.bottom <= bottom + 1, room: bottom - top, sizes, problems};
}"""


# --- servers -----------------------------------------------------------------------------------------------


@dataclass
class Server:
    """A running JupyterLab or Voila: where it listens, its token, its files and its log."""

    kind: str
    port: int
    token: str
    root: Path
    log: Path
    process: subprocess.Popen[bytes]
    started_in_s: float = 0.0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def url(self, path: str = "", *flags: str) -> str:
        """The address of ``path`` with the token in the query, as the printed start-up link has it."""
        return f"{self.base_url}{path}?{'&'.join([f'token={self.token}', *flags])}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def get(self, path: str, *, token: bool = True, timeout: float = 10.0) -> int:
        """HTTP status of a GET (redirects not followed), with or without the token."""
        request = urllib.request.Request(self.base_url + path)
        if token:
            request.add_header("Authorization", f"token {self.token}")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)  # no *_proxy here
        try:
            with opener.open(request, timeout=timeout) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)


    def kernels(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The kernels the server runs, from its REST API (``GET /api/kernels``, with the token)."""
        request = urllib.request.Request(self.base_url + "api/kernels")
        request.add_header("Authorization", f"token {self.token}")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=timeout) as response:
            kernels = json.loads(response.read())
        assert isinstance(kernels, list), kernels
        return kernels

    def wait_for_kernels(self, count: int, timeout_s: float) -> float:
        """Poll until the server runs exactly ``count`` kernels; how long that took (fails after ``timeout_s``)."""
        began = time.monotonic()
        while True:
            running = self.kernels()
            if len(running) == count:
                return time.monotonic() - began
            if time.monotonic() - began > timeout_s:
                raise AssertionError(f"{len(running)} kernels still running after {timeout_s:.0f} s, expected "
                                     f"{count}: {[k.get('id') for k in running]}\n{self.log_tail()}")
            time.sleep(0.5)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def free_port() -> int:
    """A port nothing listens on now; the server is told not to move elsewhere if it lost the race."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def jupyter_env(home: Path, token: str) -> dict[str, str]:
    """A private Jupyter configuration under ``home``: config, data, runtime, settings, workspaces."""
    config = home / "config"
    (config / "labconfig").mkdir(parents=True, exist_ok=True)
    (config / "labconfig" / "page_config.json").write_text(json.dumps({"disabledExtensions": {ANNOUNCEMENTS: True}}))
    # window.jupyterapp lets the test wait for the kernel and run all cells through Lab's own commands.
    (config / "jupyter_lab_config.json").write_text(json.dumps({"LabApp": {
        "expose_app_in_browser": True, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate"}}))
    # Lab 4 may leave cells that are scrolled away out of the DOM; a test wants every widget there.
    tracker = home / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True, exist_ok=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    # No MPLBACKEND either: ipykernel then picks the inline backend, as for a user, and plt.show()
    # draws the notebook's figures (under Agg, which pytest's own environment may set, it shows none).
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("JUPYTER", "JPY_")) and key != "MPLBACKEND"}
    env.update({
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "JUPYTER_TOKEN": token,
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYTHONUNBUFFERED": "1",
    })
    return env


@contextlib.contextmanager
def run_server(kind: str, argv: list[str], *, root: Path, home: Path) -> Iterator[Server]:
    """Start ``sdeilab <argv> --port P --no-browser`` in its own process group; yield it once it serves."""
    token = secrets.token_hex(16)
    port = free_port()
    log = home / f"{kind}.log"
    env = jupyter_env(home, token)
    command = [sys.executable, "-m", "sdeilab.cli", *argv, "--port", str(port), "--no-browser"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(kind, port, token, root, log, process)
    began = time.monotonic()
    try:
        _wait_until_serving(server)
        server.started_in_s = time.monotonic() - began
        print(f"[browser] {kind} serving on port {port} after {server.started_in_s:.1f} s")
        yield server
    finally:
        stop_process_tree(process)
        _keep_artifact(log, f"{kind}-{port}.log")


def _wait_until_serving(server: Server) -> None:
    # JupyterLab answers its REST API only with the token, which also proves the token works; Voila
    # runs the whole notebook on every page load, so for it an open port is the signal.
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.kind} exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            if server.kind == "voila":
                socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
                return
            if server.get("api/status", timeout=2) == 200:
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{server.kind} did not serve within {SERVER_START_TIMEOUT_S:.0f} s:\n{server.log_tail()}")


def stop_process_tree(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever of its tree is left.

    Kernels are started in sessions of their own (jupyter_client's launcher), so the group alone
    would miss them; the tree is read from /proc before the first signal, and a process is only
    signalled again if it is still the same one (same start time), never one that reused its pid.
    """
    tree = [(process.pid, _start_time(process.pid)), *_descendants(process.pid)]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)  # the server shuts its kernels down on SIGTERM
    deadline = time.monotonic() + SERVER_STOP_TIMEOUT_S
    while time.monotonic() < deadline and any(_alive(pid, start) for pid, start in tree):
        process.poll()
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    for pid, start in tree:
        if _alive(pid, start):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=SERVER_STOP_TIMEOUT_S)


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields from "state" on; the name may hold spaces


def _start_time(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[19] if fields else None


def _alive(pid: int, start: str | None) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[19] == start and fields[0] != "Z"


def _descendants(root: int) -> list[tuple[int, str | None]]:
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            children.setdefault(int(fields[1]), []).append((int(entry.name), fields[19]))
    found: list[tuple[int, str | None]] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


# --- artifacts ---------------------------------------------------------------------------------------------


def artifacts_dir() -> Path | None:
    value = os.environ.get("SDEILAB_ARTIFACTS", "")
    if value in ("", "0"):
        return None
    folder = ROOT / "test-artifacts" if value == "1" else Path(value)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _keep_artifact(path: Path, name: str) -> None:
    folder = artifacts_dir()
    if folder is not None and path.exists():
        shutil.copyfile(path, folder / name)


# --- the page ----------------------------------------------------------------------------------------------


@dataclass
class WidgetPage:
    """A Playwright page showing widgets, with the checks a widget test needs."""

    page: Any  # playwright.sync_api.Page
    name: str
    shots_dir: Path
    console: list[str] = field(default_factory=list)
    shots: list[Path] = field(default_factory=list)
    timings: list[tuple[str, float]] = field(default_factory=list)
    companions: list[WidgetPage] = field(default_factory=list)
    suffix: str = ""  # a companion's: its name is its first page's and this
    # How long a figure scrolled to must stay put before it is measured (JupyterLab moves its
    # notebook again a moment after a scroll; Voila's page does not: its companion sets less).
    settle_ms: int = 150
    _clock: float = field(default_factory=time.monotonic)

    def companion(self, suffix: str) -> WidgetPage:
        """A second page in the same browser context (e.g. Voila beside JupyterLab, both running at
        once), its screenshots named ``<name>-<suffix>``; closed, after a last screenshot, with this one.
        Asked again for the same ``suffix`` (a page reused by many tests), the same page."""
        for other in self.companions:
            if other.suffix == suffix:
                return other
        other = WidgetPage(self.page.context.new_page(), f"{self.name}-{suffix}", self.shots_dir, suffix=suffix)
        _watch_console(other)
        self.companions.append(other)
        return other

    def begin_test(self, name: str, shots_dir: Path) -> None:
        """Start a test on this page (and its companions) as it is, kept from an earlier test: its
        screenshots named after ``name`` into ``shots_dir``, and its console, timings and screenshots
        counted afresh; the window back at VIEWPORT."""
        for each in (self, *self.companions):
            each.name = f"{name}-{each.suffix}" if each.suffix else name
            each.shots_dir, each.console, each.shots, each.timings = shots_dir, [], [], []
            each._clock = time.monotonic()
            with contextlib.suppress(Exception):
                each.page.set_viewport_size(VIEWPORT)

    def end_test(self, *, final_shot: bool = True) -> None:
        """A test on this page ends: the last look at each page (with ``final_shot``), and its timings printed."""
        for each in (self, *self.companions):
            if final_shot:
                with contextlib.suppress(Exception):
                    each.shot("final")
            print(f"[browser] {each.name}: " + ", ".join(f"{what} {took:.2f} s" for what, took in each.timings))

    def mark(self, what: str) -> None:
        """Note how long the step that just ended took (printed after the test; pytest -s shows it)."""
        now = time.monotonic()
        self.timings.append((what, now - self._clock))
        self._clock = now

    # -- screenshots

    def shot(self, label: str) -> Path:
        """Screenshot of the whole page, into the test's tmp folder (and test-artifacts/ when asked)."""
        path = self.shots_dir / f"{self.name}-{len(self.shots):02d}-{label}.png"
        # JupyterLab and Voila scroll inside an element, not the document: there a full-page
        # screenshot shows the viewport too, only slower (seconds on a loaded machine).
        scrolls = self.page.evaluate("() => document.scrollingElement.scrollHeight > window.innerHeight + 1")
        self.page.screenshot(path=str(path), full_page=scrolls, timeout=STEP_TIMEOUT_MS)
        self.shots.append(path)
        _keep_artifact(path, path.name)
        return path

    def viewport_shot(self, label: str) -> Path:
        """Screenshot of what the viewport shows (JupyterLab scrolls inside its panel: a full-page shot
        would show the same)."""
        path = self.shots_dir / f"{self.name}-{len(self.shots):02d}-{label}.png"
        self.page.screenshot(path=str(path), timeout=STEP_TIMEOUT_MS)
        self.shots.append(path)
        _keep_artifact(path, path.name)
        return path

    # -- a notebook's figures

    def figures(self) -> list[dict[str, Any]]:
        """The figures in the cells' outputs, in page order: ``index`` (see :meth:`figure`), ``cell``
        (the notebook's cell, from 0, markdown cells counted), ``kind`` (img or div, a canvas's
        parent) and ``hidden`` (in a part of the page that is not shown, such as a closed accordion)."""
        found: list[dict[str, Any]] = self.page.evaluate(MARK_FIGURES_JS)
        return found

    def figure(self, index: int) -> Any:
        """The figure :meth:`figures` numbered ``index``."""
        return self.page.locator(f'[data-sdeilab-figure="{index}"]')

    def expect_figures(self, expected: dict[int, int], *, timeout_ms: int = STEP_TIMEOUT_MS) -> list[dict[str, Any]]:
        """Wait until each cell ``c`` of ``expected`` shows at least ``expected[c]`` figures and every
        picture has loaded; fail, naming the cells that show fewer, when that takes ``timeout_ms``."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        with contextlib.suppress(PlaywrightTimeout):  # then the check below says which cells lack figures
            self.page.wait_for_function(
                f"""expected => {{
                    const loaded = [...document.querySelectorAll('.jp-OutputArea-output img')]
                                   .every(img => img.complete && img.naturalWidth > 0);
                    const cells = ({MARK_FIGURES_JS})().map(figure => figure.cell);
                    return loaded && Object.entries(expected).every(
                        ([cell, count]) => cells.filter(c => c === Number(cell)).length >= count);
                }}""", arg={str(cell): count for cell, count in expected.items()}, timeout=timeout_ms)
        self.mark("figures shown")
        found = self.figures()
        missing = {cell: (sum(f["cell"] == cell for f in found), count) for cell, count in expected.items()
                   if sum(f["cell"] == cell for f in found) < count}
        assert not missing, (f"cells showing fewer figures than they draw ({{cell: (shown, drawn)}}): {missing}\n"
                             f"{self.diagnostics()}")
        return found

    def figure_problems(self, label: str, *, tolerance: float = 0.02) -> list[str]:
        """Scroll to each shown figure in turn, check it (FIGURE_FACTS_JS: loaded, its aspect within
        ``tolerance`` of its own, not shown narrower than its own width, no wider than its output
        area, inside the window) and take its
        screenshot (``<label>-figNN``). What is wrong, one line each (empty when nothing is).

        A figure taller than the part of the window its page scrolls in is photographed afterwards
        in a window made taller just for that (same width, so the same layout and the same size):
        a screenshot can only show what the browser has painted.
        """
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        # The page in front: a page behind another of its context (JupyterLab behind Voila's) is
        # painted seldom, and each screenshot after a scroll then waits seconds for a frame.
        self.page.bring_to_front()
        problems, tall = [], []
        with contextlib.suppress(PlaywrightTimeout):  # all pictures loaded, or their check below says which not
            self.page.wait_for_function(
                """() => [...document.querySelectorAll('.jp-OutputArea-output img')]
                         .every(img => img.complete && img.naturalWidth > 0)""", timeout=STEP_TIMEOUT_MS)
        for figure in self.figures():
            if figure["hidden"]:
                continue
            facts = self._place_figure(figure["index"], tolerance, "center")
            problems += [f"{label}: figure {figure['index']} (cell {figure['cell']}): {problem}"
                         for problem in facts["problems"]]
            if facts["fits"]:
                self._figure_shot(figure["index"], facts, tolerance, label, "center")
            else:
                tall.append((figure["index"], facts["box"]["height"] - facts["room"]))
        if tall:
            size = self.page.viewport_size
            self.resize(size["width"], size["height"] + math.ceil(max(extra for _, extra in tall)) + 40)
            for index, _ in tall:
                self._figure_shot(index, self._place_figure(index, tolerance, "start"), tolerance, label, "start")
            self.resize(size["width"], size["height"])
        return problems

    def output_column_width(self) -> int:
        """How wide (CSS pixels, ``clientWidth``) the narrowest output area of a notebook's cells is:
        the column a figure is shown in (not one inside a widget); 0 when no cell has an output."""
        width: int = self.page.evaluate(
            """() => { const widths = [...document.querySelectorAll(
                           '.jp-Cell-outputArea > .jp-OutputArea-child > .jp-OutputArea-output')]
                           .filter(el => el.offsetParent !== null).map(el => el.clientWidth);
                       return widths.length ? Math.min(...widths) : 0; }""")
        return int(width)

    def _place_figure(self, index: int, tolerance: float, block: str, *, quiet_ms: int | None = None) -> dict[str, Any]:
        """Scroll figure ``index`` into view; its facts (FIGURE_FACTS_JS) once it has stayed put for
        ``quiet_ms`` (default :attr:`settle_ms`: JupyterLab moves its notebook again a moment after a scroll)."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        quiet_ms = self.settle_ms if quiet_ms is None else quiet_ms

        handle = self.figure(index).element_handle(timeout=STEP_TIMEOUT_MS)
        handle.evaluate("(el, block) => el.scrollIntoView({block, inline: 'nearest'})", block)
        with contextlib.suppress(PlaywrightTimeout):  # still moving: measured as it is, and the shot retried
            self.page.wait_for_function(
                """([el, quiet]) => {
                    const now = performance.now(), top = el.getBoundingClientRect().top;
                    if (el.sdeilabTop !== top) { el.sdeilabTop = top; el.sdeilabSince = now; return false; }
                    return now - el.sdeilabSince >= quiet;
                }""", arg=[handle, quiet_ms], polling=50, timeout=5_000)
        facts: dict[str, Any] = handle.evaluate(f"(el, tolerance) => ({FIGURE_FACTS_JS})([el, tolerance])",
                                                tolerance)
        return facts

    def _figure_shot(self, index: int, facts: dict[str, Any], tolerance: float, label: str, block: str,
                     tries: int = 3) -> Path:
        """The screenshot of figure ``index`` where ``facts`` found it; taken again (scrolled to again)
        if it had moved by then."""
        for _ in range(tries):
            path = self.clip_shot(facts["box"], f"{label}-fig{index:02d}")
            top = self.figure(index).evaluate("el => el.getBoundingClientRect().top")
            if abs(top - facts["box"]["y"]) < 1:
                return path
            self.shots.pop()
            facts = self._place_figure(index, tolerance, block)
        raise AssertionError(f"{label}: figure {index} kept moving: no steady screenshot\n{self.diagnostics()}")

    def resize(self, width: int, height: int, *, quiet_ms: int = 200, timeout_ms: int = 5_000) -> None:
        """Set the window's size and wait until the page's layout has followed: the sizes of the
        notebook and its output areas unchanged for ``quiet_ms`` (JupyterLab lays its panels out
        again a moment after the window changed)."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        self.page.set_viewport_size({"width": width, "height": height})
        with contextlib.suppress(PlaywrightTimeout):  # a page that keeps moving: check it as it is
            self.page.wait_for_function(
                """([width, quiet]) => {
                    const now = performance.now(), state = window.sdeilabLayout ??= {};
                    const sizes = [...document.querySelectorAll('.jp-Notebook, .jp-OutputArea-output')]
                                  .map(el => `${el.clientWidth}x${el.clientHeight}`).join();
                    if (window.innerWidth !== width || state.sizes !== sizes) {
                        state.sizes = sizes; state.since = now; return false;
                    }
                    return now - state.since >= quiet;
                }""", arg=[width, quiet_ms], polling=50, timeout=timeout_ms)

    def clip_shot(self, box: dict[str, float], label: str) -> Path:
        """Screenshot of a region of the window (CSS pixels), beside the page screenshots."""
        path = self.shots_dir / f"{self.name}-{len(self.shots):02d}-{label}.png"
        self.page.screenshot(path=str(path), clip=box, timeout=STEP_TIMEOUT_MS, animations="disabled")
        self.shots.append(path)
        _keep_artifact(path, path.name)
        return path

    def image_aspects(self) -> list[dict[str, Any]]:
        """Every shown picture's displayed size (CSS pixels) and natural size (its image's pixels)."""
        found: list[dict[str, Any]] = self.page.locator(".jupyter-widgets img").evaluate_all(
            """imgs => imgs.map(img => { const r = img.getBoundingClientRect();
                   return {width: r.width, height: r.height, natural: [img.naturalWidth, img.naturalHeight],
                           cls: img.className}; })""")
        return [item for item in found if item["width"] > 0 and item["height"] > 0 and all(item["natural"])]

    def expect_aspects_kept(self, tolerance: float = 0.02) -> list[dict[str, Any]]:
        """Fail if a picture is shown with an aspect more than ``tolerance`` off its own (stretched)."""
        images = self.image_aspects()
        assert images, f"no picture shown\n{self.diagnostics()}"
        for item in images:
            natural_w, natural_h = item["natural"]
            error = (item["width"] / item["height"]) / (natural_w / natural_h) - 1
            assert abs(error) <= tolerance, (
                f"picture {item['cls']!r} shown at {item['width']:.0f} x {item['height']:.0f} but it is "
                f"{natural_w} x {natural_h}: aspect off by {100 * error:+.1f}%\n{self.diagnostics()}")
        return images

    def boxes_outside_viewport(self, selectors: Sequence[str]) -> list[str]:
        """Which of the elements ``selectors`` name lie (in part) outside the viewport, or are missing."""
        size = self.page.viewport_size
        outside = []
        for selector in selectors:
            elements = self.page.locator(selector)
            if elements.count() == 0:
                outside.append(f"{selector}: not on the page")
            for index in range(elements.count()):
                box = elements.nth(index).bounding_box()
                if box is None or box["width"] == 0:
                    outside.append(f"{selector}[{index}]: not shown")
                elif (box["x"] < -1 or box["y"] < -1 or box["x"] + box["width"] > size["width"] + 1
                      or box["y"] + box["height"] > size["height"] + 1):
                    outside.append(f"{selector}[{index}] at x {box['x']:.0f}..{box['x'] + box['width']:.0f}, "
                                   f"y {box['y']:.0f}..{box['y'] + box['height']:.0f}")
        return outside

    def diagnostics(self) -> str:
        console = "\n".join(self.console[-20:]) or "(nothing)"
        return f"page: {self.page.url}\nbrowser console (errors):\n{console}"

    # -- opening things

    def open_notebook(self, server: Server, path: str, *, timeout_ms: int = RUN_ALL_TIMEOUT_MS) -> None:
        """Open ``path`` in JupyterLab, wait for its kernel, run all cells and wait for them to finish.

        Fails with the cells' error messages if any cell raised, and if a cell did not run.
        """
        self._clock = time.monotonic()
        # "reset": a fresh workspace, not the tabs an earlier test on this server left open.
        self.page.goto(server.url(f"lab/tree/{path}", "reset"), timeout=STEP_TIMEOUT_MS)
        self.mark("load JupyterLab")
        self.run_notebook(path, timeout_ms=timeout_ms)

    def start_notebook(self, server: Server, path: str, *, reuse: bool = False) -> None:
        """Start opening ``path`` in JupyterLab and return at once (the page goes on loading while
        the test does something else); :meth:`run_notebook` then waits for it and runs it.

        With ``reuse``, a page that already shows this server's JupyterLab (an earlier test's) is kept:
        its documents are closed, unsaved, and ``path`` opened in it, as a user opens the next
        notebook (loading JupyterLab again costs seconds of a loaded machine's time); a page that
        does not, or that fails to, is loaded afresh."""
        self._clock = time.monotonic()
        if reuse and self.page.url.startswith(server.base_url + "lab"):
            try:
                self.page.evaluate(
                    """async () => {
                        const app = window.jupyterapp;
                        for (const widget of [...app.shell.widgets('main')])
                            if (widget.context?.model) widget.context.model.dirty = false;
                        await app.commands.execute('application:close-all');
                    }""")
                # Nothing of the last notebook left in the page (figures are found by page order).
                self.page.wait_for_function("() => !document.querySelector('.jp-NotebookPanel, .jp-Cell')",
                                            timeout=STEP_TIMEOUT_MS)
                self.page.evaluate("path => { window.jupyterapp.commands.execute('docmanager:open', "
                                   "{path, factory: 'Notebook'}); }", path)
                self.mark("reuse JupyterLab")
                return
            except Exception as error:  # any failure: the page is loaded afresh
                print(f"[browser] {self.name}: JupyterLab not reused ({str(error).splitlines()[0]}): loading it")
        self.page.goto(server.url(f"lab/tree/{path}", "reset"), wait_until="commit", timeout=STEP_TIMEOUT_MS)

    def run_notebook(self, path: str, *, timeout_ms: int = RUN_ALL_TIMEOUT_MS) -> None:
        """In the JupyterLab page that shows ``path``: wait for its kernel, run all cells, wait for them.

        Fails with the cells' error messages if any cell raised, if the cells were still running
        after ``timeout_ms``, and if a cell did not run.
        """
        self.begin_run_all(path)
        self.end_run_all(path, timeout_ms=timeout_ms)

    def begin_run_all(self, path: str) -> None:
        """Wait for the kernel of ``path`` (open in JupyterLab) and start running all its cells; return
        while they run (:meth:`end_run_all` waits for them, :meth:`wait_cell_ran` for one of them)."""
        self.page.wait_for_function(
            """path => { const w = window.jupyterapp?.shell?.currentWidget;
                         return w?.context?.path === path
                             && w.sessionContext?.session?.kernel?.status === 'idle'; }""",
            arg=path, timeout=STEP_TIMEOUT_MS * 2)  # a kernel start on a loaded machine
        self.mark("kernel idle")
        self.page.evaluate(
            """() => { window.sdeilabRunAll = {done: false};
                       window.sdeilabRunAll.promise = window.jupyterapp.commands.execute('notebook:run-all-cells')
                           .finally(() => { window.sdeilabRunAll.done = true; }); }""")

    def wait_cell_ran(self, index: int, *, timeout_ms: int = RUN_ALL_TIMEOUT_MS) -> None:
        """While all cells run: wait until cell ``index`` (from 0, markdown cells counted) has run, or
        the run ended (a cell before it raised: :meth:`end_run_all` says which)."""
        self.page.wait_for_function(
            """index => window.sdeilabRunAll.done || window.jupyterapp.shell.currentWidget
                                                           .content.widgets[index].model.executionCount !== null""",
            arg=index, timeout=timeout_ms)
        self.mark(f"cell {index} ran")

    def end_run_all(self, path: str, *, timeout_ms: int = RUN_ALL_TIMEOUT_MS) -> None:
        """Wait for the run :meth:`begin_run_all` started; fail if a cell raised, the cells were still
        running after ``timeout_ms``, or a cell did not run."""
        result = self.page.evaluate(
            """async ms => {
                const panel = window.jupyterapp.shell.currentWidget;
                const timeout = new Promise(resolve => setTimeout(() => resolve('timeout'), ms));
                const outcome = await Promise.race([window.sdeilabRunAll.promise, timeout]);
                const code = panel.content.widgets.filter(cell => cell.model.type === 'code');
                const errors = [];
                for (const cell of code)
                    for (const out of cell.model.outputs.toJSON())
                        if (out.output_type === 'error') errors.push(`${out.ename}: ${out.evalue}`);
                return {outcome: String(outcome), errors,
                        notRun: code.filter(cell => cell.model.executionCount === null).length};
            }""", timeout_ms)
        self.mark("run all cells")
        assert not result["errors"], f"{path}: a cell raised: {result['errors']}\n{self.diagnostics()}"
        assert result["outcome"] != "timeout", f"{path}: cells still running after {timeout_ms} ms"
        assert result["notRun"] == 0, f"{path}: {result['notRun']} code cells did not run\n{self.diagnostics()}"

    def shutdown_kernel(self) -> None:
        """Shut the kernel of JupyterLab's current notebook down (Lab keeps it when the page closes)."""
        self.page.evaluate("() => window.jupyterapp?.shell?.currentWidget?.sessionContext?.shutdown()")

    def open_dashboard(self, server: Server) -> None:
        """Open a Voila app (the notebook runs as the page loads)."""
        self._clock = time.monotonic()
        self.page.goto(server.url(), timeout=RUN_ALL_TIMEOUT_MS)
        self.mark("load and run the dashboard")

    def start_dashboard(self, server: Server, notebook: str = "") -> None:
        """Start loading a Voila app and return at once: Voila runs the notebook while it sends the
        page, and :meth:`wait_dashboard` waits for the end. ``notebook``: which one of a server that
        serves a folder (``sdeilab dashboard FOLDER``), by its path in the folder."""
        self._clock = time.monotonic()
        path = f"voila/render/{notebook}" if notebook else ""
        self.page.goto(server.url(path), wait_until="commit", timeout=STEP_TIMEOUT_MS)

    def wait_dashboard(self, cells: int, *, timeout_ms: int = RUN_ALL_TIMEOUT_MS) -> None:
        """Wait until Voila has run the whole notebook (``cells`` cells, markdown ones included) and
        its page has drawn every output; fail if a cell raised (Voila stops at the first that does)."""
        self.page.wait_for_function(
            """() => { const cells = document.getElementById('rendered_cells');
                       return !document.getElementById('loading') && cells && cells.style.display !== 'none'
                           && !document.querySelector('script[type="application/vnd.voila.cell-output+json"]'); }""",
            timeout=timeout_ms)
        self.mark("Voila ran the notebook")
        errors = self.error_outputs()
        assert not errors, f"a cell raised or wrote to stderr: {errors}\n{self.diagnostics()}"
        shown = self.page.locator("div[cell-index]").count()
        assert shown == cells, f"Voila showed {shown} of the notebook's {cells} cells\n{self.diagnostics()}"

    def error_outputs(self, limit: int = 1200) -> list[str]:
        """What cells wrote to stderr, tracebacks included (Lab and Voila show both with that type).
        A long one keeps its beginning and its end: an exception's message (a run's outcome) comes
        before the console tail it quotes."""
        texts = [text.strip() for text in self.page.locator(STDERR_OUTPUT).all_inner_texts()]
        return [text if len(text) <= limit else f"{text[:limit // 2]} [...] {text[-limit // 2:]}"
                for text in texts if text]

    # -- widgets

    def widget_errors(self) -> list[str]:
        """The error texts shown in place of widgets or outputs, if any."""
        texts = self.page.locator(".jp-OutputArea-output, .jupyter-widgets").all_inner_texts()
        found = [t.strip() for t in texts if any(err.lower() in t.lower() for err in WIDGET_ERROR_TEXTS)]
        # ipywidgets' error box (ErrorWidgetView) says only "Click to show javascript error." until it
        # is clicked; then it shows a header line, the message and the stack.
        boxes = self.page.locator(WIDGET_ERROR_SELECTOR)
        for index in range(boxes.count()):
            box = boxes.nth(index)
            with contextlib.suppress(Exception):
                if "icon-error" in (box.get_attribute("class") or ""):
                    box.click(timeout=5_000)
            lines = [line.strip() for line in box.text_content().splitlines() if line.strip()]
            found.append(" | ".join(lines[1:3] if lines and lines[0].startswith("[Open") else lines[:2])
                         or "(error widget)")
        return sorted(set(found))

    def expect_widgets_ok(self, *, buttons: Sequence[str] = (), timeout_ms: int = STEP_TIMEOUT_MS) -> None:
        """Widgets rendered (at least one, and every named button visible) and none shows an error.

        Waits until the number of rendered widget views stops changing, so that a widget drawn a
        moment after the first one (a box's children are created one by one) is checked too.
        """
        from playwright.sync_api import expect

        views = self.page.locator(".jupyter-widgets")
        try:
            # Widgets, or a failed cell's output (Voila runs the notebook as the page loads): whichever
            # comes first, so that a notebook that raised fails at once rather than at the timeout.
            expect(self.page.locator(f".jupyter-widgets, {STDERR_OUTPUT}").first).to_be_visible(timeout=timeout_ms)
            if not views.count() and self.widget_errors():
                raise AssertionError("a cell failed")
            expect(views.first).to_be_visible(timeout=timeout_ms)
            for name in buttons:
                expect(self.button(name)).to_be_visible(timeout=timeout_ms)
        except AssertionError as error:
            reason = str(error).strip().splitlines()[0]
            raise AssertionError(f"widgets did not render ({reason})\nerrors on the page: {self._errors_brief()}\n"
                                 f"{self.diagnostics()}") from None
        self._settle(views)
        self.mark("widgets rendered")
        assert not self.widget_errors(), f"a widget shows an error: {self._errors_brief()}\n{self.diagnostics()}"

    def _errors_brief(self, limit: int = 300) -> list[str]:
        return [error if len(error) <= limit else error[:limit] + "..." for error in self.widget_errors()]

    def _settle(self, views: Any, quiet_s: float = 0.5, limit_s: float = 5.0) -> None:
        deadline = time.monotonic() + limit_s
        count, since = views.count(), time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
            self.page.wait_for_timeout(100)
            if (now := views.count()) != count:
                count, since = now, time.monotonic()

    def button(self, name: str) -> Any:
        """The widget button labelled exactly ``name`` (never one of JupyterLab's own toolbar buttons)."""
        return self.page.locator(".widget-button", has_text=re.compile(rf"^\s*{re.escape(name)}\s*$"))

    def click(self, name: str) -> None:
        from playwright.sync_api import expect

        button = self.button(name)
        expect(button).to_be_enabled(timeout=STEP_TIMEOUT_MS)
        button.click(timeout=STEP_TIMEOUT_MS)
        self.mark(f"click {name}")

    def block_widget_manager(self) -> None:
        """Make ipywidgets' front end fail to load in this page (to see that a test would notice)."""
        self.page.route(WIDGET_MANAGER_JS, lambda route: route.abort())

    def images(self) -> Any:
        """Pictures drawn by widgets: Image widgets' <img> and ipympl's canvas."""
        return self.page.locator(".jupyter-widgets img, .jupyter-widgets canvas")

    def snapshot(self, locator: Any) -> bytes:
        """What an element looks like now (PNG bytes of its screenshot)."""
        return bytes(locator.screenshot(timeout=STEP_TIMEOUT_MS, animations="disabled"))

    def steady_snapshot(self, locator: Any, quiet_ms: int = 500, timeout_ms: int = STEP_TIMEOUT_MS) -> bytes:
        """How an element looks once it has stopped changing (two snapshots ``quiet_ms`` apart agree).

        A picture the kernel sent a moment ago may still be on its way: taking "before" too early
        would let a later change that the click did not cause pass for its effect.
        """
        deadline = time.monotonic() + timeout_ms / 1000
        last = self.snapshot(locator)
        while True:
            self.page.wait_for_timeout(quiet_ms)
            now = self.snapshot(locator)
            if now == last:
                return now
            if time.monotonic() > deadline:
                raise AssertionError(f"the picture kept changing for {timeout_ms} ms\n{self.diagnostics()}")
            last = now

    def expect_changed(self, locator: Any, before: bytes, timeout_ms: int = STEP_TIMEOUT_MS) -> bytes:
        """Wait until the element looks different from ``before``; return how it looks now."""
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            now = self.snapshot(locator)
            if now != before:
                self.mark("picture changed")
                return now
            if time.monotonic() > deadline:
                raise AssertionError(f"the picture did not change within {timeout_ms} ms\n{self.diagnostics()}")
            self.page.wait_for_timeout(100)


# --- fixtures ----------------------------------------------------------------------------------------------


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"Debian's chromium is not installed at {CHROMIUM}: run scripts/setup-debian.sh"
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (.ci/run installs it, so in CI this is a set-up bug)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                                              timeout=60_000)
        try:
            yield chromium
        finally:
            chromium.close()


def _new_context(browser: Any) -> Any:
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    # Loopback only: Voila's page asks a CDN for Font Awesome, which this machine cannot reach; the
    # request is refused here at once rather than left to DNS.
    context.route(lambda url: not url.startswith(LOOPBACK), lambda route: route.abort())
    return context


def _test_name(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    return re.sub(r"[^\w.-]+", "_", request.node.name), shots


@pytest.fixture
def widget_page(browser: Any, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WidgetPage]:
    context = _new_context(browser)
    widget_page = WidgetPage(context.new_page(), *_test_name(request, tmp_path))
    _watch_console(widget_page)
    try:
        yield widget_page
    finally:
        widget_page.end_test()
        context.close()


@pytest.fixture(scope="module")
def _module_widget_page(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WidgetPage]:
    context = _new_context(browser)
    widget_page = WidgetPage(context.new_page(), "module", tmp_path_factory.mktemp("pages"))
    _watch_console(widget_page)
    try:
        yield widget_page
    finally:
        context.close()


@pytest.fixture
def reused_widget_page(_module_widget_page: WidgetPage, request: pytest.FixtureRequest,
                       tmp_path: Path) -> Iterator[WidgetPage]:
    """Like ``widget_page``, but one page (and its companions) for the whole test module: what an
    earlier test left in it stays (e.g. JupyterLab, loaded once: :meth:`WidgetPage.start_notebook`
    with ``reuse``); each test names its own screenshots, and gets a last one of the pages if it failed."""
    _module_widget_page.begin_test(*_test_name(request, tmp_path))
    failed = request.session.testsfailed
    try:
        yield _module_widget_page
    finally:
        # The last look at the pages only when the test failed (pytest has counted its call's
        # failure by now): a test that passed saved a screenshot of every figure, and a full-page
        # one of JupyterLab costs seconds on a loaded machine.
        _module_widget_page.end_test(final_shot=request.session.testsfailed > failed)


def _watch_console(widget_page: WidgetPage) -> None:
    """Keep the page's console errors and uncaught exceptions (WidgetPage.diagnostics shows them)."""
    page = widget_page.page
    page.on("console", lambda m: widget_page.console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: widget_page.console.append(f"page error: {e}"))


ServerFactory = Callable[..., Server]


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """``lab_server(folder)``: JupyterLab on a temporary copy of ``folder``.

    Servers are kept for the session (one start costs seconds) and stopped at its end.
    """
    with contextlib.ExitStack() as stack:
        yield _servers_per_folder(tmp_path_factory, stack, "lab", lambda root: ["lab", str(root)])


def _servers_per_folder(tmp_path_factory: pytest.TempPathFactory, stack: contextlib.ExitStack, kind: str,
                        argv: Callable[[Path], list[str]]) -> ServerFactory:
    """``start(folder)``: the ``kind`` server (``sdeilab`` with ``argv(copy)``) on a temporary copy of
    ``folder``, started at its first call and kept in ``stack`` for later calls with that folder."""
    servers: dict[Path, Server] = {}

    def start(folder: Path) -> Server:
        require_chromium()
        key = Path(folder).resolve()
        if key not in servers:
            home = tmp_path_factory.mktemp(kind)
            root = home / "notebooks"
            shutil.copytree(key, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
            servers[key] = stack.enter_context(run_server(kind, argv(root), root=root, home=home))
        return servers[key]

    return start


@pytest.fixture(scope="session")
def voila_folder_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """``voila_folder_server(folder)``: ``sdeilab dashboard FOLDER`` on a temporary copy of ``folder``,
    each of its notebooks an app (:meth:`WidgetPage.start_dashboard` with its name); one per folder
    per session (one start costs seconds; each page load starts a kernel of its own all the same)."""
    with contextlib.ExitStack() as stack:
        yield _servers_per_folder(tmp_path_factory, stack, "voila", lambda root: ["dashboard", str(root)])


@pytest.fixture(scope="session")
def voila_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """``voila_server(notebook)``: ``sdeilab dashboard`` on a temporary copy of the notebook's folder."""
    with contextlib.ExitStack() as stack:
        servers: dict[Path, Server] = {}

        def start(notebook: Path) -> Server:
            require_chromium()
            key = Path(notebook).resolve()
            if key not in servers:
                home = tmp_path_factory.mktemp("voila")
                root = home / "notebooks"
                shutil.copytree(key.parent, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
                servers[key] = stack.enter_context(run_server(
                    "voila", ["dashboard", str(root / key.name)], root=root, home=home))
            return servers[key]

        yield start
