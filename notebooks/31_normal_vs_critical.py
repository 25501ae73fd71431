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
# # Normal and critical events on one PE: who may interrupt whom
#
# **Question:** how do normal and critical SDEI events nest on one PE? Which handler may
# pre-empt which, how deep can it go, and what happens meanwhile to an event that may not run?
#
# SDEI has two priority classes (reference section 2.1). TF-A's dispatcher takes an event
# only if, among other conditions, "for a Normal event, no event is running on this PE" and
# "for a Critical event, no Critical event is running on this PE" (section 2.4, conditions 5
# and 6). So a critical event may pre-empt a running normal handler, nothing pre-empts a
# critical one, and a PE has at most two outstanding dispatches, normal below and critical on
# top (`MAX_EVENT_NESTING = 2`, section 2.5). COMPLETE always ends the most recent one. Linux
# keeps a separate stack for each class for exactly this reason: a critical handler may
# arrive at any instruction of a normal one.
#
# A guest cannot make a critical event happen by itself: bindable events must be normal
# (section 2.1), so critical events come from the platform, as TF-A's explicit dispatch for
# RAS (section 2.13). The lab's profiles offer hypervisor-originated events 5000 (normal)
# and 5001 (critical) that the host raises with `platform.sdei.raise_event(number, cpu)`
# (docs/sdei.md). The guest is `guests/sdei/nesting.c`: on CPU 0 it registers events 0, 5000
# and 5001, signals event 0 to itself, and inside that handler signals event 0 *again*. Each
# normal handler then makes 16 firmware calls in `normal_window()`, each critical one 16 in
# `critical_window()`; those are the places where the host below raises events, from a
# debugger breakpoint (the lab's `Session`, the engine of the `Lab` dashboard):
#
# * at the first stop in `normal_window` (event 0's handler running): raise critical 5001;
# * at the first stop in `critical_window` (5001's handler running over it): raise 5001 again,
#   and normal 5000.
#
# The first cell runs that, and the same guest alone (nothing raised), as
# `tests/test_sdei_guests.py` does.

# %%
# %config InlineBackend.figure_formats = ["retina"]  # drawn at twice its pixels: sharp on a HiDPI screen
# %config InlineBackend.print_figure_kwargs = {"bbox_inches": None}  # the figure as drawn, 840 px: never wider
import re

import matplotlib.pyplot as plt

from sdeilab.lab.platform import make_platform
from sdeilab.lab.session import Session
from sdeilab.toolchain import guests_dir
from sdeilab.trace import SdeiComplete, SdeiDispatch, SmcccCall, TraceLog
from sdeilab.trace.intervals import handler_intervals
from sdeilab.viz import figure_legend, sequence, style, timeline
from sdeilab.viz.sequence import messages

GUEST = guests_dir() / "sdei" / "nesting.elf"
NORMAL_HYP, CRITICAL_HYP = 5000, 5001
PLAN = {  # (window, which stop there) -> events the host raises on CPU 0 at that stop
    ("normal_window", 1): [CRITICAL_HYP],
    ("critical_window", 1): [CRITICAL_HYP, NORMAL_HYP],
}

session = Session(GUEST, cpus=1)
for window in ("normal_window", "critical_window"):
    session.add_breakpoint(window, cpu=0)
stops: dict[str, int] = {}
raised: list[tuple[int, int, str]] = []  # (vtime, event, where): the host's own record
while not (stop := session.run()).final:
    where = session.symbolize(session.pc(0))
    stops[where] = stops.get(where, 0) + 1
    for event in PLAN.get((where, stops[where]), []):
        session.platform.sdei.raise_event(event, 0)
        raised.append((stop.vtime, event, where))
trace = session.trace
output = session.uart_text()
image = session.machine.image

alone_trace = TraceLog()
alone = make_platform(1, "virt", trace=alone_trace)
alone.load(GUEST)
alone_outcome = alone.run(10_000_000)
alone_output = bytes(alone.machine.uart_output).decode()

print(f"with the host raising: {stop.reason}, {output.splitlines()[-1]}; stops at {stops}")
print(f"alone:                 {alone_outcome.reason.value}, {alone_output.splitlines()[-1]}")
for vtime, event, where in raised:
    print(f"  host raised event {event} at {vtime} ns, CPU 0 stopped in {where}")

# %% [markdown]
# ## 1. What the guest saw
#
# The guest logs each handler entry and exit as it happens and prints the log afterwards,
# indented by depth. The critical handler entered over event 0's handler at depth 2, and
# found event 0 in state 7 (registered, enabled, *running*: EVENT_STATUS bits, reference 2.2):
# the normal handler beneath is interrupted, not finished. The second 5001, raised while the
# first ran, did not nest over it: it ran after the first COMPLETE, again at depth 2 over event
# 0. Event 5000 and the second signal of event 0 ran only when nothing was running.

# %%
print(output)

# %% [markdown]
# ## 2. What the trace says
#
# `SdeiDispatch` carries the depth the dispatcher computed and the interrupted PC;
# `SdeiComplete` says where execution went on. A critical dispatch at depth 2 interrupted
# `normal_window`; every `COMPLETE` resumed exactly the PC its dispatch had interrupted.

# %%
depth = 0
for fact in trace.of_kind(SdeiDispatch, SdeiComplete):
    if isinstance(fact, SdeiDispatch):
        depth = fact.depth
        kind = "critical" if fact.critical else "normal"
        print(f"{fact.vtime:>6} ns  {'  ' * depth}dispatch {fact.event} ({kind}, {fact.source}), depth "
              f"{fact.depth}, interrupted <{image.symbolize(fact.interrupted_pc)}>")
    else:
        resume = image.symbolize(fact.resume_pc)
        print(f"{fact.vtime:>6} ns  {'  ' * depth}{fact.how} {fact.event}: resume at <{resume}>")
        depth -= 1

# %% [markdown]
# ## 3. What waited, and for whom
#
# SDEI_EVENT_STATUS has no "pending" bit: an event that may not run yet is simply *enabled*
# (state 3, or 7 while its own handler runs) until the dispatcher takes it. The trace shows the wait as the time between the
# trigger and the dispatch: a `SDEI_EVENT_SIGNAL` call for event 0, the host's raise for 5000
# and 5001. What it waited for is the chain of handlers (from `handler_intervals`) that the
# rules say it may not pre-empt: any handler for a normal event, a critical handler for a
# critical one. When several events wait, the lab takes critical ones first, then by number,
# so event 5000 also waits out the second run of event 0.

# %%
handlers = handler_intervals(trace)
dispatches = trace.of_kind(SdeiDispatch, cpu=0)
triggers = [(f.vtime, 0, "EVENT_SIGNAL") for f in trace.of_kind(SmcccCall, cpu=0) if f.name == "SDEI_EVENT_SIGNAL"]
triggers += [(vtime, event, "host raise") for vtime, event, _ in raised]


def blocking_chain(when: int, critical: bool, exclude: SdeiDispatch) -> list:
    """The handlers that kept an event triggered at ``when`` out, one after another (reference 2.4)."""
    chain, t, moved = [], when, True
    while moved:
        moved = False
        for h in handlers:
            may_block = h.critical or not critical
            if may_block and h.start <= t < (h.end or t + 1) and (h.event, h.start) != (exclude.event, exclude.vtime):
                chain.append(h)
                t, moved = h.end, True
    return chain


waits = []  # (trigger vtime, event, its dispatch, the handlers it waited for)
taken: set[int] = set()
for when, event, how in sorted(triggers):
    dispatch = next(d for d in dispatches if d.event == event and d.vtime >= when and d.seq not in taken)
    taken.add(dispatch.seq)
    chain = blocking_chain(when, dispatch.critical, dispatch)
    waits.append((when, event, dispatch, chain))
    names = " then ".join(f"{h.event} ({'critical' if h.critical else 'normal'})" for h in chain) or "nothing"
    print(f"event {event:>4} ({how:<12}) at {when:>5} ns, taken at {dispatch.vtime:>5} ns "
          f"(waited {dispatch.vtime - when:>4} ns) at depth {dispatch.depth}; waited for: {names}")

# %% [markdown]
# ## 4. The timeline: critical drawn over normal
#
# One lane for CPU 0, zoomed on the handlers. Normal handlers are blue; critical ones
# vermillion and hatched, drawn over the normal handler they pre-empt (each nesting level a
# little thinner). The dotted lines are the host's raises. Below, the same guest alone: two
# runs of event 0 back to back, the second at the very instant the first COMPLETEs.

# %%
first, last = handlers[0].start, max(h.end or h.start for h in handlers)
margin = (last - first) // 12
window = (first - margin, last + margin)
alone_handlers = handler_intervals(alone_trace)
alone_window = (alone_handlers[0].start - margin, alone_handlers[0].start - margin + (window[1] - window[0]))
fig, (ax_host, ax_alone) = plt.subplots(2, 1, figsize=(style.NOTEBOOK_WIDTH, 5.5), layout="constrained")
timeline(ax_host, trace, cpus=[0], window=window)
for i, vtime in enumerate(sorted({v for v, _, _ in raised})):
    ax_host.axvline(vtime, color=style.BLACK, linestyle=":", linewidth=1.5)
    events = ", ".join(str(e) for v, e, _ in raised if v == vtime)
    ax_host.annotate(f"raise {events}", (vtime, 0.27 + 0.15 * i), xytext=(3, 0), textcoords="offset points",
                     fontsize=style.SMALL, va="center", zorder=8,
                     bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"})
ax_host.set_title("nesting, the host raising 5001, then 5001 and 5000")
timeline(ax_alone, alone_trace, cpus=[0], window=alone_window)
ax_alone.set_title("nesting alone: event 0 twice, never nested")
for ax, bars in ((ax_host, handlers), (ax_alone, alone_handlers)):
    for h in bars:  # name each run at its start: back-to-back runs of one kind touch
        # On a plain patch of the bar's own colour: white on the critical bar's cross-hatch was unreadable.
        colour = style.CRITICAL_HANDLER if h.depth > 1 else style.NORMAL_HANDLER
        ax.text(h.start, -0.04 + 0.08 * (h.depth - 1), f"{h.event}", color="white", fontsize=style.SMALL,
                fontweight="bold", va="center", ha="left", clip_on=True, zorder=8,
                bbox={"boxstyle": "square,pad=0.15", "facecolor": colour, "edgecolor": "none"})
figure_legend(fig)  # one legend for both panels
plt.show()

# %% [markdown]
# ### Explore it yourself
#
# The same lane, live: turn the mouse wheel over it to zoom (around the pointer), drag it to
# pan, and point at a bar or a tick to read its fact below the figure: a handler's event, its
# class and depth, the PC it interrupted and where COMPLETE resumed; a call's arguments, its
# result by name and the layer that answered. "Reset view" brings back this window. Zoom in
# on the white line inside the vermillion bar: two runs of 5001, back to back. Which call
# did the second one interrupt, and at which PC did each resume?

# %%
from sdeilab.widgets.timeline_view import TimelineView

explore = TimelineView(trace, cpus=[0], window=window, symbolize=session.symbolize,
                       title="CPU 0, the host raising 5001, then 5001 and 5000")
explore

# %% [markdown]
# ## 5. One critical event's life, as a sequence
#
# Event 5001's facts in order, between CPU 0 and the firmware: the guest's REGISTER and
# ENABLE, the two dispatches at depth 2 (each from the host, `hypervisor`), the COMPLETE of
# each back to the interrupted `normal_window`, and the final UNREGISTER. The second dispatch
# follows the first COMPLETE at the same vtime: the trigger had been waiting for it.

# %%
rows = messages(trace, CRITICAL_HYP)
fig, ax = plt.subplots(figsize=(style.NOTEBOOK_WIDTH, 0.32 * len(rows) + 2), layout="constrained")
sequence(ax, messages(trace, CRITICAL_HYP, symbolize=session.symbolize), CRITICAL_HYP)
plt.show()

# %% [markdown]
# ## Check yourself
#
# Replay the dispatches and completions with your own per-PE stack and check the rules of
# reference 2.4-2.5 against every fact, not against numbers copied from the output: a normal
# event is entered only on an empty stack, a critical one only when no critical runs, the
# depth is the stack's, never above 2, and each COMPLETE ends the top of the stack and resumes
# the PC its dispatch interrupted. Then: a critical handler really ran nested inside a normal
# one (its bar lies inside the normal bar), every trigger was taken at the first moment the
# rules allowed, the guest's own log agrees with the trace, and alone the guest never nests.

# %%
def nesting_faults(log: TraceLog) -> tuple[int, list[str]]:
    """Replay SdeiDispatch/SdeiComplete per CPU against the nesting rules: the deepest nesting, and
    each fact that broke a rule (reference 2.4-2.5)."""
    stacks: dict[int, list[SdeiDispatch]] = {}
    deepest, faults = 0, []
    for fact in log.of_kind(SdeiDispatch, SdeiComplete):
        stack = stacks.setdefault(fact.cpu, [])
        if isinstance(fact, SdeiDispatch):
            if fact.critical and any(d.critical for d in stack):
                faults.append(f"critical over critical: {fact}")
            if not fact.critical and stack:
                faults.append(f"a normal event pre-empted a handler: {fact}")
            stack.append(fact)
            if not fact.depth == len(stack) <= 2:
                faults.append(f"depth {fact.depth} with {len(stack)} on the stack: {fact}")
            deepest = max(deepest, fact.depth)
        elif not stack:
            faults.append(f"a COMPLETE with no dispatch outstanding: {fact}")
        else:
            top = stack.pop()
            if not (fact.event == top.event and fact.resume_pc == top.interrupted_pc):
                faults.append(f"COMPLETE of {fact.event} ended {top.event} or resumed elsewhere: {fact}")
    if any(stacks.values()):
        faults.append("a handler never completed")
    return deepest, faults


from sdeilab.widgets.exercise import Checks, Exercise  # noqa: E402

with Checks() as check:
    for name, log, deepest_wanted in (("with the host raising", trace, 2), ("alone", alone_trace, 1)):
        deepest, faults = nesting_faults(log)
        check(f"{name}: every dispatch and COMPLETE obeys the nesting rules", not faults, faults[:3])
        check(f"{name}: the deepest nesting is {deepest_wanted}", deepest == deepest_wanted, deepest)
    check("both runs report PASS",
          output.splitlines()[-1] == "nesting: PASS" and alone_output.splitlines()[-1] == "nesting: PASS")

    # A critical bar inside a normal bar, interrupting normal_window.
    nested = [(n, c) for c in handlers if c.critical for n in handlers
              if not n.critical and n.start < c.start and c.end is not None and n.end is not None and c.end < n.end]
    check("a critical handler ran inside a normal one", nested, handlers)
    check("each nested critical handler interrupted normal_window",
          nested and all(image.symbolize(c.interrupted_pc).startswith("normal_window") for _, c in nested))
    if nested:  # pointing at the middle of a nested critical bar in the interactive view reads that run's fact
        _, c = nested[0]
        read = explore.describe((c.start + c.end) / 2, 0.0)
        check("the live view, pointed at a nested critical bar, names it (critical, depth 2) and what it interrupted",
              f"event {c.event}</b> (critical, depth 2)" in read and "interrupted &lt;normal_window" in read, read)

    # Each trigger was taken as soon as the rules let it: at the end of the chain of handlers it
    # may not pre-empt (a COMPLETE is a dispatch point), or, if nothing blocked it, at the next
    # firmware call's return (normal_window calls the firmware every few dozen instructions).
    late = [(event, when, dispatch.vtime) for when, event, dispatch, chain in waits
            if (dispatch.vtime != chain[-1].end if chain else not 0 <= dispatch.vtime - when <= 100)]
    check("every trigger was taken at the first moment the rules allowed", not late, late)
    check("something had to wait", any(chain for *_, chain in waits))
    check("a critical event pre-empted at once, at depth 2",
          any(d.critical and d.depth == 2 for _, _, d, chain in waits if not chain))

    # The guest's printed log, entry by entry, is the trace's dispatch order and depth.
    printed = [(int(m[1]), int(m[2])) for m in re.finditer(r"enter event (\d+) \(\w+\) at depth (\d)", output)]
    check("the guest's own log lists the trace's dispatches, in order, at their depths",
          printed == [(d.event, d.depth) for d in dispatches], printed)

    # Alone: event 0 ran twice, the second time at the first one's COMPLETE, over the same PC.
    runs = alone_trace.of_kind(SdeiDispatch)
    check("alone, event 0 ran twice over the same PC, the second at the first one's COMPLETE",
          [d.event for d in runs] == [0, 0] and runs[0].interrupted_pc == runs[1].interrupted_pc
          and runs[1].vtime == alone_trace.of_kind(SdeiComplete)[0].vtime, runs)

# %% [markdown]
# ## Exercise: a normal event inside a normal handler
#
# Change the host's plan: at the first stop in `normal_window` (event 0's handler running, at
# depth 1) raise the **normal** event 5000 instead of the critical 5001, and nothing else. When,
# and at which depth, does 5000's handler run? Choose one of:
#
# * `"at once, at depth 2, over event 0's handler"`
# * `"later, at depth 1, once no handler runs"`
# * `"never: the raise is dropped while a handler runs"`

# %%
prediction = None  # e.g. "at once, at depth 2, over event 0's handler"
exercise = Exercise("Normal event 5000 raised while event 0's handler runs: when, and at which depth, does it run?",
                    ["at once, at depth 2, over event 0's handler", "later, at depth 1, once no handler runs",
                     "never: the raise is dropped while a handler runs"]).predict(prediction)

# %%
normal_plan = {("normal_window", 1): [NORMAL_HYP]}
again = Session(GUEST, cpus=1)
again.add_breakpoint("normal_window", cpu=0)
again_stops: dict[str, int] = {}
again_raised: list[int] = []
while not (again_stop := again.run()).final:
    where = again.symbolize(again.pc(0))
    again_stops[where] = again_stops.get(where, 0) + 1
    for event in normal_plan.get((where, again_stops[where]), []):
        again.platform.sdei.raise_event(event, 0)
        again_raised.append(again_stop.vtime)
late_5000 = [d for d in again.trace.of_kind(SdeiDispatch) if d.event == NORMAL_HYP]
again_handlers = handler_intervals(again.trace)
running_then = [h for h in again_handlers if again_raised and h.start <= again_raised[0] < (h.end or h.start + 1)]
if not late_5000:
    shown = "never: the raise is dropped while a handler runs"
elif late_5000[0].depth == 2:
    shown = "at once, at depth 2, over event 0's handler"
else:
    shown = "later, at depth 1, once no handler runs"
exercise.reveal(shown, "a normal event is dispatched only when no event runs on the PE (reference 2.4, "
                "condition 5); it waits, enabled, and COMPLETE is a dispatch point")
for d in again.trace.of_kind(SdeiDispatch):
    print(f"{d.vtime:>6} ns  dispatch {d.event} at depth {d.depth}, interrupted <{again.symbolize(d.interrupted_pc)}>")
with Checks() as check:
    check("the host raised 5000 once, while event 0's handler ran",
          len(again_raised) == 1 and [h.event for h in running_then] == [0], (again_raised, running_then))
    check("5000 was dispatched once, at depth 1", [d.depth for d in late_5000] == [1], late_5000)
    check("it was dispatched at the very vtime a handler completed",
          late_5000 and any(h.end == late_5000[0].vtime for h in again_handlers))
    check("the nesting rules held throughout", not nesting_faults(again.trace)[1], nesting_faults(again.trace)[1])
    check("the guest still reports PASS", again.uart_text().splitlines()[-1] == "nesting: PASS")
