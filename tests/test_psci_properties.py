"""Random PSCI call sequences across CPUs, checked against the spec's rules (DEN0022D chapter 5).

The calls are issued as the firmware sees them: the caller's x0..x3 are set and the SMCCC
dispatcher is entered on that vCPU, between time slices; ``run`` lets the scheduler move
CPUs from ON_PENDING to ON. A small model says what every answer must be.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sdeilab.firmware.psci import PSCI_FUNCTIONS
from sdeilab.lab.platform import make_platform
from sdeilab.machine.memmap import cpu_affinity
from sdeilab.machine.vcpu import VcpuState
from sdeilab.toolchain import build_source_text
from sdeilab.trace import SmcccCall, SmcccReturn

CPUS = 4
CPU_ON, CPU_OFF, AFFINITY_INFO, PSCI_FEATURES = 0xC400_0003, 0x8400_0002, 0xC400_0004, 0x8400_000A
PARK = """
    .global main, psci_test_spin
main:
    b psci_test_spin
psci_test_spin:
1:  b 1b
"""


@pytest.fixture(scope="module")
def park_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_source_text(PARK, "asm", tmp_path_factory.mktemp("psci") / "park.elf")


def psci_machine(elf: Path) -> type[RuleBasedStateMachine]:
    class PsciModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.platform = make_platform(CPUS)
            image = self.platform.machine.load(elf)
            self.park = min(a for a, n in image.symbols.items() if n == "psci_test_spin")
            self.model = ["on"] + ["off"] * (CPUS - 1)

        def call(self, caller: int, fid: int, *args: int) -> int:
            vcpu = self.platform.machine.vcpus[caller]
            vcpu.backend.set_xs([fid, *args])
            self.platform.dispatcher.call(self.platform.machine, vcpu, "hvc", fid)
            value = vcpu.backend.x(0)
            return value - (1 << 64) if value >> 63 else value

        def on_cpus(self) -> list[int]:
            return [c for c, s in enumerate(self.model) if s == "on"]

        @precondition(lambda self: self.on_cpus())
        @rule(data=st.data(), cpu=st.integers(0, CPUS + 1),
              entry=st.sampled_from(["park", "misaligned", "outside"]))
        def cpu_on(self, data: st.DataObject, cpu: int, entry: str) -> None:
            caller, target = data.draw(st.sampled_from(self.on_cpus())), cpu
            address = {"park": self.park, "misaligned": self.park + 2, "outside": 0x1000}[entry]
            mpidr = cpu_affinity(target) if target < CPUS else 0xFF00FF
            result = self.call(caller, CPU_ON, mpidr, address, 0x1000 + target)
            if target >= CPUS:
                assert result == -2  # INVALID_PARAMETERS
            elif entry != "park":
                assert result == -9  # INVALID_ADDRESS
            elif self.model[target] == "on-pending":
                assert result == -5  # ON_PENDING
            elif self.model[target] == "on":
                assert result == -4  # ALREADY_ON
            else:
                assert result == 0
                self.model[target] = "on-pending"

        @precondition(lambda self: len(self.on_cpus()) > 1)
        @rule(data=st.data())
        def cpu_off(self, data: st.DataObject) -> None:
            caller = data.draw(st.sampled_from(self.on_cpus()))
            before = len(self.platform.machine.trace)
            self.call(caller, CPU_OFF)
            facts = self.platform.machine.trace[before:]
            assert not any(isinstance(f, SmcccReturn) for f in facts)  # CPU_OFF does not return
            self.model[caller] = "off"

        @precondition(lambda self: self.on_cpus())
        @rule(data=st.data(), cpu=st.integers(0, CPUS), level=st.sampled_from([0, 0, 0, 1, 2]))
        def affinity_info(self, data: st.DataObject, cpu: int, level: int) -> None:
            caller, target = data.draw(st.sampled_from(self.on_cpus())), cpu
            result = self.call(caller, AFFINITY_INFO, cpu_affinity(target) if target < CPUS else 0xFF, level)
            if level != 0 or target >= CPUS:
                assert result == -2
            else:
                assert result == {"on": 0, "off": 1, "on-pending": 2}[self.model[target]]

        @precondition(lambda self: self.on_cpus())
        @rule(data=st.data(), which=st.sampled_from(PSCI_FUNCTIONS), wide=st.booleans())
        def features_tell_the_truth(self, data: st.DataObject, which: tuple[str, int, int | None],
                                    wide: bool) -> None:
            name, fid32, fid64 = which
            fid = fid64 if wide and fid64 is not None else fid32
            caller = data.draw(st.sampled_from(self.on_cpus()))
            feature = self.call(caller, PSCI_FEATURES, fid)
            assert feature in (0, -1)
            assert (feature == 0) == self.platform.dispatcher.implemented(fid), name

        @precondition(lambda self: self.on_cpus())
        @rule(instructions=st.integers(1, 300_000))
        def run(self, instructions: int) -> None:
            self.platform.run(instructions)
            # Every pending CPU has had its chance to start within one round.
            if instructions >= self.platform.machine.quantum * 2:
                self.model = ["on" if s == "on-pending" else s for s in self.model]

        @invariant()
        def states_match_the_machine(self) -> None:
            names = {VcpuState.OFF: "off", VcpuState.ON_PENDING: "on-pending", VcpuState.ON: "on"}
            actual = [names[v.state] for v in self.platform.machine.vcpus]
            for want, got in zip(self.model, actual, strict=True):
                assert want == got or (want == "on-pending" and got == "on")
            self.model = actual

        @invariant()
        def every_call_but_cpu_off_returns(self) -> None:
            open_calls: dict[int, int] = {}
            for fact in self.platform.machine.trace:
                if isinstance(fact, SmcccCall):
                    assert fact.cpu not in open_calls or open_calls[fact.cpu] == CPU_OFF
                    open_calls[fact.cpu] = fact.fid
                elif isinstance(fact, SmcccReturn):
                    assert open_calls.pop(fact.cpu) == fact.fid

    return PsciModel


def test_random_psci_sequences_keep_the_spec(park_elf: Path) -> None:
    model = psci_machine(park_elf)
    model.TestCase.settings = settings(max_examples=25, stateful_step_count=25, deadline=None,
                                       suppress_health_check=[HealthCheck.too_slow])
    model.TestCase().runTest()
