"""Reset and snapshot (sdeilab.machine.state, ``Machine.reset``/``snapshot``/``restore``).

The claims: a snapshot taken anywhere, restored, runs on exactly as the run it was taken from
(the same facts at the same seqs, the same RAM, the same UART bytes), any number of times; a
reset machine is a new one; the trace goes back with a restore. The guests are the SDEI
scenarios on 4 CPUs, with snapshots taken while a CPU_ON is pending, while an SDEI handler runs
and while an event is pending, under the profiles with EL3 firmware, KVM's SDEI and no SDEI.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import pytest

from sdeilab.firmware.profiles import profile_named
from sdeilab.lab import session as session_module
from sdeilab.lab.platform import Platform, make_platform
from sdeilab.lab.session import Session
from sdeilab.linux import LinuxPackagesMissing, busybox, kernel_image, write_initramfs
from sdeilab.machine.machine import NOT_STATE, SCHEDULER_STATE, Machine
from sdeilab.machine.outcome import StopReason
from sdeilab.machine.state import FieldState, MachineSnapshot
from sdeilab.machine.vcpu import VcpuState
from sdeilab.toolchain import build_source_text
from sdeilab.trace import Fact, IrqAsserted, PowerTransition, SdeiDispatch, SdeiTransition, SmcccCall, TraceLog
from tests.test_compiled_hooks import SVC_LOOP

GUESTS = Path(__file__).resolve().parent.parent / "guests" / "sdei"
CPUS = 4
STEP = 997  # instructions between looks at the machine while searching for a moment (a prime: no beat with quanta)
END = 50_000_000


def elf(name: str, profile: str) -> Path:
    """The build whose conduit the profile answers: HVC where it can, else SMC."""
    return GUESTS / (f"{name}.elf" if "hvc" in profile_named(profile).conduits else f"{name}-smc.elf")


@dataclass(frozen=True)
class Run:
    facts: list[Fact]
    ram: bytes
    uart: bytes
    reason: StopReason
    retired: int


def finish(machine: Machine, budget: int = END) -> Run:
    outcome = machine.run(budget, debugger=True)
    return Run(list(machine.trace), bytes(machine.ram), bytes(machine.uart_output), outcome.reason, machine.retired)


class _Watched(TraceLog):
    """A trace that stops the machine right after each fact of ``kinds`` (as the debugger's break_on)."""

    def __init__(self, kinds: tuple[type[Fact], ...]) -> None:
        super().__init__()
        self.kinds = kinds
        self.machine: Machine | None = None

    def add(self, kind: type[Fact], cpu: int, vtime: int, *payload: object) -> None:
        super().add(kind, cpu, vtime, *payload)
        if self.machine is not None and issubclass(kind, self.kinds):
            self.machine.request_break(StopReason.BREAK, kind.__name__)


def loaded(name: str, profile: str, trace: TraceLog | None = None) -> Platform:
    platform = make_platform(CPUS, profile, trace=trace)
    platform.load(elf(name, profile))
    return platform


def moments(name: str, profile: str) -> tuple[Platform, dict[str, MachineSnapshot]]:
    """A platform running the guest, and snapshots it took at interesting moments of the run:
    a CPU_ON accepted and not yet started, an SDEI handler running, an SDEI event pending on a
    PE, several CPUs on. The run stops after each power transition and SDEI call or dispatch."""
    trace = _Watched((PowerTransition, SdeiTransition, SmcccCall))
    platform = loaded(name, profile, trace)
    machine, sdei = platform.machine, platform.sdei
    trace.machine = machine
    wanted: dict[str, MachineSnapshot] = {}
    tests = {
        "cpu-on-pending": lambda: any(v.state is VcpuState.ON_PENDING for v in machine.vcpus),
        "handler-running": lambda: sdei is not None and any(pe.stack for pe in sdei.pes),
        "event-pending": lambda: sdei is not None and any(pe.pending for pe in sdei.pes),
        "several-cpus-on": lambda: sum(v.state is VcpuState.ON for v in machine.vcpus) > 1,
    }
    while machine.retired < END and len(wanted) < len(tests):
        outcome = machine.run(STEP, debugger=True)
        for label, holds in tests.items():
            if label not in wanted and holds():
                wanted[label] = machine.snapshot()
        if outcome.reason not in (StopReason.BUDGET, StopReason.BREAK):
            break
    trace.machine = None
    return platform, wanted


# --- snapshot, run, restore, run ----------------------------------------------------------------
CASES = [("cpu_on_masking", "virt"), ("tftf_rm_any", "virt"), ("linux_client", "virt"),
         ("tftf_signal_all", "firmware"), ("nesting", "firmware"), ("tftf_parallel", "firmware"),
         ("tftf_parallel", "kvm"), ("cpu_on_masking", "kvm-sdei")]


@pytest.mark.parametrize(("name", "profile"), CASES)
def test_a_restored_snapshot_runs_on_as_the_run_it_was_taken_from(name: str, profile: str) -> None:
    reference = finish(loaded(name, profile).machine)
    assert reference.reason is StopReason.SYSTEM_OFF, reference
    platform, taken = moments(name, profile)
    machine = platform.machine
    must = set()
    if any(isinstance(f, PowerTransition) and f.new == VcpuState.ON_PENDING.value for f in reference.facts):
        must |= {"cpu-on-pending", "several-cpus-on"}
    if any(isinstance(f, SdeiDispatch) for f in reference.facts):
        must.add("handler-running")
    assert must <= set(taken), sorted(taken)
    # Latest first: each restore goes back along the trace (a later one after an earlier fails).
    for label, snapshot in sorted(taken.items(), key=lambda item: -item[1].retired):
        for attempt in range(2):  # a snapshot is a value: restoring it twice gives the same run twice
            machine.restore(snapshot)
            assert machine.retired == snapshot.retired and len(machine.trace) == snapshot.trace.length
            again = finish(machine)
            where = f"{label} at {snapshot.retired} instructions, restore #{attempt + 1}"
            assert again.retired == reference.retired, where
            assert again.facts == reference.facts, where
            assert again.ram == reference.ram, where
            assert again.uart == reference.uart, where


def test_snapshot_run_n_restore_run_n_gives_the_same_facts_ram_and_output() -> None:
    """The issue's words, in the middle of a 4-CPU run with SDEI events in flight."""
    platform = loaded("tftf_rm_any", "virt")
    machine = platform.machine
    machine.run(2_300_000, debugger=True)  # all four CPUs on, RM_ANY events about to fly
    snapshot = machine.snapshot()
    start = len(machine.trace)
    runs = []
    for _ in range(3):
        machine.restore(snapshot)
        outcome = machine.run(400_000, debugger=True)
        assert outcome.reason is StopReason.BUDGET
        runs.append((machine.trace[start:], bytes(machine.ram), bytes(machine.uart_output), machine.now()))
    assert runs[0][0], "nothing happened in those instructions: pick a busier stretch"
    assert any(isinstance(f, SmcccCall) and f.name.startswith("SDEI") for f in runs[0][0])
    assert runs[0] == runs[1] == runs[2]


def test_a_snapshot_does_not_change_the_run() -> None:
    """Taking snapshots (and stopping to take them) leaves the run as it is without them."""
    reference = finish(loaded("tftf_signal_all", "virt").machine)
    platform = loaded("tftf_signal_all", "virt")
    machine = platform.machine
    while machine.run(150_001, debugger=True).reason is StopReason.BUDGET:
        machine.snapshot()
    assert list(machine.trace) == reference.facts and bytes(machine.uart_output) == reference.uart


@pytest.mark.fast_paths("registers", "pstate", "aarch32", "record")  # the compiled exception entry needs them all
def test_a_restored_snapshot_runs_on_alike_with_exceptions_taken_in_the_engine(tmp_path: Path) -> None:
    """Outside a debugger the engine takes SVCs itself (sdeilab.cpu.native): the vector table it
    last saw checked is part of a CPU's snapshot, and a run from a restore is the run again."""
    elf = build_source_text(SVC_LOOP, "c", tmp_path / "svc_loop.elf")
    platform = make_platform(1)
    platform.load(elf)
    machine = platform.machine
    assert machine.run(20_000).reason is StopReason.BUDGET  # about 2,000 of the 5,000 SVCs
    snapshot = machine.snapshot()
    backend = machine.vcpus[0].backend
    before = backend.exceptions_in_engine  # type: ignore[attr-defined]
    first = finish_plain(machine)
    assert first.uart == b"taken 5000\n" and backend.exceptions_in_engine > before  # type: ignore[attr-defined]
    machine.restore(snapshot)
    assert finish_plain(machine) == first
    machine.reset()
    machine.load(elf)
    assert finish_plain(machine).facts == finish_plain(loaded_elf(elf)).facts


def finish_plain(machine: Machine) -> Run:
    """``finish`` outside a debugger: the engine's fast paths on."""
    outcome = machine.run(END)
    return Run(list(machine.trace), bytes(machine.ram), bytes(machine.uart_output), outcome.reason, machine.retired)


def loaded_elf(elf: Path) -> Machine:
    platform = make_platform(1)
    platform.load(elf)
    return platform.machine


# --- reset ------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", ["virt", "firmware", "kvm"])
def test_a_reset_machine_is_a_new_one(profile: str) -> None:
    new = make_platform(CPUS, profile).machine.snapshot()
    platform = loaded("tftf_rm_any", profile)
    machine = platform.machine
    machine.set_breakpoints(frozenset())
    assert finish(machine, 2_000_000).facts
    machine.reset()
    state = machine.snapshot()
    for field in ("retired", "vtime", "trace", "ram", "cpus", "vcpus", "scheduler"):
        assert getattr(state, field) == getattr(new, field), field
    assert dict(state.parts) == dict(new.parts)
    # And a run from reset is a run from new.
    machine.load(elf("tftf_rm_any", profile))
    after_reset = finish(machine)
    fresh = finish(loaded("tftf_rm_any", profile).machine)
    assert after_reset == fresh


def test_reset_after_a_fault_and_with_a_guest_that_wrote_everywhere() -> None:
    platform = make_platform(2)
    machine = platform.machine
    machine.write_ram(machine.ram_region.base + machine.ram_region.size - 8, b"\xff" * 8)
    machine.write_ram(machine.ram_region.base, b"\x00\x00\x00\x00")  # UDF #0 at the entry: a fault
    machine.load(GUESTS / "nesting.elf")
    machine.write_ram(machine.ram_region.base + 0x100_0000, b"x" * 100_000)
    finish(machine)
    machine.reset()
    assert not any(bytes(machine.ram))
    assert machine.image is None and all(v.state is VcpuState.OFF for v in machine.vcpus)
    assert machine.snapshot() == make_platform(2).machine.snapshot()


# --- the trace goes back --------------------------------------------------------------------------
def test_restore_takes_the_trace_back_and_refuses_a_history_it_no_longer_holds() -> None:
    platform = loaded("tftf_serial", "virt")
    machine = platform.machine
    machine.run(200_000, debugger=True)
    early = machine.snapshot()
    machine.run(600_000, debugger=True)
    late = machine.snapshot()
    assert late.trace.length > early.trace.length
    machine.restore(early)
    assert len(machine.trace) == early.trace.length
    with pytest.raises(ValueError, match="no longer holds"):
        machine.restore(late)  # its facts are gone: restores go back, never forward
    machine.run(600_000, debugger=True)
    machine.restore(late)  # the same history again: its facts are there again
    assert machine.snapshot() == late
    machine.reset()
    with pytest.raises(ValueError, match="no longer holds"):
        machine.restore(early)


def test_a_snapshot_of_another_machine_is_refused() -> None:
    snapshot = make_platform(2).machine.snapshot()
    with pytest.raises(ValueError, match="built otherwise"):
        make_platform(3).machine.restore(snapshot)
    with pytest.raises(ValueError, match="built otherwise"):
        make_platform(2, "kvm").machine.restore(snapshot)  # no SDEI dispatcher attached


def _log(facts: list[tuple[int, int]]) -> TraceLog:
    log = TraceLog()
    for n, (cpu, vtime) in enumerate(facts):
        log.add(IrqAsserted, cpu, vtime, 32 + n % 7, "test")
    return log


def test_trace_rewind_leaves_the_log_and_its_indexes_as_if_the_rest_had_never_been_added() -> None:
    facts = [(n % 3, (n * 7919) % 5000) for n in range(1000)]
    for cut in (0, 1, 63, 64, 65, 500, 999, 1000):
        log = _log(facts[:cut])
        mark = log.mark()
        whole = _log(facts[:cut])
        for cpu, vtime in facts[cut:]:
            log.add(IrqAsserted, cpu, vtime, 40, "test")
        log.seqs(IrqAsserted)  # indexed past the mark
        log.rewind(mark)
        assert list(log) == list(whole)
        for query in ({}, {"cpu": 1}, {"start": 1000, "end": 2000}, {"cpu": 2, "start": 4000}):
            assert log.seqs(IrqAsserted, **query) == whole.seqs(IrqAsserted, **query), (cut, query)  # type: ignore[arg-type]
        assert log.cpus() == whole.cpus() and log.max_vtime() == whole.max_vtime()
        assert log.count(IrqAsserted) == whole.count(IrqAsserted)


def test_trace_rewind_past_the_limit_counts_the_dropped_facts_again() -> None:
    log = TraceLog(limit=5)
    for n in range(3):
        log.add(IrqAsserted, 0, n, 33, "test")
    mark = log.mark()
    for n in range(3, 9):
        log.add(IrqAsserted, 0, n, 33, "test")
    assert log.dropped == 4
    log.rewind(mark)
    assert len(log) == 3 and log.dropped == 0 and log.dropped_at is None
    other = TraceLog()
    other.add(IrqAsserted, 1, 0, 33, "test")
    assert not other.holds(mark)
    with pytest.raises(ValueError):
        other.rewind(mark)


# --- nothing is forgotten -------------------------------------------------------------------------
def test_every_attribute_of_the_machine_is_state_or_wiring() -> None:
    """A new attribute must be put in SCHEDULER_STATE (a snapshot holds it) or NOT_STATE."""
    machine = make_platform(2).machine
    unknown = set(vars(machine)) - set(SCHEDULER_STATE) - NOT_STATE
    assert unknown == set(), f"classify these in sdeilab.machine.machine: {sorted(unknown)}"


# What each part keeps besides its state: callbacks, its place on the board, configuration.
_WIRING = {"_record", "_cpu_online", "_aff_to_cpu", "_spi_bits", "num_cpus", "num_spis", "num_irqs", "cpu",
           "_set_level", "set_level", "_set_irq", "_on_tx", "epoch", "machine", "dispatcher", "platform",
           "quirks", "affinity_fields_only", "_subscribers", "cpu_off_vetoes", "_on_pending"}


def test_every_attribute_of_every_part_is_state_or_wiring() -> None:
    platform = make_platform(2)
    parts = platform.machine._parts
    assert {"gic", "uart0", "sp804", "rtc", "timer0", "pmu1", "watchpoints1", "psci", "sdei"} <= set(parts)
    for name, part in parts.items():
        assert isinstance(part, FieldState), name
        unknown = set(vars(part)) - set(part.STATE) - _WIRING
        assert unknown == set(), f"{name}: classify {sorted(unknown)} as state (STATE) or wiring"


# --- the debugger's checkpoints (sdeilab.lab.session) ---------------------------------------
def _state(session: Session) -> tuple[object, ...]:
    machine = session.machine
    return (session.retired, [session.registers(cpu) for cpu in range(session.cpus)],
            [v.state for v in machine.vcpus], list(session.trace), bytes(machine.ram), session.uart, machine.now())


@pytest.fixture
def every_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint at every chunk of a run: every step back goes through a restore."""
    monkeypatch.setattr(session_module, "CHECKPOINT_SECONDS", 0.0)


@pytest.mark.usefixtures("every_chunk")
def test_step_back_through_checkpoints_lands_where_a_run_from_the_start_does() -> None:
    guest = elf("tftf_rm_any", "virt")
    session = Session(guest, cpus=CPUS)
    session.run(2_600_000)
    assert len(session.checkpoints) > 5 and session.checkpoints[0][0] == 0
    for count in (1, 7, 300_000, 1_000_000, 1):
        session.step_back(count)
        fresh = Session(guest, cpus=CPUS)
        fresh.run(session.retired)
        assert _state(session) == _state(fresh), count
    # Forward again from there: the same history as a run that never stepped back.
    session.run(400_000)
    fresh = Session(guest, cpus=CPUS)
    fresh.run(session.retired)
    assert _state(session) == _state(fresh)


@pytest.mark.usefixtures("every_chunk")
def test_step_back_to_a_fact_lands_where_a_break_on_it_stops() -> None:
    guest = elf("tftf_signal_all", "virt")
    session = Session(guest, cpus=CPUS)
    session.run()
    dispatches = [f for f in session.trace if isinstance(f, SdeiDispatch)]
    assert len(dispatches) >= 3
    session.step_back_to(0)  # a fact that loading the guest recorded: the guest as loaded
    assert session.retired == 0 and len(session.trace) >= 1
    session.run()
    for fact in (dispatches[-1], dispatches[1]):
        info = session.step_back_to(fact.seq)
        assert info.fact == fact
        fresh = Session(guest, cpus=CPUS)
        fresh.run_until(lambda f, seq=fact.seq: f.seq == seq)
        assert _state(session) == _state(fresh)


def test_checkpoints_stay_within_their_count_and_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_module, "CHECKPOINT_SECONDS", 0.0)
    monkeypatch.setattr(session_module, "CHECKPOINT_COUNT", 6)
    guest = elf("tftf_state", "virt")
    session = Session(guest, cpus=CPUS)
    session.run(3_000_000)
    kept = session.checkpoints
    assert len(kept) == 6 and kept[0][0] == 0 and kept[-1][0] > 2_500_000
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(kept)]
    assert gaps[-1] <= gaps[0], f"old checkpoints go first: {kept}"
    session.step_back(1)
    fresh = Session(guest, cpus=CPUS)
    fresh.run(session.retired)
    assert _state(session) == _state(fresh)
    # A memory budget smaller than what one checkpoint holds leaves the first and the last.
    monkeypatch.setattr(session_module, "CHECKPOINT_MEMORY", 1)
    small = Session(guest, cpus=CPUS)
    small.run(1_500_000)
    assert len(small.checkpoints) == 2 and small.checkpoint_bytes > 1


def test_reset_restores_the_loaded_guest_on_the_same_platform() -> None:
    guest = elf("tftf_parallel", "virt")
    session = Session(guest, cpus=CPUS)
    platform = session.platform
    loaded_state = _state(session)
    session.run(700_000)
    info = session.reset()
    assert info.reason == "reset" and info.executed == -700_000
    assert session.platform is platform and _state(session) == loaded_state
    assert _state(Session(guest, cpus=CPUS)) == loaded_state
    session.reset(reload=True)
    assert session.platform is not platform and _state(session) == loaded_state


@pytest.mark.usefixtures("every_chunk")
def test_an_event_the_host_raised_is_replayed_and_another_course_forgets_it() -> None:
    session = Session(elf("tftf_rm_any", "virt"), cpus=CPUS)
    sdei = session.platform.sdei
    assert sdei is not None
    session.run(300_000)
    raised_at = session.retired
    session.raise_event(5000, 3)  # registered by nobody: it stays pending on CPU 3 a while
    session.run(1000)
    session.run(10)
    assert 5000 in sdei.pes[3].pending
    session.step_back(5)  # after it: part of the history
    assert 5000 in sdei.pes[3].pending
    session.step_back(2000)  # before it: not raised yet...
    assert 5000 not in sdei.pes[3].pending and session.retired < raised_at
    session.run(raised_at - session.retired)  # ... and raised again where it was, by the replay
    assert 5000 in sdei.pes[3].pending
    assert session.host_actions == [(raised_at, "SDEI event 5000 raised on CPU 3")]
    session.step_back(2000)
    before = session.retired
    session.raise_event(5001, 2)  # another course from here: the later raise is not history any more
    assert all(retired <= before for retired, _ in session.checkpoints)
    session.run(raised_at + 10 - session.retired)
    assert 5000 not in sdei.pes[3].pending
    assert session.host_actions == [(before, "SDEI event 5001 raised on CPU 2")]


# --- the Linux boot ---------------------------------------------------------------------------------
@pytest.mark.linux
def test_snapshot_run_restore_run_in_the_linux_boot(tmp_path: Path) -> None:
    """Snapshot, run N, restore, run N again, in the middle of Debian's kernel booting on 2 CPUs
    (the MMU on, both CPUs on, interrupts and timers live): the same facts, RAM and console bytes."""
    try:
        kernel = kernel_image()
        initrd = write_initramfs(tmp_path / "initramfs.cpio.gz", busybox())
    except LinuxPackagesMissing as error:
        pytest.fail(str(error), pytrace=False)
    platform = make_platform(2)
    platform.load_kernel(kernel, initrd)
    machine = platform.machine
    assert machine.run(300_000_000, debugger=True).reason is StopReason.BUDGET
    assert all(v.state is not VcpuState.OFF for v in machine.vcpus)
    snapshot = machine.snapshot()
    start = len(machine.trace)
    runs = []
    for _ in range(2):
        machine.restore(snapshot)
        assert machine.run(40_000_000, debugger=True).reason is StopReason.BUDGET
        runs.append((machine.trace[start:], bytes(machine.ram), bytes(machine.uart_output), machine.now()))
    assert runs[0][0] and runs[0][2] != bytes(snapshot.scheduler[0][0])  # type: ignore[index]
    assert runs[0] == runs[1]
