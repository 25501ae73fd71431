"""The lab's own cost of a forwarded call (KVM -> VMM, KVM_EXIT_HYPERCALL) against a call the lowest
layer answers, measured in one run: the same guest loop of SDEI_VERSION calls on `kvm-vmm-sdei`
(forwarded to the VMM) and on `virt` (answered in the kernel), plus PSCI_VERSION on `kvm` as the
plain-hypercall floor.

What this measures is the emulator's bookkeeping (routing through the filter, the LayerExit
fact), not hardware: the modelled hardware costs are in docs/profiles.md.

Run: .venv/bin/python benchmarks/forward_cost.py [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sdeilab.lab.platform import make_platform
from sdeilab.toolchain import build_source_text
from sdeilab.trace import LayerExit, TraceLog

LOOP = """
    .global main
main:
    ldr x19, ={count}
1:  ldr x0, ={fid:#x}
    hvc #0
    subs x19, x19, #1
    b.ne 1b
    ldr x0, =0x84000008        // SYSTEM_OFF
    hvc #0
"""


def per_call_us(elf: Path, profile: str, count: int) -> tuple[float, int]:
    trace = TraceLog()
    platform = make_platform(1, profile, trace=trace)
    platform.load(elf)
    began = time.process_time()
    outcome = platform.run()
    elapsed = time.process_time() - began
    assert outcome.exit_status == 0, outcome
    return elapsed / count * 1e6, trace.count(LayerExit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    count = 20_000 if parser.parse_args().quick else 200_000
    with tempfile.TemporaryDirectory() as tmp:
        sdei = build_source_text(LOOP.format(count=count, fid=0xC400_0020), "asm", Path(tmp) / "sdei.elf")
        psci = build_source_text(LOOP.format(count=count, fid=0x8400_0000), "asm", Path(tmp) / "psci.elf")
        forwarded, exits = per_call_us(sdei, "kvm-vmm-sdei", count)
        in_kernel, _ = per_call_us(sdei, "virt", count)
        floor, _ = per_call_us(psci, "kvm", count)
    assert exits == count + 0, exits  # every SDEI_VERSION left the kernel; SYSTEM_OFF did not
    print(f"{count:,} SDEI_VERSION calls each way (process CPU time per call)")
    print(f"  forwarded to the VMM (kvm-vmm-sdei) {forwarded:.2f} us | answered in the kernel (virt) {in_kernel:.2f} us"
          f" | PSCI_VERSION in the kernel (kvm) {floor:.2f} us")
    print(f"  forwarded / in-kernel = {forwarded / in_kernel:.2f}x")


if __name__ == "__main__":
    main()
