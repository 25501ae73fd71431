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
``widget_page``
    A fresh :class:`WidgetPage` (a Playwright page plus the checks below); its last screenshot is
    taken after the test, pass or fail.

A dashboard test is then a few lines::

    def test_dashboard(lab_server, widget_page):
        widget_page.open_notebook(lab_server(NOTEBOOKS), "02_dashboard.ipynb")
        widget_page.expect_widgets_ok(buttons=["Step", "Run"])
        before = widget_page.snapshot(widget_page.images().nth(0))
        widget_page.click("Step")
        widget_page.expect_changed(widget_page.images().nth(0), before)

Screenshots go to the test's temporary folder, and also to ``test-artifacts/`` when the environment
variable ``SDEILAB_ARTIFACTS`` is set (``1``; any other value names the folder), with the server logs.
"""

from __future__ import annotations

import contextlib
import json
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
    env = {key: value for key, value in os.environ.items() if not key.startswith(("JUPYTER", "JPY_"))}
    env.update({
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "JUPYTER_TOKEN": token,
        "JUPYTER_PLATFORM_DIRS": "1",
        "MPLBACKEND": "Agg",
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
    _clock: float = field(default_factory=time.monotonic)

    def mark(self, what: str) -> None:
        """Note how long the step that just ended took (printed after the test; pytest -s shows it)."""
        now = time.monotonic()
        self.timings.append((what, now - self._clock))
        self._clock = now

    # -- screenshots

    def shot(self, label: str) -> Path:
        """Screenshot of the whole page, into the test's tmp folder (and test-artifacts/ when asked)."""
        path = self.shots_dir / f"{self.name}-{len(self.shots):02d}-{label}.png"
        self.page.screenshot(path=str(path), full_page=True, timeout=STEP_TIMEOUT_MS)
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

    def open_notebook(self, server: Server, path: str) -> None:
        """Open ``path`` in JupyterLab, wait for its kernel, run all cells and wait for them to finish.

        Fails with the cells' error messages if any cell raised, and if a cell did not run.
        """
        self._clock = time.monotonic()
        # "reset": a fresh workspace, not the tabs an earlier test on this server left open.
        self.page.goto(server.url(f"lab/tree/{path}", "reset"), timeout=STEP_TIMEOUT_MS)
        self.mark("load JupyterLab")
        self.page.wait_for_function(
            """path => { const w = window.jupyterapp?.shell?.currentWidget;
                         return w?.context?.path === path
                             && w.sessionContext?.session?.kernel?.status === 'idle'; }""",
            arg=path, timeout=STEP_TIMEOUT_MS * 2)  # a kernel start on a loaded machine
        self.mark("kernel idle")
        result = self.page.evaluate(
            """async ms => {
                const app = window.jupyterapp, panel = app.shell.currentWidget;
                const timeout = new Promise(resolve => setTimeout(() => resolve('timeout'), ms));
                const outcome = await Promise.race([app.commands.execute('notebook:run-all-cells'), timeout]);
                const code = panel.content.widgets.filter(cell => cell.model.type === 'code');
                const errors = [];
                for (const cell of code)
                    for (const out of cell.model.outputs.toJSON())
                        if (out.output_type === 'error') errors.push(`${out.ename}: ${out.evalue}`);
                return {outcome: String(outcome), errors,
                        notRun: code.filter(cell => cell.model.executionCount === null).length};
            }""", RUN_ALL_TIMEOUT_MS)
        self.mark("run all cells")
        assert not result["errors"], f"{path}: a cell raised: {result['errors']}\n{self.diagnostics()}"
        assert result["outcome"] != "timeout", f"{path}: cells still running after {RUN_ALL_TIMEOUT_MS} ms"
        assert result["notRun"] == 0, f"{path}: {result['notRun']} code cells did not run\n{self.diagnostics()}"

    def open_dashboard(self, server: Server) -> None:
        """Open a Voila app (the notebook runs as the page loads)."""
        self._clock = time.monotonic()
        self.page.goto(server.url(), timeout=RUN_ALL_TIMEOUT_MS)
        self.mark("load and run the dashboard")

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


@pytest.fixture
def widget_page(browser: Any, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WidgetPage]:
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    # Loopback only: Voila's page asks a CDN for Font Awesome, which this machine cannot reach; the
    # request is refused here at once rather than left to DNS.
    context.route(lambda url: not url.startswith(LOOPBACK), lambda route: route.abort())
    page = context.new_page()
    name = re.sub(r"[^\w.-]+", "_", request.node.name)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    widget_page = WidgetPage(page, name, shots)
    page.on("console", lambda m: widget_page.console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: widget_page.console.append(f"page error: {e}"))
    try:
        yield widget_page
    finally:
        with contextlib.suppress(Exception):  # the last look at the page, pass or fail
            widget_page.shot("final")
        context.close()
        print("[browser] " + ", ".join(f"{what} {took:.2f} s" for what, took in widget_page.timings))


ServerFactory = Callable[..., Server]


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """``lab_server(folder)``: JupyterLab on a temporary copy of ``folder``.

    Servers are kept for the session (one start costs seconds) and stopped at its end.
    """
    with contextlib.ExitStack() as stack:
        servers: dict[Path, Server] = {}

        def start(folder: Path) -> Server:
            require_chromium()
            key = Path(folder).resolve()
            if key not in servers:
                home = tmp_path_factory.mktemp("lab")
                root = home / "notebooks"
                shutil.copytree(folder, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
                servers[key] = stack.enter_context(run_server(
                    "lab", ["lab", str(root)], root=root, home=home))
            return servers[key]

        yield start


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
