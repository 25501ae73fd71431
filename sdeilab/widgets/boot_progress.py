"""A progress bar and a streaming console for a long run that happens inside a notebook cell.

Booting Linux is about 1e9 guest instructions and half a minute of wall time, run synchronously
in the cell (``sdeilab.linux.watchdog.run_watchdog`` calls ``Machine.run`` itself). Wrapped in
:class:`BootProgress`, the cell shows while it runs::

    with BootProgress(platform.machine, BUDGET):
        run = run_watchdog(platform, EVENT, RAISES, SETTLE, BUDGET)

* a bar of the instructions retired against ``budget``, with the count, the instructions per
  second and the seconds elapsed;
* the guest's console (the UART's output since the run began), keeping to its last lines.

It hooks in through the machine's own hooks, nothing new below this layer: a slice hook
(``Machine.slice_hooks``, called before each CPU slice of at most ``quantum`` instructions)
reads ``Machine.retired`` and ``Machine.uart_output`` at most every ``every`` seconds of wall
time; anything more often would cost the boot time for no one to see. Setting a widget's value
from the kernel while the cell runs sends it to the front end at once, so the bar moves during
the run. Without a front end (no IPython kernel: a script, pytest) the widgets are still kept
up to date, and a one-line status is printed every ``text_every`` seconds and at the end; in a
kernel with no live front end (nbclient) the output's plain-text form is that last line.

Ctrl-C (a Jupyter kernel interrupt) inside the block does not raise in the middle of a firmware
call: as the session's runs do, it asks the machine to pause at the end of the slice that is
running, a clean debugger stop that leaves no fact, and keeps it stopped at every slice start
after that, so whatever drives the machine comes back quickly. When the block ends the widget
says ``interrupted at N instructions`` and :class:`KeyboardInterrupt` is raised from it: the
trace keeps every fact recorded so far (and the machine can run on from where it stopped). A
second Ctrl-C raises at once, for a block stuck outside the machine.

Nothing here raises into the run: a display that fails is dropped, and the widget goes on counting.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

import ipywidgets as w

from sdeilab.machine.machine import Machine
from sdeilab.machine.vcpu import Vcpu
from sdeilab.widgets.views import uart_html

__all__ = ["BootProgress"]

EVERY_S = 0.25  # the widgets are refreshed at most this often (wall time)
TEXT_EVERY_S = 10.0  # without a front end, a status line at most this often
CONSOLE_LINES = 20  # lines the console box keeps
_TAIL_BYTES = 256  # UART bytes read per console line kept (a boot log's lines are shorter)
_INTERRUPTED = "interrupted by the user (Ctrl-C)"


class BootProgress:
    """Retired instructions and the guest console of ``machine`` while a ``with`` block runs it.

    ``bar`` (an IntProgress: ``value`` the instructions retired since the block began, ``max``
    the budget), ``label`` (count, rate, time, or how the run ended) and ``console`` (the UART
    box) are ordinary ipywidgets in ``box``. ``show``: display ``box`` on entering the block
    (True), print status lines instead (False), or choose by whether an IPython kernel is there
    (None). ``clock`` is the wall clock (seconds), replaceable in tests.
    """

    def __init__(self, machine: Machine, budget: int, *, title: str = "instructions retired",
                 every: float = EVERY_S, lines: int = CONSOLE_LINES, text_every: float = TEXT_EVERY_S,
                 show: bool | None = None, clock: Callable[[], float] = time.perf_counter) -> None:
        self.machine = machine
        self.budget = max(1, int(budget))
        self.title = title
        self.every = every
        self.lines = lines
        self.text_every = text_every
        self._show = show
        self._clock = clock
        self.bar = w.IntProgress(value=0, min=0, max=self.budget, description="",
                                 layout=w.Layout(width="100%"))
        self.label = w.Label("")
        self.console = w.HTML(layout=w.Layout(width="100%"))
        self.box = w.VBox([w.HBox([self.bar], layout=w.Layout(width="100%")), self.label, self.console],
                          layout=w.Layout(width="100%"))
        self.console_text = ""  # the console's text as shown: its last ``lines`` lines
        self.updates = 0  # refreshes of the widgets (the final one included)
        self.interrupted = False
        self.summary = ""  # the last status in words (the display's plain-text form)
        self._start = machine.retired
        self._uart_from = len(machine.uart_output)
        self._uart_seen = -1
        self._started = self._next = self._next_text = 0.0
        self._last = (0.0, 0)  # (time, retired) at the last refresh: the rate is over the interval
        self._rate = 0.0
        self._widgets = False  # the box is displayed (a kernel is there)
        self._handle: Any = None
        self._previous_sigint: Any = None
        self._sigint = False  # our Ctrl-C handler is installed
        self._hooked = False

    # --- the block -----------------------------------------------------------------------
    def __enter__(self) -> BootProgress:
        machine = self.machine
        self._start = machine.retired
        self._uart_from = len(machine.uart_output)
        self._started = self._clock()
        self._last = (self._started, 0)
        self._next = self._started + self.every
        self._next_text = self._started + self.text_every
        self.interrupted = False
        self._refresh(self._started)
        self._widgets = self._display()
        machine.slice_hooks.append(self._on_slice)
        self._hooked = True
        if threading.current_thread() is threading.main_thread():
            try:
                self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)
                self._sigint = True
            except (ValueError, OSError):  # not allowed here: Ctrl-C keeps its usual meaning
                pass
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._hooked:
            self._hooked = False
            with contextlib.suppress(ValueError):
                self.machine.slice_hooks.remove(self._on_slice)
        if self._sigint:  # the handler before (None: one not set from Python, which SIG_DFL stands for)
            self._sigint = False
            previous, self._previous_sigint = self._previous_sigint, None
            signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
        if isinstance(error, KeyboardInterrupt):
            self.interrupted = True  # a Ctrl-C that raised (a second one, or one outside the machine)
        self._finish(error)
        if self.interrupted and not isinstance(error, KeyboardInterrupt):
            # The machine stopped cleanly; whatever the driver made of that stop (a PAUSED
            # outcome, or an error because its stop never came) gives way to the interrupt.
            raise KeyboardInterrupt(f"{self.summary}; the trace keeps its {len(self.machine.trace):,} facts") from error

    @property
    def retired(self) -> int:
        """Instructions retired since the block began."""
        return self.machine.retired - self._start

    def interrupt(self) -> None:
        """What Ctrl-C does in the block: stop the machine at the end of the running slice, keep it
        stopped, and raise KeyboardInterrupt when the block ends. Safe from any thread."""
        self.interrupted = True
        self.machine.request_pause(_INTERRUPTED)

    # --- hooks ---------------------------------------------------------------------------
    def _on_slice(self, vcpu: Vcpu) -> None:
        """Before each slice: keep an interrupted machine stopped, else refresh if it is time."""
        if self.interrupted:
            self.machine.request_pause(_INTERRUPTED)
            return
        now = self._clock()
        if now >= self._next:
            self._next = now + self.every
            self._refresh(now)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.interrupted:
            raise KeyboardInterrupt  # asked twice: the block is stuck somewhere the pause does not reach
        self.interrupt()

    # --- the views -----------------------------------------------------------------------
    def _refresh(self, now: float) -> None:
        """Bar, label and console from the machine; never raises (it runs inside the machine's loop)."""
        try:
            retired = self.retired
            then, before = self._last
            if now > then:
                self._rate = (retired - before) / (now - then)
            self._last = (now, retired)
            self.bar.value = min(retired, self.bar.max)
            self.summary = (f"{retired:,} / {self.budget:,} {self.title} ({100 * retired / self.budget:.1f} %), "
                            f"{self._rate / 1e6:.1f} M/s, {now - self._started:.0f} s")
            self.label.value = self.summary
            self._refresh_console()
            self.updates += 1
            if not self._widgets and now >= self._next_text:
                self._next_text = now + self.text_every
                print(self.summary, flush=True)
        except Exception:  # a view must not break the run
            pass

    def _refresh_console(self) -> None:
        uart = self.machine.uart_output
        size = len(uart)
        if size == self._uart_seen:
            return
        self._uart_seen = size
        begin = max(self._uart_from, size - _TAIL_BYTES * self.lines)
        text = bytes(uart[begin:size]).decode(errors="replace")
        if begin > self._uart_from:  # the first line may be cut: drop it
            text = text.split("\n", 1)[1] if "\n" in text else text
        self.console_text = "\n".join(text.splitlines()[-self.lines:])
        self.console.value = uart_html(self.console_text, lines=self.lines, height_px=16 * min(self.lines, 12) + 8)

    def _finish(self, error: BaseException | None) -> None:
        """The last refresh, and how the run ended, in the label and the bar's colour."""
        now = self._clock()
        self._refresh(now)
        retired = self.retired
        elapsed = now - self._started
        rate = retired / elapsed / 1e6 if elapsed > 0 else 0.0
        if self.interrupted:
            self.summary, style = f"interrupted at {retired:,} instructions ({elapsed:.1f} s)", "danger"
        elif error is not None:
            self.summary, style = (f"stopped by {type(error).__name__} at {retired:,} instructions "
                                   f"({elapsed:.1f} s)"), "danger"
        else:
            self.summary, style = f"done: {retired:,} {self.title} in {elapsed:.1f} s ({rate:.1f} M/s)", "success"
        with contextlib.suppress(Exception):
            if style == "success":
                self.bar.max = max(1, retired)  # the run is over: the bar is full whatever the budget
            self.bar.value = min(retired, self.bar.max)
            self.bar.bar_style = style
            self.label.value = self.summary
        with contextlib.suppress(Exception):
            if self._widgets:
                self._handle.update(self)  # the plain-text form now says how the run ended
            else:
                print(self.summary, flush=True)

    def _display(self) -> bool:
        """Show the box in a kernel; False where there is none (or ``show`` says not to)."""
        if self._show is False:
            return False
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return False
        shell: Any = get_ipython()
        if self._show is None and (shell is None or not hasattr(shell, "kernel")):
            return False
        try:
            self._handle = display(self, display_id=True)
        except Exception:
            return False
        return True

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = dict(self.box._repr_mimebundle_(**kwargs) or {})
        bundle["text/plain"] = self.summary
        return bundle
