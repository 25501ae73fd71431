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
# # A tour of sdeilab
#
# **Question:** what happens, call by call, when a guest brings up its secondary CPUs with PSCI?
#
# sdeilab emulates a small AArch64 virtual machine shaped like QEMU's `-M virt,gic-version=3`:
# four vCPUs, a GICv3, the generic timers and a PL011 UART. Its firmware (SMCCC, PSCI 1.1) is
# written in Python, and everything it does is recorded as *trace facts*, stamped with the CPU
# and the virtual time (instructions retired, 1 instruction = 1 ns).
#
# The first cell builds everything: a platform with the default `virt` profile (a KVM guest:
# `HVC #0` is the conduit and the host kernel answers) and the `smp_boot` guest.

# %%
# %config InlineBackend.figure_formats = ["retina"]  # drawn at twice its pixels: sharp on a HiDPI screen
# %config InlineBackend.print_figure_kwargs = {"bbox_inches": None}  # the figure as drawn, 840 px: never wider
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
from IPython.display import display

from sdeilab.lab.platform import make_platform
from sdeilab.toolchain import guests_dir
from sdeilab.trace import PowerTransition, SmcccReturn
from sdeilab.trace.export import write_trace
from sdeilab.trace.intervals import firmware_calls
from sdeilab.viz import figure_legend, style, timeline
from sdeilab.viz.panels import call_ladder, call_text, ladder_labels, ladder_rows, result_text
from sdeilab.viz.tables import Table

platform = make_platform(cpus=4, profile="virt")
platform.load(guests_dir() / "smp_boot.elf")
outcome = platform.run()
print(outcome.reason.value, "after", f"{outcome.instructions:,}", "instructions")

# %% [markdown]
# The guest's UART output: CPU 0 starts each secondary with `CPU_ON`, the secondary prints its
# MPIDR and the context id it was given in `x0`, then turns itself off with `CPU_OFF`.

# %%
print(platform.machine.uart_output.decode())

# %% [markdown]
# ## The run, drawn
#
# Above, one lane per CPU over the whole run: the power state (grey off, green on), the hatched
# band while the PE is SDEI-masked (every PE comes out of reset masked, and this guest never
# unmasks), a tick per firmware call coloured by the layer that answered, and the CPU_ON and
# CPU_OFF marks. Each secondary lives under half a microsecond, every 100 µs: its CPU_ON and
# CPU_OFF share one mark. Below, the same run call by call, as a ladder: one row per call in the
# order the firmware saw them, with its arguments (the entry point by name), its result by name
# and, in brackets, the layer that answered; the green rows are the firmware powering a CPU up.
# The fourth `CPU_ON` asks for MPIDR 0x4, a CPU this 4-CPU machine does not have: refused with
# `INVALID_PARAMETERS` (PSCI, DEN0022 5.6), the guest's cue to stop.

# %%
trace = platform.machine.trace
symbolize = platform.machine.image.symbolize
rows = len(ladder_rows(trace, symbolize=symbolize))
fig, (ax_run, ax_calls) = plt.subplots(2, 1, figsize=(style.NOTEBOOK_WIDTH, 6 + 0.32 * rows),
                                       height_ratios=(4, 0.32 * rows + 2),
                                       layout="constrained")
timeline(ax_run, trace)
ax_run.set_title("smp_boot on virt: four CPUs over the whole run", fontsize=style.TITLE)
call_ladder(ax_calls, trace, symbolize=symbolize, title="the same run, call by call")
figure_legend(fig)
plt.show()

# %% [markdown]
# ## Every firmware call, with the layer that answered it
#
# Each call is a pair of facts: `SmcccCall` (function ID and arguments) and `SmcccReturn`
# (results and the layer: on `virt` that is `kvm`, the host kernel). `CPU_OFF` never returns.

# %%
display(Table(["vtime", "CPU", "call", "result", "answered by"],
              [(f"{c.start:,} ns", c.cpu, call_text(c.label, c.args, symbolize),
                result_text(c.label, c.results[0]) if c.returned else "(no return)", c.layer or "-")
               for c in sorted(firmware_calls(trace), key=lambda c: c.start)]))

# %% [markdown]
# ## Power states per CPU
#
# Each secondary goes `off -> on-pending -> on -> off`. `on-pending` is the window between a
# successful `CPU_ON` and the moment the new CPU runs its first instruction; PSCI's
# `AFFINITY_INFO` reports it as `ON_PENDING` (2). QEMU 7.2 never reports it (see
# `guests/QEMU-DEVIATIONS.md`).

# %%
display(Table(["CPU", "vtime", "from", "to", "cause"],
              [(f.cpu, f"{f.vtime:,} ns", f.old, f.new, f.cause) for f in trace.of_kind(PowerTransition)]))

# %% [markdown]
# ## Open the trace in Perfetto
#
# `write_trace` writes the Trace Event format: drop the file on https://ui.perfetto.dev to see
# one track per CPU with every call and power state. (`sdeilab run --trace` does the same.)

# %%
write_trace(trace, Path("tour.trace.json"))
display(Table(["fact kind", "count"], Counter(type(f).__name__ for f in trace).most_common()))

# %% [markdown]
# ## Check yourself
#
# Every secondary was started by a successful `CPU_ON`, went through `on-pending`, ran, and
# turned itself off; the guest ended with `SYSTEM_OFF`. The figure says so too: its ladder names
# three successful `CPU_ON`s at `<secondary_entry>`, each followed by its CPU powering on, the
# refused fourth, and `SYSTEM_OFF` last; its timeline marks three CPU_ONs, one per secondary.

# %%
labels = ladder_labels(ax_calls)
for n in (1, 2, 3):
    on = f"CPU_ON64(MPIDR {n:#x}, <secondary_entry>, ctx {0x1000 + n:#x}) → SUCCESS [kvm]"
    assert labels[labels.index(on) + 1] == f"CPU {n} powered on (on-pending)", labels
assert "CPU_ON64(MPIDR 0x4, <secondary_entry>, ctx 0x1004) → INVALID_PARAMETERS [kvm]" in labels
assert labels[-1] == "SYSTEM_OFF: no return"
(cpu_on_marks,) = [a for a in ax_run.lines if a.get_gid() == "cpu-on"]
assert sorted(round(y) for y in cpu_on_marks.get_ydata()) == [1, 2, 3]  # lanes of CPUs 1, 2, 3

cpu_on_results = [f.results[0] for f in trace.of_kind(SmcccReturn) if f.name == "CPU_ON64"]
assert cpu_on_results[:3] == [0, 0, 0], cpu_on_results
for cpu in (1, 2, 3):
    states = [f.new for f in trace.of_kind(PowerTransition, cpu=cpu)]
    assert states == ["on-pending", "on", "off"], (cpu, states)
assert outcome.reason.value == "system-off"
print("all checks passed")
