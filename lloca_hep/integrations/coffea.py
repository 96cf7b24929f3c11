"""The tagger inside coffea analyses: a :class:`coffea.ml_tools.numpy_call_wrapper`.

>>> from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema
>>> from lloca_hep.integrations.coffea import JetTagger   # or lloca_hep.coffea
>>> events = NanoEventsFactory.from_root({"pfnano.root": "Events"},
...                                       schemaclass=PFNanoAODSchema).events()
>>> tagger = JetTagger()                      # the shipped tagger; JetTagger(model=PATH) another
>>> scores = tagger(events)                   # float32, same [event][jet] structure as FatJet

The same call works on eager/virtual NanoEvents (awkward arrays) and on dask NanoEvents
(``mode="dask"``, dask-awkward arrays): it then returns a lazy dask-awkward array, and the task
graph reads only the columns the tagger needs.

Where the constituents come from
--------------------------------
PFNano stores the particle-flow candidates once per event (``PFCands``: pt, eta, phi, mass) and
links them to jets through index tables: ``FatJetPFCands`` / ``JetPFCands`` with ``jetIdx``
(index of the jet in its event) and ``pFCandsIdx`` (index of the candidate in its event).
The join is done here by a numba kernel over the flat columns (not by coffea's
``.constituents`` shortcut, which needs ``FatJet_nConstituents``, a branch many PFNano files
lack). Each jet's constituents keep the order of the index table, then are sorted by pT,
truncated to the tagger's ``max_constituents`` and padded by
:func:`lloca_hep.preprocessing.pad_flat` (numba, no awkward padding).

Accepted inputs of ``tagger(x)``:

* NanoEvents (or any record array with fields ``<collection>``, ``<collection>PFCands`` and
  ``PFCands``), e.g. read with :class:`coffea.nanoevents.PFNanoAODSchema`;
* the raw branches of such a file as read by ``uproot`` (fields ``n<collection>``,
  ``<collection>PFCands_jetIdx``, ``<collection>PFCands_pFCandsIdx``, ``PFCands_pt``, ...);
* any ragged array of constituents, ``[jet][constituent]`` or ``[event][jet][constituent]``,
  whose records carry ``px, py, pz`` and ``E`` (or ``energy``/``e``/``t``) or ``pt, eta, phi``
  and ``mass`` (or ``m``/``M``), in GeV.

A tagger with per-particle features (``tagger.inputs``) reads them from the same place: the
``PFCands`` fields its input set names (``charge``, ``pdgId``, ``d0`` ...) for NanoEvents and
raw branches, or the raw feature fields (``part_charge`` ...) of ragged constituents.

The result has one float32 top probability per jet (for a multi-class tagger, a record per jet
with one float32 field per class, e.g. ``scores.QCD``, ``scores.Hbb``), in the jet structure of the input
(``[event][jet]`` or ``[jet]``); jets without constituents get NaN. The same jets in the same
chunks give bit-identical scores eagerly, virtually, with dask and on a distributed cluster;
the model pads each batch to its longest jet, so a different chunking (or torch thread count)
may change the last float32 bit (~1e-7).

Model loading
-------------
The model is loaded lazily, on the first call that has jets to score, and cached once per
process (a dask worker deserialising the wrapper for many tasks loads it once). It is never
pickled: only the model path travels with the wrapper.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from lloca_hep._threads import apply_threads, check_threads
from lloca_hep.features import InputSpec, feature_columns
from lloca_hep.preprocessing.conversion import polar_to_cartesian
from lloca_hep.preprocessing.join import (
    CANDIDATE_FIELDS,
    LINK_CAND_FIELD,
    LINK_JET_FIELD,
    check_total,
    flat_column,
    join_indexed_constituents,
)
from lloca_hep.preprocessing.padding import offsets_from_counts
from lloca_hep.preprocessing.validation import ON_INVALID

from ._inputs import (
    CANDIDATES,
    _check_inputs,
    _header_spec,
    _load_cached_tagger,
    _pf_field,
    _pf_fields,
)

try:
    from coffea.ml_tools.helper import numpy_call_wrapper
except ImportError as _missing:  # tests/test_extras.py
    raise ImportError(
        "lloca_hep.integrations.coffea needs coffea and dask-awkward, which are not installed: "
        'pip install "lloca-hep[coffea]"'
    ) from _missing

log = logging.getLogger(__name__)

__all__ = ["CANDIDATES", "LINK_SUFFIX", "JetTagger", "join_indexed_constituents", "required_branches"]

#: Suffix of the jet -> candidate index tables (``FatJet`` -> ``FatJetPFCands``).
LINK_SUFFIX = "PFCands"
#: Jets padded and scored per step inside one call (bounds the padded (n, N, 4) float64 array).
PAD_CHUNK_JETS = 8192
#: dtype of the scores.
SCORE_DTYPE = np.float32

#: Accepted field names for Cartesian constituent records (energy first match wins).
_CARTESIAN_ENERGY = ("E", "energy", "e", "t")
#: Accepted field names for the mass of (pt, eta, phi, mass) constituent records.
_CYLINDRICAL_MASS = ("mass", "m", "M")

_LAYOUT_INDEXED = "indexed"
_LAYOUT_CARTESIAN = "ragged-cartesian"
_LAYOUT_CYLINDRICAL = "ragged-ptetaphim"



# ---------------------------------------------------------------------------- helpers
def required_branches(collection: str = "FatJet") -> list[str]:
    """The TTree branches a :class:`JetTagger` reads from a PFNano file for ``collection``."""
    link = collection + LINK_SUFFIX
    return [
        f"n{collection}",
        f"n{link}",
        f"{link}_{LINK_JET_FIELD}",
        f"{link}_{LINK_CAND_FIELD}",
        f"n{CANDIDATES}",
        *(f"{CANDIDATES}_{f}" for f in CANDIDATE_FIELDS),
    ]


def _first_field(fields: list[str], names: tuple[str, ...]) -> str | None:
    for name in names:
        if name in fields:
            return name
    return None


def _is_dask(x: Any) -> bool:
    return type(x).__module__.startswith("dask_awkward")


def _lib(x: Any) -> Any:
    if _is_dask(x):
        import dask_awkward

        return dask_awkward
    return ak


# ---------------------------------------------------------------------------- the wrapper
class JetTagger(numpy_call_wrapper):
    """Score jets of NanoEvents (eager, virtual or dask) with a lloca-hep tagger.

    Parameters
    ----------
    model:
        Path of a tagger file (``.pt`` from :meth:`lloca_hep.tagger.Tagger.save`, or a ``.pt2``
        from :func:`lloca_hep.export.export_tagger`); ``None`` uses the tagger shipped with
        lloca-hep. A :class:`lloca_hep.tagger.Tagger` object is accepted for eager use in one
        process; it cannot travel to dask workers (save it and pass the path).
    collection:
        The jet collection of the events: ``"FatJet"`` (AK8) or ``"Jet"`` (AK4); its
        constituents are joined through ``<collection>PFCands`` onto ``PFCands``.
    max_constituents:
        Keep at most this many constituents per jet (hardest in pT); default: the tagger's own.
    device:
        torch device for the model (``"auto"``: CUDA when available, else CPU).
    on_invalid:
        Constituents with NaN/inf momenta, negative energy or E < |p| beyond rounding (the
        checks of :func:`lloca_hep.io.read_jets`): ``"raise"`` a
        :class:`lloca_hep.io.InvalidMomentumError` naming the jet, or ``"drop"`` them with a
        counted :class:`lloca_hep.io.InvalidConstituentsWarning`.
    threads:
        torch CPU threads for scoring; ``None``: ``OMP_NUM_THREADS``, one per task inside a dask
        worker, else the cores not busy with other processes (:mod:`lloca_hep._threads`). Set
        in the thread that scores, at each call.
    """

    #: torch CPU threads (None: the policy of :mod:`lloca_hep._threads`).
    threads: int | None = None

    def __init__(
        self,
        model: str | os.PathLike[str] | Any | None = None,
        collection: str = "FatJet",
        max_constituents: int | None = None,
        *,
        device: str = "auto",
        on_invalid: str = "raise",
        threads: int | None = None,
    ) -> None:
        super().__init__()
        self.threads = check_threads(threads)
        if on_invalid not in ON_INVALID:
            raise ValueError(f"on_invalid must be one of {ON_INVALID}, got {on_invalid!r}")
        self.on_invalid = on_invalid
        if not isinstance(collection, str) or not collection.isidentifier():
            raise ValueError(f"collection must be a branch-name prefix like 'FatJet', got {collection!r}")
        if max_constituents is not None and int(max_constituents) < 1:
            raise ValueError(f"max_constituents must be >= 1, got {max_constituents}")
        self.collection = collection
        self.max_constituents = None if max_constituents is None else int(max_constituents)
        self.device = str(device)
        self._tagger: Any = None
        if model is None or isinstance(model, (str, os.PathLike)):
            from lloca_hep.tagger import SHIPPED_TAGGERS, shipped_name

            if model is not None and shipped_name(model) is not None:
                # a shipped tagger's short name ("jetclass"); "default" is the shipped default
                self.model_path: str | None = (None if os.fspath(model) == "default"
                                               else os.fspath(model))
            else:
                self.model_path = None if model is None else str(Path(model).resolve())
            if self.model_path is not None and self.model_path not in SHIPPED_TAGGERS \
                    and not Path(self.model_path).is_file():
                raise FileNotFoundError(f"{self.model_path}: no such tagger file")
        elif hasattr(model, "score_padded") and hasattr(model, "max_constituents"):
            self.model_path = None
            self._tagger = model
            self._in_memory = True
        else:
            raise TypeError(
                f"model must be a tagger file path, a Tagger or None, got {type(model).__name__}"
            )

    # ------------------------------------------------------------------ model handling
    @property
    def link_collection(self) -> str:
        """Name of the jet -> candidate index table (``FatJetPFCands`` for ``FatJet``)."""
        return self.collection + LINK_SUFFIX

    def io_spec(self) -> tuple[InputSpec, tuple[str, ...] | None]:
        """``(input set, class names)`` of the tagger (class names None for binary taggers),
        read from the file's header without loading the model."""
        if self._tagger is not None:
            t = self._tagger
            return t.inputs, (t.class_names if t.is_multiclass else None)
        return _header_spec(self.model_path)

    @property
    def tagger(self) -> Any:
        """The underlying :class:`lloca_hep.tagger.Tagger`, loaded on first use."""
        if self._tagger is None:
            self._tagger = _load_cached_tagger(self.model_path, self.device)
        return self._tagger

    def __getstate__(self) -> dict[str, Any]:
        if self.__dict__.get("_in_memory"):
            raise TypeError(
                "a JetTagger built around an in-memory Tagger cannot be pickled (e.g. sent to "
                "dask workers): save the tagger with Tagger.save(path) and use JetTagger(model=path)"
            )
        state = self.__dict__.copy()
        state["_tagger"] = None  # the model never travels: workers load it from model_path
        state.pop("_delayed_wrapper", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        mtime = None
        if self.model_path is not None and Path(self.model_path).exists():
            stat = Path(self.model_path).stat()
            mtime = (stat.st_mtime_ns, stat.st_size)
        return (type(self).__name__, self.model_path, mtime, self.collection,
                self.max_constituents, self.device, self.on_invalid, self.threads,
                id(self) if self._in_memory else None)

    _in_memory = False

    def __repr__(self) -> str:
        model = self.model_path or ("<in-memory>" if self._in_memory else "<shipped>")
        return (f"JetTagger(model={model!r}, collection={self.collection!r}, "
                f"max_constituents={self.max_constituents})")

    # ------------------------------------------------------------------ numpy_call_wrapper API
    def validate_numpy_input(self, *args: Any, **kwargs: Any) -> None:
        """Inputs are validated (with messages naming the column) inside :meth:`numpy_call`."""

    def _input_layout(self, array: Any) -> str:
        fields = list(array.fields)
        link = self.link_collection
        if self.collection in fields and link in fields and CANDIDATES in fields:
            return "events"
        if f"{link}_{LINK_JET_FIELD}" in fields:
            return "branches"
        if _first_field(fields, _CARTESIAN_ENERGY) and {"px", "py", "pz"} <= set(fields):
            return _LAYOUT_CARTESIAN
        if _first_field(fields, _CYLINDRICAL_MASS) and {"pt", "eta", "phi"} <= set(fields):
            return _LAYOUT_CYLINDRICAL
        if self.collection in fields:
            missing = [n for n in (link, CANDIDATES) if n not in fields]
            raise ValueError(
                f"the events have {self.collection} but no {' / '.join(missing)}: the tagger "
                f"joins PF candidates onto {self.collection} through the {link} index table "
                "(PFNano); read the file with PFNanoAODSchema, or pass the constituents directly"
            )
        shown = fields[:12] + (["..."] if len(fields) > 12 else [])
        raise ValueError(
            f"cannot find jets to score in an array with fields {shown}: expected NanoEvents "
            f"with {self.collection}, {link} and {CANDIDATES}, the raw PFNano branches, or "
            "ragged constituents with (px, py, pz, E) or (pt, eta, phi, mass) in GeV"
        )

    def prepare_awkward(self, array: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Flat columns + counts for :meth:`numpy_call` (works on awkward, virtual and typetracer).

        Returns ``(args, {"layout": ...})``: for events, ``(jet counts, link counts, link jetIdx,
        link pFCandsIdx, candidate counts, pt, eta, phi, mass)``; for ragged constituents,
        ``(constituent counts per jet, c0, c1, c2, c3)``.
        """
        lib = _lib(array)
        layout = self._input_layout(array)
        link = self.link_collection
        if layout == "events":
            links = array[link]
            cands = array[CANDIDATES]
            for name, rec in ((link, links), (CANDIDATES, cands)):
                need = (LINK_JET_FIELD, LINK_CAND_FIELD) if rec is links else CANDIDATE_FIELDS
                missing = [f for f in need if f not in rec.fields]
                if missing:
                    raise ValueError(f"{name} lacks the field(s) {missing}")
            pf = _pf_fields(self.io_spec()[0])
            missing = [f for f in pf if f not in cands.fields]
            if missing:
                raise ValueError(f"{CANDIDATES} lacks the field(s) {missing}, which the "
                                 f"tagger's input set {self.io_spec()[0].name!r} reads")
            args = (
                lib.num(array[self.collection], axis=1),
                lib.num(links, axis=1),
                lib.flatten(links[LINK_JET_FIELD], axis=1),
                lib.flatten(links[LINK_CAND_FIELD], axis=1),
                lib.num(cands, axis=1),
                *(lib.flatten(cands[f], axis=1) for f in CANDIDATE_FIELDS),
                *(lib.flatten(cands[f], axis=1) for f in pf),
            )
            return args, {"layout": _LAYOUT_INDEXED}
        if layout == "branches":
            pf = _pf_fields(self.io_spec()[0])
            missing = [b for b in required_branches(self.collection)
                       if b not in array.fields and not b.startswith("n")]
            missing += [f"{CANDIDATES}_{f}" for f in pf if f"{CANDIDATES}_{f}" not in array.fields]
            if missing:
                raise ValueError(f"the arrays lack the branch(es) {missing}")
            lj = array[f"{link}_{LINK_JET_FIELD}"]
            cpt = array[f"{CANDIDATES}_pt"]
            jets = (array[f"n{self.collection}"] if f"n{self.collection}" in array.fields
                    else lib.num(array[f"{self.collection}_pt"], axis=1))
            args = (
                jets,
                lib.num(lj, axis=1),
                lib.flatten(lj, axis=1),
                lib.flatten(array[f"{link}_{LINK_CAND_FIELD}"], axis=1),
                lib.num(cpt, axis=1),
                *(lib.flatten(array[f"{CANDIDATES}_{f}"], axis=1) for f in CANDIDATE_FIELDS),
                *(lib.flatten(array[f"{CANDIDATES}_{f}"], axis=1) for f in pf),
            )
            return args, {"layout": _LAYOUT_INDEXED}
        # ragged constituents
        fields = list(array.fields)
        if layout == _LAYOUT_CARTESIAN:
            names: tuple[str, ...] = ("px", "py", "pz", _first_field(fields, _CARTESIAN_ENERGY) or "E")
        else:
            names = ("pt", "eta", "phi", _first_field(fields, _CYLINDRICAL_MASS) or "mass")
        if array.ndim == 3:
            jets = lib.flatten(array, axis=1)
        elif array.ndim == 2:
            jets = array
        else:
            raise ValueError(
                f"ragged constituents must be [jet][constituent] or [event][jet][constituent], "
                f"got {array.ndim} dimensions"
            )
        inputs = self.io_spec()[0]
        missing = [n for n in inputs.names if n not in fields]
        if missing:
            raise ValueError(
                f"the constituents lack the feature field(s) {missing} that the tagger's input "
                f"set {inputs.name!r} reads (read them with read_jets(..., features=...))")
        args = (lib.num(jets, axis=1), *(lib.flatten(jets[n], axis=1) for n in names),
                *(lib.flatten(jets[n], axis=1) for n in inputs.names))
        return args, {"layout": layout}

    def numpy_call(self, *arrays: np.ndarray, layout: str) -> np.ndarray:
        """Score the jets described by flat numpy columns; float32 ``(n_jets,)``.

        ``layout="indexed"``: the nine PFNano columns of :meth:`prepare_awkward`;
        ``"ragged-cartesian"`` / ``"ragged-ptetaphim"``: per-jet constituent counts and four
        flat columns (px, py, pz, E) or (pt, eta, phi, mass), GeV.
        """
        inputs, classes = self.io_spec()
        sources: dict[str, str] = {}
        if layout == _LAYOUT_INDEXED:
            pf = _pf_fields(inputs)
            if len(arrays) != 9 + len(pf):
                raise ValueError(f"indexed layout needs {9 + len(pf)} columns, got {len(arrays)}")
            offsets, px, py, pz, energy, selection = join_indexed_constituents(
                *arrays[:9], what="jets" if self.collection.endswith("Jet") else "objects",
                return_selection=True,
            )
            gathered = {f: flat_column(f"{CANDIDATES}_{f}", c)[selection]
                        for f, c in zip(pf, arrays[9:], strict=True)}
            features = feature_columns(inputs, "nanoaod", lambda b: gathered[_pf_field(b)])
            for feat in inputs.ordered:
                src = feat.source("nanoaod")
                assert src is not None
                sources[feat.name] = f"{CANDIDATES}_{_pf_field(src.branch)}"
        elif layout in (_LAYOUT_CARTESIAN, _LAYOUT_CYLINDRICAL):
            n_cols = 5 + len(inputs)
            if len(arrays) != n_cols:
                raise ValueError(f"ragged layout needs {n_cols} columns, got {len(arrays)}")
            counts = flat_column("constituent counts", arrays[0], np.int64)
            cols = [flat_column(f"constituent column {i}", c) for i, c in enumerate(arrays[1:])]
            for i, col in enumerate(cols):
                check_total("constituent counts", counts, col, f"constituent column {i}")
            offsets = offsets_from_counts(counts)
            if layout == _LAYOUT_CARTESIAN:
                px, py, pz, energy = (c.astype(np.float64, copy=False) for c in cols[:4])
            else:
                px, py, pz, energy = polar_to_cartesian(*cols[:4])
            features = {n: c.astype(np.float32, copy=False)
                        for n, c in zip(inputs.names, cols[4:], strict=True)}
            sources = {n: n for n in inputs.names}
        else:
            raise ValueError(f"unknown layout {layout!r}")
        offsets, momenta, features = _check_inputs(offsets, [px, py, pz, energy], features,
                                                   self.on_invalid, sources)
        return self._score_flat(offsets, *momenta, features=features, inputs=inputs,
                                n_classes=0 if classes is None else len(classes))

    def _score_flat(self, offsets: np.ndarray, px: np.ndarray, py: np.ndarray, pz: np.ndarray,
                    energy: np.ndarray, *, features: dict[str, np.ndarray] | None = None,
                    inputs: InputSpec | None = None, n_classes: int = 0) -> np.ndarray:
        """Pad (numba) and score jets given by ``offsets`` over flat float64 (px, py, pz, E)
        and raw features; float32 ``(n_jets,)``, or ``(n_jets, n_classes)`` when > 0."""
        from lloca_hep.preprocessing import pad_flat

        n_jets = offsets.shape[0] - 1
        out = np.empty((n_jets, n_classes) if n_classes else n_jets, dtype=SCORE_DTYPE)
        if n_jets == 0:
            return out
        tagger = self.tagger
        apply_threads(self.threads)  # in this thread: OpenMP team sizes are per thread
        max_n = self.max_constituents or int(tagger.max_constituents)
        sort_by_pt = bool(getattr(tagger, "sort_by_pt", True))
        rows = None
        if inputs is not None and len(inputs):
            assert features is not None
            rows = np.stack([features[n] for n in inputs.names], axis=1)
        for start in range(0, n_jets, PAD_CHUNK_JETS):
            stop = min(start + PAD_CHUNK_JETS, n_jets)
            lo, hi = int(offsets[start]), int(offsets[stop])
            padded = pad_flat(offsets[start:stop + 1] - lo, px[lo:hi], py[lo:hi], pz[lo:hi],
                              energy[lo:hi], max_n, sort_by_pt=sort_by_pt,
                              scalars=None if rows is None else rows[lo:hi])
            scalars = None
            if rows is not None:
                assert inputs is not None and padded.scalars is not None
                scalars = inputs.transform(padded.scalars, padded.mask)
            out[start:stop] = tagger.score_padded(padded.p4, padded.mask, scalars=scalars)
        return out

    def postprocess_awkward(self, return_array: Any, array: Any) -> Any:
        """Give the flat scores the jet structure of the input (``[event][jet]`` or ``[jet]``);
        a multi-class tagger's scores become records with one field per class."""
        lib = _lib(array)
        layout = self._input_layout(array)
        classes = self.io_spec()[1]
        if classes is not None:
            return_array = lib.zip({c: return_array[:, k] for k, c in enumerate(classes)})
        if layout == "events":
            return lib.unflatten(return_array, lib.num(array[self.collection], axis=1))
        if layout == "branches":
            name = f"n{self.collection}"
            counts = (array[name] if name in array.fields
                      else lib.num(array[f"{self.collection}_pt"], axis=1))
            return lib.unflatten(return_array, counts)
        if array.ndim == 3:
            return lib.unflatten(return_array, lib.num(array, axis=1))
        return return_array

    # ------------------------------------------------------------------ dask
    def _call_dask(self, array: Any) -> Any:
        """Lazy scoring of a dask-awkward array, one task per partition.

        The whole awkward path (prepare, numba join + padding, model, unflatten) runs inside
        each partition. On dask-awkward's typetracer pass (metadata and column optimisation)
        the partition function only touches the columns it needs and returns a typetracer of
        the output type: the model is never loaded or run on placeholder data.
        """
        import dask
        import dask_awkward as dak

        if self._in_memory:
            raise TypeError(
                "dask scoring needs a tagger file: save the Tagger with Tagger.save(path) and use "
                "JetTagger(model=path)"
            )
        self._input_layout(array)  # fail early, in the client, on unusable input
        meta = _PartitionScorer()(self, array._meta)
        delayed_self = dask.delayed(self, pure=True)
        return dak.map_partitions(
            _PartitionScorer(), delayed_self, array,
            label=f"lloca-{self.collection}-score", meta=meta,
        )

    def __call__(self, array: Any) -> Any:
        """Score ``array`` (see the module docstring for the accepted inputs)."""
        if _is_dask(array):
            return self._call_dask(array)
        if isinstance(array, ak.Array):
            if ak.backend(array) == "typetracer":
                return _PartitionScorer()(self, array)
            return self._call_awkward(array)
        raise TypeError(
            f"JetTagger takes an awkward or dask-awkward array, got {type(array).__name__}"
        )


class _PartitionScorer:
    """The function mapped over partitions: ``(wrapper, partition) -> scores``."""

    def __call__(self, wrapper: JetTagger, array: ak.Array) -> ak.Array:
        if ak.backend(array) != "typetracer":
            return wrapper._call_awkward(array)
        args, _ = wrapper.prepare_awkward(array)
        for arg in args:
            ak.typetracer.touch_data(arg)
        classes = wrapper.io_spec()[1]
        empty = np.zeros((0, len(classes)) if classes else 0, dtype=SCORE_DTYPE)
        flat = ak.Array(ak.to_layout(empty).to_typetracer(forget_length=True))
        return wrapper.postprocess_awkward(flat, array)
