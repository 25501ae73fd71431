"""GICv3 distributor and redistributors (Arm IHI 0069), with a single security state.

As on QEMU ``virt`` without EL3: GICD_CTLR.DS = 1 and ARE = 1 (affinity routing), Group 0 is
FIQ and Group 1 is IRQ. The CPU interface (ICC_* registers) is in gic_cpuif.py.

State is kept as bitmaps (Python ints, bit n = INTID n): one bank for the SPIs and one bank
per CPU for SGIs and PPIs (the redistributors). After every change ``_update`` recomputes,
for each CPU, the highest priority pending interrupt and the IRQ/FIQ outputs, and bumps
``generation``; ``irq_line``/``fiq_line`` only read the cached result.

The interrupt lines that devices drive (``set_level``) are inputs: a GIC reset keeps them.

Firmware ownership models TF-A's Secure Group 0 interrupts routed to EL3: a firmware-owned
interrupt never reaches the guest's IRQ/FIQ lines nor its IAR, its fields are RAZ/WI to
guest MMIO (as Secure fields are to Non-secure accesses), and the guest's group enables and
PMR do not mask it (a Non-secure PMR can never mask Secure priorities). It still obeys the
running priority, and once acknowledged it raises the running priority for the guest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from sdeilab.machine.gic_cpuif import (
    APR_SHIFT,
    FIRMWARE,
    GROUP0,
    GROUP1,
    ICC_ENCODINGS,
    ICC_READ_ONLY,
    ICC_WRITE_ONLY,
    IDLE_PRIORITY,
    PRI_MASK,
    SPURIOUS,
    CpuInterface,
    IccMixin,
    IccReg,
)
from sdeilab.machine.memmap import (
    GICR_FRAME_SIZE,
    MAX_CPUS,
    MPIDR_AFFINITY_MASK,
    NUM_SPIS,
    cpu_affinity,
    cpus_by_affinity,
)
from sdeilab.machine.state import FieldState
from sdeilab.trace import IrqAcknowledged, IrqAsserted, IrqCompleted

__all__ = [
    "FIRMWARE",
    "GROUP0",
    "GROUP1",
    "ICC_ENCODINGS",
    "ICC_READ_ONLY",
    "ICC_WRITE_ONLY",
    "SPURIOUS",
    "GicV3",
    "IccReg",
]

# Distributor registers (IHI 0069, GIC Distributor register map).
GICD_CTLR = 0x0000
GICD_TYPER = 0x0004
GICD_IIDR = 0x0008
GICD_IGROUPR = 0x0080  # the seven 1-bit-per-INTID blocks, 0x80 bytes each, up to 0x3FF
GICD_ISENABLER = 0x0100
GICD_ICENABLER = 0x0180
GICD_ISPENDR = 0x0200
GICD_ICPENDR = 0x0280
GICD_ISACTIVER = 0x0300
GICD_ICACTIVER = 0x0380
GICD_IPRIORITYR = 0x0400  # one byte per INTID
GICD_ICFGR = 0x0C00  # two bits per INTID
GICD_IGRPMODR = 0x0D00  # RAZ/WI when DS = 1 (GICD_IGRPMODR<n>)
GICD_IROUTER = 0x6000  # GICD_IROUTER<n> at 0x6000 + 8n, n >= 32

GICD_CTLR_ENABLE_GRP0 = 1 << 0
GICD_CTLR_ENABLE_GRP1 = 1 << 1
GICD_CTLR_ARE = 1 << 4  # RAO/WI: only affinity routing is implemented (like QEMU)
GICD_CTLR_DS = 1 << 6  # RAO/WI: a single security state
# RWP (bit 31) reads 0: register writes take effect at once.

GICD_TYPER_IDBITS = 0xF << 19  # 16 INTID bits (as QEMU); MBIS, LPIS, SecurityExtn = 0
GICD_TYPER_A3V = 1 << 24  # Aff3 is supported in IROUTER and SGI registers
# No1N (bit 25) = 0: 1-of-N SPI routing is supported (QEMU sets No1N; we implement it).

GIC_IIDR = 0x43B  # Arm (JEP106 0x43B), product 0, r0p0: QEMU's gicv3_iidr()

IROUTER_IRM = 1 << 31
IROUTER_AFF_MASK = MPIDR_AFFINITY_MASK  # GICD_IROUTER holds Aff3 [39:32], Aff2 [23:16], Aff1 [15:8], Aff0 [7:0]

# Redistributor registers: RD_base frame, then SGI_base frame 64 KiB later.
GICR_CTLR = 0x0000  # no LPIs: EnableLPIs RAZ/WI, RWP reads 0
GICR_IIDR = 0x0004
GICR_TYPER = 0x0008  # 64-bit
GICR_WAKER = 0x0014
GICR_SGI_BASE = 0x1_0000
GICR_ICFGR0 = 0x0C00  # in the SGI frame: SGIs, always edge (RAO/WI 0xAAAAAAAA)
GICR_ICFGR1 = 0x0C04  # PPIs

GICR_TYPER_LAST = 1 << 4
GICR_TYPER_PROC_NUM_SHIFT = 8
GICR_WAKER_PROCESSOR_SLEEP = 1 << 1
GICR_WAKER_CHILDREN_ASLEEP = 1 << 2

# Peripheral and component ID registers at 0xFFD0..0xFFFC (PIDR4-7, PIDR0-3, CIDR0-3);
# PIDR2 = 0x3B: ArchRev [7:4] = 3 (GICv3). Values as QEMU's gicd_ids/gicr_ids.
_ID_BASE = 0xFFD0
_GICD_IDS = (0x44, 0, 0, 0, 0x92, 0xB4, 0x3B, 0, 0x0D, 0xF0, 0x05, 0xB1)
_GICR_IDS = (0x44, 0, 0, 0, 0x93, 0xB4, 0x3B, 0, 0x0D, 0xF0, 0x05, 0xB1)

MASK32 = 0xFFFF_FFFF
SGI_MASK = 0xFFFF  # INTIDs 0-15
MAX_SPIS = 960  # a multiple of 32 that keeps every SPI below the special INTIDs 1020-1023

# Bit-per-INTID register blocks: name of the bank field and what a write does to it.
_SET, _CLEAR, _REPLACE = 0, 1, 2
_BITMAP_REGS: dict[int, tuple[str, int]] = {
    GICD_IGROUPR: ("group", _REPLACE),
    GICD_ISENABLER: ("enable", _SET),
    GICD_ICENABLER: ("enable", _CLEAR),
    GICD_ISPENDR: ("latch", _SET),
    GICD_ICPENDR: ("latch", _CLEAR),
    GICD_ISACTIVER: ("active", _SET),
    GICD_ICACTIVER: ("active", _CLEAR),
}


def _bits(value: int) -> Iterator[int]:
    """Indexes of the set bits of ``value``, lowest first."""
    while value:
        low = value & -value
        yield low.bit_length() - 1
        value ^= low


def _new_bank(edge: int = 0) -> dict[str, int]:
    # latch: the pending latch (edge, or software set); level: the input line; edge: ICFGR.
    return {"group": 0, "enable": 0, "latch": 0, "level": 0, "active": 0, "edge": edge, "fw": 0}


def _pending(bank: dict[str, int]) -> int:
    # Pending = latch, or a level-sensitive input that is high (IHI 0069 4.1, QEMU gicd_int_pending).
    return bank["latch"] | (bank["level"] & ~bank["edge"])


class GicV3(FieldState, IccMixin):
    """A GICv3 (distributor, one redistributor and CPU interface per CPU) without LPIs or ITS."""

    # Everything reset() sets, the input line levels and the update count (sdeilab.machine.state).
    STATE = ("_gicd_ctlr", "_p", "_s", "_pprio", "_sprio", "_irouter", "_asleep", "_cpuif", "_fw_acked", "_irq",
             "_fiq", "_hppi", "_hppi_prio", "_hppi_grp", "_fw_hppi", "generation")

    def __init__(
        self,
        num_cpus: int,
        record: Callable[..., None],
        *,
        num_spis: int = NUM_SPIS,
        cpu_online: Callable[[int], bool] = lambda cpu: True,
        on_pending: Callable[[int], None] = lambda cpu: None,
    ) -> None:
        if not 1 <= num_cpus <= MAX_CPUS:
            raise ValueError(f"num_cpus must be 1..{MAX_CPUS}, not {num_cpus}")
        if not 0 <= num_spis <= MAX_SPIS or num_spis % 32:
            raise ValueError(f"num_spis must be a multiple of 32 up to {MAX_SPIS}, not {num_spis}")
        self.num_cpus = num_cpus
        self.num_spis = num_spis
        self.num_irqs = 32 + num_spis
        self._record = record
        self._cpu_online = cpu_online
        # Told of each CPU an interrupt became pending for (the board wakes or stops it): a
        # callback of its own, as the PL011's interrupt line is, not something read off the trace.
        self._on_pending = on_pending
        self._aff_to_cpu = cpus_by_affinity(num_cpus)
        self._spi_bits = ((1 << self.num_irqs) - 1) & ~MASK32  # implemented SPIs
        self.generation = 0
        # Input line levels survive reset(): they belong to the devices driving them.
        self._s = _new_bank()
        self._p = [_new_bank(SGI_MASK) for _ in range(num_cpus)]
        self.reset()

    def reset(self) -> None:
        """Reset values as QEMU's GICv3 without security extensions; firmware ownership is cleared."""
        self._gicd_ctlr = 0
        levels = [bank["level"] for bank in self._p]
        # SGIs are always edge-triggered; PPIs reset to level-sensitive (QEMU: edge_trigger = 0xffff).
        self._p = [_new_bank(SGI_MASK) for _ in range(self.num_cpus)]
        for bank, level in zip(self._p, levels, strict=True):
            bank["level"] = level
        self._s = {**_new_bank(), "level": self._s["level"]}
        self._pprio = [bytearray(32) for _ in range(self.num_cpus)]
        self._sprio = bytearray(self.num_irqs)
        self._irouter = [0] * self.num_irqs  # Aff 0.0.0.0, IRM = 0: CPU 0
        self._asleep = [True] * self.num_cpus  # GICR_WAKER.ProcessorSleep resets to 1
        self._cpuif = [CpuInterface() for _ in range(self.num_cpus)]
        self._fw_acked: list[dict[int, int]] = [{} for _ in range(self.num_cpus)]  # intid -> APR bit
        self._irq = [False] * self.num_cpus
        self._fiq = [False] * self.num_cpus
        self._hppi = [SPURIOUS] * self.num_cpus
        self._hppi_prio = [IDLE_PRIORITY] * self.num_cpus
        self._hppi_grp = [GROUP0] * self.num_cpus
        self._fw_hppi: list[int | None] = [None] * self.num_cpus
        self._update()

    # ---- outputs -----------------------------------------------------------------------

    def irq_line(self, cpu: int) -> bool:
        return self._irq[cpu]

    def fiq_line(self, cpu: int) -> bool:
        return self._fiq[cpu]

    def highest_pending(self, cpu: int) -> int | None:
        """The guest-visible highest priority pending interrupt of ``cpu`` (ignoring PMR), or None."""
        intid = self._hppi[cpu]
        return None if intid == SPURIOUS else intid

    def refresh(self) -> None:
        """Re-evaluate after something the GIC reads but does not own changed (``cpu_online``)."""
        self._update()

    def _update(self) -> None:
        self.generation += 1
        n = self.num_cpus
        g0_on = bool(self._gicd_ctlr & GICD_CTLR_ENABLE_GRP0)
        g1_on = bool(self._gicd_ctlr & GICD_CTLR_ENABLE_GRP1)
        best_id = [SPURIOUS] * n
        best_prio = [IDLE_PRIORITY] * n  # strict '<': a priority of 0xFF is never signalled
        best_grp = [GROUP0] * n
        fw_id: list[int | None] = [None] * n
        fw_prio = [0x100] * n
        cpuif = self._cpuif
        # Ties go to the lowest INTID (an IMPLEMENTATION DEFINED choice; QEMU's irqbetter).
        for cpu in range(n):
            bank = self._p[cpu]
            pend = _pending(bank) & bank["enable"] & ~bank["active"]
            if not pend:
                continue
            prio = self._pprio[cpu]
            fw = pend & bank["fw"]
            for intid in _bits(fw):
                if prio[intid] < fw_prio[cpu]:
                    fw_id[cpu], fw_prio[cpu] = intid, prio[intid]
            cs = cpuif[cpu]
            group = bank["group"]
            # A group is forwarded only if enabled in GICD_CTLR and in ICC_IGRPEN<n>_EL1.
            allowed = (group if g1_on and cs.igrpen1 else 0) | (~group if g0_on and cs.igrpen0 else 0)
            for intid in _bits(pend & ~fw & allowed):
                if prio[intid] < best_prio[cpu]:
                    best_id[cpu], best_prio[cpu] = intid, prio[intid]
                    best_grp[cpu] = (group >> intid) & 1
        spis = self._s
        pend = _pending(spis) & spis["enable"] & ~spis["active"]
        if pend:
            prio = self._sprio
            fw = pend & spis["fw"]
            for intid in _bits(fw):
                target = self._spi_target(intid, FIRMWARE)
                if target is not None and prio[intid] < fw_prio[target]:
                    fw_id[target], fw_prio[target] = intid, prio[intid]
            group = spis["group"]
            allowed = (group if g1_on else 0) | (~group if g0_on else 0)
            for intid in _bits(pend & ~fw & allowed):
                grp = (group >> intid) & 1
                target = self._spi_target(intid, grp)
                if target is None or not (cpuif[target].igrpen1 if grp else cpuif[target].igrpen0):
                    continue
                if prio[intid] < best_prio[target]:
                    best_id[target], best_prio[target], best_grp[target] = intid, prio[intid], grp
        for cpu in range(n):
            cs = cpuif[cpu]
            signal = best_id[cpu] != SPURIOUS and cs.can_signal(best_prio[cpu], best_grp[cpu])
            self._irq[cpu] = signal and best_grp[cpu] == GROUP1
            self._fiq[cpu] = signal and best_grp[cpu] == GROUP0
            # Firmware interrupts: only the running priority holds them off (5-bit compare).
            fid = fw_id[cpu]
            self._fw_hppi[cpu] = fid if fid is not None and (fw_prio[cpu] & PRI_MASK) < cs.running_priority() else None
        self._hppi, self._hppi_prio, self._hppi_grp = best_id, best_prio, best_grp

    def _spi_target(self, intid: int, group: int) -> int | None:
        """The CPU an SPI is delivered to now, or None (``group`` FIRMWARE for firmware-owned)."""
        route = self._irouter[intid]
        if not route & IROUTER_IRM:
            return self._aff_to_cpu.get(route & IROUTER_AFF_MASK)
        # 1-of-N (IRM = 1): the choice is IMPLEMENTATION DEFINED. We pick, deterministically,
        # the lowest-numbered online CPU whose CPU interface has the interrupt's group enabled
        # (any online CPU for firmware interrupts, which the guest's enables do not gate).
        for cpu in range(self.num_cpus):
            if not self._cpu_online(cpu):
                continue
            cs = self._cpuif[cpu]
            if group == FIRMWARE or (cs.igrpen1 if group == GROUP1 else cs.igrpen0):
                return cpu
        return None

    # ---- helpers shared by MMIO, the CPU interface, device lines and firmware ----------

    def _bank(self, intid: int, cpu: int | None) -> tuple[dict[str, int], int]:
        if not 0 <= intid < self.num_irqs:
            raise ValueError(f"INTID {intid} is not implemented")
        if intid < 32:
            if cpu is None or not 0 <= cpu < self.num_cpus:
                raise ValueError(f"INTID {intid} is private: give a CPU (0..{self.num_cpus - 1})")
            return self._p[cpu], 1 << intid
        if cpu is not None:
            raise ValueError(f"INTID {intid} is an SPI: cpu must be None")
        return self._s, 1 << intid

    def _prio_table(self, intid: int, cpu: int | None) -> bytearray:
        return self._pprio[cpu] if intid < 32 and cpu is not None else self._sprio

    def _group_of(self, intid: int, cpu: int | None) -> int:
        bank, bit = self._bank(intid, cpu)
        return FIRMWARE if bank["fw"] & bit else (GROUP1 if bank["group"] & bit else GROUP0)

    def _note_asserted(self, cpu: int | None, before: int, source: str) -> None:
        """Record IrqAsserted for every INTID of the bank that became pending since ``before``."""
        bank = self._s if cpu is None else self._p[cpu]
        for intid in _bits(_pending(bank) & ~before):
            target = cpu if cpu is not None else self._spi_target(intid, self._group_of(intid, None))
            self._record(IrqAsserted, -1 if target is None else target, intid, source)
            if target is not None:
                self._on_pending(target)

    def _activate(self, cpu: int, intid: int) -> None:
        # Pending -> active: the latch clears; a level-sensitive input that is still high
        # keeps the interrupt pending too (active and pending), as QEMU's icc_activate_irq.
        bank, bit = self._bank(intid, cpu if intid < 32 else None)
        bank["active"] |= bit
        bank["latch"] &= ~bit

    def _deactivate(self, cpu: int, intid: int) -> bool:
        bank, bit = self._bank(intid, cpu if intid < 32 else None)
        if bank["fw"] & bit:
            return False  # the guest cannot deactivate a Secure (firmware) interrupt
        bank["active"] &= ~bit
        return True

    def _send_sgi(self, target: int, intid: int, group: int, source: str) -> None:
        bank, bit = self._p[target], 1 << intid
        # The SGI is set pending only if the target configured it in the requested group
        # (QEMU's gicv3_redist_send_sgi with DS = 1); firmware-owned SGIs are Secure.
        if bank["fw"] & bit or bool(bank["group"] & bit) != (group == GROUP1):
            return
        before = _pending(bank)
        bank["latch"] |= bit
        self._note_asserted(target, before, source)

    # ---- device lines ------------------------------------------------------------------

    def set_level(self, intid: int, level: bool, cpu: int | None = None, source: str = "") -> None:
        """Drive the input line of a PPI (``cpu`` given) or SPI (``cpu`` None)."""
        if intid < 16:
            raise ValueError("SGIs have no input line")
        bank, bit = self._bank(intid, cpu)
        old = bank["level"]
        new = old | bit if level else old & ~bit
        if new == old:
            return
        before = _pending(bank)
        bank["level"] = new
        if level and bank["edge"] & bit:
            bank["latch"] |= bit  # edge-triggered: a rising edge latches pending
        self._note_asserted(cpu, before, source)
        self._update()

    # ---- firmware (EL3) view -----------------------------------------------------------

    def set_firmware_owned(self, intid: int, owned: bool, cpu: int | None = None) -> None:
        bank, bit = self._bank(intid, cpu)
        bank["fw"] = bank["fw"] | bit if owned else bank["fw"] & ~bit
        self._update()

    def is_firmware_owned(self, intid: int, cpu: int | None = None) -> bool:
        bank, bit = self._bank(intid, cpu)
        return bool(bank["fw"] & bit)

    def firmware_pending(self, cpu: int) -> int | None:
        """Highest priority firmware-owned interrupt that can preempt ``cpu`` now, or None."""
        return self._fw_hppi[cpu]

    def firmware_acknowledge(self, cpu: int, intid: int) -> None:
        """EL3 reads ICC_IAR0_EL1 and gets ``intid``: it becomes active at its priority."""
        bank, bit = self._bank(intid, cpu if intid < 32 else None)
        if not bank["fw"] & bit:
            raise ValueError(f"INTID {intid} is not firmware-owned")
        if not _pending(bank) & bank["enable"] & bit or bank["active"] & bit:
            raise ValueError(f"INTID {intid} is not pending, enabled and inactive")
        apr_bit = (self._prio_table(intid, cpu)[intid] & PRI_MASK) >> APR_SHIFT
        self._cpuif[cpu].fw_apr |= 1 << apr_bit
        self._fw_acked[cpu][intid] = apr_bit
        self._activate(cpu, intid)
        self._record(IrqAcknowledged, cpu, intid, GROUP0)
        self._update()

    def firmware_complete(self, cpu: int, intid: int) -> None:
        """EL3 writes ICC_EOIR0_EL1 (EOImode 0): priority drop and deactivation."""
        acked = self._fw_acked[cpu]
        if intid not in acked:
            raise ValueError(f"INTID {intid} was not acknowledged by the firmware on CPU {cpu}")
        apr_bit = acked.pop(intid)
        if apr_bit not in acked.values():
            self._cpuif[cpu].fw_apr &= ~(1 << apr_bit)
        bank, bit = self._bank(intid, cpu if intid < 32 else None)
        bank["active"] &= ~bit
        self._record(IrqCompleted, cpu, intid, "eoi")
        self._update()

    def set_enabled(self, intid: int, enabled: bool, cpu: int | None = None) -> None:
        bank, bit = self._bank(intid, cpu)
        bank["enable"] = bank["enable"] | bit if enabled else bank["enable"] & ~bit
        self._update()

    def set_pending(self, intid: int, pending: bool, cpu: int | None = None) -> None:
        """Set or clear the pending latch (like ISPENDR/ICPENDR; a high level input stays pending)."""
        bank, bit = self._bank(intid, cpu)
        before = _pending(bank)
        bank["latch"] = bank["latch"] | bit if pending else bank["latch"] & ~bit
        self._note_asserted(cpu, before, "firmware")
        self._update()

    def set_priority(self, intid: int, prio: int, cpu: int | None = None) -> None:
        self._bank(intid, cpu)
        self._prio_table(intid, cpu)[intid] = prio & 0xFF
        self._update()

    def get_priority(self, intid: int, cpu: int | None = None) -> int:
        self._bank(intid, cpu)
        return self._prio_table(intid, cpu)[intid]

    def is_enabled(self, intid: int, cpu: int | None = None) -> bool:
        bank, bit = self._bank(intid, cpu)
        return bool(bank["enable"] & bit)

    def is_pending(self, intid: int, cpu: int | None = None) -> bool:
        bank, bit = self._bank(intid, cpu)
        return bool(_pending(bank) & bit)

    def is_active(self, intid: int, cpu: int | None = None) -> bool:
        bank, bit = self._bank(intid, cpu)
        return bool(bank["active"] & bit)

    def route_spi(self, intid: int, cpu: int | None) -> None:
        """Route an SPI to ``cpu`` (IROUTER affinity, IRM = 0) or 1-of-N (``cpu`` None)."""
        self._bank(intid, None)
        self._irouter[intid] = IROUTER_IRM if cpu is None else cpu_affinity(cpu)
        self._update()

    def routed_cpu(self, intid: int) -> int | None:
        """The CPU the SPI would be delivered to now (None: no such CPU, or no 1-of-N candidate)."""
        return self._spi_target(intid, self._group_of(intid, None))

    # ---- MMIO: distributor -------------------------------------------------------------

    def dist_read(self, cpu: int, offset: int, size: int) -> int:
        """Read ``size`` bytes at ``offset`` in the distributor frame. Unsupported widths are RAZ."""
        if size == 4 and not offset & 3:
            return self._dist_read32(offset)
        if size == 8 and not offset & 7 and self._irouter_index(offset) is not None:
            return self._irouter_read(offset, 8)
        if size in (1, 2) and not offset % size and GICD_IPRIORITYR <= offset < GICD_IPRIORITYR + 1024:
            return self._prio_read(None, offset - GICD_IPRIORITYR, size)
        return 0

    def dist_write(self, cpu: int, offset: int, size: int, value: int) -> None:
        """Write to the distributor frame. Unsupported widths and offsets are WI."""
        if size == 4 and not offset & 3:
            self._dist_write32(offset, value & MASK32)
        elif size == 8 and not offset & 7 and self._irouter_index(offset) is not None:
            self._irouter_write(offset, 8, value)
        elif size in (1, 2) and not offset % size and GICD_IPRIORITYR <= offset < GICD_IPRIORITYR + 1024:
            self._prio_write(None, offset - GICD_IPRIORITYR, size, value)
        else:
            return
        self._update()

    def _dist_read32(self, offset: int) -> int:
        if offset == GICD_CTLR:
            return self._gicd_ctlr | GICD_CTLR_ARE | GICD_CTLR_DS
        if offset == GICD_TYPER:
            # ITLinesNumber = (number of INTIDs / 32) - 1.
            return GICD_TYPER_A3V | GICD_TYPER_IDBITS | (self.num_irqs // 32 - 1)
        if offset == GICD_IIDR:
            return GIC_IIDR
        if GICD_IGROUPR <= offset < GICD_IPRIORITYR:
            base_intid = (offset & 0x7F) * 8
            if base_intid == 0:
                return 0  # INTIDs 0-31 live in the redistributors when ARE = 1
            return self._bitmap_read(None, offset & ~0x7F, base_intid)
        if GICD_IPRIORITYR <= offset < GICD_IPRIORITYR + 1024:
            return self._prio_read(None, offset - GICD_IPRIORITYR, 4)
        if GICD_ICFGR <= offset < GICD_IGRPMODR:
            base_intid = (offset - GICD_ICFGR) * 4
            return 0 if base_intid < 32 else self._cfg_read(None, base_intid)
        if self._irouter_index(offset) is not None:
            return self._irouter_read(offset, 4)
        if _ID_BASE <= offset < 0x1_0000:
            return _GICD_IDS[(offset - _ID_BASE) >> 2]
        return 0  # IGRPMODR and NSACR (RAZ/WI with DS = 1), ITARGETSR and SGIR (ARE = 1), ...

    def _dist_write32(self, offset: int, value: int) -> None:
        if offset == GICD_CTLR:
            self._gicd_ctlr = value & (GICD_CTLR_ENABLE_GRP0 | GICD_CTLR_ENABLE_GRP1)
        elif GICD_IGROUPR <= offset < GICD_IPRIORITYR:
            base_intid = (offset & 0x7F) * 8
            if base_intid:
                self._bitmap_write(None, offset & ~0x7F, base_intid, value)
        elif GICD_IPRIORITYR <= offset < GICD_IPRIORITYR + 1024:
            self._prio_write(None, offset - GICD_IPRIORITYR, 4, value)
        elif GICD_ICFGR <= offset < GICD_IGRPMODR:
            base_intid = (offset - GICD_ICFGR) * 4
            if base_intid >= 32:
                self._cfg_write(None, base_intid, value)
        elif self._irouter_index(offset) is not None:
            self._irouter_write(offset, 4, value)

    def _irouter_index(self, offset: int) -> int | None:
        intid = (offset - GICD_IROUTER) >> 3
        return intid if 32 <= intid < self.num_irqs and offset >= GICD_IROUTER else None

    def _irouter_read(self, offset: int, size: int) -> int:
        intid = (offset - GICD_IROUTER) >> 3
        if self._s["fw"] >> intid & 1:
            return 0
        value = self._irouter[intid]
        return value if size == 8 else (value >> 32 if offset & 4 else value & MASK32)

    def _irouter_write(self, offset: int, size: int, value: int) -> None:
        intid = (offset - GICD_IROUTER) >> 3
        if self._s["fw"] >> intid & 1:
            return
        old = self._irouter[intid]
        if size == 4:
            value = (old & MASK32) | (value << 32) if offset & 4 else (old & ~MASK32) | value
        self._irouter[intid] = value & (IROUTER_AFF_MASK | IROUTER_IRM)

    # ---- register blocks shared by GICD (SPIs) and GICR SGI_base (SGIs and PPIs) -------

    def _writable(self, cpu: int | None) -> int:
        bank = self._s if cpu is None else self._p[cpu]
        implemented = self._spi_bits if cpu is None else MASK32
        return implemented & ~bank["fw"]  # firmware-owned (Secure) fields are RAZ/WI

    def _bitmap_read(self, cpu: int | None, reg: int, base_intid: int) -> int:
        bank = self._s if cpu is None else self._p[cpu]
        name = _BITMAP_REGS[reg][0]
        value = _pending(bank) if name == "latch" else bank[name]
        return ((value & self._writable(cpu)) >> base_intid) & MASK32

    def _bitmap_write(self, cpu: int | None, reg: int, base_intid: int, value: int) -> None:
        bank = self._s if cpu is None else self._p[cpu]
        name, op = _BITMAP_REGS[reg]
        mask = self._writable(cpu) & (MASK32 << base_intid)
        bits = (value << base_intid) & mask
        before = _pending(bank)
        if op == _SET:
            bank[name] |= bits
        elif op == _CLEAR:
            bank[name] &= ~bits
        else:
            bank[name] = (bank[name] & ~mask) | bits
        if reg == GICD_ISPENDR:
            self._note_asserted(cpu, before, "ispendr")

    def _prio_read(self, cpu: int | None, first: int, size: int) -> int:
        table = self._sprio if cpu is None else self._pprio[cpu]
        writable = self._writable(cpu)
        value = 0
        for i in range(size):
            intid = first + i
            if intid < len(table) and writable >> intid & 1:
                value |= table[intid] << (8 * i)
        return value

    def _prio_write(self, cpu: int | None, first: int, size: int, value: int) -> None:
        table = self._sprio if cpu is None else self._pprio[cpu]
        writable = self._writable(cpu)
        for i in range(size):
            intid = first + i
            if intid < len(table) and writable >> intid & 1:
                table[intid] = (value >> (8 * i)) & 0xFF

    def _cfg_read(self, cpu: int | None, base_intid: int) -> int:
        # Two bits per INTID; bit 2k+1 set = edge-triggered, bit 2k is RES0.
        bank = self._s if cpu is None else self._p[cpu]
        edge = (bank["edge"] & self._writable(cpu)) >> base_intid
        return sum(2 << (2 * k) for k in range(16) if edge >> k & 1)

    def _cfg_write(self, cpu: int | None, base_intid: int, value: int) -> None:
        bank = self._s if cpu is None else self._p[cpu]
        mask = self._writable(cpu) & (0xFFFF << base_intid)
        edge = sum(1 << k for k in range(16) if value >> (2 * k + 1) & 1) << base_intid
        bank["edge"] = (bank["edge"] & ~mask) | (edge & mask)

    # ---- MMIO: redistributors ----------------------------------------------------------

    def redist_read(self, cpu: int, offset: int, size: int) -> int:
        """Read in the redistributor region; ``offset // 0x20000`` selects the frame's CPU."""
        frame, off = divmod(offset, GICR_FRAME_SIZE)
        if frame >= self.num_cpus:
            return 0
        if off >= GICR_SGI_BASE:
            off -= GICR_SGI_BASE
            if size == 4 and not off & 3:
                return self._sgi_read32(frame, off)
            if size in (1, 2) and not off % size and GICD_IPRIORITYR <= off < GICD_IPRIORITYR + 32:
                return self._prio_read(frame, off - GICD_IPRIORITYR, size)
            return 0
        if size == 8 and off == GICR_TYPER:
            return self._gicr_typer(frame)
        if size != 4 or off & 3:
            return 0
        if off == GICR_IIDR:
            return GIC_IIDR
        if off in (GICR_TYPER, GICR_TYPER + 4):
            return (self._gicr_typer(frame) >> (8 * (off - GICR_TYPER))) & MASK32
        if off == GICR_WAKER:
            # ChildrenAsleep follows ProcessorSleep at once: nothing to quiesce.
            return (GICR_WAKER_PROCESSOR_SLEEP | GICR_WAKER_CHILDREN_ASLEEP) if self._asleep[frame] else 0
        if _ID_BASE <= off < GICR_SGI_BASE:
            return _GICR_IDS[(off - _ID_BASE) >> 2]
        return 0  # GICR_CTLR (no LPIs), STATUSR, PROPBASER, PENDBASER, ...

    def redist_write(self, cpu: int, offset: int, size: int, value: int) -> None:
        frame, off = divmod(offset, GICR_FRAME_SIZE)
        if frame >= self.num_cpus:
            return
        if off >= GICR_SGI_BASE:
            off -= GICR_SGI_BASE
            if size == 4 and not off & 3:
                self._sgi_write32(frame, off, value & MASK32)
            elif size in (1, 2) and not off % size and GICD_IPRIORITYR <= off < GICD_IPRIORITYR + 32:
                self._prio_write(frame, off - GICD_IPRIORITYR, size, value)
            else:
                return
        elif size == 4 and off == GICR_WAKER:
            # Like QEMU, ProcessorSleep does not gate delivery; software polls ChildrenAsleep.
            self._asleep[frame] = bool(value & GICR_WAKER_PROCESSOR_SLEEP)
        else:
            return
        self._update()

    def _gicr_typer(self, frame: int) -> int:
        # Affinity_Value [63:32] is Aff3.Aff2.Aff1.Aff0; Processor_Number [23:8]; Last [4].
        aff = cpu_affinity(frame)
        packed = (aff & 0xFF_FFFF) | (((aff >> 32) & 0xFF) << 24)
        last = GICR_TYPER_LAST if frame == self.num_cpus - 1 else 0
        return (packed << 32) | (frame << GICR_TYPER_PROC_NUM_SHIFT) | last

    def _sgi_read32(self, frame: int, off: int) -> int:
        if off in _BITMAP_REGS:
            return self._bitmap_read(frame, off, 0)
        if GICD_IPRIORITYR <= off < GICD_IPRIORITYR + 32:
            return self._prio_read(frame, off - GICD_IPRIORITYR, 4)
        if off == GICR_ICFGR0:
            return self._cfg_read(frame, 0)
        if off == GICR_ICFGR1:
            return self._cfg_read(frame, 16)
        return 0  # IGRPMODR0 and NSACR are RAZ/WI with DS = 1

    def _sgi_write32(self, frame: int, off: int, value: int) -> None:
        if off in _BITMAP_REGS:
            self._bitmap_write(frame, off, 0, value)
        elif GICD_IPRIORITYR <= off < GICD_IPRIORITYR + 32:
            self._prio_write(frame, off - GICD_IPRIORITYR, 4, value)
        elif off == GICR_ICFGR1:
            self._cfg_write(frame, 16, value)
        # GICR_ICFGR0 is read-only: SGIs are always edge-triggered.
