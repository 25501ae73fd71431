"""The command line contract (DESIGN.md section 3) on good and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import ROOT, run_cli

SMP_BOOT = ROOT / "guests" / "smp_boot.elf"


def assert_clean_failure(result, status: int, words: str) -> None:  # type: ignore[no-untyped-def]
    err = result.stderr.decode()
    assert result.returncode == status, err
    assert "Traceback" not in err
    assert words in err
    assert result.stdout == b""


def test_missing_guest(tmp_path: Path) -> None:
    assert_clean_failure(run_cli("run", tmp_path / "nope.elf"), 2, "no such file")


def test_not_an_elf(tmp_path: Path) -> None:
    junk = tmp_path / "junk.elf"
    junk.write_bytes(b"this is not an ELF file\n" * 10)
    result = run_cli("run", junk)
    assert_clean_failure(result, 2, "not an ELF file")
    assert len(result.stderr.decode().strip().splitlines()) == 1


def test_elf_for_another_architecture() -> None:
    assert_clean_failure(run_cli("run", "/bin/true"), 2, "not AArch64")


def test_elf_outside_ram(tmp_path: Path) -> None:
    # Rewrite the first PT_LOAD's addresses of a real guest to 0x1000 (QEMU's flash, not RAM).
    data = bytearray(SMP_BOOT.read_bytes())
    phoff = int.from_bytes(data[0x20:0x28], "little")
    phentsize = int.from_bytes(data[0x36:0x38], "little")
    for i in range(int.from_bytes(data[0x38:0x3A], "little")):
        ph = phoff + i * phentsize
        if int.from_bytes(data[ph:ph + 4], "little") == 1:  # PT_LOAD
            data[ph + 0x10:ph + 0x18] = (0x1000).to_bytes(8, "little")
            data[ph + 0x18:ph + 0x20] = (0x1000).to_bytes(8, "little")
            break
    bad = tmp_path / "outside.elf"
    bad.write_bytes(bytes(data))
    assert_clean_failure(run_cli("run", bad), 2, "outside RAM")


def test_bad_trace_name() -> None:
    assert_clean_failure(run_cli("run", SMP_BOOT, "--trace", "x.txt"), 2, ".json or .jsonl")


def test_bad_usage() -> None:
    assert_clean_failure(run_cli("run", SMP_BOOT, "--cpus", "zero"), 2, "not a number")


def test_branch_to_unmapped_memory_is_a_fault_report(asm_guest) -> None:  # type: ignore[no-untyped-def]
    elf = asm_guest("""
        .global main
    main:
        msr vbar_el1, xzr      // no vectors: the abort has nowhere to go
        mov x0, #0x100000
        br x0
    """)
    result = run_cli("run", elf)
    assert_clean_failure(result, 3, "fetch of unmapped address 0x100000")
    err = result.stderr.decode()
    assert "CPU 0" in err and "pc  0x0000000000100000" in err and "x30" in err


def test_udf_without_vectors_is_a_fault_report(asm_guest) -> None:  # type: ignore[no-untyped-def]
    elf = asm_guest("""
        .global main
    main:
        msr vbar_el1, xzr
        udf #0x2a
    """)
    result = run_cli("run", elf)
    assert_clean_failure(result, 3, "undefined instruction")
    assert "udf #0x2a" in result.stderr.decode()
    assert "<main+0x4>" in result.stderr.decode()


def test_spinning_guest_runs_out_of_budget(asm_guest) -> None:  # type: ignore[no-untyped-def]
    elf = asm_guest("""
        .global main
    main:
    1:  b 1b
    """)
    result = run_cli("run", elf, "--max-instructions", "1000000")
    assert_clean_failure(result, 4, "instruction budget exhausted after 1000000 instructions")
    assert "<main>" in result.stderr.decode()


def test_waiting_forever_is_a_deadlock(asm_guest) -> None:  # type: ignore[no-untyped-def]
    elf = asm_guest("""
        .global main
    main:
    1:  wfi
        b 1b
    """)
    assert_clean_failure(run_cli("run", elf), 4, "every CPU waits with nothing that could wake it")


def test_system_reset_exits_5(asm_guest) -> None:  # type: ignore[no-untyped-def]
    elf = asm_guest("""
        .global main
    main:
        ldr x0, =0x84000009
        hvc #0
    """)
    assert_clean_failure(run_cli("run", elf), 5, "SYSTEM_RESET")


def test_source_guests_are_built_first(tmp_path: Path) -> None:
    src = tmp_path / "hello.S"
    src.write_text("""
        .global main
    main:
        ldr x1, =0x09000000
        mov w2, #'o'
        str w2, [x1]
        mov w2, #'k'
        str w2, [x1]
        ldr x0, =0x84000008
        hvc #0
    """)
    result = run_cli("run", src)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"ok"


def test_source_with_an_error_names_the_line(tmp_path: Path) -> None:
    src = tmp_path / "broken.S"
    src.write_text(".global main\nmain:\n    mov x0, #1\n    bogus x1, x2\n")
    result = run_cli("run", src)
    assert_clean_failure(result, 2, "broken.S:4")


@pytest.mark.parametrize("profile,status", [("virt", 0), ("firmware", 0)])
def test_profiles_run_their_conduit(profile: str, status: int, asm_guest) -> None:  # type: ignore[no-untyped-def]
    # HVC on virt, SMC on firmware: the other one is UNDEFINED and lands in the vectors.
    insn = ".inst 0xd4000002" if profile == "virt" else ".inst 0xd4000003"
    elf = asm_guest(f"""
        .global main
    main:
        ldr x0, =0x84000008
        {insn}
    """)
    assert run_cli("run", elf, "--profile", profile).returncode == status


def test_the_command_ends_without_tearing_its_engines_down(tmp_path: Path) -> None:
    # The status is the run's even if tearing Unicorn down would crash: the command ends once its
    # outputs are complete (sdeilab.cli.entry), so no exit handler of the interpreter runs after it.
    import subprocess
    import sys

    trace = tmp_path / "t.jsonl"
    script = ("import atexit, sys\n"
              "atexit.register(lambda: print('interpreter finalized', file=sys.stderr))\n"
              "from sdeilab.cli import entry\n"
              f"sys.argv = ['sdeilab', 'run', {str(SMP_BOOT)!r}, '--trace', {str(trace)!r}]\n"
              "entry()\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120, cwd=ROOT,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr.decode()
    assert b"interpreter finalized" not in result.stderr
    assert result.stdout == run_cli("run", SMP_BOOT).stdout != b""  # the guest's bytes, flushed whole
    assert trace.read_text().count("\n") >= 5 and "PowerTransition" in trace.read_text()
