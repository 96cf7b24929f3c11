"""Machinery shared by the sample writers: argument checks, running chunk tasks in a worker
pool with results put back in task order, permuting ragged jets, and the output conventions.

A task is any object with ``n_jets``; a result any object with ``index`` (its task's position)
and ``n_jets``. The worker function must be importable at module level (spawn pool).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np

#: jets per work unit (one Pythia initialisation, about 0.15 s, per chunk)
DEFAULT_CHUNK_SIZE = 500
#: jets per ``TTree.extend`` call (one basket per branch)
WRITE_BATCH_JETS = 20_000
#: ZSTD compression level of the output files
ZSTD_LEVEL = 5
#: name of the JSON provenance string stored next to the tree
PROVENANCE_KEY = "generation_config"


class _Task(Protocol):
    @property
    def n_jets(self) -> int: ...


class _Result(Protocol):
    @property
    def index(self) -> int: ...

    @property
    def n_jets(self) -> int: ...


TaskT = TypeVar("TaskT", bound=_Task)
ResultT = TypeVar("ResultT", bound=_Result)


def check_count(name: str, value: int) -> int:
    """``value`` as an int; TypeError unless an integer (bools refused), ValueError if < 0."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


def run_tasks(
    tasks: Sequence[TaskT], worker: Callable[[TaskT], ResultT], workers: int, progress: bool
) -> list[ResultT]:
    """Run ``worker`` on every task (in this process for one worker, else a spawn pool);
    results in task order (``result.index``), with a tqdm bar counting jets."""
    from tqdm.auto import tqdm

    results: list[ResultT | None] = [None] * len(tasks)
    total = sum(t.n_jets for t in tasks)
    with tqdm(total=total, unit="jet", desc="generating", disable=not progress) as bar:
        stream: Iterator[ResultT]
        if workers == 1:
            stream = map(worker, tasks)
            pool = None
        else:
            pool = multiprocessing.get_context("spawn").Pool(workers)
            stream = pool.imap_unordered(worker, tasks, chunksize=1)
        try:
            for result in stream:
                results[result.index] = result
                bar.update(result.n_jets)
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:  # pragma: no cover - the pool raises before this can happen
        raise RuntimeError(f"generation chunks {missing} returned no result")
    return [r for r in results if r is not None]


def permute_ragged(
    npart: np.ndarray, part: np.ndarray, perm: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Jets reordered by ``perm``: ``npart`` ``(n_jets,)`` constituent counts, ``part``
    ``(sum(npart), ...)`` constituent rows; returns the permuted ``(npart, part)``."""
    offsets = np.zeros(len(npart) + 1, dtype=np.int64)
    np.cumsum(npart, out=offsets[1:])
    # gather each jet's constituent rows in the new order
    starts = offsets[:-1][perm]
    counts = npart[perm].astype(np.int64)
    new_offsets = np.zeros_like(offsets)
    np.cumsum(counts, out=new_offsets[1:])
    rows = np.arange(new_offsets[-1], dtype=np.int64) - np.repeat(new_offsets[:-1] - starts, counts)
    return npart[perm], part[rows]


def shuffle_permutation(seed: int, spawn_key: int, n: int) -> np.ndarray:
    """The permutation of ``n`` jets drawn from ``SeedSequence(seed, spawn_key=(spawn_key,))``."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(spawn_key,)))
    return rng.permutation(n)


def package_version(pkg: str) -> str:
    """The installed version of ``pkg``, ``"unknown"`` when it is not installed."""
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "unknown"


def write_jet_tree(path: Path, tree_name: str, provenance: str, npart: np.ndarray,
                   part: np.ndarray, part_fields: Sequence[str], jet: np.ndarray,
                   jet_fields: Sequence[str], extra: Mapping[str, np.ndarray]) -> None:
    """Write one flat jet TTree to ``path`` (ZSTD, :data:`PROVENANCE_KEY` beside it).

    ``npart`` int ``(n_jets,)`` constituents per jet; ``part`` float32 ``(sum(npart), F)`` the
    constituents of all jets one after the other, columns ``part_fields`` (ragged branches
    ``part_<field>`` with counter ``npart``); ``jet`` float32 ``(n_jets, J)``, columns
    ``jet_fields``; ``extra``: further per-jet branches ``(n_jets,)`` in their own dtype
    (``is_signal``, one-hot ``label_*``), written after the ``jet_*`` branches in this order.
    Written in batches of :data:`WRITE_BATCH_JETS` jets.
    """
    import awkward as ak
    import uproot

    offsets = np.zeros(len(npart) + 1, dtype=np.int64)
    np.cumsum(npart, out=offsets[1:])
    with uproot.recreate(path, compression=uproot.ZSTD(ZSTD_LEVEL)) as f:
        f[PROVENANCE_KEY] = provenance
        part_type = ak.types.ListType(ak.types.RecordType(
            [ak.types.NumpyType("float32")] * len(part_fields), list(part_fields)))
        branch_types: dict[str, object] = {"part": part_type}
        branch_types.update({name: np.float32 for name in jet_fields})
        branch_types.update({name: values.dtype for name, values in extra.items()})
        tree = f.mktree(tree_name, branch_types, counter_name=lambda counted: "n" + counted)
        for start in range(0, len(npart), WRITE_BATCH_JETS):
            stop = min(start + WRITE_BATCH_JETS, len(npart))
            lo, hi = offsets[start], offsets[stop]
            record = ak.contents.RecordArray(
                [ak.contents.NumpyArray(np.ascontiguousarray(part[lo:hi, i]))
                 for i in range(len(part_fields))],
                list(part_fields),
            )
            batch: dict[str, object] = {"part": ak.Array(ak.contents.ListOffsetArray(
                ak.index.Index64(offsets[start:stop + 1] - lo), record))}
            for i, name in enumerate(jet_fields):
                batch[name] = np.ascontiguousarray(jet[start:stop, i])
            for name, values in extra.items():
                batch[name] = values[start:stop]
            tree.extend(batch)
