"""Hostile input to ``sdeilab run`` and ``build`` (DESIGN.md section 3, README "Exit status").

Every case runs the command line as a user does, in a child process bounded in time and in
address space, and checks the contract: the documented exit status, one line on standard error
that starts with ``sdeilab:``, never a Python traceback, and for a --trace run a file that parses.

The address-space bound: Unicorn reserves a 1 GiB translation buffer per vCPU, so one CPU needs
about 2.5 GiB of address space before the guest runs a single instruction; 4 GiB leaves room for
the interpreter and the trace, and still stops a run whose memory grows without bound.
"""

from __future__ import annotations

import json
import os
import pty
import resource
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import pytest

from sdeilab.toolchain import build_source_text

from .conftest import ROOT

pytestmark = pytest.mark.hostile

AS_LIMIT = 4 << 30
TIMEOUT = 60.0
GUEST_BASE = 0x4008_0000  # where the guest library's link script puts a guest (guests/lib/virt.ld)

# A64 encodings (ARM ARM C6.2): PSCI SYSTEM_OFF (DEN0022: function ID 0x84000008) through HVC #0.
MOVZ_X0_8 = 0xD2800100  # movz x0, #0x8
MOVK_X0_8400_LSL16 = 0xF2B08000  # movk x0, #0x8400, lsl #16
HVC_0 = 0xD4000002
SYSTEM_OFF = (MOVZ_X0_8, MOVK_X0_8400_LSL16, HVC_0)

SPIN = """
#include "guest.h"
    .text
    .globl main
main:
    print "spinning\n"
1:  b 1b
"""
# PSCI AFFINITY_INFO (DEN0022 5.1.8) for a CPU that does not exist, forever: two facts a call.
POLL = """
#include "guest.h"
    .text
    .globl main
main:
    print "polling\n"
1:  ldr x0, =PSCI_AFFINITY_INFO64
    mov x1, #1
    mov x2, #0
    hvc #0
    b 1b
"""
CHATTER = """
#include "guest.h"
    .text
    .globl main
main:
1:  print "the guest has more to say than anyone wants to read\\n"
    b 1b
"""


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def sdeilab(*args: str | Path | bytes, **popen: object) -> subprocess.Popen[bytes]:
    """``sdeilab ARGS`` in a child process under the address-space limit (stdout and stderr piped)."""
    preexec: Callable[[], None] = popen.pop("preexec_fn", _limits)  # type: ignore[assignment]
    options: dict[str, object] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "cwd": ROOT,
                                  "preexec_fn": preexec, **popen}
    command = [sys.executable, "-m", "sdeilab.cli", *(a if isinstance(a, bytes) else str(a) for a in args)]
    return subprocess.Popen(command, **options)  # type: ignore[call-overload, no-any-return]


class Result(NamedTuple):
    status: int
    err: str
    out: bytes


def run(*args: str | Path | bytes, timeout: float = TIMEOUT, **popen: object) -> Result:
    """Exit status, stderr and stdout of ``sdeilab ARGS``, which must end within ``timeout``."""
    process = sdeilab(*args, **popen)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"sdeilab {' '.join(map(str, args))} still ran after {timeout} s")
    return Result(process.returncode, (err or b"").decode(errors="replace"), out or b"")


def assert_message(result: tuple[int, str] | Result, expected: int, *words: str) -> None:
    """The contract: the status, no traceback, and the last line of stderr a ``sdeilab:`` message."""
    status, err = result[0], result[1]
    assert "Traceback" not in err, err
    assert status == expected, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "no message on standard error"
    assert lines[-1].startswith("sdeilab: "), err
    for word in words:
        assert word in lines[-1], err


def assert_one_line(result: tuple[int, str] | Result, expected: int, *words: str) -> None:
    assert_message(result, expected, *words)
    assert len(result[1].strip().splitlines()) == 1, result[1]


def load_trace(path: Path) -> list[dict[str, object]]:
    """The trace's records; fails unless the whole file parses (.json: one document; .jsonl: every line)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        document = json.loads(text)
        assert isinstance(document["traceEvents"], list)
        return [document]
    return [json.loads(line) for line in text.splitlines()]


# --- guests made at test time --------------------------------------------------------------------
def elf(words: Sequence[int] = SYSTEM_OFF, *, filesz: int | None = None, memsz: int | None = None,
        offset: int = 64 + 56, address: int = GUEST_BASE) -> bytes:
    """An ELF64 AArch64 executable with one PT_LOAD (ELF gABI: Elf64_Ehdr, then one Elf64_Phdr)."""
    code = b"".join(struct.pack("<I", w) for w in words)
    filesz = len(code) if filesz is None else filesz
    memsz = max(filesz, len(code)) if memsz is None else memsz
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # ELFCLASS64, ELFDATA2LSB, EV_CURRENT
    header = struct.pack("<HHIQQQIHHHHHH", 2, 183, 1, address, 64, 0, 0, 64, 56, 1, 64, 0, 0)  # ET_EXEC, EM_AARCH64
    phdr = struct.pack("<IIQQQQQQ", 1, 5, offset, address, address, filesz, memsz, 0x1000)  # PT_LOAD, R+X
    return ident + header + phdr + code


@pytest.fixture(scope="module")
def guests(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile-guests")
    made = {name: build_source_text(text, "asm", folder / f"{name}.elf")
            for name, text in (("spin", SPIN), ("poll", POLL), ("chatter", CHATTER))}
    made["off"] = folder / "off.elf"
    made["off"].write_bytes(elf())
    return made


def kernel_image(path: Path, image_size: int = 1 << 20) -> Path:
    """An arm64 Image header (Linux Documentation/arch/arm64/booting.rst) and nothing to run."""
    header = struct.pack("<IIQQQQQQI", 0, 0, 0, image_size, 1 << 1, 0, 0, 0, 0x644D5241)  # 4 KiB pages, "ARM\x64"
    path.write_bytes(header.ljust(64, b"\0"))
    return path


# --- 1. files that are not what they claim --------------------------------------------------------
def test_a_hand_made_elf_runs(tmp_path: Path) -> None:
    """The ELF builder below is right: the same file with sane headers powers off."""
    good = tmp_path / "good.elf"
    good.write_bytes(elf())
    status, err, _ = run("run", good)
    assert status == 0, err


@pytest.mark.parametrize(("headers", "words"), [
    ({"filesz": 64, "memsz": 12}, "larger than p_memsz"),
    ({"offset": 1 << 40}, "past the end of the file"),
    ({"filesz": 1 << 62, "memsz": 1 << 62}, "outside RAM"),
    ({"filesz": 4096, "memsz": 4096}, "truncated"),  # a data segment cut short by the file's end
])
def test_elf_segment_headers_that_lie(tmp_path: Path, headers: dict[str, int], words: str) -> None:
    bad = tmp_path / "bad.elf"
    bad.write_bytes(elf(**headers))
    assert_one_line(run("run", bad), 2, words)


def test_a_real_guest_cut_short(tmp_path: Path) -> None:
    data = (ROOT / "guests" / "smp_boot.elf").read_bytes()
    cut = tmp_path / "cut.elf"
    cut.write_bytes(data[:len(data) // 3])
    assert_one_line(run("run", cut), 2)


def test_elf_header_alone(tmp_path: Path) -> None:
    cut = tmp_path / "header.elf"
    cut.write_bytes(elf()[:80])
    assert_one_line(run("run", cut), 2, "malformed ELF")


@pytest.mark.parametrize(("append", "words"), [
    ("console=ttyAMA0 caf\u00e9", "non-ASCII"),
    (b"console=ttyAMA0 \xff", "0xff"),
    ("x" * 3000, "COMMAND_LINE_SIZE"),
])
def test_kernel_command_lines_the_device_tree_cannot_hold(tmp_path: Path, append: str | bytes, words: str) -> None:
    assert_one_line(run("run", "--kernel", kernel_image(tmp_path / "Image"), "--append", append), 2,
                    "--append", words)


def test_a_nul_in_the_command_line_from_python() -> None:
    """argv cannot carry a NUL; the Python API can, and gets the same one-line reason."""
    from sdeilab.lab.platform import make_platform
    from sdeilab.machine.loader import GuestLoadError

    with pytest.raises(GuestLoadError, match="NUL byte"):
        make_platform(1).load_kernel("/nonexistent/Image", None, "console=ttyAMA0\0rdinit=/x")


LONG = "x" * 5000


@pytest.mark.parametrize("args", [
    ["run", LONG + ".elf"],
    ["run", "--kernel", LONG],
    ["run", "--kernel", "{image}", "--initrd", LONG],
    ["run", LONG + ".S"],
    ["build", LONG + ".S"],
])
def test_paths_longer_than_the_system_takes(tmp_path: Path, args: list[str]) -> None:
    image = kernel_image(tmp_path / "Image")
    status, err, _ = run(*(a.replace("{image}", str(image)) for a in args))
    assert_one_line((status, err), 2, "too long")
    assert len(err) < 600  # the path is shortened in the message


# --- 2. special files ------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ["guest", "kernel", "initrd", "source"])
def test_a_fifo_is_refused_without_waiting(tmp_path: Path, role: str) -> None:
    fifo = tmp_path / ("pipe.S" if role == "source" else "pipe")
    os.mkfifo(fifo)
    args = {"guest": ["run", fifo], "kernel": ["run", "--kernel", fifo], "source": ["build", fifo],
            "initrd": ["run", "--kernel", kernel_image(tmp_path / "Image"), "--initrd", fifo]}[role]
    assert_one_line(run(*args, timeout=20), 2, "FIFO")


def test_dev_zero_as_kernel() -> None:
    assert_one_line(run("run", "--kernel", "/dev/zero", timeout=20), 2, "character device")


def test_a_sparse_kernel_bigger_than_ram(tmp_path: Path) -> None:
    sparse = tmp_path / "Image"
    with sparse.open("wb") as out:
        out.truncate(4 << 30)  # 4 GiB of hole: read whole, it would be 4 GiB of memory
    assert_one_line(run("run", "--kernel", sparse, timeout=20), 2, "RAM")


def test_a_gzip_bomb_kernel(tmp_path: Path) -> None:
    import zlib

    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    bomb = b"".join(packer.compress(chunk) for _ in range(256)) + packer.flush()  # 256 MiB of zeros
    image = tmp_path / "Image.gz"
    image.write_bytes(bomb)
    assert_one_line(run("run", "--kernel", image, timeout=30), 2, "decompresses to more than")


def test_an_empty_initrd_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "initrd"
    empty.write_bytes(b"")
    assert_one_line(run("run", "--kernel", kernel_image(tmp_path / "Image"), "--initrd", empty), 2, "empty")


# --- standard output that cannot be written ------------------------------------------------------
def test_a_pipe_whose_reader_leaves(guests: dict[str, Path]) -> None:
    """``sdeilab run guest | head -c1``: stop quietly with 128 + SIGPIPE, as other tools end."""
    process = sdeilab("run", guests["chatter"])
    assert process.stdout is not None
    assert process.stdout.read(1)
    process.stdout.close()
    try:
        _, err = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the run went on writing to a closed pipe")
    assert process.returncode == 141, err
    assert err == b"", err  # quietly


def test_standard_output_on_a_full_device(guests: dict[str, Path]) -> None:
    with open("/dev/full", "wb") as full:
        assert_one_line(run("run", guests["chatter"], stdout=full), 74, "No space left")


def test_standard_output_closed(guests: dict[str, Path]) -> None:
    def close_stdout() -> None:
        _limits()
        os.close(1)

    assert_one_line(run("run", guests["chatter"], stdout=None, preexec_fn=close_stdout), 74, "closed")


# --- 3. signals ------------------------------------------------------------------------------------
def _started(trace: Path, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Wait until the guest runs: it has made its temporary trace file and printed its first line
    (a signal before that finds the run not begun, which is another case: a loaded machine can
    take a second or more to load a guest)."""
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while not list(trace.parent.glob(f".{trace.name}.*.tmp")) or not select.select([process.stdout], [], [], 0.05)[0]:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run did not start"
    assert process.stdout.readline().endswith(b"ing\n")


@pytest.mark.parametrize(("guest", "signum", "suffix"), [
    ("spin", signal.SIGINT, ".json"),
    ("spin", signal.SIGTERM, ".jsonl"),
    ("poll", signal.SIGINT, ".jsonl"),
])
def test_a_signal_stops_the_run_and_the_trace_is_whole(guests: dict[str, Path], tmp_path: Path, guest: str,
                                                       signum: int, suffix: str) -> None:
    trace = tmp_path / f"trace{suffix}"
    extra = ["--trace-limit", "20000"] if guest == "poll" else []  # the rest streams to the file
    process = sdeilab("run", guests[guest], "--trace", trace, *extra)
    _started(trace, process)
    time.sleep(1.0)
    process.send_signal(signum)
    sent = time.monotonic()
    try:
        _, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the run went on after the signal")
    assert time.monotonic() - sent < 15
    assert_one_line((process.returncode, err.decode()), 128 + signum, signal.Signals(signum).name)
    records = load_trace(trace)
    if suffix == ".jsonl":
        assert [r["seq"] for r in records] == list(range(len(records)))  # nothing lost, nothing twice
        assert len(records) > (20000 if guest == "poll" else 0)


def test_a_second_signal_while_the_trace_is_written(guests: dict[str, Path], tmp_path: Path) -> None:
    trace = tmp_path / "trace.json"
    process = sdeilab("run", guests["poll"], "--trace", trace)
    _started(trace, process)
    time.sleep(1.5)
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert_one_line((process.returncode, err.decode()), 130, "SIGINT")
    load_trace(trace)
    assert not list(tmp_path.glob(".*.tmp"))


# --- 4. progress on a terminal ---------------------------------------------------------------------
def test_progress_on_a_terminal_only(guests: dict[str, Path]) -> None:
    leader, follower = pty.openpty()
    try:
        process = sdeilab("run", guests["spin"], "--max-instructions", "400000000", stderr=follower)
        os.close(follower)
        seen = b""
        deadline = time.monotonic() + TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            if select.select([leader], [], [], 0.2)[0]:
                try:
                    seen += os.read(leader, 4096)
                except OSError:  # the terminal's other end closed
                    break
        process.communicate(timeout=TIMEOUT)
    finally:
        os.close(leader)
    assert process.returncode == 4, seen
    assert b"\rsdeilab: " in seen and b"MIPS" in seen, seen
    status, err, _ = run("run", guests["spin"], "--max-instructions", "200000000")
    assert status == 4 and "MIPS" not in err, err


# --- 5. trace files --------------------------------------------------------------------------------
@pytest.mark.parametrize(("target", "words"), [
    ("missing/trace.json", "no such folder"),
    (".", "is a directory"),
    ("trace.txt", ".json"),
])
def test_trace_path_checked_before_the_run(guests: dict[str, Path], tmp_path: Path, target: str, words: str) -> None:
    started = time.monotonic()
    assert_one_line(run("run", guests["spin"], "--trace", tmp_path / target), 2, words)
    assert time.monotonic() - started < 20  # refused at once, not after the spinner's budget


def test_trace_to_dev_null(guests: dict[str, Path]) -> None:
    status, err, _ = run("run", guests["off"], "--trace", "/dev/null")
    assert status == 0, err
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


def test_trace_to_a_full_device(guests: dict[str, Path]) -> None:
    assert_one_line(run("run", guests["off"], "--trace", "/dev/full"), 74, "cannot write the trace")


def test_a_trace_that_does_not_fit_leaves_the_old_one(guests: dict[str, Path], tmp_path: Path) -> None:
    """A file size limit (RLIMIT_FSIZE; SIGXFSZ ignored, so writes fail with EFBIG) plays a full disk."""
    trace = tmp_path / "trace.jsonl"
    trace.write_text('{"seq": 0, "kind": "Earlier"}\n')

    def small_files() -> None:
        _limits()
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    assert_message(run("run", guests["poll"], "--max-instructions", "20000", "--trace", trace,
                       preexec_fn=small_files), 74, "cannot write the trace", "unchanged")
    assert trace.read_text() == '{"seq": 0, "kind": "Earlier"}\n'
    assert not list(tmp_path.glob(".*.tmp"))


def test_two_runs_writing_one_trace(guests: dict[str, Path], tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    runs = [sdeilab("run", guests["poll"], "--max-instructions", "100000", "--trace", trace) for _ in range(2)]
    for process in runs:
        _, err = process.communicate(timeout=TIMEOUT)
        assert process.returncode == 4, err
    records = load_trace(trace)
    assert [r["seq"] for r in records] == list(range(len(records)))


# --- 6. the trace's memory bound -------------------------------------------------------------------
def test_trace_limit_json_is_marked(guests: dict[str, Path], tmp_path: Path) -> None:
    trace = tmp_path / "trace.json"
    status, err, _ = run("run", guests["poll"], "--max-instructions", "200000", "--trace", trace,
                         "--trace-limit", "1000")
    assert status == 4, err
    assert "--trace-limit" in err and "Traceback" not in err
    (document,) = load_trace(trace)
    cut = document["otherData"]  # type: ignore[index]
    assert cut["truncated"] is True and cut["kept"] == 1000 and cut["dropped"] > 70_000
    assert any(e.get("name") == "trace truncated" for e in document["traceEvents"])  # type: ignore[index, union-attr]


def test_trace_limit_jsonl_streams_the_rest(guests: dict[str, Path], tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    status, err, _ = run("run", guests["poll"], "--max-instructions", "200000", "--trace", trace,
                         "--trace-limit", "1000")
    assert status == 4, err
    assert "--trace-limit" not in err  # nothing was lost
    records = load_trace(trace)
    assert [r["seq"] for r in records] == list(range(len(records)))
    assert len(records) > 70_000 and records[-1]["kind"] == "MachineStopped"


def test_a_poller_without_trace_stays_small(guests: dict[str, Path]) -> None:
    """An AFFINITY_INFO poller adds two facts a call; without --trace nothing needs them all."""
    def peak(*args: str | Path) -> int:
        process = sdeilab(*args)
        _, status, usage = os.wait4(process.pid, 0)
        process.communicate()
        assert os.waitstatus_to_exitcode(status) == 4
        return usage.ru_maxrss * 1024

    baseline = peak("run", guests["spin"], "--max-instructions", "1000000")
    poller = peak("run", guests["poll"], "--max-instructions", "3000000")  # 1.2 million facts
    assert poller - baseline < 60 << 20, (baseline, poller)  # kept whole: about 135 MB more


# --- 7. numbers at the edges -----------------------------------------------------------------------
@pytest.mark.parametrize(("args", "status", "words"), [
    (["--cpus", "124"], 2, "at most 123"),
    (["--quantum", "0"], 2, "must be positive"),
    (["--quantum", str(10**30)], 2, "at most"),
    (["--max-instructions", "0"], 2, "must be positive"),
    (["--trace-limit", "10"], 2, "goes with --trace"),
])
def test_numbers_out_of_range(guests: dict[str, Path], args: list[str], status: int, words: str) -> None:
    assert_message(run("run", guests["off"], *args), status, words)


def test_a_huge_budget_is_just_a_budget(guests: dict[str, Path]) -> None:
    status, err, _ = run("run", guests["off"], "--max-instructions", str(10**30))
    assert status == 0, err


def test_an_internal_error_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from sdeilab import cli

    def broken(args: object) -> int:
        raise RuntimeError("something\nunexpected")

    monkeypatch.setattr(cli, "_run", broken)
    monkeypatch.delenv("SDEILAB_TRACEBACK", raising=False)
    assert cli.main(["run", "x.elf"]) == 70
    err = capsys.readouterr().err
    assert err.startswith("sdeilab: internal error: RuntimeError: something unexpected") and err.count("\n") == 1


def test_trace_log_limit_counts_what_it_drops() -> None:
    """The Python API's bound: the first ``limit`` facts kept, the rest counted and handed on."""
    from sdeilab.trace import MachineStopped, TraceLog
    from sdeilab.trace.log import DEFAULT_LIMIT

    assert TraceLog().limit == DEFAULT_LIMIT
    log = TraceLog(3)
    spilled: list[object] = []
    log.overflow = spilled.append
    for vtime in range(5):
        log.add(MachineStopped, -1, vtime * 10, "budget", "x")
    assert len(log) == 3 and log.dropped == 2 and log.dropped_at == (3, 30)
    assert [f.seq for f in spilled] == [3, 4]  # type: ignore[attr-defined]
    log.clear()
    assert len(log) == 0 and log.dropped == 0 and log.limit == 3 and log.overflow is not None


# --- 8. guests that misbehave: the CLI tests' six classes and the machine's, under the same bounds --
# A vector table whose every entry skips the faulting instruction (ELR_EL1 += 4, ERET), so a guest
# of faults runs on instead of stopping at its first one (ARM ARM D1.10: each vector is 128 bytes).
SKIPPING_VECTORS = """
    .text
    .balign 2048
skip_vectors:
    .rept 16
    mrs x9, elr_el1
    add x9, x9, #4
    msr elr_el1, x9
    eret
    .balign 128
    .endr
"""
SET_SKIPPING = "    adr x0, skip_vectors\n    msr vbar_el1, x0\n    isb\n"
# Vectors whose handler faults again (a load from unmapped address 0) before it could return.
FAULTING_VECTORS = SKIPPING_VECTORS.replace("skip_vectors", "bad_vectors").replace(
    "    mrs x9, elr_el1\n", "    mov x9, #0\n    ldr x9, [x9]\n    mrs x9, elr_el1\n")
SET_FAULTING = "    adr x0, bad_vectors\n    msr vbar_el1, x0\n    isb\n"
NO_VECTORS = "    msr vbar_el1, xzr\n"
BODIES: dict[str, str] = {
    "udf": "    udf #0x2a\n",
    "branch-unmapped": "    mov x0, #0x100000\n    br x0\n",
    "branch-gicd": "    ldr x0, =0x08000000\n    br x0\n",
    "branch-gicr": "    ldr x0, =0x080A0000\n    br x0\n",
    "branch-uart": "    ldr x0, =0x09000000\n    br x0\n",
    "branch-sp804": "    ldr x0, =0x090C0000\n    br x0\n",
    "misaligned-pc": "    ldr x0, =main + 2\n    br x0\n",
    "spin": "1:  b 1b\n",
    "wfi": "1:  wfi\n    b 1b\n",
    # An interrupt pending that PSTATE.I masks ends every WFI at once (ARM ARM D1.16.2): the EL1
    # virtual timer (PPI 27) fires at once, DAIF stays masked, and the guest waits for ever.
    "wfi-masked-irq": ("    bl gic_dist_init\n    bl gic_redist_init\n    bl gic_cpu_init\n"
                       "    mov w0, #27\n    mov w1, #0x80\n    bl gic_enable_ppi\n"
                       "    msr cntv_cval_el0, xzr\n    mov x0, #1\n    msr cntv_ctl_el0, x0\n    isb\n"
                       "1:  wfi\n    b 1b\n"),
    # Every store to the SP804 makes the slice end; STP and 64-bit stores make several device writes.
    "mmio-storm": ("    ldr x0, =0x090C0000\n    mov x1, #1\n    mov x2, #2\n"
                   "1:  stp x1, x2, [x0, #8]\n    str x1, [x0, #0x20]\n    str w2, [x0, #0x9]\n    b 1b\n"),
    # A handler that faults again: with skipping vectors, the fault storm never ends by itself.
    "fault-storm": "1:  udf #0\n    mov x1, #0\n    ldr x1, [x1]\n    b 1b\n",
    "poll-affinity": "1:  ldr x0, =0xC4000004\n    mov x1, #7\n    mov x2, #0\n    hvc #0\n    b 1b\n",
    "random-words": "    .rept 512\n    .inst 0x{word:08x}\n    .endr\n    b main\n",
}
# (body, vectors, exit status, words in the last line of stderr). Budgets are small: these check the
# contract and the bounds, not speed.
MISBEHAVIOUR = [
    ("udf", NO_VECTORS, 3, "undefined instruction"),
    ("branch-unmapped", NO_VECTORS, 3, "unmapped address 0x100000"),
    *[(f"branch-{d}", NO_VECTORS, 3, "") for d in ("gicd", "gicr", "uart", "sp804")],
    *[(f"branch-{d}", SET_SKIPPING, 4, "budget") for d in ("gicd", "uart")],
    ("misaligned-pc", NO_VECTORS, 3, "PC alignment"),
    ("spin", NO_VECTORS, 4, "budget"),
    ("wfi", NO_VECTORS, 4, "every CPU waits"),
    ("wfi-masked-irq", NO_VECTORS, 4, ""),
    ("mmio-storm", NO_VECTORS, 4, "budget"),
    ("fault-storm", SET_SKIPPING, 4, "budget"),
    ("udf", SET_FAULTING, 3, "inside its own exception vector"),
    ("poll-affinity", NO_VECTORS, 4, "budget"),
    ("random-words", SET_SKIPPING, 4, "budget"),
]


@pytest.mark.parametrize(("body", "vectors", "status", "words"), MISBEHAVIOUR,
                         ids=[f"{b}-{ {SET_SKIPPING: 'skip', SET_FAULTING: 'faulting'}.get(v, 'novec')}"
                              for b, v, _, _ in MISBEHAVIOUR])
def test_guests_that_misbehave(tmp_path: Path, body: str, vectors: str, status: int, words: str) -> None:
    """Each ends with its documented status and one message, within its time and address space,
    and a --trace of it parses."""
    import random

    word = random.Random(12).getrandbits(32)
    table = {SET_SKIPPING: SKIPPING_VECTORS, SET_FAULTING: FAULTING_VECTORS}.get(vectors, "    .text\n")
    text = ('#include "guest.h"\n' + table
            + "    .globl main\nmain:\n" + vectors + BODIES[body].format(word=word))
    guest = build_source_text(text, "asm", tmp_path / f"{body}.elf")
    trace = tmp_path / "t.jsonl"
    result = run("run", guest, "--max-instructions", "300000", "--trace", trace)
    if status == 3:  # the fault report (DESIGN.md section 3): reason first, then PC and registers
        assert "Traceback" not in result.err and result.status == 3, result.err
        first = result.err.splitlines()[0]
        assert first.startswith("guest fault on CPU 0: ") and words in first, result.err
        assert "pc  0x" in result.err and "x30" in result.err
    else:
        assert_message(result, status, *([words] if words else []))
    load_trace(trace)


@pytest.mark.parametrize(("name", "make", "words"), [
    ("missing", lambda p: p / "nope.elf", "no such file"),
    ("not-elf", lambda p: (p / "junk.elf", (p / "junk.elf").write_bytes(b"not an ELF\n" * 10))[0], "not an ELF"),
    ("other-arch", lambda p: Path("/bin/true"), "not AArch64"),
    ("outside-ram", lambda p: (p / "o.elf", (p / "o.elf").write_bytes(elf(address=0x1000)))[0], "outside RAM"),
])
def test_guests_that_cannot_be_loaded(tmp_path: Path, name: str, make: Callable[[Path], Path], words: str) -> None:
    assert_one_line(run("run", make(tmp_path)), 2, words)
