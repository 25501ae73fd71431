"""Reverse execution for gdb (issue 16) in the Linux boot: a step back by one instruction of one
CPU (``Session.step_back(1, cpu=N)``), against the goal of under 1 s, about 10^9 instructions in.

The boot (2 CPUs, Debian's kernel and the hotplug init of tests/test_linux.py, as in
benchmarks/step_back.py) powers off at about 0.95 x 10^9 instructions, so the points are 9 x 10^8
instructions in and the boot's end. At each, for every CPU: ``step_back(1, cpu=N)`` twice, each
timed, with how far back (machine-wide) it went; a CPU that has been idle (WFI) for long lands far
back, and the replay from the last checkpoint before its previous instruction is what it costs.
Then gdb's own reverse-stepi over the wire on each thread (``Hc``, ``bs``: what the issue's goal
is about), a machine-wide ``step_back(1)``, and ``reverse_continue`` with an address
breakpoint on an instruction CPU 0 executed among its last four (a few of CPU 0's instructions
back, which is far back machine-wide when CPU 0 has been idle: the scan replays all of it) and
with none (the scan goes back over the whole boot to the start: a bound, not a goal).

Times are wall time on this host.

Run: .venv/bin/python benchmarks/reverse_step.py [--at N] [--no-full-scan]
"""

from __future__ import annotations

import argparse
import re
import socket
import tempfile
import time
from pathlib import Path

from sdeilab.lab.gdb_server import frame
from sdeilab.lab.platform import KernelBoot
from sdeilab.lab.session import Session

GOAL_S = 1.0


def verdict(seconds: float) -> str:
    return "meets the goal" if seconds < GOAL_S else "MISSES the goal"


def timed(what: str, call) -> object:  # type: ignore[no-untyped-def]
    began = time.perf_counter()
    result = call()
    took = time.perf_counter() - began
    print(f"  {what}: {took * 1000:.0f} ms ({verdict(took)} of {GOAL_S:.0f} s)", flush=True)
    return result


def ask(client: socket.socket, payload: bytes) -> bytes:
    """One remote-protocol packet and its reply (acknowledged), on a plain socket."""
    client.sendall(frame(payload))
    data = b""
    while True:
        data += client.recv(65536)
        match = re.search(rb"\$([^#]*)#[0-9a-f]{2}", data)
        if match:
            client.sendall(b"+")
            return match[1]


def at(boot: KernelBoot, instructions: int | None, what: str, full_scan: bool) -> None:
    session = Session(boot, cpus=2)
    began = time.perf_counter()
    info = session.run(instructions)
    print(f"{what}: ran {info.retired:,} instructions in {time.perf_counter() - began:.1f} s ({info.reason}); "
          f"{len(session.checkpoints)} checkpoints, the latest at {session.checkpoints[-1][0]:,}", flush=True)
    here = session.retired
    for cpu in range(session.cpus):
        for n in (1, 2):
            before = session.machine.cpu_retired[cpu]
            start = session.retired
            back = timed(f"CPU {cpu} step back #{n} by 1 of its instructions",
                         lambda cpu=cpu: session.step_back(1, cpu=cpu))
            assert session.machine.cpu_retired[cpu] == before - 1, back
            print(f"    CPU {cpu} at {before - 1:,} of its instructions; machine-wide {start - session.retired:,} "
                  f"instructions back, to {session.retired:,}")
        session.run(here - session.retired)  # forward to the point again (no breakpoint is set)
        assert session.retired == here
    # The same through gdb's protocol, as gdb-multiarch's reverse-stepi sends it: Hc selects the
    # thread, bs steps it back (the server first goes back over firmware work done to the CPU at its
    # count, then over one instruction: up to two replays).
    server = session.serve_gdb(0)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as client:
            for cpu in range(session.cpus):
                ask(client, b"Hc%x" % (cpu + 1))
                reply = timed(f"gdb reverse-stepi (bs) on thread {cpu + 1} (CPU {cpu})", lambda: ask(client, b"bs"))
                assert reply.startswith(b"T05"), reply  # type: ignore[attr-defined]
    finally:
        server.close()
    session.run(here - session.retired)
    assert session.retired == here
    timed("machine-wide step back by 1", lambda: session.step_back(1))
    session.step_back(4, cpu=0)
    pc = session.pc(0)  # an instruction CPU 0 executes within the last 4 of its own
    session.run(here - session.retired)
    assert session.retired == here
    session.add_breakpoint(pc, cpu=0)
    back = timed("reverse_continue to a breakpoint a few CPU 0 instructions back", session.reverse_continue)
    print(f"    landed: {back.reason} at {back.retired:,} on CPU {back.cpu}, "  # type: ignore[attr-defined]
          f"{here - back.retired:,} instructions back machine-wide")  # type: ignore[attr-defined]
    if full_scan:
        session.clear_breakpoints()
        session.run(here - session.retired)
        began = time.perf_counter()
        back = session.reverse_continue()
        took = time.perf_counter() - began
        print(f"  reverse_continue with no breakpoint, back over all {here:,} instructions to "
              f"{back.reason} ({back.retired}): {took:.1f} s")  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--at", type=int, default=9 * 10**8, help="instructions into the boot (default 9e8)")
    parser.add_argument("--no-full-scan", action="store_true", help="skip reverse_continue over the whole boot")
    args = parser.parse_args()
    from sdeilab.linux import busybox, kernel_image, write_initramfs  # needs the cached Debian packages

    with tempfile.TemporaryDirectory() as tmp:
        initrd = write_initramfs(Path(tmp) / "initramfs.cpio.gz", busybox())
        boot = KernelBoot(kernel_image(), initrd)
        at(boot, args.at, f"Linux boot (2 CPUs) at {args.at:.1e}", not args.no_full_scan)
        at(boot, None, "Linux boot (2 CPUs) to its end", False)


if __name__ == "__main__":
    main()
