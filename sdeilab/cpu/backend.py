"""The CPU backend contract: what the machine needs from an AArch64 CPU engine.

The machine drives each vCPU in time slices (``run(budget)``) and is called back, during a
slice, for the events it emulates: exceptions the guest raises (HVC, SMC, UNDEF, ...),
system-register accesses (the GIC CPU interface, the generic timer) and cache maintenance.
Between slices it reads and writes registers to inject exceptions. Nothing here imports an
engine: ``sdeilab.cpu.unicorn_backend`` is the one implementation, and the only module that
imports unicorn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from sdeilab.trace.vocabulary import Conduit

CALL_PC = 18  # where ``CpuBackend.call_registers`` puts PC, after X0..X17

SysregKey = tuple[int, int, int, int, int]
"""A system register or system instruction by encoding: (op0, op1, CRn, CRm, op2)."""


class Trap(Enum):
    """Why the guest left straight-line execution (an exception it caused, ARM ARM D1.10)."""

    HVC = Conduit.HVC.value  # PC already past the instruction
    SMC = Conduit.SMC.value  # PC already past the instruction
    UNDEFINED = "undefined"  # PC at the instruction
    SVC = "svc"  # PC already past the instruction
    BRK = "brk"  # PC at the instruction
    PREFETCH_ABORT = "prefetch-abort"
    DATA_ABORT = "data-abort"
    OTHER = "other"


class Stop(Enum):
    """Why a time slice ended."""

    BUDGET = "budget"  # the slice ran its full instruction budget
    WFI = "wfi"  # the guest executed WFI
    REQUESTED = "requested"  # the machine asked (``request_stop``) from inside a callback
    UNMAPPED = "unmapped"  # an access to an address with no RAM or device behind it
    ILLEGAL_STATE = "illegal-state"  # PSTATE.IL is set at PC (an illegal exception return); not executed
    DEVICE_FETCH = "device-fetch"  # PC reached device memory (``address``); nothing there has executed
    # An access ``VcpuHost.watch_access`` took as a watchpoint hit: the instruction was undone (its
    # registers as before it, the bytes it stored put back) and PC is at it; ``access`` and
    # ``address`` (physical) are the access's.
    WATCHPOINT = "watchpoint"
    # The guest reached a state this engine cannot run (``access`` says which, ``address`` is the
    # PC); nothing there has executed. The machine stops with a fault report.
    UNSUPPORTED = "unsupported"
    # The two below are debugger stops (sdeilab.lab.session): the slice was cut short, not
    # ended, and the machine runs the rest of it later as if nothing had happened.
    BREAKPOINT = "breakpoint"  # PC reached a breakpoint (``address``); that instruction has not executed
    INTERRUPTED = "interrupted"  # ``interrupt`` was called: the slice stopped after the current instruction


@dataclass(frozen=True, slots=True)
class ExceptionRecord:
    """What the CPU model computed for the synchronous exception it is reporting (``VcpuHost.trap``).

    ``syndrome`` is the ESR_ELx value the architecture defines for it (ARM ARM D17.2.37: EC, IL,
    ISS), ``address`` the faulting virtual address an abort puts in FAR_ELx, ``target_el`` the
    Exception level the exception is taken to.
    """

    syndrome: int
    address: int
    target_el: int


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    """One vCPU's state between slices, as a value (``CpuBackend.snapshot``).

    ``context`` is the engine's own encoding of the architectural state (for Unicorn, the bytes
    of its CPU context: every register, the system registers, the exclusive monitor and the
    flags the CPU model caches from them); ``host`` is what the adapter keeps beside the engine
    (debug and illegal-return watches, the breakpoint it last stopped at, the vector table its
    compiled exception entry last saw checked). Two snapshots of
    equal state compare equal, whichever engine they were taken from.
    """

    context: bytes
    host: tuple[object, ...]


@dataclass(frozen=True, slots=True)
class SliceResult:
    executed: int
    stop: Stop
    access: str = ""  # for UNMAPPED: "read", "write" or "fetch"; "fetch" for DEVICE_FETCH; UNSUPPORTED: why
    address: int = 0  # for UNMAPPED and DEVICE_FETCH: the faulting address; for BREAKPOINT: the breakpoint


@dataclass(frozen=True, slots=True)
class SystemCounter:
    """How the system counter follows virtual time (ARM ARM D11.1.2): after ``n`` instructions of
    a slice that started at ``vtime`` ns, the registers ``keys`` (CNTPCT_EL0, CNTVCT_EL0) read
    ``(vtime + n * ns_per_instruction) // ns_per_count``. An engine may answer those reads itself
    instead of asking ``VcpuHost.sysreg_read``, provided it gives the same value; the host still
    gets a read made by the slice's last instruction, which may meet a timer's deadline."""

    keys: frozenset[SysregKey]
    ns_per_instruction: int
    ns_per_count: int


class VcpuHost(Protocol):
    """What the machine does for a vCPU during a slice. ``cpu`` is the vCPU's index."""

    def conduit(self, cpu: int, conduit: str, executed: int) -> None:
        """The guest executed HVC ("hvc") or SMC ("smc"); PC is already past the instruction.
        ``executed``: the instructions the slice has retired, the call included (the exit's time,
        as a KVM exit carries the vCPU's state: the host need not ask for it)."""
        ...

    def trap(self, cpu: int, trap: Trap, pc: int) -> None:
        """Any other exception the guest raised."""
        ...

    def sysreg_read(self, cpu: int, key: SysregKey) -> int | None:
        """The value an MRS of ``key`` reads, or None to let the CPU model answer."""
        ...

    def sysreg_write(self, cpu: int, key: SysregKey, value: int) -> bool:
        """True if the machine emulated this MSR; False to let the CPU model execute it."""
        ...

    def system_instruction(self, cpu: int, key: SysregKey, value: int) -> None:
        """A SYS instruction (DC, IC, TLBI, AT) is about to execute; the CPU model still executes it."""
        ...

    def exception_taken(self, cpu: int, trap: Trap, retired: int, vector: int, esr: int, elr: int, far: int) -> None:
        """The engine took a synchronous exception to EL1 itself (``CpuBackend.set_compiled_exceptions``),
        after ``retired`` instructions of the current slice: the entry is made (PC at ``vector``,
        ESR_EL1 ``esr``, ELR_EL1 ``elr``, FAR ``far`` for aborts, else 0); only its record is left.
        Reported, in order, before any other call of the same slice that follows it."""
        ...

    def watch_access(self, cpu: int, address: int, size: int, write: bool) -> bool:
        """A data access of ``size`` bytes at physical ``address``, in or next to a range given to
        ``set_watch_ranges``, is about to happen: True to stop it (``Stop.WATCHPOINT``)."""
        ...


class CpuBackend(Protocol):
    """One vCPU of an engine. Registers are read and written between slices or from callbacks."""

    index: int

    def run(self, budget: int, vtime: int = 0) -> SliceResult:
        """Run at most ``budget`` instructions from the current PC; ``vtime`` is the virtual time
        (ns) at the slice's start, from which an engine may answer reads of the system counter
        (``SystemCounter``) itself."""
        ...
    def executed(self) -> int:
        """Instructions retired so far in the current slice (valid inside callbacks)."""
        ...
    def request_stop(self) -> None: ...
    def interrupt(self) -> None:
        """Cut the slice after the current instruction for a debugger (``Stop.INTERRUPTED``).

        Unlike ``request_stop`` (the machine has something to do: the slice ends), the machine
        resumes the rest of the slice later. A ``request_stop`` in the same slice wins.
        """
        ...
    def set_breakpoints(self, addresses: frozenset[int]) -> None:
        """Stop (``Stop.BREAKPOINT``) before executing an instruction at any of ``addresses``.

        With none set no instruction pays for breakpoints. A slice that starts at the breakpoint
        it last stopped at executes that instruction (the breakpoint is skipped once).
        """
        ...
    def set_watch_ranges(self, ranges: Sequence[tuple[int, int, bool, bool]]) -> None:
        """Report data accesses to physical [begin, end) (loads if the third item is true, stores if
        the fourth) to ``VcpuHost.watch_access``; with no range no access pays for this."""
        ...

    def set_translation_watch(self, enabled: bool) -> None:
        """While ``enabled``, end the slice's current part (``Stop.INTERRUPTED``) after a write to a
        register that changes address translation (SCTLR_EL1, TCR_EL1, TTBR0_EL1, TTBR1_EL1), so
        the host can translate the virtual ranges it watches again; off, such writes cost nothing."""
        ...
    def set_compiled_exceptions(self, enabled: bool) -> None:
        """Let the engine take SVC, BRK and aborts to EL1 itself (``VcpuHost.exception_taken``) where
        it can, once ``vectors_checked`` vouched for the vector table; False: every one goes to
        ``VcpuHost.trap``."""
        ...
    def vectors_checked(self) -> None:
        """The host found a vector table at VBAR_EL1 under the current translation."""
        ...
    def sysreg(self, key: SysregKey) -> int:
        """A system register of the CPU model by encoding (between slices or from callbacks)."""
        ...
    def x(self, n: int) -> int: ...
    def set_x(self, n: int, value: int) -> None: ...
    def xs(self, count: int) -> list[int]: ...
    def call_registers(self) -> tuple[int, ...]:
        """X0..X17 then PC (index ``CALL_PC``) in one read: what a call through a conduit hands its
        handler (SMCCC 1.2: the function ID in W0, arguments in X1-X17, DEN0028 2.6 and 2.7)."""
        ...
    def set_xs(self, values: Sequence[int]) -> None:
        """x0 .. x(len(values)-1)."""
        ...
    def save_context(self, count: int) -> tuple[bytes, int, int]:
        """x0..x(count-1), PC and PSTATE in one read: what a firmware dispatcher saves before it
        enters a handler. The registers are ``count`` 64-bit words in the host's order
        (``memoryview(saved).cast("Q")`` reads them)."""
        ...
    def write_context(self, xs: Sequence[int], pc: int, pstate: int, current_pstate: int) -> None:
        """x0..x(len(xs)-1), PC and PSTATE at once (a handler's entry); PSTATE is written, as a mode
        change, only if it differs from ``current_pstate``, PSTATE as the caller just read it."""
        ...
    def restore_context(self, xs: bytes, pc: int, pstate: int) -> None:
        """Put back what ``save_context`` returned (PSTATE as a mode change, if it differs)."""
        ...
    @property
    def pc(self) -> int: ...
    @pc.setter
    def pc(self, value: int) -> None: ...
    @property
    def pstate(self) -> int:
        """PSTATE laid out as SPSR_EL1 (``read("PSTATE")``, cheaper: it is on the SDEI dispatch path).

        At AArch32 EL0 (after an ERET with SPSR.M = 0x10) it is the CPSR with M[4] = 1, as an
        exception entry saves it (ARM ARM D1.10.2), and ``pc`` is R15; ``x``, ``xs`` and
        ``save_context`` read X0-X30, which hold R0-R14 only once an exception entry (a PSTATE
        write to AArch64) has mapped them (ARM ARM D1.20). Only an ERET enters AArch32 state."""
        ...
    def read(self, name: str) -> int: ...
    def write(self, name: str, value: int) -> None:
        """Write a register by name. A PSTATE write is a change of mode as on hardware: the stack
        pointer follows PSTATE.EL and PSTATE.SP (SP_EL0 or SP_ELx, ARM ARM D1.6.2), and
        ``read("SP_EL0")`` or ``read("SP_EL1")`` of the selected one reads SP."""
        ...
    def snapshot(self) -> CpuSnapshot:
        """The CPU's whole state now (between slices): restoring it, any number of times and
        after anything ran meanwhile, puts this CPU back exactly here."""
        ...
    def restore(self, snapshot: CpuSnapshot) -> None:
        """Put back what ``snapshot`` returned. Translated code and cached address translations
        are dropped (RAM may have changed with it); breakpoints and watched ranges stay as set."""
        ...
    def reset(self, mpidr: int) -> None:
        """Architectural reset (Non-secure EL1h, DAIF masked, MMU off) with this MPIDR; a reset
        CPU's ``snapshot`` equals a new one's."""
        ...
    def exception_record(self) -> ExceptionRecord | None:
        """The syndrome of the exception being reported to ``VcpuHost.trap`` (valid inside that
        callback), or None where the engine cannot tell."""
        ...
    def translate(self, address: int, access: str = "read") -> int | None:
        """The physical address that ``address`` maps to for a ``"read"``, ``"write"`` or ``"fetch"``
        in the CPU's current translation regime (itself with the MMU off), or None if the access
        would fault."""
        ...
    def invalidate_code(self, begin: int | None = None, end: int | None = None) -> None:
        """Forget code translated from physical [begin, end) (all code without a range)."""
        ...
    def vector_state(self) -> bytes:
        """The FP/SIMD registers (V0..V31, FPCR, FPSR) as bytes, to compare two moments' state."""
        ...
    def decodes_undefined(self, word: int) -> bool:
        """Whether the CPU model treats the instruction ``word`` as UNDEFINED at EL1, whatever the
        registers and memory hold (for code fetched where the engine cannot execute it: a device)."""
        ...
