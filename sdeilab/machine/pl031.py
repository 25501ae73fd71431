"""Arm PrimeCell PL031 real-time clock (Arm DDI 0224), where QEMU's virt board has it (SPI 2).

The PL031 counts seconds in a 32-bit register (RTCDR) and raises its interrupt when the count
equals the match register (RTCMR). QEMU's model is followed where it departs from the TRM: the
clock always runs (RTCCR reads 1, writes are ignored), the match is armed afresh by a write to
RTCMR or RTCLR and fires once, a match equal to the count at that moment fires at once, and a
match behind the count waits for the count to wrap.

The time of day is ``epoch`` (seconds since 1970, a constant of the run) plus the machine's
virtual time, never the host's clock: two runs of a guest read the same times, and a guest that
sleeps in WFI until its alarm costs no wall time (the machine skips idle time to the device's
deadline). The interrupt line is recomputed from state after every change (kvmtool style).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import fdt

from sdeilab.machine.device import Wiring, apb_clocks
from sdeilab.machine.state import FieldState

NS_PER_SECOND = 1_000_000_000
# 2026-01-01T00:00:00Z: the time of day a run starts at unless told otherwise.
DEFAULT_EPOCH = 1_767_225_600

# Register offsets (DDI 0224 3.2).
RTCDR, RTCMR, RTCLR, RTCCR, RTCIMSC, RTCRIS, RTCMIS, RTCICR = 0x00, 0x04, 0x08, 0x0C, 0x10, 0x14, 0x18, 0x1C
# Peripheral and PrimeCell ID registers (DDI 0224 3.3): PL031 revision 0, as QEMU reports it.
ID_REGISTERS = {0xFE0: 0x31, 0xFE4: 0x10, 0xFE8: 0x14, 0xFEC: 0x00, 0xFF0: 0x0D, 0xFF4: 0xF0, 0xFF8: 0x05, 0xFFC: 0xB1}
_MASK32 = 0xFFFF_FFFF


class Pl031(FieldState):
    """The RTC of the virt board (board.py: 0x0901_0000, SPI 2)."""

    KEEPS_TIME: ClassVar[bool] = True
    NODE_NAME: ClassVar[str] = "pl031"
    COMPATIBLE: ClassVar[tuple[str, ...]] = ("arm,pl031", "arm,primecell")
    STATE = ("offset", "match", "loaded", "mask", "raw", "alarm", "_level")  # sdeilab.machine.state

    def __init__(self, set_irq: Callable[[bool], None], epoch: int = DEFAULT_EPOCH) -> None:
        if not 0 <= epoch <= _MASK32:
            raise ValueError(f"the RTC's epoch must fit its 32-bit count, not {epoch}")
        self._set_irq = set_irq
        self.epoch = epoch
        self.reset()

    @classmethod
    def build(cls, wiring: Wiring) -> Pl031:
        return cls(wiring.set_irq, wiring.rtc_epoch)

    @classmethod
    def fdt_properties(cls) -> list[fdt.Property]:
        # arm,pl031 (rtc/arm,pl031.yaml, an AMBA primecell): the bus clock only, as QEMU virt gives it.
        return apb_clocks("apb_pclk")

    def reset(self) -> None:
        self.offset = self.epoch  # the count at virtual time 0 (RTCLR moves it)
        self.match = 0
        self.loaded = 0
        self.mask = 0  # RTCIMSC: only bit 0 exists
        self.raw = 0  # RTCRIS
        self.alarm: int | None = None  # vtime at which the armed match fires
        self._level = False
        self._set_irq(False)

    def count(self, now: int) -> int:
        return (self.offset + now // NS_PER_SECOND) & _MASK32

    def next_deadline(self) -> int | None:
        return self.alarm

    def advance(self, now: int) -> None:
        if self.alarm is not None and self.alarm <= now:
            self.alarm = None
            self.raw = 1
        self._update()

    def _update(self) -> None:
        level = bool(self.raw & self.mask)
        if level != self._level:
            self._level = level
            self._set_irq(level)

    def _arm(self, now: int) -> None:
        # Seconds until the count reaches the match, modulo the 32-bit wrap: 0 fires now.
        seconds = (self.match - self.count(now)) & _MASK32
        if seconds == 0:
            self.alarm, self.raw = None, 1
        else:
            self.alarm = now + seconds * NS_PER_SECOND

    def read(self, offset: int, size: int, now: int) -> int:
        if offset == RTCDR:
            return self.count(now)
        registers = {RTCMR: self.match, RTCLR: self.loaded, RTCCR: 1,  # always enabled
                     RTCIMSC: self.mask, RTCRIS: self.raw, RTCMIS: self.raw & self.mask}
        # RTCICR is write-only; the rest of the page reads as zero.
        return registers.get(offset, ID_REGISTERS.get(offset, 0))

    def write(self, offset: int, size: int, value: int, now: int) -> None:
        value &= _MASK32
        if offset == RTCLR:
            self.loaded = value
            self.offset = (self.offset + value - self.count(now)) & _MASK32
            self._arm(now)
        elif offset == RTCMR:
            self.match = value
            self._arm(now)
        elif offset == RTCIMSC:
            self.mask = value & 1
        elif offset == RTCICR:
            self.raw &= ~value
        self._update()
