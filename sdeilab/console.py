"""Console input for ``sdeilab run``: the host's bytes to the guest's PL011, deterministically.

Where input may enter. The machine is only ever touched from the main thread, and only at an
*input point*: the start of a slice (``Machine.slice_hooks``, called between slices, never inside
one) or a stop where every CPU waits with nothing that could wake it (``StopReason.DEADLOCK``: a
guest in WFI waiting for its receive interrupt). Input points come in an order that depends on
nothing but the guest and the input given so far, and each is named by its position: the
machine's retired instruction count and, since several points can share a count (one per CPU in
a round, a stop right after a slice start), the index ``nth`` among the points at that count.
Positions strictly increase along a run.

Where input comes from. A reader thread reads standard input (a pipe, a file or a terminal) into
a queue; the next input point drains it into ``Pl011.receive`` (which holds what the receive
FIFO has no room for, as QEMU's chardev flow control, pl011_can_receive). A replayed record hands
each chunk over at the first input point whose position reaches the recorded one, which is the
point where the recorded run gave it, since everything before was the same. So the same guest
and the same record give the same UART output and trace, byte for byte, however fast the host
typed. Every delivery can be written to a record (``--record-input``).

The record format, JSON lines (one JSON value a line, UTF-8):
  line 1: ``{"sdeilab-input": 1}``, the header that tells a record from a plain byte stream;
  then one line per delivery: ``{"retired": N, "nth": K, "data": "..."}``: N the retired
  instruction count at the input point, K its index among the points at N (0 if left out), data
  the bytes as a JSON string of code points 0-255 (each byte one code point, Latin-1), e.g.
  ``"ls\\r"`` or ``"\\u0003"`` for Ctrl-C. Positions must not decrease.
A file whose first line is not the header is a plain byte stream, given to the guest whole at
the first input point at which the guest listens (see ``ConsoleInput``), as a pipe's bytes are.

A Linux guest only listens once its PL011 driver has opened the port: ``pl011_enable_interrupts``
(drivers/tty/serial/amba-pl011.c) first drains up to twice the FIFO depth of whatever waits in
the receive FIFO, then unmasks the receive interrupts (UARTIMSC RXIM and RTIM, DDI 0183 3.3.10).
Bytes from a pipe given before that would be thrown away, so with ``--kernel`` live and plain
input waits until the guest has unmasked the receive interrupt. A lab guest that polls UARTFR
never unmasks it, so for guests input goes in at the first input point.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from sdeilab.machine.machine import Machine, Vcpu

HEADER_KEY = "sdeilab-input"
HEADER = json.dumps({HEADER_KEY: 1})
FORMAT_VERSION = 1
ESCAPE = 0x01  # Ctrl-A, QEMU's -nographic escape character
# UARTIMSC bits (DDI 0183 3.3.10): RXIM receive, RTIM receive timeout.
IMSC_RXIM = 1 << 4
IMSC_RTIM = 1 << 6
WAIT_POLL_S = 0.1  # how often a wait for input at a deadlock looks at a stop request
PACE_SLACK_NS = 20_000_000  # on a terminal, how far virtual time may run ahead of the wall clock

HELP = ("\r\nsdeilab console keys:\r\n"
        "  C-a h    print this help\r\n"
        "  C-a x    stop the run (exit status 130; the trace and the input record are written whole)\r\n"
        "  C-a C-a  send C-a to the guest\r\n")


class InputFileError(ValueError):
    """A --input file that cannot be used; the message names the file and, for a record, the line."""


@dataclass(frozen=True)
class Chunk:
    """Bytes given to the UART at input point (retired, nth)."""

    retired: int
    nth: int
    data: bytes

    @property
    def position(self) -> tuple[int, int]:
        return (self.retired, self.nth)

    def to_line(self) -> str:
        return json.dumps({"retired": self.retired, "nth": self.nth, "data": self.data.decode("latin-1")})


def is_record(data: bytes) -> bool:
    """True if ``data`` starts with the record header line (module docstring)."""
    first = data.split(b"\n", 1)[0].strip()
    try:
        value = json.loads(first)
    except ValueError:
        return False
    return isinstance(value, dict) and HEADER_KEY in value


def parse_record(data: bytes, name: str = "input") -> list[Chunk]:
    """The chunks of a record (the header line included in ``data``); InputFileError says what and where."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last line
    try:
        header = json.loads(lines[0])
    except (ValueError, IndexError):
        raise InputFileError(f"{name}: line 1: not the record header {HEADER}") from None
    if not isinstance(header, dict) or header.get(HEADER_KEY) != FORMAT_VERSION:
        raise InputFileError(f"{name}: line 1: unknown record version {header.get(HEADER_KEY)!r} "
                             f"(this sdeilab reads {HEADER})" if isinstance(header, dict)
                             else f"{name}: line 1: not the record header {HEADER}")
    chunks: list[Chunk] = []
    for number, raw in enumerate(lines[1:], start=2):
        where = f"{name}: line {number}"
        if not raw.strip():
            continue  # blank lines are allowed (an editor's last newline)
        try:
            value = json.loads(raw)
        except ValueError as error:
            raise InputFileError(f"{where}: not JSON ({error.args[0] if error.args else error})") from None
        if not isinstance(value, dict):
            raise InputFileError(f"{where}: expected an object like "
                                 '{"retired": 1234, "nth": 0, "data": "ls\\r"}')
        unknown = set(value) - {"retired", "nth", "data"}
        if unknown:
            raise InputFileError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        retired, nth, text = value.get("retired"), value.get("nth", 0), value.get("data")
        for key, number_value in (("retired", retired), ("nth", nth)):
            if type(number_value) is not int or number_value < 0:
                raise InputFileError(f"{where}: {key!r} must be a whole number >= 0, not {number_value!r}")
        if not isinstance(text, str):
            raise InputFileError(f"{where}: 'data' must be a string, not {text!r}")
        assert isinstance(retired, int) and isinstance(nth, int)  # checked just above
        try:
            chunk = Chunk(retired, nth, text.encode("latin-1"))
        except UnicodeEncodeError:
            raise InputFileError(f"{where}: 'data' holds a character above \\u00ff (each byte is one "
                                 "code point 0-255)") from None
        if chunks and chunk.position < chunks[-1].position:
            raise InputFileError(f"{where}: position ({retired}, {nth}) comes before the previous line's "
                                 f"{chunks[-1].position}: positions must not decrease")
        chunks.append(chunk)
    return chunks


def load_input(path: Path) -> list[Chunk] | bytes:
    """A --input file: a record's chunks, or the bytes of a plain stream."""
    try:
        with open(path, "rb") as stream:
            if not os.path.isfile(path):
                raise InputFileError(f"--input {path}: not a regular file (a pipe goes on standard input)")
            data = stream.read()
    except FileNotFoundError:
        raise InputFileError(f"--input {path}: no such file") from None
    except IsADirectoryError:
        raise InputFileError(f"--input {path}: is a directory") from None
    except OSError as error:
        raise InputFileError(f"--input {path}: cannot read it ({error.strerror or error})") from None
    return parse_record(data, f"--input {path}") if is_record(data) else data


class EscapeKeys:
    """QEMU's -nographic keys on a terminal: C-a x quits, C-a h prints help, C-a C-a sends C-a.
    Any other key after C-a is dropped, as QEMU's mux does with keys it does not know."""

    def __init__(self) -> None:
        self._escaped = False

    def feed(self, data: bytes) -> tuple[bytes, list[str]]:
        """The bytes for the guest and the commands ("quit", "help") in ``data``, in order of typing
        (a quit ends the input: what follows it is dropped)."""
        out = bytearray()
        commands: list[str] = []
        for byte in data:
            if self._escaped:
                self._escaped = False
                if byte == ESCAPE:
                    out.append(ESCAPE)
                elif byte in b"xX":
                    commands.append("quit")
                    break
                elif byte in b"hH?":
                    commands.append("help")
            elif byte == ESCAPE:
                self._escaped = True
            else:
                out.append(byte)
        return bytes(out), commands


class StdinReader:
    """A thread reading a descriptor into a queue: bytes, then None at end of file or on an error.
    On a terminal it interprets the escape keys; ``on_quit`` is called from the thread (it may
    only set flags: Machine.request_pause)."""

    def __init__(self, fd: int, *, terminal: bool, on_quit: Callable[[], None],
                 help_out: TextIO | None = None) -> None:
        self._fd = fd
        self._keys = EscapeKeys() if terminal else None
        self._on_quit = on_quit
        self._help_out = help_out if help_out is not None else sys.stderr
        self.queue: queue.Queue[bytes | None] = queue.Queue()
        self.error: OSError | None = None
        self._thread = threading.Thread(target=self._read, name="sdeilab-stdin", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._fd, 4096)
            except OSError as error:
                self.error = error
                data = b""
            if not data:
                self.queue.put(None)
                return
            if self._keys is None:
                self.queue.put(data)
                continue
            data, commands = self._keys.feed(data)
            if data:
                self.queue.put(data)
            for command in commands:
                if command == "help":
                    with contextlib.suppress(OSError, ValueError):
                        self._help_out.write(HELP)
                        self._help_out.flush()
                elif command == "quit":
                    self._on_quit()
                    self.queue.put(None)
                    return


def terminal_in_foreground(fd: int) -> bool:
    """``fd`` is a terminal and this process is not a background job on it (one that changed the
    terminal's modes would be stopped by SIGTTOU, POSIX 11.1.4). A terminal that is not this
    process's controlling terminal (``< /dev/pts/N``) has no foreground job to ask about."""
    if sys.platform == "win32" or not os.isatty(fd):
        return False  # Windows has no POSIX terminal interface: its console is read as a plain stream
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:  # ENOTTY: not the controlling terminal
        return True


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """The terminal in the mode QEMU's -nographic stdio sets (qemu_chr_set_echo_stdio): no line
    editing, no echo, no signal keys (Ctrl-C goes to the guest), 8-bit bytes, but output still
    post-processed so that sdeilab's own messages keep their line ends. The modes found are put
    back on every way out (``finally``: a return, an exception; SIGINT, SIGTERM and SIGHUP end
    the run through the normal path, cli._Stop)."""
    import termios  # POSIX only (terminal_in_foreground says no terminal elsewhere)

    saved = termios.tcgetattr(fd)
    mode = termios.tcgetattr(fd)
    iflag, oflag, cflag, lflag = 0, 1, 2, 3
    mode[iflag] &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP | termios.INLCR
                     | termios.IGNCR | termios.ICRNL | termios.IXON)
    mode[oflag] |= termios.OPOST
    mode[lflag] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    mode[cflag] &= ~(termios.CSIZE | termios.PARENB)
    mode[cflag] |= termios.CS8
    mode[6][termios.VMIN] = 1
    mode[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, mode)
    try:
        yield
    finally:
        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class ConsoleInput:
    """Gives input to the machine's UART at input points (module docstring) and records each delivery.

    ``replay``: recorded chunks, each given at its position. ``pending``: bytes to give at the first
    input point at which the guest listens (a plain --input stream). ``reader``: live standard
    input, drained at every input point at which the guest listens. ``listens``: None (always) or
    a test of the guest's state. ``record``: where each delivery is written, one line each.

    ``pace``: keep virtual time from running ahead of the wall clock while live input may come.
    A guest that sleeps lets the machine jump its virtual time to the next wake-up at once, so an
    idle Linux at a prompt would burn a host CPU and whole hours of virtual time while someone
    types (QEMU's ``-icount sleep=on`` waits instead). The wait is at an input point and ends when
    input comes: it changes when the host's bytes arrive, which the record keeps, never what the
    machine does with them.
    """

    def __init__(self, machine: Machine, *, replay: list[Chunk] | None = None, pending: bytes = b"",
                 reader: StdinReader | None = None, listens: Callable[[], bool] | None = None,
                 record: TextIO | None = None, pace: bool = False,
                 stopped: Callable[[], bool] = lambda: False) -> None:
        self._machine = machine
        self._replay = list(replay or [])
        self._next = 0
        self._pending = bytearray(pending)
        self._reader = reader
        self._live_open = reader is not None
        self._listens = listens
        self._record = record
        self.record_error: OSError | None = None
        self.deliveries: list[Chunk] = []
        self._last: int | None = None
        self._nth = 0
        self._pace = pace
        self._stopped = stopped  # a stop was asked for (a signal): no more waiting
        self._started = time.monotonic_ns() - machine.now()  # wall-clock time at vtime 0
        machine.slice_hooks.append(self.at_slice)

    def _position(self) -> tuple[int, int]:
        retired = self._machine.retired
        if retired == self._last:
            self._nth += 1
        else:
            self._last, self._nth = retired, 0
        return (retired, self._nth)

    def _drain(self) -> None:
        reader = self._reader
        if reader is None or not self._live_open:
            return
        while True:
            try:
                data = reader.queue.get_nowait()
            except queue.Empty:
                return
            if data is None:
                self._live_open = False
                return
            self._pending += data

    def _deliver(self, position: tuple[int, int], *, listening: bool) -> bool:
        data = bytearray()
        replay = self._replay
        while self._next < len(replay) and replay[self._next].position <= position:
            data += replay[self._next].data
            self._next += 1
        self._drain()
        if self._pending and listening:
            data += self._pending
            self._pending.clear()
        if not data:
            return False
        chunk = Chunk(position[0], position[1], bytes(data))
        self.deliveries.append(chunk)
        self._machine.uart.receive(chunk.data)
        if self._record is not None and self.record_error is None:
            try:
                self._record.write(chunk.to_line() + "\n")
                self._record.flush()
            except OSError as error:
                self.record_error = error
        return True

    def at_slice(self, vcpu: Vcpu) -> None:
        """The slice hook: an input point before every slice."""
        listens = self._listens
        if self._pace:
            self._wait_for_the_wall_clock()
        self._deliver(self._position(), listening=listens is None or listens())

    def _wait_for_the_wall_clock(self) -> None:
        reader = self._reader
        while self._live_open and reader is not None and not self._pending and not self._stopped():
            ahead = self._machine.now() - (time.monotonic_ns() - self._started)
            if ahead <= PACE_SLACK_NS:
                return
            self._take_live(reader, min(ahead / 1e9, WAIT_POLL_S))

    def more_may_come(self) -> bool:
        """Input not given yet: replay chunks left, bytes held, or live input still open."""
        self._drain()
        return self._next < len(self._replay) or bool(self._pending) or self._live_open

    def at_deadlock(self) -> bool:
        """Every CPU waits with nothing that could wake it: an input point. True if input was given
        (run on: the receive interrupt may wake a CPU); False if none came and none can (the run
        ends as a deadlock). Live input is waited for (the guest waits for it, in wall-clock time
        only: the position is where the machine stopped) until it comes, ends, or a stop is asked for."""
        position = self._position()
        # Nothing else can happen before input: the guest hears it whether or not it listens.
        while True:
            if self._deliver(position, listening=True):
                return True
            if not self._live_open or self._stopped() or self._next < len(self._replay):
                return False
            reader = self._reader
            assert reader is not None
            self._take_live(reader, WAIT_POLL_S)

    def _take_live(self, reader: StdinReader, timeout: float) -> None:
        """Wait at most ``timeout`` s for live input: what comes is held for delivery; None, the
        reader's end of input, closes the live side."""
        try:
            data = reader.queue.get(timeout=timeout)
        except queue.Empty:
            return
        if data is None:
            self._live_open = False
        else:
            self._pending += data


def uart_listens(machine: Machine) -> Callable[[], bool]:
    """For Linux: the guest has unmasked a receive interrupt (module docstring)."""
    uart = machine.uart
    return lambda: bool(uart.imsc & (IMSC_RXIM | IMSC_RTIM))

