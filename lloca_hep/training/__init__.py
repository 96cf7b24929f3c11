"""Training, evaluation and file scoring for lloca-hep taggers.

Public API::

    train(train_files, *, output_dir, model="transformer", ...) -> TrainResult
    evaluate.evaluate(tagger, files, *, output_dir=None, ...) -> dict   (module lloca_hep.training.evaluate)
    evaluate_files(files, *, model=None, output_dir=None, ...) -> dict
    tag_file(input, output, model=None, *, step_size=..., overwrite=False, ...) -> dict

Modules: :mod:`.data` (ROOT -> padded arrays, in memory or streamed), :mod:`.loop` (the training
loop), :mod:`.schedule` (learning-rate schedules), :mod:`.checkpoint` (resumable checkpoints),
:mod:`.metrics` (accuracy, ROC, AUC, rejection), :mod:`.plots` (ROC and score PNGs),
:mod:`.evaluate`, :mod:`.tag` (ROOT in, friend tree out) and :mod:`.cli` (``lloca-hep train``,
``evaluate``, ``tag``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrainResult", "evaluate_files", "tag_file", "train"]

_LAZY = {
    "train": (".loop", "train"),
    "TrainResult": (".loop", "TrainResult"),
    "evaluate_files": (".evaluate", "evaluate_files"),
    "tag_file": (".tag", "tag_file"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module, __name__), attr)
    raise AttributeError(f"module 'lloca_hep.training' has no attribute {name!r}")
