"""The Unicorn 2.1 adapter: one ``Uc`` per vCPU, RAM shared through one host buffer.

This is the only module that imports unicorn. Facts it is built on (Unicorn 2.1.4, see
../shared/reference/unicorn-and-qemu-facts.md section 2):

* The CPU resets at Secure EL1 with SCR_EL3 = 0, where HVC is UNDEF and ERET to EL1 is illegal.
  With SCR_EL3 = NS|HCE|RW and HCR_EL2.RW = 1 the guest runs at Non-secure EL1: HVC raises
  interrupt 11 with PC advanced, SMC 13, and MPIDR_EL1 reads VMPIDR_EL2, set per vCPU.
* With an interrupt hook installed Unicorn performs no architectural exception entry; the
  machine does it (ELR, SPSR, ESR, PSTATE, PC = VBAR_EL1 + offset).
* ``emu_start(count=N)`` is implemented by an internal per-instruction hook that keeps its
  count in ``uc_struct.emu_counter``. Reading that counter gives the exact number of
  instructions retired at any hook, which is what makes virtual time exact. Its offset is
  found once by experiment (``_counter_index``) rather than assumed.
* MRS/MSR hooks fire for every system register; for registers the CPU model lacks (all ICC_*)
  the hook must advance PC itself. There is no filter by register, and Linux reads SP_EL0 (its
  ``current``) and TPIDR_EL1 and zeroes pages with DC ZVA millions of times in a boot: through
  the binding's wrapper each such call cost about 8 µs, so these hooks are raw ctypes callbacks
  that drop a register the machine does not emulate after one 20-byte read of the encoding.
* A ``uc_reg_read`` through ctypes costs over 1 µs, more than the rest of a hypercall. QEMU keeps
  the general registers and PC in ``CPUARMState.xregs[0..31]`` and ``.pc``, plain memory, which
  ``uc_reg_read`` and ``uc_reg_write`` merely copy. ``_xregs_locator`` finds that array once by
  experiment and every instance is checked against the API before it is used directly; where the
  check fails (another Unicorn build, no /proc), the adapter keeps to the API.
* ``uc_reg_write(PSTATE)`` sets PSTATE but neither swaps the banked stack pointer nor rebuilds
  QEMU's cached translation flags (``env->hflags``: EL, MMU index); a CP_REG write rebuilds them
  (Unicorn's reg_write calls ``arm_rebuild_hflags`` for CP_REG only). So an exception entry from
  EL0 written through the API alone kept running the handler with EL0's privileges.
  ``write("PSTATE")`` does what the architecture's mode change does: banks SP, rebuilds the flags.
* QEMU leaves the syndrome of the exception it raised in ``env->exception`` (syndrome, fsr,
  vaddress, target_el; target/arm/cpu.h), which an interrupt hook can read. Its offset in
  CPUARMState is found once by raising known exceptions and looking in saved contexts
  (``_context_record_offset``: the API's copy of CPUARMState, so no memory layout of the process
  can hide it); data and instruction aborts are delivered to the guest with it. It is read in
  place (the "record" fast path) or, slower, from a saved context.
* Each of these places (``FAST_PATHS``) has an API-only fallback, taken when its probe misses and
  forced by ``direct=`` or ``SDEILAB_DIRECT`` (tests/test_fallbacks.py). The API cannot see the
  AArch32 state (``uc_reg_read`` returns the stale AArch64 X registers, PSTATE and ``env->pc``),
  so without it an ERET to AArch32 EL0 is refused. Only where the record's offset is unknown
  altogether (another Unicorn build) are the syndromes the instruction and the step state
  determine rebuilt (``_step_record``, ``_sysreg_trap_record``, ``_aarch32_record``) and aborts
  fatal.
* ``uc_vmem_translate`` (exported by libunicorn 2.1.4, not wrapped by its Python binding) walks
  the guest's page tables in the current regime; it is called through ctypes.
* Debugger breakpoints are one ``UC_HOOK_CODE`` per address, bounded to that address, so no other
  instruction pays for them. A hook added after code was translated is not called until that
  code is translated again, so adding or removing one drops the translations of its address.
  ``uc_emu_stop`` in a code hook stops *before* the instruction executes, but Unicorn's own
  count hook (inserted first) has already counted it: a slice stopped at a breakpoint retired
  one instruction fewer than the counter says.
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

from unicorn import (
    UC_ARCH_ARM64,
    UC_HOOK_CODE,
    UC_HOOK_INSN,
    UC_HOOK_INTR,
    UC_HOOK_MEM_FETCH_PROT,
    UC_HOOK_MEM_READ,
    UC_HOOK_MEM_UNMAPPED,
    UC_HOOK_MEM_WRITE,
    UC_MODE_ARM,
)
from unicorn import arm64_const as a64
from unicorn.unicorn_const import (
    UC_CTL_IO_WRITE,
    UC_CTL_TLB_FLUSH,
    UC_ERR_FETCH_PROT,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_UNMAPPED,
    UC_MEM_FETCH_PROT,
    UC_MEM_FETCH_UNMAPPED,
    UC_MEM_WRITE,
    UC_MEM_WRITE_UNMAPPED,
)

if TYPE_CHECKING:
    # The binding chooses its Python 3 module by a version test on an aliased ``sys``, which mypy
    # does not follow (it types ``unicorn.Uc`` as the Python 2 class, without the ctl_* methods).
    from unicorn.unicorn_py3 import Uc, UcError
else:
    from unicorn import Uc, UcError
from unicorn.unicorn_py3.arch.arm64 import UcRegCP64
from unicorn.unicorn_py3.unicorn import UcContext, uclib

from sdeilab.cpu import native
from sdeilab.cpu.backend import (
    CpuSnapshot,
    ExceptionRecord,
    SliceResult,
    Stop,
    SysregKey,
    SystemCounter,
    Trap,
    VcpuHost,
)
from sdeilab.trace.vocabulary import Conduit

EngineError = UcError
"""What the CPU engine raises when it cannot go on; the layers above catch it by this name, since
only this module imports unicorn (DESIGN.md section 1)."""

_X_IDS = [a64.UC_ARM64_REG_X0 + n for n in range(29)] + [a64.UC_ARM64_REG_X29, a64.UC_ARM64_REG_X30]

# QEMU's EXCP_* numbers as Unicorn reports them to an interrupt hook (target/arm/cpu.h).
# EXCP_SWI, EXCP_PREFETCH_ABORT, EXCP_DATA_ABORT, EXCP_BKPT: what the compiled hook may take to EL1.
_COMPILED_TRAPS = (2, 3, 4, 7)
_TRAPS = {1: Trap.UNDEFINED, 2: Trap.SVC, 3: Trap.PREFETCH_ABORT, 4: Trap.DATA_ABORT, 7: Trap.BRK,
          11: Trap.HVC, 13: Trap.SMC}

# Registers by name. Unicorn has dedicated IDs for some; the rest go through CP_REG with the
# (op0, op1, CRn, CRm, op2) encoding (ARM ARM C5.3).
_REG_IDS = {
    "PC": a64.UC_ARM64_REG_PC, "SP": a64.UC_ARM64_REG_SP, "PSTATE": a64.UC_ARM64_REG_PSTATE,
    "NZCV": a64.UC_ARM64_REG_NZCV, "SP_EL0": a64.UC_ARM64_REG_SP_EL0, "SP_EL1": a64.UC_ARM64_REG_SP_EL1,
    "ELR_EL1": a64.UC_ARM64_REG_ELR_EL1, "ESR_EL1": a64.UC_ARM64_REG_ESR_EL1,
    "FAR_EL1": a64.UC_ARM64_REG_FAR_EL1, "VBAR_EL1": a64.UC_ARM64_REG_VBAR_EL1,
    "TTBR0_EL1": a64.UC_ARM64_REG_TTBR0_EL1,
}
_CP_REGS: dict[str, SysregKey] = {
    "SPSR_EL1": (3, 0, 4, 0, 0),
    "SCTLR_EL1": (3, 0, 1, 0, 0),
    "MPIDR_EL1": (3, 0, 0, 0, 5),
    "TCR_EL1": (3, 0, 2, 0, 2),
    "MAIR_EL1": (3, 0, 10, 2, 0),
    "TPIDR_EL1": (3, 0, 13, 0, 4),
    "SCR_EL3": (3, 6, 1, 1, 0),
    "HCR_EL2": (3, 4, 1, 1, 0),
    "VMPIDR_EL2": (3, 4, 0, 0, 5),
    "PMUSERENR_EL0": (3, 3, 9, 14, 0),
}

_SP_EL_IDS = (a64.UC_ARM64_REG_SP_EL0, a64.UC_ARM64_REG_SP_EL1, a64.UC_ARM64_REG_SP_EL2)
_SP_BANK_OF = {"SP_EL0": 0, "SP_EL1": 1}
_PSTATE_FLAGS = 0xF000_03C0  # NZCV and DAIF: QEMU's cached flags do not depend on them
_ACCESS_PROT = {"read": 1, "write": 2, "fetch": 4}  # UC_PROT_READ, UC_PROT_WRITE, UC_PROT_EXEC
_vmem_translate = getattr(uclib, "uc_vmem_translate", None)

FAST_PATHS = ("registers", "pstate", "aarch32", "record")
"""The places in QEMU's ``CPUARMState`` a vCPU may use directly, each found by experiment and each
with an API-only fallback (module docstring): ``registers`` (``env->xregs`` and ``env->pc``),
``pstate`` (its split fields and ``env->aarch64``), ``aarch32`` (R0-R15 and the CPSR fields; needs
``pstate``; without it AArch32 EL0 is refused) and ``record`` (``env->exception``, read in place;
without it, from a saved context). ``pstate`` and ``record`` are found from ``registers`` and need it."""
# Why an abort the CPU model raised cannot be delivered without the "record" path, in a fault report.
RECORD_MISSING = ("QEMU's exception record is at an offset this Unicorn build's saved contexts did not "
                  "reveal")
DIRECT_SWITCH = "SDEILAB_DIRECT"
"""Environment variable read when a vCPU is built without ``direct=``: "0" (or empty) uses none of
``FAST_PATHS``, "1" or unset all of them, else a comma-separated list names the ones to use."""


def direct_paths(direct: bool | Iterable[str] | None = None) -> frozenset[str]:
    """The fast paths a vCPU built with ``direct`` may use (``UnicornVcpu``): True or False for all or
    none, names from ``FAST_PATHS``, or None for what ``SDEILAB_DIRECT`` says."""
    if direct is None:
        setting = os.environ.get(DIRECT_SWITCH, "1").strip()
        listed = [name.strip() for name in setting.split(",")]
        direct = True if setting == "1" else [name for name in listed if name not in ("", "0")]
    if direct is True:
        return frozenset(FAST_PATHS)
    if direct is False:
        return frozenset()
    names = frozenset(direct)
    unknown = names - set(FAST_PATHS)
    if unknown:
        raise ValueError(f"unknown fast paths {sorted(unknown)}: {DIRECT_SWITCH} takes 0, 1 or names from "
                         f"{', '.join(FAST_PATHS)}")
    return names

SCR_EL3_NS_HCE_RW = 0x501  # NS (bit 0), HCE (bit 8), RW (bit 10): run the guest at Non-secure EL1
HCR_EL2_RW = 1 << 31  # EL1 is AArch64
PSTATE_EL1H_DAIF = 0x3C5  # EL1h with D, A, I, F masked: the state PSCI CPU_ON and reset give
PSTATE_EL2H_DAIF = 0x3C9  # EL2h: nothing runs there, but its MMU is off (SCTLR_EL2.M = 0 from reset)
_NEVER = 0xFFFF_FFFF_FFFF_FFFC  # an ``until`` address no guest reaches
MASK64 = 0xFFFF_FFFF_FFFF_FFFF
_PACKERS = [struct.Struct(f"={n}Q") for n in range(32)]  # x0..x(n-1) as QEMU holds them (host order)

_INTR_CFUNC = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p)
# uc_cb_insn_sys_t: uint32_t (uc_engine *, uc_arm64_reg, const uc_arm64_cp_reg *, void *); non-zero: skip
_INSN_CFUNC = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
# uc_arm64_cp_reg (unicorn/arm64.h): uint32_t crn, crm, op0, op1, op2; then uint64_t val at offset 24
_CP_ENCODING = struct.Struct("<5I")
_CP_VAL_OFFSET = 24
_SPSR_EL1: SysregKey = (3, 0, 4, 0, 0)
_SPSR_EL1_ENCODING = _CP_ENCODING.pack(4, 0, 3, 0, 0)
# The registers that change what a virtual address translates to (ARM ARM D8.2: SCTLR_EL1.M,
# TCR_EL1, TTBR0_EL1, TTBR1_EL1): while the host watches virtual addresses
# (``set_translation_watch``), a write to one ends the slice's current part after it.
_TRANSLATION_KEYS: frozenset[SysregKey] = frozenset({(3, 0, 1, 0, 0), (3, 0, 2, 0, 2), (3, 0, 2, 0, 0),
                                                     (3, 0, 2, 0, 1)})
_TRANSLATION_ENCODINGS = frozenset(_CP_ENCODING.pack(crn, crm, op0, op1, op2)
                                   for op0, op1, crn, crm, op2 in _TRANSLATION_KEYS)
_MDSCR_EL1: SysregKey = (2, 0, 0, 2, 2)
_MDSCR_EL1_ENCODING = _CP_ENCODING.pack(0, 2, 2, 0, 2)  # crn, crm, op0, op1, op2 of (2, 0, 0, 2, 2)
MDSCR_SS = 1 << 0  # software step enabled
MDSCR_KDE = 1 << 13  # debug exceptions at EL1 (with PSTATE.D clear)
PSTATE_D = 1 << 9
PSTATE_SS = 1 << 21  # software step: the next instruction is stepped
_WATCH_REACH = 15  # a memory hook sees where an access starts: its range begins this far lower
_ZVA_LINE = 63  # DC ZVA's block (DCZID_EL0.BS = 4: 64 bytes), less one: a mask
PSTATE_IL = 1 << 20
PSTATE_NRW = 1 << 4  # SPSR.M[4]: the state is AArch32 (ARM ARM D1.10.2, "Exception entry")
A32_USER = 0x10  # SPSR.M[4:0] of AArch32 User mode, EL0's only mode
AARCH32_UNSUPPORTED = ("ERET to AArch32 EL0 (SPSR_EL1.M = 0x10), which this vCPU cannot run: QEMU's "
                       "AArch32 state could not be located (or SDEILAB_DIRECT left it out)")
_ERET = (0xD69F_03E0).to_bytes(4, "little")


_HVC, _SMC = Conduit.HVC.value, Conduit.SMC.value  # plain str: they reach the facts (TraceLog.add)
# X0..X17, then env->pc after X18..X31 (14 words): a call's registers in one unpack.
_CALL_LAYOUT = struct.Struct("=18Q112xQ")


def _may_return_illegally(spsr: int) -> bool:
    """An ERET from EL1 with this SPSR_EL1 may leave PSTATE.IL set: SPSR.IL itself, or a mode other
    than AArch64 EL0t, EL1t or EL1h and AArch32 User (EL0; EL1 is AArch64 only, HCR_EL2.RW) (ARM ARM
    D1.4.x, "Illegal return events from AArch64 state")."""
    return bool(spsr & PSTATE_IL) or (spsr & 0x1F) not in (0x0, 0x4, 0x5, A32_USER)


def _cp_key(encoding: bytes) -> SysregKey:
    crn, crm, op0, op1, op2 = _CP_ENCODING.unpack(encoding)
    return (op0, op1, crn, crm, op2)


def _cp_table(keys: frozenset[SysregKey] | None) -> dict[bytes, SysregKey] | None:
    """Encodings as the hook sees them -> keys; None (every key goes to the host) stays None."""
    if keys is None:
        return None
    return {_CP_ENCODING.pack(crn, crm, op0, op1, op2): (op0, op1, crn, crm, op2)
            for op0, op1, crn, crm, op2 in keys}


@cache
def _counter_index() -> int:
    """Find ``uc_struct.emu_counter`` (in 64-bit words from the handle) by running known counts.

    With ``count=K`` Unicorn stops when its counter exceeds K, so afterwards the counter holds
    K + 1 and the saved limit beside it K. Two different K must agree on one place.
    """
    uc = _private_engine()
    uc.mem_map(0x1000, 0x1000)
    uc.mem_write(0x1000, b"\x1f\x20\x03\xd5" * 1024)  # NOP sled
    words = (ctypes.c_uint64 * 1024).from_address(_struct_address(uc))
    places: set[int] | None = None
    for k in (37, 101):
        uc.emu_start(0x1000, _NEVER, count=k)
        found = {i for i in range(1023) if words[i] == k + 1 and words[i + 1] == k}
        places = found if places is None else places & found
    if not places or len(places) != 1:
        raise RuntimeError("cannot locate Unicorn's instruction counter: sdeilab needs unicorn 2.1.4")
    return places.pop()


def _struct_address(uc: Uc) -> int:
    """Where the engine's ``uc_struct`` is (the binding keeps its handle as a ctypes pointer)."""
    address = uc._uch.value
    assert address is not None, "an engine that is not open"
    return address


def _writable_ranges() -> list[tuple[int, int]]:
    try:
        with open("/proc/self/maps", encoding="ascii") as maps:
            lines = maps.read().splitlines()
    except OSError:
        return []
    ranges: list[tuple[int, int]] = []
    for line in lines:
        span, perms = line.split()[:2]
        if perms.startswith("rw"):
            first, last = (int(x, 16) for x in span.split("-"))
            if ranges and ranges[-1][1] == first:
                # Contiguous writable lines are one range: the kernel lists the heap and an anonymous
                # mapping right after it (or two mappings it did not merge) apart, and a structure that
                # straddles the boundary (CPUARMState near the heap's end) must still count as mapped.
                ranges[-1] = (ranges[-1][0], last)
            else:
                ranges.append((first, last))
    return ranges


_PROBE = [0x5DE1_AB00_0000_0000 + i for i in range(4)]


_XREGS_REACH = 1 << 20  # env->xregs lies within this many bytes after a pointer held in uc_struct


def _find_pattern(uc: Uc) -> list[int]:
    """Where the probe values written to x0..x3 appear in memory, searched only in the writable
    memory up to ``_XREGS_REACH`` after each pointer uc_struct holds: scanning every writable
    mapping of the process cost about 1.3 s per engine with a notebook's libraries loaded. The
    pointers are read after the first register write, which is when Unicorn creates the CPU."""
    for i, value in enumerate(_PROBE):
        uc.reg_write(a64.UC_ARM64_REG_X0 + i, value)
    words = list((ctypes.c_uint64 * 2048).from_address(_struct_address(uc)))
    pattern = b"".join(v.to_bytes(8, "little") for v in _PROBE)
    writable = _writable_ranges()
    spans: list[list[int]] = []
    for pointer in sorted(set(words)):
        for first, last in writable:
            if first <= pointer < last:
                begin, end = pointer, min(last, pointer + _XREGS_REACH + len(pattern))
                if spans and begin <= spans[-1][1]:
                    spans[-1][1] = max(spans[-1][1], end)
                else:
                    spans.append([begin, end])
                break
    hits = []
    for begin, end in spans:
        data = _read_own_memory(begin, end - begin)
        at = data.find(pattern)
        while at >= 0:
            hits.append(begin + at)
            at = data.find(pattern, at + 8)
    for i in range(4):
        uc.reg_write(a64.UC_ARM64_REG_X0 + i, 0)
    return hits


def _read_own_memory(address: int, size: int) -> bytes:
    """``size`` bytes of this process's memory at ``address``, read through /proc/self/mem: another
    thread (a Jupyter kernel's IOPub and heartbeat threads) may free memory and shrink the heap
    between reading /proc/self/maps and reading the range, and a direct read of a page gone then
    kills the process (SIGSEGV in memmove); the file read returns an error instead (an empty result,
    or the part before the hole)."""
    try:
        fd = os.open("/proc/self/mem", os.O_RDONLY)
    except OSError:
        return b""
    try:
        chunks = []
        while size > 0:
            try:
                chunk = os.pread(fd, min(size, 1 << 20), address)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            address += len(chunk)
            size -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


_T = TypeVar("_T")
_PROBE_ATTEMPTS = 3  # a probe that misses is tried again on fresh engines before its path is given up


def _retried(probe: Callable[[], _T | None]) -> Callable[[], _T | None]:
    """``probe`` run until it finds its place, at most ``_PROBE_ATTEMPTS`` times, the answer kept for
    the process. A miss can be transient: the pointers and the memory are read while other threads
    (a Jupyter kernel's) allocate and free, and one miss would otherwise leave every engine of the
    process without the path (without the exception record, Linux's first user-space fault is fatal)."""

    @cache
    def retried() -> _T | None:
        for _ in range(_PROBE_ATTEMPTS):
            found = probe()
            if found is not None:
                return found
        return None

    retried.__doc__ = probe.__doc__
    return retried


@_retried
def _xregs_locator() -> tuple[int, int] | None:
    """(word index in uc_struct, byte delta) such that ``uc_struct[index] + delta`` is ``env->xregs``."""
    common: set[tuple[int, int]] | None = None
    for _ in range(2):
        uc = _private_engine()
        words = (ctypes.c_uint64 * 2048).from_address(_struct_address(uc))
        found = set()
        for hit in _find_pattern(uc):
            found |= {(k, hit - words[k]) for k in range(2048) if 0 <= hit - words[k] < _XREGS_REACH}
        common = found if common is None else common & found
    return min(common) if common else None


# svc #0x42 at 0x1000, then a data abort (ldxr x1, [x0] with x0 unaligned) at 0x1004; vectors at
# 0x2000, whose EL1h synchronous entry (0x2200) is `b .`.
_ENTRY_PROBE_CODE = bytes.fromhex("410800d4" "017c5fc8")
_ENTRY_PROBE_HANDLER = bytes.fromhex("00000014")


def _exception_filter(slice_filter: native.SysregFilter, cpu: int, record: int, aarch64: int,
                      forward: Any) -> native.ExceptionFilter:
    """The compiled interrupt hook's state for one engine (compiled_hooks.c, ``struct exception_filter``):
    ``cpu`` its CPUState, ``record`` and ``aarch64`` the addresses of env->exception and env->aarch64,
    ``forward`` the Python interrupt hook. Taking exceptions starts enabled, with no vectors checked."""
    filt = native.ExceptionFilter()
    filt.slice = ctypes.addressof(slice_filter)
    filt.cpu = cpu
    filt.do_interrupt = ctypes.cast(uclib.arm_cpu_do_interrupt_aarch64, ctypes.c_void_p)
    filt.reg_read = ctypes.cast(uclib.uc_reg_read, ctypes.c_void_p)
    filt.reg_write = ctypes.cast(uclib.uc_reg_write, ctypes.c_void_p)
    filt.forward = ctypes.cast(forward, ctypes.c_void_p)
    filt.record = record
    filt.aarch64 = aarch64
    filt.pc_id, filt.pstate_id, filt.nzcv_id = a64.UC_ARM64_REG_PC, a64.UC_ARM64_REG_PSTATE, a64.UC_ARM64_REG_NZCV
    filt.vbar_id, filt.cp_reg_id = a64.UC_ARM64_REG_VBAR_EL1, a64.UC_ARM64_REG_CP_REG
    filt.ttbr0_id, filt.ttbr1_id = a64.UC_ARM64_REG_TTBR0_EL1, a64.UC_ARM64_REG_TTBR1_EL1
    filt.intnos = sum(1 << n for n in _COMPILED_TRAPS)
    filt.enabled = 1
    return filt


@cache
def _compiled_entry_works() -> bool:
    """Whether QEMU's exception entry, called from the compiled hook, does what the lab's does:
    an SVC and a data abort from EL1h with NZCV set, checked against the architecture's values
    (ELR, ESR, FAR, SPSR, PSTATE, PC at the vector; NZCV kept). Any doubt and the hook is not used."""
    library = native.library()
    locator = _xregs_locator()
    record_offset = _exception_record_offset()
    if library is None or locator is None or record_offset is None:
        return False
    uc = _el1_engine()
    uc.mem_map(0x1000, 0x2000)
    uc.mem_write(0x1000, _ENTRY_PROBE_CODE)
    uc.mem_write(0x2200, _ENTRY_PROBE_HANDLER)
    uc.reg_write(a64.UC_ARM64_REG_VBAR_EL1, 0x2000)
    uc.reg_write(a64.UC_ARM64_REG_PSTATE, 0x6000_03C5)  # Z and C set, EL1h, DAIF masked
    uc.reg_write(a64.UC_ARM64_REG_X0, 0x1003)
    words = (ctypes.c_uint64 * 2048).from_address(_struct_address(uc))
    cpu = words[locator[0]]
    xregs = cpu + locator[1]
    record = (ctypes.c_uint32 * 6).from_address(xregs + record_offset)
    aarch64 = _aarch32_layout()
    if aarch64 is None:
        return False
    slice_filter = native.SysregFilter()
    counter = ctypes.c_uint64.from_address(_struct_address(uc) + 8 * _counter_index())
    slice_filter.emu_counter = ctypes.addressof(counter)
    slice_filter.budget = 100
    forwarded: list[int] = []
    forward = _INTR_CFUNC(lambda _uch, intno, _user: forwarded.append(intno))
    filt = _exception_filter(slice_filter, cpu, ctypes.addressof(record), xregs + aarch64.aarch64, forward)
    library.sdeilab_vectors_checked(uc._uch, ctypes.byref(filt))
    handle = ctypes.c_size_t()
    if uclib.uc_hook_add(uc._uch, ctypes.byref(handle), UC_HOOK_INTR,
                         ctypes.cast(library.sdeilab_exception_hook, ctypes.c_void_p), ctypes.byref(filt),
                         ctypes.c_uint64(1), ctypes.c_uint64(0)):
        return False
    seen = []
    for start in (0x1000, 0x1004):
        uc.reg_write(a64.UC_ARM64_REG_PSTATE, 0x6000_03C5)
        try:
            uc.emu_start(start, _NEVER, count=2)
        except UcError:
            return False
        seen.append((uc.reg_read(a64.UC_ARM64_REG_PC), uc.reg_read(a64.UC_ARM64_REG_ELR_EL1),
                     uc.reg_read(a64.UC_ARM64_REG_ESR_EL1), uc.reg_read(a64.UC_ARM64_REG_PSTATE),
                     uc.reg_read(a64.UC_ARM64_REG_CP_REG, (4, 0, 3, 0, 0))))
    far = uc.reg_read(a64.UC_ARM64_REG_FAR_EL1)
    expected = [(0x2200, 0x1004, 0x5600_0042, 0x6000_03C5, 0x6000_03C5),
                (0x2200, 0x1004, 0x9600_0021, 0x6000_03C5, 0x6000_03C5)]
    return not forwarded and filt.entries == 2 and seen == expected and far == 0x1003


PRIVATE_TCG_BUFFER = 16 << 20
"""Translation buffer of the engines the lab runs for itself (layout probes, the decoding sandbox):
Unicorn reserves 1 GiB of address space per engine by default, and these run a few instructions."""


def _private_engine() -> Uc:
    """An engine for the lab's own experiments, with a small translation buffer (set before first use)."""
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    uc.ctl_set_tcg_buffer_size(PRIVATE_TCG_BUFFER)
    return uc


def _el1_engine() -> Uc:
    """A private engine of the guests' CPU model set to run at Non-secure EL1 (AArch64 EL1 under
    SCR_EL3 and HCR_EL2), for the probes below that learn the model's layout by experiment."""
    uc = _private_engine()
    uc.ctl_set_cpu_model(a64.UC_CPU_ARM64_A57)
    uc.reg_write(a64.UC_ARM64_REG_CP_REG, (1, 1, 3, 6, 0, SCR_EL3_NS_HCE_RW))
    uc.reg_write(a64.UC_ARM64_REG_CP_REG, (1, 1, 3, 4, 0, HCR_EL2_RW))
    return uc


def _sp_bank(pstate: int) -> int:
    """The stack pointer PSTATE selects: 0 for SP_EL0 (EL0, or ELxt), else PSTATE.EL (ARM ARM D1.6.2)."""
    return (pstate >> 2) & 3 if pstate & 1 else 0


# svc #0x1234; brk #0x77; ldxr x1, [x0] (x0 unaligned: an exclusive load always checks alignment)
_RECORD_PROBE_CODE = bytes.fromhex("814602d4e00e20d4017c5fc8")
_RECORD_PROBE_EXPECT = ((0x5600_1234, None), (0xF200_0077, None), (0x9600_0021, 0x1_0003))
_RECORD = struct.Struct("<IIQI")  # env->exception: syndrome, fsr, vaddress, target_el (target/arm/cpu.h)
_XREGS_IN_ENV = 64  # env->xregs follows the 16 AArch32 registers at the start of CPUARMState


@cache
def _context_record_offset() -> int | None:
    """Byte offset of ``env->exception`` in QEMU's CPUARMState, or None if it cannot be told for sure.

    Found through the API alone, in saved contexts (which copy CPUARMState from its start,
    ``_context_header``), so no memory layout of the process can make it miss. Three exceptions
    whose syndromes the architecture fixes are raised at Non-secure EL1: SVC #0x1234 (ESR
    0x56001234), BRK #0x77 (0xF2000077) and an unaligned exclusive load (a data abort, alignment
    fault, ESR 0x96000021, FAR the address). Exactly one place must hold each syndrome, the load's
    address 8 bytes further on and target EL 1 16 bytes further on.
    """
    uc = _el1_engine()
    uc.mem_map(0x1_0000, 0x1000)
    uc.mem_write(0x1_0000, _RECORD_PROBE_CODE)
    scratch = uc.context_save()
    snaps = [_context_cpu_state(uc, scratch)]  # the state before any exception: no place may match it

    def on_exception(engine: Uc, intno: int, user: object) -> None:
        # Saved inside the hook, as the vCPU reads it: Unicorn's way out of emu_start may fill the
        # record again (an instruction abort at the ``until`` address was seen there).
        snaps.append(_context_cpu_state(engine, scratch))
        engine.emu_stop()

    uc.hook_add(UC_HOOK_INTR, on_exception)
    for n in range(len(_RECORD_PROBE_EXPECT)):
        uc.reg_write(a64.UC_ARM64_REG_X0, 0x1_0003)
        uc.emu_start(0x1_0000 + 4 * n, _NEVER, count=1)
    if len(snaps) != len(_RECORD_PROBE_EXPECT) + 1:
        return None
    found = []
    for offset in range(0, len(snaps[0]) - _RECORD.size, 4):
        ok = _RECORD.unpack_from(snaps[0], offset)[0] != _RECORD_PROBE_EXPECT[0][0]
        for snap, (syndrome, address) in zip(snaps[1:], _RECORD_PROBE_EXPECT, strict=True):
            got, _fsr, vaddress, target_el = _RECORD.unpack_from(snap, offset)
            ok = ok and got == syndrome and target_el == 1 and (address is None or vaddress == address)
        if ok:
            found.append(offset)
    return found[0] if len(found) == 1 else None


def _context_cpu_state(uc: Uc, scratch: UcContext, offset: int = 0, size: int | None = None) -> bytes:
    """The engine's CPUARMState as ``uc_context_save`` copies it (into ``scratch``), without the
    context's own header: all of it, or ``size`` bytes from ``offset``."""
    uclib.uc_context_save(uc._uch, scratch.context)
    header = _context_header()
    start = ctypes.cast(scratch.context, ctypes.c_void_p).value + header + offset  # type: ignore[operator]
    return ctypes.string_at(start, scratch.size - header - offset if size is None else size)


def _exception_record_offset() -> int | None:
    """Byte offset of ``env->exception`` from ``env->xregs`` (``_context_record_offset``)."""
    offset = _context_record_offset()
    return None if offset is None else offset - _XREGS_IN_ENV


# AArch32 EL0 (ARM ARM D1.20, "Interprocessing"): ERET from EL1 with SPSR_EL1.M[4] = 1 makes the
# CPU model run A32 or T32 code, which QEMU keeps in other fields of CPUARMState than the AArch64
# ones: R0-R15 in ``regs[16]`` (32-bit words before ``xregs``), ``aarch64`` = 0, the CPSR split
# over ``uncached_cpsr`` and the flag words NF/ZF/CF/VF/QF/GE, ``thumb``, ``condexec_bits`` and
# ``daif`` (target/arm/cpu.h, cpsr_read). QEMU's ERET copies X0-X30 into them
# (aarch64_sync_64_to_32); the way back, an exception entry, is the lab's (``_write_pstate``).
_A32_PROBE_BASE = 0x1_0000
_A32_PROBE_ERET = 0x1_0000  # msr spsr_el1, x20; msr elr_el1, x21; eret
_A32_PROBE_A32 = 0x1_0100  # add r1, r1, #1; svc #0 (A32)
_A32_PROBE_T32 = 0x1_0200  # svc #0 (T32)
_A32_PROBE_A64 = 0x1_0300  # svc #0 (A64, at EL1)
_A32_PROBE_CODE = (
    (_A32_PROBE_ERET, struct.pack("<3I", 0xD518_4014, 0xD518_4035, 0xD69F_03E0)),
    (_A32_PROBE_A32, struct.pack("<2I", 0xE281_1001, 0xEF00_0000)),
    (_A32_PROBE_T32, struct.pack("<H", 0xDF00)),
    (_A32_PROBE_A64, struct.pack("<I", 0xD400_0001)),
)
# SPSR values for the ERET: AArch32 User mode (M = 0x10) with NZCV, Q, GE, E, A, I, F, T varied.
_A32_PROBE_SPSRS = ((0x0000_01D0, _A32_PROBE_A32), (0xD80F_0150, _A32_PROBE_A32),
                    (0x2005_0290, _A32_PROBE_A32), (0x4000_01F0, _A32_PROBE_T32))
_A32_CACHED_CPSR = 0xFE0F_FDE0  # NZCV, Q, IT, GE, T, A, I, F: the bits not in ``uncached_cpsr``


@dataclass(frozen=True, slots=True)
class _A32Layout:
    """Byte offsets from ``env->xregs`` of the AArch32 state (``_aarch32_layout``)."""

    regs: int  # R0-R15, 32-bit words
    aarch64: int  # 1 in AArch64 state, 0 in AArch32 (PSTATE.nRW inverted)
    uncached_cpsr: int  # M[4:0], E and the other CPSR bits not cached below
    qf: int  # CPSR.Q
    ge: int  # CPSR.GE[3:0]
    thumb: int  # CPSR.T
    condexec: int  # CPSR.IT[7:0] as IT[7:2] << 2 | IT[1:0]


@cache
def _aarch32_layout() -> _A32Layout | None:
    """Where QEMU keeps the AArch32 state, found by running A32 and T32 code at EL0, or None.

    X0-X14 hold values with both halves set and an ERET enters AArch32 User mode with each SPSR
    of ``_A32_PROBE_SPSRS``; an SVC there stops with R0-R14 the low halves (R1 incremented by the
    A32 code), R15 past the SVC, and each CPSR field in one word; an SVC at EL1 tells the word
    ``aarch64`` apart. Every field must be found at exactly one place; ``condexec_bits`` is the
    word after ``thumb`` (their declaration order), which must read 0 throughout.
    """
    locator = _xregs_locator()
    if locator is None:
        return None
    uc = _el1_engine()
    uc.mem_map(_A32_PROBE_BASE, 0x1000)
    for address, code in _A32_PROBE_CODE:
        uc.mem_write(address, code)
    index, delta = locator
    xregs = (ctypes.c_uint64 * 2048).from_address(_struct_address(uc))[index] + delta
    before, after = 256, 1024
    if not any(first <= xregs - before and xregs + after <= last for first, last in _writable_ranges()):
        return None
    snaps: list[bytes] = []

    def on_exception(engine: Uc, intno: int, _user: object) -> None:
        snaps.append(ctypes.string_at(xregs - before, before + after))
        engine.emu_stop()

    uc.hook_add(UC_HOOK_INTR, on_exception)
    aarch64_state = uc.context_save()  # an SVC leaves the engine in AArch32: each probe starts from here
    values = [0x5DE1_0000_A320_0000 + 0x1_0000_0001 * n for n in range(15)]
    expected: list[tuple[int, list[int]]] = []
    for spsr, target in _A32_PROBE_SPSRS:
        uc.context_restore(aarch64_state)
        for n, value in enumerate(values):
            uc.reg_write(a64.UC_ARM64_REG_X0 + n, value)
        uc.reg_write(a64.UC_ARM64_REG_X20, spsr)
        uc.reg_write(a64.UC_ARM64_REG_X21, target)
        uc.emu_start(_A32_PROBE_ERET, _NEVER, count=5)
        regs = [value & 0xFFFF_FFFF for value in values]
        if target == _A32_PROBE_A32:
            regs[1] += 1
        regs.append(target + (8 if target == _A32_PROBE_A32 else 2))
        expected.append((spsr, regs))
    uc.context_restore(aarch64_state)
    uc.emu_start(_A32_PROBE_A64, _NEVER, count=1)
    if len(snaps) != len(_A32_PROBE_SPSRS) + 1:
        return None
    a32_snaps, a64_snap = snaps[:-1], snaps[-1]

    def word(snap: bytes, offset: int) -> int:
        return int.from_bytes(snap[before + offset:before + offset + 4], "little")

    def unique(test: Callable[[int], bool], offsets: range) -> int | None:
        found = [offset for offset in offsets if test(offset)]
        return found[0] if len(found) == 1 else None

    words = range(-before, after - 4, 4)
    regs_at = unique(lambda o: o + 64 <= after and all(
        [word(snap, o + 4 * n) for n in range(16)] == regs for snap, (_, regs) in zip(a32_snaps, expected,
                                                                                    strict=True)), words)

    def field(extract: Callable[[int], int]) -> int | None:
        return unique(lambda o: all(word(snap, o) == extract(spsr)
                                    for snap, (spsr, _) in zip(a32_snaps, expected, strict=True)), words)

    aarch64 = unique(lambda o: word(a64_snap, o) == 1 and all(word(snap, o) == 0 for snap in a32_snaps), words)
    uncached = field(lambda v: v & ~_A32_CACHED_CPSR)
    qf = field(lambda v: (v >> 27) & 1)
    ge = field(lambda v: (v >> 16) & 0xF)
    thumb = field(lambda v: (v >> 5) & 1)
    places = (regs_at, aarch64, uncached, qf, ge, thumb)
    if any(place is None for place in places) or not all(word(snap, thumb + 4) == 0 for snap in a32_snaps):  # type: ignore[operator]
        return None
    return _A32Layout(*places, thumb + 4)  # type: ignore[arg-type, operator]


_SANDBOX_CODE = 0x1_0000


@cache
def _sandbox() -> tuple[Uc, list[int]]:
    """A private engine, the same CPU model at Non-secure EL1, that runs single instructions to
    tell which words the model treats as UNDEFINED (``decodes_undefined``)."""
    uc = _el1_engine()
    uc.reg_write(a64.UC_ARM64_REG_CP_REG, (1, 0, 3, 0, 2, 3 << 20))  # CPACR_EL1.FPEN: FP/SIMD do not trap
    uc.mem_map(_SANDBOX_CODE, 0x1000)
    seen: list[int] = []

    def on_exception(engine: Uc, intno: int, _user: object) -> None:
        seen.append(intno)
        engine.emu_stop()

    uc.hook_add(UC_HOOK_INTR, on_exception)
    return uc, seen


@cache
def decodes_undefined(word: int) -> bool:
    """Whether the CPU model takes ``word`` as an UNDEFINED instruction (EC 0, ARM ARM D1.10.4) at
    EL1 with FP enabled, whatever the registers hold. Memory the word would touch is unmapped in
    the sandbox (an abort, not an UNDEF), so only the decoding decides."""
    uc, seen = _sandbox()
    uc.mem_write(_SANDBOX_CODE, (word & 0xFFFF_FFFF).to_bytes(4, "little"))
    uc.ctl_remove_cache(_SANDBOX_CODE, _SANDBOX_CODE + 4)
    seen.clear()
    uc.reg_write(a64.UC_ARM64_REG_PSTATE, PSTATE_EL1H_DAIF)
    try:
        uc.emu_start(_SANDBOX_CODE, _NEVER, count=1)
    except UcError:
        return False  # a memory access it tried: the word decodes
    return seen[:1] == [1]  # EXCP_UDEF


@cache
def _context_header() -> int:
    """Where the CPU state starts in a saved context: after uc_context's own fields, which hold
    memory-snapshot bookkeeping (a pointer among it) that is no CPU state. Found by saving a
    context with X0 set to a pattern: env->xregs[0] follows the 16 AArch32 registers, 64 bytes
    into QEMU's CPUARMState, which the context copies from its start."""
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    pattern = 0x5DE1_C0DE_F00D_B17E
    uc.reg_write(a64.UC_ARM64_REG_X0, pattern)
    saved = bytes(uc.context_save())
    at = saved.find(pattern.to_bytes(8, "little"))
    if at < _XREGS_IN_ENV:
        raise RuntimeError("the CPU state could not be located in a saved Unicorn context")
    return at - _XREGS_IN_ENV


class UnicornVcpu:
    """One AArch64 vCPU on its own ``Uc``, at Non-secure EL1, RAM shared with the other vCPUs."""

    def __init__(self, index: int, host: VcpuHost, *, ram_base: int, ram: Any,
                 mmio: Iterable[tuple[int, int, Callable[[int, int, int], int], Callable[[int, int, int, int], None]]],
                 unmodelled_sysregs: frozenset[SysregKey] = frozenset(),
                 host_reads: frozenset[SysregKey] | None = None, host_writes: frozenset[SysregKey] | None = None,
                 host_instructions: frozenset[SysregKey] | None = None,
                 system_counter: SystemCounter | None = None, compiled_hooks: bool | None = None,
                 direct: bool | Iterable[str] | None = None) -> None:
        """``host_reads``, ``host_writes`` and ``host_instructions``: the MRS, MSR and SYS encodings
        the host emulates or watches (None: all); the others never leave the engine.

        ``system_counter``: counter reads this vCPU answers itself, in the compiled hooks
        (``compiled_hooks``: True requires them, False refuses them, None takes them when
        sdeilab.cpu.native could build them).

        ``direct``: which of QEMU's internal fields (``FAST_PATHS``) this vCPU may use where the
        probes find them (``direct_paths``; None: ``SDEILAB_DIRECT``). With fewer it takes the API
        fallbacks, which the tests force to keep them correct (tests/test_fallbacks.py); the
        compiled exception entry needs all four."""
        self.index = index
        self._host = host
        self._unmodelled = unmodelled_sysregs
        self._mrs_keys = _cp_table(host_reads)
        self._msr_keys = _cp_table(host_writes)
        self._sys_keys = _cp_table(host_instructions)
        uc = self._uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
        uc.ctl_set_cpu_model(a64.UC_CPU_ARM64_A57)
        self._uch = uc._uch
        ram_ptr = ctypes.addressof(ctypes.c_char.from_buffer(ram))
        uc.mem_map_ptr(ram_base, len(ram), 7, ram_ptr)
        for base, size, read, write in mmio:
            uc.mmio_map(base, size, self._mmio_reader(read), None, self._mmio_writer(write), None)
        self._counter = ctypes.c_uint64.from_address(_struct_address(self._uc) + 8 * _counter_index())
        paths = direct_paths(direct)
        self._xregs = self._direct_registers() if "registers" in paths else None
        self._xb = memoryview(self._xregs).cast("B") if self._xregs is not None else None
        self._xq = self._xb.cast("Q") if self._xb is not None else None
        # ``_aarch64[0]`` is QEMU's env->aarch64 (0 while the guest runs AArch32 code at EL0), or a
        # constant 1 where the AArch32 state cannot be located: the CPU is then taken as AArch64.
        self._aarch64: Any = memoryview((ctypes.c_uint32 * 1)(1)).cast("B").cast("I")
        self._pstate = self._direct_pstate() if "pstate" in paths else None
        self._a32 = self._direct_aarch32() if "aarch32" in paths else None
        offset = _exception_record_offset() if self._xregs is not None and "record" in paths else None
        xregs = self._xregs
        self._record = (None if offset is None or xregs is None
                        else (ctypes.c_uint32 * 6).from_address(ctypes.addressof(xregs) + offset))
        # Without the record in place, the same record read from a saved context (the API's copy
        # of CPUARMState): slower, but found without looking at the process's memory at all. Only
        # where that is not known either are syndromes rebuilt from the instruction (``_rebuilds``).
        self._saved_record_at = _context_record_offset() if self._record is None else None
        self._rebuilds = self._record is None and self._saved_record_at is None
        self._paddr = ctypes.c_uint64()
        self._val = ctypes.c_uint64()
        self._pval = ctypes.c_void_p(ctypes.addressof(self._val))
        self._batch_ids = (ctypes.c_int32 * 31)(*_X_IDS)
        self._batch_vals = (ctypes.c_uint64 * 31)()
        self._batch_ptrs = (ctypes.c_void_p * 31)(*[ctypes.addressof(self._batch_vals) + 8 * i for i in range(31)])
        self._hook_error: BaseException | None = None
        self._running = False  # inside emu_start
        self._stop_requested = False
        self._in_store = False  # inside an MMIO write callback
        self._store_interrupted = False  # a stop was requested there: the store must be finished
        self._replaying_store = False  # inside ``_finish_store``
        self._replay_count = 0  # ``executed`` while the replay runs
        self._replay_skip = 0  # device writes the replay must swallow: the interrupted try made them
        self._store_at = -1  # the counter value (the instruction) the device writes below belong to
        self._store_parts = 0  # device writes that instruction has made so far
        self._unmapped: tuple[str, int] | None = None
        self._budget = 0
        self._interrupted = False  # a debugger cut (``interrupt``), as opposed to ``_stop_requested``
        self._breakpoints: dict[int, int] = {}  # address -> hook handle
        self._break_hit: int | None = None  # the breakpoint this slice stopped at
        self._last_break: int | None = None  # where the previous slice stopped at a breakpoint
        self._skip_at: int | None = None  # the breakpoint to step over once, at the slice's start
        # Unicorn's CPU model (QEMU 5.0) sets PSTATE.IL on an illegal exception return but never
        # takes the Illegal Execution state exception that follows (a later QEMU does, ARM ARM
        # D1.4.x). While SPSR_EL1 holds a value that could make an ERET illegal, every instruction
        # is checked for PSTATE.IL by a code hook that stops the slice before it executes.
        self._watch_il = False
        self._il_hook: int | None = None
        self._il_stop = False
        self._a32_stop: int | None = None  # where the CPU entered AArch32 state it cannot run
        # Hardware watchpoints (``set_watch_ranges``): memory hooks on the watched physical ranges
        # only, and the access one stopped, with what undoes it.
        self._watch_hooks: list[int] = []
        self._watch_hit: tuple[int, int, bool, bytes | object, tuple[int, bytes] | None] | None = None
        self._translation_watch = False  # ``set_translation_watch``
        # What the MSR hook forwards as built (None: every write).
        self._msr_forwarded = None if host_writes is None else frozenset(host_writes)
        # Software step. QEMU caches "stepping active" in env->hflags, from MDSCR_EL1.SS and KDE and
        # PSTATE.D; the CPU model rebuilds them on an MSR and an ERET but not on MSR DAIFSet/DAIFClr.
        # ``_mdscr`` is MDSCR_EL1 as last written; while SS and KDE are both set a code hook watches
        # PSTATE.D (``_on_step_check``) and ends the slice before the first instruction after it
        # changed, so the flags are rebuilt before that instruction is translated.
        # Without the exception record the same hook also notes each instruction stepping may take
        # (with SS alone too: EL0 steps without KDE), for the syndrome ``_step_record`` rebuilds.
        self._mdscr = 0
        self._step_hook: int | None = None
        self._step_d = True  # PSTATE.D as env->hflags last saw it
        self._step_stop = False
        self._stepped: tuple[int, int, int] | None = None  # (PC, counter, PSTATE) of the last one begun
        self._last_intno = -1  # the QEMU exception number of the last interrupt hook
        self._system_counter = system_counter
        library = None if compiled_hooks is False else native.library()
        if compiled_hooks and library is None:
            raise RuntimeError(f"compiled hooks required: {native.unavailable_reason()}")
        self._native = library
        self._filters: list[native.SysregFilter] = []
        # The MRS hook's table, which the run loop keeps up to date (budget, clock) and which answers
        # the counter reads; the interrupt hook reads the slice's budget from it too.
        self._slice_filter: native.SysregFilter | None = None
        self._exception_filter: native.ExceptionFilter | None = None
        self._install_hooks(host_reads, host_writes, host_instructions)
        self.write("SCR_EL3", SCR_EL3_NS_HCE_RW)
        self.write("HCR_EL2", HCR_EL2_RW)
        self.write("PSTATE", PSTATE_EL1H_DAIF)
        self._pristine = uc.context_save()
        self._scratch: UcContext | None = None  # what ``restore`` copies a snapshot's bytes into

    def _direct_registers(self) -> Any:
        """``env->xregs[0..31]`` followed by ``env->pc`` as a ctypes array, or None to use the API."""
        locator = _xregs_locator()
        if locator is None:
            return None
        index, delta = locator
        address = (ctypes.c_uint64 * 2048).from_address(_struct_address(self._uc))[index] + delta
        if not any(first <= address and address + 33 * 8 <= last for first, last in _writable_ranges()):
            return None
        view = (ctypes.c_uint64 * 33).from_address(address)
        for i, value in enumerate(_PROBE):
            self._uc.reg_write(a64.UC_ARM64_REG_X0 + i, value)
        self._uc.reg_write(a64.UC_ARM64_REG_PC, 0x1000)
        ok = list(view[:4]) == _PROBE and view[32] == 0x1000
        if ok:  # written only where x0..x3 and PC were found: anywhere else it would corrupt the process
            view[5] = 0x5DE1
            ok = self._uc.reg_read(a64.UC_ARM64_REG_X5) == 0x5DE1
        for i in range(6):
            self._uc.reg_write(a64.UC_ARM64_REG_X0 + i, 0)
        return view if ok else None

    def _direct_pstate(self) -> tuple[Any, int, int, int, int, int, int, int] | None:
        """Where QEMU keeps PSTATE, so the SDEI path can read it without the API (about 1 µs a read).

        QEMU splits PSTATE across CPUARMState (pstate_write): NF = the value (N is bit 31), ZF is
        zero when Z is set, CF = C, VF holds V in bit 31, ``daif`` the DAIF bits, ``pstate`` the
        rest. Their places after ``env->pc`` are found by writing known values through the API,
        and the composition is verified against the API's reads; any doubt and the API is used.
        Writes go through the API, but for NZCV and DAIF alone (``_write_pstate``). The last index
        is env->aarch64's (``_aarch32_layout``), which tells AArch32 state apart; without it the
        API is used (and AArch32 EL0 is not supported).
        """
        layout = _aarch32_layout() if self._xregs is not None else None
        if self._xregs is None or layout is None:
            return None
        aarch64 = (layout.aarch64 - 33 * 8) // 4
        words = memoryview((ctypes.c_uint32 * 512).from_address(ctypes.addressof(self._xregs) + 33 * 8)).cast("B")
        words = words.cast("I")  # a memoryview item costs a third of a ctypes array's
        probes = [0x3C5, 0x004, 0x8000_0005, 0x4000_0184, 0x2000_0245, 0x1000_0304, 0xF000_03C4, 0x5000_0085,
                  0xA000_0004]
        snaps = []
        for value in probes:
            self._uc.reg_write(a64.UC_ARM64_REG_PSTATE, value)
            snaps.append(words.tolist())
        fields = (lambda v: v, lambda v: ~v & 0x4000_0000, lambda v: (v >> 29) & 1,
                  lambda v: (v << 3) & 0x8000_0000, lambda v: v & 0x0FFF_F03F, lambda v: v & 0x3C0)
        places: list[int] = []
        for expect in fields:  # NF, ZF, CF, VF, pstate, daif
            found = [i for i in range(len(words))
                     if all(snap[i] == expect(v) for v, snap in zip(probes, snaps, strict=True))]
            if len(found) != 1:
                self._uc.reg_write(a64.UC_ARM64_REG_PSTATE, PSTATE_EL1H_DAIF)
                return None
            places.append(found[0])
        if not 0 <= aarch64 < len(words) or words[aarch64] != 1:  # this engine is in AArch64 state
            return None
        nf, zf, cf, vf, rest, daif = places
        self._pstate = located = (words, nf, zf, cf, vf, rest, daif, aarch64)  # tried by ``pstate`` below
        ok = True
        for value in (0x3C5, 0x6000_0005, 0x9000_0144, 0x0000_0085, 0xF000_0005):
            self._uc.reg_write(a64.UC_ARM64_REG_PSTATE, value)
            ok = ok and self.pstate == self._uc.reg_read(a64.UC_ARM64_REG_PSTATE) == value
        self._uc.reg_write(a64.UC_ARM64_REG_PSTATE, PSTATE_EL1H_DAIF)
        return located if ok else None

    def _direct_aarch32(self) -> tuple[Any, Any, int, int, int, int, int] | None:
        """(R0-R15, the words after ``env->pc``, then the indices in them of ``uncached_cpsr``, QF,
        GE, ``thumb`` and ``condexec_bits``) for ``_aarch32_layout``, or None: no AArch32 support.

        The AArch32 state is read and left on the direct views only, so it needs them all.
        """
        located = self._pstate
        layout = _aarch32_layout() if located is not None else None
        if located is None or layout is None or self._xregs is None:
            return None
        base = ctypes.addressof(self._xregs)
        if not any(first <= base + layout.regs < base <= last for first, last in _writable_ranges()):
            return None
        regs = memoryview((ctypes.c_uint32 * 16).from_address(base + layout.regs)).cast("B").cast("I")
        words = located[0]
        after_pc = 33 * 8

        def index(offset: int) -> int:
            return (offset - after_pc) // 4

        self._aarch64 = words[located[7]:located[7] + 1]
        return (regs, words, index(layout.uncached_cpsr), index(layout.qf), index(layout.ge), index(layout.thumb),
                index(layout.condexec))

    # --- hooks -------------------------------------------------------------------------
    def _install_hooks(self, host_reads: frozenset[SysregKey] | None, host_writes: frozenset[SysregKey] | None,
                       host_instructions: frozenset[SysregKey] | None) -> None:
        uc = self._uc
        handle = ctypes.c_size_t()
        self._insn_cbs = []
        counter_keys = self._system_counter.keys if self._system_counter is not None else frozenset()
        # The MSR hook always sees SPSR_EL1 and MDSCR_EL1 (the IL check and software step).
        msr_keys = None if host_writes is None else host_writes | {_SPSR_EL1, _MDSCR_EL1}
        for insn, method, keys, counter in ((a64.UC_ARM64_INS_MRS, self._on_mrs, host_reads, counter_keys),
                                            (a64.UC_ARM64_INS_MSR, self._on_msr, msr_keys, frozenset()),
                                            (a64.UC_ARM64_INS_SYS, self._on_sys, host_instructions, frozenset())):
            callback = _INSN_CFUNC(method)
            self._insn_cbs.append(callback)  # the engine keeps only the pointer
            pointer, user = ctypes.cast(callback, ctypes.c_void_p), None
            if self._native is not None:
                filt = self._sysreg_filter(callback, keys, counter)
                pointer = ctypes.cast(self._native.sdeilab_sysreg_hook, ctypes.c_void_p)
                user = ctypes.c_void_p(ctypes.addressof(filt))
            err = uclib.uc_hook_add(self._uch, ctypes.byref(handle), UC_HOOK_INSN, pointer, user,
                                    ctypes.c_uint64(1), ctypes.c_uint64(0), ctypes.c_int(insn))
            if err:
                raise UcError(err)
        # The interrupt hook is on the hypercall path, so it is registered through raw ctypes:
        # the binding's wrapper costs about 2 µs a call (reference 2.2). The compiled one takes
        # the common synchronous exceptions itself (compiled_hooks.c) and calls this one for the rest.
        self._intr_cb = _INTR_CFUNC(self._on_interrupt)
        pointer, user = ctypes.cast(self._intr_cb, ctypes.c_void_p), None
        if self._slice_filter is not None and self._exception_entry_located():
            entry = self._exception_filter = self._make_exception_filter()
            pointer = ctypes.cast(self._native.sdeilab_exception_hook, ctypes.c_void_p)  # type: ignore[union-attr]
            user = ctypes.c_void_p(ctypes.addressof(entry))
        err = uclib.uc_hook_add(self._uch, ctypes.byref(handle), UC_HOOK_INTR, pointer, user,
                                ctypes.c_uint64(1), ctypes.c_uint64(0))
        if err:
            raise UcError(err)
        # Devices are mapped without execute permission, so a fetch from one comes here as well
        # (UC_MEM_FETCH_PROT) rather than out of emu_start as a bare error.
        uc.hook_add(UC_HOOK_MEM_UNMAPPED | UC_HOOK_MEM_FETCH_PROT, self._on_unmapped)

    def _sysreg_filter(self, forward: Any, keys: frozenset[SysregKey] | None,
                       counter: frozenset[SysregKey]) -> native.SysregFilter:
        """The compiled hook's table (compiled_hooks.c): ``keys`` go to ``forward`` (all when None),
        ``counter`` are answered in C, the rest are left to the CPU model."""
        filt = native.SysregFilter()
        self._filters.append(filt)  # the engine keeps only its address
        filt.emu_counter = ctypes.addressof(self._counter)
        filt.reg_write = ctypes.cast(uclib.uc_reg_write, ctypes.c_void_p)
        filt.forward = ctypes.cast(forward, ctypes.c_void_p)
        filt.xzr = a64.UC_ARM64_REG_XZR
        if keys is None:
            ctypes.memset(filt.action, native.FORWARD, ctypes.sizeof(filt.action))
        else:
            for op0, op1, crn, crm, op2 in keys:
                filt.action[native.filter_index(crn, crm, op0, op1, op2)] = native.FORWARD
        if self._slice_filter is None:
            self._slice_filter = filt  # the MRS hook's, made first
        if counter:
            clock = self._system_counter
            assert clock is not None
            filt.ns_per_instruction, filt.ns_per_count = clock.ns_per_instruction, clock.ns_per_count
            for op0, op1, crn, crm, op2 in counter:
                filt.action[native.filter_index(crn, crm, op0, op1, op2)] = native.COUNTER
        return filt

    @property
    def compiled_hooks(self) -> bool:
        """Whether the MRS, MSR and SYS hooks are the compiled ones (sdeilab.cpu.native)."""
        return self._native is not None

    @property
    def compiled_entry(self) -> bool:
        """Whether the compiled interrupt hook enters the common exceptions itself (``_compiled_entry_works``)."""
        return self._exception_filter is not None

    @property
    def fast_paths(self) -> frozenset[str]:
        """The fast paths (``FAST_PATHS``) this vCPU uses: those allowed that the probes found."""
        found = {"registers": self._xregs, "pstate": self._pstate, "aarch32": self._a32, "record": self._record}
        return frozenset(name for name, place in found.items() if place is not None)

    @property
    def counter_reads_in_engine(self) -> int:
        """System counter reads the compiled hook answered without asking the host."""
        filt = self._slice_filter
        return 0 if filt is None else int(filt.counter_reads)

    def _exception_entry_located(self) -> bool:
        """The compiled exception entry needs QEMU's CPU, its exception record and env->aarch64,
        and a check (once per process) that QEMU's entry code does what the lab's does."""
        return (self._record is not None and self._a32 is not None and self._cpu_state() is not None
                and _compiled_entry_works())

    def _cpu_state(self) -> int | None:
        """The CPUState the register file belongs to (``_xregs_locator``'s base pointer)."""
        locator = _xregs_locator()
        if locator is None or self._xregs is None:
            return None
        base = (ctypes.c_uint64 * 2048).from_address(_struct_address(self._uc))[locator[0]]
        return base if base + locator[1] == ctypes.addressof(self._xregs) else None

    def _make_exception_filter(self) -> native.ExceptionFilter:
        assert self._slice_filter is not None and self._record is not None
        return _exception_filter(self._slice_filter, self._cpu_state() or 0, ctypes.addressof(self._record),
                                 ctypes.addressof(ctypes.c_uint32.from_buffer(self._aarch64)), self._intr_cb)

    def set_compiled_exceptions(self, enabled: bool) -> None:
        """Let the compiled hook take the common synchronous exceptions (not while a debugger runs
        the machine: a fact it watches must stop the run at once, not when the queue is read)."""
        if self._exception_filter is not None:
            self._exception_filter.enabled = int(enabled)

    def vectors_checked(self) -> None:
        """The host checked the vector table under the current VBAR_EL1, SCTLR_EL1 and TTBR."""
        if self._exception_filter is not None:
            self._native.sdeilab_vectors_checked(self._uch, ctypes.byref(self._exception_filter))  # type: ignore[union-attr]

    @property
    def exceptions_in_engine(self) -> int:
        """Exception entries the compiled hook made without calling the host."""
        filt = self._exception_filter
        return 0 if filt is None else int(filt.entries)

    def _report_taken(self) -> None:
        """Hand the entries the compiled hook made to the host, in order, and empty the queue."""
        filt = self._exception_filter
        count = filt.count  # type: ignore[union-attr]
        filt.count = 0  # type: ignore[union-attr]
        taken = filt.taken  # type: ignore[union-attr]
        report = self._host.exception_taken
        for i in range(count):
            entry = taken[i]
            report(self.index, _TRAPS[entry.intno], entry.retired, entry.vector, entry.esr, entry.elr, entry.far)

    def _on_interrupt(self, _uch: int, intno: int, _user: int) -> None:
        if self._exception_filter is not None and self._exception_filter.count:
            self._report_taken()
        self._last_intno = intno
        try:
            if intno == 11 or intno == 13:  # EXCP_HVC, EXCP_SMC: the hypercall path, kept short
                self._host.conduit(self.index, _HVC if intno == 11 else _SMC, self.executed())
            else:
                self._host.trap(self.index, _TRAPS.get(intno, Trap.OTHER), self.pc)
        except BaseException as error:  # a ctypes callback must not raise: hand it to run()
            self._hook_error = self._hook_error or error
            self.request_stop()

    def _on_mrs(self, _uch: int, reg: int, cp: int, _user: int) -> int:
        if self._exception_filter is not None and self._exception_filter.count:
            self._report_taken()
        encoding = ctypes.string_at(cp, 20)
        table = self._mrs_keys
        key = _cp_key(encoding) if table is None else table.get(encoding)
        if key is None:
            return 0  # not emulated: the CPU model executes it
        try:
            value = self._host.sysreg_read(self.index, key)
            if value is None:
                return 0
            if reg != a64.UC_ARM64_REG_XZR:
                self._val.value = value & MASK64
                uclib.uc_reg_write(self._uch, reg, self._pval)
            if key in self._unmodelled:
                self._set_pc_api(self.pc + 4)
            return 1
        except BaseException as error:  # a ctypes callback must not raise: hand it to run()
            self._hook_error = self._hook_error or error
            self.request_stop()
            return 0

    def _on_msr(self, _uch: int, reg: int, cp: int, _user: int) -> int:
        if self._exception_filter is not None and self._exception_filter.count:
            self._report_taken()
        encoding = ctypes.string_at(cp, 20)
        if encoding == _SPSR_EL1_ENCODING:
            if self._eret_needs_watch(ctypes.c_uint64.from_address(cp + _CP_VAL_OFFSET).value):
                # The check hook is only added between slices (code translated before it was
                # added would skip it), so end this slice after its current block; an ERET in
                # that block is caught by ``run`` itself.
                self._watch_il = True
                self._stop_requested = True
                uclib.uc_emu_stop(self._uch)
            else:
                self._watch_il = False
            return 0
        if self._translation_watch and encoding in _TRANSLATION_ENCODINGS:
            # The host watches virtual addresses: after this write its ranges may be elsewhere.
            # A debugger cut, not a slice's end: the machine runs the rest of the slice at once
            # and translates the ranges again first (nothing the guest sees changes).
            self.interrupt()
        if encoding == _MDSCR_EL1_ENCODING:
            value = ctypes.c_uint64.from_address(cp + _CP_VAL_OFFSET).value
            if self._step_armed(value) != (self._step_hook is not None):
                # Like the IL check, the step check hook is only added or removed between slices.
                self._stop_requested = True
                uclib.uc_emu_stop(self._uch)
            self._mdscr = value
        table = self._msr_keys
        key = _cp_key(encoding) if table is None else table.get(encoding)
        if key is None:
            return 0
        try:
            if not self._host.sysreg_write(self.index, key, ctypes.c_uint64.from_address(cp + _CP_VAL_OFFSET).value):
                return 0
            if key in self._unmodelled:
                self._set_pc_api(self.pc + 4)
            return 1
        except BaseException as error:
            self._hook_error = self._hook_error or error
            self.request_stop()
            return 0

    def _on_sys(self, _uch: int, reg: int, cp: int, _user: int) -> int:
        if self._exception_filter is not None and self._exception_filter.count:
            self._report_taken()
        encoding = ctypes.string_at(cp, 20)
        table = self._sys_keys
        key = _cp_key(encoding) if table is None else table.get(encoding)
        if key is not None:
            try:
                self._host.system_instruction(self.index, key, ctypes.c_uint64.from_address(cp + _CP_VAL_OFFSET).value)
            except BaseException as error:
                self._hook_error = self._hook_error or error
                self.request_stop()
        return 0  # the CPU model still executes it

    def _eret_needs_watch(self, spsr: int) -> bool:
        """Whether an ERET with this SPSR_EL1 must be followed by ``_on_il_check``: it may be illegal,
        or it may enter AArch32 EL0 on a vCPU that cannot follow it there (no ``aarch32`` path)."""
        return _may_return_illegally(spsr) or (self._a32 is None and bool(spsr & PSTATE_NRW))

    def _enters_aarch32(self, address: int) -> bool:
        """Whether the instruction at ``address`` is an ERET that SPSR_EL1 makes a legal return to
        AArch32 User mode (EL0): M[4:0] = 0x10, IL clear (ARM ARM D1.10.3, "Exception return")."""
        spsr = self._cp_access(_SPSR_EL1)
        if spsr & 0x1F != A32_USER or spsr & PSTATE_IL:
            return False
        physical = self.translate(address, "fetch")
        return physical is not None and bytes(self._uc.mem_read(physical, 4)) == _ERET

    def _on_il_check(self, uc: Uc, address: int, size: int, _user: object) -> None:
        if self._counter.value > self._budget:
            return
        if self._a32 is None and self._enters_aarch32(address):
            # Without the AArch32 layout the API reads only the AArch64 state (X0-X30, env->pc),
            # stale in AArch32 state (R0-R15, ARM ARM D1.20): refuse the ERET before it runs.
            self._a32_stop = address
            uclib.uc_emu_stop(self._uch)
            return
        if not self.pstate & PSTATE_IL:
            return
        self._il_stop = True
        uclib.uc_emu_stop(self._uch)

    def _on_watched(self, uc: Uc, access: int, address: int, size: int, value: int, _user: object) -> None:
        if self._watch_hit is not None or self._replaying_store or self._counter.value > self._budget:
            return
        write = access == UC_MEM_WRITE
        try:
            if not self._host.watch_access(self.index, address, size, write):
                return
        except BaseException as error:  # a callback must not raise: hand it to run()
            self._hook_error = self._hook_error or error
            self.request_stop()
            return
        # Unicorn cannot refuse the access from here: it happens, and the slice stops with PC at
        # the instruction (reference 2.1, "emu_stop for preemption"). What it changes is put back
        # in ``run``: the registers as they are now, before the instruction writes any, and the
        # bytes a store overwrites. (An earlier access of the same instruction, the first half of
        # an STP, stays done, as on QEMU.)
        view = self._xb
        registers: bytes | object = bytes(view[:33 * 8]) if view is not None else self._uc.context_save()
        old = None
        if write:
            # The 64-byte lines around the store: the CPU model's DC ZVA helper goes on storing
            # the rest of its block after this hook stops the slice, and those bytes must be put
            # back too. Saved now, they hold what any earlier access of the instruction wrote.
            begin, end = address & ~_ZVA_LINE, (address + size + _ZVA_LINE) & ~_ZVA_LINE
            old = (begin, bytes(self._uc.mem_read(begin, end - begin)))
        self._watch_hit = (address, size, write, registers, old)
        uclib.uc_emu_stop(self._uch)

    def _undo_watched(self) -> tuple[int, bool]:
        """Undo the access a watchpoint stopped (``_on_watched``); returns its address and kind."""
        assert self._watch_hit is not None
        address, _size, write, registers, old = self._watch_hit
        self._watch_hit = None
        if isinstance(registers, bytes):
            self._xb[:len(registers)] = registers  # type: ignore[index]  # x0..x30, SP, PC
        else:
            self._uc.context_restore(registers)  # type: ignore[arg-type]
        if old is not None:
            self._uc.mem_write(*old)
        return address, write

    def _step_armed(self, mdscr: int) -> bool:
        """Whether the step check hook is wanted under this MDSCR_EL1 (``_on_step_check``)."""
        if self._rebuilds:
            return bool(mdscr & MDSCR_SS)
        return (mdscr & (MDSCR_SS | MDSCR_KDE)) == MDSCR_SS | MDSCR_KDE

    def _on_step_check(self, uc: Uc, address: int, size: int, _user: object) -> None:
        if self._counter.value > self._budget:
            return
        pstate = self.pstate
        if self._rebuilds:
            self._stepped = (address, self._counter.value, pstate)
        if not self._mdscr & MDSCR_KDE or bool(pstate & PSTATE_D) == self._step_d:
            return
        self._step_stop = True
        uclib.uc_emu_stop(self._uch)

    def _step_record(self) -> ExceptionRecord | None:
        """The syndrome of a Software Step exception, rebuilt without QEMU's exception record.

        The CPU model raises it as an UNDEFINED instruction (EXCP_UDEF) at PC, in two ways (ARM ARM
        D2.12, "Software Step exceptions"): after the one instruction stepped with PSTATE.SS = 1,
        ISV = 1 and EX = 1 if that was a load-exclusive; or before any instruction when stepping is
        active-pending (PSTATE.SS = 0), ISV = 0. Either way the instruction at PC has not begun,
        which is what tells it from an UNDEFINED instruction there: the code hook (``_on_step_check``)
        saw PC begin at this count. EC 0x33 from EL1, 0x32 from EL0; IL = 1, IFSC 0x22 (ARM ARM
        D17.2.37, ESR_ELx "ISS encoding for an exception from a Software Step exception").
        """
        if not self._mdscr & MDSCR_SS or self._step_hook is None:
            return None
        pc = self.pc
        counter = self._counter.value
        last = self._stepped
        if last is not None and last[0] == pc and last[1] == counter:
            return None  # the instruction at PC began: a genuine UNDEFINED instruction
        stepped = last is not None and last[1] == counter and bool(last[2] & PSTATE_SS)
        ex = False
        if stepped:
            physical = self.translate(last[0], "fetch")  # type: ignore[index]
            if physical is not None:
                word = int.from_bytes(self._uc.mem_read(physical, 4), "little")
                ex = word & 0x3FC0_0000 == 0x0840_0000  # LDXR, LDAXR, LDXP, LDAXP (ARM ARM C4.1.94)
        ec = 0x33 if (self.pstate >> 2) & 3 else 0x32
        syndrome = ec << 26 | 1 << 25 | int(stepped) << 24 | int(ex) << 6 | 0x22
        return ExceptionRecord(syndrome, 0, 1)

    def _sync_step_hook(self) -> None:
        armed = self._step_armed(self._mdscr)
        if armed and self._step_hook is None:
            self._step_d = bool(self.pstate & PSTATE_D)
            self._rebuild_flags()
            self._step_hook = self._uc.hook_add(UC_HOOK_CODE, self._on_step_check)
            self._uc.ctl_flush_tb()
        elif not armed and self._step_hook is not None:
            self._uc.hook_del(self._step_hook)
            self._step_hook = None
            self._uc.ctl_flush_tb()

    def _rebuild_flags(self) -> None:
        """Rebuild QEMU's cached flags (env->hflags): a CP_REG write does (module docstring)."""
        spsr = _CP_REGS["SPSR_EL1"]
        self._cp_access(spsr, self._cp_access(spsr))
        if self._step_hook is not None:
            self._step_d = bool(self.pstate & PSTATE_D)

    def _sync_il_hook(self) -> None:
        if self._watch_il and self._il_hook is None:
            self._il_hook = self._uc.hook_add(UC_HOOK_CODE, self._on_il_check)
            self._uc.ctl_flush_tb()
        elif not self._watch_il and self._il_hook is not None:
            self._uc.hook_del(self._il_hook)
            self._il_hook = None
            self._uc.ctl_flush_tb()

    def _on_breakpoint(self, uc: Uc, address: int, size: int, _user: object) -> None:
        if self._counter.value > self._budget:
            return  # the budget ended the slice just before this instruction: that is no hit
        if address == self._skip_at:
            self._skip_at = None  # resuming from this very breakpoint: execute it this once
            return
        if self._break_hit is None:
            self._break_hit = address
        uclib.uc_emu_stop(self._uch)

    def _on_unmapped(self, uc: Uc, access: int, address: int, size: int, value: int, _user: object) -> bool:
        kind = {UC_MEM_WRITE_UNMAPPED: "write", UC_MEM_FETCH_UNMAPPED: "fetch",
                UC_MEM_FETCH_PROT: "device-fetch"}.get(access, "read")
        self._unmapped = (kind, address)
        return False

    def _mmio_reader(self, read: Callable[[int, int, int], int]) -> Callable[..., int]:
        def on_read(uc: Uc, offset: int, size: int, _user: object) -> int:
            if self._exception_filter is not None and self._exception_filter.count:
                self._report_taken()  # the entries made before this access are recorded first
            return read(self.index, offset, size)
        return on_read

    def _mmio_writer(self, write: Callable[[int, int, int, int], None]) -> Callable[..., None]:
        def on_write(uc: Uc, offset: int, size: int, value: int, _user: object) -> None:
            if self._exception_filter is not None and self._exception_filter.count:
                self._report_taken()  # the entries made before this access are recorded first
            if self._replay_skip:
                # The store that a stop interrupted is being finished: this write was done already.
                self._replay_skip -= 1
                return
            # One instruction may make several device writes (STP, a 64-bit store to 32-bit
            # registers, an unaligned store split by the CPU model): count them, so that a replay
            # repeats none of those done and still makes the ones the stop cut off.
            count = self._counter.value
            if count != self._store_at:
                self._store_at = count
                self._store_parts = 0
            self._store_parts += 1
            self._in_store = True
            try:
                write(self.index, offset, size, value)
            finally:
                self._in_store = False
        return on_write

    # --- running -----------------------------------------------------------------------
    def run(self, budget: int, vtime: int = 0) -> SliceResult:
        """Run at most ``budget`` instructions from the current PC, from virtual time ``vtime``."""
        filt = self._slice_filter
        if filt is not None:
            filt.budget = budget
            filt.clock = vtime
        self._stop_requested = False
        self._interrupted = False
        self._unmapped = None
        self._budget = budget
        self._il_stop = False
        self._a32_stop = None
        self._step_stop = False
        if self._watch_il or self._il_hook is not None:
            self._sync_il_hook()
        if self._mdscr & MDSCR_SS or self._step_hook is not None:
            self._sync_step_hook()
        if self.pstate & PSTATE_IL:
            return SliceResult(0, Stop.ILLEGAL_STATE)
        self._counter.value = 0
        uclib.uc_reg_read(self._uch, a64.UC_ARM64_REG_PC, self._pval)
        start = self._val.value
        if self._breakpoints:
            self._skip_at = start if start == self._last_break else None
        self._last_break = None
        self._running = True
        try:
            err = uclib.uc_emu_start(self._uch, start, _NEVER, 0, budget)
        finally:
            self._running = False
            if self._exception_filter is not None and self._exception_filter.count:
                self._report_taken()
        executed = self.executed()
        hit = self._break_hit
        if hit is not None:
            self._break_hit = None
            executed = min(self._counter.value - 1, budget)  # counted, not executed (module docstring)
        self._skip_at = None
        if self._watch_hit is not None:
            self._store_interrupted = False  # the store is undone, not finished (watched ranges are RAM)
            if not err and self._hook_error is None:
                address, write = self._undo_watched()
                return SliceResult(min(self._counter.value - 1, budget), Stop.WATCHPOINT,
                                   "write" if write else "read", address)
            self._watch_hit = None
        if self._store_interrupted and not err:
            executed = self._finish_store(executed)
        hook_error = self._hook_error or getattr(self._uc, "_hook_exception", None)
        if hook_error is not None:
            self._hook_error = None
            self._uc._hook_exception = None
            raise hook_error
        if err in (UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED, UC_ERR_FETCH_UNMAPPED) and self._unmapped:
            access, address = self._unmapped
            return SliceResult(executed, Stop.UNMAPPED, access, address)
        if err == UC_ERR_FETCH_PROT and self._unmapped:
            return SliceResult(executed, Stop.DEVICE_FETCH, "fetch", self._unmapped[1])
        if err:
            raise UcError(err)
        if self._a32_stop is not None:
            executed = min(self._counter.value - 1, budget)  # counted, not executed (module docstring)
            return SliceResult(executed, Stop.UNSUPPORTED, AARCH32_UNSUPPORTED, self._a32_stop)
        if self._il_stop or self._step_stop:
            executed = min(self._counter.value - 1, budget)  # counted, not executed (module docstring)
        if self._step_stop:
            self._rebuild_flags()  # PSTATE.D changed: stepping starts or stops at the next instruction
            return SliceResult(executed, Stop.REQUESTED)
        if (self._il_stop or self._watch_il) and self.pstate & PSTATE_IL:
            return SliceResult(executed, Stop.ILLEGAL_STATE)
        if self._stop_requested:
            return SliceResult(executed, Stop.REQUESTED)
        if hit is not None:
            self._last_break = hit
            return SliceResult(executed, Stop.BREAKPOINT, address=hit)
        if self._interrupted:
            return SliceResult(executed, Stop.INTERRUPTED)
        if executed >= budget:
            return SliceResult(budget, Stop.BUDGET)
        return SliceResult(executed, Stop.WFI)  # the only other way emu_start returns early

    def _finish_store(self, executed: int) -> int:
        """Complete the store instruction a stop interrupted, without repeating its device writes.

        Unicorn stops inside an MMIO write with PC still at the store, which would run again on
        the next slice (reference: unicorn-and-qemu-facts, "emu_stop for preemption"). A Device
        write must happen once, so the store is re-run here for one instruction with the writes
        it made swallowed; the writes the stop cut off (the second half of an STP, say) are made
        now, and any base-register write-back completes. The counter already counted the store
        when it started, so the replay adds nothing to ``executed``, and the writes it makes are
        stamped with the time the store started (tests/test_machine_mmio.py).
        """
        self._store_interrupted = False
        saved = self._counter.value
        self._replay_count = saved if saved <= self._budget else self._budget
        self._replaying_store = True
        self._replay_skip = self._store_parts
        uclib.uc_reg_read(self._uch, a64.UC_ARM64_REG_PC, self._pval)
        self._skip_at = self._val.value  # a breakpoint on the store must not stop its completion
        uclib.uc_emu_start(self._uch, self._val.value, _NEVER, 0, 1)
        self._counter.value = saved
        self._replaying_store = False
        self._replay_skip = 0
        self._store_at = -1
        self._skip_at = None
        return executed

    def executed(self) -> int:
        if self._replaying_store:
            return self._replay_count
        count = self._counter.value
        return count if count <= self._budget else self._budget

    def request_stop(self) -> None:
        self._stop_requested = True
        if self._replaying_store:
            # The slice has ended already; stopping the one-instruction replay would leave PC at
            # the store again, to be repeated forever (a livelock that retired nothing).
            return
        if self._in_store:
            self._store_interrupted = True
        uclib.uc_emu_stop(self._uch)

    def interrupt(self) -> None:
        """A debugger stop after the current instruction; the machine resumes the slice later."""
        self._interrupted = True
        if self._replaying_store:
            return
        if self._in_store:
            self._store_interrupted = True
        uclib.uc_emu_stop(self._uch)

    def set_breakpoints(self, addresses: frozenset[int]) -> None:
        for address in set(self._breakpoints) - addresses:
            self._uc.hook_del(self._breakpoints.pop(address))
            self._uc.ctl_remove_cache(address, address + 4)
        for address in addresses - set(self._breakpoints):
            self._breakpoints[address] = self._uc.hook_add(UC_HOOK_CODE, self._on_breakpoint, None, address, address)
            self._uc.ctl_remove_cache(address, address + 4)

    def set_watch_ranges(self, ranges: Sequence[tuple[int, int, bool, bool]]) -> None:
        for handle in self._watch_hooks:
            self._uc.hook_del(handle)
        self._watch_hooks = []
        for begin, end, loads, stores in ranges:
            kinds = (UC_HOOK_MEM_READ if loads else 0) | (UC_HOOK_MEM_WRITE if stores else 0)
            if kinds and end > begin:
                # Unicorn checks a hook's range against the first byte of an access only.
                self._watch_hooks.append(self._uc.hook_add(kinds, self._on_watched, None,
                                                           max(0, begin - _WATCH_REACH), end - 1))

    def set_translation_watch(self, enabled: bool) -> None:
        """While ``enabled``, a write to SCTLR_EL1, TCR_EL1, TTBR0_EL1 or TTBR1_EL1 interrupts the
        slice after it (``Stop.INTERRUPTED``), so that the host translates its watched virtual
        ranges again; otherwise those writes stay in the engine (the compiled MSR hook's table)."""
        if enabled == self._translation_watch:
            return
        self._translation_watch = enabled
        if self._native is None or self._msr_forwarded is None or len(self._filters) < 2:
            return  # the Python hook sees every MSR, or the compiled one forwards every one
        msr_filter = self._filters[1]  # made in _install_hooks' order: MRS, MSR, SYS
        for op0, op1, crn, crm, op2 in _TRANSLATION_KEYS:
            forwarded = enabled or (op0, op1, crn, crm, op2) in self._msr_forwarded
            msr_filter.action[native.filter_index(crn, crm, op0, op1, op2)] = (native.FORWARD if forwarded
                                                                             else native.DECLINE)

    def sysreg(self, key: SysregKey) -> int:
        return self._cp_access(key)

    # --- registers ---------------------------------------------------------------------
    # With the direct view (``_xq``: x0..x30, SP, PC as 64-bit words in CPUARMState) a register
    # is one memoryview item: about 30 ns, against 100 ns through a ctypes array and 500 ns
    # through the API. The SDEI dispatcher saves and restores x0..x17 on every event.
    def x(self, n: int) -> int:
        view = self._xq
        if view is not None:
            return view[n]
        uclib.uc_reg_read(self._uch, _X_IDS[n], self._pval)
        return self._val.value

    def set_x(self, n: int, value: int) -> None:
        view = self._xq
        if view is not None:
            view[n] = value & MASK64
            return
        self._val.value = value & MASK64
        uclib.uc_reg_write(self._uch, _X_IDS[n], self._pval)

    def xs(self, count: int) -> list[int]:
        """x0 .. x(count-1)."""
        view = self._xq
        if view is not None:
            return view[:count].tolist()
        uclib.uc_reg_read_batch(self._uch, self._batch_ids, self._batch_ptrs, count)
        return self._batch_vals[:count]

    def call_registers(self) -> tuple[int, ...]:
        view = self._xb
        if view is not None and self._aarch64[0]:
            return _CALL_LAYOUT.unpack_from(view)
        return (*self.xs(18), self.pc)

    def set_xs(self, values: Sequence[int]) -> None:
        count = len(values)
        view = self._xb
        if view is not None:
            try:
                _PACKERS[count].pack_into(view, 0, *values)
            except struct.error:  # a negative value: as the architecture would hold it
                _PACKERS[count].pack_into(view, 0, *[value & MASK64 for value in values])
            return
        for i, value in enumerate(values):
            self._batch_vals[i] = value & MASK64
        uclib.uc_reg_write_batch(self._uch, self._batch_ids, self._batch_ptrs, count)

    # An SDEI dispatch reads x0..x17, PC and PSTATE and writes x0..x3, PC and PSTATE; COMPLETE
    # puts them back. One call each, on the direct view: about a microsecond saved per event.
    def save_context(self, count: int) -> tuple[bytes, int, int]:
        view = self._xb
        if view is None:
            return _PACKERS[count].pack(*self.xs(count)), self.pc, self.pstate
        return view[:count * 8].tobytes(), self._xq[32], self.pstate  # type: ignore[index]

    def write_context(self, xs: Sequence[int], pc: int, pstate: int, current_pstate: int) -> None:
        if xs:  # none from an exception entry (sdeilab.machine.exceptions.take_exception)
            self.set_xs(xs)
        if pstate != current_pstate:
            self._write_pstate(pstate, current_pstate)
        self.pc = pc

    def restore_context(self, xs: bytes, pc: int, pstate: int) -> None:
        view = self._xb
        if view is None:
            self.set_xs(_PACKERS[len(xs) // 8].unpack(xs))
        else:
            view[:len(xs)] = xs
        self.write_context((), pc, pstate, self.pstate)

    @property
    def pc(self) -> int:
        view = self._xq
        if view is not None:
            if self._aarch64[0]:
                return view[32]
            return self._a32[0][15]  # type: ignore[index]  # R15 (``_direct_aarch32``)
        uclib.uc_reg_read(self._uch, a64.UC_ARM64_REG_PC, self._pval)
        return self._val.value

    @pc.setter
    def pc(self, value: int) -> None:
        """Set PC between slices or from an exception hook (HVC, SMC, UNDEF, ...).

        After an exception hook QEMU's loop looks the next block up from ``env->pc``, so the
        direct write is exact there and saves the API's forced exit from the translation loop
        (about 4 µs). A hook in the middle of a block (MRS, MSR) must use ``_set_pc_api``.
        """
        view = self._xq
        if view is not None:
            if self._aarch64[0]:
                view[32] = value & MASK64
            else:
                self._a32[0][15] = value & 0xFFFF_FFFF  # type: ignore[index]
            return
        self._set_pc_api(value)

    def _set_pc_api(self, value: int) -> None:
        self._val.value = value
        uclib.uc_reg_write(self._uch, a64.UC_ARM64_REG_PC, self._pval)

    @property
    def pstate(self) -> int:
        located = self._pstate
        if located is None:
            return self.read("PSTATE")
        words, nf, zf, cf, vf, pstate, daif, aarch64 = located
        nzcv = (words[nf] >> 31) << 3 | (words[zf] == 0) << 2 | words[cf] << 1 | words[vf] >> 31
        if words[aarch64] or self._a32 is None:  # (without the AArch32 layout the CPU never runs there)
            return nzcv << 28 | words[pstate] | words[daif]
        return self._cpsr(nzcv)

    def _cpsr(self, nzcv: int) -> int:
        """The AArch32 PSTATE laid out as SPSR_EL1 holds it on an exception from AArch32 (ARM ARM
        D1.10.2 "Exception entry"; SPSR_EL1, "AArch32 state"): N Z C V, Q, IT[1:0], GE, IT[7:2],
        E, A I F, T and M[4:0] with M[4] = 1, composed as QEMU's cpsr_read does."""
        _regs, words, uncached, qf, ge, thumb, condexec = self._a32  # type: ignore[misc]
        it = words[condexec]
        return (nzcv << 28 | words[uncached] | words[qf] << 27 | (it & 3) << 25 | words[ge] << 16
                | (it & 0xFC) << 8 | words[self._pstate[6]] & 0x1C0 | words[thumb] << 5)  # type: ignore[index]

    def read(self, name: str) -> int:
        if name == "PSTATE" and self._pstate is not None:
            return self.pstate
        bank = _SP_BANK_OF.get(name)
        if bank is not None and bank == _sp_bank(self.pstate):
            name = "SP"  # the selected stack pointer lives in SP; its bank is stale until deselected
        reg_id = _REG_IDS.get(name)
        if reg_id is not None:
            return self._api_read(reg_id)
        return self._cp_access(_CP_REGS[name])

    def write(self, name: str, value: int) -> None:
        if name == "PSTATE":
            self._write_pstate(value)
            return
        if name == "SPSR_EL1":
            self._watch_il = self._eret_needs_watch(value)
        bank = _SP_BANK_OF.get(name)
        if bank is not None and bank == _sp_bank(self.pstate):
            name = "SP"
        reg_id = _REG_IDS.get(name)
        if reg_id is not None:
            self._api_write(reg_id, value)
        else:
            self._cp_access(_CP_REGS[name], value)

    def _write_pstate(self, value: int, old: int | None = None) -> None:
        """PSTATE as a mode change (ARM ARM D1.6.2): SP banked, QEMU's cached flags rebuilt.

        QEMU's own exception entry and ERET save SP to ``sp_el[old]`` and load ``sp_el[new]``
        (aarch64_save_sp, aarch64_restore_sp); the API's PSTATE write does neither, nor does it
        rebuild ``env->hflags``, from which QEMU translates code (the EL, the MMU index). A CP_REG
        write rebuilds them, so SPSR_EL1 is written back to itself when the mode changes.
        A change of NZCV and DAIF alone is written straight into QEMU's split fields, as its
        pstate_write does: nothing cached depends on them. ``old`` is PSTATE as just read, if known.
        """
        if old is None:
            old = self.pstate
        if (old ^ value) & PSTATE_NRW:
            if value & PSTATE_NRW:
                raise ValueError(f"PSTATE 0x{value:x} would enter AArch32 state: only an ERET does that here")
            self._leave_aarch32(value)
            return
        located = self._pstate
        # Stepping active depends on PSTATE.D (cached in env->hflags): with MDSCR_EL1.SS set a change
        # of D must rebuild the flags, or the step exception is taken again in its own vector.
        rebuild = (old ^ value) & ~_PSTATE_FLAGS or ((old ^ value) & PSTATE_D and self._mdscr & MDSCR_SS)
        if located is not None and not rebuild:
            words, nf, zf, cf, vf, _, daif, _ = located
            words[nf] = value & 0xFFFF_FFFF
            words[zf] = ~value & 0x4000_0000
            words[cf] = (value >> 29) & 1
            words[vf] = (value << 3) & 0x8000_0000
            words[daif] = value & 0x3C0
            return
        old_bank, new_bank = _sp_bank(old), _sp_bank(value)
        if old_bank != new_bank:
            self._api_write(_SP_EL_IDS[old_bank], self._api_read(a64.UC_ARM64_REG_SP))
            self._api_write(a64.UC_ARM64_REG_PSTATE, value)
            self._api_write(a64.UC_ARM64_REG_SP, self._api_read(_SP_EL_IDS[new_bank]))
        else:
            self._api_write(a64.UC_ARM64_REG_PSTATE, value)
        if rebuild:
            self._rebuild_flags()

    def _leave_aarch32(self, value: int) -> None:
        """AArch32 EL0 -> AArch64 ``value`` (an exception entry), as QEMU's arm_cpu_do_interrupt_aarch64.

        X0-X14 take R0-R14 of User mode zero-extended ("Mapping of AArch32 registers to AArch64",
        ARM ARM D1.20; R13 and R14 of User mode are X13 and X14), and the registers no User mode
        register maps to, X15-X30, keep their low halves only: QEMU keeps them in 32-bit banked
        registers while AArch32 runs, so their upper halves read 0, which the guest sees on QEMU.
        The stack pointer becomes the one ``value`` selects (SP_EL1 from an exception); SP_EL0 is
        left as it was, the AArch32 stack being R13. Then env->aarch64 = 1 and the flags rebuilt.
        """
        regs, words, _uncached, _qf, _ge, _thumb, condexec = self._a32  # type: ignore[misc]
        view = self._xq
        for n in range(15):
            view[n] = regs[n]  # type: ignore[index]
        for n in range(15, 31):
            view[n] &= 0xFFFF_FFFF  # type: ignore[index]
        words[condexec] = 0  # PSTATE.IT does not exist in AArch64 (QEMU clears it too)
        self._aarch64[0] = 1
        self._api_write(a64.UC_ARM64_REG_PSTATE, value)
        self._api_write(a64.UC_ARM64_REG_SP, self._api_read(_SP_EL_IDS[_sp_bank(value)]))
        spsr = _CP_REGS["SPSR_EL1"]
        self._cp_access(spsr, self._cp_access(spsr))  # rebuilds env->hflags for AArch64 (see ``_write_pstate``)

    def _api_read(self, reg_id: int) -> int:
        uclib.uc_reg_read(self._uch, reg_id, self._pval)
        return self._val.value

    def _api_write(self, reg_id: int, value: int) -> None:
        self._val.value = value & MASK64
        uclib.uc_reg_write(self._uch, reg_id, self._pval)

    def vector_state(self) -> bytes:
        uc = self._uc
        values = [uc.reg_read(a64.UC_ARM64_REG_Q0 + n) for n in range(32)]
        values += [uc.reg_read(a64.UC_ARM64_REG_FPCR), uc.reg_read(a64.UC_ARM64_REG_FPSR)]
        return b"".join(int(v).to_bytes(16, "little") for v in values)

    # --- exceptions and addresses --------------------------------------------------------
    def decodes_undefined(self, word: int) -> bool:
        return decodes_undefined(word)

    def exception_record(self) -> ExceptionRecord | None:
        record = self._record
        if record is None and self._saved_record_at is not None:  # the same record, copied by the API
            saved = _context_cpu_state(self._uc, self._scratch_context(), self._saved_record_at, _RECORD.size)
            syndrome, _fsr, address, target_el = _RECORD.unpack(saved)
            return ExceptionRecord(syndrome, address, target_el)
        if record is None:
            # No record at all: only a Software Step exception can be told without it: an abort's fault
            # status and address are QEMU's alone, so the machine stops with a fault report (docs/machine.md).
            if self._last_intno == 1:
                return self._step_record() or self._sysreg_trap_record()
            if self._last_intno in (2, 7) and not self._aarch64[0]:
                return self._aarch32_record(self._last_intno)
            return None
        return ExceptionRecord(record[0], record[2] | record[3] << 32, record[4])

    def _sysreg_trap_record(self) -> ExceptionRecord | None:
        """The syndrome of an MRS, MSR or SYS at EL0 that a control trapped to EL1 (PMUSERENR_EL0.EN,
        CNTKCTL_EL1, SCTLR_EL1.UCT, UCI, DZE...), rebuilt without QEMU's exception record: EC 0x18,
        IL, ISS Op0, Op2, Op1, CRn, Rt, CRm and the direction (ARM ARM D17.2.37, "ISS encoding for an
        exception from MSR, MRS, or System instruction execution in AArch64 state").

        The CPU model raises that trap and a plain UNDEFINED instruction alike (EXCP_UDEF). Op1 = 3
        is the encoding space EL0 may reach at all (ARM ARM D12.3.1, "op0 == 0b11, ..."), so such an
        instruction the same model runs at EL1 (``decodes_undefined``) exists and was trapped; any
        other is left to the caller, an UNDEFINED instruction (EC 0x00)."""
        pstate = self.pstate
        if (pstate >> 2) & 3 or pstate & PSTATE_NRW:
            return None
        pc = self.pc
        physical = self.translate(pc, "fetch")
        if physical is None:
            return None
        word = int.from_bytes(self._uc.mem_read(physical, 4), "little")
        op0, op1 = (word >> 19) & 3, (word >> 16) & 7
        if word & 0xFFC0_0000 != 0xD500_0000 or op0 == 0 or op1 != 3 or decodes_undefined(word):
            return None
        crn, crm, op2, rt, read = (word >> 12) & 15, (word >> 8) & 15, (word >> 5) & 7, word & 31, (word >> 21) & 1
        iss = op0 << 20 | op2 << 17 | op1 << 14 | crn << 10 | rt << 5 | crm << 1 | read
        return ExceptionRecord(0x18 << 26 | 1 << 25 | iss, 0, 1)

    def _aarch32_record(self, intno: int) -> ExceptionRecord | None:
        """The syndrome of an SVC (EXCP_SWI) or BKPT (EXCP_BKPT) from AArch32 EL0, rebuilt from the
        instruction without QEMU's exception record: EC 0x11 or 0x38, IL = 0 for a 16-bit T32 SVC
        (a BKPT's IL is 1 from either, as QEMU reports it), ISS the immediate's low 16 bits (ARM ARM
        D17.2.37, ESR_ELx "ISS encoding for an exception from SVC", "... from BKPT"; A32 BKPT's
        immediate is imm12:imm4). PC is past the SVC (its preferred return address) and at the BKPT
        (ARM ARM D1.10.2)."""
        thumb = bool(self.pstate & 0x20)
        size = 2 if thumb else 4
        at = self.pc - size if intno == 2 else self.pc
        physical = self.translate(at, "fetch")
        if physical is None:
            return None
        word = int.from_bytes(self._uc.mem_read(physical, size), "little")
        if thumb:
            imm = word & 0xFF
        else:
            imm = word & 0xFFFF if intno == 2 else (word >> 4) & 0xFFF0 | word & 0xF
        il = 0 if thumb and intno == 2 else 1 << 25
        return ExceptionRecord((0x11 if intno == 2 else 0x38) << 26 | il | imm, 0, 1)

    def translate(self, address: int, access: str = "read") -> int | None:
        if _vmem_translate is None:  # another libunicorn: only the MMU-off identity is known
            return None if self._cp_access(_CP_REGS["SCTLR_EL1"]) & 1 else address
        err = _vmem_translate(self._uch, ctypes.c_uint64(address & MASK64), ctypes.c_int(_ACCESS_PROT[access]),
                              ctypes.byref(self._paddr))
        return None if err else self._paddr.value

    def _cp_access(self, key: SysregKey, value: int | None = None) -> int:
        op0, op1, crn, crm, op2 = key
        reg = UcRegCP64(crn, crm, op0, op1, op2, 0 if value is None else value)
        call = uclib.uc_reg_read if value is None else uclib.uc_reg_write
        err = call(self._uch, a64.UC_ARM64_REG_CP_REG, ctypes.byref(reg))
        if err:
            raise UcError(err)
        return reg.val

    # --- state -------------------------------------------------------------------------
    def snapshot(self) -> CpuSnapshot:
        """The whole CPU context (uc_context_save: CPUARMState up to its non-architectural tail,
        cached hflags included) as bytes, and the adapter's own state beside it."""
        data = _context_cpu_state(self._uc, self._scratch_context())
        filt = self._exception_filter
        vectors = tuple(filt.vectors_checked) if filt is not None else ()
        return CpuSnapshot(data, (self._mdscr, self._watch_il, self._step_d, self._last_break, self._stepped,
                                  *vectors))

    def _scratch_context(self) -> UcContext:
        """The context this vCPU saves into and restores from (allocated at first use)."""
        if self._scratch is None:
            self._scratch = self._uc.context_save()
        return self._scratch

    def restore(self, snapshot: CpuSnapshot) -> None:
        scratch = self._scratch_context()
        header = _context_header()
        if len(snapshot.context) != scratch.size - header:
            raise ValueError("a CPU snapshot of another engine build cannot be restored here")
        ctypes.memmove(ctypes.cast(scratch.context, ctypes.c_void_p).value + header,  # type: ignore[operator]
                       snapshot.context, len(snapshot.context))
        self._uc.context_restore(scratch)
        self._mdscr, self._watch_il, self._step_d, self._last_break, self._stepped = snapshot.host[:5]  # type: ignore[assignment]
        filt = self._exception_filter
        if filt is not None:  # the vector table the compiled hook may enter, as checked then
            filt.vectors_checked[:] = snapshot.host[5:8]
        self._watch_hit = None
        # The check hooks as they were then, with the flags the context brought back: the next
        # slice's _sync_* must not rebuild flags the run had not rebuilt (see _sync_step_hook).
        if self._step_armed(self._mdscr) != (self._step_hook is not None):
            if self._step_hook is None:
                self._step_hook = self._uc.hook_add(UC_HOOK_CODE, self._on_step_check)
            else:
                self._uc.hook_del(self._step_hook)
                self._step_hook = None
        self._sync_il_hook()
        # A memcpy of the context changes no TLB entry and no translated code: both may now be
        # wrong (another TTBR, an SCTLR with the MMU off, RAM written back under the code).
        self._uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
        self._uc.ctl_flush_tb()

    def reset(self, mpidr: int) -> None:
        """Architectural reset into Non-secure EL1h, DAIF masked, MMU off, with this MPIDR."""
        self._uc.context_restore(self._pristine)
        self._uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)  # the MMU is off now: no old translation holds
        self._last_break = None  # a CPU coming out of reset has stopped at no breakpoint
        self._watch_il = False
        self._mdscr = 0  # MDSCR_EL1 resets to 0: the step check hook goes at the next slice
        self._stepped = None
        self._step_d = True
        self._watch_hit = None
        if self._exception_filter is not None:
            self._exception_filter.vectors_checked[:] = (0, 0, 0)  # no vector table checked yet, as when built
        self.write("VMPIDR_EL2", mpidr)
        self.set_xs([0] * 31)

    def invalidate_code(self, begin: int | None = None, end: int | None = None) -> None:
        """Drop translated code of physical [begin, end), or all of it: Unicorn keeps a translation
        cache per ``Uc`` (reference 2.1) and sees no other engine's stores.

        ``ctl_remove_cache`` takes a *virtual* range and translates it for an instruction fetch in
        the engine's current regime, silently doing nothing when that faults. With the MMU off
        that is the physical range; with it on (Linux) the physical range is generally not mapped
        there, or not executable, so the engine briefly looks through EL2, whose MMU is off, to
        name the physical range (never while it runs: it is stopped between slices).
        """
        if begin is None or end is None:
            self._uc.ctl_flush_tb()
            return
        if self._running or self.translate(begin, "fetch") == begin:
            self._uc.ctl_remove_cache(begin, end)
            return
        pstate = self.pstate
        self._write_pstate(PSTATE_EL2H_DAIF)
        try:
            self._uc.ctl_remove_cache(begin, end)
        finally:
            self._write_pstate(pstate)
