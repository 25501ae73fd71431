"""The words facts are made of, in one place, for every layer above to import: a vCPU's power
states and the causes of its transitions, and the conduits a firmware call takes.

Each is a :class:`~enum.StrEnum`: a member *is* its string, so facts keep plain strings (the
JSON and Perfetto output stay byte for byte what they were) and a comparison such as
``fact.new == PowerState.ON`` says what it means instead of repeating ``"on"``.
"""

from __future__ import annotations

from enum import StrEnum


class PowerState(StrEnum):
    """A PE's power state as the machine models it (PSCI DEN0022 5.1 and 5.7, AFFINITY_INFO)."""

    OFF = "off"  # powered down (AFFINITY_INFO: OFF)
    ON_PENDING = "on-pending"  # CPU_ON accepted, the PE has not started yet (AFFINITY_INFO: ON_PENDING)
    ON = "on"  # executing
    STANDBY = "standby"  # WFI, or CPU_SUSPEND to a standby state: resumes after the WFI on a wake-up event
    POWERDOWN = "powerdown"  # CPU_SUSPEND to a power-down state: resumes at its entry point on a wake-up event

    @property
    def powered(self) -> bool:
        """AFFINITY_INFO's view (PSCI 5.7): everything but OFF and ON_PENDING counts as ON."""
        return self not in (PowerState.OFF, PowerState.ON_PENDING)


class PowerCause(StrEnum):
    """Why a PE's power state changed (the ``cause`` of a PowerTransition fact)."""

    BOOT = "boot"  # the boot CPU starting at the image's entry point
    CPU_ON = "cpu-on"  # PSCI CPU_ON (ON_PENDING, then ON when the PE starts)
    CPU_OFF = "cpu-off"  # PSCI CPU_OFF
    CPU_SUSPEND = "cpu-suspend"  # PSCI CPU_SUSPEND, to a standby or a power-down state
    WFI = "wfi"  # the PE executed WFI
    WAKE = "wake"  # a wake-up event ended a standby or power-down state


class Conduit(StrEnum):
    """The instruction a firmware call traps with (DEN0028 2.5, "SMC and HVC calling conventions").
    HVC reaches a hypervisor at EL2; SMC reaches EL3 firmware, and is UNDEFINED at EL1 where there
    is no EL3 (ARM ARM D1.19), so a hypervisor's ABI must not depend on it."""

    HVC = "hvc"
    SMC = "smc"
