"""SDEI's event model: the platform's events, their registrations, and each PE's dispatch state."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from sdeilab.firmware.sdei.table import EventState


class Source(Enum):
    """What can trigger an event (TF-A's binding kinds, DEN0054 section 4)."""

    SIGNAL = "signal"  # event 0: EVENT_SIGNAL (TF-A raises a Secure SGI)
    DYNAMIC = "dynamic"  # bound at run time by INTERRUPT_BIND
    STATIC = "static"  # bound by the platform to a fixed interrupt
    HYPERVISOR = "hypervisor"  # raised by the host side, no interrupt (TF-A's explicit dispatch)


@dataclass
class Event:
    """One event number of the platform; ``intid`` is its bound interrupt, if any."""

    number: int
    shared: bool
    critical: bool
    source: Source
    intid: int | None = None
    trigger: str = field(init=False)  # ``source.value``, read on the dispatch path (an Enum property is slow)

    def __post_init__(self) -> None:
        self.trigger = self.source.value

    @property
    def bound(self) -> bool:
        return self.intid is not None


@dataclass
class Registration:
    """An event's registration: one per shared event, one per PE for a private event."""

    state: EventState = EventState.UNREGISTERED
    entry: int = 0
    argument: int = 0
    routing_pe: bool = True  # RM_PE (flags bit 0 = 1) or RM_ANY
    affinity: int = 0

    def clear(self) -> None:
        self.state = EventState.UNREGISTERED
        self.entry = self.argument = self.affinity = 0
        self.routing_pe = True


@dataclass(slots=True)
class Dispatch:
    """An outstanding dispatch on a PE: what COMPLETE restores (DEN0054 5.1.14, TF-A save_event_ctx)."""

    event: Event
    registration: Registration
    saved_x: bytes  # x0..x17 of the interrupted context (``CpuBackend.save_context``)
    pc: int
    pstate: int
    intid: int | None  # the bound interrupt, active until COMPLETE

    def saved(self) -> tuple[int, ...]:
        """x0..x17 as they were when the handler was entered."""
        return tuple(memoryview(self.saved_x).cast("Q"))


@dataclass
class Pe:
    """Per-PE SDEI state: the mask, the dispatch stack (normal, then at most one critical on top)."""

    masked: bool = True  # every PE comes out of reset masked (DEN0054 5.1.10)
    stack: list[Dispatch] = field(default_factory=list)
    pending: set[int] = field(default_factory=set)  # signalled / hypervisor-raised events waiting here

    def running(self, critical: bool) -> bool:
        # The stack is a normal dispatch, a critical one, or a critical one over a normal one (DEN0054
        # 5.1.14): a critical handler can only be on top, a normal one only at the bottom.
        stack = self.stack
        if not stack:
            return False
        return stack[-1].event.critical if critical else not stack[0].event.critical
