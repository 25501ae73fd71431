"""The trace log: an append-only sequence of facts stored column-wise.

Recording happens on the emulator's hot paths (every hypercall), so ``add`` appends four
columns and builds no object; ``Fact`` objects are made when a reader asks for them.
Indexes by CPU and by kind grow with the log, so queries never rescan everything.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from typing import overload

from sdeilab.trace.records import FACT_KINDS, Fact


class TraceLog:
    """Facts in ``seq`` order; ``log[i]`` is the fact with ``seq == i``."""

    __slots__ = ("_by_kind", "_cpu", "_indexed", "_kind", "_payload", "_vtime")

    def __init__(self) -> None:
        self._kind = array("h")
        self._cpu = array("h")
        self._vtime = array("q")
        self._payload: list[tuple[object, ...]] = []
        self._by_kind: dict[int, array[int]] = {}
        self._indexed = 0  # facts before this seq are in ``_by_kind``

    def add(self, kind: type[Fact], cpu: int, vtime: int, *payload: object) -> None:
        """Append a fact of ``kind``; ``payload`` holds its fields after (seq, cpu, vtime).

        This is on the hypercall path: four appends, nothing else. The per-kind index is
        brought up to date by the first query that needs it, from where it stopped.
        """
        self._kind.append(kind.CODE)
        self._cpu.append(cpu)
        self._vtime.append(vtime)
        self._payload.append(payload)

    def _index(self) -> dict[int, array[int]]:
        by_kind = self._by_kind
        kinds = self._kind
        for seq in range(self._indexed, len(kinds)):
            code = kinds[seq]
            index = by_kind.get(code)
            if index is None:
                index = by_kind[code] = array("q")
            index.append(seq)
        self._indexed = len(kinds)
        return by_kind

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
        return cls(seq, self._cpu[seq], self._vtime[seq], *self._payload[seq])  # type: ignore[call-arg]

    def of_kind(self, *kinds: type[Fact], cpu: int | None = None) -> list[Fact]:
        """Facts of the given kinds in ``seq`` order, optionally only those of one CPU."""
        seqs: Iterable[int]
        by_kind = self._index()
        if len(kinds) == 1:
            seqs = by_kind.get(kinds[0].CODE, ())
        else:
            seqs = sorted(s for k in kinds for s in by_kind.get(k.CODE, ()))
        return [self._make(s) for s in seqs if cpu is None or self._cpu[s] == cpu]

    def count(self, kind: type[Fact]) -> int:
        return len(self._index().get(kind.CODE, ()))

    def last_vtime(self) -> int:
        return self._vtime[-1] if self._vtime else 0

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]
