"""Self-hosted debug: the hardware watchpoints of one CPU (DBGWVR<n>_EL1, DBGWCR<n>_EL1).

ARM ARM (DDI 0487) D2, "Watchpoint exceptions". Unicorn 2.1.4 compiles QEMU's watchpoint
insertion out, so the registers are the machine's and the matching is done here, as QEMU 7.2
does it (target/arm/debug_helper.c: hw_watchpoint_update, bp_wp_matches, check_watchpoints;
softmmu/physmem.c: cpu_check_watchpoint):

* A watchpoint is armed when DBGWCR.E is set, LSC is not 0, MASK is not 1 or 2 (reserved) and,
  without MASK, BAS selects a byte: from DBGWVR (bits [1:0] read as 0) plus the first set bit of
  BAS, for the run of ones that follows (only BAS[3:0] when DBGWVR is 4- but not 8-aligned);
  with MASK the 2^MASK bytes around DBGWVR, BAS ignored.
* An access of ``size`` bytes matches when it overlaps the watched bytes and its kind is one LSC
  selects; then, in the order the watchpoints were last written, the first one whose PAC admits
  the Exception level (bit 1 EL1, bit 2 EL0), whose SSC admits Non-secure state (not 2) and,
  if linked (WT), whose linked context-ID breakpoint matches CONTEXTIDR_EL1, is taken, provided
  MDSCR_EL1.MDE is set and debug exceptions are enabled: from EL0 always, from EL1 with
  MDSCR_EL1.KDE set and PSTATE.D clear. QEMU 7.2 tests the OS lock in OSLSR_EL1 bit 0 (OSLM[0],
  never set on this CPU), not OSLK (bit 1), so a set OS lock does not disable them: as there.
* FAR is the larger of the access's address and the first watched byte; ESR has EC 0x35 (from
  EL1) or 0x34 (from EL0), IL, WnR for a store and DFSC 0x22. The access does not happen.

The CPU backend is told which ranges to watch (its memory hooks exist only while a watchpoint is
armed) and asks ``Watchpoints.match`` about each access in them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sdeilab.cpu.backend import SysregKey
from sdeilab.machine.state import FieldState

WATCHPOINTS = 4  # ID_AA64DFR0_EL1.WRPs + 1 on QEMU's cortex-a57
BREAKPOINTS = 6  # ID_AA64DFR0_EL1.BRPs + 1
CONTEXT_BREAKPOINTS = 2  # ID_AA64DFR0_EL1.CTX_CMPs + 1: the last two breakpoints
MDSCR_SS = 1 << 0
MDSCR_KDE = 1 << 13
MDSCR_MDE = 1 << 15
PSTATE_D = 1 << 9
EC_WATCHPOINT_LOWER = 0x34
EC_WATCHPOINT_SAME = 0x35
DFSC_DEBUG = 0x22
MASK64 = (1 << 64) - 1


def dbgwvr(n: int) -> SysregKey:
    return (2, 0, 0, n, 6)


def dbgwcr(n: int) -> SysregKey:
    return (2, 0, 0, n, 7)


def dbgbvr(n: int) -> SysregKey:
    return (2, 0, 0, n, 4)


def dbgbcr(n: int) -> SysregKey:
    return (2, 0, 0, n, 5)


MDSCR_EL1: SysregKey = (2, 0, 0, 2, 2)
CONTEXTIDR_EL1: SysregKey = (3, 0, 13, 0, 1)


@dataclass(frozen=True, slots=True)
class Watch:
    """An armed watchpoint: bytes [start, start + length) of virtual addresses."""

    n: int
    start: int
    length: int
    loads: bool
    stores: bool
    wcr: int


def decode(n: int, wvr: int, wcr: int) -> Watch | None:
    """The bytes watchpoint ``n`` watches, or None if it is disabled (QEMU's hw_watchpoint_update)."""
    if not wcr & 1:
        return None
    lsc = (wcr >> 3) & 3
    if lsc == 0:
        return None
    mask = (wcr >> 24) & 0x1F
    if mask in (1, 2):
        return None
    if mask:
        length = 1 << mask
        start = wvr & ~(length - 1) & MASK64
    else:
        bas = (wcr >> 5) & 0xFF
        if wvr & 4:
            bas &= 0xF  # a 4-aligned DBGWVR: BAS[7:4] are ignored
        if bas == 0:
            return None
        first = (bas & -bas).bit_length() - 1
        run = bas >> first
        length = ((run ^ (run + 1)) >> 1).bit_length()  # the ones from the first set bit
        start = (wvr + first) & MASK64
    return Watch(n, start, length, bool(lsc & 1), bool(lsc & 2), wcr)


@dataclass(frozen=True, slots=True)
class DebuggerWatch:
    """A watchpoint of the host's debugger (``Machine.set_watchpoints``), not the guest's: bytes
    [start, start + length) of virtual addresses as ``cpu`` (None: every CPU) sees them. A hit
    stops the run before the access (``StopReason.WATCHPOINT``) and raises nothing in the guest."""

    start: int
    length: int
    loads: bool
    stores: bool
    cpu: int | None = None


@dataclass(frozen=True, slots=True)
class WatchStop:
    """Where the debugger's watchpoint stopped a run: the CPU, the access's virtual address and
    size, whether it was a store, and the PC of the instruction (not executed)."""

    cpu: int
    address: int
    size: int
    write: bool
    pc: int


@dataclass(frozen=True, slots=True)
class Hit:
    """A watchpoint exception to take: its syndrome and fault address."""

    esr: int
    far: int
    write: bool


class Watchpoints(FieldState):
    """One CPU's watchpoint registers and the watchpoints they arm."""

    STATE = ("wvr", "wcr", "armed")  # sdeilab.machine.state

    def __init__(self) -> None:
        self.wvr = [0] * WATCHPOINTS
        self.wcr = [0] * WATCHPOINTS
        self.armed: list[Watch] = []  # in the order QEMU keeps them: the one written last comes last

    def reset(self) -> None:
        self.wvr = [0] * WATCHPOINTS
        self.wcr = [0] * WATCHPOINTS
        self.armed = []

    def write(self, n: int, control: bool, value: int) -> None:
        if control:
            self.wcr[n] = value & MASK64
        else:
            self.wvr[n] = value & MASK64 & ~3  # bits [1:0] are RES0
        self.armed = [w for w in self.armed if w.n != n]
        watch = decode(n, self.wvr[n], self.wcr[n])
        if watch is not None:
            self.armed.append(watch)

    def match(self, address: int, size: int, write: bool, pstate: int,
              read_sysreg: Callable[[SysregKey], int]) -> Hit | None:
        """The exception an access of ``size`` bytes at virtual ``address`` takes, or None."""
        end = address + size - 1
        el = (pstate >> 2) & 3
        checked = False
        for watch in self.armed:
            if address > watch.start + watch.length - 1 or watch.start > end:
                continue
            if not (watch.stores if write else watch.loads):
                continue
            if not checked:  # MDSCR_EL1.MDE and the debug enables, once (check_watchpoints)
                mdscr = read_sysreg(MDSCR_EL1)
                if not mdscr & MDSCR_MDE:
                    return None
                if el == 1 and (not mdscr & MDSCR_KDE or pstate & PSTATE_D):
                    return None
                checked = True
            if not self._admits(watch.wcr, el, read_sysreg):
                continue
            ec = EC_WATCHPOINT_LOWER if el == 0 else EC_WATCHPOINT_SAME
            esr = ec << 26 | 1 << 25 | (1 << 6 if write else 0) | DFSC_DEBUG
            return Hit(esr, max(address, watch.start), write)
        return None

    @staticmethod
    def _admits(wcr: int, el: int, read_sysreg: Callable[[SysregKey], int]) -> bool:
        """PAC, SSC and the linked breakpoint (QEMU's bp_wp_matches) for Non-secure ``el``."""
        pac, ssc = (wcr >> 1) & 3, (wcr >> 14) & 3
        if ssc == 2:  # Secure state only
            return False
        if not pac & (2 if el == 0 else 1):
            return False
        if wcr >> 20 & 1:  # WT: linked to a context-matching breakpoint
            lbn = (wcr >> 16) & 0xF
            if not BREAKPOINTS - CONTEXT_BREAKPOINTS <= lbn < BREAKPOINTS:
                return False
            bcr = read_sysreg(dbgbcr(lbn))
            if not bcr & 1 or (bcr >> 20) & 0xF != 3:  # enabled, a linked context ID match
                return False
            return read_sysreg(dbgbvr(lbn)) & 0xFFFF_FFFF == read_sysreg(CONTEXTIDR_EL1) & 0xFFFF_FFFF
        return True
