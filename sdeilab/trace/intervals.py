"""Intervals derived from facts by pure functions: power states, SDEI masking, handlers.

Nothing here reads machine state: a saved trace gives the same intervals as a live one. An
interval still open at the end of the trace has ``end = None``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sdeilab.trace.log import TraceLog
from sdeilab.trace.records import (
    IrqAcknowledged,
    IrqCompleted,
    PowerTransition,
    SdeiComplete,
    SdeiDispatch,
    SdeiMask,
    SmcccCall,
    SmcccReturn,
)
from sdeilab.trace.vocabulary import PowerCause, PowerState


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


def power_marks(transitions: Iterable[PowerTransition]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(cpu, vtime) of each PSCI CPU_ON that started a PE that was off, and of each CPU_OFF: the
    marks a timeline draws on the lanes."""
    on, off = [], []
    for f in transitions:
        if f.cause == PowerCause.CPU_ON and f.old == PowerState.OFF:
            on.append((f.cpu, f.vtime))
        elif f.cause == PowerCause.CPU_OFF and f.new == PowerState.OFF:
            off.append((f.cpu, f.vtime))
    return on, off


def masked_intervals(log: TraceLog) -> list[Interval]:
    """When each PE had SDEI events masked, while it was powered.

    A PE comes out of reset masked (DEN0054 5.1.10); after that only SdeiMask facts change its
    mask, and powering off does not: where SDEI sees PSCI, CPU_ON re-masks with a fact of its
    own (cause "cpu-on"), and where it does not (SDEI in the VMM, PSCI in the kernel) the PE
    keeps the mask of its previous life, which is exactly what the timeline must show.
    """
    out: list[Interval] = []
    since: dict[int, int] = {}
    masked: dict[int, bool] = {}
    powered: set[int] = set()
    for fact in log.of_kind(PowerTransition, SdeiMask):
        cpu = fact.cpu
        if isinstance(fact, PowerTransition):
            if fact.new == PowerState.ON and fact.old in (PowerState.OFF, PowerState.ON_PENDING):  # boot or CPU_ON
                powered.add(cpu)
                if masked.get(cpu, True):
                    since.setdefault(cpu, fact.vtime)
            elif fact.new == PowerState.OFF:
                powered.discard(cpu)
                if cpu in since:
                    out.append(Interval(cpu, since.pop(cpu), fact.vtime, "masked"))
        elif isinstance(fact, SdeiMask):
            masked[cpu] = fact.masked
            if fact.masked and cpu in powered:
                since.setdefault(cpu, fact.vtime)
            elif not fact.masked and cpu in since:
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


@dataclass(frozen=True, slots=True)
class IrqInterval(Interval):
    intid: int = 0
    group: int = 1  # 0: acknowledged by the firmware (an interrupt bound to an SDEI event)
    depth: int = 1  # 2 and more: taken while another interrupt of this CPU was active


def irq_intervals(log: TraceLog) -> list[IrqInterval]:
    """Each interrupt a CPU handled: from acknowledge to its first completion.

    Acknowledge is the ICC_IAR read that makes it active. The first IrqCompleted is the
    ICC_EOIR write, the priority drop that ends the handling; with ICC_CTLR_EL1.EOImode set
    (GICv3, IHI 0069) a later ICC_DIR write only deactivates, so it closes nothing here. An
    interrupt bound to an SDEI event is acknowledged by the dispatcher at dispatch and completed
    at COMPLETE, so its interval is the handler's.
    """
    open_irqs: dict[int, dict[int, IrqAcknowledged]] = {}
    out: list[IrqInterval] = []
    for fact in log.of_kind(IrqAcknowledged, IrqCompleted):
        active = open_irqs.setdefault(fact.cpu, {})
        if isinstance(fact, IrqAcknowledged):
            active[fact.intid] = fact
        elif isinstance(fact, IrqCompleted) and fact.intid in active:
            depth = len(active)
            ack = active.pop(fact.intid)
            out.append(IrqInterval(ack.cpu, ack.vtime, fact.vtime, f"IRQ {ack.intid}", ack.intid, ack.group, depth))
    for active in open_irqs.values():
        for depth, ack in enumerate(active.values(), 1):
            out.append(IrqInterval(ack.cpu, ack.vtime, None, f"IRQ {ack.intid}", ack.intid, ack.group, depth))
    return sorted(out, key=lambda i: (i.cpu, i.start, i.depth))


@dataclass(frozen=True, slots=True)
class CallInterval(Interval):
    fid: int = 0
    conduit: str = ""  # "hvc" or "smc"
    layer: str = ""  # who answered ("kvm", "vmm", "el3"); "" when the call never returned
    returned: bool = False
    args: tuple[int, ...] = ()
    results: tuple[int, ...] = ()


def firmware_calls(log: TraceLog) -> list[CallInterval]:
    """Every SMCCC call, its results, and the layer that answered it (SmcccReturn.layer).

    A call takes no virtual time (its return carries the same stamp), so ``end == start``. Some
    calls never return to their caller: CPU_OFF, SYSTEM_OFF, and SDEI_EVENT_COMPLETE(_AND_RESUME),
    which resumes the interrupted context instead (DEN0054C 5.2.2, reference 2.6); they are the calls a CPU's
    next call finds still open, and have ``returned = False``. ``label`` is the function's name.
    """
    pending: dict[int, SmcccCall] = {}
    out: list[CallInterval] = []
    for fact in log.of_kind(SmcccCall, SmcccReturn):
        if isinstance(fact, SmcccCall):
            if fact.cpu in pending:
                out.append(_call(pending.pop(fact.cpu), None))
            pending[fact.cpu] = fact
        elif isinstance(fact, SmcccReturn):
            call = pending.get(fact.cpu)
            if call is not None and call.fid == fact.fid:
                out.append(_call(pending.pop(fact.cpu), fact))
    out.extend(_call(call, None) for call in pending.values())
    return sorted(out, key=lambda i: (i.cpu, i.start))


def _call(call: SmcccCall, ret: SmcccReturn | None) -> CallInterval:
    if ret is None:
        return CallInterval(call.cpu, call.vtime, call.vtime, call.name, call.fid, call.conduit, "", False, call.args)
    return CallInterval(call.cpu, call.vtime, ret.vtime, call.name, call.fid, call.conduit, ret.layer, True, call.args,
                        ret.results)
