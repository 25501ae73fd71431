"""A device write that ends the slice (it moves a deadline) happens once and retires once.

Unicorn leaves PC at a store whose MMIO callback asked to stop, so without care the store
would run twice: two device writes, and a guest stuck re-arming its timer forever.
"""

from __future__ import annotations

from pathlib import Path

from sdeilab.lab.platform import make_platform
from sdeilab.machine.outcome import StopReason
from sdeilab.trace.log import TraceLog
from sdeilab.trace.records import SmcccCall

GUEST = """
    .global main
main:
    ldr x1, =0x090C0000         // SP804 timer 1
    mov w0, #1000
    str w0, [x1, #0x00]         // LOAD: moves the device deadline, stops the slice
    mov w0, #0xA3               // ENABLE | INTEN | 32BIT | ONESHOT
    str w0, [x1, #0x08]!        // CONTROL, with base write-back
    mov x2, #3
1:  subs x2, x2, #1
    b.ne 1b
    ldr x0, =0x84000000         // PSCI_VERSION: a fact stamped with the exact vtime
    hvc #0
    ldr x0, =0x84000008         // SYSTEM_OFF
    hvc #0
"""


def run(elf: Path) -> tuple[list[tuple[int, int]], int, int]:
    trace = TraceLog()
    platform = make_platform(1, trace=trace)
    writes: list[tuple[int, int]] = []
    sp804 = platform.machine.sp804
    original = sp804.write

    def spy(offset: int, size: int, value: int, now: int) -> None:
        writes.append((offset, value))
        original(offset, size, value, now)

    sp804.write = spy  # type: ignore[method-assign]
    platform.load(elf)
    outcome = platform.run(10_000_000)
    assert outcome.reason is StopReason.SYSTEM_OFF, outcome.detail
    call = trace.of_kind(SmcccCall)[0]
    return writes, call.vtime, platform.machine.vcpus[0].backend.x(1)


def test_stopping_store_writes_once_and_counts_once(asm_guest) -> None:  # type: ignore[no-untyped-def]
    writes, vtime, x1 = run(asm_guest(GUEST))
    assert writes == [(0x00, 1000), (0x08, 0xA3)]
    assert x1 == 0x090C0008  # the replayed store completed its write-back, once
    # The same instruction stream with the stores aimed at RAM (no stop) reaches the HVC at the
    # same virtual time: the interrupted store was counted exactly once.
    writes_ram, vtime_ram, _ = run(asm_guest(GUEST.replace("0x090C0000", "0x40F00000"), "ram"))
    assert writes_ram == []
    assert vtime == vtime_ram
