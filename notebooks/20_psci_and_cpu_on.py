# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # PSCI CPU_ON: what it does to a PE, and what the trace shows
#
# **Question:** what does PSCI `CPU_ON` do to a PE, through which power states does the PE go,
# what does `AFFINITY_INFO` report on the way, and when does `CPU_ON` refuse?
#
# `CPU_ON(target_cpu, entry_point, context_id)` (reference section 1.3; DEN0022 5.6) asks the
# firmware to power up the PE whose MPIDR affinity fields are `target_cpu`. On SUCCESS the PE
# starts at `entry_point`, at the caller's exception level (EL1h here, MMU off, DAIF masked:
# DESIGN.md section 2) with `x0 = context_id` and nothing else defined: no stack, no vector
# table. Until it runs its first instruction it is ON_PENDING. `AFFINITY_INFO(target, 0)`
# answers 0 ON, 1 OFF or 2 ON_PENDING. `CPU_ON` refuses with INVALID_PARAMETERS (-2) for an
# MPIDR no PE has, INVALID_ADDRESS (-9) for an entry point that cannot be one, ON_PENDING (-5)
# while the target is still coming up and ALREADY_ON (-4) once it is up (reference 1.4).
# SDEI adds one rule: the PE comes up with SDEI events *masked* and its private events reset
# (reference 2.3 and 3.1; notebook 12 is what goes wrong when SDEI misses it).
#
# The lab's PSCI follows the spec; QEMU 7.2's does not everywhere (`guests/QEMU-DEVIATIONS.md`):
# it never reports ON_PENDING, and answers a misaligned entry point with INVALID_PARAMETERS.
# The shipped guests print the same bytes on both, so they step around those differences:
# `smp_boot` starts each CPU and waits for a flag before polling `AFFINITY_INFO`, and
# `psci_tour` makes the calls QEMU answers differently but does not print their values. The
# trace records every answer anyway. The first cell runs `smp_boot` under the lab's debugger
# with a breakpoint at `secondary_entry` (the `entry_point` it passes), to read each new PE's
# registers before its first instruction, and runs `psci_tour`.

# %%
# %config InlineBackend.figure_formats = ["retina"]  # drawn at twice its pixels: sharp on a HiDPI screen
# %config InlineBackend.print_figure_kwargs = {"bbox_inches": None}  # the figure as drawn, 840 px: never wider
import re
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from sdeilab.lab.platform import make_platform
from sdeilab.lab.session import Session, pstate_text
from sdeilab.machine.outcome import StopReason
from sdeilab.toolchain import build_source_text, guests_dir
from sdeilab.trace import PowerTransition, SdeiMask, SmcccCall, SmcccReturn, TraceLog
from sdeilab.trace.intervals import masked_intervals, power_intervals
from sdeilab.viz import figure_legend, style, timeline

CPUS = 4
PSCI_RESULTS = {0: "SUCCESS", -1: "NOT_SUPPORTED", -2: "INVALID_PARAMETERS", -3: "DENIED", -4: "ALREADY_ON",
                -5: "ON_PENDING", -6: "INTERNAL_FAILURE", -9: "INVALID_ADDRESS"}
AFFINITY = {0: "ON", 1: "OFF", 2: "ON_PENDING"}

boot = Session(guests_dir() / "smp_boot.elf", cpus=CPUS)
boot.add_breakpoint("secondary_entry")
entered: dict[int, dict[str, int]] = {}  # CPU -> its registers before its first instruction
while not (stop := boot.run()).final:
    entered[stop.cpu] = boot.registers(stop.cpu)
boot_trace = boot.trace
print(boot.uart_text())

tour_trace = TraceLog()
tour = make_platform(CPUS, "virt", trace=tour_trace)
tour.load(guests_dir() / "psci_tour.elf")
assert tour.run(10_000_000).reason is StopReason.SYSTEM_OFF
tour_output = bytes(tour.machine.uart_output).decode()
print("\n".join(line for line in tour_output.splitlines() if line.startswith(("CPU_ON(", "AFFINITY_INFO("))))

# %% [markdown]
# ## 1. What CPU_ON hands the new PE
#
# Each successful `CPU_ON` of `smp_boot`, with the registers of its target at the breakpoint,
# before the target's first instruction: `PC` is the entry point, `x0` the context id, PSTATE
# EL1h with D, A, I and F masked, and `SP` and `VBAR_EL1` zero, the reset values the lab gives
# (the spec leaves them UNKNOWN). That is why `secondary_entry` in `guests/lib/start.S` masks
# interrupts and sets a stack and `VBAR_EL1` before anything else.

# %%
cpu_on_calls = [c for c in boot_trace.of_kind(SmcccCall) if c.name.startswith("CPU_ON")]
for call in cpu_on_calls:
    target, entry, context_id = call.args[:3]
    (ret,) = [r for r in boot_trace.of_kind(SmcccReturn, cpu=call.cpu) if r.seq > call.seq][:1]
    print(f"CPU_ON(target {target:#x}, entry <{boot.symbolize(entry)}>, context_id {context_id:#x}) = "
          f"{ret.results[0]} ({PSCI_RESULTS[ret.results[0]]})")
    if ret.results[0] == 0:
        regs = entered[target & 0xFF]
        print(f"    CPU {target & 0xFF} at its first instruction: PC <{boot.symbolize(regs['PC'])}>, "
              f"x0 {regs['x0']:#x}, PSTATE {pstate_text(regs['PSTATE'])}, SP {regs['SP']:#x}, "
              f"VBAR_EL1 {regs['VBAR_EL1']:#x}")

# %% [markdown]
# ## 2. The power states, as intervals and on the timeline
#
# `power_intervals` turns the `PowerTransition` facts into each CPU's states. Each secondary
# goes off → on-pending → on → off: `CPU_ON` makes it on-pending, its first instruction makes it
# on, its own `CPU_OFF` makes it off. The `masked` intervals (SDEI) start when each PE comes on:
# a PE starts SDEI-masked (reference 2.3); section 3 shows `CPU_ON` masking one that had
# unmasked itself in an earlier life.
#
# On-pending lasts **zero** virtual time. The lab runs the vCPUs round-robin, each for the
# same stretch of virtual time in turn (DESIGN.md section 1), and a CPU started by `CPU_ON`
# begins "no earlier than now": CPU 1's first instruction is stamped with the very vtime of
# CPU 0's `CPU_ON`. So on the timeline below the on-pending strip (orange) has no width; the
# window is real in the *order* in which the CPUs ran, which section 3 shows.

# %%
for iv in power_intervals(boot_trace):
    end = "end" if iv.end is None else f"{iv.end:>7}"
    print(f"CPU {iv.cpu}: {iv.label:<11} {iv.start:>7} .. {end} ns")
print("SDEI masked from:", [(iv.cpu, iv.start) for iv in masked_intervals(boot_trace)])
cpu1_life = next(iv for iv in power_intervals(boot_trace) if iv.cpu == 1 and iv.label == "on")
pad = (cpu1_life.end - cpu1_life.start) // 3
fig, (ax_all, ax_zoom) = plt.subplots(2, 1, figsize=(style.NOTEBOOK_WIDTH, 7), layout="constrained",
                                      height_ratios=[3, 2])
timeline(ax_all, boot_trace)
ax_all.set_title("smp_boot: each secondary started by CPU_ON (▲), switched off by its own CPU_OFF (▼)")
timeline(ax_zoom, boot_trace, cpus=[0, 1], window=(cpu1_life.start - pad, cpu1_life.end + pad))
ax_zoom.set_title("zoom on CPU 1's life: on from the CPU_ON's vtime to its CPU_OFF, SDEI-masked throughout")
figure_legend(fig)  # one legend for both panels
plt.show()

# %% [markdown]
# ## 3. The ON_PENDING window, and ALREADY_ON
#
# No shipped guest calls into that window, because QEMU 7.2 would answer differently (it starts
# CPUs asynchronously and says OFF, never ON_PENDING). This lab-only probe does, built here from
# the cell's text with the guest toolchain: CPU 0 starts CPU 1 and at once asks
# `AFFINITY_INFO` and `CPU_ON` again; once CPU 1 has reported the `x0` it received, CPU 0 asks
# both again; then CPU 1 switches itself off, and CPU 0 tries the invalid cases. CPU 1 also
# unmasks SDEI events in that first life and never masks them; CPU 0 then gives it a second
# life, in which its first act is `SDEI_PE_MASK`: TF-A's answer is 1 if the call masked an
# unmasked PE, 0 if it was masked already (reference 1.1), i.e. whether `CPU_ON` masked it.

# %%
PROBE = r"""
#include "guest.h"

static volatile uint64_t arrived, may_leave, leaving;
static volatile int64_t unmask_ret, mask_ret;

/* CPU 1, first life: unmask SDEI events (and never mask them again), report the x0 it was
 * started with, stay on until CPU 0 has looked, then return: secondary_entry calls CPU_OFF. */
static void probe(uint64_t context_id)
{
    unmask_ret = smccc_call(SDEI_PE_UNMASK, 0, 0, 0);
    store_release(&arrived, context_id);
    while (!load_acquire(&may_leave))
        ;
    store_release(&leaving, 1);
}

/* CPU 1, second life: PE_MASK answers 1 only if it had to mask an unmasked PE (TF-A). */
static void second_life(uint64_t context_id)
{
    mask_ret = smccc_call(SDEI_PE_MASK, 0, 0, 0);
    store_release(&arrived, context_id);
}

static void show(const char *what, int64_t v)
{
    puts(what);
    puts(" = ");
    put_dec(v);
    putc('\n');
}

int main(void)
{
    uint64_t cpu1 = cpu_mpidr(1), entry = (uint64_t)(uintptr_t)secondary_entry;

    show("CPU_ON(CPU 1, secondary_entry, 0xc0ffee)", cpu_start(1, probe, 0xc0ffee));
    show("AFFINITY_INFO(CPU 1) at once", psci_affinity_info(cpu1, 0));
    show("CPU_ON(CPU 1) again at once", psci_cpu_on(cpu1, entry, 0));
    while (!load_acquire(&arrived))
        ;
    puts("CPU 1 runs, x0 was ");
    put_hex(arrived);
    putc('\n');
    show("AFFINITY_INFO(CPU 1) now", psci_affinity_info(cpu1, 0));
    show("CPU_ON(CPU 1) now", psci_cpu_on(cpu1, entry, 0));
    store_release(&may_leave, 1);
    while (!load_acquire(&leaving))     /* memory first, as smp_boot does: fewer calls */
        ;
    while (psci_affinity_info(cpu1, 0) != PSCI_AFF_OFF)
        ;
    show("AFFINITY_INFO(CPU 1) after its CPU_OFF", psci_affinity_info(cpu1, 0));
    show("CPU_ON(CPU 1, entry 0x1000: no RAM there)", psci_cpu_on(cpu1, 0x1000, 0));
    show("CPU_ON(CPU 1, entry secondary_entry + 2)", psci_cpu_on(cpu1, entry + 2, 0));
    show("CPU_ON(MPIDR 0xff00ff: no such CPU)", psci_cpu_on(0xff00ff, entry, 0));
    show("CPU_ON(CPU 0: the caller)", psci_cpu_on(cpu_mpidr(0), entry, 0));

    show("CPU_ON(CPU 1, second life, 0x2)", cpu_start(1, second_life, 2));
    while (load_acquire(&arrived) != 2)
        ;
    show("CPU 1, first life: SDEI PE_UNMASK", unmask_ret);
    show("CPU 1, second life: SDEI PE_MASK", mask_ret);
    psci_system_off();
}
"""
probe_trace = TraceLog()
probe_platform = make_platform(2, "virt", trace=probe_trace)
with tempfile.TemporaryDirectory(prefix="sdeilab-") as tmp:  # the ELF is read once, at load
    probe_platform.load(build_source_text(PROBE, "c", Path(tmp) / "cpu_on_probe.elf"))
assert probe_platform.run(10_000_000).reason is StopReason.SYSTEM_OFF
probe_output = bytes(probe_platform.machine.uart_output).decode()
print(probe_output)

# %% [markdown]
# In virtual time every one of CPU 0's calls above came after CPU 1's first instruction; in the
# order the lab ran them (the facts' `seq`), the first two came before it: CPU 0 finished its
# time slice first. That order is what PSCI answers by, and it is the only order a guest can
# observe. Drawn against `seq` (one step per fact), CPU 1's on-pending window is wide, and CPU
# 0's calls fall inside it. Each call is marked with its answer.

# %%
probe_returns = [r for r in probe_trace.of_kind(SmcccReturn, cpu=0) if r.name in ("CPU_ON64", "AFFINITY_INFO64")]
lo = probe_returns[0].seq - 2  # from the first CPU_ON to the ALREADY_ON, with a little margin
hi = next(r.seq for r in probe_returns if r.results[0] == -4) + 1
fig, ax = plt.subplots(figsize=(style.NOTEBOOK_WIDTH, 4.2), layout="constrained")
for lane in (0, 1):
    transitions = probe_trace.of_kind(PowerTransition, cpu=lane)
    changes = [(0, transitions[0].old)] + [(f.seq, f.new) for f in transitions]
    for (seq, state_), nxt in zip(changes, [c[0] for c in changes[1:]] + [len(probe_trace)], strict=True):
        start, end = max(seq, lo), min(nxt, hi + 1)
        if start < end:
            ax.broken_barh([(start, end - start)], (lane + 0.15, 0.3), facecolors=style.POWER_COLOURS[state_],
                           edgecolor=style.BLACK, linewidth=0.3)
marks = {"CPU_ON64": ("^", style.GREEN), "AFFINITY_INFO64": ("o", style.BLUE)}
for ret in probe_returns:
    if lo <= ret.seq <= hi:
        marker, colour = marks[ret.name]
        value = ret.results[0]
        text = f"{ret.name[:-2]}: " + (AFFINITY[value] if ret.name.startswith("AFF") else PSCI_RESULTS[value])
        ax.plot(ret.seq, -0.1, marker=marker, color=colour, markersize=11, markeredgecolor=style.BLACK)
        # Neighbouring calls are two facts apart: labels on two levels, level, keep clear of each other.
        level = len(ax.texts) % 2
        ax.annotate(text, (ret.seq, -0.1), xytext=(ret.seq, -0.6 - 0.6 * level), textcoords="data",
                    fontsize=style.SMALL - 1, ha="center", va="center",
                    arrowprops={"arrowstyle": "-", "color": style.GREY, "shrinkA": 2, "shrinkB": 8})
first_on = next(f for f in probe_trace.of_kind(PowerTransition, cpu=1) if f.new == "on")
ax.annotate("CPU 1's first instruction", (first_on.seq, 1.3), xytext=(6, 0), textcoords="offset points",
            fontsize=style.SMALL, va="center")
ax.set_yticks([-0.1, 0.4, 1.3], labels=["CPU 0's calls", "CPU 0", "CPU 1"], fontsize=style.FONT)
ax.tick_params(axis="x", labelsize=style.SMALL)
ax.set_ylim(1.6, -1.6)
ax.set_xlim(lo, hi + 1)
ax.set_xlabel("facts in the order the lab recorded them (seq)", fontsize=style.FONT)
ax.legend(handles=[Patch(facecolor=style.POWER_COLOURS[s], edgecolor=style.BLACK, label=f"power: {s}")
                   for s in ("off", "on-pending", "on")]
          + [Line2D([], [], linestyle="none", marker=m, color=c, markeredgecolor=style.BLACK, label=n[:-2])
             for n, (m, c) in marks.items()], frameon=False, fontsize=style.SMALL)
figure_legend(fig)  # below the axes, which keep the figure's width
ax.set_title("cpu_on_probe in fact order: CPU 0's first calls,\nwhile CPU 1 is still on-pending",
             fontsize=style.FONT)
plt.show()
for fact in probe_trace.select(SmcccReturn, PowerTransition):
    if lo <= fact.seq <= hi and (isinstance(fact, PowerTransition) or fact.name in marks):
        what = f"CPU 1 {fact.old} -> {fact.new}" if isinstance(fact, PowerTransition) else \
            f"CPU {fact.cpu} {fact.name} returns {fact.results[0]}"
        print(f"seq {fact.seq:>3}  vtime {fact.vtime:>6} ns  {what}")

# %% [markdown]
# ## 4. Every answer, including the ones `psci_tour` does not print
#
# Every `CPU_ON` and `AFFINITY_INFO` of the three runs, from the trace. `psci_tour` hides the
# value of `CPU_ON` with an entry point that is not 4-byte aligned (the spec and the lab say
# INVALID_ADDRESS, QEMU 7.2 says INVALID_PARAMETERS) and of `AFFINITY_INFO` above level 0 (the
# lab supports level 0 only, as TF-A: INVALID_PARAMETERS; QEMU says ON for anything): the trace
# has them. Below, the rows of `guests/QEMU-DEVIATIONS.md` about these two calls.

# %%
runs = {"smp_boot": boot_trace, "psci_tour": tour_trace, "cpu_on_probe": probe_trace}


def psci_answers(trace: TraceLog) -> list[tuple[SmcccCall, SmcccReturn]]:
    """(call, return) pairs of CPU_ON and AFFINITY_INFO, paired per CPU in seq order."""
    pending: dict[int, SmcccCall] = {}
    pairs = []
    for fact in trace.of_kind(SmcccCall, SmcccReturn):
        if isinstance(fact, SmcccCall):
            pending[fact.cpu] = fact
        elif fact.name.startswith(("CPU_ON", "AFFINITY_INFO")):
            call = pending.pop(fact.cpu, None)
            if call is not None and call.fid == fact.fid:
                pairs.append((call, fact))
    return pairs


for name, trace in runs.items():
    print(f"== {name}")
    lines: list[list] = []  # [text, repeats]: a polling loop's identical answers on one line
    for call, ret in psci_answers(trace):
        value = ret.results[0]
        answer = AFFINITY[value] if call.name.startswith("AFF") and value >= 0 else PSCI_RESULTS[value]
        text = f"  CPU {call.cpu} {call.name}({', '.join(hex(a) for a in call.args[:3])}) = {value} {answer}"
        if lines and lines[-1][0] == text:
            lines[-1][1] += 1
        else:
            lines.append([text, 1])
    print("\n".join(text + (f"   (x{n})" if n > 1 else "") for text, n in lines))
print()
deviations = (guests_dir() / "QEMU-DEVIATIONS.md").read_text()
for row in deviations.splitlines():
    cells = [c.strip() for c in row.strip("|").split("|")]
    if row.startswith("|") and len(cells) >= 3 and re.search(r"CPU_ON|AFFINITY_INFO", cells[0]):
        print(f"- {cells[0]}\n    QEMU 7.2: {cells[1]}\n    spec / lab: {cells[2]}")

# %% [markdown]
# ## Check yourself
#
# Write CPU_ON's and AFFINITY_INFO's rules down as functions of what the trace says the target
# was doing at the moment of the call (its last `PowerTransition` before the call, in `seq`
# order), of the MPIDR (a PE exists for Aff0 < 8 in cluster Aff1, up to the CPU count) and of
# the entry point (4-byte aligned, in RAM: 128 MiB at 0x4000_0000, DESIGN.md section 2), and
# check every answer of the three runs against them. Then check what CPU_ON did: each target
# started at the entry point with `x0 = context_id` and went off → on-pending → on; the probe
# saw the `x0` it was given; and the probe's CPU 1, unmasked when it left its first life, was
# masked again from the first instruction of its second (the SDEI rule of reference 3.1).

# %%
RAM = (0x4000_0000, 0x4000_0000 + 128 * 1024 * 1024)


def pe_of(mpidr: int, cpus: int) -> int | None:
    aff0, aff1, rest = mpidr & 0xFF, (mpidr >> 8) & 0xFF, mpidr & ~0xFFFF
    return aff1 * 8 + aff0 if not rest and aff0 < 8 and aff1 * 8 + aff0 < cpus else None


def state_before(trace: TraceLog, cpu: int, seq: int) -> str:
    states = [f.new for f in trace.of_kind(PowerTransition, cpu=cpu) if f.seq < seq]
    return states[-1] if states else "off"


def expected_cpu_on(trace: TraceLog, cpus: int, call: SmcccCall) -> int:
    target, entry = pe_of(call.args[0], cpus), call.args[1]
    if target is None:
        return -2  # INVALID_PARAMETERS
    if entry % 4 or not RAM[0] <= entry < RAM[1]:
        return -9  # INVALID_ADDRESS
    return {"off": 0, "on-pending": -5}.get(state_before(trace, target, call.seq), -4)  # else ALREADY_ON


def expected_affinity(trace: TraceLog, cpus: int, call: SmcccCall) -> int:
    target, level = pe_of(call.args[0], cpus), call.args[1]
    if target is None or level != 0:
        return -2
    return {"off": 1, "on-pending": 2}.get(state_before(trace, target, call.seq), 0)


seen: dict[str, set[int]] = {"CPU_ON": set(), "AFFINITY_INFO": set()}
wrong: list[tuple] = []  # (run, call, answer, expected) for every answer the rules do not give
for name, trace in runs.items():
    cpus = CPUS if name != "cpu_on_probe" else 2
    for call, ret in psci_answers(trace):
        kind = "CPU_ON" if call.name.startswith("CPU_ON") else "AFFINITY_INFO"
        want = (expected_cpu_on if kind == "CPU_ON" else expected_affinity)(trace, cpus, call)
        if ret.results[0] != want:
            wrong.append((name, call, ret.results[0], want))
        seen[kind].add(ret.results[0])

from sdeilab.widgets.exercise import Checks, Exercise  # noqa: E402

with Checks() as check:
    answered = sum(len(psci_answers(trace)) for trace in runs.values())
    check(f"every CPU_ON and AFFINITY_INFO answer of the three runs ({answered}) is what the rules give",
          not wrong, wrong[:3])
    check("CPU_ON answered SUCCESS, INVALID_PARAMETERS, ALREADY_ON, ON_PENDING and INVALID_ADDRESS",
          seen["CPU_ON"] >= {0, -2, -4, -5, -9}, sorted(seen["CPU_ON"]))
    check("AFFINITY_INFO answered ON, OFF, ON_PENDING and INVALID_PARAMETERS",
          seen["AFFINITY_INFO"] >= {0, 1, 2, -2}, sorted(seen["AFFINITY_INFO"]))

    started = []  # what CPU_ON did to each PE it started
    for call in cpu_on_calls:
        target, entry, context_id = call.args[:3]
        cpu = pe_of(target, CPUS)
        if cpu is None:
            continue
        regs = entered[cpu]
        path = [(f.old, f.new, f.seq > call.seq) for f in boot_trace.of_kind(PowerTransition, cpu=cpu)]
        started.append((cpu, (regs["PC"], regs["x0"]) == (entry, context_id), regs["PSTATE"] & 0x3CF == 0x3C5,
                        path == [("off", "on-pending", True), ("on-pending", "on", True), ("on", "off", True)]))
    check("smp_boot: each started PE began at its entry point with x0 = context_id",
          started and all(ok for _, ok, _, _ in started), started)
    check("smp_boot: each started PE began at EL1h with D, A, I and F masked", all(ok for *_, ok, _ in started))
    check("smp_boot: each started PE went off -> on-pending -> on after its CPU_ON, then off",
          all(ok for *_, ok in started))

    probe_on = next(c for c in probe_trace.of_kind(SmcccCall) if c.name == "CPU_ON64" and c.args[0] == 1)
    check("the probe's CPU 1 saw the x0 it was given",
          int(re.search(r"x0 was (0x[0-9a-f]+)", probe_output)[1], 16) == probe_on.args[2])

    # CPU 1 unmasked SDEI in its first life and never masked it; CPU_ON masked it for the second.
    first_life, second_life = [f for f in probe_trace.of_kind(PowerTransition, cpu=1) if f.new == "on"]
    check("the probe's CPU 1 unmasked SDEI once in its first life and never masked it",
          [m.masked for m in probe_trace.of_kind(SdeiMask, cpu=1) if m.vtime < second_life.vtime] == [False])
    check("CPU 1 was masked from the first instruction of its second life",
          any(m.cpu == 1 and m.start == second_life.vtime for m in masked_intervals(probe_trace)))
    check("so its PE_MASK in the second life answered 0 (already masked)",
          re.search(r"second life: SDEI PE_MASK = (-?\d+)", probe_output)[1] == "0")
print({k: sorted(v) for k, v in seen.items()})

# %% [markdown]
# ## Exercise: two reasons to refuse
#
# Change the probe: when CPU 1 is up, CPU 0 calls `CPU_ON(CPU 1, secondary_entry + 2)`, an
# entry point that is not 4-byte aligned, instead of `CPU_ON(CPU 1, secondary_entry)`. The
# target is on *and* the address is bad. What does `CPU_ON` answer? Choose one of:
#
# * `"SUCCESS"`
# * `"ALREADY_ON"`
# * `"INVALID_ADDRESS"`
# * `"INVALID_PARAMETERS"`

# %%
prediction = None  # e.g. "ALREADY_ON"
exercise = Exercise("CPU_ON(CPU 1, secondary_entry + 2) while CPU 1 is on: what is the answer?",
                    ["SUCCESS", "ALREADY_ON", "INVALID_ADDRESS", "INVALID_PARAMETERS"]).predict(prediction)

# %%
NOW = 'show("CPU_ON(CPU 1) now", psci_cpu_on(cpu1, entry, 0));'
changed_probe = PROBE.replace(NOW, 'show("CPU_ON(CPU 1) now", psci_cpu_on(cpu1, entry + 2, 0));')
assert changed_probe != PROBE, "the probe's line to change is not there"
changed_trace = TraceLog()
changed = make_platform(2, "virt", trace=changed_trace)
with tempfile.TemporaryDirectory(prefix="sdeilab-") as tmp:
    changed.load(build_source_text(changed_probe, "c", Path(tmp) / "cpu_on_probe2.elf"))
changed_outcome = changed.run(10_000_000)
# The changed call: the first CPU_ON of CPU 1 with an entry point that is not 4-byte aligned.
call, ret = next((c, r) for c, r in psci_answers(changed_trace)
                 if c.name.startswith("CPU_ON") and c.args[0] == 1 and c.args[1] % 4)
state = state_before(changed_trace, 1, call.seq)
exercise.reveal(PSCI_RESULTS.get(ret.results[0], str(ret.results[0])),
                f"CPU 1 was {state}; CPU_ON checks the target's MPIDR, then the entry point, and only then "
                "the target's state (the order of expected_cpu_on above, and of TF-A's psci_cpu_on)")
with Checks() as check:
    check("the changed probe ran to SYSTEM_OFF", changed_outcome.reason is StopReason.SYSTEM_OFF, changed_outcome)
    check("CPU 1 was on when the changed call was made", state == "on", state)
    check("the answer is the rules' answer", ret.results[0] == expected_cpu_on(changed_trace, 2, call),
          ret.results[0])
    check("the target was not started again: CPU 1 stayed on",
          state_before(changed_trace, 1, ret.seq + 1) == "on")
