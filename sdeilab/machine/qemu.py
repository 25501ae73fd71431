"""The same board on QEMU: the ``qemu-system-aarch64`` command line a guest is compared against.

DESIGN.md section 2 promises that a guest for the lab's ``virt`` board also boots on QEMU's
``-M virt,gic-version=3 -cpu cortex-a57`` and prints the same bytes. Every comparison (tests,
benchmarks, notebooks) builds its QEMU command here, so they all describe one board.

``-nic none`` is part of the board, not a detail: without it QEMU creates its default network
card, whose option ROM (``efi-virtio.rom``) comes with a package that a Debian machine set up
without recommended packages does not have, and QEMU then exits before the guest runs.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from elftools.elf.elffile import ELFFile

from sdeilab.machine.memmap import VIRT_MEMMAP, Region

QEMU_BINARY = "qemu-system-aarch64"
QEMU_MACHINE = "virt,gic-version=3"
QEMU_CPU = "cortex-a57"
QEMU_NO_DEVICES = ("-nic", "none")  # no network card (see the module docstring)


def qemu_binary() -> str | None:
    """The path of ``qemu-system-aarch64``, or None when it is not installed."""
    return shutil.which(QEMU_BINARY)


def qemu_virt_command(kernel: Path | str | None, cpus: int, *, memory_mib: int | None = None,
                      extra: Sequence[str] = (), machine_options: Sequence[str] = (),
                      cpu: str = QEMU_CPU) -> list[str]:
    """``qemu-system-aarch64`` booting ``kernel`` (an ELF or an arm64 Image) on the lab's board.

    ``memory_mib`` defaults to the lab's RAM size; ``extra`` adds options such as ``-initrd``,
    ``-append``, ``-dtb``, ``-serial`` or ``-monitor``. Without ``-serial`` in ``extra`` the
    UART goes to standard output (``-nographic``). ``machine_options`` are appended to the
    board's (e.g. ``dumpdtb=FILE``, with no ``kernel``: QEMU writes its device tree and exits).
    ``cpu`` is the CPU model, the board's :data:`QEMU_CPU` unless a benchmark asks for another.
    """
    memory = memory_mib if memory_mib is not None else VIRT_MEMMAP[Region.RAM].size >> 20
    board = ",".join((QEMU_MACHINE, *machine_options))
    boot = [] if kernel is None else ["-kernel", str(kernel)]
    return [qemu_binary() or QEMU_BINARY, "-M", board, "-cpu", cpu, "-smp", str(cpus), "-m", f"{memory}M",
            "-nographic", *QEMU_NO_DEVICES, *extra, *boot]


# ----------------------------------------------------------------------------- TF-A as the reference
# A real TF-A (Debian's arm-trusted-firmware, built for QEMU's virt board with SDEI, EHF and GICv3 by
# scripts/build-tfa.sh) runs at EL3 on QEMU with ``secure=on`` and answers PSCI and SDEI over SMC:
# the reference that the lab's ``firmware`` profile is compared with (issue 18). A guest's SMC
# build, linked at TFA_BL33_ADDRESS, is TF-A's normal-world payload (BL33), entered at NS-EL1.

TFA_BL33_ADDRESS = 0x6000_0000
"""Where TF-A's ``qemu`` platform loads BL33 and enters it (PLAT_QEMU_NS_IMAGE_OFFSET: RAM + 512 MiB)."""
TFA_MEMORY_MIB = 1024
"""RAM for a TF-A run: BL33 at RAM + 512 MiB must be inside it."""
TFA_FIP_OFFSET = 0x4_0000
"""Where the FIP starts in the flash image (PLAT_QEMU_FIP_BASE); BL1 is at offset 0."""
TFA_MAX_BL33 = 0x0100_0000
"""The largest flat BL33 accepted: far more than any guest, far less than the FIP's room."""


def bl33_binary(elf: Path | str) -> bytes:
    """The flat binary of ``elf`` (an AArch64 ELF linked at :data:`TFA_BL33_ADDRESS`, e.g. through
    ``sdeilab.toolchain.linker_script_at``): its loadable bytes from the entry point on, with the
    gaps between segments zero-filled, as TF-A's BL2 copies BL33 to its load address.

    ``.bss`` and the stacks (no file bytes) are left out: ``_start`` zeroes ``.bss`` itself.
    """
    with open(elf, "rb") as f:
        image = ELFFile(f)
        entry = image.header.e_entry
        segments = [(seg["p_paddr"], seg.data()) for seg in image.iter_segments()
                    if seg["p_type"] == "PT_LOAD" and seg["p_filesz"]]
    if entry != TFA_BL33_ADDRESS:
        raise ValueError(f"{elf}: entry point {entry:#x}, but TF-A enters BL33 at {TFA_BL33_ADDRESS:#x}")
    if not segments or min(a for a, _ in segments) != TFA_BL33_ADDRESS:
        raise ValueError(f"{elf}: its image does not start at {TFA_BL33_ADDRESS:#x}")
    end = max(a + len(d) for a, d in segments)
    if end - TFA_BL33_ADDRESS > TFA_MAX_BL33:
        raise ValueError(f"{elf}: {end - TFA_BL33_ADDRESS:#x} bytes of image, more than {TFA_MAX_BL33:#x}")
    flat = bytearray(end - TFA_BL33_ADDRESS)
    for address, data in segments:
        flat[address - TFA_BL33_ADDRESS:address - TFA_BL33_ADDRESS + len(data)] = data
    return bytes(flat)


def tfa_bios(tfa_dir: Path | str, bl33: Path | str, output: Path | str) -> Path:
    """The flash image for ``-bios``: TF-A's BL1 followed, at :data:`TFA_FIP_OFFSET`, by a copy of
    its FIP whose BL33 (``--nt-fw``) is replaced by the flat binary ``bl33`` (:func:`bl33_binary`).

    ``tfa_dir`` is the folder scripts/build-tfa.sh prints (bl1.bin, fip.bin and TF-A's fiptool);
    TF-A is not rebuilt. Returns ``output``.
    """
    tfa = Path(tfa_dir)
    bl1 = (tfa / "bl1.bin").read_bytes()
    if len(bl1) > TFA_FIP_OFFSET:
        raise ValueError(f"{tfa / 'bl1.bin'}: {len(bl1)} bytes, more than the {TFA_FIP_OFFSET:#x} before the FIP")
    with tempfile.TemporaryDirectory(prefix="sdeilab-fip-") as tmp:
        fip = Path(tmp) / "fip.bin"
        fip.write_bytes((tfa / "fip.bin").read_bytes())
        subprocess.run([str(tfa / "fiptool"), "update", "--nt-fw", str(bl33), str(fip)],
                       check=True, capture_output=True, stdin=subprocess.DEVNULL)
        image = bl1.ljust(TFA_FIP_OFFSET, b"\0") + fip.read_bytes()
    out = Path(output)
    out.write_bytes(image)
    return out


def tfa_command(bios: Path | str, cpus: int, *, uart: Path | str, tfa_log: Path | str | None = None,
                memory_mib: int = TFA_MEMORY_MIB, extra: Sequence[str] = (), cpu: str = QEMU_CPU) -> list[str]:
    """``qemu-system-aarch64`` running TF-A from the flash image ``bios`` (:func:`tfa_bios`) on
    the lab's board with EL3 (``secure=on``) and ``cpus`` CPUs.

    UART0, the guest's, is written to the file ``uart``; UART1 (the Secure PL011 that QEMU adds
    with ``secure=on``, where the patched TF-A prints its own log) to ``tfa_log``, or nowhere.
    The monitor is off, so ``uart`` holds exactly the bytes the guest wrote. TF-A's PSCI
    SYSTEM_OFF powers QEMU off (exit status 0).

    TF-A's ``qemu`` platform knows 32 PEs whatever ``-smp`` says: AFFINITY_INFO answers OFF for
    a CPU QEMU does not have, and CPU_ON of one succeeds but nothing starts. Guests that count
    CPUs that way (``test_cpu_count`` probes up to 8) need ``cpus`` = 8 here and on the lab.
    ``cpu``: the CPU model; TF-A's ``qemu`` platform links the support of Cortex-A53, A55, A57, A72 and more,
    so the same build runs on ``cortex-a53`` too (benchmarks/sdei_vs_tfa.py uses both).
    """
    serial1 = f"file:{tfa_log}" if tfa_log is not None else "null"
    return qemu_virt_command(None, cpus, memory_mib=memory_mib, machine_options=("secure=on",), cpu=cpu,
                             extra=["-bios", str(bios), "-monitor", "none", "-serial", f"file:{uart}",
                                    "-serial", serial1, *extra])
