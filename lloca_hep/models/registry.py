"""Model registry: rebuild any model from its name and ``.config``.

The registry knows the classes registered in this process only: lloca-hep's own models and
those added with :func:`register_model`. A tagger file stores a registry name and a JSON
configuration, never code or a module path, so loading one never imports anything.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from torch import nn

from .baselines import JetMassTagger
from .graphnet import LLoCaGraphNet
from .part import LLoCaParT, ParticleTransformer
from .particlenet import LLoCaParticleNet, ParticleNet
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
    "register_model",
    "resolve_model_name",
]

#: Registered model classes by name.
MODELS: dict[str, type[nn.Module]] = {
    "LLoCaTransformer": LLoCaTransformer,
    "LLoCaGraphNet": LLoCaGraphNet,
    "JetMassTagger": JetMassTagger,
    "plain_transformer": PlainJetTransformer,
    "part": ParticleTransformer,
    "llocapart": LLoCaParT,
    "particlenet": ParticleNet,
    "llocaparticlenet": LLoCaParticleNet,
}

#: Short names users may give for the models of :data:`MODELS` (CLI ``--model``, ``train``).
#: ``plain_transformer``, ``part``, ``llocapart``, ``particlenet`` and ``llocaparticlenet`` are
#: themselves keys of :data:`MODELS`.
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
                "frames_hidden", "frames_key_dim", "num_classes", "class_blocks", "fc_dim")


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
        model = cls(**(config or {}))
    except TypeError as err:  # a value of the wrong type inside the constructor
        raise ValueError(
            f"model {name!r} does not accept the configuration {config!r} ({err}); "
            f"its options are: {_options(cls)}"
        ) from err
    _check_model_config(name, model)
    return model


def _check_model_config(name: str, model: nn.Module) -> None:
    """ValueError unless ``model.config`` is a dict that survives a JSON round trip."""
    config = getattr(model, "config", None)
    try:
        ok = isinstance(config, dict) and json.loads(json.dumps(config)) == config
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"model {name!r}: .config must be a dict of JSON values (lists, not "
                         f"tuples) equal to its JSON round trip, got {config!r}")


def register_model(name: str, cls: type[nn.Module]) -> type[nn.Module]:
    """Register ``cls`` as ``name`` so that training, tagger files and ``build_model`` know it.

    ``cls`` must be an ``nn.Module`` subclass called as ``model(p4, mask, scalars=None)``
    (``p4`` float64 ``(B, N, 4)`` (E, px, py, pz) GeV, ``mask`` bool ``(B, N)``) returning
    logits ``(B,)`` (or ``(B, num_classes)``), with a class-level ``config`` property: the
    JSON-serialisable keyword arguments that rebuild it (``cls(**model.config)``). The models
    of the training loop also receive ``num_classes`` (multi-class labels) and
    ``num_scalars``/``num_frames_scalars`` (per-particle features) when those apply.
    ``name`` must be a new Python identifier (not a key or alias already in use); registering
    the same class under the same name again is allowed (a no-op), another class under a
    taken name or a registered class under a second name raises ``ValueError``. Returns
    ``cls``.

    The registry lives in this process: a script that loads a tagger file of a registered
    model must register it again before ``load_tagger`` (which never imports the modules a file
    names). Example: a deep-sets network from another package made Lorentz invariant with
    :class:`~lloca_hep.core.canonicalize.LorentzCanonicalized` (run as a test in
    ``tests/test_register_model.py``)::

        import torch
        from torch import nn
        from lloca_hep.core.canonicalize import LorentzCanonicalized
        from lloca_hep.core.features import NUM_LOCAL_FEATURES
        from lloca_hep.models import register_model
        from lloca_hep.training import TrainConfig, train

        class DeepSets(nn.Module):               # "from another package"
            def __init__(self, n_in, hidden):
                super().__init__()
                self.phi = nn.Sequential(nn.Linear(n_in, hidden), nn.GELU())
                self.rho = nn.Linear(hidden, 1)
            def forward(self, x, mask):
                return self.rho((self.phi(x) * mask[..., None]).sum(1))

        class LorentzDeepSets(LorentzCanonicalized):
            def __init__(self, hidden=16):
                super().__init__(DeepSets(NUM_LOCAL_FEATURES, hidden), frames="global")
                self._config = {"hidden": hidden}
            @property
            def config(self):
                return dict(self._config)
            def forward(self, p4, mask, scalars=None):
                return super().forward(p4, mask)[:, 0].float()   # logits (B,)

        register_model("lorentz_deep_sets", LorentzDeepSets)
        result = train("train.root", TrainConfig(model="lorentz_deep_sets", epochs=1),
                       output_dir="run")
        scores = result.tagger.score(jets)      # then lloca_hep.load_tagger("run/tagger.pt")
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"model name must be a Python identifier, got {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"register_model({name!r}, ...) needs an nn.Module subclass, got "
                        f"{cls!r}")
    if MODELS.get(name) is cls:
        return cls
    if name in MODELS or name in MODEL_ALIASES:
        taken = MODELS[resolve_model_name(name)].__qualname__
        raise ValueError(f"model name {name!r} is taken (by {taken}); choose another name")
    for other, registered in MODELS.items():
        if registered is cls:
            raise ValueError(f"{cls.__qualname__} is already registered as {other!r}")
    if not isinstance(inspect.getattr_static(cls, "config", None), property):
        raise TypeError(f"{cls.__qualname__} needs a `config` property returning its JSON "
                        "constructor keyword arguments (tagger files store them)")
    MODELS[name] = cls
    return cls


def model_name(model: nn.Module) -> str:
    """The registry name of ``model``'s class."""
    for name, cls in MODELS.items():
        if type(model) is cls:
            return name
    raise KeyError(
        f"{type(model).__name__} is not a registered model; registered: {sorted(MODELS)}"
    )
