"""The layering rule of DESIGN.md section 1, checked on the source: each layer imports only lower ones."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "sdeilab"
ORDER = ["trace", "cpu", "machine", "firmware", "lab", "viz", "widgets"]

# The layer picture of DESIGN.md section 1 as what each unit of the package may import (besides
# itself): a layer calls the one it stands on, and every layer may name the trace's facts. The
# lab layer (the composition root, the debugger session and its gdb server, the QEMU comparison)
# builds boards, so it stands on the machine as well as the firmware; linux/ holds scenario
# drivers of the same kind (issue 13: they join lab/ next).
# The application (the command, the hub, the curriculum copier, the Voila entry) may use any.
MAY_IMPORT: dict[str, set[str]] = {
    "trace": set(),
    "cpu": {"trace"},
    "machine": {"cpu", "trace"},
    "firmware": {"machine", "trace"},
    "lab": {"firmware", "machine", "trace"},
    "linux": {"lab", "firmware", "trace"},
    "viz": {"lab", "firmware", "trace"},  # the SDEI state table and the result names, from the spec's words
    "widgets": {"viz", "lab", "firmware", "linux", "trace", "toolchain"},  # a guest cell builds its code
    "toolchain": set(),
}
APPLICATION = {"cli", "console", "hub", "curriculum", "voila_app"}
# Imports that cross the picture today, each a debt of issue 13 with its reason. The test fails
# on a crossing not listed here, and on a listed one that is gone (take it off the list).
KNOWN_CROSSINGS = {
    ("linux/watchdog.py", "machine"),  # the Linux watchdog is a second debugger: it drives Machine.run itself
    ("widgets/boot_progress.py", "machine"),  # the boot progress bar reads the machine's counters
    ("widgets/guest_cell.py", "cpu"),  # a guest cell reports the emulator's EngineError
    ("widgets/guest_cell.py", "machine"),  # ... and loads its ELF with the machine's loader
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_each_layer_imports_only_layers_below_it() -> None:
    problems = []
    for rank, layer in enumerate(ORDER):
        for path in (PACKAGE / layer).rglob("*.py") if (PACKAGE / layer).is_dir() else []:
            for name in _imports(path):
                parts = name.split(".")
                if parts[0] == "sdeilab" and len(parts) > 1 and parts[1] in ORDER:
                    if ORDER.index(parts[1]) > rank:
                        problems.append(f"{path.relative_to(PACKAGE)} imports {name}")
                elif parts[0] == "sdeilab" and len(parts) > 1 and parts[1] == "toolchain" and layer != "widgets":
                    problems.append(f"{path.relative_to(PACKAGE)} imports the toolchain")
    assert problems == []


def test_each_unit_imports_only_what_the_layer_picture_allows() -> None:
    units = {path.relative_to(PACKAGE).parts[0].removesuffix(".py") for path in PACKAGE.glob("*")
             if path.suffix == ".py" or (path.is_dir() and (path / "__init__.py").exists())} - {"__init__"}
    assert units <= set(MAY_IMPORT) | APPLICATION, f"a unit with no place in the picture: {units - set(MAY_IMPORT)}"
    crossings = set()
    for path in PACKAGE.rglob("*.py"):
        where = path.relative_to(PACKAGE)
        unit = where.parts[0].removesuffix(".py")
        if unit in APPLICATION or unit == "__init__":
            continue
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "sdeilab" and len(parts) > 1 and parts[1] != unit and parts[1] not in MAY_IMPORT[unit]:
                crossings.add((where.as_posix(), parts[1]))
    assert crossings - KNOWN_CROSSINGS == set(), "new imports across the layer picture"
    assert KNOWN_CROSSINGS - crossings == set(), "crossings gone: take them off KNOWN_CROSSINGS"


def test_only_the_unicorn_adapter_imports_unicorn() -> None:
    users = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
             if any(n.split(".")[0] == "unicorn" for n in _imports(p))]
    assert users == ["cpu/unicorn_backend.py"]


def test_trace_imports_no_other_layer() -> None:
    for path in (PACKAGE / "trace").rglob("*.py"):
        assert not [n for n in _imports(path) if n.startswith("sdeilab.") and not n.startswith("sdeilab.trace")]


def test_firmware_reaches_the_cpu_only_through_the_machine() -> None:
    """Issue 13 item 1: no firmware module uses a vCPU's ``.backend`` (the CPU layer's engine)."""
    uses = []
    for path in sorted((PACKAGE / "firmware").rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\.backend\b", line):
                uses.append(f"sdeilab/{where}:{number}: {line.strip()}")
    assert uses == [], "firmware reaches past the machine into the CPU backend:\n" + "\n".join(uses)


# --- crossings at run time: one SDEI_EVENT_SIGNAL, counted ----------------------------------------

BENCH_GUEST = PACKAGE.parent / "benchmarks" / "guests" / "sdei_tfa_bench.S"
SDEI_EVENT_SIGNAL = 0xC400_002F


def _layer_of(code_file: str) -> str | None:
    path = Path(code_file)
    if PACKAGE not in path.parents:
        return None
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def test_one_event_signal_crosses_each_boundary_at_most_twice(tmp_path: Path) -> None:
    """Every Python call whose caller and callee are in different layers, during the second SIGNAL of
    benchmarks/guests/sdei_tfa_bench.S (SMC, ``firmware`` profile; the first warms caches), plus the
    engine's hook into the machine (a ctypes callback, which the profiler does not see as a call).
    Appends to the trace are counted apart: one per fact, each of which a debugger's subscription
    must see as it is appended (docs/machine.md, "How firmware reaches a vCPU")."""
    import sys
    from collections import Counter

    from sdeilab.lab.platform import make_platform
    from sdeilab.toolchain import build

    elf = build([BENCH_GUEST], tmp_path / "bench.elf", defines={"CONDUIT_SMC": "", "SDEI_COUNT": "3", "SMC_COUNT": "0"})
    platform = make_platform(1, "firmware")
    platform.load(elf)
    machine, vcpu = platform.machine, platform.machine.vcpus[0]
    crossings: Counter[tuple[str, str]] = Counter()
    calls: list[str] = []
    signals = [0]
    inner = machine.conduit

    def profile(frame, event, _arg):  # type: ignore[no-untyped-def]
        back = frame.f_back
        if event == "call" and back is not None:
            caller, callee = _layer_of(back.f_code.co_filename), _layer_of(frame.f_code.co_filename)
            if caller and callee and caller != callee:
                crossings[caller, callee] += 1
                calls.append(f"{caller} -> {callee}: {back.f_code.co_name} -> {frame.f_code.co_qualname}")

    def conduit(cpu: int, kind: str, executed: int) -> None:
        if vcpu.read_call()[0] & 0xFFFF_FFFF == SDEI_EVENT_SIGNAL:
            signals[0] += 1
            if signals[0] == 2:
                crossings["cpu", "machine"] += 1
                facts = len(machine.trace)
                sys.setprofile(profile)
                try:
                    inner(cpu, kind, executed)
                finally:
                    sys.setprofile(None)
                crossings["recorded", "facts"] = len(machine.trace) - facts
                return
        inner(cpu, kind, executed)

    machine.conduit = conduit  # type: ignore[method-assign]
    platform.run(50_000_000)
    assert signals[0] >= 2, "the guest made fewer than two SIGNAL calls"
    appends = crossings.pop(("firmware", "trace"))
    recorded = crossings.pop(("recorded", "facts"))
    assert appends == recorded == 3, calls  # SmcccCall, SmcccReturn, SdeiDispatch
    # Today: cpu -> machine 1, machine -> firmware 1, firmware -> cpu 2 (the call's registers in one
    # read, its result), firmware -> machine 2 (a firmware-owned interrupt pending? the handler's
    # entry), machine -> cpu 2 (that entry's save and write).
    assert crossings and max(crossings.values()) <= 2, "\n".join(calls)
