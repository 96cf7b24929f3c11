"""Write scores back: entry-aligned friend trees (atomic) and awkward fields.

Friend-tree layout
------------------
* Flat layouts (one input entry per jet): one output entry per input entry. Single-class
  scores go to branch ``score`` (float32); multi-class scores ``(n_jets, C)`` go to branches
  ``score_0 ... score_{C-1}`` (or ``score_<name>`` with ``class_names``), one scalar each, so
  that ``TTree::Draw("score_1")`` and friends work everywhere.
* NanoAOD event layouts: one output entry per *event* (events without jets get an empty
  entry); ``score`` (or ``score_<k>``) is jagged per event (counter ``nscore``) in the order of
  the jets in the event, and ``score_jet_index`` (counter ``nscore_jet_index``) holds the index
  of each scored jet in the input collection, so filtered jets stay traceable.

The output is written to a hidden temporary file in the same directory and renamed onto the
final name only when :meth:`FriendTreeWriter.close` completes without error; an exception inside
the ``with`` block deletes the temporary file. An existing output is refused unless
``overwrite=True``; an output that is one of the input files is always refused.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import awkward as ak
import numpy as np
import numpy.typing as npt
import uproot

from lloca_hep._files import check_output, temporary_path
from lloca_hep.errors import OutputError

from .readers import JetChunk

log = logging.getLogger(__name__)

#: Names of the friend-tree format, shared by every writer of scores (tag, dask, coffea users):
#: the tree, its score branch, the jet-index branch of event layouts, the output-name suffix.
FRIEND_TREE = "scores"
SCORE_BRANCH = "score"
JET_INDEX_BRANCH = "score_jet_index"
FRIEND_SUFFIX = "_scores"

#: Compression level used with ``compression="ZSTD"``/``"LZ4"`` (fast; see ECOSYSTEM.md).
DEFAULT_COMPRESSION_LEVEL = 1
_COMPRESSIONS = {"ZSTD": uproot.ZSTD, "LZ4": uproot.LZ4, "ZLIB": uproot.ZLIB, "LZMA": uproot.LZMA}


def friend_path(input_path: str | os.PathLike, suffix: str = FRIEND_SUFFIX) -> str:
    """Default friend file next to an input: ``dir/name.root`` -> ``dir/name_scores.root``."""
    input_path = os.fspath(input_path)
    root, ext = os.path.splitext(input_path)
    return f"{root}{suffix}{ext or '.root'}"


def _source_of(chunk: JetChunk | ak.Array) -> dict[str, Any]:
    if isinstance(chunk, JetChunk):
        return {
            "jets": chunk.jets,
            "file": chunk.file,
            "layout": chunk.layout,
            "entry_start": chunk.entry_start,
            "entry_stop": chunk.entry_stop,
            "num_entries": chunk.num_entries,
        }
    if isinstance(chunk, ak.Array):
        src = dict(chunk.attrs.get("lloca_source", {})) if chunk.attrs else {}
        if not src:
            raise OutputError(
                "the jets carry no source information (attrs['lloca_source']); pass the "
                "JetChunk from iterate_jets or the array returned by read_jets"
            )
        src["jets"] = chunk
        src.setdefault("num_entries", -1)
        return src
    raise TypeError(f"chunk must be a JetChunk or the ak.Array from read_jets, got {type(chunk)}")


class FriendTreeWriter:
    """Stream scores into an entry-aligned friend tree, atomically.

    Usage::

        with FriendTreeWriter("out_scores.root", inputs=files) as writer:
            for chunk in iterate_jets(path, step_size=100_000):
                writer.extend(tagger.score(chunk.jets), chunk)

    Parameters
    ----------
    output : the file to create (one friend file per input file).
    tree_name : name of the friend TTree (or RNTuple).
    compression : ``"ZSTD"`` (default), ``"LZ4"``, ``"ZLIB"``, ``"LZMA"`` or an uproot
        compression object.
    overwrite : replace an existing ``output`` (never an input file).
    rntuple : write an RNTuple instead of a TTree.
    inputs : input files to protect; chunks' own files are checked as well.
    class_names : names for multi-class score branches (``score_<name>``).
    entry_start : the first input entry the friend covers (default 0, the whole input); a
        part of an input, e.g. one dask partition (:func:`lloca_hep.integrations.dask.score_files`)
        starts at its partition's first entry, and chaining the parts in entry order gives the
        friend of the whole input.
    """

    def __init__(
        self,
        output: str | os.PathLike,
        tree_name: str = FRIEND_TREE,
        compression: str | Any = "ZSTD",
        overwrite: bool = False,
        rntuple: bool = False,
        *,
        inputs: Sequence[str | os.PathLike] = (),
        class_names: Sequence[str] | None = None,
        compression_level: int = DEFAULT_COMPRESSION_LEVEL,
        entry_start: int = 0,
    ) -> None:
        if int(entry_start) < 0:
            raise ValueError(f"entry_start must be >= 0, got {entry_start}")
        self.output = os.path.abspath(os.fspath(output))
        self.tree_name = tree_name
        self.overwrite = bool(overwrite)
        self.rntuple = bool(rntuple)
        self.class_names = list(class_names) if class_names is not None else None
        if isinstance(compression, str):
            key = compression.upper()
            if key not in _COMPRESSIONS:
                raise ValueError(f"compression must be one of {sorted(_COMPRESSIONS)}, got {compression!r}")
            compression = _COMPRESSIONS[key](compression_level)
        self.compression = compression
        self._inputs = [os.fspath(p) for p in inputs]
        check_output(self.output, overwrite=self.overwrite, inputs=self._inputs)
        self._tmp = str(temporary_path(self.output))
        self._file: Any = None
        self._tree: Any = None
        self._layout: str | None = None
        self._source_file: str | None = None
        self.entry_start = int(entry_start)
        self._next_entry = self.entry_start
        self._num_entries = -1
        self._n_classes: int | None = None
        self._closed = False
        self.entries_written = 0

    # -- safety ---------------------------------------------------------------------------
    def _check_not_input(self, path: str) -> None:
        """Refuse chunks whose file is the output (any spelling); remember it for the
        check before the final rename."""
        if path not in self._inputs:
            self._inputs.append(path)
        check_output(self.output, overwrite=True, inputs=[path])

    # -- context manager ------------------------------------------------------------------
    def __enter__(self) -> FriendTreeWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- writing --------------------------------------------------------------------------
    def _branch_names(self, n_classes: int) -> list[str]:
        if n_classes == 0:
            return [SCORE_BRANCH]
        if self.class_names is not None:
            if len(self.class_names) != n_classes:
                raise ValueError(
                    f"class_names has {len(self.class_names)} names for {n_classes} classes"
                )
            return [f"{SCORE_BRANCH}_{n}" for n in self.class_names]
        return [f"{SCORE_BRANCH}_{k}" for k in range(n_classes)]

    def extend(self, scores: npt.ArrayLike, chunk: JetChunk | ak.Array) -> None:
        """Append the scores of one chunk.

        ``scores``: ``(n_jets,)`` or ``(n_jets, C)``, one row per jet of ``chunk.jets`` in
        order. ``chunk``: the :class:`JetChunk` they belong to (or the array from
        :func:`read_jets`). Chunks must arrive in entry order without gaps, starting at
        entry 0 of one input file.
        """
        if self._closed:
            raise OutputError(f"writer for {self.output} is closed")
        src = _source_of(chunk)
        self._check_not_input(src["file"])
        if self._source_file is None:
            self._source_file = src["file"]
        elif os.path.realpath(src["file"]) != os.path.realpath(self._source_file):
            raise OutputError(
                f"a friend tree belongs to one input file: got a chunk of {src['file']} after "
                f"chunks of {self._source_file}; use one FriendTreeWriter per input file"
            )
        start, stop = int(src["entry_start"]), int(src["entry_stop"])
        if start != self._next_entry:
            raise OutputError(
                f"chunk of {src['file']} starts at entry {start} but the friend tree has "
                f"{self._next_entry - self.entry_start} entries from entry {self.entry_start}; "
                f"chunks must be contiguous and start at {self.entry_start} so the friend "
                "stays entry-aligned"
            )
        self._num_entries = int(src.get("num_entries", -1))
        scores_arr = np.asarray(scores)
        if scores_arr.dtype.kind not in "f":
            scores_arr = scores_arr.astype(np.float32)
        if scores_arr.ndim not in (1, 2):
            raise ValueError(f"scores must be (n_jets,) or (n_jets, C), got {scores_arr.shape}")
        n_classes = 0 if scores_arr.ndim == 1 else scores_arr.shape[1]
        if self._n_classes is None:
            self._n_classes = n_classes
        elif n_classes != self._n_classes:
            raise ValueError(f"scores changed shape between chunks: {scores_arr.shape}")
        jets = src["jets"]
        if scores_arr.shape[0] != len(jets):
            raise OutputError(
                f"{scores_arr.shape[0]} scores for {len(jets)} jets of {src['file']} entries "
                f"{start}-{stop}"
            )
        layout = src.get("layout", "")
        event_layout = "entry" in ak.fields(jets)
        if self._layout is None:
            self._layout = "event" if event_layout else "flat"
        names = self._branch_names(n_classes)
        columns = [scores_arr] if n_classes == 0 else [scores_arr[:, k] for k in range(n_classes)]
        n_entries = stop - start
        if self._layout == "flat":
            if len(jets) != n_entries:
                raise OutputError(
                    f"{len(jets)} jets for entries {start}-{stop} of {src['file']} ({layout} "
                    "layout, one jet per entry): a friend tree needs one score per input "
                    "entry; score every jet of the chunk (filter afterwards)"
                )
            data: dict[str, Any] = {n: np.ascontiguousarray(c) for n, c in zip(names, columns, strict=True)}
        else:
            entry = np.asarray(ak.to_numpy(jets["entry"]), dtype=np.int64)
            if entry.size and (entry.min() < start or entry.max() >= stop):
                raise OutputError(
                    f"jets' entry numbers {entry.min()}-{entry.max()} fall outside the chunk's "
                    f"entries {start}-{stop}"
                )
            order = np.argsort(entry, kind="stable")
            counts = np.bincount(entry - start, minlength=n_entries)
            jet_index = (
                np.asarray(ak.to_numpy(jets["jet_index"]), dtype=np.int32)
                if "jet_index" in ak.fields(jets)
                else np.full(entry.shape, -1, dtype=np.int32)
            )
            data = {n: ak.unflatten(c[order], counts) for n, c in zip(names, columns, strict=True)}
            data[JET_INDEX_BRANCH] = ak.unflatten(jet_index[order], counts)
        self._write(data)
        self._next_entry = stop
        self.entries_written = stop - self.entry_start

    def _create(self) -> Any:
        """The temporary output file, opened for writing (errors name the output)."""
        try:
            return uproot.recreate(self._tmp, compression=self.compression)
        except OSError as exc:
            raise OutputError(
                f"cannot write {self.output}: {exc.strerror or exc} (in "
                f"{os.path.dirname(self.output)})"
            ) from exc

    def _write(self, data: dict[str, Any]) -> None:
        if self._file is None:
            self._file = self._create()
            if self.rntuple:
                self._file[self.tree_name] = data
                self._tree = self._file[self.tree_name]
                return
            types = {}
            for name, values in data.items():
                if isinstance(values, ak.Array):
                    types[name] = values.type.content
                else:
                    types[name] = values.dtype
            self._tree = self._file.mktree(self.tree_name, types)
        if len(next(iter(data.values()))):  # a chunk without entries adds nothing
            self._tree.extend(data)

    def close(self) -> str:
        """Finish the file and move it onto ``output``; returns the output path."""
        if self._closed:
            return self.output
        self._closed = True
        try:
            if self._file is None:
                # No chunk at all: still produce a valid, empty friend tree.
                self._file = self._create()
                if not self.rntuple:
                    self._file.mktree(self.tree_name, {SCORE_BRANCH: np.float32})
                else:
                    self._file[self.tree_name] = {SCORE_BRANCH: np.zeros(0, np.float32)}
            self._file.close()
            # again at the last moment: a file (or FIFO) that appeared meanwhile is not replaced
            check_output(self.output, overwrite=self.overwrite, inputs=self._inputs)
            os.replace(self._tmp, self.output)
        except BaseException:
            self._remove_tmp()
            raise
        if self.entry_start == 0 and 0 <= self._num_entries != self.entries_written:
            log.warning(
                "%s holds %d entries but the input %s has %d: the friend covers a prefix only",
                self.output, self.entries_written, self._source_file, self._num_entries,
            )
        return self.output

    def abort(self) -> None:
        """Discard everything written so far (the output is left untouched)."""
        self._closed = True
        try:
            if self._file is not None:
                self._file.close()
        finally:
            self._remove_tmp()

    def _remove_tmp(self) -> None:
        try:
            os.remove(self._tmp)
        except FileNotFoundError:
            pass


def write_scores(
    output: str | os.PathLike,
    scores: npt.ArrayLike,
    jets: JetChunk | ak.Array,
    *,
    tree_name: str = FRIEND_TREE,
    compression: str | Any = "ZSTD",
    overwrite: bool = False,
    rntuple: bool = False,
    class_names: Sequence[str] | None = None,
) -> str:
    """Write the scores of jets from :func:`read_jets` (all entries of one file) to a friend
    tree in one go; see :class:`FriendTreeWriter` for the layout. Returns the output path."""
    with FriendTreeWriter(
        output, tree_name, compression, overwrite, rntuple, class_names=class_names
    ) as writer:
        writer.extend(scores, jets)
    return writer.output


def add_scores(jets: ak.Array, scores: npt.ArrayLike, name: str = SCORE_BRANCH) -> ak.Array:
    """Return ``jets`` with a new field ``name`` holding the scores.

    ``jets``: one entry per jet (``(n_jets,)`` records), or an event array of jets
    (``(n_events, var)`` records, e.g. ``events.FatJet``), in which case the flat scores (in
    jet order) are regrouped per event. ``scores``: ``(n_jets,)`` or ``(n_jets, C)``; the new
    field is a float per jet or a length-C list per jet.
    """
    scores_arr = np.asarray(scores)
    if jets.ndim == 1:
        if scores_arr.shape[0] != len(jets):
            raise ValueError(f"{scores_arr.shape[0]} scores for {len(jets)} jets")
        return ak.with_field(jets, scores_arr, name)
    if jets.ndim == 2:
        counts = ak.to_numpy(ak.num(jets, axis=1))
        if scores_arr.shape[0] != int(counts.sum()):
            raise ValueError(
                f"{scores_arr.shape[0]} scores for {int(counts.sum())} jets in {len(jets)} events"
            )
        return ak.with_field(jets, ak.unflatten(scores_arr, counts), name)
    raise ValueError(f"jets must be (n_jets,) or (n_events, var) records, got type {jets.type}")
