"""Random SDEI and PSCI call sequences on a real TF-A and on the lab, byte for byte (issue 18 item 3).

tests/sdei_sequences.py turns a seed into guests (the runner in tests/sdei_random/ plus a
generated table of sequences), each built twice with the SMC conduit: linked at 0x6000_0000 to
run as TF-A's BL33 on qemu-system-aarch64, and at the lab's own address for the ``firmware``
profile; both sides run 8 CPUs. Every call's result is printed in hex, and the UART bytes must be
the same. :data:`GUESTS` x :data:`SEQUENCES` sequences per run, from a new seed each run unless
``SDEILAB_SEED`` names one; the seed is printed at the start of the run and in every failure.

Divergences with a known reason are kept out of the random sequences by the generator (its
``Choices``) and shown each by a fixed sequence (``sdei_sequences.DIVERGENCES``), expected to
differ (xfail, strict) in exactly the lines named there; docs/sdei.md lists them.

TF-A is built as test_tfa.py builds it (its fixtures): with CI=true a reference that cannot be
built fails the tier, elsewhere it is skipped.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from sdeilab.lab.platform import make_platform
from sdeilab.machine.machine import DEFAULT_QUANTUM
from sdeilab.machine.outcome import StopReason
from sdeilab.machine.qemu import bl33_binary, tfa_bios, tfa_command
from sdeilab.toolchain import build
from tests import sdei_sequences as seqs
from tests.sdei_sequences import CPUS, DIVERGENCES, RUNNER_SOURCES, Divergence, GuestText, generate
from tests.test_tfa import bl33_script, tfa_dir  # noqa: F401  (fixtures: the reference, the BL33 link)

pytestmark = [pytest.mark.tfa]

GUESTS = 10
SEQUENCES = 20  # per guest: 200 sequences per run
_SEED_TEXT = os.environ.get("SDEILAB_SEED", "").strip()
SEED = int(_SEED_TEXT, 0) if _SEED_TEXT else secrets.randbits(32)
TFA_TIMEOUT_S = 120.0
# A guest of 20 sequences retires under 1e6 instructions on the lab: 100x that is room enough, and a
# guest that hangs (the runner waits for a CPU's CPU_OFF without a bound) is reported in seconds.
LAB_INSTRUCTIONS = 100_000_000
WORKERS = max(2, min(4, os.cpu_count() or 2))
CONDUIT = {"CONDUIT_SMC": ""}
REPRODUCE = f"SDEILAB_SEED={SEED} pytest tests/test_tfa_random.py -m tfa"


@dataclass(frozen=True)
class Built:
    guest: GuestText
    folder: Path
    lab_elf: Path
    tfa_out: bytes


def _build_and_run_on_tfa(guest: GuestText, folder: Path, tfa: Path, script: Path) -> Built:
    """Both builds of ``guest``, and its UART0 bytes as TF-A's BL33 (QEMU, 8 CPUs)."""
    folder.mkdir(parents=True, exist_ok=True)
    table = folder / "table.c"
    table.write_text(guest.table, encoding="utf-8")
    lab_elf = build([*RUNNER_SOURCES, table], folder / f"{guest.name}.elf", defines=CONDUIT)
    tfa_elf = build([*RUNNER_SOURCES, table], folder / f"{guest.name}-bl33.elf", defines=CONDUIT,
                    linker_script=script)
    bl33 = folder / "bl33.bin"
    bl33.write_bytes(bl33_binary(tfa_elf))
    bios = tfa_bios(tfa, bl33, folder / "fw.bios")
    uart, log = folder / "uart0-tfa.bin", folder / "tfa.log"
    try:
        proc = subprocess.run(tfa_command(bios, CPUS, uart=uart, tfa_log=log), stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=TFA_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        out = uart.read_bytes() if uart.exists() else b""
        raise AssertionError(f"{guest.name} (seed {SEED}): TF-A+QEMU still running after {TFA_TIMEOUT_S} s; "
                             f"last UART0 lines:\n{_tail(out)}\n{REPRODUCE}") from exc
    out = uart.read_bytes() if uart.exists() else b""
    assert proc.returncode == 0, (f"{guest.name} (seed {SEED}): QEMU exit status {proc.returncode}\n"
                                  f"{proc.stderr.decode(errors='replace')}\n{_tail(out)}")
    return Built(guest, folder, lab_elf, out)


def run_on_lab(built: Built) -> bytes:
    platform = make_platform(CPUS, "firmware")
    platform.load(built.lab_elf)
    outcome = platform.run(LAB_INSTRUCTIONS)
    out = bytes(platform.machine.uart_output)
    (built.folder / "uart0-lab.bin").write_bytes(out)
    assert outcome.reason is StopReason.SYSTEM_OFF, (f"{built.guest.name} (seed {SEED}) on the lab: {outcome.reason}: "
                                                     f"{outcome.detail}\n{_tail(out)}\n{REPRODUCE}")
    return out


def _tail(out: bytes, lines: int = 15) -> str:
    return "\n".join(out.decode(errors="replace").splitlines()[-lines:])


def first_difference(tfa: bytes, lab: bytes) -> str:
    """The first differing line, with its sequence's lines up to there, both sides."""
    a, b = tfa.decode(errors="replace").splitlines(), lab.decode(errors="replace").splitlines()
    i = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    start = max((j for j in range(i + 1) if j < len(a) and a[j].startswith("seq ")), default=0)
    context = "\n".join(f"    {line}" for line in a[start:i])
    return (f"first difference at line {i + 1}, in:\n{context}\n"
            f"  TF-A: {a[i] if i < len(a) else '<end of output>'}\n"
            f"  lab:  {b[i] if i < len(b) else '<end of output>'}")


class _Pipeline:
    """Builds and TF-A runs in the background (a few at a time), in the order the tests want them."""

    def __init__(self, tfa: Path, script: Path, root: Path) -> None:
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="tfa-random")
        self._futures: dict[str, Future[Built]] = {}
        self._lock = threading.Lock()
        self._tfa, self._script, self._root = tfa, script, root

    def submit(self, guests: list[GuestText]) -> None:
        with self._lock:
            for g in guests:
                if g.name not in self._futures:
                    self._futures[g.name] = self._pool.submit(_build_and_run_on_tfa, g, self._root / g.name,
                                                              self._tfa, self._script)

    def result(self, guest: GuestText) -> Built:
        self.submit([guest])
        return self._futures[guest.name].result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


RANDOM_GUESTS = generate(SEED, GUESTS, SEQUENCES)


def _announce_seed(config: pytest.Config) -> None:
    """The seed on the terminal, outside pytest's capture, before the first sequence runs."""
    line = f"sdei random sequences: seed {SEED} ({GUESTS} guests x {SEQUENCES} sequences); reproduce: {REPRODUCE}"
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(line)


@pytest.fixture(scope="module")
def pipeline(request: pytest.FixtureRequest, tfa_dir: Path, bl33_script: Path,  # noqa: F811
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Pipeline]:
    _announce_seed(request.config)
    # The lab's first engine in a process scans the process's writable memory for Unicorn's register
    # file (sdeilab/cpu/unicorn_backend.py, _xregs_locator): a mapping that another thread drops
    # meanwhile is a segmentation fault. So the first platform is made before the threads start.
    make_platform(CPUS, "firmware")
    pipe = _Pipeline(tfa_dir, bl33_script, tmp_path_factory.mktemp("tfa-random"))
    pipe.submit(RANDOM_GUESTS)
    pipe.submit([d.guest for d in DIVERGENCES])
    yield pipe
    pipe.close()


def test_generator_is_deterministic_and_keeps_to_the_shared_events() -> None:
    a, b = generate(1234, 2, 5), generate(1234, 2, 5)
    assert a == b
    text = "".join(g.table for g in generate(99, 3, SEQUENCES))
    for lab_only in ("0x3e8ull", "0x3e9ull", "0x3eaull", "0x3ebull", "0x7d0ull", "0x1388ull", "0x1389ull"):
        assert lab_only not in text  # 1000, 1001, 1002, 1003, 2000, 5000, 5001: the lab's events only


def test_every_divergence_is_in_the_docs_table() -> None:
    """docs/sdei.md's 'Divergences from TF-A' table names exactly the divergences shown here."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "sdei.md").read_text(encoding="utf-8")
    section = text.split("## Divergences from TF-A", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \|", section, re.MULTILINE)
    assert sorted(documented) == sorted(d.name for d in DIVERGENCES)


def test_runner_output_does_not_depend_on_the_interleaving(tmp_path: Path) -> None:
    """The runner lets one CPU print at a time whatever the CPUs' relative speed: the lab's output
    is the same at any scheduling quantum. QEMU runs its vCPUs on host threads, so this is what
    makes TF-A's side repeatable. Without the handshake in runner.c (CPU k waits for CPU 0 to print
    CPU_ON's result) a quantum of a few instructions lets CPU 1's first line cut into that one."""
    call, handler = seqs.call, seqs.HANDLERS["handler_a"]
    secondary = seqs.Program("cpu 1", [call("SDEI_EVENT_REGISTER", 0, handler, 0xC0FFEE, 0, 0x8000_0001),
                                       call("SDEI_EVENT_ENABLE", 0), call("SDEI_PE_UNMASK"),
                                       call("SDEI_EVENT_SIGNAL", 0, 0x8000_0001), *seqs.Generator.cleanup()],
                             [seqs.Plan([call("SDEI_EVENT_STATUS", 0)])])
    program = seqs.Program("interleaving", [call("PSCI_VERSION"),
                                            seqs.Op("run on cpu 1: CPU_ON", kind=seqs.K_RUN_CPU, cpu=1, prog=secondary),
                                            call("SDEI_VERSION"), *seqs.Generator.cleanup()])
    table = tmp_path / "table.c"
    table.write_text(seqs.fixed_guest("interleaving", [program]).table, encoding="utf-8")
    elf = build([*RUNNER_SOURCES, table], tmp_path / "interleaving.elf", defines=CONDUIT)
    outputs: dict[int, str] = {}
    for quantum in (7, 61, 499, DEFAULT_QUANTUM):
        platform = make_platform(CPUS, "firmware", quantum=quantum)
        platform.load(elf)
        outcome = platform.run(LAB_INSTRUCTIONS)
        assert outcome.reason is StopReason.SYSTEM_OFF, f"quantum {quantum}: {outcome.reason}: {outcome.detail}"
        outputs[quantum] = bytes(platform.machine.uart_output).decode(errors="replace")
    lines = outputs[DEFAULT_QUANTUM].splitlines()
    assert lines[lines.index("  run on cpu 1: CPU_ON = 0x0") + 1] == "  [cpu 1] cpu 1"
    assert "    > handler_a #0: " in outputs[DEFAULT_QUANTUM] and lines[-1] == "done"
    for quantum, out in outputs.items():
        assert out == outputs[DEFAULT_QUANTUM], f"quantum {quantum}:\n{out}"


@pytest.mark.parametrize("guest", RANDOM_GUESTS, ids=[g.name for g in RANDOM_GUESTS])
def test_random_sequences_print_the_same_bytes(guest: GuestText, pipeline: _Pipeline) -> None:
    built = pipeline.result(guest)
    lab = run_on_lab(built)
    tfa = built.tfa_out
    assert tfa.decode(errors="replace").rstrip().endswith("done"), (
        f"{guest.name} (seed {SEED}) did not finish on TF-A:\n{_tail(tfa)}\n{REPRODUCE}")
    if tfa != lab:
        pytest.fail(f"{guest.name} (seed {SEED}): TF-A and the lab differ; {first_difference(tfa, lab)}\n"
                    f"outputs and table.c in {built.folder}\n{REPRODUCE}", pytrace=False)
    assert tfa.count(b"\nseq ") == guest.sequences


@pytest.mark.parametrize("divergence", [
    pytest.param(d, id=d.name, marks=pytest.mark.xfail(strict=True, raises=AssertionError, reason=d.what))
    for d in DIVERGENCES])
def test_known_divergence(divergence: Divergence, pipeline: _Pipeline) -> None:
    """Each known divergence differs exactly where docs/sdei.md says (else RuntimeError: a real
    failure); then the outputs are asserted equal, which fails (xfail). A fix makes it pass: XPASS,
    which strict turns into a failure, so the divergence is taken off the list."""
    built = pipeline.result(divergence.guest)
    lab = run_on_lab(built)
    tfa = built.tfa_out
    if tfa != lab:
        for side, out, pattern in (("TF-A", tfa, divergence.tfa_line), ("lab", lab, divergence.lab_line)):
            if not re.search(pattern, out.decode(errors="replace"), re.MULTILINE):
                raise RuntimeError(f"{divergence.name}: {side} no longer prints /{pattern}/; the divergence "
                                   f"changed: {first_difference(tfa, lab)}")
    assert tfa == lab, f"{divergence.name}: {divergence.what}"
