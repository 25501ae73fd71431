"""The PMU model (sdeilab/machine/pmu.py): PMUv3 of QEMU's cortex-a57, counted from the run's clocks.

guests/pmu.c checks the behaviour a guest can compare with qemu-system-aarch64 (tests/test_guests_lab.py);
these check what QEMU cannot show the same way: every count is a function of the run (virtual time,
instructions retired), never of the host's clock, and overflows land on the exact count.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sdeilab.lab.platform import make_platform
from sdeilab.machine.pmu import (
    CPU_CYCLES,
    CYCLE,
    INST_RETIRED,
    PMCR_C,
    PMCR_D,
    PMCR_E,
    PMCR_LC,
    PMCR_P,
    PMU_INTID,
    Clocks,
    Pmu,
    PmuReg,
    el0_may_access,
)
from sdeilab.toolchain import build_source_text


def pmu() -> tuple[Pmu, list[tuple[int, bool]]]:
    levels: list[tuple[int, bool]] = []
    return Pmu(0, lambda intid, level: levels.append((intid, level))), levels


def at(vtime: int, retired: int = 0) -> Clocks:
    return Clocks(vtime, retired)


def test_reset_values_are_qemus_cortex_a57() -> None:
    unit, _ = pmu()
    assert unit.read(PmuReg.PMCR, 0, at(0)) == 0x4101_3000  # IMP Arm, IDCODE 1, N = 6
    assert unit.read(PmuReg.PMCEID0, 0, at(0)) == (1 << 0) | (1 << INST_RETIRED) | (1 << CPU_CYCLES)
    assert unit.read(PmuReg.PMCCNTR, 0, at(10**6)) == 0  # stopped until PMCR_EL0.E and its enable bit


def test_the_cycle_counter_counts_virtual_nanoseconds_and_d_divides_by_64() -> None:
    unit, _ = pmu()
    unit.write(PmuReg.PMCNTENSET, 0, 1 << CYCLE, at(100))
    unit.write(PmuReg.PMCR, 0, PMCR_E, at(100))
    assert unit.read(PmuReg.PMCCNTR, 0, at(1100)) == 1000
    unit.write(PmuReg.PMCR, 0, PMCR_E | PMCR_D, at(1100))
    assert unit.read(PmuReg.PMCCNTR, 0, at(1100 + 64 * 10)) == 1010
    unit.write(PmuReg.PMCR, 0, PMCR_E | PMCR_C, at(5000))  # C resets it; P and C read as zero
    assert unit.read(PmuReg.PMCCNTR, 0, at(5007)) == 7
    assert unit.read(PmuReg.PMCR, 0, at(5007)) == 0x4101_3000 | PMCR_E
    unit.write(PmuReg.PMCNTENCLR, 0, 1 << CYCLE, at(6000))
    assert unit.read(PmuReg.PMCCNTR, 0, at(9000)) == 1000


def test_event_counters_count_instructions_cycles_and_software_increments() -> None:
    unit, _ = pmu()
    unit.write(PmuReg.PMEVTYPER, 0, INST_RETIRED, at(0))
    unit.write(PmuReg.PMEVTYPER, 1, CPU_CYCLES, at(0))
    unit.write(PmuReg.PMEVTYPER, 2, 0, at(0))  # SW_INCR
    unit.write(PmuReg.PMEVTYPER, 3, 0x23, at(0))  # an event QEMU does not count on an A57
    unit.write(PmuReg.PMCNTENSET, 0, 0b1111, at(0))
    unit.write(PmuReg.PMCR, 0, PMCR_E, at(1000, 1000))
    unit.write(PmuReg.PMSWINC, 0, 0b0110, at(1500, 1200))  # counter 1 counts cycles, not increments
    clocks = at(11_000, 4000)  # a sleep: time went on, instructions did not
    counts = [unit.read(PmuReg.PMEVCNTR, n, clocks) for n in range(4)]
    assert counts == [3000, 10_000, 1, 0]
    unit.write(PmuReg.PMSELR, 0, 1, clocks)
    assert unit.read(PmuReg.PMXEVCNTR, 0, clocks) == 10_000
    unit.write(PmuReg.PMCR, 0, PMCR_E | PMCR_P, clocks)  # P: event counters to zero, not PMCCNTR
    assert [unit.read(PmuReg.PMEVCNTR, n, clocks) for n in range(4)] == [0, 0, 0, 0]


def test_overflows_set_pmovs_and_raise_ppi_23_only_when_enabled() -> None:
    unit, levels = pmu()
    unit.write(PmuReg.PMCNTENSET, 0, 1, at(0))
    unit.write(PmuReg.PMCR, 0, PMCR_E, at(0))
    unit.write(PmuReg.PMEVCNTR, 0, 0xFFFF_FFFF, at(0))
    unit.write(PmuReg.PMSWINC, 0, 1, at(0))
    assert unit.read(PmuReg.PMOVSSET, 0, at(0)) == 1 and levels == []  # PMINTENSET clear
    unit.write(PmuReg.PMINTENSET, 0, 1, at(0))
    assert levels == [(PMU_INTID, True)]
    unit.write(PmuReg.PMCR, 0, 0, at(0))  # E clear: the line drops, the flag stays
    assert levels[-1] == (PMU_INTID, False) and unit.read(PmuReg.PMOVSCLR, 0, at(0)) == 1


@pytest.mark.parametrize(("lc", "period"), [(0, 1 << 32), (PMCR_LC, 1 << 64)])
def test_the_cycle_counter_overflows_at_bit_31_or_bit_63_and_keeps_64_bits(lc: int, period: int) -> None:
    unit, levels = pmu()
    start = period - 100
    unit.write(PmuReg.PMCCNTR, 0, start, at(0))
    unit.write(PmuReg.PMINTENSET, 0, 1 << CYCLE, at(0))
    unit.write(PmuReg.PMCNTENSET, 0, 1 << CYCLE, at(0))
    unit.write(PmuReg.PMCR, 0, PMCR_E | lc, at(0))
    assert unit.next_deadline(at(0)) == 100 and unit.next_deadline(at(0), asleep=True) == 100
    unit.update(at(99))
    assert not levels
    unit.update(at(100))
    assert levels == [(PMU_INTID, True)] and unit.read(PmuReg.PMOVSSET, 0, at(100)) == 1 << CYCLE
    assert unit.read(PmuReg.PMCCNTR, 0, at(150)) == (start + 150) % (1 << 64)  # 64 bits whatever LC says


def test_an_instruction_counter_cannot_wake_a_sleeping_cpu() -> None:
    unit, _ = pmu()
    unit.write(PmuReg.PMEVTYPER, 0, INST_RETIRED, at(0))
    unit.write(PmuReg.PMEVCNTR, 0, 0xFFFF_FF00, at(0))
    unit.write(PmuReg.PMINTENSET, 0, 1, at(0))
    unit.write(PmuReg.PMCNTENSET, 0, 1, at(0))
    unit.write(PmuReg.PMCR, 0, PMCR_E, at(0))
    assert unit.next_deadline(at(0)) == 256  # running: at least 256 ns away
    assert unit.next_deadline(at(0), asleep=True) is None  # asleep, it retires nothing


def test_el0_access_follows_pmuserenr() -> None:
    assert not el0_may_access(PmuReg.PMCCNTR, False, 0)
    assert el0_may_access(PmuReg.PMCCNTR, False, 1 << 2) and not el0_may_access(PmuReg.PMCCNTR, True, 1 << 2)
    assert el0_may_access(PmuReg.PMSWINC, True, 1 << 1) and not el0_may_access(PmuReg.PMCR, False, 1 << 1)
    assert el0_may_access(PmuReg.PMEVCNTR, False, 1 << 3) and el0_may_access(PmuReg.PMSELR, True, 1 << 3)
    assert el0_may_access(PmuReg.PMCR, True, 1) and not el0_may_access(PmuReg.PMINTENSET, False, 1)


READS = """#include "guest.h"
int main(void)
{
    write_sysreg(pmcntenset_el0, 1u << 31);
    write_sysreg(pmevtyper0_el0, 0x08);         /* INST_RETIRED */
    write_sysreg(pmcntenset_el0, 1);
    write_sysreg(pmcr_el0, 1 | 4);              /* E, C */
    isb();
    uint64_t cycles = read_sysreg(pmccntr_el0);
    uint64_t retired = read_sysreg(pmevcntr0_el0);
    for (volatile int i = 0; i < 500; i++)
        ;
    uint64_t cycles2 = read_sysreg(pmccntr_el0);
    uint64_t retired2 = read_sysreg(pmevcntr0_el0);
    put_udec(cycles); putc(' '); put_udec(retired); putc(' ');
    put_udec(cycles2); putc(' '); put_udec(retired2); putc('\\n');
    psci_system_off();
    return 0;
}
"""


def test_a_guest_reads_the_same_counts_in_every_run(tmp_path: Path) -> None:
    # No host clock reaches the guest: two runs print the same counts, and on one CPU with no
    # sleep the cycles counted are the instructions retired (one instruction, one nanosecond).
    guest = build_source_text(READS, "c", tmp_path / "reads.elf")
    outputs = []
    for _ in range(2):
        platform = make_platform(1)
        platform.load(guest)
        assert platform.run(1_000_000).reason.name == "SYSTEM_OFF"
        outputs.append(platform.machine.uart_output.decode())
    assert outputs[0] == outputs[1]
    cycles, retired, cycles2, retired2 = map(int, outputs[0].split())
    assert cycles2 - cycles == retired2 - retired > 500 * 3
