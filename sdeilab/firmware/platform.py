"""A machine with its firmware attached: the composition a CLI run, a notebook or a test starts from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sdeilab.firmware.arch import ARCH_RANGES, ArchService
from sdeilab.firmware.profiles import Profile, profile_named
from sdeilab.firmware.psci import PSCI_RANGES, Psci
from sdeilab.firmware.sdei.quirks import Quirks
from sdeilab.firmware.sdei.service import SDEI_RANGE, Sdei, SdeiPlatform
from sdeilab.firmware.smccc import SmcccDispatcher
from sdeilab.machine.machine import DEFAULT_QUANTUM, Machine
from sdeilab.machine.outcome import RunOutcome
from sdeilab.trace import TraceLog


@dataclass
class Platform:
    machine: Machine
    profile: Profile
    dispatcher: SmcccDispatcher
    arch: ArchService
    psci: Psci
    sdei: Sdei

    def load(self, guest: Path) -> None:
        self.machine.load(guest)

    def run(self, max_instructions: int | None = None) -> RunOutcome:
        return self.machine.run(max_instructions)


def make_platform(cpus: int = 1, profile: str | Profile = "virt", *, quantum: int = DEFAULT_QUANTUM,
                  trace: TraceLog | None = None, quirks: Quirks | None = None,
                  sdei_platform: SdeiPlatform | None = None) -> Platform:
    prof = profile_named(profile) if isinstance(profile, str) else profile
    machine = Machine(cpus, quantum=quantum, trace=trace)
    dispatcher = SmcccDispatcher(prof.conduits, prof.lowest_layer)
    arch = ArchService(prof.smccc_version)
    psci = Psci(machine, dispatcher)
    dispatcher.register(arch, prof.lowest_layer)
    dispatcher.register(psci, prof.lowest_layer)
    sdei = Sdei(machine, psci, dispatcher, sdei_platform, quirks)
    dispatcher.register(sdei, prof.lowest_layer)
    for first, count in (*ARCH_RANGES, *PSCI_RANGES, SDEI_RANGE):
        dispatcher.register_range(first, count, prof.lowest_layer)
    machine.firmware = dispatcher
    return Platform(machine, prof, dispatcher, arch, psci, sdei)
