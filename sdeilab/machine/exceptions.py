"""Exception entry into the guest's EL1 vectors, done by the lab because Unicorn does not.

With an interrupt hook installed Unicorn takes no architectural exception, so the machine
performs TakeException (ARM ARM D1.10.2, pseudocode AArch64.TakeException) itself for every
synchronous exception, IRQ and FIQ the guest should see.

An exception from AArch32 EL0 (a guest that ERET to SPSR.M = 0x10) goes to the "Lower EL using
AArch32" vectors, VBAR_EL1 + 0x600 (ARM ARM D1.10.2, table D1-7); the CPU backend's PSTATE is then
the AArch32 CPSR with M[4] = 1, which SPSR_EL1 takes as it is, its PC is R15 (the preferred return
address for ELR_EL1, ARM ARM D1.10.2 "Preferred exception return address") and the PSTATE write
below maps R0-R14 into X0-X14 (ARM ARM D1.20, "Mapping of AArch32 registers to AArch64").
"""

from __future__ import annotations

from dataclasses import dataclass

from sdeilab.cpu.backend import CpuBackend

# ESR_ELx.EC values (ARM ARM D17.2.37) and the IL bit (32-bit instruction).
EC_UNKNOWN = 0x00
EC_ILLEGAL_STATE = 0x0E
EC_SVC32 = 0x11
EC_SVC64 = 0x15
EC_HVC64 = 0x16
EC_IABORT_LOWER = 0x20
EC_IABORT_SAME = 0x21
EC_DABORT_LOWER = 0x24
EC_DABORT_SAME = 0x25
EC_PC_ALIGNMENT = 0x22
EC_BRK64 = 0x3C
ESR_IL = 1 << 25
FSC_SYNC_EXTERNAL_ABORT = 0x10
ISS_WNR = 1 << 6

# Vector table offsets from VBAR_EL1 (ARM ARM D1.10.2, table D1-7).
VECTOR_KIND_OFFSET = {"sync": 0x000, "irq": 0x080, "fiq": 0x100, "serror": 0x180}
_FROM_CURRENT_SP0 = 0x000
_FROM_CURRENT_SPX = 0x200
_FROM_LOWER_A64 = 0x400
_FROM_LOWER_A32 = 0x600

PSTATE_NRW = 0x10  # SPSR.M[4]: taken from AArch32 state

PSTATE_DAIF = 0x3C0
PSTATE_EL1H = 0x5
PSTATE_NZCV = 0xF000_0000


def esr(ec: int, iss: int = 0) -> int:
    return (ec << 26) | ESR_IL | iss


def esr_undefined() -> int:
    return esr(EC_UNKNOWN)


def current_el(pstate: int) -> int:
    """PSTATE.EL; for AArch32 state (M[4] = 1) the lab runs User mode only, M = 0x10: EL0."""
    return (pstate >> 2) & 3


def is_aarch32(pstate: int) -> bool:
    return bool(pstate & PSTATE_NRW)


def esr_abort(fetch: bool, write: bool, from_lower: bool) -> int:
    """A synchronous external abort, what QEMU virt reports for an access nothing decodes."""
    if fetch:
        return esr(EC_IABORT_LOWER if from_lower else EC_IABORT_SAME, FSC_SYNC_EXTERNAL_ABORT)
    iss = FSC_SYNC_EXTERNAL_ABORT | (ISS_WNR if write else 0)
    return esr(EC_DABORT_LOWER if from_lower else EC_DABORT_SAME, iss)


@dataclass(frozen=True, slots=True)
class Entry:
    """Where an exception entry went (for the trace)."""

    vector: int
    from_pstate: int


def vector_for(pstate: int, kind: str, vbar: int) -> int:
    el = current_el(pstate)
    if el == 0:
        base = _FROM_LOWER_A32 if pstate & PSTATE_NRW else _FROM_LOWER_A64
    else:
        base = _FROM_CURRENT_SPX if pstate & 1 else _FROM_CURRENT_SP0
    return vbar + base + VECTOR_KIND_OFFSET[kind]


def take_exception(cpu: CpuBackend, kind: str, *, elr: int, esr_value: int | None = None,
                   far: int | None = None, pstate: int | None = None) -> Entry:
    """Enter EL1h at the vector for ``kind``: SPSR_EL1 = PSTATE, ELR_EL1 = ``elr``, DAIF all masked.

    NZCV is kept; everything else in PSTATE takes its exception-entry value (EL1h, D A I F set,
    SS and IL clear). ESR_EL1 and FAR_EL1 are written only for synchronous exceptions and aborts.
    The PSTATE write is a mode change (``CpuBackend.write``): from EL0 or EL1t the stack pointer
    becomes SP_EL1 and SP_EL0 keeps the interrupted one, and the CPU model runs the handler with
    EL1's privileges (ARM ARM D1.10.2; ERET undoes both). From AArch32 EL0 it is also the change
    of execution state: R0-R14 become X0-X14 (module docstring).

    ``pstate``: PSTATE as the caller just read it, if it did (each read costs).
    """
    if pstate is None:
        pstate = cpu.read("PSTATE")
    vector = vector_for(pstate, kind, cpu.read("VBAR_EL1"))
    cpu.write("SPSR_EL1", pstate)
    cpu.write("ELR_EL1", elr)
    if esr_value is not None:
        cpu.write("ESR_EL1", esr_value)
    if far is not None:
        cpu.write("FAR_EL1", far)
    cpu.write_context((), vector, (pstate & PSTATE_NZCV) | PSTATE_DAIF | PSTATE_EL1H, pstate)
    return Entry(vector, pstate)
