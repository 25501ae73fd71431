"""Trace facts: immutable records stamped with (seq, cpu, vtime).

A fact says what happened, never what it means; intervals (a CPU's power state, a handler
running) are derived from facts by pure functions. ``vtime`` is virtual time in ns, counted
from the instructions retired (1 instruction = 1 ns unless the run sets an icount shift), so the
same guest gives the same facts byte for byte.

Each kind is a frozen, slotted dataclass. The log stores facts column-wise and builds these
objects only when asked (see ``TraceLog``), so recording stays cheap on the hypercall path.
Later layers (SDEI, the hypervisor model) add their kinds with ``@fact_kind``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar, TypeVar

FACT_KINDS: list[type[Fact]] = []
"""Every registered kind; a kind's index in this list is its compact code in the log."""


@dataclass(frozen=True, slots=True)
class Fact:
    """What every fact carries: its place in the log, the CPU it concerns (-1: the machine) and when."""

    seq: int
    cpu: int
    vtime: int

    CODE = -1
    FAMILY: ClassVar[tuple[int, ...]] = ()  # its own code and its sub-kinds' codes: what a query for it matches

    @classmethod
    def payload_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))[3:]

    def payload(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.payload_names()}


K = TypeVar("K", bound=type[Fact])


def fact_kind(cls: K) -> K:
    """Register a fact kind so the log can store it by code and rebuild it by name.

    A kind may extend another (``SdeiDispatch`` is an ``SdeiTransition`` with more to say): a
    query for the base kind then matches it too, as ``isinstance`` does.
    """
    cls.CODE = len(FACT_KINDS)
    cls.FAMILY = (cls.CODE,)
    for base in cls.__mro__[1:]:
        if base in FACT_KINDS:
            base.FAMILY = (*base.FAMILY, cls.CODE)
    FACT_KINDS.append(cls)
    return cls


@fact_kind
@dataclass(frozen=True, slots=True)
class SmcccCall(Fact):
    """A guest issued an SMCCC call (SMCCC v1.4 section 2): function ID in x0, arguments in x1..x17."""

    conduit: str  # "hvc" or "smc"
    fid: int
    name: str
    args: tuple[int, ...]


@fact_kind
@dataclass(frozen=True, slots=True)
class SmcccReturn(Fact):
    """The call returned to the guest with ``results`` in x0..x3; ``layer`` is who answered it."""

    fid: int
    name: str
    results: tuple[int, ...]
    layer: str


@fact_kind
@dataclass(frozen=True, slots=True)
class PowerTransition(Fact):
    """A vCPU changed power or run state (OFF, ON_PENDING, ON, STANDBY, SUSPENDED)."""

    old: str
    new: str
    cause: str


@fact_kind
@dataclass(frozen=True, slots=True)
class IrqAsserted(Fact):
    """An interrupt became pending for ``cpu`` (for an SPI: the CPU it is routed to)."""

    intid: int
    source: str


@fact_kind
@dataclass(frozen=True, slots=True)
class IrqAcknowledged(Fact):
    """The CPU read ICC_IAR{0,1}_EL1 and got ``intid`` (pending to active)."""

    intid: int
    group: int


@fact_kind
@dataclass(frozen=True, slots=True)
class IrqCompleted(Fact):
    """The CPU wrote ICC_EOIR{0,1}_EL1 (priority drop) or ICC_DIR_EL1 (deactivation) for ``intid``."""

    intid: int
    how: str  # "eoi" or "dir"


@fact_kind
@dataclass(frozen=True, slots=True)
class ExceptionTaken(Fact):
    """The lab performed an exception entry into the guest's EL1 vectors (ARM ARM D1.10)."""

    kind: str  # "sync", "irq", "fiq", "serror"
    reason: str
    vector: int
    esr: int
    elr: int
    far: int


@fact_kind
@dataclass(frozen=True, slots=True)
class GuestFault(Fact):
    """The guest faulted where it had no handler: the run stops (exit status 3)."""

    reason: str
    pc: int
    esr: int


@fact_kind
@dataclass(frozen=True, slots=True)
class MachineStopped(Fact):
    """The run ended: ``reason`` is one of the machine's stop reasons."""

    reason: str
    detail: str


@fact_kind
@dataclass(frozen=True, slots=True)
class SdeiTransition(Fact):
    """An SDEI event's state machine took (or refused) ``action`` on ``cpu``'s view of ``event``.

    States are DEN0054's: "unregistered", "registered", "enabled", "registered-running",
    "enabled-running", "unregister-pending". ``result`` is the SDEI return code (0, or the
    refusal: -3 DENIED, -5 PENDING, ...); a refused action leaves ``new == old``.
    A dispatch and a completion are transitions too, told by their own kinds below, which
    extend this one: a query for ``SdeiTransition`` finds every change of state.
    """

    event: int
    action: str
    old: str
    new: str
    result: int


@fact_kind
@dataclass(frozen=True, slots=True)
class SdeiDispatch(SdeiTransition):
    """The dispatcher entered ``event``'s handler on ``cpu`` (DEN0054 5.1.14 / TF-A sdei_intr_mgmt):
    the "dispatch" transition (``old`` enabled, ``new`` enabled-running), and what it interrupted."""

    critical: bool
    handler: int
    interrupted_pc: int
    interrupted_pstate: int
    depth: int  # 1: nothing was running; 2: a critical event pre-empted a normal handler
    source: str  # "interrupt 42", "signal", "hypervisor"


@fact_kind
@dataclass(frozen=True, slots=True)
class SdeiComplete(SdeiTransition):
    """The handler of ``event`` finished: the "complete" or "complete-and-resume" transition that
    succeeded (a refused one is a plain ``SdeiTransition``), and where execution went on."""

    resume_pc: int  # where execution continued: the interrupted PC, or the resume address

    @property
    def how(self) -> str:
        """"complete" or "complete-and-resume" (the action)."""
        return self.action


@fact_kind
@dataclass(frozen=True, slots=True)
class SdeiMask(Fact):
    """The PE's SDEI mask changed: ``cause`` is "call", "boot", "cpu-on", "wake" or "reset"."""

    masked: bool
    cause: str


@fact_kind
@dataclass(frozen=True, slots=True)
class SdeiBinding(Fact):
    """INTERRUPT_BIND tied ``intid`` to ``event`` (``bound``) or INTERRUPT_RELEASE undid it."""

    event: int
    intid: int
    bound: bool


@fact_kind
@dataclass(frozen=True, slots=True)
class LayerExit(Fact):
    """A call left the layer it trapped to for another: under KVM, ``KVM_EXIT_HYPERCALL`` to the VMM.

    Like the real exit it carries the function ID and the conduit flag (bit 0: SMC), not the
    immediate (reference section 6). The return to the guest is the call's SmcccReturn.
    """

    fid: int
    name: str
    source: str  # the layer the conduit trapped to ("kvm")
    target: str  # the layer that answers ("vmm")
    reason: str  # "KVM_EXIT_HYPERCALL"
    flags: int
