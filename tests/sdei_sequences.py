"""Random SDEI and PSCI call sequences as guests: the generator behind tests/test_tfa_random.py.

A seed gives a list of guests; each guest is the runner in ``tests/sdei_random/`` (runner.c,
entry.S) plus a generated table (``table.c``) of sequences. A sequence is a program for CPU 0:
random SDEI calls (event numbers valid, invalid and with high bits set; MPIDR encodings with
and without bit 31, U, MT and RES0 bits; flags; both handler entry points and 0; routing modes;
EVENT_GET_INFO, STATUS, CONTEXT, PE_MASK/UNMASK, PRIVATE/SHARED_RESET, EVENT_SIGNAL to itself),
PSCI calls (VERSION, FEATURES, AFFINITY_INFO in both conventions, CPU_ON of itself) and SMCCC
calls, sometimes "run a program of its own on CPU k" (CPU_ON, then wait for its CPU_OFF), and
handler plans: what the n-th dispatch's handler calls and how it completes. Every sequence ends
with PRIVATE_RESET, SHARED_RESET and PE_MASK, so the next one starts from the boot state.

The generator keeps to what the two platforms share (test_tfa.py's notes): event 0 is the only
event of TF-A's qemu platform, so the lab's bindable slots (1000-1003, 2000-2003) and its
platform events (5000, 5001) are never named, BIND names only interrupts that are not PPIs or
SPIs, and FEATURES never asks for BIND_SLOTS (0, or a value whose low 32 bits are 0); TF-A's
qemu platform knows 32 PEs (Aff0 0-15, Aff1 0-1) and QEMU runs 8, so a PE is named by an
affinity of CPU 0-7 or by one neither knows. Handler entry points are the runner's two handlers
or 0: TF-A's qemu platform validates no entry point, so any other address would be jumped to.

Known divergences (docs/sdei.md, "Divergences from TF-A") are kept out of the random sequences
by the ``avoid_*`` switches of :class:`Choices` and shown each by a fixed sequence in
:data:`DIVERGENCES`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

RUNNER_DIR = Path(__file__).resolve().parent / "sdei_random"
RUNNER_SOURCES = (RUNNER_DIR / "entry.S", RUNNER_DIR / "runner.c")
CPUS = 8  # both sides

FIDS: dict[str, int] = {
    "SDEI_VERSION": 0xC400_0020, "SDEI_EVENT_REGISTER": 0xC400_0021, "SDEI_EVENT_ENABLE": 0xC400_0022,
    "SDEI_EVENT_DISABLE": 0xC400_0023, "SDEI_EVENT_CONTEXT": 0xC400_0024, "SDEI_EVENT_COMPLETE": 0xC400_0025,
    "SDEI_EVENT_COMPLETE_AND_RESUME": 0xC400_0026, "SDEI_EVENT_UNREGISTER": 0xC400_0027,
    "SDEI_EVENT_STATUS": 0xC400_0028, "SDEI_EVENT_GET_INFO": 0xC400_0029, "SDEI_EVENT_ROUTING_SET": 0xC400_002A,
    "SDEI_PE_MASK": 0xC400_002B, "SDEI_PE_UNMASK": 0xC400_002C, "SDEI_INTERRUPT_BIND": 0xC400_002D,
    "SDEI_INTERRUPT_RELEASE": 0xC400_002E, "SDEI_EVENT_SIGNAL": 0xC400_002F, "SDEI_FEATURES": 0xC400_0030,
    "SDEI_PRIVATE_RESET": 0xC400_0031, "SDEI_SHARED_RESET": 0xC400_0032,
    "PSCI_VERSION": 0x8400_0000, "PSCI_CPU_ON": 0x8400_0003, "PSCI_CPU_ON64": 0xC400_0003,
    "PSCI_AFFINITY_INFO": 0x8400_0004, "PSCI_AFFINITY_INFO64": 0xC400_0004, "PSCI_MIGRATE_INFO_TYPE": 0x8400_0006,
    "PSCI_FEATURES": 0x8400_000A, "SMCCC_VERSION": 0x8000_0000,
}
PSCI_FEATURE_QUERIES = (0x8400_0000, 0x8400_0001, 0xC400_0001, 0x8400_0002, 0x8400_0003, 0xC400_0003,
                        0x8400_0004, 0xC400_0004, 0x8400_0006, 0x8400_0008, 0x8400_0009, 0x8400_000A,
                        0x8000_0000, 0xC400_0020, 0x8400_00FF)
UNKNOWN_FIDS = (0xC400_0033, 0xC400_003F, 0x8400_0021)  # past SDEI's calls; SDEI's number as SMC32

HANDLERS = {"handler_a": "(uint64_t)(uintptr_t)rnd_handler_a", "handler_b": "(uint64_t)(uintptr_t)rnd_handler_b"}
SECONDARY_ENTRY = "(uint64_t)(uintptr_t)secondary_entry"

# Event numbers neither platform has (the lab's 1000-1003, 2000-2003, 5000, 5001 left out).
INVALID_EVENTS = (1, 7, 42, 999, 1004, 3000, 4999, 5002, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF,
                  0xFFFF_FFFF_FFFF_FFFF, 0x1_FFFF_FFFF)
# Event 0 with bits above 31 set: TF-A reads the event as a C int (the low 32 bits).
HIGH_EVENTS = (0x1_0000_0000, 0xFFFF_FFFF_0000_0000, 0x8000_0000_0000_0000)
# Bits that do not name a PE: bit 31 (RES1), U (30), MT (24), RES0 [29:25] and [63:40].
MPIDR_DECORATIONS = (0, 0, 1 << 31, 1 << 31, (1 << 31) | (1 << 30), (1 << 31) | (1 << 24), 1 << 24, 1 << 30,
                     0x3E00_0000, 1 << 40, 0xFFFF_FF00_0000_0000)
# Affinities no PE has on either side (8-15 and 0x100-0x10f are PEs on TF-A's qemu platform only).
INVALID_AFFINITIES = (0x10, 0xFF, 0x200, 0x1_0000, 0x1_0000_0000, 0xFF_00FF_FFFF)
INVALID_INTIDS = (0, 8, 15, 1020, 1023, 8192, 0xFFFF_FFFF)  # SGIs, special and LPI IDs: never bindable
FLAGS = (0, 0, 0, 1, 1, 1, 2, 3, 0x1_0000_0000, 0x1_0000_0001, 0x8000_0000_0000_0000)
INFO_TYPES = (0, 1, 2, 3, 4, 5, 0xFFFF_FFFF)
INFO_HIGH = (0x1_0000_0000, 0x1_0000_0003)  # info type with bits above 31: TF-A reads an int
FEATURES = (1, 2, 0xFFFF_FFFF, 0x8000_0000)  # never 0 (BIND_SLOTS differs by platform)
CONTEXT_INDICES = (*range(18), 18, 31, 0xFFFF_FFFF)
CONTEXT_HIGH = (0x1_0000_0000, 0x1_0000_0011)  # TF-A reads the index as unsigned int
COMPLETE_STATUSES = (0, 0, 1, 2, 0xFFFF_FFFF_FFFF_FFFF)
AFFINITY_LEVELS = (0, 0, 0, 1, 2, 3)
AFFINITY_LEVEL_HIGH = (0x1_0000_0000,)  # AFFINITY_INFO64's level: TF-A reads an unsigned int

K_CALL, K_RUN_CPU = 0, 1
RES_COMPLETE, RES_RESUME_MARK, RES_RESUME_PC = 0, 1, 2


@dataclass(frozen=True)
class Choices:
    """Switches that keep known divergences out of the random sequences (all on by default)."""

    avoid_high_event_bits: bool = True
    avoid_high_info_bits: bool = True
    avoid_high_context_bits: bool = True
    avoid_high_affinity_level_bits: bool = True
    avoid_context_order: bool = True
    avoid_migrate_info: bool = True
    avoid_resume_nzcv: bool = True


@dataclass
class Op:
    text: str
    args: tuple[int | str, ...] = ()
    kind: int = K_CALL
    cpu: int = 0
    prog: Program | None = None


@dataclass
class Plan:
    ops: list[Op]
    completion: int = RES_COMPLETE
    status: int = 0


@dataclass
class Program:
    title: str
    ops: list[Op]
    plans: list[Plan] = field(default_factory=list)


def _hex(v: int | str) -> str:
    return v if isinstance(v, str) else hex(v)


def call(name: str, *args: int | str, shown: Sequence[str] | None = None) -> Op:
    """An SMCCC call ``name(args)``; ``shown`` replaces the printed argument texts."""
    fid = FIDS[name] if name in FIDS else int(name, 16)
    texts = list(shown) if shown is not None else [_sym(a) for a in args]
    label = name if name in FIDS else f"SMC({name})"
    return Op(f"{label}({', '.join(texts)})", (fid, *args))


def _sym(v: int | str) -> str:
    if isinstance(v, str):
        for name, expr in HANDLERS.items():
            if v == expr:
                return name
        return {SECONDARY_ENTRY: "secondary_entry"}.get(v, v)
    return hex(v)


class Generator:
    def __init__(self, seed: int, choices: Choices = Choices()) -> None:
        self.rng = random.Random(seed)
        self.choices = choices

    # ---- argument pools
    def event(self) -> int:
        r = self.rng.random()
        if r < 0.75:
            return 0
        if r < 0.85 and not self.choices.avoid_high_event_bits:
            return self.rng.choice(HIGH_EVENTS)
        return self.rng.choice(INVALID_EVENTS)

    def mpidr(self, cpu: int, *, others: bool = True) -> int:
        """A PE argument: mostly ``cpu`` itself, in any encoding; sometimes another CPU or none.

        Only the CPU running a program is ever unmasked, so a signal to another CPU is refused.
        """
        r = self.rng.random()
        if r < 0.7 or not others:
            aff = cpu
        elif r < 0.85:
            # Another CPU; never CPU 0 from a secondary: CPU 0 waits for it with event 0 possibly
            # enabled and unmasked, and a signal would interrupt its wait at a point that depends
            # on timing, printing amid the secondary's lines.
            aff = self.rng.randrange(1 if cpu else 0, CPUS)
        else:
            aff = self.rng.choice(INVALID_AFFINITIES)
        return aff | self.rng.choice(MPIDR_DECORATIONS)

    def entry(self) -> str | int:
        return self.rng.choice([HANDLERS["handler_a"]] * 3 + [HANDLERS["handler_b"]] * 2 + [0])

    def cookie(self) -> int:
        return self.rng.choice([0, 0xDEAD_BEEF, self.rng.getrandbits(64), self.rng.getrandbits(16)])

    # ---- calls
    def register(self, cpu: int) -> Op:
        return call("SDEI_EVENT_REGISTER", self.event(), self.entry(), self.cookie(), self.rng.choice(FLAGS),
                    self.mpidr(cpu))

    def top_call(self, cpu: int) -> Op:
        """One random call outside a handler."""
        rng = self.rng
        ev = self.event
        table: list[tuple[int, Callable[[], Op]]] = [
            (7, lambda: self.register(cpu)),
            (6, lambda: call("SDEI_EVENT_ENABLE", ev())),
            (3, lambda: call("SDEI_EVENT_DISABLE", ev())),
            (3, lambda: call("SDEI_EVENT_UNREGISTER", ev())),
            (4, lambda: call("SDEI_EVENT_STATUS", ev())),
            (4, lambda: call("SDEI_EVENT_GET_INFO", ev(), self.info())),
            (8, lambda: call("SDEI_EVENT_SIGNAL", ev(), self.mpidr(cpu))),
            (3, lambda: call("SDEI_PE_MASK")),
            (5, lambda: call("SDEI_PE_UNMASK")),
            (2, lambda: call("SDEI_PRIVATE_RESET")),
            (2, lambda: call("SDEI_SHARED_RESET")),
            (1, lambda: call("SDEI_EVENT_ROUTING_SET", ev(), rng.choice((0, 1, 2)), self.mpidr(cpu))),
            (1, lambda: call("SDEI_EVENT_CONTEXT", rng.choice(CONTEXT_INDICES[:18] if self.choices.avoid_context_order
                                                              else CONTEXT_INDICES))),
            (1, lambda: call("SDEI_EVENT_COMPLETE", rng.choice(COMPLETE_STATUSES))),
            (1, lambda: call("SDEI_EVENT_COMPLETE_AND_RESUME", "(uint64_t)(uintptr_t)rnd_resumed",
                             shown=["rnd_resumed"])),
            (1, lambda: call("SDEI_VERSION")),
            (1, lambda: call("SDEI_FEATURES", rng.choice(FEATURES))),
            (1, lambda: call("SDEI_INTERRUPT_BIND", rng.choice(INVALID_INTIDS))),
            (1, lambda: call("SDEI_INTERRUPT_RELEASE", ev())),
            (1, lambda: call("PSCI_VERSION")),
            (2, lambda: call("PSCI_FEATURES", self.psci_feature())),
            (3, lambda: self.affinity_info(cpu)),
            (1, lambda: call(rng.choice(("PSCI_CPU_ON", "PSCI_CPU_ON64")), self.mpidr(cpu, others=False),
                             SECONDARY_ENTRY, 0)),
            (0 if self.choices.avoid_migrate_info else 1, lambda: call("PSCI_MIGRATE_INFO_TYPE")),
            (1, lambda: call("SMCCC_VERSION")),
            (1, lambda: call(hex(rng.choice(UNKNOWN_FIDS)), 0)),
        ]
        return self._pick(table)()

    def psci_feature(self) -> int:
        while True:
            fid = self.rng.choice(PSCI_FEATURE_QUERIES)
            if not (self.choices.avoid_migrate_info and fid == FIDS["PSCI_MIGRATE_INFO_TYPE"]):
                return fid

    def info(self) -> int:
        if not self.choices.avoid_high_info_bits and self.rng.random() < 0.1:
            return self.rng.choice(INFO_HIGH)
        return self.rng.choice(INFO_TYPES)

    def affinity_info(self, cpu: int) -> Op:
        name = self.rng.choice(("PSCI_AFFINITY_INFO", "PSCI_AFFINITY_INFO64"))
        level = self.rng.choice(AFFINITY_LEVELS)
        if name.endswith("64") and not self.choices.avoid_high_affinity_level_bits and self.rng.random() < 0.2:
            level = self.rng.choice(AFFINITY_LEVEL_HIGH)
        # Only CPU 0 and the CPU running a program are ON; the others are OFF on both sides.
        return call(name, self.mpidr(cpu), level)

    def handler_call(self, cpu: int) -> Op:
        """One random call from inside a handler of event 0 on ``cpu``."""
        table: list[tuple[int, Callable[[], Op]]] = [
            (4, lambda: call("SDEI_EVENT_CONTEXT", self.context_index())),
            (3, lambda: call("SDEI_EVENT_STATUS", self.event())),
            (2, lambda: call("SDEI_EVENT_GET_INFO", self.event(), self.info())),
            (3, lambda: call("SDEI_EVENT_UNREGISTER", self.event())),
            (2, lambda: call("SDEI_EVENT_ENABLE", self.event())),
            (2, lambda: call("SDEI_EVENT_DISABLE", self.event())),
            (2, lambda: call("SDEI_PE_MASK")),
            (2, lambda: call("SDEI_PE_UNMASK")),
            (2, lambda: self.register(cpu)),
            (3, lambda: call("SDEI_EVENT_SIGNAL", 0, self.mpidr(cpu))),
            (1, lambda: call("SDEI_PRIVATE_RESET")),
            (1, lambda: call("SDEI_SHARED_RESET")),
            (1, lambda: call("SDEI_VERSION")),
            (1, lambda: call("PSCI_VERSION")),
            (1, lambda: self.affinity_info(cpu)),
        ]
        return self._pick(table)()

    def context_index(self) -> int:
        if not self.choices.avoid_high_context_bits and self.rng.random() < 0.1:
            return self.rng.choice(CONTEXT_HIGH)
        return self.rng.choice(CONTEXT_INDICES)

    def _pick(self, table: list[tuple[int, Callable[[], Op]]]) -> Callable[[], Op]:
        weights = [w for w, _ in table]
        return self.rng.choices([f for _, f in table], weights=weights)[0]

    # ---- programs
    def setup(self, cpu: int) -> list[Op]:
        """REGISTER, ENABLE, UNMASK of event 0 with valid arguments (in a random order): dispatches."""
        reg = call("SDEI_EVENT_REGISTER", 0, self.rng.choice(list(HANDLERS.values())), self.cookie(),
                   self.rng.choice((0, 1)), self.mpidr(cpu, others=False))
        ops = [reg, call("SDEI_EVENT_ENABLE", 0), call("SDEI_PE_UNMASK")]
        if self.rng.random() < 0.3:
            self.rng.shuffle(ops)
        return ops

    def plans(self, cpu: int) -> list[Plan]:
        plans = []
        for _ in range(self.rng.choice((0, 1, 1, 2, 3))):
            ops = [self.handler_call(cpu) for _ in range(self.rng.randrange(0, 6))]
            completion = self.rng.choice((RES_COMPLETE, RES_COMPLETE, RES_RESUME_MARK, RES_RESUME_PC))
            if completion != RES_COMPLETE and self.choices.avoid_resume_nzcv:
                # No signal of its own, so no dispatch interrupts the resumed context, whose
                # NZCV differs (TF-A: 0; the lab: the interrupted NZCV).
                ops = [op for op in ops if op.args[0] != FIDS["SDEI_EVENT_SIGNAL"]]
            plans.append(Plan(ops, completion, self.rng.choice(COMPLETE_STATUSES)))
        return plans

    def body(self, cpu: int, length: int) -> list[Op]:
        ops = self.setup(cpu) if self.rng.random() < 0.8 else []
        ops += [self.top_call(cpu) for _ in range(length)]
        if self.rng.random() < 0.6:  # a signal at the end, when the setup may have made it deliverable
            ops.append(call("SDEI_EVENT_SIGNAL", 0, self.mpidr(cpu, others=False)))
        return ops

    @staticmethod
    def cleanup() -> list[Op]:
        return [call("SDEI_PRIVATE_RESET"), call("SDEI_SHARED_RESET"), call("SDEI_PE_MASK")]

    def sequence(self, title: str) -> Program:
        ops = self.body(0, self.rng.randrange(4, 14))
        if self.rng.random() < 0.3:
            cpu = self.rng.randrange(1, CPUS)
            sub = Program(f"cpu {cpu}", self.body(cpu, self.rng.randrange(3, 10)) + self.cleanup(), self.plans(cpu))
            at = self.rng.randrange(len(ops) + 1)
            ops.insert(at, Op(f"run on cpu {cpu}: CPU_ON", kind=K_RUN_CPU, cpu=cpu, prog=sub))
        return Program(title, ops + self.cleanup(), self.plans(0))


# ----------------------------------------------------------------------------- C text
def c_source(title: str, programs: Sequence[Program], *, guard_signal: bool = True) -> str:
    """``table.c`` for the runner: the title and the programs. ``guard_signal`` off lets a handler
    DISABLE or PE_MASK after its own signal (a divergence's guest only: TF-A can livelock there)."""
    out = ['#include "guest.h"', "", _STRUCTS, "", "extern char rnd_resumed[];", "void rnd_handler_a(void);",
           "void rnd_handler_b(void);", "void secondary_entry(uint64_t);", ""]
    names: dict[int, str] = {}

    def emit_ops(name: str, ops: Sequence[Op]) -> str:
        rows = []
        for op in ops:
            if op.kind == K_RUN_CPU:
                assert op.prog is not None
                rows.append(f"    {{1, {op.cpu}, {_c_string(op.text)}, {{0}}, &{emit_prog(op.prog)}}},")
            else:
                args = ", ".join(_c_value(a) for a in op.args)
                rows.append(f"    {{0, 0, {_c_string(op.text)}, {{{args}}}, 0}},")
        if not rows:
            return "0"
        out.append(f"static const struct rnd_op {name}[] = {{")
        out.extend(rows)
        out.append("};")
        return name

    def prog_init(prog: Program, n: str) -> str:
        ops = emit_ops(f"{n}_ops", prog.ops)
        plan_rows = []
        for i, plan in enumerate(prog.plans):
            pops = emit_ops(f"{n}_plan{i}", plan.ops)
            plan_rows.append(f"    {{{pops}, {len(plan.ops)}, {plan.completion}, {_c_value(plan.status)}}},")
        plans = "0"
        if plan_rows:
            plans = f"{n}_plans"
            out.append(f"static const struct rnd_plan {plans}[] = {{")
            out.extend(plan_rows)
            out.append("};")
        return f"{{{_c_string(prog.title)}, {ops}, {len(prog.ops)}, {plans}, {len(prog.plans)}}}"

    def emit_prog(prog: Program) -> str:
        n = f"prog{len(names)}"
        names[id(prog)] = n
        out.append(f"static const struct rnd_prog {n} = {prog_init(prog, n)};")
        return n

    tops = [prog_init(p, f"top{i}") for i, p in enumerate(programs)]
    out.append(f"const char rnd_title[] = {_c_string(title)};")
    out.append("const struct rnd_prog rnd_progs[] = {")
    out.extend(f"    {t}," for t in tops)
    out.append("};")
    out.append(f"const uint32_t rnd_nprogs = {len(tops)};")
    out.append(f"const uint32_t rnd_guard_signal = {int(guard_signal)};")
    return "\n".join(out) + "\n"


def _c_value(v: int | str) -> str:
    return v if isinstance(v, str) else f"{v:#x}ull"


def _c_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


_STRUCTS = """\
struct rnd_prog;
struct rnd_op { uint32_t kind; uint32_t cpu; const char *text; uint64_t args[6]; const struct rnd_prog *prog; };
struct rnd_plan { const struct rnd_op *ops; uint32_t nops; uint32_t completion; uint64_t status; };
struct rnd_prog { const char *title; const struct rnd_op *ops; uint32_t nops; const struct rnd_plan *plans;
                  uint32_t nplans; };"""


@dataclass(frozen=True)
class GuestText:
    name: str
    table: str  # table.c
    sequences: int


def generate(seed: int, guests: int, per_guest: int, choices: Choices = Choices()) -> list[GuestText]:
    """``guests`` guests of ``per_guest`` sequences each, all from ``seed``."""
    gen = Generator(seed, choices)
    out = []
    for g in range(guests):
        progs = [gen.sequence(f"seq {g}.{s}") for s in range(per_guest)]
        title = f"sdei random sequences: seed {seed}, guest {g}, {per_guest} sequences"
        out.append(GuestText(f"rnd{g}", c_source(title, progs), per_guest))
    return out


def fixed_guest(name: str, programs: Sequence[Program], *, guard_signal: bool = True) -> GuestText:
    """A guest of hand-written programs (the divergences' sequences)."""
    return GuestText(name, c_source(f"sdei fixed sequence: {name}", programs, guard_signal=guard_signal),
                     len(programs))


# ----------------------------------------------------------------------------- known divergences
H_A = HANDLERS["handler_a"]


def _setup(cpu: int = 0) -> list[Op]:
    return [call("SDEI_EVENT_REGISTER", 0, H_A, 0xC0FFEE, 0, 0x8000_0000 | cpu), call("SDEI_EVENT_ENABLE", 0),
            call("SDEI_PE_UNMASK")]


def _signal_self() -> Op:
    return call("SDEI_EVENT_SIGNAL", 0, 0x8000_0000)


@dataclass(frozen=True)
class Divergence:
    """A sequence whose output differs between TF-A 2.12.1 and the lab, for a documented reason.

    ``tfa_line`` and ``lab_line`` are regular expressions for what each side prints (and the other
    does not): the test checks they match, so the divergence is this one and no other, then expects
    the outputs to differ (xfail, strict: the day they agree, the test says so).
    """

    name: str
    what: str
    guest: GuestText
    tfa_line: str
    lab_line: str


def _div(name: str, what: str, ops: list[Op], plans: Sequence[Plan] = (), *, tfa: str, lab: str,
         guard_signal: bool = True, regex: bool = False) -> Divergence:
    """``tfa`` and ``lab``: text each side prints at the start of a line (a regular expression if ``regex``)."""
    prog = Program(f"divergence {name}", ops + Generator.cleanup(), list(plans))
    if not regex:
        tfa, lab = (re.escape(t) for t in (tfa, lab))
    return Divergence(name, what, fixed_guest(name, [prog], guard_signal=guard_signal), "^" + tfa, "^" + lab)


DIVERGENCES: tuple[Divergence, ...] = (
    _div("event_high_bits", "an event number with bits above 31 set: TF-A reads the low 32 bits (a C int), "
         "the lab refuses it",
         [call("SDEI_EVENT_REGISTER", 0x1_0000_0000, H_A, 0, 0, 0), call("SDEI_EVENT_STATUS", 0),
          call("SDEI_EVENT_UNREGISTER", 0xFFFF_FFFF_0000_0000), call("SDEI_EVENT_STATUS", 0x8000_0000_0000_0000)],
         tfa="  SDEI_EVENT_REGISTER(0x100000000, handler_a, 0x0, 0x0, 0x0) = 0x0",
         lab="  SDEI_EVENT_REGISTER(0x100000000, handler_a, 0x0, 0x0, 0x0) = 0xfffffffffffffffe"),
    _div("info_high_bits", "EVENT_GET_INFO's info type with bits above 31 set: TF-A reads the low 32 bits, "
         "the lab refuses it",
         [call("SDEI_EVENT_GET_INFO", 0, 0x1_0000_0000), call("SDEI_EVENT_GET_INFO", 0, 0x1_0000_0002)],
         tfa="  SDEI_EVENT_GET_INFO(0x0, 0x100000000) = 0x0",
         lab="  SDEI_EVENT_GET_INFO(0x0, 0x100000000) = 0xfffffffffffffffe"),
    _div("context_high_bits", "EVENT_CONTEXT's register index with bits above 31 set: TF-A reads the low 32 "
         "bits, the lab refuses it",
         [*_setup(), _signal_self()], [Plan([call("SDEI_EVENT_CONTEXT", 0x1_0000_0006)])],
         tfa="      SDEI_EVENT_CONTEXT(0x100000006) = 0x5ec0000000000606",
         lab="      SDEI_EVENT_CONTEXT(0x100000006) = 0xfffffffffffffffe"),
    _div("context_check_order", "EVENT_CONTEXT with an index past x17 and no dispatch outstanding: TF-A checks "
         "the index first (INVALID_PARAMETERS), the lab the dispatch (DENIED)",
         [call("SDEI_EVENT_CONTEXT", 18)],
         tfa="  SDEI_EVENT_CONTEXT(0x12) = 0xfffffffffffffffe",
         lab="  SDEI_EVENT_CONTEXT(0x12) = 0xfffffffffffffffd"),
    _div("resume_nzcv", "COMPLETE_AND_RESUME: TF-A enters the resume address with a fixed SPSR (EL1h, DAIF "
         "set, NZCV 0); the lab keeps the interrupted NZCV (the next dispatch shows it in x3)",
         [*_setup(), _signal_self()],
         [Plan([_signal_self()], RES_RESUME_MARK), Plan([])],
         tfa=r"    > handler_a #1: x0=0x0 x1=0xc0ffee pc=_start\+0x[0-9a-f]+ pstate=0x3c5 ",
         lab=r"    > handler_a #1: x0=0x0 x1=0xc0ffee pc=_start\+0x[0-9a-f]+ pstate=0x600003c5 ", regex=True),
    _div("affinity_level_high_bits", "AFFINITY_INFO (SMC64) with lowest_affinity_level bits above 31 set: "
         "TF-A reads the low 32 bits, the lab refuses it",
         [call("PSCI_AFFINITY_INFO64", 0, 0x1_0000_0000)],
         tfa="  PSCI_AFFINITY_INFO64(0x0, 0x100000000) = 0x0",
         lab="  PSCI_AFFINITY_INFO64(0x0, 0x100000000) = 0xfffffffffffffffe"),
    _div("migrate_info_type", "MIGRATE_INFO_TYPE: TF-A without a Secure Payload Dispatcher answers "
         "NOT_SUPPORTED (and PSCI_FEATURES says so); the lab answers 2 (no Trusted OS), as KVM and QEMU",
         [call("PSCI_MIGRATE_INFO_TYPE"), call("PSCI_FEATURES", 0x8400_0006)],
         tfa="  PSCI_MIGRATE_INFO_TYPE() = 0xffffffffffffffff",
         lab="  PSCI_MIGRATE_INFO_TYPE() = 0x2"),
    _div("entry_point_validation", "REGISTER with a handler address that is no instruction in RAM (0x4, or "
         "misaligned): TF-A's qemu platform validates nothing but 0, the lab refuses it",
         [call("SDEI_EVENT_REGISTER", 0, 4, 0, 0, 0), call("SDEI_EVENT_UNREGISTER", 0),
          call("SDEI_EVENT_REGISTER", 0, H_A + " + 2", 0, 0, 0, shown=["0x0", "handler_a+2", "0x0", "0x0", "0x0"]),
          call("SDEI_EVENT_UNREGISTER", 0)],
         tfa="  SDEI_EVENT_REGISTER(0x0, 0x4, 0x0, 0x0, 0x0) = 0x0",
         lab="  SDEI_EVENT_REGISTER(0x0, 0x4, 0x0, 0x0, 0x0) = 0xfffffffffffffffe"),
    _div("signal_pending_at_mask", "a handler signals its own PE, then masks it: at COMPLETE TF-A takes event "
         "0's SGI on a masked PE and drops it (never EOIed); the lab keeps it pending and dispatches it at "
         "PE_UNMASK",
         [*_setup(), _signal_self(), call("SDEI_PE_UNMASK"), call("SDEI_EVENT_STATUS", 0)],
         [Plan([_signal_self(), call("SDEI_PE_MASK")])],
         tfa=r"  SDEI_EVENT_SIGNAL\(0x0, 0x80000000\) = 0x0\n  SDEI_PE_UNMASK\(\) = 0x0\n",
         lab=r"    > handler_a #1: .*\n    < COMPLETE\(0x0\)\n  SDEI_PE_UNMASK\(\) = 0x0\n",
         guard_signal=False, regex=True),
)
