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
# # Where should SDEI live? The profiles side by side on one watchdog guest
#
# **Question:** if a KVM guest is to have SDEI, which layer should implement it: the kernel
# (`kvm`), the VMM in userspace (`vmm`), or firmware at EL3 (`el3`)? And what does each choice
# cost in exits between layers?
#
# The guest is `guests/sdei/vmm_watchdog.c`, an NMI watchdog in the shape of the 2019 QEMU
# series' test (reference section 7.2): CPU 0 binds the SPI of a device the VMM emulates (the
# SP804, INTID 42) as a shared SDEI event routed to CPU 1, CPU 1 spins with IRQs masked, and
# CPU 0 arms the SP804 three times; each time the SDEI handler on CPU 1 records where it
# interrupted the loop. The guest is the same binary on every profile (the SMC build on
# `firmware`, which has no HVC); only the placement of the services changes, as data
# (`sdeilab/firmware/profiles.py`).
#
# The first cell runs it on all six profiles with the comparison runner and prints its table:
# calls answered per layer, exits from the kernel to the VMM (`KVM_EXIT_HYPERCALL`), SDEI
# handler entries, the modelled cost of those transitions, and the guest's verdict.

# %%
# %config InlineBackend.figure_formats = ["retina"]  # drawn at twice its pixels: sharp on a HiDPI screen
# %config InlineBackend.print_figure_kwargs = {"bbox_inches": None}  # the figure as drawn, 840 px: never wider
import errno
import inspect
from collections import Counter
from dataclasses import replace

import matplotlib.pyplot as plt

from sdeilab.firmware.profiles import PROFILES, Profile
from sdeilab.firmware.smccc_filter import FilterAction, FilterError, SmcccFilter
from sdeilab.lab.compare import compare
from sdeilab.toolchain import guests_dir
from sdeilab.trace import LayerExit, SdeiDispatch, SmcccCall
from sdeilab.trace.costs import TransitionCosts, layer_summary
from sdeilab.trace.intervals import handler_intervals
from sdeilab.viz import figure_legend, style, timeline

SDEI_DIR = guests_dir() / "sdei"


def watchdog_for(profile: Profile):  # the HVC build where the profile answers HVC, else the SMC build
    return SDEI_DIR / ("vmm_watchdog.elf" if "hvc" in profile.conduits else "vmm_watchdog-smc.elf")


comparison = compare(watchdog_for, list(PROFILES))
print(comparison.table())

# %% [markdown]
# ## What each profile is
#
# Where each service lives, the SMCCC filter the VMM installs, and what the guest may rely on
# (`Profile.features`, computed from the placement, not declared). The watchdog needs
# `bind-spi`: an SPI bound as a shared event.

# %%
for name, profile in PROFILES.items():
    services = ", ".join(f"{service} in {layer}" for service, layer in profile.services.items())
    print(f"{name}: {profile.description}")
    print(f"    services: {services}; SDEI: {profile.services.get('sdei', 'nobody')}")
    print(f"    filter: {', '.join(map(str, profile.smccc_filter)) or '(none)'}")
    print(f"    features: {', '.join(sorted(profile.features)) or '(no SDEI)'}")
    print(f"    watchdog: {comparison[name].verdict}")

# %% [markdown]
# ## Which calls leave the kernel
#
# The same guest makes the same calls everywhere; a profile only changes who answers them.
# On `kvm-vmm-sdei` every SDEI call exits to the VMM while PSCI (`CPU_ON`, `AFFINITY_INFO`,
# `CPU_OFF`, `SYSTEM_OFF`) stays in the kernel; on `kvm-vmm-psci-sdei` PSCI exits too. On `kvm`
# the first call, `SDEI_VERSION`, is answered NOT_SUPPORTED by the kernel (no filter entry:
# reference section 3.4) and the guest stops; on `kvm-sdei` (Gavin Shan's v7: no binding)
# `SDEI_INTERRUPT_BIND` is NOT_SUPPORTED. Those two print their refusal:

# %%
for name in ("kvm", "kvm-sdei"):
    print(f"== {name}: {comparison[name].output.splitlines()[-1]}")
print()
calls = sorted({call for run in comparison.runs for call, _ in run.summary.by_name})
names = [run.profile.name for run in comparison.runs]
print(f"{'call':<24}" + "".join(f"{n:>19}" for n in names))
for call in calls:
    cells = []
    for run in comparison.runs:
        here = {layer: n for (c, layer), n in run.summary.by_name.items() if c == call}
        cells.append(", ".join(f"{n} {layer}" for layer, n in sorted(here.items())) or "-")
    print(f"{call:<24}" + "".join(f"{cell:>19}" for cell in cells))

# %% [markdown]
# ## Exits and modelled cost, per profile
#
# The lab does not charge these costs to virtual time: the same guest must give the same trace
# on every profile, instruction for instruction, so that the profiles can be compared fact by
# fact. The costs are a model, computed from the counts (the last section shows the sums).

# %%
rows = comparison.rows()
# The verdict in the label too: a bar of 0 (no exits) shows no colour to read it from.
labels = [f"{r['profile']} {'✓' if r['verdict'] == 'PASS' else '✗'}" for r in rows]
colours = [style.GREEN if r["verdict"] == "PASS" else style.VERMILLION for r in rows]
fig, (ax_cost, ax_exits) = plt.subplots(1, 2, figsize=(style.NOTEBOOK_WIDTH, 4.5), layout="constrained", sharey=True)
# Horizontal bars: the profile names read level (slanted, they ran into each other), each bar
# carries its value, and the first profile is on top, in the table's order.
for ax, key, unit, title in ((ax_cost, "modelled µs", "modelled µs (transitions only)",
                              "Modelled cost of calls and deliveries"),
                             (ax_exits, "exits to VMM", "KVM_EXIT_HYPERCALL exits",
                              "Exits to the VMM")):
    values = [float(r[key]) for r in rows]
    bars = ax.barh(labels, values, color=colours, edgecolor=style.BLACK)
    ax.bar_label(bars, [f"{v:g}" for v in values], padding=4, fontsize=style.SMALL)
    ax.set_xlim(0, max(values) * 1.2 or 1)
    ax.set_xlabel(unit, fontsize=style.SMALL)
    ax.set_title(title, fontsize=style.SMALL + 1)
    ax.tick_params(labelsize=style.SMALL)
ax_cost.invert_yaxis()
fig.suptitle("vmm_watchdog on every profile (✓ green: PASS, ✗ vermillion: refused)", fontsize=style.FONT)
plt.show()

# %% [markdown]
# ## Two timelines side by side
#
# `virt` (SDEI in the kernel) and `kvm-vmm-psci-sdei` (PSCI and SDEI in the VMM) on CPUs 0
# and 1. Because costs are not charged to virtual time, the two pictures line up exactly; what
# differs is the colour of each firmware call tick, the layer that answered it (black: kvm,
# purple: vmm). CPU 1 has one life, from `CPU_ON` to `CPU_OFF`, SDEI-unmasked all along (CPU 0
# never unmasks: hatched). The three barks, at about 300, 600 and 900 µs, are handler runs of
# under 100 ns each, too thin to see at this scale: each shows as INTID 42's mark (the SDEI
# dispatcher acknowledges the interrupt at dispatch and EOIs it at `COMPLETE`) and the
# `COMPLETE` itself (a call with no return, ×). Their intervals are printed below
# the picture; pass `window=(start, end)` to `timeline` to zoom on one.

# %%
fig, axes = plt.subplots(2, 1, figsize=(style.NOTEBOOK_WIDTH, 6.5), sharex=True, layout="constrained")
for ax, name in zip(axes, ("virt", "kvm-vmm-psci-sdei"), strict=True):
    timeline(ax, comparison[name].trace, cpus=[0, 1])
    ax.set_title(name, fontsize=style.FONT)
axes[0].set_xlabel("")  # the axes share their time axis: it is labelled once, under the lower one
figure_legend(fig)  # one legend for both panels
plt.show()
for name in ("virt", "kvm-vmm-psci-sdei"):
    bars = [(h.cpu, h.start, h.end) for h in handler_intervals(comparison[name].trace)]
    print(f"{name}: handler intervals (cpu, start, end) = {bars}")

# %% [markdown]
# ## The filter that makes the VMM profiles possible
#
# KVM's SMCCC filter (Linux 6.4+, reference section 6) is how a VMM takes over a range of
# function IDs: it installs `[base, base + n)` ranges with HANDLE, DENY or FWD_TO_USER before
# any vCPU runs. The lab's `SmcccFilter` refuses what KVM refuses:
#
# * the Arm architecture ranges (`0x80000000-0x8000FFFF`, `0xC0000000-0xC000FFFF`: SMCCC_VERSION,
#   ARCH_FEATURES and the Spectre workarounds) are pre-reserved, so filtering them is an overlap:
#   **EEXIST** (notebook 13 is about why);
# * ranges may not overlap each other: **EEXIST**;
# * the filter is fixed once a vCPU has run: **EBUSY**.

# %%
fresh = SmcccFilter()
fresh.install(0xC400_0020, 0x20, FilterAction.FWD_TO_USER)  # SDEI's SMC64 range: accepted
attempts = {
    "forward the arch range": lambda f: f.install(0x8000_0000, 0x1_0000, FilterAction.FWD_TO_USER),
    "deny SMCCC_ARCH_WORKAROUND_1": lambda f: f.install(0x8000_8000, 1, FilterAction.DENY),
    "overlap the SDEI range": lambda f: f.install(0xC400_0030, 0x10, FilterAction.DENY),
}
errors: dict[str, FilterError] = {}
for what, attempt in attempts.items():
    try:
        attempt(fresh)
    except FilterError as error:
        errors[what] = error
        print(f"{what}: {error}")
ran = comparison["kvm-vmm-psci-sdei"].platform.dispatcher.filter  # that VM has run
try:
    ran.install(0x8600_0000, 0x100, FilterAction.DENY)
except FilterError as error:
    errors["install after the vCPUs ran"] = error
    print(f"install after the vCPUs ran: {error}")
print("kvm-vmm-psci-sdei's ranges:", ", ".join(map(str, ran.ranges)))

# %% [markdown]
# ## Where the modelled costs come from
#
# `TransitionCosts` holds one round-trip cost per transition, each with its source (published
# kvm-unit-tests micro-benchmarks on an Ampere Altra and TF-A's own measurements; the
# defaults are overridable with `dataclasses.replace`). A call answered in the kernel costs
# `guest_kvm_ns`; forwarded to the VMM, `guest_kvm_ns + kvm_vmm_ns`; an event the VMM delivers
# also costs a kick (`vmm_kick_ns`: the VMM must get the vCPU out of the guest before it can
# rewrite its registers, reference section 6 "hard part (c)"), while KVM or EL3 enter the
# handler on their way back to the guest.

# %%
print(inspect.getsource(TransitionCosts))
costs = comparison.costs
for run in comparison.runs:
    s = run.summary
    kick = costs.vmm_kick_ns if run.profile.services.get("sdei") == "vmm" else 0
    terms = [f"{n} x {costs.call_ns(layer)} ({layer})" for layer, n in sorted(s.calls.items())]
    terms += [f"{s.dispatches} x {kick} (kick)"] if kick else []
    print(f"{run.profile.name:<18} {' + '.join(terms)} = {s.modelled_ns} ns")

# %% [markdown]
# The model is only as good as its inputs; changing one shows how much the ranking depends on
# it. With the VMM exit made free (an in-kernel SDEI would not pay it), the two VMM profiles
# cost about what `virt` does, plus the kick of each delivery:

# %%
free_exit = replace(costs, kvm_vmm_ns=0)
for run in comparison.runs:
    again = layer_summary(run.trace, run.profile.conduits, run.profile.services.get("sdei"), free_exit)
    print(f"{run.profile.name:<18} {run.summary.modelled_ns / 1000:7.1f} µs -> {again.modelled_ns / 1000:7.1f} µs")

# %% [markdown]
# ## Check yourself
#
# The watchdog passes exactly where the profile claims `bind-spi` and is refused elsewhere;
# every exit is a call the VMM answered; on `kvm-vmm-sdei` the exits are exactly the SDEI
# calls; every handler entry interrupted CPU 1 inside `watchdog_spin_loop`; the modelled cost
# is the sum shown above; and the filter failed with the errors KVM gives.

# %%
from matplotlib.colors import to_hex

from sdeilab.lab.compare import run_on
from sdeilab.widgets.exercise import Checks, Exercise

with Checks() as check:
    for run in comparison.runs:
        name, s, trace = run.profile.name, run.summary, run.trace
        check(f"{name}: the watchdog {'passes' if 'bind-spi' in run.profile.features else 'is refused'}, "
              f"as the profile's bind-spi feature says", run.verdict == ("PASS" if "bind-spi" in run.profile.features
                                                                         else "FAIL"), run.verdict)
        check(f"{name}: every exit is a call the VMM answered, and the summary counts every call",
              s.exits == trace.count(LayerExit) == s.calls.get("vmm", 0) and s.total_calls == trace.count(SmcccCall))
        if run.verdict == "PASS":
            symbols = {v: k for k, v in run.platform.machine.image.symbols.items()}
            loop, end = symbols["watchdog_spin_loop"], symbols["watchdog_spin_end"]
            dispatches = trace.of_kind(SdeiDispatch)
            check(f"{name}: three handler entries, all on CPU 1, each interrupting watchdog_spin_loop",
                  len(dispatches) == 3 and {d.cpu for d in dispatches} == {1}
                  and all(loop <= d.interrupted_pc < end for d in dispatches), dispatches)
        kick = costs.vmm_kick_ns if run.profile.services.get("sdei") == "vmm" else 0
        check(f"{name}: the modelled cost is the sum of its calls' costs and kicks ({s.modelled_ns} ns)",
              s.modelled_ns == sum(costs.call_ns(layer) * n for layer, n in s.calls.items()) + kick * s.dispatches)

    sdei_only = comparison["kvm-vmm-sdei"].trace
    check("on kvm-vmm-sdei the exits are exactly the SDEI calls",
          {e.name for e in sdei_only.of_kind(LayerExit)} == {
              c.name for c in sdei_only.of_kind(SmcccCall) if c.name.startswith("SDEI_")})
    check("on kvm-vmm-psci-sdei the kernel answers nothing (the watchdog makes no arch call)",
          comparison["kvm-vmm-psci-sdei"].summary.calls.get("kvm", 0) == 0)
    # The bar chart above: each bar says its profile's value, and its colour the verdict.
    for ax, key in ((ax_cost, "modelled µs"), (ax_exits, "exits to VMM")):
        shown = [t.get_text() for t in ax.texts]  # bar_label's labels, in the bars' order
        check(f"the figure: the '{key}' bars say the table's values, profile by profile",
              shown == [f"{float(r[key]):g}" for r in comparison.rows()], shown)
    bar_colours = [to_hex(bar.get_facecolor()) for bar in ax_exits.containers[0]]
    check("the figure: a bar is green exactly where the watchdog passed",
          [c == to_hex(style.GREEN) for c in bar_colours] == [r["verdict"] == "PASS" for r in comparison.rows()],
          bar_colours)
    check("the figure: PSCI and SDEI in the VMM has the most exits and the highest modelled cost",
          max(comparison.rows(), key=lambda r: float(r["exits to VMM"]))["profile"]
          == max(comparison.rows(), key=lambda r: float(r["modelled µs"]))["profile"] == "kvm-vmm-psci-sdei")
    check("the filter refused three installs with EEXIST and one with EBUSY",
          Counter(e.errno for e in errors.values()) == Counter({errno.EEXIST: 3, errno.EBUSY: 1}),
          Counter(e.errno for e in errors.values()))

# %% [markdown]
# ## Exercise: what PSCI in the VMM costs another guest
#
# Take a different guest, `tftf_signal_serial` (notebook 30: each CPU in turn registers event 0,
# signals it to itself and handles it; CPU 0 starts and stops CPU 1 with PSCI), on 2 CPUs, and
# run it on `kvm-vmm-sdei` and on `kvm-vmm-psci-sdei`. How many more exits to the VMM does
# `kvm-vmm-psci-sdei` make? Choose one of:
#
# * `"none: the same calls exit on both"`
# * `"one per PSCI call of the guest"`
# * `"one per call of the guest, of any kind"`
# * `"fewer: the VMM answers PSCI and SDEI in one exit"`

# %%
prediction = None  # e.g. "none: the same calls exit on both"
exercise = Exercise("tftf_signal_serial on 2 CPUs: how many more exits on kvm-vmm-psci-sdei than on kvm-vmm-sdei?",
                    ["none: the same calls exit on both", "one per PSCI call of the guest",
                     "one per call of the guest, of any kind", "fewer: the VMM answers PSCI and SDEI in one exit"]
                    ).predict(prediction)

# %%
serial = {name: run_on(SDEI_DIR / "tftf_signal_serial.elf", name, cpus=2)
          for name in ("kvm-vmm-sdei", "kvm-vmm-psci-sdei")}
exits = {name: run.trace.count(LayerExit) for name, run in serial.items()}
extra = exits["kvm-vmm-psci-sdei"] - exits["kvm-vmm-sdei"]
psci_calls = [c.name for c in serial["kvm-vmm-psci-sdei"].trace.of_kind(SmcccCall) if not c.name.startswith("SDEI_")]
all_calls = serial["kvm-vmm-psci-sdei"].trace.count(SmcccCall)
shown = ("none: the same calls exit on both" if extra == 0 else "one per PSCI call of the guest"
         if extra == len(psci_calls) else "one per call of the guest, of any kind" if extra == all_calls
         else "fewer: the VMM answers PSCI and SDEI in one exit" if extra < 0 else f"{extra} more")
exercise.reveal(shown, f"{exits} exits; the PSCI calls are {dict(Counter(psci_calls))}: they leave the kernel "
                "only where PSCI lives in the VMM")
with Checks() as check:
    check("the guest passes on both profiles", all(run.verdict == "PASS" for run in serial.values()))
    check("both runs make the same calls", [c.name for c in serial["kvm-vmm-sdei"].trace.of_kind(SmcccCall)]
          == [c.name for c in serial["kvm-vmm-psci-sdei"].trace.of_kind(SmcccCall)])
    check("on kvm-vmm-sdei only SDEI calls exit", all(e.name.startswith("SDEI_")
                                                     for e in serial["kvm-vmm-sdei"].trace.of_kind(LayerExit)))
    check("on kvm-vmm-psci-sdei every call exits", exits["kvm-vmm-psci-sdei"] == all_calls, exits)
