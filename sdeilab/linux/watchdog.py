"""The NMI-watchdog story with a real client: drive a boot that loads guests/linux/sdei_watchdog.

The host finds its moments without guessing: a UART listener stops the run right after the
module's load line, which prints the spinner's address and size (``%px %pS``); the run goes on
to an address breakpoint at the spinner; the spin loop is read from the spinner's code as the
CPU fetches it; each event is raised a fixed number of instructions later, the CPU being in that
loop. Those are debugger stops: they leave no fact in the trace. Used by
tests/test_linux_module.py and notebooks/40_linux_sdei_driver.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sdeilab.lab.platform import Platform
from sdeilab.machine.disasm import disassemble
from sdeilab.machine.outcome import RunOutcome, StopReason
from sdeilab.trace import SdeiComplete, TraceLog

MODULE = "sdei_watchdog"
LOADED = re.compile(rb"sdei_watchdog: event (\d+) registered and enabled; spinner ([0-9a-f]{16}) "
                    rb"sdei_wd_spin\+0x0/0x([0-9a-f]+)")
BRANCH = re.compile(r"^(?:b\.\w+|cbn?z|tbn?z) .*#(0x[0-9a-f]+)$")
HANDLER_WAITS = 100  # settle periods a raised event may take to complete (the handler: a few thousand instructions)


def spin_init(event: int = 5000, cpu: int = 1, events: int = 3) -> str:
    """An ``/init`` that loads the module (``/sdei_watchdog.ko`` in the initramfs) for ``event``,
    makes ``cpu`` spin with IRQs masked until ``events`` events (or the spin's loop bound) and
    powers off: the scenario a debugger drives from outside (tests/test_gdb_linux.py,
    docs/debugging.md), raising the event itself while the CPU spins."""
    return f"""#!/bin/busybox sh
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb insmod /{MODULE}.ko event={event} || echo "{MODULE}: insmod failed"
P=/sys/module/{MODULE}/parameters
echo {events} > $P/spin_events
echo {cpu} > $P/spin
$bb poweroff -f
"""


class WatchdogError(RuntimeError):
    """The boot did not reach a point the story needs (the module's line, the spinner, a COMPLETE)."""


@dataclass
class WatchdogRun:
    outcome: RunOutcome
    uart: str
    event: int  # the event the module said it registered
    spinner: range  # the spinner's addresses, as the module reported them
    loop: range  # its loop: from a backward branch's target to that branch
    spin_cpu: int
    raised: int
    raised_in_loop: list[bool]  # whether the spinning CPU was in the loop at each raise
    trace: TraceLog


def spin_loop(code: list[tuple[int, str]], spinner: range) -> range:
    """The spinner's loop: the one conditional branch that goes back inside the function (the
    compiler's ``while``, sdei_wd_spin in the module)."""
    loops = [range(int(m[1], 16), address + 4) for address, text in code
             if (m := BRANCH.match(text)) and spinner.start <= int(m[1], 16) < address]
    if len(loops) != 1:
        raise WatchdogError(f"expected one backward branch in the spinner, found {len(loops)}: {code}")
    return loops[0]


def run_watchdog(platform: Platform, event: int, raises: int, settle: int, budget: int) -> WatchdogRun:
    """Boot to the module's load line, break at its spinner, raise ``event`` ``raises`` times on the
    spinning CPU, ``settle`` instructions apart, then run to the end."""
    machine = platform.machine
    sdei = platform.sdei
    if sdei is None:
        raise WatchdogError(f"profile {platform.profile.name} offers no SDEI")
    line = bytearray()

    def listen(byte: int) -> None:  # stop right after the module's load line (a debugger stop)
        line.append(byte)
        if byte == 0x0A:
            if LOADED.search(line):
                machine.request_break(StopReason.PAUSED, "the module is loaded")
            line.clear()

    machine.uart_sinks.append(listen)
    outcome = machine.run(budget, debugger=True)
    machine.uart_sinks.remove(listen)
    loaded = LOADED.search(bytes(machine.uart_output))
    if outcome.reason is not StopReason.PAUSED or not loaded:
        raise WatchdogError(f"the module's load line never came: the run stopped with {outcome.reason.name} "
                            f"({outcome.detail}) after {outcome.instructions:,} instructions; the console "
                            f"ends: {machine.uart_output[-3000:].decode(errors='replace')}")
    start = int(loaded[2], 16)
    spinner = range(start, start + int(loaded[3], 16))

    machine.set_breakpoints(frozenset({start}))
    outcome = machine.run(budget, debugger=True)
    machine.set_breakpoints(frozenset())
    if outcome.reason is not StopReason.BREAKPOINT or machine.last_cpu is None:
        raise WatchdogError(f"no CPU reached the spinner: {outcome}")
    cpu = machine.last_cpu
    backend = machine.vcpus[cpu].backend
    code = machine.read_code(machine.vcpus[cpu], spinner.start, len(spinner))
    if code is None:
        raise WatchdogError(f"the spinner's code at 0x{spinner.start:x} cannot be read")
    loop = spin_loop(disassemble(code, spinner.start), spinner)
    in_loop = []
    for _ in range(raises):
        machine.run(settle, debugger=True)
        in_loop.append(backend.pc in loop)
        completed = machine.trace.count(SdeiComplete)
        sdei.raise_event(event, cpu)  # what a hypervisor's watchdog would do
        for _ in range(HANDLER_WAITS):
            if machine.trace.count(SdeiComplete) > completed:
                break
            machine.run(settle, debugger=True)
        else:
            raise WatchdogError(f"the event raised on CPU {cpu} was never completed")
    outcome = machine.run(budget)
    return WatchdogRun(outcome, machine.uart_output.decode(errors="replace"), int(loaded[1]), spinner, loop, cpu,
                       raises, in_loop, machine.trace)
