"""The trace at a million facts: append rate, bytes per record, query times against a full scan.

The facts are representative because they are real: one run of the TF-A state-machine scenario
(guests/sdei/tftf_state.elf, 4 CPUs) is replayed, lap after lap with its vtimes shifted, until
1,000,000 facts were appended. Each replayed payload is rebuilt with new objects wherever the
firmware makes new ones (numbers read from registers, argument tuples, formatted strings), so
memory is not flattered by the replay; names from tables stay shared, as they are in a run.

Bytes per record are sys.getsizeof summed over the log's columns, indexes and every distinct
object its payloads reach, divided by the record count: once as appended, once after the first
query has built the indexes (which also shares equal payload tuples). Query times are compared,
in the same run, with a full scan doing the same filtering; the ratio is scan time / query time.
The timeline is drawn (Agg, to PNG in memory) at 10^5 and 10^6 records, indexes built; wall
and CPU seconds are both printed, because on a shared machine the wall clock also counts others.

Run: .venv/bin/python benchmarks/trace_scale.py [--records N]
"""

from __future__ import annotations

import argparse
import gc
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from sdeilab.lab.platform import make_platform
from sdeilab.trace import SdeiDispatch, TraceLog
from sdeilab.trace.records import FACT_KINDS, Fact
from sdeilab.viz import timeline

ROOT = Path(__file__).resolve().parent.parent
GUEST = ROOT / "guests" / "sdei" / "tftf_state.elf"


def template() -> list[tuple[type[Fact], int, int, tuple[object, ...]]]:
    log = TraceLog()
    platform = make_platform(4, trace=log)
    platform.load(GUEST)
    platform.run()
    return [(FACT_KINDS[log._kind[i]], log._cpu[i], log._vtime[i], log._payload[i]) for i in range(len(log))]


def fresh(value: object) -> object:
    """A new object equal to ``value`` where the firmware would make a new one for each fact."""
    if type(value) is int:
        return value + 0  # a new int object beyond CPython's small-int cache (-5..256)
    if type(value) is tuple:
        return tuple(fresh(v) for v in value)
    if type(value) is str and any(c.isdigit() for c in value):
        return (value + ".")[:-1]  # formatted at run time ("interrupt 42"): a new string
    return value


def deep_size(log: TraceLog) -> int:
    """sys.getsizeof over the columns, indexes and each distinct object the payloads reach."""
    seen: set[int] = set()

    def size(obj: object) -> int:
        if id(obj) in seen:
            return 0
        seen.add(id(obj))
        total = sys.getsizeof(obj)
        if type(obj) is tuple:
            total += sum(size(v) for v in obj)
        return total

    total = sum(sys.getsizeof(c) for c in (log._kind, log._cpu, log._vtime, log._payload, log._block_max))
    total += sum(size(p) for p in log._payload)
    for index in (log._by_kind, log._by_cpu, log._by_event):
        total += sys.getsizeof(index) + sum(sys.getsizeof(a) for a in index.values())
    total += sum(sys.getsizeof(d) for d in log._interned.values())
    return total


def timed(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        began = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - began)
    return best, result


def draw_time(log: TraceLog) -> tuple[float, float]:
    """Wall and CPU seconds to derive the timeline's data, draw it and render it to a PNG."""
    wall, cpu = time.perf_counter(), time.process_time()
    figure = Figure(figsize=(16, 6), layout="constrained")
    timeline(figure.add_subplot(), log)
    figure.savefig(io.BytesIO(), format="png", dpi=80)
    return time.perf_counter() - wall, time.process_time() - cpu


def build(facts: list[tuple[type[Fact], int, int, tuple[object, ...]]], count: int) -> tuple[TraceLog, float]:
    lap = facts[-1][2] + 1000
    staged = [(k, c, v + (i // len(facts)) * lap, fresh(p)) for i in range(count)
              for k, c, v, p in (facts[i % len(facts)],)]
    log = TraceLog()
    add = log.add
    began = time.perf_counter()
    for kind, cpu, vtime, payload in staged:
        add(kind, cpu, vtime, *payload)
    elapsed = time.perf_counter() - began
    del staged
    gc.collect()
    return log, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    count = parser.parse_args().records
    facts = template()
    print(f"template: {len(facts)} facts of one 4-CPU run of {GUEST.name}, replayed to {count:,} facts")

    log, append_s = build(facts, count)
    print(f"append: {count / append_s:,.0f} records/s ({append_s:.2f} s for {count:,})")
    print(f"bytes/record as appended:        {deep_size(log) / count:6.1f}")
    began = time.perf_counter()
    log.seqs(cpu=0, start=0, end=1)
    print(f"first query (builds the indexes, shares payloads): {time.perf_counter() - began:.2f} s")
    print(f"bytes/record with indexes built: {deep_size(log) / count:6.1f}   (target: about 100)")

    end = log.max_vtime()
    window = (end // 2, end // 2 + end // 100)  # 1% of the run, in the middle
    kinds, cpus, vtimes = log._kind, log._cpu, log._vtime
    code = SdeiDispatch.CODE
    cases: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
        ("seqs by cpu (cpu 2)", lambda: log.seqs(cpu=2), lambda: [s for s in range(len(log)) if cpus[s] == 2]),
        ("seqs by kind in a 1% window", lambda: log.seqs(SdeiDispatch, start=window[0], end=window[1]),
         lambda: [s for s in range(len(log)) if kinds[s] == code and window[0] <= vtimes[s] < window[1]]),
        ("facts by kind in a 1% window", lambda: log.select(SdeiDispatch, start=window[0], end=window[1]),
         lambda: [f for f in log if isinstance(f, SdeiDispatch) and window[0] <= f.vtime < window[1]]),
        ("facts by event and cpu in a 1% window", lambda: log.select(event=2000, cpu=1, start=window[0],
                                                                     end=window[1]),
         lambda: [f for f in log if getattr(f, "event", None) == 2000 and f.cpu == 1
                  and window[0] <= f.vtime < window[1]]),
    ]
    print(f"{'query':40s} {'indexed':>10s} {'full scan':>10s} {'ratio':>8s}")
    for name, query, scan in cases:
        t_query, got = timed(query)
        t_scan, want = timed(scan, repeat=1)
        assert list(got) == list(want), name  # the benchmark measures correct answers only
        print(f"{name:40s} {t_query * 1e3:8.2f}ms {t_scan * 1e3:8.1f}ms {t_scan / t_query:7.0f}x")

    # Wall time depends on what else the machine runs; CPU time is this process's own share.
    for n in (100_000, count):
        sub = log if n == count else build(facts, n)[0]
        sub.seqs(cpu=0, start=0, end=1)  # indexes built, as after any earlier query
        wall, cpu = draw_time(sub)
        print(f"timeline drawn (Agg, 16x6 in, PNG) at {n:>9,} records: {wall:.2f} s wall, {cpu:.2f} s CPU"
              "   (target < 2 s at 10^6)")


if __name__ == "__main__":
    main()
