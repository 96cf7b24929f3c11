"""Numba preprocessing: ragged jets (offsets + flat columns) -> padded float64 (E, px, py, pz).

Public API::

    pad_jets(constituents, max_constituents=128, sort_by_pt=True) -> PaddedJets
    pad_flat(offsets, px, py, pz, energy, max_constituents=128, sort_by_pt=True, *, counts=None)
    offsets_from_counts(counts), argsort_by_pt(offsets, px, py)
    jet_four_momenta(p4, mask), jet_four_momenta_flat(offsets, px, py, pz, energy)
    rest_frame_boosts(jet_p4) -> (boosts (n, 4, 4), valid (n,))
    reference_vectors(n_jets, names=("beam_plus", "beam_minus", "time"), boosts=None)
    constituent_features(p4, mask, jet_p4=None) -> (n, N, 5)  # FEATURE_NAMES
"""

from __future__ import annotations

from .jets import (
    FEATURE_NAMES,
    REFERENCE_VECTORS,
    REST_FRAME_MIN_REL_MASS,
    constituent_features,
    jet_four_momenta,
    jet_four_momenta_flat,
    reference_vectors,
    rest_frame_boosts,
)
from .padding import (
    DEFAULT_MAX_CONSTITUENTS,
    EmptyJetsWarning,
    PaddedJets,
    argsort_by_pt,
    offsets_from_counts,
    pad_flat,
    pad_jets,
)

__all__ = [
    "DEFAULT_MAX_CONSTITUENTS",
    "FEATURE_NAMES",
    "REFERENCE_VECTORS",
    "REST_FRAME_MIN_REL_MASS",
    "EmptyJetsWarning",
    "PaddedJets",
    "argsort_by_pt",
    "constituent_features",
    "jet_four_momenta",
    "jet_four_momenta_flat",
    "offsets_from_counts",
    "pad_flat",
    "pad_jets",
    "reference_vectors",
    "rest_frame_boosts",
]
