"""The command line (DESIGN.md section 3): ``sdeilab run``, ``build``, ``lab`` and ``dashboard``.

Standard output carries exactly the bytes the guest wrote to the UART; every diagnostic goes to
standard error. A user's or a guest's mistake gets one clear message and an exit status, never a
Python traceback: 0 SYSTEM_OFF, 2 bad usage or unloadable guest, 3 guest fault, 4 budget or
deadlock, 5 SYSTEM_RESET.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

EXIT_USAGE = 2
# Jupyter's and Voila's own defaults; an explicit --port must be free (no silent move to another).
DEFAULT_PORTS = {"lab": 8888, "dashboard": 8866}
DEFAULT_MAX_INSTRUCTIONS = 1_000_000_000
DEFAULT_KERNEL_MAX_INSTRUCTIONS = 20_000_000_000  # Linux to a shell and back: about 1e9 (docs/linux.md)
SOURCE_SUFFIXES = (".S", ".s", ".c")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 too; keep its one-line style
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


def _port(text: str) -> int:
    value = _positive(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from sdeilab.firmware.platform import DEFAULT_BOOTARGS
    from sdeilab.firmware.profiles import PROFILES
    from sdeilab.firmware.sdei.quirks import Quirks

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
    run.add_argument("--profile", choices=sorted(PROFILES), default="virt")
    run.add_argument("--max-instructions", type=_positive, default=None,
                     help=f"instruction budget over all CPUs (default {DEFAULT_MAX_INSTRUCTIONS:,}; "
                          f"{DEFAULT_KERNEL_MAX_INSTRUCTIONS:,} with --kernel)")
    run.add_argument("--trace", type=Path, help="write the trace: .json (Trace Event, for Perfetto) or .jsonl")
    run.add_argument("--quantum", type=_positive, default=None, help="scheduling quantum in instructions")
    run.add_argument("--quirk", action="append", default=[], choices=Quirks.names(), metavar="NAME",
                     help=f"switch on an SDEI quirk (repeatable): {', '.join(Quirks.names())}")
    build = sub.add_parser("build", help="build a guest from .S/.c sources with the guest toolchain")
    build.add_argument("sources", type=Path, nargs="+")
    build.add_argument("-o", "--output", type=Path)
    lab = sub.add_parser("lab", help="open JupyterLab on the notebooks (loopback only, token kept)")
    lab.add_argument("notebook_dir", type=Path, nargs="?")
    dashboard = sub.add_parser("dashboard", help="serve one notebook as a Voila app, e.g. for a projector "
                                                 "(loopback only, with a token)")
    dashboard.add_argument("notebook", type=Path, help="a .ipynb file, or the name of one in notebooks/")
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
        return _lab(args)
    except KeyboardInterrupt:
        print("sdeilab: interrupted", file=sys.stderr)
        return 130


def _fail(message: str, status: int = EXIT_USAGE) -> int:
    print(f"sdeilab: {message}", file=sys.stderr)
    return status


def _build(args: argparse.Namespace) -> int:
    from sdeilab.toolchain import BuildError, build

    missing = [str(s) for s in args.sources if not s.is_file()]
    if missing:
        return _fail(f"no such source file: {', '.join(missing)}")
    output = args.output or args.sources[0].with_suffix(".elf")
    try:
        build(args.sources, output)
    except BuildError as error:
        return _fail(f"build failed:\n{error}")
    print(f"sdeilab: built {output}", file=sys.stderr)
    return 0


def _run(args: argparse.Namespace) -> int:
    from sdeilab.firmware.platform import DEFAULT_BOOTARGS, make_platform
    from sdeilab.machine.loader import GuestLoadError
    from sdeilab.machine.memmap import MAX_CPUS
    from sdeilab.trace.export import write_trace

    if args.trace is not None and args.trace.suffix not in (".json", ".jsonl"):
        return _fail(f"--trace {args.trace}: the file name must end in .json or .jsonl")
    if (args.guest is None) == (args.kernel is None):
        return _fail("run takes either a GUEST or --kernel IMAGE" if args.guest is None
                     else f"run takes either a GUEST or --kernel IMAGE, not both ({args.guest} and {args.kernel})")
    if args.kernel is None and (args.initrd is not None or args.append is not None):
        return _fail("--initrd and --append go with --kernel")
    if args.max_instructions is None:
        args.max_instructions = DEFAULT_MAX_INSTRUCTIONS if args.kernel is None else DEFAULT_KERNEL_MAX_INSTRUCTIONS
    if args.cpus > MAX_CPUS:
        return _fail(f"--cpus {args.cpus}: the virt board has room for at most {MAX_CPUS} CPUs")
    with tempfile.TemporaryDirectory(prefix="sdeilab-") as scratch:
        guest: Path = args.guest or args.kernel
        if args.kernel is None and guest.suffix in SOURCE_SUFFIXES and guest.is_file():
            from sdeilab.toolchain import BuildError, build

            try:
                guest = build([guest], Path(scratch) / (guest.stem + ".elf"))
            except BuildError as error:
                return _fail(f"cannot build {args.guest}:\n{error}")
        from sdeilab.firmware.sdei.quirks import Quirks

        kwargs = {"quantum": args.quantum} if args.quantum else {}
        quirks = Quirks(**{name: True for name in args.quirk})
        platform = make_platform(args.cpus, args.profile, quirks=quirks, **kwargs)
        try:
            if args.kernel is not None:
                bootargs = DEFAULT_BOOTARGS if args.append is None else args.append
                platform.load_kernel(args.kernel, args.initrd, bootargs)
            else:
                platform.load(guest)
        except GuestLoadError as error:
            return _fail(str(error))
        out = sys.stdout.buffer
        platform.machine.uart_sinks.append(lambda byte: out.write(bytes((byte,))))
        try:
            outcome = platform.run(args.max_instructions)
        finally:
            out.flush()
            if args.trace is not None:
                try:
                    write_trace(platform.machine.trace, args.trace)
                except OSError as error:
                    print(f"sdeilab: cannot write the trace: {error}", file=sys.stderr)
    if outcome.fault is not None:
        print(outcome.fault.format(), file=sys.stderr)
    elif outcome.exit_status != 0:
        print(f"sdeilab: {outcome.reason.value}: {outcome.detail}", file=sys.stderr)
    return outcome.exit_status


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
    notebook = _find_notebook(args.notebook)
    if notebook is None:
        return _fail(f"no such notebook: {args.notebook} (give a .ipynb file or the name of one in notebooks/)")
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
    command = [sys.executable, "-m", "voila", str(notebook), "--Voila.ip=127.0.0.1", f"--port={port}",
               "--Voila.port_retries=0", "--token", "--no-browser",
               # A speaker debugging a guest on the projector wants the message, not "there was an error".
               "--show_tracebacks=True",
               # jupytext's front end edits paired notebooks: nothing to do in an app, and it fails to
               # load in Voila's page (an error in the browser console on every load).
               "--VoilaConfiguration.extension_denylist=jupyterlab-jupytext"]
    url = f"http://127.0.0.1:{port}/?token={token}"

    def announce(process: subprocess.Popen[bytes]) -> None:
        if _wait_for_port(port, process):
            print(f"sdeilab: dashboard for {notebook.name} at {url}", file=sys.stderr)
            if not args.no_browser:
                import webbrowser

                webbrowser.open(url)

    return _serve(command, env, announce)


def _serve(command: list[str], env: dict[str, str] | None = None,
           started: Callable[[subprocess.Popen[bytes]], None] | None = None) -> int:
    """Run a Jupyter server in the foreground until it exits; Ctrl-C or SIGTERM here stops it too.

    The server gets SIGTERM, on which JupyterLab and Voila shut their kernels down; a SIGKILL (what
    ``subprocess.call`` sends when interrupted) would leave the kernels running.
    """
    process = subprocess.Popen(command, env=env)
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


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> bool:
    """True once something accepts connections on 127.0.0.1:port; False if the server exited first."""
    import time

    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


if __name__ == "__main__":
    sys.exit(main())
