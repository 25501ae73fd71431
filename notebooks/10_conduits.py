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
# # The conduit question: HVC or SMC, with and without EL3
#
# **Question:** a guest reaches its firmware with `HVC #0` or `SMC #0` (the SMCCC *conduit*).
# Which one should an SDEI guest use under KVM, and what happens when it picks the wrong one?
#
# Three facts decide it (reference sections 6 and 7.1):
#
# * **SMC without EL3 is UNDEFINED.** On a CPU without EL3 (and without nested virtualisation)
#   `SMC` at EL1 is not trapped to anyone: it is an undefined instruction, taken to the guest's
#   own EL1 vector with `ESR_EL1.EC = 0` (Unknown reason), `ESR_EL1 = 0x02000000`.
# * **With EL3 present, KVM traps SMC** (`HCR_EL2.TSC`) and, since Linux 6.4, sends it through
#   the same SMCCC handler as HVC: the same filter applies, and an exit to the VMM says which
#   instruction it was in `KVM_EXIT_HYPERCALL`'s flags (bit 0, `KVM_HYPERCALL_EXIT_SMC`).
# * **On real firmware** (TF-A at EL3, no hypervisor) SMC is the conduit and HVC is UNDEFINED.
#
# The first cell runs everything: the `smc_undef` guest on `virt`, and one SMC-built SDEI guest
# (`tftf_signal_serial-smc.elf`, built with `-DCONDUIT_SMC`) on `firmware`, on a KVM profile with
# the SMC-with-EL3 conduit switch, and on KVM profiles that answer HVC only. The HVC build of the
# same guest on the same KVM profile is the control.

# %%
from collections import Counter

from sdeilab.firmware.profiles import CONDUIT_SWITCHES, PROFILES
from sdeilab.lab.compare import ProfileRun, run_on
from sdeilab.machine.outcome import StopReason
from sdeilab.toolchain import guests_dir
from sdeilab.trace import ExceptionTaken, LayerExit, SmcccCall, SmcccReturn

GUESTS = guests_dir()
SMC_GUEST = GUESTS / "sdei" / "tftf_signal_serial-smc.elf"  # every call is SMC #0
HVC_GUEST = GUESTS / "sdei" / "tftf_signal_serial.elf"  # the same program, every call HVC #0
# An SMC guest with nobody to answer SMC cannot even power itself off (its SYSTEM_OFF is an SMC
# too): the lab stops it at this many instructions, enough to see what happens.
NO_ANSWER_BUDGET = 300_000
ESR_UNDEFINED = 0x0200_0000  # EC 0 (Unknown reason), IL 1, ISS 0

smc_el3 = PROFILES["kvm-vmm-psci-sdei"].with_conduits(CONDUIT_SWITCHES["smc-el3"], "kvm-vmm-psci-sdei, SMC+EL3")
smc_no_el3 = PROFILES["kvm-vmm-psci-sdei"].with_conduits(CONDUIT_SWITCHES["smc-no-el3"],
                                                         "kvm-vmm-psci-sdei, SMC no EL3")

runs: dict[str, ProfileRun] = {
    "smc_undef on virt": run_on(GUESTS / "smc_undef.elf", "virt"),
    "SMC guest on firmware": run_on(SMC_GUEST, "firmware"),
    "SMC guest, KVM with EL3": run_on(SMC_GUEST, smc_el3),
    "HVC guest, KVM (control)": run_on(HVC_GUEST, "kvm-vmm-psci-sdei"),
    "SMC guest, KVM without EL3": run_on(SMC_GUEST, smc_no_el3, max_instructions=NO_ANSWER_BUDGET),
    "SMC guest on kvm (HVC only)": run_on(SMC_GUEST, "kvm", max_instructions=NO_ANSWER_BUDGET),
}


def symbol(run: ProfileRun, address: int) -> str:
    """``name+0xoff`` of an address in the guest's ELF."""
    return run.platform.machine.image.symbolize(address)


print(f"{'run':<28} {'profile':<32} {'conduits':<14} {'ended':<11} {'calls':>5} {'UNDEFs':>6}  verdict")
for what, run in runs.items():
    undefs = sum(e.esr == ESR_UNDEFINED for e in run.trace.of_kind(ExceptionTaken))
    print(f"{what:<28} {run.profile.name:<32} {','.join(run.profile.conduits):<14} "
          f"{run.outcome.reason.value:<11} {run.trace.count(SmcccCall):>5} {undefs:>6}  {run.verdict}")

# %% [markdown]
# ## 1. SMC at EL1 with no EL3: UNDEFINED
#
# `smc_undef` executes `SMC #0` with `PSCI_VERSION` in `x0` on `virt` (a KVM guest: HVC is the
# conduit, there is no EL3). Its own synchronous exception handler checks the syndrome and that
# `ELR_EL1` points at the SMC itself, skips it, and carries on; then the same call through HVC
# works. No firmware layer saw the SMC: `x0` still holds the function ID.

# %%
undef = runs["smc_undef on virt"]
print(undef.output)
for exc in undef.trace.of_kind(ExceptionTaken):
    print(f"ExceptionTaken: {exc.kind}, {exc.reason!r}, ESR_EL1 = {exc.esr:#010x}, "
          f"ELR_EL1 = {exc.elr:#x} <{symbol(undef, exc.elr)}>")

# %% [markdown]
# ## 2. SMC on real firmware: EL3 answers
#
# On `firmware` (TF-A-like: EL3 implements SMCCC, PSCI and SDEI) the SMC build passes. Every call
# is an SMC and every answer comes from `el3`; there is no hypervisor, so there are no exits.

# %%
fw = runs["SMC guest on firmware"]
print(fw.output)
print("conduit of the calls:", Counter(c.conduit for c in fw.trace.of_kind(SmcccCall)))
print("layer of the answers:", Counter(r.layer for r in fw.trace.of_kind(SmcccReturn)))
print("exits to a VMM:", fw.trace.count(LayerExit))

# %% [markdown]
# ## 3. SMC under KVM with EL3 present: trapped, filtered and forwarded like HVC
#
# `CONDUIT_SWITCHES["smc-el3"]` describes a host with EL3: KVM traps the guest's SMC into the
# same SMCCC handler as HVC (Linux 6.4+). On `kvm-vmm-psci-sdei` the filter forwards PSCI and
# SDEI to the VMM, so the unmodified SMC build passes, with the same exits as the HVC build;
# the only difference the VMM sees is bit 0 of `flags` (`KVM_HYPERCALL_EXIT_SMC`). The exit
# carries the function ID and that flag, not the instruction's immediate: KVM refuses an SMC
# with a non-zero immediate (x0 = -1) as DEN0028 reserves it, so only `SMC #0` is an SMCCC call
# (reference section 6, "Conduits" and "The exit"). Dave Martin asked in 2019 that the exit say
# it was an SMC (`<20190715134059.GJ2790@e103592.cambridge.arm.com>`); this flag is the answer.

# %%
smc_run, hvc_run = runs["SMC guest, KVM with EL3"], runs["HVC guest, KVM (control)"]
print(smc_run.output)
for label, run in (("SMC build", smc_run), ("HVC build", hvc_run)):
    exits = run.trace.of_kind(LayerExit)
    print(f"{label}: {len(exits)} exits, flags {dict(Counter(e.flags for e in exits))}, first: "
          + ", ".join(f"{e.name} (flags {e.flags})" for e in exits[:3]))

# %% [markdown]
# ## 4. SMC under KVM without EL3: nobody answers
#
# `CONDUIT_SWITCHES["smc-no-el3"]` is the same KVM profile on a host without EL3: only HVC
# reaches KVM, and the guest's SMC is UNDEFINED at EL1. It does not matter that this profile
# forwards SDEI to a VMM that implements it: the VMM never sees the call, because KVM never
# does. Plain `kvm` is the same. The guest takes the undefined-instruction exception at its
# very first call (`SDEI_VERSION`, in `test_begin`); its library handler prints the fault and
# ends the test with PSCI `SYSTEM_OFF`, which is itself an SMC, so it faults again: the guest
# cannot even stop itself. Its library parks the CPU on that second fault, and the machine ends
# the run because every CPU waits with nothing to wake it (`sdeilab run` would exit 4). The
# trace holds no firmware call at all, only exceptions.

# %%
for key in ("SMC guest, KVM without EL3", "SMC guest on kvm (HVC only)"):
    run = runs[key]
    excs = run.trace.of_kind(ExceptionTaken)
    print(f"== {key}: {run.outcome.reason.value} ({run.outcome.detail})")
    print("   first lines of the UART:")
    for line in run.output.splitlines()[:4]:
        print("     " + line)
    print(f"   firmware calls: {run.trace.count(SmcccCall)}, exits: {run.trace.count(LayerExit)}, "
          f"UNDEFINED exceptions: {len(excs)}")
    print("   where:", ", ".join(f"<{symbol(run, e.elr)}>" for e in excs[:3]), "...")

# %% [markdown]
# ## Why the answer is "HVC, and have KVM forward"
#
# Mark Rutland, in the 2019 thread (`<20190715134848.GI56232@lakrids.cambridge.arm.com>`, reference
# section 7.1): "Be _very_ careful": without EL3 or nested virtualisation an SMC UNDEFs rather
# than trapping, so **no hypervisor ABI may depend on SMC**. Use HVC, and let KVM forward what
# userspace should answer. Sections 1 and 4 above are that sentence made runnable: the same SMC
# build that passes on `firmware` and on a host with EL3 (sections 2 and 3) cannot make a single
# call on a host without one, whatever the VMM implements.
#
# The SMCCC filter that came out of that discussion (Linux 6.4, reference section 6) follows
# the advice: it is opt-in, per function-ID range, and applies to both conduits, so an HVC guest
# works everywhere KVM runs, and an SMC guest works where the hardware lets KVM trap SMC. The
# exception: a guest hypervisor under nested virtualisation must use SMC (section 6).

# %% [markdown]
# ## Check yourself
#
# The UNDEF has the syndrome and return address the Arm ARM gives; on `firmware` every call is
# an SMC answered by EL3; under KVM with EL3 the SMC build makes exactly the HVC build's exits,
# each flagged SMC (and the HVC build's are not), and each exit is a call the VMM answered;
# without EL3 no call reaches any layer.

# %%
from sdeilab.widgets.exercise import Checks, Exercise

with Checks() as check:
    (exc,) = undef.trace.of_kind(ExceptionTaken)
    check("smc_undef's SMC was UNDEFINED (ESR_EL1 = 0x02000000) with ELR_EL1 at <smc_insn>",
          exc.esr == ESR_UNDEFINED and symbol(undef, exc.elr) == "smc_insn", (exc, symbol(undef, exc.elr)))
    undef_calls = [(c.conduit, c.name) for c in undef.trace.of_kind(SmcccCall)]
    check("no layer saw the SMC: the only calls were PSCI_VERSION and SYSTEM_OFF over HVC",
          undef_calls == [("hvc", "PSCI_VERSION"), ("hvc", "SYSTEM_OFF")], undef_calls)

    check("on firmware the SMC build passes and every call is an SMC",
          fw.verdict == "PASS" and {c.conduit for c in fw.trace.of_kind(SmcccCall)} == {"smc"})
    check("on firmware EL3 answers every call and nothing exits to a VMM",
          {r.layer for r in fw.trace.of_kind(SmcccReturn)} == {"el3"} and fw.trace.count(LayerExit) == 0)

    smc_exits, hvc_exits = smc_run.trace.of_kind(LayerExit), hvc_run.trace.of_kind(LayerExit)
    check("under KVM with EL3 the SMC build passes, as the HVC build does",
          smc_run.verdict == hvc_run.verdict == "PASS", (smc_run.verdict, hvc_run.verdict))
    check("each of the SMC build's calls exits to the VMM, which answers it",
          len(smc_exits) == smc_run.summary.calls["vmm"] == smc_run.trace.count(SmcccCall) > 0)
    check("the SMC build makes the HVC build's exits, in the same order",
          [e.name for e in smc_exits] == [e.name for e in hvc_exits])
    check("every exit of the SMC build has KVM_HYPERCALL_EXIT_SMC set, and none of the HVC build's",
          all(e.flags & 1 for e in smc_exits) and not any(e.flags & 1 for e in hvc_exits))

    for key in ("SMC guest, KVM without EL3", "SMC guest on kvm (HVC only)"):
        run = runs[key]
        excs = run.trace.of_kind(ExceptionTaken)
        check(f"{key}: the run ends in deadlock", run.outcome.reason is StopReason.DEADLOCK, run.outcome)
        check(f"{key}: no call reaches any layer, nothing exits",
              run.trace.count(SmcccCall) == 0 and run.trace.count(LayerExit) == 0)
        check(f"{key}: every exception is UNDEFINED, the first at <sdei_version...>",
              excs and all(e.esr == ESR_UNDEFINED for e in excs)
              and symbol(run, excs[0].elr).startswith("sdei_version"))

# %% [markdown]
# ## Exercise: the other way round
#
# On `firmware` there is no hypervisor: EL3 answers `SMC #0`, and nothing is there to take an
# `HVC`. Run the **HVC** build of the same guest (`tftf_signal_serial.elf`) on `firmware`.
# What happens at its first call, `SDEI_VERSION`? Choose one of:
#
# * `"EL3 answers it"`
# * `"UNDEFINED: EC 0x00, Unknown reason"`
# * `"trapped as an HVC: EC 0x16"`
# * `"trapped as an SMC: EC 0x17"`
#
# Write your answer into `prediction` (or click it, in JupyterLab), then run the two cells.

# %%
prediction = None  # e.g. "EL3 answers it"
exercise = Exercise("The HVC build on firmware: what happens at its first call?",
                    ["EL3 answers it", "UNDEFINED: EC 0x00, Unknown reason", "trapped as an HVC: EC 0x16",
                     "trapped as an SMC: EC 0x17"]).predict(prediction)

# %%
hvc_on_fw = run_on(HVC_GUEST, "firmware", max_instructions=NO_ANSWER_BUDGET)
fw_excs = hvc_on_fw.trace.of_kind(ExceptionTaken)
EC_NAMES = {0x00: "UNDEFINED: EC 0x00, Unknown reason", 0x16: "trapped as an HVC: EC 0x16",
            0x17: "trapped as an SMC: EC 0x17"}
if hvc_on_fw.trace.count(SmcccCall):
    shown = "EL3 answers it"
else:
    shown = EC_NAMES.get(fw_excs[0].esr >> 26, f"EC {fw_excs[0].esr >> 26:#04x}") if fw_excs else "nothing"
exercise.reveal(shown, "with no EL2, HVC at EL1 is UNDEFINED, as SMC is without EL3: the mirror of section 4")
print(f"first exception at <{symbol(hvc_on_fw, fw_excs[0].elr)}>, run ended: {hvc_on_fw.outcome.reason.value}")
with Checks() as check:
    check("no call reached EL3", hvc_on_fw.trace.count(SmcccCall) == 0)
    check("the first exception is UNDEFINED (EC 0) at <sdei_version...>",
          fw_excs and fw_excs[0].esr == ESR_UNDEFINED and symbol(hvc_on_fw, fw_excs[0].elr).startswith("sdei_version"))
    check("the guest cannot power itself off: the run ends in deadlock",
          hvc_on_fw.outcome.reason is StopReason.DEADLOCK, hvc_on_fw.outcome)
