"""Step back and reset against issue 13's goals: a step back under 1 s wherever the run stands,
a reset of a 4-CPU platform under 50 ms.

* Step back by 1 instruction at 10^6 and 10^8 instructions into a run of ``busy_forever`` (4
  CPUs that never stop: each writes through its own MiB of RAM and signals SDEI event 0 to the
  next CPU every few thousand rounds, benchmarks/guests/busy_forever.c), in a debugger Session:
  the run there (taking its checkpoints), then ``step_back(1)`` twice, each timed. The first
  step back lands within one quantum of the latest checkpoint; the state it reaches is checked
  against a run straight to that count (``--check``, at 10^6 only: it costs another run).
* With ``--linux``, the same at 9 x 10^8 instructions into the Linux boot (2 CPUs, Debian's
  kernel and the hotplug init of tests/test_linux.py), and at its end: the boot powers off
  (PSCI SYSTEM_OFF) at about 0.95 x 10^9 instructions, so 10^9 itself is not in the run; the
  last instruction before SYSTEM_OFF is the nearest point to it.
* What the checkpoints cost: the 10^8 run of busy_forever without any checkpoint but the first.
* Reset of a 4-CPU platform after ``tftf_state`` ran to its end: ``Machine.reset()``, and a
  Session's ``reset()`` (its first checkpoint restored), against building a new platform and
  loading the guest (what the Session did before it kept checkpoints).

Times are wall time on this host, the best of ``--rounds`` for the resets.

Run: .venv/bin/python benchmarks/step_back.py [--rounds N] [--check] [--linux]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sdeilab.lab import session as session_module
from sdeilab.lab.platform import KernelBoot, make_platform
from sdeilab.lab.session import Session
from sdeilab.toolchain import build, lib_dir

HERE = Path(__file__).resolve().parent
GUESTS = HERE.parent / "guests"
STEP_BACK_GOAL_S = 1.0
RESET_GOAL_S = 0.050


def verdict(seconds: float, goal: float) -> str:
    return "meets the goal" if seconds < goal else "MISSES the goal"


def busy_forever(folder: Path) -> Path:
    sdei_library = sorted((lib_dir() / "sdei").glob("*.[cS]"))
    return build([HERE / "guests" / "busy_forever.c", *sdei_library], folder / "busy_forever.elf")


def step_back_at(session: Session, instructions: int | None, what: str, check: Path | None = None) -> float:
    """Run to ``instructions`` (None: to the guest's end), step back by 1 twice; the run's time."""
    began = time.perf_counter()
    info = session.run(instructions)
    ran = time.perf_counter() - began
    assert info.reason == ("budget" if instructions is not None else "system-off"), info
    instructions = info.retired
    print(f"{what}: ran {instructions:,} instructions in {ran:.1f} s ({info.reason}); "
          f"{len(session.checkpoints)} checkpoints holding {session.checkpoint_bytes / 2**20:.1f} MiB of RAM, "
          f"the latest at {session.checkpoints[-1][0]:,} instructions")
    for n in (1, 2):
        began = time.perf_counter()
        back = session.step_back(1)
        took = time.perf_counter() - began
        assert back.retired == instructions - n
        print(f"  step back #{n} by 1 instruction, to {back.retired:,}: {took * 1000:.0f} ms "
              f"({verdict(took, STEP_BACK_GOAL_S)} of {STEP_BACK_GOAL_S:.0f} s)")
    if check is not None:
        fresh = Session(check, cpus=session.cpus)
        fresh.run(session.retired)
        same = (list(fresh.trace) == list(session.trace) and bytes(fresh.machine.ram) == bytes(session.machine.ram)
                and [fresh.registers(c) for c in range(fresh.cpus)] == [session.registers(c)
                                                                       for c in range(session.cpus)])
        print(f"  the state reached equals a run straight there: {same}")
        assert same
    return ran


def resets(rounds: int) -> None:
    guest = GUESTS / "sdei" / "tftf_state.elf"
    machine_resets, session_resets, rebuilds = [], [], []
    session = Session(guest, cpus=4)
    for _ in range(rounds):
        platform = make_platform(4)
        platform.load(guest)
        platform.run()
        began = time.perf_counter()
        platform.machine.reset()
        machine_resets.append(time.perf_counter() - began)
        session.run()
        began = time.perf_counter()
        session.reset()
        session_resets.append(time.perf_counter() - began)
        began = time.perf_counter()
        make_platform(4).load(guest)
        rebuilds.append(time.perf_counter() - began)
    best = min(machine_resets)
    print(f"reset of a 4-CPU platform after {guest.name} ran (best of {rounds}):")
    print(f"  Machine.reset():  {best * 1000:.1f} ms ({verdict(best, RESET_GOAL_S)} of {RESET_GOAL_S * 1000:.0f} ms)")
    best = min(session_resets)
    print(f"  Session.reset():  {best * 1000:.1f} ms ({verdict(best, RESET_GOAL_S)}; its first checkpoint restored)")
    print(f"  a new platform with the guest loaded, for comparison: {min(rebuilds) * 1000:.1f} ms")


def linux(instructions: int) -> None:
    from sdeilab.linux import busybox, kernel_image, write_initramfs  # needs the cached Debian packages

    with tempfile.TemporaryDirectory() as tmp:
        initrd = write_initramfs(Path(tmp) / "initramfs.cpio.gz", busybox())
        boot = KernelBoot(kernel_image(), initrd)
        step_back_at(Session(boot, cpus=2), instructions, f"Linux boot (2 CPUs) at {instructions:.0e}")
        step_back_at(Session(boot, cpus=2), None, "Linux boot (2 CPUs) to its end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--check", action="store_true", help="check the state a step back reaches at 10^6")
    parser.add_argument("--linux", action="store_true", help="also step back 9e8 instructions into the Linux boot")
    args = parser.parse_args()
    print(f"checkpoints: one at load, then one per {session_module.CHECKPOINT_SECONDS} s of running; at most "
          f"{session_module.CHECKPOINT_COUNT}, holding at most {session_module.CHECKPOINT_MEMORY >> 20} MiB of RAM")
    resets(args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        guest = busy_forever(Path(tmp))
        for instructions in (10**6, 10**8):
            session = Session(guest, cpus=4)
            ran = step_back_at(session, instructions, f"busy_forever (4 CPUs) at {instructions:.0e}",
                               check=guest if args.check and instructions == 10**6 else None)
        every, session_module.CHECKPOINT_SECONDS = session_module.CHECKPOINT_SECONDS, float("inf")
        began = time.perf_counter()
        Session(guest, cpus=4).run(10**8)
        bare = time.perf_counter() - began
        session_module.CHECKPOINT_SECONDS = every
        print(f"the same 10^8 instructions without checkpoints: {bare:.1f} s (with them {ran:.1f} s, "
              f"{(ran - bare) / bare:+.0%})")
    if args.linux:
        linux(9 * 10**8)


if __name__ == "__main__":
    main()
