"""The SDEI event state machine as one table (DEN0054A section 6.1, as TF-A's sdei_state.c has it).

An event's state is three bits, exactly EVENT_STATUS's encoding: registered (bit 0), enabled
(bit 1), running (bit 2). Each row is a state, each column an action (every call that changes
or depends on an event's state, plus the dispatcher's own DISPATCH). A cell is either the next
state with the call's result, or a refusal with the code to return. ``transition`` is the only
way an event changes state, and the state-machine view draws this very table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum

from sdeilab.firmware.smccc import NOT_SUPPORTED, SUCCESS


class SdeiResult(IntEnum):
    """SDEI's return codes (DEN0054 table 5.2; Linux include/uapi/linux/arm_sdei.h); SUCCESS and
    NOT_SUPPORTED are SMCCC's."""

    SUCCESS = int(SUCCESS)
    NOT_SUPPORTED = int(NOT_SUPPORTED)
    INVALID_PARAMETERS = -2
    DENIED = -3
    PENDING = -5
    OUT_OF_RESOURCE = -10


# Plain ints for the handlers to return: results reach the facts (TraceLog.add).
INVALID_PARAMETERS = int(SdeiResult.INVALID_PARAMETERS)
DENIED = int(SdeiResult.DENIED)
PENDING = int(SdeiResult.PENDING)
OUT_OF_RESOURCE = int(SdeiResult.OUT_OF_RESOURCE)


class EventState(IntEnum):
    """DEN0054 section 6.1's handler states, valued as EVENT_STATUS reports them."""

    UNREGISTERED = 0b000
    REGISTERED = 0b001
    ENABLED = 0b011
    REGISTERED_RUNNING = 0b101
    ENABLED_RUNNING = 0b111
    UNREGISTER_PENDING = 0b100

    # Equal to its int, so hashed as that int, in C: Enum's own __hash__ is a Python call, and
    # states are dictionary keys on every SDEI call.
    __hash__ = int.__hash__

    @property
    def label(self) -> str:
        return LABELS[self]

    @property
    def running(self) -> bool:
        return bool(self & 0b100)


class Action(Enum):
    REGISTER = "register"
    RELEASE = "release"
    ENABLE = "enable"
    DISABLE = "disable"
    UNREGISTER = "unregister"
    ROUTING_SET = "routing-set"
    CONTEXT = "context"
    COMPLETE = "complete"
    COMPLETE_AND_RESUME = "complete-and-resume"
    DISPATCH = "dispatch"

    __hash__ = object.__hash__  # members compare by identity: hash them so, in C (see EventState)


@dataclass(frozen=True)
class Cell:
    """What an action does in a state: ``next`` is None for a refusal."""

    next: EventState | None
    result: int = SUCCESS

    @property
    def allowed(self) -> bool:
        return self.next is not None


S = EventState
A = Action
_NO = Cell(None, DENIED)


def _same(state: EventState) -> Cell:
    return Cell(state)


# Footnotes, as in TF-A:
# [1] UNREGISTER of a running handler succeeds but returns PENDING; the unregistration completes
#     at COMPLETE (state unregister-pending). A second UNREGISTER while pending returns PENDING.
# [2] CONTEXT, COMPLETE and COMPLETE_AND_RESUME also need an outstanding dispatch of this event
#     on the calling PE; the service checks that before consulting the table.
# [3] REGISTER, RELEASE and ROUTING_SET have extra conditions (binding, slots, routing flags)
#     checked by the service first, answered with INVALID_PARAMETERS or DENIED.
# [4] DISPATCH is the dispatcher's action: only an enabled, idle event can be dispatched.
TABLE: dict[EventState, dict[Action, Cell]] = {
    S.UNREGISTERED: {
        A.REGISTER: Cell(S.REGISTERED), A.RELEASE: _same(S.UNREGISTERED), A.ENABLE: _NO, A.DISABLE: _NO,
        A.UNREGISTER: _NO, A.ROUTING_SET: _NO, A.CONTEXT: _NO, A.COMPLETE: _NO, A.COMPLETE_AND_RESUME: _NO,
        A.DISPATCH: _NO,
    },
    S.UNREGISTER_PENDING: {
        A.REGISTER: _NO, A.RELEASE: _NO, A.ENABLE: _NO, A.DISABLE: _NO,
        A.UNREGISTER: Cell(None, PENDING),  # [1]
        A.ROUTING_SET: _NO, A.CONTEXT: _same(S.UNREGISTER_PENDING),
        A.COMPLETE: Cell(S.UNREGISTERED), A.COMPLETE_AND_RESUME: Cell(S.UNREGISTERED), A.DISPATCH: _NO,
    },
    S.REGISTERED: {
        A.REGISTER: _NO, A.RELEASE: _NO, A.ENABLE: Cell(S.ENABLED), A.DISABLE: _same(S.REGISTERED),
        A.UNREGISTER: Cell(S.UNREGISTERED), A.ROUTING_SET: _same(S.REGISTERED), A.CONTEXT: _NO,
        A.COMPLETE: _NO, A.COMPLETE_AND_RESUME: _NO, A.DISPATCH: _NO,
    },
    S.REGISTERED_RUNNING: {
        A.REGISTER: _NO, A.RELEASE: _NO, A.ENABLE: Cell(S.ENABLED_RUNNING),
        A.DISABLE: _same(S.REGISTERED_RUNNING),
        A.UNREGISTER: Cell(S.UNREGISTER_PENDING, PENDING),  # [1]
        A.ROUTING_SET: _NO, A.CONTEXT: _same(S.REGISTERED_RUNNING),
        A.COMPLETE: Cell(S.REGISTERED), A.COMPLETE_AND_RESUME: Cell(S.REGISTERED), A.DISPATCH: _NO,
    },
    S.ENABLED: {
        A.REGISTER: _NO, A.RELEASE: _NO, A.ENABLE: _same(S.ENABLED), A.DISABLE: Cell(S.REGISTERED),
        A.UNREGISTER: Cell(S.UNREGISTERED), A.ROUTING_SET: _NO, A.CONTEXT: _NO, A.COMPLETE: _NO,
        A.COMPLETE_AND_RESUME: _NO, A.DISPATCH: Cell(S.ENABLED_RUNNING),  # [4]
    },
    S.ENABLED_RUNNING: {
        A.REGISTER: _NO, A.RELEASE: _NO, A.ENABLE: _same(S.ENABLED_RUNNING),
        A.DISABLE: Cell(S.REGISTERED_RUNNING),
        A.UNREGISTER: Cell(S.UNREGISTER_PENDING, PENDING),  # [1]
        A.ROUTING_SET: _NO, A.CONTEXT: _same(S.ENABLED_RUNNING),
        A.COMPLETE: Cell(S.ENABLED), A.COMPLETE_AND_RESUME: Cell(S.ENABLED), A.DISPATCH: _NO,
    },
}


LABELS: dict[EventState, str] = {state: state.name.lower().replace("_", "-") for state in EventState}


def lookup(state: EventState, action: Action) -> Cell:
    return TABLE[state][action]
