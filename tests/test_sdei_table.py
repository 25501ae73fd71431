"""Every (state, call) pair of DEN0054's state table (reference section 2.2), for a private and a shared
event, driven through the SMCCC dispatcher on a running machine. The expectations are written out
here from the reference, independently of ``sdeilab.firmware.sdei.table``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sdeilab.firmware.smccc import NO_RETURN
from sdeilab.lab.platform import Platform, make_platform
from sdeilab.toolchain import build_source_text

SPIN = ".global main, handler\nmain:\n1:  b 1b\nhandler:\n2:  b 2b\n"
FID = {"REGISTER": 0xC400_0021, "ENABLE": 0xC400_0022, "DISABLE": 0xC400_0023, "CONTEXT": 0xC400_0024,
       "COMPLETE": 0xC400_0025, "COMPLETE_AND_RESUME": 0xC400_0026, "UNREGISTER": 0xC400_0027,
       "STATUS": 0xC400_0028, "ROUTING_SET": 0xC400_002A, "PE_UNMASK": 0xC400_002C, "BIND": 0xC400_002D,
       "RELEASE": 0xC400_002E}
DENIED, PENDING, INVALID = -3, -5, -2
OK = 0
# state -> call -> (result, state after); None as result: the call does not return (COMPLETE*).
EXPECTED: dict[int, dict[str, tuple[int | None, int]]] = {
    0: {"REGISTER": (OK, 1), "RELEASE": (OK, 0), "ENABLE": (DENIED, 0), "DISABLE": (DENIED, 0),
        "UNREGISTER": (DENIED, 0), "ROUTING_SET": (DENIED, 0), "CONTEXT": (DENIED, 0),
        "COMPLETE": (DENIED, 0), "COMPLETE_AND_RESUME": (DENIED, 0)},
    4: {"REGISTER": (DENIED, 4), "RELEASE": (DENIED, 4), "ENABLE": (DENIED, 4), "DISABLE": (DENIED, 4),
        "UNREGISTER": (PENDING, 4), "ROUTING_SET": (DENIED, 4), "CONTEXT": (0x5DE1, 4),
        "COMPLETE": (None, 0), "COMPLETE_AND_RESUME": (None, 0)},
    1: {"REGISTER": (DENIED, 1), "RELEASE": (DENIED, 1), "ENABLE": (OK, 3), "DISABLE": (OK, 1),
        "UNREGISTER": (OK, 0), "ROUTING_SET": (OK, 1), "CONTEXT": (DENIED, 1),
        "COMPLETE": (DENIED, 1), "COMPLETE_AND_RESUME": (DENIED, 1)},
    5: {"REGISTER": (DENIED, 5), "RELEASE": (DENIED, 5), "ENABLE": (OK, 7), "DISABLE": (OK, 5),
        "UNREGISTER": (PENDING, 4), "ROUTING_SET": (DENIED, 5), "CONTEXT": (0x5DE1, 5),
        "COMPLETE": (None, 1), "COMPLETE_AND_RESUME": (None, 1)},
    3: {"REGISTER": (DENIED, 3), "RELEASE": (DENIED, 3), "ENABLE": (OK, 3), "DISABLE": (OK, 1),
        "UNREGISTER": (OK, 0), "ROUTING_SET": (DENIED, 3), "CONTEXT": (DENIED, 3),
        "COMPLETE": (DENIED, 3), "COMPLETE_AND_RESUME": (DENIED, 3)},
    7: {"REGISTER": (DENIED, 7), "RELEASE": (DENIED, 7), "ENABLE": (OK, 7), "DISABLE": (OK, 5),
        "UNREGISTER": (PENDING, 4), "ROUTING_SET": (DENIED, 7), "CONTEXT": (0x5DE1, 7),
        "COMPLETE": (None, 3), "COMPLETE_AND_RESUME": (None, 3)},
}
INTIDS = {"private": 30, "shared": 42}  # the EL1 physical timer PPI; the SP804's SPI


@pytest.fixture(scope="module")
def spin_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_source_text(SPIN, "asm", tmp_path_factory.mktemp("sdei") / "spin.elf")


class Harness:
    def __init__(self, elf: Path, kind: str) -> None:
        self.platform: Platform = make_platform(2)
        image = self.platform.machine.load(elf)
        self.handler = next(a for a, n in image.symbols.items() if n == "handler")
        self.main = next(a for a, n in image.symbols.items() if n == "main")
        self.kind = kind
        self.event = self.call("BIND", INTIDS[kind])
        assert self.event == (1000 if kind == "private" else 2000)

    def call(self, name: str, *args: int) -> int | None:
        machine = self.platform.machine
        vcpu = machine.vcpus[0]
        vcpu.backend.set_xs([FID[name], *args] + [0] * (5 - len(args)))
        before = vcpu.backend.pc
        self.platform.dispatcher.call(machine, vcpu, "hvc", FID[name])
        if name.startswith("COMPLETE") and vcpu.backend.pc != before:
            return None  # it did not return: the interrupted context (or the resume address) is back
        value = vcpu.backend.x(0)
        return value - (1 << 64) if value >> 63 else value

    def status(self) -> int:
        result = self.call("STATUS", self.event)
        assert result is not None
        return result

    def dispatch(self) -> None:
        machine = self.platform.machine
        vcpu = machine.vcpus[0]
        vcpu.backend.set_x(5, 0x5DE1)  # what CONTEXT(5) must read back
        machine.gic.set_pending(INTIDS[self.kind], True, 0 if self.kind == "private" else None)
        self.platform.sdei._deliver(vcpu)
        assert vcpu.backend.pc == self.handler

    def reach(self, state: int) -> None:
        if state == 0:
            return
        assert self.call("REGISTER", self.event, self.handler, 0xC0FFEE, 1, 0) == OK  # RM_PE, CPU 0
        if state in (3, 7, 5, 4):
            assert self.call("ENABLE", self.event) == OK
            if state != 3:
                assert self.call("PE_UNMASK") == OK
                self.dispatch()
                if state == 5:
                    assert self.call("DISABLE", self.event) == OK
                if state == 4:
                    assert self.call("UNREGISTER", self.event) == PENDING
        assert self.status() == state

    def perform(self, name: str) -> int | None:
        if name == "REGISTER":
            return self.call(name, self.event, self.handler, 0xC0FFEE, 1, 0)
        if name == "ROUTING_SET":
            return self.call(name, self.event, 1, 0)
        if name == "CONTEXT":
            return self.call(name, 5)
        if name == "COMPLETE":
            return self.call(name, 0)
        if name == "COMPLETE_AND_RESUME":
            return self.call(name, self.main)
        return self.call(name, self.event)


CASES = [(kind, state, name) for kind in INTIDS for state in EXPECTED for name in EXPECTED[state]]


@pytest.mark.parametrize("kind,state,name", CASES, ids=[f"{k}-{s}-{n}" for k, s, n in CASES])
def test_state_table(spin_elf: Path, kind: str, state: int, name: str) -> None:
    harness = Harness(spin_elf, kind)
    harness.reach(state)
    want_result, want_state = EXPECTED[state][name]
    if kind == "private" and name == "ROUTING_SET":
        want_result, want_state = INVALID, state  # routing applies to shared events only (2.8)
    result = harness.perform(name)
    assert result == want_result
    if name == "RELEASE" and result == OK:
        assert harness.call("STATUS", harness.event) == 0
        assert harness.call("BIND", INTIDS[kind]) == harness.event  # the slot is free again
    else:
        assert harness.status() == want_state


def test_complete_and_resume_enters_the_resume_address_like_an_exception(spin_elf: Path) -> None:
    harness = Harness(spin_elf, "shared")
    harness.reach(7)
    top = harness.platform.sdei.pes[0].stack[-1]
    assert harness.perform("COMPLETE_AND_RESUME") is None
    backend = harness.platform.machine.vcpus[0].backend
    assert backend.pc == harness.main
    assert backend.read("ELR_EL1") == top.pc and backend.read("SPSR_EL1") == top.pstate
    assert backend.read("PSTATE") & 0x3C0 == 0x3C0 and backend.read("PSTATE") & 0xF == 0x5  # EL1h, DAIF
    assert backend.x(5) == 0x5DE1  # x0-x17 restored


def test_complete_restores_the_interrupted_context(spin_elf: Path) -> None:
    harness = Harness(spin_elf, "private")
    harness.reach(7)
    top = harness.platform.sdei.pes[0].stack[-1]
    assert harness.perform("COMPLETE") is None
    backend = harness.platform.machine.vcpus[0].backend
    assert (backend.pc, backend.read("PSTATE"), backend.x(5)) == (top.pc, top.pstate, 0x5DE1)
    assert harness.platform.sdei.pes[0].stack == [] and NO_RETURN is not None
