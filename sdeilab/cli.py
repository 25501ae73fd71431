"""The command line (DESIGN.md section 3): ``sdeilab run``, ``sdeilab build``, ``sdeilab lab``.

Standard output carries exactly the bytes the guest wrote to the UART; every diagnostic goes to
standard error. A user's or a guest's mistake gets one clear message and an exit status, never a
Python traceback: 0 SYSTEM_OFF, 2 bad usage or unloadable guest, 3 guest fault, 4 budget or
deadlock, 5 SYSTEM_RESET.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

EXIT_USAGE = 2
DEFAULT_MAX_INSTRUCTIONS = 1_000_000_000
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


def build_parser() -> argparse.ArgumentParser:
    from sdeilab.firmware.profiles import PROFILES
    from sdeilab.firmware.sdei.quirks import Quirks

    parser = _Parser(prog="sdeilab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run a guest (ELF, or .S/.c source built first)")
    run.add_argument("guest", type=Path)
    run.add_argument("--cpus", type=_positive, default=1, help="number of vCPUs (default 1)")
    run.add_argument("--profile", choices=sorted(PROFILES), default="virt")
    run.add_argument("--max-instructions", type=_positive, default=DEFAULT_MAX_INSTRUCTIONS,
                     help=f"instruction budget over all CPUs (default {DEFAULT_MAX_INSTRUCTIONS:,})")
    run.add_argument("--trace", type=Path, help="write the trace: .json (Trace Event, for Perfetto) or .jsonl")
    run.add_argument("--quantum", type=_positive, default=None, help="scheduling quantum in instructions")
    run.add_argument("--quirk", action="append", default=[], choices=Quirks.names(), metavar="NAME",
                     help=f"switch on an SDEI quirk (repeatable): {', '.join(Quirks.names())}")
    build = sub.add_parser("build", help="build a guest from .S/.c sources with the guest toolchain")
    build.add_argument("sources", type=Path, nargs="+")
    build.add_argument("-o", "--output", type=Path)
    lab = sub.add_parser("lab", help="open JupyterLab on the notebooks (loopback only, token kept)")
    lab.add_argument("notebook_dir", type=Path, nargs="?")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "build":
            return _build(args)
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
    from sdeilab.firmware.platform import make_platform
    from sdeilab.machine.loader import GuestLoadError
    from sdeilab.machine.memmap import MAX_CPUS
    from sdeilab.trace.export import write_trace

    if args.trace is not None and args.trace.suffix not in (".json", ".jsonl"):
        return _fail(f"--trace {args.trace}: the file name must end in .json or .jsonl")
    if args.cpus > MAX_CPUS:
        return _fail(f"--cpus {args.cpus}: the virt board has room for at most {MAX_CPUS} CPUs")
    with tempfile.TemporaryDirectory(prefix="sdeilab-") as scratch:
        guest: Path = args.guest
        if guest.suffix in SOURCE_SUFFIXES and guest.is_file():
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


def _lab(args: argparse.Namespace) -> int:
    notebooks = args.notebook_dir or Path(__file__).resolve().parent.parent / "notebooks"
    if not notebooks.is_dir():
        return _fail(f"no notebook folder at {notebooks}")
    if shutil.which("jupyter") is None and not _has_module("jupyterlab"):
        return _fail("JupyterLab is not installed: run the README's set-up command (pip install -e '.[lab]')")
    # Loopback only, and the server keeps its token: authentication is never switched off here.
    command = [sys.executable, "-m", "jupyterlab", "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={notebooks}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # Jupyter refuses root without it (containers, CI machines)
    return subprocess.call(command)


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


if __name__ == "__main__":
    sys.exit(main())
