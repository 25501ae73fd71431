"""Random SDEI and PSCI call sequences on four CPUs, checked against DEN0054's rules.

The model below is written from ../shared/reference/sdei-psci-smccc.md sections 2 and 3 and
docs/sdei.md, not from sdeilab/firmware/sdei: it has its own copy of the state table, its own
idea of what may be dispatched, when, and what every call answers.

The guest's CPUs and its SDEI handlers are one-instruction loops that change no register, so
the test plays every CPU's calls itself: it sets the caller's x0..x5 and enters the SMCCC
dispatcher on that vCPU between time slices, as tests/test_psci_properties.py does. A CPU whose
PE has an outstanding dispatch is "inside a handler" and its calls are the handler's calls.

Where dispatch happens (docs/sdei.md "Dispatch"): a trigger is taken at the next point the
firmware runs on its PE, which is the way out of an SDEI call made by that PE (SIGNAL to
itself, PE_UNMASK, ENABLE, COMPLETE, ...) or the PE's next time-slice boundary. So after every
SDEI call the model requires that nothing the caller could take is still waiting, and a
``settle`` run (every powered CPU passes slice boundaries) requires the same of every PE.

Three checkers watch every step:

- the model: every call's answer and register effects, every dispatch (PE unmasked, event
  enabled and idle, something triggered it, nesting at most a critical over a normal, critical
  before normal, handler entry state), liveness at call exits and after ``settle``, PSCI x SDEI
  (CPU_ON masks and resets private events, wake from power-down masks, CPU_OFF in a handler is
  DENIED);
- an audit of the trace facts alone (SdeiTransition, SdeiDispatch, SdeiComplete, SdeiMask):
  every transition is a cell of the table, no dispatch to a masked PE or of an event that was
  not enabled, nesting, every dispatch completed or still on its PE's stack;
- STATUS, the mask, the dispatch stacks and the bindings read back after every step.

Any Python exception out of the firmware during a call or a run is reported as such.

Run time. One platform serves the whole module: building one costs 100-200 ms here (four
Unicorn engines, each scanning /proc/self/maps, whose length grows with every platform not yet
collected), which is what made a failing run of the first draft take minutes. ``Harness.reset``
puts it back to the state of a fresh one before every example with ``Machine.reset`` (about
2 ms), and test_reset_gives_a_fresh_platform checks that claim. Hypothesis's "explain" phase is off: after
a failure it replays the shrunk case hundreds of times to mark which draws do not matter,
which took 150 s here; the shrunk case itself is printed all the same. Examples are derandomized
so that CI runs the same sequences every time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from sdeilab.lab.platform import make_platform
from sdeilab.machine.memmap import cpu_affinity
from sdeilab.machine.outcome import StopReason
from sdeilab.machine.vcpu import VcpuState
from sdeilab.toolchain import build_source_text
from sdeilab.trace import (
    Fact,
    GuestFault,
    PowerTransition,
    SdeiBinding,
    SdeiComplete,
    SdeiDispatch,
    SdeiMask,
    SdeiTransition,
    SmcccCall,
    SmcccReturn,
)

CPUS = 4
QUANTUM = 500  # short rounds: a settle of three rounds is 6,000 instructions
SETTLE = 3 * CPUS * QUANTUM  # every powered CPU passes at least two slice boundaries
MASK64 = (1 << 64) - 1
NZCV, DAIF, EL1H = 0xF000_0000, 0x3C0, 0x5
RESET_PSTATE = DAIF | EL1H  # a CPU starts at EL1h with DAIF masked (DESIGN.md section 2)

GUEST = """
    .global main, sdeiprop_spin, sdeiprop_handler, sdeiprop_handler_alt, sdeiprop_resume
main:
    b sdeiprop_spin
sdeiprop_spin:
1:  b 1b
sdeiprop_handler:
2:  b 2b
sdeiprop_handler_alt:
3:  b 3b
sdeiprop_resume:
4:  b 4b
"""

SDEI_NAMES = ("VERSION", "REGISTER", "ENABLE", "DISABLE", "CONTEXT", "COMPLETE", "COMPLETE_AND_RESUME",
              "UNREGISTER", "STATUS", "GET_INFO", "ROUTING_SET", "PE_MASK", "PE_UNMASK", "BIND", "RELEASE",
              "SIGNAL", "FEATURES", "PRIVATE_RESET", "SHARED_RESET")
FID = {name: 0xC400_0020 + i for i, name in enumerate(SDEI_NAMES)}  # reference table 1.1
FID.update(CPU_SUSPEND=0xC400_0001, CPU_OFF=0x8400_0002, CPU_ON=0xC400_0003, AFFINITY_INFO=0xC400_0004)
PSCI_CALLS = frozenset({"CPU_SUSPEND", "CPU_OFF", "CPU_ON", "AFFINITY_INFO"})

OK, INVALID, DENIED, PENDING = 0, -2, -3, -5  # reference 1.2
PSCI_INVALID, PSCI_DENIED, PSCI_ALREADY_ON, PSCI_ON_PENDING = -2, -3, -4, -5  # reference 1.4
AFFINITY = {"on": 0, "powerdown": 0, "off": 1, "on-pending": 2}  # AFFINITY_INFO: a suspended PE is ON
POWERDOWN = 1 << 16  # CPU_SUSPEND power_state, original format: StateType = power-down, level 0

# The platform (docs/sdei.md "The virt profile's events"): event 0, dynamic private slots
# 1000-1003 and shared slots 2000-2003 (TF-A FVP numbering), hypervisor-raised 5000 (normal)
# and 5001 (critical).
PPI, SPI = 30, 42  # the EL1 physical timer PPI and the SP804's SPI
P, S = 1000, 2000  # what BIND gives for them: the first free private / shared slot
HYP, HYP_CRIT = 5000, 5001
PRIVATE_EVENTS = (0, 1000, 1001, 1002, 1003, HYP, HYP_CRIT)
SHARED_EVENTS = (2000, 2001, 2002, 2003)
DYNAMIC = frozenset((*range(1000, 1004), *range(2000, 2004)))
CRITICAL = frozenset({HYP_CRIT})
INTID_OF = {P: PPI, S: SPI}
SOURCE_OF = {0: "signal", HYP: "hypervisor", HYP_CRIT: "hypervisor", P: f"interrupt {PPI}", S: f"interrupt {SPI}"}
LIVE_EVENTS = (0, P, S, HYP, HYP_CRIT)
# Weighted towards the events that can fire; the last two are not events at all.
EVENTS = (*LIVE_EVENTS, *LIVE_EVENTS, 1001, 2001, 3000, 0x8000_0000)
BAD_MPIDRS = (0x100, 0x1_0000, 1 << 32, 0x10)  # Aff1 = 1, Aff2 = 1, Aff3 = 1, Aff0 = 16: no such PE here
# Bits of an MPIDR argument that are not affinity (RES1 bit 31, U, MT, RES0 [29:25] and [63:40]):
# TF-A finds the PE from Aff3..Aff0 alone (plat_core_pos_by_mpidr), so none of them changes the answer.
MPIDR_NOISE = (0, 0, 0, 1 << 31, 1 << 30, 1 << 24, 0x3E00_0000, 1 << 40, 0xFF << 56, 0xFFFF_FF00_FF00_0000)
AFFINITY_FIELDS = 0xFF_00FF_FFFF  # Aff3 [39:32], Aff2 [23:16], Aff1 [15:8], Aff0 [7:0] (ARM ARM, MPIDR_EL1)


def named_pe(mpidr: int) -> int | None:
    """The PE an SDEI MPIDR argument names on this 4-CPU board, as TF-A reads it."""
    affinity = mpidr & AFFINITY_FIELDS
    return next((cpu for cpu in range(CPUS) if cpu_affinity(cpu) == affinity), None)

# The state table (reference 2.2), written out independently of sdeilab.firmware.sdei.table:
# state -> action -> (result, next state). Anything not listed is refused with DENIED.
TABLE: dict[int, dict[str, tuple[int, int]]] = {
    0: {"register": (OK, 1), "release": (OK, 0)},
    1: {"enable": (OK, 3), "disable": (OK, 1), "unregister": (OK, 0), "routing-set": (OK, 1)},
    3: {"enable": (OK, 3), "disable": (OK, 1), "unregister": (OK, 0), "dispatch": (OK, 7)},
    5: {"enable": (OK, 7), "disable": (OK, 5), "unregister": (PENDING, 4),
        "context": (OK, 5), "complete": (OK, 1), "complete-and-resume": (OK, 1)},
    7: {"enable": (OK, 7), "disable": (OK, 5), "unregister": (PENDING, 4),
        "context": (OK, 7), "complete": (OK, 3), "complete-and-resume": (OK, 3)},
    4: {"unregister": (PENDING, 4), "context": (OK, 4), "complete": (OK, 0), "complete-and-resume": (OK, 0)},
}
ACTIONS = ("register", "release", "enable", "disable", "unregister", "routing-set", "dispatch", "context",
           "complete", "complete-and-resume")
LABEL = {"unregistered": 0, "registered": 1, "enabled": 3, "registered-running": 5, "enabled-running": 7,
         "unregister-pending": 4}

# What the model knows of a trigger (a signal, a host-raised event, a bound interrupt's pending
# state): none; one that may or may not still be held (the spec leaves room); one that is held
# and must be taken as soon as the event can be dispatched on that PE.
NONE, MAYBE, HELD = 0, 1, 2


def cell(state: int, action: str) -> tuple[int, int]:
    return TABLE[state].get(action, (DENIED, state))


Key = tuple[int, int | None]  # (event, PE) for a private event, (event, None) for a shared one


def key(event: int, cpu: int) -> Key:
    return (event, None) if event in SHARED_EVENTS else (event, cpu)


def signed(value: int) -> int:
    value &= MASK64
    return value - (1 << 64) if value >> 63 else value


@dataclass(frozen=True)
class Context:
    """A CPU's x0..x17, PC and PSTATE."""

    xs: tuple[int, ...]
    pc: int
    pstate: int

    def returning(self, value: int) -> Context:
        """After a call that returned ``value``: x0 holds it, nothing else changed (SMCCC 1.1)."""
        return Context((value & MASK64, *self.xs[1:]), self.pc, self.pstate)


@dataclass(frozen=True)
class Frame:
    """An outstanding dispatch as the model sees it: the event and the context it interrupted."""

    event: int
    key: Key
    saved: Context


@dataclass
class Outcome:
    """One call: what it returned (None: it did not return), the caller's context before, the facts."""

    result: int | None
    before: Context
    facts: list[Fact] = field(default_factory=list)


# --------------------------------------------------------------------------- the platform


class Harness:
    """A four-CPU platform running the spin guest; ``reset`` makes it as good as new."""

    def __init__(self, elf: Path) -> None:
        self.platform = make_platform(CPUS, quantum=QUANTUM)
        self.machine = self.platform.machine
        self.sdei = self.platform.sdei
        self.image = self.machine.load(elf)
        symbols = {name: address for address, name in self.image.symbols.items()}
        self.spin = symbols["sdeiprop_spin"]
        self.handlers = (symbols["sdeiprop_handler"], symbols["sdeiprop_handler_alt"])
        self.resume = symbols["sdeiprop_resume"]
        self.trace = self.machine.trace
        self.reset()

    def reset(self) -> None:
        """The machine's power-on reset (every part, the firmware's included, as built; RAM zero;
        the trace emptied), then the guest loaded again and CPU 0 booted to the spin loop."""
        machine = self.machine
        machine.reset()
        machine.load_image(self.image)  # RAM contents again, CPU 0 out of reset at the entry point
        for _ in range(100):  # the guest library's boot code, up to the loop
            if machine.vcpus[0].backend.pc == self.spin:
                break
            self.run(50)
        assert machine.vcpus[0].backend.pc == self.spin

    def context(self, cpu: int) -> Context:
        backend = self.machine.vcpus[cpu].backend
        return Context(tuple(backend.xs(18)), backend.pc, backend.read("PSTATE"))

    def call(self, cpu: int, name: str, *args: int) -> Outcome:
        """Issue one call from ``cpu`` as its HVC #0 would."""
        vcpu = self.machine.vcpus[cpu]
        assert vcpu.state is VcpuState.ON, f"CPU {cpu} is {vcpu.state.value}: it cannot call"
        fid = FID[name]
        vcpu.backend.set_xs([fid, *args, *[0] * (5 - len(args))])
        before = self.context(cpu)
        start = len(self.trace)
        try:
            self.platform.dispatcher.call(self.machine, vcpu, "hvc", fid)
        except Exception as error:
            raise AssertionError(f"CPU {cpu} {name}{args}: a Python exception escaped the firmware: "
                                 f"{error!r}") from error
        facts = self.trace[start:]
        returns = [f for f in facts if isinstance(f, SmcccReturn)]
        assert len(returns) <= 1 and sum(isinstance(f, SmcccCall) for f in facts) == 1, facts
        # What the caller sees in x0 when it is back at the instruction after the call, even if a
        # handler was entered on the way out: the recorded return value.
        result = signed(returns[0].results[0]) if returns else None
        return Outcome(result, before, facts)

    def run(self, instructions: int) -> list[Fact]:
        start = len(self.trace)
        try:
            outcome = self.platform.run(instructions)
        except Exception as error:
            raise AssertionError(f"a Python exception escaped the machine while running: {error!r}") from error
        assert outcome.reason is StopReason.BUDGET, f"the machine stopped: {outcome}"
        return self.trace[start:]


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    elf = build_source_text(GUEST, "asm", tmp_path_factory.mktemp("sdeiprop") / "spin.elf")
    return Harness(elf)


# --------------------------------------------------------------------------- the trace audit


class TraceAudit:
    """Invariants read from the trace facts alone, fed incrementally after every step."""

    def __init__(self) -> None:
        self.seen = 0
        self.masked = [True] * CPUS  # every PE comes out of reset masked
        self.state: dict[Key, str] = {}
        self.stack: list[list[SdeiDispatch]] = [[] for _ in range(CPUS)]

    def feed(self, facts: list[Fact]) -> None:
        for fact in facts:
            if isinstance(fact, SdeiMask):
                assert fact.masked != self.masked[fact.cpu], f"trace: a mask fact without a change: {fact}"
                self.masked[fact.cpu] = fact.masked
            elif isinstance(fact, SdeiTransition):  # SdeiDispatch and SdeiComplete are transitions too
                self._transition(fact)
                if isinstance(fact, SdeiDispatch):
                    self._dispatch(fact)
                elif isinstance(fact, SdeiComplete):
                    stack = self.stack[fact.cpu]
                    assert fact.action.startswith("complete") and fact.result == 0, f"trace: {fact}"
                    assert stack and stack[-1].event == fact.event, \
                        f"trace: {fact} does not end the top dispatch {stack}"
                    stack.pop()
                else:
                    assert fact.action not in ("dispatch", "complete", "complete-and-resume") or fact.result, \
                        f"trace: a dispatch or completion that took place must be told by its own kind: {fact}"
            elif isinstance(fact, GuestFault):
                raise AssertionError(f"trace: the guest faulted: {fact}")

    def _transition(self, fact: SdeiTransition) -> None:
        if fact.old == "-":  # refused before the state table (bad parameters, nothing outstanding)
            assert fact.new == "-" and fact.result < 0, f"trace: {fact}"
            return
        k = key(fact.event, fact.cpu)
        was = self.state.get(k, "unregistered")
        assert fact.old == was, f"trace: {fact} does not follow state {was}"
        if fact.action == "cpu-on-reset":  # PSCI CPU_ON resets the PE's private events (reference 3.2)
            assert fact.new == "unregistered" and k[1] is not None, f"trace: {fact}"
        else:
            assert fact.action in ACTIONS, f"trace: unknown action in {fact}"
            assert (fact.result, LABEL[fact.new]) == cell(LABEL[fact.old], fact.action), \
                f"trace: not the table's cell (reference 2.2): {fact}"
        self.state[k] = fact.new

    def _dispatch(self, fact: SdeiDispatch) -> None:
        assert (fact.action, fact.old, fact.result) == ("dispatch", "enabled", 0), \
            f"trace: {fact} was not an enabled event's dispatch transition"
        assert not self.masked[fact.cpu], f"trace: dispatch to a masked PE: {fact}"
        stack = self.stack[fact.cpu]
        if stack:  # only a critical pre-empts, and only a normal: at most two deep (reference 2.5)
            assert fact.critical and len(stack) == 1 and not stack[0].critical, f"trace: bad nesting: {fact} on {stack}"
        stack.append(fact)
        assert fact.depth == len(stack), f"trace: {fact}"

    def check_against(self, harness: Harness) -> None:
        self.feed(harness.trace[self.seen:])
        self.seen = len(harness.trace)
        sdei = harness.sdei
        for cpu in range(CPUS):
            assert [d.event for d in self.stack[cpu]] == [d.event.number for d in sdei.pes[cpu].stack], \
                f"CPU {cpu}: the dispatches not completed in the trace are not the PE's dispatch stack"
            assert self.masked[cpu] == sdei.pes[cpu].masked, f"CPU {cpu}: the mask differs from the trace's"


# --------------------------------------------------------------------------- the stateful test


def sdei_machine(h: Harness) -> type[RuleBasedStateMachine]:
    class SdeiModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            h.reset()
            self.h = h
            self.audit = TraceAudit()
            self.state: dict[Key, int] = {}
            self.entry: dict[Key, tuple[int, int]] = {}  # (handler, argument) of a registration
            self.route: tuple[bool, int] = (False, 0)  # S's (RM_PE, affinity)
            self.masked = [True] * CPUS
            self.stack: list[list[Frame]] = [[] for _ in range(CPUS)]
            self.bound = dict.fromkeys(DYNAMIC, False)
            self.power = ["on"] + ["off"] * (CPUS - 1)
            self.start_id = [0] * CPUS  # context id a CPU starts with (CPU_ON, CPU_SUSPEND)
            self.regs: list[Context | None] = [h.context(0)] + [None] * (CPUS - 1)
            self.trigger: dict[Key, int] = {}

        # --- helpers ------------------------------------------------------------------------
        def state_of(self, event: int, cpu: int) -> int:
            return self.state.get(key(event, cpu), 0)

        def on_cpus(self) -> list[int]:
            return [c for c in range(CPUS) if self.power[c] == "on"]

        def caller(self, data: st.DataObject, inside: bool = False, outside: bool = False) -> int:
            """A running CPU; with ``inside``, mostly one running a handler (if any does)."""
            cpus = self.on_cpus()
            handling = [c for c in cpus if self.stack[c]]
            if outside:
                cpus = [c for c in cpus if not self.stack[c]]
            elif inside and handling and data.draw(st.integers(0, 4), label="pick inside") > 0:
                cpus = handling
            return data.draw(st.sampled_from(cpus), label="caller")

        def known(self, event: int) -> bool:
            return event in PRIVATE_EVENTS or event in SHARED_EVENTS

        def set_state(self, k: Key, new: int) -> None:
            old = self.state.get(k, 0)
            self.state[k] = new
            if new == 0:
                self.entry.pop(k, None)
                if k[0] in INTID_OF:  # UNREGISTER clears the interrupt's pending state (reference 2.9)
                    self.trigger[k] = NONE
            if old in (3, 7) and new not in (3, 7) and self.trigger.get(k) == HELD:
                # Disabled or unregistered with a trigger waiting: whether it survives is not
                # specified (TF-A drops a signal, keeps a bound interrupt's pending bit).
                self.trigger[k] = MAYBE

        def can_nest(self, cpu: int, event: int) -> bool:
            """Reference 2.5: a normal only on an idle PE; a critical unless a critical runs."""
            stack = self.stack[cpu]
            return not stack or (event in CRITICAL and not any(f.event in CRITICAL for f in stack))

        def targets(self, cpu: int, event: int) -> bool:
            """The PE is one the event may go to: its own private event, or the shared one's routing."""
            if event not in SHARED_EVENTS:
                return True
            rm_pe, mpidr = self.route
            return not rm_pe or cpu_affinity(cpu) == mpidr

        def takeable(self, cpu: int, event: int) -> bool:
            """Reference 2.4's conditions, the power state aside."""
            return (not self.masked[cpu] and self.state_of(event, cpu) == 3 and self.can_nest(cpu, event)
                    and self.targets(cpu, event))

        def owed(self, cpu: int, shared_any: bool = False) -> list[int]:
            """Events held for ``cpu`` that it can take now (RM_ANY shared ones only if asked)."""
            found = [e for e in PRIVATE_EVENTS if self.trigger.get((e, cpu)) == HELD and self.takeable(cpu, e)]
            for event in SHARED_EVENTS:
                if self.trigger.get((event, None)) == HELD and self.takeable(cpu, event) \
                        and (shared_any or self.route[0]):
                    found.append(event)
            return found

        def expect(self, got: int | None, want: int | None, what: str) -> None:
            assert got == want, f"{what}: expected {want}, got {got}"

        # --- issuing a call -----------------------------------------------------------------
        def issue(self, cpu: int, name: str, *args: int, want: int | None, what: str) -> Outcome:
            """Call, check the answer; if it returned, the caller's x0 is the answer, nothing else changed."""
            out = self.h.call(cpu, name, *args)
            self.expect(out.result, want, what)
            self.regs[cpu] = out.before.returning(want) if want is not None else None
            return out

        def after(self, cpu: int, name: str, out: Outcome, what: str) -> None:
            """Once the model has applied the call: what happened on the way out of it."""
            for fact in out.facts:
                if isinstance(fact, SdeiDispatch):
                    assert fact.cpu == cpu, f"{what}: dispatched on CPU {fact.cpu}, not on the caller's way out"
                    self.dispatched(fact, f"on the way out of {what}")
                elif isinstance(fact, GuestFault):
                    raise AssertionError(f"{what}: the guest faulted: {fact}")
            if name not in PSCI_CALLS:
                owed = self.owed(cpu)
                assert not owed, (f"{what}: events {owed} are held for CPU {cpu}, which can take them, but no handler "
                                  f"was entered on the way out of the call (docs/sdei.md Dispatch)")
            if self.power[cpu] == "on":
                assert self.h.context(cpu) == self.regs[cpu], f"{what}: CPU {cpu}'s registers are not the model's"

        def dispatched(self, fact: SdeiDispatch, when: str) -> None:
            cpu, event = fact.cpu, fact.event
            k = key(event, cpu)
            stack = self.stack[cpu]
            what = (f"dispatch of event {event} on CPU {cpu} {when} (state {self.state.get(k, 0)}, "
                    f"stack {[f.event for f in stack]}, masked {self.masked[cpu]}, trigger {self.trigger.get(k)})")
            assert self.power[cpu] == "on", f"{what}: the CPU is {self.power[cpu]}"
            assert not self.masked[cpu], f"{what}: the PE is masked"
            assert self.state.get(k, 0) == 3, f"{what}: the event is not enabled and idle"
            assert self.can_nest(cpu, event), f"{what}: nesting beyond a critical over a normal"
            assert self.targets(cpu, event), f"{what}: routed RM_PE to {self.route[1]:#x}"
            assert self.trigger.get(k, NONE) != NONE, f"{what}: nothing triggered it"
            if event not in CRITICAL:
                waiting = [e for e in self.owed(cpu) if e in CRITICAL]
                assert not waiting, f"{what}: critical {waiting} could be taken and waits (critical first)"
            entry, arg = self.entry[k]
            assert (fact.handler, fact.critical, fact.depth) == (entry, event in CRITICAL, len(stack) + 1), what
            assert fact.source == SOURCE_OF[event], what
            saved = self.regs[cpu]
            assert saved is not None, f"{what}: on a CPU whose context the model does not know"
            assert (fact.interrupted_pc, fact.interrupted_pstate) == (saved.pc, saved.pstate), what
            stack.append(Frame(event, k, saved))
            self.state[k] = 7
            self.trigger[k] = NONE
            # Handler entry (reference 2.4): x0 event, x1 argument, x2 PC, x3 PSTATE, x4-x17 kept;
            # PSTATE as an exception taken to EL1h: DAIF set, NZCV kept.
            self.regs[cpu] = Context((event, arg, saved.pc, saved.pstate, *saved.xs[4:]), entry,
                                     (saved.pstate & NZCV) | DAIF | EL1H)

        # --- SDEI calls ---------------------------------------------------------------------
        @initialize(powered=st.lists(st.integers(1, CPUS - 1), unique=True, max_size=CPUS - 1),
                    armed=st.lists(st.tuples(st.integers(0, CPUS - 1), st.sampled_from(LIVE_EVENTS),
                                             st.sampled_from((0, 1)), st.integers(0, CPUS - 1)), max_size=6))
        def setup(self, powered: list[int], armed: list[tuple[int, int, int, int]]) -> None:
            """Bind PPI 30 and SPI 42, power some CPUs on, and arm some events: a running start."""
            for intid in (PPI, SPI):
                self.bind(0, intid)
            for cpu in powered:
                self.do_cpu_on(0, cpu, cpu)
            self.settle()
            for cpu, event, flags, to in armed:
                if self.power[cpu] == "on":
                    self.do_arm(cpu, event, flags, to, 0xA0 + cpu)

        def do_register(self, caller: int, event: int, entry: int, arg: int, flags: int, mpidr: int) -> None:
            k = key(event, caller)
            valid_entry = entry % 4 == 0 and entry in (*self.h.handlers, self.h.spin, self.h.resume)
            bad_affinity = flags == 1 and named_pe(mpidr) is None  # private events too (TF-A validate_flags)
            if not self.known(event) or not valid_entry or flags not in (0, 1) or bad_affinity:
                want = INVALID
            elif event in DYNAMIC and not self.bound[event]:
                want = DENIED
            else:
                want = cell(self.state.get(k, 0), "register")[0]
            what = f"CPU {caller} REGISTER({event}, flags {flags}, mpidr {mpidr:#x})"
            out = self.issue(caller, "REGISTER", event, entry, arg, flags, mpidr, want=want, what=what)
            if want == OK:
                self.set_state(k, 1)
                self.entry[k] = (entry, arg)
                if event in SHARED_EVENTS:
                    self.route = (flags == 1, mpidr & AFFINITY_FIELDS if flags == 1 else 0)
                if event in INTID_OF:
                    self.trigger[k] = NONE  # REGISTER clears a stale pending interrupt (reference 2.9)
            self.after(caller, "REGISTER", out, what)

        @rule(data=st.data(), event=st.sampled_from(EVENTS),
              entry=st.sampled_from(("handler", "alt", "misaligned", "outside", "zero")),
              arg=st.integers(0, MASK64), flags=st.sampled_from((0, 1, 2, 3)),
              to=st.sampled_from((*range(CPUS), *BAD_MPIDRS)))
        def register(self, data: st.DataObject, event: int, entry: str, arg: int, flags: int, to: int) -> None:
            address = {"handler": self.h.handlers[0], "alt": self.h.handlers[1], "misaligned": self.h.handlers[0] + 2,
                       "outside": 0x1000, "zero": 0}[entry]
            mpidr = self.mpidr_argument(data, to)
            self.do_register(self.caller(data, inside=True), event, address, arg, flags, mpidr)

        def do_simple(self, caller: int, action: str, event: int) -> None:
            k = key(event, caller)
            want, new = (INVALID, 0) if not self.known(event) else cell(self.state.get(k, 0), action)
            what = f"CPU {caller} {action.upper()}({event}) in state {self.state.get(k, 0)}"
            out = self.issue(caller, action.upper(), event, want=want, what=what)
            if self.known(event):
                self.set_state(k, new)
            self.after(caller, action.upper(), out, what)

        @rule(data=st.data(), action=st.sampled_from(("enable", "disable", "unregister")),
              event=st.sampled_from(EVENTS))
        def enable_disable_unregister(self, data: st.DataObject, action: str, event: int) -> None:
            self.do_simple(self.caller(data, inside=True), action, event)

        def do_unmask(self, caller: int) -> None:
            what = f"CPU {caller} PE_UNMASK"
            out = self.issue(caller, "PE_UNMASK", want=OK, what=what)
            self.masked[caller] = False
            self.after(caller, "PE_UNMASK", out, what)

        def do_arm(self, caller: int, event: int, flags: int, to: int, arg: int) -> None:
            """REGISTER, ENABLE and PE_UNMASK, each a checked call: gets events flowing."""
            self.do_register(caller, event, self.h.handlers[to % 2], arg, flags, cpu_affinity(to))
            self.do_simple(caller, "enable", event)
            self.do_unmask(caller)

        @rule(data=st.data(), event=st.sampled_from((0, *LIVE_EVENTS)),
              flags=st.sampled_from((0, 1)), to=st.integers(0, CPUS - 1), arg=st.integers(0, MASK64))
        def arm(self, data: st.DataObject, event: int, flags: int, to: int, arg: int) -> None:
            self.do_arm(self.caller(data, inside=True), event, flags, to, arg)

        def status(self, data: st.DataObject, event: int) -> None:
            caller = self.caller(data, inside=True)
            want = self.state_of(event, caller) if self.known(event) else INVALID
            what = f"CPU {caller} STATUS({event})"
            self.after(caller, "STATUS", self.issue(caller, "STATUS", event, want=want, what=what), what)

        def get_info(self, data: st.DataObject, event: int, info: int) -> None:
            caller = self.caller(data, inside=True)
            state = self.state_of(event, caller)
            rm_pe, mpidr = self.route if event == S else (False, 0)
            if not self.known(event) or info > 4:
                want = INVALID
            elif info == 0:
                want = int(event in SHARED_EVENTS)
            elif info == 1:
                want = int(event != 0)  # TF-A answers !signalable (reference 2.7)
            elif info == 2:
                want = int(event in CRITICAL)
            elif event not in SHARED_EVENTS:
                want = INVALID
            elif not state & 1:  # no registered bit: unregistered, or unregister-pending (reference 2.2, 2.7)
                want = DENIED
            elif info == 3:
                want = int(rm_pe)
            else:
                want = mpidr if rm_pe else INVALID
            what = f"CPU {caller} GET_INFO({event}, {info}) in state {state}"
            self.after(caller, "GET_INFO", self.issue(caller, "GET_INFO", event, info, want=want, what=what), what)

        def routing_set(self, data: st.DataObject, event: int, mode: int, to: int) -> None:
            caller = self.caller(data, inside=True)
            mpidr = self.mpidr_argument(data, to)
            bad_affinity = mode == 1 and named_pe(mpidr) is None
            if event not in SHARED_EVENTS or not self.bound[event] or mode not in (0, 1) or bad_affinity:
                want = INVALID
            else:
                want = cell(self.state_of(event, caller), "routing-set")[0]
            what = f"CPU {caller} ROUTING_SET({event}, {mode}, {mpidr:#x}) in state {self.state_of(event, caller)}"
            out = self.issue(caller, "ROUTING_SET", event, mode, mpidr, want=want, what=what)
            if want == OK:
                self.route = (mode == 1, mpidr & AFFINITY_FIELDS if mode == 1 else 0)
            self.after(caller, "ROUTING_SET", out, what)

        def context(self, data: st.DataObject, index: int) -> None:
            caller = self.caller(data, inside=True)
            stack = self.stack[caller]
            if not stack:
                want = DENIED
            elif index >= 18:
                want = INVALID
            else:
                want = signed(stack[-1].saved.xs[index])
            what = f"CPU {caller} CONTEXT({index}) on {[f.event for f in stack]}"
            self.after(caller, "CONTEXT", self.issue(caller, "CONTEXT", index, want=want, what=what), what)

        @rule(data=st.data(), how=st.sampled_from(("COMPLETE", "COMPLETE_AND_RESUME")),
              status=st.sampled_from((0, 1, 7)), resume=st.sampled_from(("resume", "spin", "misaligned", "outside")))
        def complete(self, data: st.DataObject, how: str, status: int, resume: str) -> None:
            caller = self.caller(data, inside=True)
            stack = self.stack[caller]
            address = {"resume": self.h.resume, "spin": self.h.spin, "misaligned": self.h.resume + 1,
                       "outside": 0x1000}[resume]
            arg = status if how == "COMPLETE" else address
            what = f"CPU {caller} {how}({arg:#x}) on {[f.event for f in stack]}"
            if not stack or (how == "COMPLETE_AND_RESUME" and resume in ("misaligned", "outside")):
                self.after(caller, how, self.issue(caller, how, arg, want=DENIED, what=what), what)
                return
            out = self.issue(caller, how, arg, want=None, what=what + " (it does not return)")
            frame = stack.pop()
            self.set_state(frame.key, cell(self.state[frame.key], how.lower().replace("_", "-"))[1])
            saved = frame.saved
            if how == "COMPLETE":  # the interrupted context, exactly (reference 2.6)
                self.regs[caller] = saved
            else:  # as if a synchronous exception had been taken to EL1 at the resume address (2.6)
                self.regs[caller] = Context(saved.xs, address, (saved.pstate & NZCV) | DAIF | EL1H)
                backend = self.h.machine.vcpus[caller].backend  # a dispatch on the way out leaves them alone
                assert (backend.read("ELR_EL1"), backend.read("SPSR_EL1")) == (saved.pc, saved.pstate), \
                    f"{what}: ELR_EL1/SPSR_EL1 are not the interrupted PC/PSTATE"
            self.after(caller, how, out, what)

        @rule(data=st.data(), unmask=st.booleans())
        def pe_mask(self, data: st.DataObject, unmask: bool) -> None:
            caller = self.caller(data, inside=True)
            if unmask:
                self.do_unmask(caller)
                return
            what = f"CPU {caller} PE_MASK"
            out = self.issue(caller, "PE_MASK", want=int(not self.masked[caller]), what=what)  # 1: it masked (TF-A)
            self.masked[caller] = True
            self.after(caller, "PE_MASK", out, what)

        def bind(self, caller: int, intid: int) -> None:
            want = {PPI: P, SPI: S, 27: DENIED}.get(intid, INVALID)  # 27: the hypervisor's own vtimer
            if intid == 1 << 32 | PPI:
                want = P  # the interrupt ID is 32 bits wide
            what = f"CPU {caller} BIND({intid:#x})"
            out = self.issue(caller, "BIND", intid, want=want, what=what)
            if want >= 0:
                self.bound[want] = True
            self.after(caller, "BIND", out, what)

        def release_result(self, event: int) -> int:
            if event not in DYNAMIC or not self.bound[event]:
                return INVALID
            if any(s != 0 for (e, _), s in self.state.items() if e == event):
                return DENIED  # still registered on some PE, or its unregistration is pending (2.9)
            return OK

        def bind_or_release(self, data: st.DataObject, intid: int, event: int, release: bool) -> None:
            caller = self.caller(data, inside=True)
            if not release:
                self.bind(caller, intid)
                return
            want = self.release_result(event)
            what = f"CPU {caller} RELEASE({event})"
            out = self.issue(caller, "RELEASE", event, want=want, what=what)
            if want == OK:
                self.bound[event] = False
            self.after(caller, "RELEASE", out, what)

        @rule(data=st.data(), kind=st.sampled_from(("status", "get_info", "context", "discovery", "affinity_info")))
        def query(self, data: st.DataObject, kind: str) -> None:
            """A call that changes no state (on the way out of it a waiting event is still taken)."""
            draw = data.draw
            if kind == "status":
                self.status(data, draw(st.sampled_from(EVENTS)))
            elif kind == "get_info":
                self.get_info(data, draw(st.sampled_from(EVENTS)), draw(st.integers(0, 5)))
            elif kind == "context":
                self.context(data, draw(st.one_of(st.integers(0, 17), st.integers(18, 40), st.just(MASK64))))
            elif kind == "discovery":
                self.discovery(data, draw(st.sampled_from((None, 0, 1, 2, MASK64))))
            else:
                self.affinity_info(data, draw(st.integers(0, CPUS - 1)), draw(st.sampled_from((0, 0, 0, 1))))

        @rule(data=st.data(), kind=st.sampled_from(("routing", "bind", "release", "reset")))
        def configure(self, data: st.DataObject, kind: str) -> None:
            """Bindings, routing, and the two resets."""
            draw = data.draw
            if kind == "routing":
                self.routing_set(data, draw(st.sampled_from(EVENTS)), draw(st.sampled_from((0, 1, 2))),
                                 draw(st.sampled_from((*range(CPUS), *BAD_MPIDRS))))
            elif kind in ("bind", "release"):
                self.bind_or_release(data, draw(st.sampled_from((PPI, SPI, 27, 5, 1020, 1 << 32 | PPI))),
                                     draw(st.sampled_from(EVENTS)), kind == "release")
            else:
                self.sdei_reset(data, draw(st.booleans()))

        @rule(data=st.data(), event=st.sampled_from((0, 0, 0, HYP, P)),
              to=st.sampled_from((*range(CPUS), *range(CPUS), *BAD_MPIDRS)))
        def signal(self, data: st.DataObject, event: int, to: int) -> None:
            """Mostly aimed at a PE that can accept it (event 0 enabled there, unmasked)."""
            caller = self.caller(data, inside=True)
            ready = [c for c in range(CPUS) if not self.masked[c] and self.state_of(0, c) in (3, 7)]
            if ready and data.draw(st.integers(0, 3), label="aim") > 0:
                to = data.draw(st.sampled_from(ready), label="at")
            self.do_signal(caller, event, self.mpidr_argument(data, to))

        def mpidr_argument(self, data: st.DataObject, to: int) -> int:
            """CPU ``to``'s affinity (or ``to`` itself, an absent PE) with bits that are not affinity mixed in."""
            return (cpu_affinity(to) if to < CPUS else to) | data.draw(st.sampled_from(MPIDR_NOISE), label="noise")

        def do_signal(self, caller: int, event: int, mpidr: int) -> None:
            to = named_pe(mpidr)
            if event != 0 or to is None or self.masked[to] or self.state_of(0, to) not in (3, 7):
                want = INVALID  # event 0 only, to an unmasked PE with event 0 enabled (reference 2.10)
            else:
                want = OK
            what = f"CPU {caller} SIGNAL({event}, {mpidr:#x})"
            out = self.issue(caller, "SIGNAL", event, mpidr, want=want, what=what)
            if want == OK:
                self.trigger[(0, to)] = HELD  # at most one pending (DEN0054 5.1.16.1, reference 2.10)
            self.after(caller, "SIGNAL", out, what)

        def discovery(self, data: st.DataObject, feature: int | None) -> None:
            caller = self.caller(data, inside=True)
            if feature is None:
                what = f"CPU {caller} VERSION"
                self.after(caller, "VERSION", self.issue(caller, "VERSION", want=1 << 48, what=what), what)
                return
            want = (4 << 16) | 4 if feature == 0 else INVALID  # BIND_SLOTS: 4 shared, 4 private
            what = f"CPU {caller} FEATURES({feature})"
            self.after(caller, "FEATURES", self.issue(caller, "FEATURES", feature, want=want, what=what), what)

        def sdei_reset(self, data: st.DataObject, shared: bool) -> None:
            caller = self.caller(data, inside=True)
            want = OK
            events = SHARED_EVENTS if shared else PRIVATE_EVENTS
            for event in events:  # UNREGISTER every registered one (reference 2.11)
                k = key(event, caller)
                if self.state.get(k, 0):
                    result, new = cell(self.state[k], "unregister")
                    self.set_state(k, new)
                    if result != OK:
                        want = DENIED  # it was running: its unregistration is pending
            if shared and want == OK:  # then every dynamic binding, private and shared: the first error is the answer
                for event in sorted(DYNAMIC):
                    if self.bound[event]:
                        result = self.release_result(event)
                        if result == OK:
                            self.bound[event] = False
                        elif want == OK:
                            want = result
            name = "SHARED_RESET" if shared else "PRIVATE_RESET"
            what = f"CPU {caller} {name}"
            self.after(caller, name, self.issue(caller, name, want=want, what=what), what)

        # --- the outside world --------------------------------------------------------------
        @rule(data=st.data(), event=st.sampled_from((P, S, HYP, HYP_CRIT)), then_settle=st.booleans())
        def trigger_event(self, data: st.DataObject, event: int, then_settle: bool) -> None:
            """A device line (PPI 30 of a CPU, SPI 42) or the host raising 5000/5001 (docs/sdei.md)."""
            armed = [c for c in range(CPUS) if self.state_of(event, c) & 0b010]
            if armed and data.draw(st.integers(0, 3), label="aim") > 0:
                cpu = data.draw(st.sampled_from(armed), label="at")
            else:
                cpu = data.draw(st.integers(0, CPUS - 1), label="at")
            self.do_trigger(event, cpu)
            if then_settle:
                self.settle()

        def do_trigger(self, event: int, cpu: int) -> None:
            if event == P:
                self.h.machine.gic.set_pending(PPI, True, cpu)
            elif event == S:
                self.h.machine.gic.set_pending(SPI, True, None)
            else:
                self.h.sdei.raise_event(event, cpu)
            k = key(event, cpu)
            state = self.state.get(k, 0)
            if state in (3, 7):
                self.trigger[k] = HELD
            elif state != 0 or event not in INTID_OF:  # an unregistered interrupt is the guest's, not a trigger
                self.trigger[k] = max(self.trigger.get(k, NONE), MAYBE)

        @rule(data=st.data(), event=st.sampled_from((0, 0, P, S, HYP, HYP_CRIT)),
              then=st.sampled_from(("", "run", "settle")))
        def fire(self, data: st.DataObject, event: int, then: str) -> None:
            """Make ``event`` takeable on a CPU (mostly one in a handler) with checked calls, then trigger it.

            Random sequences alone seldom line up registration, enable, unmask and a trigger; this
            rule keeps handlers running, nested and waiting, so that the other rules act on them.
            """
            cpu = self.caller(data, inside=True)
            if event in INTID_OF and not self.bound[event]:
                self.bind(cpu, INTID_OF[event])
            if self.state_of(event, cpu) not in (3, 7):
                self.do_arm(cpu, event, 1, cpu, data.draw(st.integers(0, MASK64), label="argument"))
            elif self.masked[cpu]:
                self.do_unmask(cpu)
            if event == 0:
                self.do_signal(self.caller(data, inside=True), 0, cpu_affinity(cpu))
            else:
                self.do_trigger(event, cpu)
            if then == "run":
                self.absorb(data.draw(st.integers(1, 2 * QUANTUM), label="instructions"))
            elif then == "settle":
                self.settle()

        # --- PSCI ---------------------------------------------------------------------------
        def do_cpu_on(self, caller: int, target: int, context_id: int) -> None:
            want = {"off": OK, "on-pending": PSCI_ON_PENDING}.get(self.power[target], PSCI_ALREADY_ON)
            what = f"CPU {caller} CPU_ON(CPU {target})"
            out = self.issue(caller, "CPU_ON", cpu_affinity(target), self.h.spin, context_id, want=want, what=what)
            if want == OK:
                self.power[target] = "on-pending"
                self.start_id[target] = context_id
            self.after(caller, "CPU_ON", out, what)

        @rule(data=st.data(), to=st.integers(0, CPUS - 1), context_id=st.integers(0, MASK64))
        def cpu_on(self, data: st.DataObject, to: int, context_id: int) -> None:
            self.do_cpu_on(self.caller(data, inside=True), to, context_id)

        def affinity_info(self, data: st.DataObject, to: int, level: int) -> None:
            caller = self.caller(data, inside=True)
            want = PSCI_INVALID if level else AFFINITY[self.power[to]]
            what = f"CPU {caller} AFFINITY_INFO(CPU {to}, {level})"
            out = self.issue(caller, "AFFINITY_INFO", cpu_affinity(to), level, want=want, what=what)
            self.after(caller, "AFFINITY_INFO", out, what)

        @precondition(lambda self: len(self.on_cpus()) > 1)
        @rule(data=st.data())
        def cpu_off(self, data: st.DataObject) -> None:
            caller = self.caller(data, inside=True)
            what = f"CPU {caller} CPU_OFF"
            if self.stack[caller]:  # a handler is running on it: refused (reference 3.5, item 3)
                self.after(caller, "CPU_OFF", self.issue(caller, "CPU_OFF", want=PSCI_DENIED, what=what), what)
                return
            out = self.issue(caller, "CPU_OFF", want=None, what=what + " (it does not return)")
            self.power[caller] = "off"
            self.after(caller, "CPU_OFF", out, what)

        @precondition(lambda self: any(not self.stack[c] for c in self.on_cpus()) and len(self.on_cpus()) > 1)
        @rule(data=st.data(), context_id=st.integers(0, MASK64))
        def cpu_suspend(self, data: st.DataObject, context_id: int) -> None:
            """Power-down suspend outside handlers: masked on wake, registrations kept (reference 3.1, 3.2)."""
            caller = self.caller(data, outside=True)
            what = f"CPU {caller} CPU_SUSPEND(power-down)"
            out = self.issue(caller, "CPU_SUSPEND", POWERDOWN, self.h.spin, context_id, want=None,
                             what=what + " (it does not return)")
            self.power[caller] = "powerdown"
            self.start_id[caller] = context_id
            self.after(caller, "CPU_SUSPEND", out, what)

        # --- time ---------------------------------------------------------------------------
        def absorb(self, instructions: int) -> None:
            """Run, then replay in the model what a run may do: start CPUs, wake them, dispatch."""
            started: list[int] = []
            for fact in self.h.run(instructions):
                if isinstance(fact, PowerTransition):
                    if (fact.old, fact.new, fact.cause) == ("on-pending", "on", "cpu-on"):
                        self.cpu_started(fact.cpu, reset=True)
                    elif (fact.old, fact.new, fact.cause) == ("powerdown", "on", "wake"):
                        self.cpu_started(fact.cpu, reset=False)
                    else:
                        raise AssertionError(f"during a run: {fact}")
                    started.append(fact.cpu)
                elif isinstance(fact, SdeiDispatch):
                    self.dispatched(fact, "at a slice boundary")
                elif isinstance(fact, SdeiComplete | SdeiBinding | GuestFault | SmcccCall):
                    raise AssertionError(f"during a run: {fact}")
                elif isinstance(fact, SdeiTransition):
                    assert fact.action == "cpu-on-reset", f"during a run: {fact}"
                elif isinstance(fact, SdeiMask):
                    assert fact.masked and fact.cause in ("cpu-on", "wake"), f"during a run: {fact}"
            for cpu in started:
                now = self.h.context(cpu)
                assert (now.xs[0], now.pc, now.pstate) == (self.start_id[cpu], self.h.spin, RESET_PSTATE), \
                    f"CPU {cpu} did not start at its entry point with x0 = context id, EL1h, DAIF masked: {now}"
                if self.regs[cpu] is None:
                    self.regs[cpu] = now
            for cpu in self.on_cpus():  # the loops change no register: only dispatches did, as modelled
                assert self.h.context(cpu) == self.regs[cpu], f"CPU {cpu}: registers differ from the model"

        def cpu_started(self, cpu: int, reset: bool) -> None:
            if reset:  # CPU_ON finish (TF-A sdei_cpu_on_init): private events reset, PE masked
                assert self.power[cpu] == "on-pending", f"CPU {cpu} started from {self.power[cpu]}"
                assert not self.stack[cpu], f"CPU {cpu} restarted with a dispatch outstanding"
                for event in PRIVATE_EVENTS:
                    k = key(event, cpu)
                    self.state[k] = 0
                    self.entry.pop(k, None)
                    self.trigger[k] = NONE
            else:  # wake from power-down (TF-A sdei_cpu_wakeup_init): masked, registrations kept
                assert self.power[cpu] == "powerdown", f"CPU {cpu} woke from {self.power[cpu]}"
                reasons = [e for e in (*PRIVATE_EVENTS, *SHARED_EVENTS)
                           if self.trigger.get(key(e, cpu), NONE) != NONE and self.takeable(cpu, e)]
                assert reasons, f"CPU {cpu} woke from power-down with no event that could wake it"
            self.masked[cpu] = True
            self.power[cpu] = "on"
            self.regs[cpu] = None

        @rule(instructions=st.integers(1, 3000))
        def run(self, instructions: int) -> None:
            self.absorb(instructions)

        @rule()
        def settle(self) -> None:
            """Run until every powered CPU has passed slice boundaries: nothing takeable may wait."""
            self.absorb(SETTLE)
            for cpu in self.on_cpus():
                owed = self.owed(cpu)
                assert not owed, f"after a settling run, events {owed} are held for CPU {cpu}, which can take them"
            for cpu in range(CPUS):
                if self.power[cpu] == "powerdown":
                    owed = self.owed(cpu, shared_any=True)
                    assert not owed, f"after a settling run, events {owed} held for CPU {cpu} did not wake it"
            for event in SHARED_EVENTS:
                if self.trigger.get((event, None)) == HELD and not self.route[0]:
                    takers = [c for c in self.on_cpus() if self.takeable(c, event)]
                    assert not takers, f"after a settling run, shared event {event} waits; CPUs {takers} could take it"

        # --- invariants ---------------------------------------------------------------------
        @invariant()
        def trace_audit(self) -> None:
            self.audit.check_against(self.h)

        @invariant()
        def model_agrees(self) -> None:
            sdei = self.h.sdei
            for cpu, vcpu in enumerate(self.h.machine.vcpus):
                assert vcpu.state.value == self.power[cpu], f"CPU {cpu} is {vcpu.state.value}, model {self.power[cpu]}"
                for event in (*PRIVATE_EVENTS, *SHARED_EVENTS):  # STATUS is the table's state (reference 2.7)
                    status = sdei.status(vcpu, event)
                    want = self.state_of(event, cpu)
                    assert status == want, f"STATUS({event}) on CPU {cpu} answers {status}, the model's state is {want}"
                pe = sdei.pes[cpu]
                assert pe.masked == self.masked[cpu], f"CPU {cpu}: masked {pe.masked}, model {self.masked[cpu]}"
                assert [d.event.number for d in pe.stack] == [f.event for f in self.stack[cpu]], \
                    f"CPU {cpu}: dispatch stack {[d.event.number for d in pe.stack]}, model {self.stack[cpu]}"
                for d, f in zip(pe.stack, self.stack[cpu], strict=True):
                    assert (d.saved(), d.pc, d.pstate) == (f.saved.xs, f.saved.pc, f.saved.pstate), \
                        f"CPU {cpu}: the saved context of event {f.event} is not the interrupted one"
            for event in DYNAMIC:
                assert sdei.events[event].bound == self.bound[event], f"binding of {event}"
            running = {f.key for frames in self.stack for f in frames}
            for k, state in self.state.items():
                assert bool(state & 0b100) == (k in running), f"{k}: state {state} vs the outstanding dispatches"

    return SdeiModel


STATEFUL = settings(max_examples=300, stateful_step_count=50, deadline=None, derandomize=True, database=None,
                    phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def test_random_sdei_sequences_keep_the_spec(harness: Harness) -> None:
    model = sdei_machine(harness)
    model.TestCase.settings = STATEFUL
    model.TestCase().runTest()


# --------------------------------------------------------------------------- focused properties

FOCUSED = settings(STATEFUL, max_examples=15)
REGISTERS = st.lists(st.integers(0, MASK64), min_size=18, max_size=18)


def call(h: Harness, cpu: int, name: str, *args: int) -> int | None:
    return h.call(cpu, name, *args).result


def dispatch_on_cpu0(h: Harness, event: int, values: list[int], argument: int) -> Context:
    """Register ``event`` on CPU 0, load ``values`` into x0..x17, raise it and run until it is taken."""
    assert call(h, 0, "REGISTER", event, h.handlers[0], argument, 0, 0) == OK
    assert call(h, 0, "ENABLE", event) == OK
    assert call(h, 0, "PE_UNMASK") == OK
    h.machine.vcpus[0].backend.set_xs(values)
    interrupted = h.context(0)
    h.sdei.raise_event(event, 0)
    h.run(2 * QUANTUM)
    assert h.machine.vcpus[0].backend.pc == h.handlers[0]
    return interrupted


@FOCUSED
@given(values=REGISTERS, argument=st.integers(0, MASK64), beyond=st.integers(18, 1 << 32),
       critical=st.booleans(), resume=st.booleans())
def test_context_reads_the_interrupted_registers_and_complete_restores_them(
        harness: Harness, values: list[int], argument: int, beyond: int, critical: bool, resume: bool) -> None:
    h = harness
    h.reset()
    event = HYP_CRIT if critical else HYP
    interrupted = dispatch_on_cpu0(h, event, values, argument)
    entry = h.context(0)
    assert entry.xs == (event, argument, interrupted.pc, interrupted.pstate, *values[4:])
    assert entry.pstate == (interrupted.pstate & NZCV) | DAIF | EL1H
    for i in range(18):
        assert call(h, 0, "CONTEXT", i) == signed(values[i]), f"CONTEXT({i})"
    assert call(h, 0, "CONTEXT", beyond) == INVALID
    assert call(h, 0, "STATUS", event) == 7
    if resume:
        assert call(h, 0, "COMPLETE_AND_RESUME", h.resume) is None
        after = h.context(0)
        assert (after.xs, after.pc) == (tuple(values), h.resume)
    else:
        assert call(h, 0, "COMPLETE", 0) is None
        assert h.context(0) == interrupted
    assert call(h, 0, "STATUS", event) == 3
    assert call(h, 0, "CONTEXT", 0) == DENIED  # nothing outstanding any more


@FOCUSED
@given(values=REGISTERS, normal_arg=st.integers(0, MASK64), critical_arg=st.integers(0, MASK64),
       probe=st.integers(0, 17))
def test_a_critical_event_preempts_a_normal_handler_and_context_reads_the_top(
        harness: Harness, values: list[int], normal_arg: int, critical_arg: int, probe: int) -> None:
    h = harness
    h.reset()
    interrupted = dispatch_on_cpu0(h, HYP, values, normal_arg)
    assert call(h, 0, "REGISTER", HYP_CRIT, h.handlers[1], critical_arg, 0, 0) == OK
    assert call(h, 0, "ENABLE", HYP_CRIT) == OK
    h.machine.vcpus[0].backend.set_xs(values[::-1])  # what the normal handler holds when pre-empted
    normal = h.context(0)
    h.sdei.raise_event(HYP, 0)  # a second normal cannot pre-empt the first: it waits
    h.run(2 * QUANTUM)
    assert [d.event.number for d in h.sdei.pes[0].stack] == [HYP]
    h.sdei.raise_event(HYP_CRIT, 0)
    h.run(2 * QUANTUM)
    assert [d.event.number for d in h.sdei.pes[0].stack] == [HYP, HYP_CRIT]
    assert h.machine.vcpus[0].backend.pc == h.handlers[1]
    assert call(h, 0, "CONTEXT", probe) == signed(values[::-1][probe])  # the top: the normal handler's
    assert call(h, 0, "COMPLETE", 0) is None
    assert h.context(0) == normal
    assert call(h, 0, "CONTEXT", probe) == signed(values[probe])  # now the normal's interrupted context
    # Completing the first normal lets the waiting one in on the way out of COMPLETE itself
    # (docs/sdei.md "Dispatch"): it interrupts exactly the context COMPLETE restored.
    out = h.call(0, "COMPLETE", 0)
    assert out.result is None
    assert [f.event for f in out.facts if isinstance(f, SdeiDispatch)] == [HYP]
    assert [d.event.number for d in h.sdei.pes[0].stack] == [HYP]
    assert h.context(0) == Context((HYP, normal_arg, interrupted.pc, interrupted.pstate, *values[4:]),
                                   h.handlers[0], (interrupted.pstate & NZCV) | DAIF | EL1H)
    assert call(h, 0, "CONTEXT", probe) == signed(values[probe])


def test_signal_to_self_enters_the_handler_as_signal_returns(harness: Harness) -> None:
    """EVENT_SIGNAL(0, self) from an unmasked PE: the handler interrupts the instruction after the call."""
    h = harness
    h.reset()
    assert call(h, 0, "REGISTER", 0, h.handlers[0], 0xC0FFEE, 0, 0) == OK
    assert call(h, 0, "ENABLE", 0) == OK
    assert call(h, 0, "PE_UNMASK") == OK
    out = h.call(0, "SIGNAL", 0, cpu_affinity(0))
    assert out.result == OK
    assert [f.event for f in out.facts if isinstance(f, SdeiDispatch)] == [0]
    assert h.context(0) == Context((0, 0xC0FFEE, out.before.pc, out.before.pstate, *out.before.xs[4:]),
                                   h.handlers[0], (out.before.pstate & NZCV) | DAIF | EL1H)
    assert call(h, 0, "CONTEXT", 0) == OK  # the interrupted x0 is SIGNAL's answer
    assert call(h, 0, "COMPLETE", 0) is None
    assert h.context(0) == out.before.returning(OK)


def test_get_info_routing_is_denied_while_unregister_pending(harness: Harness) -> None:
    """Reference 2.2 / 2.7: state 4 has no registered bit, and GET_INFO's routing needs it (TF-A)."""
    h = harness
    h.reset()
    assert call(h, 0, "BIND", SPI) == S
    assert call(h, 0, "REGISTER", S, h.handlers[0], 0, 1, cpu_affinity(0)) == OK
    assert call(h, 0, "ENABLE", S) == OK
    assert call(h, 0, "PE_UNMASK") == OK
    h.machine.gic.set_pending(SPI, True)
    h.run(2 * QUANTUM)
    assert call(h, 0, "STATUS", S) == 7
    assert call(h, 0, "UNREGISTER", S) == PENDING
    assert call(h, 0, "STATUS", S) == 4
    assert call(h, 0, "GET_INFO", S, 3) == DENIED, "ROUTING_MODE of an unregister-pending event"
    assert call(h, 0, "GET_INFO", S, 4) == DENIED, "ROUTING_AFF of an unregister-pending event"


def test_shared_reset_releases_every_binding_it_can(harness: Harness) -> None:
    """Reference 2.11: SHARED_RESET releases every dynamic binding; a failed release is reported, not a stop."""
    h = harness
    h.reset()
    assert call(h, 0, "BIND", PPI) == P
    assert call(h, 0, "BIND", SPI) == S
    assert call(h, 0, "REGISTER", P, h.handlers[0], 0, 0, 0) == OK  # P cannot be released
    assert call(h, 0, "SHARED_RESET") == DENIED
    assert not h.sdei.events[S].bound, "SHARED_RESET left SPI 42 bound after P's release failed"
    assert call(h, 0, "RELEASE", S) == INVALID
    assert call(h, 0, "REGISTER", S, h.handlers[0], 0, 0, 0) == DENIED


def test_reset_gives_a_fresh_platform(harness: Harness, tmp_path: Path) -> None:
    """The module's reused platform, after any history and ``reset``, runs exactly as a new one."""

    def script(h: Harness) -> list[object]:
        h.call(0, "BIND", SPI)
        h.call(0, "CPU_ON", cpu_affinity(2), h.spin, 7)
        h.run(SETTLE)
        h.call(0, "REGISTER", S, h.handlers[0], 1, 0, 0)
        h.call(0, "ENABLE", S)
        for cpu in (0, 2):
            h.call(cpu, "PE_UNMASK")
        for _ in range(3):
            h.machine.gic.set_pending(SPI, True)
            h.run(SETTLE // 3)
        for cpu in (0, 2):
            if h.sdei.pes[cpu].stack:
                h.call(cpu, "COMPLETE", 0)
        h.sdei.raise_event(HYP, 2)
        h.run(777)
        return [*h.trace[:], h.context(0), h.context(2)]

    new = Harness(build_source_text(GUEST, "asm", tmp_path / "spin.elf"))
    booted = new.machine.snapshot()
    fresh = script(new)
    h = harness  # some history first: a PPI handler left running, CPU 1 the last RM_ANY taker
    h.reset()
    for name, *args in (("BIND", PPI), ("REGISTER", P, h.handlers[1], 0, 0, 0), ("ENABLE", P), ("PE_UNMASK",),
                        ("BIND", SPI), ("REGISTER", S, h.handlers[0], 0, 0, 0), ("ENABLE", S),
                        ("CPU_ON", cpu_affinity(1), h.spin, 0)):
        h.call(0, name, *args)
    h.run(SETTLE + 123)
    h.call(1, "PE_UNMASK")
    h.machine.gic.set_pending(PPI, True, 0)
    h.machine.gic.set_pending(SPI, True)
    h.run(SETTLE)
    assert [d.event.number for d in h.sdei.pes[1].stack] == [S]
    h.call(1, "COMPLETE", 0)
    h.reset()
    # The same state, part by part, as the new platform's (the image differs in its file's path).
    state = h.machine.snapshot()
    assert (state.ram, state.cpus, state.vcpus, state.parts, state.scheduler[0], state.trace) \
        == (booted.ram, booted.cpus, booted.vcpus, booted.parts, booted.scheduler[0], booted.trace)
    assert script(harness) == fresh
