"""SMCCC: function IDs, and the dispatcher that routes a call to the service owning its range.

Arm DEN0028 (SMCCC) section 2.5: bit 31 = fast call, bit 30 = SMC64 calling convention,
bits [29:24] = owning entity, bits [15:0] = function number. The function ID is in W0, the
arguments in x1..x17, results in x0..x3. Section 2.9: only an immediate of 0 makes HVC or SMC
an SMCCC call. Every call and its return become trace facts, with the layer that answered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

from sdeilab.firmware.smccc_filter import FilterAction, SmcccFilter
from sdeilab.machine.vcpu import CALL_PC
from sdeilab.trace import LayerExit, SmcccCall, SmcccReturn
from sdeilab.trace.vocabulary import Conduit

if TYPE_CHECKING:
    from sdeilab.machine.machine import Machine
    from sdeilab.machine.vcpu import Vcpu

MASK64 = 0xFFFF_FFFF_FFFF_FFFF
FAST_CALL = 1 << 31
SMC64 = 1 << 30

class SmcccResult(IntEnum):
    """SMCCC's generic return codes (DEN0028 section 5.2). PSCI and SDEI share SUCCESS and
    NOT_SUPPORTED with it; from -2 on each service has its own (``PsciResult``, ``SdeiResult``).
    A member *is* its number, so facts and exported traces hold the same integers as before."""

    SUCCESS = 0
    NOT_SUPPORTED = -1
    NOT_REQUIRED = -2
    INVALID_PARAMETER = -3


# Plain ints for the handlers to return: results reach the facts (TraceLog.add).
SUCCESS = int(SmcccResult.SUCCESS)
NOT_SUPPORTED = int(SmcccResult.NOT_SUPPORTED)
NOT_REQUIRED = int(SmcccResult.NOT_REQUIRED)
INVALID_PARAMETER = int(SmcccResult.INVALID_PARAMETER)


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
    """One function ID a service answers: ``handler(vcpu, *x1..x<nargs>)``, then ``then(vcpu)``.

    ``then`` runs once the results are written (or the call did not return): like TF-A taking a
    pending EL3 interrupt on the way out of an SMC, the SDEI dispatcher enters a handler there.
    """

    fid: int
    name: str
    handler: Handler
    nargs: int = 0
    then: Callable[[Vcpu, int], None] | None = None  # given the call's time stamp


class Service:
    """A firmware service: a name (the key profiles use to place it in a layer) and its functions."""

    name = "service"

    def functions(self) -> Iterable[Function]:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Route:
    """Where a function ID goes from one conduit: the answering layer, and its implementation if any.

    ``exit`` is the exit a KVM profile takes to reach the VMM (KVM_EXIT_HYPERCALL), or "".
    """

    function: Function | None
    name: str
    layer: str
    exit: str = ""


KERNEL, VMM, EL3 = "kvm", "vmm", "el3"
"""The layers that can answer a call: the host kernel, the VMM in its userspace, EL3 firmware."""

KVM_EXIT_HYPERCALL = "KVM_EXIT_HYPERCALL"
KVM_HYPERCALL_EXIT_SMC = 1  # run->hypercall.flags bit 0: the call came by SMC


def entry_layer(conduits: Mapping[str, str]) -> str:
    """The layer a platform's first conduit traps to (KVM, or EL3 firmware)."""
    return next(iter(conduits.values()), EL3)


def answering_layer(fid: int, entry: str, smccc_filter: SmcccFilter) -> tuple[str, str, bool]:
    """Which layer answers ``fid`` trapped to ``entry``, the exit taken to reach it ("" if none),
    and whether the filter denies it (the kernel answers NOT_SUPPORTED whatever it implements).

    Under KVM the filter decides (reference section 6): DENY and HANDLE stay in the kernel,
    FWD_TO_USER exits to the VMM; the reserved Arm architecture ranges never leave the kernel.
    """
    if entry == KERNEL and not smccc_filter.reserved(fid):
        action = smccc_filter.action(fid)
        if action is FilterAction.FWD_TO_USER:
            return VMM, KVM_EXIT_HYPERCALL, False
        if action is FilterAction.DENY:
            return KERNEL, "", True
    return entry, "", False


class SmcccDispatcher:
    """The machine's firmware: decodes a conduit call, routes it by function ID to a layer, records it.

    ``conduits`` maps each instruction that is a firmware call on this platform to the layer it
    traps to ("kvm" under a hypervisor, "el3" with EL3 firmware); an instruction not listed is
    UNDEFINED (the machine delivers the exception). Under KVM the SMCCC filter decides, per
    function ID, whether the kernel answers or the call exits to the VMM (reference section 6):
    a service answers only in the layer where the profile placed it, anything else is
    NOT_SUPPORTED from the layer the call reached.
    """

    def __init__(self, conduits: Mapping[str, str], smccc_filter: SmcccFilter | None = None) -> None:
        self.conduits = dict(conduits)
        self.filter = smccc_filter if smccc_filter is not None else SmcccFilter()
        self._functions: dict[str, dict[int, Function]] = {}  # layer -> function ID -> implementation
        self._names: dict[int, str] = {}  # every ID some service knows, implemented here or not
        self._routes: dict[str, dict[int, Route]] = {conduit: {} for conduit in self.conduits}
        self._immediates: dict[int, int] = {}  # PC after the call -> its HVC/SMC immediate
        self._code_generation = -1

    @property
    def default_layer(self) -> str:
        """The layer the first conduit traps to: it answers what nobody else does."""
        return entry_layer(self.conduits)

    def register(self, service: Service, layer: str, *, exclude: Iterable[str] = ()) -> None:
        """Place ``service`` in ``layer``; calls named in ``exclude`` stay unimplemented (NOT_SUPPORTED)."""
        skip = frozenset(exclude)
        table = self._functions.setdefault(layer, {})
        for function in service.functions():
            self._names.setdefault(function.fid, function.name)
            if function.name in skip or function.name.removesuffix("64") in skip:
                continue
            if any(function.fid in other for other in self._functions.values()):
                raise ValueError(f"function ID 0x{function.fid:08x} ({function.name}) is registered twice")
            table[function.fid] = function
        self._clear_routes()

    def know(self, names: Iterable[tuple[str, int]]) -> None:
        """Learn (name, function ID) pairs of a service nobody offers here: its calls stay
        NOT_SUPPORTED, but the trace names them."""
        for name, fid in names:
            self._names.setdefault(fid, name)

    def _clear_routes(self) -> None:
        for routes in self._routes.values():
            routes.clear()

    def implemented(self, fid: int) -> bool:
        """Whether a call from the guest's first conduit reaches an implementation (PSCI_FEATURES' view)."""
        return self.route(fid).function is not None

    def route(self, fid: int, conduit: str | None = None) -> Route:
        conduit = conduit or next(iter(self.conduits), Conduit.HVC)
        routes = self._routes.setdefault(conduit, {})
        route = routes.get(fid)
        if route is None:
            route = routes[fid] = self._resolve(fid, self.conduits.get(conduit, EL3))
        return route

    def _resolve(self, fid: int, entry: str) -> Route:
        layer, exit_, denied = answering_layer(fid, entry, self.filter)
        function = None if denied else self._functions.get(layer, {}).get(fid)
        return Route(function, self._names.get(fid, f"0x{fid:08x}"), layer, exit_)

    def hypercall(self, machine: Machine, vcpu: Vcpu, conduit: str, now: int) -> bool:
        if conduit not in self.conduits:
            return False
        registers = vcpu.read_call()  # X0..X17 and PC, one read for the whole call (DEN0028 2.6, 2.7)
        pc = registers[CALL_PC]
        if self._code_generation != machine.code_generation:
            self._immediates.clear()
            self._code_generation = machine.code_generation
        imm = self._immediates.get(pc)
        if imm is None:
            word = machine.read_code_u32(vcpu, pc - 4)  # virtual when the MMU is on (Linux)
            imm = self._immediates[pc] = 0 if word is None else (word >> 5) & 0xFFFF
        fid = registers[0] & 0xFFFF_FFFF
        if imm:
            # DEN0028 2.9: a non-zero immediate is not an SMCCC call; KVM answers such an SMC with -1.
            name = f"{conduit} #{imm:#x}"
            machine.trace.add(SmcccCall, vcpu.index, now, conduit, fid, name, ())
            vcpu.set_x(0, NOT_SUPPORTED)
            machine.trace.add(SmcccReturn, vcpu.index, now, fid, name, (NOT_SUPPORTED,), self.default_layer)
            return True
        self.call(machine, vcpu, conduit, fid, now, registers)
        return True

    def call(self, machine: Machine, vcpu: Vcpu, conduit: str, fid: int, now: int | None = None,
             registers: tuple[int, ...] | None = None) -> None:
        """Route one call made at ``now`` with X0..X17 = ``registers`` (by default: the time and the
        registers now), record it and its return (a call takes no virtual time: both share the
        stamp), and write the results to x0..x3."""
        if now is None:
            now = machine.now()
        if registers is None:
            registers = vcpu.read_call()
        routes = self._routes.get(conduit)
        route = routes.get(fid) if routes is not None else None
        if route is None:
            route = self.route(fid, conduit)
        function = route.function
        add = machine.trace.add
        index = vcpu.index
        args: tuple[int, ...] = ()
        if function is not None and function.nargs:
            args = tuple(registers[1:function.nargs + 1])
            if not fid & SMC64:  # SMC32/HVC32: arguments are the W registers (DEN0028 2.6)
                args = tuple(a & 0xFFFF_FFFF for a in args)
        add(SmcccCall, index, now, conduit, fid, route.name, args)
        if route.exit:
            # KVM_EXIT_HYPERCALL carries the function ID and the conduit flag, never the immediate;
            # the VMM reads x1..x17 with KVM_GET_ONE_REG (reference section 6, "The exit").
            add(LayerExit, index, now, fid, route.name, KERNEL, route.layer, route.exit,
                KVM_HYPERCALL_EXIT_SMC if conduit == Conduit.SMC else 0)
        if function is None:
            vcpu.set_x(0, NOT_SUPPORTED)
            add(SmcccReturn, index, now, fid, route.name, (NOT_SUPPORTED,), route.layer)
            return
        result = function.handler(vcpu, *args)
        if isinstance(result, int):
            vcpu.set_x(0, result)
            add(SmcccReturn, index, now, fid, route.name, (result,), route.layer)
        elif isinstance(result, tuple):
            vcpu.set_xs(result)
            add(SmcccReturn, index, now, fid, route.name, result, route.layer)
        elif not isinstance(result, NoReturn):
            raise TypeError(f"{route.name} returned {result!r}: a handler returns an int, a tuple of ints or NO_RETURN")
        then = function.then
        if then is not None:
            then(vcpu, now)
