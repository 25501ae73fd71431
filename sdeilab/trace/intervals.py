"""Intervals derived from facts by pure functions: power states, SDEI masking, handlers.

Nothing here reads machine state: a saved trace gives the same intervals as a live one. An
interval still open at the end of the trace has ``end = None``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sdeilab.trace.log import TraceLog
from sdeilab.trace.records import PowerTransition, SdeiComplete, SdeiDispatch, SdeiMask


@dataclass(frozen=True, slots=True)
class Interval:
    cpu: int
    start: int
    end: int | None
    label: str  # the power state; "masked"; or the event number for handlers

    def covers(self, vtime: int) -> bool:
        return self.start <= vtime and (self.end is None or vtime < self.end)


@dataclass(frozen=True, slots=True)
class HandlerInterval(Interval):
    event: int = 0
    critical: bool = False
    depth: int = 1
    interrupted_pc: int = 0
    how: str = ""  # "complete", "complete-and-resume", or "" while still running


def power_intervals(log: TraceLog) -> list[Interval]:
    """Each CPU's power/run state (off, on-pending, on, standby, powerdown) over time."""
    open_state: dict[int, tuple[str, int]] = {}
    out: list[Interval] = []
    for fact in log.of_kind(PowerTransition):
        assert isinstance(fact, PowerTransition)
        if fact.cpu in open_state:
            state, since = open_state[fact.cpu]
            out.append(Interval(fact.cpu, since, fact.vtime, state))
        open_state[fact.cpu] = (fact.new, fact.vtime)
    out.extend(Interval(cpu, since, None, state) for cpu, (state, since) in open_state.items())
    return sorted(out, key=lambda i: (i.cpu, i.start))


def masked_intervals(log: TraceLog) -> list[Interval]:
    """When each PE had SDEI events masked, while it was powered.

    A PE comes out of reset masked (DEN0054 5.1.10): every power-on (boot, CPU_ON) opens a masked
    interval, PE_UNMASK closes it, PE_MASK (or a CPU_ON/wake mask) opens another; powering off
    closes whatever is open.
    """
    out: list[Interval] = []
    since: dict[int, int] = {}
    for fact in log.of_kind(PowerTransition, SdeiMask):
        cpu = fact.cpu
        if isinstance(fact, PowerTransition):
            if fact.new == "on" and fact.old in ("off", "on-pending"):  # boot or CPU_ON: reset state
                since.setdefault(cpu, fact.vtime)
            elif fact.new == "off" and cpu in since:
                out.append(Interval(cpu, since.pop(cpu), fact.vtime, "masked"))
        elif isinstance(fact, SdeiMask):
            if fact.masked:
                since.setdefault(cpu, fact.vtime)
            elif cpu in since:
                out.append(Interval(cpu, since.pop(cpu), fact.vtime, "masked"))
    out.extend(Interval(cpu, start, None, "masked") for cpu, start in since.items())
    return sorted(out, key=lambda i: (i.cpu, i.start))


def handler_intervals(log: TraceLog) -> list[HandlerInterval]:
    """Every SDEI handler run: from dispatch to its COMPLETE, nested ones (critical over normal) included."""
    stacks: dict[int, list[SdeiDispatch]] = {}
    out: list[HandlerInterval] = []
    for fact in log.of_kind(SdeiDispatch, SdeiComplete):
        if isinstance(fact, SdeiDispatch):
            stacks.setdefault(fact.cpu, []).append(fact)
        elif isinstance(fact, SdeiComplete) and stacks.get(fact.cpu):
            start = stacks[fact.cpu].pop()
            out.append(_handler(start, fact.vtime, fact.how))
    for pending in stacks.values():
        out.extend(_handler(start, None, "") for start in pending)
    return sorted(out, key=lambda i: (i.cpu, i.start, i.depth))


def _handler(start: SdeiDispatch, end: int | None, how: str) -> HandlerInterval:
    return HandlerInterval(start.cpu, start.vtime, end, str(start.event), start.event, start.critical, start.depth,
                           start.interrupted_pc, how)
