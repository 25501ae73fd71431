"""Guest code in notebook cells: a cell of AArch64 assembly or C becomes a guest, built in place.

In a notebook, load the extension once (the usual IPython way: importing sdeilab registers no
magics behind the user's back)::

    %load_ext sdeilab.widgets.guest_cell

then a cell such as ::

    %%guest_asm hello --cpus 1
        .globl main
    main:
        stp x29, x30, [sp, #-16]!
        print "PSCI_VERSION = "
        smccc PSCI_VERSION
        bl put_hex
        ldp x29, x30, [sp], #16
        ret

is built with the guest toolchain (:mod:`sdeilab.toolchain`: LLVM from the ``ziglang`` wheel),
linked with the guest library exactly as the shipped guests are (``guests/lib``: ``_start``,
which calls ``main`` and powers the machine off when it returns, the exception vectors, the
UART helpers ``puts``/``put_hex``/..., the SMCCC and PSCI wrappers, ``guest.h``'s macros
``print`` and ``smccc``), and bound to ``hello`` in the notebook: a :class:`GuestCell` whose
``run()``, ``session()`` and ``lab()`` load it on the lab. ``%%guest_c NAME`` does the same for C.
Options: ``--cpus N``, ``--profile P``, ``--quirk Q`` (repeatable), ``--run`` (run it now and print
the UART output and how it ended), ``--lab`` (show the dashboard on it), ``--max-instructions N``.

``#include "guest.h"`` is implied: the cell is compiled after that line and a ``#line 1``
directive, so every diagnostic names the cell's own line (``hello.S:4:5: error: ...``). Each cell
is built twice, as the shipped SDEI guests are (toolchain.CONDUIT_VARIANTS): ``NAME.elf`` with
``HVC #0`` and ``NAME-smc.elf`` with ``-DCONDUIT_SMC``; a session on a profile whose conduit is SMC
(``firmware``) loads the latter, so the dashboard's profile switch keeps a runnable guest.

A build error raises :class:`GuestBuildError`: the assembler's, compiler's or linker's own message
(cell line, source line, caret), under a line naming the cell, and nothing else. Like every
:class:`~sdeilab.toolchain.BuildError` it renders without a Python traceback in IPython. Warnings
go to standard error and the build goes on. A failed build leaves an earlier binding of ``NAME``
alone (as ``%%cython`` does), but the error stops "Run All" there. A cell that builds into a guest
the board cannot load (an image bigger than its RAM) or run (the CPU emulator refuses it) raises
:class:`GuestCellError` the same way: one message, no traceback. Options out of range (``--cpus``
beyond the board's CPUs) are usage errors, reported before the build.

Without IPython: :func:`build_guest` (source text to ELF path) and :func:`make_guest` (to a
:class:`GuestCell`).
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import os
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from sdeilab.firmware.profiles import Profile, profile_named
from sdeilab.firmware.sdei.quirks import Quirks
from sdeilab.lab.session import Session, StopInfo
from sdeilab.machine.loader import GuestLoadError, load_elf
from sdeilab.machine.memmap import MAX_CPUS, VIRT_MEMMAP, Region
from sdeilab.toolchain import CONDUIT_VARIANTS, BuildError, Language, ReportedError, build_source_text, guests_dir

if TYPE_CHECKING:
    from sdeilab.widgets.lab import Lab

__all__ = [
    "DEFAULT_RUN_BUDGET",
    "Diagnostic",
    "GuestBuildError",
    "GuestCell",
    "GuestCellError",
    "build_guest",
    "load_ipython_extension",
    "make_guest",
]

DEFAULT_RUN_BUDGET = 100_000_000
"""Instructions ``GuestCell.run`` and ``--run`` allow by default: a few seconds of emulation, far
more than a cell's guest needs to print and power off; one that loops forever stops with reason
``budget`` instead of hanging the kernel (the returned session can go on with ``run()``)."""

PROLOGUE = '#include "guest.h"\n#line 1 "{file}"\n'
"""What precedes a cell: the guest library's header, then a ``#line`` directive so that the C
preprocessor (and, through its line markers, the integrated assembler and the debug line table)
counts the cell's first line as line 1 of ``{file}``. The header's include guard makes an explicit
``#include "guest.h"`` in the cell harmless."""

_SUFFIX: dict[str, str] = {"asm": ".S", "c": ".c"}
_MAGIC_LANGUAGE: dict[str, Language] = {"guest_asm": "asm", "guest_c": "c"}

# clang's and the integrated assembler's diagnostic header: FILE:LINE[:COL]: SEVERITY: MESSAGE
_DIAG = re.compile(r"^(?P<file>[^\n:]+):(?P<line>\d+):(?:(?P<col>\d+):)? (?P<sev>fatal error|error|warning|note): "
                   r"(?P<msg>.*)$", re.MULTILINE)
# lld's "undefined symbol" report: the error, then ">>> referenced by FILE:LINE" per use
_LLD_ERROR = re.compile(r"^ld\.lld: error: (?P<msg>.*)$")
_LLD_REF = re.compile(r"^>>> referenced by (?P<file>[^\s:]+):(?P<line>\d+)")


@dataclass(frozen=True)
class Diagnostic:
    """One message of the tools; ``line`` counts the cell's lines when ``in_cell``."""

    file: str
    line: int
    column: int | None
    severity: str  # "error", "fatal error", "warning" or "note"
    message: str
    in_cell: bool
    source_line: str = ""  # the cell's line ``line`` (when ``in_cell``)

    @property
    def is_error(self) -> bool:
        return self.severity in ("error", "fatal error")


class GuestBuildError(BuildError):
    """A guest cell did not build. ``message`` is a line naming the cell, then the tools' own
    diagnostics (their line numbers are the cell's), then hints; ``diagnostics`` are parsed from
    them, ``tool_output`` is the tools' text as they printed it."""

    def __init__(self, name: str, language: Language, variant: str, tool_output: str,
                 diagnostics: tuple[Diagnostic, ...]) -> None:
        self.name = name
        self.language = language
        self.variant = variant
        self.tool_output = tool_output
        self.diagnostics = diagnostics
        super().__init__(_render_error(name, language, variant, tool_output, diagnostics))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    @property
    def cell_lines(self) -> list[int]:
        """The cell's lines that an error or its note points at, in order of the messages."""
        return list(dict.fromkeys(d.line for d in self.diagnostics if d.in_cell and d.severity != "warning"))


class GuestCellError(ReportedError):
    """A guest cell built but the board cannot load or run it (the loader's GuestLoadError, the CPU
    emulator's error): ``message`` names the cell and says why in the lab's words."""


@contextmanager
def _reported(name: str, doing: str, folder: Path) -> Iterator[None]:
    """Turn the loader's and the emulator's exceptions into one GuestCellError about cell ``name``
    (whose ELF files are in ``folder``, a temporary one the message need not show)."""
    from sdeilab.cpu.unicorn_backend import EngineError

    try:
        yield
    except GuestLoadError as error:
        reason = str(error).replace(f"{folder.resolve()}{os.sep}", "")
        raise GuestCellError(f"guest cell {name!r} cannot be {doing}: {reason}") from None
    except EngineError as error:
        raise GuestCellError(f"guest cell {name!r} cannot be {doing}: the CPU emulator failed "
                             f"({error}, unicorn error {error.errno})") from None


def _check_cpus(cpus: int) -> int:
    # The board's limit (its GIC redistributor frame): Machine would refuse it with a traceback.
    if isinstance(cpus, bool) or not isinstance(cpus, int) or not 1 <= cpus <= MAX_CPUS:
        raise ValueError(f"cpus must be between 1 and {MAX_CPUS} (the virt board's CPUs), not {cpus!r}")
    return cpus


# ----------------------------------------------------------------------------- building


def cell_file(name: str, language: Language) -> str:
    """The file name the diagnostics give the cell: ``NAME.S`` or ``NAME.c``."""
    return f"{name}{_SUFFIX[language]}"


def build_guest(source: str, language: Language, name: str = "cell", *, out_dir: str | Path | None = None,
                smc: bool = True) -> Path:
    """Build guest source text (a notebook cell) into ``NAME.elf``; return its path.

    ``language`` is ``"asm"`` (GNU assembly through the C preprocessor) or ``"c"``. The text is
    linked with the guest library and ``guest.h`` is included before it (the module docstring).
    With ``smc`` (the default) ``NAME-smc.elf`` is built beside it with ``-DCONDUIT_SMC``, for the
    profiles whose conduit is SMC. ``out_dir`` defaults to a folder of this process's temporary
    directory named after a hash of the text, so a session of an earlier version of the cell
    keeps its own file. Raises :class:`GuestBuildError` with the tools' diagnostics, and
    :class:`GuestCellError` if the ELF does not fit the board (e.g. a ``.bss`` bigger than its RAM).
    """
    if language not in _SUFFIX:
        raise ValueError(f"unknown guest language {language!r}: use 'asm' or 'c'")
    if not name.isidentifier():
        raise ValueError(f"guest name {name!r} must be an identifier (it names the ELF and a notebook variable)")
    folder = Path(out_dir) if out_dir is not None else _cells_root() / _digest(source, language, name)
    folder.mkdir(parents=True, exist_ok=True)
    file = cell_file(name, language)
    text = PROLOGUE.format(file=file) + source + ("" if source.endswith("\n") else "\n")
    variants = [v for v in CONDUIT_VARIANTS if smc or v == ""]
    shown: list[str] = []
    for variant in variants:
        output = folder / f"{name}{variant}.elf"
        # Every variant repeats the same warnings, so each distinct text is shown once.
        captured: list[str] = []
        try:
            build_source_text(text, language, output, defines=CONDUIT_VARIANTS[variant], warnings=captured.append)
        except BuildError as error:
            _show(shown, "".join(captured))
            raise GuestBuildError(name, language, variant, error.message,
                                  _parse(error.message, file, source)) from None
        _show(shown, "".join(captured))
        # Checked now rather than at the first run(): a guest bigger than the board's RAM is the
        # cell's mistake, and this names it before anything is bound.
        with _reported(name, "loaded", folder):
            load_elf(output, VIRT_MEMMAP[Region.RAM])
    if not smc:
        # A stale SMC build beside this one would be what a session on `firmware` loads.
        for variant in CONDUIT_VARIANTS:
            if variant:
                (folder / f"{name}{variant}.elf").unlink(missing_ok=True)
    return (folder / f"{name}.elf").resolve()


@dataclass(frozen=True)
class GuestCell:
    """A guest built from a cell, with the platform it runs on by default.

    ``session()`` loads it in a fresh debugger :class:`~sdeilab.lab.session.Session`,
    ``run()`` also runs that to the guest's end, ``lab()`` shows the dashboard on it.
    """

    name: str
    language: Language
    elf: Path
    source: str = field(repr=False)
    cpus: int = 4
    profile: str | Profile = "virt"
    quirks: tuple[str, ...] = ()

    @property
    def smc_elf(self) -> Path | None:
        """The ``-DCONDUIT_SMC`` build, or None if it was not built."""
        path = self.elf.with_name(f"{self.name}-smc.elf")
        return path if path.is_file() else None

    def session(self, *, cpus: int | None = None, profile: str | Profile | None = None,
                quirks: Iterable[str] | None = None) -> Session:
        """A new session with this guest loaded (at reset, nothing run yet)."""
        count = _check_cpus(self.cpus if cpus is None else cpus)
        with _reported(self.name, "loaded", self.elf.parent):
            return Session(self.elf, count, profile or self.profile, list(self.quirks if quirks is None else quirks))

    def run(self, max_instructions: int | None = DEFAULT_RUN_BUDGET, *, cpus: int | None = None,
            profile: str | Profile | None = None, quirks: Iterable[str] | None = None) -> Session:
        """A new session, run until the guest ends (or ``max_instructions``, None for no limit):
        read ``.uart_text()``, ``.trace`` and ``.last_stop`` from it."""
        session = self.session(cpus=cpus, profile=profile, quirks=quirks)
        with _reported(self.name, "run", self.elf.parent):
            session.run(max_instructions)
        return session

    def lab(self, *, cpus: int | None = None, profile: str | Profile | None = None,
            quirks: Iterable[str] | None = None, **options: Any) -> Lab:
        """The dashboard (:class:`~sdeilab.widgets.lab.Lab`) on a new session of this guest."""
        from sdeilab.widgets.lab import Lab  # the dashboard needs ipywidgets; building does not

        return Lab(session=self.session(cpus=cpus, profile=profile, quirks=quirks), **options)


def make_guest(source: str, language: Language, name: str = "cell", *, cpus: int = 4,
               profile: str | Profile = "virt", quirks: Iterable[str] = (), out_dir: str | Path | None = None,
               smc: bool = True) -> GuestCell:
    """Build a cell (:func:`build_guest`) and return it as a :class:`GuestCell` for that platform.

    The profile and quirks are checked before the (slower) build.
    """
    if isinstance(profile, str):
        profile_named(profile)  # ValueError naming the known profiles
    quirk_names = tuple(quirks)
    Quirks.from_names(quirk_names)  # ValueError naming the known quirks
    _check_cpus(cpus)
    elf = build_guest(source, language, name, out_dir=out_dir, smc=smc)
    return GuestCell(name, language, elf, source, cpus, profile, quirk_names)


def stop_line(stop: StopInfo) -> str:
    """How a run ended, in one line: ``[system-off after 1,234 instructions]``."""
    detail = f": {stop.detail}" if stop.detail and stop.detail != stop.reason else ""
    return f"[{stop.reason} after {stop.retired:,} instructions{detail}]"


# ----------------------------------------------------------------------------- diagnostics


def _parse(output: str, file: str, source: str) -> tuple[Diagnostic, ...]:
    lines = source.splitlines()

    def text_of(line: int, in_cell: bool) -> str:
        return lines[line - 1] if in_cell and 0 < line <= len(lines) else ""

    found: list[Diagnostic] = []
    for m in _DIAG.finditer(output):
        in_cell = m["file"] == file
        line = int(m["line"])
        found.append(Diagnostic(m["file"], line, int(m["col"]) if m["col"] else None, m["sev"], m["msg"],
                                in_cell, text_of(line, in_cell)))
    # lld names a use of an undefined symbol by the debug line table, which #line keeps in cell lines
    message = ""
    for raw in output.splitlines():
        if e := _LLD_ERROR.match(raw):
            message = e["msg"]
        elif (r := _LLD_REF.match(raw)) and message:
            in_cell = r["file"] == file
            line = int(r["line"])
            found.append(Diagnostic(r["file"], line, None, "error", message, in_cell, text_of(line, in_cell)))
    return tuple(found)


def _render_error(name: str, language: Language, variant: str, output: str,
                  diagnostics: tuple[Diagnostic, ...]) -> str:
    file = cell_file(name, language)
    build = f", the {variant.lstrip('-').upper()} build ({_define_text(variant)})" if variant else ""
    out = [f"guest cell {name!r} ({language}{build}) did not build; "
           f"{file} is the cell and line numbers count the cell's lines:"]
    root = f"{guests_dir().parent}{os.sep}"  # the library's headers by their repository path
    sources = {d.line: d.source_line for d in diagnostics if d.in_cell and d.column is None}
    pending: list[str] = []
    for line in output.rstrip("\n").splitlines():
        if pending and not line.startswith(">>> "):
            out += pending
            pending = []
        out.append(line.replace(root, ""))
        # The linker shows no source: after its ">>> referenced by NAME.S:LINE" block, the cell's line.
        if (ref := _LLD_REF.match(line)) and ref["file"] == file and sources.get(int(ref["line"])):
            pending.append(f"{int(ref['line']):>5} | {sources[int(ref['line'])]}")
    out += pending
    if "undefined symbol: main" in output:
        out.append("hint: the cell must define main (asm: `.globl main` and `main:`; C: `int main(void)`): "
                   "the library's _start calls it, and powers the machine off when it returns")
    return "\n".join(out) + "\n"


def _define_text(variant: str) -> str:
    return " ".join(f"-D{k}" + (f"={v}" if v else "") for k, v in CONDUIT_VARIANTS[variant].items())


def _show(shown: list[str], text: str) -> None:
    if text and text not in shown:
        shown.append(text)
        sys.stderr.write(text)


_ROOT: list[Path] = []


def _cells_root() -> Path:
    """This process's folder for cell builds, removed when it exits."""
    if not _ROOT:
        root = Path(tempfile.mkdtemp(prefix="sdeilab-cells-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _ROOT.append(root)
    return _ROOT[0]


def _digest(source: str, language: str, name: str) -> str:
    return hashlib.sha256(f"{language}\0{name}\0{source}".encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- IPython


class _UsageParser(argparse.ArgumentParser):
    """argparse that reports bad magic arguments as IPython's UsageError (one line, no traceback)
    instead of exiting the kernel."""

    def error(self, message: str) -> NoReturn:
        from IPython.core.error import UsageError

        raise UsageError(f"{self.prog}: {message}\nusage: {self.format_usage().removeprefix('usage: ').strip()}")


def _magic_parser(magic: str) -> _UsageParser:
    parser = _UsageParser(prog=f"%%{magic}", add_help=False)
    parser.add_argument("name", help="the guest's name: the notebook variable and the ELF file")
    parser.add_argument("--cpus", type=int, default=4)
    parser.add_argument("--profile", default="virt")
    parser.add_argument("--quirk", action="append", default=[], dest="quirks")
    parser.add_argument("--run", action="store_true", help="run it now: print the UART output and how it ended")
    parser.add_argument("--lab", action="store_true", help="show the dashboard on it")
    parser.add_argument("--max-instructions", type=int, default=DEFAULT_RUN_BUDGET)
    return parser


def guest_magic(magic: str, line: str, cell: str, namespace: dict[str, Any]) -> Lab | None:
    """What ``%%guest_asm`` / ``%%guest_c`` do (``magic`` without the percent signs): build the cell,
    bind the :class:`GuestCell` to its name in ``namespace``, then ``--run`` / ``--lab``."""
    try:
        words = shlex.split(line)
    except ValueError as error:  # an unclosed quote
        from IPython.core.error import UsageError

        raise UsageError(f"%%{magic}: {error}") from None
    args = _magic_parser(magic).parse_args(words)
    try:
        guest = make_guest(cell, _MAGIC_LANGUAGE[magic], args.name, cpus=args.cpus, profile=args.profile,
                           quirks=args.quirks)
    except ValueError as error:
        from IPython.core.error import UsageError

        raise UsageError(f"%%{magic}: {error}") from None
    namespace[args.name] = guest
    budget = args.max_instructions if args.max_instructions > 0 else None
    if args.lab:
        with _reported(args.name, "run", guest.elf.parent):
            lab = guest.lab()
            if args.run:
                lab.run(budget)
        return lab
    if args.run:
        session = guest.run(budget)
        output = session.uart_text()
        sys.stdout.write(output + ("" if output.endswith("\n") or not output else "\n"))
        print(stop_line(session.last_stop))
    else:
        print(f"built {args.name} ({guest.language}): {args.name}.run(), {args.name}.session() or {args.name}.lab()")
    return None


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext sdeilab.widgets.guest_cell``: registers the cell magics ``%%guest_asm`` and ``%%guest_c``."""

    def register(magic: str) -> None:
        def run(line: str, cell: str) -> Lab | None:
            return guest_magic(magic, line, cell, ipython.user_ns)

        run.__doc__ = (f"%%{magic} NAME [--cpus N] [--profile P] [--quirk Q] [--run] [--lab] "
                       f"[--max-instructions N]: build the cell ({_MAGIC_LANGUAGE[magic]}) as guest NAME. "
                       f"See sdeilab.widgets.guest_cell.")
        ipython.register_magic_function(run, magic_kind="cell", magic_name=magic)

    for magic in _MAGIC_LANGUAGE:
        register(magic)
