"""lloca-hep: Lorentz-equivariant jet tagging (LLoCa) in the scikit-hep stack.

Data flows one way::

    ROOT  --io-->  awkward (ragged Momentum4D jets)  --preprocessing-->  padded (E, px, py, pz)
          --models (torch, LLoCa)-->  scores  --io-->  awkward field / friend ROOT tree

Top-level entry points are imported lazily so that ``import lloca_hep`` stays fast.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__

__all__ = [
    "__version__",
    "iterate_jets",
    "load_tagger",
    "read_jets",
    "score_files",
]

_LAZY = {
    "read_jets": ("lloca_hep.io", "read_jets"),
    "iterate_jets": ("lloca_hep.io", "iterate_jets"),
    "load_tagger": ("lloca_hep.tagger", "load_tagger"),
    "score_files": ("lloca_hep.integrations.dask", "score_files"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'lloca_hep' has no attribute {name!r}")
