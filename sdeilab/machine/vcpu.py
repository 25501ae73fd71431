"""vCPU power and run states as an explicit enum, with every transition checked and recorded.

Firecracker's habit: a state is a name, the allowed transitions are one table, and a request
that does not fit the table is refused loudly rather than ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import MethodType

from sdeilab.cpu.backend import CpuBackend
from sdeilab.machine.exceptions import PSTATE_DAIF, PSTATE_EL1H, PSTATE_NZCV
from sdeilab.trace.vocabulary import PowerCause, PowerState

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

    __slots__ = ("_on_transition", "backend", "entry", "index", "mpidr", "read_pc", "restore_context",
                 "save_context", "set_x", "set_xs", "state", "x", "xs")

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
        self.x: Callable[[int], int] = backend.x  # Xn
        self.xs: Callable[[int], list[int]] = backend.xs  # X0..X(count-1)
        self.set_x: Callable[[int, int], None] = backend.set_x  # Xn = value
        self.set_xs: Callable[[Sequence[int]], None] = backend.set_xs  # X0..X(len-1) = values
        # PC. In a conduit callback it is the preferred return address, which for HVC and SMC is
        # the instruction after the call (ARM ARM, "Preferred exception return address"); SMCCC
        # finds the call's immediate from it (DEN0028 2.9).
        # ``backend.pc`` is a property: its getter is bound to the backend here, which costs what
        # reading the property does, where a property of Vcpu would add a Python frame (about
        # 35 ns, over 1% of a hypercall's round trip; partial(attrgetter("pc")) saves less).
        # (mypy does not see the property object on the class, hence the ignore.)
        self.read_pc: Callable[[], int] = MethodType(type(backend).pc.fget, backend)  # type: ignore[attr-defined]
        # An SDEI dispatch's save and COMPLETE's restore, once per event each; what they mean is
        # documented under "SDEI event dispatch" below.
        self.save_context: Callable[[int], tuple[bytes, int, int]] = backend.save_context
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
    # ``save_context(count)`` (bound in __init__): the interrupted context, X0..X(count-1) as
    # ``count`` 64-bit words in the host's order (``memoryview(saved).cast("Q")`` reads them), PC
    # and PSTATE (TF-A save_event_ctx keeps x0-x17, ELR_EL3 and SPSR_EL3: the interrupted PC and
    # PSTATE).
    #
    # ``restore_context(saved, pc, pstate)`` (bound in __init__): EVENT_COMPLETE, the interrupted
    # context back as ``save_context`` returned it (PSTATE written as a change of mode).

    def enter_sdei_handler(self, registers: Sequence[int], entry: int, interrupted_pstate: int) -> None:
        """Enter an SDEI handler at ``entry`` with X0.. = ``registers`` (DEN0054 5.1.14: event
        number, argument, interrupted PC, interrupted PSTATE), from the context whose PSTATE
        ``save_context`` just read as ``interrupted_pstate`` (so PSTATE is written, as a change
        of mode, only if the entry changes it: the engine's fast path).

        PSTATE as an exception entry to EL1h makes it (ARM ARM D1.10.2; TF-A create_spsr): D, A,
        I, F set, NZCV kept. ELR_EL1 and SPSR_EL1 keep the client's values: the interrupted PC and
        PSTATE reach the handler in X2 and X3 instead, so an event may land inside the client's
        own exception handler."""
        self.backend.write_context(registers, entry, (interrupted_pstate & PSTATE_NZCV) | PSTATE_DAIF | PSTATE_EL1H,
                                   interrupted_pstate)

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
