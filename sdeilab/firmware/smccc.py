"""SMCCC: function IDs, and the dispatcher that routes a call to the service owning its range.

Arm DEN0028 (SMCCC) section 2.5: bit 31 = fast call, bit 30 = SMC64 calling convention,
bits [29:24] = owning entity, bits [15:0] = function number. The function ID is in W0, the
arguments in x1..x17, results in x0..x3. Section 2.9: only an immediate of 0 makes HVC or SMC
an SMCCC call. Every call and its return become trace facts, with the layer that answered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

from sdeilab.trace import SmcccCall, SmcccReturn

if TYPE_CHECKING:
    from sdeilab.machine.machine import Machine
    from sdeilab.machine.vcpu import Vcpu

MASK64 = 0xFFFF_FFFF_FFFF_FFFF
FAST_CALL = 1 << 31
SMC64 = 1 << 30

# Generic return codes (DEN0028 section 5.2; PSCI and SDEI use the same -1 for NOT_SUPPORTED).
SUCCESS = 0
NOT_SUPPORTED = -1
NOT_REQUIRED = -2
INVALID_PARAMETER = -3


class Owner(IntEnum):
    """Owning entity numbers (DEN0028 table 6-2)."""

    ARCH = 0
    CPU = 1
    SIP = 2
    OEM = 3
    STANDARD = 4
    STANDARD_HYP = 5
    VENDOR_HYP = 6


def owner_of(fid: int) -> int:
    return (fid >> 24) & 0x3F


def is_smc64(fid: int) -> bool:
    return bool(fid & SMC64)


class NoReturn:
    """A handler result for calls that do not return to the caller (CPU_OFF, SYSTEM_OFF, ...)."""


NO_RETURN = NoReturn()
Result = int | tuple[int, ...] | NoReturn
Handler = Callable[..., Result]


@dataclass(frozen=True, slots=True)
class Function:
    """One function ID a service answers: ``handler(vcpu, *x1..x<nargs>)``."""

    fid: int
    name: str
    handler: Handler
    nargs: int = 0


class Service:
    """A firmware service: a name (the key profiles use to place it in a layer) and its functions."""

    name = "service"

    def functions(self) -> Iterable[Function]:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Route:
    function: Function | None
    name: str
    layer: str


class SmcccDispatcher:
    """The machine's firmware: decodes a conduit call, routes it by function ID, records it.

    ``conduits`` are the instructions that are firmware calls on this platform; the other one
    is UNDEFINED (the machine delivers the exception). ``ranges`` give, for IDs no service
    implements, the layer that answers NOT_SUPPORTED; ``default_layer`` answers the rest.
    """

    def __init__(self, conduits: Iterable[str], default_layer: str) -> None:
        self.conduits = frozenset(conduits)
        self.default_layer = default_layer
        self._routes: dict[int, Route] = {}
        self._ranges: list[tuple[int, int, str]] = []
        self._immediates: dict[int, int] = {}  # PC after the call -> its HVC/SMC immediate
        # Run once a call has written its results (or not returned): like TF-A taking a pending
        # EL3 interrupt on the way out of an SMC, the SDEI dispatcher enters a handler here.
        self.after_call: list[Callable[[Vcpu, int], None]] = []
        self._code_generation = -1

    def register(self, service: Service, layer: str) -> None:
        for function in service.functions():
            if function.fid in self._routes:
                raise ValueError(f"function ID 0x{function.fid:08x} ({function.name}) is registered twice")
            self._routes[function.fid] = Route(function, function.name, layer)

    def register_range(self, first: int, count: int, layer: str) -> None:
        """Unimplemented IDs in [first, first + count) are answered (NOT_SUPPORTED) by ``layer``."""
        self._ranges.append((first, first + count, layer))

    def implemented(self, fid: int) -> bool:
        return fid in self._routes

    def route(self, fid: int) -> Route:
        route = self._routes.get(fid)
        if route is not None:
            return route
        for first, end, layer in self._ranges:
            if first <= fid < end:
                return Route(None, f"0x{fid:08x}", layer)
        return Route(None, f"0x{fid:08x}", self.default_layer)

    def hypercall(self, machine: Machine, vcpu: Vcpu, conduit: str) -> bool:
        if conduit not in self.conduits:
            return False
        cpu = vcpu.backend
        pc = cpu.pc
        if self._code_generation != machine.code_generation:
            self._immediates.clear()
            self._code_generation = machine.code_generation
        imm = self._immediates.get(pc)
        if imm is None:
            word = machine.read_u32(pc - 4)
            imm = self._immediates[pc] = 0 if word is None else (word >> 5) & 0xFFFF
        fid = cpu.x(0) & 0xFFFF_FFFF
        if imm:
            # DEN0028 2.9: a non-zero immediate is not an SMCCC call; KVM answers such an SMC with -1.
            name = f"{conduit} #{imm:#x}"
            now = machine.now()
            machine.trace.add(SmcccCall, vcpu.index, now, conduit, fid, name, ())
            cpu.set_x(0, NOT_SUPPORTED)
            machine.trace.add(SmcccReturn, vcpu.index, now, fid, name, (NOT_SUPPORTED,), self.default_layer)
            return True
        self.call(machine, vcpu, conduit, fid)
        return True

    def call(self, machine: Machine, vcpu: Vcpu, conduit: str, fid: int) -> None:
        """Route one call, record it and its return, and write the results to x0..x3."""
        route = self._routes.get(fid) or self.route(fid)
        function = route.function
        cpu = vcpu.backend
        add = machine.trace.add
        index = vcpu.index
        now = machine.now()  # a call takes no virtual time: it and its return share one stamp
        if function is None:
            add(SmcccCall, index, now, conduit, fid, route.name, ())
            cpu.set_x(0, NOT_SUPPORTED)
            add(SmcccReturn, index, now, fid, route.name, (NOT_SUPPORTED,), route.layer)
            return
        nargs = function.nargs
        if nargs:
            args = cpu.xs(nargs + 1)[1:]
            if not fid & SMC64:  # SMC32/HVC32: arguments are the W registers (DEN0028 2.6)
                args = [a & 0xFFFF_FFFF for a in args]
            add(SmcccCall, index, now, conduit, fid, route.name, tuple(args))
            result = function.handler(vcpu, *args)
        else:
            add(SmcccCall, index, now, conduit, fid, route.name, ())
            result = function.handler(vcpu)
        if result.__class__ is int:
            cpu.set_x(0, result)  # type: ignore[arg-type]
            add(SmcccReturn, index, now, fid, route.name, (result,), route.layer)
        elif not isinstance(result, NoReturn):
            cpu.set_xs(list(result))  # type: ignore[arg-type]
            add(SmcccReturn, index, now, fid, route.name, result, route.layer)
        for hook in self.after_call:
            hook(vcpu, fid)
