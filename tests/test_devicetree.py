"""The generated device tree: its nodes follow the lab's tables and profile, and dtc reads it back.

The structure tests parse the blob the lab would hand a kernel (not the in-memory tree), so
what they check is what Linux would see. The optional QEMU test boots Debian's arm64 kernel with
the blob (SDEILAB_LINUX_IMAGE names the raw Image; it is skipped without it) and reads Linux's
own report of what it found.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import fdt
import pytest

from sdeilab.firmware.devicetree import (
    APB_PCLK_HZ,
    MPIDR_HWID_BITMASK,
    BootConfig,
    device_tree_blob,
)
from sdeilab.firmware.profiles import PROFILES
from sdeilab.linux import LinuxPackagesMissing, kernel_image
from sdeilab.machine.board import VIRT_DEVICES, spi_intid
from sdeilab.machine.memmap import GICR_FRAME_SIZE, VIRT_MEMMAP, Ppi, Region, mpidr_of
from sdeilab.machine.qemu import qemu_binary, qemu_virt_command

DTC = shutil.which("dtc")
QEMU = qemu_binary()


def _linux_image() -> str | None:
    """The kernel the project's set-up fetched (or SDEILAB_LINUX_IMAGE); None when there is none."""
    if os.environ.get("SDEILAB_LINUX_IMAGE"):
        return os.environ["SDEILAB_LINUX_IMAGE"]
    try:
        return str(kernel_image())
    except LinuxPackagesMissing:
        return None


LINUX_IMAGE = _linux_image()

RAM = VIRT_MEMMAP[Region.RAM]


def parsed(profile: str = "virt", cpus: int = 2, **kwargs: object) -> fdt.FDT:
    return fdt.parse_dtb(device_tree_blob(profile, cpus, **kwargs))  # type: ignore[arg-type]


def words(tree: fdt.FDT, path: str, name: str) -> list[int]:
    return list(tree.get_property(name, path).data)


def strings(tree: fdt.FDT, path: str, name: str) -> list[str]:
    return list(tree.get_property(name, path).data)


def u64s(cells: list[int]) -> list[int]:
    return [(cells[i] << 32) | cells[i + 1] for i in range(0, len(cells), 2)]


def test_blob_is_a_version_17_fdt() -> None:
    blob = device_tree_blob("virt", 1)
    assert blob[:4] == bytes.fromhex("d00dfeed")
    assert int.from_bytes(blob[4:8], "big") == len(blob)  # totalsize
    assert int.from_bytes(blob[20:24], "big") == 17


@pytest.mark.parametrize("ram_size", [RAM.size, 512 << 20])
def test_memory_node_is_the_machines_ram(ram_size: int) -> None:
    tree = parsed(ram_size=ram_size)
    path = f"/memory@{RAM.base:x}"
    assert strings(tree, path, "device_type") == ["memory"]
    assert u64s(words(tree, path, "reg")) == [RAM.base, ram_size]


@pytest.mark.parametrize("cpus", [1, 2, 9, 17])
def test_cpu_nodes_carry_the_mpidr_affinity_and_psci(cpus: int) -> None:
    tree = parsed(cpus=cpus)
    cpu_nodes = tree.get_node("/cpus").nodes
    assert len(cpu_nodes) == cpus
    for index, node in enumerate(cpu_nodes):
        hwid = mpidr_of(index) & MPIDR_HWID_BITMASK  # bit 31 (RES1) is not part of reg
        assert node.name == f"cpu@{hwid:x}"
        assert list(node.get_property("reg").data) == [hwid]
        assert list(node.get_property("enable-method").data) == ["psci"]
    if cpus == 17:
        assert [node.name for node in cpu_nodes[15:]] == ["cpu@f", "cpu@100"]  # 16 PEs per cluster, then Aff1 = 1


@pytest.mark.qemu
@pytest.mark.skipif(QEMU is None, reason="qemu-system-aarch64 is not installed")
def test_cpu_affinities_are_qemus(tmp_path: Path) -> None:
    """The reference itself: QEMU's own device tree for 17 CPUs gives each CPU the lab's MPIDR affinity."""
    cpus = 17
    dumped = tmp_path / "qemu.dtb"
    command = qemu_virt_command(None, cpus, machine_options=[f"dumpdtb={dumped}"])
    subprocess.run(command, capture_output=True, timeout=60, check=True)
    qemu_tree = fdt.parse_dtb(dumped.read_bytes())
    qemu_regs = sorted(list(node.get_property("reg").data) for node in qemu_tree.get_node("/cpus").nodes
                       if node.name.startswith("cpu@"))
    assert qemu_regs == sorted([mpidr_of(cpu) & MPIDR_HWID_BITMASK] for cpu in range(cpus))


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_firmware_nodes_follow_the_profile(name: str) -> None:
    profile = PROFILES[name]
    tree = parsed(name)
    (conduit,) = profile.conduits
    assert strings(tree, "/psci", "method") == [conduit]
    assert strings(tree, "/psci", "compatible") == ["arm,psci-1.0", "arm,psci-0.2"]
    if profile.reaches("sdei"):
        assert strings(tree, "/firmware/sdei", "compatible") == ["arm,sdei-1.0"]
        assert strings(tree, "/firmware/sdei", "method") == [conduit]
    else:
        assert not tree.exist_node("/firmware")


def test_conduits_differ_between_kvm_and_el3_profiles() -> None:
    assert strings(parsed("virt"), "/psci", "method") == ["hvc"]
    assert strings(parsed("firmware"), "/psci", "method") == ["smc"]
    assert not parsed("kvm").exist_node("/firmware/sdei")


@pytest.mark.parametrize("cpus", [1, 4])
def test_gic_regions_come_from_the_memory_map(cpus: int) -> None:
    tree = parsed(cpus=cpus)
    dist, redist = VIRT_MEMMAP[Region.GIC_DIST], VIRT_MEMMAP[Region.GIC_REDIST]
    path = f"/intc@{dist.base:x}"
    assert strings(tree, path, "compatible") == ["arm,gic-v3"]
    assert words(tree, path, "#interrupt-cells") == [3]
    assert tree.exist_property("interrupt-controller", path)
    assert u64s(words(tree, path, "reg")) == [dist.base, dist.size, redist.base, cpus * GICR_FRAME_SIZE]
    assert words(tree, "/", "interrupt-parent") == words(tree, path, "phandle")


def test_timer_ppis_come_from_the_interrupt_map() -> None:
    tree = parsed()
    cells = words(tree, "/timer", "interrupts")
    triples = [cells[i:i + 3] for i in range(0, len(cells), 3)]
    order = [Ppi.SECURE_PHYS_TIMER, Ppi.PHYS_TIMER, Ppi.VIRT_TIMER, Ppi.HYP_TIMER]  # arm,arch_timer.yaml
    assert triples == [[1, ppi - 16, 4] for ppi in order]


def test_pl011_has_its_spi_and_the_24mhz_clock() -> None:
    tree = parsed()
    uart = VIRT_MEMMAP[Region.UART0]
    path = f"/pl011@{uart.base:x}"
    assert strings(tree, path, "compatible") == ["arm,pl011", "arm,primecell"]
    assert u64s(words(tree, path, "reg")) == [uart.base, uart.size]
    assert words(tree, path, "interrupts") == [0, spi_intid(Region.UART0) - 32, 4]
    clock = words(tree, "/apb-pclk", "phandle")[0]
    assert words(tree, path, "clocks") == [clock, clock]
    assert strings(tree, path, "clock-names") == ["uartclk", "apb_pclk"]
    assert words(tree, "/apb-pclk", "clock-frequency") == [APB_PCLK_HZ] == [24_000_000]
    assert strings(tree, "/chosen", "stdout-path") == [path]


def test_sp804_is_described_unless_omitted() -> None:
    timer0 = VIRT_MEMMAP[Region.TIMER0]
    path = f"/timer@{timer0.base:x}"
    tree = parsed()
    assert words(tree, path, "interrupts") == [0, spi_intid(Region.TIMER0) - 32, 4]
    assert u64s(words(tree, path, "reg")) == [timer0.base, timer0.size]
    assert not parsed(omit=[Region.TIMER0]).exist_node(path)


@pytest.mark.qemu
@pytest.mark.skipif(QEMU is None, reason="qemu-system-aarch64 is not installed")
def test_the_rtc_node_is_qemus(tmp_path: Path) -> None:
    """The PL031 is described as QEMU virt describes it: name, compatible, reg, interrupt, clock name."""
    dumped = tmp_path / "qemu.dtb"
    subprocess.run(qemu_virt_command(None, 1, machine_options=[f"dumpdtb={dumped}"]), capture_output=True,
                   timeout=60, check=True)
    qemu_tree, lab_tree = fdt.parse_dtb(dumped.read_bytes()), parsed()
    path = f"/pl031@{VIRT_MEMMAP[Region.RTC].base:x}"
    assert qemu_tree.exist_node(path) and lab_tree.exist_node(path)
    for name in ("compatible", "reg", "interrupts", "clock-names"):
        assert list(lab_tree.get_property(name, path).data) == list(qemu_tree.get_property(name, path).data), name
    assert not parsed(omit=[Region.RTC]).exist_node(path)


def test_chosen_has_bootargs_and_initrd() -> None:
    start, end = RAM.base + 0x0400_0000, RAM.base + 0x0420_0000
    tree = parsed(boot=BootConfig("console=ttyAMA0 earlycon", (start, end)))
    assert strings(tree, "/chosen", "bootargs") == ["console=ttyAMA0 earlycon"]
    assert u64s(words(tree, "/chosen", "linux,initrd-start")) == [start]
    assert u64s(words(tree, "/chosen", "linux,initrd-end")) == [end]
    bare = parsed()
    assert not bare.exist_property("bootargs", "/chosen")
    assert not bare.exist_property("linux,initrd-start", "/chosen")


def test_initrd_outside_ram_is_refused() -> None:
    with pytest.raises(ValueError, match="not inside RAM"):
        device_tree_blob("virt", 1, boot=BootConfig(initrd=(RAM.end - 0x1000, RAM.end + 0x1000)))


@pytest.mark.skipif(DTC is None, reason="dtc is not installed (Debian package device-tree-compiler)")
@pytest.mark.parametrize("name", ["virt", "firmware", "kvm"])
def test_dtc_reads_it_and_round_trips_byte_for_byte(name: str, tmp_path: Path) -> None:
    blob = device_tree_blob(name, 4, boot=BootConfig("console=ttyAMA0", (RAM.base + 0x100_0000, RAM.base + 0x110_0000)))
    (tmp_path / "in.dtb").write_bytes(blob)
    decompiled = subprocess.run([DTC or "dtc", "-I", "dtb", "-O", "dts", "-o", str(tmp_path / "out.dts"),
                                 str(tmp_path / "in.dtb")], capture_output=True, text=True, check=False)
    assert decompiled.returncode == 0, decompiled.stderr
    assert decompiled.stderr == ""  # dtc's semantic checks (interrupt providers, unit addresses, ...)
    source = (tmp_path / "out.dts").read_text()
    assert 'enable-method = "psci";' in source
    recompiled = subprocess.run([DTC or "dtc", "-I", "dts", "-O", "dtb", "-o", str(tmp_path / "again.dtb"),
                                 str(tmp_path / "out.dts")], capture_output=True, text=True, check=False)
    assert recompiled.returncode == 0, recompiled.stderr
    assert (tmp_path / "again.dtb").read_bytes() == blob


@pytest.mark.qemu
@pytest.mark.skipif(QEMU is None, reason="qemu-system-aarch64 is not installed")
@pytest.mark.skipif(not LINUX_IMAGE, reason="no Debian arm64 kernel: run ./scripts/setup.sh")
def test_linux_on_qemu_accepts_the_tree(tmp_path: Path) -> None:
    # QEMU virt has no SP804 at the lab's address: a kernel probing it would take an external abort.
    blob = device_tree_blob("virt", 2, boot=BootConfig("console=ttyAMA0 earlycon panic=-1"), omit=[Region.TIMER0])
    (tmp_path / "lab.dtb").write_bytes(blob)
    command = qemu_virt_command(str(LINUX_IMAGE), 2, extra=["-no-reboot", "-dtb", str(tmp_path / "lab.dtb")])
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    log = run.stdout
    assert "Machine model: sdeilab virt (virt profile)" in log
    assert "psci: PSCIv1.1 detected in firmware." in log
    assert "GICv3: CPU0: found redistributor 0 region 0:0x00000000080a0000" in log
    assert "arch_timer: cp15 timer(s) running at 62.50MHz (virt)." in log
    assert "smp: Brought up 1 node, 2 CPUs" in log
    assert "ttyAMA0 at MMIO 0x9000000" in log
    # QEMU answers SDEI_VERSION with NOT_SUPPORTED: the driver found the node and probed it.
    assert "sdei: probe of firmware:sdei failed with error -95" in log
    assert "VFS: Unable to mount root fs" in log


GOLDEN = Path(__file__).parent / "data" / "virt-4cpus.dtb"
"""The tree of a 4-CPU virt machine with a command line and an initramfs, as written before the
devices became a table (sdeilab.machine.board): the table must describe the same board."""


def test_the_device_table_writes_the_tree_it_replaced_byte_for_byte() -> None:
    blob = device_tree_blob("virt", 4, boot=BootConfig("console=ttyAMA0", (0x4400_0000, 0x4410_0000)))
    if blob != GOLDEN.read_bytes():  # show what changed, as source
        assert fdt.parse_dtb(blob).to_dts() == fdt.parse_dtb(GOLDEN.read_bytes()).to_dts()
    assert blob == GOLDEN.read_bytes()


def test_every_device_of_the_table_has_its_node_region_and_spi() -> None:
    tree = parsed(cpus=1)
    for spec in VIRT_DEVICES:
        path = spec.node_path
        assert tree.exist_node(path), path
        assert words(tree, path, "reg") == [0, spec.entry.base, 0, spec.entry.size]
        assert words(tree, path, "interrupts") == [0, spec.spi, 4]
        assert not parsed(cpus=1, omit=[spec.region]).exist_node(path)
