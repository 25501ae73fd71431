"""Speed of the lab's machine against raw Unicorn, measured in one run (issue 2's targets).

Prints, for the same guest code:
* deterministic guest MIPS on an ALU loop, 1 and 4 vCPUs, as a ratio to raw Unicorn with no
  hooks (count=0, not deterministic across vCPUs) and to a bare ``count=`` quantum loop (the
  deterministic baseline; target: the lab at >= 0.9x of it);
* the HVC round trip (PSCI_VERSION) through the full dispatcher with tracing, as a ratio to a
  minimal hook registered through raw ctypes that reads x0 and writes x0 (target: <= 2x).

Run: .venv/bin/python benchmarks/machine_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import ctypes
import tempfile
import time
from pathlib import Path

from unicorn import UC_ARCH_ARM64, UC_HOOK_INTR, UC_MODE_ARM, Uc
from unicorn import arm64_const as a64
from unicorn.unicorn_py3.unicorn import uclib

from sdeilab.lab.platform import make_platform
from sdeilab.machine.loader import GuestImage, load_elf
from sdeilab.machine.machine import DEFAULT_QUANTUM
from sdeilab.machine.memmap import VIRT_MEMMAP, Region
from sdeilab.toolchain import build

HERE = Path(__file__).resolve().parent
RAM = VIRT_MEMMAP[Region.RAM]
INSNS_PER_ITERATION = 10
HVC_INSNS_PER_ITERATION = 4


def build_guest(out: Path, cpus: int, iterations: int, hvcs: int) -> Path:
    defines = {"CPUS": str(cpus), "ITERATIONS": f"{iterations}UL", "HVCS": f"{hvcs}UL"}
    return build([HERE / "guests" / "bench.c", HERE / "guests" / "alu_loop.S"],
                 out / f"bench-{cpus}-{iterations}-{hvcs}.elf", defines=defines)


def symbol(image: GuestImage, name: str) -> int:
    return next(a for a, n in image.symbols.items() if n == name)


def raw_uc(image: GuestImage) -> Uc:
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    uc.ctl_set_cpu_model(a64.UC_CPU_ARM64_A57)
    uc.mem_map(RAM.base, RAM.size)
    for segment in image.segments:
        uc.mem_write(segment.address, segment.data)
    uc.reg_write(a64.UC_ARM64_REG_CP_REG, (1, 1, 3, 6, 0, 0x501))  # SCR_EL3 = NS|HCE|RW: HVC traps
    return uc


def raw_alu(image: GuestImage, cpus: int, iterations: int, quantum: int) -> float:
    """Seconds for ``cpus`` engines to run alu_loop: count=0 one after another, or round-robin quanta."""
    start, stop = symbol(image, "alu_loop"), symbol(image, "alu_loop_ret")
    engines = [raw_uc(image) for _ in range(cpus)]
    for uc in engines:
        uc.reg_write(a64.UC_ARM64_REG_X0, iterations)
        uc.reg_write(a64.UC_ARM64_REG_PC, start)
    began = time.perf_counter()
    if quantum == 0:
        for uc in engines:
            uc.emu_start(start, stop)
    else:
        live = list(engines)
        while live:
            for uc in list(live):
                uc.emu_start(uc.reg_read(a64.UC_ARM64_REG_PC), stop, count=quantum)
                if uc.reg_read(a64.UC_ARM64_REG_PC) == stop:
                    live.remove(uc)
    return time.perf_counter() - began


def raw_hvc(image: GuestImage, count: int) -> float:
    """Seconds for hvc_loop(count) with a minimal raw-ctypes hook: read x0, write the answer to x0."""
    uc = raw_uc(image)
    uch = uc._uch
    value = ctypes.c_uint64()
    pointer = ctypes.c_void_p(ctypes.addressof(value))

    def hook(_uc: int, _intno: int, _user: int) -> None:
        uclib.uc_reg_read(uch, a64.UC_ARM64_REG_X0, pointer)
        value.value = 0x10001
        uclib.uc_reg_write(uch, a64.UC_ARM64_REG_X0, pointer)

    callback = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p)(hook)
    handle = ctypes.c_size_t()
    uclib.uc_hook_add(uch, ctypes.byref(handle), UC_HOOK_INTR, ctypes.cast(callback, ctypes.c_void_p), None,
                      ctypes.c_uint64(1), ctypes.c_uint64(0))
    start, stop = symbol(image, "hvc_loop"), symbol(image, "hvc_loop_ret")
    uc.reg_write(a64.UC_ARM64_REG_X0, count)
    began = time.perf_counter()
    uc.emu_start(start, stop)
    return time.perf_counter() - began


def lab(elf: Path, cpus: int) -> tuple[float, int]:
    platform = make_platform(cpus)
    platform.load(elf)
    began = time.perf_counter()
    outcome = platform.run()
    elapsed = time.perf_counter() - began
    assert outcome.exit_status == 0, outcome
    return elapsed, platform.machine.retired


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x less work (a smoke run)")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    iterations, hvcs = 20_000_000 // scale, 200_000 // scale
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        print(f"ALU loop: {iterations:,} iterations x {INSNS_PER_ITERATION} instructions per vCPU; "
              f"quantum {DEFAULT_QUANTUM:,}")
        for cpus in (1, 4):
            elf = build_guest(out, cpus, iterations, 0)
            image = load_elf(elf, RAM)
            insns = cpus * iterations * INSNS_PER_ITERATION
            t_raw = raw_alu(image, cpus, iterations, 0)
            t_bare = raw_alu(image, cpus, iterations, DEFAULT_QUANTUM)
            t_lab, retired = lab(elf, cpus)
            mips = retired / t_lab / 1e6
            print(f"  {cpus} vCPU: lab {mips:7.1f} MIPS | raw Unicorn no hooks {insns / t_raw / 1e6:7.1f} MIPS "
                  f"| bare count= quanta {insns / t_bare / 1e6:7.1f} MIPS")
            print(f"          lab / raw = {t_raw / t_lab * retired / insns:.3f}x   "
                  f"lab / bare quantum loop = {t_bare / t_lab * retired / insns:.3f}x   (target >= 0.9x)")
        elf = build_guest(out, 1, 1, hvcs)
        image = load_elf(elf, RAM)
        t_raw = raw_hvc(image, hvcs)
        t_lab, _ = lab(elf, 1)
        print(f"HVC round trip (PSCI_VERSION), {hvcs:,} calls:")
        print(f"  lab (dispatcher + 2 trace facts per call) {t_lab / hvcs * 1e6:.2f} us | "
              f"raw-ctypes minimal hook {t_raw / hvcs * 1e6:.2f} us")
        print(f"  lab / raw = {t_lab / t_raw:.2f}x   (target <= 2x)")


if __name__ == "__main__":
    main()
