"""Where scripts/fetch-linux.sh left Debian's arm64 kernel and busybox (outside git).

The cache is ``.cache/debian-arm64`` in the repository, or ``$SDEILAB_DEBIAN_CACHE``; the script
unpacks the packages into its ``root/`` folder, so the kernel is ``root/boot/vmlinuz-RELEASE``
(on arm64 Debian's vmlinuz is the uncompressed Image, EFI stub header and all) and busybox
``root/bin/busybox`` (statically linked). On request (``scripts/setup.sh --linux-symbols``, or
scripts/fetch-linux-symbols.sh alone) the kernel's debug symbols join it as ``root/boot/vmlinux-RELEASE``:
the ELF vmlinux of Debian's ``linux-image-RELEASE-dbg`` of the same version, for gdb.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SETUP_COMMAND = "./scripts/setup.sh (or only scripts/fetch-linux.sh)"
SYMBOLS_COMMAND = "./scripts/setup.sh --linux-symbols (or only scripts/fetch-linux-symbols.sh)"


class LinuxPackagesMissing(FileNotFoundError):
    """Debian's kernel or busybox is not in the cache; the message names the command that fetches them."""


def cache_dir() -> Path:
    return Path(os.environ.get("SDEILAB_DEBIAN_CACHE") or REPO / ".cache" / "debian-arm64")


def _root() -> Path:
    return cache_dir() / "root"


def _missing(what: str) -> LinuxPackagesMissing:
    return LinuxPackagesMissing(f"{what} is not in {_root()}: run {SETUP_COMMAND}, which downloads Debian's "
                                "linux-image-*-cloud-arm64 and busybox-static arm64 packages there")


def kernel_image() -> Path:
    """Debian's arm64 cloud kernel Image."""
    images = sorted((_root() / "boot").glob("vmlinuz-*"))
    if not images:
        raise _missing("Debian's arm64 kernel (boot/vmlinuz-*)")
    if len(images) > 1:  # the script unpacks one version; several means someone else wrote there
        raise LinuxPackagesMissing(f"several kernels in {_root() / 'boot'}: {', '.join(p.name for p in images)}; "
                                   f"run {SETUP_COMMAND} again")
    return images[0]


def kernel_release() -> str:
    """The kernel's release (``uname -r``), e.g. ``6.1.0-56-cloud-arm64``."""
    return kernel_image().name.removeprefix("vmlinuz-")


def busybox() -> Path:
    """Debian's statically linked arm64 busybox."""
    path = _root() / "bin" / "busybox"
    if not path.is_file():
        raise _missing("Debian's arm64 busybox (bin/busybox)")
    return path


def kernel_symbols_file() -> Path:
    """The ELF vmlinux with the debug symbols of :func:`kernel_image`, for gdb's ``file`` (the lab
    boots it without a KASLR seed, so its link addresses are the running kernel's)."""
    path = kernel_image().with_name(f"vmlinux-{kernel_release()}")
    if not path.is_file():
        raise LinuxPackagesMissing(
            f"the debug symbols of Debian's arm64 kernel ({path.name}) are not in {path.parent}: run "
            f"{SYMBOLS_COMMAND}, which downloads linux-image-{kernel_release()}-dbg (about 262 MB) and "
            "extracts its vmlinux there")
    return path
