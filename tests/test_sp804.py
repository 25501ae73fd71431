"""The SP804 timer model on its own: counting in virtual time, one-shot, periodic, interrupt."""

from __future__ import annotations

from sdeilab.machine.sp804 import (
    CONTROL,
    CTRL_32BIT,
    CTRL_ENABLE,
    CTRL_INTEN,
    CTRL_ONESHOT,
    CTRL_PERIODIC,
    INTCLR,
    LOAD,
    MIS,
    NS_PER_TICK,
    RIS,
    VALUE,
    Sp804,
)


def make() -> tuple[Sp804, list[bool]]:
    levels: list[bool] = []
    return Sp804(levels.append), levels


def test_oneshot_counts_down_and_interrupts_once() -> None:
    timer, levels = make()
    timer.write(LOAD, 4, 10, now=0)
    timer.write(CONTROL, 4, CTRL_ENABLE | CTRL_ONESHOT | CTRL_INTEN | CTRL_32BIT, now=0)
    assert timer.read(VALUE, 4, now=3 * NS_PER_TICK) == 7
    assert timer.next_deadline() == 10 * NS_PER_TICK
    timer.advance(10 * NS_PER_TICK - 1)
    assert levels == []
    timer.advance(10 * NS_PER_TICK)
    assert levels == [True] and timer.read(RIS, 4, 0) == 1 and timer.read(MIS, 4, 0) == 1
    assert timer.next_deadline() is None  # one-shot: stopped
    timer.write(INTCLR, 4, 1, now=11 * NS_PER_TICK)
    assert levels == [True, False]


def test_periodic_reloads_and_masked_interrupt_stays_low() -> None:
    timer, levels = make()
    timer.write(LOAD, 4, 5, now=0)
    timer.write(CONTROL, 4, CTRL_ENABLE | CTRL_PERIODIC | CTRL_32BIT, now=0)  # INTEN clear
    timer.advance(12 * NS_PER_TICK)
    assert timer.read(RIS, 4, 0) == 1 and timer.read(MIS, 4, 0) == 0 and levels == []
    assert timer.next_deadline() == 15 * NS_PER_TICK
    assert timer.read(VALUE, 4, now=12 * NS_PER_TICK) == 3
