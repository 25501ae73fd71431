"""The lab's debugger: one guest on one platform, driven by methods that notebooks, tests and the
dashboard's buttons all call (sdeilab.widgets.Lab is a thin view over a ``Session``).

Every control method (``run``, ``step``, ``step_firmware``, ``run_until``, ``reset``,
``step_back``, ``reverse_continue``) returns a :class:`StopInfo` and every view (``cpu_view``, ``disassembly``,
``memory``, ``uart``) returns data, never text, so the same core serves a notebook, a test and
the widgets (reference: jupyter-ecosystem-and-code-anchors B3 and B6: commands in, typed results
out; the engine never prints).

How the stops work, and why stepping back is exact:

* The machine stops for the debugger without changing what the guest does (the module docstring
  of sdeilab.machine.machine): a run stopped and resumed anywhere leaves the same trace as one
  run. So the guest's history is a function of one number, the instructions retired since the
  guest was loaded, and ``step_back(n)`` goes back to the last checkpoint at or before that
  count minus ``n`` (``Machine.restore``) and runs the guest from there to it. Checkpoints are
  machine snapshots (``Machine.snapshot``: RAM in chunks shared between them, CPU contexts,
  devices, firmware, the trace's length), one when the guest is loaded and one after every
  :data:`CHECKPOINT_SECONDS` of running (a replay included), so a step back costs a restore
  (a few ms to about 50 ms) plus at most about that much replay, wherever the run stands. At
  most :data:`CHECKPOINT_COUNT` are kept, holding at most :data:`CHECKPOINT_MEMORY` bytes of RAM
  between them; past that, old ones are thinned out first (going far back then replays longer,
  and leaves new checkpoints on the way).
* What the host does to the guest (``raise_event``, ``write_memory``, ``write_register``,
  ``send_input``: gdb's writes and ``monitor raise`` go through them) is part of the history, as
  a record/replay debugger records its inputs: each is kept with the count it was done at, and a
  replay through that count does it again. So stepping back before an SDEI event raised on a
  CPU and running on dispatches it again, where it was. Doing something at an earlier count
  starts another history: the actions recorded past it, and the checkpoints taken past it, go.
* Address breakpoints are engine hooks on those addresses only (nothing else slows down); a CPU
  stopped at one steps over it when the run resumes.
* Watchpoints (``add_watchpoint``) are engine memory hooks on the RAM behind the watched virtual
  bytes, present only while one is set; the run stops before the access (the instruction undone,
  reason "watchpoint") and the CPU executes it when the run resumes, as at a breakpoint.
* ``step_back(n, cpu=c)`` replays from the last checkpoint where CPU ``c`` had not yet retired
  its target count and stops on that CPU's count exactly (``Machine.run(cpu_goal=)``), however
  much the other CPUs ran; ``reverse_continue`` replays checkpoint intervals from the latest
  backwards with breakpoints and watchpoints armed, recording each stop, and lands on the last
  one before the current position (docs/lab.md).
* Firmware-event stops (``break_on``, ``step_firmware``, ``run_until`` with a fact predicate)
  watch the trace as facts are appended and stop the machine right after the instruction that
  caused the fact (a hypercall has then returned, or entered an SDEI handler), or before the
  next slice for facts recorded between slices (an SDEI dispatch, a CPU coming on).
* ``pause()`` may be called from any thread (the dashboard's Pause button while a run goes on in
  a background thread); the run stops at the end of the slice that is running (at most one
  quantum, 100,000 instructions) with reason ``paused``. Ctrl-C (a Jupyter kernel interrupt)
  during a run in the main thread is turned into the same pause, so an interrupted run never
  leaves a firmware call half done and loses nothing of the trace.

Positions: a stop is at an instruction count. Several stops can share one count (the firmware
dispatches an SDEI event between two instructions); ``step_back`` always lands before such
firmware work, so stepping forward again shows the state right after the instruction.
"""

from __future__ import annotations

import numbers
import signal
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from sdeilab.firmware.profiles import PROFILES, Profile, profile_named
from sdeilab.firmware.sdei.quirks import Quirks
from sdeilab.firmware.sdei.service import SDEI_FUNCTIONS
from sdeilab.lab.platform import KernelBoot, Platform, make_platform
from sdeilab.machine.debug import DebuggerWatch
from sdeilab.machine.disasm import disassemble
from sdeilab.machine.loader import GuestImage, GuestLoadError, load_elf
from sdeilab.machine.machine import DEFAULT_QUANTUM, Machine
from sdeilab.machine.memmap import DEFAULT_RAM_SIZE, MAX_CPUS, parse_ram_size
from sdeilab.machine.outcome import RunOutcome, StopReason
from sdeilab.machine.state import MachineSnapshot
from sdeilab.machine.vcpu import VcpuState
from sdeilab.trace import FACT_KINDS, Fact, SdeiDispatch, SmcccCall, TraceLog
from sdeilab.trace.vocabulary import Conduit

if TYPE_CHECKING:
    from sdeilab.lab.gdb_server import GdbServer

GENERAL = tuple(f"x{n}" for n in range(31))
SPECIAL = ("SP", "PC", "PSTATE")
SYSREGS = ("SP_EL0", "ELR_EL1", "SPSR_EL1", "ESR_EL1", "FAR_EL1", "VBAR_EL1", "SCTLR_EL1", "TPIDR_EL1")
REGISTERS = GENERAL + SPECIAL + SYSREGS
"""What a CPU view shows: x0-x30, SP (the one PSTATE selects), PC, PSTATE, and the EL1 system
registers exception handling and SDEI handlers touch (ARM ARM D1.10)."""

CHUNK = 250_000
"""Instructions per machine run inside a long run: progress is reported and a pause is noticed
between chunks. Chunks do not change what the guest does."""

CHECKPOINT_SECONDS = 0.25
"""Wall time of running between two checkpoints: a step back replays about this long at most."""
CHECKPOINT_COUNT = 64
"""Checkpoints kept at most (each holds about 13 KB per CPU besides RAM)."""
CHECKPOINT_MEMORY = 512 << 20
"""Bytes of guest RAM the checkpoints may hold between them (chunks not shared and not zero)."""

_FINAL = frozenset({StopReason.SYSTEM_OFF, StopReason.SYSTEM_RESET, StopReason.FAULT, StopReason.DEADLOCK})

ADDRESS_LIMIT = 1 << 64  # breakpoints are on 64-bit virtual addresses: nothing at or above this
_PAGE = 4096  # the smallest translation granule (ARM ARM D8.2): a virtual range is read page by page


class SessionBusy(RuntimeError):
    """A control method was called while another one runs the machine (pause it first)."""


@dataclass(frozen=True)
class StopInfo:
    """Why and where the machine stopped.

    ``reason`` is a :class:`StopReason` value ("budget", "breakpoint", "watchpoint", "paused",
    "break" for a firmware event or condition, "system-off", "fault", "deadlock", "system-reset")
    or "reset" / "step-back" for those commands, and "history-start" when ``reverse_continue``
    found no stop before the guest as loaded. ``cpu`` is the CPU that ran last (or hit the
    breakpoint or watchpoint), ``fact`` the fact that stopped a firmware-event run. A watchpoint
    stop gives the data ``address`` the instruction at PC was about to access (a virtual address,
    as that CPU sees it) and the ``access``, "read" or "write"; a breakpoint stop gives its
    ``address`` (the PC).
    """

    reason: str
    detail: str
    retired: int
    cpu: int | None = None
    fact: Fact | None = None
    executed: int = 0  # instructions this command retired (negative for step_back)
    vtime: int = 0  # the virtual time (ns) of ``cpu`` at the stop: where its next instruction would run
    address: int | None = None  # a watchpoint's data address, a breakpoint's PC
    access: str | None = None  # a watchpoint's access: "read" or "write"

    @property
    def final(self) -> bool:
        """The run cannot go on (SYSTEM_OFF, SYSTEM_RESET, a fault, every CPU waiting for nothing):
        only reset or step back do anything."""
        return self.reason in {r.value for r in _FINAL}


@dataclass(frozen=True)
class CpuView:
    """One CPU at the last stop: power state, registers, and which of them changed since the stop before."""

    cpu: int
    state: str
    registers: dict[str, int]
    changed: frozenset[str]
    retired: int  # instructions this CPU has retired

    @property
    def pc(self) -> int:
        return self.registers["PC"]


@dataclass(frozen=True)
class DisasmLine:
    address: int
    text: str
    label: str  # the symbol at this exact address, or ""
    current: bool  # PC is here
    breakpoint: bool


@dataclass(frozen=True)
class Breakpoint:
    """An address breakpoint; ``cpu`` None stops on every CPU."""

    address: int
    cpu: int | None = None
    label: str = ""

    def __str__(self) -> str:
        where = f" <{self.label}>" if self.label else ""
        return f"0x{self.address:x}{where}" + ("" if self.cpu is None else f" on CPU {self.cpu}")


WATCH_KINDS = ("write", "read", "access")
"""What a watchpoint stops on: stores, loads, or both (gdb's ``watch``, ``rwatch``, ``awatch``)."""


@dataclass(frozen=True)
class Watchpoint:
    """A debugger watchpoint on ``size`` bytes at virtual ``address``; ``cpu`` None watches every CPU."""

    address: int
    size: int
    kind: str = "write"
    cpu: int | None = None

    def __str__(self) -> str:
        return (f"{self.kind} 0x{self.address:x}+{self.size}"
                + ("" if self.cpu is None else f" on CPU {self.cpu}"))

    def engine(self) -> DebuggerWatch:
        return DebuggerWatch(self.address, self.size, self.kind != "write", self.kind != "read", self.cpu)


@dataclass(frozen=True)
class _PastStop:
    """A stop a forward run made in a replayed interval (``reverse_continue``)."""

    retired: int
    cpu: int
    reason: str
    address: int
    access: str | None
    ordinal: int  # how many stops the replay of its interval made before it
    fact: int | None = None  # the fact a firmware-event break stopped after (its seq)


@dataclass(frozen=True)
class EventBreak:
    """A firmware-event breakpoint: an SMCCC function by name, or a fact kind by class name."""

    name: str
    cpu: int | None = None
    _calls: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    _kind: type[Fact] | None = field(default=None, compare=False, repr=False)

    @property
    def kinds(self) -> frozenset[type[Fact]]:
        """The fact kinds this can match: the session looks at no other."""
        return frozenset({self._kind or SmcccCall})

    def matches(self, fact: Fact) -> bool:
        if self.cpu is not None and fact.cpu != self.cpu:
            return False
        if self._kind is not None:
            return isinstance(fact, self._kind)  # a kind's sub-kinds too (an SdeiDispatch is a transition)
        return type(fact) is SmcccCall and fact.name in self._calls

    def __str__(self) -> str:
        return self.name + ("" if self.cpu is None else f" on CPU {self.cpu}")


@dataclass(frozen=True)
class _HostAction:
    """Something the host did to the guest at ``retired`` instructions (``Session._act``)."""

    retired: int
    what: str
    apply: Callable[[], None]


class _Checkpoints:
    """Machine snapshots of one history, by instructions retired, within a count and a memory budget.

    A snapshot taken at a budget stop at count N is the state any run reaches at N (the module
    docstring); the session takes them at such stops only, so each one stands for its count.
    The RAM chunks the snapshots hold are counted once however many share them.
    """

    def __init__(self) -> None:
        self.count, self.memory = CHECKPOINT_COUNT, CHECKPOINT_MEMORY
        self.items: list[MachineSnapshot] = []
        self.applied: list[int] = []  # of each item: how many host actions its state includes
        self._chunks: dict[int, list[int]] = {}  # id of a chunk held -> [its size, snapshots holding it]
        self._keep: dict[int, bytes] = {}  # id -> the chunk: kept alive while counted, so ids stay unique
        self.held = 0  # bytes of the chunks counted

    def add(self, snapshot: MachineSnapshot, applied: int = 0) -> None:
        if self.items and self.items[-1].retired >= snapshot.retired:
            self.drop_after(snapshot.retired - 1)
        self.items.append(snapshot)
        self.applied.append(applied)
        for key, chunk in snapshot.ram.held().items():
            entry = self._chunks.get(key)
            if entry is None:
                self._chunks[key], self._keep[key] = [len(chunk), 1], chunk
                self.held += len(chunk)
            else:
                entry[1] += 1
        while len(self.items) > 2 and (len(self.items) > self.count or self.held > self.memory):
            self._thin(snapshot.retired)

    def _remove(self, index: int) -> None:
        snapshot = self.items.pop(index)
        del self.applied[index]
        for key in snapshot.ram.held():
            entry = self._chunks[key]
            entry[1] -= 1
            if not entry[1]:
                self.held -= entry[0]
                del self._chunks[key], self._keep[key]

    def _thin(self, now: int) -> None:
        """Drop the checkpoint whose gap would matter least: the one whose neighbours are closest
        together for how far back it lies (so old ones go first, spacing grows with age). The
        first (the guest as loaded) and the latest always stay."""
        items = self.items
        best = min(range(1, len(items) - 1),
                   key=lambda i: (items[i + 1].retired - items[i - 1].retired) / max(1, now - items[i].retired))
        self._remove(best)

    def drop_after(self, retired: int, applied: int | None = None) -> None:
        """Forget the checkpoints past ``retired`` instructions (a history that went another way),
        and with ``applied`` those at ``retired`` that include more host actions than that."""
        while self.items and (self.items[-1].retired > retired
                              or (applied is not None and self.items[-1].retired == retired
                                  and self.applied[-1] > applied)):
            self._remove(len(self.items) - 1)

    def applied_of(self, snapshot: MachineSnapshot) -> int:
        return next(n for s, n in zip(self.items, self.applied, strict=True) if s is snapshot)

    def at_or_before(self, retired: int) -> MachineSnapshot:
        return next(s for s in reversed(self.items) if s.retired <= retired)

    def before_fact(self, seq: int) -> MachineSnapshot:
        """The last checkpoint taken before fact ``seq`` was recorded (the first one, the guest as
        loaded, for a fact that loading recorded)."""
        return next((s for s in reversed(self.items) if s.trace.length <= seq), self.items[0])


def pstate_text(pstate: int) -> str:
    """PSTATE as an engineer reads it: ``EL1h nZCv DAIF`` (capital = set; ARM ARM C5.2.18)."""
    el, sp = (pstate >> 2) & 3, pstate & 1
    flags = "".join(c.upper() if pstate >> bit & 1 else c for c, bit in zip("nzcv", (31, 30, 29, 28), strict=True))
    daif = "".join(c if pstate >> bit & 1 else "-" for c, bit in zip("DAIF", (9, 8, 7, 6), strict=True))
    return f"EL{el}{'h' if sp else 't'} {flags} {daif}"


class Session:
    """A guest on a platform, with the debugger's controls and views.

    ``guest`` is an ELF file. Where the profile's conduit is SMC and a ``NAME-smc.elf`` lies
    beside ``NAME.elf`` (the shipped SDEI scenarios' SMC build), that one is loaded, and the
    other way round, so switching profiles keeps a runnable guest.

    ``memory`` is the RAM size, in bytes or in QEMU's ``-m`` syntax (``"1G"``), as for
    ``make_platform``; ValueError for a size the board refuses.
    """

    def __init__(self, guest: str | Path | KernelBoot, cpus: int = 4, profile: str | Profile = "virt",
                 quirks: Quirks | Iterable[str] | None = None, *, quantum: int = DEFAULT_QUANTUM,
                 memory: int | str = DEFAULT_RAM_SIZE) -> None:
        # A KernelBoot boots a Linux Image (docs/linux.md); its kernel file stands for the guest's.
        self.kernel = guest if isinstance(guest, KernelBoot) else None
        self.guest = Path(guest.kernel if isinstance(guest, KernelBoot) else guest)
        # Validated here: a quantum of 0 made every round empty, so run() never returned.
        self.quantum = _count(quantum, "quantum", minimum=1)
        self.ram_size = parse_ram_size(memory)  # bytes (``memory()`` reads guest memory)
        self.cpus = _cpu_count(cpus)
        self.profile = _profile(profile)
        self.quirks = _quirks(quirks)
        self._breakpoints: dict[int, Breakpoint] = {}
        self._watchpoints: dict[tuple[int, int, str], Watchpoint] = {}
        self._event_breaks: list[EventBreak] = []
        self._lock = threading.Lock()
        self._pause = threading.Event()
        self._conditions: list[Callable[[Fact], bool]] = []
        self._watch_kinds: frozenset[type[Fact]] | None = None  # None: every kind
        self._stop_fact: Fact | None = None
        self._raised: BaseException | None = None  # a condition's exception, raised once the run has stopped
        self.platform: Platform
        self._image: GuestImage | None = None  # what was loaded: a replay must not see a rebuilt file
        # Each ELF as read the first time (this guest and its other-conduit build), so that reset,
        # a profile or quirk switch and step back never need the files again: deleted or rebuilt
        # meanwhile, they change nothing here until ``reset(reload=True)``.
        self._images: dict[Path, GuestImage] = {}
        self._regs: list[dict[str, int]] = []
        self._changed: list[frozenset[str]] = []
        self._checkpoints = _Checkpoints()
        self._run_time = 0.0  # seconds of running since the last checkpoint
        # What the host did to the guest (an SDEI event raised, memory or a register written, input
        # typed), where, in order: part of the history, so a replay does it again at that point.
        self._actions: list[_HostAction] = []
        self._applied = 0  # how many of ``_actions`` the machine's state includes now
        self.last_stop = StopInfo("reset", "loaded", 0)
        self._load(self.profile, self.quirks, self.cpus)
        if self.kernel is None:
            self._read_builds()
        self._stopped(self.last_stop, previous=None)

    # --- the platform ------------------------------------------------------------------
    @property
    def machine(self) -> Machine:
        return self.platform.machine

    @property
    def trace(self) -> TraceLog:
        return self.platform.machine.trace

    @property
    def retired(self) -> int:
        """Instructions retired by all CPUs since the guest was loaded: the session's position."""
        return self.machine.retired

    @property
    def running(self) -> bool:
        return self._lock.locked()

    @property
    def guest_file(self) -> Path:
        """The ELF actually loaded: ``guest``, or its other-conduit build (see the class docstring)."""
        return self._file_for(self.profile)

    def _builds(self) -> tuple[Path, Path]:
        """This guest's two conduit builds: ``NAME.elf`` (HVC) and ``NAME-smc.elf``."""
        stem = self.guest.stem.removesuffix("-smc")
        return self.guest.with_name(f"{stem}.elf"), self.guest.with_name(f"{stem}-smc.elf")

    def _file_for(self, profile: Profile, images: dict[Path, GuestImage] | None = None) -> Path:
        if self.kernel is not None:
            return self.guest
        smc_only = Conduit.SMC in profile.conduits and Conduit.HVC not in profile.conduits
        wanted = self._builds()[1 if smc_only else 0]
        return wanted if wanted in (self._images if images is None else images) or wanted.exists() else self.guest

    def _read_builds(self) -> None:
        """Keep the other conduit's build too, if there is one, so a profile switch needs no file.

        One that cannot be read is left out: the switch that needs it reads it then, and reports."""
        for path in self._builds():
            if path not in self._images and path.exists():
                with suppress(GuestLoadError):
                    self._images[path] = load_elf(path, self.machine.ram_region)

    def _load(self, profile: Profile, quirks: Quirks, cpus: int, *,
              images: dict[Path, GuestImage] | None = None) -> None:
        """A fresh platform with the guest loaded, then made the session's: profile, quirks, CPU
        count, platform and image change together or, if anything fails (a file gone, a bad
        ELF, a device tree the profile cannot have), not at all.

        The image is the one read before (``images``, by default the session's); a file is read
        only the first time it is needed. ``images`` empty: every file is read again. The guest
        as loaded is the first checkpoint (``reset`` and ``step_back`` go back to it).
        """
        known = self._images if images is None else images
        platform = make_platform(cpus, profile, quantum=self.quantum, trace=TraceLog(), quirks=quirks,
                                 memory=self.ram_size)
        machine = platform.machine
        path: Path | None = None
        if self.kernel is not None:
            if images is None and self._image is not None and (profile, cpus) == (self.profile, self.cpus):
                image = self._image  # its device tree depends on the profile and the CPU count only
                machine.load_image(image)
            else:
                image = platform.load_kernel(self.kernel.kernel, self.kernel.initrd, self.kernel.bootargs)
        else:
            path = self._file_for(profile, known)
            read = known.get(path)
            if read is None:
                image = machine.load(path)
            else:
                image = read
                machine.load_image(image)
        machine.set_breakpoints(frozenset(self._breakpoints))
        machine.set_watchpoints(self._engine_watches())
        checkpoints = _Checkpoints()
        checkpoints.add(machine.snapshot())  # the guest as loaded (breakpoints are not state: they stay)
        # Everything is built: only now does the session change.
        self.platform, self._image, self._images = platform, image, known
        self._checkpoints, self._run_time, self._actions, self._applied = checkpoints, 0.0, [], 0
        self.profile, self.quirks, self.cpus = profile, quirks, cpus
        if path is not None:
            known[path] = image

    def configure(self, *, profile: str | Profile | None = None, quirks: Quirks | Iterable[str] | None = None,
                  cpus: int | None = None) -> StopInfo:
        """Change the platform profile, the SDEI quirks or the CPU count; the guest starts over.

        All or nothing: an invalid value, or a platform that cannot be built, raises and leaves
        the session as it was (same platform, same position)."""
        new_profile = self.profile if profile is None else _profile(profile)
        new_quirks = self.quirks if quirks is None else _quirks(quirks)
        new_cpus = self.cpus if cpus is None else _cpu_count(cpus)
        return self._restart(new_profile, new_quirks, new_cpus)

    @staticmethod
    def profiles() -> list[str]:
        return list(PROFILES)

    # --- controls ----------------------------------------------------------------------
    def run(self, max_instructions: int | None = None, *,
            progress: Callable[[int, int | None], None] | None = None) -> StopInfo:
        """Run until a breakpoint, a pause, the guest's end, or ``max_instructions`` more instructions.

        ``progress(done, total)`` is called between chunks of :data:`CHUNK` instructions.
        """
        return self._go(_limit(max_instructions), [], progress=progress)

    def step(self, count: int = 1, cpu: int | None = None) -> StopInfo:
        """Exactly ``count`` instructions (machine-wide, on whichever CPU the scheduler runs), unless
        a breakpoint, a watched event or the guest's end comes first.

        With ``cpu``: until that CPU has retired ``count`` more instructions; the others run as the
        scheduler has them meanwhile. Bounded by a few scheduling rounds, so a CPU that is off or
        waits for an interrupt ends the step with the budget, not a hang."""
        n = _count(count, "count")
        if cpu is None:
            return self._go(n, [])
        index = self._cpu_index(cpu)
        goal = self.machine.cpu_retired[index] + n
        # The machine stops on the CPU's count itself (``Machine.run(cpu_goal=)``), in chunks of
        # any size: however long the other CPUs run meanwhile, the step ends exactly on it.
        info = self._go(n + 4 * self.quantum * self.cpus, [], cpu_goal=(index, goal) if n else None,
                        state_check=lambda session: session.machine.cpu_retired[index] >= goal)
        if self.machine.cpu_retired[index] >= goal and info.reason == StopReason.BREAK.value:
            info = replace(info, reason=StopReason.BUDGET.value, detail=f"{n} instructions on CPU {index}",
                           cpu=index)
            self.last_stop = info
        return info

    def step_firmware(self, cpu: int | None = None, max_instructions: int | None = None) -> StopInfo:
        """Run to just after the next SMCCC call or SDEI handler entry (of ``cpu``, if given)."""
        cpu = self._cpu_or_any(cpu)
        limit = _limit(max_instructions)

        def firmware(fact: Fact) -> bool:
            return type(fact) in (SmcccCall, SdeiDispatch) and (cpu is None or fact.cpu == cpu)
        return self._go(limit, [firmware], kinds=frozenset({SmcccCall, SdeiDispatch}))

    def run_until(self, predicate: Callable[..., bool] | EventBreak, max_instructions: int | None = None, *,
                  every: int | None = None) -> StopInfo:
        """Run until ``predicate`` holds, or ``max_instructions`` more instructions.

        ``predicate`` may be an :class:`EventBreak` from ``event_matcher("CPU_ON")``: the run stops
        as ``break_on`` would, once.

        By default ``predicate(fact)`` is asked about each fact as it is recorded, and the run
        stops right after the instruction that caused the first one it accepts. With ``every=N``
        it is ``predicate(session)``, asked every N instructions (N = 1 is exact and slow, about
        20 µs an instruction), for conditions on registers or memory.

        A predicate that raises stops the run where it was asked, as a stop on a fact that it
        accepted would (the machine is never left inside a firmware call), and the exception is
        raised here once the session has stopped: ``last_stop`` says where, and a run from there
        goes on as if the run had never stopped.
        """
        limit = _limit(max_instructions)
        if isinstance(predicate, EventBreak):  # a firmware event (``event_matcher``): only its kinds are read
            return self._go(limit, [predicate.matches], kinds=predicate.kinds)
        if not callable(predicate):
            raise TypeError(f"predicate must be callable or an EventBreak, not {type(predicate).__name__}")
        if every is None:
            return self._go(limit, [predicate], kinds=None)
        return self._go(limit, [], every=_count(every, "every", minimum=1), state_check=predicate)

    def raise_event(self, number: int, cpu: int) -> None:
        """Raise the hypervisor-originated SDEI event ``number`` on ``cpu``, as the host does (a
        watchdog): the firmware dispatches it when that PE can take it (DEN0054)."""
        sdei = self.platform.sdei
        if sdei is None:
            raise ValueError(f"profile {self.profile.name!r} has no SDEI dispatcher to raise an event with")
        number = _count(number, "event number")
        target = self._cpu_index(cpu)
        with self._exclusive():  # not while a run in another thread reads the PEs' state
            self._act(f"SDEI event {number} raised on CPU {target}", lambda: sdei.raise_event(number, target))

    def pause(self) -> None:
        """Stop a run going on in another thread (or a long ``run`` after Ctrl-C); safe from any thread."""
        self._pause.set()
        self.machine.request_pause("paused by request")

    def reset(self, *, reload: bool = False) -> StopInfo:
        """The guest as it was loaded (same profile, quirks and breakpoints), its trace back to
        what loading it recorded: the first checkpoint, restored.

        The guest is the image read when it was first loaded, whatever happened to its file since;
        ``reload=True`` reads the file again (after rebuilding it) onto a new platform, and if
        it cannot be loaded the session stays as it was."""
        if reload:
            return self._restart(self.profile, self.quirks, self.cpus, images={})
        with self._exclusive():
            previous = self._regs
            start = self.retired
            # The guest as loaded, with nothing the host did to it since.
            self._actions, self._applied = [], 0
            self._checkpoints.drop_after(0, applied=0)
            self._rewind(self._checkpoints.items[0])
        return self._stopped(StopInfo("reset", f"{self.guest_file.name} loaded", 0, executed=-start), previous)

    def _restart(self, profile: Profile, quirks: Quirks, cpus: int,
                 images: dict[Path, GuestImage] | None = None) -> StopInfo:
        """The guest from its start on a new platform (``_load``: all or nothing)."""
        with self._exclusive():
            previous = self._regs
            start = self.retired
            self._load(profile, quirks, cpus, images=images)
            if images is not None and self.kernel is None:
                self._read_builds()
        return self._stopped(StopInfo("reset", f"{self.guest_file.name} loaded", 0, executed=-start), previous)

    def step_back(self, count: int = 1, cpu: int | None = None) -> StopInfo:
        """Return to ``count`` instructions earlier: back to the checkpoint before that point, and
        on from there (see the module docstring for why this is exact and what it costs).

        With ``cpu``: back until that CPU has retired ``count`` fewer instructions, to the stop a
        forward ``step(cpu=cpu)`` makes there: right after that CPU's instruction, before any
        other CPU runs again (so ``step(n, cpu)`` then ``step_back(n, cpu)`` comes back to the
        same state, and the other way round). The replay starts at the last checkpoint where the
        CPU had not yet got there and stops on the CPU's count (``Machine.run(cpu_goal=)``),
        however much the other CPUs ran meanwhile: it costs what ``step_back`` costs. Going back
        to the CPU's count 0 lands where it has retired nothing, just before its first
        instruction (for a CPU that CPU_ON brings up, before its power-on is acted on: it shows
        as on-pending there). ValueError if the CPU has retired fewer than ``count``.

        ``count`` 0 goes back to right after the CPU's latest instruction: before whatever the
        firmware did to it since without an instruction of its own (an SDEI dispatch enters the
        handler between two instructions, DEN0054 "Event dispatch"), so its PC is the instruction
        the dispatch interrupted; where nothing was done, the CPU's state is as it is now."""
        count = _count(count, "count")
        if cpu is not None:
            return self._step_back_cpu(count, self._cpu_index(cpu))
        with self._exclusive():
            previous = self._regs
            start = self.retired
            target = max(0, start - count)
            with self._disarmed():
                self._replay_to(target)
        info = StopInfo("step-back", f"back {start - target} instructions", self.retired,
                        self.machine.last_cpu, executed=target - start, vtime=self.machine.now())
        return self._stopped(info, previous)

    def _step_back_cpu(self, count: int, cpu: int) -> StopInfo:
        machine = self.machine
        now = machine.cpu_retired[cpu]
        goal = now - count
        if goal < 0:
            raise ValueError(f"CPU {cpu} has retired {now} instructions since the guest was loaded: "
                             f"it cannot go back {count}")
        with self._exclusive():
            previous = self._regs
            start = self.retired
            if count or goal:
                with self._disarmed():
                    if goal:
                        self._replay_cpu(cpu, goal, start)
                    else:
                        # Just before its first instruction: where it retired that one, less one.
                        self._replay_cpu(cpu, 1, start)
                        self._replay_to(self.retired - 1)
        info = StopInfo("step-back", f"back {count} instructions of CPU {cpu}", self.retired, cpu,
                        executed=self.retired - start, vtime=machine.now())
        return self._stopped(info, previous)

    def _replay_to(self, target: int) -> None:
        """The machine at ``target`` instructions (at most the current count): the last checkpoint
        at or before it, and a replay from there (breakpoints and watchpoints disarmed by the caller)."""
        self._rewind(self._checkpoints.at_or_before(target))
        while self.retired < target:
            outcome = self._advance(min(CHUNK, target - self.retired))
            if outcome.reason is not StopReason.BUDGET:
                raise RuntimeError(f"the replay stopped early ({outcome.reason.value}: {outcome.detail}): "
                                   "the machine is not deterministic here")

    def _replay_cpu(self, cpu: int, goal: int, limit: int) -> None:
        """The machine right after ``cpu`` retired its ``goal``-th instruction, which it did before
        ``limit`` instructions in all: from the last checkpoint (at most ``limit``) where it had
        retired fewer, on until it has retired ``goal``, stopping on its count exactly."""
        checkpoint = next(c for c in reversed(self._checkpoints.items)
                          if c.retired <= limit and Machine.cpu_retired_at(c)[cpu] < goal)
        self._rewind(checkpoint)
        machine = self.machine
        while machine.cpu_retired[cpu] < goal:
            if self.retired >= limit:
                raise RuntimeError(f"the replay passed {limit} instructions before CPU {cpu} retired {goal}: "
                                   "the machine is not deterministic here")
            outcome = self._advance(min(CHUNK, limit - self.retired), cpu_goal=(cpu, goal))
            if machine.cpu_retired[cpu] >= goal:
                break  # there, whatever else its last instruction did (a SYSTEM_OFF ends the run too)
            if outcome.reason is not StopReason.BUDGET:
                raise RuntimeError(f"the replay stopped early ({outcome.reason.value}: {outcome.detail}): "
                                   "the machine is not deterministic here")

    def reverse_continue(self, max_back: int | None = None) -> StopInfo:
        """Back to the last stop a forward run would have made before the current position: an
        address breakpoint (for its CPU, if it has one), a watchpoint or a firmware-event break
        (``break_on``), whichever is latest, in
        the state that forward stop had (a watchpoint's access not yet made, resuming executes
        the instruction, as after any stop). ``reason`` is then "breakpoint" or "watchpoint" with
        ``cpu`` and ``address`` (and ``access``) filled in.

        How: the interval from the latest checkpoint to now is replayed with the breakpoints and
        watchpoints armed, every stop recorded (position, CPU, reason, address); if there is none,
        the interval before it, and so on; then the machine goes back to that interval's start
        and replays to its last stop. A stop costs a restore and at most one interval's replay
        (:data:`CHECKPOINT_SECONDS` of running) per interval scanned, so going back over a long
        stretch without a stop replays all of it; ``max_back`` bounds that to that many
        instructions: with no stop in them the session lands that far back with reason "budget".
        With no stop at all it lands at the guest as loaded (position 0) with reason
        "history-start" (gdb's "No more reverse-execution history"). A stop at the current
        position itself is not before it: from a breakpoint stop, the one before is found. As for
        ``step_back``, an SDEI event the host raised in the replayed stretch is forgotten.
        Firmware-event breaks (``break_on``) count too: such a stop lands right after the
        instruction that recorded the fact, as the forward run stopped (reason "break", ``fact``
        set)."""
        limit = None if max_back is None else _count(max_back, "max_back")
        with self._exclusive():
            previous = self._regs
            start = self.retired
            floor = 0 if limit is None else max(0, start - limit)
            machine = self.machine
            machine.cancel_break()
            end = start
            found: tuple[MachineSnapshot, int, _PastStop] | None = None
            for checkpoint in [c for c in reversed(self._checkpoints.items) if c.retired < start]:
                if end <= floor:
                    break
                stops = [stop for stop in self._past_stops(checkpoint, end) if stop.retired >= floor]
                if stops:
                    found = (checkpoint, end, stops[-1])
                    break
                end = checkpoint.retired
            if found is not None:
                self._land_on(*found)
                info = self._past_info(found[2], start)
            else:
                with self._disarmed():
                    self._replay_to(floor)
                if floor:
                    info = StopInfo(StopReason.BUDGET.value, f"no breakpoint or watchpoint in the {limit} "
                                    "instructions before", self.retired, machine.last_cpu,
                                    executed=self.retired - start, vtime=machine.now())
                else:
                    info = StopInfo("history-start", "no breakpoint or watchpoint before: the guest as loaded",
                                    0, executed=-start)
        return self._stopped(info, previous)

    def _past_info(self, stop: _PastStop, start: int) -> StopInfo:
        """The StopInfo of the forward stop ``reverse_continue`` landed on."""
        machine = self.machine
        if stop.fact is not None:
            fact = self.trace[stop.fact]
            return StopInfo(stop.reason, _describe(fact), self.retired, machine.last_cpu, fact,
                            executed=self.retired - start, vtime=machine.now())
        if stop.reason == StopReason.WATCHPOINT.value:
            assert machine.watch_stop is not None
            detail = (f"watchpoint: {stop.access} at 0x{stop.address:x} by pc 0x{machine.watch_stop.pc:x} "
                      f"on CPU {stop.cpu}")
        else:
            where = self.symbolize(stop.address)
            detail = f"breakpoint at 0x{stop.address:x}{f' <{where}>' if where else ''} on CPU {stop.cpu}"
        return self._with_address(StopInfo(stop.reason, detail, self.retired, stop.cpu,
                                           executed=self.retired - start, vtime=machine.now()))

    def _past_stops(self, checkpoint: MachineSnapshot, end: int) -> list[_PastStop]:
        """Every stop for a breakpoint, a watchpoint or a firmware-event break that a forward run
        from ``checkpoint`` makes before ``end`` instructions (it resumes after each, as ``run`` does)."""
        self._rewind(checkpoint)
        return [stop for stop in self._replay_stops(end) if stop is not None and stop.retired < end]

    def _replay_stops(self, end: int) -> Generator[_PastStop | None, None, None]:
        """Run the machine to ``end`` instructions as a forward run with the breakpoints,
        watchpoints and event breaks armed, yielding each stop it makes (None for a breakpoint
        of another CPU, which a forward run passes), numbered in order."""
        machine = self.machine
        with self._past_events() as events:
            ordinal = 0
            while machine.retired < end:
                self._apply_due()
                outcome = machine.run(self._until_action(end - machine.retired), debugger=True)
                self._apply_due()
                reason = outcome.reason
                if reason is StopReason.PAUSED or (reason is StopReason.BUDGET and machine.retired < end):
                    continue  # a stale pause request, or a host action's point: on where the history went
                if reason not in (StopReason.BREAKPOINT, StopReason.WATCHPOINT, StopReason.BREAK):
                    return  # at ``end`` (or the guest's end, which the history reached there)
                yield self._past_stop(reason, ordinal, events)
                ordinal += 1

    @contextmanager
    def _past_events(self) -> Iterator[list[int | None]]:
        """While a replay runs for ``reverse_continue``: a stop right after each fact a ``break_on``
        matches, as ``_on_fact`` makes in a forward run (one stop for the first such fact; the
        list holds its seq until the stop is taken)."""
        trace = self.machine.trace
        points = list(self._event_breaks)
        pending: list[int | None] = [None]
        if not points:
            yield pending
            return
        kinds = frozenset(FACT_KINDS[code] for point in points for kind in point.kinds for code in kind.FAMILY)
        machine = self.machine

        def watch(_kind: type[Fact]) -> None:
            if pending[0] is not None:
                return
            fact = trace[len(trace) - 1]
            if any(point.matches(fact) for point in points):
                pending[0] = fact.seq
                machine.request_break(StopReason.BREAK, _describe(fact))

        try:
            with trace.subscribe(kinds, watch):
                yield pending
        finally:
            machine.cancel_break()

    def _past_stop(self, reason: StopReason, ordinal: int, events: list[int | None]) -> _PastStop | None:
        """The machine's stop just made, as ``run`` would report it (None: a breakpoint of another CPU)."""
        machine = self.machine
        if reason is StopReason.BREAK:
            seq, events[0] = events[0], None
            cpu = machine.last_cpu
            return None if seq is None else _PastStop(machine.retired, -1 if cpu is None else cpu, reason.value,
                                                      0, None, ordinal, seq)
        if reason is StopReason.WATCHPOINT:
            watch = machine.watch_stop
            assert watch is not None
            return _PastStop(machine.retired, watch.cpu, reason.value, watch.address,
                             "write" if watch.write else "read", ordinal)
        cpu = machine.last_cpu
        assert cpu is not None
        pc = machine.vcpus[cpu].backend.pc
        point = self._breakpoints.get(pc)
        if point is None or (point.cpu is not None and point.cpu != cpu):
            return None
        return _PastStop(machine.retired, cpu, reason.value, pc, None, ordinal)

    def _land_on(self, checkpoint: MachineSnapshot, end: int, stop: _PastStop) -> None:
        """Replay from ``checkpoint`` to ``stop`` (the ``ordinal``-th stop on the way to ``end``)."""
        self._rewind(checkpoint)
        stops = self._replay_stops(end)
        try:
            for made in stops:
                if made is not None and made.ordinal == stop.ordinal:
                    if made == stop:
                        return
                    break
        finally:
            stops.close()  # its event watch comes off the trace now, not when it is collected
        raise RuntimeError(f"the replay did not stop where it did before ({stop}): the machine is not "
                           "deterministic here")

    def step_back_to(self, seq: int) -> StopInfo:
        """Return to just after the instruction that recorded fact ``seq`` (a firmware call, say),
        as a break on that fact would have stopped: back to the last checkpoint before that fact,
        as for :meth:`step_back`, and on until the trace holds that fact again."""
        seq = _count(seq, "seq")
        if seq >= len(self.trace):
            raise ValueError(f"no fact #{seq}: the trace holds {len(self.trace)}")
        with self._exclusive():
            previous = self._regs
            start = self.retired
            self._rewind(self._checkpoints.before_fact(seq))
            machine = self.machine
            trace = machine.trace

            def reached(_kind: type[Fact]) -> None:
                if len(trace) > seq:
                    machine.request_break(StopReason.BREAK, "replayed")

            try:
                with self._disarmed(), trace.subscribe(None, reached):
                    while len(trace) <= seq:
                        outcome = self._advance(CHUNK)
                        if outcome.reason not in (StopReason.BUDGET, StopReason.BREAK):
                            raise RuntimeError(f"the replay stopped early ({outcome.reason.value}: "
                                               f"{outcome.detail}): the machine is not deterministic here")
            finally:
                machine.cancel_break()
            fact = trace[seq]
        info = StopInfo("step-back", f"back to {_describe(fact)}", self.retired, fact.cpu, fact,
                        executed=self.retired - start, vtime=machine.now())
        return self._stopped(info, previous)

    # --- checkpoints -------------------------------------------------------------------
    def _advance(self, instructions: int, cpu_goal: tuple[int, int] | None = None) -> RunOutcome:
        """Run the machine (a debugger run) and take a checkpoint once enough running has gone by
        since the last one. Only at a budget stop: any run reaches the same state at that count."""
        began = time.perf_counter()
        self._apply_due()
        outcome = self.machine.run(self._until_action(instructions), debugger=True, cpu_goal=cpu_goal)
        self._apply_due()
        self._run_time += time.perf_counter() - began
        if (outcome.reason is StopReason.BUDGET and self._run_time >= CHECKPOINT_SECONDS
                and self.retired > self._checkpoints.items[-1].retired):
            self._checkpoints.add(self.machine.snapshot(), self._applied)
            self._run_time = 0.0
        return outcome

    @contextmanager
    def _disarmed(self) -> Iterator[None]:
        """Neither breakpoints nor watchpoints while a replay runs to a count: it goes where the
        history went, and the caller's stop is where it lands."""
        machine = self.machine
        machine.set_breakpoints(frozenset())
        machine.set_watchpoints(())
        try:
            yield
        finally:
            machine.set_breakpoints(frozenset(self._breakpoints))
            machine.set_watchpoints(self._engine_watches())

    def _with_address(self, info: StopInfo) -> StopInfo:
        """A watchpoint stop with its CPU, data address and access (``Machine.watch_stop``), a
        breakpoint stop with its address."""
        if info.reason == StopReason.WATCHPOINT.value:
            stop = self.machine.watch_stop
            assert stop is not None
            return replace(info, cpu=stop.cpu, address=stop.address, access="write" if stop.write else "read")
        if info.reason == StopReason.BREAKPOINT.value and info.cpu is not None:
            return replace(info, address=self.machine.vcpus[info.cpu].backend.pc)
        return info

    def _rewind(self, checkpoint: MachineSnapshot) -> None:
        """Put the machine back to ``checkpoint``, with the host's actions its state includes; those
        recorded after it are done again as a replay reaches them (``_apply_due``)."""
        self.machine.restore(checkpoint)
        self._applied = self._checkpoints.applied_of(checkpoint)
        self._apply_due()
        self._run_time = 0.0

    @property
    def checkpoints(self) -> list[tuple[int, int]]:
        """The checkpoints kept: (instructions retired, trace length) of each, oldest first."""
        return [(c.retired, c.trace.length) for c in self._checkpoints.items]

    @property
    def checkpoint_bytes(self) -> int:
        """Bytes of guest RAM the checkpoints hold between them (at most :data:`CHECKPOINT_MEMORY`)."""
        return self._checkpoints.held

    # --- breakpoints -------------------------------------------------------------------
    def add_breakpoint(self, where: int | str, cpu: int | None = None) -> Breakpoint:
        """Stop before the instruction at ``where``: an address, ``"0x..."``, or a symbol (``"name+0x10"``).

        An address no instruction can be at (negative, 64 bits or more, not a multiple of 4) is
        refused with ValueError, and nothing changes."""
        address = self._code_address(where)
        point = Breakpoint(address, self._cpu_or_any(cpu), self.symbolize(address))
        self._set_breakpoints({**self._breakpoints, address: point})
        return point

    def remove_breakpoint(self, where: int | str | Breakpoint) -> None:
        address = where.address if isinstance(where, Breakpoint) else self._code_address(where)
        if address in self._breakpoints:
            self._set_breakpoints({a: p for a, p in self._breakpoints.items() if a != address})

    def _set_breakpoints(self, points: dict[int, Breakpoint]) -> None:
        """Give the engine the new set first: the session's list changes only if that worked."""
        self.machine.set_breakpoints(frozenset(points))
        self._breakpoints = points

    def _cpu_index(self, cpu: object) -> int:
        """``cpu`` as the index of one of this machine's CPUs, else TypeError or ValueError (a
        negative index used to pick a CPU from the end of the list)."""
        if isinstance(cpu, bool) or not isinstance(cpu, numbers.Integral):
            raise TypeError(f"a CPU is given by its index, a whole number, not {type(cpu).__name__} {cpu!r}")
        index = int(cpu)
        if not 0 <= index < self.cpus:
            raise ValueError(f"there is no CPU {cpu}: this machine has CPUs 0 to {self.cpus - 1}")
        return index

    def _cpu_or_any(self, cpu: object) -> int | None:
        return None if cpu is None else self._cpu_index(cpu)

    def _code_address(self, where: int | str) -> int:
        """``where`` as an address an A64 instruction can be at, else ValueError."""
        if isinstance(where, bool) or not isinstance(where, (numbers.Integral, str)):
            raise TypeError(f"an address is an int or a string, not {type(where).__name__}")
        address = self.address_of(where)
        if not 0 <= address < ADDRESS_LIMIT:
            raise ValueError(f"{where!r} is not an address: addresses run from 0 to 0x{ADDRESS_LIMIT - 1:x}")
        if address % 4:
            # A64 instructions are 4 bytes, word-aligned: nothing executes at this address.
            raise ValueError(f"0x{address:x} is not 4-byte aligned: no A64 instruction starts there")
        return address

    @property
    def breakpoints(self) -> list[Breakpoint]:
        return sorted(self._breakpoints.values(), key=lambda b: b.address)

    def break_on(self, name: str, cpu: int | None = None) -> EventBreak:
        """Stop right after a firmware event: an SMCCC function (``"SDEI_EVENT_COMPLETE"``,
        ``"CPU_ON"``: its SMC32 and SMC64 forms, called from ``cpu`` if given) or a fact kind
        (``"SdeiDispatch"``, ``"PowerTransition"``: facts about ``cpu``)."""
        point = self.event_matcher(name, cpu)
        if point not in self._event_breaks:
            self._event_breaks.append(point)
        return point

    def event_matcher(self, name: str, cpu: int | None = None) -> EventBreak:
        """The matcher ``break_on`` would install, without installing it (for ``run_until(matcher.matches)``)."""
        if not isinstance(name, str):
            raise TypeError(f"an event is named by a string, not {type(name).__name__}")
        cpu = self._cpu_or_any(cpu)
        kinds = {kind.__name__: kind for kind in FACT_KINDS}
        if name in kinds:
            return EventBreak(name, cpu, _kind=kinds[name])
        known = self.function_names()
        bare = name.removeprefix("PSCI_") if name.removeprefix("PSCI_") in known else name
        calls = frozenset(n for n in (bare, bare + "64") if n in known)
        if not calls:
            raise ValueError(f"{name!r} is neither an SMCCC function this lab knows nor a fact kind "
                             f"({', '.join(sorted(kinds))})")
        return EventBreak(name, cpu, _calls=calls)

    def remove_event_break(self, point: EventBreak | str, cpu: int | None = None) -> None:
        if isinstance(point, str):
            point = EventBreak(point, cpu)
        self._event_breaks = [p for p in self._event_breaks if p != point]

    @property
    def event_breaks(self) -> list[EventBreak]:
        return list(self._event_breaks)

    def clear_breakpoints(self) -> None:
        """Remove every address breakpoint, firmware-event break and watchpoint."""
        self._set_breakpoints({})
        self._event_breaks.clear()
        self._set_watchpoints({})

    # --- watchpoints -------------------------------------------------------------------
    def add_watchpoint(self, address: int | str, size: int, kind: str = "write",
                       cpu: int | None = None) -> Watchpoint:
        """Stop before any access of ``kind`` ("write", "read" or "access": both) to the ``size``
        bytes at virtual ``address`` (or a symbol, ``"name+0x10"``), as the accessing CPU sees it
        (through its MMU, at EL1 and EL0 alike), by ``cpu`` or any CPU: the run stops with reason
        "watchpoint", PC at the instruction, which has not executed (memory unchanged),
        ``address``/``access`` the access's; resuming executes it (gdb treats AArch64
        watchpoints as non-steppable: ARM ARM D2, "Watchpoint exceptions", are taken before the access).

        The debugger's watchpoints are the engine's memory hooks on the physical RAM behind the
        bytes (translated again at each slice while the MMU is on, up to 4 MiB of a range), so
        they cost nothing while none is set and a little on each access to a watched page. They
        come before the guest's own (DBGWCR): on the same bytes the run stops first, and the
        guest's exception is taken when it resumes. Adding the same (address, size, kind) again
        replaces it (for another ``cpu``)."""
        if isinstance(address, bool) or not isinstance(address, (numbers.Integral, str)):
            raise TypeError(f"an address is an int or a string, not {type(address).__name__}")
        address = self.address_of(address)
        size = _count(size, "size", minimum=1)
        if address < 0 or address + size > ADDRESS_LIMIT:
            raise ValueError(f"0x{address:x}+{size} is not within the 64-bit address space")
        if kind not in WATCH_KINDS:
            raise ValueError(f"a watchpoint's kind is one of {', '.join(WATCH_KINDS)}, not {kind!r}")
        point = Watchpoint(int(address), size, kind, self._cpu_or_any(cpu))
        self._set_watchpoints({**self._watchpoints, (point.address, size, kind): point})
        return point

    def remove_watchpoint(self, address: int | str | Watchpoint, size: int | None = None,
                          kind: str = "write") -> None:
        """Remove the watchpoint on (``address``, ``size``, ``kind``), or the one given; no error if there is none."""
        key = ((address.address, address.size, address.kind) if isinstance(address, Watchpoint)
               else (self.address_of(address), size, kind))
        if key in self._watchpoints:
            self._set_watchpoints({k: p for k, p in self._watchpoints.items() if k != key})

    @property
    def watchpoints(self) -> list[Watchpoint]:
        return sorted(self._watchpoints.values(), key=lambda w: (w.address, w.size, w.kind))

    def _set_watchpoints(self, points: dict[tuple[int, int, str], Watchpoint]) -> None:
        with self._exclusive():  # the engines' hooks change: not while a run goes on in another thread
            self.machine.set_watchpoints(tuple(p.engine() for p in points.values()))
            self._watchpoints = points

    def _engine_watches(self) -> tuple[DebuggerWatch, ...]:
        return tuple(p.engine() for p in self._watchpoints.values())

    def function_names(self) -> frozenset[str]:
        """Every SMCCC function name the firmware layers know (arch, PSCI, SDEI), offered by this
        profile or not: a profile without SDEI still sees (and can break on) the guest's SDEI
        calls, which it answers NOT_SUPPORTED."""
        platform = self.platform
        names = {f.name for service in (platform.arch, platform.psci) for f in service.functions()}
        # SDEI's names come from its table (DEN0054 function IDs), not from a service object,
        # which a profile without SDEI does not build.
        return frozenset(names | {name for name, _ in SDEI_FUNCTIONS})

    # --- views -------------------------------------------------------------------------
    def cpu_view(self, cpu: int) -> CpuView:
        """Registers of ``cpu`` at the last stop, with those that changed since the stop before."""
        vcpu = self.machine.vcpus[cpu]
        return CpuView(cpu, vcpu.state.value, dict(self._regs[cpu]), self._changed[cpu],
                       self.machine.cpu_retired[cpu])

    def cpu_views(self) -> list[CpuView]:
        return [self.cpu_view(cpu) for cpu in range(len(self.machine.vcpus))]

    def registers(self, cpu: int) -> dict[str, int]:
        return dict(self._regs[cpu])

    def pc(self, cpu: int) -> int:
        return self.machine.vcpus[cpu].backend.pc

    def focus_cpu(self) -> int:
        """The CPU a view should show first: the one that ran last, else the first one powered."""
        last = self.last_stop.cpu
        if last is not None:
            return last
        return next((v.index for v in self.machine.vcpus if v.state is not VcpuState.OFF), 0)

    def disassembly(self, cpu: int, before: int = 6, after: int = 10) -> list[DisasmLine]:
        """Instructions around ``cpu``'s PC (``before`` above it, ``after`` from it on).

        Words the guest's ELF file says are data (``GuestImage.is_data``: a literal pool, the
        padding after a function's ``ret``) are shown as objdump shows them, ``.word 0x...``: decoded,
        they read as anything, SVE loads included. The word at PC is always decoded (the CPU
        executes it, whatever it is). A Linux Image has no such map: every word is decoded."""
        pc = self.pc(cpu)
        start = max(self.machine.ram_region.base, pc - 4 * before)
        code = self.machine.read_ram(start, 4 * (before + after)) or self.machine.read_ram(pc, 4)
        if code is None:
            return [DisasmLine(pc, "(PC is not in RAM)", "", True, pc in self._breakpoints)]
        if len(code) < 4 * (before + after):
            start = pc
        image = self.machine.image
        symbols = image.symbols if image else {}

        def text(address: int, decoded: str) -> str:
            if address == pc or image is None or not image.is_data(address):
                return decoded
            word = code[address - start:address - start + 4]
            return f".word 0x{int.from_bytes(word, 'little'):08x}"

        return [DisasmLine(address, text(address, decoded), symbols.get(address, ""), address == pc,
                           address in self._breakpoints)
                for address, decoded in disassemble(code, start)]

    def memory(self, address: int | str, size: int = 256) -> bytes | None:
        """Guest RAM at ``address`` (an address or a symbol), or None where there is no RAM."""
        return self.machine.read_ram(self.address_of(address), size)

    @property
    def uart(self) -> bytes:
        """Everything the guest wrote to the PL011 UART since it was loaded."""
        return bytes(self.machine.uart_output)

    def uart_text(self) -> str:
        return self.uart.decode("utf-8", errors="replace")

    def address_of(self, where: int | str) -> int:
        """An address from an int, ``"0x..."``, ``"name"`` or ``"name+0x10"`` (guest symbols)."""
        if isinstance(where, int):
            return where
        text = where.strip()
        name, _, offset = text.partition("+")
        try:
            return int(text, 0)
        except ValueError:
            pass
        symbols = {n: a for a, n in (self.machine.image.symbols.items() if self.machine.image else ())}
        if name.strip() not in symbols:
            raise ValueError(f"no symbol {name.strip()!r} in {self.guest_file.name}")
        return symbols[name.strip()] + (int(offset, 0) if offset else 0)

    def symbolize(self, address: int) -> str:
        return self.machine.image.symbolize(address) if self.machine.image else ""

    # --- what an outside debugger reads and writes (sdeilab.lab.gdb_server) ---------
    def serve_gdb(self, port: int = 0) -> GdbServer:
        """Serve this session to gdb on 127.0.0.1:``port`` (0: a free port, the result's ``port``)
        from a background thread, until the result's ``close()``: ``target remote :PORT`` in
        gdb-multiarch (docs/debugging.md). While gdb runs the guest, the notebook's own control
        methods get SessionBusy."""
        from sdeilab.lab.gdb_server import GdbServer

        return GdbServer(self, port).start()

    def cpu_states(self) -> list[str]:
        """Each CPU's power state ("on", "off", "on-pending", ...): gdb's threads."""
        return [v.state.value for v in self.machine.vcpus]

    def read_memory(self, address: int, size: int, cpu: int | None = None, *, physical: bool = False) -> bytes:
        """Up to ``size`` bytes at ``address``: virtual as ``cpu`` (default: the focus CPU) sees it
        now, through its MMU when on, or physical. The bytes before the first one that is not RAM
        or does not translate (empty if the first one does not): what gdb shows of a partial read."""
        return b"".join(chunk for _, chunk in self._spans(address, size, cpu, physical))

    def write_memory(self, address: int, data: bytes, cpu: int | None = None, *, physical: bool = False) -> None:
        """Write ``data`` at ``address`` (virtual as ``cpu`` sees it, or physical); ValueError, and
        nothing written, where a byte is not RAM or does not translate. Part of the guest's history
        from here on, as ``raise_event`` is (the module docstring: a replay writes it again)."""
        pages = self._spans(address, len(data), cpu, physical)
        if sum(len(span) for _, span in pages) != len(data):
            raise ValueError(f"0x{address:x}+{len(data)} is not all RAM as CPU {self._focus(cpu)} sees it")
        machine = self.machine
        writes = []
        done = 0
        for physical_address, span in pages:
            writes.append((physical_address, bytes(data[done:done + len(span)])))
            done += len(span)

        def write() -> None:
            for where, part in writes:
                machine.write_ram(where, part)
        with self._exclusive():
            self._act(f"{len(data)} bytes written at 0x{address:x}", write)
        self._stopped(self.last_stop, self._regs)

    def write_register(self, cpu: int, name: str, value: int) -> None:
        """Set one of ``REGISTERS`` of ``cpu`` (as a debugger does); part of the history from here on,
        as ``raise_event`` is (the module docstring)."""
        index = self._cpu_index(cpu)
        if name not in REGISTERS:
            raise ValueError(f"no register {name!r}: the views know {', '.join(REGISTERS)}")
        backend = self.machine.vcpus[index].backend

        def write() -> None:
            if name.startswith("x"):
                backend.set_x(int(name[1:]), value)
            elif name == "PC":
                backend.pc = value
            else:
                backend.write(name, value)
        with self._exclusive():
            self._act(f"{name} of CPU {index} set to 0x{value:x}", write)
        self._stopped(self.last_stop, self._regs)

    def send_input(self, data: bytes) -> None:
        """Type ``data`` into the guest's PL011 (its receive FIFO fills as the guest reads, as a
        serial line with flow control would). Part of the guest's history from here on, as
        ``raise_event`` is (the module docstring: a replay types it again)."""
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"input is bytes, not {type(data).__name__}")
        uart, typed = self.machine.uart, bytes(data)
        with self._exclusive():
            self._act(f"{len(typed)} bytes typed into the UART", lambda: uart.receive(typed))

    def vector_registers(self, cpu: int) -> tuple[list[int], int, int]:
        """``cpu``'s V0-V31 (128-bit values), FPSR and FPCR."""
        state = self.machine.vcpus[self._cpu_index(cpu)].backend.vector_state()
        values = [int.from_bytes(state[16 * n:16 * n + 16], "little") for n in range(34)]
        return values[:32], values[33], values[32]

    def _focus(self, cpu: int | None) -> int:
        return self.focus_cpu() if cpu is None else self._cpu_index(cpu)

    def _spans(self, address: int, size: int, cpu: int | None, physical: bool) -> list[tuple[int, bytes]]:
        """(physical address, bytes) of each page of the range, in order, up to the first page that
        is not RAM or does not translate (a virtual range need not be physically contiguous)."""
        if size < 0 or not 0 <= address < ADDRESS_LIMIT:
            raise ValueError(f"0x{address:x}+{size}: not a range of 64-bit addresses")
        backend = self.machine.vcpus[self._focus(cpu)].backend
        spans: list[tuple[int, bytes]] = []
        while size > 0 and address < ADDRESS_LIMIT:
            room = min(size, _PAGE - address % _PAGE, ADDRESS_LIMIT - address)
            where = address if physical else backend.translate(address, "read")
            chunk = None if where is None else self.machine.read_ram(where, room)
            if where is None or chunk is None:
                break
            spans.append((where, chunk))
            address += room
            size -= room
        return spans

    def _act(self, what: str, apply: Callable[[], None]) -> None:
        """Do something to the guest from the host, here, and make it part of the history: a replay
        through this point does it again (``_apply_due``), so stepping back and forward, or back
        over it and on, shows what happened. The history takes another course here: what it held
        past this point (actions not yet replayed, checkpoints) belongs to the old one."""
        apply()  # first: an action that raises changes nothing
        del self._actions[self._applied:]
        self._checkpoints.drop_after(self.retired, applied=self._applied)
        self._actions.append(_HostAction(self.retired, what, apply))
        self._applied += 1

    def _apply_due(self) -> None:
        """Do again the host's actions the replay has reached (recorded at or before this count)."""
        actions = self._actions
        while self._applied < len(actions) and actions[self._applied].retired <= self.retired:
            actions[self._applied].apply()
            self._applied += 1

    def _until_action(self, instructions: int) -> int:
        """``instructions``, or fewer so that a run stops where the next host action is to be done."""
        if self._applied < len(self._actions):
            return max(1, min(instructions, self._actions[self._applied].retired - self.retired))
        return instructions

    @property
    def host_actions(self) -> list[tuple[int, str]]:
        """What the host did to the guest and where (instructions retired), in this history."""
        return [(a.retired, a.what) for a in self._actions]

    # --- the run loop ------------------------------------------------------------------
    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        if not self._lock.acquire(blocking=False):
            raise SessionBusy("the machine is running: pause it first")
        try:
            yield
        finally:
            self._lock.release()

    def _go(self, limit: int | None, conditions: list[Callable[[Fact], bool]], *,
            kinds: frozenset[type[Fact]] | None = frozenset(),
            every: int | Callable[[], int] | None = None, state_check: Callable[[Session], bool] | None = None,
            progress: Callable[[int, int | None], None] | None = None,
            cpu_goal: tuple[int, int] | None = None) -> StopInfo:
        with self._exclusive():
            previous = self._regs
            machine = self.machine
            trace = machine.trace
            start = machine.retired
            target = None if limit is None else start + limit
            # CPUs stopped at a breakpoint step over it on resume (gdb's all-stop resume); the engine
            # knows that for a CPU that just hit one, the session for CPUs that stepped onto one.
            sitting = {v.index: (v.backend.pc, machine.cpu_retired[v.index]) for v in machine.vcpus
                       if v.backend.pc in self._breakpoints}
            self._pause.clear()
            machine.cancel_break()
            self._conditions = [p.matches for p in self._event_breaks] + conditions
            if kinds is not None:  # conditions that say which kinds they read; else every fact is read
                kinds = kinds.union(*(p.kinds for p in self._event_breaks))
            # Facts arrive by exact kind; a condition on a kind reads its sub-kinds too.
            self._watch_kinds = None if kinds is None else frozenset(
                FACT_KINDS[code] for kind in kinds for code in kind.FAMILY)
            self._stop_fact = None
            self._raised = None
            subscription = trace.subscribe(self._watch_kinds, self._on_fact) if self._conditions else None
            try:
                with self._ctrl_c_pauses():
                    outcome = self._loop(start, target, sitting, every, state_check, progress, cpu_goal)
            finally:
                if subscription is not None:
                    subscription.cancel()
                self._conditions = []
        info = StopInfo(outcome.reason.value, outcome.detail, machine.retired, machine.last_cpu,
                        self._stop_fact if outcome.reason is StopReason.BREAK else None, machine.retired - start,
                        machine.now())
        info = self._with_address(info)
        self._stopped(info, previous)
        raised, self._raised = self._raised, None
        if raised is not None:
            # The machine stopped as for any break, so the caller gets the exception with the
            # guest intact: ``last_stop`` says where, and running on continues the same history.
            raised.add_note(f"sdeilab: the run stopped cleanly ({info.detail}); session.last_stop tells where")
            raise raised
        return info

    def _loop(self, start: int, target: int | None, sitting: dict[int, tuple[int, int]],
              every: int | Callable[[], int] | None,
              state_check: Callable[[Session], bool] | None,
              progress: Callable[[int, int | None], None] | None,
              cpu_goal: tuple[int, int] | None = None) -> RunOutcome:
        machine = self.machine
        total = None if target is None else target - start
        while True:
            chunk = (every() if callable(every) else every) or CHUNK
            if target is not None:
                chunk = min(chunk, target - machine.retired)
                if chunk <= 0:
                    return RunOutcome(StopReason.BUDGET, f"{total} instructions", machine.retired)
            outcome = self._advance(chunk, cpu_goal)
            if self._raised is not None:  # a condition raised: the machine stopped right after its fact
                return outcome
            # Between chunks the machine is at a clean stop: a callback that raises ends the run
            # here, and _go raises its exception once the session has taken the stop.
            if progress is not None:
                self._call_safely(progress, machine.retired - start, total)
                if self._raised is not None:
                    return RunOutcome(StopReason.BREAK, f"progress raised {type(self._raised).__name__}",
                                      machine.retired)
            reason = outcome.reason
            if reason is StopReason.BUDGET:
                if target is not None and machine.retired >= target:
                    return RunOutcome(StopReason.BUDGET, f"{machine.retired - start} instructions", machine.retired)
                if state_check is not None:
                    holds = self._call_safely(state_check, self)
                    if self._raised is not None:
                        return RunOutcome(StopReason.BREAK, f"the condition raised {type(self._raised).__name__}",
                                          machine.retired)
                    if holds:
                        return RunOutcome(StopReason.BREAK, "the condition holds", machine.retired)
                if self._pause.is_set():
                    return RunOutcome(StopReason.PAUSED, "paused by request", machine.retired)
                continue
            if reason is StopReason.BREAKPOINT:
                cpu = machine.last_cpu
                assert cpu is not None
                pc = machine.vcpus[cpu].backend.pc
                if sitting.pop(cpu, None) == (pc, machine.cpu_retired[cpu]):
                    continue  # it was already there when the run began: step over it
                point = self._breakpoints.get(pc)
                if point is not None and point.cpu is not None and point.cpu != cpu:
                    continue  # a breakpoint for another CPU
                where = self.symbolize(pc)
                return RunOutcome(reason, f"breakpoint at 0x{pc:x}{f' <{where}>' if where else ''} on CPU {cpu}",
                                  outcome.instructions)
            if reason is StopReason.PAUSED and not self._pause.is_set():
                continue  # a stale pause request from before this command
            return outcome

    def _call_safely(self, function: Callable[..., object], *args: object) -> object:
        """``function(*args)``; if it raises, the exception is kept for ``_go`` and the result is None."""
        try:
            return function(*args)
        except BaseException as error:
            self._raised = error
            return None

    def _on_fact(self, kind: type[Fact]) -> None:
        """Ask the conditions about the fact just appended. This runs inside the machine, often in
        the middle of a firmware call (the SmcccCall fact is recorded before the handler runs and
        the results are written), so nothing may escape from here: an exception would unwind
        through the engine's hook and leave the call half done (x0 still the function ID, the
        instruction not counted). A condition that raises is treated as one that accepted the
        fact: the machine stops after the instruction, and _go raises the exception then."""
        if self._stop_fact is not None or self._raised is not None:  # the kinds: the subscription's
            return
        trace = self.machine.trace
        fact = trace[len(trace) - 1]
        for condition in self._conditions:
            try:
                accepted = condition(fact)
            except BaseException as error:
                self._raised = error
                self._stop_fact = fact
                self.machine.request_break(StopReason.BREAK, f"the condition raised {type(error).__name__} on "
                                           + _describe(fact))
                return
            if accepted:
                self._stop_fact = fact
                self.machine.request_break(StopReason.BREAK, _describe(fact))
                return

    @contextmanager
    def _ctrl_c_pauses(self) -> Iterator[None]:
        """In the main thread, Ctrl-C (a Jupyter kernel interrupt) pauses the run instead of
        raising KeyboardInterrupt in the middle of a hook, where a firmware call could be half done."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, lambda signum, frame: self.pause())
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _read_registers(self, cpu: int) -> dict[str, int]:
        backend = self.machine.vcpus[cpu].backend
        regs = dict(zip(GENERAL, backend.xs(31), strict=True))
        regs["PC"] = backend.pc
        for name in ("SP", "PSTATE", *SYSREGS):
            regs[name] = backend.read(name)
        return {name: regs[name] for name in REGISTERS}

    def _stopped(self, info: StopInfo, previous: list[dict[str, int]] | None) -> StopInfo:
        self._regs = [self._read_registers(cpu) for cpu in range(len(self.machine.vcpus))]
        if previous is None or len(previous) != len(self._regs):
            self._changed = [frozenset() for _ in self._regs]
        else:
            self._changed = [frozenset(n for n in REGISTERS if now[n] != before[n])
                             for now, before in zip(self._regs, previous, strict=True)]
        self.last_stop = info
        return info


def _count(value: object, name: str, *, minimum: int = 0) -> int:
    """``value`` as a whole number of at least ``minimum``: TypeError for a float, a bool or a
    string (1.5 instructions used to reach the engine as a ctypes error), ValueError below it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a whole number, not {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return int(value)


def _limit(max_instructions: object) -> int | None:
    """An instruction budget: None (no limit) or a count of at least 0 (-5 used to be accepted)."""
    return None if max_instructions is None else _count(max_instructions, "max_instructions")


def _cpu_count(cpus: object) -> int:
    count = _count(cpus, "cpus", minimum=1)
    if count > MAX_CPUS:
        raise ValueError(f"cpus must be at most {MAX_CPUS} (the GIC redistributors the memory map has room for)")
    return count


def _profile(profile: str | Profile) -> Profile:
    if isinstance(profile, Profile):
        return profile
    if not isinstance(profile, str):
        raise TypeError(f"a profile is a name or a Profile, not {type(profile).__name__}")
    return profile_named(profile)


def _quirks(quirks: Quirks | Iterable[str] | None) -> Quirks:
    if quirks is None:
        return Quirks()
    if isinstance(quirks, Quirks):
        return quirks
    return Quirks.from_names(quirks)


def _describe(fact: Fact) -> str:
    name = getattr(fact, "name", None)
    what = name if isinstance(name, str) else type(fact).__name__
    return f"{what} on CPU {fact.cpu} at vtime {fact.vtime} (fact #{fact.seq})"
