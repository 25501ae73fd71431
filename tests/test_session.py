"""The debugger session (sdeilab.lab.session) on real guests, and the machine support under it:
exact steps, stops that do not change the guest's history, step back by replay, address and
firmware-event breakpoints, pause from another thread and by Ctrl-C, run_until, reset, profiles."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from sdeilab.lab.platform import make_platform
from sdeilab.lab.session import REGISTERS, Session, SessionBusy
from sdeilab.machine.disasm import disassemble_one
from sdeilab.machine.loader import GuestLoadError
from sdeilab.machine.outcome import StopReason
from sdeilab.machine.vcpu import VcpuState
from sdeilab.toolchain import build_source_text
from sdeilab.trace import ExceptionTaken, PowerTransition, SdeiDispatch, SmcccCall

ROOT = Path(__file__).resolve().parent.parent
TFTF_STATE = ROOT / "guests" / "sdei" / "tftf_state.elf"
SMP_BOOT = ROOT / "guests" / "smp_boot.elf"
TIMER_IRQ = ROOT / "guests" / "timer_irq.elf"

SPIN = """
#include "guest.h"
/* Runs until someone stops it: only a pause can end a run of this guest. */
int main(void)
{
    puts("spinning\\n");
    for (volatile unsigned long i = 0;; i++)
        ;
}
"""

# An interrupt that waits behind PSTATE.I: the machine polls for it in short slices counted
# from where a slice starts, so a debugger stop that started a new slice would move the moment
# the IRQ is taken. The test steps through the unmask one instruction at a time.
MASKED_IRQ = """
#include "guest.h"
static volatile unsigned taken;
void handle_irq(void)
{
    uint32_t intid = gic_iar();
    if (intid == GIC_SPURIOUS_INTID)
        return;
    write_sysreg(cntv_ctl_el0, 0);
    isb();
    taken++;
    gic_eoir(intid);
}
static void spin(unsigned long n)
{
    for (volatile unsigned long i = 0; i < n; i++)
        ;
}
int main(void)
{
    gic_dist_init();
    gic_redist_init();
    gic_cpu_init();
    gic_enable_ppi(TIMER_VIRT_INTID, 0x80);
    write_sysreg(cntv_tval_el0, 10);
    write_sysreg(cntv_ctl_el0, 1);
    isb();
    spin(2000);     /* the timer fires while IRQs are masked */
    irq_enable();
    spin(2000);
    puts(taken ? "taken\\n" : "not taken\\n");
    psci_system_off();
}
"""

BRANCHES = ("b", "bl", "br", "blr", "ret", "cbz", "cbnz", "tbz", "tbnz", "hvc", "smc", "svc", "eret", "wfi", "brk")


@pytest.fixture(scope="module")
def spin_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_source_text(SPIN, "c", tmp_path_factory.mktemp("session") / "spin.elf")


@pytest.fixture(scope="module")
def masked_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_source_text(MASKED_IRQ, "c", tmp_path_factory.mktemp("session") / "masked.elf")


def facts(session_or_trace: object) -> list[tuple[object, ...]]:
    trace = getattr(session_or_trace, "trace", session_or_trace)
    return [(type(f).__name__, f.cpu, f.vtime, tuple(f.payload().values())) for f in trace]  # type: ignore[attr-defined]


def all_registers(session: Session) -> list[dict[str, int]]:
    return [session.registers(cpu) for cpu in range(session.cpus)]


# --------------------------------------------------------------------------- steps


def test_step_is_exactly_one_instruction() -> None:
    session = Session(TFTF_STATE)
    for _ in range(300):
        before = session.retired
        per_cpu = list(session.machine.cpu_retired)
        pcs = [session.pc(cpu) for cpu in range(session.cpus)]
        info = session.step()
        assert info.reason == "budget" and info.executed == 1
        assert session.retired == before + 1
        cpu = info.cpu
        assert cpu is not None
        assert session.machine.cpu_retired[cpu] == per_cpu[cpu] + 1
        assert [n for i, n in enumerate(session.machine.cpu_retired) if i != cpu] == \
               [n for i, n in enumerate(per_cpu) if i != cpu]
        word = session.machine.read_ram(pcs[cpu], 4)
        assert word is not None
        mnemonic = disassemble_one(word, pcs[cpu]).split()[0].split(".")[0]
        if mnemonic not in BRANCHES:
            assert session.pc(cpu) == pcs[cpu] + 4, disassemble_one(word, pcs[cpu])
        assert "PC" in session.cpu_view(cpu).changed


def test_steps_and_a_single_run_reach_the_same_state() -> None:
    stepped = Session(TFTF_STATE)
    for _ in range(500):
        stepped.step()
    platform = make_platform(4)
    platform.load(TFTF_STATE)
    outcome = platform.machine.run(500, debugger=True)
    assert outcome.reason is StopReason.BUDGET and platform.machine.retired == 500
    for cpu in range(4):
        backend = platform.machine.vcpus[cpu].backend
        assert stepped.registers(cpu)["PC"] == backend.pc
        assert [stepped.registers(cpu)[f"x{n}"] for n in range(31)] == backend.xs(31)
    assert facts(stepped) == facts(platform.machine)


@pytest.mark.parametrize("guest, chunk", [(TFTF_STATE, 7919), (SMP_BOOT, 313), (TIMER_IRQ, 99_991)])
def test_a_run_stopped_anywhere_leaves_the_same_trace_as_one_run(guest: Path, chunk: int) -> None:
    # What makes step_back exact: the guest's history does not depend on where a debugger stopped.
    whole = make_platform(4)
    whole.load(guest)
    assert whole.run().reason is StopReason.SYSTEM_OFF
    session = Session(guest)
    while not session.step(chunk).final:
        pass
    assert session.last_stop.reason == "system-off"
    assert session.retired == whole.machine.retired
    assert facts(session) == facts(whole.machine)
    assert session.uart == bytes(whole.machine.uart_output)


def test_a_stop_while_an_irq_waits_behind_the_mask_does_not_move_it(masked_elf: Path) -> None:
    whole = make_platform(1)
    whole.load(masked_elf)
    assert whole.run().reason is StopReason.SYSTEM_OFF
    taken = whole.machine.trace.of_kind(ExceptionTaken)
    assert [f.kind for f in taken] == ["irq"], taken  # type: ignore[attr-defined]
    session = Session(masked_elf, cpus=1)
    session.step(taken[0].vtime - 1500)
    for _ in range(1600):  # a stop at every instruction around the unmask and the poll
        session.step()
    session.run()
    assert session.uart == b"taken\n"
    assert facts(session) == facts(whole.machine)


# --------------------------------------------------------------------------- step back


def test_step_back_then_step_gives_identical_registers() -> None:
    session = Session(TFTF_STATE)
    session.break_on("SDEI_EVENT_REGISTER", cpu=1)
    assert session.run().reason == "break"
    session.clear_breakpoints()
    history = []
    for _ in range(6):
        history.append((session.retired, all_registers(session), facts(session)))
        session.step()
    history.append((session.retired, all_registers(session), facts(session)))
    info = session.step_back(3)
    assert info.reason == "step-back" and info.executed == -3
    assert (session.retired, all_registers(session), facts(session)) == history[3]
    assert session.step().executed == 1
    assert (session.retired, all_registers(session), facts(session)) == history[4]
    session.step_back(4)
    assert (session.retired, all_registers(session), facts(session)) == history[0]
    session.step(6)
    assert (session.retired, all_registers(session), facts(session)) == history[6]


def test_step_back_far_and_forward_again_replays_the_same_history() -> None:
    session = Session(TFTF_STATE)
    end = session.run()
    assert end.reason == "system-off"
    final = (session.retired, all_registers(session), facts(session), session.uart)
    session.step_back(1_000_000)
    assert session.retired == end.retired - 1_000_000
    assert len(session.trace) < len(final[2]) and facts(session) == final[2][:len(session.trace)]
    assert session.run().reason == "system-off"
    assert (session.retired, all_registers(session), facts(session), session.uart) == final
    session.step_back(1)
    assert session.step().reason == "system-off"  # the last instruction is the SYSTEM_OFF call


def test_register_changes_are_those_since_the_previous_stop() -> None:
    session = Session(SMP_BOOT)
    session.add_breakpoint("secondary_main")
    session.run()
    before = session.registers(1)
    session.step()
    view = session.cpu_view(1)
    assert view.changed == frozenset(n for n in REGISTERS if view.registers[n] != before[n])
    assert "PC" in view.changed
    session.step_back(1)
    assert session.cpu_view(1).registers == before
    assert "PC" in session.cpu_view(1).changed  # against the stop before the step back


# --------------------------------------------------------------------------- breakpoints


def test_break_on_sdei_event_complete_on_cpu_2() -> None:
    session = Session(TFTF_STATE)
    session.break_on("SDEI_EVENT_COMPLETE", cpu=2)
    info = session.run()
    assert info.reason == "break", info
    fact = info.fact
    assert isinstance(fact, SmcccCall) and fact.name == "SDEI_EVENT_COMPLETE" and fact.cpu == 2
    assert session.trace[fact.seq] == fact
    calls = session.trace.of_kind(SmcccCall)
    assert [f for f in calls if f.name == "SDEI_EVENT_COMPLETE" and f.cpu == 2] == [fact]  # type: ignore[attr-defined]
    assert calls[-1] == fact or all(f.cpu != 2 for f in calls[calls.index(fact) + 1:])
    # It stopped right after the call: replaying to the same count shows the same machine.
    replay = make_platform(4)
    replay.load(TFTF_STATE)
    replay.machine.run(info.retired, debugger=True)
    assert replay.machine.vcpus[2].backend.pc == session.pc(2)
    assert [f.seq for f in replay.machine.trace][:fact.seq + 1] == list(range(fact.seq + 1))
    # The next run stops at the next one on CPU 2.
    again = session.run()
    assert again.reason == "break" and again.fact is not None and again.fact.seq > fact.seq
    assert again.fact.cpu == 2 and again.fact.name == "SDEI_EVENT_COMPLETE"  # type: ignore[attr-defined]


def test_break_on_cpu_on_stops_at_each_call() -> None:
    session = Session(SMP_BOOT)
    session.break_on("CPU_ON")
    targets = []
    while (info := session.run()).reason == "break":
        assert isinstance(info.fact, SmcccCall) and info.fact.name in ("CPU_ON", "CPU_ON64")
        targets.append(info.fact.args[0])
        if len(targets) <= 3:  # the call has returned: the target is on its way up
            state = session.machine.vcpus[len(targets)].state
            assert state in (VcpuState.ON_PENDING, VcpuState.ON), state
    assert info.reason == "system-off"
    assert targets == [1, 2, 3, 4]  # CPU_ON for MPIDR 4 fails: no such CPU with 4 CPUs
    assert session.uart_text().count("CPU_ON(") == 4


def test_address_breakpoint_stops_with_pc_at_the_address() -> None:
    session = Session(SMP_BOOT)
    point = session.add_breakpoint("secondary_main")
    assert point.label == "secondary_main"
    hits = []
    while (info := session.run()).reason == "breakpoint":
        cpu = info.cpu
        assert cpu is not None
        assert session.pc(cpu) == point.address
        line = next(x for x in session.disassembly(cpu) if x.current)
        assert line.address == point.address and line.breakpoint and line.label == "secondary_main"
        hits.append(cpu)
        # The instruction at the breakpoint has not executed: a replay to the same count is there too.
        replay = make_platform(4)
        replay.load(SMP_BOOT)
        replay.machine.run(info.retired, debugger=True)
        assert replay.machine.vcpus[cpu].backend.pc == point.address
        assert replay.machine.vcpus[cpu].backend.xs(31) == [session.registers(cpu)[f"x{n}"] for n in range(31)]
    assert info.reason == "system-off"
    assert hits == [1, 2, 3]
    assert session.uart == bytes(_plain_run(SMP_BOOT).machine.uart_output)


def test_breakpoint_for_one_cpu_and_removal() -> None:
    session = Session(SMP_BOOT)
    session.add_breakpoint("secondary_main", cpu=3)
    info = session.run()
    assert info.reason == "breakpoint" and info.cpu == 3
    session.remove_breakpoint("secondary_main")
    assert session.breakpoints == []
    assert session.run().reason == "system-off"


def test_stepping_onto_a_breakpoint_then_running_does_not_stop_there_again() -> None:
    session = Session(SMP_BOOT)
    address = session.address_of("main")
    while session.pc(0) != address:
        session.step()
    session.add_breakpoint(address)
    assert session.step().executed == 1  # steps over it
    session.step_back(1)
    assert session.run().reason == "system-off"  # main runs once: nothing else hits it


def test_unknown_names_are_refused() -> None:
    session = Session(SMP_BOOT)
    with pytest.raises(ValueError, match="no symbol"):
        session.add_breakpoint("no_such_symbol")
    with pytest.raises(ValueError, match="neither an SMCCC function"):
        session.break_on("SDEI_EVENT_COMPLET")
    assert session.break_on("PSCI_CPU_ON").matches  # PSCI_ spelling of CPU_ON
    assert session.break_on("SdeiDispatch", cpu=1).name == "SdeiDispatch"


# --------------------------------------------------------------------------- pause


def test_pause_from_another_thread(spin_elf: Path) -> None:
    session = Session(spin_elf, cpus=2)
    pauser = threading.Timer(0.5, session.pause)
    pauser.start()
    began = time.monotonic()
    info = session.run()
    pauser.join()
    assert info.reason == "paused", info
    assert time.monotonic() - began < 20
    assert info.retired > 0 and session.uart == b"spinning\n"
    assert session.trace.of_kind(PowerTransition)  # nothing lost
    assert session.step(1000).reason == "budget"  # and it goes on from there
    assert session.retired == info.retired + 1000


def test_a_run_in_a_thread_is_paused_from_the_main_thread(spin_elf: Path) -> None:
    session = Session(spin_elf, cpus=1)
    results = []
    runner = threading.Thread(target=lambda: results.append(session.run()))
    runner.start()
    deadline = time.monotonic() + 10
    while not session.running and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(SessionBusy):
        session.step()
    time.sleep(0.2)
    session.pause()
    runner.join(20)
    assert not runner.is_alive()
    assert results[0].reason == "paused" and results[0].retired > 0


def test_ctrl_c_pauses_a_run_without_an_exception(spin_elf: Path) -> None:
    session = Session(spin_elf, cpus=1)

    def interrupt() -> None:
        while not session.running:
            time.sleep(0.01)
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)

    handler = signal.getsignal(signal.SIGINT)
    sender = threading.Thread(target=interrupt)
    sender.start()
    info = session.run()  # only a pause can end this run
    sender.join()
    assert info.reason == "paused"
    assert signal.getsignal(signal.SIGINT) is handler


# --------------------------------------------------------------------------- run_until, step_firmware, reset


def test_run_until_a_fact() -> None:
    session = Session(TFTF_STATE)
    info = session.run_until(lambda f: isinstance(f, SdeiDispatch) and f.cpu == 3)
    assert info.reason == "break" and isinstance(info.fact, SdeiDispatch) and info.fact.cpu == 3
    assert session.pc(3) == info.fact.handler  # stopped at the handler's first instruction
    assert session.run_until(lambda f: False, max_instructions=5000).reason == "budget"
    assert session.retired == info.retired + 5000


def test_run_until_a_machine_condition() -> None:
    def cpu1_ran(s: Session) -> bool:
        return s.machine.cpu_retired[1] > 0

    coarse = Session(SMP_BOOT).run_until(cpu1_ran, every=1000)
    assert coarse.reason == "break" and coarse.executed % 1000 == 0
    exact_session = Session(SMP_BOOT)
    exact = exact_session.run_until(cpu1_ran, every=1)
    assert exact.reason == "break"
    assert exact_session.machine.cpu_retired[1] == 1  # exactly the first instruction CPU 1 ran
    assert exact_session.pc(1) == exact_session.address_of("secondary_entry") + 4
    assert exact.retired <= coarse.retired < exact.retired + 1000


def test_step_firmware_visits_every_call_and_dispatch_in_order() -> None:
    reference = make_platform(4)
    reference.load(SMP_BOOT)
    reference.run()
    expected = [f.seq for f in reference.machine.trace.of_kind(SmcccCall, SdeiDispatch)]
    session = Session(SMP_BOOT)
    seen = []
    while (info := session.step_firmware()).reason == "break":
        assert info.fact is not None
        seen.append(info.fact.seq)
    assert info.reason == "system-off"
    assert seen == expected[:-1]  # SYSTEM_OFF ends the run instead
    assert facts(session) == facts(reference.machine)


def test_reset_starts_over_and_keeps_breakpoints() -> None:
    session = Session(SMP_BOOT)
    session.add_breakpoint("secondary_main")
    session.run()
    session.run()
    assert session.uart
    info = session.reset()
    assert info.reason == "reset" and session.retired == 0 and session.uart == b""
    assert [type(f).__name__ for f in session.trace] == ["PowerTransition"]  # the boot of CPU 0
    assert session.run().reason == "breakpoint" and session.pc(session.last_stop.cpu or 0) == \
        session.address_of("secondary_main")


def test_profile_switch_loads_the_smc_build_and_quirks_reach_the_firmware() -> None:
    session = Session(TFTF_STATE)
    session.configure(profile="firmware")
    assert session.guest_file.name == "tftf_state-smc.elf"
    assert session.run().reason == "system-off"
    assert session.uart_text().endswith("tftf_state: PASS\n")
    assert {f.conduit for f in session.trace.of_kind(SmcccCall)} == {"smc"}  # type: ignore[attr-defined]
    session.configure(profile="virt", quirks=["version_1_1"])
    assert session.guest_file.name == "tftf_state.elf" and session.quirks.version_1_1
    session.break_on("SDEI_VERSION")
    session.run()
    session.step_firmware()  # the return is recorded with the call; x0 holds the answer
    version = next(f for f in session.trace.of_kind(SmcccCall) if f.name == "SDEI_VERSION")  # type: ignore[attr-defined]
    answers = [r for r in session.trace[version.seq:] if type(r).__name__ == "SmcccReturn"]
    assert answers[0].results[0] == 0x1_0001_0000_0000  # type: ignore[attr-defined]


def _plain_run(guest: Path):  # type: ignore[no-untyped-def]
    platform = make_platform(4)
    platform.load(guest)
    assert platform.run().reason is StopReason.SYSTEM_OFF
    return platform


def test_a_stop_tells_its_vtime() -> None:
    # A break on a firmware call stops right after the call, which takes no virtual time: the stop's
    # vtime is the fact's. Stepping on adds one instruction's time; stepping back returns to it.
    session = Session(TFTF_STATE)
    session.break_on("SDEI_EVENT_REGISTER", cpu=1)
    info = session.run()
    assert info.reason == "break" and info.fact is not None and info.cpu == 1
    assert info.vtime == info.fact.vtime > 0
    session.clear_breakpoints()
    stepped = session.step()
    assert stepped.vtime > info.vtime
    back = session.step_back(1)
    assert (back.cpu, back.vtime) == (info.cpu, info.vtime)


# --------------------------------------------------------------------------- errors leave the guest intact


@pytest.mark.parametrize("how", ["fact", "every"])
def test_a_condition_that_raises_stops_cleanly_and_the_guest_goes_on(how: str) -> None:
    # The SmcccCall fact is recorded before the firmware answers: an exception escaping from the
    # condition there left x0 holding the function ID and the instruction uncounted, and the
    # guest, run on, printed FAIL. Now the run stops right after the call and the error is raised.
    clean = _plain_run(TFTF_STATE)
    session = Session(TFTF_STATE)
    calls: list[int] = []

    def condition(fact: object) -> bool:
        if type(fact) is SmcccCall:
            calls.append(fact.seq)  # type: ignore[attr-defined]
            if len(calls) == 5:
                raise RuntimeError("the fifth call")
        return False

    def every(s: Session) -> bool:
        if s.retired >= 20_000:
            raise RuntimeError("past 20,000 instructions")
        return False

    with pytest.raises(RuntimeError) as raised:
        if how == "fact":
            session.run_until(condition)
        else:
            session.run_until(every, every=1000)
    stop = session.last_stop
    assert stop.reason == "break" and "raised RuntimeError" in stop.detail
    assert session.retired == stop.retired > 0 and not session.running
    assert "stopped cleanly" in "".join(getattr(raised.value, "__notes__", []))
    if how == "fact":
        fact = stop.fact
        assert fact is not None and fact.seq == calls[-1] and stop.cpu == fact.cpu
        # The call was answered: its return is recorded and x0 holds the result, not the function ID.
        answer = session.trace[fact.seq + 1]
        assert type(answer).__name__ == "SmcccReturn"
        assert session.registers(fact.cpu)["x0"] == answer.results[0] & (1 << 64) - 1  # type: ignore[attr-defined]
        assert session.registers(fact.cpu)["x0"] != fact.fid  # type: ignore[attr-defined]
    assert session.run().reason == "system-off"
    assert session.uart == bytes(clean.machine.uart_output) and session.uart_text().endswith("PASS\n")
    assert facts(session) == facts(clean.machine)


def test_invalid_arguments_are_refused_and_change_nothing() -> None:
    session = Session(SMP_BOOT)
    point = session.add_breakpoint("secondary_main")
    session.step(100)
    platform, position = session.platform, session.retired
    for where in ("-1", -4, 2**70, 1 << 64, "0x40000002"):
        with pytest.raises(ValueError, match=r"not an address|not 4-byte aligned"):
            session.add_breakpoint(where)
        with pytest.raises(ValueError):
            session.remove_breakpoint(where)
    with pytest.raises(TypeError):
        session.add_breakpoint(1.5)  # type: ignore[arg-type]
    assert session.breakpoints == [point]
    for bad_count in (-5, -1):
        with pytest.raises(ValueError, match="at least 0"):
            session.step(bad_count)
        with pytest.raises(ValueError, match="at least 0"):
            session.run(bad_count)
        with pytest.raises(ValueError, match="at least 0"):
            session.step_back(bad_count)
    for bad_type in (1.5, "3", True, None):
        with pytest.raises(TypeError, match="whole number"):
            session.step(bad_type)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        session.run_until(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="every"):
        session.run_until(lambda s: False, every=0)
    for cpu in (-1, 4, 1 << 70):
        with pytest.raises(ValueError, match="CPU"):
            session.raise_event(5000, cpu)
        with pytest.raises(ValueError, match="CPU"):
            session.break_on("CPU_ON", cpu)
        with pytest.raises(ValueError, match="CPU"):
            session.step_firmware(cpu)
    with pytest.raises(ValueError, match="not a hypervisor-originated event"):
        session.raise_event(12345, 0)
    # configure is all or nothing: an invalid part anywhere changes no part.
    for change in ({"cpus": 0}, {"cpus": 200}, {"profile": "firmware", "cpus": 0},
                   {"profile": "nope", "quirks": ["version_1_1"]}, {"quirks": ["nope"], "cpus": 2}):
        with pytest.raises(ValueError):
            session.configure(**change)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        session.configure(cpus=2.0)  # type: ignore[arg-type]
    assert (session.platform, session.retired, session.cpus, session.profile.name) == (platform, position, 4, "virt")
    assert not session.quirks.version_1_1
    assert session.run().reason == "breakpoint" and session.breakpoints == [point]
    session.clear_breakpoints()
    assert session.run().reason == "system-off"
    for quantum in (0, -1):
        with pytest.raises(ValueError, match="quantum"):
            Session(SMP_BOOT, quantum=quantum)
    with pytest.raises(ValueError, match="cpus"):
        Session(SMP_BOOT, cpus=0)


def test_reset_and_switches_need_no_guest_file(tmp_path: Path) -> None:
    # The guest (both conduit builds) is kept as read: deleting the files used to leave reset,
    # a profile switch and a quirk switch raising, with no guest loaded.
    for build in ("tftf_state.elf", "tftf_state-smc.elf"):
        (tmp_path / build).write_bytes((TFTF_STATE.parent / build).read_bytes())
    session = Session(tmp_path / "tftf_state.elf")
    session.step(1000)
    for build in tmp_path.iterdir():
        build.unlink()
    assert session.reset().reason == "reset" and session.retired == 0
    assert session.run().reason == "system-off" and session.uart_text().endswith("tftf_state: PASS\n")
    session.configure(profile="firmware")
    assert session.guest_file.name == "tftf_state-smc.elf"
    assert session.run().reason == "system-off" and session.uart_text().endswith("tftf_state: PASS\n")
    assert {f.conduit for f in session.trace.of_kind(SmcccCall)} == {"smc"}  # type: ignore[attr-defined]
    session.configure(profile="virt", quirks=["version_1_1"], cpus=3)
    assert session.run().reason == "system-off" and "tftf_state: FAIL" in session.uart_text()
    # Reading the file again is asked for explicitly, and failing to changes nothing.
    session.configure(quirks=[])
    session.step(500)
    platform = session.platform
    with pytest.raises(GuestLoadError, match="no such file"):
        session.reset(reload=True)
    assert session.platform is platform and session.retired == 500 and session.cpus == 3
    assert session.reset().reason == "reset"


def test_a_firmware_break_past_the_trace_limit_does_not_stop_on_a_stale_fact() -> None:
    # Past its limit the log drops facts; the session's watcher reads the last fact kept, so a
    # dropped fact used to be judged as that one again: a break on CPU_ON stopped at every
    # firmware call after it, each time "on" the same old fact.
    reference = _plain_run(SMP_BOOT)
    first = next(f for f in reference.machine.trace.of_kind(SmcccCall) if f.name == "CPU_ON64")  # type: ignore[attr-defined]
    session = Session(SMP_BOOT)
    session.trace.limit = first.seq + 1  # the CPU_ON call is the last fact kept
    session.break_on("CPU_ON")
    info = session.run()
    assert info.reason == "break" and info.fact is not None and info.fact.seq == first.seq
    assert session.run().reason == "system-off"
    assert session.trace.dropped > 0 and len(session.trace) == first.seq + 1


def test_the_platform_itself_refuses_a_zero_quantum_and_an_absent_cpu() -> None:
    """Below the Session too: a round of 0 instructions never ends, and CPU -1 would index from the end."""
    from sdeilab.lab.platform import make_platform

    with pytest.raises(ValueError, match="quantum"):
        make_platform(2, quantum=0)
    platform = make_platform(2)
    assert platform.sdei is not None
    for cpu in (-1, 2):
        with pytest.raises(ValueError, match=f"no CPU {cpu}"):
            platform.sdei.raise_event(5000, cpu)
