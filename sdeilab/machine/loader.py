"""Loading a guest: an AArch64 ELF executable whose segments lie in RAM.

Every way a file can fail to be a guest gets its own one-line message (DESIGN.md section 3:
exit status 2), never a traceback. A file given on the command line is hostile input: it may be a
FIFO (whose open() blocks until a writer comes, POSIX open()), a device that never ends
(/dev/zero), a sparse file of many GiB, or an ELF whose headers point anywhere. So every input is
opened without blocking, checked to be a regular file of a bounded size on the open descriptor,
and an ELF's program headers are checked against the ELF specification (gABI, "Program Header")
and against the file's real length before a byte of a segment is read.
"""

from __future__ import annotations

import errno
import os
import stat
from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.construct import ConstructError
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import Symbol, SymbolTableSection

from sdeilab.machine.memmap import MemMapEntry

EM_AARCH64 = 183
MAX_SYMBOLS = 1 << 20
SHF_ALLOC, SHF_EXECINSTR = SH_FLAGS.SHF_ALLOC, SH_FLAGS.SHF_EXECINSTR
"""Symbols kept from a guest's .symtab (they only name addresses in fault reports); a bigger table is cut."""
_SHOWN_PATH = 160  # a path longer than this is shortened in messages, so a message stays one readable line


ELF_DTB_ROOM = 0x10_0000
"""The room QEMU 7.2's virt board gives its device tree (create_device_tree's 1 MiB buffer, loaded
whole): an ELF -kernel finds the DTB at the start of RAM only when its lowest address is at least
this far above it (hw/arm/boot.c, arm_setup_direct_kernel_boot; checked: linked at RAM + 1 MiB the
DTB is there, at RAM + 1 MiB - 4 KiB or RAM + 512 KiB it is not). x0..x3 are 0 either way."""


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
    data: tuple[tuple[int, int], ...] = ()  # [low, high) ranges the ELF file says hold data, sorted
    # An ELF -kernel: QEMU leaves x0 = 0 but writes its device tree at the start of RAM when the
    # blob's room (ELF_DTB_ROOM) lies below the image (Machine.load_image, docs/machine.md).
    dtb_below: bool = False

    @property
    def low(self) -> int:
        """The lowest address the image loads to."""
        return min(segment.address for segment in self.segments)

    def is_data(self, address: int) -> bool:
        """Whether the ELF file says ``address`` holds data, not code (``data_ranges``): a
        disassembly shows such a word as ``.word``, as objdump does, instead of decoding it."""
        found = bisect_right(self.data, (address, 1 << 64)) - 1
        return found >= 0 and address < self.data[found][1]

    def symbolize(self, address: int) -> str:
        """``name+0xoff`` for the nearest symbol at or below ``address``, or ``""``."""
        best = max((a for a in self.symbols if a <= address), default=None)
        if best is None or address - best > 0x10000:
            return ""
        offset = address - best
        return self.symbols[best] + (f"+0x{offset:x}" if offset else "")


def shown(path: Path | str) -> str:
    """``path`` for a one-line message: a path longer than the system allows is cut in the middle."""
    text = str(path)
    if len(text) <= _SHOWN_PATH:
        return text
    half = _SHOWN_PATH // 2
    return f"{text[:half]}...{text[-half:]} ({len(text)} characters)"


_FILE_TYPES = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


def open_input(path: Path | str, what: str, max_size: int | None = None) -> tuple[BinaryIO, int]:
    """Open ``path`` for reading as a ``what`` ("ELF file", "kernel", ...): (stream, size in bytes).

    Refused with a one-line :class:`GuestLoadError`: a missing file, a name the system cannot take
    (ENAMETOOLONG), anything but a regular file, and a file over ``max_size`` bytes. O_NONBLOCK
    keeps open() of a FIFO from waiting for a writer (POSIX open()); it changes nothing for a
    regular file. The type is read from the open descriptor, so nothing can be swapped in between.
    """
    name = shown(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.ENOENT:
            raise GuestLoadError(f"{name}: no such file" + ("" if what == "ELF file" else f" ({what})")) from None
        if error.errno == errno.ENAMETOOLONG:
            raise GuestLoadError(f"{name}: file name too long for this system ({what})") from None
        raise GuestLoadError(f"{name}: cannot open the {what} ({error.strerror})") from None
    stream = os.fdopen(fd, "rb")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next((k for test, k in _FILE_TYPES if test(info.st_mode)), "a special file")
            raise GuestLoadError(f"{name}: is {kind}; the {what} must be a regular file")
        if max_size is not None and info.st_size > max_size:
            raise GuestLoadError(f"{name}: {info.st_size:,} bytes, more than the {what} can be "
                                 f"({max_size:,} bytes: it must fit in the machine's RAM)")
    except BaseException:
        stream.close()
        raise
    return stream, info.st_size


def read_input(path: Path | str, what: str, max_size: int) -> bytes:
    """The whole of a regular file of at most ``max_size`` bytes (see :func:`open_input`)."""
    stream, _ = open_input(path, what, max_size)
    with stream:
        try:
            data = stream.read(max_size + 1)  # bounded even if the file grows after the check
        except OSError as error:
            raise GuestLoadError(f"{shown(path)}: cannot read the {what} ({error.strerror})") from None
    if len(data) > max_size:
        raise GuestLoadError(f"{shown(path)}: more than {max_size:,} bytes, too big for the {what} "
                             "(it must fit in the machine's RAM)")
    return data


def load_elf(path: Path | str, ram: MemMapEntry) -> GuestImage:
    path = Path(path)  # a plain string is a path too (Python callers and notebooks pass both)
    stream, file_size = open_input(path, "ELF file")
    name = shown(path)
    try:
        with stream:
            if stream.read(4) != b"\x7fELF":
                raise GuestLoadError(f"{name}: not an ELF file")
            stream.seek(0)
            elf = ELFFile(stream)
            if elf["e_machine"] != "EM_AARCH64":
                raise GuestLoadError(f"{name}: ELF for {elf['e_machine']}, not AArch64 (EM_AARCH64)")
            if elf.elfclass != 64 or not elf.little_endian:
                raise GuestLoadError(f"{name}: not a 64-bit little-endian ELF")
            # QEMU's -kernel loads an ET_DYN (a PIE or a shared object) like an ET_EXEC: each
            # PT_LOAD at its p_paddr, no relocation applied (hw/core/loader.c load_elf; checked on
            # QEMU 7.2). So it runs when linked for its load address in RAM, as here.
            if elf["e_type"] not in ("ET_EXEC", "ET_DYN"):
                raise GuestLoadError(f"{name}: ELF type {elf['e_type']}, not an executable (ET_EXEC) "
                                     "or a position-independent one (ET_DYN)")
            dynamic = elf["e_type"] == "ET_DYN"
            segments = []
            for number, seg in enumerate(elf.iter_segments()):
                if seg["p_type"] != "PT_LOAD":
                    continue
                address, memsize = seg["p_paddr"], seg["p_memsz"]
                offset, filesize = seg["p_offset"], seg["p_filesz"]
                where = f"{name}: segment {number} (PT_LOAD at 0x{address:x})"
                # gABI, Program Header: "p_filesz ... may not be larger than the memory size".
                if filesize > memsize:
                    raise GuestLoadError(f"{where}: p_filesz 0x{filesize:x} is larger than p_memsz 0x{memsize:x}, "
                                         "which the ELF specification forbids")
                if memsize == 0:
                    continue
                if not ram.contains(address, memsize):
                    raise GuestLoadError(
                        f"{where}: 0x{address:x}..0x{address + memsize:x} lies outside RAM "
                        f"(0x{ram.base:x}..0x{ram.end:x})"
                        + (": an ET_DYN is loaded where it is linked, not relocated (as QEMU does); "
                           "link it at a RAM address" if dynamic else ""))
                if offset + filesize > file_size:
                    raise GuestLoadError(f"{where}: its bytes at offset 0x{offset:x}+0x{filesize:x} lie past "
                                         f"the end of the file ({file_size} bytes): truncated or damaged")
                stream.seek(offset)
                contents = stream.read(filesize)
                if len(contents) != filesize:  # the file shrank under us
                    raise GuestLoadError(f"{where}: the file ends inside the segment: truncated")
                segments.append(Segment(address, contents, memsize))
            if not segments:
                raise GuestLoadError(f"{name}: no loadable segment")
            entry = elf["e_entry"]
            if not ram.contains(entry, 4):
                raise GuestLoadError(f"{name}: entry point 0x{entry:x} is outside RAM")
            symbols: dict[int, str] = {}
            table: list[Symbol] = []
            symtab = elf.get_section_by_name(".symtab")
            # Symbols only name addresses in reports: a table that lies past the end of the file
            # (a damaged or hostile header) is ignored, and a huge one is cut, rather than read.
            if isinstance(symtab, SymbolTableSection) and symtab["sh_offset"] + symtab["sh_size"] <= file_size:
                for count, sym in enumerate(symtab.iter_symbols()):
                    if count >= MAX_SYMBOLS:
                        break
                    table.append(sym)
                    if sym.name and sym["st_info"]["type"] in ("STT_FUNC", "STT_NOTYPE", "STT_OBJECT") \
                            and sym["st_shndx"] != "SHN_UNDEF" and not sym.name.startswith("$"):
                        symbols.setdefault(sym["st_value"], sym.name)
            data = data_ranges(elf, table)
    except GuestLoadError:
        raise
    # What pyelftools raises on headers that point outside the file or hold impossible values.
    except (ELFError, ConstructError, OSError, ValueError, KeyError, IndexError, OverflowError, TypeError,
            AttributeError) as error:
        raise GuestLoadError(f"{name}: malformed ELF file ({type(error).__name__}: {error})") from None
    return GuestImage(path, entry, tuple(segments), symbols, data=data, dtb_below=True)


def data_ranges(elf: ELFFile, table: list[Symbol]) -> tuple[tuple[int, int], ...]:
    """The address ranges ``elf`` says hold data, merged and sorted: allocated sections that are
    not executable; STT_OBJECT symbols; in executable sections, from a ``$d`` mapping symbol to
    the next ``$x`` or function (AAELF64, "Mapping symbols"), and from a function's end (its
    st_size: the literal pool and padding after its ``ret``) to the next function or ``$x``."""
    ranges: list[tuple[int, int]] = []
    marks: list[tuple[int, int, bool]] = []  # (address, order, data from here on); the last at or below wins
    executable: set[int] = set()
    for index, section in enumerate(elf.iter_sections()):
        flags, low, size = section["sh_flags"], section["sh_addr"], section["sh_size"]
        if not flags & SHF_ALLOC or size == 0:
            continue
        if flags & SHF_EXECINSTR:
            executable.add(index)
            marks += [(low, 1, False), (low + size, 0, True)]
        else:
            ranges.append((low, low + size))
    functions: list[tuple[int, int]] = []
    for sym in table:
        kind, value, size = sym["st_info"]["type"], sym["st_value"], sym["st_size"]
        name = sym.name.split(".")[0]
        if kind == "STT_OBJECT" and size:
            ranges.append((value, value + size))
        elif sym["st_shndx"] not in executable:
            continue
        elif kind == "STT_FUNC" or name == "$x":
            marks.append((value, 1, False))
            if kind == "STT_FUNC" and size:
                functions.append((value, value + size))
        elif name == "$d":
            marks.append((value, 2, True))
    # A function's end starts data unless another function runs on there; a function or $x
    # starting at that very address wins (order 1 sorts after the end's 0).
    functions.sort()
    lows = [low for low, _ in functions]
    reach: list[int] = []  # the furthest end of the functions so far
    for _, high in functions:
        reach.append(max(high, reach[-1]) if reach else high)
    for _, end in functions:
        inside = bisect_right(lows, end) - 1
        if inside < 0 or reach[inside] <= end:
            marks.append((end, 0, True))
    marks.sort()
    for (at, _, is_data), (after, _, _) in pairwise(marks):
        if is_data and after > at:
            ranges.append((at, after))
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(high, merged[-1][1]))
        else:
            merged.append((low, high))
    return tuple(merged)
