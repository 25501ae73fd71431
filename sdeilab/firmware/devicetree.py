"""The device tree a kernel boots with, generated from the lab's own tables.

Every address and interrupt comes from ``sdeilab.machine.memmap`` (the memory map) and
``sdeilab.machine.board`` (the devices, each of which describes its own node), and the firmware
nodes from the profile: the PSCI node's ``method`` is the
profile's conduit, and ``/firmware/sdei`` exists only where the profile's SDEI is reachable
(reference sdei-psci-smccc.md; Linux's bindings arm/psci.yaml and arm/firmware/sdei.txt).
Nothing is copied from QEMU's blob: the node shapes follow the bindings, and QEMU's
``-machine dumpdtb`` output was only used to check that the two agree where the boards do.

The blob is written by the ``fdt`` package (pure Python, DTB version 17); tests check it with
Debian's ``dtc`` where that is installed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import fdt

from sdeilab.firmware.profiles import Profile, profile_named
from sdeilab.machine.board import VIRT_DEVICES, device_spec
from sdeilab.machine.device import (
    PHANDLE_APB_PCLK,
    PHANDLE_GIC,
    cells64,
    node_name,
    reg_property,
)
from sdeilab.machine.memmap import (
    GICR_FRAME_SIZE,
    MAX_CPUS,
    MPIDR_AFFINITY_MASK,
    VIRT_MEMMAP,
    MemMapEntry,
    Region,
    cpu_affinity,
)
from sdeilab.machine.timer import GenericTimer

DTB_VERSION = 17
APB_PCLK_HZ = 24_000_000  # the PL011's and SP804's bus clock, as QEMU virt declares it (clk24mhz)
MPIDR_HWID_BITMASK = MPIDR_AFFINITY_MASK  # Aff3..Aff0: what a cpu node's reg holds (arm/cpus.yaml)
CPU_COMPATIBLE = "arm,cortex-a57"  # the model sdeilab.cpu.unicorn_backend selects (UC_CPU_ARM64_A57)



# Linux's arm64 COMMAND_LINE_SIZE (arch/arm64/include/uapi/asm/setup.h): the kernel keeps at most
# this many bytes of /chosen/bootargs, its terminating NUL included, and cuts the rest silently.
COMMAND_LINE_SIZE = 2048
# What a command line may hold: printable ASCII, space and tab. A devicetree string is
# NUL-terminated (DTSpec v0.4, 2.2.4.1 "Property Values", <string>), so a NUL would end it early,
# and the lab writes it as ASCII, so other text has no defined bytes in the blob.
_BOOTARGS_CHARS = frozenset(chr(c) for c in range(0x20, 0x7F)) | {"\t"}


def bootargs_problem(bootargs: str) -> str | None:
    """Why ``bootargs`` cannot be a kernel command line in the device tree, or None if it can.

    Text from ``sys.argv`` holds an undecodable byte as a lone surrogate (PEP 383): it is named
    as the byte it was.
    """
    for position, char in enumerate(bootargs):
        if char in _BOOTARGS_CHARS:
            continue
        if char == "\0":
            return f"a NUL byte at position {position} (a devicetree string ends at its first NUL)"
        if 0xDC80 <= ord(char) <= 0xDCFF:
            return f"the byte 0x{ord(char) - 0xDC00:02x} at position {position}, which is not ASCII text"
        if ord(char) < 0x20 or ord(char) == 0x7F:
            return f"the control character 0x{ord(char):02x} at position {position}"
        return f"the non-ASCII character {char!r} at position {position}; use printable ASCII only"
    if len(bootargs) >= COMMAND_LINE_SIZE:
        return (f"{len(bootargs)} characters; Linux keeps at most {COMMAND_LINE_SIZE - 1} "
                "(COMMAND_LINE_SIZE) and would cut the rest")
    return None


@dataclass(frozen=True)
class BootConfig:
    """What ``/chosen`` tells the kernel: its command line and where the initramfs lies (physical)."""

    bootargs: str = ""
    initrd: tuple[int, int] | None = None  # (start, end), end exclusive, as linux,initrd-end

    def __post_init__(self) -> None:
        problem = bootargs_problem(self.bootargs)
        if problem is not None:
            raise ValueError(f"the kernel command line holds {problem}")


def conduit_of(profile: Profile) -> str:
    """The instruction firmware calls use on this platform: the DT has one ``method`` for PSCI and SDEI.

    SMCCC (reference section 3.4) gives a system one conduit; a profile with several would need a
    choice the device tree cannot express.
    """
    conduits = list(profile.conduits)
    if len(conduits) != 1:
        raise ValueError(f"profile {profile.name!r} has conduits {conduits}; a device tree names exactly one")
    return conduits[0]


def device_tree(profile: Profile | str, cpus: int, *, ram_size: int = VIRT_MEMMAP[Region.RAM].size,
                boot: BootConfig | None = None, omit: Iterable[Region] = ()) -> fdt.FDT:
    """The device tree of a machine with ``cpus`` vCPUs and ``ram_size`` bytes of RAM under ``profile``.

    ``omit`` leaves devices out, for a board that lacks them: the SP804 is the lab's own addition
    to the virt board (board.py), and a kernel on QEMU virt that probed it would take an external
    abort.
    """
    prof = profile_named(profile) if isinstance(profile, str) else profile
    if not 1 <= cpus <= MAX_CPUS:
        raise ValueError(f"cpus must be between 1 and {MAX_CPUS}")
    boot = boot or BootConfig()
    omitted = frozenset(omit)
    tree = fdt.FDT()
    tree.header.version = DTB_VERSION
    root = tree.root
    root.append(fdt.PropStrings("compatible", "linux,dummy-virt"))
    root.append(fdt.PropStrings("model", f"sdeilab virt ({prof.name} profile)"))
    root.append(fdt.PropWords("#address-cells", 2))
    root.append(fdt.PropWords("#size-cells", 2))
    root.append(fdt.PropWords("interrupt-parent", PHANDLE_GIC))

    ram = MemMapEntry(VIRT_MEMMAP[Region.RAM].base, ram_size)
    root.append(fdt.Node(node_name("memory", ram), fdt.PropStrings("device_type", "memory"), reg_property(ram)))

    root.append(_cpus_node(cpus))
    conduit = conduit_of(prof)
    if prof.reaches("psci"):
        # psci-0.2 tells Linux the standard function IDs; psci-1.0 that PSCI_FEATURES exists (arm/psci.yaml).
        root.append(fdt.Node("psci", fdt.PropStrings("compatible", "arm,psci-1.0", "arm,psci-0.2"),
                             fdt.PropStrings("method", conduit)))
    if prof.reaches("sdei"):
        # Linux populates /firmware's children as platform devices; drivers/firmware/arm_sdei.c
        # matches "arm,sdei-1.0" and takes the conduit from "method" (arm/firmware/sdei.txt).
        root.append(fdt.Node("firmware", fdt.Node("sdei", fdt.PropStrings("compatible", "arm,sdei-1.0"),
                                                  fdt.PropStrings("method", conduit))))

    root.append(_gic_node(cpus))
    root.append(GenericTimer.fdt_node())
    root.append(fdt.Node("apb-pclk", fdt.PropStrings("compatible", "fixed-clock"),
                         fdt.PropWords("#clock-cells", 0), fdt.PropWords("clock-frequency", APB_PCLK_HZ),
                         fdt.PropStrings("clock-output-names", "clk24mhz"),
                         fdt.PropWords("phandle", PHANDLE_APB_PCLK)))
    for spec in VIRT_DEVICES:  # each device describes itself (sdeilab.machine.board)
        if spec.region not in omitted:
            root.append(spec.fdt_node())

    chosen = fdt.Node("chosen")
    if Region.UART0 not in omitted:  # also what a bare "earlycon" uses
        chosen.append(fdt.PropStrings("stdout-path", device_spec(Region.UART0).node_path))
    if boot.bootargs:
        chosen.append(fdt.PropStrings("bootargs", boot.bootargs))
    if boot.initrd is not None:
        start, end = boot.initrd
        if start >= end:
            raise ValueError(f"initrd 0x{start:x}..0x{end:x} is empty")
        if not ram.contains(start, end - start):
            raise ValueError(f"initrd 0x{start:x}..0x{end:x} is not inside RAM")
        chosen.append(fdt.PropWords("linux,initrd-start", *cells64(start)))
        chosen.append(fdt.PropWords("linux,initrd-end", *cells64(end)))
    root.append(chosen)
    return tree


def _cpus_node(cpus: int) -> fdt.Node:
    node = fdt.Node("cpus", fdt.PropWords("#address-cells", 1), fdt.PropWords("#size-cells", 0))
    for cpu in range(cpus):
        # reg is MPIDR_EL1's affinity fields (arm/cpus.yaml); one cell covers Aff2..Aff0, and
        # Aff3 is zero for every CPU the memory map allows (MAX_CPUS).
        hwid = cpu_affinity(cpu) & MPIDR_HWID_BITMASK
        node.append(fdt.Node(f"cpu@{hwid:x}", fdt.PropStrings("device_type", "cpu"),
                             fdt.PropStrings("compatible", CPU_COMPATIBLE), fdt.PropWords("reg", hwid),
                             fdt.PropStrings("enable-method", "psci")))
    return node


def _gic_node(cpus: int) -> fdt.Node:
    dist = VIRT_MEMMAP[Region.GIC_DIST]
    redist_all = VIRT_MEMMAP[Region.GIC_REDIST]
    # Only the frames the machine maps (one RD + SGI pair per CPU): Linux walks the region
    # frame by frame until GICR_TYPER.Last, and a region larger than what is mapped would
    # only be right if Last were never missed.
    redist = MemMapEntry(redist_all.base, min(redist_all.size, cpus * GICR_FRAME_SIZE))
    # #address-cells = 0: no child nodes (no ITS), and dtc wants it on every interrupt provider
    # because an interrupt-map's parent unit address is sized by it (DT specification 2.4.3.1).
    return fdt.Node(node_name("intc", dist), fdt.PropStrings("compatible", "arm,gic-v3"),
                    fdt.PropWords("#interrupt-cells", 3), fdt.PropWords("#address-cells", 0),
                    fdt.Property("interrupt-controller"),
                    fdt.PropWords("#redistributor-regions", 1), reg_property(dist, redist),
                    fdt.PropWords("phandle", PHANDLE_GIC))


def device_tree_blob(profile: Profile | str, cpus: int, *, ram_size: int = VIRT_MEMMAP[Region.RAM].size,
                     boot: BootConfig | None = None, omit: Iterable[Region] = ()) -> bytes:
    """The flattened device tree (DTB) of :func:`device_tree`, ready to place in guest memory."""
    tree = device_tree(profile, cpus, ram_size=ram_size, boot=boot, omit=omit)
    return bytes(tree.to_dtb(version=DTB_VERSION))
