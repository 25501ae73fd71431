"""Named divergences. The defaults are TF-A's behaviour; each switch is one documented difference."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Quirks:
    version_1_1: bool = False
    """SDEI_VERSION reports 1.1.0 instead of TF-A's 1.0.0 (TFTF skips unless it reads 1.0.0)."""

    zero_x4_x17: bool = False
    """Handler entry zeroes x4-x17, as Gavin Shan's KVM series did; TF-A leaves them unchanged."""

    info_signaled_as_spec: bool = False
    """GET_INFO(EV_SIGNALED) answers 1 for event 0 (the v1.0 text); TF-A answers !signalable."""

    cpu_off_while_running: bool = False
    """CPU_OFF is allowed while a handler runs on the PE, leaving the dispatch dangling (TF-A has no
    check); by default the lab refuses it with DENIED (reference 3.5)."""

    tfa_reg_count_leak: bool = False
    """CPU_ON resets a private registration without forgetting it was counted, so INTERRUPT_RELEASE
    stays DENIED afterwards (TF-A's sdei_cpu_on_init does not decrement reg_count)."""

    cpu_on_keeps_pe_state: bool = False
    """The PE comes out of CPU_ON with the mask and private registrations of its previous life:
    what a guest sees when PSCI is handled where SDEI cannot see it (the kvm-vmm-sdei hazard)."""

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_names(cls, names: Iterable[str]) -> Quirks:
        """The quirks named switched on, the others off; ValueError naming the known ones for a
        name that is none of them (the command line, the debugger and notebook cells all say it so)."""
        wanted = list(names)
        unknown = sorted(set(wanted) - set(cls.names()))
        if unknown:
            raise ValueError(f"unknown quirks {unknown}; known: {', '.join(cls.names())}")
        return cls(**dict.fromkeys(wanted, True))
