"""The guest toolchain: GNU-syntax AArch64 assembly and freestanding C to an ELF for the `virt` board.

Everything runs through the LLVM (clang + lld) that the ``ziglang`` wheel ships, invoked as
``sys.executable -m ziglang ...``, so it works wherever PyPI does (DESIGN.md section 5).

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
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "CONDUIT_VARIANTS",
    "LAB_GUEST_DIRS",
    "BuildError",
    "ShippedBuild",
    "build",
    "build_source_text",
    "guests_dir",
    "lab_guests",
    "lib_dir",
    "lib_sources",
    "linker_script",
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
)
C_FLAGS: tuple[str, ...] = (
    "-O2",
    "-std=gnu11",
    "-Wall",
    "-Wextra",
    "-mgeneral-regs-only",  # no FP/SIMD: CPACR_EL1.FPEN stays at its reset value (trap)
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
TOOL_TIMEOUT_S = 120

Language = Literal["asm", "c"]
_SUFFIX: dict[str, str] = {"asm": ".S", "c": ".c"}

LAB_GUEST_DIRS: tuple[str, ...] = ("sdei",)
"""Folders of ``guests/`` holding lab-only programs (they need what QEMU lacks: SDEI, the SP804).
Each source file or sub-folder there is one program; it is linked with ``guests/lib/<folder>/``
as well as ``guests/lib`` and ships in every variant of :data:`CONDUIT_VARIANTS`."""

CONDUIT_VARIANTS: dict[str, dict[str, str]] = {"": {}, "-smc": {"CONDUIT_SMC": ""}}
"""ELF name suffix -> preprocessor defines: HVC #0 (the ``virt`` profile) and SMC #0 (``firmware``)."""


class BuildError(Exception):
    """A guest did not build; ``message`` is the compiler's, assembler's or linker's own output."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def _render_traceback_(self) -> list[str]:
        # IPython calls this instead of printing a traceback: a notebook cell with a syntax
        # error shows just the diagnostics, which name the file and line.
        return self.message.rstrip("\n").splitlines()


def guests_dir() -> Path:
    """The repository's ``guests/`` folder (sources, prebuilt ELF files, ``lib/``)."""
    return Path(__file__).resolve().parent.parent / "guests"


def lib_dir() -> Path:
    return guests_dir() / "lib"


def linker_script() -> Path:
    return lib_dir() / "virt.ld"


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


def shipped_builds() -> list[ShippedBuild]:
    """Every committed guest ELF: each QEMU guest once (HVC), each lab-only guest in every conduit variant."""
    builds = [ShippedBuild(g) for g in shipped_guests()]
    builds += [ShippedBuild(g, v) for g in lab_guests() for v in CONDUIT_VARIANTS]
    return builds


def rebuild_build(shipped: ShippedBuild, out_dir: Path) -> Path:
    """Build one committed ELF afresh into ``out_dir/<name>.elf``; compare it with ``shipped.elf``."""
    return build(shipped.sources, Path(out_dir) / f"{shipped.name}.elf", defines=shipped.defines)


def shipped_elf(guest: Path) -> Path:
    """The committed prebuilt ELF of a shipped guest: ``guests/<name>.elf``."""
    return guests_dir() / f"{_guest_name(guest)}.elf"


def rebuild_shipped(guest: Path, out_dir: Path) -> Path:
    """Build a shipped guest (a path from :func:`shipped_guests`) into ``out_dir/<name>.elf``.

    Compare the result with :func:`shipped_elf` to check that the committed ELF is current.
    """
    sources = _folder_sources(guest) if guest.is_dir() else [guest]
    return build(sources, Path(out_dir) / f"{_guest_name(guest)}.elf")


def zig_version() -> str:
    """The installed ``ziglang`` wheel's version (the committed ELF files depend on it)."""
    return importlib.metadata.version("ziglang")


def build(
    sources: Sequence[Path],
    output: Path,
    *,
    defines: Mapping[str, str] = {},
    linker_script: Path | None = None,
) -> Path:
    """Build ``.S``/``.c`` sources plus the guest library into the ELF ``output``; return its path.

    ``defines`` become ``-DNAME=VALUE`` (``-DNAME`` for an empty value), e.g. ``{"CONDUIT_SMC": ""}``.
    Raises :class:`BuildError` with the tools' diagnostics if anything fails to compile or link.
    """
    srcs = [Path(s).resolve() for s in sources]
    if not srcs:
        raise BuildError("no source files given")
    for s in srcs:
        if s.suffix not in (".S", ".c"):
            raise BuildError(f"{s}: not a .S or .c source file")
        if not s.is_file():
            raise BuildError(f"{s}: no such file")
    srcs = [*_folder_library(srcs), *srcs]
    script = Path(linker_script).resolve() if linker_script is not None else _default_linker_script()
    output = Path(output).resolve()
    with tempfile.TemporaryDirectory(prefix="sdeilab-build-") as tmp:
        return _build_in(srcs, output, defines, script, Path(tmp), display=None, warnings=_to_stderr)


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
    ``warnings`` (default: standard error).
    """
    if language not in _SUFFIX:
        raise BuildError(f"unknown guest language {language!r}: use 'asm' or 'c'")
    output = Path(output).resolve()
    with tempfile.TemporaryDirectory(prefix="sdeilab-cell-") as tmp:
        src = Path(tmp) / "src" / f"{output.stem or 'guest'}{_SUFFIX[language]}"
        src.parent.mkdir()
        src.write_text(text, encoding="utf-8")
        work = Path(tmp) / "obj"
        work.mkdir()
        return _build_in([src], output, defines, _default_linker_script(), work, display=src.parent,
                         warnings=warnings or _to_stderr)


# ----------------------------------------------------------------------------- internals


def _default_linker_script() -> Path:
    return linker_script()


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


def _zig(args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", "ziglang", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            stdin=subprocess.DEVNULL,
            timeout=TOOL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{' '.join(args[:1])}: no answer after {TOOL_TIMEOUT_S} s") from exc
    except OSError as exc:
        raise BuildError(f"cannot run the ziglang toolchain: {exc}") from exc


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

    def compile_one(src: Path, obj: Path) -> subprocess.CompletedProcess[str]:
        # Sources from a notebook cell are named relative to their folder so that the
        # diagnostics show just the cell's file name.
        name = str(src.relative_to(display)) if display is not None and src.parent == display else str(src)
        extra = C_FLAGS if src.suffix == ".c" else ()
        return _zig(["cc", *flags, *extra, "-c", name, "-o", str(obj)], cwd=display or work)

    workers = min(len(all_sources), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(compile_one, all_sources, objects))

    errors = [r.stderr for r in results if r.returncode != 0]
    if errors:
        raise BuildError(_join(errors) or "compilation failed without a diagnostic")
    _show_warnings((r.stderr for r in results), warnings)

    tmp_out = work / "linked.elf"
    link = _zig(
        ["ld.lld", *LINK_FLAGS, "-T", str(script), "-o", str(tmp_out), *map(str, objects)],
        cwd=work,
    )
    # lld names objects by their temporary paths: show them relative to the build folder.
    link_text = link.stderr.replace(f"{work}{os.sep}", "")
    if link.returncode != 0:
        raise BuildError(_join([link_text]) or "link failed without a diagnostic")
    _show_warnings([link_text], warnings)
    output.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tmp_out, output)
    return output


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
