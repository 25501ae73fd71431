"""CPU backends: the protocol the machine drives, and the Unicorn adapter behind it."""

from sdeilab.cpu.backend import CpuBackend, SliceResult, Stop, SysregKey, Trap, VcpuHost
from sdeilab.cpu.unicorn_backend import UnicornVcpu

__all__ = ["CpuBackend", "SliceResult", "Stop", "SysregKey", "Trap", "UnicornVcpu", "VcpuHost"]
