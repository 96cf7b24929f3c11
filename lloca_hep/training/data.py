"""Training data: ROOT files -> padded (E, px, py, pz) arrays + masks + scalars + labels
(+ per-jet weights).

:func:`load_dataset` reads the files once, piece by piece (:mod:`.pieces`: cluster-aligned
entry ranges read and padded by a ``torch.utils.data.DataLoader``, in ``workers`` worker
processes or in this process). When the padded arrays fit under a memory limit they are kept
(:class:`PaddedDataset`, shuffled globally every epoch); otherwise only counts are kept and the
files are read again in every epoch (:class:`StreamingDataset`), with the DataLoader's workers
reading ahead of the training and the batches mixed from all files (:mod:`.mixing`).

Determinism: the batches of an epoch depend on the seed only, not on the number of workers
(the pieces are read in a planned order and returned in that order; mixing happens in this
process), so a run gives the same weights with 0, 1 or 2 workers.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lloca_hep.errors import LabelError
from lloca_hep.features import InputSpec, preset

from .batch import Batch, Part, trim
from .config import (
    DEFAULT_LABEL_BRANCH,
    DEFAULT_MEMORY_LIMIT_BYTES,
    DEFAULT_MIXING,
    DEFAULT_STEP_SIZE,
    MIXING_CHOICES,
)
from .labels import BINARY_CLASSES, LabelSpec, extract_labels
from .mixing import MixStats, Stream, mix
from .pieces import FileLayout, JetSource, Piece, PieceLoader, plan_ranges, read_layout

log = logging.getLogger(__name__)

#: Consecutive pieces (reading steps) shuffled together with ``mixing="chunks"``.
STREAM_SHUFFLE_CHUNKS = 4
#: Bytes per padded constituent slot: four float64 momenta and one bool mask entry (plus four
#: bytes per float32 scalar).
BYTES_PER_SLOT = 4 * 8 + 1
#: Bytes per jet besides its slots: the label (at most int64) and the float32 weight.
BYTES_PER_JET = 8 + 4
#: Streamed data keep about ``memory_limit_bytes / STREAM_BUFFER_DIVISOR`` of padded jets per
#: round of pieces (each stream holds about two pieces, so the buffers stay under half the
#: limit).
STREAM_BUFFER_DIVISOR = 4
#: Salt of the seed of the streaming plan (so it differs from the in-memory permutation's).
STREAM_SEED_SALT = 17

__all__ = ["Batch", "LabelError", "PaddedDataset", "StreamingDataset", "binary_labels",
           "class_counts", "class_weight_totals", "describe_class", "load_dataset",
           "pad_chunk", "single_class", "split_dataset"]


def binary_labels(label_branch: str = DEFAULT_LABEL_BRANCH) -> LabelSpec:
    """The :class:`LabelSpec` of a 0/1 ``label_branch``."""
    return LabelSpec("binary", (label_branch,), BINARY_CLASSES)


def _as_paths(files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    if isinstance(files, (str, os.PathLike)):
        return [os.fspath(files)]
    paths = [os.fspath(f) for f in files]
    if not paths:
        raise ValueError("no input files given")
    return paths


def pad_chunk(jets: Any, max_constituents: int, labels: LabelSpec | None, where: str,
              first_jet: int = 0, inputs: InputSpec | None = None,
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Pad one awkward chunk of jets: ``(p4 float64 (n, N, 4), mask bool (n, N), labels,
    scalars float32 (n, N, S) or None)`` (network inputs of
    :func:`lloca_hep.preprocessing.inputs.network_inputs`)."""
    from lloca_hep.preprocessing.inputs import network_inputs
    from lloca_hep.tagger import _constituents_of

    padded = network_inputs(_constituents_of(jets), inputs or preset("kin"), max_constituents)
    y = None if labels is None else extract_labels(jets, labels, where, first_jet)
    return padded.p4, padded.mask, y, padded.scalars


def _chunk_where(chunk: Any) -> str:
    file = getattr(chunk, "file", "?")
    start = getattr(chunk, "entry_start", None)
    stop = getattr(chunk, "entry_stop", None)
    return f"{file} entries {start}-{stop}" if start is not None else str(file)


def bytes_per_jet(max_constituents: int, n_scalars: int = 0) -> int:
    """Bytes of one padded jet (momenta, mask, scalars, label and weight)."""
    return max_constituents * (BYTES_PER_SLOT + 4 * n_scalars) + BYTES_PER_JET


@dataclass
class PaddedDataset:
    """Padded jets in memory: ``p4`` float64 ``(n, N, 4)`` (E, px, py, pz) GeV, ``mask`` bool
    ``(n, N)``, ``labels`` ``(n,)`` (float32 0 background / 1 signal, or int64 class indices
    for more than two classes), ``scalars`` float32 ``(n, N, S)`` or None, the number of
    classes, and ``weights`` float32 ``(n,)`` (the weight branch) or None."""

    p4: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    scalars: np.ndarray | None = None
    n_classes: int = 2
    weights: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def nbytes(self) -> int:
        extra = sum(0 if a is None else a.nbytes for a in (self.scalars, self.weights))
        return int(self.p4.nbytes + self.mask.nbytes + self.labels.nbytes + extra)

    def subset(self, index: np.ndarray) -> PaddedDataset:
        return PaddedDataset(self.p4[index], self.mask[index], self.labels[index],
                             None if self.scalars is None else self.scalars[index],
                             self.n_classes, None if self.weights is None else self.weights[index])

    def drop_empty(self) -> PaddedDataset:
        keep = self.mask.any(axis=1)
        n_drop = int((~keep).sum())
        if n_drop:
            log.warning("dropping %d jets without constituents from the data", n_drop)
            return self.subset(np.nonzero(keep)[0])
        return self

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                pin_memory: bool = False) -> Iterator[Batch]:
        """Yield :class:`Batch` es of torch tensors; shuffled with a generator seeded by
        ``seed`` when ``shuffle``; padding columns unused by a batch are trimmed; pinned for
        an asynchronous copy to CUDA with ``pin_memory``."""
        n = len(self)
        if shuffle:
            gen = torch.Generator().manual_seed(int(seed))
            order = torch.randperm(n, generator=gen).numpy()
        else:
            order = np.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            p4, mask = trim(torch.from_numpy(self.p4[idx]), torch.from_numpy(self.mask[idx]))
            scalars = weights = None
            if self.scalars is not None:
                scalars = torch.from_numpy(self.scalars[idx][:, :mask.shape[1]])
            if self.weights is not None:
                weights = torch.from_numpy(self.weights[idx])
            batch = Batch(p4, mask, torch.from_numpy(self.labels[idx]), scalars, weights)
            yield batch.pin_memory() if pin_memory else batch

    def n_batches(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)

    def close(self) -> None:
        """Nothing to release (the interface of :class:`StreamingDataset`)."""


class StreamingDataset:
    """Jets read from the files of ``source`` again in every pass, piece by piece, by a
    persistent ``DataLoader`` of ``workers`` processes (0: in this process).

    Shuffled passes (training) with ``mixing="files"`` give every file a stream of
    cluster-aligned pieces in a seeded random order, each piece shuffled, and draw every batch
    from all files in proportion to the jets they have left (:mod:`.mixing`); the pieces are
    sized so that the buffers hold about ``memory_limit_bytes / 2`` of padded jets in all.
    ``mixing="chunks"`` reads the files one after the other in a seeded random order and
    shuffles groups of :data:`STREAM_SHUFFLE_CHUNKS` reading steps. Unshuffled passes
    (validation) read the files in order.

    ``per_file``: jets with constituents per file (from the first pass); ``counts`` and
    ``class_weights``: jets and summed weights per class. ``holdout_every`` / ``holdout`` keep
    only (``holdout=True``) or leave out the jets of every k-th entry, so one set of files can
    serve as training and validation data; the jet counts of such a part are estimates.
    """

    def __init__(self, source: JetSource, layouts: Sequence[FileLayout],
                 per_file: Sequence[int], *, counts: tuple[int, ...] | None = None,
                 class_weights: tuple[float, ...] | None = None,
                 memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES,
                 mixing: str = DEFAULT_MIXING, workers: int = 0, holdout_every: int = 0,
                 holdout: bool = False, loader: PieceLoader | None = None) -> None:
        if mixing not in MIXING_CHOICES:
            raise ValueError(f"mixing must be one of {MIXING_CHOICES}, got {mixing!r}")
        self.source = source
        self.layouts = tuple(layouts)
        self.per_file = tuple(int(n) for n in per_file)
        #: jets per class when known (None for a hold-out part), summed weights per class.
        self.counts = counts
        self.class_weights = class_weights
        self.memory_limit_bytes = int(memory_limit_bytes)
        self.mixing = mixing
        self.workers = int(workers)
        self.holdout_every = int(holdout_every)
        self.holdout = holdout
        total = sum(self.per_file)
        fraction = 1.0
        if self.holdout_every:
            n_val = -(-total // self.holdout_every)
            self._n_jets = n_val if holdout else total - n_val
            fraction = 1.0 / self.holdout_every if holdout else 1.0 - 1.0 / self.holdout_every
        else:
            self._n_jets = total
        self._expected = [n * fraction for n in self.per_file]
        #: buffer statistics of the latest pass (:class:`~.mixing.MixStats`).
        self.stats = MixStats()
        self._loader = loader

    @property
    def files(self) -> list[str]:
        return list(self.source.files)

    @property
    def max_constituents(self) -> int:
        return self.source.max_constituents

    @property
    def labels(self) -> LabelSpec:
        return self.source.labels

    @property
    def inputs(self) -> InputSpec:
        return self.source.inputs

    @property
    def n_classes(self) -> int:
        return self.source.labels.n_classes

    def __len__(self) -> int:
        return self._n_jets

    def n_batches(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)

    def holdout_part(self, every: int, holdout: bool) -> StreamingDataset:
        """The jets of every ``every``-th entry (``holdout``) or all others (read by the same
        worker processes)."""
        return StreamingDataset(self.source, self.layouts, self.per_file, counts=None,
                                class_weights=self.class_weights,
                                memory_limit_bytes=self.memory_limit_bytes, mixing=self.mixing,
                                workers=self.workers, holdout_every=every, holdout=holdout,
                                loader=self._piece_loader())

    def piece_targets(self) -> list[int]:
        """Entries per piece of each file for ``mixing="files"``: a share of the buffer
        proportional to the file's size, at most one reading step."""
        jet_bytes = bytes_per_jet(self.max_constituents, len(self.inputs))
        buffer_jets = max(self.memory_limit_bytes // (STREAM_BUFFER_DIVISOR * jet_bytes), 1)
        rounds = max(1, math.ceil(sum(lay.num_entries for lay in self.layouts) / buffer_jets))
        return [min(lay.step_entries, max(1, math.ceil(lay.num_entries / rounds)))
                for lay in self.layouts]

    def plan(self, shuffle: bool, seed: int, stats: MixStats | None = None,
             ) -> tuple[list[Piece], list[Stream]]:
        """The pieces of one pass, in the order they are read, and the streams they feed
        (counting their buffered jets in ``stats``)."""
        stats = MixStats() if stats is None else stats

        def piece(i: int, span: tuple[int, int], stream: int) -> Piece:
            return Piece(i, span[0], span[1], stream, holdout_every=self.holdout_every,
                         holdout=self.holdout)

        steps = [plan_ranges(lay.boundaries, lay.step_entries) for lay in self.layouts]
        if not shuffle:
            pieces = [piece(i, s, 0) for i, spans in enumerate(steps) for s in spans]
            return pieces, [Stream(len(pieces), len(self), stats=stats)]
        rng = np.random.default_rng([int(seed), STREAM_SEED_SALT])
        if self.mixing == "chunks":
            order = rng.permutation(len(self.layouts))
            pieces = [piece(int(i), s, 0) for i in order for s in steps[i]]
            return pieces, [Stream(len(pieces), len(self), group=STREAM_SHUFFLE_CHUNKS,
                                   rng=rng, stats=stats)]
        due: list[tuple[float, int, Piece]] = []
        streams = []
        for i, (lay, target) in enumerate(zip(self.layouts, self.piece_targets(), strict=True)):
            spans = plan_ranges(lay.boundaries, target)
            start = 0
            for j in rng.permutation(len(spans)):
                a, b = spans[j]
                due.append((start / max(lay.num_entries, 1), i, piece(i, (a, b), i)))
                start += b - a
            streams.append(Stream(len(spans), self._expected[i], stats=stats,
                                  rng=np.random.default_rng([int(seed), STREAM_SEED_SALT, i])))
        due.sort(key=lambda d: (d[0], d[1]))
        return [d[2] for d in due], streams

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                pin_memory: bool = False) -> Iterator[Batch]:
        """The :class:`Batch` es of one pass (see the class docstring)."""
        self.stats = MixStats()
        pieces, streams = self.plan(shuffle, seed, self.stats)
        yield from mix(self._piece_loader().run(pieces), streams, batch_size,
                       pin_memory=pin_memory)

    def _piece_loader(self) -> PieceLoader:
        if self._loader is None or self._loader.workers != self.workers:
            self._loader = PieceLoader(self.source, self.workers, persistent=True)
        return self._loader

    def close(self) -> None:
        """Stop the reading worker processes (a later pass starts new ones)."""
        if self._loader is not None:
            self._loader.close()
            self._loader = None


Dataset = PaddedDataset | StreamingDataset


class _FirstPass:
    """The pieces of the first reading of the files, in file order; padded until the data
    turn out to exceed the memory limit, counted only after that."""

    def __init__(self, layouts: Sequence[FileLayout], max_jets: int | None) -> None:
        self.layouts = layouts
        self.max_jets = max_jets
        self.pad = True
        self.n_read = 0

    def __iter__(self) -> Iterator[Piece]:
        for i, lay in enumerate(self.layouts):
            for a, b in plan_ranges(lay.boundaries, lay.step_entries):
                if self.max_jets is not None and self.n_read >= self.max_jets:
                    return
                yield Piece(i, a, b, i, pad=self.pad, drop_empty=False)


def load_dataset(
    files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    max_constituents: int,
    label_branch: str = DEFAULT_LABEL_BRANCH,
    step_size: str | int = DEFAULT_STEP_SIZE,
    memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES,
    max_jets: int | None = None,
    progress: bool = True,
    tree: str | None = None,
    labels: LabelSpec | None = None,
    inputs: InputSpec | None = None,
    weight_branch: str | None = None,
    workers: int = 0,
    mixing: str = DEFAULT_MIXING,
) -> Dataset:
    """Read ``files`` into a :class:`PaddedDataset`, or a :class:`StreamingDataset` when the
    padded arrays would exceed ``memory_limit_bytes``.

    ``labels``: how labels are read (:class:`~lloca_hep.training.labels.LabelSpec`; default
    the 0/1 ``label_branch``); ``inputs``: the per-particle features (default none);
    ``weight_branch``: a branch of per-jet weights (checked: finite and non-negative);
    ``workers``: DataLoader worker processes reading and padding (0: this process);
    ``mixing``: how streamed data are shuffled (see :class:`StreamingDataset`).

    ``tree`` names the TTree/RNTuple (default: the one that holds jets). ``max_jets`` keeps
    only the first ``max_jets`` jets (in file order). Jets without constituents are dropped
    (with a warning) since they carry no information.
    """
    from tqdm.auto import tqdm

    from lloca_hep.io.readers import _expand_paths

    paths = _as_paths(files)
    spec = binary_labels(label_branch) if labels is None else labels
    source = JetSource(tuple(_expand_paths(paths)), int(max_constituents), spec,
                       inputs or preset("kin"), tree, step_size, weight_branch)
    layouts = [read_layout(source, i) for i in range(len(source.files))]
    first = _FirstPass(layouts, max_jets)
    loader = PieceLoader(source, workers, persistent=True)  # kept for streamed epochs
    parts: list[Part] = []
    nbytes = 0
    per_file = np.zeros(len(layouts), dtype=np.int64)
    per_class = np.zeros(spec.n_classes, dtype=np.int64)
    class_weights = np.zeros(spec.n_classes, dtype=np.float64)
    try:
        with tqdm(desc="reading " + (paths[0] if len(paths) == 1 else f"{len(paths)} files"),
                  unit=" jets", disable=not progress, leave=False) as bar:
            for data in loader.run(first):
                n = data.n_jets
                if max_jets is not None:
                    n = min(n, max(max_jets - first.n_read, 0))
                if n == 0:
                    if max_jets is not None and first.n_read >= max_jets:
                        break
                    continue
                filled = data.nonempty[:n]
                y = data.labels[:n][filled].astype(np.int64)
                per_file[data.piece.file] += int(filled.sum())
                per_class += np.bincount(y, minlength=spec.n_classes)
                w = None if data.weights is None else data.weights[:n][filled]
                class_weights += np.bincount(y, weights=w, minlength=spec.n_classes)
                if first.pad and data.part is not None:
                    parts.append(data.part.take(slice(0, n)))
                    nbytes += parts[-1].nbytes
                    if nbytes > memory_limit_bytes:
                        log.info("padded data exceed %.1f GB: streaming from disk each epoch",
                                 memory_limit_bytes / 1e9)
                        first.pad = False
                        parts.clear()
                first.n_read += n
                bar.update(n)
    except BaseException:
        loader.close()  # stop the workers now, not when the traceback is freed
        raise
    if first.pad or first.n_read == 0:
        loader.close()
    if first.n_read == 0:
        raise ValueError(f"no jets found in {paths}")
    if not first.pad:
        if max_jets is not None:
            loader.close()
            raise ValueError("max_jets is only supported for data that fit in memory")
        return StreamingDataset(source, layouts, per_file.tolist(),
                                counts=tuple(int(c) for c in per_class),
                                class_weights=tuple(float(c) for c in class_weights),
                                memory_limit_bytes=memory_limit_bytes, mixing=mixing,
                                workers=workers, loader=loader)
    return _concatenate(parts, spec.n_classes).drop_empty()


def _concatenate(parts: list[Part], n_classes: int) -> PaddedDataset:
    def cat(arrays: list[Any]) -> Any:
        return None if arrays[0] is None else np.concatenate(arrays)

    return PaddedDataset(cat([p.p4 for p in parts]), cat([p.mask for p in parts]),
                         cat([p.labels for p in parts]), cat([p.scalars for p in parts]),
                         n_classes, cat([p.weights for p in parts]))


def class_counts(data: Dataset) -> tuple[int, ...] | None:
    """Jets per class of ``data`` (``(n_background, n_signal)`` for binary labels); None when
    unknown (a streamed hold-out split)."""
    if isinstance(data, PaddedDataset):
        return tuple(int(c) for c in np.bincount(data.labels.astype(np.int64),
                                                 minlength=data.n_classes))
    return data.counts


def class_weight_totals(data: Dataset) -> np.ndarray:
    """float64 ``(C,)``: summed weight (the weight branch, or 1 per jet) of each class. For a
    streamed hold-out part these are the totals of all the files it is taken from."""
    if isinstance(data, PaddedDataset):
        return np.bincount(data.labels.astype(np.int64), weights=data.weights,
                           minlength=data.n_classes).astype(np.float64)
    assert data.class_weights is not None
    return np.asarray(data.class_weights, dtype=np.float64)


def single_class(data: Dataset) -> int | None:
    """The one class that all jets of ``data`` have, or None (several, or unknown)."""
    counts = class_counts(data)
    if counts is None or sum(c > 0 for c in counts) != 1:
        return None
    return int(np.flatnonzero(np.asarray(counts))[0])


def describe_class(label: int, classes: tuple[str, ...] = BINARY_CLASSES) -> str:
    """``"1 (signal)"`` / ``"0 (background)"`` (or the class name), for messages."""
    name = classes[label] if 0 <= label < len(classes) else "?"
    return f"{label} ({name})"


def split_dataset(data: Dataset, val_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Split off a validation set: a seeded random subset in memory, the jets of every k-th
    entry when streaming."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if isinstance(data, PaddedDataset):
        n = len(data)
        n_val = max(1, int(round(n * val_fraction)))
        if n_val >= n:
            raise ValueError(f"cannot split {n} jets into training and validation sets")
        gen = torch.Generator().manual_seed(int(seed))
        perm = torch.randperm(n, generator=gen).numpy()
        return data.subset(np.sort(perm[n_val:])), data.subset(np.sort(perm[:n_val]))
    every = max(2, int(round(1.0 / val_fraction)))
    return data.holdout_part(every, False), data.holdout_part(every, True)
