"""The `virt` board's devices as a table: one row per device, iterated by the machine (MMIO rows,
interrupt lines, snapshot parts), the interrupt map and the device-tree writer.

Adding a device is one file implementing ``sdeilab.machine.device.Device`` and one row here,
after QEMU's hw/arm/virt.c (its memory map, its interrupt map and a ``create_*`` per device) and
kvmtool (one file per device, registered in one line). Addresses are the memory map's
(memmap.py); SPI numbers are QEMU virt's, so a guest written for one board boots on the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import fdt

from sdeilab.machine.device import Device, node_name, reg_property, spi_property
from sdeilab.machine.memmap import VIRT_MEMMAP, MemMapEntry, Region
from sdeilab.machine.pl031 import Pl031
from sdeilab.machine.sp804 import Sp804
from sdeilab.machine.uart import Pl011


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One device of the board: its part name (snapshots, ``Machine.devices``), its MMIO region, its
    SPI (INTID = 32 + SPI, GICv3 2.2) and its model."""

    name: str
    region: Region
    spi: int
    model: type[Device]

    @property
    def entry(self) -> MemMapEntry:
        return VIRT_MEMMAP[self.region]

    @property
    def intid(self) -> int:
        return 32 + self.spi

    @property
    def source(self) -> str:
        """What the trace names as the source of this device's interrupt (``IrqAsserted``)."""
        return self.region.value

    @property
    def node_path(self) -> str:
        return "/" + node_name(self.model.NODE_NAME, self.entry)

    def fdt_node(self) -> fdt.Node:
        """Its device-tree node: compatible, reg and interrupts from this row, the rest from the model."""
        return fdt.Node(node_name(self.model.NODE_NAME, self.entry),
                        fdt.PropStrings("compatible", *self.model.COMPATIBLE), reg_property(self.entry),
                        spi_property(self.intid), *self.model.fdt_properties())


VIRT_DEVICES: tuple[DeviceSpec, ...] = (
    DeviceSpec("uart0", Region.UART0, spi=1, model=Pl011),
    DeviceSpec("rtc", Region.RTC, spi=2, model=Pl031),
    # sdeilab's addition to the virt board, in a hole of its memory map: an SP804 whose SPI the TF-A
    # SDEI tests bind (FVP has one). A guest that uses it does not run on QEMU.
    DeviceSpec("sp804", Region.TIMER0, spi=10, model=Sp804),
)
"""The board's MMIO devices in device-tree order (the GIC and the per-CPU timers are the CPU's own)."""

def device_spec(region: Region) -> DeviceSpec:
    """The row of the device at ``region``."""
    for spec in VIRT_DEVICES:
        if spec.region is region:
            return spec
    raise KeyError(f"no device of the virt board at {region}")


def spi_intid(region: Region) -> int:
    return device_spec(region).intid
