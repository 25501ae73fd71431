"""Writing a trace to files: JSON Lines (one fact a line) and the Trace Event format.

The Trace Event format (``{"traceEvents": [...]}`` with ``ph`` "X" complete events and "i"
instants, ``ts`` in microseconds) is what ui.perfetto.dev and chrome://tracing open. vtime
counts instructions at a nominal 1 GHz, so ``ts = vtime / 1000``.

Each CPU is one process ("CPU n", ``pid = n + 1``), so Perfetto shows one track group per CPU,
and within it one thread per kind of slice, because complete events on one thread must nest
(the Trace Event format's rule) and a masked interval, say, crosses power-state changes:

  ``tid = 10 * pid``      execution: SDEI handlers (critical nested in normal), firmware calls
                          (named, with the answering layer; they take no virtual time), and the
                          other facts as instants;
  ``tid = 10 * pid + 1``  power state (off, on-pending, on, standby, powerdown);
  ``tid = 10 * pid + 2``  SDEI masked;
  ``tid = 10 * pid + 3``  interrupt handling (acknowledge to EOI).

Facts of no CPU (``cpu == -1``) go to a "machine" process. Every slice is derived by the pure
functions of ``sdeilab.trace.intervals``, so the file agrees with the lab's own timeline.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sdeilab.trace.intervals import (
    Interval,
    firmware_calls,
    handler_intervals,
    irq_intervals,
    masked_intervals,
    power_intervals,
)
from sdeilab.trace.log import TraceLog
from sdeilab.trace.records import (
    FACT_KINDS,
    Fact,
    IrqAcknowledged,
    IrqCompleted,
    PowerTransition,
    SdeiComplete,
    SdeiDispatch,
    SdeiMask,
    SmcccCall,
    SmcccReturn,
)

NS_PER_US = 1000
MACHINE_PID = 1000  # facts about no CPU
EXECUTION, POWER, MASKED, IRQ = range(4)  # a CPU's threads: tid = 10 * pid + one of these
_THREADS = {EXECUTION: "execution", POWER: "power", MASKED: "SDEI masked", IRQ: "interrupts"}
_HEADER = frozenset({"seq", "kind", "cpu", "vtime"})  # what every JSON Lines row starts with
_AS_SLICES = (SmcccCall, SmcccReturn, SdeiDispatch, SdeiComplete, PowerTransition, SdeiMask, IrqAcknowledged,
              IrqCompleted)  # facts shown as slices, not again as instants


def fact_to_dict(fact: Fact) -> dict[str, Any]:
    """One JSON Lines row: ``seq``, ``kind`` (the fact's class), ``cpu``, ``vtime``, then the fields.

    A field named like one of those four (``ExceptionTaken.kind``: "irq", "sync", ...) is written
    with a trailing underscore (``kind_``), so that no row loses its kind or its field.
    """
    row: dict[str, Any] = {"seq": fact.seq, "kind": type(fact).__name__, "cpu": fact.cpu, "vtime": fact.vtime}
    for name, value in fact.payload().items():
        row[name + "_" if name in _HEADER else name] = list(value) if isinstance(value, tuple) else value
    return row


def write_jsonl(log: TraceLog, path: Path) -> None:
    with path.open("w", encoding="utf-8") as out:
        for fact in log:
            out.write(json.dumps(fact_to_dict(fact), separators=(",", ":")) + "\n")


def trace_events(log: TraceLog) -> list[dict[str, Any]]:
    """Trace Event records: one process per CPU, one thread per kind of slice (see the module docstring)."""
    end = log.max_vtime()
    cpus = log.cpus()
    events: list[dict[str, Any]] = []
    for cpu in cpus:
        pid = cpu + 1
        events.append({"ph": "M", "pid": pid, "name": "process_name", "args": {"name": f"CPU {cpu}"}})
        for kind, name in _THREADS.items():
            events.append({"ph": "M", "pid": pid, "tid": 10 * pid + kind, "name": "thread_name",
                           "args": {"name": name}})
    if log.seqs(cpu=-1):
        events.append({"ph": "M", "pid": MACHINE_PID, "name": "process_name", "args": {"name": "machine"}})
        events.append({"ph": "M", "pid": MACHINE_PID, "tid": 10 * MACHINE_PID, "name": "thread_name",
                       "args": {"name": "machine"}})
    slices: list[dict[str, Any]] = []
    for power in power_intervals(log):
        slices.append(_slice(power, end, POWER, power.label, "power", {}))
    for masked in masked_intervals(log):
        slices.append(_slice(masked, end, MASKED, "SDEI masked", "sdei", {}))
    for irq in irq_intervals(log):
        slices.append(_slice(irq, end, IRQ, irq.label, "irq",
                             {"intid": irq.intid, "group": irq.group, "depth": irq.depth}))
    for handler in handler_intervals(log):
        name = f"SDEI event {handler.event}" + (" (critical)" if handler.critical else "")
        slices.append(_slice(handler, end, EXECUTION, name, "sdei",
                             {"event": handler.event, "critical": handler.critical, "depth": handler.depth,
                              "interrupted_pc": hex(handler.interrupted_pc), "how": handler.how or "running"}))
    for call in firmware_calls(log):
        args: dict[str, Any] = {"fid": hex(call.fid), "conduit": call.conduit, "args": [hex(a) for a in call.args]}
        if call.returned:
            args |= {"results": [hex(r & (2**64 - 1)) for r in call.results], "layer": call.layer}
        else:
            args["returned"] = False
        slices.append(_slice(call, end, EXECUTION, call.label, "smccc", args))
    for fact in log.select(*(k for k in FACT_KINDS if k not in _AS_SLICES)):
        if type(fact) in _AS_SLICES:
            continue  # a sub-kind drawn as a slice (SdeiDispatch is an SdeiTransition)
        pid = fact.cpu + 1 if fact.cpu >= 0 else MACHINE_PID
        slices.append({"ph": "i", "s": "t", "pid": pid, "tid": 10 * pid + EXECUTION, "ts": fact.vtime / NS_PER_US,
                       "cat": "fact", "name": type(fact).__name__, "args": _jsonable(fact.payload())})
    # Per thread in time order, an enclosing slice before what it encloses: how nesting reads best.
    slices.sort(key=lambda e: (e["pid"], e["tid"], e["ts"], -e.get("dur", 0)))
    return events + slices


def _slice(interval: Interval, trace_end: int, thread: int, name: str, cat: str,
           args: dict[str, Any]) -> dict[str, Any]:
    stop = interval.end if interval.end is not None else max(trace_end, interval.start)
    pid = interval.cpu + 1 if interval.cpu >= 0 else MACHINE_PID
    # A reader computes the end as ts + dur in floating point; it must not pass the next slice's
    # ts (µs floats of integer ns), or adjacent slices would seem to overlap and break nesting.
    begin, end = interval.start / NS_PER_US, stop / NS_PER_US
    dur = end - begin
    while begin + dur > end:
        dur = math.nextafter(dur, 0.0)
    return {"ph": "X", "pid": pid, "tid": 10 * pid + thread, "ts": begin, "dur": dur, "name": name,
            "cat": cat, "args": args}


def _jsonable(payload: dict[str, object]) -> dict[str, object]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in payload.items()}


def write_trace_events(log: TraceLog, path: Path) -> None:
    with path.open("w", encoding="utf-8") as out:
        json.dump({"traceEvents": trace_events(log), "displayTimeUnit": "ns"}, out, separators=(",", ":"))
        out.write("\n")


def write_trace(log: TraceLog, path: Path) -> None:
    """Write ``log`` in the format the file name asks for: ``.json`` (Trace Event) or ``.jsonl``."""
    if path.suffix == ".jsonl":
        write_jsonl(log, path)
    elif path.suffix == ".json":
        write_trace_events(log, path)
    else:
        raise ValueError(f"trace file must end in .json (Trace Event format) or .jsonl, not {path.name!r}")


def read_jsonl(lines: Iterable[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.strip()]
