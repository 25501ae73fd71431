"""Console input (issue 16, item 3): standard input to the PL011 at slice boundaries, recorded and replayed.

The fast tests use a guest that echoes what it receives in capitals and sleeps in WFI between
bytes (so the machine stops as a deadlock whenever it waits for input: the input point where a
live run waits in wall-clock time); the ``linux`` tests type into busybox's shell on Debian's kernel.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sdeilab.console import HEADER, Chunk, EscapeKeys, InputFileError, is_record, parse_record
from sdeilab.toolchain import build_source_text

from .conftest import ROOT, run_cli

ECHO_GUEST = r"""
/* Echo UART input in capitals; '.' powers off. Receive interrupt unmasked in the PL011
 * (UARTIMSC.RXIM, DDI 0183 3.3.10) and enabled in the GIC, IRQs masked in PSTATE: a pending
 * interrupt still wakes WFI (Arm ARM, "Wait for Interrupt"), and the FIFO is read by polling. */
#include "guest.h"
#define UART_IMSC 0x038
#define UART_FR_RXFE (1 << 4)
#define IMSC_RXIM (1 << 4)

int main(void)
{
    puts("echo: ready\n");
    gic_dist_init();
    gic_redist_init();
    gic_cpu_init();
    gic_enable_spi(UART0_INTID, 0x80, cpu_mpidr(0));
    mmio_write32(UART0_BASE + UART_IMSC, IMSC_RXIM);
    for (;;) {
        while (mmio_read32(UART0_BASE + UART_FR) & UART_FR_RXFE)
            wfi();
        char c = (char)mmio_read32(UART0_BASE + UART_DR);
        if (c == '.') {
            puts("\necho: bye\n");
            psci_system_off();
        }
        putc(c >= 'a' && c <= 'z' ? c - 32 : c);
    }
}
"""
READY = b"echo: ready\n"
CTRL_A = b"\x01"


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_source_text(ECHO_GUEST, "c", tmp_path_factory.mktemp("echo") / "echo.elf")


def cli(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "sdeilab.cli", *map(str, args)]


def read_until(fd: int, seen: bytearray, wanted: bytes, timeout: float = 90) -> None:
    """Read ``fd`` into ``seen`` until ``wanted`` is in it (from what was there already too)."""
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"{wanted!r} did not come; got {bytes(seen[-800:])!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                data = os.read(fd, 4096)
            except OSError:  # EIO: a pty whose other side closed
                data = b""
            assert data, f"output ended before {wanted!r}; got {bytes(seen[-800:])!r}"
            seen += data


def finish(process: subprocess.Popen[bytes], fd: int, seen: bytearray, timeout: float = 90) -> tuple[int, str]:
    """Wait for the process, reading the rest of its output into ``seen``; (status, stderr)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            if not data:
                break
            seen += data
        elif process.poll() is not None:
            break
    status = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    assert process.stderr is not None
    return status, process.stderr.read().decode()


# --- the record format and the keys ------------------------------------------------------------
def test_record_round_trip_keeps_every_byte() -> None:
    chunks = [Chunk(0, 0, bytes(range(256))), Chunk(10, 0, b"ls\r"), Chunk(10, 2, b"\x01\x03\"\\")]
    text = "\n".join([HEADER, *(c.to_line() for c in chunks)]) + "\n"
    assert is_record(text.encode())
    assert parse_record(text.encode()) == chunks
    assert json.loads(chunks[1].to_line()) == {"retired": 10, "nth": 0, "data": "ls\r"}


def test_nth_defaults_to_zero_and_blank_lines_are_skipped() -> None:
    data = f'{HEADER}\n{{"retired": 5, "data": "a"}}\n\n'.encode()
    assert parse_record(data) == [Chunk(5, 0, b"a")]


def test_a_plain_stream_is_not_a_record() -> None:
    assert not is_record(b"echo hello\n")
    assert not is_record(b"")
    assert not is_record(b'"sdeilab-input"\n')


@pytest.mark.parametrize(("lines", "words"), [
    (["{\"sdeilab-input\": 2}"], "line 1: unknown record version 2"),
    ([HEADER, '{"retired": 1, "data": "a"}', "not json"], "line 3: not JSON"),
    ([HEADER, '{"retired": -1, "data": "a"}'], "line 2: 'retired' must be a whole number >= 0"),
    ([HEADER, '{"retired": 1.5, "data": "a"}'], "line 2: 'retired' must be a whole number"),
    ([HEADER, '{"retired": 1, "nth": "x", "data": "a"}'], "line 2: 'nth' must be a whole number"),
    ([HEADER, '{"retired": 1, "data": 7}'], "line 2: 'data' must be a string"),
    ([HEADER, '{"retired": 1, "data": "\\u20ac"}'], "line 2: 'data' holds a character above \\u00ff"),
    ([HEADER, '{"retired": 1, "data": "a", "when": 3}'], "line 2: unknown key(s) when"),
    ([HEADER, "[1, 2]"], "line 2: expected an object"),
    ([HEADER, '{"retired": 9, "data": "a"}', '{"retired": 3, "data": "b"}'], "line 3: position (3, 0) comes before"),
    ([HEADER, '{"retired": 9, "nth": 2, "data": "a"}', '{"retired": 9, "nth": 1, "data": "b"}'],
     "line 3: position (9, 1) comes before"),
])
def test_a_malformed_record_names_its_line(lines: list[str], words: str) -> None:
    with pytest.raises(InputFileError) as caught:
        parse_record(("\n".join(lines) + "\n").encode(), "rec")
    assert str(caught.value).startswith("rec: ")
    assert words in str(caught.value)


def test_escape_keys_as_qemu() -> None:
    keys = EscapeKeys()
    assert keys.feed(b"ab\x01") == (b"ab", [])  # C-a waits for the next key, even in another read
    assert keys.feed(b"\x01cd") == (b"\x01cd", [])  # C-a C-a: one literal C-a
    assert keys.feed(b"\x01h\x01?") == (b"", ["help", "help"])
    assert keys.feed(b"\x01zq") == (b"q", [])  # an unknown key after C-a is dropped
    assert keys.feed(b"e\x01xf") == (b"e", ["quit"])  # nothing after a quit


class FakeUart:
    def __init__(self) -> None:
        self.received = bytearray()

    def receive(self, data: bytes) -> None:
        self.received += data


class FakeMachine:
    """What ConsoleInput uses of a Machine: the retired count, vtime, the slice hooks, the UART."""

    def __init__(self, now_ns: int) -> None:
        self.retired = 0
        self.slice_hooks: list[Callable[[object], None]] = []
        self.uart = FakeUart()
        self._now = now_ns

    def now(self) -> int:
        return self._now


def test_positions_count_the_points_that_share_a_retired_count() -> None:
    from sdeilab.console import ConsoleInput

    machine = FakeMachine(0)
    replay = [Chunk(5, 1, b"b"), Chunk(7, 0, b"c")]
    console = ConsoleInput(machine, replay=replay, pending=b"a")  # type: ignore[arg-type]
    for retired in (5, 5, 6, 7):
        machine.retired = retired
        console.at_slice(None)  # type: ignore[arg-type]
    assert console.deliveries == [Chunk(5, 0, b"a"), Chunk(5, 1, b"b"), Chunk(7, 0, b"c")]
    assert machine.uart.received == b"abc"


def test_pacing_waits_for_the_wall_clock_until_a_key_or_a_stop() -> None:
    """On a terminal an input point waits while virtual time is ahead of the wall clock; a key
    ends the wait and is given there; a stop request ends it too."""
    import threading

    from sdeilab.console import ConsoleInput, StdinReader

    read, write = os.pipe()
    try:
        reader = StdinReader(read, terminal=False, on_quit=lambda: None)
        reader.start()
        machine = FakeMachine(0)
        console = ConsoleInput(machine, reader=reader, pace=True)  # type: ignore[arg-type]
        machine._now = 30 * 10**9  # 30 s of virtual time at once: a long sleep jumped over
        threading.Timer(0.3, os.write, (write, b"k")).start()
        started = time.monotonic()
        console.at_slice(None)  # type: ignore[arg-type]
        assert 0.25 < time.monotonic() - started < 5
        assert machine.uart.received == b"k"
        stop = threading.Event()
        machine._now = 0
        stopping = ConsoleInput(machine, reader=reader, pace=True, stopped=stop.is_set)  # type: ignore[arg-type]
        machine._now = 30 * 10**9
        threading.Timer(0.3, stop.set).start()
        started = time.monotonic()
        stopping.at_slice(None)  # type: ignore[arg-type]
        assert 0.25 < time.monotonic() - started < 5
    finally:
        os.close(write)
        reader._thread.join(5)  # it reads the end of the pipe and ends
        os.close(read)


# --- the command line on bad input -----------------------------------------------------------------
def test_cli_input_file_missing(echo: Path, tmp_path: Path) -> None:
    result = run_cli("run", echo, "--input", tmp_path / "nope")
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert err.strip() == f"sdeilab: --input {tmp_path / 'nope'}: no such file"
    assert result.stdout == b""


def test_cli_input_file_malformed_says_which_line(echo: Path, tmp_path: Path) -> None:
    record = tmp_path / "rec"
    record.write_text(f'{HEADER}\n{{"retired": 5, "data": "a"}}\n{{"retired": 5, "data": \n')
    result = run_cli("run", echo, "--input", record)
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert f"--input {record}: line 3: not JSON" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert result.stdout == b""


@pytest.mark.parametrize("where", ["missing-dir", "same-as-input", "a-directory"])
def test_cli_record_input_that_cannot_be_written(echo: Path, tmp_path: Path, where: str) -> None:
    given = tmp_path / "given"
    given.write_bytes(b"x.")
    target = {"missing-dir": tmp_path / "no" / "rec", "same-as-input": given, "a-directory": tmp_path}[where]
    args: list[str | Path] = ["run", echo, "--record-input", target]
    if where == "same-as-input":
        args += ["--input", given]
    result = run_cli(*args)
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert "--record-input" in err and "Traceback" not in err
    assert given.read_bytes() == b"x."


# --- the echo guest: a pipe, a file, a deadlock that waits, replay ---------------------------------
def test_echo_guest_reads_a_pipe(echo: Path) -> None:
    result = subprocess.run(cli("run", echo), input=b"hello, uart.", capture_output=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == READY + b"HELLO, UART\necho: bye\n"


def test_eof_is_no_more_input_and_the_waiting_guest_deadlocks(echo: Path) -> None:
    result = subprocess.run(cli("run", echo), input=b"ab", capture_output=True, timeout=120, cwd=ROOT)
    assert result.returncode == 4, result.stderr
    assert result.stdout == READY + b"AB"
    assert "deadlock" in result.stderr.decode()


def test_plain_input_file(echo: Path, tmp_path: Path) -> None:
    given = tmp_path / "keys.txt"
    given.write_bytes(b"plain bytes.")
    result = subprocess.run(cli("run", echo, "--input", given), stdin=subprocess.DEVNULL, capture_output=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == READY + b"PLAIN BYTES\necho: bye\n"


def test_input_typed_late_is_recorded_and_replayed_byte_for_byte(echo: Path, tmp_path: Path) -> None:
    record, live_trace = tmp_path / "rec.jsonl", tmp_path / "live.jsonl"
    process = subprocess.Popen(cli("run", echo, "--record-input", record, "--trace", live_trace), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert process.stdin is not None and process.stdout is not None
    out = process.stdout.fileno()
    seen = bytearray()
    read_until(out, seen, READY)  # the guest waits (a deadlock that waits for input) before any is given
    time.sleep(0.3)
    for word in (b"one ", b"two ", b"three"):
        process.stdin.write(word)
        process.stdin.flush()
        read_until(out, seen, word.upper())
    process.stdin.write(b".")
    process.stdin.close()
    status, err = finish(process, out, seen)
    assert status == 0, err
    assert bytes(seen) == READY + b"ONE TWO THREE\necho: bye\n"
    chunks = parse_record(record.read_bytes())
    assert b"".join(c.data for c in chunks) == b"one two three."
    assert len(chunks) == 4  # each word given when it came: the guest waited for each
    assert [c.position for c in chunks] == sorted(c.position for c in chunks)

    def replay(n: int) -> tuple[bytes, bytes]:
        trace = tmp_path / f"replay{n}.jsonl"
        result = subprocess.run(cli("run", echo, "--input", record, "--trace", trace), stdin=subprocess.DEVNULL,
                                capture_output=True, timeout=120, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        return result.stdout, trace.read_bytes()

    first, second = replay(1), replay(2)
    assert first == second
    # The replay is the recorded run itself: the same output and the same trace, fact for fact.
    assert first == (bytes(seen), live_trace.read_bytes())


def test_replay_gives_input_at_the_recorded_count_not_when_the_guest_waits(echo: Path, tmp_path: Path) -> None:
    """A chunk recorded later than the guest's first wait is held back to its own position: the
    run deadlocks there rather than take it early (so a replay cannot drift)."""
    record = tmp_path / "late.jsonl"
    record.write_text(f'{HEADER}\n{{"retired": 10000000, "data": "x."}}\n')
    result = subprocess.run(cli("run", echo, "--input", record), stdin=subprocess.DEVNULL, capture_output=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 4, result.stderr
    assert result.stdout == READY


def spawn_on_pty(argv: list[str]) -> tuple[subprocess.Popen[bytes], int, int]:
    """The command with a new pseudo-terminal as its controlling terminal, standard input and
    output (standard error a pipe); returns (process, master, slave)."""
    master, slave = pty.openpty()

    def controlling_terminal() -> None:  # in the child: a session of its own, the pty its terminal
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=subprocess.PIPE, cwd=ROOT,
                               preexec_fn=controlling_terminal)
    return process, master, slave


def wait_raw(slave: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while termios.tcgetattr(slave)[3] & (termios.ICANON | termios.ECHO | termios.ISIG):
        assert time.monotonic() < deadline, "the terminal was never put in raw mode"
        time.sleep(0.05)


Script = Callable[[Callable[[bytes], None], Callable[[bytes], None], int], None]


def on_terminal(argv: list[str], script: Script) -> tuple[int, str, bytes, list[object], list[object]]:
    """Run ``argv`` on a pty; ``script(type, expect, pid)`` drives it. (status, stderr, output, modes
    before, modes after)."""
    process, master, slave = spawn_on_pty(argv)
    before = termios.tcgetattr(slave)
    seen = bytearray()
    try:
        wait_raw(slave)

        def typed(data: bytes) -> None:
            os.write(master, data)

        def expect(data: bytes) -> None:
            read_until(master, seen, data)

        script(typed, expect, process.pid)
        status, err = finish(process, master, seen)
        after = termios.tcgetattr(slave)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
        os.close(slave)
    return status, err, bytes(seen), before, after


def test_echo_guest_on_a_terminal_keys_and_modes_restored(echo: Path, tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"

    def script(typed: Callable[[bytes], None], expect: Callable[[bytes], None], pid: int) -> None:
        expect(READY.rstrip())  # the terminal's output processing (OPOST, ONLCR) makes its NL a CR NL
        typed(b"abc")
        expect(b"ABC")
        typed(CTRL_A + CTRL_A + b"z")  # a literal C-a, then z
        expect(b"\x01Z")
        typed(b"\x03")  # Ctrl-C goes to the guest in raw mode, as on QEMU -nographic
        expect(b"\x03")
        typed(CTRL_A + b"h")
        time.sleep(0.3)
        typed(CTRL_A + b"x")

    status, err, output, before, after = on_terminal(cli("run", echo, "--trace", trace), script)
    assert status == 130, err
    assert "C-a x    stop the run" in err  # the help
    assert "sdeilab: stopped by C-a x after" in err and "Traceback" not in err
    assert output.replace(b"\r\n", b"\n") == READY + b"ABC\x01Z\x03"
    assert after == before
    assert trace.stat().st_size > 0  # the trace is written whole on a user's stop


def test_sighup_on_a_terminal_restores_its_modes(echo: Path) -> None:
    def script(typed: Callable[[bytes], None], expect: Callable[[bytes], None], pid: int) -> None:
        expect(READY.rstrip())  # the terminal's output processing (OPOST, ONLCR) makes its NL a CR NL
        os.kill(pid, signal.SIGHUP)

    status, err, _, before, after = on_terminal(cli("run", echo), script)
    assert status == 128 + signal.SIGHUP, err
    assert "hung up (SIGHUP)" in err
    assert after == before


def test_input_file_on_a_terminal_leaves_the_terminal_alone(echo: Path, tmp_path: Path) -> None:
    """With --input the file is the input, then nothing: the terminal is not read nor put in raw mode."""
    given = tmp_path / "keys"
    given.write_bytes(b"ab")
    process, master, slave = spawn_on_pty(cli("run", echo, "--input", given))
    before = termios.tcgetattr(slave)
    seen = bytearray()
    try:
        read_until(master, seen, b"AB")
        assert termios.tcgetattr(slave) == before
        os.write(master, b"cd.")  # the line discipline holds it (no newline): nobody reads it anyway
        status, err = finish(process, master, seen)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
        os.close(slave)
    assert status == 4, err  # the guest waits for more, which cannot come
    assert b"CD" not in seen


# --- Linux: a shell on the console ----------------------------------------------------------------
SHELL_INIT = """#!/bin/busybox sh
# The console test's /init: an interactive shell on /dev/console (tests/test_console.py).
/bin/busybox mount -t proc proc /proc
echo sdeilab-console: up
exec /bin/busybox sh
"""
PROMPT = b"/ # "
COMMAND = b"echo hello-$((6*7))"
ANSWER = b"hello-42"
LINUX_ARGS = ["--cpus", "1", "--append", "console=ttyAMA0 panic=-1 quiet"]


@pytest.fixture(scope="module")
def shell(tmp_path_factory: pytest.TempPathFactory) -> list[str | Path]:
    """``--kernel IMAGE --initrd FILE ...`` of Debian's kernel with a busybox shell as init."""
    from sdeilab.linux import LinuxPackagesMissing, busybox, kernel_image, write_initramfs

    try:
        kernel = kernel_image()
        initrd = write_initramfs(tmp_path_factory.mktemp("shell") / "shell.cpio.gz", busybox(), SHELL_INIT)
    except LinuxPackagesMissing as error:
        missing = str(error)
    else:
        return ["--kernel", kernel, "--initrd", initrd, *LINUX_ARGS]
    pytest.fail(missing, pytrace=False)


@pytest.mark.linux
def test_linux_shell_reads_a_pipe_given_before_the_boot(shell: list[str | Path]) -> None:
    """All of it is in the pipe at once: it waits until Linux's PL011 driver listens."""
    result = subprocess.run(cli("run", *shell), input=COMMAND + b"; poweroff -f\n", capture_output=True,
                            timeout=150, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert ANSWER in result.stdout
    assert b"reboot: Power down" in result.stdout


@pytest.fixture(scope="module")
def recorded(shell: list[str | Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path, Path]:
    """A Linux run typed into through a pipe, each line after the shell has answered the last one,
    with --record-input and --trace: (its UART output, the record, the trace)."""
    folder = tmp_path_factory.mktemp("record")
    record, trace = folder / "rec.jsonl", folder / "live.jsonl"
    process = subprocess.Popen(cli("run", *shell, "--record-input", record, "--trace", trace), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert process.stdin is not None and process.stdout is not None
    out = process.stdout.fileno()
    seen = bytearray()
    try:
        read_until(out, seen, PROMPT, timeout=150)
        process.stdin.write(COMMAND + b"\n")
        process.stdin.flush()
        read_until(out, seen, ANSWER + b"\r\n")  # the guest's tty sends NL as CR NL (ONLCR)
        process.stdin.write(b"poweroff -f\n")
        process.stdin.close()
        status, err = finish(process, out, seen)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert status == 0, err
    return bytes(seen), record, trace


@pytest.mark.linux
def test_linux_shell_typed_into_through_a_pipe(recorded: tuple[bytes, Path, Path]) -> None:
    output, record, _ = recorded
    assert output.count(ANSWER) == 1 and b"reboot: Power down" in output
    chunks = parse_record(record.read_bytes())
    assert [c.data for c in chunks] == [COMMAND + b"\n", b"poweroff -f\n"]
    assert chunks[0].retired < chunks[1].retired


@pytest.mark.linux
def test_linux_replay_is_byte_for_byte(shell: list[str | Path], recorded: tuple[bytes, Path, Path],
                                       tmp_path: Path) -> None:
    output, record, live_trace = recorded
    runs = []
    for n in (1, 2):
        trace = tmp_path / f"replay{n}.jsonl"
        result = subprocess.run(cli("run", *shell, "--input", record, "--trace", trace), stdin=subprocess.DEVNULL,
                                capture_output=True, timeout=150, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        runs.append((result.stdout, trace.read_bytes()))
    assert runs[0] == runs[1]
    assert len(runs[0][1]) > 0
    # The replay is the recorded run itself: the same output and the same trace, fact for fact.
    assert runs[0] == (output, live_trace.read_bytes())


@pytest.mark.linux
def test_linux_shell_on_a_terminal(shell: list[str | Path]) -> None:
    def script(typed: Callable[[bytes], None], expect: Callable[[bytes], None], pid: int) -> None:
        expect(PROMPT)
        typed(COMMAND + b"\r")  # Enter on a terminal is CR; the guest's tty turns it into NL (ICRNL)
        expect(ANSWER + b"\r")  # the shell's echo of the line holds the question, not the answer
        expect(b"\n" + PROMPT)
        typed(CTRL_A + b"x")

    status, err, output, before, after = on_terminal(cli("run", *shell), script)
    assert status == 130, err
    assert "sdeilab: stopped by C-a x after" in err and "Traceback" not in err
    assert after == before
    assert ANSWER in output


def test_dashboard_terminal_types_into_the_uart(echo: Path) -> None:
    from sdeilab.widgets import Lab

    lab = Lab(echo, cpus=1, plots_enabled=False)
    try:
        stop = lab.run()
        assert stop is not None and stop.reason == "deadlock"  # the guest waits for input in WFI
        lab.uart_input.value = "hello"  # a line typed, Enter pressed
        assert lab.uart_input.value == ""  # sent, and the field is ready for the next line
        stop = lab.run()
        assert "echo: ready\nHELLO\n" in lab.uart_view.value, lab.uart_view.value
        # Typed input is history, as a host-raised event is: stepping back before it and running
        # on replays it; typing something else there instead starts another history.
        assert stop is not None
        lab.session.step_back(stop.executed + 1)
        assert lab.session.uart == READY
        lab.run()
        assert lab.session.uart == READY + b"HELLO\n"
        lab.session.step_back(stop.executed + 1)
        lab.uart_input.value = "other"
        lab.run()
        assert lab.session.uart == READY + b"OTHER\n"
    finally:
        lab.close()
