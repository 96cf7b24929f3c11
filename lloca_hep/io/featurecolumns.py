"""Raw per-particle feature columns of a chunk read by :mod:`lloca_hep.io.readers`.

The branches come from the reader's plan (:attr:`lloca_hep.io.discovery._Plan.feature_branches`);
:func:`lloca_hep.features.feature_columns` derives the raw values (scales, particle-ID flags).
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from lloca_hep.errors import LayoutError
from lloca_hep.features import feature_columns

from .columns import _column, _flat
from .discovery import _Plan

__all__: list[str] = []


def _feature_sources(plan: _Plan) -> dict[str, str]:
    """``{feature name: the stored branch(es) it comes from}``, for messages."""
    assert plan.features is not None
    out = {}
    for feat in plan.features.ordered:
        src = feat.source(plan.layout)
        assert src is not None
        out[feat.name] = " + ".join(plan.feature_branches[b] for b in src.branches())
    return out


def _flat_features(arrays: ak.Array, plan: _Plan, path: str, tree_name: str, start: int,
                   counts: np.ndarray) -> dict[str, np.ndarray]:
    """Raw feature columns of a one-entry-per-jet chunk (one value per constituent)."""
    if plan.features is None:
        return {}
    first = next(iter(plan.constituent.values()))
    values: dict[str, np.ndarray] = {}
    for branch, stored in plan.feature_branches.items():
        c, flat = _flat(_column(arrays, stored, path, tree_name), None)
        if not np.array_equal(c, counts):
            bad = int(np.flatnonzero(c != counts)[0])
            raise LayoutError(
                f"{path}:{tree_name}: entry {start + bad} (jet {bad} of the chunk): feature "
                f"branch {stored!r} has {int(c[bad])} values but {first!r} has "
                f"{int(counts[bad])}; a feature branch must hold one value per constituent")
        values[branch] = flat
    return feature_columns(plan.features, plan.layout, values.__getitem__)


def _nano_features(arrays: ak.Array, plan: _Plan, path: str, tree_name: str, start: int,
                   pf_counts: np.ndarray, selection: np.ndarray) -> dict[str, np.ndarray]:
    """Raw feature columns of a NanoAOD chunk, gathered onto the jets' constituents."""
    if plan.features is None:
        return {}
    values: dict[str, np.ndarray] = {}
    for branch, stored in plan.feature_branches.items():
        c, flat = _flat(_column(arrays, stored, path, tree_name), None)
        if not np.array_equal(c, pf_counts):
            bad = int(np.flatnonzero(c != pf_counts)[0])
            raise LayoutError(
                f"{path}:{tree_name}: entry {start + bad}: feature branch {stored!r} has "
                f"{int(c[bad])} values but {plan.constituent['pt']!r} has {int(pf_counts[bad])};"
                " a PF-candidate feature must hold one value per candidate")
        values[branch] = flat[selection]
    return feature_columns(plan.features, plan.layout, values.__getitem__)


