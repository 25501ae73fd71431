"""Platform profiles: who answers firmware calls, on which conduit. Data, not code paths.

``virt`` is a KVM guest: HVC #0 is the conduit and the host kernel answers SMCCC and PSCI;
there is no EL3, so SMC at EL1 is UNDEFINED (Mark Rutland, 2019: no ABI may depend on SMC).
``firmware`` is TF-A: EL3 firmware takes SMC #0; there is no EL2, so HVC is UNDEFINED.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    conduits: tuple[str, ...]  # instructions that are SMCCC calls; the others are UNDEFINED at EL1
    lowest_layer: str  # who answers SMCCC, PSCI and unknown IDs: "kvm" or "el3"
    smccc_version: int  # SMCCC_VERSION's answer: 1.1 as KVM reports, 1.5 as TF-A does


PROFILES: dict[str, Profile] = {
    "virt": Profile("virt", "KVM guest: HVC #0 conduit, SMCCC and PSCI in the kernel, SMC UNDEFINED (no EL3)",
                    ("hvc",), "kvm", 0x1_0001),
    "firmware": Profile("firmware", "TF-A-like EL3 firmware: SMC #0 conduit, HVC UNDEFINED (no EL2)",
                        ("smc",), "el3", 0x1_0005),
}


def profile_named(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}") from None
