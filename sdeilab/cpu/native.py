"""The compiled hooks (compiled_hooks.c): built once per machine, loaded with ctypes.

The C file is compiled with the ziglang wheel's ``zig cc``, the C compiler the project already
installs from PyPI on Linux, macOS and Windows, into the user's cache folder, named by a hash of
the source, the compiler's version and the host, so a changed source or a new wheel rebuilds it.
Everything else keeps working without it: :func:`library` answers None (and
:func:`unavailable_reason` says why) when the compiler is missing or fails, and the vCPU then takes
the pure-Python hooks. ``SDEILAB_NATIVE=0`` in the environment chooses that path on purpose; the
tests run the same guests both ways and compare the traces byte for byte.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

SOURCE = Path(__file__).with_name("compiled_hooks.c")
BUILD_TIMEOUT_S = 120.0
ENVIRONMENT_SWITCH = "SDEILAB_NATIVE"  # "0": the pure-Python hooks

# Actions of the filter table (compiled_hooks.c).
DECLINE = 0
FORWARD = 1
COUNTER = 2


class SysregFilter(ctypes.Structure):
    """``struct sysreg_filter`` of compiled_hooks.c, field for field."""

    _fields_ = [
        ("emu_counter", ctypes.c_void_p),
        ("budget", ctypes.c_uint64),
        ("clock", ctypes.c_uint64),
        ("ns_per_instruction", ctypes.c_uint64),
        ("ns_per_count", ctypes.c_uint64),
        ("reg_write", ctypes.c_void_p),
        ("forward", ctypes.c_void_p),
        ("xzr", ctypes.c_int32),
        ("reserved", ctypes.c_uint32),
        ("counter_reads", ctypes.c_uint64),
        ("action", ctypes.c_uint8 * (1 << 16)),
    ]


TAKEN_QUEUE = 1024


class TakenException(ctypes.Structure):
    """``struct taken_exception``: one exception entry made in C, for the host to record."""

    _fields_ = [
        ("retired", ctypes.c_uint64),
        ("vector", ctypes.c_uint64),
        ("elr", ctypes.c_uint64),
        ("far", ctypes.c_uint64),
        ("esr", ctypes.c_uint32),
        ("intno", ctypes.c_uint32),
    ]


class ExceptionFilter(ctypes.Structure):
    """``struct exception_filter`` of compiled_hooks.c, field for field."""

    _fields_ = [
        ("slice", ctypes.c_void_p),
        ("cpu", ctypes.c_void_p),
        ("do_interrupt", ctypes.c_void_p),
        ("reg_read", ctypes.c_void_p),
        ("reg_write", ctypes.c_void_p),
        ("forward", ctypes.c_void_p),
        ("record", ctypes.c_void_p),
        ("aarch64", ctypes.c_void_p),
        ("pc_id", ctypes.c_int32),
        ("pstate_id", ctypes.c_int32),
        ("nzcv_id", ctypes.c_int32),
        ("vbar_id", ctypes.c_int32),
        ("cp_reg_id", ctypes.c_int32),
        ("ttbr0_id", ctypes.c_int32),
        ("ttbr1_id", ctypes.c_int32),
        ("enabled", ctypes.c_int32),
        ("intnos", ctypes.c_uint32),
        ("count", ctypes.c_uint32),
        ("vectors_checked", ctypes.c_uint64 * 3),
        ("entries", ctypes.c_uint64),
        ("taken", TakenException * TAKEN_QUEUE),
    ]


def filter_index(crn: int, crm: int, op0: int, op1: int, op2: int) -> int:
    """The table index of an encoding, as ``sysreg_filter_index`` computes it."""
    return (crn & 15) | (crm & 15) << 4 | (op0 & 3) << 8 | (op1 & 7) << 10 | (op2 & 7) << 13


_reason: list[str] = []


def unavailable_reason() -> str | None:
    """Why :func:`library` answered None, or None when it did not."""
    library()
    return _reason[0] if _reason else None


@cache
def library() -> ctypes.CDLL | None:
    """The compiled hook library, built on first use; None means the pure-Python hooks."""
    if os.environ.get(ENVIRONMENT_SWITCH, "1") == "0":
        _reason.append(f"{ENVIRONMENT_SWITCH}=0 in the environment")
        return None
    try:
        path = _built()
        lib = ctypes.CDLL(str(path))
        for symbol in ("sdeilab_sysreg_hook", "sdeilab_exception_hook", "sdeilab_vectors_checked"):
            getattr(lib, symbol)  # a missing symbol raises here, not at the first use
    except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError) as error:
        _reason.append(f"the compiled hooks could not be built or loaded: {error}")
        return None
    return lib


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(base) / "sdeilab" / "native"


def _suffix() -> str:
    return ".dll" if os.name == "nt" else ".dylib" if sys.platform == "darwin" else ".so"


def _built() -> Path:
    source = SOURCE.read_bytes()
    try:
        compiler = importlib.metadata.version("ziglang")
    except importlib.metadata.PackageNotFoundError as error:
        raise RuntimeError("the ziglang wheel is not installed") from error
    key = hashlib.sha256(source + compiler.encode() + platform.machine().encode() + sys.platform.encode())
    target = _cache_dir() / f"compiled_hooks-{key.hexdigest()[:16]}{_suffix()}"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sdeilab-native-") as scratch:
        output = Path(scratch) / target.name
        # zig keeps its caches in the scratch folder, so nothing else is left in the user's home.
        env = {**os.environ, "ZIG_GLOBAL_CACHE_DIR": scratch, "ZIG_LOCAL_CACHE_DIR": scratch}
        run = subprocess.run(
            [sys.executable, "-m", "ziglang", "cc", "-shared", "-fPIC", "-O2", "-std=c11", "-Wall", "-Wextra",
             "-Werror", "-o", str(output), str(SOURCE)],
            env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=BUILD_TIMEOUT_S, check=False)
        if run.returncode != 0:
            message = run.stderr.decode(errors="replace").strip().splitlines()
            raise RuntimeError(f"zig cc exited with {run.returncode}: {message[-1] if message else ''}")
        # Another process may be building the same file: each writes its own and renames it into
        # place, which is atomic, so a reader never loads half a library.
        staged = target.with_name(f"{target.name}.{os.getpid()}")
        staged.write_bytes(output.read_bytes())
        staged.chmod(0o755)
        staged.replace(target)
    return target
