"""The SDEI dispatcher: the 19 calls of SDEI 1.0 + 1.1 and the delivery of events into handlers.

TF-A's dispatcher (services/std_svc/sdei) is the model and its behaviour the default wherever
DEN0054 leaves room; every divergence is a named switch in ``Quirks``. Every state change goes
through ``_transition`` (one table, ``table.TABLE``) and leaves an ``SdeiTransition`` fact.
PSCI and SDEI meet through PSCI's published power events, never by import of each other's state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

from sdeilab.firmware.psci import DENIED as PSCI_DENIED
from sdeilab.firmware.psci import PowerEvent, PowerFeed, Psci
from sdeilab.firmware.sdei.model import Dispatch, Event, Pe, Registration, Source
from sdeilab.firmware.sdei.quirks import Quirks
from sdeilab.firmware.sdei.table import (
    DENIED,
    INVALID_PARAMETERS,
    LABELS,
    OUT_OF_RESOURCE,
    SUCCESS,
    TABLE,
    Action,
    EventState,
)
from sdeilab.firmware.smccc import NO_RETURN, Function, Result, Service, SmcccDispatcher
from sdeilab.machine.machine import Machine
from sdeilab.machine.memmap import MPIDR_AFFINITY_MASK, NUM_SPIS, cpu_affinity, cpus_by_affinity
from sdeilab.machine.state import FieldState
from sdeilab.machine.vcpu import SDEI_SAVED_REGISTERS, Vcpu, VcpuState
from sdeilab.trace import SdeiBinding, SdeiComplete, SdeiDispatch, SdeiMask, SdeiTransition

VERSION_1_0 = 1 << 48  # [62:48] major, [47:32] minor, [31:0] vendor (DEN0054 5.1.1)
VERSION_1_1 = (1 << 48) | (1 << 32)
PRIORITY_CRITICAL = 0x60  # TF-A PLAT_SDEI_CRITICAL_PRI / NORMAL_PRI on Arm platforms and QEMU
PRIORITY_NORMAL = 0x70
PRIORITY_LOWEST = 0xF0  # what an interrupt goes back to at UNREGISTER (TF-A: lowest priority)
FLAG_RM_PE = 1 << 0
FLAG_RELATIVE = 1 << 1  # SDEI 1.1 relative handler address: not supported (FEATURES(1) refuses)
INFO_TYPE, INFO_SIGNALED, INFO_PRIORITY, INFO_ROUTING_MODE, INFO_ROUTING_AFF = range(5)
FEATURE_BIND_SLOTS = 0

SDEI_FUNCTIONS = (
    ("SDEI_VERSION", 0xC400_0020), ("SDEI_EVENT_REGISTER", 0xC400_0021), ("SDEI_EVENT_ENABLE", 0xC400_0022),
    ("SDEI_EVENT_DISABLE", 0xC400_0023), ("SDEI_EVENT_CONTEXT", 0xC400_0024), ("SDEI_EVENT_COMPLETE", 0xC400_0025),
    ("SDEI_EVENT_COMPLETE_AND_RESUME", 0xC400_0026), ("SDEI_EVENT_UNREGISTER", 0xC400_0027),
    ("SDEI_EVENT_STATUS", 0xC400_0028), ("SDEI_EVENT_GET_INFO", 0xC400_0029), ("SDEI_EVENT_ROUTING_SET", 0xC400_002A),
    ("SDEI_PE_MASK", 0xC400_002B), ("SDEI_PE_UNMASK", 0xC400_002C), ("SDEI_INTERRUPT_BIND", 0xC400_002D),
    ("SDEI_INTERRUPT_RELEASE", 0xC400_002E), ("SDEI_EVENT_SIGNAL", 0xC400_002F), ("SDEI_FEATURES", 0xC400_0030),
    ("SDEI_PRIVATE_RESET", 0xC400_0031), ("SDEI_SHARED_RESET", 0xC400_0032),
)
SDEI_RANGE = (0xC400_0020, 0x20)
_ACTION_NAMES = {action: action.value for action in Action}


@dataclass(frozen=True)
class SdeiPlatform:
    """What a profile declares: bind slots, host-raised events, and interrupts the guest may not bind."""

    private_slots: int = 4
    shared_slots: int = 4
    hypervisor_events: tuple[tuple[int, bool], ...] = ((5000, False), (5001, True))  # (number, critical)
    static_events: tuple[tuple[int, int, bool], ...] = ()  # (number, intid, critical)
    reserved_intids: frozenset[int] = frozenset({27})  # the virtual timer: the hypervisor's own
    first_private_event: int = 1000  # TF-A FVP numbering: dynamic private 1000.., shared 2000..
    first_shared_event: int = 2000


class Sdei(FieldState, Service):
    name = "sdei"
    # What a machine snapshot holds of the dispatcher (sdeilab.machine.state): the events' bindings,
    # every registration, each PE's mask, dispatch stack and pending events, the RM_ANY round-robin.
    # One deep copy of them all keeps a dispatch pointing at its own event and registration.
    STATE = ("events", "shared", "private", "leaked_counts", "pes", "_last_taker", "_routing_any")

    def __init__(self, machine: Machine, psci: Psci | PowerFeed, dispatcher: SmcccDispatcher,
                 platform: SdeiPlatform | None = None, quirks: Quirks | None = None) -> None:
        self.machine = machine
        self.platform = platform or SdeiPlatform()
        self.quirks = quirks or Quirks()
        cpus = len(machine.vcpus)
        self.events: dict[int, Event] = {0: Event(0, False, False, Source.SIGNAL)}
        for i in range(self.platform.private_slots):
            n = self.platform.first_private_event + i
            self.events[n] = Event(n, False, False, Source.DYNAMIC)
        for i in range(self.platform.shared_slots):
            n = self.platform.first_shared_event + i
            self.events[n] = Event(n, True, False, Source.DYNAMIC)
        for number, critical in self.platform.hypervisor_events:
            self.events[number] = Event(number, False, critical, Source.HYPERVISOR)
        for number, intid, critical in self.platform.static_events:
            self.events[number] = Event(number, intid >= 32, critical, Source.STATIC, intid)
        self.shared: dict[int, Registration] = {n: Registration() for n, e in self.events.items() if e.shared}
        self.private: list[dict[int, Registration]] = [
            {n: Registration() for n, e in self.events.items() if not e.shared} for _ in range(cpus)]
        self.leaked_counts: dict[int, int] = {}  # tfa_reg_count_leak: registrations CPU_ON forgot
        self.pes = [Pe() for _ in range(cpus)]
        # The PE an affinity names (TF-A's plat_core_pos_by_mpidr, the platform port's own table).
        self._aff_to_cpu = cpus_by_affinity(cpus)
        self._last_taker = -1  # RM_ANY round-robin
        self._routing_any = False  # some shared event is registered with RM_ANY
        psci.subscribe(PowerEvent.CPU_ON_FINISH, self._on_cpu_on)
        psci.subscribe(PowerEvent.WAKE, self._on_wake)
        psci.subscribe(PowerEvent.SYSTEM_RESET, lambda cpu: self.reset())
        psci.cpu_off_vetoes.append(self._veto_cpu_off)
        machine.slice_hooks.append(self._deliver)
        machine.wake_checks.append(self._has_deliverable)
        machine.power_listeners.append(lambda cpu, old, new, cause: self._route_any())
        machine.attach("sdei", self)

    # --- the function table ------------------------------------------------------------
    def functions(self) -> Iterable[Function]:
        handlers: dict[str, tuple[Callable[..., Result], int]] = {
            "SDEI_VERSION": (lambda vcpu: VERSION_1_1 if self.quirks.version_1_1 else VERSION_1_0, 0),
            "SDEI_EVENT_REGISTER": (self.register, 5),
            "SDEI_EVENT_ENABLE": (lambda vcpu, ev: self._simple(vcpu, ev, Action.ENABLE), 1),
            "SDEI_EVENT_DISABLE": (lambda vcpu, ev: self._simple(vcpu, ev, Action.DISABLE), 1),
            "SDEI_EVENT_CONTEXT": (self.context, 1),
            "SDEI_EVENT_COMPLETE": (partial(self.complete, Action.COMPLETE), 1),
            "SDEI_EVENT_COMPLETE_AND_RESUME": (partial(self.complete, Action.COMPLETE_AND_RESUME), 1),
            "SDEI_EVENT_UNREGISTER": (lambda vcpu, ev: self._simple(vcpu, ev, Action.UNREGISTER), 1),
            "SDEI_EVENT_STATUS": (self.status, 1),
            "SDEI_EVENT_GET_INFO": (self.get_info, 2),
            "SDEI_EVENT_ROUTING_SET": (self.routing_set, 3),
            "SDEI_PE_MASK": (lambda vcpu: self.set_mask(vcpu.index, True, "call"), 0),
            "SDEI_PE_UNMASK": (self.pe_unmask, 0),
            "SDEI_INTERRUPT_BIND": (self.bind, 1),
            "SDEI_INTERRUPT_RELEASE": (self.release, 1),
            "SDEI_EVENT_SIGNAL": (self.signal, 2),
            "SDEI_FEATURES": (self.features, 1),
            "SDEI_PRIVATE_RESET": (lambda vcpu: self.private_reset(vcpu.index), 0),
            "SDEI_SHARED_RESET": (lambda vcpu: self.shared_reset(vcpu.index), 0),
        }
        for name, fid in SDEI_FUNCTIONS:
            handler, nargs = handlers[name]
            # After any SDEI call (SIGNAL to self, UNMASK, ENABLE, COMPLETE...) a handler may be due now.
            yield Function(fid, name, handler, nargs, then=self._deliver)

    # --- state ---------------------------------------------------------------------------
    def registration(self, cpu: int, number: int) -> Registration:
        event = self.events[number]
        return self.shared[number] if event.shared else self.private[cpu][number]

    def _transition(self, cpu: int, event: Event, reg: Registration, action: Action,
                    kind: type[SdeiTransition] = SdeiTransition, details: tuple[object, ...] = (),
                    now: int | None = None) -> int:
        """The one place an event changes state: look the action up in the table, apply, record.

        A dispatch or a completion that the table allows is recorded as its own kind of
        transition (``SdeiDispatch``, ``SdeiComplete``) with ``details`` after the common fields;
        anything refused is a plain ``SdeiTransition``. ``now``: the virtual time, where the caller
        has it (a call's stamp).
        """
        old = reg.state
        cell = TABLE[old][action]
        new = cell.next
        if new is None:
            new = old
        else:
            reg.state = new
        result = cell.result
        if result:
            kind, details = SdeiTransition, ()
        machine = self.machine
        machine.trace.add(kind, cpu, machine.now() if now is None else now, event.number, _ACTION_NAMES[action],
                          LABELS[old], LABELS[new], result, *details)
        return result

    def _refuse(self, cpu: int, number: int, action: Action, result: int) -> int:
        """A call refused before the table (unknown event, bad parameters): still a fact."""
        self.machine.record(SdeiTransition, cpu, number, action.value, "-", "-", result)
        return result

    def _event(self, number: int) -> Event | None:
        return self.events.get(number & 0xFFFF_FFFF) if not number >> 31 else None

    def _reg_count(self, event: Event) -> int:
        if event.shared:
            return int(self.shared[event.number].state is not EventState.UNREGISTERED)
        live = sum(regs[event.number].state is not EventState.UNREGISTERED for regs in self.private)
        return live + self.leaked_counts.get(event.number, 0)

    # --- calls ---------------------------------------------------------------------------
    def register(self, vcpu: Vcpu, number: int, entry: int, argument: int, flags: int, affinity: int) -> Result:
        cpu = vcpu.index
        event = self._event(number)
        if event is None:
            return self._refuse(cpu, number, Action.REGISTER, INVALID_PARAMETERS)
        if not self.machine.is_valid_entry(entry, vcpu) or flags & ~(FLAG_RM_PE | FLAG_RELATIVE) \
                or flags & FLAG_RELATIVE:
            return self._refuse(cpu, number, Action.REGISTER, INVALID_PARAMETERS)
        if flags & FLAG_RM_PE and self._cpu_of(affinity) is None:  # private events too (TF-A validate_flags)
            return self._refuse(cpu, number, Action.REGISTER, INVALID_PARAMETERS)
        if event.source is Source.DYNAMIC and not event.bound:
            return self._refuse(cpu, number, Action.REGISTER, DENIED)  # nothing bound to this slot yet
        if event.intid is not None and self.machine.gic.is_active(event.intid, None if event.shared else cpu) \
                and not self.machine.gic.is_firmware_owned(event.intid, None if event.shared else cpu):
            return self._refuse(cpu, number, Action.REGISTER, DENIED)  # the guest is handling it right now
        reg = self.registration(cpu, number)
        result = self._transition(cpu, event, reg, Action.REGISTER)
        if result != SUCCESS:
            return result
        reg.entry, reg.argument = entry, argument
        if event.shared:
            reg.routing_pe = bool(flags & FLAG_RM_PE)
            reg.affinity = affinity & MPIDR_AFFINITY_MASK if reg.routing_pe else 0  # kept as TF-A keeps it
        else:  # private events ignore flags and affinity: RM_PE on the caller (TF-A)
            reg.routing_pe, reg.affinity = True, cpu_affinity(cpu)
        if event.intid is not None:
            self._take_interrupt(event, cpu)
        return SUCCESS

    def _simple(self, vcpu: Vcpu, number: int, action: Action) -> Result:
        """ENABLE, DISABLE and UNREGISTER: the table decides, the interrupt follows."""
        cpu = vcpu.index
        event = self._event(number)
        if event is None:
            return self._refuse(cpu, number, action, INVALID_PARAMETERS)
        reg = self.registration(cpu, number)
        was = reg.state
        result = self._transition(cpu, event, reg, action)
        if reg.state is was:
            return result
        if event.intid is not None and action is not Action.UNREGISTER:
            enabled = bool(reg.state & 0b010)
            self.machine.gic.set_enabled(event.intid, enabled, None if event.shared else cpu)
        if reg.state is EventState.UNREGISTERED:
            self._unregistered(event, reg, cpu)
        elif reg.state is EventState.UNREGISTER_PENDING and event.intid is not None:
            self.machine.gic.set_enabled(event.intid, False, None if event.shared else cpu)
        self._route_any()
        return result

    def _unregistered(self, event: Event, reg: Registration, cpu: int) -> None:
        """UNREGISTER took effect: the interrupt goes back to the guest, disabled (TF-A sdei_event_unregister)."""
        reg.clear()
        if event.shared:
            self._update_routing_any()
        if event.intid is not None:
            target = None if event.shared else cpu
            gic = self.machine.gic
            gic.set_enabled(event.intid, False, target)
            gic.set_pending(event.intid, False, target)
            gic.set_priority(event.intid, PRIORITY_LOWEST, target)
            gic.set_firmware_owned(event.intid, False, target)

    def _take_interrupt(self, event: Event, cpu: int) -> None:
        """REGISTER takes the bound interrupt over: firmware-owned (Group 0 to EL3), disabled until ENABLE."""
        assert event.intid is not None
        target = None if event.shared else cpu
        gic = self.machine.gic
        gic.set_firmware_owned(event.intid, True, target)
        gic.set_enabled(event.intid, False, target)
        gic.set_pending(event.intid, False, target)
        gic.set_priority(event.intid, PRIORITY_CRITICAL if event.critical else PRIORITY_NORMAL, target)
        if event.shared:
            self._route(event)

    def status(self, vcpu: Vcpu, number: int) -> Result:
        event = self._event(number)
        if event is None:
            return INVALID_PARAMETERS
        return int(self.registration(vcpu.index, number).state)

    def get_info(self, vcpu: Vcpu, number: int, info: int) -> Result:
        event = self._event(number)
        if event is None:
            return INVALID_PARAMETERS
        if info == INFO_TYPE:
            return int(event.shared)
        if info == INFO_SIGNALED:
            signalable = event.source is Source.SIGNAL
            # TF-A answers !signalable and calls the v1.0 text mistaken (SDEI_INFO_EV_NOT_SIGNALED).
            return int(signalable) if self.quirks.info_signaled_as_spec else int(not signalable)
        if info == INFO_PRIORITY:
            return int(event.critical)
        if info in (INFO_ROUTING_MODE, INFO_ROUTING_AFF):
            if not event.shared:
                return INVALID_PARAMETERS
            reg = self.shared[number]
            if not reg.state & EventState.REGISTERED:
                return DENIED  # unregistered or unregister-pending: TF-A tests the registered bit
            if info == INFO_ROUTING_MODE:
                return int(reg.routing_pe)
            return reg.affinity if reg.routing_pe else INVALID_PARAMETERS
        return INVALID_PARAMETERS

    def routing_set(self, vcpu: Vcpu, number: int, mode: int, affinity: int) -> Result:
        cpu = vcpu.index
        event = self._event(number)
        if event is None or not event.shared or not event.bound or mode & ~FLAG_RM_PE:
            return self._refuse(cpu, number, Action.ROUTING_SET, INVALID_PARAMETERS)
        if mode & FLAG_RM_PE and self._cpu_of(affinity) is None:
            return self._refuse(cpu, number, Action.ROUTING_SET, INVALID_PARAMETERS)
        reg = self.shared[number]
        result = self._transition(cpu, event, reg, Action.ROUTING_SET)
        if result == SUCCESS:
            reg.routing_pe = bool(mode & FLAG_RM_PE)
            reg.affinity = affinity & MPIDR_AFFINITY_MASK if reg.routing_pe else 0
            self._route(event)
        return result

    def bind(self, vcpu: Vcpu, intid: int) -> Result:
        cpu = vcpu.index
        intid &= 0xFFFF_FFFF
        if not 16 <= intid < 32 + NUM_SPIS:
            return INVALID_PARAMETERS  # SGIs, LPIs and special IDs cannot be bound (TF-A a7eff3477)
        for event in self.events.values():
            if event.intid == intid:
                if event.source is Source.STATIC:
                    return INVALID_PARAMETERS  # the platform's own binding
                return event.number  # already bound: the same event again (TF-A)
        if intid in self.platform.reserved_intids:
            return DENIED  # an interrupt the hypervisor keeps (the virtual timer) is not the guest's
        shared = intid >= 32
        for event in self.events.values():
            if event.source is Source.DYNAMIC and event.shared == shared and not event.bound:
                event.intid = intid
                self.machine.record(SdeiBinding, cpu, event.number, intid, True)
                return event.number
        return OUT_OF_RESOURCE

    def release(self, vcpu: Vcpu, number: int) -> int:
        cpu = vcpu.index
        event = self._event(number)
        if event is None or event.source is not Source.DYNAMIC or not event.bound:
            return self._refuse(cpu, number, Action.RELEASE, INVALID_PARAMETERS)
        assert event.intid is not None
        if self._reg_count(event) or self.machine.gic.is_active(event.intid, None if event.shared else cpu):
            return self._refuse(cpu, number, Action.RELEASE, DENIED)
        result = self._transition(cpu, event, self.registration(cpu, number), Action.RELEASE)
        if result == SUCCESS:
            self.machine.record(SdeiBinding, cpu, number, event.intid, False)
            event.intid = None
        return result

    def signal(self, vcpu: Vcpu, number: int, target_mpidr: int) -> Result:
        target = self._cpu_of(target_mpidr)
        if number != 0 or target is None:
            return INVALID_PARAMETERS
        pe = self.pes[target]
        if pe.masked or not self.private[target][0].state & 0b010:  # event 0 registered and enabled there
            return INVALID_PARAMETERS
        pe.pending.add(0)  # edge-like: at most one pending signal (DEN0054 5.1.16.1)
        if target != vcpu.index:
            self.machine.poke(target)  # the caller's own PE takes it on the way out of this call
        return SUCCESS

    def features(self, vcpu: Vcpu, feature: int) -> Result:
        if feature == FEATURE_BIND_SLOTS:
            return (self.platform.shared_slots << 16) | self.platform.private_slots
        return INVALID_PARAMETERS  # RELATIVE_MODE (1) is not supported, as in TF-A

    def set_mask(self, cpu: int, masked: bool, cause: str) -> int:
        """PE_MASK / PE_UNMASK; TF-A's PE_MASK returns 1 if this call masked an unmasked PE."""
        pe = self.pes[cpu]
        changed = pe.masked != masked
        pe.masked = masked
        if changed:
            self.machine.record(SdeiMask, cpu, masked, cause)
            self._route_any()
        return int(changed and masked)

    def pe_unmask(self, vcpu: Vcpu) -> Result:
        self.set_mask(vcpu.index, False, "call")
        return SUCCESS

    def private_reset(self, cpu: int) -> int:
        result: int = SUCCESS
        for number, reg in self.private[cpu].items():
            if reg.state is EventState.UNREGISTERED:
                continue
            if self._simple(self.machine.vcpus[cpu], number, Action.UNREGISTER) != SUCCESS:
                result = DENIED  # it was running: its unregistration is pending
        return result

    def shared_reset(self, cpu: int) -> int:
        vcpu = self.machine.vcpus[cpu]
        result: int = SUCCESS
        for number, reg in self.shared.items():
            if reg.state is not EventState.UNREGISTERED and self._simple(vcpu, number, Action.UNREGISTER) != SUCCESS:
                result = DENIED  # it was running: its unregistration is pending; the others still go (TF-A)
        if result != SUCCESS:
            return result
        for event in list(self.events.values()):
            if event.source is Source.DYNAMIC and event.bound:
                released = self.release(vcpu, event.number)
                if released != SUCCESS and result == SUCCESS:
                    result = released  # the first error is the answer; every other binding is still released
        return result

    # --- dispatch ------------------------------------------------------------------------
    def context(self, vcpu: Vcpu, index: int) -> Result:
        pe = self.pes[vcpu.index]
        if not pe.stack:
            return self._refuse(vcpu.index, -1, Action.CONTEXT, DENIED)
        top = pe.stack[-1]
        if index >= SDEI_SAVED_REGISTERS:
            return self._refuse(vcpu.index, top.event.number, Action.CONTEXT, INVALID_PARAMETERS)
        result = self._transition(vcpu.index, top.event, top.registration, Action.CONTEXT)
        return top.saved()[index] if result == SUCCESS else result

    def complete(self, action: Action, vcpu: Vcpu, argument: int) -> Result:
        """EVENT_COMPLETE (``argument``: the status, unused) or EVENT_COMPLETE_AND_RESUME (the resume
        address): end the top dispatch on this PE (DEN0054 5.1.5, 5.1.6). An event that waited for
        this handler is entered by ``_deliver``, once the call is done."""
        resume = argument if action is Action.COMPLETE_AND_RESUME else None
        cpu = vcpu.index
        stack = self.pes[cpu].stack
        if not stack:
            return self._refuse(cpu, -1, action, DENIED)
        top = stack[-1]
        if resume is not None and not self.machine.is_valid_entry(resume, vcpu):
            return self._refuse(cpu, top.event.number, action, DENIED)
        result = self._transition(cpu, top.event, top.registration, action, SdeiComplete,
                                  (top.pc if resume is None else resume,))
        if result != SUCCESS:
            return result
        stack.pop()
        if resume is None:
            vcpu.restore_context(top.saved_x, top.pc, top.pstate)
        else:
            # DEN0054 5.2.2 "Event Resume Context": as if a synchronous exception had been taken
            # to EL1 at ``resume`` from the interrupted context.
            vcpu.resume_context(top.saved_x, top.pc, top.pstate, resume)
        if top.intid is not None:
            self.machine.gic.firmware_complete(cpu, top.intid)
        if top.registration.state is EventState.UNREGISTERED:
            self._unregistered(top.event, top.registration, cpu)  # the pending unregistration lands
        if self._routing_any:
            self._route_any()
        return NO_RETURN

    def raise_event(self, number: int, cpu: int) -> None:
        """The host side raises a hypervisor-originated event for PE ``cpu`` (TF-A explicit dispatch)."""
        event = self.events.get(number)
        if event is None or event.source is not Source.HYPERVISOR:
            raise ValueError(f"event {number} is not a hypervisor-originated event of this platform")
        if not 0 <= cpu < len(self.pes):
            raise ValueError(f"there is no CPU {cpu} (this machine has CPUs 0 to {len(self.pes) - 1})")
        self.pes[cpu].pending.add(number)
        self.machine.poke(cpu)

    def _candidates(self, cpu: int, intid: int | None) -> list[tuple[Event, int | None, str]]:
        """Triggers waiting for this PE, critical first: (event, bound interrupt, source).

        ``intid`` is the firmware-owned interrupt pending for this PE (``gic.firmware_pending``).
        """
        found: list[tuple[Event, int | None, str]] = []
        if intid is not None:
            for event in self.events.values():
                if event.intid == intid:
                    found.append((event, intid, f"interrupt {intid}"))
        pending = self.pes[cpu].pending
        events = self.events
        for number in (sorted(pending) if len(pending) > 1 else pending):
            event = events[number]
            found.append((event, None, event.trigger))
        if len(found) > 1:
            found.sort(key=lambda item: not item[0].critical)
        return found

    def _dispatchable(self, cpu: int, event: Event) -> bool:
        """TF-A's dispatch conditions (reference 2.4): unmasked, enabled and idle, priority allows."""
        pe = self.pes[cpu]
        if pe.masked or pe.running(True) or (not event.critical and pe.stack):
            return False
        return self.registration(cpu, event.number).state is EventState.ENABLED

    def _has_deliverable(self, cpu: int) -> bool:
        intid = self.machine.gic.firmware_pending(cpu)
        return any(self._dispatchable(cpu, event) for event, _, _ in self._candidates(cpu, intid))

    def _deliver(self, vcpu: Vcpu, now: int | None = None) -> None:
        """At a slice boundary or after an SDEI call (``now``: the call's stamp): enter the most
        urgent event this PE can take now.

        It runs after every slice and every SDEI call, so the checks of ``_dispatchable`` are
        inlined here in the order that rejects the common cases first.
        """
        cpu = vcpu.index
        pe = self.pes[cpu]
        if pe.masked:
            return
        intid = self.machine.gic.firmware_pending(cpu)
        pending = pe.pending
        if intid is None and not pending:
            return
        stack = pe.stack
        if stack and stack[-1].event.critical and not pending:
            # A critical handler runs: nothing preempts it (a critical one is always on top, 2.4).
            # With signals pending the loop below still drops those of events disabled meanwhile.
            return
        for event, bound, source in self._candidates(cpu, intid):
            reg = self.shared[event.number] if event.shared else self.private[cpu][event.number]
            state = reg.state
            if bound is None and state is not EventState.ENABLED and state is not EventState.ENABLED_RUNNING:
                pending.discard(event.number)  # disabled or unregistered meanwhile: the trigger is lost
                continue
            if state is EventState.ENABLED and (not stack or (event.critical and not stack[-1].event.critical)):
                pending.discard(event.number)
                self._enter(vcpu, event, reg, bound, source, now)
                return

    def _enter(self, vcpu: Vcpu, event: Event, reg: Registration, intid: int | None, source: str,
               now: int | None) -> None:
        """Save the interrupted context and enter the handler (DEN0054 5.1.14, TF-A setup_ns_dispatch)."""
        cpu = vcpu.index
        # x0..x3 as 5.1.14 says; x4..x17 keep the interrupted values unless the quirk zeroes them.
        saved, pc, pstate = vcpu.enter_sdei_handler(event.number, reg.argument, reg.entry, self.quirks.zero_x4_x17)
        stack = self.pes[cpu].stack
        self._transition(cpu, event, reg, Action.DISPATCH, SdeiDispatch,
                         (event.critical, reg.entry, pc, pstate, len(stack) + 1, source), now)
        if intid is not None:
            self.machine.gic.firmware_acknowledge(cpu, intid)  # active until COMPLETE
        stack.append(Dispatch(event, reg, saved, pc, pstate, intid))
        if event.shared:
            self._last_taker = cpu
        if self._routing_any:
            self._route_any()

    # --- routing of shared events -------------------------------------------------------
    def _cpu_of(self, mpidr: int) -> int | None:
        """The PE an SDEI argument names: TF-A (plat_core_pos_by_mpidr) reads the affinity fields
        only, so bit 31, U, MT and the RES0 bits may hold anything, e.g. a PE's own MPIDR_EL1."""
        return self._aff_to_cpu.get(mpidr & MPIDR_AFFINITY_MASK)

    def _route(self, event: Event) -> None:
        reg = self.shared[event.number]
        self._update_routing_any()
        if event.intid is None:
            return
        if reg.routing_pe and reg.state is not EventState.UNREGISTERED:
            self.machine.gic.route_spi(event.intid, self._cpu_of(reg.affinity))
        else:
            self.machine.gic.route_spi(event.intid, self._any_target(event))

    def _update_routing_any(self) -> None:
        self._routing_any = any(not r.routing_pe and r.state is not EventState.UNREGISTERED
                                for r in self.shared.values())

    def _any_target(self, event: Event) -> int | None:
        """RM_ANY: the next PE, round-robin after the last taker, that could take it now."""
        count = len(self.pes)
        for step in range(1, count + 1):
            cpu = (self._last_taker + step) % count
            pe = self.pes[cpu]
            powered = self.machine.vcpus[cpu].state not in (VcpuState.OFF, VcpuState.ON_PENDING)
            if powered and not pe.masked and not pe.running(True) and (event.critical or not pe.stack):
                return cpu
        return None

    def _route_any(self) -> None:
        if not self._routing_any:
            return
        for number, reg in self.shared.items():
            event = self.events[number]
            if event.intid is not None and not reg.routing_pe and reg.state is not EventState.UNREGISTERED:
                target = self._any_target(event)
                if target is not None and target != self.machine.gic.routed_cpu(event.intid):
                    self.machine.gic.route_spi(event.intid, target)

    # --- PSCI power events --------------------------------------------------------------
    def _on_cpu_on(self, cpu: int) -> None:
        """psci_cpu_on_finish: the PE comes up masked with its private events reset (TF-A sdei_cpu_on_init)."""
        if self.quirks.cpu_on_keeps_pe_state:
            return
        for number, reg in self.private[cpu].items():
            if reg.state is not EventState.UNREGISTERED:
                if self.quirks.tfa_reg_count_leak:
                    self.leaked_counts[number] = self.leaked_counts.get(number, 0) + 1
                self.machine.record(SdeiTransition, cpu, number, "cpu-on-reset", reg.state.label, "unregistered", 0)
                self._unregistered(self.events[number], reg, cpu)
        self.pes[cpu].pending.clear()
        if not self.pes[cpu].masked:
            self.set_mask(cpu, True, "cpu-on")

    def _on_wake(self, cpu: int) -> None:
        """psci_suspend_pwrdown_finish: mask only; registrations survive (TF-A sdei_cpu_wakeup_init)."""
        if not self.pes[cpu].masked:
            self.set_mask(cpu, True, "wake")

    def _veto_cpu_off(self, cpu: int) -> int | None:
        if self.pes[cpu].stack and not self.quirks.cpu_off_while_running:
            return PSCI_DENIED
        return None

    def reset(self) -> None:
        """SYSTEM_RESET: back to the cold-boot state."""
        for cpu, pe in enumerate(self.pes):
            pe.stack.clear()
            pe.pending.clear()
            if not pe.masked:
                self.set_mask(cpu, True, "reset")
            for number, reg in self.private[cpu].items():
                if reg.state is not EventState.UNREGISTERED:
                    self._unregistered(self.events[number], reg, cpu)
        for number, reg in self.shared.items():
            if reg.state is not EventState.UNREGISTERED:
                self._unregistered(self.events[number], reg, 0)
        for event in self.events.values():
            if event.source is Source.DYNAMIC:
                event.intid = None
        self.leaked_counts.clear()
