"""The CPU backend with its fast paths switched off: the API-only fallbacks stay correct.

The Unicorn adapter finds QEMU's register file, split PSTATE, AArch32 state and exception record
by experiment and uses them directly (``FAST_PATHS`` in sdeilab/cpu/unicorn_backend.py); each has
a fallback through Unicorn's API, taken when a probe misses them (another libunicorn build, no
/proc). ``SDEILAB_DIRECT`` chooses them per engine, and here every guest runs with them and
without: where the fallback is meant to be equivalent the UART bytes, the exported trace and the
outcome must be equal byte for byte.

The rest of the suite can run on the fallbacks too (``SDEILAB_DIRECT=0 pytest``): tests of what
only a fast path can do are marked ``fast_paths(...)`` and skipped there (tests/conftest.py).

The exception record has two fallbacks. The first reads the same record from a saved context (the
API's copy of CPUARMState), and is equivalent. The second, where that too is unknown (another
Unicorn build; the tests force it with ``no_saved_record``), rebuilds SVC, BRK, UNDEFINED, system
register trap and Software Step syndromes from the instruction and the step state.

Where the fallback cannot be equivalent it refuses clearly, and the tests expect exactly that:

* with no exception record at all an abort's syndrome (fault status, level, FAR) is QEMU's alone,
  so a data or instruction abort the CPU model raises stops the run with a fault report (aborts on
  unmapped addresses are the machine's own and are still delivered);
* without the AArch32 state an ERET to AArch32 EL0 stops the run with a fault report before any
  AArch32 instruction runs (the API reads only the AArch64 registers).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from sdeilab.cpu import native, unicorn_backend
from sdeilab.cpu.unicorn_backend import AARCH32_UNSUPPORTED, DIRECT_SWITCH, FAST_PATHS, RECORD_MISSING, direct_paths
from sdeilab.lab.platform import make_platform
from sdeilab.machine.outcome import RunOutcome, StopReason
from sdeilab.toolchain import shipped_elf, shipped_guests
from sdeilab.trace.export import write_trace

from .test_arch_corners import A32_CASES, CORNERS_EXPECTED, a32_elfs, corners_elf  # noqa: F401 (fixtures)
from .test_mmu_guests import (
    ABORT_WITHOUT_VECTORS,
    el0_elf,  # noqa: F401 (a fixture)
)
from .test_mmu_guests import EXPECTED as EL0_EXPECTED
from .test_sdei_guests import SCENARIOS, sdei_elf

GUESTS = {g.stem if g.is_file() else g.name: shipped_elf(g) for g in shipped_guests()}

ALL = "1"
NONE = "0"
NO_RECORD = "registers,pstate,aarch32"  # the exception record not in place: it is read from saved contexts
NO_AARCH32 = "registers,pstate,record"  # the AArch32 probe missed: AArch32 EL0 is refused
ABORT_UNKNOWN = f"unhandled data abort (the CPU model's syndrome could not be located: {RECORD_MISSING})"


@dataclass(frozen=True)
class Run:
    uart: bytes
    trace: bytes
    outcome: RunOutcome

    def facts(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.trace.splitlines()]


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Run]:
    """Run a guest with the fast paths ``direct`` says (``SDEILAB_DIRECT``), and check the engines
    took exactly those: a fast run that silently fell back would compare the fallback with itself."""

    def go(elf: Path, direct: str, cpus: int = 4, profile: str = "virt", budget: int = 2_000_000_000,
           paths: frozenset[str] | None = None, saved_record: bool = True) -> Run:
        monkeypatch.setenv(DIRECT_SWITCH, direct)
        if not saved_record:
            no_saved_record(monkeypatch)
        platform = make_platform(cpus, profile)  # type: ignore[arg-type]
        for vcpu in platform.machine.vcpus:
            used = vcpu.backend.fast_paths  # type: ignore[attr-defined]
            assert used == (direct_paths() if paths is None else paths), direct
        platform.load(elf)
        outcome = platform.run(budget)
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "trace.jsonl"
            write_trace(platform.machine.trace, path)
            trace = path.read_bytes()
        return Run(bytes(platform.machine.uart_output), trace, outcome)

    return go


def no_saved_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """Engines built from now on cannot read the exception record from saved contexts either, as
    with a Unicorn build whose context layout the probe does not know."""
    monkeypatch.setattr(unicorn_backend, "_context_record_offset", lambda: None)


def assert_same(fast: Run, slow: Run) -> None:
    assert slow.outcome == fast.outcome
    assert slow.uart == fast.uart
    assert slow.trace == fast.trace


def assert_refused_where_fast_went_on(fast: Run, slow: Run, reason: str, not_run: int = 0) -> dict[str, object]:
    """The fallback ran as the fast path did up to one exception, and stopped there with a fault
    report saying ``reason``: its trace is the fast one's up to that point, then the fault, at the
    virtual time of the fast run's entry less the ``not_run`` instructions the refusal left before
    it. Returns the fast run's fact the refusal replaced."""
    assert slow.outcome.reason is StopReason.FAULT and slow.outcome.exit_status == 3, slow.outcome
    assert slow.outcome.fault is not None and slow.outcome.fault.reason == reason
    assert fast.uart.startswith(slow.uart) and len(fast.uart) > len(slow.uart)
    fast_facts, slow_facts = fast.facts(), slow.facts()
    *before, fault, stopped = slow_facts
    assert fast_facts[:len(before)] == before
    assert (fault["kind"], fault["reason"], stopped["kind"]) == ("GuestFault", reason, "MachineStopped")
    replaced = fast_facts[len(before)]
    assert replaced["vtime"] == fault["vtime"] + not_run  # type: ignore[operator]
    return replaced


# --- the switch -------------------------------------------------------------------------------------

def test_the_switch_names_fast_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    everything = frozenset(FAST_PATHS)
    assert direct_paths(True) == everything and direct_paths(False) == frozenset()
    assert direct_paths(["registers"]) == {"registers"}
    for setting, expected in (("1", everything), ("0", frozenset()), ("", frozenset()),
                              (NO_RECORD, {"registers", "pstate", "aarch32"}),
                              (" registers , pstate ", {"registers", "pstate"})):
        monkeypatch.setenv(DIRECT_SWITCH, setting)
        assert direct_paths() == expected, setting
    monkeypatch.delenv(DIRECT_SWITCH)
    assert direct_paths() == everything
    with pytest.raises(ValueError, match="unknown fast paths"):
        direct_paths(["xregs"])


@pytest.mark.parametrize("direct,paths", [
    (NONE, set()), ("registers", {"registers"}), ("registers,record", {"registers", "record"}),
    (NO_RECORD, {"registers", "pstate", "aarch32"}), (NO_AARCH32, {"registers", "pstate", "record"}),
    ("pstate,record", set()), ("registers,aarch32", {"registers"})])  # each needs the ones it is found from
def test_a_path_is_used_only_with_the_ones_it_needs(run: Callable[..., Run], direct: str, paths: set[str]) -> None:
    outcome = run(GUESTS["boot_regs"], direct, cpus=1, paths=frozenset(paths)).outcome
    assert outcome.reason is StopReason.SYSTEM_OFF


# --- equivalent: every shipped guest, the SDEI scenarios ----------------------------------------

@pytest.mark.parametrize("saved_record", [True, False], ids=["saved-record", "rebuilt-syndromes"])
@pytest.mark.parametrize("name", sorted(GUESTS))
def test_shipped_guest_same_without_fast_paths(run: Callable[..., Run], name: str, saved_record: bool) -> None:
    fast = run(GUESTS[name], ALL)
    assert fast.outcome.reason is StopReason.SYSTEM_OFF, fast.outcome
    assert_same(fast, run(GUESTS[name], NONE, saved_record=saved_record))


@pytest.mark.parametrize("name", ["single_step", "watchpoint", "psci_tour", "smp_boot"])
def test_shipped_guest_same_without_fast_paths_or_compiled_hooks(run: Callable[..., Run], name: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fast = run(GUESTS[name], ALL)
    monkeypatch.setattr(native, "library", lambda: None)
    assert_same(fast, run(GUESTS[name], NONE))


@pytest.mark.parametrize("name", ["tftf_signal_all", "cpu_on_masking", "vmm_watchdog", "linux_client"])
@pytest.mark.parametrize("profile", ["virt", "firmware"])
def test_sdei_scenario_same_without_fast_paths(run: Callable[..., Run], name: str, profile: str) -> None:
    assert name in SCENARIOS
    elf = sdei_elf(name, profile)
    fast = run(elf, ALL, profile=profile)
    assert fast.trace.count(b"\n") > 10
    assert_same(fast, run(elf, NONE, profile=profile))


# --- the architecture corners: equivalent without the record, refused without AArch32 -------------

@pytest.mark.parametrize("saved_record", [True, False], ids=["saved-record", "rebuilt-syndromes"])
def test_corners_same_without_the_exception_record(run: Callable[..., Run], corners_elf: Path,  # noqa: F811
                                                   saved_record: bool) -> None:
    # Rebuilt, SVC and BKPT from AArch32 EL0 get their syndromes (EC 0x11, 0x38) from the instruction.
    fast = run(corners_elf, ALL, cpus=1, budget=2_000_000)
    assert fast.uart == CORNERS_EXPECTED
    assert_same(fast, run(corners_elf, NO_RECORD, cpus=1, budget=2_000_000, saved_record=saved_record))


@pytest.mark.parametrize("direct", [NONE, NO_AARCH32])
def test_corners_refuse_aarch32_el0_without_its_state(run: Callable[..., Run], corners_elf: Path,  # noqa: F811
                                                      direct: str) -> None:
    # Refused at the ERET itself, which did not run (nor the A32 SVC after it): the CPU stays in AArch64.
    fast = run(corners_elf, ALL, cpus=1, budget=2_000_000)
    slow = run(corners_elf, direct, cpus=1, budget=2_000_000)
    replaced = assert_refused_where_fast_went_on(fast, slow, AARCH32_UNSUPPORTED, not_run=2)
    assert slow.uart == CORNERS_EXPECTED[:CORNERS_EXPECTED.index(b"eret-a32-el0: ") + len(b"eret-a32-el0: ")]
    assert replaced["kind"] == "ExceptionTaken" and replaced["reason"] == "svc"  # the A32 SVC's entry
    fault = slow.outcome.fault
    assert fault is not None and fault.instruction == "eret" and fault.registers["PSTATE"] & 0x1F == 0x5


@pytest.mark.parametrize("case", A32_CASES)
def test_aarch32_el0_entry_same_without_the_exception_record(run: Callable[..., Run], case: str,
                                                             a32_elfs: dict[str, Path]) -> None:  # noqa: F811
    fast = run(a32_elfs[case], ALL, cpus=1, budget=2_000_000)
    assert fast.uart == A32_CASES[case][1]
    assert_same(fast, run(a32_elfs[case], NO_RECORD, cpus=1, budget=2_000_000))
    assert_same(fast, run(a32_elfs[case], NO_RECORD, cpus=1, budget=2_000_000, saved_record=False))
    slow = run(a32_elfs[case], NONE, cpus=1, budget=2_000_000)
    assert slow.outcome.fault is not None and slow.outcome.fault.reason == AARCH32_UNSUPPORTED
    assert slow.outcome.fault.instruction == "eret" and slow.uart == b""


# --- EL0 with the MMU on: aborts delivered from a saved record, refused with no record at all -----

@pytest.mark.parametrize("direct", [NONE, NO_RECORD])
def test_el0_aborts_same_with_the_record_from_saved_contexts(run: Callable[..., Run], el0_elf: Path,  # noqa: F811
                                                             direct: str) -> None:
    fast = run(el0_elf, ALL, cpus=1, budget=2_000_000)
    assert fast.uart == EL0_EXPECTED
    assert_same(fast, run(el0_elf, direct, cpus=1, budget=2_000_000))


@pytest.mark.parametrize("direct", [NONE, NO_RECORD])
def test_el0_svc_same_and_abort_a_fault_report_without_any_record(run: Callable[..., Run], el0_elf: Path,  # noqa: F811
                                                                  direct: str) -> None:
    fast = run(el0_elf, ALL, cpus=1, budget=2_000_000)
    assert fast.uart == EL0_EXPECTED
    slow = run(el0_elf, direct, cpus=1, budget=2_000_000, saved_record=False)
    replaced = assert_refused_where_fast_went_on(fast, slow, ABORT_UNKNOWN)
    assert slow.uart == b"".join(EL0_EXPECTED.splitlines(keepends=True)[:2])  # both SVCs from EL0
    assert (replaced["kind"], replaced["reason"], replaced["esr"]) == ("ExceptionTaken", "data abort", 0x9200_0005)
    assert slow.outcome.fault is not None and slow.outcome.fault.pc == replaced["elr"]


def test_an_abort_without_vectors_is_the_same_fault_report_without_the_record(
        run: Callable[..., Run], asm_guest) -> None:  # type: ignore[no-untyped-def]
    elf = asm_guest(ABORT_WITHOUT_VECTORS)
    fast = run(elf, ALL, cpus=1, budget=100_000)
    assert fast.outcome.fault is not None
    assert fast.outcome.fault.reason == "data abort (ESR 0x96000021) and no exception vectors (VBAR_EL1 not set)"
    assert_same(fast, run(elf, NONE, cpus=1, budget=100_000))
    slow = run(elf, NONE, cpus=1, budget=100_000, saved_record=False)
    assert slow.outcome.fault is not None and slow.outcome.fault.reason == ABORT_UNKNOWN
    assert slow.outcome.fault.pc == fast.outcome.fault.pc
    assert slow.outcome.fault.instruction == fast.outcome.fault.instruction == "ldxr x1, [x0]"


# A32 and T32 BKPT at AArch32 EL0: without the record the syndrome (EC 0x38, ISS the immediate) is
# rebuilt from the instruction; with it QEMU computed it. Each case returns to the next by ``recover``.
A32_BKPT = r"""#include "guest.h"
    .macro eret_to spsr, target, recover
    adr_l x9, \recover
    adr_l x10, recover_at
    str x9, [x10]
    ldr x0, =\spsr
    msr spsr_el1, x0
    adr_l x0, \target
    msr elr_el1, x0
    eret
    .endm
    .text
    .globl main
main:
    eret_to 0x1d0, a32bkpt, 1f
1:  eret_to 0x1f0, t32bkpt, 2f
2:  bl psci_system_off

    .balign 16
a32bkpt:
    .inst 0xe1212374   /* A32 bkpt #0x1234 */
t32bkpt:
    .hword 0xbe56      /* T32 bkpt #0x56 */

    .balign 4
    .globl handle_sync
handle_sync:
    mov x22, x30
    mov x19, x0
    print "ESR="
    mov x0, x19
    bl put_hex64
    print "\n"
    adr_l x10, recover_at
    ldr x9, [x10]
    msr elr_el1, x9
    mov x0, #0x3c5
    msr spsr_el1, x0
    mov x30, x22
    ret
    .data
    .balign 8
recover_at: .quad 0
"""


def test_aarch32_bkpt_same_without_the_exception_record(run: Callable[..., Run], asm_guest) -> None:  # type: ignore[no-untyped-def]
    elf = asm_guest(A32_BKPT, "a32bkpt")
    fast = run(elf, ALL, cpus=1, budget=1_000_000)
    assert fast.uart == b"ESR=0x00000000e2001234\nESR=0x00000000e2000056\n", fast.outcome  # EC 0x38, IL 1
    assert_same(fast, run(elf, NO_RECORD, cpus=1, budget=1_000_000))
    assert_same(fast, run(elf, NO_RECORD, cpus=1, budget=1_000_000, saved_record=False))
