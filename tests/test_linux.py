"""Debian's arm64 Linux kernel on the lab (issue 6): booted with the lab's own device tree and a
busybox initramfs, on 2 CPUs with the default profile, and Linux's SDEI driver across CPU hotplug.

The kernel and busybox come from Debian's packages, fetched by the project's set-up into
.cache/debian-arm64 (scripts/fetch-linux.sh, run by scripts/setup.sh); nothing built from them is
committed. Without them these tests fail and say which command fetches them.

What Linux's SDEI driver (drivers/firmware/arm_sdei.c, 6.1) does around hotplug, and so what the
trace must show for CPU 1 in each offline/online cycle of the init script:
* going down, its CPU hotplug callback ``sdei_cpuhp_down`` masks the PE (SDEI_PE_MASK) before
  PSCI's ``cpu_die`` calls CPU_OFF on that CPU;
* coming up, CPU 0 calls CPU_ON, and the new CPU's ``sdei_cpuhp_up`` unmasks itself
  (SDEI_PE_UNMASK).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from sdeilab.lab.platform import make_platform
from sdeilab.linux import LinuxPackagesMissing, busybox, kernel_image, write_initramfs
from sdeilab.linux.initramfs import HOTPLUG_CYCLES, INIT_TAG
from sdeilab.machine.memmap import cpu_affinity
from sdeilab.machine.outcome import StopReason
from sdeilab.trace import Fact, SmcccCall
from sdeilab.trace.export import fact_to_dict

pytestmark = pytest.mark.linux

CPUS = 2
BUDGET = 3_000_000_000  # the whole run is about 0.95e9 instructions
HOTPLUGGED = 1


@dataclass(frozen=True)
class Boot:
    uart: bytes
    reason: StopReason
    detail: str
    exit_status: int
    facts: list[Fact]

    @property
    def trace_digest(self) -> str:
        rows = (json.dumps(fact_to_dict(f), separators=(",", ":"), sort_keys=True) for f in self.facts)
        return hashlib.sha256("\n".join(rows).encode()).hexdigest()


@pytest.fixture(scope="module")
def linux(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Debian's kernel and an initramfs built from Debian's busybox with the hotplug init."""
    try:
        kernel = kernel_image()
        initrd = write_initramfs(tmp_path_factory.mktemp("linux") / "initramfs.cpio.gz", busybox())
    except LinuxPackagesMissing as error:
        missing = str(error)  # fail outside the handler: the message alone, no chained traceback
    else:
        return kernel, initrd
    pytest.fail(missing, pytrace=False)


def boot(kernel: Path, initrd: Path) -> Boot:
    platform = make_platform(CPUS, "virt")
    platform.load_kernel(kernel, initrd)
    outcome = platform.run(BUDGET)
    machine = platform.machine
    return Boot(bytes(machine.uart_output), outcome.reason, outcome.detail, outcome.exit_status, list(machine.trace))


@pytest.fixture(scope="module")
def first(linux: tuple[Path, Path]) -> Boot:
    return boot(*linux)


def test_linux_boots_finds_psci_and_sdei_and_powers_off(first: Boot) -> None:
    text = first.uart.decode(errors="replace")
    assert (first.reason, first.exit_status) == (StopReason.SYSTEM_OFF, 0), (first.detail, text[-3000:])
    for line in ("psci: PSCIv1.1 detected in firmware.",
                 "sdei: SDEIv1.0 (0x0) detected in firmware.",
                 "smp: Brought up 1 node, 2 CPUs",
                 "reboot: Power down"):
        assert line in text, line


def test_the_init_script_sees_sdei_and_cycles_cpu1(first: Boot) -> None:
    lines = [line for line in first.uart.decode(errors="replace").splitlines() if line.startswith(INIT_TAG)]
    expected = [
        f"{INIT_TAG} up",
        f"{INIT_TAG} device tree: arm,sdei-1.0, method hvc",  # the profile's conduit (firmware/devicetree.py)
        f"{INIT_TAG} driver: firmware:sdei",  # arm_sdei.c bound to the /firmware/sdei node
        f"{INIT_TAG} dmesg: sdei: SDEIv1.0 (0x0) detected in firmware.",
        f"{INIT_TAG} online CPUs 0-1",
    ]
    for cycle in range(1, HOTPLUG_CYCLES + 1):
        expected += [f"{INIT_TAG} cycle {cycle}: CPU 1 offline, online CPUs 0",
                     f"{INIT_TAG} cycle {cycle}: CPU 1 online, online CPUs 0-1"]
    expected.append(f"{INIT_TAG} power off")
    assert lines == expected


def _hotplug_steps(facts: list[Fact]) -> list[str]:
    """PE_MASK/PE_UNMASK/CPU_OFF by CPU 1 and CPU_ON of CPU 1 (by whom), from CPU 1's first unmask on."""
    target = cpu_affinity(HOTPLUGGED)
    calls = [f for f in facts if isinstance(f, SmcccCall)]
    booted = next(i for i, f in enumerate(calls) if f.name == "SDEI_PE_UNMASK" and f.cpu == HOTPLUGGED)
    steps = []
    for call in calls[booted + 1:]:
        if call.name in ("SDEI_PE_MASK", "SDEI_PE_UNMASK", "CPU_OFF") and call.cpu == HOTPLUGGED:
            steps.append(f"{call.name} by CPU {call.cpu}")
        elif call.name in ("CPU_ON", "CPU_ON64") and call.args[0] == target:
            steps.append(f"CPU_ON by CPU {call.cpu}")
    return steps


def test_sdei_masks_cpu1_before_cpu_off_and_unmasks_it_after_cpu_on(first: Boot) -> None:
    steps = _hotplug_steps(first.facts)
    cycle = ["SDEI_PE_MASK by CPU 1", "CPU_OFF by CPU 1", "CPU_ON by CPU 0", "SDEI_PE_UNMASK by CPU 1"]
    assert steps[:len(cycle) * HOTPLUG_CYCLES] == cycle * HOTPLUG_CYCLES, steps
    # After the cycles only the shutdown's masking (sdei_reboot_notifier): CPU 1 never goes off again.
    assert set(steps[len(cycle) * HOTPLUG_CYCLES:]) <= {"SDEI_PE_MASK by CPU 1"}, steps


def test_two_boots_give_the_same_uart_bytes_and_trace(linux: tuple[Path, Path], first: Boot) -> None:
    second = boot(*linux)
    assert second.uart == first.uart
    assert len(second.facts) == len(first.facts)
    assert second.trace_digest == first.trace_digest
