"""Training data: ROOT files -> padded (E, px, py, pz) arrays + masks + scalars + labels.

Files are read chunk by chunk with :func:`lloca_hep.io.iterate_jets` and padded with
:func:`lloca_hep.preprocessing.pad_jets`. When the padded arrays fit under a memory limit they
are kept in memory (:class:`PaddedDataset`); otherwise the data are streamed from the files
again in every epoch (:class:`StreamingDataset`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from lloca_hep.errors import LabelError
from lloca_hep.features import InputSpec, preset

from .config import DEFAULT_LABEL_BRANCH, DEFAULT_MEMORY_LIMIT_BYTES, DEFAULT_STEP_SIZE
from .labels import BINARY_CLASSES, LabelSpec, extract_labels

log = logging.getLogger(__name__)

#: Number of consecutive chunks shuffled together when streaming.
STREAM_SHUFFLE_CHUNKS = 4
#: Bytes per padded constituent slot: four float64 momenta and one bool mask entry (plus four
#: bytes per float32 scalar).
BYTES_PER_SLOT = 4 * 8 + 1

__all__ = ["Batch", "LabelError", "PaddedDataset", "StreamingDataset", "binary_labels",
           "class_counts", "describe_class", "load_dataset", "pad_chunk", "single_class",
           "split_dataset"]


class Batch(NamedTuple):
    """One batch: ``p4`` float64 ``(B, N, 4)``, ``mask`` bool ``(B, N)``, ``labels`` (float32
    0/1 for C = 2, int64 class indices for C > 2) ``(B,)`` and ``scalars`` float32
    ``(B, N, S)`` (None without features)."""

    p4: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor
    scalars: torch.Tensor | None = None


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


Part = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]


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


def _iterate(paths: list[str], step_size: str | int, labels: LabelSpec,
             tree: str | None = None, inputs: InputSpec | None = None) -> Iterator[Any]:
    from lloca_hep.io import iterate_jets

    yield from iterate_jets(paths, step_size=step_size, jet_fields=list(labels.branches),
                            tree=tree, features=inputs if inputs is not None and len(inputs)
                            else None)


def _trim(p4: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop padding columns that no jet of the batch uses (at least one column is kept)."""
    width = max(int(mask.sum(dim=1).max()), 1) if mask.numel() else 1
    return p4[:, :width], mask[:, :width]


@dataclass
class PaddedDataset:
    """Padded jets in memory: ``p4`` float64 ``(n, N, 4)`` (E, px, py, pz) GeV, ``mask`` bool
    ``(n, N)``, ``labels`` ``(n,)`` (float32 0 background / 1 signal, or int64 class indices
    for more than two classes), ``scalars`` float32 ``(n, N, S)`` or None, and the number of
    classes."""

    p4: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    scalars: np.ndarray | None = None
    n_classes: int = 2

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def nbytes(self) -> int:
        extra = 0 if self.scalars is None else self.scalars.nbytes
        return int(self.p4.nbytes + self.mask.nbytes + self.labels.nbytes + extra)

    def subset(self, index: np.ndarray) -> PaddedDataset:
        return PaddedDataset(self.p4[index], self.mask[index], self.labels[index],
                             None if self.scalars is None else self.scalars[index],
                             self.n_classes)

    def drop_empty(self) -> PaddedDataset:
        keep = self.mask.any(axis=1)
        n_drop = int((~keep).sum())
        if n_drop:
            log.warning("dropping %d jets without constituents from the data", n_drop)
            return self.subset(np.nonzero(keep)[0])
        return self

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0) -> Iterator[Batch]:
        """Yield :class:`Batch` es ``(p4, mask, labels, scalars)`` of torch tensors; shuffled
        with a generator seeded by ``seed`` when ``shuffle``; padding columns unused by a batch
        are trimmed."""
        n = len(self)
        if shuffle:
            gen = torch.Generator().manual_seed(int(seed))
            order = torch.randperm(n, generator=gen).numpy()
        else:
            order = np.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            p4, mask = _trim(torch.from_numpy(self.p4[idx]), torch.from_numpy(self.mask[idx]))
            scalars = None
            if self.scalars is not None:
                scalars = torch.from_numpy(self.scalars[idx][:, :mask.shape[1]])
            yield Batch(p4, mask, torch.from_numpy(self.labels[idx]), scalars)

    def n_batches(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)


class StreamingDataset:
    """Jets read from ``files`` again in every pass, chunk by chunk.

    Shuffling permutes the file order and the jets inside groups of
    :data:`STREAM_SHUFFLE_CHUNKS` consecutive chunks. ``holdout_every`` / ``holdout`` select
    every k-th jet (by position in the files) for validation (``holdout=True``) or exclude
    them (``holdout=False``), so one set of files can serve as both training and validation.
    """

    def __init__(
        self,
        files: Sequence[str],
        *,
        max_constituents: int,
        n_jets: int,
        label_branch: str = DEFAULT_LABEL_BRANCH,
        step_size: str | int = DEFAULT_STEP_SIZE,
        holdout_every: int | None = None,
        holdout: bool = False,
        counts: tuple[int, ...] | None = None,
        tree: str | None = None,
        labels: LabelSpec | None = None,
        inputs: InputSpec | None = None,
    ) -> None:
        self.files = list(files)
        self.tree = tree
        #: jets per class when known (counted while reading), else None.
        self.counts = counts
        self.max_constituents = int(max_constituents)
        self.labels = binary_labels(label_branch) if labels is None else labels
        self.inputs = inputs or preset("kin")
        self.n_classes = self.labels.n_classes
        self.step_size = step_size
        self.holdout_every = holdout_every
        self.holdout = holdout
        self._n_jets = int(n_jets)

    def __len__(self) -> int:
        return self._n_jets

    def n_batches(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)

    def _chunks(self, file_order: list[str]) -> Iterator[Part]:
        position = 0
        for chunk in _iterate(file_order, self.step_size, self.labels, self.tree, self.inputs):
            jets = chunk.jets
            n = len(jets)
            if n == 0:
                continue
            p4, mask, labels, scalars = pad_chunk(jets, self.max_constituents, self.labels,
                                                  _chunk_where(chunk), chunk.entry_start,
                                                  self.inputs)
            assert labels is not None
            keep = mask.any(axis=1)
            if self.holdout_every:
                is_held = (np.arange(position, position + n) % self.holdout_every) == 0
                keep &= is_held if self.holdout else ~is_held
            position += n
            yield p4[keep], mask[keep], labels[keep], None if scalars is None else scalars[keep]

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0) -> Iterator[Batch]:
        gen = torch.Generator().manual_seed(int(seed))
        files = list(self.files)
        if shuffle:
            files = [files[i] for i in torch.randperm(len(files), generator=gen).tolist()]
        buffer: list[Part] = []

        def flush() -> Iterator[Batch]:
            if not buffer:
                return
            ds = _concatenate(buffer, self.n_classes)
            buffer.clear()
            sub_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
            yield from ds.batches(batch_size, shuffle=shuffle, seed=sub_seed)

        for part in self._chunks(files):
            buffer.append(part)
            if len(buffer) >= STREAM_SHUFFLE_CHUNKS:
                yield from flush()
        yield from flush()


Dataset = PaddedDataset | StreamingDataset


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
) -> Dataset:
    """Read ``files`` into a :class:`PaddedDataset`, or a :class:`StreamingDataset` when the
    padded arrays would exceed ``memory_limit_bytes``.

    ``labels``: how labels are read (:class:`~lloca_hep.training.labels.LabelSpec`; default
    the 0/1 ``label_branch``); ``inputs``: the per-particle features (default none).

    ``tree`` names the TTree/RNTuple (default: the one that holds jets). ``max_jets`` keeps only the first ``max_jets`` jets (in file order). Jets without
    constituents are dropped (with a warning) since they carry no information.
    """
    from tqdm.auto import tqdm

    paths = _as_paths(files)
    spec = binary_labels(label_branch) if labels is None else labels
    inputs = inputs or preset("kin")
    parts: list[Part] = []
    nbytes = 0
    n_jets = 0
    per_class = np.zeros(spec.n_classes, dtype=np.int64)
    streaming = False
    with tqdm(desc="reading " + (paths[0] if len(paths) == 1 else f"{len(paths)} files"),
              unit=" jets", disable=not progress, leave=False) as bar:
        for chunk in _iterate(paths, step_size, spec, tree, inputs):
            jets = chunk.jets
            if max_jets is not None:
                jets = jets[: max(max_jets - n_jets, 0)]
            n = len(jets)
            if n == 0:
                if max_jets is not None and n_jets >= max_jets:
                    break
                continue
            if not streaming:
                p4, mask, y, scalars = pad_chunk(jets, max_constituents, spec,
                                                 _chunk_where(chunk), chunk.entry_start, inputs)
                assert y is not None
                parts.append((p4, mask, y, scalars))
                nbytes += p4.nbytes + mask.nbytes + y.nbytes
                nbytes += 0 if scalars is None else scalars.nbytes
                if nbytes > memory_limit_bytes:
                    log.info("padded data exceed %.1f GB: streaming from disk each epoch",
                             memory_limit_bytes / 1e9)
                    streaming = True
                    parts.clear()
            else:
                y = extract_labels(jets, spec, _chunk_where(chunk), chunk.entry_start)
            per_class += np.bincount(y.astype(np.int64), minlength=spec.n_classes)
            n_jets += n
            bar.update(n)
    if n_jets == 0:
        raise ValueError(f"no jets found in {paths}")
    if streaming:
        if max_jets is not None:
            raise ValueError("max_jets is only supported for data that fit in memory")
        return StreamingDataset(paths, max_constituents=max_constituents, n_jets=n_jets,
                                step_size=step_size, tree=tree, labels=spec, inputs=inputs,
                                counts=tuple(int(c) for c in per_class))
    return _concatenate(parts, spec.n_classes).drop_empty()


def _concatenate(parts: list[Part], n_classes: int) -> PaddedDataset:
    with_scalars = [p[3] for p in parts if p[3] is not None]
    scalars = np.concatenate(with_scalars) if with_scalars else None
    return PaddedDataset(np.concatenate([p[0] for p in parts]),
                         np.concatenate([p[1] for p in parts]),
                         np.concatenate([p[2] for p in parts]), scalars, n_classes)


def class_counts(data: Dataset) -> tuple[int, ...] | None:
    """Jets per class of ``data`` (``(n_background, n_signal)`` for binary labels); None when
    unknown (a streamed hold-out split)."""
    if isinstance(data, PaddedDataset):
        return tuple(int(c) for c in np.bincount(data.labels.astype(np.int64),
                                                 minlength=data.n_classes))
    return data.counts


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
    """Split off a validation set: a seeded random subset in memory, every k-th jet when streaming."""
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
    common: dict[str, Any] = dict(max_constituents=data.max_constituents,
                                  labels=data.labels, inputs=data.inputs,
                                  step_size=data.step_size, holdout_every=every, tree=data.tree)
    n_val = -(-len(data) // every)
    train = StreamingDataset(data.files, n_jets=len(data) - n_val, holdout=False, **common)
    val = StreamingDataset(data.files, n_jets=n_val, holdout=True, **common)
    return train, val
