"""Batches drawn from several streams of pieces in proportion (streamed training data).

Each *stream* (one per input file with ``mixing="files"``, one for all files with
``mixing="chunks"`` or without shuffling) receives its pieces in a planned order and holds them
in a buffer of ``group`` pieces, shuffled together with a seeded permutation. Every batch takes
from every stream that still has jets a share proportional to the jets it has left (largest
remainders, ties to the lower stream), so with one class per file every batch holds every class
whose share of the data is at least ``1 / batch_size``. A stream that runs dry early (its jet
count was an estimate) hands its share to the others; all batches but the last are full.

Memory: a stream holds at most its current group and the pieces that arrived for it while
another stream was being served. Because the pieces are requested in the order in which the
proportional draw needs them (by the fraction of its file at which each piece starts), this is
about two groups per stream, whatever the size of the files. :class:`MixStats` counts the jets
held (``peak_buffered_jets``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .batch import Batch, Part, assemble
from .pieces import PieceData

__all__ = ["MixStats", "Stream", "apportion", "mix"]


def apportion(total: int, weights: Sequence[float]) -> list[int]:
    """``total`` split into integers proportional to ``weights`` (largest remainders; ties go
    to the lower index)."""
    w = np.asarray(weights, dtype=np.float64)
    quota = total * w / w.sum()
    counts = np.floor(quota).astype(np.int64)
    left = total - int(counts.sum())
    if left:
        order = np.lexsort((np.arange(w.size), -(quota - counts)))
        counts[order[:left]] += 1
    return [int(c) for c in counts]


@dataclass
class MixStats:
    """Jets held in the stream buffers: now and at most during the pass."""

    buffered_jets: int = 0
    peak_buffered_jets: int = 0

    def add(self, n: int) -> None:
        self.buffered_jets += n
        self.peak_buffered_jets = max(self.peak_buffered_jets, self.buffered_jets)


class _Group:
    """Jets of one or more pieces with the order in which they are handed out."""

    def __init__(self, parts: list[Part], rng: np.random.Generator | None) -> None:
        self.part = parts[0] if len(parts) == 1 else Part.concatenate(parts)
        n = self.part.n_jets
        self.order = None if rng is None else rng.permutation(n)
        self.cursor = 0

    @property
    def left(self) -> int:
        return self.part.n_jets - self.cursor

    def take(self, m: int) -> Part:
        stop = self.cursor + m
        index = (slice(self.cursor, stop) if self.order is None
                 else self.order[self.cursor:stop])
        self.cursor = stop
        return self.part.take(index)


class Stream:
    """A consumer of ``n_pieces`` pieces holding about ``expected_jets`` jets, buffered in
    groups of ``group`` pieces (shuffled with ``rng``, in arrival order without)."""

    def __init__(self, n_pieces: int, expected_jets: float, *, group: int = 1,
                 rng: np.random.Generator | None = None, stats: MixStats | None = None) -> None:
        self.pending = int(n_pieces)
        self.expected = float(expected_jets)
        self.taken = 0
        self.group = max(int(group), 1)
        self.rng = rng
        self.stats = stats if stats is not None else MixStats()
        self._arrived: list[Part] = []
        self._groups: deque[_Group] = deque()

    @property
    def available(self) -> int:
        """Jets ready to be taken."""
        return sum(g.left for g in self._groups)

    @property
    def done(self) -> bool:
        return self.pending == 0 and not self._groups

    @property
    def weight(self) -> float:
        """Share of the next batch: the jets still expected (at least 1 while not done)."""
        return 0.0 if self.done else max(self.expected - self.taken, 1.0)

    def arrive(self, part: Part) -> None:
        self.pending -= 1
        self.stats.add(part.n_jets)
        self._arrived.append(part)
        if len(self._arrived) >= self.group or self.pending == 0:
            group = _Group(self._arrived, self.rng)
            self._arrived = []
            if group.left:
                self._groups.append(group)

    def take(self, m: int) -> list[Part]:
        """Up to ``m`` jets (fewer only when the buffered groups run out)."""
        out: list[Part] = []
        while m > 0 and self._groups:
            head = self._groups[0]
            k = min(m, head.left)
            out.append(head.take(k))
            m -= k
            self.taken += k
            self.stats.add(-k)
            if not head.left:
                self._groups.popleft()
        return out


def mix(results: Iterator[PieceData], streams: list[Stream], batch_size: int, *,
        pin_memory: bool = False) -> Iterator[Batch]:
    """Batches of ``batch_size`` jets drawn from ``streams`` in proportion, fed with the pieces
    of ``results`` (each goes to the stream named by its ``piece.stream``)."""

    def pull_for(k: int, m: int) -> None:
        stream = streams[k]
        while stream.available < m and stream.pending > 0:
            data = next(results, None)
            if data is None:
                raise RuntimeError("the planned pieces ended before every stream was served")
            assert data.part is not None
            streams[data.piece.stream].arrive(data.part)

    while True:
        parts: list[Part] = []
        need = batch_size
        while need > 0:
            live = [k for k, s in enumerate(streams) if not s.done]
            if not live:
                break
            for k, m in zip(live, apportion(need, [streams[k].weight for k in live]),
                            strict=True):
                if m:
                    pull_for(k, m)
                    got = streams[k].take(m)
                    need -= sum(p.n_jets for p in got)
                    parts.extend(got)
        if not parts:
            return
        yield assemble(parts, pin_memory=pin_memory)
        if need > 0:
            return
