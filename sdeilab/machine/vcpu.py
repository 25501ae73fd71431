"""vCPU power and run states as an explicit enum, with every transition checked and recorded.

Firecracker's habit: a state is a name, the allowed transitions are one table, and a request
that does not fit the table is refused loudly rather than ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sdeilab.cpu import backend as cpu_backend
from sdeilab.cpu.backend import CpuBackend
from sdeilab.machine.exceptions import PSTATE_DAIF, PSTATE_EL1H, PSTATE_NZCV
from sdeilab.trace.vocabulary import PowerCause, PowerState

CALL_PC = cpu_backend.CALL_PC  # where ``Vcpu.read_call`` puts PC, after X0..X17
SDEI_SAVED_REGISTERS = 18  # X0..X17, what an SDEI dispatch saves (DEN0054 5.1.14; TF-A save_event_ctx)
_ZEROS = (0,) * (SDEI_SAVED_REGISTERS - 4)

VcpuState = PowerState
"""The machine's name for the power states the trace's vocabulary defines (one definition serves both)."""


_ALLOWED: dict[VcpuState, frozenset[VcpuState]] = {
    VcpuState.OFF: frozenset({VcpuState.ON_PENDING, VcpuState.ON}),
    VcpuState.ON_PENDING: frozenset({VcpuState.ON, VcpuState.OFF}),
    VcpuState.ON: frozenset({VcpuState.OFF, VcpuState.STANDBY, VcpuState.POWERDOWN}),
    VcpuState.STANDBY: frozenset({VcpuState.ON, VcpuState.OFF}),
    VcpuState.POWERDOWN: frozenset({VcpuState.ON, VcpuState.OFF}),
}


class Vcpu:
    """A vCPU: its engine, its state, and where it resumes after ON_PENDING or POWERDOWN.

    Firmware sees the PE through these methods only, named for what the architecture and the
    firmware specifications say happens to the registers; how the engine does it quickly (one
    read of x0..x17, PSTATE written only when it changes) stays the backend's business. The
    debugger (the lab layer) still uses ``backend``.
    """

    __slots__ = ("_on_transition", "backend", "entry", "index", "mpidr", "read_call", "restore_context",
                 "set_x", "set_xs", "state")

    def __init__(self, index: int, mpidr: int, backend: CpuBackend,
                 on_transition: Callable[[Vcpu, VcpuState, VcpuState, str], None]) -> None:
        self.index = index
        self.mpidr = mpidr
        self.backend = backend
        self.state = VcpuState.OFF
        self.entry: tuple[int, int] | None = None  # (entry point, context id) to start at
        self._on_transition = on_transition
        # The general-purpose registers an SMCCC call uses (DEN0028 2.6, 2.7: the function ID in
        # W0, arguments in X1-X17, results in X0-X17). Every hypercall reads and writes them, so
        # they are the backend's own bound methods, bound once here: no call layer in between.
        self.set_x: Callable[[int, int], None] = backend.set_x  # Xn = value
        self.set_xs: Callable[[Sequence[int]], None] = backend.set_xs  # X0..X(len-1) = values
        # A call through a conduit: PC and X0..X17 in one read. In a conduit callback PC is the
        # preferred return address, the instruction after the HVC or SMC (ARM ARM, "Preferred
        # exception return address"), from which SMCCC finds the call's immediate (DEN0028 2.9).
        self.read_call: Callable[[], tuple[int, ...]] = backend.call_registers  # X0..X17, PC (CALL_PC)
        # EVENT_COMPLETE's restore, once per event; what it means is documented under "SDEI event
        # dispatch" below.
        self.restore_context: Callable[[bytes, int, int], None] = backend.restore_context

    @property
    def pstate(self) -> int:
        """PSTATE, laid out as SPSR_EL1 holds it (ARM ARM D1.10.2)."""
        return self.backend.pstate

    # --- SDEI event dispatch --------------------------------------------------------------
    # What an SDEI dispatcher does to the PE (DEN0054 5.1.14 and 5.2.2; TF-A sdei_intr_mgmt.c):
    # it saves the interrupted X0..X17, PC and PSTATE, enters the handler at EL1h, and on
    # EVENT_COMPLETE puts them back, or on EVENT_COMPLETE_AND_RESUME makes an exception entry.
    #
    # ``restore_context(saved, pc, pstate)`` (bound in __init__): EVENT_COMPLETE, the interrupted
    # context back as ``enter_sdei_handler`` returned it (PSTATE written as a change of mode).

    def enter_sdei_handler(self, number: int, argument: int, entry: int,
                           zero_x4_x17: bool = False) -> tuple[bytes, int, int]:
        """Save the interrupted context and enter an SDEI handler at ``entry``; return what was saved.

        Saved: X0..X17 as 18 64-bit words in the host's order (``memoryview(saved).cast("Q")``
        reads them), PC and PSTATE (TF-A save_event_ctx keeps x0-x17, ELR_EL3 and SPSR_EL3: the
        interrupted PC and PSTATE). Entered: X0..X3 = event number, ``argument``, interrupted PC,
        interrupted PSTATE (DEN0054 5.1.14); X4..X17 keep the interrupted values, or are zeroed.
        PSTATE as an exception entry to EL1h makes it (ARM ARM D1.10.2; TF-A create_spsr): D, A,
        I, F set, NZCV kept, written as a change of mode only if the entry changes it (the
        engine's fast path). ELR_EL1 and SPSR_EL1 keep the client's values: the interrupted PC and
        PSTATE reach the handler in X2 and X3 instead, so an event may land inside the client's
        own exception handler."""
        backend = self.backend
        saved, pc, pstate = backend.save_context(SDEI_SAVED_REGISTERS)
        registers = (number, argument, pc, pstate, *_ZEROS) if zero_x4_x17 else (number, argument, pc, pstate)
        backend.write_context(registers, entry, (pstate & PSTATE_NZCV) | PSTATE_DAIF | PSTATE_EL1H, pstate)
        return saved, pc, pstate

    def resume_context(self, saved: bytes, pc: int, pstate: int, resume: int) -> None:
        """EVENT_COMPLETE_AND_RESUME: the saved registers back, then, as DEN0054 5.2.2 "Event Resume
        Context" says, as if a synchronous exception had been taken to EL1 at ``resume`` from the
        interrupted context: ELR_EL1 = its PC, SPSR_EL1 = its PSTATE, PSTATE as the entry makes it
        (ARM ARM D1.10.2: EL1h, D A I F set, NZCV kept)."""
        backend = self.backend
        backend.write("ELR_EL1", pc)
        backend.write("SPSR_EL1", pstate)
        backend.restore_context(saved, resume, (pstate & PSTATE_NZCV) | PSTATE_DAIF | PSTATE_EL1H)

    # --- power state ------------------------------------------------------------------------
    def transition(self, new: VcpuState, cause: PowerCause | str) -> None:
        old = self.state
        if new not in _ALLOWED[old]:
            raise RuntimeError(f"CPU {self.index}: no transition {old.value} -> {new.value} ({cause})")
        self.state = new
        self._on_transition(self, old, new, cause)

    def force_off(self, cause: str) -> None:
        """System reset and system off: every state goes to OFF."""
        if self.state is not VcpuState.OFF:
            self.transition(VcpuState.OFF, cause)
