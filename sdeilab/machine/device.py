"""What a board device is: the protocol every MMIO device implements and what the board hands it.

A device is one file (uart.py, pl031.py, sp804.py) and one row of the board's table
(``sdeilab.machine.board.VIRT_DEVICES``), after kvmtool's one file per device and QEMU virt's
``create_*`` functions, each of which maps its region, wires its interrupt and writes its own
device-tree node. The machine, the interrupt map and the device-tree writer
(sdeilab.firmware.devicetree) all iterate that table, so they cannot disagree.

A device keeps its state in plain attributes (``FieldState``: snapshot, restore and ``reset``),
recomputes its interrupt line from that state after every change and reports only changes of it
through ``set_irq`` (kvmtool style). One that keeps time says when it next changes state by itself
(``next_deadline``) and is brought up to a virtual time by ``advance``; the machine ends slices and
skips idle time at the earliest such deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

import fdt

from sdeilab.machine.memmap import MemMapEntry

# Interrupt specifier cells of arm,gic-v3 (Linux bindings interrupt-controller/arm,gic-v3.yaml):
# <type number flags>, type 0 = SPI (number = INTID - 32), 1 = PPI (number = INTID - 16).
GIC_SPI = 0
GIC_PPI = 1
IRQ_TYPE_LEVEL_HIGH = 4
# The board's phandles: the interrupt controller, and the APB bus clock AMBA devices name.
PHANDLE_GIC = 1
PHANDLE_APB_PCLK = 2


@dataclass(frozen=True, slots=True)
class Wiring:
    """What the board hands a device it builds: its interrupt line (level, True = asserted) and the
    board's settings a device may take (QEMU virt passes its serial backend to the UART it creates)."""

    set_irq: Callable[[bool], None]
    uart_tx: Callable[[int], None]  # where a serial port's transmitted bytes go
    rtc_epoch: int  # the time of day at virtual time 0, in seconds since 1970


class Device(Protocol):
    """An MMIO device of the board. Registers are read and written at virtual time ``now`` (in ns);
    a device that does not keep time ignores it."""

    KEEPS_TIME: ClassVar[bool]
    NODE_NAME: ClassVar[str]  # its device-tree node's generic name (DT specification 2.2.2)
    COMPATIBLE: ClassVar[tuple[str, ...]]  # its device-tree compatible strings

    @classmethod
    def build(cls, wiring: Wiring) -> Device: ...
    def read(self, offset: int, size: int, now: int) -> int: ...
    def write(self, offset: int, size: int, value: int, now: int) -> None: ...
    def reset(self) -> None: ...
    def snapshot(self) -> object: ...
    def restore(self, state: object) -> None: ...
    def next_deadline(self) -> int | None: ...
    def advance(self, now: int) -> None: ...
    @classmethod
    def fdt_properties(cls) -> list[fdt.Property]:
        """Its node's properties beyond compatible, reg and interrupts (which the board writes)."""
        ...


class Untimed:
    """The clock half of ``Device`` for a device that never changes state by itself."""

    KEEPS_TIME: ClassVar[bool] = False

    def next_deadline(self) -> int | None:
        return None

    def advance(self, now: int) -> None:
        return None


def node_name(name: str, region: MemMapEntry) -> str:
    """A device-tree node name: the generic name and the unit address (DT specification 2.2.1)."""
    return f"{name}@{region.base:x}"


def cells64(*values: int) -> list[int]:
    """64-bit values as pairs of 32-bit cells (#address-cells = #size-cells = 2 at the root)."""
    cells = []
    for value in values:
        cells += [value >> 32, value & 0xFFFF_FFFF]
    return cells


def reg_property(*regions: MemMapEntry) -> fdt.PropWords:
    return fdt.PropWords("reg", *cells64(*(v for r in regions for v in (r.base, r.size))))


def spi_property(intid: int) -> fdt.PropWords:
    return fdt.PropWords("interrupts", GIC_SPI, intid - 32, IRQ_TYPE_LEVEL_HIGH)


def apb_clocks(*names: str) -> list[fdt.Property]:
    """``clocks`` and ``clock-names`` of an AMBA device whose every named clock is the APB bus clock."""
    return [fdt.PropWords("clocks", *[PHANDLE_APB_PCLK] * len(names)), fdt.PropStrings("clock-names", *names)]
