"""Hostile builds: guest sources that the toolchain's limits stop, each with one message and no
process left, and ``sdeilab build -o`` targets that must not destroy anything.

A guest's source is input to LLVM's assembler, and a few lines of it can ask for a terabyte of
object file (``.space 1 << 40``), endless memory (``.incbin "/dev/zero"``) or endless work
(``.rept 1000000000``, macros that expand four-fold per level). Each test runs one such source
under short limits (the module settings of sdeilab.toolchain) and checks that the build ends
with a BuildError naming the limit, within it, leaving no process of the toolchain running and
nothing in zig's shared cache. A build that ignores the limits fails here after WALL_S seconds
(the test then kills what it started) instead of hanging the suite.

The ``-o`` tests run the command line as a user does: exit status 2, one message, no traceback,
and the source byte for byte as it was.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sdeilab import toolchain
from sdeilab.toolchain import BuildError, build

WALL_S = 30.0  # longest a bomb test may take: far above the limits below, far below "unbounded"
TIMEOUT_S = 3.0
MEMORY_MIB = 256
OUTPUT_MIB = 16

ASSEMBLER_OUT_OF_MEMORY = (f"the assembler exceeded its memory limit of {MEMORY_MIB} MiB "
                           "(the limit is sdeilab.toolchain.BUILD_MEMORY_MIB)")

MAIN = "    .globl main\nmain:\n    ret\n"
# m0 is one nop and each level expands the one below four times: m16 is 4**16 (4 billion) nops,
# twenty macro levels under the assembler's nesting limit.
MACRO_BOMB = MAIN + "".join(
    f"    .macro m{i}\n" + ("    nop\n" if i == 0 else f"    m{i - 1}\n" * 4) + "    .endm\n" for i in range(17)
) + "    m16\n"


def _proc_stat(pid: str) -> tuple[str, str, int, int, int] | None:
    """(command, state, parent, process group, session) of a process, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    command = stat[stat.index("(") + 1 : stat.rindex(")")]
    state, ppid, pgrp, session = stat[stat.rindex(")") + 2 :].split()[:4]
    return command, state, int(ppid), int(pgrp), int(session)


def _live(predicate: Any) -> list[str]:
    """Processes (not zombies: a zombie holds no memory, file or CPU) for which predicate(stat) holds."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(entry.name)) and stat[1] != "Z" and predicate(stat):
            found.append(f"{entry.name} {stat[0]}")
    return found


class Spawned:
    """The processes the build started (their pids: each is its own group and session when the
    toolchain runs it with start_new_session), and this test process's children before it."""

    def __init__(self) -> None:
        self.pids: list[int] = []
        self.children_before = set(_live(lambda s: s[2] == os.getpid()))

    def left_behind(self) -> list[str]:
        """Live processes of the build: in a group or session it started, or children of this process."""
        started = set(self.pids)
        return [*_live(lambda s: s[3] in started or s[4] in started),
                *(set(_live(lambda s: s[2] == os.getpid())) - self.children_before)]

    def kill_all(self) -> None:
        """Clean-up after a build that ran away: its tools and everything under them."""
        pending = list(self.pids)
        while pending:
            pid = pending.pop()
            pending += [int(p.split()[0]) for p in _live(lambda s, pid=pid: s[2] == pid)]
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Spawned]:
    if not Path("/proc/self/stat").is_file():
        pytest.skip("counts processes through /proc")
    record = Spawned()
    real = subprocess.Popen

    class RecordingPopen(real):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            record.pids.append(self.pid)

    monkeypatch.setattr(subprocess, "Popen", RecordingPopen)
    monkeypatch.setattr(toolchain, "BUILD_TIMEOUT_S", TIMEOUT_S)
    monkeypatch.setattr(toolchain, "BUILD_MEMORY_MIB", MEMORY_MIB)
    monkeypatch.setattr(toolchain, "BUILD_OUTPUT_MIB", OUTPUT_MIB)
    # zig's shared cache, as the user's ~/.cache/zig: a build must leave nothing in it
    monkeypatch.setenv("ZIG_GLOBAL_CACHE_DIR", str(tmp_path / "user-zig-cache"))
    monkeypatch.setenv("ZIG_LOCAL_CACHE_DIR", str(tmp_path / "user-zig-cache"))
    yield record
    record.kill_all()


def _build_bomb(source: str, tmp_path: Path, spawned: Spawned, name: str = "bomb.S") -> tuple[str, float]:
    """Build ``source``; return the BuildError's message and the seconds the build took."""
    src = tmp_path / name
    src.write_text(source)
    output = tmp_path / "bomb.elf"
    output.write_bytes(b"the previous build")
    outcome: list[BaseException | Path] = []

    def run() -> None:
        try:
            outcome.append(build([src], output))
        except BaseException as error:  # handed to the test's thread
            outcome.append(error)

    start = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(WALL_S)
    took = time.monotonic() - start
    if worker.is_alive():
        running = spawned.left_behind()
        spawned.kill_all()
        pytest.fail(f"the build was still running after {WALL_S:g} s: {running}")
    [result] = outcome
    assert isinstance(result, BuildError), result
    # A SIGKILLed process takes a moment to release its memory and disappear.
    for _ in range(50):
        if not spawned.left_behind():
            break
        time.sleep(0.1)
    assert spawned.left_behind() == []
    assert output.read_bytes() == b"the previous build"  # a failed build leaves the old output
    assert not any(p.is_file() for p in (tmp_path / "user-zig-cache").rglob("*"))
    return result.message, took


def _one_message(message: str) -> str:
    lines = message.rstrip("\n").splitlines()
    assert len(lines) == 1, message
    assert "Traceback" not in message and "PLEASE" not in message  # no crash report of clang's
    return lines[0]


@pytest.mark.hostile
def test_space_stops_at_the_output_limit(tmp_path: Path, spawned: Spawned) -> None:
    message, took = _build_bomb(MAIN + "    .data\n    .space 1 << 40\n", tmp_path, spawned)
    assert _one_message(message) == (f"{tmp_path / 'bomb.S'}: the output would exceed {OUTPUT_MIB} MiB "
                                     "(the limit is sdeilab.toolchain.BUILD_OUTPUT_MIB)")
    assert took < TIMEOUT_S


@pytest.mark.hostile
def test_incbin_dev_zero_stops_at_the_memory_limit(tmp_path: Path, spawned: Spawned) -> None:
    message, took = _build_bomb(MAIN + '    .data\n    .incbin "/dev/zero"\n', tmp_path, spawned)
    assert _one_message(message) == f"{tmp_path / 'bomb.S'}: {ASSEMBLER_OUT_OF_MEMORY}"
    assert took < TIMEOUT_S


@pytest.mark.hostile
def test_rept_stops_at_the_time_limit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, spawned: Spawned) -> None:
    # Memory to spare, so that the clock is what stops it: 4 GiB takes the assembler over 20 s.
    monkeypatch.setattr(toolchain, "BUILD_MEMORY_MIB", 4096)
    message, took = _build_bomb(MAIN + "    .rept 1000000000\n    nop\n    .endr\n", tmp_path, spawned)
    assert _one_message(message) == (f"the build ran past {TIMEOUT_S:g} s and was stopped "
                                     "(the limit is sdeilab.toolchain.BUILD_TIMEOUT_S)")
    assert TIMEOUT_S <= took < TIMEOUT_S + 2


@pytest.mark.hostile
def test_macro_expansion_stops_at_the_memory_limit(tmp_path: Path, spawned: Spawned) -> None:
    message, took = _build_bomb(MACRO_BOMB, tmp_path, spawned)
    assert _one_message(message) == f"{tmp_path / 'bomb.S'}: {ASSEMBLER_OUT_OF_MEMORY}"
    assert took < TIMEOUT_S


@pytest.mark.hostile
def test_c_include_of_dev_zero_stops_at_the_time_limit(tmp_path: Path, spawned: Spawned) -> None:
    # The preprocessor spins on the device without growing: the clock stops it.
    message, took = _build_bomb('#include "/dev/zero"\n', tmp_path, spawned, name="bomb.c")
    assert _one_message(message) == (f"the build ran past {TIMEOUT_S:g} s and was stopped "
                                     "(the limit is sdeilab.toolchain.BUILD_TIMEOUT_S)")
    assert TIMEOUT_S <= took < TIMEOUT_S + 2


@pytest.mark.hostile
def test_a_flood_of_diagnostics_is_cut(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, spawned: Spawned) -> None:
    # Ten thousand errors, about 850 kB: the message keeps the first DIAGNOSTICS_KEPT characters
    # (a .rept of a billion would print without end, and the build must not hold all of it).
    monkeypatch.setattr(toolchain, "BUILD_TIMEOUT_S", WALL_S - 5)
    message, _ = _build_bomb(MAIN + "    .rept 10000\n    bogus\n    .endr\n", tmp_path, spawned)
    assert message.startswith("<instantiation>:1:1: error: unrecognized instruction mnemonic\n")
    assert message.endswith("\n[... more diagnostics cut]\n")
    assert toolchain.DIAGNOSTICS_KEPT < len(message) < toolchain.DIAGNOSTICS_KEPT + 100


# ----------------------------------------------------------------------------- sdeilab build -o

SOURCE = '#include "guest.h"\n    .globl main\nmain:\n    print "hi\\n"\n    ret\n'


def _cli_build(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sdeilab.cli", "build", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


def _refused(run: subprocess.CompletedProcess[str]) -> str:
    """The one message of a refused build (the CLI's "build failed:" line, then the reason)."""
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and run.stdout == ""
    head, reason = run.stderr.rstrip("\n").split("\n")
    assert head == "sdeilab: build failed:"
    return reason


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "prog.S"
    path.write_text(SOURCE)
    return path


@pytest.mark.parametrize("alias", ["same", "symlink", "hardlink", "via-dotdot"])
def test_output_over_the_source_is_refused(alias: str, source: Path, tmp_path: Path) -> None:
    target = {"same": source, "symlink": tmp_path / "alias.S", "hardlink": tmp_path / "copy.S",
              "via-dotdot": tmp_path / "sub" / ".." / "prog.S"}[alias]
    if alias == "symlink":
        target.symlink_to(source.name)
    elif alias == "hardlink":
        os.link(source, target)
    elif alias == "via-dotdot":
        (tmp_path / "sub").mkdir()
    reason = _refused(_cli_build(source.name, "-o", target, cwd=tmp_path))
    assert reason == f"{target}: is an input of the build (prog.S); writing the ELF there would destroy it"
    assert source.read_text() == SOURCE


def test_output_over_a_library_source_is_refused(source: Path, tmp_path: Path) -> None:
    from sdeilab.toolchain import lib_dir

    start = lib_dir() / "start.S"
    before = start.read_bytes()
    reason = _refused(_cli_build(source, "-o", start, cwd=tmp_path))
    assert reason.endswith("is an input of the build (start.S); writing the ELF there would destroy it")
    assert start.read_bytes() == before


def test_output_naming_a_folder_is_refused(source: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    reason = _refused(_cli_build(source.name, "-o", "out", cwd=tmp_path))
    assert reason == f"out: is a folder; name the ELF file to write (e.g. {Path('out', 'guest.elf')})"
    assert list((tmp_path / "out").iterdir()) == []


def test_output_on_a_device_is_refused(source: Path, tmp_path: Path) -> None:
    reason = _refused(_cli_build(source.name, "-o", "/dev/full", cwd=tmp_path))
    assert reason == "/dev/full: not a regular file; the ELF is not written over it"
    assert Path("/dev/full").is_char_device()


def test_unwritable_output_is_one_message(source: Path, tmp_path: Path) -> None:
    # /proc takes no new file, not even from root (file permissions would not stop root)
    reason = _refused(_cli_build(source.name, "-o", "/proc/guest.elf", cwd=tmp_path))
    assert reason.startswith("cannot write /proc/guest.elf: ")


def test_output_in_a_missing_folder_is_refused(source: Path, tmp_path: Path) -> None:
    reason = _refused(_cli_build(source.name, "-o", "no_such_dir/prog.elf", cwd=tmp_path))
    assert reason == "no_such_dir/prog.elf: the folder no_such_dir does not exist"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prog.S"]  # nothing created elsewhere


def test_a_failed_build_leaves_the_previous_output(source: Path, tmp_path: Path) -> None:
    elf = tmp_path / "prog.elf"
    ok = _cli_build(source.name, "-o", elf.name, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    previous = elf.read_bytes()
    assert previous[:4] == b"\x7fELF"
    source.write_text(SOURCE.replace("ret", "bogus x0"))
    run = _cli_build(source.name, "-o", elf.name, cwd=tmp_path)
    assert run.returncode == 2 and "unrecognized instruction mnemonic" in run.stderr
    assert "Traceback" not in run.stderr
    assert elf.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prog.S", "prog.elf"]  # no temporary file left
