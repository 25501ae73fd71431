"""The CPU backend's context primitives, checked through what the guest's own instructions see.

The SDEI dispatcher saves x0..x17, PC and PSTATE at every dispatch and puts them back at
COMPLETE (``save_context``, ``write_context``, ``restore_context``); a change of NZCV or DAIF
alone is written straight into QEMU's split PSTATE fields. The probe below reads the flags with
MRS, so a field written wrongly shows up as a wrong NZCV or DAIF in the guest's registers.
Every test runs twice: on those direct fields and on the API fallback (``SDEILAB_DIRECT=0``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sdeilab.cpu.unicorn_backend import DIRECT_SWITCH, FAST_PATHS
from sdeilab.lab.platform import Platform, make_platform
from sdeilab.toolchain import build_source_text

PROBE = """
    .global main, probe
main:
    b main
probe:                      // what the guest sees: NZCV in x20, DAIF in x21, then x0..x17 untouched
    mrs x20, nzcv
    mrs x21, daif
1:  b 1b
"""
EL1H = 0x5
DAIF = 0x3C0


@pytest.fixture(scope="module")
def elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_source_text(PROBE, "asm", tmp_path_factory.mktemp("context") / "probe.elf")


@pytest.fixture(autouse=True, params=["direct", "api"])
def fast_paths(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> frozenset[str]:
    """The engines of each test use QEMU's fields directly, or the API only."""
    monkeypatch.setenv(DIRECT_SWITCH, "1" if request.param == "direct" else "0")
    return frozenset(FAST_PATHS) if request.param == "direct" else frozenset()


def at_probe(elf: Path, fast_paths: frozenset[str]) -> tuple[Platform, int]:
    platform = make_platform(1)
    assert platform.machine.vcpus[0].backend.fast_paths == fast_paths  # type: ignore[attr-defined]
    image = platform.machine.load(elf)
    probe = next(address for address, name in image.symbols.items() if name == "probe")
    return platform, probe


def run_probe(platform: Platform) -> tuple[int, int]:
    platform.run(3)  # the two MRS and the branch
    backend = platform.machine.vcpus[0].backend
    return backend.x(20), backend.x(21)


@pytest.mark.parametrize("flags", [0x0, 0x8000_0000, 0x4000_0000, 0x2000_0000, 0x1000_0000, 0xF000_0000,
                                   0x6000_0000, 0x9000_0000])
@pytest.mark.parametrize("daif", [0x0, 0x80, 0x3C0, 0x240])
def test_flag_only_pstate_writes_reach_the_cpu(elf: Path, flags: int, daif: int, fast_paths: frozenset[str]) -> None:
    platform, probe = at_probe(elf, fast_paths)
    backend = platform.machine.vcpus[0].backend
    backend.pc = probe
    before = backend.read("PSTATE")
    assert before & 0xF == EL1H
    value = (before & ~(0xF000_0000 | DAIF)) | flags | daif
    backend.write("PSTATE", value)
    assert backend.pstate == backend.read("PSTATE") == value
    nzcv, seen_daif = run_probe(platform)
    assert (nzcv, seen_daif) == (flags, daif), f"wrote {value:#x}: the guest read NZCV {nzcv:#x} DAIF {seen_daif:#x}"


def test_context_round_trip(elf: Path, fast_paths: frozenset[str]) -> None:
    platform, probe = at_probe(elf, fast_paths)
    backend = platform.machine.vcpus[0].backend
    values = [(0x1111_0000_0000_0000 * (i % 15 + 1)) | i for i in range(18)]
    backend.set_xs(values)
    backend.pc = probe
    interrupted = (backend.pstate & ~(0xF000_0000 | DAIF)) | 0x6000_0000  # Z and C set, DAIF clear
    backend.write("PSTATE", interrupted)
    saved, pc, pstate = backend.save_context(18)
    assert (list(memoryview(saved).cast("Q")), pc, pstate) == (values, probe, interrupted)
    # A handler's entry: x0..x3 given, x4..x17 kept, PSTATE with DAIF set and NZCV kept.
    entry_pstate = (interrupted & 0xF000_0000) | DAIF | EL1H
    backend.write_context((5000, 7, pc, pstate), probe + 4, entry_pstate, pstate)
    assert backend.xs(18) == [5000, 7, pc, pstate, *values[4:]]
    assert (backend.pc, backend.pstate) == (probe + 4, entry_pstate)
    backend.set_xs([0] * 18)
    backend.write("PSTATE", entry_pstate & ~0xF000_0000 | 0x8000_0000)  # the handler changed N, Z, C
    backend.restore_context(saved, pc, pstate)
    assert (backend.xs(18), backend.pc, backend.pstate) == (values, probe, interrupted)
    nzcv, daif = run_probe(platform)
    assert (nzcv, daif) == (0x6000_0000, 0)
    assert backend.xs(18) == values  # the probe wrote only x20 and x21
