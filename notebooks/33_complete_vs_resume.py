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
# # COMPLETE or COMPLETE_AND_RESUME: where an SDEI handler goes back to
#
# **Question:** what is the difference between `SDEI_EVENT_COMPLETE` and
# `SDEI_EVENT_COMPLETE_AND_RESUME`, and why does Linux resume to its IRQ vector?
#
# When the dispatcher enters a handler it saves x0-x17 and the interrupted PC and PSTATE, and
# nothing else (reference section 2.4). The handler ends with one of two calls, neither of which
# returns. Both end the dispatch the same way as far as the event goes (running to not running,
# in the state table of section 2.2; a bound interrupt is EOIed). They differ in where the PE
# goes next and in what state (section 2.6):
#
# - **`COMPLETE(status)`** restores x0-x17, PC and PSTATE exactly as they were: the interrupted
#   code carries on as if nothing had happened. `ELR_EL1` and `SPSR_EL1` are not touched.
# - **`COMPLETE_AND_RESUME(addr)`** restores x0-x17, then behaves as if a synchronous exception
#   had been taken to the client's EL at `addr`: `ELR_EL1` = the interrupted PC, `SPSR_EL1` = the
#   interrupted PSTATE, PSTATE = EL1h with D, A, I and F set (DEN0054C 5.2.2, "Event Resume
#   Context"). The interrupted context becomes an exception frame; the code at `addr` decides
#   whether and when to `ERET` to it.
#
# Linux uses both (`arch/arm64/kernel/sdei.c`, `do_sdei_event`): "If we interrupted the kernel
# with interrupts masked, we always go back to wherever we came from" (`SDEI_EV_HANDLED`, a plain
# `COMPLETE`); "Otherwise, we pretend this was an IRQ. This lets user space tasks receive signals
# before we return to them, and KVM to invoke it's world switch to do the same": it returns
# `VBAR_EL1 + 0x280` (IRQ, current EL with SP_ELx), `+ 0x480` (IRQ from a lower EL in AArch64)
# or `+ 0x680` (from a lower EL in AArch32), and its assembly turns an address into
# `COMPLETE_AND_RESUME`. The firmware must not pick the vector itself: Gavin Shan's KVM series
# first "injected an IRQ" on resume, and Oliver Upton asked for 5.2.2 instead ("what would happen
# if we run something that isn't Linux inside of KVM?", `<Ym+KdY2y2vzMeDOL@google.com>`,
# reference 2.6 and 7.3).
#
# Three shipped guests run under the lab's debugger (`Session`), which stops right after a
# `COMPLETE` (or an exception entry) to read the registers of the CPU concerned:
#
# - `guests/sdei/tftf_pstate.c` (TFTF's `test_sdei_event_check_pstate`) signals event 0 to
#   itself twice; its handler ends with `COMPLETE` the first time and with TFTF's resume stub,
#   `COMPLETE_AND_RESUME(x2)`, the second: the same resume address, the interrupted PC, reached
#   in two different states.
# - `guests/sdei/linux_client/` decides as Linux does: its NMI watchdog (notebook 32) interrupts
#   CPU 2 spinning with IRQs masked and CPUs 1 and 3 idle with IRQs unmasked.
# - `guests/timer_irq.c` takes the virtual timer as an ordinary IRQ: the reference for what a
#   real IRQ exception leaves in the registers.

# %%
# %config InlineBackend.figure_formats = ["retina"]  # drawn at twice its pixels: sharp on a HiDPI screen
# %config InlineBackend.print_figure_kwargs = {"bbox_inches": None}  # the figure as drawn, 840 px: never wider
import matplotlib.pyplot as plt

from sdeilab.lab.session import Session, pstate_text
from sdeilab.machine.outcome import StopReason
from sdeilab.toolchain import guests_dir
from sdeilab.trace import ExceptionTaken, SdeiComplete, SdeiDispatch, SdeiTransition
from sdeilab.trace.intervals import handler_intervals
from sdeilab.viz import figure_legend, sequence, style, timeline
from sdeilab.viz.panels import address_text, marks, pstate_hex, state_columns
from sdeilab.viz.sequence import messages

DAIF = 0b1111 << 6  # PSTATE/SPSR bits 9:6 (Arm ARM C5.2.18)
PSTATE_I = 1 << 7
MODE = 0x1F  # M[4:0]: 0b00101 is EL1h, AArch64
EL1H = 0b00101
IRQ_CURRENT_EL_SPX = 0x280  # Arm ARM Table D1-7, "Vector offsets from vector table base address"
STATE = ("PC", "PSTATE", "ELR_EL1", "SPSR_EL1", "VBAR_EL1")


def is_a(kind: type, cpu: int | None = None):
    """A run_until predicate: the next fact of ``kind`` (about ``cpu``)."""
    return lambda fact: isinstance(fact, kind) and (cpu is None or fact.cpu == cpu)


def regs(session: Session, cpu: int) -> dict[str, int]:
    return {name: session.cpu_view(cpu).registers[name] for name in STATE}


# tftf_pstate: the handler's entry and what each COMPLETE left, twice.
pstate = Session(guests_dir() / "sdei" / "tftf_pstate.elf", cpus=1)
tftf = []  # (dispatch, registers at handler entry, complete, registers right after it)
for _ in range(2):
    entered = pstate.run_until(is_a(SdeiDispatch))
    at_entry = regs(pstate, 0)
    completed = pstate.run_until(is_a(SdeiComplete))
    tftf.append((entered.fact, at_entry, completed.fact, regs(pstate, 0)))
pstate_end = pstate.run()

# linux_client: CPU 1's first resume, its ERET back, and CPU 2's first COMPLETE.
linux = Session(guests_dir() / "sdei" / "linux_client.elf", cpus=4)
resumed = linux.run_until(is_a(SdeiComplete, cpu=1))
after_resume = regs(linux, 1)
back = linux.add_breakpoint("cpu_idle_woken", cpu=1)
linux.run()
after_eret = regs(linux, 1)
linux.remove_breakpoint(back)
completed_2 = linux.run_until(is_a(SdeiComplete, cpu=2))
after_complete_2 = regs(linux, 2)
linux_end = linux.run()

# timer_irq: the state a real IRQ exception leaves at the vector.
irq = Session(guests_dir() / "timer_irq.elf", cpus=1)
taken = irq.run_until(is_a(ExceptionTaken))
at_irq = regs(irq, 0)
irq_end = irq.run()

for name, session, end in (("tftf_pstate", pstate, pstate_end), ("linux_client", linux, linux_end),
                           ("timer_irq", irq, irq_end)):
    print(f"{name:<13} {end.reason:<11} {session.uart_text().splitlines()[-1]}")

# %% [markdown]
# ## 1. Same address, two states: `tftf_pstate`
#
# Both handler runs interrupted the same instruction (`sdei_signal_probe_return`, right after the
# `EVENT_SIGNAL` conduit: a signal to oneself is taken on the way out of the call) and both
# resumed there, so the `SdeiComplete` facts differ only in `how`. The registers right after the
# call show the difference. The guest set `SPSR_EL1` to a recognisable value before signalling
# (`0x600003c4`) and a different PSTATE each time (N, C with D, I; then Z, V with A, F).

# %%
def describe(r: dict[str, int], symbolize) -> str:
    return (f"PC <{symbolize(r['PC'])}>, PSTATE {pstate_text(r['PSTATE'])}, "
            f"ELR_EL1 {r['ELR_EL1']:#x} <{symbolize(r['ELR_EL1'])}>, SPSR_EL1 {pstate_text(r['SPSR_EL1'])}")


for dispatch, at_entry, complete, after in tftf:
    print(f"dispatch at {dispatch.vtime} ns: interrupted <{pstate.symbolize(dispatch.interrupted_pc)}> with PSTATE "
          f"{pstate_text(dispatch.interrupted_pstate)}")
    print(f"  handler entry: {describe(at_entry, pstate.symbolize)}")
    print(f"  {complete.how} at {complete.vtime} ns, resume <{pstate.symbolize(complete.resume_pc)}>")
    print(f"  right after:   {describe(after, pstate.symbolize)}")
print()
print("\n".join(line for line in pstate.uart_text().splitlines() if line.startswith("  after")))

# %% [markdown]
# The same registers as a picture: for each run, the state when the event interrupted the guest
# and right after the handler's last call. A shaded cell differs from the one on its left; a
# blue arrow shows where a value went.

# %%
ROWS = ("PC", "PSTATE", "ELR_EL1", "SPSR_EL1")


def cells(pc: int, pstate_value: int, elr: int, spsr: int) -> dict[str, str]:
    return {"PC": address_text(pc, pstate.symbolize), "PSTATE": pstate_hex(pstate_value),
            "ELR_EL1": address_text(elr, pstate.symbolize), "SPSR_EL1": pstate_hex(spsr)}


WHAT = {"complete": "SDEI_EVENT_COMPLETE: back as if nothing had happened",
        "complete-and-resume": "SDEI_EVENT_COMPLETE_AND_RESUME: an exception frame, DAIF all set"}
fig, state_axes = plt.subplots(2, 1, figsize=(style.NOTEBOOK_WIDTH, 7.4), layout="constrained")
for ax, (dispatch, at_entry, complete, after) in zip(state_axes, tftf, strict=True):
    call = "COMPLETE" if complete.how == "complete" else "COMPLETE_AND_RESUME"
    before = cells(dispatch.interrupted_pc, dispatch.interrupted_pstate, at_entry["ELR_EL1"], at_entry["SPSR_EL1"])
    now = cells(after["PC"], after["PSTATE"], after["ELR_EL1"], after["SPSR_EL1"])
    state_columns(ax, ROWS, [("interrupted", before), (f"after {call}", now)],
                  moves=[("PC", "ELR_EL1"), ("PSTATE", "SPSR_EL1")] if complete.how != "complete" else (),
                  title=WHAT[complete.how])
plt.show()

# %% [markdown]
# After `COMPLETE` the CPU is back in the interrupted PSTATE (D and I masked, as the guest had
# them, flags N and C) and `ELR_EL1`/`SPSR_EL1` still hold what the handler found. After
# `COMPLETE_AND_RESUME` the PC is the same, but PSTATE has D, A, I and F all set and the
# interrupted PC and PSTATE are in `ELR_EL1` and `SPSR_EL1`, exactly where an exception entry
# puts them: TFTF's stub has turned "go back" into "take an exception at the place you were".
# (The lab keeps NZCV across the resume, as an exception entry does; TF-A enters the resume
# address with NZCV clear. The interrupted flags are in `SPSR_EL1` either way: `tftf_pstate.c`.)
#
# The sequence diagram of event 0 draws both runs: each `EVENT_SIGNAL`, the dispatch, and the
# two ways back (the dashed blue rows, with their resume address).

# %%
rows = len(messages(pstate.trace, 0))
fig, ax = plt.subplots(figsize=(style.NOTEBOOK_WIDTH, 0.3 * rows + 2), layout="constrained")
sequence(ax, pstate.trace, 0, symbolize=pstate.symbolize)
plt.show()

# %% [markdown]
# ## 2. Linux's choice, dispatch by dispatch: `linux_client`
#
# Every watchdog NMI in the run, with the interrupted PC and PSTATE from its `SdeiDispatch` and
# where execution continued from its `SdeiComplete`. CPU 2 was in `stuck_loop` with `PSTATE.I`
# set: `COMPLETE`, back to the loop. CPUs 1 and 3 were in `cpu_idle` (after the `WFI`) with
# `PSTATE.I` clear: `COMPLETE_AND_RESUME` to `VBAR_EL1 + 0x280` (`VBAR_EL1` read from CPU 1).

# %%
vbar = after_resume["VBAR_EL1"]
limage = linux.machine.image
dispatched = {(d.cpu, d.vtime): d for d in linux.trace.of_kind(SdeiDispatch)}
ends = {(c.cpu, c.vtime): c for c in linux.trace.of_kind(SdeiComplete)}
runs = [(dispatched[(h.cpu, h.start)], ends[(h.cpu, h.end)]) for h in handler_intervals(linux.trace)]
print(f"VBAR_EL1 = {vbar:#x} <{limage.symbolize(vbar)}>")
print(f"{'cpu':>3} {'dispatch':>9} {'interrupted':<18} {'PSTATE':<16} {'how':<20} resumed at")
for d, c in runs:
    print(f"{d.cpu:>3} {d.vtime:>9} {'<' + limage.symbolize(d.interrupted_pc) + '>':<18} "
          f"{pstate_text(d.interrupted_pstate):<16} {c.how:<20} <{limage.symbolize(c.resume_pc)}>")

# %% [markdown]
# ## 3. At the IRQ vector: a resume and a real IRQ look the same
#
# Right after CPU 1's `COMPLETE_AND_RESUME`, and, for comparison, at the first IRQ `timer_irq`
# takes (an `ExceptionTaken` fact: the lab performing an exception entry). The PC is the IRQ
# vector for the current EL with SP_ELx in both, PSTATE is EL1h with everything masked, and
# `ELR_EL1`/`SPSR_EL1` hold the interrupted PC and PSTATE. Linux's IRQ entry code cannot tell the
# two apart, which is the point: it runs its whole IRQ path, `gic_handle_irq` acknowledges
# whatever is pending (here nothing: the guest reads the spurious INTID 1023), and the way out
# of an IRQ is where Linux does the work it wants done before going back: signal delivery and
# rescheduling before a return to user space, and, when the NMI interrupted a KVM guest, KVM's
# exit from it to the host (the "world switch" of the comment). Then `ERET`: CPU 1 is back at
# `cpu_idle_woken`, in the PSTATE it was interrupted in.
#
# For CPU 2 the same path would be wrong. Its code masked IRQs on purpose (in Linux: a critical
# section, perhaps holding a lock an IRQ handler also takes), so running IRQ-path code there
# could deadlock or break the section; Linux goes back with `COMPLETE`, and that work waits until
# the code unmasks IRQs and the next real IRQ leaves the same way.

# %%
ldispatch_1 = next(d for d, c in runs if c.seq == resumed.fact.seq)  # the dispatch that resume ended
print(f"CPU 1 interrupted at <{limage.symbolize(ldispatch_1.interrupted_pc)}>, "
      f"PSTATE {pstate_text(ldispatch_1.interrupted_pstate)}")
print(f"  after COMPLETE_AND_RESUME: {describe(after_resume, limage.symbolize)}")
print(f"  after the ERET:            PC <{limage.symbolize(after_eret['PC'])}>, "
      f"PSTATE {pstate_text(after_eret['PSTATE'])}")
print(f"timer_irq, {taken.fact.kind} exception at {taken.fact.vtime} ns:")
print(f"  at the vector:             {describe(at_irq, irq.symbolize)}")
ldispatch_2 = next(d for d, c in runs if c.seq == completed_2.fact.seq)
print(f"CPU 2 interrupted at <{limage.symbolize(ldispatch_2.interrupted_pc)}>, "
      f"PSTATE {pstate_text(ldispatch_2.interrupted_pstate)}")
print(f"  after COMPLETE:            {describe(after_complete_2, limage.symbolize)}")
print()
print("IRQ exceptions in the linux_client run:", linux.trace.count(ExceptionTaken))
for line in linux.uart_text().splitlines():
    if "IRQ vector entries" in line:
        print(line)

# %% [markdown]
# The "IRQ vector entries" the guest counts are its resumes: the trace has no `ExceptionTaken`
# at all, and the counts equal the `complete-and-resume` facts per CPU. They matter to the
# watchdog, which, like Linux's hard-lockup detector, asks "did this CPU take an interrupt since
# the last NMI?": the resume makes the NMI itself count as one on a CPU that can take IRQs, and
# only a CPU with IRQs masked throughout (CPU 2) sees none.
#
# ## 4. The first watchdog round on the timeline
#
# The three handler runs of the first round (blue bars, from the dispatch to the `COMPLETE` call
# marked x), each labelled with where it went back to, and CPUs 1 and 2 in event 1000's
# sequence diagram. In each run, the four `context` rows are `do_sdei_event` reading the
# interrupted x0-x3 back with `EVENT_CONTEXT` (the handler's own x0-x3 were the event, argument,
# PC and PSTATE; reference 2.6) before its callback runs and it picks the way out.

# %%
first_round = sorted(runs, key=lambda run: run[0].vtime)[:3]
window = (min(d.vtime for d, _ in first_round) - 120, max(c.vtime for _, c in first_round) + 260)
cpus = [1, 2, 3]
round_rows = len([m for m in messages(linux.trace, 1000, window) if 3 not in (m.src, m.dst)])
fig, (ax_t, ax_s) = plt.subplots(2, 1, figsize=(style.NOTEBOOK_WIDTH, 5 + 0.3 * round_rows + 2),
                                 height_ratios=(5, 0.3 * round_rows + 2), layout="constrained")
timeline(ax_t, linux.trace, cpus=cpus, window=window)
for d, c in first_round:
    call = "COMPLETE" if c.how == "complete" else "COMPLETE_AND_RESUME"
    ax_t.annotate(f"{call}\n→ <{limage.symbolize(c.resume_pc)}>", (c.vtime, cpus.index(d.cpu) - 0.05),
                  xytext=(8, 0), textcoords="offset points", va="center", fontsize=style.SMALL)
ax_t.set_title("linux_client, the first watchdog round", fontsize=style.TITLE)
figure_legend(fig)  # below the figure: beside the timeline it took a third of the sequence's width too
# CPUs 1 and 2 in the sequence: one run of each way out (CPU 3's is CPU 1's again), each label
# right of its own lifeline; with a third CPU they no longer fit the figure's width.
sequence(ax_s, linux.trace, 1000, cpus=[1, 2], window=window, symbolize=limage.symbolize)
plt.show()

# %% [markdown]
# ## Check yourself
#
# In `tftf_pstate` both runs resumed at the interrupted PC (`sdei_signal_probe_return`, from the
# ELF); after `COMPLETE` PSTATE is the interrupted one and `ELR_EL1`/`SPSR_EL1` are what the
# handler was entered with, after `COMPLETE_AND_RESUME` they hold the interrupted PC and PSTATE
# and DAIF is all set at EL1h. In `linux_client` each dispatch followed Linux's rule, decided
# from its `SdeiDispatch` fact: EL1h with `PSTATE.I` set gives `COMPLETE` to the interrupted PC,
# anything else `COMPLETE_AND_RESUME` to `VBAR_EL1 + 0x280`, both kinds occurring; CPU 1 after
# its resume was in the same state as `timer_irq` at a real IRQ vector, and its `ERET` went back
# to the interrupted PC and PSTATE; the guest's IRQ vector counts equal its resumes, with no
# IRQ exception in the run. The register figure of section 1 shows it: nothing shaded after
# `COMPLETE`; after `COMPLETE_AND_RESUME` the shaded PSTATE with DAIF set, `ELR_EL1` naming the
# interrupted `<sdei_signal_probe_return>` and `SPSR_EL1` the interrupted PSTATE, arrows from both.

# %%
from sdeilab.widgets.exercise import Checks, Exercise

with Checks() as check:
    shown_complete, shown_resume = marks(state_axes[0]), marks(state_axes[1])
    check("the figure: after COMPLETE the PC is the interrupted <sdei_signal_probe_return>",
          shown_complete["cell:after COMPLETE:PC"] == shown_complete["cell:interrupted:PC"]
          == "<sdei_signal_probe_return>", shown_complete)
    check("the figure: after COMPLETE every register is as interrupted (nothing shaded)",
          all(shown_complete[f"cell:after COMPLETE:{r}"] == shown_complete[f"cell:interrupted:{r}"] for r in ROWS))
    check("the figure: after COMPLETE_AND_RESUME, ELR_EL1 names the interrupted <sdei_signal_probe_return>",
          shown_resume["cell:after COMPLETE_AND_RESUME:ELR_EL1"] == "<sdei_signal_probe_return>")
    check("the figure: after COMPLETE_AND_RESUME, SPSR_EL1 is the interrupted PSTATE",
          shown_resume["cell:after COMPLETE_AND_RESUME:SPSR_EL1"] == shown_resume["cell:interrupted:PSTATE"])
    check("the figure: after COMPLETE_AND_RESUME, PSTATE has DAIF set, as the interrupted one had not",
          shown_resume["cell:after COMPLETE_AND_RESUME:PSTATE"].endswith("DAIF)")
          and "DAIF)" not in shown_resume["cell:interrupted:PSTATE"])
    moves = [{a.get_gid() for a in ax.patches if (a.get_gid() or "").startswith("move:")} for ax in state_axes]
    check("the figure: arrows PC -> ELR_EL1 and PSTATE -> SPSR_EL1 after COMPLETE_AND_RESUME only",
          moves == [set(), {"move:PC:ELR_EL1", "move:PSTATE:SPSR_EL1"}], moves)

    check("the three runs end with SYSTEM_OFF",
          pstate_end.reason == linux_end.reason == irq_end.reason == StopReason.SYSTEM_OFF.value)
    check("tftf_pstate and linux_client report PASS", pstate.uart_text().splitlines()[-1] == "tftf_pstate: PASS"
          and linux.uart_text().splitlines()[-1] == "linux_client: PASS")
    probe_return = pstate.address_of("sdei_signal_probe_return")
    (d1, entry1, c1, after1), (d2, entry2, c2, after2) = tftf
    check("tftf_pstate ended its handlers with COMPLETE, then COMPLETE_AND_RESUME",
          (c1.how, c2.how) == ("complete", "complete-and-resume"))
    check("both interrupted, resumed and went on at <sdei_signal_probe_return>",
          d1.interrupted_pc == d2.interrupted_pc == c1.resume_pc == c2.resume_pc == probe_return
          and after1["PC"] == after2["PC"] == probe_return)
    check("after COMPLETE: the interrupted PSTATE (not all of DAIF set)",
          after1["PSTATE"] == d1.interrupted_pstate and d1.interrupted_pstate & DAIF != DAIF)
    check("after COMPLETE: ELR_EL1 and SPSR_EL1 as the handler found them",
          (after1["ELR_EL1"], after1["SPSR_EL1"]) == (entry1["ELR_EL1"], entry1["SPSR_EL1"]))
    check("after COMPLETE_AND_RESUME: ELR_EL1 and SPSR_EL1 hold the interrupted PC and PSTATE",
          (after2["ELR_EL1"], after2["SPSR_EL1"]) == (d2.interrupted_pc, d2.interrupted_pstate))
    check("after COMPLETE_AND_RESUME: EL1h with DAIF all set, not the interrupted DAIF",
          after2["PSTATE"] & DAIF == DAIF and after2["PSTATE"] & MODE == EL1H
          and after2["PSTATE"] & DAIF != d2.interrupted_pstate & DAIF)
    check("no COMPLETE was refused", not [t for t in pstate.trace.of_kind(SdeiTransition)
                                          if t.action.startswith("complete") and t.result])

    check("linux_client's VBAR_EL1 is <vectors>", vbar == linux.address_of("vectors"))
    kinds, broke = set(), []
    for d, c in runs:
        masked_kernel = d.interrupted_pstate & MODE == EL1H and d.interrupted_pstate & PSTATE_I
        expected = ("complete", d.interrupted_pc) if masked_kernel else ("complete-and-resume",
                                                                         vbar + IRQ_CURRENT_EL_SPX)
        if (c.how, c.resume_pc) != expected:
            broke.append((d, c))
        kinds.add(c.how)
    check("each dispatch followed Linux's rule: EL1h with I set -> COMPLETE, else resume at VBAR_EL1 + 0x280",
          not broke, broke[:2])
    check("both ways out occurred", kinds == {"complete", "complete-and-resume"}, kinds)
    check("CPU 1 after its COMPLETE_AND_RESUME: at the resume address, ELR/SPSR = the interrupted PC/PSTATE",
          resumed.fact.how == "complete-and-resume" and after_resume["PC"] == resumed.fact.resume_pc
          and after_resume["ELR_EL1"] == ldispatch_1.interrupted_pc
          and after_resume["SPSR_EL1"] == ldispatch_1.interrupted_pstate)
    check("timer_irq's IRQ entered at VBAR_EL1 + 0x280 with ELR_EL1 = the interrupted PC",
          taken.fact.kind == "irq" and at_irq["PC"] == taken.fact.vector == at_irq["VBAR_EL1"] + IRQ_CURRENT_EL_SPX
          and at_irq["ELR_EL1"] == taken.fact.elr)
    check("the resume and the real IRQ look the same: EL1h, DAIF set, PC at VBAR_EL1 + 0x280",
          all(r["PSTATE"] & (DAIF | MODE) == DAIF | EL1H and r["PC"] - r["VBAR_EL1"] == IRQ_CURRENT_EL_SPX
              for r in (after_resume, at_irq)))
    check("CPU 1's ERET went back to the interrupted PC and PSTATE",
          (after_eret["PC"], after_eret["PSTATE"]) == (ldispatch_1.interrupted_pc, ldispatch_1.interrupted_pstate))
    check("CPU 2's COMPLETE went back to its interrupted PC and PSTATE, I set",
          completed_2.fact.how == "complete" and after_complete_2["PC"] == completed_2.fact.resume_pc
          and after_complete_2["PSTATE"] == ldispatch_2.interrupted_pstate and after_complete_2["PSTATE"] & PSTATE_I)
    check("no IRQ exception in linux_client's run", linux.trace.count(ExceptionTaken) == 0)
    miscounted = [cpu for cpu in range(4) if f"CPU {cpu}: IRQ vector entries "
                  f"{sum(c.how == 'complete-and-resume' for c in linux.trace.of_kind(SdeiComplete, cpu=cpu))}"
                  not in linux.uart_text()]
    check("the guest's IRQ vector counts equal its resumes, on every CPU", not miscounted, miscounted)

# %% [markdown]
# ## Exercise: resume somewhere else
#
# TFTF's stub resumes at the interrupted PC, and Linux at its IRQ vector. The guest below, built
# from this cell's text, resumes at a label of its own: its handler ends at once with
# `COMPLETE_AND_RESUME(elsewhere)`, and `elsewhere` is a lone `ERET`. Stopped right after the
# call, what does `ELR_EL1` hold? Choose one of:
#
# * `"the interrupted PC"`
# * `"the resume address, elsewhere"`
# * `"the handler's COMPLETE_AND_RESUME call"`
# * `"what it held before the event"`

# %%
prediction = None  # e.g. "the resume address, elsewhere"
exercise = Exercise("COMPLETE_AND_RESUME(elsewhere): what does ELR_EL1 hold right after the call?",
                    ["the interrupted PC", "the resume address, elsewhere", "the handler's COMPLETE_AND_RESUME call",
                     "what it held before the event"]).predict(prediction)

# %%
import tempfile
from pathlib import Path

from sdeilab.toolchain import build_source_text

ELSEWHERE = r"""
#include "guest.h"

#define STR(x) #x
#define XSTR(x) STR(x)

/* The handler resumes at once at elsewhere, which ERETs to what ELR_EL1 and SPSR_EL1 say. */
void handler(void);
void elsewhere(void);
__asm__(
    ".text\n"
    ".globl handler, elsewhere\n"
    ".balign 4\n"
    "handler:\n"
    "    adr x1, elsewhere\n"
    "    ldr x0, =" XSTR(SDEI_EVENT_COMPLETE_AND_RESUME) "\n"
    "    hvc #0\n"
    "    b .\n"
    ".ltorg\n"
    ".balign 4\n"
    "elsewhere:\n"
    "    eret\n");

int main(void)
{
    smccc_call5(SDEI_EVENT_REGISTER, 0, (uint64_t)(uintptr_t)handler, 0, 0, 0);
    smccc_call(SDEI_EVENT_ENABLE, 0, 0, 0);
    smccc_call(SDEI_PE_UNMASK, 0, 0, 0);
    smccc_call(SDEI_EVENT_SIGNAL, 0, cpu_mpidr(0), 0);  /* taken on the way out of this call */
    puts("back in main\n");
    return 0;
}
"""
with tempfile.TemporaryDirectory(prefix="sdeilab-") as tmp:  # the ELF is read once, at load
    away = Session(build_source_text(ELSEWHERE, "c", Path(tmp) / "elsewhere.elf"), cpus=1)
away_before = regs(away, 0)
away_done = away.run_until(is_a(SdeiComplete))
away_after = regs(away, 0)
(away_dispatch,) = away.trace.of_kind(SdeiDispatch)
elr = away_after["ELR_EL1"]
shown = ("the interrupted PC" if elr == away_dispatch.interrupted_pc
         else "the resume address, elsewhere" if elr == away.address_of("elsewhere")
         else "what it held before the event" if elr == away_before["ELR_EL1"]
         else "the handler's COMPLETE_AND_RESUME call" if away.symbolize(elr).startswith("handler")
         else f"{elr:#x} <{away.symbolize(elr)}>")
exercise.reveal(shown, f"ELR_EL1 = <{away.symbolize(elr)}>, the interrupted PC: COMPLETE_AND_RESUME behaves as an "
                "exception taken from the interrupted context, whatever the resume address (reference 2.6)")
print(f"  right after: {describe(away_after, away.symbolize)}")
away_end = away.run()
with Checks() as check:
    check("the PE went on at the resume address, <elsewhere>",
          away_after["PC"] == away_done.fact.resume_pc == away.address_of("elsewhere"))
    check("ELR_EL1 and SPSR_EL1 hold the interrupted PC and PSTATE",
          (away_after["ELR_EL1"], away_after["SPSR_EL1"]) == (away_dispatch.interrupted_pc,
                                                              away_dispatch.interrupted_pstate))
    check("PSTATE is EL1h with DAIF all set", away_after["PSTATE"] & (DAIF | MODE) == DAIF | EL1H)
    check("the ERET at elsewhere went back into main, which finished",
          away_end.reason == StopReason.SYSTEM_OFF.value and away.uart_text() == "back in main\n", away.uart_text())
