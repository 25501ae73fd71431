"""A seeded random-instruction tier: guests of random 32-bit words must end within their budget.

Each guest is 256 random words after a short prologue, looping back to its first word; with
vectors, every exception entry skips the faulting instruction (ELR += 4, ERET), so the guest runs
through its words until the budget ends. Every run must end with a documented exit status
(DESIGN.md section 3: 0, 3, 4 or 5), never a Python exception or a hang: guests run in child
processes with a wall-time limit. A failure names its seed; ``SDEILAB_RANDOM_SEED=N`` runs that
seed alone (in every configuration).
"""

from __future__ import annotations

import os
import random
import struct
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BASE = 0x4008_0000  # where the image goes: vectors at BASE, the prologue at BASE + 0x800
BUDGET = 100_000
WORDS = 256
GUESTS_PER_CONFIG = 25  # 4 configurations: 100 guests a run
WALL_LIMIT_S = 60.0
CONFIGS = [(cpus, vectors) for cpus in (1, 4) for vectors in (True, False)]

# Every vector entry: keep x0 in TPIDR_EL1, skip the instruction that raised it, ERET.
_SKIP = [0xD518D080, 0xD5384020, 0x91001000, 0xD5184020, 0xD538D080, 0xD69F03E0]  # msr tpidr_el1, x0;
# mrs x0, elr_el1; add x0, x0, #4; msr elr_el1, x0; mrs x0, tpidr_el1; eret
_SET_VBAR = [0xD2A80100, 0xD518C000]  # mov x0, #0x40080000; msr vbar_el1, x0


def guest_words(seed: int, vectors: bool) -> bytes:
    rng = random.Random(seed)
    table = b"".join(struct.pack("<6I", *_SKIP).ljust(0x80, b"\0") for _ in range(16))
    prologue = _SET_VBAR if vectors else []
    body = [rng.getrandbits(32) for _ in range(WORDS)]
    back = 0x1400_0000 | ((-WORDS) & 0x3FF_FFFF)  # b <first random word>
    return table + b"".join(struct.pack("<I", w) for w in [*prologue, *body, back])


def run_guest(seed: int, cpus: int, vectors: bool) -> tuple[int, str, int, float]:
    """In a child process: (exit status, outcome reason, instructions retired, seconds)."""
    from sdeilab.lab.platform import make_platform
    from sdeilab.machine.loader import GuestImage, Segment

    data = guest_words(seed, vectors)
    platform = make_platform(cpus)
    platform.machine.load_image(GuestImage(Path(f"random-{seed}"), BASE + 0x800, (Segment(BASE, data, len(data)),)))
    started = time.perf_counter()
    outcome = platform.run(BUDGET)
    return outcome.exit_status, outcome.reason.value, platform.machine.retired, time.perf_counter() - started


def _seeds() -> list[int]:
    chosen = os.environ.get("SDEILAB_RANDOM_SEED")
    if chosen is not None:
        return [int(chosen, 0)]
    return list(range(1, GUESTS_PER_CONFIG + 1))


CASES = [(seed, cpus, vectors) for cpus, vectors in CONFIGS for seed in _seeds()]


def _case_id(case: tuple[int, int, bool]) -> str:
    seed, cpus, vectors = case
    return f"seed{seed}-{cpus}cpu-{'vectors' if vectors else 'novectors'}"


@pytest.fixture(scope="module")
def results() -> dict[tuple[int, int, bool], object]:
    """All cases run at once on two worker processes; each result is a tuple or the exception."""
    out: dict[tuple[int, int, bool], object] = {}
    with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:
        futures = {case: pool.submit(run_guest, *case) for case in CASES}
        for case, future in futures.items():
            try:
                out[case] = future.result(timeout=WALL_LIMIT_S)
            except BaseException as error:  # reported per case below, with its seed
                out[case] = error
    return out


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_random_guest_ends_within_budget(results: dict[tuple[int, int, bool], object],
                                         case: tuple[int, int, bool]) -> None:
    seed = case[0]
    again = f"reproduce: SDEILAB_RANDOM_SEED={seed} pytest {__file__} -k '{_case_id(case)}'"
    result = results[case]
    assert isinstance(result, tuple), f"seed {seed}: {result!r} ({again})"
    status, reason, retired, _ = result
    assert status in (0, 3, 4, 5), f"seed {seed}: exit status {status} ({reason}; {again})"
    assert retired <= BUDGET, f"seed {seed}: retired {retired} > {BUDGET} ({again})"
