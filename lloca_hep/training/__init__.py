"""Training, evaluation and file scoring for lloca-hep taggers.

Public API::

    train(train_files, config: TrainConfig, *, output_dir, val_files=None, ...) -> TrainResult
    TrainConfig(model="transformer", epochs=20, ...)   (every training setting and its default)
    evaluate.evaluate(tagger, files, *, output_dir=None, ...) -> EvaluationResult
    evaluate_files(files, *, model=None, output_dir=None, ...) -> EvaluationResult
    Metrics, EvaluationResult   (typed results: .metrics.auc, .metrics.rejection_at(0.3), ...)
    tag_file(...)  (re-exported from :mod:`lloca_hep.inference`)

Modules: :mod:`.config` (:class:`TrainConfig`, the training settings and their defaults),
:mod:`.data` (ROOT -> padded arrays, in memory or streamed), :mod:`.loop` (``train()``: checks,
data, model, final tagger), :mod:`.epoch` (the epochs: optimizer steps, validation, early
stopping, checkpoints), :mod:`.schedule` (learning-rate schedules), :mod:`.checkpoint`
(resumable checkpoints), :mod:`.metrics` (accuracy, ROC, AUC, rejection; :class:`Metrics`),
:mod:`.plots` (ROC and score PNGs), :mod:`.evaluate` (:class:`EvaluationResult`). The
commands ``lloca-hep train``, ``evaluate`` and ``tag`` live in :mod:`lloca_hep.cli`.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["EvaluationResult", "Metrics", "TrainConfig", "TrainResult", "evaluate_files",
           "tag_file", "train"]

#: Public name -> (module, attribute), imported on first use (torch is not imported before).
_LAZY = {
    "train": (".loop", "train"),
    "TrainResult": (".loop", "TrainResult"),
    "TrainConfig": (".config", "TrainConfig"),
    "Metrics": (".metrics", "Metrics"),
    "EvaluationResult": (".evaluate", "EvaluationResult"),
    "evaluate_files": (".evaluate", "evaluate_files"),
    "tag_file": ("lloca_hep.inference", "tag_file"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), attr)
    globals()[name] = value  # later look-ups skip this function
    return value
