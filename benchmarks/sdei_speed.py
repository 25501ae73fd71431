"""The SDEI round trip, measured in one run against a plain hypercall (issue 3's target).

One event = EVENT_SIGNAL (a hypercall), the dispatch into the handler at the next slice
boundary, and EVENT_COMPLETE (a hypercall that restores the interrupted context): three firmware
entries, so the target is at most 4x one HVC round trip.

Run: .venv/bin/python benchmarks/sdei_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sdeilab.firmware.platform import make_platform
from sdeilab.toolchain import build
from sdeilab.trace import SdeiComplete

HERE = Path(__file__).resolve().parent


def timed_run(elf: Path) -> tuple[float, object]:
    platform = make_platform(1)
    platform.load(elf)
    began = time.perf_counter()
    outcome = platform.run()
    elapsed = time.perf_counter() - began
    assert outcome.exit_status == 0, outcome
    return elapsed, platform.machine.trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    count = 10_000 if parser.parse_args().quick else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        source = [HERE / "guests" / "sdei_bench.S"]
        # The same program twice: once with `count` events, once with `count` plain hypercalls.
        sdei_elf = build(source, Path(tmp) / "sdei.elf", defines={"SDEI_COUNT": str(count), "HVC_COUNT": "1"})
        hvc_elf = build(source, Path(tmp) / "hvc.elf", defines={"SDEI_COUNT": "1", "HVC_COUNT": str(count)})
        t_sdei, trace = timed_run(sdei_elf)
        t_hvc, _ = timed_run(hvc_elf)
    completes = trace.count(SdeiComplete)  # type: ignore[attr-defined]
    assert completes == count, completes
    print(f"{count:,} events (EVENT_SIGNAL -> handler -> EVENT_COMPLETE) against {count:,} HVC PSCI_VERSION")
    print(f"  SDEI round trip {t_sdei / count * 1e6:.2f} us | HVC round trip {t_hvc / count * 1e6:.2f} us")
    print(f"  SDEI / HVC = {t_sdei / t_hvc:.2f}x   (target <= 4x)")


if __name__ == "__main__":
    main()
