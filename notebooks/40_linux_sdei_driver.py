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
# # Linux's own SDEI driver, across CPU hotplug and as an NMI watchdog
#
# **Question:** what does Linux's own SDEI driver do across CPU hotplug, and can a real kernel
# module use SDEI as an NMI watchdog?
#
# The client here is nobody's on this team: Debian's `linux-image-*-cloud-arm64` (6.1, built with
# `CONFIG_ARM_SDE_INTERFACE=y`), booted on 2 CPUs of the lab's `virt` profile with a device tree
# the lab generates from its own tables (`docs/linux.md`). Its SDEI driver is
# `drivers/firmware/arm_sdei.c`; what it does around power management is in reference section 3.3:
#
# * at probe, and again at reboot, `sdei_platform_reset` calls **PRIVATE_RESET** on every CPU and
#   then **SHARED_RESET** once (section 2.11);
# * its CPU hotplug state makes `sdei_cpuhp_up` run on each CPU as it comes up: re-register and
#   re-enable the private events it owns, then **PE_UNMASK**;
# * `sdei_cpuhp_down`, on the CPU going down, **UNREGISTERs** every private event locally and
#   **PE_MASKs**, so that the CPU is clean *before* PSCI's `cpu_die` calls **CPU_OFF**.
#
# Section 3.1 says why it can afford to: a PE comes out of PSCI `CPU_ON` masked with its private
# events reset, whoever implements SDEI sees every `CPU_ON` (TF-A's `sdei_cpu_on_init`; notebook
# `12_cpu_on_masking` shows what breaks otherwise). Linux does not rely on that, it masks
# itself, but it does rely on the firmware answering its calls in that order.
#
# The second half is the NMI-watchdog story (notebook `32_nmi_watchdog` with a guest of ours)
# with a real kernel module: `guests/linux/sdei_watchdog`, built by
# `scripts/build-linux-module.sh` against Debian's headers for that very kernel, registers and
# enables event 5000, which the `virt` profile defines as hypervisor-originated. CPU 1 then spins
# with IRQs masked and the lab raises the event on it from outside (`Sdei.raise_event`), as a
# hypervisor's watchdog would. An IRQ could not get in; an SDEI event does, because PSTATE.I is
# no dispatch condition (section 2.4: only PE_MASK and a running handler hold an event back).
#
# **One boot** does both: the init script below loads the module, takes CPU 1 offline and online
# twice *with the module's private event registered* (so the driver's re-registration shows
# too), then asks the module to spin on CPU 1, prints the module's counters, unloads it and
# powers off. That is about 1e9 guest instructions, 20 to 40 s depending on the computer; while
# it runs, the boot cell shows a bar of the instructions retired and Linux's console as it comes.

# %%
# %config InlineBackend.figure_formats = ["retina"]  # drawn at twice its pixels: sharp on a HiDPI screen
# %config InlineBackend.print_figure_kwargs = {"bbox_inches": None}  # the figure as drawn, 840 px: never wider
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt

from sdeilab.lab.platform import make_platform
from sdeilab.linux import busybox, cache_dir, initramfs, kernel_image, kernel_release
from sdeilab.linux.watchdog import MODULE, run_watchdog
from sdeilab.machine.memmap import cpu_affinity
from sdeilab.machine.outcome import StopReason
from sdeilab.toolchain import guests_dir
from sdeilab.trace import PowerTransition, SdeiComplete, SdeiDispatch, SdeiMask, SmcccCall
from sdeilab.trace.intervals import firmware_calls
from sdeilab.viz import figure_legend, style, timeline
from sdeilab.viz.panels import call_ladder, ladder_labels, ladder_rows
from sdeilab.widgets import BootProgress

REPO = guests_dir().parent  # the repository: the notebook may run from anywhere
EVENT = 5000  # the virt profile's normal hypervisor-originated event
SPIN_CPU = 1  # the CPU that is hotplugged, and then spins with IRQs masked
CYCLES = 2  # offline/online cycles of CPU 1
RAISES = 3  # events the lab raises while CPU 1 spins; the module's spin waits for as many
SETTLE = 20_000  # instructions between the spinner's entry (or the previous handler's end) and a raise
BUDGET = 3_000_000_000  # the whole boot is about 1e9 instructions
BOOT = 1_000_000_000  # about what the boot retires: where the progress bar ends

# The module, built for the kernel the project fetched (its release names the headers); the
# script only rebuilds when the cache lacks it, and prints the .ko's path last.
built = subprocess.run(["bash", str(REPO / "scripts" / "build-linux-module.sh"), MODULE, kernel_release()],
                       capture_output=True, text=True, check=False,
                       env={**os.environ, "SDEILAB_DEBIAN_CACHE": str(cache_dir())})
assert built.returncode == 0, built.stderr[-3000:]
ko = Path(built.stdout.strip().splitlines()[-1])

INIT = f"""#!/bin/busybox sh
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
sdei=/sys/firmware/devicetree/base/firmware/sdei
echo "init: device tree: $($bb tr -d '\\000' < $sdei/compatible), method $($bb tr -d '\\000' < $sdei/method)"
echo "init: driver: $($bb ls /sys/bus/platform/drivers/sdei | $bb grep -v -e bind -e uevent)"
$bb insmod /{MODULE}.ko event={EVENT} || echo "init: insmod failed"
for cycle in $($bb seq {CYCLES}); do
  echo 0 > /sys/devices/system/cpu/cpu{SPIN_CPU}/online
  echo "init: cycle $cycle: CPU {SPIN_CPU} offline, online CPUs $($bb cat /sys/devices/system/cpu/online)"
  echo 1 > /sys/devices/system/cpu/cpu{SPIN_CPU}/online
  echo "init: cycle $cycle: CPU {SPIN_CPU} online, online CPUs $($bb cat /sys/devices/system/cpu/online)"
done
P=/sys/module/{MODULE}/parameters
echo {RAISES} > $P/spin_events
echo {SPIN_CPU} > $P/spin
echo "init: hits=$($bb cat $P/hits) masked_hits=$($bb cat $P/masked_hits) spin=$($bb cat $P/spin)"
echo "init: last=$($bb cat $P/last)"
$bb rmmod {MODULE}
echo "init: power off"
$bb poweroff -f
"""
platform = make_platform(2, "virt")
platform.load_kernel(kernel_image(), initramfs(busybox(), INIT, files={f"{MODULE}.ko": ko.read_bytes()}))
machine, sdei, trace = platform.machine, platform.sdei, platform.machine.trace
assert sdei is not None
print(f"kernel {kernel_release()}, module {ko.name} ({ko.stat().st_size} bytes)")

# %% [markdown]
# ## 1. The boot, driven like a debugger
#
# The host finds its moments without guessing (`sdeilab.linux.watchdog.run_watchdog`, which
# `tests/test_linux_module.py` uses too): a UART
# listener stops the run right after the module's load line, which prints the spinner's address
# and size (`%px %pS`); the run goes on through the hotplug cycles to an address breakpoint at
# the spinner; the loop is read from the spinner's code as the CPU fetches it; each event is
# raised a fixed number of instructions later, the CPU being in that loop. Those are debugger
# stops: they leave no fact in the trace.
#
# While it runs, `BootProgress` (`sdeilab.widgets`) shows the instructions retired against the
# boot's usual 1e9, and the console's last lines. Interrupting the kernel (the stop button) stops the
# machine at the end of the slice that runs, a clean stop: the widget says how far it came, and
# `trace` keeps every fact recorded until then.

# %%
started = time.perf_counter()
with BootProgress(machine, BOOT):  # the bar and Linux's console while it boots
    run = run_watchdog(platform, EVENT, RAISES, SETTLE, BUDGET)
elapsed = time.perf_counter() - started
outcome, uart, spinner, loop, spin_cpu, raised_in_loop = (run.outcome, run.uart, run.spinner, run.loop, run.spin_cpu,
                                                          run.raised_in_loop)
print(f"{outcome.reason.name} (exit {outcome.exit_status}) after {elapsed:.0f} s, "
      f"{len(trace):,} facts; spinner {spinner.start:#x}+{len(spinner):#x} on CPU {spin_cpu}, "
      f"loop {loop.start:#x}..{loop.stop:#x}")

# %% [markdown]
# ## 2. What Linux printed
#
# The kernel's own lines that matter: PSCI 1.1 and SDEI found in firmware (through the
# `/firmware/sdei` node with the profile's conduit), both CPUs up, the hotplug messages, the
# module's lines, and the init script's (prefixed `init:`).

# %%
MATTERS = re.compile(r"psci:|sdei|smp:|CPU1|[Bb]ooted secondary|init:|reboot:")
for text in uart.splitlines():
    if MATTERS.search(text):
        print(text)

# %% [markdown]
# ## 3. At probe: platform reset, then PE_UNMASK on each CPU as it comes up
#
# Every SDEI call before the module's first, with the firmware's answer. `sdei_probe` checks the
# version, runs `sdei_platform_reset` (PRIVATE_RESET on each CPU through a cross-call, then
# SHARED_RESET, section 2.11) and installs the hotplug state, whose `sdei_cpuhp_up` unmasks
# each online CPU. Nothing registers an event until the module does.

# %%
calls = [f for f in trace.select(SmcccCall) if isinstance(f, SmcccCall)]
# Each call paired with its return (a call and its return share CPU and vtime: firmware_calls).
x0_of = {(i.cpu, i.start, i.fid): i.results[0] for i in firmware_calls(trace) if i.returned}


def result(call: SmcccCall) -> str:
    """The firmware's x0 for this call, or "(no return)"."""
    x0 = x0_of.get((call.cpu, call.vtime, call.fid))
    if x0 is None:
        return "(no return)"
    # SDEI errors are negative in x0 (reference section 1.2); VERSION packs major.minor in bits 62:32.
    return str(x0 - (1 << 64)) if x0 >> 63 else (f"{x0:#x}" if x0 > 0xFFFF else str(x0))


# The module's first call about its event (GET_INFO, in sdei_event_register) ends the driver's probe.
module_seq = next(c.seq for c in calls if c.name.startswith("SDEI_EVENT_") and c.args and c.args[0] == EVENT)
boot_calls = [c for c in calls if c.name.startswith("SDEI_") and c.seq < module_seq]
print(f"{'vtime':>13}  CPU  {'call':<22} result")
for c in boot_calls:
    print(f"{c.vtime:>13,}  {c.cpu:>3}  {c.name:<22} {result(c)}")

# %% [markdown]
# ## 4. CPU 1's calls in each hotplug cycle
#
# From CPU 1's first unmask on: CPU 1's SDEI calls and CPU_OFF, and the CPU_ONs that target it
# (by whom). A cycle is `sdei_cpuhp_down`'s calls just before CPU_OFF (UNREGISTER of the
# module's private event 5000, then PE_MASK) up to `sdei_cpuhp_up`'s PE_UNMASK after CPU 0's
# CPU_ON, with the re-REGISTER and re-ENABLE of event 5000 in between (reference section 3.3).
# The last column is the firmware's x0: PE_MASK answers 1 when it masked a PE that was unmasked
# (TF-A's semantics, reference section 1.1), and CPU_OFF never returns.

# %%
target = cpu_affinity(SPIN_CPU)
first_unmask = next(c.seq for c in calls if c.name == "SDEI_PE_UNMASK" and c.cpu == SPIN_CPU)
EVENT_CALLS = ("SDEI_EVENT_REGISTER", "SDEI_EVENT_ENABLE", "SDEI_EVENT_DISABLE", "SDEI_EVENT_UNREGISTER")


@dataclass(frozen=True)
class Step:
    seq: int
    vtime: int
    label: str  # "SDEI_PE_MASK by CPU 1", "SDEI_EVENT_UNREGISTER(5000) by CPU 1", "CPU_ON by CPU 0"


steps = []
for c in calls:
    if c.seq <= first_unmask:
        continue
    if c.cpu == SPIN_CPU and c.name in ("SDEI_PE_MASK", "SDEI_PE_UNMASK", "CPU_OFF"):
        steps.append(Step(c.seq, c.vtime, f"{c.name} by CPU {c.cpu}"))
    elif c.cpu == SPIN_CPU and c.name in EVENT_CALLS:
        steps.append(Step(c.seq, c.vtime, f"{c.name}({c.args[0]}) by CPU {c.cpu}"))
    elif c.name in ("CPU_ON", "CPU_ON64") and c.args[0] == target:  # SMC32 or SMC64 form, both PSCI CPU_ON
        steps.append(Step(c.seq, c.vtime, f"CPU_ON by CPU {c.cpu}"))

cycles: list[list[Step]] = []
for i, step in enumerate(steps):
    if step.label != f"CPU_OFF by CPU {SPIN_CPU}":
        continue
    lo = i
    while lo > 0 and steps[lo - 1].label.split("(")[0].split(" ")[0] in ("SDEI_PE_MASK", "SDEI_EVENT_UNREGISTER"):
        lo -= 1
    hi = next((k for k in range(i, len(steps)) if steps[k].label == f"SDEI_PE_UNMASK by CPU {SPIN_CPU}"),
              len(steps) - 1)
    cycles.append(steps[lo:hi + 1])

by_seq = {c.seq: c for c in calls}
for n, cycle in enumerate(cycles, start=1):
    print(f"cycle {n}")
    for step in cycle:
        print(f"  {step.vtime:>13,}  {step.label:<40} {result(by_seq[step.seq])}")

# %% [markdown]
# ## 5. On the timeline: the hotplug cycles
#
# Lanes are CPUs 0 and 1; the hatched band is the firmware's PE mask (SDEI_PE_MASK to
# PE_UNMASK, and a CPU's masked state from CPU_ON), the power lane shows CPU 1 off between
# CPU_OFF and CPU_ON, and the ticks are the calls. On CPU 1 the mask starts *before* the power
# goes off and ends only after the driver re-registered its private event: no window in which
# an event could be dispatched to a CPU that is going away or has not yet restored its state.

# %%
hotplug = (cycles[0][0].vtime - 20_000, cycles[-1][-1].vtime + 20_000)
first_cycle = (cycles[0][0].vtime - 2_000, cycles[0][-1].vtime + 2_000)
fig, axes = plt.subplots(2, 1, figsize=(style.NOTEBOOK_WIDTH, 6), layout="constrained")
for ax, window, title in ((axes[0], hotplug, f"both hotplug cycles of CPU {SPIN_CPU}"),
                          (axes[1], first_cycle, "the first cycle")):
    timeline(ax, trace, cpus=[0, SPIN_CPU], window=window)
    ax.set_title(f"Debian 6.1 on virt: {title}", fontsize=style.TITLE)
figure_legend(fig)  # one legend for both panels
plt.show()

# %% [markdown]
# The first cycle as a ladder, one row per step in the order the firmware saw them (the rows are
# microseconds apart; their time is on the left): CPU 1's calls with their results by name and
# the layer that answered, CPU 0's `CPU_ON`, and the firmware powering CPU 1 on. No mask row
# follows it: CPU 1 is still masked by its own `PE_MASK`, so the mask `CPU_ON` applies (reference
# section 3.1) changes nothing and leaves no fact. Linux masked before `CPU_OFF` and unmasks only
# after re-registering and re-enabling event 5000.

# %%
first = cycles[0]
seqs = (first[0].seq, first[-1].seq)
stamps = [step.vtime for step in first]
around = [f for f in trace.select(PowerTransition, SdeiMask, start=min(stamps), end=max(stamps) + 1)
          if seqs[0] <= f.seq <= seqs[1] and f.cpu == SPIN_CPU]
cycle_facts = [by_seq[step.seq] for step in first] + around
rows = len(ladder_rows(trace, cycle_facts, cpus=[0, SPIN_CPU]))
fig, ax_ladder = plt.subplots(figsize=(style.NOTEBOOK_WIDTH, 0.32 * rows + 2), layout="constrained")
call_ladder(ax_ladder, trace, cycle_facts, cpus=[0, SPIN_CPU], title=f"Debian 6.1 on virt: CPU {SPIN_CPU}'s first "
            "hotplug cycle, call by call")
plt.show()

# %% [markdown]
# ## 6. The watchdog: event 5000 dispatched where IRQs were masked
#
# Each dispatch of event 5000, with the PC it interrupted symbolized against the range the
# module printed (`sdei_wd_spin+0x0/0x..`, its `%pS`), PSTATE.I at that moment, and how it
# ended. Linux's `__sdei_handler` hands the module `regs->pc` and `regs->pstate`: the module's
# `last` parameter prints them, and they must be what the lab interrupted.

# %%
PSTATE_I = 1 << 7
dispatches = [f for f in trace.select(SdeiDispatch, event=EVENT) if isinstance(f, SdeiDispatch)]
completes = [f for f in trace.select(SdeiComplete, event=EVENT) if isinstance(f, SdeiComplete)]


def symbolize(pc: int) -> str:
    return f"sdei_wd_spin+{pc - spinner.start:#x}" if pc in spinner else f"{pc:#x} (outside the spinner)"


print(f"{'vtime':>13}  CPU  {'source':<11} {'interrupted PC':<22} I  ended")
for d, c in zip(dispatches, completes, strict=False):
    masked = "1" if d.interrupted_pstate & PSTATE_I else "0"
    print(f"{d.vtime:>13,}  {d.cpu:>3}  {d.source:<11} {symbolize(d.interrupted_pc):<22} {masked}  "
          f"{c.how} at vtime {c.vtime:,}, resumed {symbolize(c.resume_pc)}")
counters = re.search(r"init: hits=(\d+) masked_hits=(\d+) spin=(\d+)", uart)
last = re.search(r"init: last=cpu(\d+) 0x([0-9a-f]+) 0x([0-9a-f]+) (\S+)", uart)
assert counters and last, uart[-3000:]
hits, masked_hits, caught = map(int, counters.groups())
print(f"raised {RAISES}, dispatched {len(dispatches)}, completed {len(completes)}; the module counted "
      f"hits={hits} masked_hits={masked_hits}, and its spin caught {caught}")
print(f"module's last: cpu{last[1]} pc {last[2]} pstate {last[3]} {last[4]}")

# %%
first_handler, last_handler = dispatches[0].vtime, completes[-1].vtime
fig, axes = plt.subplots(2, 1, figsize=(style.NOTEBOOK_WIDTH, 6), layout="constrained")
for ax, window, title in ((axes[0], (first_handler - SETTLE, last_handler + SETTLE), "the three watchdog events"),
                          (axes[1], (first_handler - 300, completes[0].vtime + 300), "the first one")):
    timeline(ax, trace, cpus=[0, SPIN_CPU], window=window)
    ax.set_title(f"sdei_watchdog, CPU {SPIN_CPU} spinning with IRQs masked: {title}", fontsize=style.FONT)
figure_legend(fig)  # one legend for both panels
plt.show()

# %% [markdown]
# ## Check yourself
#
# The assertions below hold for this trace; each would fail if the firmware misbehaved: a
# CPU_ON that left CPU 1 unable to unmask or register, an UNREGISTER or PE_MASK refused, an
# event dispatched while the PE was masked (it would then land somewhere else than the spinner,
# or twice), a dispatch that dropped PSTATE or resumed somewhere else.

# %%
from sdeilab.widgets.exercise import Checks, Exercise

with Checks() as check:
    check("Linux powered off cleanly (SYSTEM_OFF, exit 0)",
          (outcome.reason, outcome.exit_status) == (StopReason.SYSTEM_OFF, 0), (outcome, uart[-2000:]))
    missing = [needed for needed in ("psci: PSCIv1.1 detected in firmware.",
                                     "sdei: SDEIv1.0 (0x0) detected in firmware.", "smp: Brought up 1 node, 2 CPUs",
                                     "init: device tree: arm,sdei-1.0, method hvc", "init: driver: firmware:sdei",
                                     "reboot: Power down") if needed not in uart]
    check("Linux found PSCI 1.1 and SDEI 1.0, both CPUs came up, the driver bound, the machine powered down",
          not missing, missing)
    check("the module loaded", "insmod failed" not in uart)
    # Probe: PRIVATE_RESET on both CPUs, then SHARED_RESET, then PE_UNMASK on both, all answered 0.
    probe = [(c.name, c.cpu, result(c)) for c in boot_calls if c.name != "SDEI_VERSION"]
    check("probe: PRIVATE_RESET on both CPUs, then SHARED_RESET, then PE_UNMASK on both, all answered 0",
          len(probe) == 5 and sorted(probe[:2]) == [("SDEI_PRIVATE_RESET", 0, "0"), ("SDEI_PRIVATE_RESET", 1, "0")]
          and probe[2] == ("SDEI_SHARED_RESET", probe[2][1], "0")
          and sorted(probe[3:]) == [("SDEI_PE_UNMASK", 0, "0"), ("SDEI_PE_UNMASK", 1, "0")], probe)
    # Each hotplug cycle, in this order (sdei_cpuhp_down, cpu_die, CPU 0's cpu_up, sdei_cpuhp_up).
    cycle = [f"SDEI_EVENT_UNREGISTER({EVENT}) by CPU 1", "SDEI_PE_MASK by CPU 1", "CPU_OFF by CPU 1",
             "CPU_ON by CPU 0", f"SDEI_EVENT_REGISTER({EVENT}) by CPU 1", f"SDEI_EVENT_ENABLE({EVENT}) by CPU 1",
             "SDEI_PE_UNMASK by CPU 1"]
    check(f"each of the {CYCLES} hotplug cycles: UNREGISTER, PE_MASK, CPU_OFF, CPU_ON, REGISTER, ENABLE, PE_UNMASK",
          [[s.label for s in c] for c in cycles] == [cycle] * CYCLES, cycles)
    answers = {s.label: result(by_seq[s.seq]) for c in cycles for s in c if "CPU_OFF" not in s.label}
    # CPU_OFF never returns; PE_MASK answers 1, "this call masked an unmasked PE" (TF-A, reference 1.1).
    check("every call of the cycles answered 0, except PE_MASK: 1 (it masked an unmasked PE)",
          answers == {label: "1" if "PE_MASK" in label else "0" for label in answers}, answers)
    # The ladder shows the first cycle's calls in that order, each answered as above, and CPU 1
    # powered on right after CPU 0's CPU_ON.
    shown = ladder_labels(ax_ladder)
    shown_calls = [label for label in shown if label.startswith(("SDEI_", "CPU_"))]
    check("the ladder lists the first cycle's calls in order",
          [label.split("(")[0].split(":")[0].split(" ")[0] for label in shown_calls] == [
              "SDEI_EVENT_UNREGISTER", "SDEI_PE_MASK", "CPU_OFF", "CPU_ON64", "SDEI_EVENT_REGISTER",
              "SDEI_EVENT_ENABLE", "SDEI_PE_UNMASK"], shown)
    check("the ladder names PE_MASK's 1 (was unmasked) and CPU_OFF's missing return",
          shown_calls[1:3] == ["SDEI_PE_MASK → 1 (was unmasked) [kvm]", "CPU_OFF: no return"], shown_calls[1:3])
    check("the ladder shows every other call answered SUCCESS by kvm",
          all(label.endswith("→ SUCCESS [kvm]") for i, label in enumerate(shown_calls) if i not in (1, 2)), shown)
    check("the ladder shows CPU 1 powered on right after CPU 0's CPU_ON",
          len(shown_calls) > 3 and shown[shown.index(shown_calls[3]) + 1] == f"CPU {SPIN_CPU} powered on (on-pending)",
          shown)
    check("init saw CPU 1 go offline and come back online in each cycle",
          all(f"init: cycle {n}: CPU 1 offline, online CPUs 0" in uart
              and f"init: cycle {n}: CPU 1 online, online CPUs 0-1" in uart for n in range(1, CYCLES + 1)))
    # The watchdog: every raise was dispatched once, on the spinning CPU, inside the loop with IRQs
    # masked, completed back to where it interrupted, and counted by the module.
    check("every raise happened with CPU 1 in the spinner's loop", spin_cpu == SPIN_CPU and all(raised_in_loop))
    check(f"{RAISES} raises, {RAISES} dispatches, {RAISES} completions, and the module counted {RAISES} of each",
          hits == masked_hits == caught == RAISES == len(dispatches) == len(completes),
          (hits, masked_hits, caught, len(dispatches), len(completes)))
    check("each dispatch came from the hypervisor to CPU 1, inside the loop, with PSTATE.I set",
          all(d.cpu == c.cpu == SPIN_CPU and d.source == "hypervisor" and d.interrupted_pc in loop
              and d.interrupted_pstate & PSTATE_I for d, c in zip(dispatches, completes, strict=True)))
    check("each ended with COMPLETE, back where it interrupted",
          all(c.how == "complete" and c.resume_pc == d.interrupted_pc
              for d, c in zip(dispatches, completes, strict=True)))
    check("the module's last report is CPU 1 in sdei_wd_spin, with the last dispatch's PC and PSTATE",
          int(last[1]) == SPIN_CPU and last[4].startswith("sdei_wd_spin+")
          and (int(last[2], 16), int(last[3], 16)) == (dispatches[-1].interrupted_pc,
                                                       dispatches[-1].interrupted_pstate), last.groups())

# %% [markdown]
# ## Exercise: who masks CPU 1 before it goes off?
#
# No second boot: the question is about the trace above. When CPU 1 reaches its first `CPU_OFF`,
# it is SDEI-masked (the timeline's hatched band). Which call masked it? Choose one of:
#
# * `"SDEI_PE_MASK, called by CPU 1 itself"`
# * `"CPU_OFF: the firmware masks the PE as it powers it off"`
# * `"SDEI_PRIVATE_RESET, called by CPU 0"`
# * `"none: CPU 1 goes off unmasked, and CPU_ON masks it later"`

# %%
prediction = None  # e.g. "CPU_OFF: the firmware masks the PE as it powers it off"
exercise = Exercise("Which call masks CPU 1 before its first CPU_OFF?",
                    ["SDEI_PE_MASK, called by CPU 1 itself", "CPU_OFF: the firmware masks the PE as it powers it off",
                     "SDEI_PRIVATE_RESET, called by CPU 0", "none: CPU 1 goes off unmasked, and CPU_ON masks it later"]
                    ).predict(prediction)

# %%
first_off = next(c for c in calls if c.cpu == SPIN_CPU and c.name == "CPU_OFF")
mask_facts = [m for m in trace.select(SdeiMask, cpu=SPIN_CPU, end=first_off.vtime + 1)
              if isinstance(m, SdeiMask) and m.seq < first_off.seq]
last_mask = mask_facts[-1] if mask_facts else None
# The call whose handling changed the mask: the last call on that CPU recorded before the fact.
masker = max((c for c in calls if last_mask is not None and c.seq < last_mask.seq and c.cpu == last_mask.cpu),
             key=lambda c: c.seq, default=None)
if last_mask is None or not last_mask.masked:
    answer = "none: CPU 1 goes off unmasked, and CPU_ON masks it later"
elif last_mask.cause == "call" and masker is not None:
    answer = {"SDEI_PE_MASK": "SDEI_PE_MASK, called by CPU 1 itself",
              "CPU_OFF": "CPU_OFF: the firmware masks the PE as it powers it off",
              "SDEI_PRIVATE_RESET": "SDEI_PRIVATE_RESET, called by CPU 0"}.get(masker.name,
                                                                             f"{masker.name} by CPU {masker.cpu}")
else:
    answer = f"a mask with cause {last_mask.cause}"
exercise.reveal(answer, "sdei_cpuhp_down masks the CPU itself before PSCI's cpu_die calls CPU_OFF: Linux does "
                "not leave it to the firmware (reference 3.3)")
if last_mask is not None and masker is not None:
    print(f"masked at vtime {last_mask.vtime:,} ns by {masker.name} (answered {result(masker)}), "
          f"{first_off.vtime - last_mask.vtime:,} ns before CPU_OFF")
with Checks() as check:
    check("CPU 1 was masked when it called its first CPU_OFF", last_mask is not None and last_mask.masked)
    check("by its own SDEI_PE_MASK, which answered 1 (it masked an unmasked PE)",
          masker is not None and (masker.name, masker.cpu, result(masker)) == ("SDEI_PE_MASK", SPIN_CPU, "1"),
          masker)
    check("no event was dispatched to CPU 1 between the mask and CPU_OFF",
          last_mask is not None and not trace.select(SdeiDispatch, cpu=SPIN_CPU, start=last_mask.vtime,
                                                     end=first_off.vtime + 1))
