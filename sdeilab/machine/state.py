"""Reset and snapshot: what every stateful part of the machine offers, and RAM as a snapshot holds it.

A part's power-on state is its own snapshot, taken as it is built (``Machine.attach``), so a
reset is a restore of that: exactly the part a new machine has, with no line toggled and no fact
recorded on the way (a part's ``reset`` method, where it has one, is the architectural reset the
guest can ask for, which keeps what the hardware keeps: the UART's output, the GIC's input lines).

A part's snapshot is a value: restoring it never changes it, so one snapshot can be restored
any number of times, and two snapshots of equal state compare equal (tests/test_snapshot.py
compares a reset machine with a new one that way). A part names the attributes that hold its
state (``STATE``); ``snapshot`` deep-copies them all at once, so objects one attribute shares
with another (an SDEI dispatch and the registration it belongs to) are shared again after a
restore, and ``restore`` copies them out again, so that running on never writes into the snapshot.
Callbacks and configuration are not state: they stay as the part was built.

RAM is kept in chunks (``RamImage``): a chunk equal to the one the previous image holds at the
same place is shared with it rather than copied, and all-zero chunks are one shared object, so a
series of snapshots of one run costs about what the guest wrote between them. Comparing a chunk
with guest RAM costs no copy (the C library's memcmp on the mapping), about 15 ms for 128 MiB.
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import mmap
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

from sdeilab.cpu.backend import CpuSnapshot
from sdeilab.machine.vcpu import VcpuState
from sdeilab.trace import TraceMark


class Stateful(Protocol):
    """A part of the machine (a device, the GIC, a firmware service) that a snapshot holds."""

    def snapshot(self) -> object:
        """The part's state now, as a value (see the module docstring)."""
        ...

    def restore(self, state: object) -> None:
        """Put back what ``snapshot`` returned: no callback runs, no line changes, no fact is recorded."""
        ...


class FieldState:
    """``snapshot``/``restore`` for a part whose state is the attributes named in ``STATE``."""

    STATE: ClassVar[tuple[str, ...]] = ()

    def snapshot(self) -> tuple[object, ...]:
        return copy.deepcopy(tuple(getattr(self, name) for name in self.STATE))

    def restore(self, state: object) -> None:
        assert isinstance(state, tuple) and len(state) == len(self.STATE), "a snapshot of another kind of part"
        for name, value in zip(self.STATE, copy.deepcopy(state), strict=True):
            setattr(self, name, value)


# --- RAM -------------------------------------------------------------------------------------
CHUNK = 64 * 1024
"""Bytes per RAM chunk: a multiple of any page size, small enough that a guest's few writes
between two snapshots dirty few chunks, large enough that 128 MiB is 2,048 of them."""

_ZERO = bytes(CHUNK)


def _memcmp() -> Callable[[int, bytes, int], int] | None:
    """The C library's memcmp, to compare guest RAM with a chunk in place (no copy), or None."""
    name = "msvcrt" if sys.platform == "win32" else ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else ctypes.CDLL(None)
        function = libc.memcmp
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_int
    function.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    return function


_MEMCMP = _memcmp()


class RamImage:
    """The contents of guest RAM at one moment, in ``CHUNK``-sized pieces (immutable)."""

    __slots__ = ("__weakref__", "chunks", "size")

    def __init__(self, chunks: tuple[bytes, ...], size: int) -> None:
        self.chunks = chunks
        self.size = size

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RamImage) and self.size == other.size and self.chunks == other.chunks

    def __hash__(self) -> int:
        return hash((self.size, len(self.chunks)))

    def held(self) -> dict[int, bytes]:
        """The chunks that are not zero, by identity (one chunk shared by snapshots is one object)."""
        return {id(c): c for c in self.chunks if c is not _ZERO and c != _ZERO[:len(c)]}

    def stored(self, below: RamImage | None = None) -> int:
        """Bytes this image holds that are neither zero nor shared with ``below``."""
        shared = set() if below is None else {id(c) for c in below.chunks}
        return sum(len(c) for key, c in self.held().items() if key not in shared)


# Only for a private mapping (Machine makes RAM one where the host has MAP_PRIVATE): a shared
# anonymous page keeps its contents through MADV_DONTNEED.
_DONTNEED: int | None = getattr(mmap, "MADV_DONTNEED", None) if hasattr(mmap, "MAP_PRIVATE") else None


class Ram:
    """Snapshots of one machine's RAM mapping, each sharing unchanged chunks with the one before."""

    def __init__(self, ram: mmap.mmap, *, private: bool) -> None:
        """``private``: ``ram`` is a private anonymous mapping, whose pages can be handed back."""
        self._ram = ram
        self._private = private
        self._address = ctypes.addressof(ctypes.c_char.from_buffer(ram))
        size = len(ram)
        tail = size % CHUNK  # RAM comes in 8 KiB steps: the last chunk may be shorter
        self._spans = [(offset, min(CHUNK, size - offset)) for offset in range(0, size, CHUNK)]
        self._zero = [_ZERO if length == CHUNK else bytes(tail) for _, length in self._spans]
        self._last: weakref.ref[RamImage] | None = None  # what the next image may share chunks with

    def _same(self, offset: int, chunk: bytes) -> bool:
        if _MEMCMP is not None:
            return _MEMCMP(self._address + offset, chunk, len(chunk)) == 0
        return self._ram[offset:offset + len(chunk)] == chunk

    def snapshot(self) -> RamImage:
        last = self._last() if self._last is not None else None
        previous = last.chunks if last is not None else None
        chunks: list[bytes] = []
        ram, same = self._ram, self._same
        for n, (offset, length) in enumerate(self._spans):
            zero = self._zero[n]
            if previous is not None and same(offset, previous[n]):
                chunks.append(previous[n])
            elif same(offset, zero):
                chunks.append(zero)
            else:
                chunks.append(ram[offset:offset + length])
        image = RamImage(tuple(chunks), len(ram))
        self._last = weakref.ref(image)
        return image

    def _write(self, chunks: tuple[bytes, ...] | list[bytes]) -> list[tuple[int, int]]:
        changed: list[tuple[int, int]] = []
        ram, same, zeros = self._ram, self._same, self._zero
        for n, ((offset, length), chunk) in enumerate(zip(self._spans, chunks, strict=True)):
            if same(offset, chunk):
                continue
            if chunk is zeros[n] and self._private and _DONTNEED is not None and not offset % mmap.PAGESIZE \
                    and not length % mmap.PAGESIZE:
                # A private anonymous page given back reads as zero again (madvise(2),
                # MADV_DONTNEED), and costs no memory until the guest writes it.
                ram.madvise(_DONTNEED, offset, length)
            else:
                ram[offset:offset + length] = chunk
            if changed and changed[-1][1] == offset:
                changed[-1] = (changed[-1][0], offset + length)
            else:
                changed.append((offset, offset + length))
        return changed

    def restore(self, image: RamImage) -> list[tuple[int, int]]:
        """Write ``image`` back; returns the offset ranges that changed (adjacent ones merged)."""
        if image.size != len(self._ram):
            raise ValueError(f"a RAM image of {image.size} bytes cannot be restored into {len(self._ram)}")
        changed = self._write(image.chunks)
        self._last = weakref.ref(image)
        return changed

    def clear(self) -> None:
        """Zero every byte (a power-on)."""
        self._last = None
        if self._private and _DONTNEED is not None:
            self._ram.madvise(_DONTNEED)  # every page back to the host at once: they read as zero
        else:
            self._write(self._zero)


@dataclass(frozen=True)
class MachineSnapshot:
    """Everything ``Machine.restore`` puts back (an immutable value; ``Machine.snapshot`` says what)."""

    retired: int  # instructions retired by all CPUs: where the run stood
    vtime: int  # the scheduler's clock then
    trace: TraceMark
    ram: RamImage
    cpus: tuple[CpuSnapshot, ...]  # each engine's architectural state and its adapter's own
    vcpus: tuple[tuple[VcpuState, tuple[int, int] | None], ...]  # each vCPU's power state and entry point
    parts: tuple[tuple[str, object], ...]  # devices, GIC, timers, PMUs, watchpoints, firmware: by name
    scheduler: tuple[object, ...]  # clocks, budgets, pending slices, UART output, ...

    def stored(self, below: MachineSnapshot | None = None) -> int:
        """Bytes of RAM this snapshot holds beyond ``below``'s (about the whole of its size)."""
        return self.ram.stored(None if below is None else below.ram)
