"""PSCI 1.1 (Arm DEN0022D): the policy over the machine's power mechanism.

Every function ID of PSCI 1.1 is answered: implemented below, or NOT_SUPPORTED (-1), and
PSCI_FEATURES reads the very table the dispatcher routes from, so it cannot disagree with
what is implemented. Power events are published to subscribers (the SDEI dispatcher) so that
PSCI and SDEI meet through a subscription, not imports, as in TF-A (``SUBSCRIBE_TO_EVENT``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import Enum, IntEnum

from sdeilab.firmware.arch import SMCCC_VERSION
from sdeilab.firmware.smccc import NO_RETURN, NOT_SUPPORTED, SUCCESS, Function, Result, Service, SmcccDispatcher
from sdeilab.machine.machine import Machine
from sdeilab.machine.memmap import MPIDR_AFFINITY_MASK, cpu_of_mpidr
from sdeilab.machine.outcome import StopReason
from sdeilab.machine.state import FieldState
from sdeilab.machine.vcpu import Vcpu, VcpuState
from sdeilab.trace.vocabulary import PowerCause

PSCI_VERSION_1_1 = 0x0001_0001

class PsciResult(IntEnum):
    """PSCI's return codes (DEN0022D 5.2.2); SUCCESS and NOT_SUPPORTED are SMCCC's."""

    SUCCESS = int(SUCCESS)
    NOT_SUPPORTED = int(NOT_SUPPORTED)
    INVALID_PARAMETERS = -2
    DENIED = -3
    ALREADY_ON = -4
    ON_PENDING = -5
    INTERNAL_FAILURE = -6
    NOT_PRESENT = -7
    DISABLED = -8
    INVALID_ADDRESS = -9


class AffinityState(IntEnum):
    """What AFFINITY_INFO returns for a PE that exists (DEN0022D 5.7.2)."""

    ON = 0
    OFF = 1
    ON_PENDING = 2


# Plain ints for the handlers to return: results reach the facts (TraceLog.add).
INVALID_PARAMETERS = int(PsciResult.INVALID_PARAMETERS)
DENIED = int(PsciResult.DENIED)
ALREADY_ON = int(PsciResult.ALREADY_ON)
ON_PENDING = int(PsciResult.ON_PENDING)
INTERNAL_FAILURE = int(PsciResult.INTERNAL_FAILURE)
NOT_PRESENT = int(PsciResult.NOT_PRESENT)
DISABLED = int(PsciResult.DISABLED)
INVALID_ADDRESS = int(PsciResult.INVALID_ADDRESS)
AFFINITY_ON, AFFINITY_OFF, AFFINITY_ON_PENDING = (int(AffinityState.ON), int(AffinityState.OFF),
                                                  int(AffinityState.ON_PENDING))

MIGRATE_INFO_TYPE_NO_TRUSTED_OS = 2  # no Trusted OS, so no migration to worry about (DEN0022D 5.8)

# Every PSCI 1.1 function: (name, SMC32 ID, SMC64 ID or None). DEN0022D table 5-1.
PSCI_FUNCTIONS: tuple[tuple[str, int, int | None], ...] = (
    ("PSCI_VERSION", 0x8400_0000, None),
    ("CPU_SUSPEND", 0x8400_0001, 0xC400_0001),
    ("CPU_OFF", 0x8400_0002, None),
    ("CPU_ON", 0x8400_0003, 0xC400_0003),
    ("AFFINITY_INFO", 0x8400_0004, 0xC400_0004),
    ("MIGRATE", 0x8400_0005, 0xC400_0005),
    ("MIGRATE_INFO_TYPE", 0x8400_0006, None),
    ("MIGRATE_INFO_UP_CPU", 0x8400_0007, 0xC400_0007),
    ("SYSTEM_OFF", 0x8400_0008, None),
    ("SYSTEM_RESET", 0x8400_0009, None),
    ("PSCI_FEATURES", 0x8400_000A, None),
    ("CPU_FREEZE", 0x8400_000B, None),
    ("CPU_DEFAULT_SUSPEND", 0x8400_000C, 0xC400_000C),
    ("NODE_HW_STATE", 0x8400_000D, 0xC400_000D),
    ("SYSTEM_SUSPEND", 0x8400_000E, 0xC400_000E),
    ("PSCI_SET_SUSPEND_MODE", 0x8400_000F, None),
    ("PSCI_STAT_RESIDENCY", 0x8400_0010, 0xC400_0010),
    ("PSCI_STAT_COUNT", 0x8400_0011, 0xC400_0011),
    ("SYSTEM_RESET2", 0x8400_0012, 0xC400_0012),
    ("MEM_PROTECT", 0x8400_0013, None),
    ("MEM_PROTECT_CHECK_RANGE", 0x8400_0014, 0xC400_0014),
)
PSCI_FID = {name: fid32 for name, fid32, _ in PSCI_FUNCTIONS}
PSCI_RANGES = ((0x8400_0000, 0x20), (0xC400_0000, 0x20))  # function numbers 0x00-0x1F are PSCI's

# CPU_SUSPEND power_state, original format (DEN0022D 5.4.2.1).
STATE_TYPE_POWERDOWN = 1 << 16
POWER_LEVEL_SHIFT = 24
POWER_STATE_RESERVED = 0xFC00_0000 | 0x00FE_0000  # bits [31:26] and [23:17]

SYSTEM_WARM_RESET = 0
RESET_TYPE_VENDOR = 1 << 31


class PowerEvent(Enum):
    """What PSCI publishes (TF-A's psci_cpu_on_finish, psci_suspend_pwrdown_finish, ...)."""

    CPU_ON_FINISH = "cpu_on_finish"  # the PE has come up after CPU_ON (before it runs a single instruction)
    CPU_OFF = "cpu_off"  # the PE has been powered down by CPU_OFF
    SUSPEND = "suspend"  # the PE entered CPU_SUSPEND (standby or power-down)
    WAKE = "wake"  # the PE woke from a power-down suspend, at its entry point
    SYSTEM_RESET = "system_reset"  # SYSTEM_RESET or SYSTEM_RESET2: all state goes


PowerSubscriber = Callable[[int], None]
CpuOffVeto = Callable[[int], int | None]


class PowerFeed:
    """What a service sees of PSCI's power events from where it lives (reference section 3.4).

    A service in PSCI's own layer sees every event and may veto CPU_OFF; one in another layer
    sees only the events that cross into it (``visible``), and the kernel cannot ask it first.
    """

    def __init__(self, psci: Psci, visible: frozenset[PowerEvent], *, can_veto: bool) -> None:
        self._psci = psci
        self.visible = visible
        self.cpu_off_vetoes: list[CpuOffVeto] = psci.cpu_off_vetoes if can_veto else []

    def subscribe(self, event: PowerEvent, callback: PowerSubscriber) -> None:
        if event in self.visible:
            self._psci.subscribe(event, callback)


class Psci(FieldState, Service):
    name = "psci"
    STATE = ("_suspending",)  # what a machine snapshot holds of PSCI (sdeilab.machine.state)

    def __init__(self, machine: Machine, dispatcher: SmcccDispatcher, *, affinity_fields_only: bool = False) -> None:
        self.machine = machine
        self.dispatcher = dispatcher
        # How a target_cpu / target_affinity names a PE. DEN0022D 5.1.4 says bits [31:24] and
        # [63:40] must be zero, and KVM and QEMU answer INVALID_PARAMETERS otherwise; TF-A (EL3
        # firmware) keeps only the affinity fields, so a guest's own MPIDR_EL1 value (bit 31 set)
        # names that PE there.
        self.affinity_fields_only = affinity_fields_only
        self._subscribers: dict[PowerEvent, list[PowerSubscriber]] = {event: [] for event in PowerEvent}
        self.cpu_off_vetoes: list[CpuOffVeto] = []  # a non-None answer refuses CPU_OFF with that code
        self._suspending: set[int] = set()
        machine.power_listeners.append(self._on_power)
        machine.attach("psci", self)

    # --- publication -------------------------------------------------------------------
    def subscribe(self, event: PowerEvent, callback: PowerSubscriber) -> None:
        self._subscribers[event].append(callback)

    def publish(self, event: PowerEvent, cpu: int) -> None:
        for callback in self._subscribers[event]:
            callback(cpu)

    def _on_power(self, cpu: int, old: VcpuState, new: VcpuState, cause: str) -> None:
        if new is VcpuState.ON and cause == PowerCause.CPU_ON:
            self.publish(PowerEvent.CPU_ON_FINISH, cpu)
        elif new is VcpuState.ON and old is VcpuState.POWERDOWN:
            self.publish(PowerEvent.WAKE, cpu)
        elif new is VcpuState.OFF and cause == PowerCause.CPU_OFF:
            self.publish(PowerEvent.CPU_OFF, cpu)
        elif cause == PowerCause.CPU_SUSPEND:
            self.publish(PowerEvent.SUSPEND, cpu)

    # --- the function table ------------------------------------------------------------
    def functions(self) -> Iterable[Function]:
        handlers: dict[str, tuple[Callable[..., Result], int]] = {
            "PSCI_VERSION": (lambda vcpu: PSCI_VERSION_1_1, 0),
            "CPU_SUSPEND": (self.cpu_suspend, 3),
            "CPU_OFF": (self.cpu_off, 0),
            "CPU_ON": (self.cpu_on, 3),
            "AFFINITY_INFO": (self.affinity_info, 2),
            "MIGRATE_INFO_TYPE": (lambda vcpu: MIGRATE_INFO_TYPE_NO_TRUSTED_OS, 0),
            "SYSTEM_OFF": (self.system_off, 0),
            "SYSTEM_RESET": (self.system_reset, 0),
            "PSCI_FEATURES": (self.features, 1),
            "SYSTEM_RESET2": (self.system_reset2, 2),
        }
        # The rest of PSCI 1.1 is optional (DEN0022D table 5-1) and not implemented, so it
        # falls through to NOT_SUPPORTED: MIGRATE and MIGRATE_INFO_UP_CPU (no Trusted OS),
        # CPU_FREEZE, CPU_DEFAULT_SUSPEND, NODE_HW_STATE, SYSTEM_SUSPEND, SET_SUSPEND_MODE
        # (platform-coordinated only), the STAT calls and MEM_PROTECT.
        for name, fid32, fid64 in PSCI_FUNCTIONS:
            if name in handlers:
                handler, nargs = handlers[name]
                yield Function(fid32, name, handler, nargs)
                if fid64 is not None:
                    yield Function(fid64, name + "64", handler, nargs)

    # --- calls -------------------------------------------------------------------------
    def features(self, vcpu: Vcpu, fid: int) -> Result:
        """PSCI_FEATURES (5.15): 0 for an implemented function; CPU_SUSPEND's 0 = original format, PC mode."""
        if self.dispatcher.implemented(fid) and (fid >> 24) & 0x3F == 4 and fid & 0xFFFF < 0x20:
            return SUCCESS
        if fid == SMCCC_VERSION and self.dispatcher.implemented(fid):
            return SUCCESS  # SMCCC 1.1 discovery goes through PSCI_FEATURES (DEN0028 7.2.1)
        return NOT_SUPPORTED

    def _target(self, mpidr: int) -> Vcpu | None:
        if self.affinity_fields_only:
            mpidr &= MPIDR_AFFINITY_MASK
        cpu = cpu_of_mpidr(mpidr, len(self.machine.vcpus))
        return None if cpu is None else self.machine.vcpus[cpu]

    def cpu_on(self, vcpu: Vcpu, target_mpidr: int, entry: int, context_id: int) -> Result:
        target = self._target(target_mpidr)
        if target is None:
            return INVALID_PARAMETERS
        if not self.machine.is_valid_entry(entry):
            return INVALID_ADDRESS
        if target.state is VcpuState.ON_PENDING:
            return ON_PENDING
        if target.state is not VcpuState.OFF:
            return ALREADY_ON
        self.machine.power_on(target, entry, context_id)
        return SUCCESS

    def cpu_off(self, vcpu: Vcpu) -> Result:
        for veto in self.cpu_off_vetoes:
            refusal = veto(vcpu.index)
            if refusal is not None:
                return refusal
        self.machine.power_off(vcpu)
        return NO_RETURN

    def affinity_info(self, vcpu: Vcpu, target_affinity: int, lowest_level: int) -> Result:
        # Only level 0 is supported, as in TF-A; QEMU answers ON for any higher level (a deviation).
        if lowest_level != 0:
            return INVALID_PARAMETERS
        target = self._target(target_affinity)
        if target is None:
            return INVALID_PARAMETERS
        if target.state is VcpuState.OFF:
            return AFFINITY_OFF
        if target.state is VcpuState.ON_PENDING:
            return AFFINITY_ON_PENDING
        return AFFINITY_ON

    def cpu_suspend(self, vcpu: Vcpu, power_state: int, entry: int, context_id: int) -> Result:
        if power_state & POWER_STATE_RESERVED or (power_state >> POWER_LEVEL_SHIFT) & 3:
            return INVALID_PARAMETERS  # only core-level states are defined on this platform
        if power_state & STATE_TYPE_POWERDOWN:
            if not self.machine.is_valid_entry(entry):
                return INVALID_ADDRESS
            self.machine.suspend(vcpu, True, entry, context_id)
            return NO_RETURN
        self.machine.suspend(vcpu, False)
        return SUCCESS  # standby returns SUCCESS once a wake-up event ends it (5.4.1)

    def system_off(self, vcpu: Vcpu) -> Result:
        self.machine.halt(StopReason.SYSTEM_OFF, f"PSCI SYSTEM_OFF from CPU {vcpu.index}")
        return NO_RETURN

    def system_reset(self, vcpu: Vcpu) -> Result:
        self.publish(PowerEvent.SYSTEM_RESET, vcpu.index)
        self.machine.halt(StopReason.SYSTEM_RESET, f"PSCI SYSTEM_RESET from CPU {vcpu.index}")
        return NO_RETURN

    def system_reset2(self, vcpu: Vcpu, reset_type: int, cookie: int) -> Result:
        reset_type &= 0xFFFF_FFFF
        if reset_type != SYSTEM_WARM_RESET:
            return INVALID_PARAMETERS  # no vendor-specific (bit 31) reset types are defined here (5.18)
        self.publish(PowerEvent.SYSTEM_RESET, vcpu.index)
        self.machine.halt(StopReason.SYSTEM_RESET, f"PSCI SYSTEM_RESET2 (warm reset) from CPU {vcpu.index}")
        return NO_RETURN
