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
# # The life of an SDEI event, state by state
#
# **Question:** what states does an SDEI event go through, from REGISTER to UNREGISTER, and
# which calls does each state accept or refuse?
#
# An event's state is three bits, exactly what SDEI_EVENT_STATUS returns: registered (bit 0),
# enabled (bit 1), running (bit 2). Six combinations exist: unregistered (0), registered (1),
# enabled (3), registered and running (5), enabled and running (7), and unregister-pending (4:
# unregistered while its handler runs, finishing at COMPLETE). Reference section 2.2 gives
# TF-A's transition table (`sdei_state.c`, after DEN0054A section 6.1): for each state and
# call, the next state, or a refusal with DENIED, except UNREGISTER of a running event, which
# succeeds *late* and returns PENDING. The dispatcher's own action, taking an event into its
# handler, is a column of the same table: only an enabled, idle event can be dispatched. For a
# private event (event 0, bound PPIs) each PE has its own copy of the state (section 2.1).
#
# The lab's firmware enforces one such table (`sdeilab/firmware/sdei/table.py`): every call
# that touches an event's state goes through it and leaves an `SdeiTransition` fact, refused
# attempts included (a dispatch is an `SdeiDispatch`, a completion an `SdeiComplete`: both are
# `SdeiTransition`s that say more). Two shipped guests, ported from TF-A's tests (reference section 4):
#
# * `tftf_signal_serial`: each CPU in turn REGISTERs event 0, ENABLEs it, unmasks, SIGNALs
#   itself, runs the handler (which ends with COMPLETE_AND_RESUME), masks, DISABLEs and
#   UNREGISTERs: one plain life per PE (run here on 2 CPUs);
# * `tftf_state`: five sub-tests on the SP804's SPI bound as shared event 2000, which visit
#   every state, unregister-pending included, and check that each state refuses what it
#   must (run here on 1 CPU).

# %%
# %config InlineBackend.figure_formats = ["retina"]  # drawn at twice its pixels: sharp on a HiDPI screen
# %config InlineBackend.print_figure_kwargs = {"bbox_inches": None}  # the figure as drawn, 840 px: never wider
import re

import matplotlib.pyplot as plt
from IPython.display import display

from sdeilab.firmware.sdei.table import LABELS, TABLE, Action, EventState
from sdeilab.lab.platform import make_platform
from sdeilab.machine.outcome import StopReason
from sdeilab.toolchain import guests_dir
from sdeilab.trace import SdeiBinding, SdeiDispatch, SdeiTransition, SmcccCall, TraceLog
from sdeilab.trace.intervals import masked_intervals
from sdeilab.viz import sequence, state_machine, state_table, style
from sdeilab.viz.sequence import messages
from sdeilab.viz.state_machine import COMPACT_SIZE

SDEI_DIR = guests_dir() / "sdei"
RESULT = {0: "0", -2: "INVALID_PARAMETERS", -3: "DENIED", -5: "PENDING"}


def run(name: str, cpus: int) -> tuple[TraceLog, str]:
    trace = TraceLog()
    platform = make_platform(cpus, "virt", trace=trace)
    platform.load(SDEI_DIR / f"{name}.elf")
    outcome = platform.run(100_000_000)
    assert outcome.reason is StopReason.SYSTEM_OFF, outcome
    return trace, bytes(platform.machine.uart_output).decode()


serial, serial_out = run("tftf_signal_serial", 2)
state, state_out = run("tftf_state", 1)
print(serial_out)
print(state_out)

# %% [markdown]
# ## 1. The table the firmware enforces
#
# One row per action, one column per state (headed by its EVENT_STATUS value, as reference 2.2
# numbers them); `→ n` moves to state `n`, `=` accepts without moving, `✗` refuses with DENIED
# unless marked. Compare it with the table in reference section 2.2: the check at the end does,
# cell by cell.

# %%
def cell_text(state_: EventState, action: Action) -> str:
    cell = TABLE[state_][action]
    text = "✗" if cell.next is None else "=" if cell.next is state_ else f"→ {int(cell.next)}"
    return text + ("" if cell.result in (0, -3) else f" {RESULT[cell.result]}")


print("states: " + ", ".join(f"{int(s)} {LABELS[s]}" for s in TABLE) + "\n")
print(f"{'action':<21}" + "".join(f"{f'state {int(s)}':>13}" for s in TABLE))
for action in Action:
    print(f"{action.value:<21}" + "".join(f"{cell_text(s, action):>13}" for s in TABLE))

# %% [markdown]
# ## 2. One plain life: event 0 on each PE
#
# The facts of event 0 in `tftf_signal_serial`, per CPU: REGISTER, ENABLE, the dispatch on
# the way out of `SDEI_EVENT_SIGNAL`, COMPLETE_AND_RESUME (the same transition as COMPLETE,
# reference 2.6), DISABLE, UNREGISTER. Event 0 is private: CPU 1 and CPU 0 each walk their own
# copy of the state machine, and each must unmask first (a PE starts masked, after boot and
# after CPU_ON: reference 2.3).

# %%
for fact in serial.of_kind(SdeiTransition):  # SdeiDispatch and SdeiComplete are transitions too
    if fact.event == 0:
        print(f"{fact.vtime:>8} ns  CPU {fact.cpu}  {fact.action:<20} {fact.old:>17} -> {fact.new:<17} "
              f"{RESULT.get(fact.result, fact.result)}")
        if isinstance(fact, SdeiDispatch):
            print(f"{fact.vtime:>8} ns  CPU {fact.cpu}    handler entered ({fact.source}), depth {fact.depth}")

# %% [markdown]
# The same life as a sequence, between each CPU and the firmware: calls go right, the dispatch
# and the resumption come back, and the handler run is the bar on the CPU's lifeline. The
# SIGNAL and the dispatch share a vtime: a signal to oneself is taken on the way out of the call.

# %%
rows = messages(serial, 0)
fig, ax = plt.subplots(figsize=(style.NOTEBOOK_WIDTH, 0.32 * len(rows) + 2), layout="constrained")
sequence(ax, rows, 0)
plt.show()

# %% [markdown]
# ## 3. Every state, and what each refuses: `tftf_state`
#
# The state machine drawn from `TABLE`, with the counts of `tftf_state`'s transitions for event
# 2000 on CPU 0: black arrows were taken (with how often), grey ones not; in each box `↻` counts
# the calls the state accepted without moving and red `✗` those it refused; the highlighted box
# is where the event ended. The table under it names them, state by state, with their status
# bits and results. Sub-test a calls ENABLE, DISABLE, UNREGISTER
# and ROUTING_SET on the unregistered event and gets DENIED for each; sub-test d UNREGISTERs
# inside the handler and gets PENDING, the event sits in unregister-pending, refuses
# REGISTER, ENABLE, DISABLE and ROUTING_SET, answers a second UNREGISTER with PENDING again,
# and becomes unregistered at COMPLETE. The table's caption lists calls refused before the table
# is even consulted (COMPLETE with no dispatch outstanding, RELEASE while registered).

# %%
fig = plt.figure(figsize=COMPACT_SIZE)
ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))  # the compact drawing is in inches, on axes filling the figure
state_machine(ax, state, event=2000, cpu=0, compact=True)
plt.show()
display(state_table(state, 2000, cpu=0))

# %% [markdown]
# Each sub-test binds the interrupt and releases it at its end, so the `SdeiBinding` facts cut
# the trace into sub-tests a to e. Sub-test a (everything refused on an unregistered event,
# the dashed red arrows) and sub-test d (unregister-pending) as sequences:

# %%
binds = [f for f in state.of_kind(SdeiBinding) if f.bound]
releases = [f for f in state.of_kind(SdeiBinding) if not f.bound]
subtests = dict(zip("abcde", [(b.vtime, r.vtime + 1) for b, r in zip(binds, releases, strict=True)], strict=True))
heights = [0.3 * len(messages(state, 2000, subtests[name])) + 2 for name in "ad"]
fig, axes = plt.subplots(2, 1, figsize=(style.NOTEBOOK_WIDTH, sum(heights)), height_ratios=heights,
                         layout="constrained")
for ax, name in zip(axes, "ad", strict=True):
    sequence(ax, state, 2000, window=subtests[name])
    ax.set_title(f"event 2000, sub-test {name}")
plt.show()

# %% [markdown]
# ## Check yourself
#
# Type the table of reference section 2.2 in yourself (below, as it stands there), then check
# that (1) the firmware's `TABLE` is the same, cell by cell, and (2) every `SdeiTransition` fact
# of both runs (calls that reached the table, and dispatches) did what your table says, with
# its return code. Then check the lifecycle itself: event 0's states on each PE went
# unregistered → registered → enabled → running → enabled → registered → unregistered, its
# dispatch came at its SIGNAL's vtime on an unmasked PE, `tftf_state` visited all six states,
# and ENABLE of the unregistered event was refused with DENIED without moving it.

# %%
SPEC_2_2 = """
| State \\ call | REGISTER | RELEASE | ENABLE | DISABLE | UNREGISTER | ROUTING_SET | CONTEXT | COMPLETE | COMPLETE_AND_RESUME | (dispatch) |
| 0 unregistered | → 1 | = | ✗ | ✗ | ✗ | ✗ | ✗ | ✗ | ✗ | ✗ |
| 4 unregister-pending | ✗ | ✗ | ✗ | ✗ | ✗ (PENDING) | ✗ | = | → 0 | → 0 | ✗ |
| 1 registered | ✗ | ✗ | → 3 | = | → 0 | = | ✗ | ✗ | ✗ | ✗ |
| 5 registered + running | ✗ | ✗ | → 7 | = | → 4, returns **PENDING** | ✗ | = | → 1 | → 1 | ✗ |
| 3 enabled | ✗ | ✗ | = | → 1 | → 0 | ✗ | ✗ | ✗ | ✗ | → 7 |
| 7 enabled + running | ✗ | ✗ | = | → 5 | → 4, returns **PENDING** | ✗ | = | → 3 | → 3 | ✗ |
"""
STATUS_NAMES = {0: "unregistered", 1: "registered", 3: "enabled", 5: "registered-running", 7: "enabled-running",
                4: "unregister-pending"}  # the trace's names for EVENT_STATUS values


def parse_spec(text: str) -> dict[str, dict[str, tuple[str | None, int]]]:
    """{state: {action: (next state or None if refused, return code)}} from the markdown table."""
    lines = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.strip().splitlines()]
    header = [h.lower().replace("_", "-").strip("()") for h in lines[0][1:]]
    spec: dict[str, dict[str, tuple[str | None, int]]] = {}
    for row in lines[1:]:
        here = STATUS_NAMES[int(row[0].split()[0])]
        spec[here] = {}
        for action, cell in zip(header, row[1:], strict=True):
            pending = "PENDING" in cell
            if cell.startswith("✗"):
                spec[here][action] = (None, -5 if pending else -3)
            elif cell == "=":
                spec[here][action] = (here, 0)
            else:
                spec[here][action] = (STATUS_NAMES[int(re.match(r"→ (\d)", cell)[1])], -5 if pending else 0)
    return spec


SPEC = parse_spec(SPEC_2_2)
from sdeilab.widgets.exercise import Checks, Exercise  # noqa: E402

with Checks() as check:
    differ = []  # (1) the firmware's table is the spec's, cell by cell
    for state_, row in TABLE.items():
        for action, cell in row.items():
            want_next, want_result = SPEC[LABELS[state_]][action.value]
            if (None if cell.next is None else LABELS[cell.next], cell.result) != (want_next, want_result):
                differ.append((LABELS[state_], action.value))
    check(f"the firmware's TABLE is reference 2.2's, all {sum(map(len, TABLE.values()))} cells", not differ, differ)

    checked, disobeyed = 0, []  # (2) every fact that reached the table did what the spec says
    for trace in (serial, state):
        for fact in trace.of_kind(SdeiTransition):
            if fact.old == "-":
                continue  # refused before the table: section 2.2's extra conditions (no dispatch, binding rules)
            want_next, want_result = SPEC[fact.old][fact.action]
            if not (fact.new == (want_next or fact.old) and fact.result == want_result):
                disobeyed.append(fact)
            checked += 1
    check(f"every transition of both runs ({checked}) did what reference 2.2 says", not disobeyed, disobeyed[:3])
    replayed = [f for trace in (serial, state) for f in trace.of_kind(SdeiTransition) if f.old != "-"]
    check("every row of the table was exercised", {f.old for f in replayed} == set(STATUS_NAMES.values()),
          {f.old for f in replayed})
    check("some call was refused with DENIED and some answered PENDING",
          any(f.result == -3 for f in replayed) and any(f.result == -5 for f in replayed))

    for cpu in (0, 1):  # the plain life of event 0 on each PE
        moves = [f for f in serial.of_kind(SdeiTransition, cpu=cpu) if f.event == 0 and f.old != f.new]
        path = [moves[0].old] + [f.new for f in moves]
        check(f"CPU {cpu}: event 0 went unregistered -> registered -> enabled -> running -> enabled -> "
              "registered -> unregistered", path == ["unregistered", "registered", "enabled", "enabled-running",
                                                     "enabled", "registered", "unregistered"], path)
        (signal,) = [c for c in serial.of_kind(SmcccCall, cpu=cpu) if c.name == "SDEI_EVENT_SIGNAL"]
        (dispatch,) = serial.of_kind(SdeiDispatch, cpu=cpu)
        check(f"CPU {cpu}: event 0 was dispatched at its SIGNAL's vtime, on an unmasked PE",
              dispatch.vtime == signal.vtime and dispatch.event == 0
              and not any(m.covers(dispatch.vtime) for m in masked_intervals(serial) if m.cpu == cpu))

    visited = {f.old for f in state.of_kind(SdeiTransition)} | {f.new for f in state.of_kind(SdeiTransition)}
    check("tftf_state visited all six states", set(STATUS_NAMES.values()) <= visited, visited)
    (refused_enable,) = [f for f in state.of_kind(SdeiTransition) if f.action == "enable" and f.old == "unregistered"]
    check("ENABLE of the unregistered event was refused with DENIED, without moving it",
          refused_enable.result == -3 and refused_enable.new == "unregistered", refused_enable)
    check("both guests report PASS", serial_out.splitlines()[-1] == "tftf_signal_serial: PASS"
          and state_out.splitlines()[-1] == "tftf_state: PASS")

# %% [markdown]
# ## Exercise: DISABLE before ENABLE
#
# A driver registers event 0 and, to be safe, disables it before it ever enabled it. The guest
# below is built from this cell's text: REGISTER, DISABLE, EVENT_STATUS, UNREGISTER. What does
# `SDEI_EVENT_DISABLE` answer, and in which state does it leave the event? Choose one of:
#
# * `"SUCCESS, still registered"`
# * `"DENIED, still registered"`
# * `"SUCCESS, unregistered"`
# * `"INVALID_PARAMETERS, still registered"`

# %%
prediction = None  # e.g. "DENIED, still registered"
exercise = Exercise("SDEI_EVENT_DISABLE of a registered event that was never enabled: the answer, and the state?",
                    ["SUCCESS, still registered", "DENIED, still registered", "SUCCESS, unregistered",
                     "INVALID_PARAMETERS, still registered"]).predict(prediction)

# %%
import tempfile
from pathlib import Path

from sdeilab.toolchain import build_source_text

CAREFUL = r"""
#include "guest.h"

void never(void);                       /* the handler: never entered, nothing is signalled */
__asm__(".text\n.globl never\n.balign 4\nnever:\n    b .\n");

static void show(const char *what, int64_t v)
{
    puts(what);
    puts(" = ");
    put_dec(v);
    putc('\n');
}

int main(void)
{
    show("EVENT_REGISTER(0)", smccc_call5(SDEI_EVENT_REGISTER, 0, (uint64_t)(uintptr_t)never, 0, 0, 0));
    show("EVENT_DISABLE(0)", smccc_call(SDEI_EVENT_DISABLE, 0, 0, 0));
    show("EVENT_STATUS(0)", smccc_call(SDEI_EVENT_STATUS, 0, 0, 0));
    show("EVENT_UNREGISTER(0)", smccc_call(SDEI_EVENT_UNREGISTER, 0, 0, 0));
    return 0;
}
"""
careful_trace = TraceLog()
careful = make_platform(1, "virt", trace=careful_trace)
with tempfile.TemporaryDirectory(prefix="sdeilab-") as tmp:
    careful.load(build_source_text(CAREFUL, "c", Path(tmp) / "careful.elf"))
careful_outcome = careful.run(1_000_000)
print(bytes(careful.machine.uart_output).decode())
(disable,) = [f for f in careful_trace.of_kind(SdeiTransition) if f.action == "disable"]
NAMES = {0: "SUCCESS", -2: "INVALID_PARAMETERS", -3: "DENIED", -5: "PENDING"}
after = "still registered" if disable.new == "registered" else disable.new
exercise.reveal(f"{NAMES.get(disable.result, disable.result)}, {after}",
                f"the table's cell for DISABLE in state 1 (registered) is '{cell_text(EventState.REGISTERED, Action.DISABLE)}': "
                "accepted without moving")
with Checks() as check:
    check("the guest ran to its SYSTEM_OFF", careful_outcome.reason is StopReason.SYSTEM_OFF, careful_outcome)
    check("DISABLE found event 0 registered", disable.old == "registered", disable.old)
    check("it did what the firmware's TABLE says for that cell",
          (disable.new, disable.result) == (LABELS[TABLE[EventState.REGISTERED][Action.DISABLE].next or EventState.REGISTERED],
                                            TABLE[EventState.REGISTERED][Action.DISABLE].result), disable)
    check("and what reference 2.2 says", (disable.new, disable.result) == (SPEC["registered"]["disable"][0]
                                                                           or "registered",
                                                                           SPEC["registered"]["disable"][1]))
