"""Guest code in notebook cells (sdeilab.widgets.guest_cell): a cell of assembly or C builds a
guest that runs on the lab, and a broken cell reports the tools' message at the cell's own line.

The magics are driven through IPython's InteractiveShell, as a notebook kernel drives them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from sdeilab import toolchain
from sdeilab.lab.session import Session
from sdeilab.machine.memmap import MAX_CPUS
from sdeilab.toolchain import BuildError
from sdeilab.trace import SmcccCall, SmcccReturn
from sdeilab.widgets import GuestBuildError, GuestCell, Lab, build_guest, make_guest
from sdeilab.widgets.guest_cell import GuestCellError

PSCI_1_1 = 0x1_0001  # PSCI_VERSION: major 1 in bits [30:16], minor 1 (DEN0022 5.1.1)
SDEI_1_0 = 0x1_0000_0000_0000  # SDEI_VERSION: major 1 in bits [62:48] (DEN0054 5.1.1); TF-A's 1.0.0

# No "#include", no start-up code: the cell links with guests/lib as the shipped guests do.
ASM_CELL = """\
    .globl main
main:
    stp x29, x30, [sp, #-16]!
    print "PSCI_VERSION = "
    smccc PSCI_VERSION
    bl put_hex
    print "\\nSDEI_VERSION = "
    smccc SDEI_VERSION
    bl put_hex
    print "\\n"
    ldp x29, x30, [sp], #16
    ret
"""

C_CELL = """\
int main(void)
{
    puts("hello from C, PSCI ");
    put_hex((uint64_t)psci_version());
    puts("\\n");
    return 0;
}
"""


def _calls(session: Session) -> list[tuple[str, str]]:
    return [(c.name, c.conduit) for c in session.trace.of_kind(SmcccCall)]


def _returns(session: Session) -> dict[str, int]:
    return {r.name: r.results[0] for r in session.trace.of_kind(SmcccReturn)}


@pytest.fixture(scope="module")
def asm_guest(tmp_path_factory: pytest.TempPathFactory) -> GuestCell:
    return make_guest(ASM_CELL, "asm", "versions", out_dir=tmp_path_factory.mktemp("asm"))


@pytest.fixture(scope="module")
def shell() -> Iterator[InteractiveShell]:
    config = Config()
    config.HistoryManager.hist_file = ":memory:"  # no history database in the user's home
    sh = InteractiveShell.instance(config=config)
    sh.run_line_magic("load_ext", "sdeilab.widgets.guest_cell")
    yield sh
    InteractiveShell.clear_instance()


# ----------------------------------------------------------------------------- the functions


def test_build_guest_returns_runnable_elf_and_its_smc_build(tmp_path: Path) -> None:
    elf = build_guest(ASM_CELL, "asm", "versions", out_dir=tmp_path)
    assert elf == (tmp_path / "versions.elf").resolve() and elf.read_bytes()[:4] == b"\x7fELF"
    smc = tmp_path / "versions-smc.elf"
    assert smc.is_file() and smc.read_bytes() != elf.read_bytes()  # hvc #0 vs smc #0

    session = Session(elf, cpus=1, profile="virt")
    stop = session.run(1_000_000)
    assert stop.reason == "system-off"
    assert session.uart_text() == f"PSCI_VERSION = {PSCI_1_1:#x}\nSDEI_VERSION = {SDEI_1_0:#x}\n"
    assert _calls(session) == [("PSCI_VERSION", "hvc"), ("SDEI_VERSION", "hvc"), ("SYSTEM_OFF", "hvc")]
    assert _returns(session) == {"PSCI_VERSION": PSCI_1_1, "SDEI_VERSION": SDEI_1_0}

    assert build_guest(ASM_CELL, "asm", "versions", out_dir=tmp_path, smc=False) == elf
    assert not smc.exists()  # a stale SMC build would be what a session on `firmware` loads


def test_make_guest_runs_on_the_profile_with_the_matching_conduit(asm_guest: GuestCell) -> None:
    assert asm_guest.smc_elf is not None
    on_virt = asm_guest.run()
    assert on_virt.last_stop.reason == "system-off"
    assert {layer for layer in (r.layer for r in on_virt.trace.of_kind(SmcccReturn))} == {"kvm"}
    # `firmware` has EL3 and SMC as its conduit: the session picks NAME-smc.elf
    on_firmware = asm_guest.run(profile="firmware")
    assert on_firmware.uart_text() == on_virt.uart_text()
    assert _calls(on_firmware) == [("PSCI_VERSION", "smc"), ("SDEI_VERSION", "smc"), ("SYSTEM_OFF", "smc")]
    assert {r.layer for r in on_firmware.trace.of_kind(SmcccReturn)} == {"el3"}


def test_c_guest_and_its_lab(tmp_path: Path) -> None:
    guest = make_guest(C_CELL, "c", "hello_c", cpus=2, out_dir=tmp_path)
    session = guest.run()
    assert session.cpus == 2
    assert session.uart_text() == f"hello from C, PSCI {PSCI_1_1:#x}\n"
    assert _returns(session)["PSCI_VERSION"] == PSCI_1_1
    assert _calls(session)[-1] == ("SYSTEM_OFF", "hvc")  # main returned: start.S powers off
    lab = guest.lab(plots_enabled=False)
    assert isinstance(lab, Lab) and lab.session.retired == 0
    lab.run()
    assert lab.uart_view.value == session.uart_text()


def test_an_explicit_include_and_no_trailing_newline_are_fine(tmp_path: Path) -> None:
    text = '#include "guest.h"\nint main(void) { puts("ok\\n"); return 0; }'
    assert make_guest(text, "c", "inc", out_dir=tmp_path, smc=False).run().uart_text() == "ok\n"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="identifier"):
        build_guest(ASM_CELL, "asm", "no-dashes")
    with pytest.raises(ValueError, match="language"):
        build_guest(ASM_CELL, "rust", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown profile"):
        make_guest(ASM_CELL, "asm", "x", profile="nope")
    with pytest.raises(ValueError, match="unknown quirks"):
        make_guest(ASM_CELL, "asm", "x", quirks=["nope"])
    for cpus in (0, MAX_CPUS + 1, 1000):  # the board's GIC has room for MAX_CPUS
        with pytest.raises(ValueError, match=f"cpus must be between 1 and {MAX_CPUS}"):
            make_guest(ASM_CELL, "asm", "x", cpus=cpus)


def test_cpus_beyond_the_board_at_run_time(asm_guest: GuestCell) -> None:
    with pytest.raises(ValueError, match=f"cpus must be between 1 and {MAX_CPUS}"):
        asm_guest.run(cpus=MAX_CPUS + 1)


BIG_BSS_CELL = ASM_CELL + "    .bss\n    .space 0x10000000\n"  # 256 MiB of zeros: the board has 128 MiB of RAM


def test_a_guest_bigger_than_ram_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(GuestCellError) as info:
        build_guest(BIG_BSS_CELL, "asm", "huge", out_dir=tmp_path)
    [line] = info.value.message.splitlines()
    assert line.startswith("guest cell 'huge' cannot be loaded: huge.elf: segment ")
    assert "lies outside RAM" in line and str(tmp_path) not in line
    assert info.value._render_traceback_() == [line]


# ----------------------------------------------------------------------------- errors at the cell's line


def _with_line(text: str, number: int, line: str) -> str:
    """``text`` with ``line`` inserted so that it is line ``number`` (1-based) of the cell."""
    lines = text.splitlines()
    lines.insert(number - 1, line)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("number", [3, 9])
def test_asm_error_names_the_cells_line(number: int, tmp_path: Path) -> None:
    cell = _with_line(ASM_CELL, number, "    bogus x0, x1")
    with pytest.raises(GuestBuildError) as info:
        build_guest(cell, "asm", "broken", out_dir=tmp_path)
    error = info.value
    assert isinstance(error, BuildError)
    assert error.cell_lines == [number]
    [diag] = error.errors
    assert (diag.file, diag.line, diag.column, diag.in_cell) == ("broken.S", number, 5, True)
    assert diag.message == "unrecognized instruction mnemonic"  # the assembler's own words
    assert diag.source_line == "    bogus x0, x1"
    lines = error.message.splitlines()
    assert lines[0].startswith("guest cell 'broken' (asm) did not build")
    at = lines.index(f"broken.S:{number}:5: error: unrecognized instruction mnemonic")
    assert lines[at + 1] == "    bogus x0, x1" and lines[at + 2] == "    ^"  # the line and a caret
    assert "sdeilab-cell" not in error.message and "Traceback" not in error.message
    assert not (tmp_path / "broken.elf").exists()


def test_asm_operand_error_column(tmp_path: Path) -> None:
    cell = _with_line(ASM_CELL, 5, "    movz x0, #1, lsl #7")
    with pytest.raises(GuestBuildError) as info:
        build_guest(cell, "asm", "shift", out_dir=tmp_path)
    [diag] = info.value.errors
    assert (diag.line, diag.column) == (5, 18)
    assert "lsl" in diag.message
    assert "                 ^" in info.value.message.splitlines()


def test_c_error_names_the_cells_line(tmp_path: Path) -> None:
    cell = C_CELL.replace('puts("\\n");', 'puts("\\n")')  # line 5 loses its semicolon
    with pytest.raises(GuestBuildError) as info:
        build_guest(cell, "c", "broken_c", out_dir=tmp_path)
    error = info.value
    assert error.cell_lines == [5]
    assert [(d.file, d.line, d.message) for d in error.errors] == [("broken_c.c", 5, "expected ';' after expression")]
    assert "broken_c.c:5:" in error.message and '    5 |     puts("\\n")' in error.message


def test_undefined_symbol_shows_the_cells_line(tmp_path: Path) -> None:
    cell = _with_line(ASM_CELL, 4, "    bl no_such_function")
    with pytest.raises(GuestBuildError) as info:
        build_guest(cell, "asm", "undef", out_dir=tmp_path)
    [diag] = info.value.errors
    assert (diag.line, diag.message, diag.source_line) == (4, "undefined symbol: no_such_function",
                                                           "    bl no_such_function")
    assert "    4 |     bl no_such_function" in info.value.message


def test_missing_main_gets_a_hint(tmp_path: Path) -> None:
    with pytest.raises(GuestBuildError, match="the cell must define main"):
        build_guest(ASM_CELL.replace("main", "not_main"), "asm", "nomain", out_dir=tmp_path)


def test_warnings_are_shown_once_and_do_not_stop_the_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cell = _with_line(C_CELL, 3, "    int unused;")
    guest = make_guest(cell, "c", "warned", out_dir=tmp_path)
    err = capsys.readouterr().err
    assert err.count("warning: unused variable 'unused'") == 1  # two builds (HVC, SMC), one report
    assert "warned.c:3:9: warning" in err
    assert guest.run().last_stop.reason == "system-off"


# ----------------------------------------------------------------------------- the magics


def test_asm_magic_builds_binds_and_runs(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    shell.user_ns.pop("versions_magic", None)
    result = shell.run_cell(f"%%guest_asm versions_magic --cpus 1 --run\n{ASM_CELL}")
    out = capsys.readouterr().out
    assert result.success, out
    assert out.startswith(f"PSCI_VERSION = {PSCI_1_1:#x}\nSDEI_VERSION = {SDEI_1_0:#x}\n")
    assert "[system-off after " in out
    guest = shell.user_ns["versions_magic"]
    assert isinstance(guest, GuestCell) and guest.cpus == 1 and guest.language == "asm"
    session = guest.run()
    assert _returns(session)["SDEI_VERSION"] == SDEI_1_0


def test_c_magic_with_profile(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    result = shell.run_cell(f"%%guest_c hello_magic --profile firmware\n{C_CELL}")
    assert result.success
    assert "built hello_magic (c)" in capsys.readouterr().out
    session = shell.user_ns["hello_magic"].run()  # on the cell's profile: firmware, so SMC
    assert session.uart_text() == f"hello from C, PSCI {PSCI_1_1:#x}\n"
    assert ("PSCI_VERSION", "smc") in _calls(session)


def test_magic_error_shows_the_message_without_a_traceback(shell: InteractiveShell,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    shell.user_ns["bad_magic"] = "untouched"
    cell = _with_line(ASM_CELL, 7, "    add x0, x1")
    result = shell.run_cell(f"%%guest_asm bad_magic\n{cell}")
    out = capsys.readouterr().out
    assert isinstance(result.error_in_exec, GuestBuildError)
    assert result.error_in_exec.cell_lines == [7]  # the cell's line 7, not the magic line's 8
    assert "bad_magic.S:7:" in out and "    add x0, x1" in out
    assert "Traceback" not in out and "File " not in out  # IPython shows only _render_traceback_
    assert shell.user_ns["bad_magic"] == "untouched"


def test_magic_c_error(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    cell = _with_line(C_CELL, 3, "    undeclared_thing = 1;")
    result = shell.run_cell(f"%%guest_c bad_c_magic\n{cell}")
    out = capsys.readouterr().out
    assert isinstance(result.error_in_exec, GuestBuildError)
    assert result.error_in_exec.cell_lines == [3]
    assert "bad_c_magic.c:3:5: error: use of undeclared identifier 'undeclared_thing'" in out
    assert "Traceback" not in out


def test_magic_usage_errors(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    for line in ("%%guest_asm", "%%guest_asm x --cpus many", "%%guest_c x --profile nope", "%%guest_c x --bogus"):
        result = shell.run_cell(f"{line}\n{C_CELL}")
        assert not result.success, line
        assert "UsageError" in capsys.readouterr().err + repr(result.error_in_exec), line


def test_lab_magic_shows_the_dashboard_after_a_run(shell: InteractiveShell) -> None:
    result = shell.run_cell(f"%%guest_c lab_magic --lab --run --cpus 2\n{C_CELL}")
    assert result.success
    lab = result.result  # the cell's value: displayed as the dashboard in a notebook
    assert isinstance(lab, Lab) and lab.session.cpus == 2
    assert lab.session.last_stop.reason == "system-off"
    assert lab.uart_view.value == f"hello from C, PSCI {PSCI_1_1:#x}\n"
    lab.wait_plots(30)
    assert isinstance(shell.user_ns["lab_magic"], GuestCell)


def test_magic_cpus_beyond_the_board(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    shell.user_ns.pop("many", None)
    result = shell.run_cell(f"%%guest_asm many --cpus 1000 --run\n{ASM_CELL}")
    err = capsys.readouterr().err
    assert not result.success and "many" not in shell.user_ns
    assert f"%%guest_asm: cpus must be between 1 and {MAX_CPUS} (the virt board's CPUs), not 1000" in err
    assert "Traceback" not in err


def test_magic_guest_bigger_than_ram(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    shell.user_ns["huge_magic"] = "untouched"
    result = shell.run_cell(f"%%guest_asm huge_magic --run\n{BIG_BSS_CELL}")
    out = capsys.readouterr().out
    assert isinstance(result.error_in_exec, GuestCellError)
    assert "guest cell 'huge_magic' cannot be loaded: huge_magic.elf: segment " in out
    assert "Traceback" not in out and "GuestLoadError" not in out
    assert shell.user_ns["huge_magic"] == "untouched"


def test_magic_emulator_error(shell: InteractiveShell, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    # No guest is known to make unicorn fail today; the tester's UcError is stood in for here.
    from unicorn import UcError
    from unicorn.unicorn_const import UC_ERR_NOMEM

    def failing_run(self: Session, *args: object, **kwargs: object) -> None:
        raise UcError(UC_ERR_NOMEM)

    monkeypatch.setattr(Session, "run", failing_run)
    result = shell.run_cell(f"%%guest_asm uc_magic --run\n{ASM_CELL}")
    out = capsys.readouterr().out
    assert isinstance(result.error_in_exec, GuestCellError)
    assert "guest cell 'uc_magic' cannot be run: the CPU emulator failed (" in out
    assert "Traceback" not in out and "UcError" not in out


def test_magic_bad_quoting_is_a_usage_error(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    result = shell.run_cell(f"%%guest_asm 'unclosed\n{ASM_CELL}")
    assert not result.success
    assert "UsageError" in capsys.readouterr().err + repr(result.error_in_exec)


@pytest.mark.hostile
def test_a_cell_that_would_fill_the_disk(shell: InteractiveShell, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(toolchain, "BUILD_OUTPUT_MIB", 16)
    monkeypatch.setattr(toolchain, "BUILD_TIMEOUT_S", 20.0)
    result = shell.run_cell(f"%%guest_asm filler\n{ASM_CELL}    .data\n    .space 1 << 40\n")
    out = capsys.readouterr().out
    assert isinstance(result.error_in_exec, GuestBuildError)
    assert "filler.S: the output would exceed 16 MiB (the limit is sdeilab.toolchain.BUILD_OUTPUT_MIB)" in out
    assert "Traceback" not in out and "PLEASE" not in out
