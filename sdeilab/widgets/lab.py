"""``Lab``: the debugger dashboard, a thin ipywidgets view over a :class:`~sdeilab.lab.session.Session`.

Every button and switch calls one public method of ``Lab`` (``run``, ``start``, ``pause``,
``step``, ``step_firmware``, ``run_until``, ``reset``, ``step_back``, ``step_back_to``, ``add_breakpoint``,
``break_on``, ``set_profile``, ``set_quirk``, ...), the same ones a notebook or a test calls; the
method drives the session and refreshes the views. Widget state is plain and inspectable
(``lab.status.value``, ``lab.registers_html.value``, ``lab.uart_view.value``), so tests drive
the dashboard through ``button.click()`` without a browser (tests/test_widgets.py).

Long runs: the Run button starts the run in a background thread (``start``), so the kernel keeps
answering and the Pause button works; the progress bar and the views are refreshed between
chunks. ``run`` (for notebooks) blocks; Ctrl-C / "interrupt kernel" pauses it cleanly. Either way
the run stops at a slice boundary with nothing lost from the trace.

Errors the user can cause (a symbol that does not exist, an address or count out of range,
pressing Step while a run goes on, a guest file that cannot be read, a ``run_until`` predicate that
raises) are shown in the status line and kept in ``lab.error``; the method returns None. No
button or switch lets an exception escape into ipywidgets' callback machinery.

Threads at exit: the run and the plot worker are daemon threads, and a daemon thread that is
inside matplotlib's or Unicorn's native code when the interpreter finalizes is killed there
(the process aborted with "terminate called without an active exception", or crashed when
Unicorn's own exit handler closed an engine that was still running). An ``atexit`` handler
therefore pauses any background run and lets the drawing in progress finish, and no new drawing
starts once the interpreter is exiting. It is registered again each time a thread starts:
``atexit`` runs the last registered first, so it runs before the exit handlers of what the
threads use (Unicorn's engines are closed by a ``weakref.finalize`` registered at their creation).
"""

from __future__ import annotations

import atexit
import html
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ipywidgets as w

from sdeilab.firmware.sdei.quirks import Quirks
from sdeilab.lab.gdb_server import GdbServer
from sdeilab.lab.session import Breakpoint, EventBreak, Session, SessionBusy, StopInfo
from sdeilab.trace import FACT_KINDS, SdeiTransition, TraceLog
from sdeilab.widgets import plots
from sdeilab.widgets.views import (
    attribute_docs,
    disassembly_html,
    memory_html,
    recent_calls,
    registers_html,
    sdei_rows_html,
    state_label_html,
    status_html,
    uart_html,
)

LIVE_REFRESH_S = 0.5  # during a background run, views are refreshed at most this often
FOLLOW = "follow"  # the CPU selector's value that follows the CPU that ran last
# The CPU choosers' value for "any CPU" / "all CPUs". Not None: ipywidgets 8 reads a selection
# whose value is None as "nothing selected" (index None), so the browser showed an empty box.
ANY_CPU = -1
RECENT_CALLS = 12  # firmware calls the recent-calls list shows
# The left column's least width (CSS pixels) beside the pictures: the SDEI table of 4 CPUs and the
# disassembly fit in it. Narrower, the pictures go below the code.
CODE_WIDTH = 360
# The pictures' column: their CSS width and the images' margins (2 px each side). It grows into
# room to spare, up to GROWTH times that, as far as the window's height leaves both pictures on one
# screen below the controls (about 340 CSS pixels above them in Voila, under the notebook's heading;
# the two pictures are 594/624 as high as they are wide).
PICTURES_WIDTH = max(plots.STATE_DISPLAY[0], plots.TIMELINE_DISPLAY[0]) + 4
GROWTH = 1.25
_HEIGHT_RATIO = (plots.STATE_DISPLAY[1] + plots.TIMELINE_DISPLAY[1]) / plots.STATE_DISPLAY[0]
PICTURES_MAX = (f"clamp({PICTURES_WIDTH}px, calc((100vh - 340px) * {1 / _HEIGHT_RATIO:.3f}), "
                f"{round(GROWTH * PICTURES_WIDTH)}px)")
# The dashboard's own rules: pictures never stretched (they keep their aspect, whatever the column
# width), the recent calls and the UART in monospace.
_CSS = """<style>
.sdeilab-lab .sdeilab-picture { height: auto !important; object-fit: contain; }
.sdeilab-lab .sdeilab-calls select { font-family: monospace; font-size: 12px; }
.sdeilab-lab .sdeilab-controls .widget-button { width: auto; padding: 0 10px; }
.sdeilab-lab .sdeilab-main { gap: 4px 12px; }
.sdeilab-lab .sdeilab-pictures { max-width: PICTURES_MAX; }
.sdeilab-lab .sdeilab-code .sdeilab-sdei-box { overflow-x: auto; }
.sdeilab-lab .sdeilab-wide { width: auto; align-self: stretch; min-width: 0; }
.sdeilab-lab .sdeilab-wide select { min-width: 0; }
</style>""".replace("PICTURES_MAX", PICTURES_MAX)
EXIT_JOIN_S = 10.0  # at interpreter exit, how long to wait for a run to pause and a drawing to finish

_LABS: weakref.WeakSet[Lab] = weakref.WeakSet()  # every live dashboard, for the exit handler
_EXITING = threading.Event()  # the interpreter is exiting: no drawing starts any more


def _stop_threads_at_exit() -> None:
    """Pause background runs and let drawings finish while the interpreter can still run them
    (module docstring, "Threads at exit")."""
    _EXITING.set()
    for lab in list(_LABS):
        lab.close(EXIT_JOIN_S)


def _stop_threads_first_at_exit() -> None:
    """(Re-)register the exit handler last, so that it runs first (module docstring)."""
    atexit.unregister(_stop_threads_at_exit)
    atexit.register(_stop_threads_at_exit)


class Lab:
    """The dashboard. ``Lab(guest, cpus=4, profile="virt", quirks=...)`` or ``Lab(session=...)``;
    display it as the last expression of a cell."""

    def __init__(self, guest: str | Path | None = None, cpus: int = 4, profile: str = "virt",
                 quirks: Quirks | Iterable[str] | None = None, *, session: Session | None = None,
                 plots_enabled: bool = True, plots_async: bool = True) -> None:
        if session is None:
            if guest is None:
                raise ValueError("give a guest ELF or a session")
            session = Session(guest, cpus, profile, quirks)
        self.session = session
        self.plots_enabled = plots_enabled
        self.plots_async = plots_async
        self.plot_error = ""
        self._plot_lock = threading.Lock()
        self._plot_pending = False
        self._plot_thread: threading.Thread | None = None
        self.error = ""
        self.note = ""
        self._thread: threading.Thread | None = None
        self._result: StopInfo | None = None
        self._last_live = 0.0
        self._plotted: tuple[object, ...] | None = None
        self._state_drawn: tuple[object, ...] | None = None  # what the state machine picture shows
        self._timeline_drawn: tuple[object, ...] | None = None  # what the timeline picture shows
        self.plots_drawn = 0  # how many times the plots were rendered (a step with no new fact draws nothing)
        # Each picture keeps its figure between drawings and repaints only what changed (plots.py).
        self.state_picture = plots.Picture()
        self.timeline_picture = plots.Picture()
        self._syncing = False  # the lab itself is setting widget values: observers stay quiet
        self._build()
        _LABS.add(self)
        self.refresh()

    # --- widgets -----------------------------------------------------------------------
    def _build(self) -> None:
        s = self.session
        button = w.Button
        self.run_button = button(description="Run", icon="play", tooltip="run until a breakpoint or the end")
        self.pause_button = button(description="Pause", icon="pause", tooltip="stop a run (at a slice boundary)")
        self.step_button = button(description="Step", icon="step-forward", tooltip="execute exactly n instructions")
        self.step_firmware_button = button(description="Step firmware", icon="forward",
                                           tooltip="run to just after the next SMCCC call or SDEI dispatch")
        self.run_until_button = button(description="Run until", icon="fast-forward",
                                       tooltip="run until the event in the event field (on its CPU)")
        self.step_back_button = button(description="Step back", icon="step-backward",
                                       tooltip="go back n instructions (replays the guest from its start)")
        self.reset_button = button(description="Reset", icon="undo", tooltip="load the guest again")
        self.count = w.BoundedIntText(value=1, min=1, max=10**9, description="n", layout=w.Layout(width="160px"))
        # gdb drives the same session (sdeilab.lab.gdb_server): the address to give it shows beside.
        self.gdb_button = w.ToggleButton(description="gdb", icon="bug", value=False,
                                         tooltip="serve this guest to gdb-multiarch on 127.0.0.1 (reverse "
                                                 "execution included); click again to stop")
        self.gdb_label = w.HTML()
        self.gdb_button.observe(self._on_user(self._toggle_gdb), "value")
        self.gdb_server: GdbServer | None = None

        # Step and Step firmware act on the CPU chosen here, or machine-wide.
        self.step_cpu = w.Dropdown(options=_any_options(s.cpus, "all CPUs"), value=ANY_CPU, description="on",
                                   tooltip="the CPU Step and Step firmware act on (all CPUs: machine-wide)",
                                   layout=w.Layout(width="150px"), style={"description_width": "24px"})

        self.run_button.on_click(lambda _: self.start())
        self.pause_button.on_click(lambda _: self.pause())
        self.step_button.on_click(lambda _: self.step(cpu=_cpu(self.step_cpu.value)))
        self.step_firmware_button.on_click(lambda _: self.step_firmware(_cpu(self.step_cpu.value)))
        self.run_until_button.on_click(lambda _: self.run_until())
        self.step_back_button.on_click(lambda _: self.step_back())
        self.reset_button.on_click(lambda _: self.reset())

        self.status = w.HTML(layout=w.Layout(flex="1 1 auto"))
        # Shown only while a run goes on: a full bar and an old count beside a stop said two things at once.
        self.progress = w.IntProgress(value=0, min=0, max=100, description="",
                                      layout=w.Layout(width="200px", visibility="hidden"))
        self.progress_label = w.Label("")

        self.cpu_select = w.ToggleButtons(options=_follow_options(s.cpus), value=FOLLOW, style={"button_width": "64px"})
        self.cpu_select.observe(self._on_user(self.show_cpu), "value")
        self.registers_html = w.HTML()
        self.disasm_html = w.HTML()
        self.memory_entry = w.Text(placeholder="address or symbol (default: SP)", description="memory",
                                   continuous_update=False)
        self.memory_entry.observe(self._on_user(self.show_memory), "value")
        self.memory_html = w.HTML()
        # The UART's text (``uart_view.value``, what notebooks and tests read), and the box that shows
        # it, which keeps to its last line as output comes (views.uart_html).
        self.uart_view = w.Textarea(value="", disabled=True)
        self.uart_html = w.HTML()
        self.uart_html.add_class("sdeilab-wide")
        # The terminal's keyboard: a line typed here goes to the PL011 with its newline on Enter
        # (``send_input``); the guest reads it when it runs next.
        self.uart_input = w.Text(placeholder="type into the UART: Enter sends the line", continuous_update=False)
        self.uart_input.add_class("sdeilab-wide")  # as wide as the UART box above it, margins included
        self.uart_input.observe(self._on_user(self._typed), "value")
        self.sdei_html = w.HTML()
        self.sdei_html.add_class("sdeilab-sdei-box")  # 8 CPUs may be wider than the column: it scrolls, not cut
        self.calls_list = w.Select(options=[], rows=6,
                                   tooltip="the last firmware calls: click one to step back to it (replay)")
        self.calls_list.add_class("sdeilab-calls")
        self.calls_list.add_class("sdeilab-wide")
        self.calls_list.observe(lambda change: self._syncing or change["new"] is None
                                or self.step_back_to(change["new"]), "value")

        self.bp_entry = w.Text(placeholder="address or symbol", description="breakpoint")
        self.bp_cpu = w.Dropdown(options=_any_options(s.cpus, "any CPU"), value=ANY_CPU, layout=w.Layout(width="110px"))
        self.bp_add_button = button(description="Add", icon="plus")
        self.bp_add_button.on_click(lambda _: self.add_breakpoint())
        self.event_entry = w.Combobox(placeholder="SDEI_EVENT_COMPLETE, CPU_ON, SdeiDispatch, ...",
                                      options=self._event_names(), description="event")
        self.event_cpu = w.Dropdown(options=_any_options(s.cpus, "any CPU"), value=ANY_CPU,
                                    layout=w.Layout(width="110px"))
        self.event_add_button = button(description="Break on", icon="plus")
        self.event_add_button.on_click(lambda _: self.break_on())
        self.bp_list = w.Select(options=[], rows=4, layout=w.Layout(width="420px"))
        self.bp_remove_button = button(description="Remove", icon="minus")
        self.bp_remove_button.on_click(lambda _: self.remove_breakpoint())

        # Profiles and quirks say what they are where they are chosen: the profile's description
        # under the menu, each quirk's docstring beside its box (and as its tooltip).
        self.profile_select = w.Dropdown(options=[(name, name) for name in s.profiles()], value=s.profile.name,
                                         description="profile")
        self.profile_select.observe(lambda change: self._syncing or self.set_profile(change["new"]), "value")
        self.profile_text = w.HTML()
        docs = attribute_docs(Quirks)
        self.quirk_boxes = {name: w.Checkbox(value=getattr(s.quirks, name), description=name, indent=False,
                                             tooltip=docs.get(name, ""), layout=w.Layout(width="220px"))
                            for name in Quirks.names()}
        for name, box in self.quirk_boxes.items():
            box.observe(lambda change, n=name: self._syncing or self.set_quirk(n, change["new"]), "value")

        self.event_select = w.Dropdown(options=[0], value=0, description="SDEI event",
                                       layout=w.Layout(width="200px"))
        self.event_select.observe(self._on_user(self.show_event), "value")
        self.state_cpu = w.Dropdown(options=_any_options(s.cpus, "all CPUs"), value=ANY_CPU, description="on",
                                    layout=w.Layout(width="150px"), style={"description_width": "24px"})
        self.state_cpu.observe(self._on_user(lambda value: self.show_event_cpu(_cpu(value))), "value")
        self.state_label = w.HTML()  # the highlighted state in words: readable from the back of a room
        # Each picture is shown at half its pixel size (HiDPI), sized by width only: the height
        # follows the picture's own aspect, and max-width lets a narrow page shrink it, never stretch it.
        self.state_image = w.Image(format="png", layout=_image_layout(plots.STATE_DISPLAY))
        self.timeline_image = w.Image(format="png", layout=_image_layout(plots.TIMELINE_DISPLAY))
        for image in (self.state_image, self.timeline_image):
            image.add_class("sdeilab-picture")

        controls = w.HBox([self.run_button, self.pause_button, self.step_button, self.step_firmware_button,
                           self.run_until_button, self.step_back_button, self.reset_button, self.count,
                           self.step_cpu, self.gdb_button, self.gdb_label], layout=w.Layout(flex_flow="row wrap"))
        controls.add_class("sdeilab-controls")
        breakpoints = w.VBox([
            w.HBox([self.bp_entry, self.bp_cpu, self.bp_add_button]),
            w.HBox([self.event_entry, self.event_cpu, self.event_add_button]),
            w.HBox([self.bp_list, self.bp_remove_button]),
        ])
        quirk_rows = [w.HBox([box, w.HTML(f"<small>{html.escape(docs.get(name, ''))}</small>")])
                      for name, box in self.quirk_boxes.items()]
        platform = w.VBox([self.profile_select, self.profile_text,
                           w.HTML("<b>SDEI quirks</b> (changing one resets the guest)"), *quirk_rows])
        memory = w.VBox([self.memory_entry, self.memory_html])
        # Below the pictures: breakpoints open (their buttons at hand), the rest one click away.
        self.details = w.Accordion(children=[breakpoints, self.registers_html, memory, platform])
        for index, title in enumerate(("Breakpoints", "Registers", "Memory", "Platform: profile and quirks")):
            self.details.set_title(index, title)
        self.details.selected_index = 0
        self.settings = self.details  # the name this box had before the registers moved into it
        code = w.VBox([self.cpu_select, self.disasm_html, self.sdei_html, w.HTML("<b>UART</b>"), self.uart_html,
                       self.uart_input],
                      layout=w.Layout(flex=f"1 1 {CODE_WIDTH}px", min_width="0"))
        code.add_class("sdeilab-code")
        pictures = w.VBox([w.HBox([self.event_select, self.state_cpu]), self.state_label, self.state_image,
                           self.timeline_image],
                          layout=w.Layout(flex=f"1 1 {PICTURES_WIDTH}px", align_items="flex-start"))
        pictures.add_class("sdeilab-pictures")
        # Two columns where they fit: code and facts on the left, both pictures on the right, so that
        # at 1440 x 900 (JupyterLab's side bar open too) the controls, the status and both pictures
        # are on one screen. Where the page is narrower than CODE_WIDTH + the pictures (1280 x 800
        # with the side bar open), the pictures wrap below the code at their full size rather than
        # shrink (their text is sized for their CSS width) or crowd the code (its tables were cut).
        # Where there is room to spare, on a wide and tall screen, the pictures grow (PICTURES_MAX).
        main = w.Box([code, pictures], layout=w.Layout(display="flex", flex_flow="row wrap"))
        main.add_class("sdeilab-main")
        # The recent calls below both columns, as wide as the dashboard: a list clips its lines (no
        # wrapping in a <select>), and a call with its arguments and result is a long line.
        calls = w.VBox([w.HTML("<b>Recent firmware calls</b> <small>(click one to step back to it)</small>"),
                        self.calls_list])
        self.widget = w.VBox([
            w.HTML(_CSS),
            controls,
            w.HBox([self.status, self.progress, self.progress_label], layout=w.Layout(min_height="28px")),
            main,
            calls,
            self.details,
        ])
        self.widget.add_class("sdeilab-lab")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def _event_names(self) -> list[str]:
        return sorted(self.session.function_names()) + sorted(kind.__name__ for kind in FACT_KINDS)

    # --- controls (each button calls exactly one of these) -------------------------------
    def run(self, max_instructions: int | None = None) -> StopInfo | None:
        """Run in this thread until a breakpoint, the guest's end, or Ctrl-C (which pauses)."""
        self._last_live = time.monotonic()
        return self._do(lambda: self.session.run(max_instructions, progress=self._progress))

    def start(self, max_instructions: int | None = None) -> threading.Thread | None:
        """Run in a background thread (the Run button): the kernel stays free for Pause."""
        if self.busy:
            self._fail("already running")
            return None
        self.error = ""
        self._result = None
        self.progress.value = 0
        self.progress.layout.visibility = "visible"
        self.status.value = status_html(self.session.last_stop, running=True, retired=self.session.retired)
        # The views show the stop the run starts from: the first live refresh is due half a second
        # in, not at the first chunk. A drawing in the worker thread takes the GIL from the run, so
        # one at the start made a 0.14 s run of tftf_rm_any take 0.6 s (benchmarks/dashboard_speed.py).
        self._last_live = time.monotonic()
        self._thread = threading.Thread(target=self._background, args=(max_instructions,), daemon=True,
                                        name="sdeilab-run")
        _stop_threads_first_at_exit()
        self._thread.start()
        return self._thread

    def wait(self, timeout: float | None = None) -> StopInfo | None:
        """Wait for a background run to stop; its result (None if it is still going)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                return None
            self._thread = None
        return self._result

    def pause(self) -> None:
        """Stop the run going on (from the Pause button, another thread or a notebook cell)."""
        self.session.pause()

    def step(self, count: int | None = None, cpu: int | None = None) -> StopInfo | None:
        """Execute exactly ``count`` instructions (default: the n field), machine-wide or, with
        ``cpu``, until that CPU has retired them (the Step button: the "on" chooser's CPU)."""
        n = self.count.value if count is None else count
        return self._do(lambda: self.session.step(n, cpu))

    def step_firmware(self, cpu: int | None = None) -> StopInfo | None:
        """Run to just after the next SMCCC call or SDEI dispatch (of ``cpu``, if given)."""
        return self._do(lambda: self.session.step_firmware(cpu))

    def step_back_to(self, seq: int) -> StopInfo | None:
        """Go back to just after the instruction that recorded fact ``seq`` (a call in the recent
        calls list), by replay from the start."""
        return self._do(lambda: self.session.step_back_to(seq))

    def run_until(self, predicate: Callable[..., bool] | str | None = None, cpu: int | None = None,
                  max_instructions: int | None = None, *, every: int | None = None) -> StopInfo | None:
        """Run until ``predicate`` (see ``Session.run_until``), or until the firmware event named by
        ``predicate`` or the event field, on ``cpu`` or the event field's CPU."""
        if predicate is None or isinstance(predicate, str):
            name = (predicate or self.event_entry.value).strip()
            if not name:
                self._fail("name an event in the event field first")
                return None
            target = cpu if cpu is not None or predicate is not None else _cpu(self.event_cpu.value)
            try:
                matcher: EventBreak = self.session.event_matcher(name, target)
            except ValueError as error:
                self._fail(str(error))
                return None
            return self._do(lambda: self.session.run_until(matcher, max_instructions))
        return self._do(lambda: self.session.run_until(predicate, max_instructions, every=every))

    def step_back(self, count: int | None = None) -> StopInfo | None:
        """Go back ``count`` instructions (default: the n field), by replay from the start."""
        n = self.count.value if count is None else count
        return self._do(lambda: self.session.step_back(n))

    def reset(self) -> StopInfo | None:
        return self._do(self.session.reset)

    def add_breakpoint(self, where: int | str | None = None, cpu: int | None = None) -> Breakpoint | None:
        """Add an address breakpoint (default: the breakpoint field and its CPU)."""
        target = self.bp_entry.value if where is None else where
        which = _cpu(self.bp_cpu.value) if where is None and cpu is None else cpu
        return self._edit(lambda: self.session.add_breakpoint(target, which))

    def break_on(self, name: str | None = None, cpu: int | None = None) -> EventBreak | None:
        """Break on a firmware event (default: the event field and its CPU)."""
        target = (self.event_entry.value if name is None else name).strip()
        which = _cpu(self.event_cpu.value) if name is None and cpu is None else cpu
        return self._edit(lambda: self.session.break_on(target, which))

    def remove_breakpoint(self, which: Breakpoint | EventBreak | int | str | None = None) -> None:
        """Remove a breakpoint or event break (default: the one selected in the list)."""
        item = self.bp_list.value if which is None else which
        if item is None:
            self._fail("select a breakpoint first")
            return
        if isinstance(item, EventBreak):
            self._edit(lambda: self.session.remove_event_break(item))
        else:
            self._edit(lambda: self.session.remove_breakpoint(item))

    def set_profile(self, name: str) -> StopInfo | None:
        """Switch the platform profile; the guest starts over (its SMC build where the profile needs it)."""
        return self._do(lambda: self.session.configure(profile=name))

    def set_quirk(self, name: str, on: bool) -> StopInfo | None:
        """Turn an SDEI quirk on or off; the guest starts over."""
        enabled = {n for n in Quirks.names() if getattr(self.session.quirks, n)}
        enabled = enabled | {name} if on else enabled - {name}
        return self._do(lambda: self.session.configure(quirks=sorted(enabled)))

    def set_cpus(self, count: int) -> StopInfo | None:
        """Change the number of CPUs; the guest starts over and the CPU choosers follow."""
        return self._do(lambda: self.session.configure(cpus=count))

    def raise_event(self, number: int, cpu: int) -> None:
        """Raise a hypervisor-originated SDEI event on ``cpu`` (``Session.raise_event``)."""
        self._edit(lambda: self.session.raise_event(number, cpu))

    def send_input(self, text: str | bytes) -> None:
        """Type ``text`` into the guest's UART (``Session.send_input``); run the guest to see it read."""
        data = text.encode() if isinstance(text, str) else text
        self._edit(lambda: self.session.send_input(data))

    def _typed(self, line: str) -> None:
        if line:
            self.send_input(line + "\n")
            with self._quiet():
                self.uart_input.value = ""

    def serve_gdb(self, port: int = 0) -> int | None:
        """Serve the session to gdb on 127.0.0.1:``port`` (0: a free one) until ``stop_gdb`` (the gdb
        button); returns the port. The views follow each stop gdb causes."""
        if self.gdb_server is None:
            try:
                server = self.session.serve_gdb(port)
            except OSError as error:
                self._set_gdb(False)
                self._fail(f"gdb: cannot listen on 127.0.0.1:{port}: {error.strerror or error}")
                return None
            server.on_stop = self._refresh_safely
            self.gdb_server = server
        self._set_gdb(True)
        return self.gdb_server.port

    def stop_gdb(self) -> None:
        """Stop serving gdb (a run gdb started is paused; gdb sees the connection close)."""
        server, self.gdb_server = self.gdb_server, None
        if server is not None:
            server.close()
        self._set_gdb(False)
        self._refresh_safely()

    def _toggle_gdb(self, on: bool) -> None:
        if on:
            self.serve_gdb()
        else:
            self.stop_gdb()

    def _on_user(self, act: Callable[[Any], object]) -> Callable[[dict[str, Any]], None]:
        """An observer that passes a widget's new value to ``act`` when the user changed it (not
        when the lab itself is setting widget values)."""
        def observe(change: dict[str, Any]) -> None:
            if not self._syncing:
                act(change["new"])
        return observe

    def _set_gdb(self, on: bool) -> None:
        with self._quiet():
            self.gdb_button.value = on
        server = self.gdb_server
        self.gdb_label.value = ("" if server is None else
                                f"<code>target remote :{server.port}</code> <small>(gdb-multiarch)</small>")

    def close(self, timeout: float | None = None) -> None:
        """Pause a background run and wait for it and for the drawing in progress to end (done
        for every dashboard at interpreter exit; the dashboard stays usable)."""
        if self.gdb_server is not None:
            self.stop_gdb()
        if self.busy:
            self.session.pause()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self.wait_plots(timeout)

    def show_cpu(self, cpu: int | str) -> None:
        """Show ``cpu``'s disassembly and memory (``"follow"``: the CPU that ran last)."""
        with self._quiet():
            self.cpu_select.value = cpu
        self._refresh_code()

    def show_memory(self, address: int | str | None = None) -> None:
        """Dump memory at ``address`` (an address or symbol; empty: the shown CPU's SP)."""
        if address is not None:
            with self._quiet():
                self.memory_entry.value = address if isinstance(address, str) else f"0x{address:x}"
        self._refresh_memory()

    def show_event(self, event: int) -> None:
        """Show SDEI ``event``'s state machine."""
        with self._quiet():
            if event not in self.event_select.options:
                self.event_select.options = sorted({*self.event_select.options, event})
            self.event_select.value = event
        self._refresh_plots(force=True)

    def show_event_cpu(self, cpu: int | None) -> None:
        """Count the state machine's transitions on ``cpu`` only (None: all CPUs)."""
        with self._quiet():
            self.state_cpu.value = ANY_CPU if cpu is None else cpu
        self._refresh_plots(force=True)

    # --- refreshing the views ------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def shown_cpu(self) -> int:
        value = self.cpu_select.value
        return self.session.focus_cpu() if value == FOLLOW else int(value)

    def refresh(self) -> None:
        """Bring every view up to date with the session."""
        s = self.session
        running = s.running
        self.status.value = self._status(running)
        self._show_progress(running)
        self.registers_html.value = registers_html(s.cpu_views())
        self._refresh_uart()
        self.sdei_html.value = sdei_rows_html(self._sdei_state())
        calls = recent_calls(s.trace, RECENT_CALLS, s.symbolize)[::-1]  # the newest on top, in view
        with self._quiet():
            if list(self.calls_list.options) != calls:
                self.calls_list.options = calls
            self.calls_list.value = None
        profile = s.profile
        self.profile_text.value = f"<small>{html.escape(profile.description)}</small>"
        self._refresh_code()
        self._refresh_breakpoints()
        self._refresh_plots()

    def _status(self, running: bool = False, error: str | None = None) -> str:
        s = self.session
        return status_html(s.last_stop, running=running, note=self.note, error=self.error if error is None else error,
                           trace=s.trace, symbolize=s.symbolize)

    def _show_progress(self, running: bool) -> None:
        self.progress.layout.visibility = "visible" if running else "hidden"
        if not running:
            self.progress_label.value = ""

    def _refresh_uart(self) -> None:
        text = self.session.uart_text()
        if text != self.uart_view.value or not self.uart_html.value:
            self.uart_view.value = text
            self.uart_html.value = uart_html(text)

    def _sdei_state(self) -> list[tuple[int, str, bool | None, list[tuple[int, bool]]]]:
        """Each CPU's power state and, where the platform's SDEI dispatcher is the lab's own, its mask
        and the events whose handlers run on it (its dispatch stack, bottom first)."""
        s = self.session
        sdei = getattr(s.platform, "sdei", None)
        pes = getattr(sdei, "pes", None)
        rows = []
        for vcpu in s.machine.vcpus:
            pe = pes[vcpu.index] if pes is not None and vcpu.index < len(pes) else None
            stack = [(d.event.number, d.event.critical) for d in pe.stack] if pe is not None else []
            rows.append((vcpu.index, vcpu.state.value, None if pe is None else pe.masked, stack))
        return rows

    def _refresh_code(self) -> None:
        cpu = self.shown_cpu()
        s = self.session
        self.disasm_html.value = disassembly_html(cpu, s.disassembly(cpu), s.symbolize(s.pc(cpu)))
        self._refresh_memory()

    def _refresh_memory(self) -> None:
        s = self.session
        text = self.memory_entry.value.strip()
        try:
            address = s.address_of(text) if text else s.registers(self.shown_cpu())["SP"] & ~0xF
        except ValueError as error:
            self.memory_html.value = f"<pre>{error}</pre>"
            return
        self.memory_html.value = memory_html(address, s.memory(address, 128))

    def _refresh_breakpoints(self) -> None:
        s = self.session
        options: list[tuple[str, object]] = [(str(b), b) for b in s.breakpoints]
        options += [(f"on {e}", e) for e in s.event_breaks]
        with self._quiet():
            self.bp_list.options = options

    def _refresh_plots(self, force: bool = False) -> None:
        if not self.plots_enabled:
            return
        s = self.session
        trace = s.trace
        shown = self.event_select.value
        events = sorted({0, shown, *_sdei_events(trace)})
        if list(self.event_select.options) != events:
            keep = self.event_select.value
            with self._quiet():
                self.event_select.options = events
                self.event_select.value = keep if keep in events else events[0]
        # The trace object itself, not its id(): a reset makes a new log, whose id may be the old one's.
        # The stop's vtime too: the timeline's cursor is there.
        key = (trace, len(trace), s.last_stop.vtime, self.event_select.value, _cpu(self.state_cpu.value))
        if not force and key == self._plotted:
            return  # nothing new to draw: a step that recorded no fact only moves the cursor
        self._plotted = key
        if _EXITING.is_set():
            return  # too late to draw (module docstring, "Threads at exit")
        if not self.plots_async:
            self._draw_plots()
            return
        # Drawn in a worker thread, so a click updates the text views at once and the plots
        # follow; requests that arrive while it draws are folded into one more drawing.
        with self._plot_lock:
            self._plot_pending = True
            if self._plot_thread is None:
                self._plot_thread = threading.Thread(target=self._plot_worker, daemon=True, name="sdeilab-plots")
                _stop_threads_first_at_exit()
                self._plot_thread.start()

    def wait_plots(self, timeout: float | None = None) -> bool:
        """Wait until the plots show the latest stop; False if still drawing after ``timeout``."""
        with self._plot_lock:
            thread = self._plot_thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _plot_worker(self) -> None:
        while True:
            with self._plot_lock:
                if not self._plot_pending or _EXITING.is_set():
                    self._plot_thread = None
                    return
                self._plot_pending = False
            self._draw_plots()

    def _draw_plots(self) -> None:
        s = self.session
        trace, event, cpu = s.trace, self.event_select.value, _cpu(self.state_cpu.value)
        # Each picture is redrawn only when what it shows has changed. The state machine shows
        # the SdeiTransition facts of (event, cpu) and nothing else, and the log only grows, so
        # while their number stays the same so does the picture: a firmware step whose call is
        # not about this event costs no state machine (more than half of the drawing time).
        # The timeline shows the facts around the stop, with a cursor at it: it follows the length
        # and the stop's vtime. The keys are taken before drawing, so a fact appended meanwhile is
        # drawn again later.
        state_key = (trace, event, cpu, len(trace.seqs(SdeiTransition, event=event, cpu=cpu)))
        now = plots.timeline_now(trace, None if s.running else s.last_stop.vtime)
        timeline_key = (trace, len(trace), now)
        try:
            state = current = timeline = None
            if state_key != self._state_drawn:
                state = plots.state_machine_png(trace, event, cpu, picture=self.state_picture)
                current = plots.current_state(trace, event, cpu)
            if timeline_key != self._timeline_drawn:
                timeline = plots.timeline_png(trace, s.cpus, now, picture=self.timeline_picture)
        except Exception as error:  # a view that fails must not take the dashboard down: say so
            self.plot_error = f"plot failed: {type(error).__name__}: {error}"
            return
        self.plot_error = ""
        if state is not None:
            self.state_image.value = state
            self.state_label.value = state_label_html(event, cpu, current)
            self._state_drawn = state_key
        if timeline is not None:
            self.timeline_image.value = timeline
            self._timeline_drawn = timeline_key
        if state is not None or timeline is not None:
            self.plots_drawn += 1

    def _sync_switches(self) -> None:
        s = self.session
        with self._quiet():
            self.profile_select.value = s.profile.name
            for name, box in self.quirk_boxes.items():
                box.value = getattr(s.quirks, name)
            if len(self.bp_cpu.options) != s.cpus + 1:  # the CPU count changed: so do the choosers
                for chooser, options in ((self.cpu_select, _follow_options(s.cpus)),
                                         (self.bp_cpu, _any_options(s.cpus, "any CPU")),
                                         (self.step_cpu, _any_options(s.cpus, "all CPUs")),
                                         (self.event_cpu, _any_options(s.cpus, "any CPU")),
                                         (self.state_cpu, _any_options(s.cpus, "all CPUs"))):
                    keep = chooser.value
                    chooser.options = options
                    chooser.value = keep if keep in [value for _, value in options] else options[0][1]

    @contextmanager
    def _quiet(self) -> Iterator[None]:
        syncing, self._syncing = self._syncing, True
        try:
            yield
        finally:
            self._syncing = syncing

    # --- plumbing ------------------------------------------------------------------------
    def _do(self, action: Callable[[], StopInfo]) -> StopInfo | None:
        """Drive the session; then the switches show what the session has (a profile switch that
        failed leaves the old one selected) and the views are refreshed."""
        if self.busy:
            self._sync_switches()
            self._fail("the machine is running: pause it first")
            return None
        self.error = ""
        try:
            result: StopInfo | None = action()
        except Exception as error:  # shown in the status line, never raised into a widget callback
            self.error = _message(error)
            result = None
        else:
            self.progress.value = self.progress.max
        self._sync_switches()
        # Also after an error: a run_until predicate that raised has stopped the run somewhere new.
        self._refresh_safely()
        return result

    def _edit(self, action: Callable[[], Any]) -> Any:
        self.error = ""
        try:
            result = action()
        except Exception as error:  # as in _do
            self._fail(_message(error))
            return None
        self._refresh_safely()
        return result

    def _refresh_safely(self) -> None:
        try:
            self.refresh()
        except Exception as error:  # a view that cannot be drawn must not take the button down
            self._fail(f"{self.error + '; ' if self.error else ''}view refresh failed: {_message(error)}")

    def _fail(self, message: str) -> None:
        self.error = message
        self.status.value = self._status(self.session.running, message)

    def _background(self, max_instructions: int | None) -> None:
        try:
            self._result = self.session.run(max_instructions, progress=self._progress)
        except BaseException as error:  # shown, never lost in a thread
            self.error = _message(error)
        self.progress.value = self.progress.max
        self._refresh_safely()

    def _progress(self, done: int, total: int | None) -> None:
        if total:
            self.progress.value = min(100, 100 * done // total)
        else:
            self.progress.value = (self.progress.value + 5) % 100  # no end known: keep it moving
        self.progress_label.value = f"{done:,} instructions"
        now = time.monotonic()
        if now - self._last_live >= LIVE_REFRESH_S:
            self._last_live = now
            s = self.session
            self.status.value = status_html(s.last_stop, running=True, retired=s.retired)
            self._refresh_uart()
            self._refresh_plots()


def _image_layout(display: tuple[int, int]) -> w.Layout:
    """As wide as the pictures' column, never narrower than the picture's CSS width; the height
    follows the picture's own aspect."""
    return w.Layout(width="auto", min_width=f"{display[0]}px", height="auto", align_self="stretch")


def _follow_options(cpus: int) -> list[tuple[str, int | str]]:
    return [("follow", FOLLOW)] + [(f"CPU {n}", n) for n in range(cpus)]


def _any_options(cpus: int, label: str) -> list[tuple[str, int]]:
    return [(label, ANY_CPU)] + [(f"CPU {n}", n) for n in range(cpus)]


def _message(error: BaseException) -> str:
    """An error as the status line shows it: the message of the errors a user causes, with the
    type for anything else (that is a bug to report, and the type says where to look)."""
    if isinstance(error, (SessionBusy, ValueError, TypeError)):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _cpu(choice: int) -> int | None:
    """A CPU chooser's value as the session takes it: None for "any CPU" / "all CPUs"."""
    return None if choice == ANY_CPU else choice


def _sdei_events(trace: TraceLog) -> list[int]:
    """The SDEI events the trace mentions, from the log's event index where it has one (no facts built)."""
    events = getattr(trace, "events", None)
    if callable(events):
        return list(events())
    return sorted({f.event for f in trace.of_kind(SdeiTransition)})
