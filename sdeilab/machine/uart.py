"""Arm PrimeCell UART (PL011) r1p5, as QEMU's hw/char/pl011.c models it (Arm DDI 0183).

Transmission is instantaneous: a write to UARTDR hands the byte to ``on_tx`` and appends it
to ``output`` at once, so the transmit FIFO is always empty (FR.TXFE = 1, BUSY = 0). Every
write therefore drains the FIFO through its trigger level, which raises the transmit
interrupt (DDI 0183 3.4, UARTTXINTR); it stays raised until cleared through UARTICR, exactly
as QEMU does.

Receive: host input given to ``receive`` waits in a host-side queue and enters the receive
FIFO as room appears, so no byte is ever lost (QEMU's chardev flow control, pl011_can_receive).
The FIFO holds 32 entries when LCR_H.FEN = 1 and a single one when the FIFOs are disabled,
which is the reset state (DDI 0183 3.3, UARTLCR_H). As in QEMU, the receive interrupt is
raised when the FIFO level reaches 1 (the IFLS trigger levels are not used: Linux only drains
the FIFO from the interrupt) and cleared when the FIFO empties or through UARTICR.

Not modelled: baud rate timing, the receive timeout and error/modem-status interrupts (no
line errors or modem lines exist here), IrDA, DMA and loopback (CR.LBE is stored only).

The interrupt output is (UARTRIS & UARTIMSC) != 0, recomputed in ``_update`` after every change.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import ClassVar

import fdt

from sdeilab.machine.device import Untimed, Wiring, apb_clocks
from sdeilab.machine.state import FieldState

# Register offsets (DDI 0183 3.2, summary of registers).
UARTDR = 0x000
UARTRSR = 0x004  # UARTECR on write
UARTFR = 0x018
UARTILPR = 0x020
UARTIBRD = 0x024
UARTFBRD = 0x028
UARTLCR_H = 0x02C
UARTCR = 0x030
UARTIFLS = 0x034
UARTIMSC = 0x038
UARTRIS = 0x03C
UARTMIS = 0x040
UARTICR = 0x044
UARTDMACR = 0x048
UARTPERIPHID0 = 0xFE0  # UARTPeriphID0-3 then UARTPCellID0-3, one byte per word

# UARTPeriphID0-3 (part number 0x011, designer 0x41 = Arm) and UARTPCellID0-3 (0xB105F00D),
# byte for byte QEMU's pl011_id_arm. Note PeriphID2[7:4] (revision) is 1 there, whereas
# DDI 0183G lists 3 for r1p5; we keep QEMU's value so guests read what they read on QEMU.
PL011_IDS = (0x11, 0x10, 0x14, 0x00, 0x0D, 0xF0, 0x05, 0xB1)

# UARTFR bits (DDI 0183 3.3, UARTFR).
FR_BUSY = 1 << 3
FR_RXFE = 1 << 4
FR_TXFF = 1 << 5
FR_RXFF = 1 << 6
FR_TXFE = 1 << 7

# Interrupt bits shared by UARTIMSC, UARTRIS, UARTMIS and UARTICR (DDI 0183 3.4).
INT_RX = 1 << 4
INT_TX = 1 << 5
INT_ALL = 0x7FF

LCR_H_FEN = 1 << 4
CR_RESET = 0x300  # TXE | RXE
IFLS_RESET = 0x12  # both trigger levels at half full

FIFO_DEPTH = 32


class Pl011(Untimed, FieldState):
    """The UART0 of the virt board (board.py: 0x0900_0000, SPI 1)."""

    NODE_NAME: ClassVar[str] = "pl011"
    COMPATIBLE: ClassVar[tuple[str, ...]] = ("arm,pl011", "arm,primecell")

    # The registers, both FIFOs' contents, the line, and what it sent (sdeilab.machine.state).
    STATE = ("ilpr", "ibrd", "fbrd", "lcr_h", "cr", "ifls", "imsc", "ris", "dmacr", "output", "_host", "_rx", "_line")

    def __init__(self, set_irq: Callable[[bool], None], on_tx: Callable[[int], None]) -> None:
        self._set_irq = set_irq
        self._on_tx = on_tx
        self.output = bytearray()
        self._host: deque[int] = deque()  # host input not yet in the receive FIFO
        self._rx: deque[int] = deque()
        self._line = False
        self.reset()

    @classmethod
    def build(cls, wiring: Wiring) -> Pl011:
        return cls(wiring.set_irq, wiring.uart_tx)

    @classmethod
    def fdt_properties(cls) -> list[fdt.Property]:
        # An AMBA primecell: Linux's amba bus reads the peripheral ID from the device and wants
        # the apb_pclk clock; the PL011 driver takes its baud clock from "uartclk" (arm,pl011.yaml).
        return apb_clocks("uartclk", "apb_pclk")

    def reset(self) -> None:
        """Register reset values as DDI 0183 (and QEMU's pl011_reset). ``output`` is kept."""
        self.ilpr = 0
        self.ibrd = 0
        self.fbrd = 0
        self.lcr_h = 0
        self.cr = CR_RESET
        self.ifls = IFLS_RESET
        self.imsc = 0
        self.ris = 0
        self.dmacr = 0
        self._rx.clear()
        self._fill()
        self._update()

    @property
    def irq_level(self) -> bool:
        return self._line

    def _depth(self) -> int:
        return FIFO_DEPTH if self.lcr_h & LCR_H_FEN else 1

    def _fill(self) -> None:
        """Move waiting host input into the receive FIFO while there is room."""
        while self._host and len(self._rx) < self._depth():
            self._rx.append(self._host.popleft())
            if len(self._rx) == 1:
                self.ris |= INT_RX  # the FIFO reached the trigger level (1, as QEMU)

    def _update(self) -> None:
        line = bool(self.ris & self.imsc)
        if line != self._line:
            self._line = line
            self._set_irq(line)

    def receive(self, data: bytes) -> None:
        """Input from the host side of the serial line."""
        self._host.extend(data)
        self._fill()
        self._update()

    def _flags(self) -> int:
        flags = FR_TXFE  # transmission is instantaneous: TX FIFO always empty, never busy
        if not self._rx:
            flags |= FR_RXFE
        if len(self._rx) >= self._depth():
            flags |= FR_RXFF
        return flags

    def read(self, offset: int, size: int, now: int = 0) -> int:
        """Read ``size`` bytes at ``offset``: registers are 32-bit, narrower reads take a slice."""
        if size == 8:
            return self.read(offset, 4) | (self.read(offset + 4, 4) << 32)
        value = self._read32(offset & ~3)
        return (value >> (8 * (offset & 3))) & ((1 << (8 * size)) - 1)

    def _read32(self, offset: int) -> int:
        if offset == UARTDR:
            if not self._rx:
                return 0  # reading an empty FIFO: no data, no error bits
            value = self._rx.popleft()  # bits [11:8] (error flags) are always 0 here
            if not self._rx:
                self.ris &= ~INT_RX  # the FIFO fell below the trigger level
            self._fill()
            self._update()
            return value
        if offset == UARTFR:
            return self._flags()
        if offset == UARTILPR:
            return self.ilpr
        if offset == UARTIBRD:
            return self.ibrd
        if offset == UARTFBRD:
            return self.fbrd
        if offset == UARTLCR_H:
            return self.lcr_h
        if offset == UARTCR:
            return self.cr
        if offset == UARTIFLS:
            return self.ifls
        if offset == UARTIMSC:
            return self.imsc
        if offset == UARTRIS:
            return self.ris
        if offset == UARTMIS:
            return self.ris & self.imsc
        if offset == UARTDMACR:
            return self.dmacr
        if UARTPERIPHID0 <= offset <= 0xFFC:
            return PL011_IDS[(offset - UARTPERIPHID0) >> 2]
        return 0  # UARTRSR (no receive errors ever occur), reserved and write-only offsets

    def write(self, offset: int, size: int, value: int, now: int = 0) -> None:
        """Write to a register; a write that does not start at a register's first byte is ignored."""
        if size == 8:
            self.write(offset, 4, value & 0xFFFF_FFFF)
            self.write(offset + 4, 4, value >> 32)
            return
        if offset & 3:
            return
        value &= (1 << (8 * size)) - 1
        if offset == UARTDR:
            # Transmitted whether or not CR.UARTEN/TXE are set, like QEMU (which only logs it).
            byte = value & 0xFF
            self.output.append(byte)
            self._on_tx(byte)
            self.ris |= INT_TX
        elif offset == UARTILPR:
            self.ilpr = value & 0xFF
        elif offset == UARTIBRD:
            self.ibrd = value & 0xFFFF  # BAUD DIVINT, 16 bits
        elif offset == UARTFBRD:
            self.fbrd = value & 0x3F  # BAUD DIVFRAC, 6 bits
        elif offset == UARTLCR_H:
            if (self.lcr_h ^ value) & LCR_H_FEN:
                self._rx.clear()  # enabling or disabling the FIFOs flushes them (as QEMU)
                self.ris &= ~INT_RX
            self.lcr_h = value & 0xFF
            self._fill()
        elif offset == UARTCR:
            self.cr = value & 0xFFFF
        elif offset == UARTIFLS:
            self.ifls = value & 0x3F
        elif offset == UARTIMSC:
            self.imsc = value & INT_ALL
        elif offset == UARTICR:
            self.ris &= ~(value & INT_ALL)
        elif offset == UARTDMACR:
            self.dmacr = value & 0x7
        # UARTECR (clears receive errors, of which there are none), FR and RIS/MIS: no effect.
        self._update()
