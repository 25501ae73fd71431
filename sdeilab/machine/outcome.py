"""How a run ends: stop reasons, their exit statuses (DESIGN.md section 3), and fault reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class StopReason(Enum):
    SYSTEM_OFF = "system-off"  # PSCI SYSTEM_OFF
    FAULT = "fault"  # the guest faulted with no handler
    BUDGET = "budget"  # the instruction budget ran out
    DEADLOCK = "deadlock"  # every CPU waits with nothing left that could wake it
    SYSTEM_RESET = "system-reset"  # PSCI SYSTEM_RESET or SYSTEM_RESET2
    BREAK = "break"  # a breakpoint or a caller's condition (the lab's debugger)
    # Debugger stops (sdeilab.lab.session); the command line never produces them, so its
    # exit statuses are unchanged. A run stopped for one of them resumes as if never stopped.
    BREAKPOINT = "breakpoint"  # PC reached an address breakpoint; that instruction has not executed
    PAUSED = "paused"  # someone asked (``Machine.request_pause``, possibly from another thread)
    # A debugger watchpoint (``Machine.set_watchpoints``): the access has not happened and PC is
    # at its instruction, which executes when the run resumes (``Machine.watch_stop`` says where).
    WATCHPOINT = "watchpoint"

    @property
    def exit_status(self) -> int:
        return _EXIT_STATUS[self]


_EXIT_STATUS = {
    StopReason.SYSTEM_OFF: 0,
    StopReason.FAULT: 3,
    StopReason.BUDGET: 4,
    StopReason.DEADLOCK: 4,
    StopReason.SYSTEM_RESET: 5,
    StopReason.BREAK: 0,
    StopReason.BREAKPOINT: 0,
    StopReason.PAUSED: 0,
    StopReason.WATCHPOINT: 0,
}


@dataclass(frozen=True)
class FaultReport:
    """Everything an engineer wants first when a guest dies: where, what, and the registers."""

    cpu: int
    pc: int
    instruction: str
    symbol: str
    reason: str
    registers: dict[str, int] = field(default_factory=dict)

    def format(self) -> str:
        where = f" <{self.symbol}>" if self.symbol else ""
        lines = [f"guest fault on CPU {self.cpu}: {self.reason}",
                 f"  pc  0x{self.pc:016x}{where}: {self.instruction}"]
        names = [f"x{n}" for n in range(31)]
        for row in range(0, 31, 4):
            lines.append("  " + "  ".join(f"{n:>3} 0x{self.registers.get(n, 0):016x}" for n in names[row:row + 4]))
        extra = [n for n in self.registers if not n.startswith("x") or not n[1:].isdigit()]
        for row in range(0, len(extra), 3):
            lines.append("  " + "  ".join(f"{n} 0x{self.registers[n]:016x}" for n in extra[row:row + 3]))
        return "\n".join(lines)


@dataclass(frozen=True)
class RunOutcome:
    reason: StopReason
    detail: str
    instructions: int
    fault: FaultReport | None = None

    @property
    def exit_status(self) -> int:
        return self.reason.exit_status
