"""What a reverse debugger (gdb's remote protocol, issue 16) needs from the session: debugger
watchpoints that stop before the access, a step back by one CPU's instructions, and reverse
continue to the last breakpoint or watchpoint stop; on real guests built here and shipped ones.

Every expectation is what a forward run showed: a reverse stop must be the forward stop, register
for register, at the same machine-wide count."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdeilab.lab import session as session_module
from sdeilab.lab.session import Session
from sdeilab.toolchain import build_source_text
from sdeilab.trace import ExceptionTaken

ROOT = Path(__file__).resolve().parent.parent
SMP_BOOT = ROOT / "guests" / "smp_boot.elf"
TFTF_PARALLEL = ROOT / "guests" / "sdei" / "tftf_parallel.elf"

# One access of each kind the watchpoints must see, each at its own label, on data in RAM.
ACCESSES = """
    .data
    .balign 64
zblock: .fill 64, 1, 0xff          // a DC ZVA block (64 bytes: DCZID_EL0.BS = 4)
cell:   .quad 0x1111, 0x2222
pair:   .quad 0x3333, 0x4444
excl:   .quad 5
    .text
    .global main, at_str, at_ldr, at_stp, at_ldxr, at_stxr, at_dczva, at_ldp, zblock, cell, pair, excl
main:
    adrp x1, cell
    add x1, x1, :lo12:cell
    mov x2, #0x42
at_str:
    str x2, [x1]                  // write cell
at_ldr:
    ldr x3, [x1, #8]              // read cell + 8
    adrp x4, pair
    add x4, x4, :lo12:pair
    mov x5, #7
    mov x6, #9
at_stp:
    stp x5, x6, [x4]              // write pair, pair + 8
at_ldp:
    ldp x11, x12, [x4]            // read them back
    adrp x7, excl
    add x7, x7, :lo12:excl
at_ldxr:
    ldxr x8, [x7]
    add x8, x8, #1
at_stxr:
    stxr w9, x8, [x7]             // w9 = 0: the exclusive store succeeded
    adrp x10, zblock
    add x10, x10, :lo12:zblock
at_dczva:
    dc zva, x10
    bl psci_system_off
"""

# EL0 loads a word through a user alias of RAM (VA 0x8000_0000 + x = PA 0x4000_0000 + x, ARM ARM
# D8.3 block descriptors, 4 KiB granule), as tests/test_mmu_guests.py sets it up.
EL0_GUEST = r"""
#include "guest.h"
#define BLOCK     0x1UL
#define ATTR(n)   ((uint64_t)(n) << 2)
#define AP_EL0    (1UL << 6)
#define SH_INNER  (3UL << 8)
#define AF        (1UL << 10)
#define PXN       (1UL << 53)
#define UXN       (1UL << 54)
#define USER_ALIAS 0x40000000UL

static uint64_t l1[512] __attribute__((aligned(4096))) = {
    [0] = 0x00000000UL | BLOCK | ATTR(0) | AF | PXN | UXN,
    [1] = 0x40000000UL | BLOCK | ATTR(1) | SH_INNER | AF | UXN,
    [2] = 0x40000000UL | BLOCK | ATTR(1) | SH_INNER | AF | AP_EL0 | PXN,
};
static uint8_t user_stack[4096] __attribute__((aligned(16)));
uint64_t user_value = 0x1234;
extern char el0_vectors[], user_code[];
void enter_el0(uint64_t pc, uint64_t sp, uint64_t data);

#define READ_SYSREG(name) ({ uint64_t v_; __asm__ volatile("mrs %0, " #name : "=r"(v_)); v_; })

void lower_sync(void)
{
    puts((READ_SYSREG(esr_el1) >> 26) == 0x15 ? "done\n" : "unexpected\n");
    psci_system_off();
}

int main(void)
{
    __asm__ volatile("msr mair_el1, %0" : : "r"(0xff00UL));
    __asm__ volatile("msr tcr_el1, %0" : : "r"(25UL | 1UL << 8 | 1UL << 10 | 3UL << 12 | 1UL << 23));
    __asm__ volatile("msr ttbr0_el1, %0" : : "r"((uint64_t)l1));
    isb();
    __asm__ volatile("msr sctlr_el1, %0" : : "r"(READ_SYSREG(sctlr_el1) | 1));
    isb();
    __asm__ volatile("msr vbar_el1, %0" : : "r"((uint64_t)el0_vectors));
    isb();
    enter_el0((uint64_t)user_code + USER_ALIAS, (uint64_t)(user_stack + sizeof user_stack) + USER_ALIAS,
              (uint64_t)&user_value + USER_ALIAS);
    return 0;
}

__asm__(
"   .text\n"
"   .global enter_el0\n"
"enter_el0:\n"
"   msr sp_el0, x1\n"
"   msr elr_el1, x0\n"
"   msr spsr_el1, xzr\n"
"   eret\n"
"   .balign 0x800\n"
"   .global el0_vectors\n"
"el0_vectors:\n"
"   .rept 8\n"
"   .balign 0x80\n"
"   b .\n"
"   .endr\n"
"   .balign 0x80\n"
"   bl lower_sync\n"
"   .rept 7\n"
"   .balign 0x80\n"
"   b .\n"
"   .endr\n"
"   .global user_code\n"
"user_code:\n"
"   ldr x3, [x2]\n"
"   svc #0x99\n"
);
"""

# Calls ``marker`` (which stores its argument) every half million loop iterations: hits far
# enough apart that checkpoints lie between them.
TICKS = """
#include "guest.h"
volatile unsigned long counter;
__attribute__((noinline)) void marker(unsigned long n)
{
    counter = n;
}
int main(void)
{
    for (unsigned long n = 1; n <= 4; n++) {
        for (volatile unsigned long i = 0; i < 500000; i++)
            ;
        marker(n);
    }
    puts("ticked\\n");
    psci_system_off();
}
"""


@pytest.fixture(scope="module")
def accesses(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_source_text(ACCESSES, "asm", tmp_path_factory.mktemp("reverse") / "accesses.elf")


@pytest.fixture(scope="module")
def el0_guest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_source_text(EL0_GUEST, "c", tmp_path_factory.mktemp("reverse") / "el0.elf")


@pytest.fixture(scope="module")
def ticks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_source_text(TICKS, "c", tmp_path_factory.mktemp("reverse") / "ticks.elf")


def registers(session: Session) -> list[dict[str, int]]:
    return [session.registers(cpu) for cpu in range(session.cpus)]


def word(session: Session, where: str | int, offset: int = 0) -> int:
    data = session.memory(session.address_of(where) + offset, 8)
    assert data is not None
    return int.from_bytes(data, "little")


# --------------------------------------------------------------------------- watchpoints


def test_write_watchpoint_stops_before_the_store_and_resuming_executes_it(accesses: Path) -> None:
    session = Session(accesses, cpus=1)
    cell = session.address_of("cell")
    point = session.add_watchpoint(cell, 8)
    assert session.watchpoints == [point] and point.kind == "write"
    info = session.run()
    assert info.reason == "watchpoint", info
    assert (info.cpu, info.address, info.access) == (0, cell, "write")
    assert session.pc(0) == session.address_of("at_str")
    assert word(session, "cell") == 0x1111  # the store has not happened
    assert session.registers(0)["x2"] == 0x42
    step = session.step()  # resuming executes the store, once
    assert step.reason == "budget" and step.executed == 1
    assert word(session, "cell") == 0x42
    assert session.pc(0) == session.address_of("at_ldr")
    assert session.run().reason == "system-off"  # nothing else writes cell


def test_read_and_access_watchpoints(accesses: Path) -> None:
    session = Session(accesses, cpus=1)
    cell = session.address_of("cell")
    session.add_watchpoint(cell + 8, 8, "read")
    info = session.run()
    assert (info.reason, info.address, info.access) == ("watchpoint", cell + 8, "read")
    assert session.pc(0) == session.address_of("at_ldr")
    before = session.registers(0)["x3"]
    session.step()
    assert session.registers(0)["x3"] == 0x2222 != before
    assert session.run().reason == "system-off"
    # "access": the store and the load of the same bytes both stop.
    session.reset()
    session.clear_breakpoints()
    assert session.watchpoints == []
    session.add_watchpoint(cell, 16, "access")
    stops = []
    while (info := session.run()).reason == "watchpoint":
        stops.append((session.pc(0), info.address, info.access))
    assert info.reason == "system-off"
    assert stops == [(session.address_of("at_str"), cell, "write"), (session.address_of("at_ldr"), cell + 8, "read")]


def test_pair_exclusive_and_dc_zva_accesses_hit(accesses: Path) -> None:
    plain = Session(accesses, cpus=1)
    assert plain.run().reason == "system-off"
    session = Session(accesses, cpus=1)
    pair, excl, zblock = (session.address_of(n) for n in ("pair", "excl", "zblock"))
    session.add_watchpoint(pair + 8, 8, "access")  # the second half of the STP and of the LDP
    session.add_watchpoint(excl, 8, "read")
    session.add_watchpoint(excl, 8, "write")
    session.add_watchpoint(zblock + 16, 8, "write")
    stops = []
    while (info := session.run()).reason == "watchpoint":
        where = session.symbolize(session.pc(0))
        stops.append((where, info.address, info.access))
        if where == "at_stp":
            assert word(session, "pair") == 7 and word(session, "pair", 8) == 0x4444  # the first half is done
        if where == "at_dczva":  # the bytes from the watched ones on are as before; those below, zeroed
            assert session.memory(zblock, 64) == bytes(16) + b"\xff" * 48
    assert info.reason == "system-off", info
    assert stops == [("at_stp", pair + 8, "write"), ("at_ldp", pair + 8, "read"), ("at_ldxr", excl, "read"),
                     ("at_stxr", excl, "write"), ("at_dczva", zblock + 16, "write")]
    # Stopping changed nothing the guest did: the exclusive store still succeeded, and so on.
    assert registers(session) == registers(plain)
    assert session.memory("zblock", 128) == plain.memory("zblock", 128)
    assert session.registers(0)["x9"] == 0


def test_watchpoint_on_an_el0_load_through_the_mmu(el0_guest: Path) -> None:
    session = Session(el0_guest, cpus=1)
    alias = session.address_of("user_value") + 0x4000_0000  # the VA EL0 uses
    session.add_watchpoint(alias, 8, "read")
    info = session.run(2_000_000)
    assert (info.reason, info.address, info.access, info.cpu) == ("watchpoint", alias, "read", 0), info
    regs = session.registers(0)
    assert regs["PSTATE"] >> 2 & 3 == 0  # at EL0
    assert regs["PC"] == session.address_of("user_code") + 0x4000_0000
    assert regs["x3"] != 0x1234
    session.step()
    assert session.registers(0)["x3"] == 0x1234
    assert session.run(2_000_000).reason == "system-off"
    assert session.uart == b"done\n"


def test_debugger_and_guest_watchpoints_on_the_same_bytes() -> None:
    guest = ROOT / "guests" / "watchpoint.elf"  # arms DBGWCR watchpoints on buf, at EL1 and EL0
    plain = Session(guest)
    assert plain.run().reason == "system-off"
    guest_exceptions = [f for f in plain.trace if isinstance(f, ExceptionTaken) and f.reason == "watchpoint"]
    assert guest_exceptions
    session = Session(guest)
    buf = session.address_of("buf")
    session.add_watchpoint(buf, 128, "access", cpu=0)
    session.add_watchpoint(buf, 128, "write", cpu=1)  # CPU 1 never touches it
    stops = []
    while (info := session.run()).reason == "watchpoint":
        assert info.cpu == 0 and buf <= (info.address or 0) < buf + 128
        stops.append(info.retired)
    assert info.reason == "system-off"
    # The debugger's watchpoint stopped first, every time the guest's exception was then taken
    # (more stops than guest exceptions: the guest also touches buf unwatched), and the guest
    # saw exactly what it sees alone.
    assert len(stops) > len(guest_exceptions)
    assert session.uart == plain.uart
    assert [(f.reason, f.esr, f.elr, f.far) for f in session.trace if isinstance(f, ExceptionTaken)] == \
        [(f.reason, f.esr, f.elr, f.far) for f in plain.trace if isinstance(f, ExceptionTaken)]  # type: ignore[attr-defined]


def test_no_memory_hook_without_a_watchpoint_and_clear_removes_them(accesses: Path) -> None:
    session = Session(accesses, cpus=1)

    def hooks() -> list[object]:
        return [vcpu.backend._watch_hooks for vcpu in session.machine.vcpus]  # type: ignore[attr-defined]

    assert hooks() == [[]]
    point = session.add_watchpoint("cell", 8)
    assert point.address == session.address_of("cell") and hooks() != [[]]
    session.clear_breakpoints()
    assert session.watchpoints == [] and hooks() == [[]]
    session.add_watchpoint("cell", 8, "read")
    session.remove_watchpoint("cell", 8, "read")
    assert session.watchpoints == [] and hooks() == [[]]
    with pytest.raises(ValueError, match="kind"):
        session.add_watchpoint("cell", 8, "execute")
    with pytest.raises(ValueError):
        session.add_watchpoint("cell", 0)


def test_watchpoints_do_not_fire_in_a_replay_and_survive_reset_and_step_back(accesses: Path) -> None:
    session = Session(accesses, cpus=1)
    cell = session.address_of("cell")
    session.add_breakpoint("at_ldr")
    assert session.run().reason == "breakpoint"  # past the store to cell
    session.clear_breakpoints()
    assert word(session, "cell") == 0x42
    session.add_watchpoint(cell, 8)
    back = session.step_back(session.retired)  # the replay passes the store without stopping
    assert back.reason == "step-back" and session.retired == 0
    assert session.watchpoints and session.run().reason == "watchpoint"
    session.reset()
    assert session.run().reason == "watchpoint"
    session.reset(reload=True)
    assert session.run().reason == "watchpoint"


# --------------------------------------------------------------------------- step back on one CPU


def test_step_back_on_one_cpu_lands_where_a_forward_step_of_that_cpu_stopped() -> None:
    session = Session(TFTF_PARALLEL)
    # Until all four CPUs run the test: then CPU 2 shares the machine with three others.
    session.break_on("SDEI_EVENT_REGISTER", cpu=2)
    assert session.run().reason == "break"
    session.clear_breakpoints()
    recorded = []  # (CPU 2's count, machine count, every CPU's registers), one per CPU-2 instruction
    for _ in range(8):
        session.step(1, cpu=2)
        assert session.machine.last_cpu == 2  # it stopped right after CPU 2's instruction
        recorded.append((session.machine.cpu_retired[2], session.retired, registers(session)))
    assert [r[0] for r in recorded] == list(range(recorded[0][0], recorded[0][0] + 8))
    # Independently of the per-CPU stops: a plain run to the same machine-wide count gets there too.
    plain = Session(TFTF_PARALLEL)
    for _, retired, regs in (recorded[0], recorded[-1]):
        plain.run(retired - plain.retired)
        assert registers(plain) == regs
    # The other CPUs run their quanta meanwhile: going back on CPU 2 is not a global step back.
    assert session.run(400_000).reason == "budget"
    now = session.machine.cpu_retired[2]
    for cpu2, retired, regs in reversed(recorded):
        info = session.step_back(session.machine.cpu_retired[2] - cpu2, cpu=2)
        assert info.reason == "step-back" and info.cpu == 2
        assert session.machine.cpu_retired[2] == cpu2
        assert (session.retired, registers(session)) == (retired, regs)
    assert session.machine.cpu_retired[2] < now
    # And step(cpu=) then step_back(cpu=) is the identity, one instruction at a time too.
    session.step(1, cpu=2)
    assert (session.retired, registers(session)) == recorded[1][1:]
    session.step_back(1, cpu=2)
    assert (session.retired, registers(session)) == recorded[0][1:]


def test_step_back_on_one_cpu_past_its_first_instruction() -> None:
    session = Session(SMP_BOOT)
    session.add_breakpoint("secondary_main", cpu=3)
    assert session.run().reason == "breakpoint"
    done = session.machine.cpu_retired[3]
    assert done > 0
    with pytest.raises(ValueError, match="CPU 3 has retired"):
        session.step_back(done + 1, cpu=3)
    info = session.step_back(done, cpu=3)  # to its count 0: just before its first instruction
    assert session.machine.cpu_retired[3] == 0 and info.retired > 0
    session.step(1, cpu=3)
    assert session.machine.cpu_retired[3] == 1
    assert session.step_back(0, cpu=3).executed == 0


# --------------------------------------------------------------------------- reverse continue


def test_reverse_continue_returns_to_each_breakpoint_hit_then_the_start() -> None:
    session = Session(SMP_BOOT)
    session.add_breakpoint("secondary_main")
    hits = []
    while (info := session.run()).reason == "breakpoint":
        hits.append((info.retired, info.cpu, info.address, registers(session), session.trace[len(session.trace) - 1]))
    assert info.reason == "system-off" and len(hits) == 3
    for retired, cpu, address, regs, last_fact in reversed(hits):
        back = session.reverse_continue()
        assert (back.reason, back.retired, back.cpu, back.address) == ("breakpoint", retired, cpu, address)
        assert registers(session) == regs
        assert session.trace[len(session.trace) - 1] == last_fact
    start = session.reverse_continue()
    assert start.reason == "history-start" and start.retired == 0 and session.retired == 0
    # Forward again: the same stops, from the start.
    for retired, cpu, _address, regs, _fact in hits:
        info = session.run()
        assert (info.reason, info.retired, info.cpu) == ("breakpoint", retired, cpu)
        assert registers(session) == regs


def test_reverse_continue_from_a_breakpoint_stop_resumes_like_it(ticks: Path) -> None:
    session = Session(ticks, cpus=1)
    session.add_breakpoint("marker")
    first = session.run()
    second = session.run()
    assert first.reason == second.reason == "breakpoint"
    back = session.reverse_continue()  # from the second hit: the first, not the one we are at
    assert back.retired == first.retired
    again = session.run()  # steps over it, as after the forward stop
    assert again.retired == second.retired


def test_reverse_continue_over_checkpoint_intervals_lands_on_the_later_hit(
        ticks: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_module, "CHECKPOINT_SECONDS", 0.0)  # one checkpoint per chunk
    session = Session(ticks, cpus=1)
    session.add_breakpoint("marker")
    session.add_watchpoint("counter", 8)
    forward = []
    while (info := session.run()).reason in ("breakpoint", "watchpoint"):
        forward.append((info, registers(session), session.memory("counter", 8)))
    assert info.reason == "system-off"
    # The start code clearing .bss stores to counter first; then each marker(n) call.
    assert [f[0].reason for f in forward] == ["watchpoint"] + ["breakpoint", "watchpoint"] * 4
    marks = [retired for retired, _ in session.checkpoints]
    # The hits are in different checkpoint intervals: the search goes back interval by interval.
    intervals = {max(m for m in marks if m <= f[0].retired) for f in forward[1::2]}
    assert len(intervals) == 4, (marks, [f[0].retired for f in forward])
    session.clear_breakpoints()
    session.add_breakpoint("marker")
    session.add_watchpoint("counter", 8)
    for stop, regs, counter in reversed(forward):
        back = session.reverse_continue()
        assert (back.reason, back.retired, back.cpu, back.address, back.access) == \
            (stop.reason, stop.retired, stop.cpu, stop.address, stop.access)
        assert registers(session) == regs
        assert session.memory("counter", 8) == counter  # a watchpoint's store not yet made
    assert session.reverse_continue().reason == "history-start"


def test_reverse_continue_with_a_watchpoint_only_and_max_back(ticks: Path) -> None:
    session = Session(ticks, cpus=1)
    session.add_watchpoint("counter", 8)
    stops = []
    while (info := session.run()).reason == "watchpoint":
        stops.append(info.retired)
    end = session.retired
    back = session.reverse_continue(max_back=end - stops[-1] - 1)  # stops just short of the last store
    assert back.reason == "budget" and back.retired == stops[-1] + 1
    back = session.reverse_continue()
    assert back.reason == "watchpoint" and back.retired == stops[-1]
    assert word(session, "counter") == 3  # marker(4) has not stored yet
    session.step()
    assert word(session, "counter") == 4


def test_reverse_continue_without_a_hit_lands_at_the_start(accesses: Path) -> None:
    session = Session(accesses, cpus=1)
    loaded = registers(session)
    session.run()
    session.add_breakpoint("main")  # set after the run went past it: reverse continue finds it
    back = session.reverse_continue()
    fresh = Session(accesses, cpus=1)
    fresh.add_breakpoint("main")
    forward = fresh.run()
    assert (back.reason, back.retired) == ("breakpoint", forward.retired) and session.pc(0) == fresh.pc(0)
    assert registers(session) == registers(fresh)
    session.clear_breakpoints()
    session.run()
    start = session.reverse_continue()
    assert start.reason == "history-start" and session.retired == 0
    assert registers(session) == loaded


def test_reverse_continue_to_firmware_event_breaks_and_breakpoints_in_order() -> None:
    session = Session(SMP_BOOT)
    session.break_on("CPU_ON")
    session.add_breakpoint("secondary_main", cpu=2)
    forward = []
    while (info := session.run()).reason in ("break", "breakpoint"):
        forward.append((info.reason, info.retired, info.cpu, info.fact, registers(session)))
    assert info.reason == "system-off"
    assert [f[0] for f in forward].count("break") == 4 and [f[0] for f in forward].count("breakpoint") == 1
    for reason, retired, cpu, fact, regs in reversed(forward):
        back = session.reverse_continue()
        assert (back.reason, back.retired, back.cpu, back.fact) == (reason, retired, cpu, fact)
        assert registers(session) == regs
    assert session.reverse_continue().reason == "history-start"
