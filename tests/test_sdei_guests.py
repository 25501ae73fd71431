"""The SDEI guests (guests/sdei/: the TF-A test scenarios and the Linux-like client) on 4 CPUs,
under the `virt` profile (HVC conduit) and the `firmware` profile (SMC conduit, EL3).

Each prints step lines and a verdict; the whole output must equal ``NAME.expected`` byte for
byte under both profiles (the output names no conduit), and the verdict must be PASS.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sdeilab.firmware.profiles import profile_named
from sdeilab.lab.platform import Platform, make_platform
from sdeilab.machine.outcome import StopReason
from sdeilab.toolchain import ShippedBuild, lab_guests
from sdeilab.trace.log import TraceLog

PROFILES = ["virt", "firmware"]  # HVC and SMC: sdei_elf picks the build each one answers
SCENARIOS = sorted(g.stem if g.is_file() else g.name for g in lab_guests())
_BY_NAME = {g.stem if g.is_file() else g.name: g for g in lab_guests()}


def sdei_elf(name: str, profile: str = "virt") -> Path:
    """The build whose conduit the profile answers: HVC where it can, else SMC."""
    variant = "" if "hvc" in profile_named(profile).conduits else "-smc"
    return ShippedBuild(_BY_NAME[name], variant).elf


def expected(name: str) -> bytes:
    return (_BY_NAME[name].parent / f"{name}.expected").read_bytes()


def run_scenario(name: str, profile: str = "virt", cpus: int = 4, **kwargs: object) -> tuple[Platform, TraceLog]:
    trace = TraceLog()
    platform = make_platform(cpus, profile, trace=trace, **kwargs)  # type: ignore[arg-type]
    platform.load(sdei_elf(name, profile))
    outcome = platform.run(2_000_000_000)
    output = bytes(platform.machine.uart_output).decode(errors="replace")
    assert outcome.reason is StopReason.SYSTEM_OFF, f"{outcome.reason}: {outcome.detail}\n{output}"
    return platform, trace


def test_every_scenario_is_shipped() -> None:
    assert "tftf_state" in SCENARIOS
    for name in SCENARIOS:
        assert (_BY_NAME[name].parent / f"{name}.expected").is_file(), name


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_passes_with_the_expected_output(name: str, profile: str) -> None:
    platform, _ = run_scenario(name, profile)
    output = bytes(platform.machine.uart_output)
    assert output.decode().splitlines()[-1] == f"{name}: PASS", output.decode()
    assert output == expected(name)


@pytest.mark.parametrize("profile", PROFILES)
def test_scenarios_use_the_profiles_conduit(profile: str) -> None:
    from sdeilab.trace.records import SmcccCall

    _, trace = run_scenario("tftf_state", profile)
    conduits = {call.conduit for call in trace.of_kind(SmcccCall)}
    assert conduits == {"hvc" if profile == "virt" else "smc"}
