"""Jet taggers with the common call ``model(p4, mask, scalars=None) -> logits``.

``p4``: float64 ``(B, N, 4)`` (E, px, py, pz) in GeV; ``mask``: bool ``(B, N)``. Every model has a
JSON-serialisable ``.config`` and is registered in :data:`MODELS`, so
``build_model(name, model.config)`` rebuilds it. Short names (``transformer``, ``graphnet``,
``jet_mass``) are resolved by :func:`resolve_model_name` (:data:`MODEL_ALIASES`); ParT and
ParticleNet and their LLoCa twins are registered as ``part``, ``llocapart``, ``particlenet``
and ``llocaparticlenet``. :func:`register_model` adds a model of your own.
"""

from .baselines import JetMassTagger
from .graphnet import LLoCaGraphNet
from .part import LLoCaParT, ParticleTransformer
from .particlenet import LLoCaParticleNet, ParticleNet
from .plain import PlainJetTransformer
from .registry import (
    MODEL_ALIASES,
    MODELS,
    build_model,
    model_name,
    register_model,
    resolve_model_name,
)
from .transformer import LLoCaTransformer

__all__ = [
    "MODELS",
    "MODEL_ALIASES",
    "JetMassTagger",
    "LLoCaGraphNet",
    "LLoCaParT",
    "LLoCaParticleNet",
    "LLoCaTransformer",
    "ParticleNet",
    "ParticleTransformer",
    "PlainJetTransformer",
    "build_model",
    "model_name",
    "register_model",
    "resolve_model_name",
]
