"""Training data: ROOT files -> padded (E, px, py, pz) arrays + masks + labels.

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
from typing import Any

import numpy as np
import torch

from .config import DEFAULT_LABEL_BRANCH, DEFAULT_MEMORY_LIMIT_BYTES, DEFAULT_STEP_SIZE

log = logging.getLogger(__name__)

#: Number of consecutive chunks shuffled together when streaming.
STREAM_SHUFFLE_CHUNKS = 4
#: Bytes per padded constituent slot: four float64 momenta and one bool mask entry.
BYTES_PER_SLOT = 4 * 8 + 1

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class LabelError(ValueError):
    """The label branch is missing or holds values other than 0/1."""


def _as_paths(files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    if isinstance(files, (str, os.PathLike)):
        return [os.fspath(files)]
    paths = [os.fspath(f) for f in files]
    if not paths:
        raise ValueError("no input files given")
    return paths


def extract_labels(jets: Any, label_branch: str, where: str, first_jet: int = 0) -> np.ndarray:
    """``jets[label_branch]`` as float32 0/1 ``(n_jets,)``; errors name ``where``, the branch and
    the jet (counted from ``first_jet``)."""
    import awkward as ak

    fields = ak.fields(jets)
    if label_branch not in fields:
        raise LabelError(
            f"{where}: label branch {label_branch!r} not found; available fields: {fields}"
        )
    values = ak.to_numpy(jets[label_branch])
    if values.ndim != 1:
        raise LabelError(f"{where}: label branch {label_branch!r} is not one number per jet")
    bad = ~np.isin(values, (0, 1))
    if np.any(bad):
        first = int(np.argmax(bad))
        raise LabelError(
            f"{where}: label branch {label_branch!r} must hold 0 or 1; jet {first_jet + first} "
            f"has {values[first].item()!r}"
        )
    return values.astype(np.float32)


def pad_chunk(jets: Any, max_constituents: int, label_branch: str | None, where: str,
              first_jet: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Pad one awkward chunk of jets: ``(p4 float64 (n, N, 4), mask bool (n, N), labels)``."""
    from lloca_hep.preprocessing import pad_jets
    from lloca_hep.tagger import _constituents_of

    padded = pad_jets(_constituents_of(jets), max_constituents=max_constituents, sort_by_pt=True,
                      warn_empty=False)
    labels = (None if label_branch is None
              else extract_labels(jets, label_branch, where, first_jet))
    return padded.p4, padded.mask, labels


def _chunk_where(chunk: Any) -> str:
    file = getattr(chunk, "file", "?")
    start = getattr(chunk, "entry_start", None)
    stop = getattr(chunk, "entry_stop", None)
    return f"{file} entries {start}-{stop}" if start is not None else str(file)


def _iterate(paths: list[str], step_size: str | int, label_branch: str,
             tree: str | None = None) -> Iterator[Any]:
    from lloca_hep.io import iterate_jets

    yield from iterate_jets(paths, step_size=step_size, jet_fields=[label_branch], tree=tree)


def _trim(p4: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop padding columns that no jet of the batch uses (at least one column is kept)."""
    width = max(int(mask.sum(dim=1).max()), 1) if mask.numel() else 1
    return p4[:, :width], mask[:, :width]


@dataclass
class PaddedDataset:
    """Padded jets in memory: ``p4`` float64 ``(n, N, 4)`` (E, px, py, pz) GeV, ``mask`` bool
    ``(n, N)``, ``labels`` float32 ``(n,)`` (0 background, 1 signal)."""

    p4: np.ndarray
    mask: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.p4.nbytes + self.mask.nbytes + self.labels.nbytes)

    def subset(self, index: np.ndarray) -> PaddedDataset:
        return PaddedDataset(self.p4[index], self.mask[index], self.labels[index])

    def drop_empty(self) -> PaddedDataset:
        keep = self.mask.any(axis=1)
        n_drop = int((~keep).sum())
        if n_drop:
            log.warning("dropping %d jets without constituents from the data", n_drop)
            return self.subset(np.nonzero(keep)[0])
        return self

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0) -> Iterator[Batch]:
        """Yield ``(p4, mask, labels)`` torch batches; shuffled with a generator seeded by
        ``seed`` when ``shuffle``; padding columns unused by a batch are trimmed."""
        n = len(self)
        if shuffle:
            gen = torch.Generator().manual_seed(int(seed))
            order = torch.randperm(n, generator=gen).numpy()
        else:
            order = np.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            p4, mask = _trim(torch.from_numpy(self.p4[idx]), torch.from_numpy(self.mask[idx]))
            yield p4, mask, torch.from_numpy(self.labels[idx])

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
        counts: tuple[int, int] | None = None,
        tree: str | None = None,
    ) -> None:
        self.files = list(files)
        self.tree = tree
        #: ``(n_background, n_signal)`` when known (counted while reading), else None.
        self.counts = counts
        self.max_constituents = int(max_constituents)
        self.label_branch = label_branch
        self.step_size = step_size
        self.holdout_every = holdout_every
        self.holdout = holdout
        self._n_jets = int(n_jets)

    def __len__(self) -> int:
        return self._n_jets

    def n_batches(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)

    def _chunks(self, file_order: list[str]) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        position = 0
        for chunk in _iterate(file_order, self.step_size, self.label_branch, self.tree):
            jets = chunk.jets
            n = len(jets)
            if n == 0:
                continue
            p4, mask, labels = pad_chunk(jets, self.max_constituents, self.label_branch,
                                         _chunk_where(chunk), chunk.entry_start)
            assert labels is not None
            keep = mask.any(axis=1)
            if self.holdout_every:
                is_held = (np.arange(position, position + n) % self.holdout_every) == 0
                keep &= is_held if self.holdout else ~is_held
            position += n
            yield p4[keep], mask[keep], labels[keep]

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0) -> Iterator[Batch]:
        gen = torch.Generator().manual_seed(int(seed))
        files = list(self.files)
        if shuffle:
            files = [files[i] for i in torch.randperm(len(files), generator=gen).tolist()]
        buffer: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

        def flush() -> Iterator[Batch]:
            if not buffer:
                return
            ds = PaddedDataset(
                np.concatenate([b[0] for b in buffer]),
                np.concatenate([b[1] for b in buffer]),
                np.concatenate([b[2] for b in buffer]),
            )
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
) -> Dataset:
    """Read ``files`` into a :class:`PaddedDataset`, or a :class:`StreamingDataset` when the
    padded arrays would exceed ``memory_limit_bytes``.

    ``tree`` names the TTree/RNTuple (default: the one that holds jets). ``max_jets`` keeps only the first ``max_jets`` jets (in file order). Jets without
    constituents are dropped (with a warning) since they carry no information.
    """
    from tqdm.auto import tqdm

    paths = _as_paths(files)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    nbytes = 0
    n_jets = 0
    n_signal = 0
    streaming = False
    with tqdm(desc="reading " + (paths[0] if len(paths) == 1 else f"{len(paths)} files"),
              unit=" jets", disable=not progress, leave=False) as bar:
        for chunk in _iterate(paths, step_size, label_branch, tree):
            jets = chunk.jets
            if max_jets is not None:
                jets = jets[: max(max_jets - n_jets, 0)]
            n = len(jets)
            if n == 0:
                if max_jets is not None and n_jets >= max_jets:
                    break
                continue
            if not streaming:
                p4, mask, labels = pad_chunk(jets, max_constituents, label_branch,
                                             _chunk_where(chunk), chunk.entry_start)
                assert labels is not None
                parts.append((p4, mask, labels))
                nbytes += p4.nbytes + mask.nbytes + labels.nbytes
                if nbytes > memory_limit_bytes:
                    log.info("padded data exceed %.1f GB: streaming from disk each epoch",
                             memory_limit_bytes / 1e9)
                    streaming = True
                    parts.clear()
            else:
                labels = extract_labels(jets, label_branch, _chunk_where(chunk),
                                        chunk.entry_start)
            n_signal += int(labels.sum())
            n_jets += n
            bar.update(n)
    if n_jets == 0:
        raise ValueError(f"no jets found in {paths}")
    if streaming:
        if max_jets is not None:
            raise ValueError("max_jets is only supported for data that fit in memory")
        return StreamingDataset(paths, max_constituents=max_constituents, n_jets=n_jets,
                                label_branch=label_branch, step_size=step_size, tree=tree,
                                counts=(n_jets - n_signal, n_signal))
    data = PaddedDataset(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )
    return data.drop_empty()


def class_counts(data: Dataset) -> tuple[int, int] | None:
    """``(n_background, n_signal)`` of ``data``; None when unknown (a streamed hold-out split)."""
    if isinstance(data, PaddedDataset):
        n_signal = int(np.count_nonzero(data.labels))
        return len(data) - n_signal, n_signal
    return data.counts


def single_class(data: Dataset) -> int | None:
    """The one class (0 or 1) that all jets of ``data`` have, or None (both, or unknown)."""
    counts = class_counts(data)
    if counts is None or (counts[0] > 0 and counts[1] > 0):
        return None
    return 1 if counts[1] > 0 else 0


def describe_class(label: int) -> str:
    """``"1 (signal)"`` or ``"0 (background)"``, for messages."""
    return "1 (signal)" if label else "0 (background)"


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
                                  label_branch=data.label_branch, step_size=data.step_size,
                                  holdout_every=every, tree=data.tree)
    n_val = -(-len(data) // every)
    train = StreamingDataset(data.files, n_jets=len(data) - n_val, holdout=False, **common)
    val = StreamingDataset(data.files, n_jets=n_val, holdout=True, **common)
    return train, val
