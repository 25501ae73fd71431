"""Arm SP804 dual timer (Arm DDI 0271): a memory-mapped timer whose interrupt is an SPI.

QEMU's virt board has none; the lab adds one (DESIGN.md's memory map gains a row) because the
TF-A SDEI tests bind a timer SPI (an SP804 on FVP). Each timer counts down at TIMCLK (1 MHz
here, so one tick is 1000 instructions of virtual time) and raises its interrupt on reaching
zero. The combined line TIMINTC is what the board wires to the GIC, recomputed from state after
every change (kvmtool style).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import fdt

from sdeilab.machine.device import Wiring, apb_clocks
from sdeilab.machine.state import FieldState

TIMCLK_HZ = 1_000_000
NS_PER_TICK = 1_000_000_000 // TIMCLK_HZ

# Register offsets within one timer (DDI 0271 3.1); timer 2 is at +0x20.
LOAD, VALUE, CONTROL, INTCLR, RIS, MIS, BGLOAD = 0x00, 0x04, 0x08, 0x0C, 0x10, 0x14, 0x18
CTRL_ONESHOT, CTRL_32BIT, CTRL_INTEN, CTRL_PERIODIC, CTRL_ENABLE = 1 << 0, 1 << 1, 1 << 5, 1 << 6, 1 << 7
CTRL_PRESCALE_SHIFT = 2
# Peripheral and PrimeCell ID registers (DDI 0271 3.2): SP804, revision 1.
ID_REGISTERS = {0xFE0: 0x04, 0xFE4: 0x18, 0xFE8: 0x14, 0xFEC: 0x00, 0xFF0: 0x0D, 0xFF4: 0xF0, 0xFF8: 0x05, 0xFFC: 0xB1}


@dataclass
class _Timer:
    load: int = 0
    control: int = CTRL_INTEN  # reset value 0x20 (DDI 0271 3.3.3)
    start_value: int = 0xFFFF_FFFF
    start_time: int = 0  # vtime at which the counter held start_value
    ris: bool = False

    @property
    def width_mask(self) -> int:
        return 0xFFFF_FFFF if self.control & CTRL_32BIT else 0xFFFF

    @property
    def ns_per_tick(self) -> int:
        prescale = (self.control >> CTRL_PRESCALE_SHIFT) & 3
        return NS_PER_TICK * (1, 16, 256, 256)[prescale]

    def value(self, now: int) -> int:
        if not self.control & CTRL_ENABLE:
            return self.start_value
        return max(self.start_value - (now - self.start_time) // self.ns_per_tick, 0)

    def deadline(self) -> int:
        """vtime at which the counter reaches zero."""
        return self.start_time + self.start_value * self.ns_per_tick


class Sp804(FieldState):
    """The lab's addition to the virt board (board.py: 0x090C_0000, SPI 10)."""

    KEEPS_TIME: ClassVar[bool] = True
    NODE_NAME: ClassVar[str] = "timer"
    COMPATIBLE: ClassVar[tuple[str, ...]] = ("arm,sp804", "arm,primecell")
    STATE = ("timers", "_level")  # sdeilab.machine.state

    def __init__(self, set_irq: Callable[[bool], None]) -> None:
        self._set_irq = set_irq
        self.timers = [_Timer(), _Timer()]
        self._level = False

    @classmethod
    def build(cls, wiring: Wiring) -> Sp804:
        return cls(wiring.set_irq)

    @classmethod
    def fdt_properties(cls) -> list[fdt.Property]:
        # arm,sp804.yaml: timclken1, timclken2, apb_pclk (both timers run from the bus clock here).
        return apb_clocks("timclken1", "timclken2", "apb_pclk")

    def reset(self) -> None:
        self.timers = [_Timer(), _Timer()]
        self._update()

    def _update(self) -> None:
        level = any(t.ris and t.control & CTRL_INTEN for t in self.timers)
        if level != self._level:
            self._level = level
            self._set_irq(level)

    def next_deadline(self) -> int | None:
        due = [t.deadline() for t in self.timers if t.control & CTRL_ENABLE]
        return min(due) if due else None

    def advance(self, now: int) -> None:
        """Bring the counters to ``now``: each one that reached zero interrupts, then reloads or stops."""
        for timer in self.timers:
            while timer.control & CTRL_ENABLE and timer.deadline() <= now:
                timer.ris = True
                reached = timer.deadline()
                if timer.control & CTRL_ONESHOT:
                    timer.control &= ~CTRL_ENABLE
                    timer.start_value, timer.start_time = 0, reached
                elif timer.control & CTRL_PERIODIC and timer.load:
                    timer.start_value, timer.start_time = timer.load, reached
                else:  # free-running: wrap to the maximum (DDI 0271 2.3.2)
                    timer.start_value, timer.start_time = timer.width_mask, reached
                    if not timer.control & CTRL_PERIODIC:
                        break
        self._update()

    def read(self, offset: int, size: int, now: int) -> int:
        if offset in ID_REGISTERS:
            return ID_REGISTERS[offset]
        if offset >= 0x40:
            return 0
        timer = self.timers[offset // 0x20]
        reg = offset % 0x20
        if reg in (LOAD, BGLOAD):
            return timer.load
        if reg == VALUE:
            return timer.value(now)
        if reg == CONTROL:
            return timer.control
        if reg == RIS:
            return int(timer.ris)
        if reg == MIS:
            return int(timer.ris and bool(timer.control & CTRL_INTEN))
        return 0

    def write(self, offset: int, size: int, value: int, now: int) -> None:
        if offset >= 0x40:
            return
        timer = self.timers[offset // 0x20]
        reg = offset % 0x20
        value &= 0xFFFF_FFFF
        if reg in (LOAD, BGLOAD):
            timer.load = value & timer.width_mask
            if reg == LOAD:  # LOAD restarts the count at once; BGLOAD waits for the next reload
                timer.start_value, timer.start_time = timer.load, now
        elif reg == CONTROL:
            current = timer.value(now)
            was_enabled = bool(timer.control & CTRL_ENABLE)
            timer.control = value & 0xFF
            if timer.control & CTRL_ENABLE and not was_enabled:
                timer.start_value, timer.start_time = current & timer.width_mask, now
            elif not timer.control & CTRL_ENABLE:
                timer.start_value, timer.start_time = current, now
        elif reg == INTCLR:
            timer.ris = False
        self._update()
