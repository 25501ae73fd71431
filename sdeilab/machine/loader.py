"""Loading a guest: an AArch64 ELF executable whose segments lie in RAM.

Every way a file can fail to be a guest gets its own one-line message (DESIGN.md section 3:
exit status 2), never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from sdeilab.machine.memmap import MemMapEntry

EM_AARCH64 = 183


class GuestLoadError(Exception):
    """The guest cannot be loaded; the message says why in one line."""


@dataclass(frozen=True)
class Segment:
    address: int
    data: bytes
    memsize: int


@dataclass(frozen=True)
class GuestImage:
    path: Path
    entry: int
    segments: tuple[Segment, ...]
    symbols: dict[int, str] = field(default_factory=dict)  # address -> name, functions and labels
    x0: int = 0  # what the boot CPU finds in x0: a Linux Image wants its device tree's address there

    def symbolize(self, address: int) -> str:
        """``name+0xoff`` for the nearest symbol at or below ``address``, or ``""``."""
        best = max((a for a in self.symbols if a <= address), default=None)
        if best is None or address - best > 0x10000:
            return ""
        offset = address - best
        return self.symbols[best] + (f"+0x{offset:x}" if offset else "")


def load_elf(path: Path | str, ram: MemMapEntry) -> GuestImage:
    path = Path(path)  # a plain string is a path too (Python callers and notebooks pass both)
    if not path.exists():
        raise GuestLoadError(f"{path}: no such file")
    if path.is_dir():
        raise GuestLoadError(f"{path}: is a directory, not an ELF file")
    try:
        with path.open("rb") as stream:
            if stream.read(4) != b"\x7fELF":
                raise GuestLoadError(f"{path}: not an ELF file")
            stream.seek(0)
            elf = ELFFile(stream)
            if elf["e_machine"] != "EM_AARCH64":
                raise GuestLoadError(f"{path}: ELF for {elf['e_machine']}, not AArch64 (EM_AARCH64)")
            if elf.elfclass != 64 or not elf.little_endian:
                raise GuestLoadError(f"{path}: not a 64-bit little-endian ELF")
            if elf["e_type"] != "ET_EXEC":
                raise GuestLoadError(f"{path}: ELF type {elf['e_type']}, not an executable (ET_EXEC)")
            segments = []
            for seg in elf.iter_segments("PT_LOAD"):
                address, memsize = seg["p_paddr"], seg["p_memsz"]
                if memsize == 0:
                    continue
                if not ram.contains(address, memsize):
                    raise GuestLoadError(
                        f"{path}: segment at 0x{address:x}..0x{address + memsize:x} lies outside RAM "
                        f"(0x{ram.base:x}..0x{ram.end:x})")
                segments.append(Segment(address, seg.data(), memsize))
            if not segments:
                raise GuestLoadError(f"{path}: no loadable segment")
            entry = elf["e_entry"]
            if not ram.contains(entry, 4):
                raise GuestLoadError(f"{path}: entry point 0x{entry:x} is outside RAM")
            symbols: dict[int, str] = {}
            symtab = elf.get_section_by_name(".symtab")
            if isinstance(symtab, SymbolTableSection):
                for sym in symtab.iter_symbols():
                    if sym.name and sym["st_info"]["type"] in ("STT_FUNC", "STT_NOTYPE", "STT_OBJECT") \
                            and sym["st_shndx"] != "SHN_UNDEF" and not sym.name.startswith("$"):
                        symbols.setdefault(sym["st_value"], sym.name)
    except GuestLoadError:
        raise
    except (ELFError, OSError, ValueError, KeyError) as error:
        raise GuestLoadError(f"{path}: malformed ELF file ({error})") from None
    return GuestImage(path, entry, tuple(segments), symbols)
