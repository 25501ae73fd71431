"""One CPU's Performance Monitors Extension (PMUv3) as QEMU presents it for a Cortex-A57.

ARM ARM (DDI 0487) chapter D12, "The Performance Monitors Extension", and the PM* register
descriptions. The CPU model's own PMU is never reached: Unicorn builds it on the host's clock,
so its cycle counter told a guest the wall time (two runs read different values) and its event
counters never counted. This model counts from the lab's own clocks instead, so every read is a
function of the run:

* CPU_CYCLES (0x11) and PMCCNTR_EL0: one cycle per nanosecond of the CPU's virtual time (QEMU
  counts its virtual clock at 1 GHz), idle time included, as QEMU's does; PMCR_EL0.D divides by 64.
* INST_RETIRED (0x08): the instructions the CPU retired (QEMU counts it only under ``-icount``;
  the lab's time is an instruction count, so it always can).
* SW_INCR (0x00): one per write of the counter's bit to PMSWINC_EL0.

Other event numbers count nothing, as on QEMU. PMCR_EL0 reads 0x41013000 at reset: implementer
Arm, ID code 1, six event counters (QEMU's cortex-a57). An overflow (32 bits for the event
counters; PMCCNTR, a 64-bit count, at each carry out of bit 31 unless PMCR_EL0.LC, out of bit
63 with it) sets its PMOVSSET bit, and the
PMU's interrupt, PPI 23, is asserted while PMCR_EL0.E is set and an enabled overflow is pending
(PMINTENSET). Not modelled: the filters by Exception level (PMEVTYPER and PMCCFILTR keep their
bits and every EL counts), the chained-counter event, PMCR_EL0.X and the events QEMU does not count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from sdeilab.machine.state import FieldState

PMU_INTID = 23  # QEMU virt's PMU PPI (VIRTUAL_PMU_IRQ 7, INTID 16 + 7)
COUNTERS = 6  # PMCR_EL0.N of QEMU's cortex-a57
CYCLE = 31  # the cycle counter's bit in PMCNTENSET, PMOVSSET, PMINTENSET
PMCR_RESET = 0x4101_3000  # IMP 0x41, IDCODE 0x01, N = 6
PMCR_E, PMCR_P, PMCR_C, PMCR_D, PMCR_X, PMCR_DP, PMCR_LC = 1, 1 << 1, 1 << 2, 1 << 3, 1 << 4, 1 << 5, 1 << 6
PMCR_WRITABLE = PMCR_E | PMCR_D | PMCR_X | PMCR_DP | PMCR_LC  # P and C reset counters and read as 0
FILTER_BITS = 0xFC00_0000  # P, U, NSK, NSU, NSH, M (kept, not applied)
EVTCOUNT = 0xFFFF

SW_INCR, INST_RETIRED, CPU_CYCLES = 0x00, 0x08, 0x11
# PMCEID0_EL0: the common events 0..31 that count (bit n: event n), as QEMU's cortex-a57 without
# STALL events (PMUv3.1), plus INST_RETIRED, which the lab always counts.
PMCEID0 = (1 << SW_INCR) | (1 << INST_RETIRED) | (1 << CPU_CYCLES)
MASK32, MASK64 = 0xFFFF_FFFF, (1 << 64) - 1
ALL = (1 << COUNTERS) - 1 | 1 << CYCLE


class PmuReg(Enum):
    PMCR = "PMCR_EL0"
    PMCNTENSET = "PMCNTENSET_EL0"
    PMCNTENCLR = "PMCNTENCLR_EL0"
    PMOVSCLR = "PMOVSCLR_EL0"
    PMSWINC = "PMSWINC_EL0"
    PMSELR = "PMSELR_EL0"
    PMCEID0 = "PMCEID0_EL0"
    PMCEID1 = "PMCEID1_EL0"
    PMCCNTR = "PMCCNTR_EL0"
    PMXEVTYPER = "PMXEVTYPER_EL0"
    PMXEVCNTR = "PMXEVCNTR_EL0"
    PMOVSSET = "PMOVSSET_EL0"
    PMINTENSET = "PMINTENSET_EL1"
    PMINTENCLR = "PMINTENCLR_EL1"
    PMCCFILTR = "PMCCFILTR_EL0"
    PMEVCNTR = "PMEVCNTR<n>_EL0"
    PMEVTYPER = "PMEVTYPER<n>_EL0"


# (op0, op1, CRn, CRm, op2) -> (register, n), checked against Linux arch/arm64/include/asm/sysreg.h.
PMU_ENCODINGS: dict[tuple[int, int, int, int, int], tuple[PmuReg, int]] = {
    (3, 3, 9, 12, 0): (PmuReg.PMCR, 0),
    (3, 3, 9, 12, 1): (PmuReg.PMCNTENSET, 0),
    (3, 3, 9, 12, 2): (PmuReg.PMCNTENCLR, 0),
    (3, 3, 9, 12, 3): (PmuReg.PMOVSCLR, 0),
    (3, 3, 9, 12, 4): (PmuReg.PMSWINC, 0),
    (3, 3, 9, 12, 5): (PmuReg.PMSELR, 0),
    (3, 3, 9, 12, 6): (PmuReg.PMCEID0, 0),
    (3, 3, 9, 12, 7): (PmuReg.PMCEID1, 0),
    (3, 3, 9, 13, 0): (PmuReg.PMCCNTR, 0),
    (3, 3, 9, 13, 1): (PmuReg.PMXEVTYPER, 0),
    (3, 3, 9, 13, 2): (PmuReg.PMXEVCNTR, 0),
    (3, 3, 9, 14, 3): (PmuReg.PMOVSSET, 0),
    (3, 0, 9, 14, 1): (PmuReg.PMINTENSET, 0),
    (3, 0, 9, 14, 2): (PmuReg.PMINTENCLR, 0),
    (3, 3, 14, 15, 7): (PmuReg.PMCCFILTR, 0),
    **{(3, 3, 14, 8 + (n >> 3), n & 7): (PmuReg.PMEVCNTR, n) for n in range(31)},
    **{(3, 3, 14, 12 + (n >> 3), n & 7): (PmuReg.PMEVTYPER, n) for n in range(31)},
}
PMU_READ_ONLY = frozenset({PmuReg.PMCEID0, PmuReg.PMCEID1})
PMU_WRITE_ONLY = frozenset({PmuReg.PMSWINC})
_EL1_ONLY = frozenset({PmuReg.PMINTENSET, PmuReg.PMINTENCLR})
USERENR_EN, USERENR_SW, USERENR_CR, USERENR_ER = 1, 1 << 1, 1 << 2, 1 << 3


def el0_may_access(reg: PmuReg, write: bool, userenr: int) -> bool:
    """Whether EL0 may access ``reg`` under PMUSERENR_EL0 = ``userenr`` (ARM ARM D12, PMUSERENR_EL0:
    EN opens every EL0 register; SW only PMSWINC; CR reading PMCCNTR; ER reading the event
    counters and PMSELR). Where not, the access traps to EL1 (EC 0x18), as the CPU model does."""
    if reg in _EL1_ONLY:
        return False
    if userenr & USERENR_EN:
        return True
    if reg is PmuReg.PMSWINC:
        return bool(userenr & USERENR_SW)
    if reg is PmuReg.PMCCNTR and not write:
        return bool(userenr & USERENR_CR)
    if reg is PmuReg.PMSELR or (reg in (PmuReg.PMEVCNTR, PmuReg.PMXEVCNTR) and not write):
        return bool(userenr & USERENR_ER)
    return False


@dataclass(slots=True)
class _Counter:
    """A counter holds ``base`` plus its source's progress since ``start`` while it counts."""

    base: int = 0
    start: int = 0  # the source's value when it last began counting (or was written)
    counting: bool = False
    evtype: int = 0


@dataclass(slots=True)
class Clocks:
    """The sources a CPU's counters count: its virtual time (ns) and the instructions it retired."""

    vtime: int
    retired: int


@dataclass
class Pmu(FieldState):
    """The PMU of one CPU. ``set_level(intid, level)`` drives its PPI, called when the level changes."""

    STATE = ("pmcr", "cnten", "ovs", "inten", "selr", "counters", "cycle", "line")  # sdeilab.machine.state

    cpu: int
    set_level: Callable[[int, bool], None]
    pmcr: int = PMCR_RESET
    cnten: int = 0
    ovs: int = 0
    inten: int = 0
    selr: int = 0
    counters: list[_Counter] = field(default_factory=lambda: [_Counter() for _ in range(COUNTERS)])
    cycle: _Counter = field(default_factory=_Counter)
    line: bool = False

    def reset(self) -> None:
        self.pmcr, self.cnten, self.ovs, self.inten, self.selr = PMCR_RESET, 0, 0, 0, 0
        self.counters = [_Counter() for _ in range(COUNTERS)]
        self.cycle = _Counter()
        self._update_line()

    # --- the counters ----------------------------------------------------------------------
    def _source(self, index: int, clocks: Clocks) -> int | None:
        """What counter ``index`` counts, now; None for an event that counts nothing here."""
        if index == CYCLE:
            return clocks.vtime // 64 if self.pmcr & PMCR_D else clocks.vtime
        event = self.counters[index].evtype & EVTCOUNT
        if event == CPU_CYCLES:
            return clocks.vtime
        if event == INST_RETIRED:
            return clocks.retired
        return None

    def _counter(self, index: int) -> _Counter:
        return self.cycle if index == CYCLE else self.counters[index]

    def _width(self, index: int) -> int:
        """The counter's value mask: PMCCNTR_EL0 has 64 bits whatever PMCR_EL0.LC says."""
        return MASK64 if index == CYCLE else MASK32

    def _period(self, index: int) -> int:
        """The counter overflows each time its count crosses a multiple of this: the carry out of
        bit 31, or for PMCCNTR_EL0 with PMCR_EL0.LC set out of bit 63 (ARM ARM D12, PMCR_EL0.LC)."""
        return 1 << 64 if index == CYCLE and self.pmcr & PMCR_LC else 1 << 32

    def _raw(self, index: int, clocks: Clocks) -> int:
        """The count without wrapping (so an overflow is a carry out of the counter's width)."""
        counter = self._counter(index)
        if not counter.counting:
            return counter.base
        source = self._source(index, clocks)
        return counter.base + (source - counter.start if source is not None else 0)

    def _counts(self, index: int) -> bool:
        return bool(self.pmcr & PMCR_E and self.cnten >> index & 1)

    def _freeze(self, clocks: Clocks) -> None:
        """Every counter holds its value now, counting stopped (before a change to what or whether
        it counts: PMCR_EL0, PMCNTENSET/CLR, an event type)."""
        self.update(clocks)
        for index in (*range(COUNTERS), CYCLE):
            counter = self._counter(index)
            counter.base, counter.counting = self._raw(index, clocks) & self._width(index), False

    def _resume(self, clocks: Clocks) -> None:
        """Every enabled counter whose event counts here counts on from its value, from now."""
        for index in (*range(COUNTERS), CYCLE):
            counter, source = self._counter(index), self._source(index, clocks)
            counter.counting = self._counts(index) and source is not None
            counter.start = source if source is not None else 0

    @property
    def counting(self) -> bool:
        """Whether any counter can move: PMCR_EL0.E and an enable bit set. The machine asks this
        before each slice, so that a PMU nobody uses costs no per-slice work."""
        return bool(self.pmcr & PMCR_E and self.cnten)

    def update(self, clocks: Clocks) -> None:
        """Note every overflow up to ``clocks`` (PMOVSSET) and recompute the interrupt line."""
        for index in (*range(COUNTERS), CYCLE):
            counter = self._counter(index)
            if counter.counting:
                raw, period = self._raw(index, clocks), self._period(index)
                if raw // period > counter.base // period:
                    self.ovs |= 1 << index
                    counter.base, counter.start = raw & self._width(index), self._source(index, clocks) or 0
        self._update_line()

    def _update_line(self) -> None:
        level = bool(self.pmcr & PMCR_E and self.inten & self.ovs)
        if level != self.line:
            self.line = level
            self.set_level(PMU_INTID, level)

    def next_deadline(self, clocks: Clocks, *, asleep: bool = False) -> int | None:
        """Nanoseconds of this CPU's time, at least, before a counter whose overflow would
        interrupt overflows (no source grows faster than virtual time); None: no such counter.
        ``asleep``: the CPU retires nothing, so only the counters of cycles can get there."""
        due = None
        for index in (*range(COUNTERS), CYCLE):
            counter = self._counter(index)
            if asleep and index != CYCLE and counter.evtype & EVTCOUNT != CPU_CYCLES:
                continue
            if counter.counting and self.inten >> index & 1:
                period = self._period(index)
                left = period - self._raw(index, clocks) % period
                if index == CYCLE and self.pmcr & PMCR_D:
                    left *= 64
                due = left if due is None else min(due, left)
        return due

    # --- the registers ---------------------------------------------------------------------
    def read(self, reg: PmuReg, n: int, clocks: Clocks) -> int:
        self.update(clocks)
        if reg is PmuReg.PMCR:
            return self.pmcr
        if reg in (PmuReg.PMCNTENSET, PmuReg.PMCNTENCLR):
            return self.cnten
        if reg in (PmuReg.PMOVSSET, PmuReg.PMOVSCLR):
            return self.ovs
        if reg in (PmuReg.PMINTENSET, PmuReg.PMINTENCLR):
            return self.inten
        if reg is PmuReg.PMSELR:
            return self.selr
        if reg is PmuReg.PMCEID0:
            return PMCEID0
        if reg is PmuReg.PMCEID1:
            return 0
        if reg is PmuReg.PMCCNTR:
            return self._raw(CYCLE, clocks) & self._width(CYCLE)
        if reg is PmuReg.PMCCFILTR:
            return self.cycle.evtype
        index = self._selected(reg, n)
        if index is None:
            return 0  # a counter that does not exist reads as zero (CONSTRAINED UNPREDICTABLE, QEMU's choice)
        if index == CYCLE:  # PMXEVTYPER with PMSELR = 31 is PMCCFILTR
            return self.cycle.evtype
        if reg in (PmuReg.PMEVTYPER, PmuReg.PMXEVTYPER):
            return self.counters[index].evtype
        return self._raw(index, clocks) & MASK32

    def _selected(self, reg: PmuReg, n: int) -> int | None:
        index = self.selr if reg in (PmuReg.PMXEVTYPER, PmuReg.PMXEVCNTR) else n
        if index == CYCLE and reg is not PmuReg.PMXEVCNTR:
            return CYCLE
        return index if index < COUNTERS else None

    def write(self, reg: PmuReg, n: int, value: int, clocks: Clocks) -> None:
        self.update(clocks)
        mask = value & ALL
        if reg in (PmuReg.PMCR, PmuReg.PMCNTENSET, PmuReg.PMCNTENCLR):
            self._freeze(clocks)
            if reg is PmuReg.PMCR:
                if value & PMCR_P:  # event counters to zero (not the cycle counter)
                    for counter in self.counters:
                        counter.base = 0
                if value & PMCR_C:
                    self.cycle.base = 0
                self.pmcr = (self.pmcr & ~PMCR_WRITABLE) | (value & PMCR_WRITABLE)
            elif reg is PmuReg.PMCNTENSET:
                self.cnten |= mask
            else:
                self.cnten &= ~mask
            self._resume(clocks)
        elif reg is PmuReg.PMOVSSET:
            self.ovs |= mask
        elif reg is PmuReg.PMOVSCLR:
            self.ovs &= ~mask
        elif reg is PmuReg.PMINTENSET:
            self.inten |= mask
        elif reg is PmuReg.PMINTENCLR:
            self.inten &= ~mask
        elif reg is PmuReg.PMSELR:
            self.selr = value & 0x1F
        elif reg is PmuReg.PMSWINC:
            for index in range(COUNTERS):
                counter = self.counters[index]
                if value >> index & 1 and self._counts(index) and counter.evtype & EVTCOUNT == SW_INCR:
                    counter.base += 1
                    if counter.base > MASK32:
                        counter.base &= MASK32
                        self.ovs |= 1 << index
        elif reg is PmuReg.PMCCNTR:
            self.cycle.base = value & self._width(CYCLE)
            self._restart(clocks, (CYCLE,))
        elif reg is PmuReg.PMCCFILTR:
            self.cycle.evtype = value & FILTER_BITS
        else:
            selected = self._selected(reg, n)
            if selected is None:
                pass  # a counter that does not exist: the write is ignored
            elif selected == CYCLE:
                self.cycle.evtype = value & FILTER_BITS
            elif reg in (PmuReg.PMEVTYPER, PmuReg.PMXEVTYPER):
                self._freeze(clocks)
                self.counters[selected].evtype = value & (FILTER_BITS | EVTCOUNT)
                self._resume(clocks)
            else:
                self.counters[selected].base = value & MASK32
                self._restart(clocks, (selected,))
        self._update_line()

    def _restart(self, clocks: Clocks, indices: tuple[int, ...]) -> None:
        """Counters just given a value count on from it, from now."""
        for index in indices:
            source = self._source(index, clocks)
            self._counter(index).start = source if source is not None else 0
