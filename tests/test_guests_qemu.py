"""The shipped guests on real QEMU: exit status 0 (PSCI SYSTEM_OFF) and the expected UART bytes.

``run_qemu`` is the reference runner that the emulator's conformance tests reuse to compare
the lab's output byte for byte with QEMU's.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from sdeilab.machine.qemu import qemu_binary, qemu_virt_command
from sdeilab.toolchain import build, guests_dir, shipped_guests

QEMU = qemu_binary()
QEMU_TIMEOUT_S = 60.0

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(QEMU is None, reason="qemu-system-aarch64 is not installed"),
]


class QemuRunError(AssertionError):
    """QEMU did not exit with status 0 in time; the message has its stderr and the UART bytes."""


def qemu_command(elf: Path, smp: int, uart_file: Path) -> list[str]:
    """The documented command line (DESIGN.md section 2), with UART0 sent to a file.

    ``-nographic`` alone would put UART0 on stdout, multiplexed with the monitor; sending the
    serial port to a file (and the monitor nowhere) guarantees that the captured bytes are
    exactly what the guest wrote to the PL011, with nothing of QEMU's own mixed in.
    """
    return qemu_virt_command(elf, smp, extra=["-monitor", "none", "-serial", f"file:{uart_file}"])


def run_qemu(elf: Path, smp: int = 4, timeout: float = QEMU_TIMEOUT_S) -> bytes:
    """Boot ``elf`` on QEMU virt (GICv3, Cortex-A57, ``smp`` CPUs, 128 MiB) and return its UART bytes.

    Raises :class:`QemuRunError` unless QEMU exits with status 0 (the guest called PSCI
    SYSTEM_OFF) within ``timeout`` seconds.
    """
    with tempfile.TemporaryDirectory(prefix="sdeilab-qemu-") as tmp:
        uart = Path(tmp) / "uart0.bin"
        cmd = qemu_command(Path(elf).resolve(), smp, uart)
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            out = uart.read_bytes() if uart.exists() else b""
            raise QemuRunError(f"{elf}: QEMU still running after {timeout} s; UART so far: {out!r}") from exc
        out = uart.read_bytes() if uart.exists() else b""
        if proc.returncode != 0:
            raise QemuRunError(
                f"{elf}: QEMU exit status {proc.returncode}\nstderr: {proc.stderr.decode(errors='replace')}"
                f"\nUART: {out!r}"
            )
        return out


def expected_output(name: str) -> bytes:
    return (guests_dir() / f"{name}.expected").read_bytes()


GUEST_NAMES = [g.stem if g.is_file() else g.name for g in shipped_guests()]


def test_every_guest_has_expected_output() -> None:
    for name in GUEST_NAMES:
        assert (guests_dir() / f"{name}.expected").is_file(), name


@pytest.mark.parametrize("name", GUEST_NAMES)
def test_guest_output_on_qemu(name: str) -> None:
    got = run_qemu(guests_dir() / f"{name}.elf")
    assert got.decode(errors="replace") == expected_output(name).decode(errors="replace")
    assert got == expected_output(name)


def test_psci_tour_hides_only_what_differs() -> None:
    text = expected_output("psci_tour").decode()
    hidden = [line for line in text.splitlines() if "differs on QEMU 7.2" in line]
    # SMCCC_VERSION, 6 x SMCCC_ARCH_FEATURES, PSCI_FEATURES of SYSTEM_RESET2 (x2) and
    # SMCCC_VERSION, AFFINITY_INFO above level 0, CPU_ON with a misaligned entry point.
    assert len(hidden) == 12
    assert "PSCI_VERSION = 0x10001 (1.1)" in text
    assert "MIGRATE_INFO_TYPE = 2" in text


# QEMU 7.2's answers where it departs from the spec (guests/QEMU-DEVIATIONS.md), as psci_tour
# prints them when built with -DSHOW_ALL.  A newer QEMU that fixes one shows up here.
QEMU_72_DEVIATIONS = {
    "SMCCC_VERSION": -1,
    "  SMCCC_VERSION 0x80000000": -1,
    "  SMCCC_ARCH_FEATURES 0x80000001": -1,
    "  SMCCC_ARCH_SOC_ID 0x80000002": -1,
    "  SMCCC_ARCH_WORKAROUND_1 0x80008000": -1,
    "  SMCCC_ARCH_WORKAROUND_2 0x80007fff": -1,
    "  SMCCC_ARCH_WORKAROUND_3 0x80003fff": -1,
    "  SYSTEM_RESET2 0x84000012": -1,
    "  SYSTEM_RESET2 (SMC64) 0xc4000012": -1,
    "AFFINITY_INFO(CPU 0, level 1)": 0,
    "CPU_ON(CPU 1, entry point not 4-byte aligned)": -2,
}


def test_qemu_deviations_are_as_documented(tmp_path: Path) -> None:
    elf = build([guests_dir() / "psci_tour.c"], tmp_path / "tour.elf", defines={"SHOW_ALL": ""})
    shown = run_qemu(elf).decode().splitlines()
    hidden = expected_output("psci_tour").decode().splitlines()
    assert len(shown) == len(hidden)
    seen: dict[str, int] = {}
    for full, short in zip(shown, hidden, strict=True):
        if short.endswith(": (differs on QEMU 7.2, not printed)"):
            label = short.removesuffix(": (differs on QEMU 7.2, not printed)")
            value = full.removeprefix(f"{label} = ").split(" ")[0]
            assert full.endswith("[QEMU 7.2 differs]"), full
            seen[label] = int(value)
        else:
            assert full == short
    assert seen == QEMU_72_DEVIATIONS


@pytest.mark.parametrize("smp", [1, 2, 8])
def test_smp_boot_discovers_the_cpus(smp: int) -> None:
    text = run_qemu(guests_dir() / "smp_boot.elf", smp=smp).decode()
    lines = text.splitlines()
    for cpu in range(1, smp):
        assert f"  CPU {cpu} up: MPIDR_EL1={0x80000000 | cpu:#x} context_id={0x1000 + cpu:#x}" in lines
        assert f"  = 0 (SUCCESS); CPU {cpu} came up, and AFFINITY_INFO now says OFF" in lines
    assert (f"CPU_ON({smp:#x}, secondary_entry, {0x1000 + smp:#x})" in lines) == (smp < 8)
    assert lines[-1] == (
        f"smp_boot: {smp} CPU(s): CPU 0 and {smp - 1} secondary CPU(s), each started, reported and switched off"
    )


def test_smp_boot_output_is_stable() -> None:
    """QEMU starts and stops CPUs asynchronously; the handshake must hide that completely."""
    first = run_qemu(guests_dir() / "smp_boot.elf")
    for _ in range(3):
        assert run_qemu(guests_dir() / "smp_boot.elf") == first


def test_every_qemu_command_line_comes_from_the_board_module() -> None:
    """One QEMU board for every comparison, and it has no network card: a fresh Debian machine set
    up without recommended packages lacks the default NIC's option ROM, and QEMU then exits at once."""
    command = qemu_virt_command("guest.elf", 2)
    assert command[command.index("-nic") + 1] == "none"
    top = Path(__file__).resolve().parent.parent
    # A QEMU command line spelled out elsewhere: the board as list items, or a shell line running QEMU.
    pattern = re.compile(r"""["']-(M|machine)["'],\s*["']virt|^\s*(exec\s+)?qemu-system-aarch64\b""", re.MULTILINE)
    spelled_out = [str(path.relative_to(top)) for folder in ("tests", "benchmarks", "scripts", "notebooks", "sdeilab")
                   for path in sorted((top / folder).rglob("*")) if path.suffix in (".py", ".sh", ".ipynb")
                   and path != top / "sdeilab" / "machine" / "qemu.py"
                   and pattern.search(path.read_text(errors="replace"))]
    assert spelled_out == [], "build QEMU command lines with sdeilab.machine.qemu.qemu_virt_command"
