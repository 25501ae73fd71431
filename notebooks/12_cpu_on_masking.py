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
# # The CPU_ON masking hazard: reproduced, explained, fixed
#
# **Question:** why did the 2019 thread conclude that a userspace SDEI must also own PSCI?
#
# SDEI requires that a PE come out of PSCI `CPU_ON` **masked**, with its private events reset
# (reference section 3.1; TF-A does it in `sdei_cpu_on_init`). Whoever implements SDEI must
# therefore *see* every `CPU_ON`. Dave Martin raised it in the 2019 thread ("after CPU_ON the new
# CPU must have SDEs masked", `<20190715134059.GJ2790@e103592.cambridge.arm.com>`) and James
# Morse's answer was to let userspace provide PSCI too (reference sections 3.4 and 7.1); the
# SMCCC filter made that possible in Linux 6.4 by forwarding the PSCI ranges (section 6).
#
# The guest is `guests/sdei/cpu_on_masking.c`. CPU 1's first life registers event 0 with
# `stale_handler`, enables it, unmasks, and powers off without masking (as TFTF's
# `test_sdei_state` does, relying on CPU_ON to re-mask). CPU 0 then starts CPU 1 again at
# `secondary_entry` and at once signals event 0 to it. The first cell runs it where the hazard
# is (`kvm-vmm-sdei`: SDEI in the VMM, PSCI in the kernel), where it is fixed
# (`kvm-vmm-psci-sdei`: both in the VMM), and on `virt` with and without the quirk
# `cpu_on_keeps_pe_state`, which makes an in-kernel SDEI behave as if it missed CPU_ON.

# %%
# %config InlineBackend.figure_formats = ["retina"]  # drawn at twice its pixels: sharp on a HiDPI screen
# %config InlineBackend.print_figure_kwargs = {"bbox_inches": None}  # the figure as drawn, 840 px: never wider
import matplotlib.pyplot as plt
from IPython.display import display

from sdeilab.firmware.profiles import POWER_EVENT_PATHS, PROFILES
from sdeilab.firmware.sdei.quirks import Quirks
from sdeilab.lab.compare import run_on
from sdeilab.lab.platform import make_platform
from sdeilab.machine.outcome import StopReason
from sdeilab.toolchain import guests_dir
from sdeilab.trace import PowerTransition, SdeiComplete, SdeiDispatch, SdeiMask, SdeiTransition, TraceLog
from sdeilab.viz import figure_legend, style
from sdeilab.viz.panels import address_text, cpu_on_panel, fact_text, marks
from sdeilab.viz.tables import Table

GUEST = guests_dir() / "sdei" / "cpu_on_masking.elf"

hazard = run_on(GUEST, "kvm-vmm-sdei")
fixed = run_on(GUEST, "kvm-vmm-psci-sdei")
virt = run_on(GUEST, "virt")

# The quirk is a platform option rather than a profile: build that platform directly.
quirk_trace = TraceLog()
quirk_platform = make_platform(4, "virt", trace=quirk_trace, quirks=Quirks(cpu_on_keeps_pe_state=True))
quirk_platform.load(GUEST)
quirk_outcome = quirk_platform.run(2_000_000_000)
quirk_output = bytes(quirk_platform.machine.uart_output).decode()

symbols = {name: address for address, name in hazard.platform.machine.image.symbols.items()}
for label, verdict in (("kvm-vmm-sdei", hazard.verdict), ("kvm-vmm-psci-sdei", fixed.verdict),
                       ("virt", virt.verdict), ("virt + cpu_on_keeps_pe_state", quirk_output.splitlines()[-1])):
    print(f"{label:<30} {verdict}")

# %% [markdown]
# ## 1. The hazard on `kvm-vmm-sdei`
#
# Life 2's very first instruction never runs as life 2: the signal is dispatched to life 1's
# handler at `secondary_entry`, with `SP = 0` and `VBAR_EL1 = 0` (the architectural reset state
# `CPU_ON` gives a vCPU, reference section 3.4). `stale_handler` touches no stack, so it can
# record what it found and COMPLETE; a real handler would push to address 0 and fault. After
# that, life 2 finds event 0 still registered and enabled (`EVENT_STATUS = 3`) and the PE still
# unmasked (`PE_MASK = 1`): everything from the previous life survived.

# %%
print(hazard.output)

# %% [markdown]
# ## 2. The hazard and the fix, side by side
#
# CPU 1's second `CPU_ON` on both profiles, on the same time axis (CPU 0 above, CPU 1 below;
# the hatched band is "SDEI-masked", the blue bar a handler running). On `kvm-vmm-sdei` (top)
# CPU 1 turns on with **no** hatched band: nothing masked it, because the VMM's SDEI never heard
# of the `CPU_ON` (there is no `SdeiMask` with cause `cpu-on` anywhere in the run), and at that
# very instant the signal CPU 0 sent is dispatched to life 1's `stale_handler`, interrupting
# `secondary_entry`. On `kvm-vmm-psci-sdei` (bottom) the same `CPU_ON` passes through the VMM:
# CPU 1 comes out masked, its private event 0 is reset, and no handler runs. In the top panel
# CPU 1's band starts only at its own `PE_MASK`, just before `CPU_OFF`.

# %%
ons = [f for f in hazard.trace.of_kind(PowerTransition, cpu=1) if f.new == "on"]
second_on = ons[1]
(dispatch,) = hazard.trace.of_kind(SdeiDispatch, cpu=1)
image = hazard.platform.machine.image


def second_life(run) -> tuple[int, int]:
    """From CPU 1's second CPU_ON (its off -> on-pending) to its second CPU_OFF."""
    facts = list(run.trace.of_kind(PowerTransition, cpu=1))
    return ([f.vtime for f in facts if f.old == "off"][1], [f.vtime for f in facts if f.new == "off"][1])


window = (min(second_life(run)[0] for run in (hazard, fixed)) - 60,
          max(second_life(run)[1] for run in (hazard, fixed)) + 60)
fig, (ax_hazard, ax_fixed) = plt.subplots(2, 1, figsize=(style.NOTEBOOK_WIDTH, 8.5), sharex=True, layout="constrained")
found = {}
for ax, run, what in ((ax_hazard, hazard, "the hazard"), (ax_fixed, fixed, "the fix")):
    found[run.profile.name] = cpu_on_panel(ax, run.trace, 1, window, cpus=[0, 1], symbolize=image.symbolize,
                                           title=f"{what}: {run.profile.name}, CPU 1's second CPU_ON")
ax_hazard.xaxis.label.set_visible(False)  # one time axis for both, under the lower panel
figure_legend(fig)
plt.show()

# %% [markdown]
# The facts behind the top panel, CPU 1's from its second `CPU_ON` on:

# %%
kinds = (PowerTransition, SdeiTransition, SdeiDispatch, SdeiComplete, SdeiMask)


def facts_table(run, since: int) -> Table:
    return Table(["vtime", "fact", "what"], [(f"{f.vtime:,} ns", type(f).__name__, fact_text(f, image.symbolize))
                                             for f in run.trace.of_kind(*kinds, cpu=1) if f.vtime >= since - 100])


display(facts_table(hazard, second_on.vtime))
print(f"handler {address_text(dispatch.handler, image.symbolize)}, interrupted PC "
      f"{address_text(dispatch.interrupted_pc, image.symbolize)}; SdeiMask facts of CPU 1: "
      f"{[(m.vtime, 'masked' if m.masked else 'unmasked', m.cause) for m in hazard.trace.of_kind(SdeiMask, cpu=1)]}")

# %% [markdown]
# ## 3. Why: who hears of CPU_ON
#
# Where PSCI and SDEI live in the same layer, SDEI sees every power event. Across a boundary it
# sees only what really crosses it: the kernel's PSCI tells the VMM of `SYSTEM_OFF` and
# `SYSTEM_RESET` (`KVM_EXIT_SYSTEM_EVENT`), but `CPU_ON`, `CPU_OFF` and suspend stay inside KVM
# (reference section 6, "Userspace PSCI"). The profiles encode exactly that
# (`POWER_EVENT_PATHS`), and the `cpu-on-masks` feature follows from it.

# %%
print("POWER_EVENT_PATHS:", {k: sorted(e.name for e in v) for k, v in POWER_EVENT_PATHS.items()})
for name in ("kvm-vmm-sdei", "kvm-vmm-psci-sdei", "virt"):
    profile = PROFILES[name]
    seen = sorted(e.name for e in profile.power_events_seen_by("sdei"))
    print(f"{name:<18} PSCI in {profile.services['psci']}, SDEI in {profile.services['sdei']}: SDEI sees {seen}; "
          f"cpu-on-masks: {'cpu-on-masks' in profile.features}")

# %% [markdown]
# ## 4. Fixed on `kvm-vmm-psci-sdei`
#
# Forward PSCI to the VMM as well (filter ranges `[0x84000000, +0x20)` and `[0xC4000000, +0x20)`)
# and the VMM's SDEI sees the `CPU_ON` it must act on: when CPU 1 turns on, its private event 0
# goes back to unregistered (`cpu-on-reset`, which also drops the signal CPU 0 had just sent)
# and the PE is masked (`SdeiMask`, cause `cpu-on`). No handler runs; life 2 finds event 0
# unregistered and `PE_MASK` returns 0 (nothing to mask). The price is every PSCI call exiting
# to the VMM (notebook 11 counts them).

# %%
print(fixed.output)
f_second_on = [f for f in fixed.trace.of_kind(PowerTransition, cpu=1) if f.new == "on"][1]
display(facts_table(fixed, f_second_on.vtime))
for run in (hazard, fixed):
    layers = sorted(layer for (call, layer) in run.summary.by_name if call == "CPU_ON64")
    print(f"{run.profile.name}: CPU_ON answered by {layers}, {run.summary.exits} exits in all")

# %% [markdown]
# ## 5. The same failure on `virt`, by quirk
#
# The hazard is not about the VMM as such: it is about an SDEI that misses `CPU_ON`. On `virt`
# SDEI lives beside PSCI in the kernel and the guest passes; with
# `Quirks(cpu_on_keeps_pe_state=True)` the PE keeps its mask and private registrations through
# `CPU_ON`, and the run fails in exactly the same way, at the same virtual time and PC.

# %%
print(quirk_output)
(q_dispatch,) = quirk_trace.of_kind(SdeiDispatch, cpu=1)
print(f"kvm-vmm-sdei:     dispatch at {dispatch.vtime} ns, PC <{image.symbolize(dispatch.interrupted_pc)}>")
print(f"virt with quirk:  dispatch at {q_dispatch.vtime} ns, "
      f"PC <{quirk_platform.machine.image.symbolize(q_dispatch.interrupted_pc)}>")

# %% [markdown]
# ## Check yourself
#
# On `kvm-vmm-sdei` the stale handler was entered at `secondary_entry` at the vtime of CPU 1's
# second power-on, with no `cpu-on` mask anywhere; on `kvm-vmm-psci-sdei` and `virt` no handler
# ran and CPU 1 was masked by `CPU_ON` at that vtime; the quirk reproduces the failure. The
# figure shows it: its hazard panel marks a dispatch at `<secondary_entry>` and a missing
# `cpu-on` mask, its fix panel a `cpu-on` mask and no dispatch, and only the fix panel has a
# masked band on CPU 1 from the instant it turned on.

# %%
from sdeilab.widgets.exercise import Checks, Exercise

with Checks() as check:
    hazard_marks, fixed_marks = marks(ax_hazard), marks(ax_fixed)
    check("the hazard panel marks the stale dispatch of <stale_handler> at <secondary_entry>",
          "<secondary_entry>" in hazard_marks.get("mark:stale-dispatch", "")
          and "<stale_handler>" in hazard_marks.get("mark:stale-dispatch", ""), hazard_marks)
    check("the hazard panel marks the missing cpu-on mask, and no cpu-on mask",
          "mark:no-cpu-on-mask" in hazard_marks and "mark:cpu-on-mask" not in hazard_marks, hazard_marks)
    check("the fix panel marks a cpu-on mask and no stale dispatch",
          "mark:cpu-on-mask" in fixed_marks and "mark:stale-dispatch" not in fixed_marks, fixed_marks)
    for ax, masked_from_on in ((ax_hazard, False), (ax_fixed, True)):
        (band,) = [c for c in ax.collections if c.get_gid() == "masked"]
        starts = {(round(p.vertices[:, 1].mean()), p.vertices[:, 0].min()) for p in band.get_paths()}
        check(f"{ax.get_title()}: CPU 1's masked band {'starts' if masked_from_on else 'does not start'} "
              "at its second power-on", ((1, second_on.vtime) in starts) is masked_from_on, starts)

    check("kvm-vmm-sdei: the guest powers off and reports FAIL",
          hazard.outcome.reason is StopReason.SYSTEM_OFF and hazard.verdict == "FAIL", hazard.outcome)
    check("kvm-vmm-sdei: CPU 1 powered on twice, and the dispatch came at the second power-on's vtime",
          len(ons) == 2 and dispatch.vtime == second_on.vtime)
    check("kvm-vmm-sdei: the dispatch entered <stale_handler>, interrupting <secondary_entry>",
          dispatch.interrupted_pc == symbols["secondary_entry"] and dispatch.handler == symbols["stale_handler"])
    check("kvm-vmm-sdei: it was event 0, from a signal", dispatch.source == "signal" and dispatch.event == 0)
    check("kvm-vmm-sdei: no SdeiMask with cause cpu-on anywhere in the run",
          not [m for m in hazard.trace.of_kind(SdeiMask) if m.cause == "cpu-on"])
    check("kvm-vmm-sdei: the stale handler found SP 0 and VBAR_EL1 0", "SP 0x0, VBAR_EL1 0x0" in hazard.output)

    for run in (fixed, virt):
        name = run.profile.name
        check(f"{name}: the guest passes and no handler runs",
              run.verdict == "PASS" and run.trace.count(SdeiDispatch) == 0, run.verdict)
        second = [f for f in run.trace.of_kind(PowerTransition, cpu=1) if f.new == "on"][1]
        cpu_on_masks = [m.vtime for m in run.trace.of_kind(SdeiMask, cpu=1) if m.cause == "cpu-on"]
        check(f"{name}: CPU_ON masked CPU 1 at its second power-on",
              bool(cpu_on_masks) and cpu_on_masks[-1] == second.vtime, cpu_on_masks)
    check("CPU_ON was answered by the VMM on kvm-vmm-psci-sdei and by KVM on kvm-vmm-sdei",
          ("CPU_ON64", "vmm") in fixed.summary.by_name and ("CPU_ON64", "kvm") in hazard.summary.by_name)

    check("virt with cpu_on_keeps_pe_state: the guest powers off and reports FAIL",
          quirk_outcome.reason is StopReason.SYSTEM_OFF and quirk_output.splitlines()[-1].startswith(
              "cpu_on_masking: FAIL"), quirk_output.splitlines()[-1])
    check("the quirk's dispatch has the hazard's vtime and interrupted PC",
          (q_dispatch.vtime, q_dispatch.interrupted_pc) == (dispatch.vtime, dispatch.interrupted_pc))

# %% [markdown]
# ## Exercise: an in-kernel SDEI with fewer features
#
# `kvm-sdei` is Gavin Shan's in-kernel SDEI (v7): private events only, no binding, no routing,
# no critical events; PSCI stays in the kernel too. Run `cpu_on_masking` on it. Does CPU 1 come
# out of its second `CPU_ON` masked? Choose one of:
#
# * `"masked by CPU_ON: no handler runs"`
# * `"unmasked: the stale handler runs at secondary_entry"`
# * `"the guest cannot run: kvm-sdei lacks a call it needs"`

# %%
prediction = None  # e.g. "masked by CPU_ON: no handler runs"
exercise = Exercise("cpu_on_masking on kvm-sdei: does CPU 1 come out of its second CPU_ON masked?",
                    ["masked by CPU_ON: no handler runs", "unmasked: the stale handler runs at secondary_entry",
                     "the guest cannot run: kvm-sdei lacks a call it needs"]).predict(prediction)

# %%
gavin = run_on(GUEST, "kvm-sdei")
g_second_on = [f for f in gavin.trace.of_kind(PowerTransition, cpu=1) if f.new == "on"][1]
g_masked = any(m.masked and m.cause == "cpu-on" and m.vtime == g_second_on.vtime
               for m in gavin.trace.of_kind(SdeiMask, cpu=1))
g_stale = gavin.trace.of_kind(SdeiDispatch, cpu=1)
shown = ("the guest cannot run: kvm-sdei lacks a call it needs" if gavin.verdict not in ("PASS", "FAIL")
         else "masked by CPU_ON: no handler runs" if g_masked and not g_stale
         else "unmasked: the stale handler runs at secondary_entry")
exercise.reveal(shown, "what matters is that SDEI lives beside PSCI, not how much of SDEI there is: "
                "the kernel's SDEI sees the CPU_ON (cpu-on-masks: "
                f"{'cpu-on-masks' in PROFILES['kvm-sdei'].features})")
display(facts_table(gavin, g_second_on.vtime))
with Checks() as check:
    check("on kvm-sdei the guest passes", gavin.verdict == "PASS", gavin.output.splitlines()[-1])
    check("CPU_ON masked CPU 1 at its second power-on", g_masked)
    check("no handler ran on CPU 1", not g_stale, g_stale)
    check("the kernel answered CPU_ON", ("CPU_ON64", "kvm") in gavin.summary.by_name)
