"""Model registry: rebuild any model from its name and ``.config``."""

from __future__ import annotations

import inspect
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
    cls = MODELS[name]
    try:
        return cls(**(config or {}))
    except TypeError as err:  # an option the model does not take, e.g. frames= for a baseline
        params = [p for p in inspect.signature(cls).parameters if p != "self"]
        raise ValueError(
            f"model {name!r} does not accept the configuration {config!r} ({err}); "
            f"its options are: {params}"
        ) from err


def model_name(model: nn.Module) -> str:
    """The registry name of ``model``'s class."""
    for name, cls in MODELS.items():
        if type(model) is cls:
            return name
    raise KeyError(
        f"{type(model).__name__} is not a registered model; registered: {sorted(MODELS)}"
    )
