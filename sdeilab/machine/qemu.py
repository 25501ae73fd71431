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
from collections.abc import Sequence
from pathlib import Path

from sdeilab.machine.memmap import VIRT_MEMMAP, Region

QEMU_BINARY = "qemu-system-aarch64"
QEMU_MACHINE = "virt,gic-version=3"
QEMU_CPU = "cortex-a57"
QEMU_NO_DEVICES = ("-nic", "none")  # no network card (see the module docstring)


def qemu_binary() -> str | None:
    """The path of ``qemu-system-aarch64``, or None when it is not installed."""
    return shutil.which(QEMU_BINARY)


def qemu_virt_command(kernel: Path | str | None, cpus: int, *, memory_mib: int | None = None,
                      extra: Sequence[str] = (), machine_options: Sequence[str] = ()) -> list[str]:
    """``qemu-system-aarch64`` booting ``kernel`` (an ELF or an arm64 Image) on the lab's board.

    ``memory_mib`` defaults to the lab's RAM size; ``extra`` adds options such as ``-initrd``,
    ``-append``, ``-dtb``, ``-serial`` or ``-monitor``. Without ``-serial`` in ``extra`` the
    UART goes to standard output (``-nographic``). ``machine_options`` are appended to the
    board's (e.g. ``dumpdtb=FILE``, with no ``kernel``: QEMU writes its device tree and exits).
    """
    memory = memory_mib if memory_mib is not None else VIRT_MEMMAP[Region.RAM].size >> 20
    board = ",".join((QEMU_MACHINE, *machine_options))
    boot = [] if kernel is None else ["-kernel", str(kernel)]
    return [qemu_binary() or QEMU_BINARY, "-M", board, "-cpu", QEMU_CPU, "-smp", str(cpus), "-m", f"{memory}M",
            "-nographic", *QEMU_NO_DEVICES, *extra, *boot]
