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
# # The debugger dashboard
# Which call on which CPU moves SDEI event 2000 from one state to the next in TF-A's state-machine
# test, and can we stop the machine right there? The dashboard is just below; the text after it
# explains the guest and every control.

# %%
from sdeilab.firmware.sdei.quirks import Quirks
from sdeilab.lab.session import REGISTERS
from sdeilab.toolchain import guests_dir
from sdeilab.trace import SdeiDispatch, SdeiTransition, SmcccCall, SmcccReturn
from sdeilab.viz.names import SDEI_RESULTS as RESULTS  # SDEI return codes by name (reference section 1.2)
from sdeilab.widgets import Lab

GUEST = guests_dir() / "sdei" / "tftf_state.elf"
EVENT = 2000  # what INTERRUPT_BIND(42) returns on this platform (the UART below shows it)
LIMIT = 20_000_000  # a bound on every run here: the whole scenario retires about 3.1 million instructions

lab = Lab(GUEST, cpus=4, profile="virt")
lab.show_event(EVENT)  # the state machine of the bound event (it has no transition yet)
lab

# %% [markdown]
# ## The guest
#
# The guest is `guests/sdei/tftf_state.c`, a port of TFTF's `test_sdei_state` (reference
# section 4, test 1). CPU 0 runs five sub-tests on the SP804 timer's SPI (INTID 42). Each
# sub-test binds the SPI afresh to an SDEI event with `INTERRUPT_BIND` (section 2.9; the event
# is 2000 here) and releases it at the end. Then CPU 0 powers on each other CPU in turn with
# `CPU_ON`, and that CPU runs the same five sub-tests: a. unregistered, b. registered,
# c. registered and running, d. unregister-pending, e. enabled. These are the states of
# section 2.2, and every return code must be exactly TF-A's.
#
# The cell above builds a `Lab`: the dashboard over a debugger session on the default `virt`
# profile, where KVM answers PSCI and SDEI. The cells below drive it through the same public
# methods its buttons call, and the displayed dashboard follows them. Run the notebook in
# JupyterLab (`sdeilab lab`) to use the dashboard beside the code. To show only the app on a
# projector, run `sdeilab dashboard notebooks/01_dashboard.ipynb`: Voila runs the cells, shows
# their outputs and widgets, and hides the code.

# %% [markdown]
# ## The controls
#
# Every button calls one public method of `Lab`. A cell can call the same method; docs/lab.md
# has the details.
#
# | control | method | what it does |
# |---|---|---|
# | **Run** | `lab.start()`; in a cell, `lab.run()` | runs until a breakpoint, a firmware event that is being watched, a pause, or the guest's end. The button runs in a background thread with a progress bar, and the views refresh every half second. |
# | **Pause** | `lab.pause()` | stops a run at the end of the current slice, with nothing lost from the trace. |
# | **Step** | `lab.step(n)`, `lab.step(n, cpu)` | exactly `n` instructions (the `n` field): machine-wide, on whichever CPU the scheduler runs next, or with a CPU chosen in *on*, until that CPU has run `n` (the others run meanwhile as the scheduler has them). |
# | **Step firmware** | `lab.step_firmware(cpu)` | runs to just after the next SMCCC call or SDEI handler entry (of the CPU chosen in *on*, or of any CPU). |
# | **Run until** | `lab.run_until("CPU_ON", cpu)` | runs until the firmware event named in the *event* field happens (on its CPU). |
# | **Step back** | `lab.step_back(n)` | goes back `n` instructions: the last snapshot before that point, then an exact replay, because stopping never changes what the guest does. |
# | **Reset** | `lab.reset()` | loads the guest again. Breakpoints stay. |
# | **gdb** | `lab.serve_gdb()` | serves the guest to gdb on 127.0.0.1; `target remote :PORT` (shown beside the toggle) in `gdb-multiarch`, with reverse execution (docs/debugging.md). The views follow gdb's stops. |
#
# **Breakpoints** panel. *breakpoint* takes an address or a symbol (`lab.add_breakpoint`).
# *event* takes an SMCCC function (`SDEI_EVENT_COMPLETE`; `CPU_ON` matches `CPU_ON64` too) or a
# fact kind (`SdeiDispatch`, `PowerTransition`), each with an optional CPU
# (`lab.break_on("SDEI_EVENT_COMPLETE", cpu=2)`).
#
# **Platform** panel. The profile and the SDEI quirks (`lab.set_profile`, `lab.set_quirk`;
# docs/profiles.md). Changing either restarts the guest.
#
# **Status line.** Why the machine stopped, in words: a stop at a firmware call names the call,
# its arguments, its result by name and the layer that answered it
# (`SDEI_EVENT_UNREGISTER(2000) on CPU 2 → PENDING (-5), answered by kvm`).
#
# **Views.**
# - *Disassembly* of the CPU that ran last, or of the CPU you choose: `=>` marks PC and `*` a
#   breakpoint. Words the guest's ELF symbols say are data (a literal pool, the padding after a
#   function's `ret`) show as `.word 0x...`, as objdump shows them, not as instructions.
# - *SDEI per CPU*: power state, whether SDEI events are masked, the events whose handlers run
#   (a critical one over a normal one) and the nesting depth.
# - *Recent firmware calls*, below the pictures and as wide as the dashboard: the last twelve
#   calls, the newest on top, with their arguments (an address by its symbol), results by name and
#   answering layer. Clicking one steps back to just after it (`lab.step_back_to(seq)`, a replay).
# - *UART* output, kept scrolled to its last line. The line under it types into the guest's UART
#   (Enter sends the line with its newline: `lab.send_input("text\n")`).
# - Below the pictures, one click away: *Registers* (one column per CPU; cells that changed since
#   the previous stop are highlighted), *Memory* at an address or a symbol (by default the
#   stack), and the profile and quirks, each described where it is chosen.
# - *State machine* of the chosen event: its current state is named above the picture and
#   highlighted in it, and each arrow counts the transitions taken.
# - *Timeline*: one lane per CPU, with power state, SDEI masking, handlers and firmware calls.
#   It is the static picture, redrawn at each stop, rather than the interactive `TimelineView`
#   (notebook 31): that one is 840 px wide and fixed, and beside the state machine it would not
#   leave both pictures and the controls on one 1440 x 900 screen.
# - Where the page is too narrow for the pictures beside the code (1280 x 800 with JupyterLab's
#   file browser open), they go below it at their full size: they never shrink, since their text
#   is sized for the width they are drawn at.

# %% [markdown]
# ## 1. Break on CPU_ON
#
# `break_on("CPU_ON")` stops the machine at the first call of `CPU_ON` from any CPU. The stop
# comes just after the call, so the firmware has already answered it. This is CPU 0 starting
# CPU 1 (x1 = 1 is the target's MPIDR) after its own five sub-tests.

# %%
cpu_on = lab.break_on("CPU_ON")
on_stop = lab.run(LIMIT)
print(on_stop.detail)
print("arguments:", [hex(a) for a in on_stop.fact.args], "| target entry point:",
      lab.session.symbolize(on_stop.fact.args[1]))
print(lab.session.uart_text())

# %% [markdown]
# ## 2. Run until CPU 2 enters its handler
#
# The event is SPI 42 bound on CPU 2 and routed to it. `run_until("SdeiDispatch", cpu=2)`
# stops at CPU 2's first dispatch, which comes in sub-test c. The registers are the handler's
# entry state (section 2.4): x0 = the event and x1 = the registration argument (TFTF's
# `sdei_state_entrypoint` calls it as a function). x2 and x3 are the interrupted PC and PSTATE,
# and PC is the entry point. The state machine now highlights `enabled-running`, status 0b111.

# %%
lab.remove_breakpoint(cpu_on)
dispatch_stop = lab.run_until("SdeiDispatch", cpu=2, max_instructions=LIMIT)
entry = lab.session.registers(2)
print(dispatch_stop.detail)
for name in ("x0", "x1", "x2", "x3", "PC"):
    print(f"  {name:<6} {entry[name]:#018x}  {lab.session.symbolize(entry[name])}")
print("changed on CPU 2 since the stop before:", sorted(lab.session.cpu_view(2).changed, key=REGISTERS.index))

# %% [markdown]
# ## 3. Step to the next firmware event, twice
#
# Inside the handler, sub-test c asks `EVENT_STATUS` (x0 returns 7: registered, enabled and
# running). Then it calls `EVENT_DISABLE`, which the table of section 2.2 allows while the
# handler runs: the state goes to `registered-running`, status 0b101.

# %%
status_stop = lab.step_firmware(cpu=2)
status_result = lab.session.registers(2)["x0"]
print(status_stop.detail, "-> x0 =", status_result)
disable_stop = lab.step_firmware(cpu=2)
print(disable_stop.detail, "-> x0 =", lab.session.registers(2)["x0"])
print("event", EVENT, "is now", lab.session.trace.select(SdeiTransition, event=EVENT)[-1].new)

# %% [markdown]
# ## 4. Break on SDEI_EVENT_COMPLETE on CPU 2
#
# The handler then tries the calls that must be refused while it runs, and ends with
# `EVENT_COMPLETE`. COMPLETE moves `registered-running` to `registered` (section 2.2). It also
# pops the dispatch and resumes CPU 2 exactly where the interrupt found it, at the PC that x2
# held on entry (section 2.6). The stop comes just after that call, so CPU 2's UART line for
# sub-test c has not been printed yet.

# %%
complete_on_2 = lab.break_on("SDEI_EVENT_COMPLETE", cpu=2)
complete_stop = lab.run(LIMIT)
resumed_pc = lab.session.pc(2)
print(complete_stop.detail)
print("CPU 2 resumed at", lab.session.symbolize(resumed_pc), "| interrupted at",
      lab.session.symbolize(entry["x2"]))
print("breakpoints:", [label for label, _ in lab.bp_list.options])
print("the last transitions of event", EVENT, "on CPU 2:")
for fact in lab.session.trace.select(SdeiTransition, cpu=2, event=EVENT)[-3:]:
    # old "-": refused before the state table; RELEASE needs reg_count == 0 on every PE (section 2.2)
    print(f"  {fact.action:<12} {fact.old} -> {fact.new}  ({RESULTS.get(fact.result, fact.result)})")
print(lab.session.uart_text().splitlines()[-1])

# %% [markdown]
# ## 5. Step, then step back; memory
#
# `step(25)` runs 25 instructions across the machine. `step_back(25)` loads the guest again
# and replays it to exactly where it was, so every register of every CPU is back. The memory
# view shows the word the handler sets when sub-test c succeeds (`handler_success`).

# %%
before = [lab.session.registers(cpu) for cpu in range(4)], lab.session.retired
lab.step(25)
moved = lab.session.retired
lab.step_back(25)
after = [lab.session.registers(cpu) for cpu in range(4)], lab.session.retired
print(f"retired: {before[1]:,} -> {moved:,} -> {after[1]:,}; all registers back: {after == before}")
lab.show_memory("handler_success")
print(lab.session.memory("handler_success", 4))

# %% [markdown]
# ## 6. Profiles and quirks
#
# The switches rebuild the platform and restart the guest. For example,
# `lab.set_profile("firmware")` moves PSCI and SDEI to EL3 (the SMC build of the guest), and
# `lab.set_quirk("version_1_1", True)` makes the firmware report SDEI 1.1, so TFTF's scenario
# stops at its version check (section 4: it runs only on 1.0.0). They are not switched here,
# so that the dashboard above stays where section 4 left it. Press **Run** to go on to CPU 2's
# next COMPLETE (sub-test d, after which the event is `unregistered`); remove the breakpoint to
# run to the end.

# %%
print("profiles:", ", ".join(lab.session.profiles()))
print("quirks:  ", ", ".join(Quirks.names()))

# %% [markdown]
# ## Check yourself
#
# What the dashboard stopped at is in the trace:
# - `CPU_ON64` from CPU 0 for CPU 1.
# - CPU 2's first dispatch, of event 2000, into `sdei_state_entrypoint`.
# - `EVENT_STATUS` = 7, then `EVENT_DISABLE` moving the event to `registered-running`.
# - That handler's own `EVENT_COMPLETE` moving it to `registered` and resuming CPU 2 where it
#   was interrupted.
#
# Stepping back restored every register. The widgets show the same: status line, breakpoint
# list, state label and pictures.

# %%
trace = lab.session.trace
assert isinstance(on_stop.fact, SmcccCall) and on_stop.fact.name == "CPU_ON64"
assert on_stop.fact.cpu == 0 and on_stop.fact.args[0] == 1

first_on_2 = trace.select(SdeiDispatch, cpu=2)[0]
assert dispatch_stop.fact == first_on_2 and first_on_2.event == EVENT
assert entry["x0"] == EVENT and entry["PC"] == lab.session.address_of("sdei_state_entrypoint")
assert entry["x2"] == first_on_2.interrupted_pc and entry["PC"] == first_on_2.handler

assert status_stop.fact.name == "SDEI_EVENT_STATUS" and status_result == 0b111
assert disable_stop.fact.name == "SDEI_EVENT_DISABLE"
# The call's answer, as the trace recorded it (the first return on CPU 2 after the DISABLE).
disable_return = next(f for f in trace.of_kind(SmcccReturn, cpu=2) if f.seq > disable_stop.fact.seq)
assert disable_return.results[0] == 0

complete = complete_stop.fact
assert complete.name == "SDEI_EVENT_COMPLETE" and complete.cpu == 2
transitions = trace.select(SdeiTransition, cpu=2, event=EVENT)
last = transitions[-1]
assert (last.action, last.old, last.new) == ("complete", "registered-running", "registered")
assert last.seq > complete.seq  # the firmware acted on the very call the dashboard stopped at
assert resumed_pc == first_on_2.interrupted_pc
assert [t.action for t in transitions if t.seq > first_on_2.seq and t.old != t.new] == \
    ["disable", "complete"]
assert "CPU 2: b. registered: ok" in lab.uart_view.value and "CPU 2: c." not in lab.uart_view.value

assert after == before and moved == before[1] + 25
assert lab.session.memory("handler_success", 4) == (1).to_bytes(4, "little")

assert "<b>step-back</b>: back 25 instructions" in lab.status.value and lab.error == ""
assert "<b>CPU 2</b>" in lab.disasm_html.value  # the views follow the CPU that stopped last
assert "on SDEI_EVENT_COMPLETE on CPU 2" in [label for label, _ in lab.bp_list.options]
# The recent-calls list starts with the handler's COMPLETE (which returns nowhere: it resumes CPU 2),
# after the refused calls, their results named.
recent = [label for label, _ in lab.calls_list.options]
assert "SDEI_EVENT_COMPLETE(0) on CPU 2 -> no return" in recent[0]  # the newest on top
assert "-> DENIED (-3), by kvm" in recent[1]
assert lab.wait_plots(60) and lab.plot_error == ""
assert ">registered</b>" in lab.state_label.value
assert bytes(lab.state_image.value).startswith(b"\x89PNG") and bytes(lab.timeline_image.value).startswith(b"\x89PNG")
print("all checks passed")
