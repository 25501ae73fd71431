"""Disassembly for fault reports and debugger views (capstone; no engine state)."""

from __future__ import annotations

from functools import cache

import capstone


@cache
def _engine() -> capstone.Cs:
    return capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)


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


def disassemble_one(word: bytes, address: int) -> str:
    return disassemble(word, address)[0][1] if len(word) == 4 else "(not readable)"
