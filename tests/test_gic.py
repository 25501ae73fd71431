"""GICv3 model driven directly: registers, priorities, acknowledge/EOI, SGIs, routing, firmware."""

from __future__ import annotations

import pytest

from sdeilab.machine.gic import ICC_ENCODINGS, SPURIOUS, GicV3, IccReg

GICD_CTLR = 0x0000
GICD_TYPER = 0x0004
GICD_IIDR = 0x0008
GICD_IGROUPR = 0x0080
GICD_ISENABLER = 0x0100
GICD_ICENABLER = 0x0180
GICD_ISPENDR = 0x0200
GICD_ICPENDR = 0x0280
GICD_ISACTIVER = 0x0300
GICD_IPRIORITYR = 0x0400
GICD_ICFGR = 0x0C00
GICD_IGRPMODR = 0x0D00
GICD_IROUTER = 0x6000
GICD_PIDR2 = 0xFFE8
GICR_TYPER = 0x0008
GICR_WAKER = 0x0014
GICR_PIDR2 = 0xFFE8
SGI_FRAME = 0x1_0000
FRAME = 0x2_0000


class Recorder:
    def __init__(self) -> None:
        self.facts: list[tuple[object, ...]] = []

    def __call__(self, kind: type, cpu: int, *payload: object) -> None:
        self.facts.append((kind.__name__, cpu, *payload))

    def of(self, name: str) -> list[tuple[object, ...]]:
        return [f for f in self.facts if f[0] == name]


def make(num_cpus: int = 2, **kwargs: object) -> tuple[GicV3, Recorder]:
    rec = Recorder()
    return GicV3(num_cpus, rec, **kwargs), rec  # type: ignore[arg-type]


def guest_init(gic: GicV3, pmr: int = 0xF0) -> None:
    """What a guest does at boot: enable both groups in GICD and in every CPU interface."""
    gic.dist_write(0, GICD_CTLR, 4, 0x3)
    for cpu in range(gic.num_cpus):
        gic.icc_write(cpu, IccReg.PMR, pmr)
        gic.icc_write(cpu, IccReg.IGRPEN0, 1)
        gic.icc_write(cpu, IccReg.IGRPEN1, 1)


def sgi_reg(cpu: int, off: int) -> int:
    return cpu * FRAME + SGI_FRAME + off


def setup_ppi(gic: GicV3, cpu: int, intid: int, prio: int, group: int = 1) -> None:
    word = gic.redist_read(0, sgi_reg(cpu, GICD_IGROUPR), 4)
    word = word | (1 << intid) if group else word & ~(1 << intid)
    gic.redist_write(0, sgi_reg(cpu, GICD_IGROUPR), 4, word)
    gic.redist_write(0, sgi_reg(cpu, GICD_IPRIORITYR + intid), 1, prio)
    gic.redist_write(0, sgi_reg(cpu, GICD_ISENABLER), 4, 1 << intid)


def setup_spi(gic: GicV3, intid: int, prio: int, group: int = 1, edge: bool = True, cpu: int = 0) -> None:
    n, bit = divmod(intid, 32)
    word = gic.dist_read(0, GICD_IGROUPR + 4 * n, 4)
    word = word | (1 << bit) if group else word & ~(1 << bit)
    gic.dist_write(0, GICD_IGROUPR + 4 * n, 4, word)
    gic.dist_write(0, GICD_IPRIORITYR + intid, 1, prio)
    cfg_off = GICD_ICFGR + 4 * (intid // 16)
    cfg = gic.dist_read(0, cfg_off, 4)
    shift = 2 * (intid % 16) + 1
    cfg = cfg | (1 << shift) if edge else cfg & ~(1 << shift)
    gic.dist_write(0, cfg_off, 4, cfg)
    gic.dist_write(0, GICD_IROUTER + 8 * intid, 8, cpu)
    gic.dist_write(0, GICD_ISENABLER + 4 * n, 4, 1 << bit)


def pend_spi(gic: GicV3, intid: int) -> None:
    gic.dist_write(0, GICD_ISPENDR + 4 * (intid // 32), 4, 1 << (intid % 32))


# ---- identification and reset values -----------------------------------------------------


def test_encodings_match_linux_sysreg_h() -> None:
    expected = {
        "ICC_PMR_EL1": (3, 0, 4, 6, 0),
        "ICC_IAR0_EL1": (3, 0, 12, 8, 0),
        "ICC_EOIR0_EL1": (3, 0, 12, 8, 1),
        "ICC_HPPIR0_EL1": (3, 0, 12, 8, 2),
        "ICC_BPR0_EL1": (3, 0, 12, 8, 3),
        "ICC_AP0R0_EL1": (3, 0, 12, 8, 4),
        "ICC_AP1R0_EL1": (3, 0, 12, 9, 0),
        "ICC_DIR_EL1": (3, 0, 12, 11, 1),
        "ICC_RPR_EL1": (3, 0, 12, 11, 3),
        "ICC_SGI1R_EL1": (3, 0, 12, 11, 5),
        "ICC_ASGI1R_EL1": (3, 0, 12, 11, 6),
        "ICC_SGI0R_EL1": (3, 0, 12, 11, 7),
        "ICC_IAR1_EL1": (3, 0, 12, 12, 0),
        "ICC_EOIR1_EL1": (3, 0, 12, 12, 1),
        "ICC_HPPIR1_EL1": (3, 0, 12, 12, 2),
        "ICC_BPR1_EL1": (3, 0, 12, 12, 3),
        "ICC_CTLR_EL1": (3, 0, 12, 12, 4),
        "ICC_SRE_EL1": (3, 0, 12, 12, 5),
        "ICC_IGRPEN0_EL1": (3, 0, 12, 12, 6),
        "ICC_IGRPEN1_EL1": (3, 0, 12, 12, 7),
    }
    assert {reg.value: key for key, reg in ICC_ENCODINGS.items()} == expected


def test_distributor_identification_and_reset() -> None:
    gic, _ = make(2)
    assert gic.dist_read(0, GICD_CTLR, 4) == 0x50  # ARE (bit 4) and DS (bit 6) RAO
    # 256 SPIs: 288 INTIDs -> ITLinesNumber 8; IDbits 15 (16 bits); A3V.
    assert gic.dist_read(0, GICD_TYPER, 4) == (1 << 24) | (0xF << 19) | 8
    assert gic.dist_read(0, GICD_IIDR, 4) == 0x43B
    assert gic.dist_read(0, GICD_PIDR2, 4) == 0x3B  # ArchRev 3
    assert (gic.dist_read(0, GICD_PIDR2, 4) >> 4) & 0xF == 3
    gic.dist_write(0, GICD_CTLR, 4, 0xFFFF_FFFF)
    assert gic.dist_read(0, GICD_CTLR, 4) == 0x53  # only the two enables are writable, RWP reads 0


def test_typer_follows_num_spis() -> None:
    gic, _ = make(1, num_spis=64)
    assert gic.dist_read(0, GICD_TYPER, 4) & 0x1F == 2
    with pytest.raises(ValueError):
        make(1, num_spis=33)


def test_cpu_interface_reset_values() -> None:
    gic, _ = make(1)
    assert gic.icc_read(0, IccReg.PMR) == 0
    assert gic.icc_read(0, IccReg.RPR) == 0xFF
    assert gic.icc_read(0, IccReg.BPR0) == 2
    assert gic.icc_read(0, IccReg.BPR1) == 3
    assert gic.icc_read(0, IccReg.SRE) == 0x7
    # A3V | IDbits = 1 | PRIbits = 4 (5 priority bits), EOImode 0.
    assert gic.icc_read(0, IccReg.CTLR) == 0x8C00
    assert (gic.icc_read(0, IccReg.CTLR) >> 8) & 7 == 4
    gic.icc_write(0, IccReg.PMR, 0xFF)
    assert gic.icc_read(0, IccReg.PMR) == 0xF8  # only 5 bits implemented
    gic.icc_write(0, IccReg.BPR0, 0)
    assert gic.icc_read(0, IccReg.BPR0) == 2  # below the minimum writes the minimum
    gic.icc_write(0, IccReg.CTLR, 0xFFFF)
    assert gic.icc_read(0, IccReg.CTLR) == 0x8C03


def test_read_only_and_write_only_registers_are_refused() -> None:
    gic, _ = make(1)
    with pytest.raises(ValueError):
        gic.icc_read(0, IccReg.EOIR1)
    with pytest.raises(ValueError):
        gic.icc_write(0, IccReg.IAR1, 0)


# ---- redistributors ----------------------------------------------------------------------


def test_gicr_waker_processor_sleep_and_children_asleep() -> None:
    gic, _ = make(2)
    assert gic.redist_read(0, FRAME + GICR_WAKER, 4) == 0x6
    gic.redist_write(0, FRAME + GICR_WAKER, 4, 0)
    assert gic.redist_read(0, FRAME + GICR_WAKER, 4) == 0
    assert gic.redist_read(0, GICR_WAKER, 4) == 0x6  # CPU 0's frame untouched
    gic.redist_write(1, FRAME + GICR_WAKER, 4, 0x2)
    assert gic.redist_read(1, FRAME + GICR_WAKER, 4) == 0x6


def test_gicr_typer_affinity_processor_number_and_last() -> None:
    gic, _ = make(3)
    assert gic.redist_read(0, GICR_TYPER, 8) == 0
    assert gic.redist_read(0, FRAME + GICR_TYPER, 8) == (1 << 32) | (1 << 8)
    assert gic.redist_read(0, 2 * FRAME + GICR_TYPER, 8) == (2 << 32) | (2 << 8) | 0x10
    assert gic.redist_read(0, 2 * FRAME + GICR_TYPER, 4) == (2 << 8) | 0x10
    assert gic.redist_read(0, 2 * FRAME + GICR_TYPER + 4, 4) == 2
    assert gic.redist_read(0, 3 * FRAME + GICR_TYPER, 8) == 0  # no fourth frame: RAZ
    assert gic.redist_read(0, 2 * FRAME + GICR_PIDR2, 4) == 0x3B


def test_gicr_typer_uses_virt_affinity_beyond_sixteen_cpus() -> None:
    gic, _ = make(17)
    # CPU 8 is Aff0 = 8; CPU 16 is Aff1 = 1, Aff0 = 0 (QEMU virt with a GICv3: 16 CPUs per cluster).
    assert gic.redist_read(0, 8 * FRAME + GICR_TYPER, 8) == (0x8 << 32) | (8 << 8)
    assert gic.redist_read(0, 16 * FRAME + GICR_TYPER, 8) == (0x100 << 32) | (16 << 8) | 0x10


def test_redistributor_banks_are_per_cpu_whoever_accesses() -> None:
    gic, _ = make(2)
    gic.redist_write(0, sgi_reg(1, GICD_ISENABLER), 4, 1 << 27)
    assert gic.redist_read(0, sgi_reg(1, GICD_ISENABLER), 4) == 1 << 27
    assert gic.redist_read(1, sgi_reg(0, GICD_ISENABLER), 4) == 0
    assert gic.is_enabled(27, cpu=1) and not gic.is_enabled(27, cpu=0)
    assert gic.redist_read(0, sgi_reg(0, 0x0C00), 4) == 0xAAAA_AAAA  # SGIs always edge
    gic.redist_write(0, sgi_reg(0, 0x0C00), 4, 0)
    assert gic.redist_read(0, sgi_reg(0, 0x0C00), 4) == 0xAAAA_AAAA


# ---- distributor registers ---------------------------------------------------------------


def test_distributor_private_interrupts_are_raz_wi_with_are() -> None:
    gic, _ = make(1)
    gic.dist_write(0, GICD_ISENABLER, 4, 0xFFFF_FFFF)
    assert gic.dist_read(0, GICD_ISENABLER, 4) == 0
    assert not gic.is_enabled(27, cpu=0)
    gic.dist_write(0, GICD_IPRIORITYR + 27, 1, 0x40)
    assert gic.get_priority(27, cpu=0) == 0


def test_ipriorityr_byte_and_word_access() -> None:
    gic, _ = make(1)
    gic.dist_write(0, GICD_IPRIORITYR + 40, 4, 0x8070_6050)
    assert [gic.get_priority(i) for i in range(40, 44)] == [0x50, 0x60, 0x70, 0x80]
    assert gic.dist_read(0, GICD_IPRIORITYR + 42, 1) == 0x70
    gic.dist_write(0, GICD_IPRIORITYR + 41, 1, 0xA5)
    assert gic.dist_read(0, GICD_IPRIORITYR + 40, 4) == 0x8070_A550  # all 8 bits kept


def test_enable_set_clear_and_unimplemented_spis() -> None:
    gic, _ = make(1, num_spis=32)
    gic.dist_write(0, GICD_ISENABLER + 4, 4, 0x0000_0101)
    gic.dist_write(0, GICD_ICENABLER + 4, 4, 0x0000_0001)
    assert gic.dist_read(0, GICD_ISENABLER + 4, 4) == 0x100
    assert gic.dist_read(0, GICD_ICENABLER + 4, 4) == 0x100
    gic.dist_write(0, GICD_ISENABLER + 8, 4, 0xFFFF_FFFF)  # INTIDs 64..95 do not exist
    assert gic.dist_read(0, GICD_ISENABLER + 8, 4) == 0


def test_irouter_64_and_32_bit_access_and_igrpmodr_raz() -> None:
    gic, _ = make(2)
    gic.dist_write(0, GICD_IROUTER + 8 * 40, 8, 0xFFFF_FFFF_FFFF_FFFF)
    assert gic.dist_read(0, GICD_IROUTER + 8 * 40, 8) == 0xFF_80FF_FFFF
    gic.dist_write(0, GICD_IROUTER + 8 * 40, 4, 1)
    gic.dist_write(0, GICD_IROUTER + 8 * 40 + 4, 4, 0)
    assert gic.dist_read(0, GICD_IROUTER + 8 * 40, 4) == 1
    assert gic.routed_cpu(40) == 1
    gic.dist_write(0, GICD_IGRPMODR + 4, 4, 0xFFFF_FFFF)
    assert gic.dist_read(0, GICD_IGRPMODR + 4, 4) == 0


# ---- signalling, masking, acknowledge ----------------------------------------------------


def test_ppi_enable_priority_and_pmr_masking() -> None:
    gic, rec = make(2)
    guest_init(gic, pmr=0xA0)
    setup_ppi(gic, 0, 27, prio=0xA0)
    gic.set_level(27, True, cpu=0, source="timer")
    assert rec.of("IrqAsserted") == [("IrqAsserted", 0, 27, "timer")]
    assert gic.highest_pending(0) == 27
    assert not gic.irq_line(0)  # priority 0xA0 is not higher than PMR 0xA0
    gic.icc_write(0, IccReg.PMR, 0xA8)
    assert gic.irq_line(0) and not gic.fiq_line(0)
    assert not gic.irq_line(1)  # PPIs are private
    gic.icc_write(0, IccReg.IGRPEN1, 0)
    assert not gic.irq_line(0)
    gic.icc_write(0, IccReg.IGRPEN1, 1)
    gic.dist_write(0, GICD_CTLR, 4, 0x1)  # Group 1 disabled in the distributor
    assert not gic.irq_line(0)
    gic.dist_write(0, GICD_CTLR, 4, 0x3)
    gic.redist_write(0, sgi_reg(0, GICD_ICENABLER), 4, 1 << 27)
    assert not gic.irq_line(0)
    assert gic.highest_pending(0) is None
    assert gic.is_pending(27, cpu=0)


def test_group0_is_signalled_as_fiq() -> None:
    gic, _ = make(1)
    guest_init(gic)
    setup_ppi(gic, 0, 30, prio=0x80, group=0)
    gic.set_level(30, True, cpu=0)
    assert gic.fiq_line(0) and not gic.irq_line(0)
    assert gic.icc_read(0, IccReg.IAR1) == SPURIOUS  # Group 0 is not visible through IAR1
    assert gic.icc_read(0, IccReg.HPPIR1) == SPURIOUS
    assert gic.icc_read(0, IccReg.HPPIR0) == 30
    assert gic.icc_read(0, IccReg.IAR0) == 30
    assert gic.icc_read(0, IccReg.AP0R0) == 1 << (0x80 >> 3)
    assert not gic.fiq_line(0)


def test_iar_eoir_with_eoimode0_edge_spi() -> None:
    gic, rec = make(1)
    guest_init(gic)
    setup_spi(gic, 33, prio=0xA0)
    pend_spi(gic, 33)
    assert rec.of("IrqAsserted") == [("IrqAsserted", 0, 33, "ispendr")]
    assert gic.irq_line(0)
    assert gic.icc_read(0, IccReg.IAR1) == 33
    assert gic.is_active(33) and not gic.is_pending(33)
    assert not gic.irq_line(0)
    assert gic.icc_read(0, IccReg.RPR) == 0xA0
    assert gic.icc_read(0, IccReg.AP1R0) == 1 << 20
    assert gic.icc_read(0, IccReg.IAR1) == SPURIOUS
    gic.icc_write(0, IccReg.EOIR1, 33)
    assert not gic.is_active(33)
    assert gic.icc_read(0, IccReg.RPR) == 0xFF
    assert rec.of("IrqAcknowledged") == [("IrqAcknowledged", 0, 33, 1)]
    assert rec.of("IrqCompleted") == [("IrqCompleted", 0, 33, "eoi")]


def test_eoimode1_splits_priority_drop_and_deactivation() -> None:
    gic, rec = make(1)
    guest_init(gic)
    gic.icc_write(0, IccReg.CTLR, 0x2)
    setup_spi(gic, 40, prio=0x80)
    pend_spi(gic, 40)
    assert gic.icc_read(0, IccReg.IAR1) == 40
    gic.icc_write(0, IccReg.EOIR1, 40)
    assert gic.icc_read(0, IccReg.RPR) == 0xFF  # priority dropped
    assert gic.is_active(40)  # but still active
    pend_spi(gic, 40)
    assert not gic.irq_line(0)  # active and pending: not signalled again
    gic.icc_write(0, IccReg.DIR, 40)
    assert not gic.is_active(40)
    assert gic.irq_line(0)
    assert [f[3] for f in rec.of("IrqCompleted")] == ["eoi", "dir"]


def test_dir_is_ignored_with_eoimode0() -> None:
    gic, rec = make(1)
    guest_init(gic)
    setup_spi(gic, 40, prio=0x80)
    pend_spi(gic, 40)
    assert gic.icc_read(0, IccReg.IAR1) == 40
    gic.icc_write(0, IccReg.DIR, 40)
    assert gic.is_active(40)
    assert rec.of("IrqCompleted") == []


def test_eoir_of_the_wrong_group_does_not_drop_priority() -> None:
    gic, _ = make(1)
    guest_init(gic)
    setup_spi(gic, 40, prio=0x80)
    pend_spi(gic, 40)
    gic.icc_read(0, IccReg.IAR1)
    gic.icc_write(0, IccReg.EOIR0, 40)
    assert gic.icc_read(0, IccReg.RPR) == 0x80
    assert gic.is_active(40)
    gic.icc_write(0, IccReg.EOIR1, 1023)  # special INTIDs are ignored
    assert gic.icc_read(0, IccReg.RPR) == 0x80


def test_level_interrupt_stays_pending_while_line_is_high() -> None:
    gic, rec = make(1)
    guest_init(gic)
    setup_ppi(gic, 0, 30, prio=0xA0)
    gic.set_level(30, True, cpu=0)
    assert gic.icc_read(0, IccReg.IAR1) == 30
    assert gic.is_pending(30, cpu=0) and gic.is_active(30, cpu=0)
    assert not gic.irq_line(0)
    gic.icc_write(0, IccReg.EOIR1, 30)
    assert gic.irq_line(0)  # line still high: pending again once inactive
    gic.set_level(30, False, cpu=0)
    assert not gic.irq_line(0) and not gic.is_pending(30, cpu=0)
    assert len(rec.of("IrqAsserted")) == 1


def test_edge_interrupt_latches_only_rising_edges() -> None:
    gic, rec = make(1)
    guest_init(gic)
    setup_spi(gic, 50, prio=0xA0, edge=True)
    gic.set_level(50, True, source="dev")
    assert gic.icc_read(0, IccReg.IAR1) == 50
    assert not gic.is_pending(50)  # the line is still high, but an edge interrupt latched once
    gic.icc_write(0, IccReg.EOIR1, 50)
    assert not gic.irq_line(0)
    gic.set_level(50, True, source="dev")  # no change: no edge
    assert not gic.irq_line(0)
    gic.set_level(50, False)
    gic.set_level(50, True, source="dev")
    assert gic.irq_line(0)
    assert [f[2] for f in rec.of("IrqAsserted")] == [50, 50]


def test_level_spi_pending_follows_the_line() -> None:
    gic, _ = make(1)
    guest_init(gic)
    setup_spi(gic, 50, prio=0xA0, edge=False)
    gic.set_level(50, True)
    assert gic.irq_line(0)
    gic.dist_write(0, GICD_ICPENDR + 4, 4, 1 << 18)  # clearing the latch cannot drop the level
    assert gic.is_pending(50)
    gic.set_level(50, False)
    assert not gic.irq_line(0) and not gic.is_pending(50)


# ---- priorities and preemption -----------------------------------------------------------


def test_higher_priority_preempts_equal_and_lower_do_not() -> None:
    gic, _ = make(1)
    guest_init(gic)
    setup_spi(gic, 40, prio=0xA0)
    setup_spi(gic, 41, prio=0xA0)
    setup_spi(gic, 42, prio=0xC0)
    setup_spi(gic, 43, prio=0x80)
    pend_spi(gic, 40)
    assert gic.icc_read(0, IccReg.IAR1) == 40
    pend_spi(gic, 41)  # equal priority
    pend_spi(gic, 42)  # lower priority
    assert not gic.irq_line(0)
    assert gic.icc_read(0, IccReg.IAR1) == SPURIOUS
    pend_spi(gic, 43)  # higher priority
    assert gic.irq_line(0)
    assert gic.icc_read(0, IccReg.IAR1) == 43
    assert gic.icc_read(0, IccReg.RPR) == 0x80
    gic.icc_write(0, IccReg.EOIR1, 43)
    assert gic.icc_read(0, IccReg.RPR) == 0xA0  # back to the pre-empted interrupt
    assert not gic.irq_line(0)
    gic.icc_write(0, IccReg.EOIR1, 40)
    assert gic.icc_read(0, IccReg.IAR1) == 41  # same priority: lowest INTID first
    gic.icc_write(0, IccReg.EOIR1, 41)
    assert gic.icc_read(0, IccReg.IAR1) == 42


def test_binary_point_subpriority_does_not_preempt() -> None:
    gic, _ = make(1)
    guest_init(gic)
    setup_spi(gic, 40, prio=0x98)
    setup_spi(gic, 41, prio=0x88)
    pend_spi(gic, 40)
    assert gic.icc_read(0, IccReg.IAR1) == 40
    pend_spi(gic, 41)
    assert gic.irq_line(0)  # default BPR1 = 3: group priority is every implemented bit
    gic.icc_write(0, IccReg.BPR1, 4)  # BPR1 = 4 keeps bits [7:4]: 0x90 vs 0x80, still preempts
    assert gic.irq_line(0)
    gic.icc_write(0, IccReg.BPR1, 5)  # group priority bits [7:5]: 0x98 and 0x88 are both 0x80
    assert not gic.irq_line(0)
    assert gic.icc_read(0, IccReg.IAR1) == SPURIOUS


def test_hppir_ignores_pmr() -> None:
    gic, _ = make(1)
    guest_init(gic, pmr=0x10)
    setup_spi(gic, 40, prio=0x80)
    pend_spi(gic, 40)
    assert not gic.irq_line(0)
    assert gic.icc_read(0, IccReg.HPPIR1) == 40
    assert gic.icc_read(0, IccReg.HPPIR0) == SPURIOUS
    assert gic.icc_read(0, IccReg.IAR1) == SPURIOUS
    assert gic.is_pending(40) and not gic.is_active(40)


# ---- SGIs --------------------------------------------------------------------------------


def test_sgi1r_targets_the_target_list() -> None:
    gic, rec = make(4)
    guest_init(gic)
    for cpu in range(4):
        setup_ppi(gic, cpu, 5, prio=0x80)
    gic.icc_write(0, IccReg.SGI1R, (5 << 24) | 0b1010)
    assert [gic.irq_line(c) for c in range(4)] == [False, True, False, True]
    assert rec.of("IrqAsserted") == [("IrqAsserted", 1, 5, "sgi:cpu0"), ("IrqAsserted", 3, 5, "sgi:cpu0")]
    assert gic.icc_read(3, IccReg.IAR1) == 5


def test_sgi_group_must_match_the_target_configuration() -> None:
    gic, _ = make(2)
    guest_init(gic)
    setup_ppi(gic, 1, 3, prio=0x80, group=0)
    gic.icc_write(0, IccReg.SGI1R, (3 << 24) | 0b10)
    assert not gic.is_pending(3, cpu=1)  # a Group 1 request for a Group 0 SGI is dropped
    gic.icc_write(0, IccReg.SGI0R, (3 << 24) | 0b10)
    assert gic.is_pending(3, cpu=1) and gic.fiq_line(1)


def test_sgi_irm_reaches_every_online_cpu_but_self() -> None:
    online = {0: True, 1: True, 2: False, 3: True}
    gic, _ = make(4, cpu_online=lambda cpu: online[cpu])
    guest_init(gic)
    for cpu in range(4):
        setup_ppi(gic, cpu, 1, prio=0x80)
    gic.icc_write(1, IccReg.SGI1R, (1 << 40) | (1 << 24))
    assert [gic.is_pending(1, cpu=c) for c in range(4)] == [True, False, False, True]


def test_sgi_affinity_levels_select_the_cluster() -> None:
    gic, _ = make(17)
    guest_init(gic)
    for cpu in range(17):
        setup_ppi(gic, cpu, 2, prio=0x80)
        setup_ppi(gic, cpu, 3, prio=0x80)
    gic.icc_write(0, IccReg.SGI1R, (1 << 16) | (2 << 24) | 0b1)  # Aff1 = 1, TargetList bit 0
    assert [c for c in range(17) if gic.is_pending(2, cpu=c)] == [16]
    gic.icc_write(0, IccReg.SGI1R, (3 << 24) | (1 << 9))  # Aff1 = 0, TargetList bit 9: CPU 9, not CPU 17
    assert [c for c in range(17) if gic.is_pending(3, cpu=c)] == [9]


# ---- SPI routing -------------------------------------------------------------------------


def test_spi_routed_by_irouter_affinity() -> None:
    gic, rec = make(2)
    guest_init(gic)
    setup_spi(gic, 40, prio=0x80, cpu=1)
    pend_spi(gic, 40)
    assert gic.irq_line(1) and not gic.irq_line(0)
    assert rec.of("IrqAsserted") == [("IrqAsserted", 1, 40, "ispendr")]
    assert gic.icc_read(0, IccReg.IAR1) == SPURIOUS
    assert gic.icc_read(1, IccReg.IAR1) == 40
    gic.icc_write(1, IccReg.EOIR1, 40)
    gic.dist_write(0, GICD_IROUTER + 8 * 40, 8, 0x7)  # no CPU has affinity 0.0.0.7
    pend_spi(gic, 40)
    assert gic.routed_cpu(40) is None
    assert not gic.irq_line(0) and not gic.irq_line(1)
    assert rec.of("IrqAsserted")[-1] == ("IrqAsserted", -1, 40, "ispendr")


def test_spi_one_of_n_picks_lowest_online_cpu_with_group_enabled() -> None:
    online = {0: False, 1: True, 2: True}
    gic, _ = make(3, cpu_online=lambda cpu: online[cpu])
    guest_init(gic)
    setup_spi(gic, 60, prio=0x80)
    gic.route_spi(60, None)
    assert gic.dist_read(0, GICD_IROUTER + 8 * 60, 8) == 1 << 31
    assert gic.routed_cpu(60) == 1
    gic.icc_write(1, IccReg.IGRPEN1, 0)
    assert gic.routed_cpu(60) == 2
    pend_spi(gic, 60)
    assert [gic.irq_line(c) for c in range(3)] == [False, False, True]
    online[0] = True
    gic.refresh()
    assert gic.routed_cpu(60) == 0 and gic.irq_line(0) and not gic.irq_line(2)


# ---- firmware-owned interrupts -----------------------------------------------------------


def test_firmware_owned_interrupt_never_raises_guest_lines() -> None:
    gic, rec = make(1)
    guest_init(gic)
    gic.set_priority(29, 0x20, cpu=0)
    gic.set_enabled(29, True, cpu=0)
    gic.set_firmware_owned(29, True, cpu=0)
    gic.set_level(29, True, cpu=0, source="secure-timer")
    assert not gic.irq_line(0) and not gic.fiq_line(0)
    assert gic.firmware_pending(0) == 29
    assert gic.icc_read(0, IccReg.IAR1) == SPURIOUS
    assert gic.icc_read(0, IccReg.IAR0) == SPURIOUS
    # Its fields are RAZ/WI to the guest, as Secure fields are to Non-secure accesses.
    assert gic.redist_read(0, sgi_reg(0, GICD_ISENABLER), 4) == 0
    assert gic.redist_read(0, sgi_reg(0, GICD_IPRIORITYR + 29), 1) == 0
    gic.redist_write(0, sgi_reg(0, GICD_ICENABLER), 4, 1 << 29)
    assert gic.is_enabled(29, cpu=0)
    assert rec.of("IrqAsserted") == [("IrqAsserted", 0, 29, "secure-timer")]


def test_firmware_owned_spi_ignores_guest_pmr_and_group_enables() -> None:
    gic, _ = make(2)  # guest never initialised its GIC: PMR 0, groups disabled
    gic.set_priority(70, 0x40)
    gic.set_enabled(70, True)
    gic.route_spi(70, 1)
    gic.set_firmware_owned(70, True)
    gic.set_pending(70, True)
    assert gic.firmware_pending(1) == 70 and gic.firmware_pending(0) is None
    assert not any(gic.irq_line(c) or gic.fiq_line(c) for c in range(2))


def test_firmware_handler_holds_off_lower_priority_guest_interrupts() -> None:
    gic, rec = make(1)
    guest_init(gic)
    setup_spi(gic, 40, prio=0xA0)
    gic.set_priority(80, 0x60)
    gic.set_enabled(80, True)
    gic.set_firmware_owned(80, True)
    gic.set_pending(80, True)
    assert gic.firmware_pending(0) == 80
    gic.firmware_acknowledge(0, 80)
    assert gic.is_active(80) and gic.firmware_pending(0) is None
    assert gic.icc_read(0, IccReg.RPR) == 0x60
    pend_spi(gic, 40)
    assert not gic.irq_line(0)  # 0xA0 cannot preempt the firmware's 0x60
    assert gic.icc_read(0, IccReg.IAR1) == SPURIOUS
    gic.icc_write(0, IccReg.EOIR1, 80)  # the guest cannot drop the firmware's priority
    assert gic.icc_read(0, IccReg.RPR) == 0x60 and gic.is_active(80)
    gic.firmware_complete(0, 80)
    assert not gic.is_active(80)
    assert gic.icc_read(0, IccReg.RPR) == 0xFF
    assert gic.irq_line(0)
    assert ("IrqAcknowledged", 0, 80, 0) in rec.facts and ("IrqCompleted", 0, 80, "eoi") in rec.facts


def test_firmware_interrupt_obeys_running_priority() -> None:
    gic, _ = make(1)
    guest_init(gic)
    setup_spi(gic, 40, prio=0x40)
    pend_spi(gic, 40)
    assert gic.icc_read(0, IccReg.IAR1) == 40  # guest handler running at 0x40
    for intid, prio in ((81, 0x60), (82, 0x20)):
        gic.set_priority(intid, prio)
        gic.set_enabled(intid, True)
        gic.set_firmware_owned(intid, True)
    gic.set_pending(81, True)
    assert gic.firmware_pending(0) is None
    gic.set_pending(82, True)
    assert gic.firmware_pending(0) == 82


def test_firmware_acknowledge_rejects_guest_or_idle_interrupts() -> None:
    gic, _ = make(1)
    setup_spi(gic, 40, prio=0x40)
    pend_spi(gic, 40)
    with pytest.raises(ValueError):
        gic.firmware_acknowledge(0, 40)
    gic.set_firmware_owned(41, True)
    with pytest.raises(ValueError):
        gic.firmware_acknowledge(0, 41)  # not pending
    with pytest.raises(ValueError):
        gic.firmware_complete(0, 41)


# ---- bookkeeping -------------------------------------------------------------------------


def test_generation_bumps_only_on_state_changes() -> None:
    gic, _ = make(1)
    g = gic.generation
    gic.irq_line(0)
    gic.dist_read(0, GICD_CTLR, 4)
    assert gic.generation == g
    gic.set_level(30, True, cpu=0)
    assert gic.generation > g
    g = gic.generation
    gic.set_level(30, True, cpu=0)  # same level: nothing changed
    assert gic.generation == g


def test_set_level_validates_its_arguments() -> None:
    gic, _ = make(1)
    with pytest.raises(ValueError):
        gic.set_level(27, True)  # a PPI needs its CPU
    with pytest.raises(ValueError):
        gic.set_level(40, True, cpu=0)  # an SPI has no CPU
    with pytest.raises(ValueError):
        gic.set_level(3, True, cpu=0)  # SGIs have no line
    with pytest.raises(ValueError):
        gic.set_level(400, True)


def test_reset_restores_state_but_keeps_input_levels() -> None:
    gic, _ = make(1)
    guest_init(gic)
    setup_ppi(gic, 0, 30, prio=0x80)
    gic.set_level(30, True, cpu=0)
    assert gic.irq_line(0)
    gic.reset()
    assert not gic.irq_line(0)
    assert gic.dist_read(0, GICD_CTLR, 4) == 0x50
    assert gic.icc_read(0, IccReg.PMR) == 0
    assert gic.is_pending(30, cpu=0)  # the timer still drives its line high
    assert not gic.is_enabled(30, cpu=0)
