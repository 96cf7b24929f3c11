"""The per-process tagger cache of :class:`lloca_hep.integrations.coffea.JetTagger` and the
flat-column input handling it shares with :func:`lloca_hep.integrations.dask.score_files`:
the PF-candidate fields a tagger's features read, and the invalid-input policies."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from lloca_hep.features import InputSpec, preset
from lloca_hep.preprocessing.padding import offsets_from_counts
from lloca_hep.preprocessing.validation import apply_feature_policy, apply_momentum_policy

log = logging.getLogger("lloca_hep.integrations.coffea")

#: Collection of the PF candidates in PFNano.
CANDIDATES = "PFCands"

# one tagger per (model, device) per process; guarded by a lock for threaded workers
_TAGGER_CACHE: dict[tuple[str, str], Any] = {}
_SPEC_CACHE: dict[tuple[str, str], tuple[InputSpec, tuple[str, ...] | None]] = {}
_TAGGER_LOCK = threading.Lock()
#: How many times this process loaded a tagger file (diagnostics: once per model per worker).
_TAGGER_LOADS = 0


def _tagger_key(model: str | None, device: str) -> tuple[str, str]:
    if model is None:
        return ("<shipped>", device)
    return (str(Path(model).resolve()), device)


def _load_cached_tagger(model: str | None, device: str) -> Any:
    from lloca_hep.tagger import load_tagger

    key = _tagger_key(model, device)
    with _TAGGER_LOCK:
        tagger = _TAGGER_CACHE.get(key)
        if tagger is None:
            log.info("loading tagger %s on %s (pid %d)", key[0], device, os.getpid())
            tagger = load_tagger(model, device=device)
            _TAGGER_CACHE[key] = tagger
            global _TAGGER_LOADS
            _TAGGER_LOADS += 1
    return tagger


def _check_inputs(
    offsets: np.ndarray, momenta: list[np.ndarray], features: dict[str, np.ndarray],
    on_invalid: str, sources: dict[str, str],
) -> tuple[np.ndarray, list[np.ndarray], dict[str, np.ndarray]]:
    """The readers' invalid-input policies (:mod:`lloca_hep.preprocessing.validation`) for
    the momenta ``[px, py, pz, E]`` and the raw features."""
    describe = lambda j: f"jet {j} of the chunk (in input order)"  # noqa: E731
    remedy = "Use JetTagger(..., on_invalid='drop') to drop them."
    counts = np.diff(offsets)
    if features:
        momenta, features, counts = apply_feature_policy(
            momenta, features, counts, on_invalid, where="JetTagger", sources=sources,
            describe_jet=describe, remedy=remedy, stacklevel=6)
    names = list(features)
    cols, new_counts = apply_momentum_policy(
        momenta + [features[n] for n in names], counts, on_invalid, where="JetTagger",
        describe_jet=describe, remedy=remedy, stacklevel=6,
    )
    changed = new_counts is not np.diff(offsets) and not np.array_equal(new_counts,
                                                                        np.diff(offsets))
    new_offsets = offsets_from_counts(new_counts) if changed else offsets
    return new_offsets, cols[:4], dict(zip(names, cols[4:], strict=True))


def _pf_fields(inputs: InputSpec) -> list[str]:
    """The ``PFCands`` fields the features of ``inputs`` read (``PFCands_d0`` -> ``d0``)."""
    out: dict[str, None] = {}
    for feat in inputs.ordered:
        src = feat.source("nanoaod")
        if src is None:
            raise ValueError(f"feature {feat.name!r} of input set {inputs.name!r} has no "
                             "PF-candidate (nanoaod) source")
        for b in src.branches():
            out.setdefault(_pf_field(b), None)
    return list(out)


def _pf_field(branch: str) -> str:
    return branch[len(CANDIDATES) + 1:] if branch.startswith(CANDIDATES + "_") else branch


def _header_spec(model: str | None) -> tuple[InputSpec, tuple[str, ...] | None]:
    """The input set and (multi-class taggers) class names from a tagger file's header,
    without building the model; cached per process."""
    key = _tagger_key(model, "")
    with _TAGGER_LOCK:
        if key in _SPEC_CACHE:
            return _SPEC_CACHE[key]
    from lloca_hep.tagger import load_tagger, read_tagger_header
    from lloca_hep.tagger.format import header_inputs

    if model is None:
        t = load_tagger(None, device="cpu")
        spec = (t.inputs, t.class_names if t.is_multiclass else None)
    else:
        header = read_tagger_header(model)
        inputs, classes = header_inputs(model, header)
        n_out = (header.get("config") or {}).get("num_classes")
        multi = n_out is not None and int(n_out) > 2
        spec = (inputs or preset("kin"), tuple(classes) if multi and classes else None)
    with _TAGGER_LOCK:
        _SPEC_CACHE[key] = spec
    return spec


