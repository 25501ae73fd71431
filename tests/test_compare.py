"""The comparison runner and the layer/cost summary on a real guest across profiles."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sdeilab.firmware.profiles import Profile
from sdeilab.lab.compare import compare, passed
from sdeilab.trace import LayerExit, SdeiDispatch, SmcccCall
from sdeilab.trace.costs import TransitionCosts

GUESTS = Path(__file__).resolve().parent.parent / "guests" / "sdei"


def build_for(profile: Profile) -> Path:
    return GUESTS / f"tftf_signal_serial{'' if 'hvc' in profile.conduits else '-smc'}.elf"


def test_the_same_guest_side_by_side() -> None:
    costs = TransitionCosts(guest_kvm_ns=1000, kvm_vmm_ns=10_000, guest_el3_ns=500, vmm_kick_ns=100_000)
    c = compare(build_for, ["firmware", "kvm", "kvm-vmm-sdei", "kvm-vmm-psci-sdei"], costs=costs)
    rows = {r["profile"]: r for r in c.rows()}
    assert [passed(c[p]) for p in ("firmware", "kvm", "kvm-vmm-sdei", "kvm-vmm-psci-sdei")] == [
        True, False, True, True]
    for run in c.runs:
        calls = run.trace.of_kind(SmcccCall)
        s = run.summary
        assert s.total_calls == len(calls)
        assert s.exits == run.trace.count(LayerExit) == s.calls.get("vmm", 0)
        assert s.dispatches == run.trace.count(SdeiDispatch)
        kick = 100_000 * s.dispatches if run.profile.services.get("sdei") == "vmm" else 0
        assert s.modelled_ns == (1000 * s.calls.get("kvm", 0) + 11_000 * s.calls.get("vmm", 0)
                                 + 500 * s.calls.get("el3", 0) + kick)
    # Same guest, same calls: only who answers them differs.
    assert rows["firmware"]["calls el3"] == rows["kvm-vmm-psci-sdei"]["calls vmm"] > 0
    assert rows["kvm-vmm-sdei"]["calls kvm"] > 0 and rows["kvm-vmm-sdei"]["calls vmm"] > 0  # PSCI vs SDEI
    assert rows["kvm"]["verdict"] == "FAIL" and rows["kvm"]["calls vmm"] == 0
    assert "kvm-vmm-psci-sdei" in c.table()
    cheaper = compare(build_for, ["kvm-vmm-sdei"], costs=replace(costs, kvm_vmm_ns=0))
    assert cheaper.runs[0].summary.modelled_ns < c["kvm-vmm-sdei"].summary.modelled_ns


def test_the_watchdog_table_on_every_profile() -> None:
    """The table notebook 11 shows: the VMM-device watchdog on all profiles."""
    from sdeilab.firmware.profiles import PROFILES

    c = compare(lambda p: GUESTS / f"vmm_watchdog{'' if 'hvc' in p.conduits else '-smc'}.elf", list(PROFILES))
    rows = {r["profile"]: r for r in c.rows()}
    assert {p: r["verdict"] for p, r in rows.items()} == {
        "virt": "PASS", "firmware": "PASS", "kvm": "FAIL", "kvm-vmm-sdei": "PASS", "kvm-vmm-psci-sdei": "PASS",
        "kvm-sdei": "FAIL"}
    for name, row in rows.items():
        run = c[name]
        layers = {lay for lay in ("kvm", "vmm", "el3") if row[f"calls {lay}"]}
        expected = {"firmware": {"el3"}, "kvm-vmm-sdei": {"kvm", "vmm"}, "kvm-vmm-psci-sdei": {"vmm"}}
        assert layers == expected.get(name, {"kvm"}), (name, row)
        assert row["exits to VMM"] == row["calls vmm"] == run.trace.count(LayerExit)
        assert row["SDEI dispatches"] == (3 if row["verdict"] == "PASS" else 0)
    # Forwarding costs: the same calls, answered further away.
    assert rows["kvm-vmm-psci-sdei"]["modelled µs"] > rows["kvm-vmm-sdei"]["modelled µs"] > rows["virt"]["modelled µs"]
