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
# # An NMI watchdog from an SDEI-bound interrupt
#
# **Question:** how does binding an interrupt to an SDEI event turn it into an NMI watchdog, and
# why can't the kernel's virtual timer (INTID 27) be bound?
#
# A hard lockup is a CPU spinning with IRQs masked (`PSTATE.I` set, say a `spin_lock_irqsave`
# that never gets its lock): its own timer interrupt can never get in, so a watchdog built on
# IRQs cannot see it. An ARMv8.0 CPU has no architectural NMI (FEAT_NMI came with Armv8.8;
# Linux's pseudo-NMI builds one from GIC priority masking, where the GIC allows it). SDEI offers
# one. `INTERRUPT_BIND(intid)` gives
# an event number for a PPI (private event) or SPI (shared event); `EVENT_REGISTER` then takes
# the interrupt away from the client: in TF-A it becomes Group 0, the firmware's, and "from then
# on the interrupt is no longer delivered to the NS world as an IRQ; it arrives only as the
# event" (reference section 2.9). The dispatcher's conditions (section 2.4) are about the
# event's state, the PE's SDEI mask (`PE_MASK`/`PE_UNMASK`, section 2.3) and nesting: none of
# them reads `PSTATE.I`. The handler is entered with D, A, I and F all set, with the interrupted
# PC and PSTATE in x2 and x3: where the CPU was stuck, for the lockup report.
#
# The guest is `guests/sdei/linux_client/`, a client written the way Linux's driver
# (`drivers/firmware/arm_sdei.c`, `arch/arm64/kernel/sdei.c`) works, running the SDEI NMI
# watchdog that Alibaba's cloud-kernel and openEuler carry (`arch/arm64/kernel/watchdog_sdei.c`:
# `INTERRUPT_BIND` of a per-CPU timer PPI, a private event registered on every CPU, callback
# `watchdog_hardlockup_check`). It binds the EL1 physical timer (PPI 30) on 4 CPUs. CPUs 1 and
# 3 idle in `cpu_idle` with IRQs unmasked; CPU 2 masks IRQs and spins in `stuck_loop`. Each NMI
# samples the CPU's IRQ count (Linux's detector samples its count of hrtimer interrupts); the
# next one compares: no IRQ in between is a hard lockup.
#
# The first cell runs it under the lab's debugger (`Session`) with one breakpoint: the first
# time CPU 2 reaches `stuck_loop`, which tells us when its `PSTATE.I` interval begins and lets us
# read PSTATE from the CPU itself rather than from the guest's source. The run then goes on to
# the end, with the same trace an uninterrupted run gives (DESIGN.md section 1, determinism).
# It also builds a small guest of its own, used in sections 5 and 6.

# %%
# %config InlineBackend.figure_formats = ["retina"]  # drawn at twice its pixels: sharp on a HiDPI screen
# %config InlineBackend.print_figure_kwargs = {"bbox_inches": None}  # the figure as drawn, 840 px: never wider
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle

from sdeilab.firmware.profiles import PROFILES
from sdeilab.firmware.sdei.table import SdeiResult
from sdeilab.lab.compare import run_on
from sdeilab.lab.session import Session, pstate_text
from sdeilab.machine.outcome import StopReason
from sdeilab.toolchain import build_source_text, guests_dir
from sdeilab.trace import (
    ExceptionTaken,
    IrqAcknowledged,
    PowerTransition,
    SdeiBinding,
    SdeiComplete,
    SdeiDispatch,
    SdeiTransition,
)
from sdeilab.trace.intervals import firmware_calls, handler_intervals
from sdeilab.viz import figure_legend, sequence, style, timeline

PSTATE_I = 1 << 7  # PSTATE/SPSR bit 7: IRQs masked (Arm ARM C5.2.18)
STUCK_CPU = 2

session = Session(guests_dir() / "sdei" / "linux_client.elf", cpus=4)
stop = session.add_breakpoint("stuck_loop", cpu=STUCK_CPU)
at_stuck = session.run()
i_masked_from = at_stuck.vtime  # the vtime of CPU 2's first instruction of stuck_loop
stuck_view = session.cpu_view(STUCK_CPU)
session.remove_breakpoint(stop)
finished = session.run()

trace = session.trace
image = session.machine.image
symbols = {name: address for address, name in image.symbols.items()}
end = trace.max_vtime()
output = session.uart_text()
print(f"stopped: {at_stuck.detail}; run ended: {finished.reason} ({finished.detail})")
print(output.splitlines()[-1])

# %% [markdown]
# ## 1. The watchdog catches CPU 2
#
# What the guest printed after the fact (CPU 0 collects what the handlers recorded). Each NMI
# line gives the interrupted PC and `PSTATE.I`; CPU 2's second NMI found no IRQ taken since the
# first: hard lockup, at `stuck_loop`.

# %%
for line in output.splitlines():
    if line.startswith(("watchdog:", "CPU 1:", "CPU 2:")) and "mask points" not in line:
        print(line)

# %% [markdown]
# ## 2. Every dispatch, from the trace
#
# The same story from the facts alone: each `SdeiDispatch` records the interrupted PC and
# PSTATE (the handler's x2 and x3), resolved here against the guest's symbols, and its
# `SdeiComplete` how the handler left (notebook 33 is about that column). The breakpoint stop
# shows CPU 2's own registers when it entered `stuck_loop`.

# %%
print(f"CPU {STUCK_CPU} at the breakpoint: PC <{image.symbolize(stuck_view.pc)}>, "
      f"PSTATE {pstate_text(stuck_view.registers['PSTATE'])}, vtime {i_masked_from} ns")
print()
dispatches = list(trace.of_kind(SdeiDispatch))
by_place = {(d.cpu, d.vtime): d for d in dispatches}
handlers = handler_intervals(trace)  # dispatch to COMPLETE, in CPU order
print(f"{'cpu':>3} {'vtime ns':>9}  {'source':<13} {'interrupted PC':<18} {'interrupted PSTATE':<19} left by")
for h in handlers:
    d = by_place[(h.cpu, h.start)]
    print(f"{d.cpu:>3} {d.vtime:>9}  {d.source:<13} {'<' + image.symbolize(d.interrupted_pc) + '>':<18} "
          f"{pstate_text(d.interrupted_pstate):<19} {h.how}")

# %% [markdown]
# ## 3. On the timeline: the handler runs where IRQs are masked
#
# The shaded band on CPU 2 is the interval in which its `PSTATE.I` is set: from the breakpoint
# at `stuck_loop` to the end of the run (it never leaves). The blue bars are the SDEI handler
# runs, dispatch to `COMPLETE`; the yellow marks over them are the dispatcher acknowledging
# INTID 30 (Group 0) at dispatch and EOIing it at `COMPLETE` (`docs/sdei.md`, Dispatch). The top
# panel covers both watchdog rounds (64 µs apart: the guest re-arms the timer with 4000 counts
# at 62.5 MHz); the bottom one zooms on the first round, where CPUs 1 and 3, idle with IRQs
# unmasked, take the same event in the same way: it is not an IRQ to them either.

# %%
cpus = [1, 2, 3]
first_round = sorted((h for h in handlers if h.cpu in cpus), key=lambda h: h.start)[:3]
wide = (i_masked_from - 5_000, max(h.end for h in handlers if h.cpu == STUCK_CPU) + 5_000)
zoom = (min(h.start for h in first_round) - 150, max(h.end for h in first_round) + 150)


def shade_irq_masked(ax: plt.Axes, label: str) -> None:
    """CPU 2's PSTATE.I interval, over its whole lane (lanes are centred on their row index)."""
    row = cpus.index(STUCK_CPU)
    ax.add_patch(Rectangle((i_masked_from, row - 0.5), end - i_masked_from, 1.0, facecolor=style.SKY_BLUE,
                           alpha=0.18, zorder=0))
    ax.annotate(label, (ax.get_xlim()[1], row + 0.1),
                xytext=(-6, 0), textcoords="offset points", ha="right", va="center", fontsize=style.SMALL,
                color=style.BLUE, fontweight="bold", zorder=9,  # over the handlers' lines, on white
                bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.9})


fig, axes = plt.subplots(2, 1, figsize=(style.NOTEBOOK_WIDTH, 8), layout="constrained")
masked_label = f"PSTATE.I = 1 (IRQs masked) since <{image.symbolize(stuck_view.pc)}>"
for ax, window, title, label in ((axes[0], wide, "both watchdog rounds", masked_label),
                                 (axes[1], zoom, "the first round", "PSTATE.I = 1")):
    timeline(ax, trace, cpus=cpus, window=window)
    shade_irq_masked(ax, label)
    ax.set_title(f"linux_client, CPUs 1-3: {title}", fontsize=style.TITLE)
for h in first_round:
    axes[1].annotate(f"<{image.symbolize(h.interrupted_pc)}>", (h.start, cpus.index(h.cpu) - 0.05), xytext=(4, 0),
                     textcoords="offset points", fontsize=style.SMALL, color="white", va="center")
figure_legend(fig)  # one legend for both panels
plt.show()

# %% [markdown]
# ## 4. While bound, INTID 30 is never an IRQ
#
# Every time the timer fired, the GIC signalled it to the firmware: each acknowledge of INTID 30
# is Group 0 and is followed, at the same vtime on the same CPU, by the dispatch of event 1000.
# No IRQ exception was taken in the whole run (`ExceptionTaken` facts: none), although CPUs 1 and
# 3 sat in `cpu_idle` with `PSTATE.I` clear. The "IRQ vector entries" the guest counts on CPUs 1
# and 3 are its handler's `COMPLETE_AND_RESUME` to the IRQ vector, not interrupts (notebook 33).

# %%
(binding,) = trace.of_kind(SdeiBinding)
acks = [a for a in trace.of_kind(IrqAcknowledged) if a.intid == binding.intid]
print(f"INTERRUPT_BIND({binding.intid}) -> event {binding.event} at {binding.vtime} ns (CPU {binding.cpu})")
print(f"acknowledges of INTID {binding.intid}: {len(acks)}, by group: "
      f"{ {g: sum(a.group == g for a in acks) for g in (0, 1)} }")
print("each followed by a dispatch of that event there and then:",
      all(by_place.get((a.cpu, a.vtime)) is not None and by_place[(a.cpu, a.vtime)].event == binding.event
          for a in acks))
print("IRQ exceptions taken:", trace.count(ExceptionTaken))

# %% [markdown]
# ## 5. Why not INTID 27?
#
# The interrupt must be the client's to give. TF-A refuses to bind one that is not Non-secure
# (DENIED, reference 2.9); the lab's `virt` profile, SDEI beside KVM, refuses the EL1 virtual
# timer (DESIGN.md section 4, `docs/sdei.md`). Two reasons, one on each side of the VM boundary:
#
# - **It is the guest kernel's clock.** Linux booted at EL1 (any KVM guest) drives its tick and
#   hrtimers from the virtual timer (`arch_timer` picks the virtual PPI when not in hyp mode).
#   Bound, every tick would become an NMI and the kernel would lose its clock event device.
# - **It is KVM's interrupt.** KVM saves and restores `CNTV_*` with each vCPU and maps the vCPU's
#   virtual timer interrupt onto the physical PPI (`kvm_timer_enable` calls
#   `kvm_vgic_map_phys_irq`: "the virtual interrupt is tied to a physical interrupt"), so the
#   guest's EOI deactivates the hardware one. Nobody else may take it over: the 2019 thread
#   named the vtimer as the "KVM-owned interrupt" that cannot be bound (reference 7.1; section 6,
#   "hard part (a)").
#
# Where SDEI lives decides what it may bind (`SdeiPlatform.reserved_intids` of each profile):

# %%
for name, profile in PROFILES.items():
    if "sdei" in profile.services:
        reserved = sorted(profile.sdei.reserved_intids)
        shown = f"{reserved[0]}-{reserved[-1]} (every PPI)" if len(reserved) == 16 else str(reserved)
        print(f"{name:<18} SDEI in {profile.services['sdei']:<4} private bind slots {profile.sdei.private_slots}, "
              f"refuses INTIDs {shown}")

# %% [markdown]
# To see the refusal and the ownership change in one place, the cell below builds a one-CPU
# guest. It enables PPIs 27 and 30 as its own IRQs, takes one IRQ of PPI 30, then binds 27
# (refused) and 30, registers and enables the event and unmasks the PE. With `PSTATE.I` clear it
# arms both timers: PPI 30 fires first and arrives as the SDEI event, PPI 27 after it as an
# ordinary IRQ. Then `EVENT_UNREGISTER` (which hands the interrupt back to the client, disabled,
# at the lowest priority: reference 2.9) and `INTERRUPT_RELEASE`; the guest enables PPI 30
# again, as a driver's `request_irq` would, and takes it as an IRQ. Its SDEI entry point is
# assembly because `COMPLETE` never returns and the dispatcher keeps only x0-x17 (reference 2.4).

# %%
OWNER = r"""
#include "guest.h"

#define STR(x) #x
#define XSTR(x) STR(x)
#define PERIOD 1000                     /* timer counts: 16 us at 62.5 MHz */

static volatile uint64_t irqs[32];      /* IRQ exceptions taken, per PPI */
static volatile uint64_t nmis;          /* SDEI handler runs */

static void arm_timer(unsigned intid, uint64_t counts)
{
    if (intid == TIMER_PHYS_INTID) {
        write_sysreg(cntp_tval_el0, counts);
        write_sysreg(cntp_ctl_el0, 1);
    } else {
        write_sysreg(cntv_tval_el0, counts);
        write_sysreg(cntv_ctl_el0, 1);
    }
    isb();
}

static void stop_timer(unsigned intid)  /* the timers are level-sensitive: the line drops */
{
    if (intid == TIMER_PHYS_INTID)
        write_sysreg(cntp_ctl_el0, 0);
    else
        write_sysreg(cntv_ctl_el0, 0);
    isb();
}

void handle_irq(void)
{
    uint32_t intid = gic_iar();
    if (intid == GIC_SPURIOUS_INTID)
        return;
    if (intid == TIMER_VIRT_INTID || intid == TIMER_PHYS_INTID) {
        stop_timer(intid);
        irqs[intid]++;
    }
    gic_eoir(intid);
}

void nmi_handler(int64_t event, uint64_t arg, uint64_t pc, uint64_t pstate);
void nmi_handler(int64_t event, uint64_t arg, uint64_t pc, uint64_t pstate)
{
    (void)event, (void)arg, (void)pc, (void)pstate;
    stop_timer(TIMER_PHYS_INTID);
    nmis++;
}

/* nmi_entry keeps x18, x29 and x30 itself; wait_change(counter, old) idles with IRQs unmasked. */
void nmi_entry(void);
void wait_change(volatile uint64_t *counter, uint64_t old);
__asm__(
    ".text\n"
    ".globl nmi_entry, wait_change, wait_woken\n"
    ".balign 4\n"
    "nmi_entry:\n"
    "    stp x18, x30, [sp, #-32]!\n"
    "    str x29, [sp, #16]\n"
    "    bl nmi_handler\n"
    "    ldr x29, [sp, #16]\n"
    "    ldp x18, x30, [sp], #32\n"
    "    ldr x0, =" XSTR(SDEI_EVENT_COMPLETE) "\n"
    "    mov x1, #0\n"                  /* SDEI_EV_HANDLED */
    "    hvc #0\n"
    "    b .\n"
    ".ltorg\n"
    ".balign 4\n"
    "wait_change:\n"
    "    msr daifclr, #2\n"
    "1:  wfi\n"
    "wait_woken:\n"
    "    ldar x2, [x0]\n"
    "    cmp x2, x1\n"
    "    b.eq 1b\n"
    "    msr daifset, #2\n"
    "    ret\n");

static int64_t sdei(uint64_t fid, uint64_t a1, uint64_t a2)
{
    return smccc_call5(fid, a1, a2, 0, 0, 0);
}

static void report(const char *phase)
{
    puts(phase);
    puts(": IRQs of INTID 27 = ");
    put_udec(irqs[TIMER_VIRT_INTID]);
    puts(", IRQs of INTID 30 = ");
    put_udec(irqs[TIMER_PHYS_INTID]);
    puts(", SDEI handler runs = ");
    put_udec(nmis);
    putc('\n');
}

int main(void)
{
    gic_dist_init();
    gic_redist_init();
    gic_cpu_init();
    gic_enable_ppi(TIMER_VIRT_INTID, 0x80);
    gic_enable_ppi(TIMER_PHYS_INTID, 0x80);

    arm_timer(TIMER_PHYS_INTID, PERIOD);
    wait_change(&irqs[TIMER_PHYS_INTID], 0);
    report("the guest's");

    int64_t vtimer = sdei(SDEI_INTERRUPT_BIND, TIMER_VIRT_INTID, 0);
    int64_t event = sdei(SDEI_INTERRUPT_BIND, TIMER_PHYS_INTID, 0);
    puts("INTERRUPT_BIND(27) = ");
    put_dec(vtimer);
    puts(", INTERRUPT_BIND(30) = ");
    put_dec(event);
    putc('\n');
    if (event < 0)
        psci_system_off();
    puts("EVENT_REGISTER = ");
    put_dec(sdei(SDEI_EVENT_REGISTER, (uint64_t)event, (uint64_t)(uintptr_t)nmi_entry));
    puts(", EVENT_ENABLE = ");
    put_dec(sdei(SDEI_EVENT_ENABLE, (uint64_t)event, 0));
    puts(", PE_UNMASK = ");
    put_dec(sdei(SDEI_PE_UNMASK, 0, 0));
    putc('\n');

    arm_timer(TIMER_PHYS_INTID, PERIOD);
    arm_timer(TIMER_VIRT_INTID, 2 * PERIOD);
    wait_change(&nmis, 0);
    wait_change(&irqs[TIMER_VIRT_INTID], 0);
    report("bound");

    puts("EVENT_UNREGISTER = ");
    put_dec(sdei(SDEI_EVENT_UNREGISTER, (uint64_t)event, 0));
    puts(", INTERRUPT_RELEASE = ");
    put_dec(sdei(SDEI_INTERRUPT_RELEASE, (uint64_t)event, 0));
    putc('\n');
    gic_enable_ppi(TIMER_PHYS_INTID, 0x80);
    arm_timer(TIMER_PHYS_INTID, PERIOD);
    wait_change(&irqs[TIMER_PHYS_INTID], irqs[TIMER_PHYS_INTID]);
    report("released");
    psci_system_off();
}
"""

owner_elf = build_source_text(OWNER, "c", Path(tempfile.mkdtemp(prefix="owner-")) / "owner.elf")
owner = run_on(owner_elf, "virt", cpus=1)
owner_vmm = run_on(owner_elf, "kvm-vmm-psci-sdei", cpus=1)
for run in (owner, owner_vmm):
    print(f"--- {run.profile.name}\n{run.output}")

# %% [markdown]
# On `virt` the kernel's SDEI refuses 27 and binds 30. On `kvm-vmm-psci-sdei` the VMM's SDEI
# refuses both: every PPI is KVM's there, so a VMM-side watchdog must use a device the VMM
# emulates (`guests/sdei/vmm_watchdog.c` binds the SP804's SPI 42; notebook 11), or raise a
# hypervisor event from the host, James Morse's "emulate the source" (reference 7.1). The trace
# has the refusals as call results, and no `SdeiBinding` fact for them:

# %%
for run in (owner, owner_vmm):
    binds = [(c.args[0], c.results[0], c.layer) for c in firmware_calls(run.trace) if c.label == "SDEI_INTERRUPT_BIND"]
    bound = [(b.intid, b.event, b.bound) for b in run.trace.of_kind(SdeiBinding)]
    print(f"{run.profile.name:<18} INTERRUPT_BIND (intid, result, layer): {binds}; SdeiBinding (intid, event, bound): "
          f"{bound}")

# %% [markdown]
# ## 6. After UNREGISTER and RELEASE, the interrupt is the guest's again
#
# On `virt`, PPI 30 changes hands at `EVENT_REGISTER` and back at `EVENT_UNREGISTER` (BIND and
# RELEASE only reserve and free the slot; reference 2.9: "the takeover happens at REGISTER").
# Before and after, each firing of the timer is an IRQ exception at `vectors+0x280` with an
# acknowledge in Group 1 (the guest's `ICC_IAR1_EL1`); in between, it is a Group 0 acknowledge
# by the dispatcher and an SDEI dispatch. PPI 27 stays an IRQ throughout. The timeline marks
# each exception and dispatch (the bars themselves are tens of nanoseconds in a 70 µs run), and
# the sequence diagram draws event 1000's life.

# %%
ot = owner.trace
oimage = owner.platform.machine.image
took = {t.action: t.vtime for t in ot.of_kind(SdeiTransition)
        if t.result == 0 and t.action in ("register", "unregister")}
owned = (took["register"], took["unregister"])
owner_binding = next(iter(ot.of_kind(SdeiBinding)))
timeline_rows = []
for fact in ot.of_kind(ExceptionTaken, SdeiDispatch, IrqAcknowledged):
    if isinstance(fact, IrqAcknowledged):
        whose = "the firmware's (SDEI)" if fact.group == 0 else "the guest's"
        timeline_rows.append((fact.vtime, f"INTID {fact.intid} acknowledged, group {fact.group}: {whose}"))
    elif isinstance(fact, ExceptionTaken):
        timeline_rows.append((fact.vtime, f"{fact.kind} exception at <{oimage.symbolize(fact.vector)}>, "
                                          f"ELR <{oimage.symbolize(fact.elr)}>"))
    else:
        timeline_rows.append((fact.vtime, f"SDEI dispatch of {fact.event} ({fact.source}), interrupted "
                                          f"<{oimage.symbolize(fact.interrupted_pc)}>"))
print(f"PPI {owner_binding.intid} is the firmware's from REGISTER at {owned[0]} ns to UNREGISTER at {owned[1]} ns")
for vtime, text in sorted(timeline_rows):
    inside = owned[0] <= vtime < owned[1]
    print(f"{vtime:>7} ns {'[bound]' if inside else '       '} {text}")

fig, (ax_t, ax_s) = plt.subplots(2, 1, figsize=(style.NOTEBOOK_WIDTH, 12), height_ratios=(1, 3), layout="constrained")
timeline(ax_t, ot, cpus=[0])
ax_t.axvspan(*owned, color=style.SKY_BLUE, alpha=0.2, zorder=0)
ax_t.annotate(f"PPI {owner_binding.intid} bound: the firmware's", (owned[0], -0.5), xytext=(4, -4),
              textcoords="offset points", va="top", fontsize=style.SMALL, zorder=9,
              bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.9})
for fact in ot.of_kind(IrqAcknowledged, SdeiDispatch):
    if isinstance(fact, IrqAcknowledged) and fact.group == 0:
        continue  # the dispatcher's acknowledge: the dispatch is labelled instead
    label = f"SDEI {fact.event}" if isinstance(fact, SdeiDispatch) else f"IRQ {fact.intid}"
    ax_t.annotate(label, (fact.vtime, -0.1), xytext=(0, 14), textcoords="offset points", ha="center",
                  fontsize=style.SMALL, arrowprops={"arrowstyle": "->"})
ax_t.set_title("the one-CPU guest on virt", fontsize=style.TITLE)
figure_legend(fig)  # below the figure: beside the timeline it took half the width
sequence(ax_s, ot, owner_binding.event, symbolize=oimage.symbolize)
plt.show()

# %% [markdown]
# ## Check yourself
#
# In `linux_client`, every dispatch on CPU 2 interrupted `stuck_loop` (the symbol, from the ELF)
# with `PSTATE.I` set, inside the interval that began at the breakpoint, where the CPU's own
# PSTATE had I set too; each completed back to where it interrupted, and the guest reported the
# lockup. CPUs 1 and 3 took the same event with `PSTATE.I` clear. INTID 30 was acknowledged only
# by the firmware, once per dispatch, and no IRQ exception was taken. In the one-CPU guest, the
# bind of 27 was refused with no binding made, on both profiles; on `virt` every Group 1
# acknowledge of INTID 30 (the guest's IRQ) lies outside the REGISTER-UNREGISTER interval and
# every Group 0 one (the firmware's) inside it, with IRQs of 30 on both sides, while 27 stayed an
# IRQ inside it.

# %%
from sdeilab.widgets.exercise import Checks, Exercise

with Checks() as check:
    check("linux_client ran to SYSTEM_OFF and reports PASS",
          finished.reason == StopReason.SYSTEM_OFF.value and output.splitlines()[-1] == "linux_client: PASS")
    check("at the breakpoint CPU 2 was at <stuck_loop> with PSTATE.I set",
          stuck_view.pc == symbols["stuck_loop"] and stuck_view.registers["PSTATE"] & PSTATE_I)
    stuck = [d for d in dispatches if d.cpu == STUCK_CPU]
    check("CPU 2 took two dispatches", len(stuck) == 2, stuck)
    check("each interrupted <stuck_loop> with PSTATE.I set, inside the masked interval, from INTID 30",
          all(image.symbolize(d.interrupted_pc) == "stuck_loop" and d.interrupted_pstate & PSTATE_I
              and i_masked_from <= d.vtime < end and d.source == f"interrupt {binding.intid}" for d in stuck))
    stuck_handlers = [h for h in handlers if h.cpu == STUCK_CPU]
    check("each of CPU 2's handlers ran inside that interval and ended with COMPLETE",
          all(i_masked_from <= h.start < h.end <= end and h.how == "complete" for h in stuck_handlers))
    check("each COMPLETE resumed CPU 2 at <stuck_loop>",
          all([c.resume_pc for c in trace.of_kind(SdeiComplete, cpu=STUCK_CPU) if c.vtime == h.end]
              == [symbols["stuck_loop"]] for h in stuck_handlers))
    check("the guest reported CPU 2's hard lockup", "CPU 2: watchdog: IRQs taken 0 -> 0: hard LOCKUP" in output)
    idle = [d for d in dispatches if d.cpu in (1, 3)]
    check("CPUs 1 and 3 took the event in <cpu_idle_woken> with PSTATE.I clear",
          idle and all(not d.interrupted_pstate & PSTATE_I and image.symbolize(d.interrupted_pc) == "cpu_idle_woken"
                       for d in idle))
    check("INTID 30 was bound and only ever acknowledged in Group 0 (by the firmware)",
          binding.intid == 30 and acks and all(a.group == 0 for a in acks))
    check("INTID 30's acknowledges are exactly its dispatches (CPU and vtime)",
          sorted((a.cpu, a.vtime) for a in acks) == sorted((d.cpu, d.vtime) for d in dispatches
                                                           if d.source == f"interrupt {binding.intid}"))
    check("no IRQ exception was taken in the whole run", trace.count(ExceptionTaken) == 0)
    on_times = [p.vtime for p in trace.of_kind(PowerTransition, cpu=STUCK_CPU) if p.new == "on"]
    check("CPU 2 was on before it masked IRQs", on_times and on_times[-1] < i_masked_from)

    bind_results = {run.profile.name: {c.args[0]: c.results[0] for c in firmware_calls(run.trace)
                                       if c.label == "SDEI_INTERRUPT_BIND"} for run in (owner, owner_vmm)}
    for run in (owner, owner_vmm):
        name = run.profile.name
        check(f"{name}: INTERRUPT_BIND(27) was DENIED, with no binding made, as 27 is reserved",
              bind_results[name][27] == SdeiResult.DENIED
              and 27 not in {b.intid for b in run.trace.of_kind(SdeiBinding)}
              and 27 in run.profile.sdei.reserved_intids, bind_results[name])
    check("virt: INTERRUPT_BIND(30) gave the bound event", bind_results["virt"][30] == owner_binding.event >= 0)
    check("kvm-vmm-psci-sdei: INTERRUPT_BIND(30) was DENIED and nothing was bound (no PPI is the VMM's)",
          bind_results["kvm-vmm-psci-sdei"][30] == SdeiResult.DENIED and owner_vmm.trace.count(SdeiBinding) == 0)

    check("virt: the binding is of INTID 30", owner_binding.intid == 30 and owner_binding.bound)
    o_acks = [a for a in ot.of_kind(IrqAcknowledged) if a.intid == 30]
    guest_acks = [a.vtime for a in o_acks if a.group == 1]
    firmware_acks = [a.vtime for a in o_acks if a.group == 0]
    check("every Group 0 acknowledge of 30 (the firmware's) lies inside REGISTER-UNREGISTER",
          firmware_acks and all(owned[0] <= t < owned[1] for t in firmware_acks), (firmware_acks, owned))
    check("Group 1 acknowledges of 30 (the guest's IRQs) come before and after it, none inside",
          any(t < owned[0] for t in guest_acks) and any(t >= owned[1] for t in guest_acks)
          and not [t for t in guest_acks if owned[0] <= t < owned[1]], (guest_acks, owned))
    check("each firmware acknowledge is a dispatch", [d.vtime for d in ot.of_kind(SdeiDispatch)] == firmware_acks)
    check("RELEASE came after UNREGISTER", next(b.vtime for b in ot.of_kind(SdeiBinding) if not b.bound) >= owned[1])
    vtimer_irqs = [a.vtime for a in ot.of_kind(IrqAcknowledged) if a.intid == 27]
    check("INTID 27 stayed the guest's (Group 1), an IRQ inside the interval too",
          vtimer_irqs and all(a.group == 1 for a in ot.of_kind(IrqAcknowledged) if a.intid == 27)
          and any(owned[0] <= t < owned[1] for t in vtimer_irqs), vtimer_irqs)
    check("every guest acknowledge of 27 or 30 is an IRQ exception",
          len(guest_acks) + len(vtimer_irqs) == sum(e.kind == "irq" for e in ot.of_kind(ExceptionTaken)))

# %% [markdown]
# ## Exercise: both timers fire while IRQs are masked
#
# Change the one-CPU guest: once PPI 30 is bound, registered and enabled and the PE unmasked, it
# arms both timers (30 after 16 µs, 27 after 32 µs) as before, but instead of waiting with IRQs
# unmasked it spins for about 100 µs with `PSTATE.I` set, prints its counters, and only then
# waits for 27 with IRQs unmasked. What has it counted by the end of the spin? Choose one of:
#
# * `"nothing: both wait until PSTATE.I is clear"`
# * `"one SDEI handler run, no IRQ of 27"`
# * `"one IRQ of 27, no SDEI handler run"`
# * `"one of each"`

# %%
prediction = None  # e.g. "nothing: both wait until PSTATE.I is clear"
exercise = Exercise("Both timers fire during a spin with PSTATE.I set: what has the guest counted by its end?",
                    ["nothing: both wait until PSTATE.I is clear", "one SDEI handler run, no IRQ of 27",
                     "one IRQ of 27, no SDEI handler run", "one of each"]).predict(prediction)

# %%
import re

WAIT_UNMASKED = """    wait_change(&nmis, 0);
    wait_change(&irqs[TIMER_VIRT_INTID], 0);
    report("bound");"""
SPIN_MASKED = """    for (volatile int i = 0; i < 20000; i++)    /* about 100 us, PSTATE.I set all along */
        ;
    report("after the spin");
    wait_change(&irqs[TIMER_VIRT_INTID], 0);    /* IRQs unmasked: 27 gets in */
    report("bound");"""
assert WAIT_UNMASKED in OWNER, "the guest's lines to change are not there"
spinner_elf = build_source_text(OWNER.replace(WAIT_UNMASKED, SPIN_MASKED), "c",
                                Path(tempfile.mkdtemp(prefix="spin-")) / "spin.elf")
spin = run_on(spinner_elf, "virt", cpus=1)
print(spin.output)
counted = re.search(r"after the spin: IRQs of INTID 27 = (\d+), IRQs of INTID 30 = \d+, SDEI handler runs = (\d+)",
                    spin.output)
irqs_27, nmi_runs = (int(counted[1]), int(counted[2])) if counted else (-1, -1)
shown = {(0, 0): "nothing: both wait until PSTATE.I is clear", (0, 1): "one SDEI handler run, no IRQ of 27",
         (1, 0): "one IRQ of 27, no SDEI handler run", (1, 1): "one of each"}.get(
    (irqs_27, nmi_runs), f"{irqs_27} IRQs of 27, {nmi_runs} handler runs")
exercise.reveal(shown, "PSTATE.I holds IRQs back, and 27 is an IRQ; no dispatch condition reads PSTATE.I, "
                "so bound 30 gets in (reference 2.4 and 2.9)")
spin_dispatches = spin.trace.of_kind(SdeiDispatch)
spin_irq27 = [a for a in spin.trace.of_kind(IrqAcknowledged) if a.intid == 27]
with Checks() as check:
    check("the changed guest ran to SYSTEM_OFF", spin.outcome.reason is StopReason.SYSTEM_OFF, spin.outcome)
    check("one dispatch, and it interrupted a context with PSTATE.I set",
          len(spin_dispatches) == 1 and spin_dispatches[0].interrupted_pstate & PSTATE_I, spin_dispatches)
    check("one IRQ of 27, acknowledged by the guest (Group 1) after the dispatch",
          len(spin_irq27) == 1 and spin_irq27[0].group == 1 and spin_dispatches
          and spin_irq27[0].vtime > spin_dispatches[0].vtime, spin_irq27)
