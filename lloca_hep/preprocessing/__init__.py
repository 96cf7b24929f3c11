"""Numba preprocessing: ragged jets (offsets + flat columns) -> padded float64 (E, px, py, pz).

Public API::

    pad_jets(constituents, max_constituents=64, sort_by_pt=True) -> PaddedJets
    pad_flat(offsets, px, py, pz, energy, max_constituents=64, sort_by_pt=True, *, counts=None)
    offsets_from_counts(counts), argsort_by_pt(offsets, px, py)
    polar_to_cartesian(pt, eta, phi, mass) -> (px, py, pz, E)      # .conversion
    apply_momentum_policy(cols, counts, on_invalid, *, where, ...)  # .validation
    join_index_table(jet_counts, row_counts, row_jet, row_cand, cand_counts)  # .join

Kinematics of jets (rest frames, reference vectors, features) live in :mod:`lloca_hep.core`.
"""

from __future__ import annotations

from lloca_hep._defaults import DEFAULT_MAX_CONSTITUENTS

from .conversion import polar_to_cartesian
from .join import IndexTableError, join_index_table
from .padding import (
    EmptyJetsWarning,
    PaddedJets,
    argsort_by_pt,
    offsets_from_counts,
    pad_flat,
    pad_jets,
)
from .validation import apply_momentum_policy, momentum_flags

__all__ = [
    "DEFAULT_MAX_CONSTITUENTS",
    "EmptyJetsWarning",
    "IndexTableError",
    "PaddedJets",
    "apply_momentum_policy",
    "argsort_by_pt",
    "join_index_table",
    "momentum_flags",
    "offsets_from_counts",
    "pad_flat",
    "pad_jets",
    "polar_to_cartesian",
]
