"""Linux boot time on the lab against QEMU TCG, measured in one run (issue 6's target: within 10x).

Both boot the same Debian arm64 kernel and the same initramfs (sdeilab.linux, default init) on
2 CPUs; the clock stops when the init script's first line (``sdeilab-init: up``) has been printed:

* the lab: ``make_platform(2)``, ``load_kernel`` (its own device tree), ``run``, wall time from
  before the platform is made;
* QEMU: ``qemu-system-aarch64 -M virt,gic-version=3 -cpu cortex-a57 -smp 2 -m 512M -nographic
  -nic none -kernel IMAGE -initrd FILE -append ARGS``, wall time from the process start.

Rounds alternate lab and QEMU and the fastest of each is compared (the machine is shared).
``--profile`` also prints where the lab's time goes: the engine's hooks by kind (MRS, MSR, SYS,
and how many the machine actually emulates) and a cProfile of one boot.

Run: .venv/bin/python benchmarks/linux_boot.py [--rounds N] [--profile]
Needs Debian's kernel and busybox in the cache (./scripts/setup.sh) and qemu-system-aarch64.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from sdeilab.lab.platform import DEFAULT_BOOTARGS, make_platform
from sdeilab.linux import busybox, kernel_image, write_initramfs
from sdeilab.linux.initramfs import INIT_TAG
from sdeilab.machine.qemu import qemu_binary, qemu_virt_command

FIRST_LINE = f"{INIT_TAG} up".encode()
BUDGET = 3_000_000_000
QEMU_TIMEOUT_S = 300


def lab_boot(kernel: Path, initrd: Path) -> tuple[float, int]:
    """Seconds to the init script's first line, and the instructions retired by then."""
    start = time.perf_counter()
    platform = make_platform(2)
    machine = platform.machine
    seen = bytearray()
    done: list[float] = []

    def sink(byte: int) -> None:
        seen.append(byte)
        if byte == 0x0A and not done and FIRST_LINE in seen:
            done.append(time.perf_counter())
            machine.request_pause("first init line")

    machine.uart_sinks.append(sink)
    platform.load_kernel(kernel, initrd)
    outcome = machine.run(BUDGET)
    if not done:
        raise SystemExit(f"the lab did not reach the init script: {outcome.reason.value}: {outcome.detail}")
    return done[0] - start, machine.retired


def qemu_boot(kernel: Path, initrd: Path) -> float:
    if qemu_binary() is None:
        raise SystemExit("qemu-system-aarch64 is not installed (scripts/setup-debian.sh)")
    command = qemu_virt_command(kernel, 2, memory_mib=512, extra=["-initrd", str(initrd), "-append", DEFAULT_BOOTARGS])
    start = time.perf_counter()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    seen = b""
    try:
        while FIRST_LINE not in seen:
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                raise SystemExit(f"QEMU exited before the init script's first line:\n{seen.decode(errors='replace')}")
            seen += chunk
            if time.perf_counter() - start > QEMU_TIMEOUT_S:
                raise SystemExit("QEMU did not reach the init script in time")
        return time.perf_counter() - start
    finally:
        process.kill()
        process.wait()


def profile_lab(kernel: Path, initrd: Path) -> None:
    """A cProfile of one whole boot (to SYSTEM_OFF): the engine's hooks appear as _on_mrs, _on_msr
    and _on_sys (ncalls: every MRS, MSR and SYS executed), beside how many the machine handled."""
    platform = make_platform(2)
    machine = platform.machine
    emulated: Counter[str] = Counter()
    original = (machine.sysreg_read, machine.sysreg_write, machine.system_instruction)

    def sysreg_read(cpu: int, key: tuple[int, int, int, int, int]) -> int | None:
        emulated["MRS"] += 1
        return original[0](cpu, key)

    def sysreg_write(cpu: int, key: tuple[int, int, int, int, int], value: int) -> bool:
        emulated["MSR"] += 1
        return original[1](cpu, key, value)

    def system_instruction(cpu: int, key: tuple[int, int, int, int, int], value: int) -> None:
        emulated["SYS"] += 1
        original[2](cpu, key, value)

    machine.sysreg_read, machine.sysreg_write, machine.system_instruction = (  # type: ignore[method-assign]
        sysreg_read, sysreg_write, system_instruction)
    platform.load_kernel(kernel, initrd)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    outcome = machine.run(BUDGET)
    profiler.disable()
    elapsed = time.perf_counter() - start
    print(f"\nprofiled boot to {outcome.reason.value}: {machine.retired:,} instructions in {elapsed:.1f} s "
          f"(with cProfile); calls the machine handled: {dict(emulated)}")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(15)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    kernel = kernel_image()
    with tempfile.TemporaryDirectory(prefix="sdeilab-bench-") as tmp:
        initrd = write_initramfs(Path(tmp) / "initramfs.cpio.gz", busybox())
        lab_times, qemu_times = [], []
        retired = 0
        for round_ in range(args.rounds):
            lab_s, retired = lab_boot(kernel, initrd)
            qemu_s = qemu_boot(kernel, initrd)
            lab_times.append(lab_s)
            qemu_times.append(qemu_s)
            print(f"round {round_ + 1}: lab {lab_s:.2f} s ({retired / lab_s / 1e6:.1f} MIPS), qemu {qemu_s:.2f} s",
                  flush=True)
        lab_best, qemu_best = min(lab_times), min(qemu_times)
        print(f"kernel {kernel.name}, 2 CPUs, boot to the init script's first line "
              f"({retired:,} instructions on the lab)")
        print(f"lab  {lab_best:.2f} s  (fastest of {args.rounds})")
        print(f"qemu {qemu_best:.2f} s  (fastest of {args.rounds})")
        print(f"ratio lab/qemu = {lab_best / qemu_best:.1f}x  (goal: within 10x)")
        if args.profile:
            profile_lab(kernel, initrd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
