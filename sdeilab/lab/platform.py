"""A machine with its firmware attached: the composition a CLI run, a notebook or a test starts from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sdeilab.firmware.arch import ArchService
from sdeilab.firmware.devicetree import BootConfig, bootargs_problem, device_tree_blob
from sdeilab.firmware.profiles import Profile, profile_named
from sdeilab.firmware.psci import PowerEvent, PowerFeed, Psci
from sdeilab.firmware.sdei.quirks import Quirks
from sdeilab.firmware.sdei.service import SDEI_FUNCTIONS, Sdei, SdeiPlatform
from sdeilab.firmware.smccc import EL3, SmcccDispatcher
from sdeilab.firmware.smccc_filter import SmcccFilter
from sdeilab.machine.linux_boot import linux_image
from sdeilab.machine.loader import GuestImage, GuestLoadError
from sdeilab.machine.machine import DEFAULT_QUANTUM, Machine
from sdeilab.machine.memmap import DEFAULT_RAM_SIZE, parse_ram_size
from sdeilab.machine.outcome import RunOutcome
from sdeilab.machine.pl031 import DEFAULT_EPOCH
from sdeilab.trace import TraceLog

DEFAULT_BOOTARGS = "console=ttyAMA0 earlycon panic=-1"
"""A kernel's command line unless told otherwise: the PL011 is the console (without ``console=``
Linux takes the dummy VT first and later prints its log again on the PL011), ``earlycon`` with no
options prints through the device tree's stdout-path from the first message on, and a panic
reboots at once (PSCI SYSTEM_RESET, exit 5) instead of spinning until the budget runs out."""


@dataclass(frozen=True)
class KernelBoot:
    """A Linux Image to boot instead of a guest ELF (``Platform.load_kernel``; Session takes one too)."""

    kernel: Path
    initrd: Path | None = None
    bootargs: str = DEFAULT_BOOTARGS


@dataclass
class Platform:
    machine: Machine
    profile: Profile
    dispatcher: SmcccDispatcher
    arch: ArchService
    psci: Psci
    sdei: Sdei | None  # None where the profile offers no SDEI (upstream KVM)

    def load(self, guest: Path | str) -> None:
        self.machine.load(guest)

    def load_kernel(self, kernel: Path | str, initrd: Path | str | bytes | None = None,
                    bootargs: str = DEFAULT_BOOTARGS) -> GuestImage:
        """Boot an arm64 Linux Image (sdeilab.machine.linux_boot) with a device tree generated for
        this machine and profile (sdeilab.firmware.devicetree), ``bootargs`` in /chosen and the
        initrd, if any, behind the kernel. Raises ``GuestLoadError`` with a one-line reason."""
        machine = self.machine
        problem = bootargs_problem(bootargs)
        if problem is not None:  # before the kernel is read: the cheap mistake is reported first
            raise GuestLoadError(f"the kernel command line (bootargs) holds {problem}")

        def device_tree(initrd_range: tuple[int, int] | None) -> bytes:
            boot = BootConfig(bootargs, initrd_range)
            try:
                return device_tree_blob(self.profile, len(machine.vcpus), ram_size=machine.ram_region.size, boot=boot)
            except ValueError as error:
                raise GuestLoadError(f"no device tree for profile {self.profile.name!r}: {error}") from None

        image = linux_image(kernel, machine.ram_region, device_tree, initrd=initrd)
        machine.load_image(image)
        return image

    def run(self, max_instructions: int | None = None) -> RunOutcome:
        return self.machine.run(max_instructions)


def make_platform(cpus: int = 1, profile: str | Profile = "virt", *, quantum: int = DEFAULT_QUANTUM,
                  trace: TraceLog | None = None, quirks: Quirks | None = None,
                  sdei_platform: SdeiPlatform | None = None, rtc_epoch: int = DEFAULT_EPOCH,
                  memory: int | str = DEFAULT_RAM_SIZE, icount_shift: int = 0) -> Platform:
    """A machine with the profile's services placed in their layers and the VMM's SMCCC filter installed.

    ``rtc_epoch``: the time of day (seconds since 1970) the PL031 reads at virtual time 0.
    ``memory``: the RAM size, in bytes (an int) or in QEMU's ``-m`` syntax (``"1G"``, ``"512"``
    MiB); the device tree's memory node says the same. ValueError for a size QEMU virt refuses,
    ``RamSizeError`` (a ValueError) for one the host cannot map."""
    prof = profile_named(profile) if isinstance(profile, str) else profile
    machine = Machine(cpus, quantum=quantum, trace=trace, rtc_epoch=rtc_epoch, ram_size=parse_ram_size(memory),
                      icount_shift=icount_shift)

    def elf_device_tree() -> bytes:
        # What an ELF guest finds at the start of RAM when its image leaves the room (QEMU's
        # rule, GuestImage.dtb_below): the lab's tree for this machine, no /chosen bootargs.
        try:
            return device_tree_blob(prof, len(machine.vcpus), ram_size=machine.ram_region.size)
        except ValueError:  # a profile with several conduits has no device tree: nothing is written
            return b""

    machine.device_tree = elf_device_tree
    smccc_filter = SmcccFilter(vm_has_run=lambda: machine.retired > 0)
    for entry in prof.smccc_filter:
        smccc_filter.install(entry.base, entry.nr_functions, entry.action)
    dispatcher = SmcccDispatcher(prof.conduits, smccc_filter)
    arch = ArchService(prof.smccc_version)
    psci = Psci(machine, dispatcher, affinity_fields_only=prof.services.get("psci") == EL3)
    for service in (arch, psci):
        layer = prof.services.get(service.name)
        if layer is None:
            dispatcher.know((f.name, f.fid) for f in service.functions())
        else:
            dispatcher.register(service, layer)
    sdei: Sdei | None = None
    sdei_layer = prof.services.get("sdei")
    if sdei_layer is not None:
        seen = prof.power_events_seen_by("sdei")
        feed = PowerFeed(psci, seen, can_veto=PowerEvent.CPU_OFF in seen)
        sdei = Sdei(machine, feed, dispatcher, sdei_platform or prof.sdei, quirks)
        dispatcher.register(sdei, sdei_layer, exclude=prof.sdei_not_supported)
    else:
        dispatcher.know(SDEI_FUNCTIONS)
    machine.firmware = dispatcher
    return Platform(machine, prof, dispatcher, arch, psci, sdei)
