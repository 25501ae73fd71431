"""The PL031 real-time clock (Arm DDI 0224) as QEMU models it, on the lab's virtual time.

guests/rtc.c checks the same behaviour against qemu-system-aarch64 (tests/test_guests_lab.py);
these check what a guest cannot see on QEMU: the time of day is the run's epoch plus virtual
time, never the host's, and an alarm's deadline is exact.
"""

from __future__ import annotations

from pathlib import Path

from sdeilab.lab.platform import make_platform
from sdeilab.machine.pl031 import DEFAULT_EPOCH, NS_PER_SECOND, RTCDR, RTCICR, RTCIMSC, RTCLR, RTCMR, RTCRIS, Pl031
from sdeilab.toolchain import build_source_text

S = NS_PER_SECOND


def rtc(epoch: int = 1000) -> tuple[Pl031, list[bool]]:
    levels: list[bool] = []
    return Pl031(levels.append, epoch), levels


def test_the_count_is_the_epoch_plus_whole_seconds_of_virtual_time() -> None:
    device, _ = rtc(1000)
    assert [device.read(RTCDR, 4, t) for t in (0, S - 1, S, 7 * S + 5)] == [1000, 1000, 1001, 1007]


def test_a_load_moves_the_count_and_later_seconds_follow_it() -> None:
    device, _ = rtc(1000)
    device.write(RTCLR, 4, 0xFFFF_FFFF, 3 * S + 1)
    assert device.read(RTCLR, 4, 0) == 0xFFFF_FFFF
    assert device.read(RTCDR, 4, 3 * S + 2) == 0xFFFF_FFFF
    assert device.read(RTCDR, 4, 4 * S) == 0  # the 32-bit count wraps


def test_a_match_equal_to_the_count_fires_at_once_and_only_unmasked_raises_the_line() -> None:
    device, levels = rtc(1000)
    device.write(RTCMR, 4, 1000, 10)
    assert device.read(RTCRIS, 4, 10) == 1 and device.next_deadline() is None
    assert not any(levels)  # masked
    device.write(RTCIMSC, 4, 0xFFFF_FFFF, 10)
    assert device.read(RTCIMSC, 4, 10) == 1 and levels[-1] is True
    device.write(RTCICR, 4, 1, 10)
    assert device.read(RTCRIS, 4, 10) == 0 and levels[-1] is False


def test_a_match_ahead_fires_at_its_exact_deadline_and_once() -> None:
    device, levels = rtc(1000)
    device.write(RTCIMSC, 4, 1, 0)
    device.write(RTCMR, 4, 1002, S // 2)
    assert device.next_deadline() == S // 2 + 2 * S  # QEMU: now + the seconds to go
    device.advance(S // 2 + 2 * S - 1)
    assert device.read(RTCRIS, 4, 0) == 0
    device.advance(S // 2 + 2 * S)
    assert device.read(RTCRIS, 4, 0) == 1 and levels == [False, True] and device.next_deadline() is None


def test_a_match_behind_the_count_waits_for_the_wrap() -> None:
    device, _ = rtc(1000)
    device.write(RTCMR, 4, 995, 0)
    assert device.next_deadline() == (2**32 - 5) * S


ALARM = """#include "guest.h"
int main(void)
{
    volatile uint32_t *rtc = (volatile uint32_t *)0x09010000;
    gic_dist_init();
    gic_redist_init();
    gic_cpu_init();
    gic_enable_spi(34, 0x80, read_sysreg(mpidr_el1));   /* the PL031's SPI 2 */
    uint32_t start = rtc[0];
    rtc[1] = start + %(ahead)d;                          /* RTCMR */
    rtc[4] = 1;                                         /* RTCIMSC */
    uint32_t intid;
    while ((intid = gic_iar()) == GIC_SPURIOUS_INTID)
        wfi();                                          /* IRQs masked: a pending one wakes WFI */
    put_udec(start);
    putc(' ');
    put_udec(rtc[0]);
    putc(' ');
    put_udec(intid);
    putc('\\n');
    psci_system_off();
    return 0;
}
"""


def test_the_machine_sleeps_to_an_alarm_a_minute_ahead_and_the_epoch_is_the_runs(tmp_path: Path) -> None:
    # The CPU sleeps in WFI until the alarm: the machine skips the idle time to the device's
    # deadline, so the run costs a few thousand instructions however far ahead the alarm is.
    guest = build_source_text(ALARM % {"ahead": 60}, "c", tmp_path / "alarm.elf")
    for epoch in (DEFAULT_EPOCH, 12345):
        platform = make_platform(1, rtc_epoch=epoch)
        platform.load(guest)
        outcome = platform.run(1_000_000)
        assert outcome.reason.name == "SYSTEM_OFF", outcome
        assert platform.machine.uart_output.decode() == f"{epoch} {epoch + 60} 34\n"
        assert platform.machine.retired < 100_000 and platform.machine.now() >= 60 * S


def test_a_device_that_wakes_nobody_ends_the_run_after_ten_idle_seconds(tmp_path: Path) -> None:
    # The alarm's interrupt is masked at the RTC (RTCIMSC = 0): no CPU ever wakes.
    guest = build_source_text((ALARM % {"ahead": 3}).replace("rtc[4] = 1;", "rtc[4] = 0;"), "c",
                              tmp_path / "masked.elf")
    platform = make_platform(1)
    platform.load(guest)
    outcome = platform.run(1_000_000)
    assert outcome.reason.name == "DEADLOCK", outcome
    assert "nothing that could wake it" in outcome.detail  # the one deadline passed: nothing is left


def test_a_ticking_device_that_wakes_nobody_ends_the_run_after_ten_idle_seconds(tmp_path: Path) -> None:
    # A periodic SP804 whose interrupt the GIC never forwards: its deadlines come every 100 ms of
    # virtual time and wake nobody, so the run ends once ten seconds passed with no CPU running.
    guest = build_source_text("""#include "guest.h"
    .text
    .globl main
main:
    ldr x19, =0x090C0000
    ldr w1, =100000
    str w1, [x19]           // LOAD: 100000 ticks of 1 MHz
    mov w1, #0xE2
    str w1, [x19, #8]       // CONTROL: enabled, periodic, interrupt enabled, 32-bit
1:  wfi
    b 1b
""", "asm", tmp_path / "ticking.elf")
    platform = make_platform(1)
    platform.load(guest)
    outcome = platform.run(1_000_000)
    assert outcome.reason.name == "DEADLOCK", outcome
    assert "no CPU has run for 10 s of virtual time" in outcome.detail
    assert 10 * S < platform.machine.now() <= 10.2 * S
