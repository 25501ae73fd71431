"""PL011 model: identification, transmit, receive FIFO and interrupts."""

from __future__ import annotations

from sdeilab.machine.uart import Pl011

DR, RSR, FR, IBRD, FBRD, LCR_H, CR, IFLS, IMSC, RIS, MIS, ICR = (
    0x000,
    0x004,
    0x018,
    0x024,
    0x028,
    0x02C,
    0x030,
    0x034,
    0x038,
    0x03C,
    0x040,
    0x044,
)
TXIS, RXIS = 1 << 5, 1 << 4


def make() -> tuple[Pl011, list[bool], list[int]]:
    irq: list[bool] = []
    tx: list[int] = []
    return Pl011(irq.append, tx.append), irq, tx


def test_identification_and_reset_values() -> None:
    uart, irq, _ = make()
    ids = [uart.read(off, 4) for off in range(0xFE0, 0x1000, 4)]
    assert ids == [0x11, 0x10, 0x14, 0x00, 0x0D, 0xF0, 0x05, 0xB1]
    assert uart.read(FR, 4) == 0x90  # TXFE | RXFE
    assert uart.read(CR, 4) == 0x300
    assert uart.read(IFLS, 4) == 0x12
    assert uart.read(RIS, 4) == 0
    assert irq == []


def test_transmit_and_tx_interrupt() -> None:
    uart, irq, tx = make()
    uart.write(DR, 4, ord("h"))
    uart.write(DR, 1, ord("i"))  # strb to DR, as bare-metal code does
    assert bytes(uart.output) == b"hi" and tx == [ord("h"), ord("i")]
    assert uart.read(RIS, 4) == TXIS
    assert uart.read(FR, 4) & 0x88 == 0x80  # TX FIFO empty, never busy
    assert irq == []  # masked
    uart.write(IMSC, 4, TXIS)
    assert irq == [True] and uart.irq_level
    assert uart.read(MIS, 4) == TXIS
    uart.write(ICR, 4, TXIS)
    assert irq == [True, False]
    uart.write(DR, 4, ord("!"))
    assert irq == [True, False, True]


def test_receive_without_fifo_holds_one_byte() -> None:
    uart, irq, _ = make()
    uart.write(IMSC, 4, RXIS)
    uart.receive(b"ab")
    assert irq == [True]
    assert uart.read(FR, 4) & 0x50 == 0x40  # RXFF, not RXFE: the single holding register is full
    assert uart.read(DR, 4) == ord("a")
    assert uart.read(FR, 4) & 0x50 == 0x40  # 'b' moved in from the host side
    assert uart.read(DR, 4) == ord("b")
    assert uart.read(FR, 4) & 0x50 == 0x10
    assert uart.read(RIS, 4) & RXIS == 0
    assert irq == [True, False]


def test_receive_fifo_of_32_entries() -> None:
    uart, _, _ = make()
    uart.write(LCR_H, 4, 0x70)  # 8 bits, FIFOs enabled
    uart.receive(bytes(range(40)))
    assert uart.read(FR, 4) & 0x40  # full after 32
    got = [uart.read(DR, 4) for _ in range(40)]
    assert got == list(range(40))
    assert uart.read(FR, 4) & 0x10
    assert uart.read(DR, 4) == 0  # empty


def test_rx_interrupt_cleared_by_icr_until_new_data() -> None:
    uart, irq, _ = make()
    uart.write(LCR_H, 4, 0x10)
    uart.write(IMSC, 4, RXIS)
    uart.receive(b"x")
    uart.write(ICR, 4, RXIS)
    assert irq == [True, False]
    assert uart.read(DR, 4) == ord("x")
    uart.receive(b"y")
    assert irq == [True, False, True]


def test_register_masks_and_reset() -> None:
    uart, irq, _ = make()
    uart.write(IBRD, 4, 0x1_2345)
    uart.write(FBRD, 4, 0xFF)
    assert uart.read(IBRD, 4) == 0x2345 and uart.read(FBRD, 4) == 0x3F
    uart.write(RSR, 4, 0xFF)
    assert uart.read(RSR, 4) == 0
    uart.write(IMSC, 4, TXIS)
    uart.write(DR, 4, 0x41)
    assert irq == [True]
    uart.reset()
    assert irq == [True, False]
    assert uart.read(IMSC, 4) == 0 and uart.read(IBRD, 4) == 0
    assert bytes(uart.output) == b"A"
