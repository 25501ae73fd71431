"""GICv3 CPU interface: the ICC_* system registers (Arm IHI 0069, chapter 4 and the ICC_* register descriptions).

The CPU interface is where an interrupt meets the PE: the priority mask (PMR), the binary
point (BPR) that splits a priority into group priority and subpriority, the active priority
registers (APR) that give the running priority, acknowledge (IAR), priority drop (EOIR) and
deactivation (DIR), and SGI generation. ``IccMixin`` implements those registers on top of the
distributor/redistributor state kept by ``GicV3`` (gic.py); it is split out only to keep each
file readable.

Single security state (GICD_CTLR.DS = 1, no EL3), as on QEMU ``virt`` without ``secure=on``:
Group 0 is signalled as FIQ and Group 1 as IRQ (IHI 0069 4.6), and the guest at EL1 owns
both groups. Interrupts that the lab's firmware owns (TF-A's Secure Group 0 routed to EL3) are
kept in their own active-priority register ``fw_apr`` that the guest can neither read nor
drop, so they take part in the running priority exactly as a Secure interrupt would.

Priority bits: like QEMU's GICv3 CPU interface (and Cortex-A57/GIC-500) we implement 5 bits
of priority (ICC_CTLR_EL1.PRIbits = 4), so there are 32 priority levels, the minimum binary
point is 2 for BPR0 and 3 for BPR1 (ICC_BPR0_EL1, ICC_BPR1_EL1), one AP0R/AP1R register each is enough
(AP0R1..3 and AP1R1..3 are not implemented, so accesses to them are UNDEFINED: they are absent
from ``ICC_ENCODINGS``). The distributor keeps all 8 bits of each priority (as QEMU does); the
CPU interface compares with the PMR and the running priority at 5-bit granularity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from sdeilab.trace import IrqAcknowledged, IrqCompleted

PRI_BITS = 5
PRI_MASK = (0xFF << (8 - PRI_BITS)) & 0xFF  # 0xF8: the implemented priority bits
APR_SHIFT = 8 - PRI_BITS  # APR bit n stands for group priority n << 3 (ICC_AP0R<n>_EL1)
MIN_BPR0 = 7 - PRI_BITS  # 2: group priority uses every implemented bit (ICC_BPR0_EL1)
MIN_BPR1 = MIN_BPR0 + 1  # ICC_BPR1_EL1: minimum is BPR0's plus one
IDLE_PRIORITY = 0xFF  # ICC_RPR_EL1 reads 0xFF when nothing is active
SPURIOUS = 1023  # special INTID: nothing to acknowledge (IHI 0069 2.2, INTIDs)
FIRST_SPECIAL = 1020

GROUP0, GROUP1, FIRMWARE = 0, 1, 2  # FIRMWARE: the lab's EL3-owned interrupts

# ICC_CTLR_EL1 (IHI 0069, ICC_CTLR_EL1). CBPR and EOImode are the writable bits with DS = 1.
ICC_CTLR_CBPR = 1 << 0
ICC_CTLR_EOIMODE = 1 << 1
ICC_CTLR_PRIBITS_SHIFT = 8
ICC_CTLR_IDBITS_SHIFT = 11
ICC_CTLR_A3V = 1 << 15
ICC_CTLR_WRITABLE = ICC_CTLR_CBPR | ICC_CTLR_EOIMODE
# Read-only part, as QEMU's icc_reset: A3V (Aff3 in SGI registers), IDbits = 1 (24-bit INTIDs),
# PRIbits = PRI_BITS - 1. SEIS = 0, PMHE = 0.
ICC_CTLR_RO = ICC_CTLR_A3V | (1 << ICC_CTLR_IDBITS_SHIFT) | ((PRI_BITS - 1) << ICC_CTLR_PRIBITS_SHIFT)

# ICC_SRE_EL1: SRE, DFB and DIB are RAO/WI because the system register
# interface is the only one this GIC has (no GICv2 memory-mapped CPU interface compatibility).
ICC_SRE_VALUE = 0x7

# ICC_SGI0R_EL1 / ICC_SGI1R_EL1 / ICC_ASGI1R_EL1 fields (IHI 0069, ICC_SGI1R_EL1).
SGI_TARGETLIST_MASK = 0xFFFF
SGI_AFF1_SHIFT = 16
SGI_INTID_SHIFT = 24
SGI_AFF2_SHIFT = 32
SGI_IRM = 1 << 40
SGI_RS_SHIFT = 44
SGI_AFF3_SHIFT = 48

INTID_MASK = 0xFF_FFFF  # EOIR/DIR INTID field with IDbits = 24


class IccReg(Enum):
    PMR = "ICC_PMR_EL1"
    IAR0 = "ICC_IAR0_EL1"
    EOIR0 = "ICC_EOIR0_EL1"
    HPPIR0 = "ICC_HPPIR0_EL1"
    BPR0 = "ICC_BPR0_EL1"
    AP0R0 = "ICC_AP0R0_EL1"
    AP1R0 = "ICC_AP1R0_EL1"
    DIR = "ICC_DIR_EL1"
    RPR = "ICC_RPR_EL1"
    SGI1R = "ICC_SGI1R_EL1"
    ASGI1R = "ICC_ASGI1R_EL1"
    SGI0R = "ICC_SGI0R_EL1"
    IAR1 = "ICC_IAR1_EL1"
    EOIR1 = "ICC_EOIR1_EL1"
    HPPIR1 = "ICC_HPPIR1_EL1"
    BPR1 = "ICC_BPR1_EL1"
    CTLR = "ICC_CTLR_EL1"
    SRE = "ICC_SRE_EL1"
    IGRPEN0 = "ICC_IGRPEN0_EL1"
    IGRPEN1 = "ICC_IGRPEN1_EL1"


# (op0, op1, CRn, CRm, op2), checked against Linux arch/arm64/include/asm/sysreg.h and
# the IHI 0069 register descriptions (e.g. ICC_AP0R<n>_EL1 is op2 = 4 + n, ICC_AP1R<n>_EL1 is CRm = 9, op2 = n).
ICC_ENCODINGS: dict[tuple[int, int, int, int, int], IccReg] = {
    (3, 0, 4, 6, 0): IccReg.PMR,
    (3, 0, 12, 8, 0): IccReg.IAR0,
    (3, 0, 12, 8, 1): IccReg.EOIR0,
    (3, 0, 12, 8, 2): IccReg.HPPIR0,
    (3, 0, 12, 8, 3): IccReg.BPR0,
    (3, 0, 12, 8, 4): IccReg.AP0R0,
    (3, 0, 12, 9, 0): IccReg.AP1R0,
    (3, 0, 12, 11, 1): IccReg.DIR,
    (3, 0, 12, 11, 3): IccReg.RPR,
    (3, 0, 12, 11, 5): IccReg.SGI1R,
    (3, 0, 12, 11, 6): IccReg.ASGI1R,
    (3, 0, 12, 11, 7): IccReg.SGI0R,
    (3, 0, 12, 12, 0): IccReg.IAR1,
    (3, 0, 12, 12, 1): IccReg.EOIR1,
    (3, 0, 12, 12, 2): IccReg.HPPIR1,
    (3, 0, 12, 12, 3): IccReg.BPR1,
    (3, 0, 12, 12, 4): IccReg.CTLR,
    (3, 0, 12, 12, 5): IccReg.SRE,
    (3, 0, 12, 12, 6): IccReg.IGRPEN0,
    (3, 0, 12, 12, 7): IccReg.IGRPEN1,
}

# MRS of a write-only register or MSR to a read-only one is UNDEFINED (ARM ARM D1, system register access):
# the machine must raise the exception itself; icc_read/icc_write refuse them.
ICC_READ_ONLY = frozenset({IccReg.IAR0, IccReg.IAR1, IccReg.HPPIR0, IccReg.HPPIR1, IccReg.RPR})
ICC_WRITE_ONLY = frozenset({IccReg.EOIR0, IccReg.EOIR1, IccReg.DIR, IccReg.SGI0R, IccReg.SGI1R, IccReg.ASGI1R})


def lowest_bit(value: int) -> int:
    """Index of the least significant set bit of ``value`` (which must be non-zero)."""
    return (value & -value).bit_length() - 1


@dataclass(slots=True)
class CpuInterface:
    """One PE's CPU interface state; reset values per the IHI 0069 register descriptions and QEMU's icc_reset."""

    pmr: int = 0  # everything masked until software raises it
    bpr0: int = MIN_BPR0
    bpr1: int = MIN_BPR1
    ctlr: int = 0  # only the writable bits (CBPR, EOImode)
    igrpen0: int = 0
    igrpen1: int = 0
    apr0: int = 0
    apr1: int = 0
    fw_apr: int = 0  # the firmware's (EL3's) active priorities: invisible to the guest

    def running_priority(self) -> int:
        # The running priority is the highest (numerically lowest) active group priority
        # over all groups (IHI 0069 4.8, ICC_RPR_EL1); the APRs hold one bit per level.
        active = self.apr0 | self.apr1 | self.fw_apr
        if not active:
            return IDLE_PRIORITY
        return lowest_bit(active) << APR_SHIFT

    def gprio_mask(self, group: int) -> int:
        """Mask keeping the group priority bits of a ``group`` priority (GroupBits() pseudocode)."""
        if group == GROUP1 and not self.ctlr & ICC_CTLR_CBPR:
            # BPR1 counts one less than BPR0: BPR1 = n keeps bits [7:n] (ICC_BPR1_EL1).
            bpr = self.bpr1 - 1
        else:
            bpr = self.bpr0
        return (0xFF << (bpr + 1)) & 0xFF

    def can_signal(self, prio: int, group: int) -> bool:
        # An interrupt is signalled when its priority is higher than the PMR and its group
        # priority is higher than the running priority; subpriority never preempts (IHI 0069 4.8).
        if prio >= self.pmr:
            return False
        rpr = self.running_priority()
        if rpr == IDLE_PRIORITY:
            return True
        mask = self.gprio_mask(group)
        return (prio & mask) < (rpr & mask)

    def highest_active_group(self) -> int | None:
        """The group owning the running priority, for EOIR checks (QEMU's icc_highest_active_group)."""
        best: int | None = None
        best_bit = 64
        # Order matters only for equal bits (UNPREDICTABLE): the firmware wins, so a guest EOI
        # can never drop a priority that EL3 owns.
        for group, apr in ((FIRMWARE, self.fw_apr), (GROUP0, self.apr0), (GROUP1, self.apr1)):
            if apr and lowest_bit(apr) < best_bit:
                best, best_bit = group, lowest_bit(apr)
        return best


class IccMixin:
    """ICC_* register semantics; ``GicV3`` provides the state and helpers declared here."""

    num_cpus: int
    num_irqs: int
    _cpuif: list[CpuInterface]
    _record: Callable[..., None]
    _cpu_online: Callable[[int], bool]
    _aff_to_cpu: dict[int, int]
    _hppi: list[int]
    _hppi_prio: list[int]
    _hppi_grp: list[int]

    def _update(self) -> None:
        raise NotImplementedError

    def _activate(self, cpu: int, intid: int) -> None:
        raise NotImplementedError

    def _deactivate(self, cpu: int, intid: int) -> bool:
        raise NotImplementedError

    def _send_sgi(self, target: int, intid: int, group: int, source: str) -> None:
        raise NotImplementedError

    def icc_read(self, cpu: int, reg: IccReg) -> int:
        """MRS of an ICC register by ``cpu``. IAR reads acknowledge (they change state)."""
        if reg in ICC_WRITE_ONLY:
            raise ValueError(f"{reg.value} is write-only: MRS is UNDEFINED")
        cs = self._cpuif[cpu]
        if reg is IccReg.IAR1:
            return self._acknowledge(cpu, GROUP1)
        if reg is IccReg.IAR0:
            return self._acknowledge(cpu, GROUP0)
        if reg is IccReg.HPPIR1 or reg is IccReg.HPPIR0:
            # HPPIR shows the highest priority pending interrupt of that group without
            # checking PMR or running priority (ICC_HPPIR0_EL1, ICC_HPPIR1_EL1).
            group = GROUP1 if reg is IccReg.HPPIR1 else GROUP0
            return self._hppi[cpu] if self._hppi_grp[cpu] == group else SPURIOUS
        if reg is IccReg.PMR:
            return cs.pmr
        if reg is IccReg.RPR:
            return cs.running_priority()
        if reg is IccReg.BPR0:
            return cs.bpr0
        if reg is IccReg.BPR1:
            # With CBPR set, BPR1 reads as BPR0 + 1 saturated at 7 (ICC_BPR1_EL1).
            return min(cs.bpr0 + 1, 7) if cs.ctlr & ICC_CTLR_CBPR else cs.bpr1
        if reg is IccReg.AP0R0:
            return cs.apr0
        if reg is IccReg.AP1R0:
            return cs.apr1
        if reg is IccReg.CTLR:
            return ICC_CTLR_RO | cs.ctlr
        if reg is IccReg.SRE:
            return ICC_SRE_VALUE
        if reg is IccReg.IGRPEN0:
            return cs.igrpen0
        if reg is IccReg.IGRPEN1:
            return cs.igrpen1
        raise AssertionError(reg)

    def icc_write(self, cpu: int, reg: IccReg, value: int) -> None:
        """MSR to an ICC register by ``cpu``; every write re-evaluates the outputs."""
        if reg in ICC_READ_ONLY:
            raise ValueError(f"{reg.value} is read-only: MSR is UNDEFINED")
        cs = self._cpuif[cpu]
        if reg is IccReg.EOIR1 or reg is IccReg.EOIR0:
            self._end_of_interrupt(cpu, GROUP1 if reg is IccReg.EOIR1 else GROUP0, value)
        elif reg is IccReg.DIR:
            self._deactivate_write(cpu, value)
        elif reg is IccReg.SGI1R:
            self._generate_sgi(cpu, value, GROUP1)
        elif reg is IccReg.SGI0R or reg is IccReg.ASGI1R:
            # ASGI1R asks for a Group 1 SGI of the *other* Security state. With DS = 1 the
            # Distributor treats Secure Group 1 as Group 0 (IHI 0069 4.6), which is what
            # QEMU's icc_generate_sgi does: it sends a Group 0 SGI.
            self._generate_sgi(cpu, value, GROUP0)
        elif reg is IccReg.PMR:
            cs.pmr = value & PRI_MASK  # unimplemented low bits are RAZ/WI
        elif reg is IccReg.BPR0:
            cs.bpr0 = max(value & 7, MIN_BPR0)  # below the minimum writes the minimum
        elif reg is IccReg.BPR1:
            if not cs.ctlr & ICC_CTLR_CBPR:  # with CBPR set, BPR1 writes are ignored
                cs.bpr1 = max(value & 7, MIN_BPR1)
        elif reg is IccReg.AP0R0:
            cs.apr0 = value & 0xFFFF_FFFF
        elif reg is IccReg.AP1R0:
            cs.apr1 = value & 0xFFFF_FFFF
        elif reg is IccReg.CTLR:
            cs.ctlr = value & ICC_CTLR_WRITABLE
        elif reg is IccReg.IGRPEN0:
            cs.igrpen0 = value & 1
        elif reg is IccReg.IGRPEN1:
            cs.igrpen1 = value & 1
        elif reg is IccReg.SRE:
            pass  # all implemented bits are RAO/WI
        else:
            raise AssertionError(reg)
        self._update()

    def _acknowledge(self, cpu: int, group: int) -> int:
        # IAR returns the highest priority pending interrupt if it belongs to this group and
        # can be signalled, and makes it active; otherwise the spurious INTID 1023 with no
        # side effect (ICC_IAR0_EL1, ICC_IAR1_EL1; QEMU icc_iar1_read).
        intid = self._hppi[cpu]
        if intid == SPURIOUS or self._hppi_grp[cpu] != group:
            return SPURIOUS
        cs = self._cpuif[cpu]
        prio = self._hppi_prio[cpu]
        if not cs.can_signal(prio, group):
            return SPURIOUS
        bit = 1 << ((prio & cs.gprio_mask(group)) >> APR_SHIFT)
        if group == GROUP1:
            cs.apr1 |= bit
        else:
            cs.apr0 |= bit
        self._activate(cpu, intid)
        self._record(IrqAcknowledged, cpu, intid, group)
        self._update()
        return intid

    def _end_of_interrupt(self, cpu: int, group: int, value: int) -> None:
        intid = value & INTID_MASK
        if intid >= self.num_irqs:
            return  # special INTIDs (1020-1023) and non-existent ones are ignored
        cs = self._cpuif[cpu]
        # EOIR drops the running priority only if it belongs to this register's group; the
        # interrupts must nest, so the priority dropped is the lowest set APR bit (ICC_EOIR1_EL1).
        if cs.highest_active_group() != group:
            return
        if group == GROUP1:
            cs.apr1 &= cs.apr1 - 1
        else:
            cs.apr0 &= cs.apr0 - 1
        self._record(IrqCompleted, cpu, intid, "eoi")
        if not cs.ctlr & ICC_CTLR_EOIMODE:
            self._deactivate(cpu, intid)  # EOImode 0: priority drop and deactivation together

    def _deactivate_write(self, cpu: int, value: int) -> None:
        intid = value & INTID_MASK
        if intid >= self.num_irqs:
            return
        if not self._cpuif[cpu].ctlr & ICC_CTLR_EOIMODE:
            return  # DIR with EOImode 0 is UNPREDICTABLE; like QEMU we ignore it
        if self._deactivate(cpu, intid):
            self._record(IrqCompleted, cpu, intid, "dir")

    def _generate_sgi(self, cpu: int, value: int, group: int) -> None:
        intid = (value >> SGI_INTID_SHIFT) & 0xF
        if value & SGI_IRM:
            # IRM = 1: every PE but the sender (ICC_SGI1R_EL1.IRM); a PE that is off cannot
            # take part in "all but self" delivery, so only online CPUs receive it.
            targets = [t for t in range(self.num_cpus) if t != cpu and self._cpu_online(t)]
        else:
            # IRM = 0: PEs Aff3.Aff2.Aff1.<RS * 16 + n> for each bit n of TargetList.
            base = (
                ((value >> SGI_AFF3_SHIFT) & 0xFF) << 32
                | ((value >> SGI_AFF2_SHIFT) & 0xFF) << 16
                | ((value >> SGI_AFF1_SHIFT) & 0xFF) << 8
            )
            rs = (value >> SGI_RS_SHIFT) & 0xF
            targets = []
            for n in range(16):
                if value >> n & 1:
                    target = self._aff_to_cpu.get(base | (rs * 16 + n))
                    if target is not None:
                        targets.append(target)
        for target in targets:
            self._send_sgi(target, intid, group, f"sgi:cpu{cpu}")
