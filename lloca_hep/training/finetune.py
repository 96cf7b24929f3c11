"""Fine-tuning: start a training run from the weights of a tagger (``--init-from TAGGER``).

``TAGGER`` is a ``.pt`` tagger file or a shipped name (``default``: the top tagger,
``jetclass``: the ten-class tagger; :data:`lloca_hep.tagger.SHIPPED_TAGGERS`), read with the
safe loader :func:`lloca_hep.tagger.load_tagger` (no unpickling, JSON header). The new model is
the tagger's model (its registry name and configuration; options of ``--config``,
``--frames`` and ``--no-symmetry-breaking`` override it) with the number of classes and of
per-particle scalars that this run's labels and ``--features`` call for. Every parameter and
buffer whose name and shape match is copied; the others keep their fresh initialisation and
are listed in the log and in the tagger's ``metadata["init_from"]`` -- typically the last
layer of the head for other classes, and the input layers of the embedding and the frames net
for other features.

``--freeze``:

* ``none``: everything is trained;
* ``frames``: the copied parameters of the frames net (``frame_choice.*``) stay fixed;
* ``backbone``: everything stays fixed except the classifier head (:data:`HEAD_PREFIXES`) and
  the re-initialised parameters (changed shapes: new classes, new input features).

Frozen parameters are left out of the optimizer (no update, no weight decay); batch-norm
running statistics (``particlenet``) still follow the data in training mode.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lloca_hep.features import InputSpec

from .config import FREEZE_CHOICES, TrainConfig
from .labels import LabelSpec

log = logging.getLogger(__name__)

__all__ = ["HEAD_PREFIXES", "Pretrained", "TransferReport", "finetune_model", "freeze",
           "load_pretrained", "transfer"]

#: Parameter-name prefixes of the classifier head by model (default: ``head.``).
HEAD_PREFIXES: dict[str, tuple[str, ...]] = {
    "part": ("net.fc.",),
    "llocapart": ("net.fc.",),
}
DEFAULT_HEAD_PREFIXES = ("head.",)
#: Parameter-name prefix of the frames net of the LLoCa models.
FRAMES_PREFIX = "frame_choice."
#: Names listed in a log line before "... and N more".
MAX_LOGGED_NAMES = 12


@dataclass(frozen=True)
class Pretrained:
    """A tagger's model and weights: ``source`` as given (path or shipped name), registry
    ``model_name``, constructor ``config``, ``state`` (CPU tensors) and its class names."""

    source: str
    model_name: str
    config: dict[str, Any]
    state: dict[str, torch.Tensor]
    classes: tuple[str, ...]


def load_pretrained(source: str) -> Pretrained:
    """Read the tagger ``source`` (a ``.pt`` file or a shipped name) with the safe loader.

    ``FileNotFoundError`` for a missing file, :class:`~lloca_hep.tagger.TaggerFileError` for
    an invalid one, ``ValueError`` for ``.pt2`` / ``.onnx`` exports (which hold a traced graph,
    not a model to train).
    """
    from lloca_hep.tagger import EXPORTED_SUFFIX, ONNX_SUFFIX, load_tagger, shipped_name

    if shipped_name(source) is None and Path(source).suffix in (EXPORTED_SUFFIX, ONNX_SUFFIX):
        raise ValueError(f"--init-from {source}: an exported tagger ({Path(source).suffix}) "
                         "cannot be fine-tuned; pass the .pt tagger file it was exported from")
    tagger = load_tagger(source, device="cpu")
    state = {k: v.detach().clone() for k, v in tagger.model.state_dict().items()}
    return Pretrained(source, tagger.model_name, dict(tagger.config), state,
                      tuple(tagger.class_names))


def finetune_model(pretrained: Pretrained, config: TrainConfig, labels: LabelSpec,
                   features: InputSpec) -> tuple[str, dict[str, Any]]:
    """The registry name and constructor keywords of the model to fine-tune: the tagger's
    model and config, ``config``'s model options on top, and ``num_classes`` /
    ``num_scalars`` / ``num_frames_scalars`` for ``labels`` and ``features``.

    ``ValueError`` when ``config.model`` names another model than the tagger's (unless it is
    the default, which then means "the tagger's").
    """
    from lloca_hep import models
    from lloca_hep.models.registry import resolve_model_name

    name = pretrained.model_name
    default = resolve_model_name(TrainConfig().model)
    if config.model not in (name, default):
        raise ValueError(f"--model {config.model} differs from the model of --init-from "
                         f"{pretrained.source} ({name}): fine-tuning keeps the tagger's model")
    kwargs = dict(pretrained.config)
    kwargs.update(config.model_kwargs())
    accepted = inspect.signature(models.MODELS[name]).parameters
    if "num_classes" in accepted:
        kwargs["num_classes"] = labels.n_classes if labels.multiclass else None
    if "num_scalars" in accepted:
        kwargs["num_scalars"] = features.num_invariant
    if "num_frames_scalars" in accepted:
        kwargs["num_frames_scalars"] = features.num_symmetry_breaking
    return name, kwargs


@dataclass
class TransferReport:
    """What :func:`transfer` and :func:`freeze` did (names of the state dict / parameters)."""

    source: str
    model_name: str
    copied: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    freeze: str = "none"
    frozen: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The tagger's ``metadata["init_from"]``."""
        return {"tagger": self.source, "model": self.model_name, "freeze": self.freeze,
                "n_copied": len(self.copied), "reinitialised": self.reinitialised,
                "new": self.new, "unused": self.unused, "n_frozen": len(self.frozen)}


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LOGGED_NAMES])
    more = len(names) - MAX_LOGGED_NAMES
    return shown + (f" and {more} more" if more > 0 else "")


def transfer(model: nn.Module, pretrained: Pretrained) -> TransferReport:
    """Copy every entry of ``pretrained.state`` whose name and shape match into ``model``'s
    state dict (cast to the model's dtype); the rest keep their initialisation."""
    report = TransferReport(pretrained.source, pretrained.model_name)
    state = model.state_dict()
    for key, value in state.items():
        old = pretrained.state.get(key)
        if old is None:
            report.new.append(key)
        elif old.shape != value.shape:
            report.reinitialised.append(key)
        else:
            state[key] = old.to(dtype=value.dtype, device=value.device)
            report.copied.append(key)
    report.unused = [k for k in pretrained.state if k not in state]
    model.load_state_dict(state)
    log.info("--init-from %s: copied %d of %d tensors of %s", pretrained.source,
             len(report.copied), len(state), pretrained.model_name)
    if report.reinitialised:
        log.info("re-initialised (other shape): %s", _names(report.reinitialised))
    if report.new:
        log.info("initialised (not in the tagger): %s", _names(report.new))
    if report.unused:
        log.info("not used (not in the new model): %s", _names(report.unused))
    return report


def freeze(model: nn.Module, mode: str, report: TransferReport) -> list[str]:
    """Set ``requires_grad=False`` on the parameters ``mode`` (:data:`FREEZE_CHOICES`) keeps
    fixed; returns their names (also stored in ``report``). ``ValueError`` when ``mode``
    would freeze nothing or everything (no frames net; no head)."""
    if mode not in FREEZE_CHOICES:
        raise ValueError(f"freeze must be one of {FREEZE_CHOICES}, got {mode!r}")
    report.freeze = mode
    params = dict(model.named_parameters())
    copied = set(report.copied)
    if mode == "none":
        frozen: list[str] = []
    elif mode == "frames":
        frozen = [n for n in params if n.startswith(FRAMES_PREFIX) and n in copied]
        if not frozen:
            raise ValueError(f"--freeze frames: model {report.model_name} has no frames net "
                             f"parameters ({FRAMES_PREFIX}*) copied from the tagger")
    else:
        heads = HEAD_PREFIXES.get(report.model_name, DEFAULT_HEAD_PREFIXES)
        if not any(n.startswith(heads) for n in params):
            raise ValueError(f"--freeze backbone: model {report.model_name} has no classifier "
                             f"head (parameters {', '.join(p + '*' for p in heads)})")
        frozen = [n for n in params if n in copied and not n.startswith(heads)]
    for name in frozen:
        params[name].requires_grad_(False)
    report.frozen = frozen
    if frozen:
        n_frozen = sum(params[n].numel() for n in frozen)
        n_all = sum(p.numel() for p in params.values())
        log.info("--freeze %s: %d of %d parameters fixed", mode, n_frozen, n_all)
    return frozen
