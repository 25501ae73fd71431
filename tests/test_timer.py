"""Generic timer model: encodings, TVAL/CVAL arithmetic, ISTATUS, output lines and deadlines."""

from __future__ import annotations

import pytest

from sdeilab.machine.timer import (
    COUNTER_HZ,
    TIMER_ENCODINGS,
    GenericTimer,
    TimerReg,
    counter_at,
    vtime_of,
)


def make() -> tuple[GenericTimer, list[tuple[int, bool]]]:
    calls: list[tuple[int, bool]] = []
    return GenericTimer(0, lambda intid, level: calls.append((intid, level))), calls


def test_encodings_match_linux_sysreg_h() -> None:
    expected = {
        "CNTFRQ_EL0": (3, 3, 14, 0, 0),
        "CNTPCT_EL0": (3, 3, 14, 0, 1),
        "CNTVCT_EL0": (3, 3, 14, 0, 2),
        "CNTP_TVAL_EL0": (3, 3, 14, 2, 0),
        "CNTP_CTL_EL0": (3, 3, 14, 2, 1),
        "CNTP_CVAL_EL0": (3, 3, 14, 2, 2),
        "CNTV_TVAL_EL0": (3, 3, 14, 3, 0),
        "CNTV_CTL_EL0": (3, 3, 14, 3, 1),
        "CNTV_CVAL_EL0": (3, 3, 14, 3, 2),
    }
    assert {reg.value: key for key, reg in TIMER_ENCODINGS.items()} == expected


def test_frequency_and_counters() -> None:
    timer, _ = make()
    assert COUNTER_HZ == 62_500_000
    assert timer.read(TimerReg.CNTFRQ, 0) == 62_500_000
    assert timer.read(TimerReg.CNTPCT, 12345) == 12345
    assert timer.read(TimerReg.CNTVCT, 12345) == 12345
    assert counter_at(160) == 10 and counter_at(175) == 10 and vtime_of(10) == 160
    with pytest.raises(ValueError):
        timer.write(TimerReg.CNTPCT, 0, 0)


def test_tval_write_sets_cval_relative_to_counter() -> None:
    timer, _ = make()
    timer.write(TimerReg.CNTP_TVAL, 500, 1000)
    assert timer.read(TimerReg.CNTP_CVAL, 1000) == 1500
    assert timer.read(TimerReg.CNTP_TVAL, 1200) == 300
    timer.write(TimerReg.CNTP_TVAL, 0xFFFF_FFF6, 1000)  # -10, sign-extended
    assert timer.read(TimerReg.CNTP_CVAL, 1000) == 990


def test_tval_read_is_signed_32_bit() -> None:
    timer, _ = make()
    timer.write(TimerReg.CNTV_CVAL, 100, 0)
    assert timer.read(TimerReg.CNTV_TVAL, 150) == 0xFFFF_FFCE  # -50 as a 32-bit value
    timer.write(TimerReg.CNTV_CVAL, (1 << 40) + 7, 0)
    assert timer.read(TimerReg.CNTV_TVAL, 0) == 7  # truncated to 32 bits


def test_istatus_and_output_line() -> None:
    timer, calls = make()
    timer.write(TimerReg.CNTP_CVAL, 1000, 0)
    timer.write(TimerReg.CNTP_CTL, 1, 0)
    assert timer.read(TimerReg.CNTP_CTL, 999) == 0x1
    assert calls == []
    timer.update(1000)
    assert calls == [(30, True)]
    assert timer.read(TimerReg.CNTP_CTL, 1000) == 0x5  # ENABLE | ISTATUS
    timer.update(2000)
    assert calls == [(30, True)]  # level unchanged: no new call
    timer.write(TimerReg.CNTP_CTL, 0x3, 2000)  # IMASK
    assert calls == [(30, True), (30, False)]
    assert timer.read(TimerReg.CNTP_CTL, 2000) == 0x7  # ISTATUS still set while masked
    timer.write(TimerReg.CNTP_CTL, 0x4, 2000)  # ISTATUS is read-only; ENABLE = 0
    assert timer.read(TimerReg.CNTP_CTL, 2000) == 0x0
    timer.write(TimerReg.CNTP_CTL, 0x1, 2000)
    assert calls[-1] == (30, True)
    timer.write(TimerReg.CNTP_TVAL, 100, 2000)  # a new deadline in the future clears the condition
    assert calls[-1] == (30, False)


def test_virtual_timer_drives_ppi_27() -> None:
    timer, calls = make()
    timer.write(TimerReg.CNTV_TVAL, 10, 0)
    timer.write(TimerReg.CNTV_CTL, 1, 0)
    timer.update(10)
    assert calls == [(27, True)]
    assert timer.line(27) and not timer.line(30)


def test_next_deadline() -> None:
    timer, _ = make()
    assert timer.next_deadline() is None
    timer.write(TimerReg.CNTP_CVAL, 5000, 0)
    timer.write(TimerReg.CNTV_CVAL, 3000, 0)
    assert timer.next_deadline() is None  # neither is enabled
    timer.write(TimerReg.CNTP_CTL, 1, 0)
    timer.write(TimerReg.CNTV_CTL, 1, 0)
    assert timer.next_deadline() == 3000
    timer.write(TimerReg.CNTV_CTL, 3, 0)  # masked
    assert timer.next_deadline() == 5000
    timer.write(TimerReg.CNTV_CTL, 1, 0)
    timer.update(3000)  # the virtual timer has fired
    assert timer.next_deadline() == 5000
    timer.update(5000)
    assert timer.next_deadline() is None


def test_reset_drops_the_lines() -> None:
    timer, calls = make()
    timer.write(TimerReg.CNTP_CTL, 1, 0)  # CVAL 0: fires at once
    assert calls == [(30, True)]
    timer.write(TimerReg.CNTFRQ, 1000, 0)
    assert timer.read(TimerReg.CNTFRQ, 0) == 1000
    timer.reset()
    assert calls == [(30, True), (30, False)]
    assert timer.read(TimerReg.CNTP_CTL, 0) == 0
    assert timer.read(TimerReg.CNTFRQ, 0) == COUNTER_HZ
