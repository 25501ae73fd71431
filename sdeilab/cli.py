"""The command line (DESIGN.md section 3): ``sdeilab run``, ``build``, ``lab``, ``dashboard``, ``notebooks``, ``hub``.

Standard output carries exactly the bytes the guest wrote to the UART; every diagnostic goes to
standard error. A user's or a guest's mistake gets one clear message and an exit status, never a
Python traceback: 0 SYSTEM_OFF, 2 bad usage or unloadable guest, 3 guest fault, 4 budget or
deadlock, 5 SYSTEM_RESET. The run itself can end in other ways, each with its status:

* 70 an internal error (a bug in sdeilab: a one-line message; ``SDEILAB_TRACEBACK=1`` shows the
  traceback), sysexits(3) EX_SOFTWARE;
* 74 the trace or the guest's output could not be written (a full disk, a closed standard
  output), sysexits(3) EX_IOERR; an earlier trace file at that path is left as it was;
* 130 and 143 interrupted by SIGINT (Ctrl-C) or SIGTERM, 128 + the signal as a shell reports it;
  the run stops at the end of the running slice and the trace of what ran is written whole. On a
  console (standard input a terminal, in raw mode: sdeilab.console) Ctrl-C goes to the guest and
  C-a x is the user's stop, with SIGINT's 130; a hang-up of that terminal is 129 (SIGHUP);
* 141 standard output is a pipe whose reader went away (``| head``): the run stops quietly, as
  a tool killed by SIGPIPE would, and 128 + SIGPIPE is what a shell reports for one.

Signals are only noted while the trace is written: the file is renamed into place first.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from sdeilab.machine.outcome import RunOutcome, StopReason

if TYPE_CHECKING:
    from typing import TextIO

    from sdeilab.console import Chunk, ConsoleInput
    from sdeilab.machine.machine import Machine
    from sdeilab.trace.export import TraceFile
    from sdeilab.trace.log import TraceLog

EXIT_USAGE = 2
EXIT_SOFTWARE = 70  # sysexits(3) EX_SOFTWARE: an internal error
EXIT_IOERR = 74  # sysexits(3) EX_IOERR: the trace or the guest's output could not be written
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # 141, what a shell reports for a tool SIGPIPE ended
MAX_QUANTUM = 10_000_000  # a slice ends at most this far on: Ctrl-C and the progress line wait for it
NO_TRACE_LIMIT = 100_000  # facts kept when no --trace asked for them: nothing reads them
# Facts a --trace run keeps in memory (about 140 bytes each). A Trace Event file is built in
# memory besides (about 500 bytes a fact while it is made) and Perfetto's UI loads a few million
# events at most; a .jsonl trace streams the facts past the limit to the file, so it loses nothing.
DEFAULT_TRACE_LIMIT = 1_000_000
PROGRESS_SECONDS = 1.0
# Jupyter's and Voila's own defaults; an explicit --port must be free (no silent move to another).
DEFAULT_PORTS = {"lab": 8888, "dashboard": 8866}
DEFAULT_MAX_INSTRUCTIONS = 1_000_000_000
DEFAULT_CULL_S = 120  # a dashboard kernel with no page connected and idle this long is ended
# The platforms of the runs this process made, kept to its end when it is the ``sdeilab`` command
# (``entry``): None when ``main`` is called in a longer-lived process, which frees them as usual.
_kept_to_exit: list[object] | None = None
CULL_INTERVAL_S = 30  # how often the culler looks
DEFAULT_KERNEL_MAX_INSTRUCTIONS = 20_000_000_000  # Linux to a shell and back: about 1e9 (docs/linux.md)
SOURCE_SUFFIXES = (".S", ".s", ".c")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2 too; keep its one-line style
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"sdeilab: error: {message}\n")


def _positive(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _memory(text: str) -> int:
    from sdeilab.machine.memmap import parse_ram_size

    try:
        return parse_ram_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _icount(text: str) -> int:
    """QEMU's ``-icount`` argument, its ``shift=N`` form only (or a bare N): the icount shift."""
    from sdeilab.machine.machine import MAX_ICOUNT_SHIFT

    value = text.removeprefix("shift=")
    if not value.isdigit() or int(value) > MAX_ICOUNT_SHIFT:
        raise argparse.ArgumentTypeError(f"expected shift=N with N from 0 to {MAX_ICOUNT_SHIFT} "
                                         f"(2^N ns of virtual time per instruction), not {text!r}")
    return int(value)


def _port(text: str) -> int:
    value = _positive(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r}")
    return value


def _gdb_port(text: str) -> int:
    """A TCP port, or 0 for any free one."""
    return 0 if text.strip() == "0" else _port(text)


def build_parser() -> argparse.ArgumentParser:
    from sdeilab.firmware.profiles import PROFILES
    from sdeilab.firmware.sdei.quirks import Quirks
    from sdeilab.lab.platform import DEFAULT_BOOTARGS

    parser = _Parser(prog="sdeilab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run a guest (ELF, or .S/.c source built first) or boot a Linux Image")
    run.add_argument("guest", type=Path, nargs="?", help="an AArch64 ELF, or a .S/.c source (not with --kernel)")
    run.add_argument("--kernel", type=Path, metavar="IMAGE",
                     help="boot an arm64 Linux Image instead (arm64 boot protocol, with a device tree "
                          "generated for the machine and profile)")
    run.add_argument("--initrd", type=Path, metavar="FILE",
                     help="with --kernel: an initramfs (e.g. a gzipped newc cpio)")
    run.add_argument("--append", metavar="ARGS", help="with --kernel: the kernel command line "
                                                      f"(default: {DEFAULT_BOOTARGS!r})")
    run.add_argument("--cpus", type=_positive, default=1, help="number of vCPUs (default 1)")
    run.add_argument("--memory", "-m", type=_memory, default=None, metavar="SIZE",
                     help="RAM size in QEMU's -m syntax: MiB as a plain number (512) or with a suffix "
                          "k, M, G, T (128M, 1G, 1.5G); rounded up to 8 KiB; at most 255G (default 128M, "
                          "as QEMU virt). The device tree's memory node says the same")
    run.add_argument("--profile", choices=sorted(PROFILES), default="virt")
    run.add_argument("--max-instructions", type=_positive, default=None,
                     help=f"instruction budget over all CPUs (default {DEFAULT_MAX_INSTRUCTIONS:,}; "
                          f"{DEFAULT_KERNEL_MAX_INSTRUCTIONS:,} with --kernel, none with --kernel and a "
                          "terminal on standard input)")
    run.add_argument("--trace", type=Path, help="write the trace: .json (Trace Event, for Perfetto) or .jsonl")
    run.add_argument("--trace-limit", type=_positive, default=None, metavar="N",
                     help=f"facts the trace keeps in memory (default {DEFAULT_TRACE_LIMIT:,}); a .json trace "
                          "holds the first N and says it was cut, a .jsonl trace streams the rest to the file")
    run.add_argument("--quantum", type=_positive, default=None,
                     help=f"scheduling quantum in instructions (at most {MAX_QUANTUM:,})")
    run.add_argument("--icount", type=_icount, default=0, metavar="shift=N",
                     help="each instruction takes 2^N ns of virtual time, as QEMU's -icount shift=N "
                          "(default 0: 1 ns). The counter keeps its 62.5 MHz, so a guest that waits on it "
                          "retires 2^N times fewer instructions for the same wait")
    run.add_argument("--gdb", type=_gdb_port, default=None, metavar="PORT",
                     help="wait for gdb (target remote :PORT) on 127.0.0.1 and let it drive the guest, reverse "
                          "execution included (docs/debugging.md); 0 picks a free port, printed on stderr")
    run.add_argument("--quirk", action="append", default=[], choices=Quirks.names(), metavar="NAME",
                     help=f"switch on an SDEI quirk (repeatable): {', '.join(Quirks.names())}")
    run.add_argument("--input", type=Path, metavar="FILE",
                     help="give the UART this input instead of standard input: a record made by --record-input "
                          "(each chunk at the instruction count it was recorded at) or a plain byte stream "
                          "(given when the guest first listens); standard input is then not read")
    run.add_argument("--record-input", type=Path, metavar="FILE",
                     help="write each delivery of input to the UART to FILE (JSON lines: the retired "
                          "instruction count and the bytes), for --input to replay")
    build = sub.add_parser("build", help="build a guest from .S/.c sources with the guest toolchain")
    build.add_argument("sources", type=Path, nargs="+")
    build.add_argument("-o", "--output", type=Path)
    lab = sub.add_parser("lab", help="open JupyterLab on the notebooks (loopback only, token kept)")
    lab.add_argument("notebook_dir", type=Path, nargs="?")
    dashboard = sub.add_parser("dashboard", help="serve one notebook as a Voila app, e.g. for a projector "
                                                 "(loopback only, with a token)")
    dashboard.add_argument("notebook", type=Path, help="a .ipynb file, or the name of one in notebooks/; or a "
                                                       "folder: each of its notebooks an app, at "
                                                       "/voila/render/NAME.ipynb (the folder's list at /)")
    dashboard.add_argument("--cull-after", type=_positive, default=DEFAULT_CULL_S, metavar="SECONDS",
                           help="end a kernel whose page is gone after it has been idle this long "
                                f"(default: {DEFAULT_CULL_S})")
    notebooks = sub.add_parser("notebooks", help="copy the curriculum's notebooks into a working folder, or "
                                                 "restore pristine copies (--reset)")
    notebooks.add_argument("dest", type=Path, help="the working folder (made if missing)")
    notebooks.add_argument("names", nargs="*", metavar="NOTEBOOK", help="only these notebooks (e.g. 00_tour)")
    notebooks.add_argument("--reset", nargs="*", metavar="NOTEBOOK",
                           help="overwrite the curriculum's notebooks (all, or these) with pristine copies; "
                                "the folder's other files are kept")
    hub = sub.add_parser("hub", help="serve the lab to a room with JupyterHub (deploy/jupyterhub_config.py, "
                                     "docs/workshop.md)")
    hub.add_argument("--data", type=Path, default=Path("sdeilab-hub"),
                     help="the hub's folder: its database, and users/NAME, each student's folder "
                          "(default: ./sdeilab-hub)")
    hub.add_argument("--ip", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    hub.add_argument("--port", type=_port, default=8000, help="port (default: 8000)")
    hub.add_argument("--spawner", choices=("simple", "local"), default="simple",
                     help="simple: every student as this system user, in DATA/users/NAME (default); "
                          "local: each student a system account of that name (run as root)")
    hub.add_argument("--cull-after", type=_positive, default=3600, metavar="SECONDS",
                     help="stop a student's server idle this long (default: 3600)")
    hub.add_argument("--mem-limit", metavar="SIZE", help="per-student memory limit, e.g. 2G (passed to the "
                                                         "spawner; the local spawners do not enforce it)")
    hub.add_argument("--cpu-limit", type=float, metavar="CPUS", help="per-student CPU limit (likewise)")
    for server in (lab, dashboard):
        default = DEFAULT_PORTS[server.prog.split()[-1]]
        server.add_argument("--port", type=_port, help=f"port on 127.0.0.1 (default: {default} or a free one near it)")
        server.add_argument("--no-browser", action="store_true", help="print the address instead of opening a browser")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "build":
            return _build(args)
        if args.command == "dashboard":
            return _dashboard(args)
        if args.command == "notebooks":
            return _notebooks(args)
        if args.command == "hub":
            return _hub(args)
        return _lab(args)
    except KeyboardInterrupt:
        print("sdeilab: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except MemoryError:
        print("sdeilab: out of memory (a smaller --trace-limit keeps less of the trace)", file=sys.stderr)
        return EXIT_SOFTWARE
    except Exception as error:  # the last guard: a bug gets one line and its own status, not a traceback
        if os.environ.get("SDEILAB_TRACEBACK"):
            raise
        text = " ".join(str(error).split()) or "(no message)"
        print(f"sdeilab: internal error: {type(error).__name__}: {text} "
              "(a bug in sdeilab; SDEILAB_TRACEBACK=1 shows where)", file=sys.stderr)
        return EXIT_SOFTWARE


def _fail(message: str, status: int = EXIT_USAGE) -> int:
    print(f"sdeilab: {message}", file=sys.stderr)
    return status


def _source_problem(path: Path) -> str | None:
    """Why ``path`` cannot be built (missing, not a regular file, a name too long), or None.

    The toolchain would wait forever on a FIFO and read a device without end: the check is the
    loader's own (open without blocking, then the file type of the open descriptor)."""
    from sdeilab.machine.loader import GuestLoadError, open_input

    try:
        stream, _ = open_input(path, "source file")
    except GuestLoadError as error:
        return str(error)
    stream.close()
    return None


def _is_regular_file(path: Path) -> bool:
    """``path.is_file()`` that answers False for a name the system refuses (ENAMETOOLONG) too."""
    import stat

    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):  # ValueError: a NUL in the name
        return False


def _build(args: argparse.Namespace) -> int:
    from sdeilab.toolchain import BuildError, build

    for source in args.sources:
        problem = _source_problem(source)
        if problem is not None:
            return _fail(problem)
    output = args.output or args.sources[0].with_suffix(".elf")
    try:
        build(args.sources, output)
    except BuildError as error:
        return _fail(f"build failed:\n{error}")
    print(f"sdeilab: built {output}", file=sys.stderr)
    return 0


def _run(args: argparse.Namespace) -> int:
    from sdeilab.console import HEADER, InputFileError, load_input, terminal_in_foreground
    from sdeilab.firmware.devicetree import bootargs_problem
    from sdeilab.machine.memmap import MAX_CPUS
    from sdeilab.trace.export import TraceFile, TraceFileError

    if (args.guest is None) == (args.kernel is None):
        return _fail("run takes either a GUEST or --kernel IMAGE" if args.guest is None
                     else f"run takes either a GUEST or --kernel IMAGE, not both ({args.guest} and {args.kernel})")
    if args.kernel is None and (args.initrd is not None or args.append is not None):
        return _fail("--initrd and --append go with --kernel")
    if args.append is not None:
        problem = bootargs_problem(args.append)
        if problem is not None:
            return _fail(f"--append: the kernel command line holds {problem}")
    if args.trace_limit is not None and args.trace is None:
        return _fail("--trace-limit goes with --trace")
    given: list[Chunk] | bytes | None = None
    if args.input is not None:
        try:
            given = load_input(args.input)
        except InputFileError as error:
            return _fail(str(error))
        if args.record_input is not None and _same_file(args.input, args.record_input):
            return _fail(f"--record-input {args.record_input} is the --input file: it would be overwritten")
    # A terminal on standard input is a console (raw mode, the C-a keys); with --input it is not read.
    terminal = args.input is None and terminal_in_foreground(0)
    if args.max_instructions is None and not (terminal and args.kernel is not None):
        # A kernel someone types into runs until it powers off or C-a x: no budget unless asked for.
        args.max_instructions = DEFAULT_MAX_INSTRUCTIONS if args.kernel is None else DEFAULT_KERNEL_MAX_INSTRUCTIONS
    if args.cpus > MAX_CPUS:
        return _fail(f"--cpus {args.cpus}: the virt board has room for at most {MAX_CPUS} CPUs")
    if args.quantum is not None and args.quantum > MAX_QUANTUM:
        return _fail(f"--quantum {args.quantum}: at most {MAX_QUANTUM:,} instructions (Ctrl-C and the "
                     "progress line are taken between slices)")
    if args.gdb is not None:
        return _serve_gdb(args)
    stop = _Stop()
    with stop.installed():  # from here on a signal is noted, never raised in the middle of something
        # The trace's folder is checked, and its temporary file made, before anything runs: a run
        # whose trace could not be saved is refused now, not after it has run for an hour.
        trace_file = None
        if args.trace is not None:
            try:
                trace_file = TraceFile(args.trace)
            except TraceFileError as error:
                return _fail(f"--trace {error}")
        record = None
        if args.record_input is not None:
            # Written as the run goes (a line per delivery, flushed): a run that is killed keeps
            # what it was given up to then.
            try:
                record = open(args.record_input, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
                record.write(HEADER + "\n")
                record.flush()
            except OSError as error:
                if trace_file is not None:
                    trace_file.discard()
                return _fail(f"--record-input {args.record_input}: cannot write it ({error.strerror or error})")
        try:
            status = _run_with(args, trace_file, stop, given, record, terminal)
        finally:
            if trace_file is not None:
                trace_file.discard()
            if record is not None:
                with contextlib.suppress(OSError):
                    record.close()
    if stop.signal is not None and status != 128 + stop.signal:  # it came before the run began
        print(f"sdeilab: {stop.describe()} before the run began", file=sys.stderr)
        return 128 + stop.signal
    return status


def _serve_gdb(args: argparse.Namespace) -> int:
    """``run --gdb PORT``: the guest in a debugger session that one gdb client drives until it
    detaches, kills or goes away (sdeilab.lab.gdb_server). The guest's console goes to
    standard output as it first appears (a step back replays it without printing it twice)."""
    from sdeilab.lab.gdb_server import GdbServer
    from sdeilab.lab.platform import DEFAULT_BOOTARGS, KernelBoot
    from sdeilab.lab.session import Session
    from sdeilab.machine.loader import GuestLoadError
    from sdeilab.machine.machine import RamSizeError
    from sdeilab.machine.memmap import DEFAULT_RAM_SIZE

    if args.trace is not None:
        return _fail("--trace does not go with --gdb: in gdb, `monitor trace last N` shows the trace")
    if args.input is not None or args.record_input is not None:
        return _fail("--input and --record-input do not go with --gdb: gdb drives the guest, not a console")
    with tempfile.TemporaryDirectory(prefix="sdeilab-") as scratch:
        guest: Path | KernelBoot
        if args.kernel is not None:
            guest = KernelBoot(args.kernel, args.initrd, DEFAULT_BOOTARGS if args.append is None else args.append)
        elif args.guest.suffix in SOURCE_SUFFIXES and _is_regular_file(args.guest):
            from sdeilab.toolchain import BuildError, build

            try:
                guest = build([args.guest], Path(scratch) / (args.guest.stem + ".elf"))
            except BuildError as error:
                return _fail(f"cannot build {args.guest}:\n{error}")
        else:
            guest = args.guest
        kwargs = {"quantum": args.quantum} if args.quantum else {}
        try:
            session = Session(guest, cpus=args.cpus, profile=args.profile, quirks=args.quirk,
                              memory=args.memory or DEFAULT_RAM_SIZE, **kwargs)
        except (GuestLoadError, RamSizeError, ValueError, OSError) as error:
            return _fail(str(error))
        if _kept_to_exit is not None:
            _kept_to_exit.append(session)  # ``entry``: the engines stay open until the process ends
        try:
            server = GdbServer(session, args.gdb, once=True)
        except OSError as error:
            return _fail(f"--gdb {args.gdb}: cannot listen on 127.0.0.1:{args.gdb}: {error.strerror or error}")
        printed = 0

        def console() -> None:  # what the guest wrote past what was shown already
            nonlocal printed
            uart = session.uart
            if len(uart) > printed:
                sys.stdout.buffer.write(uart[printed:])
                sys.stdout.flush()
                printed = len(uart)

        server.on_output = console
        print(f"sdeilab: waiting for gdb on 127.0.0.1:{server.port} (in gdb-multiarch: target remote "
              f":{server.port})", file=sys.stderr, flush=True)
        with server:
            server.serve()
        console()
        stop = session.last_stop
        print(f"sdeilab: gdb is gone; the guest stands at {stop.retired:,} instructions ({stop.reason}: "
              f"{stop.detail})", file=sys.stderr)
    return 0


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def _stdin_open() -> bool:
    try:
        os.fstat(0)
    except OSError:  # started with `<&-`
        return False
    return True


def _console_input(args: argparse.Namespace, machine: Machine, stop: _Stop, given: list[Chunk] | bytes | None,
                   record: TextIO | None, terminal: bool, stack: contextlib.ExitStack) -> ConsoleInput:
    """Standard input (or the --input file) to the UART, at input points only (sdeilab.console)."""
    from sdeilab.console import ConsoleInput, StdinReader, raw_terminal, uart_listens

    reader = None
    if given is None and _stdin_open():
        if terminal:
            import termios  # POSIX only, as a terminal console is (sdeilab.console.terminal_in_foreground)

            try:
                stack.enter_context(raw_terminal(0))
            except (termios.error, OSError) as error:  # a terminal that refuses its modes: read it as it is
                print(f"sdeilab: standard input is a terminal whose mode cannot be set ({error}): "
                      "read as it is, without the C-a keys", file=sys.stderr)
                terminal = False
            else:
                # A hang-up ends the run through the normal path too, so the terminal's modes are put back.
                stack.enter_context(stop.installed((signal.SIGHUP,)))
        reader = StdinReader(0, terminal=terminal, on_quit=stop.quit_key)
        reader.start()
    return ConsoleInput(machine, replay=given if isinstance(given, list) else None,
                        pending=given if isinstance(given, bytes) else b"", reader=reader,
                        listens=uart_listens(machine) if args.kernel is not None else None, record=record,
                        pace=terminal and reader is not None, stopped=lambda: stop.signal is not None)


def _run_with(args: argparse.Namespace, trace_file: TraceFile | None, stop: _Stop, given: list[Chunk] | bytes | None,
              record: TextIO | None, terminal: bool) -> int:
    from sdeilab.firmware.sdei.quirks import Quirks
    from sdeilab.lab.platform import DEFAULT_BOOTARGS, make_platform
    from sdeilab.machine.loader import GuestLoadError, load_elf
    from sdeilab.machine.machine import RamSizeError
    from sdeilab.machine.memmap import DEFAULT_RAM_SIZE, VIRT_MEMMAP, MemMapEntry, Region
    from sdeilab.trace.log import TraceLog

    with tempfile.TemporaryDirectory(prefix="sdeilab-") as scratch:
        guest: Path = args.guest or args.kernel
        if args.kernel is None and guest.suffix in SOURCE_SUFFIXES and _is_regular_file(guest):
            from sdeilab.toolchain import BuildError, build

            try:
                guest = build([guest], Path(scratch) / (guest.stem + ".elf"))
            except BuildError as error:
                return _fail(f"cannot build {args.guest}:\n{error}")
        image = None
        if args.kernel is None:
            # Read and checked before any vCPU exists: a file that is no guest costs no emulator.
            try:
                image = load_elf(guest, MemMapEntry(VIRT_MEMMAP[Region.RAM].base, args.memory or DEFAULT_RAM_SIZE))
            except GuestLoadError as error:
                return _fail(str(error))
        trace = TraceLog(NO_TRACE_LIMIT if trace_file is None else args.trace_limit or DEFAULT_TRACE_LIMIT)
        if trace_file is not None:
            trace_file.stream_overflow(trace)  # .jsonl: the facts past the limit go to the file too
        kwargs = {"quantum": args.quantum} if args.quantum else {}
        quirks = Quirks.from_names(args.quirk)
        try:
            platform = make_platform(args.cpus, args.profile, quirks=quirks, trace=trace,
                                     memory=args.memory or DEFAULT_RAM_SIZE, icount_shift=args.icount, **kwargs)
        except RamSizeError as error:
            return _fail(f"--memory: {error}")
        if _kept_to_exit is not None:
            _kept_to_exit.append(platform)
        try:
            if image is None:
                bootargs = DEFAULT_BOOTARGS if args.append is None else args.append
                platform.load_kernel(args.kernel, args.initrd, bootargs)
            else:
                platform.machine.load_image(image)
        except GuestLoadError as error:
            return _fail(str(error))
        machine = platform.machine
        console = _Console(machine)
        machine.uart_sinks.append(console.write)
        stop.machine = machine
        stack = contextlib.ExitStack()
        # The progress line would draw over what is typed on a console: a terminal console has none.
        with stack, _Progress(machine, enabled=sys.stderr.isatty() and not terminal) as progress:
            feeder = _console_input(args, machine, stop, given, record, terminal, stack)
            # What the guest wrote goes out at each slice boundary, so a prompt shows before it is answered.
            machine.slice_hooks.append(console.flush_written)
            if stop.signal is not None:  # it came while the guest was loading: the (empty) trace is still whole
                if trace_file is not None:
                    try:
                        trace_file.commit(trace)
                    except OSError as error:
                        print(f"sdeilab: cannot write the trace {args.trace}: {error.strerror or error}",
                              file=sys.stderr)
                return _fail(f"{stop.describe()} before the run began", 128 + stop.signal)
            budget: int | None = args.max_instructions
            outcome = machine.run(budget)
            # A pause is a stop between slices (Machine.request_pause): for the progress line it
            # is resumed at once, the budget counted from the start of the run. A deadlock is an
            # input point: input given there may wake the guest (sdeilab.console).
            while stop.signal is None and console.error is None:
                if outcome.reason is StopReason.PAUSED:
                    if progress.enabled:
                        console.flush()  # what the guest wrote comes before the line that follows it
                        if console.error is not None:
                            break
                    progress.show()
                elif outcome.reason is StopReason.DEADLOCK:
                    console.flush()
                    if not feeder.at_deadlock():
                        break
                else:
                    break
                outcome = machine.run(None if budget is None else max(budget - machine.retired, 0))
            progress.clear()
            console.flush()
            trace_error = None
            if trace_file is not None:
                try:
                    trace_file.commit(trace)  # signals are only noted meanwhile (_Stop)
                except OSError as error:
                    trace_error = error
    return _report(outcome, stop, console, trace_error, args, trace, feeder.record_error)


def _report(outcome: RunOutcome, stop: _Stop, console: _Console, trace_error: OSError | None,
            args: argparse.Namespace, trace: TraceLog, record_error: OSError | None = None) -> int:
    """The messages and the exit status (module docstring): a signal first, then output that could
    not be written, then the trace, then how the guest's run ended. The line that explains the
    status comes last."""
    trace_message = None
    if trace_error is not None:
        trace_message = (f"sdeilab: cannot write the trace {args.trace}: {trace_error.strerror or trace_error} "
                         "(an earlier file there is unchanged)")
    elif record_error is not None:
        trace_message = (f"sdeilab: cannot write the input record {args.record_input}: "
                         f"{record_error.strerror or record_error} (it holds the deliveries before that)")
    elif args.trace is not None and trace.dropped and trace.overflow is None:
        seq, vtime = trace.dropped_at or (0, 0)
        print(f"sdeilab: the trace holds the first {len(trace):,} facts only ({trace.dropped:,} more from "
              f"seq {seq}, vtime {vtime} ns, were not kept); --trace-limit N raises the limit, "
              "a .jsonl trace keeps them all", file=sys.stderr)
    if stop.signal is not None or console.error is not None:
        if trace_message is not None:
            print(trace_message, file=sys.stderr)
        if stop.signal is not None:
            print(f"sdeilab: {stop.describe()} after {outcome.instructions:,} instructions", file=sys.stderr)
            return 128 + stop.signal
        if isinstance(console.error, BrokenPipeError):
            return EXIT_BROKEN_PIPE  # quietly, as `yes | head -1` ends
        print(f"sdeilab: cannot write the guest's output: {console.describe()}", file=sys.stderr)
        return EXIT_IOERR
    if outcome.fault is not None:
        print(outcome.fault.format(), file=sys.stderr)
    elif outcome.exit_status != 0:
        print(f"sdeilab: {outcome.reason.value}: {outcome.detail}", file=sys.stderr)
    if trace_message is not None:
        print(trace_message, file=sys.stderr)
        return EXIT_IOERR
    return outcome.exit_status


class _Console:
    """The guest's UART bytes to standard output. A write that fails (a closed pipe, a full disk,
    a closed descriptor) is kept, not raised inside the engine's hook, and the run is stopped."""

    def __init__(self, machine: Machine) -> None:
        self._machine = machine
        stdout = sys.stdout
        self._out = stdout.buffer if stdout is not None else None  # None: started with `>&-`
        self.error: OSError | None = None
        self._written = False

    def write(self, byte: int) -> None:
        if self.error is not None:
            return
        out = self._out
        try:
            if out is None:
                raise OSError(errno.EBADF, "standard output is closed")
            out.write(bytes((byte,)))
            self._written = True
        except (OSError, ValueError) as error:  # ValueError: the stream was closed
            self._failed(error)

    def flush_written(self, vcpu: object = None) -> None:
        """A slice hook: flush if the guest wrote since the last flush."""
        if self._written:
            self.flush()

    def flush(self) -> None:
        self._written = False
        if self.error is None and self._out is not None:
            try:
                self._out.flush()
            except (OSError, ValueError) as error:
                self._failed(error)
        if isinstance(self.error, BrokenPipeError):
            # What is left in the buffer cannot go anywhere, and the interpreter would try again
            # at exit and print a warning: point descriptor 1 at /dev/null (Python's own advice
            # for SIGPIPE, "Note on SIGPIPE" in the signal module's documentation).
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.close(devnull)

    def describe(self) -> str:
        error = self.error
        return (error.strerror or str(error)) if isinstance(error, OSError) else "standard output is closed"

    def _failed(self, error: Exception) -> None:
        self.error = error if isinstance(error, OSError) else OSError(errno.EBADF, "standard output is closed")
        self._machine.request_pause("the guest's output cannot be written")


class _Stop:
    """SIGINT and SIGTERM during a run: note the signal and ask the machine to stop at the end of the
    running slice (Machine.request_pause: only a flag is set, so no firmware call or device access
    is left half done, and the trace stays whole). A second signal is noted too; the trace file
    is still completed and renamed before the process exits with 128 + the first signal."""

    def __init__(self) -> None:
        self.machine: Machine | None = None  # set once there is one to stop
        self.signal: int | None = None
        self.key: str | None = None  # the console's C-a x: a user's stop, reported as SIGINT's (130)

    def quit_key(self) -> None:
        """C-a x on a console (from the reader thread): what Ctrl-C is outside raw mode."""
        if self.signal is None:
            self.signal = signal.SIGINT
            self.key = "C-a x"
        machine = self.machine
        if machine is not None:
            machine.request_pause("stopped by C-a x")

    def _handler(self, signum: int, frame: object) -> None:
        if self.signal is None:
            self.signal = signum
        machine = self.machine
        if machine is not None:
            machine.request_pause(f"stopped by {signal.Signals(signum).name}")

    def describe(self) -> str:
        assert self.signal is not None
        if self.key is not None:
            return f"stopped by {self.key}"
        name = signal.Signals(self.signal).name
        verbs: dict[int, str] = {signal.SIGINT: "interrupted", signal.SIGHUP: "hung up"}
        verb = verbs.get(self.signal, "terminated")
        return f"{verb} ({name})"

    @contextlib.contextmanager
    def installed(self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
        previous = {}
        for sig in signals:
            # A signal the parent set to be ignored stays ignored (a shell does that for `cmd &`
            # in a script, nohup for SIGHUP): as Python itself leaves an ignored SIGINT alone.
            if signal.getsignal(sig) is not signal.SIG_IGN:
                previous[sig] = signal.signal(sig, self._handler)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class _Progress:
    """About once a second, on a terminal only, one line on standard error: instructions retired,
    virtual time and speed. A helper thread asks the machine to pause (a flag, read between
    slices), the line is printed and the run resumed, so an instruction costs nothing more."""

    def __init__(self, machine: Machine, *, enabled: bool) -> None:
        self._machine = machine
        self.enabled = enabled
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._last = (time.monotonic(), 0)
        self._shown = False

    def __enter__(self) -> _Progress:
        if self.enabled:
            self._thread = threading.Thread(target=self._tick, name="sdeilab-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        self.clear()

    def _tick(self) -> None:
        while not self._done.wait(PROGRESS_SECONDS):
            self._machine.request_pause("progress")

    def show(self) -> None:
        if not self.enabled:
            return
        now, retired = time.monotonic(), self._machine.retired
        then, before = self._last
        self._last = (now, retired)
        mips = (retired - before) / max(now - then, 1e-9) / 1e6
        sys.stderr.write(f"\rsdeilab: {retired:,} instructions, vtime {self._machine.now() / 1e9:.3f} s, "
                         f"{mips:.1f} MIPS\x1b[K")
        sys.stderr.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self._shown = False


def _notebooks_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "notebooks"


def _lab(args: argparse.Namespace) -> int:
    notebooks = args.notebook_dir or _notebooks_dir()
    if not notebooks.is_dir():
        return _fail(f"no notebook folder at {notebooks}")
    if shutil.which("jupyter") is None and not _has_module("jupyterlab"):
        return _fail("JupyterLab is not installed: run the README's set-up command (pip install -e '.[lab]')")
    # Loopback only, and the server keeps its token (a random one, or JUPYTER_TOKEN when set; a configured
    # password works too): authentication is never switched off here. Only tests pass a known token.
    command = [sys.executable, "-m", "jupyterlab", "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={notebooks}"]
    if args.port is not None:
        command += [f"--ServerApp.port={args.port}", "--ServerApp.port_retries=0"]
    if args.no_browser:
        command.append("--ServerApp.open_browser=False")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # Jupyter refuses root without it (containers, CI machines)
    return _serve(command)


def _dashboard(args: argparse.Namespace) -> int:
    notebook = args.notebook.resolve() if args.notebook.is_dir() else _find_notebook(args.notebook)
    if notebook is None:
        return _fail(f"no such notebook: {args.notebook} (give a .ipynb file, the name of one in notebooks/, "
                     "or a folder of them)")
    if not _has_module("voila"):
        return _fail("Voila is not installed: run the README's set-up command (pip install -e '.[lab]')")
    port = args.port or _free_port(DEFAULT_PORTS["dashboard"])
    if port is None:
        return _fail(f"no free port on 127.0.0.1 from {DEFAULT_PORTS['dashboard']}")
    # Voila alone serves without any authentication unless told otherwise, and the browser it opens
    # gets no token; so the token is chosen here (JUPYTER_TOKEN when set, tests use that), handed to
    # Voila through the environment (never on the command line, where `ps` shows it) and put into
    # the address this command opens or prints.
    token = os.environ.get("JUPYTER_TOKEN") or secrets.token_urlsafe(24)
    env = {**os.environ, "JUPYTER_TOKEN": token}
    # Every page load starts a kernel (about 300 MB). A page that closes asks Voila to shut its kernel
    # down (Voila's page does so on "beforeunload"); a page that never could (a crashed browser, a
    # laptop that slept) leaves a kernel with no connection, which the culler ends once it has been
    # idle for --cull-after seconds. A kernel with a page still connected is never culled
    # (cull_connected stays False), however long the speaker talks.
    cull = args.cull_after
    command = [sys.executable, "-m", "sdeilab.voila_app", str(notebook), "--Voila.ip=127.0.0.1", f"--port={port}",
               "--Voila.port_retries=0", "--token", "--no-browser",
               f"--MappingKernelManager.cull_idle_timeout={cull}",
               f"--MappingKernelManager.cull_interval={max(1, min(CULL_INTERVAL_S, cull))}",
               "--MappingKernelManager.cull_connected=False", "--MappingKernelManager.cull_busy=False",
               # A speaker debugging a guest on the projector wants the message, not "there was an error".
               "--show_tracebacks=True",
               # jupytext's front end edits paired notebooks: nothing to do in an app, and it fails to
               # load in Voila's page (an error in the browser console on every load).
               "--VoilaConfiguration.extension_denylist=jupyterlab-jupytext"]
    url = f"http://127.0.0.1:{port}/?token={token}"

    def announce(process: subprocess.Popen[bytes]) -> None:
        if _wait_for_port(port, process):
            what = (f"dashboards for the notebooks in {notebook}" if notebook.is_dir()
                    else f"dashboard for {notebook.name}")
            print(f"sdeilab: {what} at {url}", file=sys.stderr)
            if not args.no_browser:
                import webbrowser

                webbrowser.open(url)

    return _serve(command, env, announce)


def _notebooks(args: argparse.Namespace) -> int:
    from sdeilab.curriculum import CurriculumError, copy_curriculum

    try:
        report = copy_curriculum(args.dest, reset=args.reset is not None, only=args.names + (args.reset or []))
    except CurriculumError as error:
        return _fail(str(error))
    verb = "restored" if args.reset is not None else "copied"
    print(f"sdeilab: {verb} {len(report.copied)} notebook(s) into {args.dest}"
          + (f"; kept {len(report.kept)} already there (--reset restores them)" if report.kept else ""),
          file=sys.stderr)
    return 0


def _hub(args: argparse.Namespace) -> int:
    from sdeilab.hub import HubError, plan

    try:
        launch = plan(data=args.data, ip=args.ip, port=args.port, spawner=args.spawner, cull_after=args.cull_after,
                      mem_limit=args.mem_limit, cpu_limit=args.cpu_limit)
    except HubError as error:
        return _fail(str(error))
    if args.ip != "127.0.0.1":
        print(f"sdeilab: listening on {args.ip}: the shared password is all that keeps others out, over plain "
              "HTTP (docs/workshop.md)", file=sys.stderr)

    def announce(process: subprocess.Popen[bytes]) -> None:
        if _wait_for_port(args.port, process, timeout=120, host=args.ip):
            password = f"password {launch.password}" if launch.made_up_password else "SDEILAB_HUB_PASSWORD"
            print(f"sdeilab: hub at {launch.url} (any student name, {password}; students' folders in "
                  f"{launch.data / 'users'})", file=sys.stderr)

    # The hub's own files (and anything a library drops in the working folder) go to --data.
    return _serve(launch.command, launch.env, announce, cwd=launch.data)


def _serve(command: list[str], env: dict[str, str] | None = None,
           started: Callable[[subprocess.Popen[bytes]], None] | None = None, cwd: Path | None = None) -> int:
    """Run a Jupyter server in the foreground until it exits; Ctrl-C or SIGTERM here stops it too.

    The server gets SIGTERM, on which JupyterLab and Voila shut their kernels down; a SIGKILL (what
    ``subprocess.call`` sends when interrupted) would leave the kernels running.
    """
    process = subprocess.Popen(command, env=env, cwd=cwd)
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        if started is not None:
            started(process)
        return process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _find_notebook(path: Path) -> Path | None:
    candidates = [path, path.with_suffix(".ipynb")]
    if not path.is_absolute() and len(path.parts) == 1:
        candidates += [_notebooks_dir() / path, _notebooks_dir() / path.with_suffix(".ipynb")]
    return next((c.resolve() for c in candidates if c.suffix == ".ipynb" and c.is_file()), None)


def _free_port(first: int, tries: int = 50) -> int | None:
    for port in range(first, first + tries):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return None


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0,
                   host: str = "127.0.0.1") -> bool:
    """True once something accepts connections on host:port; False if the server exited first."""
    import time

    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection((host if host not in ("0.0.0.0", "::") else "127.0.0.1", port),
                                     timeout=1).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def entry() -> NoReturn:
    """The ``sdeilab`` command: ``main``, then the process ends with its status, its work done.

    The interpreter is not finalized: Unicorn closes each engine from a ``weakref.finalize`` exit
    handler while the interpreter tears down the objects the engines' hooks and register views
    point into, in an order Python does not promise. Once in CI that teardown crashed (SIGSEGV)
    after a run had printed its budget line, so the documented status 4 became -11. Every output
    is complete by then (the guest's bytes flushed, the trace renamed into place, the message
    printed), so the process flushes its streams and ends here, its engines still open."""
    global _kept_to_exit
    _kept_to_exit = []
    status = main()
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:  # None: the descriptor was closed when the process started
            with contextlib.suppress(OSError, ValueError):  # a reader gone: the status already says so
                stream.flush()
    os._exit(status)


if __name__ == "__main__":
    entry()
