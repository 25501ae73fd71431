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
# # Your own guest: trying a firmware call from a notebook cell
#
# **Question:** how do I try my own firmware call? For instance: what do `SDEI_VERSION` and
# `PSCI_VERSION` answer on the lab's `virt` platform, what does a function ID that nobody
# implements answer, and who answered each one?
#
# A firmware call is a few instructions (reference section 0, "SMCCC register use"): the
# function ID in `x0`, arguments in `x1`..`x17`, then the conduit, `HVC #0` on `virt` (a KVM
# guest); the result comes back in `x0`. So a guest that tries a call is a few lines of assembly,
# and a notebook cell can hold it. The cell magic `%%guest_asm NAME` builds the cell with the
# lab's guest toolchain (LLVM from the `ziglang` wheel), links it with the guest library that the
# shipped guests use (`guests/lib`), and binds `NAME` to a guest that runs on the lab;
# `%%guest_c NAME` does the same for C. The first cell loads the magics.

# %%
# %load_ext sdeilab.widgets.guest_cell

from sdeilab.trace import SmcccCall, SmcccReturn
from sdeilab.widgets import GuestBuildError, make_guest

# %% [markdown]
# What the library gives a cell (`guests/lib/guest.h`, which is included for you):
#
# * `_start` sets up CPU 0's stack and exception vectors, then calls `main`; when `main`
#   returns, it powers the machine off with PSCI `SYSTEM_OFF`.
# * `print "text"` writes a string to the UART, `bl put_hex` and `bl put_dec` print `x0`. They
#   clobber `x0`..`x18` and `x30`, so `main` saves its return address first.
# * `smccc FID` is `ldr x0, =FID` followed by the conduit. Every function of the reference tables
#   has its name (`SDEI_VERSION`, `PSCI_VERSION`, `SMCCC_VERSION`, ...).
#
# `--run` runs the guest at once and prints its UART output and how the run ended.

# %%
# %%guest_asm versions --cpus 1 --run
    .globl main
main:
    stp x29, x30, [sp, #-16]!       // keep the return address: print and bl clobber x30
    print "SDEI_VERSION = "
    smccc SDEI_VERSION
    bl put_hex
    print "\nPSCI_VERSION = "
    smccc PSCI_VERSION
    bl put_hex
    print "\nSiP call 0xC2000001 = "
    smccc 0xC2000001                 // a SiP service call: nobody here implements it
    bl put_dec
    print "\n"
    ldp x29, x30, [sp], #16
    ret                              // back to _start, which calls SYSTEM_OFF

# %% [markdown]
# Reading the answers:
#
# * `SDEI_VERSION` packs major, minor and vendor into bits [62:48], [47:32] and [31:0]
#   (reference 1.1): `0x1000000000000` is 1.0.0. That is what TF-A reports even though it
#   implements the 1.1 calls, and what the lab reports by default so that the TF-A test
#   scenarios run unmodified (the quirk `version_1_1` makes it 1.1).
# * `PSCI_VERSION` is major in [31:16], minor in [15:0] (reference 1.3): `0x10001` is PSCI 1.1.
# * The SiP call gets `-1`, NOT_SUPPORTED (reference 1.5, "SMCCC generic return codes"): an
#   unknown function ID is refused, never ignored, so a guest can probe for a call by trying it.
#
# ## The trace
#
# `versions` is now a Python object: `versions.run()` loads the guest in a fresh debugger session
# and runs it to its end (`versions.session()` stops before the first instruction,
# `versions.lab()` opens the dashboard on it). Every call is a pair of trace facts: `SmcccCall`
# (function ID, conduit) and `SmcccReturn` (results, and the layer that answered: on `virt`,
# `kvm`, the host kernel). `SYSTEM_OFF` never returns.

# %%
run = versions.run()
print(run.last_stop.reason, "after", run.last_stop.retired, "instructions")
for fact in run.trace.of_kind(SmcccCall, SmcccReturn):
    if isinstance(fact, SmcccCall):
        print(f"{fact.vtime:>5} ns  CPU {fact.cpu}  {fact.conduit} {fact.name}")
    else:
        x0 = fact.results[0]  # signed: SMCCC error codes are negative (reference section 0)
        print(f"{fact.vtime:>5} ns  CPU {fact.cpu}    -> {x0:#x}  (answered by {fact.layer})" if x0 >= 0
              else f"{fact.vtime:>5} ns  CPU {fact.cpu}    -> {x0}  (answered by {fact.layer})")

# %% [markdown]
# ## The same cell on EL3 firmware
#
# Each cell is built twice, like the shipped SDEI guests: `versions.elf` with `HVC #0` and
# `versions-smc.elf` with `-DCONDUIT_SMC`, where `smccc` issues `SMC #0`. On the `firmware`
# profile (TF-A-like: no hypervisor, EL3 answers SMCs and HVC is UNDEFINED) the session loads the
# SMC build, so the same cell runs there and prints the same answers; only the conduit and the
# answering layer change.

# %%
on_firmware = versions.run(profile="firmware")
print(on_firmware.uart_text(), end="")
print("conduits:", {c.conduit for c in on_firmware.trace.of_kind(SmcccCall)},
      "answered by:", {r.layer for r in on_firmware.trace.of_kind(SmcccReturn)})

# %% [markdown]
# ## The same in C
#
# In C the library's `smccc_call(fid, a1, a2, a3)` makes the call. `SDEI_FEATURES(0)` (an SDEI 1.1
# call, reference 1.1) reports the dynamic bind slots: private ones in bits [15:0], shared ones in
# [31:16]; DESIGN.md section 4 promises at least 4 of each on `virt`.

# %%
# %%guest_c features --run
int main(void)
{
    int64_t slots = smccc_call(SDEI_FEATURES, 0, 0, 0);
    puts("SDEI_FEATURES(BIND_SLOTS) = ");
    put_hex((uint64_t)slots);
    puts(": private ");
    put_dec(slots & 0xffff);
    puts(", shared ");
    put_dec((slots >> 16) & 0xffff);
    puts("\n");
    return 0;
}

# %% [markdown]
# ## When the assembler says no
#
# A cell that does not assemble shows the assembler's own message with the line number *of the
# cell*, the offending line and a caret under the column, and no Python traceback. Here someone
# builds the upper half of `0xC4000000` by hand and writes `lsl #8` where `lsl #16` was meant:
# `MOVZ` shifts its 16-bit immediate by 0, 16, 32 or 48 only. Under a `%%guest_asm typo` cell the message below appears as
# the cell's error and stops "Run All" there; so that this notebook runs to its end, the demonstration
# builds the same text with `make_guest`, the function behind the magic, and catches the error.

# %%
TYPO = """\
    .globl main
main:
    stp x29, x30, [sp, #-16]!
    smccc PSCI_VERSION
    bl put_hex
    movz x0, #0xC400, lsl #8
    ldp x29, x30, [sp], #16
    ret
"""
typo_error = None
try:
    make_guest(TYPO, "asm", "typo")
except GuestBuildError as error:
    typo_error = error
    print(error)

# %% [markdown]
# ## Check yourself
#
# The guest called `SDEI_VERSION`, `PSCI_VERSION` and the SiP function over HVC, in that order,
# then `SYSTEM_OFF`; the host kernel answered 1.0.0, 1.1 and NOT_SUPPORTED; on `firmware` the same
# calls went over SMC to EL3 with the same answers; `virt` has at least 4 bind slots of each kind;
# and the typo was reported at line 6 of its cell, by the assembler.

# %%
calls = run.trace.of_kind(SmcccCall)
answers = {r.fid: (r.results[0], r.layer) for r in run.trace.of_kind(SmcccReturn)}
assert [(c.fid, c.conduit) for c in calls] == [(0xC400_0020, "hvc"), (0x8400_0000, "hvc"), (0xC200_0001, "hvc"),
                                              (0x8400_0008, "hvc")]  # SDEI_VERSION, PSCI_VERSION, SiP, SYSTEM_OFF
assert [c.name for c in calls] == ["SDEI_VERSION", "PSCI_VERSION", "0xc2000001", "SYSTEM_OFF"]  # unknown: its FID
assert answers[0xC400_0020] == (1 << 48, "kvm")  # SDEI 1.0.0
assert answers[0x8400_0000] == (0x1_0001, "kvm")  # PSCI 1.1
assert answers[0xC200_0001] == (-1, "kvm")  # NOT_SUPPORTED
assert run.last_stop.reason == "system-off"
assert run.uart_text() == "SDEI_VERSION = 0x1000000000000\nPSCI_VERSION = 0x10001\nSiP call 0xC2000001 = -1\n"

assert on_firmware.uart_text() == run.uart_text()
assert {(c.conduit, r.layer) for c, r in zip(on_firmware.trace.of_kind(SmcccCall),
                                             on_firmware.trace.of_kind(SmcccReturn), strict=False)} == {("smc", "el3")}

slots = features.run().trace.of_kind(SmcccReturn)[0].results[0]
assert slots & 0xFFFF >= 4 and (slots >> 16) & 0xFFFF >= 4

assert typo_error is not None and typo_error.cell_lines == [6]
assert "typo.S:6:" in str(typo_error) and "expected 'lsl'" in str(typo_error)
print("all checks passed")
