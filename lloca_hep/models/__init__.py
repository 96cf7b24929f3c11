"""Jet taggers with the common call ``model(p4, mask) -> logits``.

``p4``: float64 ``(B, N, 4)`` (E, px, py, pz) in GeV; ``mask``: bool ``(B, N)``. Every model has a
JSON-serialisable ``.config`` and is registered in :data:`MODELS`, so
``build_model(name, model.config)`` rebuilds it.
"""

from .baselines import JetMassTagger
from .graphnet import LLoCaGraphNet
from .plain import PlainJetTransformer
from .registry import MODELS, build_model, model_name
from .transformer import LLoCaTransformer

__all__ = [
    "MODELS",
    "JetMassTagger",
    "LLoCaGraphNet",
    "LLoCaTransformer",
    "PlainJetTransformer",
    "build_model",
    "model_name",
]
