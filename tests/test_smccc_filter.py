"""KVM's SMCCC filter: the error cases behave as arch/arm64/kvm/hypercalls.c does (reference section 6)."""

from __future__ import annotations

import errno

import pytest

from sdeilab.firmware.smccc_filter import FilterAction, FilterError, SmcccFilter

HANDLE, DENY, FWD = FilterAction.HANDLE, FilterAction.DENY, FilterAction.FWD_TO_USER
SDEI_BASE, PSCI_BASE = 0xC400_0020, 0x8400_0000


def fails(code: int, vm_filter: SmcccFilter, base: int, nr: int, action: int = FWD, pad: bytes = bytes(15)) -> str:
    with pytest.raises(FilterError) as caught:
        vm_filter.install(base, nr, action, pad)
    assert caught.value.errno == code, str(caught.value)
    return str(caught.value)


def test_unfiltered_calls_are_handled_and_ranges_apply_to_their_ids_only() -> None:
    f = SmcccFilter()
    assert f.action(SDEI_BASE) is HANDLE and not f.configured
    f.install(SDEI_BASE, 0x20, FWD)
    f.install(PSCI_BASE, 0x20, DENY)
    assert f.configured
    assert f.action(SDEI_BASE) is FWD and f.action(SDEI_BASE + 0x1F) is FWD
    assert f.action(SDEI_BASE - 1) is HANDLE and f.action(SDEI_BASE + 0x20) is HANDLE
    assert f.action(PSCI_BASE + 3) is DENY
    assert [str(r) for r in f.ranges] == ["[0x84000000, 0x84000020) DENY", "[0xc4000020, 0xc4000040) FWD_TO_USER"]


@pytest.mark.parametrize("base", [0x8000_0000, 0x8000_8000, 0xC000_0000, 0xC000_FFFF, 0x7FFF_FFF0])
def test_the_arm_architecture_ranges_are_reserved(base: int) -> None:
    # Workaround calls can never be forwarded: a VMM cannot misreport Spectre mitigation status.
    message = fails(errno.EEXIST, SmcccFilter(), base, 0x20)
    assert "reserved Arm architecture range" in message


def test_overlapping_ranges_are_refused_and_adjacent_ones_accepted() -> None:
    f = SmcccFilter()
    f.install(SDEI_BASE, 0x20, FWD)
    fails(errno.EEXIST, f, SDEI_BASE + 0x1F, 1)
    fails(errno.EEXIST, f, SDEI_BASE - 1, 2)
    fails(errno.EEXIST, f, 0xC400_0000, 0x100)  # covers it entirely
    f.install(SDEI_BASE + 0x20, 1, DENY)  # adjacent: fine
    f.install(SDEI_BASE - 0x20, 0x20, HANDLE)


@pytest.mark.parametrize(("base", "nr", "action", "pad"), [
    (SDEI_BASE, 0, FWD, bytes(15)),  # empty
    (0, 0, FWD, bytes(15)),  # empty at 0: EINVAL (the 2026 fix), not EEXIST
    (0xFFFF_FFF0, 0x20, FWD, bytes(15)),  # wraps
    (SDEI_BASE, 0x20, 3, bytes(15)),  # no such action
    (SDEI_BASE, 0x20, FWD, b"\x01" + bytes(14)),  # pad not zero
])
def test_bad_configurations_are_einval(base: int, nr: int, action: int, pad: bytes) -> None:
    fails(errno.EINVAL, SmcccFilter(), base, nr, action, pad)


def test_installing_after_a_vcpu_ran_is_ebusy() -> None:
    ran = False
    f = SmcccFilter(vm_has_run=lambda: ran)
    f.install(SDEI_BASE, 0x20, FWD)
    ran = True
    message = fails(errno.EBUSY, f, PSCI_BASE, 0x20)
    assert message.startswith("EBUSY")
    assert f.action(PSCI_BASE) is HANDLE  # nothing changed
