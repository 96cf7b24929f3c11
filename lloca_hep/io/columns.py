"""Columns of the arrays read from a tree: (dotted RNTuple) fields checked to hold numbers,
and jagged columns as counts + flat numpy values."""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np

from lloca_hep.errors import MissingBranchError

__all__: list[str] = []


def _column(arrays: ak.Array, name: str, path: str, tree_name: str) -> ak.Array:
    """Fetch a (possibly dotted RNTuple) column and check that it holds numbers."""
    col: Any = arrays
    if name in ak.fields(arrays):
        col = arrays[name]
    else:
        for part in name.split("."):
            if part not in ak.fields(col):
                raise MissingBranchError(
                    f"{path}:{tree_name}: reading {name!r} returned fields {ak.fields(col)}"
                )
            col = col[part]
    if ak.fields(col):
        raise MissingBranchError(
            f"{path}:{tree_name}: {name!r} read back as records {ak.fields(col)}, not numbers "
            "(RNTuple sub-fields are named 'record.field')"
        )
    return col


def _flat(values: ak.Array, dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """counts (int64) and flat numpy values of a per-entry jagged column."""
    values = ak.to_packed(values)
    counts = ak.to_numpy(ak.num(values, axis=1)).astype(np.int64)
    flat = np.asarray(ak.to_numpy(ak.flatten(values, axis=1)), dtype=dtype)
    return counts, flat


