"""The guest toolchain: shipped ELF files are current, builds are reproducible, errors name file and line."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from sdeilab import toolchain
from sdeilab.toolchain import (
    BuildError,
    ShippedBuild,
    build,
    build_source_text,
    guests_dir,
    rebuild_build,
    rebuild_shipped,
    shipped_builds,
    shipped_elf,
    shipped_guests,
    shipped_toolchain_version,
    zig_version,
)

SHIPPED = shipped_guests()
LOAD_ADDRESS = 0x4008_0000

ASM_HELLO = """\
#include "guest.h"
    .text
    .globl main
main:
    stp x29, x30, [sp, #-16]!
    print "hello\\n"
    bl psci_system_off
"""

C_HELLO = """\
#include "guest.h"

int main(void)
{
    puts("hello\\n");
    psci_system_off();
}
"""


def _symbols(elf: Path) -> dict[str, int]:
    with elf.open("rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        return {s.name: s["st_value"] for s in symtab.iter_symbols() if s.name}


def _word_at(elf: Path, address: int) -> int:
    with elf.open("rb") as f:
        text = ELFFile(f).get_section_by_name(".text")
        off = address - text["sh_addr"]
        return int.from_bytes(text.data()[off : off + 4], "little")


def test_shipped_guests() -> None:
    names = {g.stem for g in SHIPPED}
    assert {"psci_tour", "smp_boot", "timer_irq", "smc_undef", "spinlock"} <= names
    assert any(g.suffix == ".c" for g in SHIPPED) and any(g.suffix == ".S" for g in SHIPPED)
    for g in SHIPPED:
        assert shipped_elf(g).is_file(), f"{shipped_elf(g)} is not committed"


@pytest.mark.parametrize("shipped", shipped_builds(), ids=lambda b: b.name)
def test_committed_elf_is_current(shipped: ShippedBuild, tmp_path: Path) -> None:
    # Every committed ELF, the QEMU guests and both conduit variants of every lab-only guest.
    recorded = shipped_toolchain_version()
    if recorded != zig_version():
        pytest.skip(f"committed ELF files were built with ziglang {recorded}, this is {zig_version()}")
    rebuilt = rebuild_build(shipped, tmp_path)
    assert shipped.elf.is_file(), f"{shipped.elf} is not committed"
    assert rebuilt.read_bytes() == shipped.elf.read_bytes(), (
        f"{shipped.elf.name} is stale: run `python -m sdeilab.toolchain update-shipped`"
    )


def test_build_is_reproducible(tmp_path: Path) -> None:
    a = rebuild_shipped(guests_dir() / "psci_tour.c", tmp_path / "a")
    b = rebuild_shipped(guests_dir() / "psci_tour.c", tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    # no absolute path of this machine leaks into the ELF (debug info, file symbols)
    data = a.read_bytes()
    assert str(guests_dir()).encode() not in data
    assert str(tmp_path).encode() not in data


def test_cell_build_does_not_depend_on_temp_dir(tmp_path: Path) -> None:
    a = build_source_text(C_HELLO, "c", tmp_path / "one" / "hello.elf").read_bytes()
    b = build_source_text(C_HELLO, "c", tmp_path / "two" / "hello.elf").read_bytes()
    assert a == b


@pytest.mark.parametrize(("language", "text"), [("asm", ASM_HELLO), ("c", C_HELLO)])
def test_asm_and_c_build(language: toolchain.Language, text: str, tmp_path: Path) -> None:
    elf = build_source_text(text, language, tmp_path / "hello.elf")
    with elf.open("rb") as f:
        e = ELFFile(f)
        assert e["e_machine"] == "EM_AARCH64"
        assert e["e_type"] == "ET_EXEC"
        assert e["e_entry"] == LOAD_ADDRESS
        loads = [s for s in e.iter_segments() if s["p_type"] == "PT_LOAD"]
        assert min(s["p_paddr"] for s in loads) == LOAD_ADDRESS
    syms = _symbols(elf)
    assert syms["_start"] == LOAD_ADDRESS
    assert syms["vectors"] % 0x800 == 0
    for name in ("main", "secondary_entry", "smccc_call", "puts", "spin_lock", "gic_iar", "handle_sync"):
        assert name in syms


def test_build_from_files(tmp_path: Path) -> None:
    src = tmp_path / "two.c"
    src.write_text('#include "guest.h"\nint helper(void);\nint main(void) { return helper(); }\n')
    other = tmp_path / "helper.S"
    other.write_text(".text\n.globl helper\nhelper:\n    mov w0, #0\n    ret\n")
    (tmp_path / "out").mkdir()  # build() writes into an existing folder only (a typo is not created)
    out = build([src, other], tmp_path / "out" / "two.elf")
    assert out == (tmp_path / "out" / "two.elf").resolve()
    assert {"main", "helper"} <= set(_symbols(out))


@pytest.mark.parametrize(
    ("language", "text", "line"),
    [
        ("asm", '#include "guest.h"\n    .text\n    .globl main\nmain:\n    movz x0, #1, lsl #7\n', 5),
        ("asm", "    .text\n    .globl main\nmain:\n    bogus x0, x1\n", 4),
        ("c", '#include "guest.h"\n\nint main(void)\n{\n    return 0\n}\n', 5),
        ("c", "int main(void)\n{\n    undeclared_thing = 1;\n    return 0;\n}\n", 3),
    ],
)
def test_syntax_error_names_file_and_line(language: toolchain.Language, text: str, line: int, tmp_path: Path) -> None:
    with pytest.raises(BuildError) as info:
        build_source_text(text, language, tmp_path / "cell.elf")
    suffix = ".S" if language == "asm" else ".c"
    message = info.value.message
    assert re.search(rf"(^|\n)cell\{suffix}:{line}:\d+: error:", message), message
    assert "Traceback" not in message
    assert str(info.value) == message
    assert info.value._render_traceback_() == message.rstrip("\n").splitlines()
    assert not (tmp_path / "cell.elf").exists()


def test_error_in_a_file_names_its_path(tmp_path: Path) -> None:
    src = tmp_path / "broken.S"
    src.write_text("    .text\n    .globl main\nmain:\n    ret\n    add x0, x1\n")
    with pytest.raises(BuildError) as info:
        build([src], tmp_path / "broken.elf")
    assert f"{src.resolve()}:5:" in info.value.message


def test_link_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError) as info:
        build_source_text("void missing(void);\nint main(void) { missing(); return 0; }\n", "c", tmp_path / "x.elf")
    assert "missing" in info.value.message
    assert "undefined symbol" in info.value.message


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(BuildError):
        build([], tmp_path / "x.elf")
    with pytest.raises(BuildError):
        build([tmp_path / "nope.S"], tmp_path / "x.elf")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(BuildError):
        build([tmp_path / "x.txt"], tmp_path / "x.elf")
    with pytest.raises(BuildError):
        build_source_text("", "rust", tmp_path / "x.elf")  # type: ignore[arg-type]


def test_conduit_define(tmp_path: Path) -> None:
    """-DCONDUIT_SMC switches the library's SMCCC calls from HVC #0 to SMC #0."""
    hvc = build_source_text(C_HELLO, "c", tmp_path / "hvc.elf")
    smc = build_source_text(C_HELLO, "c", tmp_path / "smc.elf", defines={"CONDUIT_SMC": ""})

    def conduits(elf: Path) -> set[int]:
        with elf.open("rb") as f:
            text = ELFFile(f).get_section_by_name(".text").data()
        words = {int.from_bytes(text[i : i + 4], "little") for i in range(0, len(text), 4)}
        return words & {0xD4000002, 0xD4000003}  # hvc #0, smc #0

    assert conduits(hvc) == {0xD4000002}
    assert conduits(smc) == {0xD4000003}


def test_defines_reach_asm(tmp_path: Path) -> None:
    text = ".text\n.globl main\nmain:\n    mov x0, #VALUE\n    ret\n"
    elf = build_source_text(text, "asm", tmp_path / "d.elf", defines={"VALUE": "42"})
    assert _word_at(elf, _symbols(elf)["main"]) == 0xD2800540  # mov x0, #42


def test_toolchain_imports_no_other_sdeilab_module() -> None:
    tree = ast.parse(Path(toolchain.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("sdeilab") for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith("sdeilab")


SIMD_OPERAND = re.compile(r"\b[qdsbh]\d+\b|\bv\d+\.")  # a register of the FP/SIMD file


@pytest.mark.parametrize("shipped", shipped_builds(), ids=lambda b: b.name)
def test_no_guest_touches_the_fp_simd_registers(shipped: ShippedBuild) -> None:
    # The guests run where FP/SIMD traps (TF-A enters BL33 with CPACR_EL1.FPEN clear): not one
    # instruction of their code may name a q, d, s, h, b or v register.
    from sdeilab.machine.disasm import disassemble

    with open(shipped.elf, "rb") as stream:
        elf = ELFFile(stream)
        text = elf.get_section_by_name(".text")
        assert text is not None
        lines = disassemble(text.data(), text["sh_addr"])
    simd = [f"0x{address:x}: {line}" for address, line in lines if SIMD_OPERAND.search(line.split(" ", 1)[-1])
            and not line.startswith(".inst")]
    assert not simd, "\n".join(simd[:5])
