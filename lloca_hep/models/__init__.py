"""Jet taggers with the common call ``model(p4, mask) -> logits``.

``p4``: float64 ``(B, N, 4)`` (E, px, py, pz) in GeV; ``mask``: bool ``(B, N)``. Every model has a
JSON-serialisable ``.config`` and is registered in :data:`MODELS`, so
``build_model(name, model.config)`` rebuilds it. Short names (``transformer``, ``graphnet``,
``jet_mass``) are resolved by :func:`resolve_model_name` (:data:`MODEL_ALIASES`).
"""

from .baselines import JetMassTagger
from .graphnet import LLoCaGraphNet
from .plain import PlainJetTransformer
from .registry import MODEL_ALIASES, MODELS, build_model, model_name, resolve_model_name
from .transformer import LLoCaTransformer

__all__ = [
    "MODELS",
    "MODEL_ALIASES",
    "JetMassTagger",
    "LLoCaGraphNet",
    "LLoCaTransformer",
    "PlainJetTransformer",
    "build_model",
    "model_name",
    "resolve_model_name",
]
