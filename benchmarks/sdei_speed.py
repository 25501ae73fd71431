"""The SDEI round trip, measured in one run against a plain hypercall (issue 3).

One event = EVENT_SIGNAL (a hypercall), the dispatch into the handler once the call returns, and
EVENT_COMPLETE (a hypercall that restores the interrupted context): three firmware entries. The
ratio is printed for information only: issue 18 retired issue 3's "at most 4x one HVC" target,
which penalised every speed-up of the plain call path. The goal is now set against the real peer,
TF-A on QEMU, by benchmarks/sdei_vs_tfa.py.

The two programs run alternately for several rounds in one process and the fastest round of
each is compared (the median is printed too): on a shared machine other work only ever adds
time, so the minimum is the best estimate of what the lab itself costs. Rounds are timed in
the CPU time of the thread that runs them (hooks run on it too), which leaves out the time the
thread was not scheduled; wall time is printed beside it. A host whose CPU is shared below the
guest kernel (a VM's steal time) still slows both, so successive runs can differ by 10-20%.

Run: .venv/bin/python benchmarks/sdei_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from sdeilab.lab.platform import make_platform
from sdeilab.toolchain import build
from sdeilab.trace import SdeiComplete

HERE = Path(__file__).resolve().parent


def timed_run(elf: Path) -> tuple[float, float, object]:
    """CPU seconds and wall seconds of one run, and its trace."""
    platform = make_platform(1)
    platform.load(elf)
    wall, cpu = time.perf_counter(), time.thread_time()
    outcome = platform.run()
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    assert outcome.exit_status == 0, outcome
    return cpu, wall, platform.machine.trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    count = 10_000 if args.quick else 100_000
    sdei_cpu: list[float] = []
    hvc_cpu: list[float] = []
    sdei_wall: list[float] = []
    hvc_wall: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        source = [HERE / "guests" / "sdei_bench.S"]
        # The same program twice: once with `count` events, once with `count` plain hypercalls.
        sdei_elf = build(source, Path(tmp) / "sdei.elf", defines={"SDEI_COUNT": str(count), "HVC_COUNT": "1"})
        hvc_elf = build(source, Path(tmp) / "hvc.elf", defines={"SDEI_COUNT": "1", "HVC_COUNT": str(count)})
        for _ in range(max(1, args.rounds)):
            cpu, wall, trace = timed_run(sdei_elf)
            completes = trace.count(SdeiComplete)  # type: ignore[attr-defined]
            assert completes == count, completes
            sdei_cpu.append(cpu / count)
            sdei_wall.append(wall / count)
            cpu, wall, _ = timed_run(hvc_elf)
            hvc_cpu.append(cpu / count)
            hvc_wall.append(wall / count)
    ratios = sorted(s / h for s, h in zip(sdei_cpu, hvc_cpu, strict=True))
    print(f"{count:,} events (EVENT_SIGNAL -> handler -> EVENT_COMPLETE) against {count:,} HVC PSCI_VERSION,"
          f" {len(sdei_cpu)} alternating rounds")
    for label, sdei, hvc in (("CPU time", min(sdei_cpu), min(hvc_cpu)), ("wall time", min(sdei_wall), min(hvc_wall))):
        print(f"  {label:9}: SDEI round trip {sdei * 1e6:.2f} us | HVC round trip {hvc * 1e6:.2f} us"
              f" (fastest round of each): SDEI / HVC = {sdei / hvc:.2f}x")
    print(f"  SDEI / HVC = {min(sdei_cpu) / min(hvc_cpu):.2f}x in CPU time (no target: see sdei_vs_tfa.py);"
          f" per-round ratios median"
          f" {statistics.median(ratios):.2f}x, range {ratios[0]:.2f}-{ratios[-1]:.2f}x")

if __name__ == "__main__":
    main()
