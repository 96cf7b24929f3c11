"""Evaluate a tagger on labelled ROOT files: the numbers, a ROC curve and score histograms.

Binary taggers: accuracy, ROC AUC, 1/eps_B at eps_S = 0.3 and 0.5, ``roc.png``,
``scores.png``. Multi-class taggers (:mod:`lloca_hep.training.multiclass`): accuracy, macro
one-vs-rest AUC, per class the AUC and 1/eps_B against QCD of s_X / (s_X + s_QCD),
``confusion.png`` and ``roc.png`` (one curve per class); labels are read as the tagger's
classes (one-hot ``label_*`` branches, or an integer ``label_branch``).
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from lloca_hep.errors import LabelError
from lloca_hep.tagger import EmptyJetWarning, NonFiniteScoreWarning, Tagger, load_tagger

from .._files import atomic_output, check_output_dir, output_directory
from . import metrics
from .config import DEFAULT_LABEL_BRANCH, DEFAULT_STEP_SIZE
from .data import _as_paths, _chunk_where, binary_labels, describe_class
from .labels import BINARY_CLASSES, LabelSpec, extract_labels, file_labels
from .multiclass import MultiClassMetrics, roc_curves_vs_background, summarize_multiclass

log = logging.getLogger(__name__)

METRICS_NAME = "metrics.json"
ROC_NAME = "roc.png"
SCORES_NAME = "scores.png"
CONFUSION_NAME = "confusion.png"


@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate`, :func:`report` and :func:`lloca_hep.demo.run_demo` return.

    ``files`` maps ``"metrics"``, ``"roc"``, ``"scores"`` (and ``"scored"`` for the demo) to the
    paths written (empty without an output directory). ``tag_jets_per_second`` is the end-to-end
    speed of ``tag_file`` when the scores came from it (the demo).
    """

    metrics: metrics.Metrics | MultiClassMetrics
    model: str = "tagger"
    inputs: tuple[str, ...] = ()
    files: Mapping[str, str] = field(default_factory=dict)
    tag_jets_per_second: float | None = None
    #: further numbers for ``metrics.json`` (multi-class: ``n_empty``, ``jets_per_second``)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def multiclass(self) -> bool:
        """True for a multi-class evaluation (``metrics`` is a :class:`MultiClassMetrics`)."""
        return isinstance(self.metrics, MultiClassMetrics)

    def to_json(self) -> dict[str, Any]:
        """The content of ``metrics.json``: :meth:`Metrics.to_json` (or
        :meth:`MultiClassMetrics.to_json`) plus ``model``, ``inputs``, ``files`` (and
        ``tag_jets_per_second`` when set)."""
        out = {**self.metrics.to_json(), **self.extra, "model": self.model,
               "inputs": list(self.inputs), "files": dict(self.files)}
        if self.tag_jets_per_second is not None:
            out["tag_jets_per_second"] = self.tag_jets_per_second
        return out


def score_labelled(
    tagger: Tagger,
    files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    label_branch: str = DEFAULT_LABEL_BRANCH,
    step_size: str | int = DEFAULT_STEP_SIZE,
    max_jets: int | None = None,
    progress: bool = True,
    tree: str | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Score every jet of ``files``: ``(labels int64 (n,), scores float32 (n,) or (n, C),
    seconds)``; labels index :attr:`Tagger.class_names` (see :func:`labels_for`).

    ``seconds`` is the time spent in :meth:`Tagger.score` (preprocessing + network).
    """
    from tqdm.auto import tqdm

    from lloca_hep.io import iterate_jets

    paths = _as_paths(files)
    spec = labels_for(tagger, paths[0], label_branch, tree)
    all_labels: list[np.ndarray] = []
    all_scores: list[np.ndarray] = []
    seconds = 0.0
    n = 0
    with tqdm(desc="scoring", unit=" jets", disable=not progress, leave=False) as bar:
        for chunk in iterate_jets(paths, step_size=step_size, jet_fields=list(spec.branches),
                                  tree=tree,
                                  features=tagger.inputs if len(tagger.inputs) else None):
            jets = chunk.jets
            if max_jets is not None:
                jets = jets[: max(max_jets - n, 0)]
            if len(jets) == 0:
                if max_jets is not None and n >= max_jets:
                    break
                continue
            labels = extract_labels(jets, spec, _chunk_where(chunk), chunk.entry_start)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", EmptyJetWarning)
                warnings.simplefilter("ignore", NonFiniteScoreWarning)
                scores = tagger.score(jets)
            seconds += time.perf_counter() - t0
            all_labels.append(labels.astype(np.int64))
            all_scores.append(scores)
            n += len(jets)
            bar.update(len(jets))
    if n == 0:
        raise ValueError(f"no jets found in {paths}")
    return np.concatenate(all_labels), np.concatenate(all_scores), seconds


def labels_for(tagger: Tagger, first: str, label_branch: str, tree: str | None) -> LabelSpec:
    """How to read the labels of ``first`` for ``tagger``: the 0/1 ``label_branch`` for a
    binary tagger without class names of its own; otherwise the tagger's classes, from one-hot
    ``label_*`` branches or the integer ``label_branch`` (LabelError when they do not match)."""
    if tagger.class_names == BINARY_CLASSES:
        return binary_labels(label_branch)
    return file_labels(first, tree, label_branch, tagger.class_names, DEFAULT_LABEL_BRANCH)


def evaluate(
    tagger: Tagger,
    files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    output_dir: str | os.PathLike[str] | None = None,
    label_branch: str = DEFAULT_LABEL_BRANCH,
    step_size: str | int = DEFAULT_STEP_SIZE,
    max_jets: int | None = None,
    label: str | None = None,
    progress: bool = True,
    tree: str | None = None,
) -> EvaluationResult:
    """Accuracy, ROC AUC and background rejection 1/eps_B at eps_S = 0.3 and 0.5 of ``tagger``.

    Jets without constituents (NaN score) are left out and counted in ``n_empty``. With
    ``output_dir`` also writes ``metrics.json``, ``roc.png`` and ``scores.png`` there and adds
    their paths in ``files``. Also reports ``jets_per_second`` of :meth:`Tagger.score`.
    Files whose jets all have the same label are refused (:class:`LabelError`): the ROC curve
    and AUC need signal and background jets.
    """
    if output_dir is not None:
        check_output_dir(output_dir)
    labels, scores, seconds = score_labelled(tagger, files, label_branch=label_branch,
                                             step_size=step_size, max_jets=max_jets,
                                             progress=progress, tree=tree)
    classes = np.unique(labels)
    if classes.size < 2:
        what = (f"label branch {label_branch!r}" if tagger.class_names == BINARY_CLASSES
                else "the labels")
        raise LabelError(
            f"{', '.join(_as_paths(files))}: {what} hold only class "
            f"{describe_class(int(classes[0]), tagger.class_names)} in all {labels.size} jets; "
            "the ROC curve, AUC and background rejection need jets of at least two classes"
        )
    speed = float(labels.size / seconds) if seconds > 0 else None
    if tagger.is_multiclass:
        return report_multiclass(labels, scores, tagger.class_names, output_dir=output_dir,
                                 model=tagger.model_name, inputs=_as_paths(files),
                                 jets_per_second=speed)
    return report(labels, scores, output_dir=output_dir, label=label or tagger.model_name,
                  model=tagger.model_name, inputs=_as_paths(files), jets_per_second=speed)


def report_multiclass(
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    *,
    output_dir: str | os.PathLike[str] | None = None,
    model: str = "tagger",
    inputs: Sequence[str | os.PathLike[str]] = (),
    jets_per_second: float | None = None,
    tag_jets_per_second: float | None = None,
) -> EvaluationResult:
    """:func:`~lloca_hep.training.multiclass.summarize_multiclass` of ``labels (n,)`` and
    ``probabilities (n, C)`` as an :class:`EvaluationResult`. Jets with NaN scores (no
    constituents) are left out. With ``output_dir`` also writes ``metrics.json``,
    ``confusion.png`` and ``roc.png`` (1/eps_B against QCD per class)."""
    valid = np.isfinite(probabilities).all(axis=1)
    n_empty = int((~valid).sum())
    if n_empty:
        log.warning("%d jets without constituents have no score and are left out", n_empty)
    lab, prob = labels[valid], probabilities[valid]
    numbers = summarize_multiclass(lab, prob, class_names)
    result = EvaluationResult(numbers, model=model, inputs=tuple(os.fspath(f) for f in inputs),
                              tag_jets_per_second=tag_jets_per_second)
    extra = {"n_empty": n_empty, "jets_per_second": jets_per_second}
    if output_dir is None:
        return replace(result, extra=extra)
    from .plots import plot_confusion_matrix, plot_multiclass_roc

    with output_directory(output_dir) as out:
        confusion = plot_confusion_matrix(numbers.confusion, list(class_names),
                                          out / CONFUSION_NAME)
        curves = roc_curves_vs_background(lab, prob, class_names)
        aucs = {k: v.auc_vs_background for k, v in numbers.per_class.items()
                if v.auc_vs_background is not None}
        files = {"confusion": str(confusion), "metrics": str(out / METRICS_NAME)}
        if curves:
            files["roc"] = str(plot_multiclass_roc(curves, out / ROC_NAME, aucs=aucs))
        result = replace(result, files=files, extra=extra)
        with atomic_output(out / METRICS_NAME) as tmp:
            tmp.write_text(json.dumps(result.to_json(), indent=1, sort_keys=True))
    return result


def report(
    labels: np.ndarray,
    scores: np.ndarray,
    *,
    output_dir: str | os.PathLike[str] | None = None,
    label: str = "tagger",
    model: str = "tagger",
    inputs: Sequence[str | os.PathLike[str]] = (),
    jets_per_second: float | None = None,
    tag_jets_per_second: float | None = None,
) -> EvaluationResult:
    """:func:`metrics.summarize` of ``labels (n,)`` and ``scores (n,)`` as an
    :class:`EvaluationResult` (``model``, ``inputs`` and the speeds are recorded in it).

    Jets with a NaN score (no constituents) are left out and counted in ``n_empty``. With
    ``output_dir`` also writes ``metrics.json``, ``roc.png`` and ``scores.png`` there (``label``
    names the curve) and lists their paths in ``files``.
    """
    valid = np.isfinite(scores)
    n_empty = int((~valid).sum())
    if n_empty:
        log.warning("%d jets without constituents have no score and are left out", n_empty)
    numbers = replace(metrics.summarize(labels[valid], scores[valid]), n_empty=n_empty,
                      jets_per_second=jets_per_second)
    result = EvaluationResult(numbers, model=model, inputs=tuple(os.fspath(f) for f in inputs),
                              tag_jets_per_second=tag_jets_per_second)
    if output_dir is None:
        return result
    from .plots import plot_roc, plot_score_histograms

    with output_directory(output_dir) as out:  # removed again if it stays empty on failure
        eps_b, eps_s, _ = metrics.roc_curve(labels[valid], scores[valid])
        roc = plot_roc(eps_b, eps_s, out / ROC_NAME, label=label, auc=numbers.auc)
        hists = plot_score_histograms(labels[valid], scores[valid], out / SCORES_NAME)
        result = replace(result, files={"roc": str(roc), "scores": str(hists),
                                        "metrics": str(out / METRICS_NAME)})
        with atomic_output(out / METRICS_NAME) as tmp:
            tmp.write_text(json.dumps(result.to_json(), indent=1, sort_keys=True))
    return result


def evaluate_files(
    files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    model: str | os.PathLike[str] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    label_branch: str = DEFAULT_LABEL_BRANCH,
    step_size: str | int = DEFAULT_STEP_SIZE,
    max_jets: int | None = None,
    progress: bool = True,
    tree: str | None = None,
) -> EvaluationResult:
    """:func:`evaluate` of the tagger file ``model`` (None: the shipped tagger) on ``files``."""
    if output_dir is not None:
        check_output_dir(output_dir)  # before the tagger is loaded
    tagger = load_tagger(model, device=device)
    return evaluate(tagger, files, output_dir=output_dir, label_branch=label_branch,
                    step_size=step_size, max_jets=max_jets, progress=progress, tree=tree)
