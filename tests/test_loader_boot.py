"""Loading what QEMU loads (issue 15 item 6): ET_DYN guests, the boot CPU's x0..x3 and the device
tree at the start of RAM for an ELF, and the RAM size (``--memory``, QEMU's ``-m``).

QEMU 7.2 is the spec, measured with probe guests (docs/machine.md, "Loading a guest"): an ELF
``-kernel`` is entered with x0..x3 = 0; its 1 MiB device tree is written at the start of RAM when
the image's lowest address is at least RAM + 1 MiB; an ET_DYN is loaded like an ET_EXEC, where
it is linked, with no relocation.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import fdt
import pytest

from sdeilab.firmware.devicetree import device_tree_blob
from sdeilab.lab.platform import make_platform
from sdeilab.machine.loader import ELF_DTB_ROOM, GuestLoadError, load_elf
from sdeilab.machine.machine import Machine, RamSizeError
from sdeilab.machine.memmap import MAX_RAM_SIZE, VIRT_MEMMAP, MemMapEntry, Region, parse_ram_size
from sdeilab.machine.outcome import StopReason
from sdeilab.machine.qemu import qemu_binary, qemu_virt_command
from sdeilab.toolchain import build, guests_dir, linker_script_at

from .conftest import run_cli

QEMU = qemu_binary()
RAM = VIRT_MEMMAP[Region.RAM]
GUESTS = guests_dir()
BOOT_REGS = GUESTS / "boot_regs.elf"
FDT_MAGIC = b"\xd0\x0d\xfe\xed"


def lab_output(elf: Path, cpus: int = 4, memory: str | int = "128M") -> bytes:
    platform = make_platform(cpus, memory=memory)
    platform.load(elf)
    outcome = platform.run(2_000_000_000)
    assert outcome.reason is StopReason.SYSTEM_OFF, outcome
    return bytes(platform.machine.uart_output)


def qemu_output(elf: Path, memory: str = "128M", cpus: int = 4) -> bytes:
    command = qemu_virt_command(elf, cpus, extra=["-monitor", "none", "-serial", "stdio"])
    command[command.index("-m") + 1] = memory
    command.remove("-nographic")
    command[command.index("-serial"):command.index("-serial") + 2] = ["-display", "none", "-serial", "stdio"]
    done = subprocess.run(command, capture_output=True, timeout=60, check=True, stdin=subprocess.DEVNULL)
    return done.stdout


def with_type(elf: Path, e_type: int, folder: Path) -> Path:
    """A copy of ``elf`` whose ELF header says type ``e_type`` (2 ET_EXEC, 3 ET_DYN, 1 ET_REL)."""
    data = bytearray(elf.read_bytes())
    data[16:18] = e_type.to_bytes(2, "little")
    out = folder / f"{elf.stem}-type{e_type}.elf"
    out.write_bytes(bytes(data))
    return out


@pytest.fixture(scope="module")
def pie_boot_regs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """boot_regs linked by lld as a real position-independent executable (ET_DYN) at its address."""
    out = tmp_path_factory.mktemp("pie") / "boot_regs-pie.elf"
    return build([GUESTS / "boot_regs.c"], out, linker_script=GUESTS / "boot_regs.ld", pie=True)


# ----------------------------------------------------------------------------- ET_DYN
def test_a_pie_guest_is_et_dyn_and_prints_what_qemu_printed(pie_boot_regs: Path) -> None:
    assert pie_boot_regs.read_bytes()[16:18] == (3).to_bytes(2, "little")  # ET_DYN
    assert lab_output(pie_boot_regs) == (GUESTS / "boot_regs.expected").read_bytes()


def test_an_et_dyn_header_on_a_shipped_guest_runs_the_same(tmp_path: Path) -> None:
    elf = with_type(GUESTS / "timer_irq.elf", 3, tmp_path)
    assert lab_output(elf) == (GUESTS / "timer_irq.expected").read_bytes()


def test_other_elf_types_are_refused_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(GuestLoadError, match=r"ELF type ET_REL, not an executable \(ET_EXEC\) or a "
                                             r"position-independent one \(ET_DYN\)"):
        load_elf(with_type(GUESTS / "timer_irq.elf", 1, tmp_path), RAM)


def test_a_pie_linked_at_zero_is_refused_as_qemu_would_not_relocate_it(tmp_path: Path) -> None:
    elf = build([GUESTS / "timer_irq.c"], tmp_path / "at0.elf", linker_script=linker_script_at(0, tmp_path),
                pie=True)
    result = run_cli("run", elf)
    assert result.returncode == 2
    err = result.stderr.decode()
    assert "outside RAM" in err and "not relocated" in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["pie", "et_dyn_header"])
def test_qemu_runs_et_dyn_guests_too(name: str, pie_boot_regs: Path, tmp_path: Path) -> None:
    if QEMU is None:
        pytest.skip("qemu-system-aarch64 is not installed")
    elf = pie_boot_regs if name == "pie" else with_type(BOOT_REGS, 3, tmp_path)
    assert qemu_output(elf) == (GUESTS / "boot_regs.expected").read_bytes()


test_qemu_runs_et_dyn_guests_too = pytest.mark.qemu(test_qemu_runs_et_dyn_guests_too)


# ----------------------------------------------------------------------------- x0..x3 and the DTB
def test_an_elf_starts_with_x0_zero() -> None:
    platform = make_platform(1)
    platform.load(BOOT_REGS)
    boot = platform.machine.vcpus[0]
    assert boot.backend.pc == load_elf(BOOT_REGS, RAM).entry
    assert boot.backend.xs(4) == [0, 0, 0, 0]


@pytest.mark.parametrize(("offset", "has_dtb"), [(0x8_0000, False), (ELF_DTB_ROOM - 0x1000, False),
                                                 (ELF_DTB_ROOM, True), (0x20_0000, True)])
def test_the_dtb_is_at_ram_start_exactly_when_qemu_puts_it_there(offset: int, has_dtb: bool,
                                                                  tmp_path: Path) -> None:
    script = linker_script_at(RAM.base + offset, tmp_path)
    elf = build([GUESTS / "timer_irq.c"], tmp_path / "g.elf", linker_script=script)
    platform = make_platform(2)
    platform.load(elf)
    start = platform.machine.read_ram(RAM.base, 4)
    assert (start == FDT_MAGIC) is has_dtb
    if has_dtb:
        blob = device_tree_blob("virt", 2)
        assert platform.machine.read_ram(RAM.base, len(blob)) == blob
    else:
        assert start == bytes(4)


def test_a_machine_without_firmware_writes_no_dtb() -> None:
    machine = Machine(1)
    machine.load(BOOT_REGS)
    assert machine.read_ram(RAM.base, 4) == bytes(4)


@pytest.mark.parametrize("memory", ["128M", "1G", "1536", "3G"])
def test_boot_regs_reads_the_memory_node_the_lab_wrote(memory: str) -> None:
    out = lab_output(BOOT_REGS, memory=memory).decode()
    assert f"memory node reg: base 0x40000000 size {parse_ram_size(memory):#x}\n" in out


@pytest.mark.parametrize("memory", ["1G", "1536", "3G"])
def test_boot_regs_on_the_lab_and_qemu_with_other_ram_sizes(memory: str) -> None:
    if QEMU is None:
        pytest.skip("qemu-system-aarch64 is not installed")
    assert lab_output(BOOT_REGS, memory=memory) == qemu_output(BOOT_REGS, memory=memory)


test_boot_regs_on_the_lab_and_qemu_with_other_ram_sizes = pytest.mark.qemu(
    test_boot_regs_on_the_lab_and_qemu_with_other_ram_sizes)


# ----------------------------------------------------------------------------- RAM size
@pytest.mark.parametrize(("text", "size"), [
    ("128M", 128 << 20), ("1G", 1 << 30), ("2g", 2 << 30), ("512", 512 << 20), ("1.5G", 3 << 29),
    ("100k", 104 << 10), ("0", 128 << 20), ("1", 1 << 20), ("255G", MAX_RAM_SIZE), (1 << 30, 1 << 30),
])
def test_ram_sizes_read_as_qemu_reads_them(text: str | int, size: int) -> None:
    assert parse_ram_size(text) == size


@pytest.mark.parametrize("text", ["abc", "128MB", "128MiB", "-5", "1.", ".5G", "", "256G", "1T", "1x"])
def test_bad_ram_sizes_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a memory size|more than the virt board's 255G"):
        parse_ram_size(text)


def test_make_platform_takes_the_memory_size() -> None:
    platform = make_platform(1, memory="1G")
    assert platform.machine.ram_region == MemMapEntry(RAM.base, 1 << 30)
    assert make_platform(1, memory=256 << 20).machine.ram_region.size == 256 << 20
    assert make_platform(1).machine.ram_region.size == 128 << 20
    with pytest.raises(ValueError):
        make_platform(1, memory="lots")


def test_ram_the_host_cannot_map_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import sdeilab.machine.machine as machine_module

    def refuse(*_args: object) -> None:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(machine_module.mmap, "mmap", refuse)
    with pytest.raises(RamSizeError, match="the host cannot map that much"):
        make_platform(1, memory="64G")


def test_cli_memory_option_reaches_the_guest() -> None:
    result = run_cli("run", "--cpus", "4", "--memory", "1G", BOOT_REGS)
    assert result.returncode == 0, result.stderr
    assert b"memory node reg: base 0x40000000 size 0x40000000\n" in result.stdout


@pytest.mark.parametrize(("value", "words"), [("abc", "not a memory size: 'abc'"),
                                              ("256G", "more than the virt board's 255G"),
                                              ("100k", "lies outside RAM (0x40000000..0x4001a000)")])
def test_cli_bad_memory_is_one_line_and_status_2(value: str, words: str) -> None:
    result = run_cli("run", "--memory", value, BOOT_REGS)
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert words in err and "Traceback" not in err
    assert result.stdout == b""


def test_cli_memory_the_host_cannot_map_is_status_2(tmp_path: Path) -> None:
    script = ("import mmap, sys\n"
              "def refuse(*a): raise OSError(12, 'Cannot allocate memory')\n"
              "mmap.mmap = refuse\n"
              "from sdeilab.cli import main\n"
              f"sys.exit(main(['run', '--memory', '200G', {str(BOOT_REGS)!r}]))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert "--memory: 200G of RAM: the host cannot map that much" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- the device tree vs QEMU's
@pytest.mark.parametrize("memory", ["1G", "1536", "100k", "0", "3G"])
def test_the_memory_node_is_qemus_for_the_same_m(memory: str, tmp_path: Path) -> None:
    if QEMU is None:
        pytest.skip("qemu-system-aarch64 is not installed")
    dumped = tmp_path / "qemu.dtb"
    command = qemu_virt_command(None, 1, machine_options=[f"dumpdtb={dumped}"])
    command[command.index("-m") + 1] = memory
    subprocess.run(command, capture_output=True, timeout=60, check=True)
    qemu_tree = fdt.parse_dtb(dumped.read_bytes())
    lab_tree = fdt.parse_dtb(device_tree_blob("virt", 1, ram_size=parse_ram_size(memory)))
    path = f"/memory@{RAM.base:x}"
    assert list(lab_tree.get_property("reg", path).data) == list(qemu_tree.get_property("reg", path).data)
    machine = make_platform(1, memory=memory).machine
    assert machine.ram_region.size == parse_ram_size(memory)


test_the_memory_node_is_qemus_for_the_same_m = pytest.mark.qemu(test_the_memory_node_is_qemus_for_the_same_m)


def test_a_session_takes_the_memory_size_and_keeps_it_across_a_reset() -> None:
    from sdeilab.lab.session import Session

    session = Session(BOOT_REGS, 1, memory="512M")
    assert session.machine.ram_region.size == 512 << 20
    session.configure(cpus=2)
    assert session.machine.ram_region.size == 512 << 20
    with pytest.raises(ValueError, match="not a memory size"):
        Session(BOOT_REGS, 1, memory="huge")
