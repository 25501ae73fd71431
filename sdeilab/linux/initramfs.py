"""A busybox initramfs: a newc cpio archive, gzipped, built byte for byte the same every time.

The format is the kernel's (Documentation/driver-api/early-userspace/buffer-format.rst): for
each file a header of the ASCII magic ``070701`` and thirteen 8-digit hex fields (inode, mode,
uid, gid, nlink, mtime, file size, device major/minor, rdev major/minor, name size, checksum 0),
the NUL-terminated name padded to 4 bytes, the data padded to 4 bytes; ``TRAILER!!!`` ends it.
Modification times are 0 and inodes numbered in order, so the same inputs give the same bytes
(the lab's runs are compared byte for byte).

The initramfs holds busybox, ``/init`` (a busybox shell script, by default :data:`HOTPLUG_INIT`),
the mount points, and ``/dev/console``: the kernel opens it for init's standard streams before
anything could mount devtmpfs (init/main.c console_on_rootfs), so it must be in the archive.
"""

from __future__ import annotations

import gzip
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

NEWC_MAGIC = b"070701"
TRAILER = "TRAILER!!!"
TTY_MAJOR, CONSOLE_MINOR = 5, 1  # /dev/console (Documentation/admin-guide/devices.txt)

INIT_TAG = "sdeilab-init:"
"""Every line the default init prints starts with this, so tests and benchmarks find them among
the kernel's own messages on the same console."""

HOTPLUG_INIT = """#!/bin/busybox sh
# /init of sdeilab's initramfs (sdeilab/linux/initramfs.py). It shows what Linux's SDEI driver
# found, takes CPU 1 offline and online again twice through sysfs (each time PSCI CPU_OFF and
# CPU_ON; the SDEI driver masks the PE before it goes and unmasks it when it is back) and powers
# off (PSCI SYSTEM_OFF). busybox applets are called by name through busybox: nothing is installed.
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
echo "sdeilab-init: up"
sdei=/sys/firmware/devicetree/base/firmware/sdei
echo "sdeilab-init: device tree: $($bb tr -d '\\000' < $sdei/compatible), method $($bb tr -d '\\000' < $sdei/method)"
echo "sdeilab-init: driver: $($bb ls /sys/bus/platform/drivers/sdei | $bb grep -v -e bind -e uevent)"
$bb dmesg | $bb grep 'sdei:' | $bb sed 's/^\\[[ 0-9.]*\\] /sdeilab-init: dmesg: /'
echo "sdeilab-init: online CPUs $($bb cat /sys/devices/system/cpu/online)"
for cycle in 1 2; do
  echo 0 > /sys/devices/system/cpu/cpu1/online
  echo "sdeilab-init: cycle $cycle: CPU 1 offline, online CPUs $($bb cat /sys/devices/system/cpu/online)"
  echo 1 > /sys/devices/system/cpu/cpu1/online
  echo "sdeilab-init: cycle $cycle: CPU 1 online, online CPUs $($bb cat /sys/devices/system/cpu/online)"
done
echo "sdeilab-init: power off"
$bb poweroff -f
"""

HOTPLUG_CYCLES = 2  # the number of offline/online cycles HOTPLUG_INIT performs on CPU 1


@dataclass(frozen=True)
class CpioEntry:
    """One member: ``name`` relative to the root, ``mode`` with its file type bits (``stat.S_IF*``)."""

    name: str
    mode: int
    data: bytes = b""  # a regular file's contents, or a symbolic link's target
    rdev: tuple[int, int] = (0, 0)  # (major, minor) of a device node


def newc_archive(entries: Iterable[CpioEntry]) -> bytes:
    """The entries as an uncompressed newc cpio archive, in the order given (parents first)."""
    out = bytearray()
    members = [*entries, CpioEntry(TRAILER, 0)]
    for inode, entry in enumerate(members, start=1):
        name = entry.name.encode() + b"\0"
        is_dir = stat.S_ISDIR(entry.mode)
        fields = (0 if entry.name == TRAILER else inode, entry.mode, 0, 0, 2 if is_dir else 1, 0,
                  len(entry.data), 0, 0, entry.rdev[0], entry.rdev[1], len(name), 0)
        out += NEWC_MAGIC + "".join(f"{value:08x}" for value in fields).encode() + name
        out += bytes(-len(out) % 4)
        out += entry.data
        out += bytes(-len(out) % 4)
    return bytes(out)


def initramfs(busybox: Path | str | bytes, init: str = HOTPLUG_INIT, *,
              files: Mapping[str, bytes] = {}) -> bytes:
    """A gzipped newc initramfs with busybox at /bin/busybox, ``init`` as /init, and ``files``
    (name relative to the root -> contents, mode 0644; their folders are made)."""
    binary = busybox if isinstance(busybox, bytes) else Path(busybox).read_bytes()
    folders = {"bin", "dev", "proc", "sys", "tmp"}
    for name in files:
        folders.update(str(parent) for parent in PurePosixPath(name).parents if str(parent) != ".")
    entries = [CpioEntry(folder, stat.S_IFDIR | 0o755) for folder in sorted(folders)]
    entries += [
        CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(TTY_MAJOR, CONSOLE_MINOR)),
        CpioEntry("bin/busybox", stat.S_IFREG | 0o755, binary),
        CpioEntry("bin/sh", stat.S_IFLNK | 0o777, b"busybox"),
        CpioEntry("init", stat.S_IFREG | 0o755, init.encode()),
    ]
    entries += [CpioEntry(name, stat.S_IFREG | 0o644, data) for name, data in sorted(files.items())]
    # mtime=0 in the gzip header too: the same archive gives the same bytes.
    return gzip.compress(newc_archive(entries), compresslevel=6, mtime=0)


def write_initramfs(path: Path | str, busybox: Path | str | bytes, init: str = HOTPLUG_INIT, *,
                    files: Mapping[str, bytes] = {}) -> Path:
    path = Path(path)
    path.write_bytes(initramfs(busybox, init, files=files))
    return path
