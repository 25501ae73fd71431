# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
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
from collections import Counter
from pathlib import Path

from sdeilab.firmware.platform import make_platform
from sdeilab.toolchain import guests_dir
from sdeilab.trace import PowerTransition, SmcccCall, SmcccReturn

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
# ## Every firmware call, with the layer that answered it
#
# Each call is a pair of facts: `SmcccCall` (function ID and arguments) and `SmcccReturn`
# (results and the layer: on `virt` that is `kvm`, the host kernel). `CPU_OFF` never returns.

# %%
trace = platform.machine.trace
returns = {}
for fact in trace.of_kind(SmcccCall, SmcccReturn):
    if isinstance(fact, SmcccCall):
        print(f"{fact.vtime:>9} ns  CPU {fact.cpu}  {fact.name:<18} {', '.join(hex(a) for a in fact.args)}")
    else:
        print(f"{fact.vtime:>9} ns  CPU {fact.cpu}    -> {fact.results[0]:#x}  (answered by {fact.layer})")

# %% [markdown]
# ## Power states per CPU
#
# Each secondary goes `off -> on-pending -> on -> off`. `on-pending` is the window between a
# successful `CPU_ON` and the moment the new CPU runs its first instruction; PSCI's
# `AFFINITY_INFO` reports it as `ON_PENDING` (2). QEMU 7.2 never reports it (see
# `guests/QEMU-DEVIATIONS.md`).

# %%
for cpu in range(4):
    steps = [(f.vtime, f.new) for f in trace.of_kind(PowerTransition, cpu=cpu)]
    print(f"CPU {cpu}: " + "  ".join(f"{state}@{vtime}" for vtime, state in steps))

# %% [markdown]
# ## Open the trace in Perfetto
#
# `write_trace` writes the Trace Event format: drop the file on https://ui.perfetto.dev to see
# one track per CPU with every call and power state. (`sdeilab run --trace` does the same.)

# %%
from sdeilab.trace.export import write_trace

write_trace(trace, Path("tour.trace.json"))
print(Counter(type(f).__name__ for f in trace))

# %% [markdown]
# ## Check yourself
#
# Every secondary was started by a successful `CPU_ON`, went through `on-pending`, ran, and
# turned itself off; the guest ended with `SYSTEM_OFF`.

# %%
cpu_on_results = [f.results[0] for f in trace.of_kind(SmcccReturn) if f.name == "CPU_ON64"]
assert cpu_on_results[:3] == [0, 0, 0], cpu_on_results
for cpu in (1, 2, 3):
    states = [f.new for f in trace.of_kind(PowerTransition, cpu=cpu)]
    assert states == ["on-pending", "on", "off"], (cpu, states)
assert outcome.reason.value == "system-off"
print("all checks passed")
