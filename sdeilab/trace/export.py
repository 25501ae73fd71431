"""Writing a trace to files: JSON Lines (one fact a line) and the Trace Event format.

The Trace Event format (``{"traceEvents": [...]}`` with ``ph`` "X" complete events and "i"
instants, ``ts`` in microseconds) is what ui.perfetto.dev and chrome://tracing open. vtime
counts instructions at a nominal 1 GHz, so ``ts = vtime / 1000``. Each CPU is one thread
(``tid``) of process 0, the virtual machine.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sdeilab.trace.log import TraceLog
from sdeilab.trace.records import Fact, PowerTransition, SmcccCall, SmcccReturn

NS_PER_US = 1000


def fact_to_dict(fact: Fact) -> dict[str, Any]:
    row: dict[str, Any] = {"seq": fact.seq, "kind": type(fact).__name__, "cpu": fact.cpu, "vtime": fact.vtime}
    for name, value in fact.payload().items():
        row[name] = list(value) if isinstance(value, tuple) else value
    return row


def write_jsonl(log: TraceLog, path: Path) -> None:
    with path.open("w", encoding="utf-8") as out:
        for fact in log:
            out.write(json.dumps(fact_to_dict(fact), separators=(",", ":")) + "\n")


def trace_events(log: TraceLog) -> list[dict[str, Any]]:
    """Trace Event records: SMCCC calls as complete events, power states as spans, the rest as instants."""
    events: list[dict[str, Any]] = [
        {"ph": "M", "pid": 0, "name": "process_name", "args": {"name": "sdeilab virtual machine"}}
    ]
    cpus = sorted({f.cpu for f in log if f.cpu >= 0})
    for cpu in cpus:
        events.append({"ph": "M", "pid": 0, "tid": cpu, "name": "thread_name", "args": {"name": f"CPU {cpu}"}})
    open_calls: dict[int, list[Fact]] = {}
    power_since: dict[int, tuple[str, int]] = {}
    end = log.last_vtime()
    for fact in log:
        ts = fact.vtime / NS_PER_US
        tid = max(fact.cpu, 0)
        if isinstance(fact, SmcccCall):
            open_calls.setdefault(fact.cpu, []).append(fact)
        elif isinstance(fact, SmcccReturn) and open_calls.get(fact.cpu):
            call = open_calls[fact.cpu].pop()
            events.append(_complete(call.vtime, fact.vtime, tid, fact.name, "smccc",
                                    {"fid": hex(fact.fid), "args": [hex(a) for a in call.args],  # type: ignore[attr-defined]
                                     "results": [hex(r & (2**64 - 1)) for r in fact.results],
                                     "layer": fact.layer}))
        elif isinstance(fact, PowerTransition):
            if fact.cpu in power_since:
                state, since = power_since[fact.cpu]
                events.append(_complete(since, fact.vtime, tid, state, "power", {}))
            power_since[fact.cpu] = (fact.new, fact.vtime)
        else:
            events.append({"ph": "i", "s": "t", "pid": 0, "tid": tid, "ts": ts, "cat": "fact",
                           "name": type(fact).__name__, "args": _jsonable(fact.payload())})
    for cpu, calls in open_calls.items():
        for call in calls:  # calls that never returned (CPU_OFF, SYSTEM_OFF, ...)
            events.append(_complete(call.vtime, end, max(cpu, 0), call.name, "smccc",  # type: ignore[attr-defined]
                                    {"returned": False}))
    for cpu, (state, since) in power_since.items():
        events.append(_complete(since, end, cpu, state, "power", {}))
    return events


def _complete(start: int, stop: int, tid: int, name: str, cat: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"ph": "X", "pid": 0, "tid": tid, "ts": start / NS_PER_US, "dur": (stop - start) / NS_PER_US,
            "name": name, "cat": cat, "args": args}


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
