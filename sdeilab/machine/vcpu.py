"""vCPU power and run states as an explicit enum, with every transition checked and recorded.

Firecracker's habit: a state is a name, the allowed transitions are one table, and a request
that does not fit the table is refused loudly rather than ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from sdeilab.cpu.backend import CpuBackend


class VcpuState(Enum):
    OFF = "off"  # powered down (PSCI AFFINITY_INFO: OFF)
    ON_PENDING = "on-pending"  # CPU_ON accepted, the PE has not started yet (AFFINITY_INFO: ON_PENDING)
    ON = "on"  # executing
    STANDBY = "standby"  # WFI, or CPU_SUSPEND to a standby state: resumes after the WFI on a wake-up event
    POWERDOWN = "powerdown"  # CPU_SUSPEND to a power-down state: resumes at its entry point on a wake-up event

    @property
    def powered(self) -> bool:
        """AFFINITY_INFO's view (PSCI 5.7): everything but OFF and ON_PENDING counts as ON."""
        return self not in (VcpuState.OFF, VcpuState.ON_PENDING)


_ALLOWED: dict[VcpuState, frozenset[VcpuState]] = {
    VcpuState.OFF: frozenset({VcpuState.ON_PENDING, VcpuState.ON}),
    VcpuState.ON_PENDING: frozenset({VcpuState.ON, VcpuState.OFF}),
    VcpuState.ON: frozenset({VcpuState.OFF, VcpuState.STANDBY, VcpuState.POWERDOWN}),
    VcpuState.STANDBY: frozenset({VcpuState.ON, VcpuState.OFF}),
    VcpuState.POWERDOWN: frozenset({VcpuState.ON, VcpuState.OFF}),
}


class Vcpu:
    """A vCPU: its engine, its state, and where it resumes after ON_PENDING or POWERDOWN."""

    __slots__ = ("_on_transition", "backend", "entry", "index", "mpidr", "state")

    def __init__(self, index: int, mpidr: int, backend: CpuBackend,
                 on_transition: Callable[[Vcpu, VcpuState, VcpuState, str], None]) -> None:
        self.index = index
        self.mpidr = mpidr
        self.backend = backend
        self.state = VcpuState.OFF
        self.entry: tuple[int, int] | None = None  # (entry point, context id) to start at
        self._on_transition = on_transition

    def transition(self, new: VcpuState, cause: str) -> None:
        old = self.state
        if new not in _ALLOWED[old]:
            raise RuntimeError(f"CPU {self.index}: no transition {old.value} -> {new.value} ({cause})")
        self.state = new
        self._on_transition(self, old, new, cause)

    def force_off(self, cause: str) -> None:
        """System reset and system off: every state goes to OFF."""
        if self.state is not VcpuState.OFF:
            self.transition(VcpuState.OFF, cause)
