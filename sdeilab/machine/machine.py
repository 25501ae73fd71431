"""The virtual machine: RAM, devices, vCPUs, and the deterministic scheduler that runs them.

Scheduling (DESIGN.md section 1, "Determinism"). Virtual time advances in rounds of
``quantum`` instructions; in each round every CPU, in index order, runs from the round's start
to its end on its own clock (a CPU that idles or starts late begins later in the round). The
clock of the running CPU is exact to the instruction, read from the engine's retired-instruction
counter, so a fact is stamped with the vtime at which it happened. An event one CPU causes for
another (an SGI, an SPI, CPU_ON) is stamped with the sender's time, and the target does not act
on it before that time: the target's ``not_before`` clock. No wall clock is ever read, so the
same guest and options give the same trace byte for byte.

A CPU's slice ends early at the next deadline of its own timers, so a timer interrupt is raised
at the exact counter value it was programmed for.

Time scale. Every instruction takes ``2 ** icount_shift`` ns of virtual time, as under QEMU's
``-icount shift=N``; the default (0) is one instruction per ns. The system counter runs at 62.5 MHz
(16 ns a count) at every scale, so a guest that waits on it for a given time retires
``2 ** icount_shift`` times fewer instructions: a delay loop ends sooner and a run lasts longer in
virtual time. Budgets (``max_instructions``, ``quantum``) stay counted in instructions.

Debugger stops (an instruction budget, a breakpoint, a pause, a watched fact) must not change
what the guest does, or stepping back by replay (sdeilab.lab.session) would land somewhere
else. Where a slice starts matters (interrupts are delivered, SDEI events dispatched and the
masked-interrupt poll counted from there), so a debugger stop never starts a new one: a slice it
cuts short is kept (``_pending``) and its rest runs on resume without the start-of-slice work,
and a stop between slices resumes at the point it left. A run stopped and resumed anywhere
leaves the same trace as one run (tests/test_session.py).
"""

from __future__ import annotations

import copy
import hashlib
import mmap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

from sdeilab.cpu.backend import CpuBackend, SliceResult, Stop, SysregKey, SystemCounter, Trap
from sdeilab.cpu.unicorn_backend import RECORD_MISSING, UnicornVcpu
from sdeilab.machine import exceptions as exc
from sdeilab.machine.board import VIRT_DEVICES, DeviceSpec
from sdeilab.machine.debug import WATCHPOINTS, DebuggerWatch, Hit, Watchpoints, WatchStop, dbgwcr, dbgwvr
from sdeilab.machine.device import Device, Wiring
from sdeilab.machine.disasm import disassemble_one
from sdeilab.machine.gic import ICC_ENCODINGS, ICC_READ_ONLY, ICC_WRITE_ONLY, GicV3, IccReg
from sdeilab.machine.loader import ELF_DTB_ROOM, GuestImage, load_elf
from sdeilab.machine.memmap import (
    GICR_FRAME_SIZE,
    MAX_CPUS,
    MAX_RAM_SIZE,
    RAM_ALIGN,
    VIRT_MEMMAP,
    MemMapEntry,
    Region,
    format_ram_size,
    mpidr_of,
)
from sdeilab.machine.outcome import FaultReport, RunOutcome, StopReason
from sdeilab.machine.pl031 import DEFAULT_EPOCH, Pl031
from sdeilab.machine.pmu import PMU_ENCODINGS, PMU_READ_ONLY, PMU_WRITE_ONLY, Clocks, Pmu, PmuReg, el0_may_access
from sdeilab.machine.sp804 import Sp804
from sdeilab.machine.state import MachineSnapshot, Ram, Stateful
from sdeilab.machine.timer import (
    NS_PER_COUNT,
    TIMER_COUNTERS,
    TIMER_ENCODINGS,
    TIMER_READ_ONLY,
    GenericTimer,
    TimerReg,
)
from sdeilab.machine.uart import Pl011
from sdeilab.machine.vcpu import Vcpu, VcpuState
from sdeilab.trace import ExceptionTaken, Fact, GuestFault, MachineStopped, PowerTransition, TraceLog
from sdeilab.trace.vocabulary import PowerCause

MAX_ICOUNT_SHIFT = 10  # QEMU's -icount shift=N accepts 0..10 as well (1 ns .. about 1 us an instruction)
IDLE_LIMIT_NS = 10 * 10**9  # virtual time every CPU may sleep while only devices tick
# While an interrupt waits behind PSTATE.I/F the CPU runs in short slices, because Unicorn does not
# hook the DAIF writes that would let it in (MSR DAIFClr is not a system-register access): one
# instruction at a time for the first MASKED_STEPS instructions of the wait, so that a short masked
# section (the work after a WFI, the idiom `wfi; msr daifclr, #2; isb; msr daifset, #2`, a spin
# lock's critical section) ends exactly where QEMU takes the interrupt, then in slices of an
# eighth of the wait so far, up to MASKED_IRQ_POLL: a long masked section costs few slices, and
# the interrupt comes at most an eighth of that section late.
MASKED_STEPS = 256
MASKED_IRQ_POLL = 1000
DEFAULT_QUANTUM = 100_000
# Storage beyond x0..x30 that a loop around WFI could count in, compared with RAM before a CPU
# whose WFI a masked interrupt keeps ending is declared stuck (``_check_stuck_wfi``).
_SPIN_STATE_REGS = ("SP_EL0", "ELR_EL1", "SPSR_EL1", "ESR_EL1", "FAR_EL1", "TPIDR_EL1", "VBAR_EL1", "SCTLR_EL1")

# Cache maintenance that makes code written by one CPU visible to the others (ARM ARM B2.4.4):
# each Unicorn instance keeps its own translations, so these drop them everywhere.
_IC_IALLUIS: SysregKey = (1, 0, 7, 1, 0)
_IC_IALLU: SysregKey = (1, 0, 7, 5, 0)
_IC_IVAU: SysregKey = (1, 3, 7, 5, 1)
_WATCHED_INSTRUCTIONS = frozenset({_IC_IALLUIS, _IC_IALLU, _IC_IVAU})  # the SYS instructions the engine reports
CACHE_LINE = 64  # Cortex-A57: CTR_EL0.IminLine = 4 words (what IC IVAU works on)

# DCZID_EL0 as the lab reports it: 64-byte blocks (BS = 4) and DZP = 1, "DC ZVA prohibited", which
# a hypervisor may say (with HCR_EL2.TDZ) and on which Linux and glibc zero memory with stores.
# Unicorn 2.1.4 executes DC ZVA in about 5 µs (its helper falls back to byte stores): Linux issued
# 874,000 of them in one boot, a sixth of the run. A guest that executes DC ZVA anyway still gets
# its 64 zero bytes (docs/machine.md).
DCZID_EL0: SysregKey = (3, 3, 0, 0, 7)
DCZID_VALUE = 0x10 | 4

_DC_ZVA = 0xD50B_7420  # DC ZVA, Xt (ARM ARM C6.2, "DC"): SYS #3, C7, C4, #1
_DC_ZVA_BLOCK = 4 << (DCZID_VALUE & 0xF)  # bytes, DCZID_EL0.BS words

_FINAL = frozenset({StopReason.SYSTEM_OFF, StopReason.SYSTEM_RESET, StopReason.FAULT})

# A watched range is translated page by page with the MMU on; beyond this many pages (a MASK of
# 2^22 bytes or more) only its start is watched (docs/machine.md).
_WATCH_PAGES = 1024
_PAGE = 4096
# Software step's syndromes (EC 0x32 from a lower EL, 0x33 from EL1), which the CPU model raises
# as an UNDEFINED instruction with its own syndrome.
_EC_SOFTWARE_STEP = (0x32, 0x33)

# Synchronous exceptions the guest's vectors take, by the reason the trace gives them.
_TRAP_REASONS = {Trap.UNDEFINED: "undefined instruction", Trap.SVC: "svc", Trap.BRK: "brk",
                 Trap.DATA_ABORT: "data abort", Trap.PREFETCH_ABORT: "instruction abort"}

PowerListener = Callable[[int, VcpuState, VcpuState, str], None]

# The machine's own state beside its parts (``Machine.snapshot``): the scheduler's clocks and
# pending work, the debugger's stops, the watchpoints' translated ranges, what the UART sent.
# Every other attribute is wiring or configuration; tests/test_snapshot.py checks that each
# attribute of a Machine is one or the other, so a new one cannot be forgotten here.
SCHEDULER_STATE = ("uart_output", "_clock", "_local", "_not_before", "_masked_for", "_spin", "_round_start",
                   "retired", "_outcome", "_budget_end", "_break", "_pending", "_round_open", "_debugger",
                   "last_cpu", "cpu_retired", "_stale_code", "_next_device_deadline", "_last_activity",
                   "_watch_map", "_watch_ranges", "_watch_mmu", "_watch_hit", "_cpu_goal", "_watch_resume")
NOT_STATE = frozenset({
    "trace", "quantum", "ram_region", "ram", "firmware", "power_listeners", "uart_sinks", "slice_hooks",
    "wake_checks", "device_tree", "gic", "devices", "uart", "timers", "pmus", "sp804", "rtc", "_clocked",
    "_sysreg_reads", "_sysreg_writes", "watchpoints", "_mmio", "vcpus", "_current", "_ram", "_parts", "_power_on",
    "_power_on_trace",
    "icount_shift", "ns_per_instruction",  # the time scale: configuration
    "code_generation",  # only grows: it keys caches of decoded guest code, which a restore makes stale
    "image",  # state, kept by reference (a GuestImage is never changed)
    # The debugger's watchpoints are not state, as breakpoints are not: they stay across a restore.
    # Their translated ranges are redone from the state restored; the last stop is a report.
    "debugger_watches", "_debugger_map", "_debugger_hit", "watch_stop",
})


@dataclass(slots=True)
class _Spin:
    """A CPU whose WFI an interrupt masked by PSTATE keeps ending (``Machine._check_stuck_wfi``)."""

    fingerprint: tuple[object, ...]  # PC, PSTATE, SP, x0..x30, trace and UART lengths, pending INTID
    seen: int = 0  # identical wakes since the last full comparison
    needed: int = 1  # identical wakes before the next one
    digest: bytes | None = None  # RAM and the other registers at the last full comparison


MmioRow = tuple[int, int, Callable[[int, int, int], int], Callable[[int, int, int, int], None]]
"""Base, size, read(cpu, offset, size) and write(cpu, offset, size, value) of a device's MMIO frame."""


class Firmware(Protocol):
    """What sits on the HVC and SMC conduits. It lives in a higher layer (sdeilab.firmware)."""

    def hypercall(self, machine: Machine, vcpu: Vcpu, conduit: str, now: int) -> bool:
        """Handle a call from ``vcpu`` on ``conduit`` ("hvc" or "smc") made at virtual time ``now``;
        False: the instruction is UNDEFINED."""
        ...


class RamSizeError(ValueError):
    """The host cannot back the RAM asked for (``Machine(ram_size=...)``); the message says why in one line."""


class Machine:
    """A QEMU-virt-like machine with ``cpus`` vCPUs; CPU 0 starts at the guest's entry point."""

    def __init__(self, cpus: int = 1, *, ram_size: int = VIRT_MEMMAP[Region.RAM].size,
                 quantum: int = DEFAULT_QUANTUM, trace: TraceLog | None = None,
                 rtc_epoch: int = DEFAULT_EPOCH, icount_shift: int = 0) -> None:
        if not 1 <= cpus <= MAX_CPUS:
            raise ValueError(f"cpus must be between 1 and {MAX_CPUS}")
        self.trace = trace if trace is not None else TraceLog()
        if quantum < 1:
            raise ValueError(f"quantum must be at least 1 instruction, not {quantum}")  # 0 never ends a round
        self.quantum = quantum
        if not 0 <= icount_shift <= MAX_ICOUNT_SHIFT:
            raise ValueError(f"icount shift must be between 0 and {MAX_ICOUNT_SHIFT}, not {icount_shift}")
        self.icount_shift = icount_shift
        self.ns_per_instruction = ns = 1 << icount_shift
        if ram_size <= 0 or ram_size % RAM_ALIGN or ram_size > MAX_RAM_SIZE:
            raise ValueError(f"RAM size {ram_size:#x}: must be a positive multiple of {RAM_ALIGN:#x} bytes, "
                             f"at most {format_ram_size(MAX_RAM_SIZE)} (memmap.parse_ram_size reads QEMU's -m syntax)")
        self.ram_region = MemMapEntry(VIRT_MEMMAP[Region.RAM].base, ram_size)
        # An anonymous mapping: the host backs a page only once the guest touches it, so a large
        # RAM costs address space, not memory. One the host cannot even map is refused here.
        # Private, where the host has that: a page nobody wrote reads as the host's shared zero
        # page (a shared mapping backs every page read, which comparing RAM for a snapshot does),
        # and a reset can hand the pages back (sdeilab.machine.state.Ram.clear).
        private = (mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,) if hasattr(mmap, "MAP_PRIVATE") else ()  # flags
        try:
            self.ram = mmap.mmap(-1, ram_size, *private)
        except (OSError, OverflowError) as error:
            raise RamSizeError(f"{format_ram_size(ram_size)} of RAM: the host cannot map that much "
                               f"({getattr(error, 'strerror', None) or error})") from None
        self.firmware: Firmware | None = None
        self.power_listeners: list[PowerListener] = []
        self.uart_sinks: list[Callable[[int], None]] = []
        self.slice_hooks: list[Callable[[Vcpu], None]] = []  # run before each slice (firmware dispatch)
        self.wake_checks: list[Callable[[int], bool]] = []  # firmware events that end a WFI, like an interrupt
        self.image: GuestImage | None = None
        # The device tree an ELF guest finds at the start of RAM when it leaves the room
        # (GuestImage.dtb_below); the firmware layer sets it (sdeilab.lab.platform).
        self.device_tree: Callable[[], bytes] | None = None

        self.gic = GicV3(cpus, self.record, cpu_online=lambda cpu: self.vcpus[cpu].state.powered,
                         on_pending=self._interrupt_pending)
        self.timers = [GenericTimer(cpu, self._timer_line(cpu)) for cpu in range(cpus)]
        self.pmus = [Pmu(cpu, self._ppi_line(cpu, "pmu")) for cpu in range(cpus)]
        # The board's devices, each built from its row of the table with its own interrupt line.
        self.devices: dict[str, Device] = {
            spec.name: spec.model.build(Wiring(self._spi_line(spec), self._uart_tx, rtc_epoch))
            for spec in VIRT_DEVICES}
        self.uart = cast(Pl011, self.devices["uart0"])  # the console's, the debugger's and the tests' handles
        self.sp804 = cast(Sp804, self.devices["sp804"])
        self.rtc = cast(Pl031, self.devices["rtc"])
        # The devices that keep time: each has a deadline, the machine's first one ends slices and idle time.
        self._clocked: tuple[Device, ...] = tuple(device for device in self.devices.values() if device.KEEPS_TIME)
        self._next_device_deadline: int | None = None
        self._last_activity = 0  # vtime at which some CPU last retired an instruction
        # Emulated system registers. A read of a write-only one (or the reverse) is left to the
        # CPU model, which makes it UNDEFINED as the architecture says (ARM ARM C5.3).
        # A reader that answers None, or a writer False, declines: the CPU model executes the access.
        self._sysreg_reads: dict[SysregKey, Callable[[int], int | None]] = {}
        self._sysreg_writes: dict[SysregKey, Callable[[int, int], bool | None]] = {}
        for key, reg in ICC_ENCODINGS.items():
            if reg not in ICC_WRITE_ONLY:
                self._sysreg_reads[key] = self._icc_reader(reg)
            if reg not in ICC_READ_ONLY:
                self._sysreg_writes[key] = self._icc_writer(reg)
        self._sysreg_reads[DCZID_EL0] = lambda cpu: DCZID_VALUE
        for key, treg in TIMER_ENCODINGS.items():
            self._sysreg_reads[key] = self._timer_reader(treg)
            if treg not in TIMER_READ_ONLY:
                self._sysreg_writes[key] = self._timer_writer(treg)
        for key, (preg, n) in PMU_ENCODINGS.items():
            # The CPU model's PMU reads the host's clock: every PMU register is the machine's (pmu.py).
            if preg not in PMU_WRITE_ONLY:
                self._sysreg_reads[key] = self._pmu_reader(preg, n)
            if preg not in PMU_READ_ONLY:
                self._sysreg_writes[key] = self._pmu_writer(preg, n)
        # Hardware watchpoints: the registers are the machine's (debug.py); the CPU model's
        # breakpoints and software step are its own.
        self.watchpoints = [Watchpoints() for _ in range(cpus)]
        self._watch_map: list[list[tuple[int, int, int]]] = [[] for _ in range(cpus)]  # (PA, PA end, VA)
        self._watch_ranges: list[list[tuple[int, int, bool, bool]]] = [[] for _ in range(cpus)]
        self._watch_mmu = [False] * cpus  # the ranges were translated through the MMU: redo each slice
        self._watch_hit: list[Hit | None] = [None] * cpus
        # The debugger's watchpoints (``set_watchpoints``) share the engine's watched ranges with
        # the guest's: (PA, PA end, VA, watch) per CPU, and the access one stopped, by CPU.
        self.debugger_watches: tuple[DebuggerWatch, ...] = ()
        self._debugger_map: list[list[tuple[int, int, int, DebuggerWatch]]] = [[] for _ in range(cpus)]
        self._debugger_hit: list[tuple[int, int, bool] | None] = [None] * cpus
        self.watch_stop: WatchStop | None = None  # where the last WATCHPOINT stop was
        # (CPU, its retired count, PC) of the instruction a debugger watchpoint stopped: it executes
        # when the run resumes, as an instruction at a breakpoint does (``watch_access``).
        self._watch_resume: tuple[int, int, int] | None = None
        for n in range(WATCHPOINTS):
            for key, control in ((dbgwvr(n), False), (dbgwcr(n), True)):
                self._sysreg_reads[key] = self._watch_reader(n, control)
                self._sysreg_writes[key] = self._watch_writer(n, control)
        gicr = VIRT_MEMMAP[Region.GIC_REDIST]
        mmio = [
            (VIRT_MEMMAP[Region.GIC_DIST].base, VIRT_MEMMAP[Region.GIC_DIST].size,
             self.gic.dist_read, self._gic_writer(self.gic.dist_write)),
            (gicr.base, min(gicr.size, cpus * GICR_FRAME_SIZE), self.gic.redist_read,
             self._gic_writer(self.gic.redist_write)),
            *(self._device_mmio(spec) for spec in VIRT_DEVICES),
        ]
        self._mmio = mmio
        unmodelled = frozenset(ICC_ENCODINGS)
        host_reads, host_writes = frozenset(self._sysreg_reads), frozenset(self._sysreg_writes)
        counter = SystemCounter(TIMER_COUNTERS, ns, NS_PER_COUNT)
        self.vcpus = [Vcpu(i, mpidr_of(i), UnicornVcpu(i, self, ram_base=self.ram_region.base, ram=self.ram,
                                                        mmio=mmio, unmodelled_sysregs=unmodelled,
                                                        host_reads=host_reads, host_writes=host_writes,
                                                        host_instructions=_WATCHED_INSTRUCTIONS,
                                                        system_counter=counter),
                           self._on_transition)
                      for i in range(cpus)]
        for vcpu in self.vcpus:
            vcpu.backend.reset(vcpu.mpidr)
        self.uart_output = bytearray()
        self._current: Vcpu | None = None
        self._clock = 0  # vtime of the running CPU at the start of its current slice, or the loop's time
        self._local = [0] * cpus  # each CPU's own clock
        self._not_before = [0] * cpus
        self._masked_for = [0] * cpus  # instructions run while an interrupt waited behind PSTATE (MASKED_STEPS)
        self._spin: list[_Spin | None] = [None] * cpus  # CPUs whose WFI a masked interrupt keeps ending
        self._round_start = 0
        self.retired = 0
        self.code_generation = 0  # bumped whenever guest code may have changed (caches of decoded code)
        self._outcome: RunOutcome | None = None
        self._budget_end: int | None = None
        self._cpu_goal: tuple[int, int] | None = None  # (CPU, retired count) at which ``run`` stops
        # The debugger's stops (see the module docstring).
        self._break: tuple[StopReason, str] | None = None  # a stop asked for, taken at the next safe point
        self._pending: tuple[int, int] | None = None  # (cpu, instructions left) of a slice cut short
        self._round_open = False  # a run stopped in the middle of a round
        self._debugger = False  # budget stops leave no MachineStopped fact
        self.last_cpu: int | None = None  # the CPU that ran the last slice
        self.cpu_retired = [0] * cpus  # instructions each CPU retired
        # Physical ranges whose code another CPU changed (IC IVAU), dropped before each CPU's next slice.
        self._stale_code: list[list[list[int]]] = [[] for _ in range(cpus)]
        # Reset and snapshot (sdeilab.machine.state): the parts by name, and each one's power-on state.
        self._ram = Ram(self.ram, private=bool(private))
        self._parts: dict[str, Stateful] = {"gic": self.gic, **self.devices}
        for cpu in range(cpus):
            self._parts.update({f"timer{cpu}": self.timers[cpu], f"pmu{cpu}": self.pmus[cpu],
                                f"watchpoints{cpu}": self.watchpoints[cpu]})
        self._power_on: dict[str, object] = {name: part.snapshot() for name, part in self._parts.items()}
        self._power_on["scheduler"] = self._scheduler_state()
        self._power_on_trace = self.trace.mark()

    # --- reset and snapshot ----------------------------------------------------------------
    def attach(self, name: str, part: Stateful) -> None:
        """Make ``part`` (a firmware service) part of the machine's state: snapshots hold it, restores
        and resets put it back. Its state now is its power-on state: attach it as it is built."""
        if name in self._parts or name == "scheduler":
            raise ValueError(f"a part named {name!r} is attached already")
        self._parts[name] = part
        self._power_on[name] = part.snapshot()

    def _scheduler_state(self) -> tuple[object, ...]:
        return (copy.deepcopy(tuple(getattr(self, name) for name in SCHEDULER_STATE)), self.image)

    def _apply_scheduler_state(self, state: object) -> None:
        assert isinstance(state, tuple)
        values, image = state
        for name, value in zip(SCHEDULER_STATE, copy.deepcopy(values), strict=True):
            setattr(self, name, value)
        self.image = image

    def _between_slices(self, what: str) -> None:
        if self._current is not None:
            raise RuntimeError(f"{what} while a CPU runs: call it between runs, not from a callback")

    def snapshot(self) -> MachineSnapshot:
        """The whole machine now, as a value that ``restore`` puts back any number of times.

        It holds RAM (in chunks shared with the previous snapshot where unchanged), each vCPU's
        context through the CPU backend (registers, system registers, the engine's own state) and
        its power state, every attached part (GIC, generic timers, PMUs, watchpoints, PL011,
        SP804, PL031, and the firmware services that attached themselves), the scheduler's
        clocks and pending work, and the trace's length. Breakpoints are not state: they stay.
        """
        self._between_slices("snapshot")
        return MachineSnapshot(
            retired=self.retired, vtime=self._clock, trace=self.trace.mark(), ram=self._ram.snapshot(),
            cpus=tuple(vcpu.backend.snapshot() for vcpu in self.vcpus),
            vcpus=tuple((vcpu.state, vcpu.entry) for vcpu in self.vcpus),
            parts=tuple((name, part.snapshot()) for name, part in self._parts.items()),
            scheduler=self._scheduler_state())

    def restore(self, snapshot: MachineSnapshot) -> None:
        """Put the machine back as it was when ``snapshot`` was taken: a run from here does what
        the run from there did, fact for fact (tests/test_snapshot.py).

        The trace goes back to its length then: facts recorded since are forgotten. So a snapshot
        can be restored only while the trace still holds its facts (ValueError otherwise, with
        nothing changed): after any number of runs and restores to earlier snapshots, not after a
        restore to an earlier one than it, a ``reset``, or a run that went another way. The UART
        output goes back too; ``uart_sinks`` are not told (they saw those bytes already).
        """
        self._between_slices("restore")
        if len(snapshot.cpus) != len(self.vcpus) or snapshot.ram.size != len(self.ram) \
                or tuple(name for name, _ in snapshot.parts) != tuple(self._parts):
            raise ValueError("a snapshot of a machine built otherwise (CPUs, RAM or parts differ)")
        if not self.trace.holds(snapshot.trace):
            raise ValueError(f"the trace no longer holds the {snapshot.trace.length} facts of that snapshot "
                             "(it was rewound past them, or the run went another way since)")
        self._ram.restore(snapshot.ram)
        for vcpu, cpu, (state, entry) in zip(self.vcpus, snapshot.cpus, snapshot.vcpus, strict=True):
            vcpu.backend.restore(cpu)  # drops its translated code and TLB too
            vcpu.state, vcpu.entry = state, entry
        for name, part in snapshot.parts:
            self._parts[name].restore(part)
        self._apply_scheduler_state(snapshot.scheduler)
        self._after_state_change()
        self.trace.rewind(snapshot.trace)

    def reset(self) -> None:
        """Power-on reset: the machine as it was built, firmware included (tests/test_snapshot.py
        compares it with a new one). Every CPU is off with its reset context, RAM is zero, no
        guest is loaded (``load`` one) and the trace is back to its length when the machine was
        built (cleared if it no longer holds those facts). Breakpoints stay."""
        self._between_slices("reset")
        self._ram.clear()
        for vcpu in self.vcpus:
            vcpu.backend.reset(vcpu.mpidr)
            vcpu.state, vcpu.entry = VcpuState.OFF, None
        for name, part in self._parts.items():
            part.restore(self._power_on[name])
        self._apply_scheduler_state(self._power_on["scheduler"])
        self._after_state_change()
        if self.trace.holds(self._power_on_trace):
            self.trace.rewind(self._power_on_trace)
        else:
            self.trace.clear()

    def _after_state_change(self) -> None:
        """Caches of the state just put back: translated code, and each engine's watched ranges
        (the guest's as they were, with the debugger's, which are not state, translated again)."""
        self._invalidate_code()
        for vcpu in self.vcpus:
            if self.debugger_watches or any(self._debugger_map):
                self._arm_watchpoints(vcpu, force=True)
            else:
                vcpu.backend.set_watch_ranges(self._watch_ranges[vcpu.index])

    # --- time ---------------------------------------------------------------------------
    def now(self) -> int:
        """The current vtime: the running CPU's clock, exact to the instruction."""
        current = self._current
        if current is None:
            return self._clock
        return self._clock + current.backend.executed() * self.ns_per_instruction

    def counter(self) -> int:
        return self.now() // NS_PER_COUNT

    def record(self, kind: type[Fact], cpu: int, *payload: object) -> None:
        """Append a fact stamped now."""
        self.trace.add(kind, cpu, self.now(), *payload)

    def _interrupt_pending(self, cpu: int) -> None:
        """The GIC made an interrupt pending for ``cpu``: it runs no earlier than now (its
        not-before clock), and if it is the CPU running, its slice stops so the loop delivers it."""
        now = self.now()
        if now > self._not_before[cpu]:
            self._not_before[cpu] = now
        current = self._current
        if current is not None and current.index == cpu:
            current.backend.request_stop()

    # --- loading -----------------------------------------------------------------------
    def load(self, path: Path | str) -> GuestImage:
        image = load_elf(path, self.ram_region)
        self.load_image(image)
        return image

    def load_image(self, image: GuestImage) -> None:
        base = self.ram_region.base
        for segment in image.segments:
            start = segment.address - base
            self.ram[start:start + len(segment.data)] = segment.data
            self.ram[start + len(segment.data):start + segment.memsize] = bytes(segment.memsize - len(segment.data))
        if image.dtb_below and self.device_tree is not None and image.segments \
                and image.low - base >= ELF_DTB_ROOM:
            blob = self.device_tree()
            self.ram[0:len(blob)] = blob
        self._invalidate_code()
        self.image = image
        self._outcome = None
        self._pending = None
        boot = self.vcpus[0]
        boot.entry = (image.entry, image.x0)
        self._start(boot, PowerCause.BOOT)

    # --- memory ------------------------------------------------------------------------
    def read_ram(self, address: int, size: int) -> bytes | None:
        if not self.ram_region.contains(address, size):
            return None
        start = address - self.ram_region.base
        return self.ram[start:start + size]

    def write_ram(self, address: int, data: bytes) -> None:
        if not self.ram_region.contains(address, len(data)):
            raise ValueError(f"0x{address:x}+{len(data)} is not RAM")
        start = address - self.ram_region.base
        self.ram[start:start + len(data)] = data
        self._invalidate_code(address, address + len(data))

    def _invalidate_code(self, begin: int | None = None, end: int | None = None, *, but: int = -1) -> None:
        self.code_generation += 1
        for vcpu in self.vcpus:
            if vcpu.index != but:
                vcpu.backend.invalidate_code(begin, end)

    def read_u32(self, address: int) -> int | None:
        data = self.read_ram(address, 4)
        return None if data is None else int.from_bytes(data, "little")

    def is_valid_entry(self, address: int, vcpu: Vcpu | None = None) -> bool:
        """An address a CPU can start at: in RAM and 4-byte aligned (A64 instructions, ARM ARM B2.2).

        Without ``vcpu`` the address is physical (PSCI's entry points: a CPU starts with its MMU
        off). With it, the address is virtual as ``vcpu`` sees it now and must translate for an
        instruction fetch, as TF-A validates an SDEI handler through the caller's translation
        regime (plat_sdei_validate_entry_point).
        """
        if address % 4:
            return False
        if vcpu is not None:
            physical = vcpu.backend.translate(address, "fetch")
            if physical is None:
                return False
            address = physical
        return self.ram_region.contains(address, 4)

    def read_code(self, vcpu: Vcpu, address: int, size: int = 4) -> bytes | None:
        """``size`` bytes of code at ``address`` as ``vcpu`` fetches it (through its MMU when on), or
        None where that is not RAM or the fetch would fault."""
        physical = vcpu.backend.translate(address, "fetch")
        return None if physical is None else self.read_ram(physical, size)

    def read_code_u32(self, vcpu: Vcpu, address: int) -> int | None:
        data = self.read_code(vcpu, address)
        return None if data is None else int.from_bytes(data, "little")

    # --- power mechanism (PSCI is the policy, in sdeilab.firmware) ------------------------------
    def power_on(self, target: Vcpu, entry: int, context_id: int) -> None:
        """OFF -> ON_PENDING; the target starts at ``entry`` with x0 = ``context_id`` no earlier than now."""
        target.entry = (entry, context_id)
        self._not_before[target.index] = max(self._not_before[target.index], self.now())
        target.transition(VcpuState.ON_PENDING, PowerCause.CPU_ON)

    def power_off(self, vcpu: Vcpu, cause: PowerCause | str = PowerCause.CPU_OFF) -> None:
        vcpu.transition(VcpuState.OFF, cause)
        self._stop_if_current(vcpu)

    def suspend(self, vcpu: Vcpu, powerdown: bool, entry: int = 0, context_id: int = 0) -> None:
        """Standby (resume after the call) or power-down (resume at ``entry``) until a wake-up event."""
        if powerdown:
            vcpu.entry = (entry, context_id)
            vcpu.transition(VcpuState.POWERDOWN, PowerCause.CPU_SUSPEND)
        else:
            vcpu.transition(VcpuState.STANDBY, PowerCause.CPU_SUSPEND)
        self._stop_if_current(vcpu)

    def halt(self, reason: StopReason, detail: str, fault: FaultReport | None = None) -> None:
        """End the run after the current instruction."""
        if self._outcome is None:
            self._outcome = RunOutcome(reason, detail, self.retired + self._executing(), fault)
            cpu = self._current.index if self._current is not None else -1
            self.record(MachineStopped, cpu, reason.value, detail)
        if self._current is not None:
            self._current.backend.request_stop()

    # --- the debugger's stops (sdeilab.lab.session) ----------------------------------
    def set_breakpoints(self, addresses: frozenset[int]) -> None:
        """Stop (``StopReason.BREAKPOINT``) before any CPU executes an instruction at one of ``addresses``."""
        for vcpu in self.vcpus:
            vcpu.backend.set_breakpoints(addresses)

    def set_watchpoints(self, watches: tuple[DebuggerWatch, ...] | frozenset[DebuggerWatch]) -> None:
        """Stop (``StopReason.WATCHPOINT``) before any access a CPU makes to the bytes one of
        ``watches`` covers: the instruction has not executed and memory is unchanged (``watch_stop``
        says where). Between runs only. With none, the engines have no memory hook but the
        guest's own watchpoints' (none at all in a Linux boot)."""
        self._between_slices("set_watchpoints")
        self.debugger_watches = tuple(sorted(watches, key=lambda w: (w.start, w.length, w.loads, w.stores,
                                                                      -1 if w.cpu is None else w.cpu)))
        for vcpu in self.vcpus:
            vcpu.backend.set_translation_watch(bool(self.debugger_watches))
            self._arm_watchpoints(vcpu)

    @staticmethod
    def cpu_retired_at(snapshot: MachineSnapshot) -> list[int]:
        """Instructions each CPU had retired when ``snapshot`` was taken."""
        values, _image = snapshot.scheduler
        assert isinstance(values, tuple)
        return list(values[SCHEDULER_STATE.index("cpu_retired")])

    def request_break(self, reason: StopReason, detail: str) -> None:
        """From inside a run (a trace watcher): stop after the current instruction, resumably.

        Outside a slice (an SDEI dispatch, a CPU coming on) the run stops before the next slice.
        No fact is recorded: a debugger stop is not something the guest did.
        """
        if self._break is None:
            self._break = (reason, detail)
        current = self._current
        if current is not None:
            current.backend.interrupt()

    def request_pause(self, detail: str = "paused") -> None:
        """From any thread: stop at the end of the slice that is running (at most ``quantum`` instructions).

        Only a flag is set; the engine is not touched from the other thread, so a pause cannot
        land in the middle of a device access or a firmware call, and the stop is a slice
        boundary that a replay reproduces exactly.
        """
        self._break = (StopReason.PAUSED, detail)

    def cancel_break(self) -> None:
        self._break = None

    def _take_break(self) -> None:
        assert self._break is not None
        reason, detail = self._break
        self._break = None
        self._outcome = RunOutcome(reason, detail, self.retired)

    def poke(self, cpu: int) -> None:
        """Something now waits for ``cpu`` (an SDEI signal, a completed handler): it acts no earlier than now."""
        now = self.now()
        if now > self._not_before[cpu]:
            self._not_before[cpu] = now
        current = self._current
        if current is not None and current.index == cpu:
            current.backend.request_stop()

    def _wakeable(self, cpu: int) -> bool:
        """A wake-up event for WFI: an interrupt signalled, whatever PSTATE masks (ARM ARM D1.16.2)."""
        if self.gic.irq_line(cpu) or self.gic.fiq_line(cpu):
            return True
        return any(check(cpu) for check in self.wake_checks)

    def _executing(self) -> int:
        return self._current.backend.executed() if self._current is not None else 0

    def _stop_if_current(self, vcpu: Vcpu) -> None:
        if self._current is vcpu:
            vcpu.backend.request_stop()

    def _start(self, vcpu: Vcpu, cause: str) -> None:
        """Bring a CPU out of reset at its entry point: EL1h, DAIF masked, MMU off, x0 = context id."""
        assert vcpu.entry is not None
        entry, context_id = vcpu.entry
        vcpu.backend.reset(vcpu.mpidr)
        self.pmus[vcpu.index].reset()  # a PE out of reset: PMCR_EL0.E clear, its counters stopped, as on QEMU
        self.watchpoints[vcpu.index].reset()  # DBGWCR<n>_EL1.E resets to 0
        self._arm_watchpoints(vcpu)
        vcpu.backend.invalidate_code()  # code for it may have been written through other CPUs' caches
        vcpu.backend.pc = entry
        vcpu.backend.set_x(0, context_id)
        vcpu.entry = None
        vcpu.transition(VcpuState.ON, cause)

    def _on_transition(self, vcpu: Vcpu, old: VcpuState, new: VcpuState, cause: str) -> None:
        if old.powered != new.powered:
            self.gic.refresh()  # 1-of-N SPI routing considers only powered CPUs
        self.record(PowerTransition, vcpu.index, old.value, new.value, str(cause))  # plain str: see TraceLog.add
        for listener in self.power_listeners:
            listener(vcpu.index, old, new, cause)

    # --- devices -----------------------------------------------------------------------
    def _uart_tx(self, byte: int) -> None:
        self.uart_output.append(byte)
        for sink in self.uart_sinks:
            sink(byte)

    def _spi_line(self, spec: DeviceSpec) -> Callable[[bool], None]:
        intid, source = spec.intid, spec.source
        return lambda level: self.gic.set_level(intid, level, source=source)

    def _device_mmio(self, spec: DeviceSpec) -> MmioRow:
        """The MMIO row of a device: it reads and writes at the machine's ``now``. A write to one that
        keeps time may move its deadline, which ends the running slice to recompute it."""
        device, entry = self.devices[spec.name], spec.entry

        def write(cpu: int, offset: int, size: int, value: int) -> None:
            device.write(offset, size, value, self.now())
            if device.KEEPS_TIME:
                self._next_device_deadline = self._first_device_deadline()
                self._stop_if_current(self.vcpus[cpu])  # the device deadline moved: recompute the slice

        return entry.base, entry.size, lambda cpu, offset, size: device.read(offset, size, self.now()), write

    def _first_device_deadline(self) -> int | None:
        deadlines = [d for d in (device.next_deadline() for device in self._clocked) if d is not None]
        return min(deadlines, default=None)

    def _advance_devices(self, now: int) -> None:
        """Machine-wide clocked devices (SP804, PL031) catch up to ``now``, whichever CPU gets there first."""
        deadline = self._next_device_deadline
        if deadline is not None and deadline <= now:
            for device in self._clocked:
                device.advance(now)
            self._next_device_deadline = self._first_device_deadline()

    def _timer_line(self, cpu: int) -> Callable[[int, bool], None]:
        return self._ppi_line(cpu, "timer")

    def _ppi_line(self, cpu: int, source: str) -> Callable[[int, bool], None]:
        return lambda intid, level: self.gic.set_level(intid, level, cpu, source)

    def pmu_clocks(self, cpu: int) -> Clocks:
        """What CPU ``cpu``'s performance counters count, now: its virtual time and the
        instructions it retired (exact to the instruction for the running CPU)."""
        if self._current is not None and self._current.index == cpu:
            return Clocks(self.now(), self.cpu_retired[cpu] + self._executing())
        return Clocks(self._local[cpu], self.cpu_retired[cpu])

    def _pmu_refused(self, cpu: int, reg: PmuReg, write: bool) -> bool:
        """An access from EL0 that PMUSERENR_EL0 does not allow: left to the CPU model, which holds
        PMUSERENR_EL0 and traps it (EC 0x18) with the syndrome QEMU gives."""
        backend = self.vcpus[cpu].backend
        return (exc.current_el(backend.read("PSTATE")) == 0
                and not el0_may_access(reg, write, backend.read("PMUSERENR_EL0")))

    def _pmu_reader(self, reg: PmuReg, n: int) -> Callable[[int], int | None]:
        def read(cpu: int) -> int | None:
            if self._pmu_refused(cpu, reg, write=False):
                return None
            return self.pmus[cpu].read(reg, n, self.pmu_clocks(cpu))

        return read

    def _pmu_writer(self, reg: PmuReg, n: int) -> Callable[[int, int], bool]:
        def write(cpu: int, value: int) -> bool:
            if self._pmu_refused(cpu, reg, write=True):
                return False
            self.pmus[cpu].write(reg, n, value, self.pmu_clocks(cpu))
            self._stop_if_current(self.vcpus[cpu])  # an overflow deadline may have moved: recompute the slice
            return True

        return write

    def _timer_reader(self, reg: TimerReg) -> Callable[[int], int]:
        return lambda cpu: self.timers[cpu].read(reg, self.counter())

    def _timer_writer(self, reg: TimerReg) -> Callable[[int, int], None]:
        def write(cpu: int, value: int) -> None:
            self.timers[cpu].write(reg, value, self.counter())
            self._stop_if_current(self.vcpus[cpu])  # its deadline moved: recompute the slice
        return write

    def _icc_reader(self, reg: IccReg) -> Callable[[int], int]:
        return lambda cpu: self.gic.icc_read(cpu, reg)

    def _icc_writer(self, reg: IccReg) -> Callable[[int, int], None]:
        def write(cpu: int, value: int) -> None:
            self.gic.icc_write(cpu, reg, value)
            if self.gic.irq_line(cpu) or self.gic.fiq_line(cpu):
                self._stop_if_current(self.vcpus[cpu])  # PMR, EOI or an enable may have let one through
        return write

    def _gic_writer(self, write: Callable[[int, int, int, int], None]) -> Callable[[int, int, int, int], None]:
        return write  # lines raised for the writing CPU stop its slice through the GIC's on_pending

    # --- hardware watchpoints (debug.py) --------------------------------------------------
    def _watch_reader(self, n: int, control: bool) -> Callable[[int], int | None]:
        def read(cpu: int) -> int | None:
            if exc.current_el(self.vcpus[cpu].backend.pstate) == 0:
                return None  # EL1 only: the CPU model makes it UNDEFINED
            unit = self.watchpoints[cpu]
            return unit.wcr[n] if control else unit.wvr[n]

        return read

    def _watch_writer(self, n: int, control: bool) -> Callable[[int, int], bool]:
        def write(cpu: int, value: int) -> bool:
            vcpu = self.vcpus[cpu]
            if exc.current_el(vcpu.backend.pstate) == 0:
                return False
            self.watchpoints[cpu].write(n, control, value)
            self._arm_watchpoints(vcpu)
            return True

        return write

    def _arm_watchpoints(self, vcpu: Vcpu, *, force: bool = False) -> None:
        """Give the engine the physical ranges of this CPU's armed watchpoints, the guest's and the
        debugger's (none: no memory hook)."""
        cpu = vcpu.index
        armed = self.watchpoints[cpu].armed
        host = [w for w in self.debugger_watches if w.cpu is None or w.cpu == cpu]
        backend = vcpu.backend
        mapping: list[tuple[int, int, int]] = []
        ranges: list[tuple[int, int, bool, bool]] = []
        mmu = bool(armed or host) and bool(backend.read("SCTLR_EL1") & 1)
        for watch in armed:
            for begin, end, va in self._watched_pieces(backend, watch.start, watch.length, mmu):
                mapping.append((begin, end, va))
                ranges.append((begin, end, watch.loads, watch.stores))
        debugger: list[tuple[int, int, int, DebuggerWatch]] = []
        for point in host:
            for begin, end, va in self._watched_pieces(backend, point.start, point.length, mmu):
                debugger.append((begin, end, va, point))
                ranges.append((begin, end, point.loads, point.stores))
        self._watch_map[cpu] = mapping
        self._debugger_map[cpu] = debugger
        # Redone each slice with the MMU on, and always for the debugger's: its addresses are
        # virtual whatever the MMU was when they were set (the guest turns it on later).
        self._watch_mmu[cpu] = mmu or bool(host)
        if force or ranges != self._watch_ranges[cpu]:
            self._watch_ranges[cpu] = ranges
            backend.set_watch_ranges(ranges)

    def _watched_pieces(self, backend: CpuBackend, start: int, length: int,
                        mmu: bool) -> list[tuple[int, int, int]]:
        """(PA, PA end, VA) of the RAM behind virtual bytes [start, start + length): through the
        MMU page by page (up to ``_WATCH_PAGES``) when it is on, else the same addresses."""
        if not mmu:
            pieces = [(start, start + length, start)]
        else:
            pieces = []
            va, end = start, start + min(length, _WATCH_PAGES * _PAGE)
            while va < end:
                page_end = min(end, (va | (_PAGE - 1)) + 1)
                pa = backend.translate(va, "read")
                if pa is not None:
                    pieces.append((pa, pa + page_end - va, va))
                va = page_end
        ram_begin, ram_end = self.ram_region.base, self.ram_region.base + self.ram_region.size
        kept = []
        for pa, pa_end, va in pieces:
            # RAM only: a device's registers are not undone (nor read twice) by the engine.
            begin, end = max(pa, ram_begin), min(pa_end, ram_end)
            if begin < end:
                kept.append((begin, end, va + begin - pa))
        return kept

    # --- VcpuHost: called by the engine during a slice -------------------------------------
    def conduit(self, cpu: int, conduit: str, executed: int) -> None:
        vcpu = self.vcpus[cpu]
        firmware = self.firmware
        # The exit's time stamp, as ``now`` reads it: the call takes no virtual time of its own.
        if firmware is not None and firmware.hypercall(self, vcpu, conduit,
                                                       self._clock + executed * self.ns_per_instruction):
            return
        # No firmware answers this conduit here: the instruction is UNDEFINED at EL1 (ARM ARM:
        # HVC with no EL2, SMC with no EL3), reported at the instruction itself.
        pc = vcpu.backend.pc - 4
        self.guest_exception(vcpu, exc.esr_undefined(), pc, f"{conduit.upper()} is undefined here")

    def trap(self, cpu: int, trap: Trap, pc: int) -> None:
        vcpu = self.vcpus[cpu]
        if trap is Trap.HVC or trap is Trap.SMC:
            self.conduit(cpu, trap.value, vcpu.backend.executed())
            return
        reason = _TRAP_REASONS.get(trap)
        if reason is None:
            self.fault(vcpu, f"unhandled exception {trap.value}", pc)
            return
        if trap is Trap.UNDEFINED and pc & 3 and not exc.is_aarch32(vcpu.backend.pstate):
            # A branch to an address with bits [1:0] set: the fetch takes a PC alignment fault,
            # EC 0x22, FAR = ELR = the misaligned PC (ARM ARM D1.10.x "PC alignment checking"),
            # which the CPU model reports as an UNDEFINED instruction. (T32 code at AArch32 EL0
            # is 2-byte aligned: an UNDEF there is one.)
            self.guest_exception(vcpu, exc.esr(exc.EC_PC_ALIGNMENT), pc, "PC alignment fault", far=pc)
            return
        # The CPU model computed the syndrome (and for an abort the faulting address) as the
        # architecture defines it: deliver that when the exception goes to EL1.
        record = vcpu.backend.exception_record()
        if record is not None and record.target_el == 1:
            if record.syndrome >> 26 in _EC_SOFTWARE_STEP:
                reason = "software step"  # raised by the CPU model as an UNDEFINED instruction
            abort = trap is Trap.DATA_ABORT or trap is Trap.PREFETCH_ABORT
            self.guest_exception(vcpu, record.syndrome, pc, reason, far=record.address if abort else None,
                                 elr_is_next=trap is Trap.SVC)
        elif trap is Trap.UNDEFINED:
            self.guest_exception(vcpu, exc.esr_undefined(), pc, reason)
        elif trap is Trap.SVC:
            word = self.read_code_u32(vcpu, pc - 4) or 0
            self.guest_exception(vcpu, exc.esr(exc.EC_SVC64, (word >> 5) & 0xFFFF), pc, reason, elr_is_next=True)
        elif trap is Trap.BRK:
            word = self.read_code_u32(vcpu, pc) or 0
            self.guest_exception(vcpu, exc.esr(exc.EC_BRK64, (word >> 5) & 0xFFFF), pc, reason)
        else:  # an abort whose syndrome is unknown cannot be delivered faithfully
            why = (f"the CPU model's syndrome could not be located: {RECORD_MISSING}" if record is None
                   else f"taken to EL{record.target_el}")
            self.fault(vcpu, f"unhandled {reason} ({why})", pc)

    def sysreg_read(self, cpu: int, key: SysregKey) -> int | None:
        read = self._sysreg_reads.get(key)
        return None if read is None else read(cpu)

    def sysreg_write(self, cpu: int, key: SysregKey, value: int) -> bool:
        write = self._sysreg_writes.get(key)
        if write is None:
            return False
        return write(cpu, value) is not False

    def system_instruction(self, cpu: int, key: SysregKey, value: int) -> None:
        if key in (_IC_IALLUIS, _IC_IALLU):
            self._invalidate_code(but=cpu)
        elif key == _IC_IVAU:
            # The address is virtual in the caller's regime (Linux cleans a page through its
            # linear map): the other engines are told the physical line, before their next slice.
            # Lines come in order, so a page's worth merges into one range.
            physical = self.vcpus[cpu].backend.translate(value & ~(CACHE_LINE - 1), "read")
            if physical is None:
                return
            self.code_generation += 1
            for other, stale in enumerate(self._stale_code):
                if other == cpu:
                    continue
                if stale and stale[-1][1] == physical:
                    stale[-1][1] = physical + CACHE_LINE
                else:
                    stale.append([physical, physical + CACHE_LINE])

    def watch_access(self, cpu: int, address: int, size: int, write: bool) -> bool:
        debugger = self._debugger_map[cpu]
        if debugger:
            # The debugger's watchpoints come first: on the same bytes as one of the guest's, the
            # run stops before the guest's exception is taken, and resuming takes it.
            for pa, pa_end, va, point in debugger:
                if address < pa_end and address + size > pa and (point.stores if write else point.loads):
                    resume = self._watch_resume
                    backend = self.vcpus[cpu].backend
                    # The engine counts an instruction as it begins: this one is number
                    # cpu_retired + executed() - 1 of the CPU.
                    if (resume is not None and resume[0] == cpu
                            and resume[1] == self.cpu_retired[cpu] + backend.executed() - 1):
                        break  # the instruction that stopped, now resumed: it executes
                    if not write and self._store_exclusive(self.vcpus[cpu]):
                        continue  # the CPU model's compare-and-swap reads first: no load of the guest's
                    self._debugger_hit[cpu] = (va + address - pa, size, write)
                    return True
        for pa, pa_end, va in self._watch_map[cpu]:
            if address < pa_end and address + size > pa:
                backend = self.vcpus[cpu].backend
                hit = self.watchpoints[cpu].match(va + address - pa, size, write, backend.pstate, backend.sysreg)
                if hit is not None:
                    self._watch_hit[cpu] = hit
                    return True
                return False
        return False

    def _store_exclusive(self, vcpu: Vcpu) -> bool:
        """The instruction at PC is a store-exclusive (STXR, STLXR, STXP, STLXP: ARM ARM C4.1.x
        "Load/store exclusive", o2 = 0 and L = 0), which the CPU model runs as a compare-and-swap
        that loads the bytes before storing them. Architecturally it makes no load, so a debugger
        watchpoint on loads must not stop it."""
        word = self.read_code_u32(vcpu, vcpu.backend.pc)
        return word is not None and word & 0x3FC0_0000 == 0x0800_0000

    # --- exceptions --------------------------------------------------------------------
    def has_vectors(self, vcpu: Vcpu, pstate: int | None = None) -> bool:
        """VBAR_EL1 points at a vector table in RAM (through the MMU when it is on: Linux's is virtual).

        A CPU at EL0 cannot translate EL1-only mappings, and an OS that runs code at EL0 has set
        its vectors up first, so only the EL1 view is checked; a vector that turns out not to be
        mapped faults inside its own vector, which ``guest_exception`` reports.
        """
        backend = vcpu.backend
        vbar = backend.read("VBAR_EL1")
        if pstate is None:
            pstate = backend.pstate
        if exc.current_el(pstate) == 0 and backend.translate(vbar, "fetch") is None:
            return True
        return self.is_valid_entry(vbar, vcpu) and self.is_valid_entry(vbar + 0x7FC, vcpu)

    def guest_exception(self, vcpu: Vcpu, esr_value: int, pc: int, reason: str, *,
                        far: int | None = None, elr_is_next: bool = False) -> None:
        """Deliver a synchronous exception to the guest's vectors, or stop with a fault report."""
        backend = vcpu.backend
        pstate = backend.pstate
        if not self.has_vectors(vcpu, pstate):
            self.fault(vcpu, f"{reason} (ESR 0x{esr_value:08x}) and no exception vectors (VBAR_EL1 not set)", pc)
            return
        target = exc.vector_for(pstate, "sync", backend.read("VBAR_EL1"))
        if target <= pc < target + 0x80:
            self.fault(vcpu, f"{reason} (ESR 0x{esr_value:08x}) inside its own exception vector", pc)
            return
        entry = exc.take_exception(backend, "sync", elr=pc, esr_value=esr_value, far=far, pstate=pstate)
        self.record(ExceptionTaken, vcpu.index, "sync", reason, entry.vector, esr_value, pc, far or 0)
        backend.vectors_checked()

    def exception_taken(self, cpu: int, trap: Trap, retired: int, vector: int, esr: int, elr: int, far: int) -> None:
        """An entry the engine made itself (``guest_exception``'s, for the cases it takes): its record."""
        vtime = self._clock + retired * self.ns_per_instruction
        self.trace.add(ExceptionTaken, cpu, vtime, "sync", _TRAP_REASONS[trap], vector, esr, elr, far)

    def take_interrupt(self, vcpu: Vcpu, kind: str, pstate: int | None = None) -> None:
        """Take an IRQ or FIQ (``kind``) at the current PC; ``pstate`` as the caller just read it, if it did."""
        backend = vcpu.backend
        pc = backend.pc
        entry = exc.take_exception(backend, kind, elr=pc, pstate=pstate)
        self.record(ExceptionTaken, vcpu.index, kind, "interrupt", entry.vector, 0, pc, 0)

    def fault(self, vcpu: Vcpu, reason: str, pc: int, esr_value: int = 0) -> None:
        self.record(GuestFault, vcpu.index, reason, pc, esr_value)
        self.halt(StopReason.FAULT, reason, self.fault_report(vcpu, reason, pc))

    def fault_report(self, vcpu: Vcpu, reason: str, pc: int) -> FaultReport:
        backend = vcpu.backend
        pstate = backend.pstate
        state = "a64" if not exc.is_aarch32(pstate) else "t32" if pstate & 0x20 else "a32"
        word = self.read_code(vcpu, pc)
        instruction = disassemble_one(word, pc, state) if word is not None else "(not in RAM)"
        registers = {f"x{n}": value for n, value in enumerate(backend.xs(31))}
        for name in ("SP", "PSTATE", "ELR_EL1", "ESR_EL1", "FAR_EL1", "VBAR_EL1", "SPSR_EL1", "SCTLR_EL1"):
            registers[name] = backend.read(name)
        symbol = self.image.symbolize(pc) if self.image else ""
        return FaultReport(vcpu.index, pc, instruction, symbol, reason, registers)

    # --- the scheduler -----------------------------------------------------------------
    def run(self, max_instructions: int | None = None, *, debugger: bool = False,
            cpu_goal: tuple[int, int] | None = None) -> RunOutcome:
        """Run until the guest stops the machine, faults, deadlocks or retires ``max_instructions`` more.

        ``cpu_goal`` (CPU, count): stop too (``StopReason.BUDGET``) as soon as that CPU has retired
        that many instructions in all: right after that instruction, whatever the other CPUs ran
        meanwhile, as an instruction budget would cut the slice (so no state changes for it). The
        CPU must be short of the count when the run starts.

        After SYSTEM_OFF, SYSTEM_RESET or a fault the machine stays stopped: running it again
        returns the same outcome (load a guest again to start over). A run that stopped for its
        budget, a breakpoint or a pause continues where it stopped. With ``debugger`` such stops
        record no MachineStopped fact, so the trace does not depend on where a debugger stopped.
        """
        if self._outcome is not None and self._outcome.reason in _FINAL:
            return self._outcome
        self._outcome = None
        self._debugger = debugger
        for vcpu in self.vcpus:
            vcpu.backend.set_compiled_exceptions(not debugger)
        self._budget_end = None if max_instructions is None else self.retired + max_instructions
        self._cpu_goal = cpu_goal
        while self._outcome is None:
            # A round a debugger stop interrupted goes on: idle time is skipped at round starts only.
            if not self._round_open and not any(v.state in (VcpuState.ON, VcpuState.ON_PENDING)
                                                for v in self.vcpus):
                self._skip_idle_time()
                if self._outcome is not None:
                    break
            end = self._round_start + self.quantum * self.ns_per_instruction
            self._round_open = True
            for vcpu in self.vcpus:
                self._run_cpu(vcpu, end)
                if self._outcome is not None:
                    break
            else:
                self._round_start = end
                self._round_open = False
        return self._outcome

    def _skip_idle_time(self) -> None:
        """Nobody runs: jump virtual time to the first wake-up, or stop if nothing can come."""
        sleeping = [v for v in self.vcpus if v.state in (VcpuState.STANDBY, VcpuState.POWERDOWN)]
        wakes = [self._wake_time(v) for v in sleeping] + [self._next_device_deadline]
        times = [t for t in wakes if t is not None]
        waiting = ", ".join(f"CPU {v.index} {v.state.value} at pc 0x{v.backend.pc:x}" for v in sleeping)
        if not sleeping or not times:
            self.halt(StopReason.DEADLOCK, f"every CPU waits with nothing that could wake it ({waiting or 'all off'})")
            return
        if self._round_start - self._last_activity > IDLE_LIMIT_NS:
            # Only a device keeps ticking and its interrupts wake nobody: stop rather than spin
            # forever. Measured from where time already is, so that one long sleep (an RTC alarm
            # a minute ahead) is taken whole, and only deadlines that woke nobody add up to the limit.
            self.halt(StopReason.DEADLOCK, f"no CPU has run for {IDLE_LIMIT_NS // 10**9} s of virtual time ({waiting})")
            return
        self._round_start = max(self._round_start, min(times))

    def _wake_time(self, vcpu: Vcpu) -> int | None:
        if vcpu.state not in (VcpuState.STANDBY, VcpuState.POWERDOWN):
            return None
        cpu = vcpu.index
        if self._wakeable(cpu):
            return max(self._local[cpu], self._not_before[cpu])
        deadline = self.timers[cpu].next_deadline()
        wakes = [] if deadline is None else [deadline * NS_PER_COUNT]
        pmu = self.pmus[cpu]
        overflow = pmu.next_deadline(self.pmu_clocks(cpu), asleep=True) if pmu.counting else None
        if overflow is not None:
            wakes.append(self._local[cpu] + overflow)
        return max(self._local[cpu], min(wakes)) if wakes else None

    def _run_cpu(self, vcpu: Vcpu, end: int) -> None:
        cpu = vcpu.index
        t = max(self._local[cpu], self._round_start)
        gic = self.gic
        timer, pmu = self.timers[cpu], self.pmus[cpu]
        while t < end and self._outcome is None:
            if self._break is not None:
                self._take_break()
                break
            pending = self._pending
            if pending is not None and pending[0] == cpu:
                # The rest of a slice a debugger stop cut short: no start-of-slice work, as if
                # the slice had never stopped (module docstring).
                self._pending = None
                self._clock = t
                t = self._run_slice(vcpu, t, pending[1])
                continue
            self._clock = t
            self._advance_devices(t)
            timer.update(t // NS_PER_COUNT)
            if pmu.counting:
                pmu.update(Clocks(t, self.cpu_retired[cpu]))
            state = vcpu.state
            if state is VcpuState.ON_PENDING:
                t = max(t, self._not_before[cpu])
                if t >= end:
                    break
                self._clock = t
                self._start(vcpu, PowerCause.CPU_ON)
                continue
            if state is not VcpuState.ON:
                if state is VcpuState.OFF:
                    t = end
                    break
                wake = self._wake_time(vcpu)  # STANDBY or POWERDOWN
                if wake is None or wake >= end:
                    t = end
                    break
                t = max(t, wake)
                self._clock = t
                timer.update(t // NS_PER_COUNT)
                if pmu.counting:
                    pmu.update(Clocks(t, self.cpu_retired[cpu]))
                if self._wakeable(cpu):
                    if state is VcpuState.POWERDOWN:
                        self._start(vcpu, PowerCause.WAKE)
                    else:
                        vcpu.transition(VcpuState.ON, PowerCause.WAKE)
                        self._masked_for[cpu] = 0  # what woke it may wait behind PSTATE: a new wait
                continue
            budget = end - t
            if t < self._not_before[cpu]:
                # Something was sent to this CPU at a later time than its clock shows: run up to
                # that moment first, so that no effect is seen before its cause.
                budget = min(budget, self._not_before[cpu] - t)
            else:
                for hook in self.slice_hooks:  # firmware first: SDEI events outrank guest IRQs
                    hook(vcpu)
                if self._outcome is not None or vcpu.state is not VcpuState.ON:
                    continue
                irq, fiq = gic.irq_line(cpu), gic.fiq_line(cpu)
                if (irq or fiq) and self._deliver_interrupt(vcpu, irq, fiq):
                    waited = self._masked_for[cpu]
                    step = 1 if waited < MASKED_STEPS else max(1, min(MASKED_IRQ_POLL, waited // 8))
                    self._masked_for[cpu] = waited + step
                    budget = min(budget, step * self.ns_per_instruction)
                else:
                    self._masked_for[cpu] = 0
            deadline = timer.next_deadline()
            if deadline is not None:
                due = deadline * NS_PER_COUNT - t
                if 0 < due < budget:
                    budget = due
            overflow = pmu.next_deadline(Clocks(t, self.cpu_retired[cpu])) if pmu.counting else None
            if overflow is not None and 0 < overflow < budget:
                budget = overflow
            device_deadline = self._next_device_deadline
            if device_deadline is not None and 0 < device_deadline - t < budget:
                budget = device_deadline - t
            if self._break is not None:  # a fact just recorded (an SDEI dispatch, an IRQ taken) stops here
                self._pending = (cpu, budget)
                self._take_break()
                break
            t = self._run_slice(vcpu, t, budget)
        self._local[cpu] = max(t, self._local[cpu])
        self._clock = self._local[cpu]

    def _run_slice(self, vcpu: Vcpu, t: int, budget: int) -> int:
        """Run ``vcpu`` for a slice of ``budget`` ns of virtual time from vtime ``t``; returns the new vtime.

        The slice runs the instructions that fit, rounded up (one at the default scale). The
        caller's instruction budget, a breakpoint or a watched fact may cut it short: its rest
        is kept in ``_pending`` for the next run.
        """
        cpu = vcpu.index
        ns = self.ns_per_instruction
        instructions = -(-budget // ns)
        chunk = instructions
        if self._budget_end is not None:
            left = self._budget_end - self.retired
            if left <= 0:
                self._pending = (cpu, budget)
                self._out_of_budget()
                return t
            chunk = min(instructions, left)
        goal = self._cpu_goal
        if goal is not None and goal[0] == cpu:
            need = goal[1] - self.cpu_retired[cpu]
            if need <= 0:
                self._pending = (cpu, budget)
                self._out_of_budget()
                return t
            chunk = min(chunk, need)
        if self._watch_mmu[cpu]:
            self._arm_watchpoints(vcpu)  # the page tables may have changed since
        stale = self._stale_code[cpu]
        if stale:
            for begin, end in stale:
                vcpu.backend.invalidate_code(begin, end)
            stale.clear()
        self._current = vcpu
        try:
            result = vcpu.backend.run(chunk, t)
        finally:
            self._current = None
        executed = result.executed
        t += executed * ns
        self.retired += executed
        self.cpu_retired[cpu] += executed
        self.last_cpu = cpu
        if executed:
            self._last_activity = t
        self._clock = t
        stop = result.stop
        resume = self._watch_resume
        if resume is not None and resume[0] == cpu and (self.cpu_retired[cpu] > resume[1]
                                                        or vcpu.backend.pc != resume[2]):
            self._watch_resume = None  # executed (or turned into an exception): nothing to step over
        host_hit = self._debugger_hit[cpu]
        self._debugger_hit[cpu] = None
        if stop is not Stop.WATCHPOINT:
            host_hit = None  # a hit the slice did not stop for (the engine raised): nothing to report
        if host_hit is not None:
            # The debugger's watchpoint: a debugger stop like a breakpoint's, the slice cut short
            # and no exception for the guest (the guest's own Hit, if any, is taken on resume).
            self._watch_hit[cpu] = None
            pc = vcpu.backend.pc
            address, size, write = host_hit
            self.watch_stop = WatchStop(cpu, address, size, write, pc)
            self._watch_resume = (cpu, self.cpu_retired[cpu], pc)
            self._break = (StopReason.WATCHPOINT,
                           f"watchpoint: {'write' if write else 'read'} of {size} bytes at 0x{address:x} "
                           f"by pc 0x{pc:x}{self._symbol(pc)} on CPU {cpu}")
        cut = (stop is Stop.BREAKPOINT or stop is Stop.INTERRUPTED or host_hit is not None
               or (stop is Stop.BUDGET and chunk < instructions))
        if cut and executed < instructions:
            self._pending = (cpu, budget - executed * ns)
        else:
            self._after_slice(vcpu, result)
        if stop is Stop.BREAKPOINT:  # it wins over a watched fact: the engine will skip it once on resume
            self._break = (StopReason.BREAKPOINT, f"breakpoint at 0x{result.address:x} on CPU {cpu}")
        if self._outcome is None:
            if self._break is not None:
                self._take_break()
            elif ((self._budget_end is not None and self.retired >= self._budget_end)
                  or (goal is not None and goal[0] == cpu and self.cpu_retired[cpu] >= goal[1])):
                self._out_of_budget()
        return t

    def _deliver_interrupt(self, vcpu: Vcpu, irq: bool, fiq: bool) -> bool:
        """Take a pending FIQ or IRQ if PSTATE lets it in; True if one stays masked."""
        pstate = vcpu.backend.read("PSTATE")
        if fiq and not pstate & 0x40:
            self.take_interrupt(vcpu, "fiq", pstate)
            return False
        if irq and not pstate & 0x80:
            self.take_interrupt(vcpu, "irq", pstate)
            return False
        return True

    def _after_slice(self, vcpu: Vcpu, result: SliceResult) -> None:
        if result.stop is Stop.WFI:
            cpu = vcpu.index
            # WFI completes at once if a wake-up event is already there (ARM ARM D1.16.2).
            if vcpu.state is VcpuState.ON and not self._wakeable(cpu):
                vcpu.transition(VcpuState.STANDBY, PowerCause.WFI)
            elif vcpu.state is VcpuState.ON:
                self._masked_for[cpu] = 0  # woken by an interrupt PSTATE still masks: a new wait
                self._check_stuck_wfi(vcpu)
        elif result.stop is Stop.UNMAPPED:
            pc = vcpu.backend.pc
            fetch = result.access == "fetch"
            pstate = vcpu.backend.read("PSTATE")
            el0 = exc.current_el(pstate) == 0
            far = result.address
            if not fetch and not exc.is_aarch32(pstate):
                zva = self._dc_zva_at(vcpu, pc, far)
                if zva is not None:
                    pc, far = zva
            reason = f"{result.access} of unmapped address 0x{far:x}"
            esr_value = exc.esr_abort(fetch, result.access == "write", el0)
            self.guest_exception(vcpu, esr_value, pc, reason, far=far)
        elif result.stop is Stop.ILLEGAL_STATE:
            # An illegal exception return left PSTATE.IL set: the next instruction is not executed
            # but takes an Illegal Execution state exception, EC 0x0E, ELR = its address, SPSR.IL
            # set (ARM ARM D1.4.x, "Illegal return events from AArch64 state"; entry clears IL).
            self.guest_exception(vcpu, exc.esr(exc.EC_ILLEGAL_STATE), vcpu.backend.pc, "illegal execution state")
        elif result.stop is Stop.DEVICE_FETCH:
            self._device_fetch(vcpu, result.address)
        elif result.stop is Stop.UNSUPPORTED:
            self.fault(vcpu, result.access, result.address)
        elif result.stop is Stop.WATCHPOINT:
            hit = self._watch_hit[vcpu.index]
            self._watch_hit[vcpu.index] = None
            assert hit is not None
            self.guest_exception(vcpu, hit.esr, vcpu.backend.pc, "watchpoint", far=hit.far)

    def _dc_zva_at(self, vcpu: Vcpu, pc: int, address: int) -> tuple[int, int] | None:
        """(PC, FAR) of a DC ZVA whose block write faulted at ``address``, or None if it was no DC ZVA.

        The CPU model zeroes the block with byte stores from a helper and reports the fault with
        PC already past the instruction and the last byte's address. The exception belongs to
        the DC ZVA itself (ELR = its address, ARM ARM D1.10.2 "Preferred exception return
        address") and, as QEMU reports it, FAR holds the start of the block.
        """
        for at in (pc, pc - 4):
            word = self.read_code_u32(vcpu, at)
            if word is None or word & ~0x1F != _DC_ZVA:
                continue
            rt = word & 0x1F
            block = (vcpu.backend.x(rt) if rt != 31 else 0) & ~(_DC_ZVA_BLOCK - 1)
            if block <= address < block + _DC_ZVA_BLOCK:
                return at, block
        return None

    def _check_stuck_wfi(self, vcpu: Vcpu) -> None:
        """Stop (DEADLOCK) a CPU whose WFI an interrupt masked by PSTATE keeps ending, once nothing can change.

        A pending interrupt ends WFI even while PSTATE.I or F masks it (ARM ARM D1.16.2), so a
        guest that waits with interrupts masked spins through WFI and never takes it. That is a
        deadlock when its state repeats exactly and nothing outside it can move: every other CPU
        is off or asleep with nothing to wake it, no timer of its own and no device is counting
        down, and between two wakes no fact was recorded (no interrupt acknowledged, no GIC or
        firmware call) and no byte sent. Registers are compared at every wake; RAM, the FP/SIMD
        registers and the other system registers it could count in only after the registers
        matched, at intervals that double each time they differ (a loop that counts in memory
        pays for a logarithmic number of comparisons of 128 MiB, about 0.1 s each).
        """
        cpu = vcpu.index
        quiet = (self._next_device_deadline is None and self.timers[cpu].next_deadline() is None
                 and all(v is vcpu or v.state is VcpuState.OFF
                         or (v.state is not VcpuState.ON and v.state is not VcpuState.ON_PENDING
                             and self._wake_time(v) is None)
                         for v in self.vcpus))
        if not quiet:
            self._spin[cpu] = None
            return
        backend = vcpu.backend
        fingerprint = (backend.pc, backend.pstate, backend.read("SP"), tuple(backend.xs(31)), len(self.trace),
                       len(self.uart_output), self.gic.highest_pending(cpu))
        spin = self._spin[cpu]
        if spin is None or spin.fingerprint != fingerprint:
            self._spin[cpu] = _Spin(fingerprint)
            return
        spin.seen += 1
        if spin.seen < spin.needed:
            return
        digest = hashlib.sha1(self.ram, usedforsecurity=False)
        digest.update(repr([backend.read(name) for name in _SPIN_STATE_REGS]).encode())
        digest.update(backend.vector_state())
        if digest.digest() == spin.digest:
            pstate = backend.pstate
            self.halt(StopReason.DEADLOCK,
                      f"every CPU waits with nothing left that could wake it (CPU {cpu} at pc 0x{backend.pc:x}"
                      f"{self._symbol(backend.pc)} repeats WFI with an interrupt pending that PSTATE masks,"
                      f" DAIF 0x{pstate & 0x3C0:x})")
            return
        spin.seen, spin.needed, spin.digest = 0, 2 * spin.needed, digest.digest()

    def _device_fetch(self, vcpu: Vcpu, address: int) -> None:
        """PC reached a device: do what QEMU virt does, which the tests compare.

        With the MMU off an instruction fetch is a Normal memory access (ARM ARM D8.2.10, "The
        effects of disabling an address translation stage"), and QEMU reads the word from the
        device like a data read (its side effects included) and executes it. Device registers
        hold words that are almost never instructions (0 is UDF #0): QEMU then takes an UNDEFINED
        exception at that PC (ESR 0x02000000). The engine cannot execute from a device, so the lab
        reads the word the same way and takes that UNDEF when the CPU model would; a word that is
        a real instruction is not executed but taken as a synchronous external abort on the fetch
        (EC 0x21, or 0x20 from EL0; FSC 0x10, FAR = PC), which is what QEMU reports at an address
        where it has no device (guests/QEMU-DEVIATIONS.md).
        """
        backend = vcpu.backend
        pc = backend.pc
        physical = backend.translate(address, "fetch")
        if physical is None:
            physical = address
        word = None
        for base, size, read, _write in self._mmio:
            if base <= physical and physical + 4 <= base + size:
                word = read(vcpu.index, physical - base, 4) & 0xFFFF_FFFF
                break
        if word is not None and backend.decodes_undefined(word):
            self.guest_exception(vcpu, exc.esr_undefined(), pc,
                                 f"undefined instruction 0x{word:08x} fetched from device memory at 0x{address:x}")
            return
        el0 = exc.current_el(backend.read("PSTATE")) == 0
        self.guest_exception(vcpu, exc.esr_abort(True, False, el0), pc,
                             f"instruction fetch from device memory at 0x{address:x}", far=address)

    def _symbol(self, address: int) -> str:
        symbol = self.image.symbolize(address) if self.image else ""
        return f" <{symbol}>" if symbol else ""  # a kernel Image has no symbols

    def _out_of_budget(self) -> None:
        if self._debugger:
            self._outcome = RunOutcome(StopReason.BUDGET, f"{self.retired} instructions retired", self.retired)
            return
        where = ", ".join(f"CPU {v.index} {v.state.value} at pc 0x{v.backend.pc:x}" + self._symbol(v.backend.pc)
                          for v in self.vcpus if v.state is not VcpuState.OFF)
        self.halt(StopReason.BUDGET, f"instruction budget exhausted after {self.retired} instructions ({where})")
