"""Model registry: rebuild any model from its name and ``.config``."""

from __future__ import annotations

from typing import Any

from torch import nn

from .baselines import JetMassTagger
from .graphnet import LLoCaGraphNet
from .plain import PlainJetTransformer
from .transformer import LLoCaTransformer

__all__ = ["MODELS", "build_model", "model_name"]

#: Registered model classes by name.
MODELS: dict[str, type[nn.Module]] = {
    "LLoCaTransformer": LLoCaTransformer,
    "LLoCaGraphNet": LLoCaGraphNet,
    "JetMassTagger": JetMassTagger,
    "plain_transformer": PlainJetTransformer,
}


def build_model(name: str, config: dict[str, Any] | None = None) -> nn.Module:
    """Construct ``MODELS[name](**config)``; unknown names raise ``KeyError`` listing the choices."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered models: {sorted(MODELS)}")
    return MODELS[name](**(config or {}))


def model_name(model: nn.Module) -> str:
    """The registry name of ``model``'s class."""
    for name, cls in MODELS.items():
        if type(model) is cls:
            return name
    raise KeyError(
        f"{type(model).__name__} is not a registered model; registered: {sorted(MODELS)}"
    )
