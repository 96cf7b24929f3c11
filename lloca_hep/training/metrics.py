"""Binary-classification metrics used in jet tagging, in plain numpy.

All functions take ``labels`` (0 = background, 1 = signal; any integer or boolean array of shape
``(n,)``) and ``scores`` (higher = more signal-like, shape ``(n,)``), and optionally per-jet
``weights`` (finite, non-negative, shape ``(n,)``): a jet of weight ``w`` then counts as ``w``
jets in every efficiency, the AUC, the accuracy and the cross entropy (integer weights give
the numbers of the data with each jet repeated ``w`` times). Jets whose score is NaN (for
example jets without constituents) must be removed by the caller; the functions raise on them
rather than guess.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

#: Probability threshold at which a jet is called signal for the accuracy.
ACCURACY_THRESHOLD = 0.5
#: Signal efficiencies at which the background rejection 1/eps_B is quoted.
REJECTION_SIGNAL_EFFICIENCIES = (0.3, 0.5)


def _check_weights(weights: np.ndarray | None, n: int) -> np.ndarray | None:
    """``weights`` as float64 ``(n,)`` (None stays None); ValueError unless finite and >= 0."""
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"weights must have shape ({n},), got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and non-negative")
    return w


def _weighted(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None,
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    labels, scores = _check(labels, scores)
    return labels, scores, _check_weights(weights, labels.size)


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim != 1 or scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(
            f"labels and scores must be 1-d arrays of equal length, got shapes "
            f"{labels.shape} and {scores.shape}"
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{int(np.sum(~np.isfinite(scores)))} scores are NaN or infinite")
    unique = np.unique(labels)
    if not np.all(np.isin(unique, (0, 1))):
        raise ValueError(f"labels must be 0 or 1, found values {unique[:10].tolist()}")
    return labels.astype(bool), scores


def roc_curve(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None,
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receiver operating characteristic.

    Returns ``(eps_b, eps_s, thresholds)``: background and signal efficiencies (false- and
    true-positive rates, weighted by ``weights``) of the cut ``score >= threshold`` for every
    distinct score, in order of decreasing threshold, starting at the point (0, 0) (threshold
    +inf). Tied scores form one point, so the curve does not depend on the order of the jets.
    """
    labels, scores, w = _weighted(labels, scores, weights)
    n_sig = int(labels.sum())
    n_bkg = labels.size - n_sig
    if n_sig == 0 or n_bkg == 0:
        raise ValueError(
            f"a ROC curve needs both classes; got {n_sig} signal and {n_bkg} background jets"
        )
    order = np.argsort(-scores, kind="stable")
    s_sorted = scores[order]
    l_sorted = labels[order]
    # last index of every run of equal scores
    distinct = np.nonzero(np.diff(s_sorted))[0]
    ends = np.concatenate([distinct, [s_sorted.size - 1]])
    if w is None:
        tp = np.cumsum(l_sorted)[ends]
        fp = (ends + 1) - tp
        w_sig, w_bkg = float(n_sig), float(n_bkg)
    else:
        w_sorted = w[order]
        tp = np.cumsum(np.where(l_sorted, w_sorted, 0.0))[ends]
        fp = np.cumsum(np.where(l_sorted, 0.0, w_sorted))[ends]
        w_sig, w_bkg = float(w[labels].sum()), float(w[~labels].sum())
        if w_sig <= 0 or w_bkg <= 0:
            raise ValueError(f"a ROC curve needs weight in both classes; got {w_sig} signal "
                             f"and {w_bkg} background weight")
    eps_s = np.concatenate([[0.0], tp / w_sig])
    eps_b = np.concatenate([[0.0], fp / w_bkg])
    thresholds = np.concatenate([[np.inf], s_sorted[ends]])
    return eps_b, eps_s, thresholds


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) * 0.5))


def roc_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Area under the (weighted) ROC curve (trapezoidal rule; ties count one half)."""
    eps_b, eps_s, _ = roc_curve(labels, scores, weights)
    return float(_trapezoid(eps_s, eps_b))


def background_rejection(
    labels: np.ndarray, scores: np.ndarray, signal_efficiency: float,
    weights: np.ndarray | None = None,
) -> float:
    """``1 / eps_B`` at the given signal efficiency, interpolating the (weighted) ROC curve
    linearly.

    Returns ``inf`` when no background survives the cut.
    """
    if not 0.0 < signal_efficiency <= 1.0:
        raise ValueError(f"signal_efficiency must be in (0, 1], got {signal_efficiency}")
    eps_b, eps_s, _ = roc_curve(labels, scores, weights)
    return _rejection_from_curve(eps_b, eps_s, signal_efficiency)


def _rejection_from_curve(eps_b: np.ndarray, eps_s: np.ndarray, target: float) -> float:
    # eps_s is non-decreasing; for repeated eps_s take the smallest eps_b reaching it
    idx = int(np.searchsorted(eps_s, target, side="left"))
    if idx == 0:
        value = float(eps_b[0])
    else:
        s0, s1 = eps_s[idx - 1], eps_s[idx]
        b0, b1 = eps_b[idx - 1], eps_b[idx]
        frac = 0.0 if s1 == s0 else (target - s0) / (s1 - s0)
        value = float(b0 + frac * (b1 - b0))
    return math.inf if value <= 0.0 else 1.0 / value


def _mean(values: np.ndarray, weights: np.ndarray | None) -> float:
    if weights is None:
        return float(np.mean(values))
    total = float(weights.sum())
    if total <= 0:
        raise ValueError("the weights sum to zero")
    return float(np.dot(values.astype(np.float64), weights) / total)


def accuracy(labels: np.ndarray, probabilities: np.ndarray,
             threshold: float = ACCURACY_THRESHOLD, weights: np.ndarray | None = None) -> float:
    """(Weighted) fraction of jets classified correctly by ``probability >= threshold``."""
    labels, probabilities, w = _weighted(labels, probabilities, weights)
    return _mean((probabilities >= threshold) == labels, w)


def binary_cross_entropy(labels: np.ndarray, probabilities: np.ndarray,
                         weights: np.ndarray | None = None) -> float:
    """(Weighted) mean binary cross entropy of probabilities (clipped away from 0 and 1 by
    float64 eps)."""
    labels, probabilities, w = _weighted(labels, probabilities, weights)
    eps = np.finfo(np.float64).eps
    p = np.clip(probabilities, eps, 1.0 - eps)
    return -_mean(np.where(labels, np.log(p), np.log1p(-p)), w)


def rejection_key(signal_efficiency: float) -> str:
    """The JSON key of the rejection at ``signal_efficiency`` (``"rejection_at_eps_s_0.3"``)."""
    return f"rejection_at_eps_s_{signal_efficiency}"


@dataclass(frozen=True)
class Metrics:
    """The numbers the field quotes for a binary tagger on a set of jets.

    ``rejection`` maps a signal efficiency eps_S to the background rejection 1/eps_B there
    (``math.inf`` when no background survives). ``n_empty`` counts jets left out for having no
    constituents; ``jets_per_second`` is the scoring speed when it was measured.
    """

    n_jets: int
    n_signal: int
    n_background: int
    accuracy: float
    auc: float
    bce: float
    rejection: Mapping[float, float] = field(default_factory=dict)
    n_empty: int = 0
    jets_per_second: float | None = None

    def rejection_at(self, signal_efficiency: float) -> float:
        """1/eps_B at ``signal_efficiency`` (one of :data:`REJECTION_SIGNAL_EFFICIENCIES`)."""
        try:
            return self.rejection[signal_efficiency]
        except KeyError:
            raise KeyError(f"no rejection at eps_S = {signal_efficiency}; computed at "
                           f"{sorted(self.rejection)}") from None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: the field names, with ``rejection`` flattened into
        ``rejection_at_eps_s_<eff>`` keys (the keys of ``metrics.json``); infinite rejections
        become the string ``"inf"`` (JSON has no infinity)."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)
                               if f.name != "rejection"}
        for eff, value in self.rejection.items():
            out[rejection_key(eff)] = "inf" if math.isinf(value) else value
        return out


def summarize(labels: np.ndarray, probabilities: np.ndarray,
              weights: np.ndarray | None = None) -> Metrics:
    """All the numbers the field quotes for a binary tagger, as :class:`Metrics`: accuracy,
    ROC AUC, BCE and the rejection 1/eps_B at :data:`REJECTION_SIGNAL_EFFICIENCIES`, weighted
    by ``weights`` when given (the jet counts stay counts)."""
    labels_b, probabilities, w = _weighted(labels, probabilities, weights)
    eps_b, eps_s, _ = roc_curve(labels_b, probabilities, w)
    return Metrics(
        n_jets=int(labels_b.size),
        n_signal=int(labels_b.sum()),
        n_background=int((~labels_b).sum()),
        accuracy=accuracy(labels_b, probabilities, weights=w),
        auc=float(_trapezoid(eps_s, eps_b)),
        bce=binary_cross_entropy(labels_b, probabilities, w),
        rejection={eff: _rejection_from_curve(eps_b, eps_s, eff)
                   for eff in REJECTION_SIGNAL_EFFICIENCIES},
    )
