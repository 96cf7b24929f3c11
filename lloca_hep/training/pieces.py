"""Reading training data piece by piece, in ``torch.utils.data.DataLoader`` worker processes.

A *piece* (:class:`Piece`) is an entry range of one input file. Pieces are aligned to the
file's clusters (the entry ranges that ROOT compresses together: uproot's
``common_entry_offsets`` for a TTree, the cluster summaries of an RNTuple), so that reading a
piece never decompresses entries it does not use, and hold at least one cluster.

:class:`PieceReader` is a map-style torch dataset whose *index is the piece*: reading it (the
ROOT read, the label and weight checks, the numba padding) is a pure function of the piece, so
the same pieces give the same arrays whichever process reads them. :class:`PieceLoader` wraps
it in a ``DataLoader`` (``num_workers`` worker processes, or in this process for 0) whose
sampler is the list of pieces to read; the DataLoader returns them in that order whatever the
number of workers, which is what makes training results independent of it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from lloca_hep.errors import LLoCaInputError, MissingBranchError, WeightError
from lloca_hep.features import InputSpec

from .batch import Part
from .labels import LabelSpec, extract_labels
from .weights import extract_weights

log = logging.getLogger(__name__)

__all__ = ["FileLayout", "JetSource", "Piece", "PieceData", "PieceLoader", "PieceReader",
           "plan_ranges", "read_layout", "read_piece"]

#: Pieces each DataLoader worker reads ahead (``prefetch_factor``).
PREFETCH_PIECES = 2
#: Entries read in this process before worker processes are started (warm-up).
WARM_UP_ENTRIES = 1


@dataclass(frozen=True)
class JetSource:
    """What is read from the input files: the expanded ``files`` (``file.root`` or
    ``file.root:tree``), the padding length, labels, per-particle inputs, tree, reading step
    and the optional per-jet weight branch. Plain data, so it pickles into worker processes."""

    files: tuple[str, ...]
    max_constituents: int
    labels: LabelSpec
    inputs: InputSpec
    tree: str | None = None
    step_size: str | int = "100 MB"
    weight_branch: str | None = None

    @property
    def jet_fields(self) -> list[str]:
        extra = [] if self.weight_branch is None else [self.weight_branch]
        return [*self.labels.branches, *[b for b in extra if b not in self.labels.branches]]

    @property
    def features(self) -> InputSpec | None:
        return self.inputs if len(self.inputs) else None

    @property
    def n_scalars(self) -> int:
        return len(self.inputs)


@dataclass(frozen=True)
class FileLayout:
    """Entries of one input file: ``num_entries``, the cluster ``boundaries`` (``0 = b_0 <
    b_1 < ... = num_entries``) and ``step_entries``, the entries of one reading step."""

    num_entries: int
    boundaries: tuple[int, ...]
    step_entries: int


class Piece(NamedTuple):
    """Entries ``[entry_start, entry_stop)`` of file ``file`` (an index into
    :attr:`JetSource.files`), for consumer ``stream``.

    ``pad``: False reads labels and weights only (a counting pass); ``drop_empty``: leave out
    jets without constituents (else they are kept and flagged in :attr:`PieceData.nonempty`);
    ``holdout_every`` > 0 keeps only (``holdout``) or leaves out the jets of entries ``e`` with
    ``e % holdout_every == 0`` (whole events for event layouts)."""

    file: int
    entry_start: int
    entry_stop: int
    stream: int = 0
    pad: bool = True
    drop_empty: bool = True
    holdout_every: int = 0
    holdout: bool = False


class PieceData(NamedTuple):
    """The jets of one piece: ``part`` (padded arrays; None for a counting piece), ``labels``
    ``(n,)``, ``weights`` float32 ``(n,)`` or None, ``nonempty`` bool ``(n,)``, and the piece."""

    piece: Piece
    labels: np.ndarray
    nonempty: np.ndarray
    weights: np.ndarray | None
    part: Part | None

    @property
    def n_jets(self) -> int:
        return int(self.labels.shape[0])


class _Failure(NamedTuple):
    """An input error raised while reading a piece, carried back to be raised in the caller
    (so that a worker's error keeps its type and message)."""

    error: LLoCaInputError


def _identity(item: Any) -> Any:
    return item


def read_layout(source: JetSource, index: int) -> FileLayout:
    """The :class:`FileLayout` of ``source.files[index]`` (the file is opened and its branches
    planned, so problems of the file are reported here, before any data are read)."""
    from lloca_hep.io.forms import _is_rntuple
    from lloca_hep.io.options import _check_options
    from lloca_hep.io.readers import _open_planned

    o = _check_options(source.tree, "auto", "FatJet", None, source.jet_fields, "PFCands", None,
                       None, "raise", source.features)
    spelled = source.files[index]
    try:
        with _open_planned(spelled, o.tree, o.layout, o.collection, o.branches, o.jet_fields,
                           o.pf_collection, None, None, o.features) as t:
            names = t.plan.names()
            n = t.num_entries
            step = source.step_size
            if isinstance(step, str):
                step = int(t.tobj.num_entries_for(step, filter_name=names))
            if _is_rntuple(t.tobj):
                starts = [int(c.num_first_entry) for c in t.tobj.cluster_summaries]
            else:
                starts = [int(b) for b in t.tobj.common_entry_offsets(filter_name=names)]
    except MissingBranchError as err:
        if source.weight_branch is not None and source.weight_branch in str(err):
            raise WeightError(f"weight branch {source.weight_branch!r} not found: {err}") from err
        raise
    boundaries = sorted({0, n, *(b for b in starts if 0 < b < n)})
    return FileLayout(n, tuple(boundaries), max(int(step), 1))


def plan_ranges(boundaries: Sequence[int], target: int) -> list[tuple[int, int]]:
    """Consecutive entry ranges covering ``boundaries[0] .. boundaries[-1]``, each made of
    whole clusters and at most ``target`` entries long unless one cluster is longer."""
    ranges: list[tuple[int, int]] = []
    i = 0
    last = len(boundaries) - 1
    while i < last:
        j = i + 1
        while j < last and boundaries[j + 1] - boundaries[i] <= target:
            j += 1
        ranges.append((int(boundaries[i]), int(boundaries[j])))
        i = j
    return ranges


def read_piece(source: JetSource, piece: Piece) -> PieceData:
    """Read, check and pad the jets of ``piece`` (see :class:`Piece`)."""
    import awkward as ak

    from lloca_hep.io import iterate_jets
    from lloca_hep.preprocessing.inputs import network_inputs
    from lloca_hep.tagger import _constituents_of

    labels: list[np.ndarray] = []
    nonempty: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    parts: list[Part] = []
    path = source.files[piece.file]
    for chunk in iterate_jets([path], step_size=max(piece.entry_stop - piece.entry_start, 1),
                              tree=source.tree, jet_fields=source.jet_fields,
                              features=source.features, entry_start=piece.entry_start,
                              entry_stop=piece.entry_stop):
        jets = chunk.jets
        n = len(jets)
        if n == 0:
            continue
        where = f"{chunk.file} entries {chunk.entry_start}-{chunk.entry_stop}"
        y = extract_labels(jets, source.labels, where, chunk.entry_start)
        w = (None if source.weight_branch is None
             else extract_weights(jets, source.weight_branch, where, chunk.entry_start))
        constituents = _constituents_of(jets)
        part = None
        if piece.pad:
            padded = network_inputs(constituents, source.inputs, source.max_constituents)
            part = Part(padded.p4, padded.mask, y, padded.scalars, w)
            filled: np.ndarray = np.asarray(padded.mask.any(axis=1))
        else:
            filled = np.asarray(ak.to_numpy(ak.num(constituents, axis=1)) > 0)
        keep: np.ndarray = filled.copy() if piece.drop_empty else np.ones(n, dtype=bool)
        if piece.holdout_every:
            entries = (ak.to_numpy(jets["entry"]) if "entry" in ak.fields(jets)
                       else np.arange(chunk.entry_start, chunk.entry_start + n))
            held = entries % piece.holdout_every == 0
            keep &= held if piece.holdout else ~held
        if not keep.all():
            y, filled = y[keep], filled[keep]
            w = None if w is None else w[keep]
            part = None if part is None else part.take(keep)
        labels.append(y)
        nonempty.append(filled)
        if w is not None:
            weights.append(w)
        if part is not None:
            parts.append(part)
    if not labels:
        dtype = np.int64 if source.labels.multiclass else np.float32
        empty = np.zeros(0, dtype=dtype)
        return PieceData(piece, empty, np.zeros(0, dtype=bool),
                         None if source.weight_branch is None else np.zeros(0, np.float32),
                         _empty_part(source, dtype) if piece.pad else None)
    return PieceData(piece, np.concatenate(labels), np.concatenate(nonempty),
                     None if source.weight_branch is None else np.concatenate(weights),
                     _concat_parts(parts) if piece.pad else None)


def _empty_part(source: JetSource, label_dtype: Any) -> Part:
    n_max = source.max_constituents
    return Part(np.zeros((0, n_max, 4)), np.zeros((0, n_max), dtype=bool),
                np.zeros(0, dtype=label_dtype),
                np.zeros((0, n_max, source.n_scalars), np.float32) if source.n_scalars else None,
                None if source.weight_branch is None else np.zeros(0, np.float32))


def _concat_parts(parts: list[Part]) -> Part:
    return parts[0] if len(parts) == 1 else Part.concatenate(parts)


class PieceReader(torch.utils.data.Dataset[Any]):
    """Map-style dataset whose indices are :class:`Piece` s: ``reader[piece]`` is
    :func:`read_piece` (an input error comes back as a value, raised by :class:`PieceLoader`)."""

    def __init__(self, source: JetSource) -> None:
        self.source = source

    def __getitem__(self, piece: Piece) -> PieceData | _Failure:
        try:
            return read_piece(self.source, piece)
        except LLoCaInputError as err:
            return _Failure(err)


class _PieceSampler:
    """The pieces of the current pass (set by :meth:`PieceLoader.run`); iterated lazily by the
    DataLoader in this process."""

    def __init__(self) -> None:
        self.pieces: Iterable[Piece] = ()

    def __iter__(self) -> Iterator[Piece]:
        return iter(self.pieces)


class PieceLoader:
    """Reads pieces with a ``DataLoader`` of ``workers`` processes (0: in this process);
    ``persistent`` keeps the worker processes between passes (epochs) until :meth:`close`.

    One loader may serve several datasets of the same files (the first reading, the training
    and the validation part of a hold-out split), one pass at a time: a pass started while
    another is unfinished ends the unfinished one (it raises ``RuntimeError`` if resumed)."""

    def __init__(self, source: JetSource, workers: int = 0, *, persistent: bool = False) -> None:
        self.source = source
        self.workers = int(workers)
        self._generation = 0
        self._sampler = _PieceSampler()
        extra: dict[str, Any] = {}
        if self.workers:
            # compile the numba kernels and import the readers here, before the workers fork
            # from this process: each worker would otherwise pay about a second for it
            read_piece(source, Piece(0, 0, WARM_UP_ENTRIES))
            extra = {"prefetch_factor": PREFETCH_PIECES, "persistent_workers": persistent}
        self._loader: torch.utils.data.DataLoader[Any] = torch.utils.data.DataLoader(
            PieceReader(source), batch_size=None, sampler=self._sampler,
            num_workers=self.workers, collate_fn=_identity, **extra)

    def run(self, pieces: Iterable[Piece]) -> Iterator[PieceData]:
        """The :class:`PieceData` of ``pieces``, in their order (``pieces`` is consumed lazily,
        at most ``workers * PREFETCH_PIECES`` ahead of what was returned)."""
        self._generation += 1
        generation = self._generation
        self._sampler.pieces = pieces
        iterator = iter(self._loader)
        while True:
            if generation != self._generation:
                raise RuntimeError("another pass over these reading workers started before "
                                   "this one ended; passes over one loader cannot interleave")
            item = next(iterator, None)
            if item is None:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item

    def close(self) -> None:
        """Stop the worker processes (a later :meth:`run` starts new ones)."""
        iterator = getattr(self._loader, "_iterator", None)
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        self._loader._iterator = None
