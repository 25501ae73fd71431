"""Facts hold plain values, so Python's cycle collector never walks the trace.

A tuple holding only ints, strs, floats, bools and None (and tuples of them) is untracked by the
cycle collector at its first collection; one holding an enum member (an IntEnum result, a StrEnum
conduit or power state) stays tracked, and every collection then walks every fact kept: that cost
an HVC round trip 2.9 -> 3.9 us (sdeilab.trace.log.TraceLog.add). These runs cover the calls,
results, dispatches, power transitions, interrupts and faults the shipped guests make.
"""

from __future__ import annotations

import gc

import pytest

from sdeilab.lab.platform import make_platform
from sdeilab.toolchain import guests_dir

PLAIN = (int, str, float, bool, type(None))


def _plain(value: object) -> bool:
    if type(value) is tuple:
        return all(_plain(item) for item in value)
    return type(value) in PLAIN


@pytest.mark.parametrize("guest,profile", [
    ("sdei/tftf_state", "virt"), ("sdei/nesting-smc", "firmware"), ("sdei/cpu_on_masking", "virt"),
    ("sdei/vmm_watchdog", "kvm-vmm-psci-sdei"), ("psci_tour", "virt"), ("smp_boot", "virt"),
    ("timer_irq", "virt"), ("watchpoint", "virt")])
def test_every_fact_payload_is_plain_and_untracked(guest: str, profile: str) -> None:
    platform = make_platform(4, profile)
    platform.load(guests_dir() / f"{guest}.elf")
    platform.run(2_000_000_000)
    trace = platform.machine.trace
    assert len(trace) > 20, f"{guest} recorded almost nothing"
    payloads = trace._payload
    kinds = [type(trace[i]).__name__ for i in range(len(trace))]
    odd = [(kinds[i], p) for i, p in enumerate(payloads) if not _plain(p)]
    assert not odd, f"facts holding other than plain values: {odd[:5]}"
    for _ in range(3):  # a tuple is untracked once its items are: nested ones take a collection each
        gc.collect()
    tracked = [(kinds[i], p) for i, p in enumerate(payloads) if gc.is_tracked(p)]
    assert not tracked, f"payloads the cycle collector still tracks: {tracked[:5]}"
