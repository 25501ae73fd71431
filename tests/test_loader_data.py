"""The loader's map of data in code (``GuestImage.is_data``), on every shipped guest.

A disassembly shows a word the ELF file says is data as ``.word`` (objdump's way), so the map
must never call an instruction of a function data, and must cover what the file says is data:
every sized STT_OBJECT, every allocated section that is not executable, and the word after a
function's last instruction when no other function starts there (its literal pool or padding).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from sdeilab.machine.loader import load_elf
from sdeilab.machine.memmap import VIRT_MEMMAP, Region
from sdeilab.toolchain import guests_dir

GUESTS = sorted(guests_dir().rglob("*.elf"))


@pytest.mark.parametrize("path", GUESTS, ids=[p.name for p in GUESTS])
def test_functions_are_code_and_objects_are_data(path: Path) -> None:
    image = load_elf(path, VIRT_MEMMAP[Region.RAM])
    with path.open("rb") as stream:
        elf = ELFFile(stream)
        symtab = elf.get_section_by_name(".symtab")
        assert isinstance(symtab, SymbolTableSection)
        symbols = list(symtab.iter_symbols())
        functions = sorted((s["st_value"], s["st_size"]) for s in symbols
                           if s["st_info"]["type"] == "STT_FUNC" and s["st_size"])
        objects = [(s["st_value"], s["st_size"]) for s in symbols if s["st_info"]["type"] == "STT_OBJECT"
                   and s["st_size"] and s["st_shndx"] != "SHN_UNDEF"]
        sections = [(s["sh_addr"], s["sh_size"]) for s in elf.iter_sections()
                    if s["sh_flags"] & SH_FLAGS.SHF_ALLOC and not s["sh_flags"] & SH_FLAGS.SHF_EXECINSTR
                    and s["sh_size"]]
    assert functions, "a guest with no sized function: nothing tested"
    code = [a for low, size in functions for a in range(low, low + size, 4) if image.is_data(a)]
    assert code == [], f"instructions of functions taken for data: {[hex(a) for a in code[:5]]}"
    for low, size in objects + sections:
        assert image.is_data(low) and image.is_data(low + size - 1), f"data at 0x{low:x}+{size} not marked"
    starts = {low for low, _ in functions}
    ends = [low + size for low, size in functions if low + size not in starts]
    assert any(image.is_data(end) for end in ends) or not ends


def test_a_known_literal_is_data() -> None:
    # tftf_state's set_vbar: the word after its code is the PSCI CPU_OFF function ID its caller loads.
    path = guests_dir() / "sdei" / "tftf_state.elf"
    image = load_elf(path, VIRT_MEMMAP[Region.RAM])
    set_vbar = next(a for a, name in image.symbols.items() if name == "set_vbar")
    assert not image.is_data(set_vbar)
    words = {a: int.from_bytes(segment.data[a - segment.address:a - segment.address + 4], "little")
             for segment in image.segments for a in range(segment.address, segment.address + len(segment.data), 4)}
    literal = next(a for a in range(set_vbar, set_vbar + 64, 4) if words[a] == 0x84000002)
    assert image.is_data(literal) and image.is_data(literal - 4)  # the padding before it too
