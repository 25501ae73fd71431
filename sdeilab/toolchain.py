"""The guest toolchain: GNU-syntax AArch64 assembly and freestanding C to an ELF for the `virt` board.

Everything runs through the LLVM (clang + lld) that the ``ziglang`` wheel ships, invoked as
its ``zig`` executable (what ``sys.executable -m ziglang ...`` execs), so it works wherever PyPI
does (DESIGN.md section 5).

- ``.S`` files go through the C preprocessor and the integrated assembler;
- ``.c`` files are compiled freestanding at -O2 with general registers only (no FP/SIMD, so
  exception handlers need not save vector registers and CPACR_EL1 need not be touched);
- every program is linked with the guest library in ``guests/lib`` (start-up code, exception
  vectors, UART, SMCCC/PSCI wrappers, spinlock, GIC helpers) by ``ld.lld -T guests/lib/virt.ld``;
- programs in a lab-only folder (``guests/sdei/``: SDEI, which QEMU lacks) also get that
  folder's library ``guests/lib/sdei/``, and ship in every conduit variant (``NAME.elf`` with
  HVC #0, ``NAME-smc.elf`` built with ``-DCONDUIT_SMC``), see :func:`shipped_builds`.

Builds are reproducible: identical inputs give byte-identical ELF files wherever the
repository lives (no build ID, no timestamps, source paths rewritten to ``guests/...``).

Compiler and linker diagnostics come back as :class:`BuildError`, whose message is the
tools' own text (``file:line:col: error: ...``); in IPython it renders without a traceback.
This module imports no other sdeilab module.

A guest's source is untrusted input to the tools: ``.space 1 << 40`` asks the assembler for a
terabyte of file, ``.incbin "/dev/zero"`` for endless memory, ``.rept`` and recursive macros for
endless time. So every tool runs in a process group of its own, with the limits
:data:`BUILD_TIMEOUT_S` (the whole build's wall time), :data:`BUILD_MEMORY_MIB` (each process's
address space) and :data:`BUILD_OUTPUT_MIB` (each file it writes), and with zig's caches in the
build's own temporary folder; a tool that crosses a limit is killed with its whole group and the
build fails with one :class:`BuildError` naming the limit. The limits are read at each build, so
a caller can change them (``toolchain.BUILD_TIMEOUT_S = 600``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import math
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

__all__ = [
    "CONDUIT_VARIANTS",
    "LAB_GUEST_DIRS",
    "PIE_LINK_FLAGS",
    "BuildError",
    "ShippedBuild",
    "build",
    "build_source_text",
    "guests_dir",
    "lab_guests",
    "lib_dir",
    "lib_sources",
    "linker_script",
    "linker_script_at",
    "rebuild_build",
    "rebuild_shipped",
    "shipped_builds",
    "shipped_elf",
    "shipped_guests",
    "shipped_toolchain_version",
    "update_shipped",
    "zig_version",
]

TARGET_FLAGS: tuple[str, ...] = (
    "-target",
    "aarch64-freestanding-none",
    "-mcpu=cortex_a57",  # zig spells LLVM CPU names with underscores
    "-nostdlib",
    "-ffreestanding",
    "-fno-pic",
)
COMMON_FLAGS: tuple[str, ...] = (
    "-g",
    "-fno-color-diagnostics",
    "-fno-unwind-tables",
    "-fno-asynchronous-unwind-tables",
    "-fno-crash-diagnostics",  # a tool killed by a build limit leaves no reproducer files behind
)
C_FLAGS: tuple[str, ...] = (
    "-O2",
    "-std=gnu11",
    "-Wall",
    "-Wextra",
    "-mgeneral-regs-only",  # no FP/SIMD: CPACR_EL1.FPEN stays at its reset value (trap)
    # zig cc (clang) still copies structs through q registers under -mgeneral-regs-only; TF-A
    # enters BL33 with FP/SIMD trapped, so such a copy faulted there (ESR EC 0x07).
    "-mno-implicit-float",
    "-mstrict-align",  # MMU off: data accesses are Device memory, unaligned ones fault
    "-fno-stack-protector",
    "-fno-common",
)
LINK_FLAGS: tuple[str, ...] = (
    "--build-id=none",
    "-z",
    "max-page-size=4096",
    "--no-undefined",
)
PIE_LINK_FLAGS: tuple[str, ...] = (
    "-pie",  # an ET_DYN, still linked at the script's address: QEMU and the lab load it there
    "--apply-dynamic-relocs",  # the link-time values are written in place: no loader relocates it
    "-z",
    "notext",  # literal pools (ldr x0, =symbol) hold absolute addresses in .text
)
"""Added by ``build(..., pie=True)``: a position-independent executable (ELF type ET_DYN)."""

BUILD_TIMEOUT_S: float = 120.0
"""Wall time a whole build may take (every compile and the link). The guests of this repository
build in about a second; one that runs longer is a loop such as ``.rept 1000000000``."""
BUILD_MEMORY_MIB: int = 2048
"""Address space of each toolchain process (RLIMIT_AS). zig and clang build every shipped guest
in less than 256 MiB; the margin leaves room for a big C file while stopping ``.incbin
"/dev/zero"`` long before it takes the machine's memory."""
BUILD_OUTPUT_MIB: int = 256
"""Largest file a tool may write (RLIMIT_FSIZE): an object file or the ELF. The board has 128 MiB
of RAM, so a guest whose image does not fit in this could not be loaded anyway."""
DIAGNOSTICS_KEPT = 256 * 1024
"""Characters of a tool's diagnostics kept for the error message: a ``.rept`` around an error
line prints without end, and the build must not hold all of it."""

Language = Literal["asm", "c"]
_SUFFIX: dict[str, str] = {"asm": ".S", "c": ".c"}

LAB_GUEST_DIRS: tuple[str, ...] = ("sdei",)
"""Folders of ``guests/`` holding lab-only programs (they need what QEMU lacks: SDEI, the SP804).
Each source file or sub-folder there is one program; it is linked with ``guests/lib/<folder>/``
as well as ``guests/lib`` and ships in every variant of :data:`CONDUIT_VARIANTS`."""

CONDUIT_VARIANTS: dict[str, dict[str, str]] = {"": {}, "-smc": {"CONDUIT_SMC": ""}}
"""ELF name suffix -> preprocessor defines: HVC #0 (the ``virt`` profile) and SMC #0 (``firmware``)."""


class ReportedError(Exception):
    """An error whose ``message`` is all a user needs: in a notebook, no traceback is shown."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def _render_traceback_(self) -> list[str]:
        # IPython calls this instead of printing a traceback: a notebook cell with a syntax
        # error shows just the diagnostics, which name the file and line.
        return self.message.rstrip("\n").splitlines()


class BuildError(ReportedError):
    """A guest did not build; ``message`` is the compiler's, assembler's or linker's own output."""


def guests_dir() -> Path:
    """The repository's ``guests/`` folder (sources, prebuilt ELF files, ``lib/``)."""
    return Path(__file__).resolve().parent.parent / "guests"


def lib_dir() -> Path:
    return guests_dir() / "lib"


def linker_script() -> Path:
    return lib_dir() / "virt.ld"


GUEST_LOAD_ADDRESS = 0x4008_0000
"""Where ``virt.ld`` links every guest (RAM + 512 KiB, see the script's comment)."""


def linker_script_at(address: int, folder: Path) -> Path:
    """``virt.ld`` with the image linked at ``address`` instead of :data:`GUEST_LOAD_ADDRESS`,
    written as ``folder/virt-<address>.ld``; give it to :func:`build` as ``linker_script``.

    The same sources then run elsewhere in RAM: TF-A's QEMU platform loads and enters its
    normal-world payload (BL33) at 0x6000_0000 (``sdeilab.machine.qemu.TFA_BL33_ADDRESS``).
    The guests hold no absolute RAM address other than through the linker's symbols.
    """
    if address % 0x1000:
        raise BuildError(f"load address {address:#x} is not 4 KiB aligned")
    text = linker_script().read_text(encoding="utf-8")
    anchor = f". = {GUEST_LOAD_ADDRESS:#x};"
    if anchor not in text:
        raise BuildError(f"{linker_script()}: no '{anchor}' line to move")
    out = Path(folder) / f"virt-{address:x}.ld"
    out.write_text(text.replace(anchor, f". = {address:#x};", 1), encoding="utf-8")
    return out


def lib_sources() -> list[Path]:
    """The guest library's sources, linked into every program (start.S first)."""
    found = sorted(p for p in lib_dir().iterdir() if p.suffix in (".S", ".c"))
    found.sort(key=lambda p: p.name != "start.S")
    return found


def shipped_guests() -> list[Path]:
    """The shipped guest programs that also run on QEMU: one source file (``name.S``/``name.c``)
    or folder per program, directly in ``guests/`` (the lab-only folders are :func:`lab_guests`)."""
    return _programs_in(guests_dir(), exclude=("lib", *LAB_GUEST_DIRS))


def lab_guests() -> list[Path]:
    """The lab-only guest programs (``guests/sdei/NAME.c`` or ``guests/sdei/NAME/``), in name order."""
    out: list[Path] = []
    for name in LAB_GUEST_DIRS:
        folder = guests_dir() / name
        if folder.is_dir():
            out.extend(_programs_in(folder, exclude=()))
    return out


@dataclass(frozen=True)
class ShippedBuild:
    """One committed ELF: a program (a path from :func:`shipped_guests` or :func:`lab_guests`)
    built in one conduit variant (a key of :data:`CONDUIT_VARIANTS`)."""

    guest: Path
    variant: str = ""

    @property
    def name(self) -> str:
        return _guest_name(self.guest) + self.variant

    @property
    def elf(self) -> Path:
        """Where the committed ELF is: beside the program's source (``guests/sdei/NAME-smc.elf``)."""
        return self.guest.parent / f"{self.name}.elf"

    @property
    def defines(self) -> dict[str, str]:
        return dict(CONDUIT_VARIANTS[self.variant])

    @property
    def sources(self) -> list[Path]:
        return _folder_sources(self.guest) if self.guest.is_dir() else [self.guest]

    @property
    def linker_script(self) -> Path | None:
        """The program's own linker script, ``NAME.ld`` beside ``NAME.c``/``NAME.S`` (a guest that
        must be linked elsewhere or enter elsewhere than ``virt.ld`` says), or None: ``virt.ld``."""
        return _own_linker_script(self.guest)


def shipped_builds() -> list[ShippedBuild]:
    """Every committed guest ELF: each QEMU guest once (HVC), each lab-only guest in every conduit variant."""
    builds = [ShippedBuild(g) for g in shipped_guests()]
    builds += [ShippedBuild(g, v) for g in lab_guests() for v in CONDUIT_VARIANTS]
    return builds


def rebuild_build(shipped: ShippedBuild, out_dir: Path) -> Path:
    """Build one committed ELF afresh into ``out_dir/<name>.elf`` (the folder is created if need
    be); compare it with ``shipped.elf``."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return build(shipped.sources, Path(out_dir) / f"{shipped.name}.elf", defines=shipped.defines,
                 linker_script=shipped.linker_script)


def shipped_elf(guest: Path) -> Path:
    """The committed prebuilt ELF of a shipped guest: ``guests/<name>.elf``."""
    return guests_dir() / f"{_guest_name(guest)}.elf"


def rebuild_shipped(guest: Path, out_dir: Path) -> Path:
    """Build a shipped guest (a path from :func:`shipped_guests`) into ``out_dir/<name>.elf``.

    Compare the result with :func:`shipped_elf` to check that the committed ELF is current.
    ``out_dir`` is created if need be.
    """
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    sources = _folder_sources(guest) if guest.is_dir() else [guest]
    return build(sources, Path(out_dir) / f"{_guest_name(guest)}.elf", linker_script=_own_linker_script(guest))


def zig_version() -> str:
    """The installed ``ziglang`` wheel's version (the committed ELF files depend on it)."""
    return importlib.metadata.version("ziglang")


def build(
    sources: Sequence[Path],
    output: Path,
    *,
    defines: Mapping[str, str] = {},
    linker_script: Path | None = None,
    pie: bool = False,
) -> Path:
    """Build ``.S``/``.c`` sources plus the guest library into the ELF ``output``; return its path.

    ``defines`` become ``-DNAME=VALUE`` (``-DNAME`` for an empty value), e.g. ``{"CONDUIT_SMC": ""}``.
    Without ``linker_script``, a single source ``NAME.c``/``NAME.S`` with a ``NAME.ld`` beside it is
    linked with that script, else with ``guests/lib/virt.ld``.
    ``pie``: link a position-independent executable (ET_DYN, :data:`PIE_LINK_FLAGS`) at the
    script's address instead of an ET_EXEC; it runs the same on QEMU and on the lab.
    Raises :class:`BuildError` with the tools' diagnostics if anything fails to compile or link,
    if a tool crosses a limit (:data:`BUILD_TIMEOUT_S`...), or if ``output`` cannot be the ELF:
    an input of the build (even through a link), a folder, a device, or in a folder that does not
    exist. ``output`` is replaced only by a complete ELF, so a failed build leaves it as it was.
    """
    srcs = [Path(s).resolve() for s in sources]
    if not srcs:
        raise BuildError("no source files given")
    for s in srcs:
        if s.suffix not in (".S", ".c"):
            raise BuildError(f"{s}: not a .S or .c source file")
        if not s.is_file():
            raise BuildError(f"{s}: no such file")
    if linker_script is None and len(srcs) == 1:
        linker_script = _own_linker_script(srcs[0])  # NAME.ld beside NAME.c, as for a shipped guest
    srcs = [*_folder_library(srcs), *srcs]
    script = Path(linker_script).resolve() if linker_script is not None else _default_linker_script()
    target = _check_output(Path(output), [*lib_sources(), *srcs, script], make_parent=False)
    with tempfile.TemporaryDirectory(prefix="sdeilab-build-") as tmp:
        return _build_in(srcs, target, defines, script, Path(tmp), display=None, warnings=_to_stderr, pie=pie)


def build_source_text(
    text: str,
    language: Language,
    output: Path,
    *,
    defines: Mapping[str, str] = {},
    warnings: Callable[[str], None] | None = None,
) -> Path:
    """Build one guest from source text (a notebook cell); ``language`` is ``"asm"`` or ``"c"``.

    The text is saved as ``<output stem>.S`` or ``.c`` in a temporary folder, so diagnostics
    read ``hello.c:3:5: error: ...`` with the cell's own line numbers. The tools' warnings go to
    ``warnings`` (default: standard error). ``output``'s folder is created if need be (callers
    pass fresh temporary folders); the other checks and limits are :func:`build`'s.
    """
    if language not in _SUFFIX:
        raise BuildError(f"unknown guest language {language!r}: use 'asm' or 'c'")
    script = _default_linker_script()
    target = _check_output(Path(output), [*lib_sources(), script], make_parent=True)
    with tempfile.TemporaryDirectory(prefix="sdeilab-cell-") as tmp:
        src = Path(tmp) / "src" / f"{target.stem or 'guest'}{_SUFFIX[language]}"
        src.parent.mkdir()
        src.write_text(text, encoding="utf-8")
        work = Path(tmp) / "obj"
        work.mkdir()
        return _build_in([src], target, defines, script, work, display=src.parent,
                         warnings=warnings or _to_stderr)


# ----------------------------------------------------------------------------- internals


def _default_linker_script() -> Path:
    return linker_script()


def _own_linker_script(guest: Path) -> Path | None:
    script = guest.with_suffix(".ld")
    return script if guest.is_file() and script.is_file() else None


def _guest_name(guest: Path) -> str:
    return guest.name if guest.is_dir() else guest.stem


def _folder_sources(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".S", ".c"))


def _programs_in(folder: Path, exclude: Sequence[str]) -> list[Path]:
    out: list[Path] = []
    for p in sorted(folder.iterdir()):
        is_source = p.is_file() and p.suffix in (".S", ".c")
        if is_source or (p.is_dir() and p.name not in exclude and _folder_sources(p)):
            out.append(p)
    return out


def _folder_library(sources: Sequence[Path]) -> list[Path]:
    """``guests/lib/<folder>/`` sources for programs in a lab-only folder (unless already given)."""
    gdir = guests_dir()
    extra: list[Path] = []
    for name in LAB_GUEST_DIRS:
        folder = gdir / name
        if any(folder in s.parents for s in sources):
            lib = lib_dir() / name
            if lib.is_dir():
                extra += [p for p in _folder_sources(lib) if p not in sources and p not in extra]
    return extra


class _Budget:
    """The limits of one build, and its running tools (so that an interrupt can stop them all)."""

    def __init__(self, scratch: Path) -> None:
        # Read at each build: the module constants are the settings a caller may change.
        self.timeout_s = float(BUILD_TIMEOUT_S)
        self.memory_mib = int(BUILD_MEMORY_MIB)
        self.output_mib = int(BUILD_OUTPUT_MIB)
        self.deadline = time.monotonic() + self.timeout_s
        # zig cc compiles into its cache and copies the object to -o: with the user's cache
        # (~/.cache/zig) an oversized object would fill the home folder and outlive the build.
        self.cache = scratch / "zig-cache"
        self.cache.mkdir()
        # TMPDIR too: clang's preprocessed temporaries, which a killed driver cannot remove.
        self.env = {**os.environ, "ZIG_GLOBAL_CACHE_DIR": str(self.cache), "ZIG_LOCAL_CACHE_DIR": str(self.cache),
                    "TMPDIR": str(self.cache)}
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._running: set[int] = set()  # process groups of tools not yet reaped

    def ran_past(self) -> BuildError:
        return BuildError(f"the build ran past {self.timeout_s:g} s and was stopped "
                          f"(the limit is sdeilab.toolchain.BUILD_TIMEOUT_S)")

    def limit_child(self) -> None:
        """Runs in the forked child before exec (preexec_fn); zig and clang inherit the limits."""
        memory = self.memory_mib << 20
        output = self.output_mib << 20
        cpu = math.ceil(self.timeout_s) + 1  # a backstop that holds even if this process dies
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (output, output))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a tool killed by a limit dumps no core

    def start(self, pid: int) -> None:
        with self._lock:
            self._running.add(pid)

    def finish(self, proc: subprocess.Popen[bytes]) -> None:
        """Kill what is left of the tool's group, then reap the tool: its zombie keeps the group's
        number from being reused until the group has been killed."""
        with self._lock:
            _kill_group(proc.pid)
            proc.wait()
            self._running.discard(proc.pid)

    def cancel(self) -> None:
        """Stop every tool of the build (a limit was crossed elsewhere, or the user interrupted)."""
        self.cancelled.set()
        with self._lock:
            for pid in self._running:
                _kill_group(pid)


@dataclass(frozen=True)
class _ToolRun:
    returncode: int
    stderr: str
    limit: str | None = None  # the message when the tool crossed a limit


def _zig(args: Sequence[str], cwd: Path, budget: _Budget, role: str, what: str) -> _ToolRun:
    """Run ``zig ARGS`` (``role`` is "assembler", "compiler" or "linker", ``what``
    names its input in messages) in a process group of its own, under the build's limits."""
    if budget.cancelled.is_set():
        return _ToolRun(1, "", limit="cancelled")
    if time.monotonic() >= budget.deadline:
        return _ToolRun(1, "", limit=str(budget.ran_past()))
    try:
        proc = subprocess.Popen(
            [*_zig_command(), *args],
            cwd=cwd,
            env=budget.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # one group: zig, its clang and -cc1as, killed together
            preexec_fn=budget.limit_child,
        )
    except OSError as exc:
        raise BuildError(f"cannot run the ziglang toolchain: {exc}") from exc
    budget.start(proc.pid)
    kept: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(proc.stderr, kept), daemon=True)
    reader.start()
    try:
        stop = _wait_unreaped(proc.pid, budget)
    finally:
        budget.finish(proc)
        reader.join()
    stderr = b"".join(kept).decode("utf-8", errors="replace")
    if stop == "timeout":
        return _ToolRun(1, stderr, limit=str(budget.ran_past()))
    if stop == "cancelled":
        return _ToolRun(1, stderr, limit="cancelled")
    rc = proc.returncode
    if rc == 0:
        return _ToolRun(0, stderr)
    return _ToolRun(rc, stderr, limit=_limit_crossed(rc, stderr, budget, role, what))


def _zig_command() -> list[str]:
    """The zig executable of the ziglang wheel, run directly rather than as ``python -m ziglang``
    (which only execs it): Python ignores SIGXFSZ and its exec passes that on, so a zig started
    through it meets RLIMIT_FSIZE with failing writes that it goes on making, for hours at
    ``.space 1 << 40``; started directly, it gets the default action and is killed at the limit."""
    zig = _ziglang_dir() / ("zig.exe" if os.name == "nt" else "zig")
    return [str(zig)] if zig.is_file() else [sys.executable, "-m", "ziglang"]


def _wait_unreaped(pid: int, budget: _Budget) -> str | None:
    """Wait for the tool to exit without reaping it (WNOWAIT): None when it exited, "timeout" at
    the build's deadline, "cancelled" when the build is being stopped."""
    delay = 0.002
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return None
        except ChildProcessError:  # reaped by someone else's waitpid(-1): it has exited
            return None
        left = budget.deadline - time.monotonic()
        if left <= 0:
            return "timeout"
        if budget.cancelled.is_set():
            return "cancelled"
        time.sleep(min(delay, left))
        delay = min(delay * 2, 0.05)


def _drain(stream: IO[bytes] | None, kept: list[bytes]) -> None:
    """Read a tool's standard error to its end, keeping the first DIAGNOSTICS_KEPT bytes."""
    if stream is None:
        return
    size = 0
    with stream:
        while chunk := stream.read(65536):
            if size < DIAGNOSTICS_KEPT:
                kept.append(chunk[: DIAGNOSTICS_KEPT - size])
            if size <= DIAGNOSTICS_KEPT < size + len(chunk):
                kept.append(b"\n[... more diagnostics cut]\n")
            size += len(chunk)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone already
        os.killpg(pgid, signal.SIGKILL)


# What LLVM and zig print when an allocation fails (RLIMIT_AS): LLVM's "out of memory" fatal error
# and "Allocation failed", the C++ runtime's std::bad_alloc, zig's error.OutOfMemory.
_OUT_OF_MEMORY = ("out of memory", "allocation failed", "bad_alloc", "outofmemory", "cannot allocate memory")
# What a write past RLIMIT_FSIZE looks like: the signal kills the writer, or (where it is ignored)
# the write fails with EFBIG.
_FILE_TOO_LARGE = ("file size limit exceeded", "file too large", "efbig", "filetoobig", "sigxfsz")


def _limit_crossed(rc: int, stderr: str, budget: _Budget, role: str, what: str) -> str | None:
    """The message for a tool that failed because it crossed a limit, or None for an ordinary failure."""
    text = stderr.lower()
    too_big = budget.output_mib << 20
    if (rc == -signal.SIGXFSZ or any(k in text for k in _FILE_TOO_LARGE)
            or any(f.is_file() and f.stat().st_size >= too_big for f in budget.cache.parent.rglob("*"))):
        return (f"{what}: the output would exceed {budget.output_mib} MiB "
                f"(the limit is sdeilab.toolchain.BUILD_OUTPUT_MIB)")
    if rc == -signal.SIGXCPU:
        return str(budget.ran_past())
    if any(k in text for k in _OUT_OF_MEMORY):
        return (f"{what}: the {role} exceeded its memory limit of {budget.memory_mib} MiB "
                f"(the limit is sdeilab.toolchain.BUILD_MEMORY_MIB)")
    return None


def _prefix_maps(sources: Sequence[Path], display: Path | None) -> list[str]:
    """Rewrite absolute paths in debug info and __FILE__ so that builds do not depend on where
    the repository or the temporary folder is.  Maps never overlap (clang takes the last match)."""
    gdir = guests_dir()
    maps: dict[Path, str] = {_ziglang_dir(): "ziglang", gdir: "guests"}
    for s in sources:
        parent = s.parent
        if parent != gdir and gdir not in parent.parents:
            maps.setdefault(parent, ".")
    if display is not None:
        maps[display] = "."
    return [f"-ffile-prefix-map={old}={new}" for old, new in maps.items()]


def _ziglang_dir() -> Path:
    """Where the ziglang wheel is installed (its C headers' paths end up in the debug info)."""
    spec = importlib.util.find_spec("ziglang")
    if spec is None or spec.origin is None:
        raise BuildError("the ziglang package is not installed (pip install ziglang)")
    return Path(spec.origin).resolve().parent


def _defines(defines: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    for name, value in defines.items():
        if not name.isidentifier():
            raise BuildError(f"bad preprocessor define name {name!r}")
        out.append(f"-D{name}" if value == "" else f"-D{name}={value}")
    return out


def _build_in(
    user_sources: Sequence[Path],
    output: Path,
    defines: Mapping[str, str],
    script: Path,
    work: Path,
    display: Path | None,
    warnings: Callable[[str], None],
    pie: bool = False,
) -> Path:
    if not script.is_file():
        raise BuildError(f"{script}: linker script not found")
    all_sources = [*lib_sources(), *user_sources]
    flags = [
        *TARGET_FLAGS,
        *COMMON_FLAGS,
        "-fdebug-compilation-dir=.",
        *_prefix_maps(all_sources, display),
        f"-I{lib_dir()}",
        *_defines(defines),
    ]
    objects = [work / f"{i:02d}-{src.stem}{src.suffix.replace('.', '_')}.o" for i, src in enumerate(all_sources)]
    budget = _Budget(work)

    def compile_one(src: Path, obj: Path) -> _ToolRun:
        # Sources from a notebook cell are named relative to their folder so that the
        # diagnostics show just the cell's file name.
        name = str(src.relative_to(display)) if display is not None and src.parent == display else str(src)
        extra = C_FLAGS if src.suffix == ".c" else ()
        role = "compiler" if src.suffix == ".c" else "assembler"
        run = _zig(["cc", *flags, *extra, "-c", name, "-o", str(obj)], display or work, budget, role, name)
        if run.limit is not None:
            budget.cancel()  # one message: the other compiles stop rather than report their own
        return run

    workers = min(len(all_sources), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            results = list(pool.map(compile_one, all_sources, objects))
        except BaseException:
            budget.cancel()  # an interrupt (KeyboardInterrupt in a notebook) stops the tools too
            raise

    _raise_limit(results)
    errors = [r.stderr for r in results if r.returncode != 0]
    if errors:
        raise BuildError(_join(errors) or "compilation failed without a diagnostic")
    _show_warnings((r.stderr for r in results), warnings)

    tmp_out = work / "linked.elf"
    try:
        link_flags = [*LINK_FLAGS, *(PIE_LINK_FLAGS if pie else ())]
        link = _zig(["ld.lld", *link_flags, "-T", str(script), "-o", str(tmp_out), *map(str, objects)],
                    work, budget, "linker", output.name)
    except BaseException:
        budget.cancel()
        raise
    _raise_limit([link])
    # lld names objects by their temporary paths: show them relative to the build folder.
    link_text = link.stderr.replace(f"{work}{os.sep}", "")
    if link.returncode != 0:
        raise BuildError(_join([link_text]) or "link failed without a diagnostic")
    _show_warnings([link_text], warnings)
    _install(tmp_out, output)
    return output


def _raise_limit(results: Sequence[_ToolRun]) -> None:
    """Raise the first crossed limit as the build's one error ("cancelled" is its echo in other tools)."""
    limits = [r.limit for r in results if r.limit is not None and r.limit != "cancelled"]
    if limits:
        raise BuildError(limits[0] + "\n")
    if any(r.limit == "cancelled" for r in results):
        raise BuildError("the build was stopped\n")


def _check_output(output: Path, inputs: Sequence[Path], *, make_parent: bool) -> Path:
    """``output`` resolved, once it is sure the ELF may go there: not over an input of the build
    (the same file by any name: a symbolic or hard link), not over a folder or a device, and
    in a folder that exists (a mistyped folder is not created, unless ``make_parent``)."""
    target = output.resolve()
    if target.is_dir():
        raise BuildError(f"{output}: is a folder; name the ELF file to write (e.g. {output / 'guest.elf'})")
    if target.exists() and not target.is_file():
        raise BuildError(f"{output}: not a regular file; the ELF is not written over it")
    for source in inputs:
        if target == source or (target.exists() and os.path.samefile(target, source)):
            raise BuildError(f"{output}: is an input of the build ({source.name}); "
                             "writing the ELF there would destroy it")
    if make_parent:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BuildError(f"cannot create the folder {output.parent}: {exc.strerror or exc}") from None
    elif not target.parent.is_dir():
        raise BuildError(f"{output}: the folder {output.parent} does not exist")
    return target


def _install(elf: Path, output: Path) -> None:
    """Put the linked ELF at ``output`` through a file beside it and a rename: nobody sees half an
    ELF, and if writing fails (disk full, no permission) the previous ``output`` is untouched."""
    tmp: Path | None = None
    try:
        for _ in range(100):
            tmp = output.with_name(f".{output.name}.{secrets.token_hex(4)}.tmp")
            try:
                # 0o666 and the umask: the permissions any new file of the user gets
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
                break
            except FileExistsError:
                continue
        else:
            raise FileExistsError(f"no free temporary name beside {output}")
        with os.fdopen(fd, "wb") as dst, elf.open("rb") as src:
            shutil.copyfileobj(src, dst)
        os.replace(tmp, output)
    except OSError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise BuildError(f"cannot write {output}: {exc.strerror or exc}") from None


def _join(texts: Sequence[str]) -> str:
    return "".join(t if t.endswith("\n") else t + "\n" for t in texts if t.strip())


def _show_warnings(texts: Iterable[str], sink: Callable[[str], None]) -> None:
    """Pass the tools' warnings on (to standard error by default, as a compiler run in a shell would)."""
    text = _join(list(texts))
    if text:
        sink(text)


def _to_stderr(text: str) -> None:
    sys.stderr.write(text)


SHIPPED_TOOLCHAIN_FILE = "ziglang-version.txt"
"""In ``guests/``: the ``ziglang`` version that built the committed ELF files."""


def shipped_toolchain_version() -> str | None:
    """The ``ziglang`` version recorded for the committed ELF files, or None if none is recorded."""
    path = guests_dir() / SHIPPED_TOOLCHAIN_FILE
    return path.read_text(encoding="utf-8").strip() if path.is_file() else None


def update_shipped() -> list[Path]:
    """Rebuild every committed guest ELF in place (:func:`shipped_builds`) and record the ziglang version."""
    built = [rebuild_build(b, b.elf.parent) for b in shipped_builds()]
    (guests_dir() / SHIPPED_TOOLCHAIN_FILE).write_text(zig_version() + "\n", encoding="utf-8")
    return built


def _main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m sdeilab.toolchain",
        description="Rebuild the committed guest ELF files (guests/*.elf, guests/sdei/*.elf) "
        "with the installed ziglang.",
    )
    parser.add_argument("command", choices=["update-shipped"])
    parser.parse_args(argv)
    try:
        for elf in update_shipped():
            print(elf.relative_to(guests_dir().parent))
    except BuildError as exc:
        sys.stderr.write(exc.message)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main())
