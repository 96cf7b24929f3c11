"""Raw feature columns from stored columns: one implementation for the readers and coffea.

:func:`feature_columns` takes a getter that returns the flat values (one per constituent, in
the constituents' order) of a stored branch or PF-candidate field, and builds the raw value of
every feature of a spec (scale applied, particle-ID flags derived). :func:`feature_problems`
finds NaN/inf values, for the counted invalid-input policy of :mod:`lloca_hep.preprocessing`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .pid import pid_flag
from .spec import InputSpec

__all__ = ["feature_columns", "feature_problems"]


def feature_columns(spec: InputSpec, family: str,
                    get: Callable[[str], np.ndarray]) -> dict[str, np.ndarray]:
    """``{feature name: float32 (n_constituents,)}`` raw values, in :attr:`InputSpec.names`
    order; ``get(stored_name)`` returns a flat numeric column. A feature without a source for
    ``family`` raises ``KeyError`` (callers check sources when planning)."""
    out: dict[str, np.ndarray] = {}
    for feat in spec.ordered:
        src = feat.source(family)
        if src is None:
            raise KeyError(feat.name)
        if src.pid is not None:
            assert src.charge is not None
            out[feat.name] = pid_flag(src.pid, get(src.branch), get(src.charge))
            continue
        values = np.asarray(get(src.branch), dtype=np.float32)
        out[feat.name] = values * np.float32(src.scale) if src.scale != 1.0 else values
    return out


def feature_problems(columns: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, int]]:
    """bool ``(n,)`` True for constituents with a NaN/inf feature, and the count per feature."""
    n = next(iter(columns.values())).shape[0] if columns else 0
    bad = np.zeros(n, dtype=bool)
    counts: dict[str, int] = {}
    for name, col in columns.items():
        b = ~np.isfinite(col)
        if b.any():
            counts[name] = int(b.sum())
            bad |= b
    return bad, counts
