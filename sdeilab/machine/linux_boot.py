"""Booting an arm64 Linux ``Image``: its header, and where the kernel, device tree and initrd go.

The boot protocol is Linux's Documentation/arch/arm64/booting.rst (the 6.1 text):

* The Image starts with a 64-byte header: ``code0``, ``code1``, ``text_offset`` (u64 at 8),
  ``image_size`` (u64 at 16, the kernel's whole footprint, BSS included), ``flags`` (u64 at 24),
  three reserved words, the magic ``"ARM\\x64"`` (at 0x38) and the PE header offset that the EFI
  stub uses. ``flags``: bit 0 big-endian, bits 1-2 the page size (0 unspecified, 1 4 KiB, 2 16 KiB,
  3 64 KiB), bit 3 set if the 2 MiB-aligned base may lie anywhere in RAM (clear: as close to the
  start of RAM as possible, since memory below it is not in the linear map).
* The Image goes ``text_offset`` bytes above a 2 MiB-aligned base, with ``image_size`` bytes free
  from its start.
* The device tree goes on an 8-byte boundary, at most 2 MiB, and not in a 2 MiB region that must
  be mapped with other attributes: it gets a 2 MiB region of its own here.
* The initrd lies in the same 1 GiB-aligned window of up to 32 GiB as the kernel (RAM here).
* Entry: primary CPU at the Image's first byte, x0 = the device tree's physical address, x1 = x2
  = x3 = 0, MMU and D-cache off, DAIF masked, at EL2 or non-secure EL1 (EL1h here: the lab has no
  EL2). ``Machine.load_image`` starts CPU 0 exactly so, with ``GuestImage.x0``.

This is the machine's half: it knows RAM and the protocol. The device tree describes the
platform, so it comes from the firmware layer (sdeilab.firmware.devicetree) through a callback
that is told where the initrd landed.

Every way a file can fail to be a kernel gets its one-line :class:`GuestLoadError` (DESIGN.md
section 3: exit status 2).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sdeilab.machine.loader import GuestImage, GuestLoadError, Segment, read_input, shown
from sdeilab.machine.memmap import MemMapEntry

IMAGE_MAGIC = b"ARM\x64"
MAGIC_OFFSET = 0x38
HEADER_SIZE = 64
SZ_2M = 2 << 20
DTB_MAX_SIZE = SZ_2M
FLAG_BIG_ENDIAN = 1 << 0
FLAG_PHYS_ANYWHERE = 1 << 3
PAGE_SIZES = {0: "unspecified", 1: "4 KiB", 2: "16 KiB", 3: "64 KiB"}
# The Cortex-A57 the lab models implements the 4 KiB and 64 KiB granules only
# (ID_AA64MMFR0_EL1.TGran16 = 0, Cortex-A57 TRM 4.3.26); a 16 KiB kernel stops before any output.
UNSUPPORTED_PAGE_SIZE = 2
DEFAULT_MAX_FILE = 1 << 30  # read_kernel without a RAM size: larger than any RAM the lab gives a machine

DeviceTreeFor = Callable[[tuple[int, int] | None], bytes]
"""Builds the device tree blob, given where the initrd lies (``(start, end)``, physical) or None."""


@dataclass(frozen=True)
class ImageHeader:
    text_offset: int
    image_size: int
    flags: int

    @property
    def page_size(self) -> str:
        return PAGE_SIZES[(self.flags >> 1) & 3]

    @property
    def anywhere(self) -> bool:
        return bool(self.flags & FLAG_PHYS_ANYWHERE)


@dataclass(frozen=True)
class LinuxLayout:
    """Physical addresses chosen for one boot."""

    kernel: int  # where the Image's first byte goes: the entry point
    kernel_end: int  # kernel + image_size
    dtb: int
    initrd: tuple[int, int] | None  # (start, end), end exclusive


def parse_image_header(data: bytes, name: str = "kernel") -> ImageHeader:
    """The header of an arm64 Image, checked as booting.rst asks; :class:`GuestLoadError` if it is not one."""
    if data[:4] == b"\x7fELF":
        raise GuestLoadError(f"{name}: an ELF file, not an arm64 Image (run it as a guest, without --kernel)")
    if len(data) < HEADER_SIZE:
        raise GuestLoadError(f"{name}: {len(data)} bytes, too short for an arm64 Image header")
    if data[MAGIC_OFFSET:MAGIC_OFFSET + 4] != IMAGE_MAGIC:
        raise GuestLoadError(f"{name}: not an arm64 Linux Image (no \"ARM\\x64\" magic at offset 0x38)")
    text_offset, image_size, flags = struct.unpack_from("<QQQ", data, 8)
    header = ImageHeader(text_offset, image_size, flags)
    if image_size == 0:
        raise GuestLoadError(f"{name}: image_size is 0 (a kernel older than 3.17, whose header does not say "
                             "how much memory it needs): not supported")
    if image_size < len(data):
        raise GuestLoadError(f"{name}: image_size 0x{image_size:x} is smaller than the file ({len(data)} bytes)")
    if flags & FLAG_BIG_ENDIAN:
        raise GuestLoadError(f"{name}: a big-endian kernel; the lab's CPUs run little-endian")
    if (flags >> 1) & 3 == UNSUPPORTED_PAGE_SIZE:
        raise GuestLoadError(f"{name}: built for 16 KiB pages, a granule the Cortex-A57 does not implement")
    if text_offset % 4096 or text_offset >= SZ_2M:
        raise GuestLoadError(f"{name}: text_offset 0x{text_offset:x} is not a page offset inside a 2 MiB block")
    return header


def plan_layout(header: ImageHeader, ram: MemMapEntry, *, initrd_size: int | None = None,
                name: str = "kernel") -> LinuxLayout:
    """Kernel at the lowest 2 MiB-aligned base in RAM (right for both values of flags bit 3), the
    device tree in the next free 2 MiB region, the initrd in the region after that."""
    base = _align_up(ram.base, SZ_2M)
    kernel = base + header.text_offset
    kernel_end = kernel + header.image_size
    dtb = _align_up(kernel_end, SZ_2M)
    end = dtb + DTB_MAX_SIZE
    initrd = None
    if initrd_size is not None:
        initrd = (end, end + initrd_size)
        end = initrd[1]
    if end > ram.end:
        need = (end - ram.base + (1 << 20) - 1) >> 20
        raise GuestLoadError(f"{name}: the kernel (image_size {header.image_size >> 20} MiB), its device tree"
                             f"{' and initrd' if initrd else ''} need {need} MiB of RAM; "
                             f"the machine has {ram.size >> 20} MiB")
    return LinuxLayout(kernel, kernel_end, dtb, initrd)


def read_kernel(path: Path | str, max_size: int | None = None) -> bytes:
    """The Image's bytes; an ``Image.gz`` is decompressed (as QEMU's -kernel does).

    ``max_size`` (the machine's RAM: the kernel must fit in it) bounds both the file and what it
    decompresses to, so a sparse file of many GiB or a gzip bomb is refused, not read into memory.
    """
    limit = DEFAULT_MAX_FILE if max_size is None else max_size
    data = read_input(path, "kernel", limit)
    if data[:2] == b"\x1f\x8b":
        data = _gunzip(data, limit, path)
    return data


def _gunzip(data: bytes, limit: int, path: Path | str) -> bytes:
    """Decompress a gzip member (RFC 1952) into at most ``limit`` bytes."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # 16 +: expect the gzip header and trailer
    try:
        out = inflater.decompress(data, limit + 1)
        if len(out) > limit:
            raise GuestLoadError(f"{shown(path)}: decompresses to more than {limit:,} bytes, "
                                 "more than the machine's RAM")
        if not inflater.eof:
            raise GuestLoadError(f"{shown(path)}: a damaged gzip file (it ends before its last block)")
    except zlib.error as error:
        raise GuestLoadError(f"{shown(path)}: a damaged gzip file ({error})") from None
    return out


def linux_image(kernel: Path | str, ram: MemMapEntry, device_tree: DeviceTreeFor, *,
                initrd: Path | str | bytes | None = None) -> GuestImage:
    """A :class:`GuestImage` that boots ``kernel`` as the arm64 boot protocol says (module docstring).

    ``device_tree(initrd_range)`` supplies the blob; ``initrd`` is a file or its bytes.
    """
    path = Path(kernel)
    data = read_kernel(path, ram.size)
    header = parse_image_header(data, shown(path))
    rd = read_input(initrd, "initrd", ram.size) if isinstance(initrd, (str, Path)) else initrd
    if rd is not None and len(rd) == 0:
        # Nothing to hand the kernel; linux,initrd-start == linux,initrd-end would describe no
        # initramfs at all, so say so rather than boot as if one had been given.
        raise GuestLoadError(f"{shown(initrd) if isinstance(initrd, (str, Path)) else 'initrd'}: "
                             "the initrd is empty (0 bytes)")
    layout = plan_layout(header, ram, initrd_size=None if rd is None else len(rd), name=str(path))
    dtb = device_tree(layout.initrd)
    if len(dtb) > DTB_MAX_SIZE:
        raise GuestLoadError(f"{path}: the device tree is {len(dtb)} bytes, more than the 2 MiB Linux maps")
    segments = [Segment(layout.kernel, data, header.image_size), Segment(layout.dtb, dtb, len(dtb))]
    if rd is not None and layout.initrd is not None:
        segments.append(Segment(layout.initrd[0], bytes(rd), len(rd)))
    return GuestImage(path, layout.kernel, tuple(segments), x0=layout.dtb)


def _align_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment
