"""Guest time, MRS cost and exception rate on the lab, each against an anchor, in one run (issue 15).

Every guest is built from benchmarks/guests/guest_time.c + guest_time.S (+ alu_loop.S) with the
guest library, runs on the lab with default settings (``make_platform()``: 1 vCPU, the ``virt``
profile) and, where QEMU is the anchor, unchanged on ``qemu-system-aarch64 -M virt,gic-version=3
-cpu cortex-a57 -smp 1 -m 128M -nographic -nic none -kernel GUEST.elf`` (UART to a file, as
tests/test_guests_qemu.py's ``run_qemu``). Each guest prints one timing-independent line and ends
with PSCI SYSTEM_OFF; the script checks both (exit status 0 on QEMU) and that the lab printed the
same bytes as QEMU. Printed, one line per measurement (lab value, anchor value, ratio, goal):

1. busy-wait: the guest reads CNTFRQ_EL0 and spins on ``mrs CNTVCT_EL0`` until 100 ms of counter
   ticks have passed. Wall time on the lab (from ``make_platform`` to SYSTEM_OFF) against QEMU's
   process wall time. Goal: under 1 s on the lab.
2. MRS loop (SP_EL0, MPIDR_EL1, CNTVCT_EL0 + 7 other instructions per iteration) against the ALU
   loop of benchmarks/machine_speed.py (alu_loop.S, 10 instructions per iteration), in guest MIPS
   on the lab (instructions retired / wall time of ``run``). Goal: MRS/ALU >= 0.5x.
3. Exceptions per second: an SVC loop (SVC #0 to an EL1 vector that only ERETs) and a
   fault-and-skip loop (LDR from 0x4800_0000, past the end of RAM; the data abort handler adds 4
   to ELR_EL1 and ERETs), VBAR_EL1 set by the guest. N exceptions over (wall time with N) minus
   (wall time with N = 0), on the lab (``run`` only) and on QEMU (the process; N = 0 measures its
   start-up). Goal: >= 200,000 per second on the lab. The unmapped address is found by Unicorn's
   memory hook, which ends the slice, so that loop measures the machine's Python path; an
   alignment-fault loop (LDXR from a misaligned RAM address, the same handler) measures an abort
   the CPU model raises, which the compiled hook enters (docs/machine.md, "Exceptions").

QEMU runs take the fastest of a few tries (the machine is shared); the lab runs once each.
Ratios, not assertions: the script fails only if a guest misbehaves.

Run: .venv/bin/python benchmarks/guest_time.py [--quick]
``--quick``: a short smoke run (2 ms busy-wait, 10x fewer iterations and exceptions); the busy-wait
goal is then judged on the lab's time scaled to 100 ms (start-up once plus ``run`` x 50).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sdeilab.lab.platform import make_platform
from sdeilab.machine.outcome import StopReason
from sdeilab.machine.qemu import qemu_binary, qemu_virt_command
from sdeilab.toolchain import build

HERE = Path(__file__).resolve().parent
SOURCES = [HERE / "guests" / "guest_time.c", HERE / "guests" / "guest_time.S", HERE / "guests" / "alu_loop.S"]
BUSY_MS = 100
QEMU_TRIES = 3
QEMU_TIMEOUT_S = 120.0


class GuestError(RuntimeError):
    """A guest did not end with SYSTEM_OFF, or printed something else on the lab than on QEMU."""


@dataclass
class LabRun:
    wall: float  # from make_platform to SYSTEM_OFF
    run: float  # platform.run() only
    retired: int
    uart: bytes
    engine: str  # the vCPU's fast paths and compiled hooks: the rates below depend on them


def build_guest(out: Path, mode: str, **defines: str) -> Path:
    name = "-".join([mode, *defines.values()]).lower()
    return build(SOURCES, out / f"guest_time-{name}.elf", defines={"MODE": f"MODE_{mode}", **defines})


def lab(elf: Path) -> LabRun:
    began = time.perf_counter()
    platform = make_platform()
    platform.load(elf)
    started = time.perf_counter()
    outcome = platform.run()
    ended = time.perf_counter()
    if outcome.reason is not StopReason.SYSTEM_OFF:
        raise GuestError(f"{elf.name} on the lab: {outcome.reason.value}: {outcome.detail}")
    machine = platform.machine
    backend = machine.vcpus[0].backend
    engine = (f"fast paths {','.join(sorted(backend.fast_paths)) or 'none'}, compiled hooks "  # type: ignore[attr-defined]
              f"{'on' if backend.compiled_hooks else 'off'}, compiled exception entry "  # type: ignore[attr-defined]
              f"{'on' if backend.compiled_entry else 'off'}")  # type: ignore[attr-defined]
    return LabRun(ended - began, ended - started, machine.retired, bytes(machine.uart_output), engine)


def qemu(elf: Path, tries: int = QEMU_TRIES) -> tuple[float, bytes]:
    """The fastest wall time of ``tries`` QEMU runs of ``elf`` (process start to exit), and its UART bytes."""
    best, uart = float("inf"), b""
    with tempfile.TemporaryDirectory(prefix="sdeilab-qemu-") as tmp:
        uart_file = Path(tmp) / "uart0.bin"
        command = qemu_virt_command(elf, 1, extra=["-monitor", "none", "-serial", f"file:{uart_file}"])
        for _ in range(tries):
            uart_file.unlink(missing_ok=True)
            began = time.perf_counter()
            proc = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=QEMU_TIMEOUT_S,
                                  check=False)
            elapsed = time.perf_counter() - began
            uart = uart_file.read_bytes() if uart_file.exists() else b""
            if proc.returncode != 0:
                raise GuestError(f"{elf.name} on QEMU: exit status {proc.returncode} "
                                 f"{proc.stderr.decode(errors='replace')!r}, UART {uart!r}")
            best = min(best, elapsed)
    return best, uart


def same_output(elf: Path, lab_uart: bytes, qemu_uart: bytes) -> None:
    if lab_uart != qemu_uart:
        raise GuestError(f"{elf.name}: the lab printed {lab_uart!r}, QEMU {qemu_uart!r}")


ROWS: list[tuple[str, str, str, str, str, str]] = []


def row(what: str, lab_value: str, anchor: str, ratio: str, goal: str, met: bool | None) -> None:
    ROWS.append((what, lab_value, anchor, ratio, goal, "-" if met is None else "met" if met else "NOT met"))


def print_table() -> None:
    header = ("measurement", "lab", "anchor", "ratio", "goal", "")
    widths = [max(len(r[i]) for r in [header, *ROWS]) for i in range(len(header))]
    for r in [header, *ROWS]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())


def busy_wait(out: Path, ms: int, have_qemu: bool) -> None:
    elf = build_guest(out, "BUSY", BUSY_MS=str(ms))
    run = lab(elf)
    print(f"  busy-wait {ms} ms: {run.uart.decode(errors='replace').strip()!r}, lab retired {run.retired:,} "
          f"instructions, run() {run.run:.2f} s, start-up (make_platform + load) {run.wall - run.run:.2f} s")
    scaled = run.wall - run.run + run.run * BUSY_MS / ms  # start-up once, the loop scaled
    goal = f"lab < 1 s per {BUSY_MS} ms" + ("" if ms == BUSY_MS else f" (scaled from {ms} ms: {scaled:.2f} s)")
    if have_qemu:
        t_qemu, uart = qemu(elf)
        same_output(elf, run.uart, uart)
        row(f"busy-wait {ms} ms on CNTVCT_EL0, wall", f"{run.wall:.3f} s", f"QEMU {t_qemu:.3f} s",
            f"lab/QEMU {run.wall / t_qemu:.1f}x", goal, scaled < 1.0)
    else:
        row(f"busy-wait {ms} ms on CNTVCT_EL0, wall", f"{run.wall:.3f} s", "QEMU not installed", "-", goal,
            scaled < 1.0)


def mrs_vs_alu(out: Path, mrs_iterations: int, alu_iterations: int) -> None:
    mrs = lab(build_guest(out, "MRS", ITERATIONS=f"{mrs_iterations}UL"))
    alu = lab(build_guest(out, "ALU", ITERATIONS=f"{alu_iterations}UL"))
    mips_mrs, mips_alu = mrs.retired / mrs.run / 1e6, alu.retired / alu.run / 1e6
    print(f"  MRS loop {mrs_iterations:,} x 10 instructions: {mrs.run:.2f} s; "
          f"ALU loop {alu_iterations:,} x 10: {alu.run:.2f} s")
    ratio = mips_mrs / mips_alu
    row("MRS loop (SP_EL0, MPIDR_EL1, CNTVCT_EL0), guest MIPS", f"{mips_mrs:.2f} MIPS",
        f"lab ALU loop {mips_alu:.1f} MIPS", f"MRS/ALU {ratio:.3f}x", "MRS/ALU >= 0.5x", ratio >= 0.5)


def exceptions(out: Path, mode: str, label: str, n_lab: int, n_qemu: int, have_qemu: bool) -> None:
    zero = build_guest(out, mode, COUNT="0UL")
    lab_zero, lab_n = lab(zero), lab(elf_n := build_guest(out, mode, COUNT=f"{n_lab}UL"))
    lab_rate = n_lab / max(lab_n.run - lab_zero.run, 1e-9)
    print(f"  {label}: lab {n_lab:,} in run() {lab_n.run:.2f} s (N=0: {lab_zero.run:.3f} s) "
          f"{lab_n.uart.decode(errors='replace').strip()!r}; {lab_n.engine}")
    goal = "lab >= 200,000/s"
    if not have_qemu:
        row(f"{label}, exceptions/s", f"{lab_rate:,.0f}/s", "QEMU not installed", "-", goal, lab_rate >= 200_000)
        return
    t_zero, uart_zero = qemu(zero)
    same_output(zero, lab_zero.uart, uart_zero)
    qemu_elf = elf_n if n_qemu == n_lab else build_guest(out, mode, COUNT=f"{n_qemu}UL")
    t_n, uart_n = qemu(qemu_elf)
    if qemu_elf == elf_n:
        same_output(elf_n, lab_n.uart, uart_n)
    else:  # the same guest with the lab's N on QEMU too, for the output comparison
        same_output(elf_n, lab_n.uart, qemu(elf_n, tries=1)[1])
    qemu_rate = n_qemu / max(t_n - t_zero, 1e-9)
    print(f"  {label}: QEMU {n_qemu:,} in {t_n:.3f} s, start-up (N=0) {t_zero:.3f} s")
    row(f"{label}, exceptions/s", f"{lab_rate:,.0f}/s", f"QEMU {qemu_rate:,.0f}/s",
        f"lab/QEMU {lab_rate / qemu_rate:.3f}x", goal, lab_rate >= 200_000)


def linux_pointer() -> None:
    script = HERE / "linux_boot.py"
    if script.is_file() and "QEMU" in script.read_text(encoding="utf-8"):
        row("Debian Linux boot to init, wall", "see benchmarks/linux_boot.py", "QEMU TCG (same kernel, initramfs)",
            "(not re-run here)", "issue 6: within 10x", None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (2 ms busy-wait, 10x less work)")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    busy_ms = 2 if args.quick else BUSY_MS
    have_qemu = qemu_binary() is not None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        print("details:")
        busy_wait(out, busy_ms, have_qemu)
        mrs_vs_alu(out, 1_000_000 // scale, 20_000_000 // scale)
        exceptions(out, "SVC", "SVC #0 + ERET loop", 200_000 // scale, 2_000_000 // scale, have_qemu)
        exceptions(out, "FAULT", "data abort + skip loop", 200_000 // scale, 2_000_000 // scale, have_qemu)
        exceptions(out, "ALIGN", "alignment fault + skip loop", 200_000 // scale, 2_000_000 // scale, have_qemu)
    linux_pointer()
    print()
    print_table()
    print("lab output = QEMU output and SYSTEM_OFF on both: checked for every guest" if have_qemu
          else "qemu-system-aarch64 not installed: no QEMU anchors, lab outputs not compared")


if __name__ == "__main__":
    main()
