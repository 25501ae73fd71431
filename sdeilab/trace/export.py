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

A log that stopped keeping facts at its limit (``TraceLog.limit``) is written as what it kept,
marked: the Trace Event file carries ``otherData.truncated`` (the format's free-form metadata
object) with the counts and where keeping stopped, and a global instant "trace truncated" at that
vtime; a JSON Lines file ends with one row of kind ``TraceTruncated`` holding the same numbers.
:class:`TraceFile` instead streams the facts past the limit to the file, so a ``.jsonl`` trace the
command line writes is complete.

Files are written safely (:class:`TraceFile`): into a temporary file in the target's folder,
flushed to disk, then renamed over the target (rename(2) replaces it in one step), so a failed
write (a full disk) leaves any earlier trace untouched, and two runs writing one path each leave a
whole file, never an interleaving. A target that is not a regular file (``/dev/null``, a terminal,
a pipe with a reader) is written in place: there is nothing to rename over.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

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


def jsonl_row(fact: Fact) -> str:
    """One fact as a JSON Lines row, newline included."""
    return json.dumps(fact_to_dict(fact), separators=(",", ":")) + "\n"


def truncation(log: TraceLog) -> dict[str, Any] | None:
    """What a log did not keep (its ``limit``, ``dropped``, ``dropped_at``), or None if it kept everything."""
    if not log.dropped or log.dropped_at is None:
        return None
    seq, vtime = log.dropped_at
    return {"truncated": True, "limit": log.limit, "kept": len(log), "dropped": log.dropped,
            "first_dropped_seq": seq, "first_dropped_vtime": vtime}


def _write_jsonl(log: TraceLog, out: IO[str], spooled: IO[str] | None = None) -> None:
    for fact in log:
        out.write(jsonl_row(fact))
    if spooled is not None:  # the facts past the limit, already rows: the file is complete
        spooled.seek(0)
        while chunk := spooled.read(1 << 20):
            out.write(chunk)
        return
    cut = truncation(log)
    if cut is not None:
        out.write(json.dumps({"seq": cut["first_dropped_seq"], "kind": "TraceTruncated", "cpu": -1,
                              "vtime": cut["first_dropped_vtime"]} | cut, separators=(",", ":")) + "\n")


def write_jsonl(log: TraceLog, path: Path) -> None:
    """One fact a line (see :func:`fact_to_dict`), written safely (:class:`TraceFile`)."""
    with TraceFile(path) as trace_file:
        trace_file.commit(log)


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


def _write_trace_events(log: TraceLog, out: IO[str]) -> None:
    events = trace_events(log)
    document: dict[str, Any] = {"traceEvents": events, "displayTimeUnit": "ns"}
    cut = truncation(log)
    if cut is not None:
        # Marked twice: in the metadata a program reads, and on the timeline a person looks at.
        document["otherData"] = cut | {"note": f"the first {cut['kept']} facts only: {cut['dropped']} later "
                                                "ones were not kept (sdeilab run --trace-limit N raises the limit)"}
        events.append({"ph": "i", "s": "g", "pid": MACHINE_PID, "tid": 10 * MACHINE_PID,
                       "ts": cut["first_dropped_vtime"] / NS_PER_US, "name": "trace truncated",
                       "cat": "sdeilab", "args": cut})
    json.dump(document, out, separators=(",", ":"))
    out.write("\n")


def write_trace_events(log: TraceLog, path: Path) -> None:
    """The Trace Event file, written safely (:class:`TraceFile`)."""
    with TraceFile(path) as trace_file:
        trace_file.commit(log)


def write_trace(log: TraceLog, path: Path) -> None:
    """Write ``log`` in the format the file name asks for: ``.json`` (Trace Event) or ``.jsonl``.

    The file is replaced only once it is complete (:class:`TraceFile`); an OSError leaves it as it was.
    """
    with TraceFile(path) as trace_file:
        trace_file.commit(log)


SUFFIXES = (".json", ".jsonl")


class TraceFileError(ValueError):
    """The trace cannot be written to that path; the message says why in one line.

    A ValueError, as ``write_trace`` raised for a wrong file name before there was this class."""


class TraceFile:
    """A trace file made safely (module docstring): checked and opened before a run, completed after.

    ``TraceFile(path)`` checks the name and the folder and creates the temporary file at once, so a
    run that could not save its trace is refused before it starts (:class:`TraceFileError`).
    ``stream_overflow(log)`` (JSON Lines only) spools the facts the log does not keep, to write
    them after the kept ones. ``commit(log)`` writes the file and renames it over ``path``; leaving
    the ``with`` block without a commit removes the temporary files.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.format = self.path.suffix  # ".json" or ".jsonl"
        self.error: OSError | None = None  # a failed write of spooled facts, reported by commit()
        self._spool: IO[str] | None = None
        self._temp: str | None = None
        self._out: IO[str] | None = None
        try:
            info: os.stat_result | None = os.stat(self.path)
        except FileNotFoundError:
            info = None
        except OSError as error:  # ENAMETOOLONG, ENOTDIR, EACCES, ELOOP: the path itself is unusable
            raise TraceFileError(f"{self.path}: {error.strerror}") from None
        if info is not None and stat.S_ISDIR(info.st_mode):
            raise TraceFileError(f"{self.path}: is a directory")
        if info is not None and not stat.S_ISREG(info.st_mode):
            if self.format not in SUFFIXES:
                self.format = ".jsonl"  # /dev/null, /dev/stdout: no name to go by; lines stream best
            self._out = self._open_special(info)
            return
        if self.format not in SUFFIXES:
            raise TraceFileError(f"{self.path}: the file name must end in .json or .jsonl "
                                 "(Trace Event format or JSON Lines)")
        # rename(2) over a symbolic link would replace the link: write where it points instead.
        self._target = Path(os.path.realpath(self.path))
        folder = self._target.parent
        if not folder.is_dir():
            raise TraceFileError(f"{self.path}: no such folder {folder}")
        self._mode = stat.S_IMODE(info.st_mode) if info is not None else 0o666 & ~_umask()
        try:
            fd, self._temp = tempfile.mkstemp(prefix=f".{self._target.name}.", suffix=".tmp", dir=folder)
        except OSError as error:
            raise TraceFileError(f"{self.path}: cannot write in {folder} ({error.strerror})") from None
        self._out = os.fdopen(fd, "w", encoding="utf-8")

    def _open_special(self, info: os.stat_result) -> IO[str]:
        """A device or a FIFO, written in place. A FIFO is opened without waiting (POSIX open():
        O_NONBLOCK for writing fails with ENXIO when no process has it open for reading)."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as error:
            why = "a FIFO that no process reads" if stat.S_ISFIFO(info.st_mode) else error.strerror
            raise TraceFileError(f"{self.path}: cannot write the trace there ({why})") from None
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)  # from now on, writes wait like any other
        return os.fdopen(fd, "w", encoding="utf-8")

    def __enter__(self) -> TraceFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.discard()

    def stream_overflow(self, log: TraceLog) -> None:
        """Keep the facts ``log`` does not keep, as JSON Lines rows, to write after the kept ones.

        They go to an unnamed temporary file in the trace's folder (nothing is left behind however
        the process ends). A write that fails stops the spooling; ``commit`` then reports it.
        """
        if self.format != ".jsonl":
            return
        folder = self._target.parent if self._temp is not None else None
        # Closed by discard(), which every path out of a TraceFile's use reaches.
        self._spool = tempfile.TemporaryFile("w+", encoding="utf-8", dir=folder)  # noqa: SIM115
        spool = self._spool

        def overflow(fact: Fact) -> None:
            try:
                spool.write(jsonl_row(fact))
            except OSError as error:
                self.error = self.error or error
                log.overflow = None  # the trace is lost anyway: stop paying for it
        log.overflow = overflow

    def commit(self, log: TraceLog) -> None:
        """Write ``log`` (and any spooled facts) and put the file in place; OSError if that fails,
        and then any file that was at ``path`` is untouched."""
        out = self._out
        if out is None:
            raise ValueError("the trace file was already committed or discarded")
        if self.error is not None:
            raise self.error
        if self.format == ".jsonl":
            _write_jsonl(log, out, self._spool)
        else:
            _write_trace_events(log, out)
        out.flush()
        if self._temp is None:  # a device or a FIFO: written in place
            self._out = None
            out.close()
            return
        os.fsync(out.fileno())  # on disk before the rename, so a crash cannot leave an empty file
        os.fchmod(out.fileno(), self._mode)
        self._out = None
        out.close()
        os.replace(self._temp, self._target)
        self._temp = None
        self.discard()

    def discard(self) -> None:
        """Remove the temporary files (after a commit: only the spool)."""
        for stream in (self._out, self._spool):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._out = self._spool = None
        if self._temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._temp)
            self._temp = None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_jsonl(lines: Iterable[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.strip()]
