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
# # Why the workaround calls stay in the kernel
#
# **Question:** KVM lets a VMM take over PSCI and SDEI with the SMCCC filter. Why can it not
# take over `SMCCC_ARCH_WORKAROUND_1` and the other Arm architecture calls?
#
# The 2019 thread asked for it in so many words: James Morse, "the arch-workaround calls must
# always be handled in the kernel" and be "un-obtainable by user-space"; Mark Rutland warned that
# userspace PSCI "interacts poorly with FW-based mitigations that we implement in hyp"
# (reference section 7.1). The filter of Linux 6.4 reserves the architecture ranges
# `0x80000000-0x8000FFFF` and `0xC0000000-0xC000FFFF`, "avoiding the risk of misrepresenting
# Spectre mitigation status" (section 6). Two reasons, both made runnable below: **cost**
# (the guest calls `WORKAROUND_1` often, and an exit to the VMM is several times dearer than
# KVM's answer), and **trust** (what `ARCH_FEATURES` says decides whether the guest mitigates).
#
# The first cell builds a small assembly guest with `build_source_text`. Like Linux
# (`spectre_v2_get_cpu_fw_mitigation_state`), it asks `SMCCC_ARCH_FEATURES(WORKAROUND_1)` and
# calls the workaround only if the answer is 0 ("call it"); then it calls it in a loop, as a
# kernel does on each switch between processes, and makes a PSCI and an SDEI call for contrast.
# It runs on every profile (the SMC build on `firmware`).

# %%
import errno
import tempfile
from pathlib import Path

from sdeilab.firmware.arch import SMCCC_ARCH_WORKAROUND_1
from sdeilab.firmware.profiles import PROFILES, Profile
from sdeilab.firmware.smccc_filter import RESERVED_RANGES, FilterAction, FilterError, SmcccFilter
from sdeilab.lab.compare import compare, run_on
from sdeilab.lab.platform import Platform
from sdeilab.toolchain import build_source_text
from sdeilab.trace import LayerExit, SmcccCall, SmcccReturn
from sdeilab.trace.costs import TransitionCosts

WA1_CALLS = 100

GUEST = rf"""
#include "guest.h"
#define WA1_CALLS {WA1_CALLS}

    .text
    .globl main
main:
    /* Linux's discovery: only ARCH_FEATURES(WORKAROUND_1) == 0 means "call it" (DEN0028, reference 1.5). */
    print "ARCH_FEATURES(WORKAROUND_1) = "
    ldr x1, =SMCCC_ARCH_WORKAROUND_1
    smccc SMCCC_ARCH_FEATURES
    mov x20, x0
    bl put_dec
    print "\n"
    mov x21, #0                     /* workaround calls made */
    cbnz x20, 2f
    mov x19, #WA1_CALLS
1:  smccc SMCCC_ARCH_WORKAROUND_1   /* what each switch between processes costs */
    add x21, x21, #1
    subs x19, x19, #1
    b.ne 1b
2:  print "WORKAROUND_1 calls made: "
    mov x0, x21
    bl put_dec
    print "\nPSCI_VERSION = "
    smccc PSCI_VERSION
    bl put_hex
    print "\nSDEI_VERSION = "
    smccc SDEI_VERSION
    bl put_hex
    print "\n"
    bl psci_system_off
"""

build_dir = Path(tempfile.mkdtemp(prefix="wa1-"))
hvc_elf = build_source_text(GUEST, "asm", build_dir / "wa1.elf")
smc_elf = build_source_text(GUEST, "asm", build_dir / "wa1-smc.elf", defines={"CONDUIT_SMC": ""})


def elf_for(profile: Profile) -> Path:
    return hvc_elf if "hvc" in profile.conduits else smc_elf


comparison = compare(elf_for, list(PROFILES), cpus=1)
print(comparison.table())


def wa1_layers(trace) -> dict[str, int]:
    """Who answered the WORKAROUND_1 calls, and how many."""
    counts: dict[str, int] = {}
    for ret in trace.of_kind(SmcccReturn):
        if ret.fid == SMCCC_ARCH_WORKAROUND_1:
            counts[ret.layer] = counts.get(ret.layer, 0) + 1
    return counts


# %% [markdown]
# ## 1. WORKAROUND_1 lands in the kernel on every KVM profile
#
# Even on `kvm-vmm-psci-sdei`, where PSCI and SDEI exit to the VMM, the hundred workaround calls
# never leave KVM (on `firmware`, EL3 answers them: there is no hypervisor). Only the other calls
# move between profiles:

# %%
print(f"{'profile':<18} {'WORKAROUND_1':<14} {'PSCI_VERSION':<13} {'SDEI_VERSION':<13} exits")
for run in comparison.runs:
    layer = {r.name: r.layer for r in run.trace.of_kind(SmcccReturn)}
    print(f"{run.profile.name:<18} {wa1_layers(run.trace)!s:<14} {layer['PSCI_VERSION']:<13} "
          f"{layer['SDEI_VERSION']:<13} {[e.name for e in run.trace.of_kind(LayerExit)]}")
print()
print(comparison["kvm-vmm-psci-sdei"].output)

# %% [markdown]
# ## 2. The filter refuses to forward them
#
# A VMM that tried to take the workaround calls (to forward them, or merely to deny them) gets
# EEXIST from `KVM_ARM_VM_SMCCC_FILTER`: the architecture ranges are pre-reserved, and a
# reservation is an overlap like any other (reference section 6). The lab's filter does the same:

# %%
print("reserved:", ", ".join(f"[{base:#010x}, +{count:#x})" for base, count in RESERVED_RANGES))
refusals: list[FilterError] = []
for base, count, action in ((SMCCC_ARCH_WORKAROUND_1, 1, FilterAction.FWD_TO_USER),
                            (SMCCC_ARCH_WORKAROUND_1, 1, FilterAction.DENY),
                            (0x8000_0000, 0x1_0000, FilterAction.FWD_TO_USER),
                            (0xC000_0000, 0x1_0000, FilterAction.FWD_TO_USER)):
    try:
        SmcccFilter().install(base, count, action)
    except FilterError as error:
        refusals.append(error)
        print(error)

# %% [markdown]
# ## 3. What forwarding would cost (a model)
#
# The lab does not charge costs to virtual time; `TransitionCosts` models them from published
# micro-benchmarks (notebook 11 shows the sources): an HVC answered by KVM costs 306 ns round
# trip, one forwarded to the VMM 306 + 1377 = 1683 ns. For this guest's hundred calls:

# %%
costs = TransitionCosts()
in_kernel, forwarded = costs.call_ns("kvm"), costs.call_ns("vmm")
print(f"per call: {in_kernel} ns in KVM, {forwarded} ns forwarded ({forwarded / in_kernel:.1f}x), "
      f"{forwarded - in_kernel} ns extra")
print(f"{WA1_CALLS} calls: {WA1_CALLS * in_kernel / 1000:.1f} µs in KVM, "
      f"{WA1_CALLS * forwarded / 1000:.1f} µs forwarded")

# %% [markdown]
# How often does a real guest call it? On CPUs affected by Spectre v2 whose firmware says "call
# it", arm64 Linux runs its branch-predictor hardening callback, which for these CPUs is the
# `SMCCC_ARCH_WORKAROUND_1` HVC, in `check_and_switch_context()` (`arch/arm64/mm/context.c`,
# `arm64_apply_bp_hardening()`): once on every switch to a different address space, i.e. between
# processes (threads of one process do not pay it), and on a few entries from user space with a
# kernel address (instruction aborts, for example). **Model, not measurement:** take a vCPU
# switching between processes 1,000, 10,000 or 50,000 times a second (idle-ish, busy, very busy
# and chatty); every switch is one call, and forwarding adds 1377 ns to each:

# %%
for switches_per_s in (1_000, 10_000, 50_000):
    extra_ns = switches_per_s * (forwarded - in_kernel)
    print(f"{switches_per_s:>6} process switches/s per vCPU: +{extra_ns / 1e6:5.2f} ms of every second "
          f"({extra_ns / 1e7:.2f}% of the vCPU), {switches_per_s} more exits/s to the VMM")

# %% [markdown]
# About 1.4% of a vCPU at 10,000 switches a second, for a call in which the VMM has nothing to
# do: KVM answers `WORKAROUND_1` in a few instructions straight from its exception vectors
# (`el1_hvc_guest` in `arch/arm64/kvm/hyp/hyp-entry.S` returns at once), because the mitigation
# is the trip into EL2 itself, through vectors hardened by the host's own mitigation. (So, if
# anything, the generic 306 ns HVC figure overstates KVM's side.) Forwarded, each call would also
# wait on the VMM's vCPU thread, which can be descheduled: a context switch's latency would
# depend on userspace.

# %% [markdown]
# ## 4. What a VMM could misreport
#
# Worse than slow: whoever answers `SMCCC_ARCH_FEATURES(WORKAROUND_n)` decides whether the guest
# mitigates. KVM answers from what it knows of the host CPUs: 0 ("call it") if mitigated, 1 if
# the CPU is unaffected, -1 if vulnerable (reference section 1.5). A VMM answering 1 (unaffected)
# on an affected host would make the guest skip the mitigation silently; a VMM answering 0 for a
# workaround the host does not implement would make the guest believe it is protected. Nothing
# in the guest can tell. The answers the kernel gives here:

# %%
arch = comparison["kvm-vmm-psci-sdei"].platform.arch
for fid, answer in arch.workaround_features.items():
    print(f"ARCH_FEATURES({fid:#010x}) = {answer}")

# %% [markdown]
# **What-if (not possible on real KVM):** the filter forbids it, so to see the consequence we
# change the kernel's answer directly before the run, as a VMM owning the range could. The guest
# reads "unaffected" and makes no workaround call at all, on a host modelled as an affected
# Cortex-A57.


# %%
def misreport(platform: Platform) -> None:
    platform.arch.workaround_features[SMCCC_ARCH_WORKAROUND_1] = 1  # "not needed on this PE"


lied_to = run_on(hvc_elf, "kvm-vmm-psci-sdei", cpus=1, before_run=misreport)
print(lied_to.output)

# %% [markdown]
# ## Check yourself
#
# On every profile the guest made all its workaround calls and each `SmcccReturn` of
# `WORKAROUND_1` came from the lowest layer (`kvm`, or `el3` on `firmware`); none of them caused
# an exit, while on `kvm-vmm-psci-sdei` PSCI and SDEI did, one exit per VMM-answered call; every
# attempt to filter the architecture range failed with EEXIST; and the misreported answer turned
# the mitigation off.

# %%
from dataclasses import replace

from sdeilab.firmware.smccc_filter import FilterRange
from sdeilab.widgets.exercise import Checks, Exercise

with Checks() as check:
    for run in comparison.runs:
        name, lowest = run.profile.name, run.profile.lowest_layer
        wa1 = [r for r in run.trace.of_kind(SmcccReturn) if r.fid == SMCCC_ARCH_WORKAROUND_1]
        check(f"{name}: all {WA1_CALLS} WORKAROUND_1 calls made and answered by {lowest}",
              len(wa1) == WA1_CALLS and {r.layer for r in wa1} == {lowest}
              and f"WORKAROUND_1 calls made: {WA1_CALLS}" in run.output, {r.layer for r in wa1})
        check(f"{name}: no arch-range call exits; every exit is a call the VMM answered",
              not [e for e in run.trace.of_kind(LayerExit) if e.fid >> 16 in (0x8000, 0xC000)]
              and run.summary.exits == run.trace.count(LayerExit) == run.summary.calls.get("vmm", 0))
    check("on virt the kernel answers every call",
          {r.layer for r in comparison.runs[0].trace.of_kind(SmcccReturn)} == {"kvm"})
    forwarded_run = comparison["kvm-vmm-psci-sdei"]
    forwarded_exits = {e.name for e in forwarded_run.trace.of_kind(LayerExit)}
    check("on kvm-vmm-psci-sdei exactly PSCI_VERSION, SDEI_VERSION and SYSTEM_OFF exit",
          forwarded_exits == {"PSCI_VERSION", "SDEI_VERSION", "SYSTEM_OFF"}, forwarded_exits)
    check("all four attempts to filter the architecture range failed with EEXIST",
          len(refusals) == 4 and all(e.errno == errno.EEXIST for e in refusals), refusals)
    check("forwarding costs 1377 ns more per call than KVM's answer",
          costs.call_ns("vmm") - costs.call_ns("kvm") == costs.kvm_vmm_ns == 1377)
    check("with the misreported answer the guest makes no WORKAROUND_1 call",
          "WORKAROUND_1 calls made: 0" in lied_to.output
          and not [c for c in lied_to.trace.of_kind(SmcccCall) if c.fid == SMCCC_ARCH_WORKAROUND_1])

# %% [markdown]
# ## Exercise: a VMM that asks for the workaround anyway
#
# Build a profile of your own: `kvm-vmm-psci-sdei` with one more filter range, forwarding
# `SMCCC_ARCH_WORKAROUND_1` to the VMM (`FilterRange(SMCCC_ARCH_WORKAROUND_1, 1, FWD_TO_USER)`),
# and run the guest on it. Who answers the hundred `WORKAROUND_1` calls? Choose one of:
#
# * `"the VMM: each call exits"`
# * `"KVM, as on kvm-vmm-psci-sdei: the range is ignored"`
# * `"nobody: the VM is never set up (the filter refuses the range)"`

# %%
prediction = None  # e.g. "the VMM: each call exits"
exercise = Exercise("A profile that forwards WORKAROUND_1: who answers the guest's hundred calls?",
                    ["the VMM: each call exits", "KVM, as on kvm-vmm-psci-sdei: the range is ignored",
                     "nobody: the VM is never set up (the filter refuses the range)"]).predict(prediction)

# %%
base = PROFILES["kvm-vmm-psci-sdei"]
greedy = replace(base, name="kvm-vmm-psci-sdei + WORKAROUND_1",
                 smccc_filter=(*base.smccc_filter, FilterRange(SMCCC_ARCH_WORKAROUND_1, 1, FilterAction.FWD_TO_USER)))
greedy_run, greedy_error = None, None
try:
    greedy_run = run_on(hvc_elf, greedy, cpus=1)
except FilterError as error:
    greedy_error = error
if greedy_error is not None:
    shown = "nobody: the VM is never set up (the filter refuses the range)"
else:
    shown = {"vmm": "the VMM: each call exits", "kvm": "KVM, as on kvm-vmm-psci-sdei: the range is ignored"}.get(
        next(iter(wa1_layers(greedy_run.trace)), "none"), str(wa1_layers(greedy_run.trace)))
exercise.reveal(shown, f"installing the filter is part of setting up the VM, before any vCPU runs: {greedy_error}")
with Checks() as check:
    check("the filter refused the range with EEXIST and the run never started",
          greedy_error is not None and greedy_error.errno == errno.EEXIST and greedy_run is None, greedy_error)
