"""Return codes by name, from the constants the firmware answers with: a picture says PENDING, not -5.

SDEI (DEN0054 table 5.2) and PSCI (DEN0022 section 5.2.2) share SMCCC's SUCCESS (0) and
NOT_SUPPORTED (-1), and INVALID_PARAMETERS (-2) and DENIED (-3); from -4 on they differ
(PSCI's -5 is ON_PENDING, SDEI's is PENDING), so a code is named in its service's table.
"""

from __future__ import annotations

from sdeilab.firmware.psci import AffinityState, PsciResult
from sdeilab.firmware.sdei.table import SdeiResult

SDEI_RESULTS: dict[int, str] = {int(code): code.name for code in SdeiResult}
SDEI_REFUSALS: dict[int, str] = {code: name for code, name in SDEI_RESULTS.items() if code}
PSCI_RESULTS: dict[int, str] = {int(code): code.name for code in PsciResult}
AFFINITY_STATES: dict[int, str] = {int(state): state.name for state in AffinityState}


def result_name(code: int, call: str = "SDEI") -> str:
    """``code`` by name for a call named ``call`` (SDEI_..., or a PSCI call); the number if unnamed."""
    if code >= 1 << 63:  # x0 read as unsigned: the negative codes are two's complement
        code -= 1 << 64
    if call.startswith("AFFINITY_INFO") and code >= 0:
        return AFFINITY_STATES.get(code, str(code))
    names = SDEI_RESULTS if call.startswith("SDEI") else PSCI_RESULTS
    return names.get(code, str(code))
