"""Read ahead: prepare the next chunk on a thread while the caller scores this one.

:func:`read_ahead` runs ``prepare(item)`` for the items of an iterator on one background thread
and yields ``(item, prepared)`` in order, at most :data:`READ_AHEAD_DEPTH` prepared items
ahead of the caller. Reading a ROOT chunk (uproot's decompression), the numba padding kernels
and torch all release the GIL for most of their time, so on two cores the reading of chunk
``k + 1`` overlaps the scoring of chunk ``k``.

>>> for chunk, padded in read_ahead(iterate_jets(path), prepare):   # doctest: +SKIP
...     scores = tagger.score_padded(padded.p4, padded.mask, scalars=padded.scalars)

An exception of the iterator or of ``prepare`` is raised again in the caller, unchanged (same
type, message and traceback), when its turn comes; when the caller stops early (an error of its
own, ``break``, Ctrl-C) the thread stops after the item it is preparing and the iterator is
closed on it (its files are closed).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar, cast

__all__ = ["READ_AHEAD_DEPTH", "read_ahead"]

#: Prepared items held ahead of the caller (memory: this many chunks more than without).
READ_AHEAD_DEPTH = 1
#: Seconds between the thread's checks whether the caller has stopped, while the queue is full.
_POLL_SECONDS = 0.05

T = TypeVar("T")
U = TypeVar("U")


def read_ahead(items: Iterator[T], prepare: Callable[[T], U],
               depth: int = READ_AHEAD_DEPTH) -> Iterator[tuple[T, U]]:
    """``(item, prepare(item))`` for every item of ``items``, in order, prepared on a
    background thread up to ``depth`` items ahead (``depth >= 1``)."""
    if int(depth) < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    q: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=int(depth))
    stop = threading.Event()

    def put(message: tuple[str, object]) -> bool:
        while not stop.is_set():
            try:
                q.put(message, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set() or not put(("item", (item, prepare(item)))):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the caller unchanged
            put(("error", exc))
        else:
            put(("done", None))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="lloca-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "done":
                return
            if kind == "error":
                assert isinstance(value, BaseException)
                raise value
            yield cast("tuple[T, U]", value)
    finally:
        stop.set()
        thread.join()
