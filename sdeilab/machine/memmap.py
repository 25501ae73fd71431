"""The `virt` board as data: the memory map and the interrupt map (QEMU hw/arm/virt.c style).

Adding a device means one row in each table. Addresses and INTIDs match QEMU's
``-M virt,gic-version=3`` so that a guest written for one boots on the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Region(Enum):
    GIC_DIST = "gic-dist"
    GIC_REDIST = "gic-redist"
    GICV2_CPU = "gicv2-cpu"
    UART0 = "uart0"
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
    # sdeilab's addition to the virt map, in a hole QEMU leaves: an SP804 timer whose SPI the
    # TF-A SDEI tests bind (FVP has one). A guest that uses it does not run on QEMU.
    Region.TIMER0: MemMapEntry(0x090C_0000, 0x1000),
    Region.RAM: MemMapEntry(0x4000_0000, 128 * 1024 * 1024),
}

GICR_FRAME_SIZE = 0x2_0000
"""Each CPU's redistributor: a 64 KiB RD_base frame then a 64 KiB SGI_base frame (GICv3 12.10)."""

MAX_CPUS = VIRT_MEMMAP[Region.GIC_REDIST].size // GICR_FRAME_SIZE  # 123, as on QEMU virt

# Interrupt map: SPIs by device (INTID = 32 + SPI number), PPIs by INTID (GICv3 2.2).
VIRT_SPIS: dict[Region, int] = {Region.UART0: 1, Region.TIMER0: 10}


class Ppi(int, Enum):
    """Generic timer PPIs as the virt board wires them (Arm BSA recommended INTIDs)."""

    HYP_TIMER = 26
    VIRT_TIMER = 27
    SECURE_PHYS_TIMER = 29
    PHYS_TIMER = 30


def spi_intid(region: Region) -> int:
    return 32 + VIRT_SPIS[region]


NUM_SPIS = 256  # QEMU virt's NUM_IRQS: INTIDs 32..287


def mpidr_of(cpu: int) -> int:
    """MPIDR_EL1 of CPU ``cpu`` as on QEMU virt: bit 31 RES1, U = 0, affinity from ``cpu_affinity``."""
    return 0x8000_0000 | cpu_affinity(cpu)


def cpu_affinity(cpu: int) -> int:
    # QEMU virt puts 8 CPUs per cluster for GICv3 (virt.c clustersz): Aff0 = n % 8, Aff1 = n / 8.
    return ((cpu // 8) << 8) | (cpu % 8)


def cpu_of_mpidr(mpidr: int, num_cpus: int) -> int | None:
    """The CPU index whose affinity fields (Aff3..Aff0) equal ``mpidr``'s, or None."""
    aff0, aff1 = mpidr & 0xFF, (mpidr >> 8) & 0xFF
    if mpidr & 0xFF_00FF_0000 or aff0 >= 8:  # Aff3 and Aff2 are 0 and a cluster holds 8 PEs (cpu_affinity)
        return None
    cpu = aff1 * 8 + aff0
    return cpu if cpu < num_cpus else None
