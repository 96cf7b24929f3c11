"""Model registry: rebuild any model from its name and ``.config``."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from .baselines import JetMassTagger
from .graphnet import LLoCaGraphNet
from .plain import PlainJetTransformer
from .transformer import LLoCaTransformer

__all__ = [
    "MODELS",
    "MODEL_ALIASES",
    "SIZE_OPTIONS",
    "build_model",
    "check_config",
    "model_name",
    "model_names",
    "resolve_model_name",
]

#: Registered model classes by name.
MODELS: dict[str, type[nn.Module]] = {
    "LLoCaTransformer": LLoCaTransformer,
    "LLoCaGraphNet": LLoCaGraphNet,
    "JetMassTagger": JetMassTagger,
    "plain_transformer": PlainJetTransformer,
}

#: Short names users may give for the models of :data:`MODELS` (CLI ``--model``, ``train``).
#: ``plain_transformer`` is itself a key of :data:`MODELS`.
MODEL_ALIASES: dict[str, str] = {
    "transformer": "LLoCaTransformer",
    "graphnet": "LLoCaGraphNet",
    "jet_mass": "JetMassTagger",
}


def resolve_model_name(name: str) -> str:
    """The :data:`MODELS` key of ``name``: a key itself or an alias of :data:`MODEL_ALIASES`.

    Raises ``ValueError`` listing every accepted name for anything else.
    """
    full = MODEL_ALIASES.get(name, name)
    if full not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {model_names()}")
    return full


def model_names() -> list[str]:
    """Every name :func:`resolve_model_name` accepts (registry keys and aliases), sorted."""
    return sorted(set(MODELS) | {a for a, full in MODEL_ALIASES.items() if full in MODELS})

#: Constructor options that are widths or counts: integers >= 1 (``num_classes`` may be None).
SIZE_OPTIONS = ("hidden", "blocks", "heads", "layers", "neighbours", "num_vectors", "mlp_ratio",
                "frames_hidden", "frames_key_dim", "num_classes")


def _options(cls: type[nn.Module]) -> list[str]:
    return [p for p in inspect.signature(cls).parameters if p != "self"]


def check_config(name: str, config: dict[str, Any] | None = None) -> None:
    """Check ``config`` for ``MODELS[name]`` without building the model.

    Raises ``KeyError`` for an unknown model and ``ValueError`` naming the option for an option
    the model does not take or a size (:data:`SIZE_OPTIONS`) that is not an integer >= 1.
    """
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered models: {sorted(MODELS)}")
    cls = MODELS[name]
    config = dict(config or {})
    try:
        inspect.signature(cls).bind(**config)
    except TypeError as err:
        raise ValueError(
            f"model {name!r} does not accept the configuration {config!r} ({err}); "
            f"its options are: {_options(cls)}"
        ) from err
    for key in SIZE_OPTIONS:
        if key not in config or (key == "num_classes" and config[key] is None):
            continue
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"model {name!r}: option {key!r} must be an integer >= 1, got {value!r}"
            )


def build_model(name: str, config: dict[str, Any] | None = None) -> nn.Module:
    """Construct ``MODELS[name](**config)`` after :func:`check_config`; unknown names raise
    ``KeyError`` listing the choices, bad options ``ValueError`` naming the option."""
    check_config(name, config)
    cls = MODELS[name]
    try:
        return cls(**(config or {}))
    except TypeError as err:  # a value of the wrong type inside the constructor
        raise ValueError(
            f"model {name!r} does not accept the configuration {config!r} ({err}); "
            f"its options are: {_options(cls)}"
        ) from err


def model_name(model: nn.Module) -> str:
    """The registry name of ``model``'s class."""
    for name, cls in MODELS.items():
        if type(model) is cls:
            return name
    raise KeyError(
        f"{type(model).__name__} is not a registered model; registered: {sorted(MODELS)}"
    )
