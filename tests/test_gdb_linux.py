"""Linux with its symbols (issue 16): gdb-multiarch, given the vmlinux of Debian's
``linux-image-<release>-dbg`` (scripts/fetch-linux-symbols.sh), debugs the kernel the lab boots.

The lab boots the Image without a KASLR seed, so the kernel runs at the vmlinux's link addresses;
these tests check that this holds where it matters, against what the firmware recorded: the
handler Linux registered for event 5000 (the trace's ``SdeiDispatch.handler``) is the address the
vmlinux gives ``__sdei_asm_handler``, a breakpoint there stops CPU 1 when the lab raises the event,
and the registers and the ``struct pt_regs`` Linux's driver builds (read through the vmlinux's
DWARF types) hold the interrupted PC and PSTATE the fact recorded.

The scenario, in gdb's batch mode against ``Session.serve_gdb`` (the server ``sdeilab run --kernel
IMAGE --initrd FILE --gdb PORT`` runs): an initramfs whose init loads guests/linux/sdei_watchdog and
asks it to spin on CPU 1 with IRQs masked (tests/test_linux_module.py tells that story). gdb stops
at the module's cross-call to CPU 1 (``smp_call_function_single`` with a function outside the
kernel image), loads the module's own symbols at the address that call names, stops CPU 1 in the
spin loop, breaks at ``__sdei_asm_handler`` and raises the event with ``monitor raise 5000 1``.

The symbols are fetched on first use (262 MB from Debian's mirror; about 20 s here, most of it
spent decompressing); with CI=true a fetch that fails fails the tests, elsewhere it skips them with
the reason. docs/debugging.md ("Linux with its symbols") shows such a session.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from sdeilab.lab.gdb_server import GdbServer
from sdeilab.lab.platform import KernelBoot
from sdeilab.lab.session import Session
from sdeilab.linux import (
    LinuxPackagesMissing,
    busybox,
    cache_dir,
    initramfs,
    kernel_image,
    kernel_release,
    kernel_symbols_file,
)
from sdeilab.linux.watchdog import MODULE, spin_init
from sdeilab.trace import SdeiDispatch

pytestmark = [pytest.mark.linux, pytest.mark.gdb]

REPO = Path(__file__).resolve().parents[1]
FETCH = REPO / "scripts" / "fetch-linux-symbols.sh"
BUILD = REPO / "scripts" / "build-linux-module.sh"
SOURCE = REPO / "guests" / "linux" / MODULE / f"{MODULE}.c"
GDB = shutil.which("gdb-multiarch")
IN_CI = os.environ.get("CI", "").lower() == "true"
EVENT = 5000  # the virt profile's normal hypervisor-originated event
SPIN_CPU = 1
FETCH_TIMEOUT_S = 1800.0
GDB_TIMEOUT_S = 240.0
PSTATE_I = 1 << 7

# A smaller init than test_linux_module's: load, spin on CPU 1 (for up to 3 events; gdb raises one,
# so the spin ends by its loop bound), power off.
INIT = spin_init(EVENT, SPIN_CPU, 3)

needs_gdb = pytest.mark.skipif(GDB is None, reason="gdb-multiarch is not installed: run scripts/setup-debian.sh")


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"the kernel's debug symbols are unavailable in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def vmlinux() -> Path:
    """The booted kernel's vmlinux, fetched by the project's script if it is not there yet."""
    kernel_image()  # no kernel at all: the linux tier's own error, with the set-up command to run
    try:
        return kernel_symbols_file()
    except LinuxPackagesMissing:
        pass
    try:
        done = subprocess.run(["bash", str(FETCH)], cwd=REPO, capture_output=True, text=True, check=False,
                              timeout=FETCH_TIMEOUT_S, stdin=subprocess.DEVNULL,
                              env={**os.environ, "SDEILAB_DEBIAN_CACHE": str(cache_dir())})
    except subprocess.TimeoutExpired:
        _unavailable(f"scripts/fetch-linux-symbols.sh ran longer than {FETCH_TIMEOUT_S} s")
    if done.returncode != 0:
        _unavailable(f"the kernel's debug symbols were not fetched: scripts/fetch-linux-symbols.sh failed "
                     f"({done.returncode}):\n{done.stderr[-3000:]}")
    return kernel_symbols_file()


@dataclass(frozen=True)
class Module:
    ko: Path
    on_cpu_offset: int  # sdei_wd_spin_on_cpu in the .ko's .text: what the cross-call names
    loop_line: int  # the spin loop's body in the module's source


@pytest.fixture(scope="module")
def module() -> Module:
    done = subprocess.run(["bash", str(BUILD), MODULE, kernel_release()], capture_output=True, text=True,
                          check=False, env={**os.environ, "SDEILAB_DEBIAN_CACHE": str(cache_dir())})
    assert done.returncode == 0, done.stderr[-3000:]
    ko = Path(done.stdout.strip().splitlines()[-1])
    with ko.open("rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        assert isinstance(symtab, SymbolTableSection)
        (on_cpu,) = symtab.get_symbol_by_name("sdei_wd_spin_on_cpu")
        offset = on_cpu["st_value"]
    # `loops--;` is the loop's only statement: a breakpoint on its line stops a CPU inside the loop.
    (line,) = [n for n, text in enumerate(SOURCE.read_text().splitlines(), 1) if text.strip() == "loops--;"]
    return Module(ko, offset, line)


@pytest.fixture(scope="module")
def initrd(module: Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("initrd") / "watchdog.cpio.gz"
    path.write_bytes(initramfs(busybox(), INIT, files={f"{MODULE}.ko": module.ko.read_bytes()}))
    return path


def to_the_handler(module: Module) -> list[str]:
    """gdb commands from the boot to CPU 1 stopped at the first instruction of Linux's SDEI entry."""
    return [
        "echo @@boot\\n",
        # The module's cross-call: to CPU 1, of a function outside the kernel image (modules live below _text).
        "break smp_call_function_single if $x0 == 1 && $x1 < (unsigned long)&_text",
        "continue",
        # x1 is sdei_wd_spin_on_cpu: the module's .text starts that far before it.
        f"add-symbol-file {module.ko} -s .text $x1-{module.on_cpu_offset:#x}",
        "echo @@spin\\n",
        "delete",
        f"break {MODULE}.c:{module.loop_line}",
        "continue",
        "echo @@raise\\n",
        "delete",
        "info address __sdei_asm_handler",
        "break __sdei_asm_handler",
        f"monitor raise {EVENT} {SPIN_CPU}",
        "continue",
        "echo @@handler\\n",
    ]


def gdb(port: int, vmlinux: Path, commands: list[str]) -> str:
    """gdb-multiarch in batch mode on the vmlinux against 127.0.0.1:``port``; stdout and stderr together."""
    assert GDB is not None
    args = [GDB, "-nx", "-batch", "-ex", "set pagination off", "-ex", "set confirm off", "-ex", "set width 0",
            "-ex", f"target remote 127.0.0.1:{port}"]
    for command in commands:
        args += ["-ex", command]
    done = subprocess.run([*args, str(vmlinux)], capture_output=True, text=True, timeout=GDB_TIMEOUT_S,
                          check=False, stdin=subprocess.DEVNULL)
    return done.stdout + done.stderr


@dataclass
class Debugged:
    session: Session
    server: GdbServer
    out: str

    def part(self, name: str) -> str:
        """gdb's output after ``echo @@name`` up to the next marker."""
        assert f"@@{name}\n" in self.out, self.out[-6000:]
        return self.out.split(f"@@{name}\n", 1)[1].split("@@", 1)[0]

    def dispatches(self) -> list[SdeiDispatch]:
        return [f for f in self.session.trace if isinstance(f, SdeiDispatch) and f.event == EVENT]


def debug_linux(initrd: Path, vmlinux: Path, commands: list[str]) -> Debugged:
    session = Session(KernelBoot(kernel_image(), initrd), cpus=2)
    server = session.serve_gdb(0)
    try:
        out = gdb(server.port, vmlinux, commands)
    except BaseException:
        server.close()
        raise
    return Debugged(session, server, out)


def _printed(text: str) -> list[int]:
    """The values of gdb's ``p/x`` lines, in order."""
    return [int(v, 16) for v in re.findall(r"^\$\d+ = (0x[0-9a-f]+)$", text, re.M)]


def _register(text: str, name: str) -> int:
    found = re.search(rf"^{name} +(0x[0-9a-f]+)", text, re.M)
    assert found, text
    return int(found[1], 16)


# --- without a boot ------------------------------------------------------------------------------
def test_missing_symbols_name_the_command_that_fetches_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    boot = tmp_path / "root" / "boot"
    boot.mkdir(parents=True)
    (boot / "vmlinuz-6.1.0-99-cloud-arm64").write_bytes(b"")
    monkeypatch.setenv("SDEILAB_DEBIAN_CACHE", str(tmp_path))
    wanted = r"setup\.sh --linux-symbols .*linux-image-6\.1\.0-99-cloud-arm64-dbg"
    with pytest.raises(LinuxPackagesMissing, match=wanted):
        kernel_symbols_file()
    (boot / "vmlinux-6.1.0-99-cloud-arm64").write_bytes(b"\x7fELF")
    assert kernel_symbols_file() == boot / "vmlinux-6.1.0-99-cloud-arm64"


def test_the_vmlinux_is_the_booted_kernels_build(vmlinux: Path) -> None:
    """The same banner (release, compiler, Debian version, build date) in the Image and the vmlinux:
    the fetch script's own check, made again on what it left."""
    banner = re.compile(rb"Linux version " + re.escape(kernel_release().encode()) + rb" \([^\n]*\n")
    image = banner.search(kernel_image().read_bytes())
    assert image, "no banner in the kernel Image"
    with vmlinux.open("rb") as f:
        elf = ELFFile(f)
        assert elf["e_machine"] == "EM_AARCH64"
        assert elf.get_section_by_name(".debug_info") is not None, "the vmlinux has no DWARF"
        rodata = elf.get_section_by_name(".rodata").data()
    assert image[0] in rodata


# --- gdb on the booted kernel --------------------------------------------------------------------
@pytest.fixture(scope="module")
def forward(initrd: Path, vmlinux: Path, module: Module):  # type: ignore[no-untyped-def]
    commands = [*to_the_handler(module),
                "info threads", "p/x $pc", "p/x $x0", "p/x $x2", "p/x $x3", "info registers x0 x1 x2 x3 sp pc cpsr",
                "info symbol $x2", "bt",
                "echo @@banner\\n", "x/s &linux_banner",
                "echo @@driver\\n", "break sdei_event_handler", "continue", "bt", "p/x regs->pc", "p/x regs->pstate",
                "echo @@end\\n"]
    debugged = debug_linux(initrd, vmlinux, commands)
    yield debugged
    debugged.server.close()


@needs_gdb
def test_cpu1_stops_in_the_module_spin_with_the_modules_symbols(forward: Debugged, module: Module) -> None:
    spinning = forward.part("spin")
    assert re.search(rf"Thread {SPIN_CPU + 1} hit Breakpoint \d+, sdei_wd_spin \(req=0x[0-9a-f]+\) at "
                     rf"\S*{MODULE}\.c:{module.loop_line}", spinning), forward.out[-6000:]


@needs_gdb
def test_a_breakpoint_on_linux_sdei_entry_stops_cpu1_when_the_event_is_raised(forward: Debugged) -> None:
    raised, handler = forward.part("raise"), forward.part("handler")
    assert f"event {EVENT} raised on CPU {SPIN_CPU}" in forward.out  # monitor output: on gdb's stderr
    # gdb's address for the symbol, from the vmlinux alone...
    address = re.search(r'Symbol "__sdei_asm_handler" is at (0x[0-9a-f]+)', raised)
    assert address, raised
    entry = int(address[1], 16)
    # ...is the handler Linux registered and the firmware entered, as the trace recorded it.
    (dispatch,) = forward.dispatches()
    assert dispatch.cpu == SPIN_CPU and dispatch.source == "hypervisor"
    assert dispatch.handler == entry
    assert re.search(rf"Thread {SPIN_CPU + 1} hit Breakpoint \d+, __sdei_asm_handler \(\) at \S*arch/arm64/kernel/"
                     r"entry\.S:\d+", raised), raised
    assert re.search(rf"^\* {SPIN_CPU + 1} +Thread {SPIN_CPU + 1} \(CPU {SPIN_CPU} on\) +__sdei_asm_handler",
                     handler, re.M), handler
    pc, x0, x2, x3 = _printed(handler)[:4]
    assert pc == entry
    # The SDEI handler's entry state (DEN0054 5.2.2): x0 the event, x2 and x3 the interrupted PC and PSTATE.
    assert x0 == EVENT
    assert x2 == dispatch.interrupted_pc and x3 == dispatch.interrupted_pstate
    assert x3 & PSTATE_I  # the spin has IRQs masked: only an SDEI event gets in
    assert _register(handler, "pc") == entry and _register(handler, "x2") == dispatch.interrupted_pc
    # The interrupted PC is in the module's spin, named by the module's symbols gdb loaded.
    assert re.search(r"^sdei_wd_spin \+ \d+ in section \.text of \S+\.ko$", handler, re.M), handler
    assert re.search(r"^#0 +__sdei_asm_handler \(\)", handler, re.M), handler


@needs_gdb
def test_the_running_kernels_banner_is_the_vmlinuxs(forward: Debugged) -> None:
    """``linux_banner`` read from the running kernel's memory at the vmlinux's address."""
    shown = re.search(r'<linux_banner>:\s+"(Linux version [^"]*)\\n"', forward.part("banner"))
    assert shown, forward.part("banner")
    assert shown[1].encode() + b"\n" in kernel_image().read_bytes()
    assert shown[1].startswith(f"Linux version {kernel_release()} ")


@needs_gdb
def test_linux_driver_hands_the_interrupted_context_to_the_handler(forward: Debugged) -> None:
    """One layer up, in C with the vmlinux's types: sdei_event_handler's ``regs`` is what the lab interrupted."""
    driver = forward.part("driver")
    (dispatch,) = forward.dispatches()
    assert re.search(rf"Thread {SPIN_CPU + 1} hit Breakpoint \d+, sdei_event_handler \(regs=", driver), driver
    frames = re.findall(r"^#\d+ +(?:0x[0-9a-f]+ in )?(\w+)", driver, re.M)
    assert frames[:4] == ["sdei_event_handler", "do_sdei_event", "__sdei_handler", "__sdei_asm_handler"], driver
    assert _printed(driver)[:2] == [dispatch.interrupted_pc, dispatch.interrupted_pstate], driver


# --- reverse execution from the SDEI entry --------------------------------------------------------
# gdb's reverse-stepi sends `bs`, which the server answers with Session.step_back(1, cpu=) (main
# since the reverse-execution merge). Three gdb clients, one after another, on one session: to the
# handler's first instruction; reverse-stepi; stepi. The trace is read between them.
@dataclass
class Reversed:
    dispatch: SdeiDispatch  # as recorded on the way forward
    back: str  # gdb's output after reverse-stepi
    dispatches_back: int  # SdeiDispatch facts of the event in the trace after it
    forward: str  # gdb's output after a stepi from there
    dispatches_forward: int


@pytest.fixture(scope="module")
def reversed_(initrd: Path, vmlinux: Path, module: Module):  # type: ignore[no-untyped-def]
    if GDB is None:
        pytest.skip("gdb-multiarch is not installed: run scripts/setup-debian.sh")
    debugged = debug_linux(initrd, vmlinux, [*to_the_handler(module), "p/x $pc"])
    try:
        # The fact is read now: going back rewinds the trace.
        (dispatch,) = debugged.dispatches()
        assert _printed(debugged.part("handler")) == [dispatch.handler], debugged.out[-6000:]
        text = re.search(r"\.text_addr = (0x[0-9a-f]+)", debugged.out)
        assert text, debugged.out[-6000:]
        # Each later client loads the module's symbols where the first one found them.
        symbols = f"add-symbol-file {module.ko} -s .text {text[1]}"
        inspect_here = ["p/x $pc", "p/x $cpsr", "info symbol $pc"]
        back = gdb(debugged.server.port, vmlinux, [symbols, f"thread {SPIN_CPU + 1}", "reverse-stepi", *inspect_here])
        dispatches_back = len(debugged.dispatches())
        forward = gdb(debugged.server.port, vmlinux, [symbols, f"thread {SPIN_CPU + 1}", "stepi", *inspect_here])
        yield Reversed(dispatch, back, dispatches_back, forward, len(debugged.dispatches()))
    finally:
        debugged.server.close()


@needs_gdb
def test_reverse_stepi_from_the_sdei_entry_goes_back_before_the_dispatch(reversed_: Reversed) -> None:
    """Out of Linux's handler, back in the module's spin, with the PSTATE the dispatcher saved, and
    the dispatch gone from the trace: it had not happened yet there."""
    run = reversed_
    pc, cpsr = _printed(run.back)[:2]
    assert pc != run.dispatch.handler, run.back
    assert cpsr == run.dispatch.interrupted_pstate, run.back
    assert re.search(r"^sdei_wd_spin \+ \d+ in section \.text of \S+\.ko$", run.back, re.M), run.back
    assert run.dispatches_back == 0


@needs_gdb
def test_reverse_stepi_from_the_sdei_entry_lands_on_the_interrupted_instruction(reversed_: Reversed) -> None:
    """The dispatch is no instruction: going back over it lands on the instruction it interrupted,
    not yet executed, with the PSTATE the trace's SdeiDispatch fact recorded."""
    pc, cpsr = _printed(reversed_.back)[:2]
    assert pc == reversed_.dispatch.interrupted_pc and cpsr == reversed_.dispatch.interrupted_pstate, reversed_.back


@needs_gdb
def test_stepping_forward_again_enters_the_handler_again(reversed_: Reversed) -> None:
    """After reverse-stepi then stepi, the history is the recorded one: the event is dispatched again."""
    assert reversed_.dispatches_forward == 1, reversed_.forward
