"""ROOT in, ROOT friend trees out, over many files on whatever dask cluster is active.

>>> from dask.distributed import Client
>>> client = Client("tcp://scheduler:8786")          # or LocalCluster(), or none (threads)
>>> from lloca_hep.integrations.dask import score_files
>>> outputs = score_files(["nano_1.root", "nano_2.root"], "scores/")

Each input file (TTree or RNTuple) is read lazily with :func:`uproot.dask`, limited to the
columns the tagger needs (and dask-awkward's column optimisation checks that no other column is
touched). Which tree, which layout and which stored names are read is decided by the io layer's
own discovery, the one :func:`lloca_hep.io.read_jets` uses (``_select_tree`` and ``_plan`` of
:mod:`lloca_hep.io.discovery`). The tagger (:class:`lloca_hep.integrations.coffea.JetTagger`)
is mapped over the partitions; every partition writes its own friend-tree file through
:class:`lloca_hep.io.FriendTreeWriter` (atomic: temporary name + rename; ZSTD), from the worker
that scored it. Nothing is collected on the client but the list of written files. Inputs are
never written to.

Output files, one per partition, named ``<input stem>_scores_<start>-<stop>.root`` where
``[start, stop)`` is the partition's entry range in the input tree; with ``step_size=None``
there is one partition per input file and its output is ``<input stem>_scores.root``, the
name ``lloca-hep tag`` uses. The friend tree follows the layout of
:class:`lloca_hep.io.FriendTreeWriter`: a TTree ``scores`` aligned entry by entry with the
partition's range, holding

* NanoAOD/PFNano inputs (one entry per event): ``score`` (float32 per jet of the collection,
  in the order of the jets, NaN for jets without candidates; counter ``nscore``) and
  ``score_jet_index`` (int32, index of the jet in the event; counter ``nscore_jet_index``);
* JetClass-style flat inputs (one entry per jet, ``part_px/py/pz/energy`` branches, or an
  RNTuple record ``part`` with ``px, py, pz, energy``): ``score`` (float32).

Chaining the parts of one input in entry order (e.g. a ROOT ``TChain`` of ``scores``) gives a
tree that is entry-aligned with the whole input tree, usable with ``TTree::AddFriend``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from lloca_hep._files import check_output
from lloca_hep.io.writers import FRIEND_SUFFIX, FRIEND_TREE, FriendTreeWriter

log = logging.getLogger(__name__)

__all__ = ["FRIEND_TREE", "ScoreFileResult", "score_files"]

#: Default partition size handed to ``uproot.dask`` (of the branches read).
DEFAULT_STEP_SIZE = "100 MB"

#: Layouts of :func:`lloca_hep.io.discovery._plan` that score_files reads.
_LAYOUT_NANO = "nanoaod"
_LAYOUT_FLAT = "jetclass"


@dataclass(frozen=True)
class _Input:
    path: Path
    tree: str
    layout: str
    num_entries: int
    #: stored names to read (TTree branches or RNTuple fields, from the reader's plan): the
    #: constituent components (``px``... or ``pt``...), and for NanoAOD the plan's ``jet_idx``,
    #: ``pf_idx`` and the jet counter ``jet_count`` when the tree has it, else ``jet_pt``
    branches: dict[str, str]
    rntuple: bool = False
    ttree: Any = None  # the open uproot tree, to size memory steps (None once closed)

    @property
    def group(self) -> tuple[Any, ...]:
        """Files read by one ``uproot.dask`` call share layout, tree kind and stored names."""
        return (self.layout, self.rntuple, tuple(self.branches.items()))


@dataclass(frozen=True)
class ScoreFileResult:
    """What one partition wrote (returned by the worker; the client keeps only these)."""

    path: str
    source: str
    entry_start: int
    entry_stop: int
    n_jets: int
    seconds: float


def _errors() -> Any:
    from lloca_hep import errors

    return errors


#: Prefix of the keys of ``_Input.branches`` that hold feature branches.
_FEATURE_KEY = "feature:"


def _inspect(path: Path, tree: str | None, collection: str,
             stack: contextlib.ExitStack | None = None, features: Any = None) -> _Input:
    """Open ``path``, choose the tree and plan what to read with the io layer's own discovery
    (:func:`lloca_hep.io.discovery._select_tree` and ``_plan``, as :func:`lloca_hep.io.read_jets`
    does); TTrees and RNTuples alike. Errors name the file and what is missing.

    With ``stack`` the file stays open (closed by the stack) and the result holds its tree.
    """
    from lloca_hep.integrations.coffea import CANDIDATES
    from lloca_hep.io.discovery import _open, _plan, _select_tree
    from lloca_hep.io.forms import _is_rntuple

    fobj = _open(path)
    with contextlib.ExitStack() as own:
        (own if stack is None else stack).enter_context(fobj)
        # the reader's tree choice and plan; no jet fields: only the constituents are read
        tobj, chosen = _select_tree(fobj, str(path), tree, "auto", collection)
        plan = _plan(tobj, str(path), chosen, "auto", collection, None, [], CANDIDATES,
                     features)
        if plan.layout not in (_LAYOUT_NANO, _LAYOUT_FLAT):  # pragma: no cover - no branches=
            raise _errors().LayoutError(f"{path}:{chosen}: score_files cannot read {plan.layout}")
        branches = dict(plan.constituent)
        if plan.layout == _LAYOUT_NANO:
            branches.update(plan.nano)
            # TTrees carry the jet counter; it is cheaper to read than the jets' pt
            counter = f"n{collection}"
            if counter in set(tobj.keys()):
                del branches["jet_pt"]
                branches["jet_count"] = counter
        branches.update({_FEATURE_KEY + b: stored for b, stored in plan.feature_branches.items()})
        return _Input(path=path, tree=chosen, layout=plan.layout, num_entries=int(tobj.num_entries),
                      branches=branches, rntuple=_is_rntuple(tobj),
                      ttree=tobj if stack is not None else None)


def _column(arrays: Any, name: str) -> Any:
    """A column of the lazily read arrays: a TTree branch, or an RNTuple (sub-)field
    ``record.field`` (as resolved by the reader's plan)."""
    if name in arrays.fields:
        return arrays[name]
    col = arrays
    for part in name.split("."):
        col = col[part]
    return col


def _output_stems(inputs: Sequence[_Input]) -> list[str]:
    """Output name stems; inputs with the same file name get a short hash of their path."""
    stems = [i.path.stem for i in inputs]
    seen: dict[str, int] = {}
    for s in stems:
        seen[s] = seen.get(s, 0) + 1
    out = []
    for inp, stem in zip(inputs, stems, strict=True):
        if seen[stem] > 1:
            digest = hashlib.sha1(str(inp.path).encode()).hexdigest()[:8]
            stem = f"{stem}_{digest}"
        out.append(stem)
    return out


def _write_friend(
    scores: ak.Array,
    path: str,
    source: str,
    entry_start: int,
    entry_stop: int,
    layout: str,
    class_names: Sequence[str] | None = None,
) -> ScoreFileResult:
    """Write one partition's scores as a friend tree through
    :class:`lloca_hep.io.FriendTreeWriter` (atomic, ZSTD), covering the input entries
    ``[entry_start, entry_stop)``. Runs on the worker; the client has already refused existing
    outputs (unless ``overwrite``)."""
    t0 = time.perf_counter()
    expected = entry_stop - entry_start
    if len(scores) != expected:
        raise _errors().OutputError(
            f"{source}: entries [{entry_start}, {entry_stop}) gave {len(scores)} score rows "
            f"instead of {expected}; the friend tree would not line up"
        )
    event_layout = layout == _LAYOUT_NANO

    def values(x: ak.Array) -> np.ndarray:  # (n,) or, for per-class records, (n, C)
        if class_names is None:
            return np.asarray(ak.to_numpy(x), dtype=np.float32)
        return np.stack([np.asarray(ak.to_numpy(x[c]), dtype=np.float32)
                         for c in class_names], axis=1)

    if event_layout:  # [event][jet] scores -> jets with their event entry and index
        counts = np.asarray(ak.to_numpy(ak.num(scores, axis=1)), dtype=np.int64)
        flat = values(ak.flatten(scores, axis=1))
        entry = np.repeat(np.arange(entry_start, entry_stop, dtype=np.int64), counts)
        offsets = np.zeros(counts.shape[0] + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        jet_index = np.arange(flat.shape[0], dtype=np.int64) - np.repeat(offsets[:-1], counts)
        jets = ak.zip({"entry": entry, "jet_index": jet_index})
    else:
        flat = values(scores)
        jets = ak.Array(np.zeros(flat.shape[0], dtype=np.float32))  # one entry per jet
    jets = ak.Array(jets, attrs={"lloca_source": {
        "file": source, "layout": layout, "entry_start": int(entry_start),
        "entry_stop": int(entry_stop)}})
    with FriendTreeWriter(path, FRIEND_TREE, overwrite=True, inputs=[source],
                          entry_start=entry_start, class_names=class_names) as writer:
        writer.extend(flat, jets)
    return ScoreFileResult(str(Path(path)), source, entry_start, entry_stop, int(flat.shape[0]),
                           time.perf_counter() - t0)


def _check_outputs(planned: Sequence[Path], in_paths: Sequence[Path], overwrite: bool) -> None:
    """Refuse outputs that are inputs (any spelling or link), non-regular files, or that exist
    unless ``overwrite`` (:func:`lloca_hep._files.check_output`)."""
    for target in planned:
        check_output(target, overwrite=overwrite, inputs=in_paths, option="overwrite=True",
                     directory_exists=False)


def _steps(inp: _Input, branches: Sequence[str], step_size: int | str | None) -> list[list[int]]:
    """Entry ranges ``[[start, stop], ...]`` covering the input tree.

    ``step_size``: entries (int), a memory size of the branches read (``"100 MB"``), or None
    (one range).
    """
    n = inp.num_entries
    if step_size is None or n == 0:
        return [[0, n]]
    if isinstance(step_size, str):
        if inp.ttree is None:
            raise ValueError("a memory step_size needs the open tree")
        per_step = int(inp.ttree.num_entries_for(step_size, filter_name=list(branches)))
    else:
        per_step = int(step_size)
    if per_step < 1:
        raise ValueError(f"step_size must give at least one entry per step, got {step_size!r}")
    return [[start, min(start + per_step, n)] for start in range(0, n, per_step)]


def _lazy_scores(
    inputs: Sequence[_Input], tagger: Any, step_size: int | str | None
) -> tuple[Any, list[tuple[_Input, int, int]]]:
    """The dask-awkward scores of input files of one layout (one row per tree entry), and
    for each partition its file and entry range.

    The tree, layout and stored column names come from the reader's plan (:func:`_inspect`);
    TTrees and RNTuples are both read by ``uproot.dask``. One ``uproot.dask`` call covers all
    the files of one group (the form is read once), with explicit steps
    and ``open_files=False``: the graph holds file names and entry ranges only (light to
    tokenise and to ship) and every task opens its file itself.
    """
    import dask_awkward as dak
    import uproot

    from lloca_hep.integrations._inputs import _pf_field
    from lloca_hep.integrations.coffea import CANDIDATES, LINK_SUFFIX
    from lloca_hep.preprocessing.join import CANDIDATE_FIELDS, LINK_CAND_FIELD, LINK_JET_FIELD

    layout = inputs[0].layout
    if any(inp.group != inputs[0].group for inp in inputs):
        raise ValueError("_lazy_scores takes files of one group (layout, kind, stored names)")
    branches = list(dict.fromkeys(inputs[0].branches.values()))
    spec: dict[str, Any] = {}
    partitions: list[tuple[_Input, int, int]] = []
    for inp in inputs:
        steps = _steps(inp, branches, step_size)
        spec[str(inp.path)] = {"object_path": inp.tree, "steps": steps}
        partitions.extend((inp, start, stop) for start, stop in steps)
    arrays = uproot.dask(spec, filter_name=branches, open_files=False)
    sizes = np.diff(np.asarray(arrays.divisions, dtype=np.int64)) if arrays.known_divisions else None
    if sizes is None or list(sizes) != [stop - start for _, start, stop in partitions]:
        raise RuntimeError(
            f"uproot.dask partitions {arrays.divisions} do not match the planned entry ranges"
        )
    cols = {role: _column(arrays, stored) for role, stored in inputs[0].branches.items()}
    features = tagger.io_spec()[0]
    if layout == _LAYOUT_FLAT:
        raw = {}
        for feat in features.ordered:  # the raw feature fields JetTagger reads from constituents
            src = feat.source("jetclass")
            assert src is not None
            if src.pid is not None:
                raise _errors().FeatureError(
                    f"score_files: feature {feat.name!r} derives a particle-ID flag from "
                    f"{src.branch!r}; on one-entry-per-jet files give the flag as a branch")
            col = cols[_FEATURE_KEY + src.branch]
            raw[feat.name] = col * src.scale if src.scale != 1.0 else col
        arrays = dak.zip({**{c: cols[c] for c in ("px", "py", "pz", "E")}, **raw})
    else:  # the raw PFNano branches JetTagger reads ("branches" input)
        link = tagger.collection + LINK_SUFFIX
        counted = "jet_count" in cols
        arrays = dak.zip({
            (f"n{tagger.collection}" if counted else f"{tagger.collection}_pt"):
                cols["jet_count" if counted else "jet_pt"],
            f"{link}_{LINK_JET_FIELD}": cols["jet_idx"],
            f"{link}_{LINK_CAND_FIELD}": cols["pf_idx"],
            **{f"{CANDIDATES}_{f}": cols[f] for f in CANDIDATE_FIELDS},
            **{f"{CANDIDATES}_{_pf_field(k[len(_FEATURE_KEY):])}": c for k, c in cols.items()
               if k.startswith(_FEATURE_KEY)},
        }, depth_limit=1)
    return tagger(arrays), partitions


def score_files(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    output_dir: str | os.PathLike[str],
    *,
    tree: str | None = None,
    collection: str = "FatJet",
    model: str | os.PathLike[str] | None = None,
    step_size: int | str | None = DEFAULT_STEP_SIZE,
    max_constituents: int | None = None,
    device: str = "auto",
    overwrite: bool = False,
    scheduler: Any = None,
    threads: int | None = None,
) -> list[Path]:
    """Score every jet of ``paths`` and write entry-aligned friend trees into ``output_dir``.

    Parameters
    ----------
    paths:
        ROOT files: PFNano/NanoAOD (events with ``<collection>``, ``<collection>PFCands`` and
        ``PFCands``) or JetClass-style flat trees (one entry per jet, ``part_px, part_py,
        part_pz, part_energy`` in GeV).
    output_dir:
        Directory for the friend files (created if needed); see the module docstring for the
        names and content.
    tree:
        Input TTree or RNTuple; default: chosen as :func:`lloca_hep.io.read_jets` chooses it
        (the only tree, else the first of :data:`lloca_hep.io.layouts.PREFERRED_TREES` that
        holds jets, ...).
    collection:
        Jet collection of NanoAOD inputs (``FatJet`` or ``Jet``).
    model:
        Tagger file (``.pt`` or exported ``.pt2``); ``None``: the shipped tagger. Each dask
        worker loads it once.
    step_size:
        Partition size given to :func:`uproot.dask` (entries, or a size like ``"100 MB"``);
        ``None``: one partition, hence one output file, per input file.
    max_constituents, device:
        See :class:`lloca_hep.integrations.coffea.JetTagger`.
    overwrite:
        Replace existing output files; otherwise an existing output is an error (raised before
        any work starts).
    threads:
        torch CPU threads per task; ``None``: ``OMP_NUM_THREADS`` (dask's nanny sets 1 in the
        worker processes it starts), one per task in a ``distributed`` worker, else the cores
        not busy with other processes (:mod:`lloca_hep._threads`). dask's local threaded
        scheduler runs several tasks at once in this process: give ``threads=1`` there on a
        shared machine.
    scheduler:
        Passed to :func:`dask.compute`; ``None`` uses the active ``dask.distributed.Client``
        when there is one, else dask's default (threads).

    Returns the written files, ordered by input file and entry range.
    """
    try:
        import dask
    except ImportError as exc:
        raise ImportError(
            'lloca_hep.score_files needs dask, which is not installed: pip install "lloca-hep[coffea]"'
        ) from exc

    from lloca_hep.integrations.coffea import JetTagger

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    in_paths = [Path(p).expanduser().resolve() for p in paths]
    if not in_paths:
        raise ValueError("score_files needs at least one input file")
    if len(set(in_paths)) != len(in_paths):
        raise ValueError("the same input file is given twice")
    out_dir = Path(output_dir).expanduser().resolve()
    with contextlib.ExitStack() as stack:
        tagger = JetTagger(model, collection=collection, max_constituents=max_constituents,
                           device=device, threads=threads)
        features, class_names = tagger.io_spec()
        inputs = [_inspect(p, tree, collection, stack, features if len(features) else None)
                  for p in in_paths]
        if step_size is None:  # names known up front: refuse before building any graph
            _check_outputs([out_dir / f"{stem}{FRIEND_SUFFIX}.root"
                            for stem in _output_stems(inputs)], in_paths, overwrite)
        stems = {inp.path: stem for inp, stem in zip(inputs, _output_stems(inputs), strict=True)}
        order = {inp.path: i for i, inp in enumerate(inputs)}
        planned_parts: list[tuple[int, int, Path, Any]] = []
        for key in dict.fromkeys(inp.group for inp in inputs):  # in order of appearance
            group = [inp for inp in inputs if inp.group == key]
            scores, partitions = _lazy_scores(group, tagger, step_size)
            parts = scores.to_delayed(optimize_graph=True)
            for part, (inp, start, stop) in zip(parts, partitions, strict=True):
                stem = stems[inp.path]
                if step_size is None:
                    target = out_dir / f"{stem}{FRIEND_SUFFIX}.root"
                else:
                    target = out_dir / f"{stem}{FRIEND_SUFFIX}_{start}-{stop}.root"
                write = dask.delayed(_write_friend, pure=True)(
                    part, str(target), str(inp.path), int(start), int(stop), inp.layout,
                    class_names,
                )
                planned_parts.append((order[inp.path], int(start), target, write))
        planned_parts.sort(key=lambda item: (item[0], item[1]))
        planned = [target for _, _, target, _ in planned_parts]
        writes = [write for _, _, _, write in planned_parts]
        _check_outputs(planned, in_paths, overwrite)
        out_dir.mkdir(parents=True, exist_ok=True)
        log.info("scoring %d file(s) in %d partition(s) into %s", len(inputs), len(writes),
                 out_dir)
        t0 = time.perf_counter()
        compute_kwargs = {} if scheduler is None else {"scheduler": scheduler}
        results: tuple[ScoreFileResult, ...] = dask.compute(*writes, **compute_kwargs)
    n_jets = sum(r.n_jets for r in results)
    elapsed = time.perf_counter() - t0
    log.info("scored %d jets in %.1f s (%.0f jets/s)", n_jets, elapsed,
             n_jets / elapsed if elapsed > 0 else float("nan"))
    return [Path(r.path) for r in results]
