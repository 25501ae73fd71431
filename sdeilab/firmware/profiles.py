"""Platform profiles: who answers each firmware call, on which conduit. Data, not code paths.

A profile says which instructions trap to which layer, in which layer each service lives
(``kvm`` the host kernel, ``vmm`` its userspace, ``el3`` firmware), the SMCCC filter the VMM
installs, and what the SDEI dispatcher offers. Everything else follows from those facts:
the dispatcher routes by them, PSCI's power events reach SDEI only across the boundaries they
really cross (``POWER_EVENT_PATHS``), and :attr:`Profile.features` is computed, not declared.

The debate these profiles make runnable is in reference sections 3.4, 6 and 7: the conduit
(HVC is safe, SMC is UNDEFINED at EL1 without EL3), opt-in forwarding through KVM's SMCCC
filter with the Arm architecture ranges kept in the kernel, and the rule that whoever
implements SDEI must see PSCI, because a PE must come out of CPU_ON masked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from sdeilab.firmware.arch import ARCH_RANGES
from sdeilab.firmware.psci import PSCI_RANGES, PowerEvent
from sdeilab.firmware.sdei.service import SDEI_RANGE, SdeiPlatform
from sdeilab.firmware.smccc import EL3, KERNEL, VMM, answering_layer, entry_layer
from sdeilab.firmware.smccc_filter import FilterAction, FilterRange, SmcccFilter
from sdeilab.trace.vocabulary import Conduit

FWD = FilterAction.FWD_TO_USER
SDEI_FORWARD = (FilterRange(SDEI_RANGE[0], SDEI_RANGE[1], FWD),)
PSCI_FORWARD = tuple(FilterRange(base, count, FWD) for base, count in PSCI_RANGES)

# Which of PSCI's power events a service in another layer learns about. Same layer: all of them.
# The kernel's PSCI tells the VMM only of system events (KVM_EXIT_SYSTEM_EVENT for SYSTEM_OFF and
# SYSTEM_RESET); CPU_ON, CPU_OFF and suspend stay inside KVM, so a VMM-side SDEI misses them.
POWER_EVENT_PATHS: dict[tuple[str, str], frozenset[PowerEvent]] = {
    (KERNEL, VMM): frozenset({PowerEvent.SYSTEM_RESET}),
}

# Gavin Shan's in-kernel SDEI, v7 (reference sections 5 and 7.3): private events only (event 0 and
# KVM-injected ones), no binding, no ROUTING_SET, no critical priority.
GAVIN_V7_SDEI = SdeiPlatform(private_slots=0, shared_slots=0, hypervisor_events=((5000, False),))
# SDEI in the VMM can bind only what the VMM emulates: the SPIs of its own devices (the UART, the
# SP804). Every PPI (the timers, the PMU, the GIC maintenance interrupt) is KVM's, in-kernel:
# "an interrupt KVM owns cannot be turned into an event" (reference section 6, hard part (a)).
VMM_SDEI = SdeiPlatform(private_slots=0, reserved_intids=frozenset(range(16, 32)))
GAVIN_V7_NOT_SUPPORTED = frozenset({"SDEI_INTERRUPT_BIND", "SDEI_INTERRUPT_RELEASE", "SDEI_EVENT_ROUTING_SET"})


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    conduits: Mapping[str, str]  # instruction -> the layer it traps to; an absent one is UNDEFINED at EL1
    services: Mapping[str, str]  # "arch", "psci", "sdei" -> the layer implementing it; absent: nobody does
    smccc_filter: tuple[FilterRange, ...] = ()  # installed by the VMM before the first vCPU runs
    smccc_version: int = 0x1_0001  # SMCCC_VERSION's answer: 1.1 as KVM reports, 1.5 as TF-A does
    sdei: SdeiPlatform = field(default_factory=SdeiPlatform)
    sdei_not_supported: frozenset[str] = frozenset()  # SDEI calls this implementation lacks

    @property
    def lowest_layer(self) -> str:
        """The layer the guest's calls trap to first (KVM, or EL3 firmware)."""
        return entry_layer(self.conduits)

    def power_events_seen_by(self, service: str) -> frozenset[PowerEvent]:
        """The PSCI power events ``service`` learns of, given where both live."""
        psci, other = self.services.get("psci"), self.services.get(service)
        if psci is None or other is None:
            return frozenset()
        if psci == other:
            return frozenset(PowerEvent)
        return POWER_EVENT_PATHS.get((psci, other), frozenset())

    def reaches(self, service: str) -> bool:
        """Whether the guest's calls to ``service`` arrive where it lives (the filter forwards them)."""
        layer = self.services.get(service)
        if layer is None:
            return False
        vm_filter = SmcccFilter()
        for entry in self.smccc_filter:
            vm_filter.install(entry.base, entry.nr_functions, entry.action)
        first_id = {"arch": ARCH_RANGES[0][0], "psci": PSCI_RANGES[0][0], "sdei": SDEI_RANGE[0]}[service]
        reached, _, denied = answering_layer(first_id, self.lowest_layer, vm_filter)
        return reached == layer and not denied

    @property
    def features(self) -> frozenset[str]:
        """What a guest may rely on here: ``sdei``, ``signal``, ``bind-ppi`` (a private event from a
        PPI), ``bind-spi`` (a shared event from an SPI), ``routing``, ``critical``, ``cpu-on-masks``
        (a PE comes out of CPU_ON masked, its private events reset)."""
        if not self.reaches("sdei"):
            return frozenset()
        lacks, sdei = self.sdei_not_supported, self.sdei
        found = {"sdei"}
        if "SDEI_EVENT_SIGNAL" not in lacks:
            found.add("signal")
        if "SDEI_INTERRUPT_BIND" not in lacks:
            if sdei.private_slots and not set(range(16, 32)) <= sdei.reserved_intids:
                found.add("bind-ppi")
            if sdei.shared_slots:
                found.add("bind-spi")
        if "SDEI_EVENT_ROUTING_SET" not in lacks:
            found.add("routing")
        if any(critical for _, critical in sdei.hypervisor_events):
            found.add("critical")
        if PowerEvent.CPU_ON_FINISH in self.power_events_seen_by("sdei"):
            found.add("cpu-on-masks")
        return frozenset(found)

    def with_conduits(self, conduits: Mapping[str, str], name: str | None = None) -> Profile:
        """The same placement reached by other instructions (see :data:`CONDUIT_SWITCHES`)."""
        return replace(self, name=name or self.name, conduits=dict(conduits))


_KVM_BASE = {"arch": KERNEL, "psci": KERNEL}

PROFILES: dict[str, Profile] = {
    "virt": Profile(
        "virt", "the lab's default: HVC #0 to a hypervisor that answers SMCCC, PSCI and a complete SDEI itself; "
        "SMC UNDEFINED (no EL3)",
        {Conduit.HVC: KERNEL}, {**_KVM_BASE, "sdei": KERNEL}),
    "firmware": Profile(
        "firmware", "TF-A-like: EL3 firmware answers SMCCC, PSCI and SDEI on SMC #0; HVC UNDEFINED (no EL2)",
        {Conduit.SMC: EL3}, {"arch": EL3, "psci": EL3, "sdei": EL3}, smccc_version=0x1_0005),
    "kvm": Profile(
        "kvm", "upstream KVM today: in-kernel SMCCC and PSCI, no SDEI (its calls are NOT_SUPPORTED)",
        {Conduit.HVC: KERNEL}, dict(_KVM_BASE)),
    "kvm-vmm-sdei": Profile(
        "kvm-vmm-sdei", "SDEI forwarded to the VMM, PSCI kept in the kernel: the VMM never hears of CPU_ON, "
        "so a PE keeps the mask and private registrations of its previous life",
        {Conduit.HVC: KERNEL}, {**_KVM_BASE, "sdei": VMM}, SDEI_FORWARD, sdei=VMM_SDEI),
    "kvm-vmm-psci-sdei": Profile(
        "kvm-vmm-psci-sdei", "PSCI and SDEI both forwarded to the VMM (the 2019 thread's fix); the architecture "
        "calls and the Spectre workarounds stay in the kernel",
        {Conduit.HVC: KERNEL}, {"arch": KERNEL, "psci": VMM, "sdei": VMM}, PSCI_FORWARD + SDEI_FORWARD, sdei=VMM_SDEI),
    "kvm-sdei": Profile(
        "kvm-sdei", "in-kernel SDEI as Gavin Shan's series (v7) did it: private events only, no binding, "
        "no ROUTING_SET, no critical events",
        {Conduit.HVC: KERNEL}, {**_KVM_BASE, "sdei": KERNEL}, sdei=GAVIN_V7_SDEI,
        sdei_not_supported=GAVIN_V7_NOT_SUPPORTED),
}

CONDUIT_SWITCHES: dict[str, Mapping[str, str]] = {
    "hvc": {Conduit.HVC: KERNEL},  # KVM: HVC #0; no EL3, so SMC is UNDEFINED at EL1
    "smc-el3": {Conduit.SMC: KERNEL},  # EL3 present: KVM traps SMC (HCR_EL2.TSC) into the same handler (Linux 6.4+)
    "smc-no-el3": {Conduit.HVC: KERNEL},  # SMC without EL3: UNDEFINED at EL1 whatever the hypervisor wants
}
"""How a KVM profile's guest reaches it. ``firmware`` is the SMC-to-EL3 case with no hypervisor."""


def profile_named(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}") from None
