"""The compiled system-register hooks (sdeilab/cpu/compiled_hooks.c) and the time scale (icount shift).

The compiled hooks answer counter reads and decline unemulated registers without a Python call;
they must change nothing a guest or a trace can see. Every guest in guests/ (and the SDEI
scenarios) runs once with them and once on the pure-Python hooks: the UART bytes and the exported
trace must be equal byte for byte, so the fallback stays tested as well as the fast path.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdeilab.cpu import native
from sdeilab.lab.platform import make_platform
from sdeilab.machine.machine import MAX_ICOUNT_SHIFT, Machine
from sdeilab.machine.outcome import StopReason
from sdeilab.machine.timer import NS_PER_COUNT
from sdeilab.toolchain import build_source_text, shipped_elf, shipped_guests
from sdeilab.trace.export import write_trace

from .conftest import run_cli
from .test_arch_corners import corners_elf  # noqa: F401 (a fixture, by name below)
from .test_mmu_guests import el0_elf  # noqa: F401 (a fixture, by name below)
from .test_sdei_guests import SCENARIOS, sdei_elf

GUESTS = {g.stem if g.is_file() else g.name: shipped_elf(g) for g in shipped_guests()}

# Spins on CNTVCT_EL0 for WAIT_TICKS counts, then prints how many reads that took and powers off.
BUSY_WAIT_TICKS = 62_500  # 1 ms at 62.5 MHz
BUSY_WAIT = f"""
#include "guest.h"
int main(void) {{
    uint64_t start, now;
    __asm__ volatile("isb; mrs %0, cntvct_el0" : "=r"(start));
    do {{
        __asm__ volatile("mrs %0, cntvct_el0" : "=r"(now));
    }} while (now - start < {BUSY_WAIT_TICKS});
    puts("waited ");
    put_udec(now - start >= {BUSY_WAIT_TICKS});
    puts("\\n");
    psci_system_off();
}}
"""


@pytest.fixture(scope="module")
def busy_wait(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("busy") / "busy_wait.elf"
    build_source_text(BUSY_WAIT, "c", out)
    return out


@pytest.fixture
def pure_python(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Engines built inside this fixture take the pure-Python hooks."""
    monkeypatch.setattr(native, "library", lambda: None)
    yield


def _run(elf: Path, cpus: int = 4, profile: str = "virt", **options: object) -> tuple[bytes, bytes, object]:
    platform = make_platform(cpus, profile, **options)  # type: ignore[arg-type]
    platform.load(elf)
    outcome = platform.run(2_000_000_000)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "trace.jsonl"
        write_trace(platform.machine.trace, path)
        trace = path.read_bytes()
    return bytes(platform.machine.uart_output), trace, outcome


def test_the_compiled_hooks_are_built_and_used(busy_wait: Path) -> None:
    # CI and every set-up have the ziglang wheel: the fast path must not silently fall back.
    assert native.library() is not None, native.unavailable_reason()
    platform = make_platform(1)
    platform.load(busy_wait)
    outcome = platform.run(100_000_000)
    assert outcome.reason is StopReason.SYSTEM_OFF, outcome
    backend = platform.machine.vcpus[0].backend
    assert backend.compiled_hooks  # type: ignore[attr-defined]
    # Nearly every read of the spin was answered in C (a read at a slice's end goes to Python).
    assert backend.counter_reads_in_engine > 10_000  # type: ignore[attr-defined]


@pytest.mark.fast_paths("registers", "pstate", "aarch32", "record")
def test_engine_fast_paths_are_located_in_a_loaded_process() -> None:
    # The adapter finds QEMU's register file, PSTATE, AArch32 state and exception record by
    # experiment, inside whatever this process has mapped (pytest, notebooks: more than a bare
    # interpreter); a probe that misses them falls back to the API, slower and less tested.
    from tests.test_arch_corners import CORNERS  # noqa: F401 (a heavier process, as in the suite)

    platform = make_platform(2)
    for vcpu in platform.machine.vcpus:
        backend = vcpu.backend
        located = {name: getattr(backend, name) is not None for name in ("_xregs", "_pstate", "_a32", "_record")}
        assert all(located.values()), located


def test_pure_python_hooks_answer_every_read(busy_wait: Path, pure_python: None) -> None:
    platform = make_platform(1)
    platform.load(busy_wait)
    assert platform.run(100_000_000).reason is StopReason.SYSTEM_OFF
    backend = platform.machine.vcpus[0].backend
    assert not backend.compiled_hooks and backend.counter_reads_in_engine == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(GUESTS))
def test_guest_same_bytes_and_trace_with_and_without_compiled_hooks(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = _run(GUESTS[name])
    monkeypatch.setattr(native, "library", lambda: None)
    slow = _run(GUESTS[name])
    assert fast[2] == slow[2]
    assert fast[0] == slow[0]
    assert fast[1] == slow[1]
    assert fast[1].count(b"\n") >= 3  # boot, a call, the stop at least


@pytest.mark.parametrize("name", ["tftf_signal_all", "cpu_on_masking", "vmm_watchdog", "linux_client"])
@pytest.mark.parametrize("profile", ["virt", "firmware"])
def test_sdei_scenario_same_trace_with_and_without_compiled_hooks(name: str, profile: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert name in SCENARIOS
    fast = _run(sdei_elf(name, profile), profile=profile)
    monkeypatch.setattr(native, "library", lambda: None)
    slow = _run(sdei_elf(name, profile), profile=profile)
    assert fast == slow


# --- exceptions taken in the engine -------------------------------------------------------------

SVC_LOOP = r"""
#include "guest.h"
extern char svc_vectors[];
uint64_t taken;
int main(void) {
    __asm__ volatile("msr vbar_el1, %0; isb" : : "r"(svc_vectors));
    for (int i = 0; i < 5000; i++)
        __asm__ volatile("svc #7" : : : "x16", "x17", "memory");
    puts("taken ");
    put_udec(taken);
    puts("\n");
    psci_system_off();
}
/* The EL1h synchronous vector counts the exception in `taken` and returns. */
__asm__(".balign 2048\nsvc_vectors:\n"
        ".org svc_vectors + 0x200\n"
        "    adrp x16, taken\n    add x16, x16, :lo12:taken\n    ldr x17, [x16]\n    add x17, x17, #1\n"
        "    str x17, [x16]\n    eret\n"
        ".org svc_vectors + 0x800\n");
"""


@pytest.fixture(scope="module")
def svc_loop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("svc") / "svc_loop.elf"
    build_source_text(SVC_LOOP, "c", out)
    return out


@pytest.mark.fast_paths("registers", "pstate", "aarch32", "record")  # the compiled exception entry needs them all
def test_exceptions_are_taken_in_the_engine_and_recorded(svc_loop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    platform = make_platform(1)
    platform.load(svc_loop)
    assert platform.run(50_000_000).reason is StopReason.SYSTEM_OFF
    assert platform.machine.uart_output == b"taken 5000\n"
    backend = platform.machine.vcpus[0].backend
    # The first SVC goes through the machine, which checks the vectors; the rest stay in C but
    # for one in each 1,025 (native.TAKEN_QUEUE: a full queue hands the next one to the machine).
    assert backend.exceptions_in_engine == 4999 - 4999 // (native.TAKEN_QUEUE + 1)  # type: ignore[attr-defined]
    fast = _run(svc_loop, cpus=1)
    monkeypatch.setattr(native, "library", lambda: None)
    slow = _run(svc_loop, cpus=1)
    assert fast == slow
    assert fast[1].count(b'"kind":"ExceptionTaken"') == 5000


def test_a_debugger_run_takes_every_exception_through_the_machine(svc_loop: Path) -> None:
    platform = make_platform(1)
    platform.load(svc_loop)
    while (outcome := platform.machine.run(100_000, debugger=True)).reason is StopReason.BUDGET:
        pass
    assert outcome.reason is StopReason.SYSTEM_OFF
    assert platform.machine.vcpus[0].backend.exceptions_in_engine == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("guest", [pytest.param("el0_elf", marks=pytest.mark.fast_paths("record")),
                                   pytest.param("corners_elf", marks=pytest.mark.fast_paths("aarch32"))])
def test_exception_guests_same_with_and_without_compiled_hooks(guest: str, request: pytest.FixtureRequest,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The EL0 guest with the MMU on (SVC, translation and permission faults from EL0) and the
    architecture corners (PC alignment, illegal returns, AArch32 EL0, DC ZVA): the Python path
    and the compiled one leave the same bytes and trace."""
    elf = request.getfixturevalue(guest)
    fast = _run(elf, cpus=1)
    monkeypatch.setattr(native, "library", lambda: None)
    slow = _run(elf, cpus=1)
    assert fast == slow
    assert fast[2].reason is StopReason.SYSTEM_OFF  # type: ignore[attr-defined]
    assert fast[1].count(b'"kind":"ExceptionTaken"') >= 3


# --- the time scale ------------------------------------------------------------------------------

@pytest.mark.parametrize("shift", [0, 3, MAX_ICOUNT_SHIFT])
def test_icount_shift_scales_instructions_not_counter_time(busy_wait: Path, shift: int) -> None:
    platform = make_platform(1, icount_shift=shift)
    platform.load(busy_wait)
    outcome = platform.run(200_000_000)
    assert outcome.reason is StopReason.SYSTEM_OFF, outcome
    assert platform.machine.uart_output == b"waited 1\n"
    machine = platform.machine
    # The wait is BUSY_WAIT_TICKS counts of 16 ns whatever the scale; each instruction is 2^shift ns.
    assert machine.now() >= BUSY_WAIT_TICKS * NS_PER_COUNT
    assert machine.now() == pytest.approx(machine.retired << shift, rel=0.01)
    assert machine.retired < (BUSY_WAIT_TICKS * NS_PER_COUNT >> shift) * 1.1 + 50_000


@pytest.mark.parametrize("shift", [0, 4])
def test_counter_reads_same_on_both_hook_paths(busy_wait: Path, shift: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # The spin ends at the first read past its deadline: a counter value off by one count on
    # either path moves the stop (and the MachineStopped fact's vtime).
    fast = [_run(elf, cpus=1, icount_shift=shift) for elf in (busy_wait, GUESTS["timer_irq"])]
    monkeypatch.setattr(native, "library", lambda: None)
    slow = [_run(elf, cpus=1, icount_shift=shift) for elf in (busy_wait, GUESTS["timer_irq"])]
    assert fast == slow
    assert all(run[2].reason is StopReason.SYSTEM_OFF for run in fast)  # type: ignore[attr-defined]


@pytest.mark.parametrize("shift", [-1, MAX_ICOUNT_SHIFT + 1])
def test_icount_shift_out_of_range_is_refused(shift: int) -> None:
    with pytest.raises(ValueError, match="icount shift"):
        Machine(1, icount_shift=shift)


def test_cli_icount_shift(busy_wait: Path, tmp_path: Path) -> None:
    traces = []
    for attempt in range(2):
        trace = tmp_path / f"t{attempt}.jsonl"
        result = run_cli("run", busy_wait, "--icount", "shift=6", "--trace", trace)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(b"waited 1\n")
        traces.append(trace.read_bytes())
    assert traces[0] == traces[1]
    bad = run_cli("run", busy_wait, "--icount", "shift=11")
    assert bad.returncode == 2 and b"shift" in bad.stderr and b"Traceback" not in bad.stderr
