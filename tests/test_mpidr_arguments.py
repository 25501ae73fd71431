"""Every call that names a PE by MPIDR, with every encoding of it, against the implementation it models.

Bit 31 of MPIDR_EL1 is RES1, so a guest that passes its own MPIDR_EL1 value names CPU 0 as
0x8000_0000; U (bit 30), MT (bit 24) and the RES0 bits may be set too. Who reads what:

- SDEI (EVENT_SIGNAL's target, REGISTER's and ROUTING_SET's RM_PE affinity) follows TF-A, which
  finds the PE from the affinity fields alone (``plat_core_pos_by_mpidr`` masks Aff3..Aff0 first)
  and validates the flags and an RM_PE affinity before it looks at the event, private or shared;
  GET_INFO(ROUTING_AFF) returns the affinity as TF-A stored it, masked.
- PSCI (CPU_ON, AFFINITY_INFO) follows whoever implements it: KVM and QEMU answer
  INVALID_PARAMETERS when a bit outside the affinity fields is set (DEN0022D 5.1.4 says they must
  be zero), checked here against qemu-system-aarch64 itself; TF-A, the ``firmware`` profile's model,
  masks as for SDEI.

Machines of 17 CPUs put CPU 16 at Aff1 = 1 (QEMU virt with a GICv3: 16 PEs per cluster).
The expected answers below are computed from those rules, written out here on their own.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sdeilab.lab.platform import make_platform
from sdeilab.machine.outcome import StopReason
from sdeilab.machine.qemu import qemu_binary, qemu_virt_command
from sdeilab.toolchain import build, guests_dir

CPUS = 17
AFFINITY_FIELDS = 0xFF_00FF_FFFF
INVALID = -2  # INVALID_PARAMETERS, the same number in PSCI and SDEI (DEN0022D 5.2.2, DEN0054 table 5.2)
AFFINITIES = [((cpu // 16) << 8) | (cpu % 16) for cpu in range(CPUS)]
# (what, value): the PE's affinity or an absent one, and bits that are not affinity around it.
ENCODINGS = [
    ("cpu0", 0x0), ("cpu0 bit31", 0x8000_0000), ("cpu0 U", 0x4000_0000), ("cpu0 MT", 0x0100_0000),
    ("cpu0 RES0[29:25]", 0x3E00_0000), ("cpu0 RES0[63:40]", 0xFFFF_FF00_0000_0000),
    ("cpu0 all", 0xFFFF_FF00_FF00_0000),
    ("cpu1", 0x1), ("cpu1 bit31", 0x8000_0001), ("cpu9 Aff0=9", 0x9), ("cpu15", 0xF),
    ("cpu16 Aff1=1", 0x100), ("cpu16 bit31", 0x8000_0100), ("cpu16 MT U", 0x4100_0100),
    ("absent Aff0=16", 0x10), ("absent Aff1=2", 0x200), ("absent Aff2=1", 0x1_0000),
    ("absent Aff3=1", 0x1_0000_0000), ("absent Aff3=1 bit31", 0x1_8000_0000), ("absent Aff0=0xff", 0xFF),
]


def tfa_pe(mpidr: int) -> int | None:
    """TF-A: the PE whose affinity fields equal the argument's, whatever its other bits."""
    affinity = mpidr & AFFINITY_FIELDS
    return AFFINITIES.index(affinity) if affinity in AFFINITIES else None


def strict_pe(mpidr: int) -> int | None:
    """KVM and QEMU: any bit outside the affinity fields names no PE."""
    return AFFINITIES.index(mpidr) if mpidr in AFFINITIES else None


def encodings_table() -> str:
    rows = ",\n".join(f'    {{"{what}", {value:#x}ull}}' for what, value in ENCODINGS)
    return f"static const struct {{ const char *what; uint64_t mpidr; }} encodings[] = {{\n{rows}\n}};\n"


PSCI_PROBE = """
#include "guest.h"
%(table)s
int main(void)
{
    for (unsigned i = 0; i < sizeof(encodings) / sizeof(encodings[0]); i++) {
        uint64_t mpidr = encodings[i].mpidr;
        puts(encodings[i].what);
        puts(": AFFINITY_INFO64 "); put_dec(smccc_call(PSCI_AFFINITY_INFO64, mpidr, 0, 0));
        /* Only the powered-off and absent PEs: CPU_ON of CPU 0 itself would be ALREADY_ON either way,
         * and an accepted CPU_ON of another PE starts it at an entry that powers it off again. */
        puts(" CPU_ON64 "); put_dec(smccc_call(PSCI_CPU_ON64, mpidr, (uint64_t)psci_cpu_off, 0));
        puts("\\n");
        int64_t state;  /* wait until a PE started here is off again (ON 0, ON_PENDING 2) */
        while ((mpidr & 0xff00ffffffull)
               && ((state = smccc_call(PSCI_AFFINITY_INFO64, mpidr & 0xff00ffffffull, 0, 0)) == 0 || state == 2))
            ;
    }
    return 0;
}
"""

SDEI_PROBE = """
#include "sdei.h"
%(table)s
static volatile unsigned handled;
int sdei_event_handler(int64_t ev, uint64_t arg, uint64_t pc, uint64_t pstate)
{
    (void)ev, (void)arg, (void)pc, (void)pstate;
    handled++;
    return 0;
}

static void show(const char *what, int64_t value) { puts(what); put_dec(value); }

int main(void)
{
    int64_t shared = sdei_interrupt_bind(40);
    show("setup ", sdei_event_register(0, sdei_entrypoint, 0, SDEI_REGF_RM_PE, my_mpidr()));
    show(" ", sdei_event_enable(0));
    show(" ", sdei_pe_unmask());
    puts("\\n");
    for (unsigned i = 0; i < sizeof(encodings) / sizeof(encodings[0]); i++) {
        uint64_t mpidr = encodings[i].mpidr;
        unsigned before = handled;
        puts(encodings[i].what);
        show(": SIGNAL ", sdei_event_signal(0, mpidr));
        show(" handled ", handled - before);
        /* Event 0 is registered already: DENIED once the flags and affinity pass validation. */
        show(" PRIVATE_RM_PE ", sdei_event_register(0, sdei_entrypoint, 0, SDEI_REGF_RM_PE, mpidr));
        show(" PRIVATE_RM_ANY ", sdei_event_register(0, sdei_entrypoint, 0, SDEI_REGF_RM_ANY, mpidr));
        int64_t ret = sdei_event_register(shared, sdei_entrypoint, 0, SDEI_REGF_RM_PE, mpidr);
        show(" SHARED_RM_PE ", ret);
        show(" AFF ", sdei_event_get_info(shared, SDEI_INFO_EV_ROUTING_AFF));
        if (ret == 0)
            sdei_event_unregister(shared);
        sdei_event_register(shared, sdei_entrypoint, 0, SDEI_REGF_RM_ANY, 0);
        show(" ROUTING_SET_RM_PE ", sdei_event_routing_set(shared, SDEI_REGF_RM_PE, mpidr));
        show(" AFF ", sdei_event_get_info(shared, SDEI_INFO_EV_ROUTING_AFF));
        sdei_event_unregister(shared);
        puts("\\n");
    }
    return 0;
}
"""


def expected_psci(pe_of) -> bytes:
    lines = []
    for what, value in ENCODINGS:
        pe = pe_of(value)
        affinity_info = INVALID if pe is None else (0 if pe == 0 else 1)
        cpu_on = INVALID if pe is None else (-4 if pe == 0 else 0)  # ALREADY_ON for the caller itself
        lines.append(f"{what}: AFFINITY_INFO64 {affinity_info} CPU_ON64 {cpu_on}\n")
    return "".join(lines).encode()


def expected_sdei() -> bytes:
    """TF-A's answers (DEN0054 5.1.2, 5.1.12, 5.1.16 with TF-A's reading of the MPIDR argument)."""
    denied, lines = -3, ["setup 0 0 0\n"]
    for what, value in ENCODINGS:
        pe = tfa_pe(value)
        named = INVALID if pe is None else 0
        signal = 0 if pe == 0 else INVALID  # event 0 is registered and enabled on CPU 0 alone
        # An unregistered shared event's routing affinity is DENIED; RM_ANY's is INVALID_PARAMETERS.
        affinity = value & AFFINITY_FIELDS
        lines.append(f"{what}: SIGNAL {signal} handled {int(signal == 0)}"
                     f" PRIVATE_RM_PE {INVALID if pe is None else denied} PRIVATE_RM_ANY {denied}"
                     f" SHARED_RM_PE {named} AFF {denied if pe is None else affinity}"
                     f" ROUTING_SET_RM_PE {named} AFF {INVALID if pe is None else affinity}\n")
    return "".join(lines).encode()


@pytest.mark.parametrize("profile", ["virt", "firmware"])
def test_sdei_names_a_pe_as_tfa_does(tmp_path: Path, profile: str) -> None:
    elf = _build(tmp_path, "sdei_mpidr", SDEI_PROBE, smc=profile == "firmware")
    assert run_lab(elf, profile).decode() == expected_sdei().decode()


def _build(tmp_path: Path, name: str, text: str, smc: bool) -> Path:
    source = tmp_path / f"{name}.c"
    source.write_text(text % {"table": encodings_table()})
    library = [] if name.startswith("psci") else sorted((guests_dir() / "lib" / "sdei").glob("*.[cS]"))
    return build([*library, source], tmp_path / f"{name}{'-smc' if smc else ''}.elf",
                 defines={"CONDUIT_SMC": ""} if smc else {})


def run_lab(elf: Path, profile: str) -> bytes:
    platform = make_platform(CPUS, profile)
    platform.load(elf)
    outcome = platform.run(50_000_000)
    assert outcome.reason is StopReason.SYSTEM_OFF, outcome.detail
    return bytes(platform.machine.uart_output)


@pytest.mark.parametrize(("profile", "reading"), [("virt", strict_pe), ("firmware", tfa_pe)])
def test_psci_names_a_pe_as_its_implementer_does(tmp_path: Path, profile: str, reading) -> None:
    elf = _build(tmp_path, "psci_mpidr", PSCI_PROBE, smc=profile == "firmware")
    assert run_lab(elf, profile).decode() == expected_psci(reading).decode()


@pytest.mark.qemu
@pytest.mark.skipif(qemu_binary() is None, reason="qemu-system-aarch64 is not installed")
def test_psci_encodings_are_qemus(tmp_path: Path) -> None:
    """The reference itself: QEMU answers every encoding as the lab's virt profile does."""
    elf = _build(tmp_path, "psci_mpidr", PSCI_PROBE, smc=False)
    qemu = subprocess.run(qemu_virt_command(elf, CPUS), stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=120, check=True).stdout
    assert qemu.decode() == run_lab(elf, "virt").decode()
