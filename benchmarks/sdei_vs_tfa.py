"""The SDEI and SMC round trips on the lab against TF-A on QEMU (cortex-a57, cortex-a53), in one run (issue 18).

One guest, benchmarks/guests/sdei_tfa_bench.S, built with the SMC conduit: N events, each
EVENT_SIGNAL(0, this PE) -> handler -> EVENT_COMPLETE (DEN0054 5.1.16, 5.1.6), then N plain
SMC PSCI_VERSION calls (DEN0022D 5.1.1), then SYSTEM_OFF. Three builds of it: N events and no
calls, N calls and no events, and neither ("empty": boot, set-up, SYSTEM_OFF). It replaces the
"SDEI at most 4x one HVC" target of benchmarks/sdei_speed.py (retired by issue 18) with the real
peer:

* TF-A: scripts/build-tfa.sh's build (TF-A 2.12.1 for QEMU's ``virt``, SDEI + EHF + GICv3, cached in
  .cache/tfa), each build linked at 0x6000_0000 as its BL33, on ``qemu-system-aarch64 -M
  virt,gic-version=3,secure=on -smp 1`` with ``-cpu cortex-a57`` and with ``-cpu cortex-a53`` (the
  same TF-A build: its ``qemu`` platform links both CPUs' support).
* The lab: the same builds linked at the lab's address, on ``make_platform(1, "firmware")``. Each
  build's lines, but for the tick counts, must be the same on the lab and on TF-A.

Two tables, each "best of ``--tries``" (a shared machine only ever adds time), the sides alternating:

1. Real time. TF-A is timed **by the guest**: it reads CNTVCT_EL0 before and after each loop and
   prints the ticks and CNTFRQ_EL0; QEMU runs without -icount, so its counter follows the host
   clock, and QEMU's start-up and TF-A's boot are left out. The lab's counter is virtual (it counts
   instructions), so the lab is timed from the host: wall time of ``run()``, N build less empty
   build, over N.
2. CPU time, the cross-check for a busy machine, where real time also counts the time either
   side waited for a CPU: QEMU's user + system time (``getrusage`` of the child), N build less
   empty build (QEMU's start-up and TF-A's boot cancel out), over N; the lab's thread CPU time of
   ``run()``, likewise.

The lab's per-event Python work: a run of the N-event build with ``Machine.conduit`` (the Python
path an SMC takes: SMCCC dispatch, the SDEI call, and for EVENT_SIGNAL the delivery into the handler
that follows it) timed with perf_counter; its share of that run's wall time (both wall time, so a
busy machine inflates them alike), applied to the lab's CPU round trip. The rest of the round trip is
Unicorn (the guest's instructions, the compiled hooks, entering and leaving the Python hook) and the
run loop. A cProfile run adds how many Python function calls one event costs and where the profiled
time goes.

Goals (issue 18 item 4): the lab's SDEI round trip at most TF-A-on-QEMU-a57's (ratio <= 1x),
stretch at most a53's. Ratios are printed, not asserted: the script fails only if a guest
misbehaves (wrong counts or lines, a lab run that does not end in SYSTEM_OFF, QEMU not exiting 0).

Run: .venv/bin/python benchmarks/sdei_vs_tfa.py [--quick] [--count N] [--tries K]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sdeilab.lab.platform import make_platform
from sdeilab.machine.outcome import StopReason
from sdeilab.machine.qemu import TFA_BL33_ADDRESS, bl33_binary, qemu_binary, tfa_bios, tfa_command
from sdeilab.toolchain import build, linker_script_at

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SOURCE = HERE / "guests" / "sdei_tfa_bench.S"
QEMU_CPUS = ("cortex-a57", "cortex-a53")
QEMU_TIMEOUT_S = 300.0
BUILD_TIMEOUT_S = 1800.0
LAB_INSTRUCTIONS = 2_000_000_000

_REPORT = re.compile(
    r"sdei round trips: (?P<signalled>\d+) signalled, (?P<handled>\d+) handled\n"
    r"sdei ticks: (?P<sdei_ticks>\d+)\n"
    r"smc PSCI_VERSION: (?P<calls>\d+) calls, version (?P<version>0x[0-9a-f]+)\n"
    r"smc ticks: (?P<smc_ticks>\d+)\n"
    r"cntfrq: (?P<cntfrq>\d+)\n"
    r"bench: PASS\n\Z")


class Misbehaved(Exception):
    """A guest printed something else than the benchmark's lines, or did not power off."""


@dataclass(frozen=True)
class Report:
    """What the guest printed."""

    text: str
    sdei_ticks: int
    smc_ticks: int
    cntfrq: int
    version: str

    def without_ticks(self) -> str:
        """The lines that must be the same on every side."""
        return "\n".join(line for line in self.text.splitlines() if "ticks:" not in line)


def parse(side: str, out: bytes, events: int, calls: int) -> Report:
    text = out.decode(errors="replace")
    m = _REPORT.search(text)
    if m is None:
        raise Misbehaved(f"{side}: not the benchmark's lines:\n{text[-2000:]}")
    if (int(m["signalled"]), int(m["handled"]), int(m["calls"])) != (events, events, calls):
        raise Misbehaved(f"{side}: expected {events} events and {calls} calls:\n{text}")
    if int(m["cntfrq"]) == 0:
        raise Misbehaved(f"{side}: CNTFRQ_EL0 reads 0")
    return Report(text, int(m["sdei_ticks"]), int(m["smc_ticks"]), int(m["cntfrq"]), m["version"])


# ----------------------------------------------------------------------------------- TF-A on QEMU
def tfa_folder() -> Path:
    """scripts/build-tfa.sh's folder (built on first use, then cached in .cache/tfa)."""
    if qemu_binary() is None:
        sys.exit("sdei_vs_tfa: qemu-system-aarch64 is not installed")
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "build-tfa.sh")], cwd=ROOT, capture_output=True,
                          text=True, timeout=BUILD_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        sys.exit(f"sdei_vs_tfa: scripts/build-tfa.sh failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class TfaRun:
    cpu: float  # QEMU's user + system CPU seconds, start-up and TF-A's boot included
    report: Report  # with the guest's own tick counts


def run_tfa(bios: Path, cpu: str, work: Path, events: int, calls: int) -> TfaRun:
    """One QEMU run of the BL33 flash image on ``cpu``: the guest's timings and QEMU's CPU time."""
    uart = work / f"uart0-{cpu}.bin"
    uart.unlink(missing_ok=True)
    cmd = tfa_command(bios, 1, uart=uart, cpu=cpu)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=QEMU_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        out = uart.read_bytes() if uart.exists() else b""
        raise Misbehaved(f"TF-A {cpu}: still running after {QEMU_TIMEOUT_S} s; UART0: {out!r}") from exc
    out = uart.read_bytes() if uart.exists() else b""
    if proc.returncode != 0:  # TF-A's SYSTEM_OFF powers QEMU off with status 0
        raise Misbehaved(f"TF-A {cpu}: QEMU exit status {proc.returncode}: {proc.stderr.decode(errors='replace')}"
                         f"\nUART0: {out!r}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # QEMU is this process's only child meanwhile
    spent = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return TfaRun(spent, parse(f"TF-A {cpu}", out, events, calls))


# ------------------------------------------------------------------------------------------ the lab
@dataclass(frozen=True)
class LabRun:
    wall: float
    cpu: float
    conduit: float  # seconds inside Machine.conduit (the Python path of every SMC)
    report: Report


def run_lab(elf: Path, events: int, calls: int, *, time_conduit: bool = False,
            profile: cProfile.Profile | None = None) -> LabRun:
    """One run on the lab; with ``time_conduit`` also the time inside ``Machine.conduit`` (which
    costs the run a little: the timing runs go without it)."""
    platform = make_platform(1, "firmware")
    platform.load(elf)
    machine = platform.machine
    spent = [0.0]
    if time_conduit:
        inner, clock = machine.conduit, time.perf_counter

        def conduit(cpu: int, kind: str, executed: int) -> None:  # the engine looks the method up on each SMC
            start = clock()
            try:
                inner(cpu, kind, executed)
            finally:
                spent[0] += clock() - start

        machine.conduit = conduit  # type: ignore[method-assign]
    if profile is not None:
        profile.enable()
    wall, cpu = time.perf_counter(), time.thread_time()
    outcome = platform.run(LAB_INSTRUCTIONS)
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    if profile is not None:
        profile.disable()
    out = bytes(machine.uart_output)
    if outcome.reason is not StopReason.SYSTEM_OFF:
        raise Misbehaved(f"lab: {outcome.reason}: {outcome.detail}\n{out.decode(errors='replace')}")
    return LabRun(wall, cpu, spent[0], parse("lab", out, events, calls))


def profile_lab(event_elf: Path, empty_elf: Path, events: int) -> tuple[float, list[tuple[str, float]]]:
    """Python function calls per event, and the profiled time's top functions (share of the total)."""
    stats = []
    for elf, n in ((event_elf, events), (empty_elf, 0)):
        prof = cProfile.Profile()
        run_lab(elf, n, 0, profile=prof)
        stats.append(pstats.Stats(prof))
    per_event = (stats[0].total_calls - stats[1].total_calls) / events  # type: ignore[attr-defined]
    table = stats[0].stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in table.values())
    top = sorted(table.items(), key=lambda kv: kv[1][2], reverse=True)[:6]
    named = [(f"{Path(file).name}:{line}({name})" if file != "~" else name, entry[2] / total)
             for (file, line, name), entry in top]
    return per_event, named


# ------------------------------------------------------------------------------------------- main
def _ratio(lab: float, tfa: float) -> float:
    """lab / tfa; NaN where a difference of two runs came out as no time (a run of a few round trips)."""
    return lab / tfa if tfa > 0 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 round trips, 2 tries (a smoke run)")
    parser.add_argument("--count", type=int, help="round trips of each kind (default 50,000)")
    parser.add_argument("--tries", type=int, help="runs of each measurement; the fastest counts (default 3)")
    args = parser.parse_args()
    n = args.count or (2_000 if args.quick else 50_000)
    tries = max(1, args.tries or (2 if args.quick else 3))
    tfa = tfa_folder()
    qemu_version = subprocess.run([qemu_binary() or "qemu-system-aarch64", "--version"], capture_output=True,
                                  text=True, check=False).stdout.splitlines()[0]
    kinds = {"sdei": (n, 0), "smc": (0, n), "empty": (0, 0)}  # (events, PSCI_VERSION calls)
    with tempfile.TemporaryDirectory(prefix="sdei-vs-tfa-") as tmp:
        work = Path(tmp)
        script = linker_script_at(TFA_BL33_ADDRESS, work)
        lab_elf: dict[str, Path] = {}
        bios: dict[str, Path] = {}
        for kind, (e, c) in kinds.items():
            defines = {"CONDUIT_SMC": "", "SDEI_COUNT": str(e), "SMC_COUNT": str(c)}
            lab_elf[kind] = build([SOURCE], work / f"{kind}.elf", defines=defines)
            bl33 = build([SOURCE], work / f"{kind}-bl33.elf", defines=defines, linker_script=script)
            (work / f"{kind}.bin").write_bytes(bl33_binary(bl33))
            bios[kind] = tfa_bios(tfa, work / f"{kind}.bin", work / f"{kind}.bios")

        qemu: dict[tuple[str, str], list[TfaRun]] = {(cpu, kind): [] for cpu in QEMU_CPUS for kind in kinds}
        lab: dict[str, list[LabRun]] = {kind: [] for kind in kinds}
        hooked: dict[str, list[LabRun]] = {kind: [] for kind in kinds}
        for _ in range(tries):  # the sides alternate, so a busy spell of the machine is shared out
            for kind, (e, c) in kinds.items():
                lab[kind].append(run_lab(lab_elf[kind], e, c))
                for cpu in QEMU_CPUS:
                    run = run_tfa(bios[kind], cpu, work, e, c)
                    # The same source and counts: the same lines, but for the ticks.
                    if run.report.without_ticks() != lab[kind][-1].report.without_ticks():
                        raise Misbehaved(f"TF-A {cpu} and the lab differ:\n{run.report.text}\n"
                                         f"--- lab:\n{lab[kind][-1].report.text}")
                    qemu[cpu, kind].append(run)
        for _ in range(tries):
            for kind in ("sdei", "smc"):
                hooked[kind].append(run_lab(lab_elf[kind], *kinds[kind], time_conduit=True))
        calls_per_event, top = profile_lab(lab_elf["sdei"], lab_elf["empty"], n)

    def lab_per(kind: str, field: str) -> float:
        """Seconds per round trip: best of the N build less best of the empty build, over N."""
        return (min(getattr(r, field) for r in lab[kind]) - min(getattr(r, field) for r in lab["empty"])) / n

    def tfa_guest(cpu: str, kind: str) -> float:
        """Seconds per round trip by the guest's counter (its loop only), best run."""
        ticks = "sdei_ticks" if kind == "sdei" else "smc_ticks"
        return min(getattr(r.report, ticks) / r.report.cntfrq for r in qemu[cpu, kind]) / n

    def tfa_cpu(cpu: str, kind: str) -> float:
        """QEMU's CPU seconds per round trip: best N run less best empty run, over N."""
        return (min(r.cpu for r in qemu[cpu, kind]) - min(r.cpu for r in qemu[cpu, "empty"])) / n

    us = 1e6
    a57, a53 = QEMU_CPUS
    rows = [("SDEI  SIGNAL -> handler -> COMPLETE", "sdei"), ("SMC   PSCI_VERSION", "smc")]
    print(f"{n:,} round trips of each kind, one guest (benchmarks/guests/sdei_tfa_bench.S, SMC conduit), "
          f"best of {tries} tries")
    print(f"  TF-A {tfa.name} on {qemu_version}, -smp 1")
    print("  lab: `firmware` profile, 1 CPU")
    ratio: dict[tuple[str, str], tuple[float, float]] = {}
    for title, lab_field, tfa_time in (
            ("real time: TF-A by the guest's CNTVCT_EL0 around its loop; lab: wall time of run(), N build - empty",
             "wall", tfa_guest),
            ("CPU time: TF-A: QEMU's user+sys, N build - empty build; lab: run()'s thread, N build - empty",
             "cpu", tfa_cpu)):
        print()
        print(f"  {title}")
        print(f"  {'round trip':36} {'lab':>9} {'TF-A a57':>9} {'TF-A a53':>9} {'lab/a57':>8} {'lab/a53':>8}")
        for label, kind in rows:
            mine, t57, t53 = lab_per(kind, lab_field), tfa_time(a57, kind), tfa_time(a53, kind)
            ratio[lab_field, kind] = (_ratio(mine, t57), _ratio(mine, t53))
            print(f"  {label:36} {mine * us:7.2f}us {t57 * us:7.2f}us {t53 * us:7.2f}us"
                  f" {_ratio(mine, t57):7.2f}x {_ratio(mine, t53):7.2f}x")
    print()
    for field, name in (("wall", "real time"), ("cpu", "CPU time")):
        r57, r53 = ratio[field, "sdei"]
        print(f"  goal, in {name}: lab SDEI <= TF-A a57: {r57:.2f}x {'met' if r57 <= 1 else 'NOT met'};"
              f" stretch, lab SDEI <= TF-A a53: {r53:.2f}x {'met' if r53 <= 1 else 'not met'}")
    # The Python share of a round trip: time inside Machine.conduit over run()'s wall time, in the
    # least disturbed (fastest) hooked run; both are wall time, so a busy machine inflates both alike.
    quiet = min(hooked["sdei"], key=lambda r: r.wall)
    share = quiet.conduit / quiet.wall
    print()
    print(f"  lab's Python work per event: {share:.0%} of run() is inside Machine.conduit (the SMCCC dispatch, SDEI's"
          f" SIGNAL with the delivery that follows it, COMPLETE),")
    print(f"    so about {share * lab_per('sdei', 'cpu') * us:.2f} us of the lab's {lab_per('sdei', 'cpu') * us:.2f} us"
          " (CPU time) round trip; the rest is Unicorn (guest code, compiled hooks, entering the Python hook)"
          " and the run loop")
    smc_quiet = min(hooked["smc"], key=lambda r: r.wall)
    print(f"  per PSCI_VERSION: {smc_quiet.conduit / smc_quiet.wall:.0%} inside Machine.conduit;"
          f" {calls_per_event:.0f} Python function calls per event (cProfile, N build - empty build)")
    print("  cProfile's top functions by own time (share of the profiled N-event run):")
    for name, share in top:
        print(f"    {share:6.1%}  {name}")


if __name__ == "__main__":
    try:
        main()
    except Misbehaved as error:
        sys.exit(f"sdei_vs_tfa: a guest misbehaved: {error}")
