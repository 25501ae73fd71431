"""The Arm Architecture Service (owning entity 0, DEN0028 section 7): version, features, workarounds.

These calls stay in the lowest layer in every profile: KVM reserves their ranges
(0x8000_0000-0x8000_FFFF, 0xC000_0000-0xC000_FFFF) so a VMM can never misreport Spectre
mitigation status (reference section 6).
"""

from __future__ import annotations

from collections.abc import Iterable

from sdeilab.firmware.smccc import INVALID_PARAMETER, NOT_SUPPORTED, SUCCESS, Function, Result, Service
from sdeilab.machine.vcpu import Vcpu

SMCCC_VERSION = 0x8000_0000
SMCCC_ARCH_FEATURES = 0x8000_0001
SMCCC_ARCH_SOC_ID = 0x8000_0002
SMCCC_ARCH_SOC_ID_64 = 0xC000_0002
SMCCC_ARCH_WORKAROUND_1 = 0x8000_8000  # Spectre v2, CVE-2017-5715
SMCCC_ARCH_WORKAROUND_2 = 0x8000_7FFF  # Spectre v4 / SSB, CVE-2018-3639
SMCCC_ARCH_WORKAROUND_3 = 0x8000_3FFF  # Spectre-BHB, CVE-2022-23960

ARCH_RANGES = ((0x8000_0000, 0x1_0000), (0xC000_0000, 0x1_0000))

# SMCCC_ARCH_SOC_ID (DEN0028 7.4): JEP-106 bank 5 (continuation code 4) and ID 0x3B is Arm Ltd;
# the implementation-defined SoC ID names this lab's virtual platform.
JEP106_BANK_ARM = 0x4
JEP106_ID_ARM = 0x3B
SOC_ID_VERSION = (JEP106_BANK_ARM << 24) | (JEP106_ID_ARM << 16) | 0x5DE1
SOC_ID_REVISION = 1
SOC_NAME = b"sdeilab virt"


class ArchService(Service):
    """The calls a KVM host answers for an emulated Cortex-A57 (affected by Spectre v2, v4 and BHB)."""

    name = "arch"

    def __init__(self, smccc_version: int = 0x10001) -> None:
        self.smccc_version = smccc_version
        # ARCH_FEATURES answers for the workarounds: 0 = "call it, the mitigation is provided".
        self.workaround_features = {SMCCC_ARCH_WORKAROUND_1: 0, SMCCC_ARCH_WORKAROUND_2: 0,
                                    SMCCC_ARCH_WORKAROUND_3: 0}

    def functions(self) -> Iterable[Function]:
        yield Function(SMCCC_VERSION, "SMCCC_VERSION", lambda vcpu: self.smccc_version)
        yield Function(SMCCC_ARCH_FEATURES, "SMCCC_ARCH_FEATURES", self.arch_features, 1)
        yield Function(SMCCC_ARCH_SOC_ID, "SMCCC_ARCH_SOC_ID", self.soc_id, 1)
        yield Function(SMCCC_ARCH_SOC_ID_64, "SMCCC_ARCH_SOC_ID", self.soc_id_64, 1)
        for fid, name in ((SMCCC_ARCH_WORKAROUND_1, "SMCCC_ARCH_WORKAROUND_1"),
                          (SMCCC_ARCH_WORKAROUND_2, "SMCCC_ARCH_WORKAROUND_2"),
                          (SMCCC_ARCH_WORKAROUND_3, "SMCCC_ARCH_WORKAROUND_3")):
            # The mitigation itself is modelled as free; the call is what the lab shows.
            yield Function(fid, name, lambda vcpu, *args: SUCCESS, 1 if fid == SMCCC_ARCH_WORKAROUND_2 else 0)

    def arch_features(self, vcpu: Vcpu, fid: int) -> Result:
        fid &= 0xFFFF_FFFF
        if fid in self.workaround_features:
            return self.workaround_features[fid]
        if fid in (SMCCC_VERSION, SMCCC_ARCH_FEATURES, SMCCC_ARCH_SOC_ID, SMCCC_ARCH_SOC_ID_64):
            return SUCCESS
        return NOT_SUPPORTED

    def soc_id(self, vcpu: Vcpu, selector: int) -> Result:
        if selector == 0:
            return SOC_ID_VERSION
        if selector == 1:
            return SOC_ID_REVISION
        return INVALID_PARAMETER  # the name (2) needs the SMC64 ID: it comes back in registers

    def soc_id_64(self, vcpu: Vcpu, selector: int) -> Result:
        if selector != 2:
            return self.soc_id(vcpu, selector)
        # DEN0028 7.4.2: the name, NUL-padded, in x1..x17 (8 bytes each, little-endian); x0 = SUCCESS.
        padded = SOC_NAME.ljust(8 * ((len(SOC_NAME) + 8) // 8), b"\0")
        words = [int.from_bytes(padded[i:i + 8], "little") for i in range(0, len(padded), 8)]
        return (SUCCESS, *words)
