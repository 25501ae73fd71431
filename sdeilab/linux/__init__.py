"""Linux on the lab: Debian's arm64 kernel and busybox from the project's cache, and the initramfs.

Not a runtime layer (DESIGN.md section 1): like ``sdeilab.toolchain`` it prepares what a run
loads. Booting itself is ``Platform.load_kernel`` (sdeilab.lab.platform) on top of the arm64
boot protocol in ``sdeilab.machine.linux_boot``; ``sdeilab.linux.watchdog`` drives the module's
NMI-watchdog story on such a boot. docs/linux.md tells the whole story.
"""

from sdeilab.linux.debian import (
    LinuxPackagesMissing,
    busybox,
    cache_dir,
    kernel_image,
    kernel_release,
    kernel_symbols_file,
)
from sdeilab.linux.initramfs import HOTPLUG_INIT, CpioEntry, initramfs, newc_archive, write_initramfs

__all__ = [
    "HOTPLUG_INIT",
    "CpioEntry",
    "LinuxPackagesMissing",
    "busybox",
    "cache_dir",
    "initramfs",
    "kernel_image",
    "kernel_release",
    "kernel_symbols_file",
    "newc_archive",
    "write_initramfs",
]
