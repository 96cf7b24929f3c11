"""Integrations of lloca-hep with analysis frameworks.

* :mod:`lloca_hep.integrations.dask`: :func:`~lloca_hep.integrations.dask.score_files`,
  ROOT in / ROOT friend trees out over many files on a dask cluster.
* :mod:`lloca_hep.integrations.coffea` (also ``lloca_hep.coffea``): :class:`~lloca_hep.integrations.coffea.JetTagger`, the tagger inside coffea
  processors.
"""

from __future__ import annotations

from typing import Any

__all__ = ["score_files"]


def __getattr__(name: str) -> Any:
    if name == "score_files":
        from .dask import score_files

        return score_files
    raise AttributeError(f"module 'lloca_hep.integrations' has no attribute {name!r}")
