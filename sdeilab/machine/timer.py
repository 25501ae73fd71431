"""The Arm generic timer of one CPU: EL1 physical (CNTP_*) and EL1 virtual (CNTV_*) timers.

ARM ARM (DDI 0487) chapter D11, "The Generic Timer in AArch64 state", and the CNT* register
descriptions. The system counter is not kept here: the machine derives it from virtual time
(one count per ``NS_PER_COUNT`` ns, i.e. 62.5 MHz, QEMU's CNTFRQ) and passes it to every call,
so the timer is a pure function of (registers, counter) and needs no clock of its own.

Each timer's output is level-sensitive: asserted while ENABLE = 1, IMASK = 0 and the timer
condition (counter - CVAL >= 0, unsigned 64-bit) holds (ARM ARM D11, the CompareValue view;
CNTP_CTL_EL0.ISTATUS). It drives a GIC PPI through ``set_level(intid, level)``, called only
when the level changes.

CNTVOFF_EL2 is 0 (the guest runs at EL1 on a machine without EL2 visible to it), so
CNTVCT_EL0 equals CNTPCT_EL0 and both timers count the same counter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import fdt

from sdeilab.machine.device import GIC_PPI, IRQ_TYPE_LEVEL_HIGH
from sdeilab.machine.memmap import Ppi
from sdeilab.machine.state import FieldState

COUNTER_HZ = 62_500_000  # CNTFRQ_EL0 as QEMU's default (GTIMER_SCALE 16 ns)
NS_PER_COUNT = 1_000_000_000 // COUNTER_HZ  # 16 ns of virtual time per count

MASK64 = (1 << 64) - 1

# CNTP_CTL_EL0 / CNTV_CTL_EL0 fields.
CTL_ENABLE = 1 << 0
CTL_IMASK = 1 << 1
CTL_ISTATUS = 1 << 2  # read-only: the timer condition is met


def counter_at(vtime: int) -> int:
    """System counter value at virtual time ``vtime`` (ns)."""
    return vtime // NS_PER_COUNT


def vtime_of(counter: int) -> int:
    """The first virtual time at which the counter reads ``counter``."""
    return counter * NS_PER_COUNT


class TimerReg(Enum):
    CNTFRQ = "CNTFRQ_EL0"
    CNTPCT = "CNTPCT_EL0"
    CNTVCT = "CNTVCT_EL0"
    CNTP_CTL = "CNTP_CTL_EL0"
    CNTP_CVAL = "CNTP_CVAL_EL0"
    CNTP_TVAL = "CNTP_TVAL_EL0"
    CNTV_CTL = "CNTV_CTL_EL0"
    CNTV_CVAL = "CNTV_CVAL_EL0"
    CNTV_TVAL = "CNTV_TVAL_EL0"


# (op0, op1, CRn, CRm, op2), checked against Linux arch/arm64/include/asm/sysreg.h.
TIMER_ENCODINGS: dict[tuple[int, int, int, int, int], TimerReg] = {
    (3, 3, 14, 0, 0): TimerReg.CNTFRQ,
    (3, 3, 14, 0, 1): TimerReg.CNTPCT,
    (3, 3, 14, 0, 2): TimerReg.CNTVCT,
    (3, 3, 14, 2, 0): TimerReg.CNTP_TVAL,
    (3, 3, 14, 2, 1): TimerReg.CNTP_CTL,
    (3, 3, 14, 2, 2): TimerReg.CNTP_CVAL,
    (3, 3, 14, 3, 0): TimerReg.CNTV_TVAL,
    (3, 3, 14, 3, 1): TimerReg.CNTV_CTL,
    (3, 3, 14, 3, 2): TimerReg.CNTV_CVAL,
}

# MSR to a counter register is UNDEFINED; the machine raises the exception, write() refuses.
TIMER_READ_ONLY = frozenset({TimerReg.CNTPCT, TimerReg.CNTVCT})
# Their encodings: reads an engine may answer itself from virtual time (backend.SystemCounter).
TIMER_COUNTERS = frozenset(key for key, reg in TIMER_ENCODINGS.items() if reg in TIMER_READ_ONLY)


@dataclass(slots=True)
class _Timer:
    intid: int
    ctl: int = 0  # ENABLE and IMASK only; ISTATUS is computed
    cval: int = 0
    istatus: bool = False
    line: bool = False


# The generic timer's four PPIs in the order the arm,armv8-timer binding lists them.
TIMER_PPIS = (Ppi.SECURE_PHYS_TIMER, Ppi.PHYS_TIMER, Ppi.VIRT_TIMER, Ppi.HYP_TIMER)


class GenericTimer(FieldState):
    """One CPU's EL1 physical (PPI 30) and virtual (PPI 27) timers."""

    @staticmethod
    def fdt_node() -> fdt.Node:
        """The one node every CPU's timer shares (timer/arm,arch_timer.yaml): its PPIs, level-high.
        always-on: the counter keeps counting in every idle state the lab offers (the machine's
        vtime runs for a sleeping CPU too), so Linux needs no broadcast timer."""
        cells = [cell for ppi in TIMER_PPIS for cell in (GIC_PPI, ppi - 16, IRQ_TYPE_LEVEL_HIGH)]
        return fdt.Node("timer", fdt.PropStrings("compatible", "arm,armv8-timer"),
                        fdt.PropWords("interrupts", *cells), fdt.Property("always-on"))

    STATE = ("_phys", "_virt", "cntfrq", "_counter")  # sdeilab.machine.state

    def __init__(self, cpu: int, set_level: Callable[[int, bool], None]) -> None:
        self.cpu = cpu
        self._set_level = set_level
        self._phys = _Timer(int(Ppi.PHYS_TIMER))
        self._virt = _Timer(int(Ppi.VIRT_TIMER))
        self.cntfrq = COUNTER_HZ
        self._counter = 0

    def reset(self) -> None:
        # QEMU resets CTL and CVAL to 0 (architecturally ENABLE resets to an UNKNOWN value).
        for timer in (self._phys, self._virt):
            timer.ctl = 0
            timer.cval = 0
        self.cntfrq = COUNTER_HZ
        self.update(self._counter)

    def _timer_of(self, reg: TimerReg) -> _Timer:
        return self._phys if reg.name.startswith("CNTP_") else self._virt

    def read(self, reg: TimerReg, counter: int) -> int:
        """MRS of ``reg`` when the system counter reads ``counter``."""
        self.update(counter)
        if reg is TimerReg.CNTFRQ:
            return self.cntfrq
        if reg is TimerReg.CNTPCT or reg is TimerReg.CNTVCT:
            return counter & MASK64
        timer = self._timer_of(reg)
        if reg.name.endswith("_CTL"):
            return timer.ctl | (CTL_ISTATUS if timer.istatus else 0)
        if reg.name.endswith("_CVAL"):
            return timer.cval
        # TVAL reads (CVAL - counter) truncated to a signed 32-bit value; bits [63:32] are RES0,
        # so a negative value (the deadline has passed) reads as its 32-bit two's complement.
        return (timer.cval - counter) & 0xFFFF_FFFF

    def write(self, reg: TimerReg, value: int, counter: int) -> None:
        """MSR of ``value`` to ``reg`` when the system counter reads ``counter``."""
        if reg in TIMER_READ_ONLY:
            raise ValueError(f"{reg.value} is read-only: MSR is UNDEFINED")
        if reg is TimerReg.CNTFRQ:
            # Writable only at the highest implemented EL, which is EL1 here (as on QEMU virt
            # without EL2/EL3). It only tells software the frequency; it does not change it.
            self.cntfrq = value & 0xFFFF_FFFF
            return
        timer = self._timer_of(reg)
        if reg.name.endswith("_CTL"):
            timer.ctl = value & (CTL_ENABLE | CTL_IMASK)  # ISTATUS is read-only
        elif reg.name.endswith("_CVAL"):
            timer.cval = value & MASK64
        else:
            # TVAL write: CVAL = counter + SignExtend(value[31:0]) (CNTP_TVAL_EL0 description).
            tval = value & 0xFFFF_FFFF
            if tval & 0x8000_0000:
                tval -= 1 << 32
            timer.cval = (counter + tval) & MASK64
        self.update(counter)

    def update(self, counter: int) -> None:
        """Recompute ISTATUS and both output lines for ``counter``; drive the GIC on changes."""
        self._counter = counter
        for timer in (self._phys, self._virt):
            # Like QEMU, ISTATUS reads 0 while the timer is disabled.
            timer.istatus = bool(timer.ctl & CTL_ENABLE) and (counter & MASK64) >= timer.cval
            line = timer.istatus and not timer.ctl & CTL_IMASK
            if line != timer.line:
                timer.line = line
                self._set_level(timer.intid, line)

    def next_deadline(self) -> int | None:
        """Counter value at which the next enabled, unmasked timer that has not fired yet fires."""
        deadlines = [
            timer.cval
            for timer in (self._phys, self._virt)
            if timer.ctl & CTL_ENABLE and not timer.ctl & CTL_IMASK and not timer.istatus
        ]
        return min(deadlines) if deadlines else None

    def line(self, intid: int) -> bool:
        """Current output level of the timer wired to ``intid`` (27 or 30)."""
        return (self._phys if intid == self._phys.intid else self._virt).line
