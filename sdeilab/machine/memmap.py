"""The `virt` board as data: the memory map (QEMU hw/arm/virt.c style); its devices, with their
interrupts, are the table in board.py.

Addresses match QEMU's ``-M virt,gic-version=3`` so that a guest written for one boots on the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Region(Enum):
    GIC_DIST = "gic-dist"
    GIC_REDIST = "gic-redist"
    GICV2_CPU = "gicv2-cpu"
    UART0 = "uart0"
    RTC = "pl031"
    TIMER0 = "sp804"
    RAM = "ram"


@dataclass(frozen=True, slots=True)
class MemMapEntry:
    base: int
    size: int

    @property
    def end(self) -> int:
        return self.base + self.size

    def contains(self, address: int, length: int = 1) -> bool:
        return self.base <= address and address + length <= self.end


# Space below 0x0800_0000 is QEMU's flash and boot ROM; the lab maps nothing there, so a
# guest that jumps to 0 takes an instruction abort (or faults with no vectors).
VIRT_MEMMAP: dict[Region, MemMapEntry] = {
    Region.GIC_DIST: MemMapEntry(0x0800_0000, 0x1_0000),
    Region.GICV2_CPU: MemMapEntry(0x0801_0000, 0x1_0000),  # only with gic-version=2
    Region.GIC_REDIST: MemMapEntry(0x080A_0000, 0xF6_0000),  # 128 KiB (RD + SGI frame) per CPU
    Region.UART0: MemMapEntry(0x0900_0000, 0x1000),
    Region.RTC: MemMapEntry(0x0901_0000, 0x1000),
    # sdeilab's addition to the virt map, in a hole QEMU leaves: an SP804 timer whose SPI the
    # TF-A SDEI tests bind (FVP has one). A guest that uses it does not run on QEMU.
    Region.TIMER0: MemMapEntry(0x090C_0000, 0x1000),
    Region.RAM: MemMapEntry(0x4000_0000, 128 * 1024 * 1024),
}

GICR_FRAME_SIZE = 0x2_0000
"""Each CPU's redistributor: a 64 KiB RD_base frame then a 64 KiB SGI_base frame (GICv3 12.10)."""

MAX_CPUS = VIRT_MEMMAP[Region.GIC_REDIST].size // GICR_FRAME_SIZE  # 123, as on QEMU virt

# The CPU's own interrupts: PPIs by INTID (GICv3 2.2). The devices' SPIs are in board.py.
class Ppi(int, Enum):
    """Generic timer PPIs as the virt board wires them (Arm BSA recommended INTIDs)."""

    HYP_TIMER = 26
    VIRT_TIMER = 27
    SECURE_PHYS_TIMER = 29
    PHYS_TIMER = 30


NUM_SPIS = 256  # QEMU virt's NUM_IRQS: INTIDs 32..287


MPIDR_AFFINITY_MASK = 0xFF_00FF_FFFF
"""MPIDR_EL1's affinity fields: Aff3 [39:32], Aff2 [23:16], Aff1 [15:8], Aff0 [7:0] (ARM ARM D17.2,
MPIDR_EL1). The other bits are RES1 (31), U (30), MT (24) and RES0: they describe a PE, never name one."""

CPUS_PER_CLUSTER = 16
"""QEMU virt with a GICv3 fills Aff0 up to 16 before moving to the next Aff1 (a GICv3 SGI's
TargetList has 16 bits, ICC_SGI1R_EL1); checked on qemu-system-aarch64 -smp 10, whose CPU 9 is Aff0 9.
A GICv2 board has at most 8 CPUs, all in cluster 0."""


def mpidr_of(cpu: int) -> int:
    """MPIDR_EL1 of CPU ``cpu`` as on QEMU virt: bit 31 RES1, U = 0, MT = 0, affinity from ``cpu_affinity``."""
    return 0x8000_0000 | cpu_affinity(cpu)


def cpu_affinity(cpu: int) -> int:
    return ((cpu // CPUS_PER_CLUSTER) << 8) | (cpu % CPUS_PER_CLUSTER)


def cpus_by_affinity(num_cpus: int) -> dict[int, int]:
    """Each CPU's index by its affinity fields: what a lookup of a PE by MPIDR_EL1 uses (TF-A's
    plat_core_pos_by_mpidr, GICD_IROUTER and an SGI's target list)."""
    return {cpu_affinity(cpu): cpu for cpu in range(num_cpus)}


def cpu_of_mpidr(mpidr: int, num_cpus: int) -> int | None:
    """The CPU whose affinity fields equal ``mpidr``; None if another bit is set or no CPU has them.

    This is the strict reading that KVM, QEMU and DEN0022D 5.1.4 apply to a PSCI target (bits
    [31:24] and [63:40] must be zero). A caller that follows TF-A's lenient reading, which finds
    the PE from the affinity fields alone, masks ``mpidr`` with ``MPIDR_AFFINITY_MASK`` first.
    """
    if mpidr & ~MPIDR_AFFINITY_MASK or mpidr & 0xFF_00FF_0000:  # this board has no Aff2 or Aff3 above 0
        return None
    aff0, aff1 = mpidr & 0xFF, (mpidr >> 8) & 0xFF
    if aff0 >= CPUS_PER_CLUSTER:
        return None
    cpu = aff1 * CPUS_PER_CLUSTER + aff0
    return cpu if cpu < num_cpus else None


# --------------------------------------------------------------------------- RAM size (QEMU's -m)
DEFAULT_RAM_SIZE = VIRT_MEMMAP[Region.RAM].size  # 128 MiB, QEMU virt's default
MAX_RAM_SIZE = 255 << 30
"""QEMU 7.2 virt's largest RAM (hw/arm/virt.c LEGACY_RAMLIMIT_GB: 255 GiB from 0x4000_0000, below
the high MMIO regions); a bigger -m is refused."""
RAM_ALIGN = 8 << 10
"""QEMU rounds -m up to a multiple of 8 KiB (softmmu/vl.c): -m 100k gives a memory node of 104 KiB."""
_SIZE_SUFFIXES = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50, "e": 1 << 60}


def parse_ram_size(text: str | int) -> int:
    """RAM size in bytes from QEMU's ``-m`` syntax: a number of MiB (``512``), or a number with a
    suffix B, k, M, G, T, P or E, either case, binary multiples (``128M``, ``1G``, ``1.5G``,
    ``100k``); rounded up to 8 KiB as QEMU does; 0 means the default, 128 MiB, as on QEMU. An int
    is a size in bytes. Raises ValueError with a one-line reason: not a size, or one QEMU virt
    refuses (over 255 GiB)."""
    if isinstance(text, bool) or not isinstance(text, (int, str)):
        raise ValueError(f"not a memory size: {text!r}")
    if isinstance(text, int):
        size = text
        if size < 0:
            raise ValueError(f"memory size {size} is negative")
    else:
        spec = text.strip()
        unit = 1 << 20  # a plain number is MiB, as QEMU's -m takes it
        if spec and spec[-1].lower() in _SIZE_SUFFIXES:
            unit = _SIZE_SUFFIXES[spec[-1].lower()]
            spec = spec[:-1]
        number = spec.replace(".", "", 1)
        if not number.isascii() or not number.isdigit() or spec.startswith(".") or spec.endswith("."):
            raise ValueError(f"not a memory size: {text!r} (QEMU's -m syntax: MiB as a plain number, "
                             "or a number with a suffix k, M, G, T: 512, 128M, 1G, 1.5G)")
        whole, _, fraction = spec.partition(".")
        size = int(whole) * unit + (int(fraction) * unit) // 10 ** len(fraction) if fraction else int(whole) * unit
    if size == 0:
        return DEFAULT_RAM_SIZE
    size = -(-size // RAM_ALIGN) * RAM_ALIGN
    if size > MAX_RAM_SIZE:
        raise ValueError(f"memory size {format_ram_size(size)} is more than the virt board's "
                         f"{format_ram_size(MAX_RAM_SIZE)} (as on QEMU)")
    return size


def format_ram_size(size: int) -> str:
    """``size`` bytes in the largest unit that divides it: ``128M``, ``1G``, ``104K``."""
    for suffix, unit in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size >= unit and size % unit == 0:
            return f"{size // unit}{suffix}"
    return f"{size}B"
