"""KVM's SMCCC filter (Linux 6.4+, ``KVM_ARM_VM_SMCCC_FILTER``): which layer answers a function ID.

The VMM installs ranges ``[base, base + nr_functions)`` with an action before any vCPU runs:
HANDLE (the kernel answers, if it implements the call; otherwise -1), DENY (the kernel answers
NOT_SUPPORTED) or FWD_TO_USER (the vCPU exits to the VMM with KVM_EXIT_HYPERCALL). The rules
follow ``arch/arm64/kvm/hypercalls.c`` as the reference relays them (section 6): the Arm
architecture ranges are pre-reserved, so filtering them fails with EEXIST like any overlap;
a range that is empty, wraps, has a non-zero pad or an unknown action is EINVAL; installing
after the first vCPU ran is EBUSY. One deliberate choice: a zero-length range at base 0 is
EINVAL, as after the 2026 fix (commit 64dc6f1db7e6), not EEXIST as before it.
"""

from __future__ import annotations

import bisect
import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

U32 = 1 << 32


class FilterAction(IntEnum):
    """``KVM_SMCCC_FILTER_*`` (uapi/asm/kvm.h)."""

    HANDLE = 0
    DENY = 1
    FWD_TO_USER = 2


# SMCCC_ARCH_RANGE: SMC32 and SMC64 fast calls of owner 0 (the Arm architecture calls). Keeping
# them in the kernel keeps the Spectre workaround calls honest: a VMM cannot misreport them.
RESERVED_RANGES: tuple[tuple[int, int], ...] = ((0x8000_0000, 0x1_0000), (0xC000_0000, 0x1_0000))


class FilterError(OSError):
    """An install the kernel refuses; ``errno`` is what the ioctl would return (negated there)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(code, f"{errno.errorcode[code]}: {detail}")
        self.detail = detail

    @property
    def code(self) -> int:
        """``errno``, always set here (OSError types it as optional, for errors made without one)."""
        code = self.errno
        assert code is not None
        return code

    @property
    def name(self) -> str:
        return errno.errorcode[self.code]

    def __str__(self) -> str:
        return f"{self.name} ({os.strerror(self.code)}): {self.detail}"


@dataclass(frozen=True)
class FilterRange:
    """``struct kvm_smccc_filter``: u32 base, u32 nr_functions, u8 action, u8 pad[15]."""

    base: int
    nr_functions: int
    action: FilterAction

    @property
    def end(self) -> int:
        return self.base + self.nr_functions

    def __str__(self) -> str:
        return f"[0x{self.base:08x}, 0x{self.end:08x}) {self.action.name}"


class SmcccFilter:
    """A VM's filter: disjoint ranges, built by successive installs, never removed.

    ``vm_has_run`` says whether some vCPU has run (KVM's ``kvm_vm_has_ran_once``).
    """

    def __init__(self, vm_has_run: Callable[[], bool] = lambda: False) -> None:
        self._vm_has_run = vm_has_run
        self._starts: list[int] = []  # sorted bases, parallel to _ranges
        self._ranges: list[FilterRange] = []
        self._reserved = [FilterRange(b, n, FilterAction.HANDLE) for b, n in RESERVED_RANGES]
        for reserved in self._reserved:
            self._insert(reserved)
        self.configured = False  # KVM_ARCH_FLAG_SMCCC_FILTER_CONFIGURED

    @property
    def ranges(self) -> tuple[FilterRange, ...]:
        """The ranges the VMM installed (not the reserved ones), in address order."""
        return tuple(r for r in self._ranges if r not in self._reserved)

    def install(self, base: int, nr_functions: int, action: int, pad: bytes = bytes(15)) -> None:
        """``KVM_SET_DEVICE_ATTR(KVM_ARM_VM_SMCCC_CTRL, KVM_ARM_VM_SMCCC_FILTER)``; raises FilterError."""
        if len(pad) != 15 or any(pad):
            raise FilterError(errno.EINVAL, "pad must be 15 zero bytes")
        if not (0 <= base < U32 and 0 <= nr_functions < U32):
            raise FilterError(errno.EINVAL, "base and nr_functions are u32")
        if nr_functions == 0 or base + nr_functions > U32:
            raise FilterError(errno.EINVAL, f"range [0x{base:08x}, +0x{nr_functions:x}) is empty or wraps")
        if action not in FilterAction.__members__.values():
            raise FilterError(errno.EINVAL, f"unknown action {action}")
        if self._vm_has_run():
            raise FilterError(errno.EBUSY, "a vCPU has already run: the filter is fixed")
        new = FilterRange(base, nr_functions, FilterAction(action))
        for other in self._ranges:
            if new.base < other.end and other.base < new.end:
                what = "the reserved Arm architecture range" if other in self._reserved else "installed range"
                raise FilterError(errno.EEXIST, f"{new} overlaps {what} {other}")
        self._insert(new)
        self.configured = True

    def action(self, fid: int) -> FilterAction:
        """The action for a function ID: HANDLE where no range covers it."""
        i = bisect.bisect_right(self._starts, fid) - 1
        if i >= 0 and fid < self._ranges[i].end:
            return self._ranges[i].action
        return FilterAction.HANDLE

    def reserved(self, fid: int) -> bool:
        return any(r.base <= fid < r.end for r in self._reserved)

    def _insert(self, new: FilterRange) -> None:
        i = bisect.bisect_left(self._starts, new.base)
        self._starts.insert(i, new.base)
        self._ranges.insert(i, new)
