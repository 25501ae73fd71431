"""The trace log: an append-only sequence of facts stored column-wise.

Recording happens on the emulator's hot paths (every hypercall), so ``add`` appends four
columns and builds no object; ``Fact`` objects are made when a reader asks for them.

Indexes by kind, by CPU and by SDEI event grow with the log, brought up to date by the first
query after an append (from where they stopped), so queries never rescan everything. vtime is
not monotonic in ``seq`` order (in a scheduling round each CPU runs the same stretch of virtual
time in turn, and a fact one CPU causes for another carries the sender's time), so a vtime
window is found through the running maximum of vtime, sampled every ``BLOCK`` facts, and the
largest lag behind that maximum seen so far: together they bound which seqs can fall in a
window, then each candidate's vtime is checked exactly.

The same index pass shares equal payload tuples among facts of one kind (long runs repeat the
same calls with the same arguments), which is what keeps a record near 30 bytes instead of 160.

Threads: one thread appends (the one running the machine) while any thread may query (the
dashboard's plot worker reads the log during a background run). ``add`` takes no lock, so the
hypercall path pays nothing: it appends to the columns with the payload last, and the length of
the payload column is the number of complete records. Building the indexes and reading them take
one lock, so two queries never index the same records twice, and a query sees the log up to the
length it indexed, never a half-built index.
"""

from __future__ import annotations

import contextlib
import threading
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar, overload

from sdeilab.trace.records import FACT_KINDS, Fact

F = TypeVar("F", bound=Fact)

BLOCK = 64
"""Facts per sample of the running vtime maximum: a window query scans at most this many extra."""

DEFAULT_LIMIT = 4_000_000
"""Facts a :class:`TraceLog` keeps unless told otherwise: near 120 MB once indexed (30 bytes a fact),
at most about 460 MB if nothing ever queries it. A guest that polls a firmware call forever adds
facts at about 400,000 a second, and without a bound would grow the log until the host kills it."""

_INTERN_LIMIT = 1 << 14
"""Distinct payloads remembered per kind; past this the memory is restarted (sharing is a cache)."""


def _count(index: Sequence[int], lo: int, hi: int) -> int:
    """How many seqs of a sorted index lie in [lo, hi)."""
    return bisect_left(index, hi) - bisect_left(index, lo)


_positions: dict[tuple[type[Fact], str], int] = {}


def _position(kind: type[Fact], name: str) -> int:
    """Where a kind's field ``name`` sits in its payload, or -1 (remembered per kind and name)."""
    position = _positions.get((kind, name))
    if position is None:
        names = kind.payload_names()
        position = _positions[kind, name] = names.index(name) if name in names else -1
    return position


def _event_position(kind: type[Fact]) -> int:
    """Where a kind's ``event`` field sits in its payload, or -1: the SDEI facts are indexed by event."""
    return _position(kind, "event")


@dataclass(frozen=True, slots=True)
class TraceMark:
    """How long a log was at some moment (``TraceLog.mark``), to go back to it (``TraceLog.rewind``).

    ``last`` is the last fact kept then (None if there was none): a log whose history has since
    taken another course is told apart by it.
    """

    length: int
    dropped: int
    dropped_at: tuple[int, int] | None
    last: Fact | None


class Subscription:
    """A callback told of facts as a :class:`TraceLog` appends them (``TraceLog.subscribe``)."""

    __slots__ = ("callback", "kinds", "log")

    def __init__(self, log: TraceLog, kinds: frozenset[type[Fact]] | None,
                 callback: Callable[[type[Fact]], None]) -> None:
        self.log, self.kinds, self.callback = log, kinds, callback

    def cancel(self) -> None:
        with contextlib.suppress(ValueError):
            self.log._subscribers.remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.cancel()


class TraceLog:
    """Facts in ``seq`` order; ``log[i]`` is the fact with ``seq == i``.

    The log keeps at most ``limit`` facts (:data:`DEFAULT_LIMIT`; None: no bound). The first
    ``limit`` are kept; each later one is counted in ``dropped``, handed to ``overflow`` if that is
    set (as a :class:`Fact` with the seq it would have had: a writer can stream them to a file),
    and ``dropped_at`` is the (seq, vtime) of the first fact not kept (None while nothing was
    dropped). Queries see the kept facts only.
    """

    __slots__ = ("_block_max", "_by_cpu", "_by_event", "_by_kind", "_cpu", "_indexed", "_interned", "_kind",
                 "_lag", "_lock", "_payload", "_run_max", "_subscribers", "_vtime", "dropped", "dropped_at",
                 "limit", "overflow")

    def __init__(self, limit: int | None = DEFAULT_LIMIT) -> None:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be 0 or more (or None for no bound), not {limit}")
        self.limit = limit if limit is not None else 1 << 62  # an int either way: add() compares once
        self.dropped = 0
        self.dropped_at: tuple[int, int] | None = None
        self.overflow: Callable[[Fact], None] | None = None
        self._kind = array("h")
        self._cpu = array("h")
        self._vtime = array("q")
        self._payload: list[tuple[object, ...]] = []
        self._by_kind: dict[int, array[int]] = {}
        self._by_cpu: dict[int, array[int]] = {}
        self._by_event: dict[int, array[int]] = {}
        self._block_max = array("q")  # [b]: the largest vtime among seqs < (b + 1) * BLOCK
        self._run_max = -(1 << 63)  # the largest vtime indexed so far
        self._lag = 0  # the most any indexed fact's vtime lies below the running maximum before it
        self._interned: dict[int, dict[tuple[object, ...], tuple[object, ...]]] = {}
        self._indexed = 0  # facts before this seq are in the indexes
        # Held while the indexes are built or read (module docstring, "Threads"); reentrant, as a
        # query indexes first and the window lookup inside it indexes again.
        self._lock = threading.RLock()
        self._subscribers: list[Subscription] = []  # told of each fact kept, as it is appended

    def add(self, kind: type[Fact], cpu: int, vtime: int, *payload: object) -> None:
        """Append a fact of ``kind``; ``payload`` holds its fields after (seq, cpu, vtime).

        This is on the hypercall path: one compare against ``limit`` and four appends, nothing
        else. The indexes are brought up to date by the first query that needs them.

        ``payload`` must hold plain values (int, str, float, bool, None, and tuples of them), not
        enum members: a tuple holding only such values is untracked by Python's cycle collector,
        and one holding an enum member stays tracked, so that every collection walks every fact
        kept (measured: 2.9 -> 3.9 us per HVC round trip). ``.value`` or ``int()``/``str()`` at
        the record site keeps them plain (tests/test_trace_payloads.py checks it).
        """
        if len(self._payload) >= self.limit:
            self._drop(kind, cpu, vtime, payload)
            return
        self._kind.append(kind.CODE)
        self._cpu.append(cpu)
        self._vtime.append(vtime)
        self._payload.append(payload)  # last: its length says which records are complete
        if self._subscribers:
            for subscription in tuple(self._subscribers):  # one may cancel itself as it is told
                if subscription.kinds is None or kind in subscription.kinds:
                    subscription.callback(kind)

    def subscribe(self, kinds: Iterable[type[Fact]] | None, callback: Callable[[type[Fact]], None]) -> Subscription:
        """Call ``callback(kind)`` right after each fact of one of ``kinds`` (exact kinds; None: every
        kind) is appended and kept, until the subscription is cancelled (``cancel()``, or the end of
        its ``with`` block). The fact is ``log[len(log) - 1]`` then. Facts past ``limit`` are not
        kept and not told. The callback runs where the fact is recorded, often inside a firmware
        call in the machine's run: it must not raise (a debugger asks the machine to stop there)."""
        subscription = Subscription(self, None if kinds is None else frozenset(kinds), callback)
        self._subscribers.append(subscription)
        return subscription

    def _drop(self, kind: type[Fact], cpu: int, vtime: int, payload: tuple[object, ...]) -> None:
        """A fact past ``limit``: counted, and handed to ``overflow`` (class docstring)."""
        seq = len(self._payload) + self.dropped
        if self.dropped_at is None:
            self.dropped_at = (seq, vtime)
        self.dropped += 1
        overflow = self.overflow
        if overflow is not None:
            overflow(kind(seq, cpu, vtime, *payload))

    def _index(self) -> dict[int, array[int]]:
        """Bring every index up to the end of the log; returns the per-kind index."""
        with self._lock:
            return self._index_locked()

    def _index_locked(self) -> dict[int, array[int]]:
        # The appending thread may add records meanwhile: index up to the length seen now.
        start, end = self._indexed, len(self._payload)
        if start == end:
            return self._by_kind
        by_kind, by_cpu, by_event = self._by_kind, self._by_cpu, self._by_event
        kinds, cpus, vtimes, payloads = self._kind, self._cpu, self._vtime, self._payload
        block_max, run_max, lag = self._block_max, self._run_max, self._lag
        next_block = (len(block_max) + 1) * BLOCK - 1  # the seq that completes the next block
        # Per kind code: its index's append, where its ``event`` field is (-1: none), its shared payloads.
        per_kind: list[tuple[Callable[[int], None], int, dict[tuple[object, ...], tuple[object, ...]]] | None]
        per_kind = [None] * len(FACT_KINDS)
        per_cpu: dict[int, Callable[[int], None]] = {cpu: index.append for cpu, index in by_cpu.items()}
        for seq in range(start, end):
            code = kinds[seq]
            slot = per_kind[code]
            if slot is None:
                slot = per_kind[code] = (by_kind.setdefault(code, array("I")).append,
                                         _event_position(FACT_KINDS[code]), self._interned.setdefault(code, {}))
            add_kind, position, shared = slot
            add_kind(seq)
            cpu = cpus[seq]
            add_cpu = per_cpu.get(cpu)
            if add_cpu is None:
                add_cpu = per_cpu[cpu] = by_cpu.setdefault(cpu, array("I")).append
            add_cpu(seq)
            vtime = vtimes[seq]
            if vtime > run_max:
                run_max = vtime
            elif run_max - vtime > lag:
                lag = run_max - vtime
            if seq == next_block:
                block_max.append(run_max)
                next_block += BLOCK
            payload = payloads[seq]
            if position >= 0:
                event: int = payload[position]  # type: ignore[assignment]
                index = by_event.get(event)
                if index is None:
                    index = by_event[event] = array("I")
                index.append(seq)
            try:
                same = shared.get(payload)
            except TypeError:  # an unhashable payload field: keep the record's own tuple
                continue
            if same is None:
                if len(shared) >= _INTERN_LIMIT:
                    shared.clear()
                shared[payload] = payload
            else:
                payloads[seq] = same
        self._run_max, self._lag, self._indexed = run_max, lag, end
        return by_kind

    def compact(self) -> None:
        """Index what was appended since the last query, sharing equal payloads: a long run that
        queries nothing can call this now and then to keep its facts near 30 bytes each."""
        self._index()

    def __len__(self) -> int:
        return len(self._payload)

    @overload
    def __getitem__(self, seq: int) -> Fact: ...
    @overload
    def __getitem__(self, seq: slice) -> list[Fact]: ...
    def __getitem__(self, seq: int | slice) -> Fact | list[Fact]:
        if isinstance(seq, slice):
            return [self._make(i) for i in range(*seq.indices(len(self)))]
        if seq < 0:
            seq += len(self)
        return self._make(seq)

    def __iter__(self) -> Iterator[Fact]:
        return (self._make(i) for i in range(len(self)))

    def _make(self, seq: int) -> Fact:
        cls = FACT_KINDS[self._kind[seq]]
        return cls(seq, self._cpu[seq], self._vtime[seq], *self._payload[seq])

    # One kind asked for: every fact returned is an instance of it (its sub-kinds are its subclasses).
    @overload
    def of_kind(self, kind: type[F], /, *, cpu: int | None = None) -> list[F]: ...
    @overload
    def of_kind(self, *kinds: type[Fact], cpu: int | None = None) -> list[Fact]: ...
    def of_kind(self, *kinds: type[Fact], cpu: int | None = None) -> list[Fact] | list[F]:
        """Facts of the given kinds in ``seq`` order, optionally only those of one CPU."""
        return self.select(*kinds, cpu=cpu)

    # --- queries ---------------------------------------------------------------------------
    @overload
    def select(self, kind: type[F], /, *, cpu: int | None = None, event: int | None = None,
               start: int | None = None, end: int | None = None) -> list[F]: ...
    @overload
    def select(self, *kinds: type[Fact], cpu: int | None = None, event: int | None = None,
               start: int | None = None, end: int | None = None) -> list[Fact]: ...
    def select(self, *kinds: type[Fact], cpu: int | None = None, event: int | None = None,
               start: int | None = None, end: int | None = None) -> list[Fact] | list[F]:
        """Facts matching every filter given, in ``seq`` order; see ``seqs``."""
        make = self._make
        return [make(s) for s in self.seqs(*kinds, cpu=cpu, event=event, start=start, end=end)]

    def seqs(self, *kinds: type[Fact], cpu: int | None = None, event: int | None = None,
             start: int | None = None, end: int | None = None) -> list[int]:
        """The seqs of facts of any of ``kinds`` (all kinds if none), of ``cpu``, about SDEI ``event``,
        with ``start <= vtime < end``, in ``seq`` order.

        The smallest of the matching indexes (per kind, per CPU, per event) drives the walk,
        narrowed to the seq range the window allows; the other filters are checked per candidate.
        """
        with self._lock:  # the indexes must not grow under the walk (module docstring, "Threads")
            return self._seqs(kinds, cpu, event, start, end)

    def _seqs(self, kinds: tuple[type[Fact], ...], cpu: int | None, event: int | None,
              start: int | None, end: int | None) -> list[int]:
        self._index()
        lo, hi = self.seq_range(start, end)
        # Per filter, its index (or indexes, for several kinds), counted in [lo, hi) by bisection;
        # the smallest drives the walk and is the only one copied, and needs no second look.
        indexes: dict[str, list[Sequence[int]]] = {}
        codes = {code for k in kinds for code in k.FAMILY}  # a kind matches its sub-kinds too
        if kinds:
            indexes["kind"] = [self._by_kind.get(code, ()) for code in codes]
        if cpu is not None:
            indexes["cpu"] = [self._by_cpu.get(cpu, ())]
        if event is not None:
            indexes["event"] = [self._by_event.get(event, ())]
        driver: Sequence[int] = range(lo, hi)
        if indexes:
            drove = min(indexes, key=lambda name: sum(_count(i, lo, hi) for i in indexes[name]))
            driver = self._union(indexes.pop(drove), lo, hi)
        check_kind, check_cpu, check_event = "kind" in indexes, "cpu" in indexes, "event" in indexes
        windowed = start is not None or end is not None
        if not (check_kind or check_cpu or check_event or windowed):
            return list(driver)
        kind_col, cpu_col, vtime_col, payloads = self._kind, self._cpu, self._vtime, self._payload
        positions = [_event_position(k) for k in FACT_KINDS] if check_event else []
        low = start if start is not None else -(1 << 63)
        high = end if end is not None else 1 << 63
        out: list[int] = []
        for seq in driver:
            if check_kind and kind_col[seq] not in codes:
                continue
            if check_cpu and cpu_col[seq] != cpu:
                continue
            if check_event:
                position = positions[kind_col[seq]]
                if position < 0 or payloads[seq][position] != event:
                    continue
            if windowed and not low <= vtime_col[seq] < high:
                continue
            out.append(seq)
        return out

    def seq_range(self, start: int | None = None, end: int | None = None) -> tuple[int, int]:
        """A range of seqs holding every fact with ``start <= vtime < end`` (maybe a few more)."""
        with self._lock:
            self._index()
            return self._seq_range(start, end)

    def _seq_range(self, start: int | None, end: int | None) -> tuple[int, int]:
        lo, hi = 0, self._indexed  # not len(): records appended since the indexing are not in them
        full = len(self._block_max)
        if start is not None:
            # Blocks whose running maximum is below ``start`` hold only earlier facts.
            lo = bisect_left(self._block_max, start) * BLOCK
        if end is not None:
            # Past the first block whose maximum reaches end + lag, every fact is at least ``end``.
            block = bisect_left(self._block_max, end + self._lag)
            if block < full:
                hi = min(hi, (block + 1) * BLOCK)
        return min(lo, hi), hi

    @staticmethod
    def _slice(index: Sequence[int], lo: int, hi: int) -> Sequence[int]:
        if not index or (lo == 0 and hi > index[-1]):
            return index
        return index[bisect_left(index, lo):bisect_left(index, hi)]

    def _union(self, indexes: list[Sequence[int]], lo: int, hi: int) -> Sequence[int]:
        parts = [part for part in (self._slice(i, lo, hi) for i in indexes) if part]
        if len(parts) <= 1:
            return parts[0] if parts else ()
        return sorted(s for part in parts for s in part)

    def cpus(self) -> list[int]:
        """The CPUs facts were recorded for (-1, the machine itself, excluded)."""
        with self._lock:
            self._index()
            return sorted(c for c in self._by_cpu if c >= 0)

    def events(self) -> list[int]:
        """The SDEI event numbers that some fact concerns (-1, a call naming no valid event, excluded)."""
        with self._lock:
            self._index()
            return sorted(e for e in self._by_event if e >= 0)

    def vtime_at(self, seq: int) -> int:
        """The vtime of fact ``seq``, without building the fact."""
        return self._vtime[seq]

    def cpu_at(self, seq: int) -> int:
        return self._cpu[seq]

    def kind_at(self, seq: int) -> type[Fact]:
        return FACT_KINDS[self._kind[seq]]

    def field_at(self, seq: int, name: str) -> object:
        """One payload field of fact ``seq`` (``log.field_at(s, "layer")``), without building the fact."""
        kind = FACT_KINDS[self._kind[seq]]
        position = _position(kind, name)
        if position < 0:
            raise AttributeError(f"{kind.__name__} has no field {name!r}")
        return self._payload[seq][position]

    @overload
    def column(self, name: Literal["cpu", "vtime"], seqs: Iterable[int]) -> list[int]: ...
    @overload
    def column(self, name: Literal["kind"], seqs: Iterable[int]) -> list[type[Fact]]: ...
    @overload
    def column(self, name: str, seqs: Iterable[int]) -> list[object]: ...
    def column(self, name: str, seqs: Iterable[int]) -> list[object] | list[int] | list[type[Fact]]:
        """``name`` ("kind", "cpu", "vtime" or a payload field) of each fact in ``seqs``, building no fact.

        The bulk form of ``field_at``, for views that need one number from each of many facts.
        """
        if name in ("kind", "cpu", "vtime"):
            col = {"kind": self._kind, "cpu": self._cpu, "vtime": self._vtime}[name]
            if name == "kind":
                return [FACT_KINDS[col[s]] for s in seqs]
            return [col[s] for s in seqs]
        positions = [_position(k, name) for k in FACT_KINDS]
        kinds, payloads = self._kind, self._payload
        out: list[object] = []
        for seq in seqs:
            position = positions[kinds[seq]]
            if position < 0:
                raise AttributeError(f"{FACT_KINDS[kinds[seq]].__name__} has no field {name!r}")
            out.append(payloads[seq][position])
        return out

    def max_vtime(self) -> int:
        """The latest vtime of any fact (``last_vtime`` is the vtime of the last fact appended)."""
        with self._lock:
            self._index()
            return max(self._run_max, 0)

    def count(self, kind: type[Fact]) -> int:
        """How many facts are of ``kind`` (its sub-kinds included)."""
        with self._lock:
            by_kind = self._index()
            return sum(len(by_kind.get(code, ())) for code in kind.FAMILY)

    def last_vtime(self) -> int:
        return self._vtime[-1] if self._vtime else 0

    # --- going back ------------------------------------------------------------------------
    def mark(self) -> TraceMark:
        """The log's length now, to ``rewind`` to (a machine snapshot keeps one)."""
        length = len(self._payload)
        return TraceMark(length, self.dropped, self.dropped_at, self._make(length - 1) if length else None)

    def holds(self, mark: TraceMark) -> bool:
        """Whether the log still holds the facts it held at ``mark`` (so ``rewind`` can go back to it)."""
        length = mark.length
        return length <= len(self._payload) and (not length or self._make(length - 1) == mark.last)

    def rewind(self, mark: TraceMark) -> None:
        """Forget every fact appended since ``mark`` was taken, as if they had never been recorded.

        This is the one exception to "append-only", for a machine restored to an earlier state
        (``Machine.restore``): what the guest does from there is recorded again. ValueError, and
        nothing changes, if the log does not hold the facts up to ``mark`` (it was rewound past
        it, or cleared, or its history went another way since).
        """
        length = mark.length
        if not self.holds(mark):
            raise ValueError(f"the trace does not hold the {length} facts of that moment: it was rewound past it "
                             "or its history went another way since")
        with self._lock:
            self.dropped, self.dropped_at = mark.dropped, mark.dropped_at
            if length == len(self._payload):
                return
            del self._kind[length:], self._cpu[length:], self._vtime[length:], self._payload[length:]
            if self._indexed <= length:
                return
            # Each index holds seqs in order: cut it at ``length``; an index left empty goes.
            for indexes in (self._by_kind, self._by_cpu, self._by_event):
                for key in list(indexes):
                    index = indexes[key]
                    del index[bisect_left(index, length):]
                    if not index:
                        del indexes[key]
            blocks = length // BLOCK  # block b is complete once seq (b + 1) * BLOCK - 1 is indexed
            del self._block_max[blocks:]
            tail = self._vtime[blocks * BLOCK:length]
            self._run_max = max([*self._block_max[-1:], *tail], default=-(1 << 63))
            # ``_lag`` stays: the largest lag of a longer log still bounds this one's (a window
            # query checks each candidate's vtime exactly).
            self._indexed = length

    def clear(self) -> None:
        """Forget every fact; the limit and the overflow stay."""
        limit, overflow = self.limit, self.overflow
        TraceLog.__init__(self, limit)
        self.overflow = overflow
