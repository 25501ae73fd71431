"""The arm64 boot protocol (sdeilab.machine.linux_boot, Platform.load_kernel, ``run --kernel``) on
hand-made Images, so it is checked without Debian's kernel: the header, the placement, x0, the
device tree's /chosen, and the command line's exit statuses for kernels that cannot boot."""

from __future__ import annotations

import struct
from pathlib import Path

import fdt
import pytest

from sdeilab.lab.platform import DEFAULT_BOOTARGS, KernelBoot, make_platform
from sdeilab.lab.session import Session
from sdeilab.machine.linux_boot import SZ_2M, parse_image_header, plan_layout
from sdeilab.machine.loader import GuestLoadError
from sdeilab.machine.memmap import VIRT_MEMMAP, MemMapEntry, Region
from sdeilab.machine.outcome import StopReason

from .conftest import run_cli

RAM = VIRT_MEMMAP[Region.RAM]
FLAGS_4K_ANYWHERE = 0b1010  # bit 3: anywhere; bits 1-2 = 1: 4 KiB pages (what Debian's kernel says)

# A "kernel" in A64 machine code: code0 branches over the header; then it copies the 4 bytes at x0
# (the device tree's magic, big-endian 0xd00dfeed) to the PL011 and calls PSCI SYSTEM_OFF.
BOOT_CODE = [
    0x3940_0003,  # ldrb w3, [x0]
    0xD2A1_2002,  # movz x2, #0x900, lsl #16      (UART0 data register 0x0900_0000)
    0x3900_0043,  # strb w3, [x2]
    0x3940_0403,  # ldrb w3, [x0, #1]
    0x3900_0043,  # strb w3, [x2]
    0x3940_0803,  # ldrb w3, [x0, #2]
    0x3900_0043,  # strb w3, [x2]
    0x3940_0C03,  # ldrb w3, [x0, #3]
    0x3900_0043,  # strb w3, [x2]
    0xD280_0100,  # movz x0, #8
    0xF2B0_8000,  # movk x0, #0x8400, lsl #16     (PSCI SYSTEM_OFF 0x84000008)
    0xD400_0002,  # hvc #0
]


def image(text_offset: int = 0x8_0000, image_size: int = 0x10_0000, flags: int = FLAGS_4K_ANYWHERE,
          magic: bytes = b"ARM\x64") -> bytes:
    """An arm64 Image header (Documentation/arch/arm64/booting.rst) followed by BOOT_CODE at 0x40."""
    header = struct.pack("<IIQQQQQQ4sI", 0x1400_0010,  # b +0x40
                         0, text_offset, image_size, flags, 0, 0, 0, magic, 0)
    return header + b"".join(word.to_bytes(4, "little") for word in BOOT_CODE)


@pytest.fixture
def kernel(tmp_path: Path) -> Path:
    path = tmp_path / "Image"
    path.write_bytes(image())
    return path


def test_header_fields() -> None:
    header = parse_image_header(image())
    assert (header.text_offset, header.image_size, header.flags) == (0x8_0000, 0x10_0000, FLAGS_4K_ANYWHERE)
    assert header.anywhere and header.page_size == "4 KiB"


@pytest.mark.parametrize(("data", "words"), [
    (b"\x7fELF" + bytes(100), "an ELF file, not an arm64 Image"),
    (image()[:40], "too short"),
    (image(magic=b"ARM\x00"), "not an arm64 Linux Image"),
    (image(image_size=0), "image_size is 0"),
    (image(image_size=16), "smaller than the file"),
    (image(flags=FLAGS_4K_ANYWHERE | 1), "big-endian"),
    (image(flags=0b0100), "16 KiB pages"),
    (image(text_offset=0x123), "text_offset 0x123"),
])
def test_what_is_not_a_bootable_image(data: bytes, words: str) -> None:
    with pytest.raises(GuestLoadError, match=words):
        parse_image_header(data)


def test_layout_kernel_low_device_tree_and_initrd_in_regions_of_their_own() -> None:
    header = parse_image_header(image(image_size=0x1AB_0000))
    layout = plan_layout(header, RAM, initrd_size=1000)
    assert layout.kernel == RAM.base + 0x8_0000
    assert layout.kernel_end == layout.kernel + 0x1AB_0000
    assert layout.dtb % SZ_2M == 0 and layout.dtb >= layout.kernel_end
    assert layout.initrd == (layout.dtb + SZ_2M, layout.dtb + SZ_2M + 1000)
    with pytest.raises(GuestLoadError, match="need 31 MiB of RAM; the machine has 24 MiB"):
        plan_layout(header, MemMapEntry(RAM.base, 24 << 20), initrd_size=1000)


def test_the_kernel_starts_with_x0_at_its_device_tree(kernel: Path) -> None:
    platform = make_platform(2)
    machine = platform.machine
    initrd = b"initramfs bytes" * 100
    loaded = platform.load_kernel(kernel, initrd, "console=ttyAMA0 sdeilab=yes")
    assert loaded.entry == RAM.base + 0x8_0000
    blob = machine.read_ram(loaded.x0, 64 << 10)
    assert blob is not None
    tree = fdt.parse_dtb(blob)
    assert tree.get_property("bootargs", "/chosen").value == "console=ttyAMA0 sdeilab=yes"
    start = tree.get_property("linux,initrd-start", "/chosen").data
    end = tree.get_property("linux,initrd-end", "/chosen").data
    start, end = start[0] << 32 | start[1], end[0] << 32 | end[1]
    assert machine.read_ram(start, end - start) == initrd
    assert len(tree.get_node("/cpus").nodes) == 2
    outcome = platform.run(10_000)
    assert outcome.reason is StopReason.SYSTEM_OFF
    assert bytes(machine.uart_output) == b"\xd0\x0d\xfe\xed"  # what x0 pointed at: the DTB's magic


def test_cli_boots_a_kernel(kernel: Path) -> None:
    result = run_cli("run", "--kernel", kernel, "--cpus", "2", "--append", "quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"\xd0\x0d\xfe\xed"


@pytest.mark.parametrize(("args", "words"), [
    (["--kernel", "{junk}"], "not an arm64 Linux Image"),
    (["--kernel", "guests/smp_boot.elf"], "an ELF file, not an arm64 Image"),
    (["--kernel", "{kernel}", "--initrd", "{missing}"], "no such file (initrd)"),
    (["--kernel", "{missing}"], "no such file (kernel)"),
    ([], "run takes either a GUEST or --kernel IMAGE"),
    (["guests/smp_boot.elf", "--kernel", "{kernel}"], "not both"),
    (["guests/smp_boot.elf", "--append", "quiet"], "--initrd and --append go with --kernel"),
])
def test_cli_refuses_what_cannot_boot(kernel: Path, tmp_path: Path, args: list[str], words: str) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a kernel\n" * 20)
    names = {"junk": junk, "kernel": kernel, "missing": tmp_path / "missing"}
    result = run_cli("run", *(arg.format(**names) for arg in args))
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert words in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert result.stdout == b""


def test_default_command_line_names_the_pl011() -> None:
    assert "console=ttyAMA0" in DEFAULT_BOOTARGS.split()


def test_a_session_boots_a_kernel_and_steps_back_by_replay(kernel: Path) -> None:
    session = Session(KernelBoot(kernel), cpus=2)
    assert session.run().reason == "system-off"
    assert session.uart == b"\xd0\x0d\xfe\xed"
    assert session.retired == 1 + len(BOOT_CODE)  # the branch over the header, then the code
    # Replayed from the very image loaded (kernel, device tree, x0): 9 instructions wrote 3 bytes.
    session.step_back(4)
    assert session.retired == 9 and session.uart == b"\xd0\x0d\xfe"
    assert session.run().reason == "system-off" and session.uart == b"\xd0\x0d\xfe\xed"
