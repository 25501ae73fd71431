"""The trace log queried from other threads while a run appends to it (the dashboard's case: the
run thread refreshes views between chunks while the plot worker reads the log).

Appends come from the run thread only; queries may come from any thread at any time, and each
sees a consistent log: every fact indexed exactly once, in ``seq`` order.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from sdeilab.lab.session import Session
from sdeilab.trace import FACT_KINDS, SdeiTransition, SmcccCall, TraceLog

ROOT = Path(__file__).resolve().parent.parent
TFTF_RM_ANY = ROOT / "guests" / "sdei" / "tftf_rm_any.elf"  # about 27,000 facts in 0.2 s


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Switch threads every few microseconds, so the interleavings a race needs happen in every run."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def assert_consistent(trace: TraceLog) -> None:
    total = len(trace)
    assert trace.seqs() == list(range(total))
    # Each kind's index (and each CPU's) holds each of its facts once, in order: a pass that ran
    # twice over the same records would append them twice.
    by_kind = [[s for s in trace.seqs(kind) if trace.kind_at(s) is kind] for kind in FACT_KINDS]
    assert sum(len(seqs) for seqs in by_kind) == total
    assert sorted(s for seqs in by_kind for s in seqs) == list(range(total))
    by_cpu = [trace.seqs(cpu=cpu) for cpu in [-1, *trace.cpus()]]
    assert sum(len(seqs) for seqs in by_cpu) == total
    for seqs in by_kind + by_cpu:
        assert all(a < b for a, b in pairwise(seqs))
    assert trace.count(SmcccCall) == sum(1 for f in trace if type(f) is SmcccCall)


def test_queries_from_other_threads_during_a_run_see_each_fact_once(busy_switching: None) -> None:
    session = Session(TFTF_RM_ANY)
    trace = session.trace
    done = threading.Event()
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            while not done.is_set():
                trace.events()
                trace.seqs(SdeiTransition, cpu=1)
                trace.count(SmcccCall)
                trace.max_vtime()
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    workers = [threading.Thread(target=hammer) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        # As the dashboard's run thread does between chunks (Lab._progress -> refresh).
        info = session.run(progress=lambda done, total: trace.events())
    finally:
        done.set()
        for worker in workers:
            worker.join()
    assert not errors, errors
    assert info.reason == "system-off" and len(trace) > 20_000
    assert_consistent(trace)
