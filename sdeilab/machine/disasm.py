"""Disassembly for fault reports and debugger views (capstone; no engine state): the machine layer's, so
the debugger and the scenario drivers above name no CPU-layer module."""

from __future__ import annotations

from functools import cache

import capstone

_MODES = {"a64": (capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM), "a32": (capstone.CS_ARCH_ARM, capstone.CS_MODE_ARM),
          "t32": (capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB)}


@cache
def _engine(state: str = "a64") -> capstone.Cs:
    """A disassembler for an instruction set: "a64", or "a32"/"t32" for code at AArch32 EL0."""
    return capstone.Cs(*_MODES[state])


def disassemble(code: bytes, address: int) -> list[tuple[int, str]]:
    """(address, "mnemonic operands") for each instruction in ``code``; undecodable words as ``.inst``."""
    lines: list[tuple[int, str]] = []
    for offset in range(0, len(code) - len(code) % 4, 4):
        word = code[offset : offset + 4]
        insn = next(_engine().disasm(word, address + offset), None)
        if insn is None:
            lines.append((address + offset, f".inst 0x{int.from_bytes(word, 'little'):08x}"))
        else:
            lines.append((address + offset, f"{insn.mnemonic} {insn.op_str}".strip()))
    return lines


def disassemble_one(word: bytes, address: int, state: str = "a64") -> str:
    """The instruction ``word`` holds at ``address`` in instruction set ``state`` (see ``_engine``)."""
    if len(word) != 4:
        return "(not readable)"
    if state == "a64":
        return disassemble(word, address)[0][1]
    insn = next(_engine(state).disasm(word, address), None)
    if insn is None:
        return f".inst 0x{int.from_bytes(word, 'little'):08x}"
    return f"{insn.mnemonic} {insn.op_str}".strip()
