"""Read jets from ROOT files (TTree or RNTuple) into awkward arrays.

Layouts (``layout=``):

``"jetclass"`` (alias ``"flat"``)
    One entry per jet; jagged constituent branches ``part_px part_py part_pz part_energy``
    (counter ``npart`` in TTrees; in RNTuples a record field ``part`` with sub-fields
    ``part.px`` ...). Every scalar numeric branch (``jet_pt``, ``jet_mass``, ``is_signal``,
    ``label_*``, ...) is carried as a jet-level field under its own name.
``"nanoaod"``
    CMS NanoAOD/PFNano: one entry per event; jets of ``collection`` (``FatJet`` by default,
    ``Jet`` on request) get their constituents through the index table
    ``<collection>PFCands`` (``_jetIdx``, ``_pFCandsIdx``) from ``PFCands`` (pt, eta, phi,
    mass). One output entry per jet, with ``entry`` (int64 tree entry of the event),
    ``jet_index`` (position of the jet in its event) and jet fields ``jet_<name>`` from
    ``<collection>_<name>``.
``"mapping"``
    The user names the constituent branches: ``branches={"px":..., "py":..., "pz":...,
    "E":...}`` or ``{"pt":..., "eta":..., "phi":..., "mass":...}``; one entry per jet.
``"auto"``
    ``mapping`` when ``branches`` is given, else ``jetclass`` when ``part_px``/``part.px``
    exists, else ``nanoaod`` when ``<collection>_pt`` or ``PFCands_pt`` exists.

Tree (``tree=``): used as given when named (also spelled ``"file.root:tree"``); else the only
tree of the file; else, among the trees whose branch names hold the requested layout (JetClass
branches, ``<collection>_pt``/PF candidates, or the ``branches=`` names), the first of
:data:`PREFERRED_TREES`, else the first in the file. When no tree holds one, the error lists every
tree with its branches and what was looked for.

Bad input raises :class:`~lloca_hep.io.LLoCaInputError` subclasses naming file, tree, branch and
entry: options are checked before a file is opened (``branches=`` keys and names, ``jet_fields``,
entry numbers, ``step_size``), and the constituent branches' types are checked from the file's
metadata (a jagged array of numbers, one list per jet, or per event for NanoAOD) before any data
is read.

Output (the io -> preprocessing contract): ``ak.Array``, one entry per jet; field
``constituents`` holds ragged records named ``Momentum4D`` with float64 Cartesian
``px, py, pz, E`` in GeV (computed in float64 from pt/eta/phi/mass when the file stores those,
with ``E = sqrt(|p|^2 + m|m|)``). The array's ``attrs["lloca_source"]`` records the file, tree,
layout and entry range, which the friend-tree writer uses to align scores.

Bad momenta (``on_invalid=``): ``"raise"`` (default) raises :class:`InvalidMomentumError`
naming file, branches, entry, jet and constituent; ``"drop"`` removes the offending constituents
and emits an :class:`InvalidConstituentsWarning` with the counts. Jets without constituents are
kept (counted in the log); :func:`lloca_hep.preprocessing.pad_jets` warns about them and taggers
score them NaN.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from lloca_hep._vector import register_vector
from lloca_hep.errors import (
    CorruptFileError,
    LayoutError,
    LLoCaInputError,
    MissingFileError,
)

from ..features import FeatureInput, InputSpec
from ..preprocessing.conversion import polar_to_cartesian
from ..preprocessing.join import IndexTableError, join_index_table
from ..preprocessing.validation import apply_feature_policy, apply_momentum_policy
from .columns import _column, _flat
from .discovery import (
    _open,
    _Plan,
    _plan,
    _select_tree,
    _split_object_path,
)
from .featurecolumns import _feature_sources, _flat_features, _nano_features
from .forms import _is_rntuple
from .options import (
    _check_options,
    _check_path,
    _check_step_size,
    _listing,
    _Options,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JetChunk:
    """One chunk of :func:`iterate_jets`: ``jets`` read from ``file`` entries
    ``[entry_start, entry_stop)`` of ``tree`` (entries are jets for flat layouts and events for
    NanoAOD); ``num_entries`` is the size of the whole tree."""

    jets: ak.Array
    file: str
    entry_start: int
    entry_stop: int
    tree: str = ""
    layout: str = ""
    num_entries: int = -1

    def __len__(self) -> int:
        return len(self.jets)


def _read_arrays(tree: Any, plan: _Plan, path: str, tree_name: str, start: int, stop: int) -> ak.Array:
    names = plan.names()
    try:
        if _is_rntuple(tree):
            arrays = tree.arrays(names, entry_start=start, entry_stop=stop)
        else:
            arrays = tree.arrays(filter_name=names, entry_start=start, entry_stop=stop, library="ak")
    except LLoCaInputError:
        raise
    except MemoryError:
        raise
    except Exception as err:
        raise CorruptFileError(
            f"cannot read entries {start}-{stop} of {path}:{tree_name} (branches "
            f"{_listing(names)}): {type(err).__name__}: {err}; the file looks truncated or "
            "corrupted"
        ) from err
    return arrays


def _build_jets(
    arrays: ak.Array,
    plan: _Plan,
    path: str,
    tree_name: str,
    start: int,
    stop: int,
    on_invalid: str,
) -> ak.Array:
    where = f"{path}:{tree_name}"
    out: dict[str, Any] = {}
    if plan.layout == "nanoaod":
        cols, counts, entries, jet_index, jet_cols, features = _join_nanoaod(
            arrays, plan, where, start)
        out_fields = jet_cols
    else:
        comps = [_column(arrays, plan.constituent[c], path, tree_name) for c in plan.constituent]
        flat = [_flat(c) for c in comps]
        counts = flat[0][0]
        for (c, _), name in zip(flat[1:], list(plan.constituent.values())[1:], strict=True):
            if not np.array_equal(c, counts):
                differ = c != counts
                bad = int(np.flatnonzero(differ)[0])
                raise LayoutError(
                    f"{where}: entry {start + bad} (jet {bad} of the chunk): constituent branch "
                    f"{name!r} has {int(c[bad])} values but {list(plan.constituent.values())[0]!r}"
                    f" has {int(counts[bad])}; the constituent branches must hold one value per "
                    f"constituent in every jet ({int(np.count_nonzero(differ))} of "
                    f"{counts.shape[0]} jets in the chunk disagree)"
                )
        raw = [f for _, f in flat]
        if plan.coords == "polar":
            cols = list(polar_to_cartesian(*raw))
        else:
            cols = raw
        entries = np.arange(start, start + counts.shape[0], dtype=np.int64)
        jet_index = None
        features = _flat_features(arrays, plan, path, tree_name, start, counts)
        out_fields = {}
        for name, stored in plan.jet_fields.items():
            col = _column(arrays, stored, path, tree_name)
            out_fields[name] = col
    def describe_jet(j: int) -> str:
        if jet_index is None:
            return f"entry {int(entries[j])} (jet {j} of the chunk)"
        return f"entry {int(entries[j])}, jet {int(jet_index[j])} of the event (jet {j} of the chunk)"

    if features:
        assert plan.features is not None
        cols, features, counts = apply_feature_policy(
            cols, features, counts, on_invalid, where=where,
            sources=_feature_sources(plan), describe_jet=describe_jet)
    names = list(features)
    all_cols, counts = apply_momentum_policy(
        cols + [features[n] for n in names], counts, on_invalid,
        where=f"{where} (branches {', '.join(plan.constituent.values())})",
        describe_jet=describe_jet,
    )
    cols = all_cols[:4]
    features = dict(zip(names, all_cols[4:], strict=True))
    register_vector()  # before the records are built: awkward picks their class at construction
    flat_record = ak.zip(
        {"px": cols[0], "py": cols[1], "pz": cols[2], "E": cols[3], **features},
        with_name="Momentum4D",
    )
    out["constituents"] = ak.unflatten(flat_record, counts)
    if plan.layout == "nanoaod":
        out["entry"] = entries
        out["jet_index"] = jet_index
    out.update(out_fields)
    n_empty = int(np.count_nonzero(counts == 0))
    if n_empty:
        log.info("%s entries %d-%d: %d of %d jets have no constituents", where, start, stop,
                 n_empty, counts.shape[0])
    jets = ak.zip(out, depth_limit=1)
    return ak.Array(
        jets,
        attrs={
            "lloca_source": {
                "file": os.path.abspath(path),
                "tree": tree_name,
                "layout": plan.layout,
                "entry_start": int(start),
                "entry_stop": int(stop),
            }
        },
    )


def _join_nanoaod(arrays: ak.Array, plan: _Plan, where: str, start: int):
    """Join <coll>PFCands index tables onto PFCands; returns Cartesian columns, counts per jet,
    entry and jet_index per jet, and the jet-level fields."""
    nano = plan.nano
    path, tree_name = where.rsplit(":", 1)

    def col(name: str) -> ak.Array:
        return _column(arrays, name, path, tree_name)

    n_events = len(arrays)
    n_jets = ak.to_numpy(ak.num(col(nano["jet_pt"]), axis=1)).astype(np.int64)
    jet_off = np.zeros(n_events + 1, dtype=np.int64)
    np.cumsum(n_jets, out=jet_off[1:])
    total_jets = int(jet_off[-1])
    table_counts, jidx = _flat(col(nano["jet_idx"]), np.int64)
    table_counts2, pidx = _flat(col(nano["pf_idx"]), np.int64)
    if not np.array_equal(table_counts, table_counts2):
        first_bad = int(np.flatnonzero(table_counts != table_counts2)[0])
        raise LLoCaInputError(
            f"{where}: entry {start + first_bad}: {nano['jet_idx']} and {nano['pf_idx']} differ in length"
        )
    pf_counts, pt = _flat(col(plan.constituent["pt"]))
    raw = [pt] + [_flat(col(plan.constituent[c]))[1] for c in ("eta", "phi", "mass")]
    try:
        offsets, selection = join_index_table(n_jets, table_counts, jidx, pidx, pf_counts)
    except IndexTableError as exc:
        bad = exc.bad
        branch = nano["jet_idx"] if bad.bad_jet_index else nano["pf_idx"]
        value = bad.jet if bad.bad_jet_index else bad.candidate
        limit = bad.jets_in_event if bad.bad_jet_index else bad.candidates_in_event
        raise LLoCaInputError(
            f"{where}: entry {start + bad.event}: {branch} = {value} is out of range "
            f"[0, {limit}) ({bad.n_bad_rows} bad index rows in the chunk)"
        ) from None
    counts = np.diff(offsets)
    cols = list(polar_to_cartesian(*(r[selection] for r in raw)))
    features = _nano_features(arrays, plan, path, tree_name, start, pf_counts, selection)
    entries = np.repeat(np.arange(start, start + n_events, dtype=np.int64), n_jets)
    jet_index = np.arange(total_jets, dtype=np.int64) - np.repeat(jet_off[:-1], n_jets)
    jet_cols = {}
    for name, branch in plan.jet_fields.items():
        c, values = _flat(col(branch), None)
        if not np.array_equal(c, n_jets):
            raise LLoCaInputError(
                f"{where}: branch {branch!r} does not have one value per {nano['jet_pt']}"
            )
        jet_cols[name] = values
    return cols, counts, entries, jet_index, jet_cols, features


def _entry_range(num_entries: int, entry_start: int | None, entry_stop: int | None) -> tuple[int, int]:
    start = 0 if entry_start is None else int(entry_start)
    stop = num_entries if entry_stop is None else int(entry_stop)
    if start < 0:
        start += num_entries
    if stop < 0:
        stop += num_entries
    start = min(max(start, 0), num_entries)
    stop = min(max(stop, start), num_entries)
    return start, stop


@dataclass(frozen=True)
class _OpenTree:
    """A tree opened and planned for reading: ``entry_start:entry_stop`` of ``num_entries``."""

    path: str
    tobj: Any
    tree_name: str
    plan: _Plan
    num_entries: int
    entry_start: int
    entry_stop: int


@contextlib.contextmanager
def _open_planned(
    spelled: str,
    tree: str | None,
    layout: str,
    collection: str,
    branches: Mapping[str, str] | None,
    jet_fields: Sequence[str] | str | None,
    pf_collection: str,
    entry_start: int | None,
    entry_stop: int | None,
    features: InputSpec | None = None,
) -> Iterator[_OpenTree]:
    """Open ``spelled`` (``file.root`` or ``file.root:tree``), select its tree, plan the branches
    to read and clip the entry range; the file stays open inside the ``with`` block."""
    path, tree = _split_object_path(spelled, tree)
    with _open(path) as fobj:
        tobj, tree_name = _select_tree(
            fobj, path, tree, layout, collection, branches, pf_collection
        )
        plan = _plan(tobj, path, tree_name, layout, collection, branches, jet_fields, pf_collection,
                     features)
        num_entries = int(tobj.num_entries)
        start, stop = _entry_range(num_entries, entry_start, entry_stop)
        yield _OpenTree(path, tobj, tree_name, plan, num_entries, start, stop)


def read_jets(
    path: str | os.PathLike,
    *,
    tree: str | None = None,
    layout: str = "auto",
    collection: str = "FatJet",
    branches: Mapping[str, str] | None = None,
    jet_fields: Sequence[str] | str | None = None,
    pf_collection: str = "PFCands",
    entry_start: int | None = None,
    entry_stop: int | None = None,
    on_invalid: str = "raise",
    features: FeatureInput = None,
) -> ak.Array:
    """Read the jets of one ROOT file (TTree or RNTuple) into an awkward array.

    Parameters
    ----------
    path : the ROOT file (``"file.root:tree"`` is accepted too).
    tree : TTree/RNTuple name; None picks the only tree, else among the trees that hold the
        requested jet layout the first of :data:`PREFERRED_TREES`, else the first in the file.
    layout : ``"auto"``, ``"jetclass"`` (``"flat"``), ``"nanoaod"`` or ``"mapping"`` (see the
        module docstring).
    collection : NanoAOD jet collection, ``"FatJet"`` (default) or ``"Jet"``.
    branches : user mapping of constituent components to branch names, Cartesian
        (``px, py, pz, E``; ``E`` also spelled ``energy``, ``e``, ``t``) or polar
        (``pt, eta, phi, mass``; ``mass`` also ``m``, ``M``), one complete set of string
        values; implies ``layout="mapping"``. Anything else raises :class:`LayoutError`.
    jet_fields : jet-level fields to carry. None: every scalar numeric branch (flat layouts)
        or :data:`NANOAOD_DEFAULT_JET_FIELDS` (NanoAOD); ``"all"``: every scalar branch /
        every numeric ``<collection>_*`` branch; or a list of names (one name as a string).
    pf_collection : NanoAOD PF-candidate collection (``PFCands``).
    entry_start, entry_stop : entry range (jets for flat layouts, events for NanoAOD);
        integers, negative ones count from the end as in Python slicing.
    on_invalid : ``"raise"`` or ``"drop"`` for NaN/inf momenta, negative energies and
        E < |p| beyond rounding, and for NaN/inf features of real constituents.
    features : per-particle features to read (:mod:`lloca_hep.features`): a preset
        (``"kin"``: none, ``"kinpid"``, ``"full"``), a JSON/YAML feature file, a mapping or an
        :class:`~lloca_hep.features.InputSpec` (``tagger.inputs``). Each becomes a float32
        field of the constituent records under its canonical name (``part_charge``, ...),
        raw (before the tagger's transform; impact parameters in mm).

    Returns
    -------
    ak.Array, one entry per jet: ``constituents`` (var * Momentum4D{px, py, pz, E, features},
    float64 GeV), jet-level and label fields, and for NanoAOD ``entry`` and ``jet_index``.

    >>> jets = read_jets("jetclass.root", features="full")     # doctest: +SKIP
    >>> jets.constituents.part_charge                         # doctest: +SKIP
    """
    o = _check_options(
        tree, layout, collection, branches, jet_fields, pf_collection, entry_start, entry_stop,
        on_invalid, features,
    )
    with _open_planned(
        _check_path(path), o.tree, o.layout, o.collection, o.branches, o.jet_fields,
        o.pf_collection, o.entry_start, o.entry_stop, o.features,
    ) as t:
        arrays = _read_arrays(t.tobj, t.plan, t.path, t.tree_name, t.entry_start, t.entry_stop)
        return _build_jets(
            arrays, t.plan, t.path, t.tree_name, t.entry_start, t.entry_stop, on_invalid
        )


def _expand_paths(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    elif not isinstance(paths, Iterable):
        _check_path(paths)
    out: list[str] = []
    for p in paths:
        p = _check_path(p)
        if any(ch in p for ch in "*?["):
            matches = sorted(glob.glob(p))
            suffix = ""
            if not matches and ":" in p:  # "dir/*.root:tree"
                head, _, tail = p.rpartition(":")
                if head and tail and not any(ch in tail for ch in "*?[/"):
                    matches, suffix = sorted(glob.glob(head)), f":{tail}"
            if not matches:
                raise MissingFileError(f"no file matches {p}")
            out.extend(m + suffix for m in matches)
        else:
            out.append(p)
    return out


def iterate_jets(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    step_size: int | str = "100 MB",
    *,
    tree: str | None = None,
    layout: str = "auto",
    collection: str = "FatJet",
    branches: Mapping[str, str] | None = None,
    jet_fields: Sequence[str] | str | None = None,
    pf_collection: str = "PFCands",
    entry_start: int | None = None,
    entry_stop: int | None = None,
    on_invalid: str = "raise",
    progress: bool = False,
    features: FeatureInput = None,
) -> Iterator[JetChunk]:
    """Stream jets from many files in chunks, for inputs larger than memory.

    ``step_size``: entries per chunk (int; jets for flat layouts, events for NanoAOD) or a
    memory size such as ``"100 MB"`` (converted per file by uproot from the branches read).
    ``entry_start``/``entry_stop`` apply to every file. Other options as in :func:`read_jets`.
    Yields :class:`JetChunk` (``jets``, ``file``, ``entry_start``, ``entry_stop``, ...);
    chunks of one file are contiguous and in order. Each file is opened once. Bad options and
    unmatched globs raise at the call; problems of a file when its turn comes. A tree without
    entries yields nothing.
    """
    o = _check_options(
        tree, layout, collection, branches, jet_fields, pf_collection, entry_start, entry_stop,
        on_invalid, features,
    )
    step = _check_step_size(step_size)
    files = _expand_paths(paths)
    return _iterate_files(files, o, step, on_invalid, progress)


def _iterate_files(
    files: list[str], o: _Options, step_size: int | str, on_invalid: str, progress: bool
) -> Iterator[JetChunk]:
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(files), unit="file", desc="reading jets")
    try:
        for spelled in files:
            with _open_planned(
                spelled, o.tree, o.layout, o.collection, o.branches, o.jet_fields,
                o.pf_collection, o.entry_start, o.entry_stop, o.features,
            ) as t:
                if isinstance(step_size, str):
                    try:
                        step = int(t.tobj.num_entries_for(step_size, filter_name=t.plan.names()))
                    except Exception as err:
                        raise CorruptFileError(
                            f"cannot size chunks of {t.path}:{t.tree_name}: "
                            f"{type(err).__name__}: {err}"
                        ) from err
                else:
                    step = step_size
                step = max(step, 1)  # a memory size below one entry reads one entry per chunk
                for lo in range(t.entry_start, t.entry_stop, step):
                    hi = min(lo + step, t.entry_stop)
                    arrays = _read_arrays(t.tobj, t.plan, t.path, t.tree_name, lo, hi)
                    jets = _build_jets(arrays, t.plan, t.path, t.tree_name, lo, hi, on_invalid)
                    yield JetChunk(
                        jets, os.path.abspath(t.path), lo, hi, t.tree_name, t.plan.layout,
                        t.num_entries,
                    )
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
