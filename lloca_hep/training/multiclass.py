"""Multi-class jet-tagging metrics, in plain numpy, as quoted in the ParT / JetClass papers.

Inputs throughout: ``labels`` of shape ``(n,)``, integers in ``0..C-1``; ``probabilities`` of
shape ``(n, C)``, non-negative scores per class whose rows sum to about 1 (softmax outputs;
the sum is not enforced); ``class_names``, ``C`` distinct strings naming the columns. Jets with
NaN scores (for example jets without constituents) must be removed by the caller: the
functions raise :class:`ValueError` on them, as :mod:`.metrics` does.

One class is the background, :data:`BACKGROUND_CLASS` (QCD; see :func:`background_index`).
Every other class ``X`` is a signal, scored against the background alone with the
discriminant ``s_X / (s_X + s_QCD)`` on jets of class ``X`` and QCD jets only; its background
rejection ``1/eps_B`` is quoted at the signal efficiency :func:`working_point` of ``X``.
The binary ROC, AUC and rejection are those of :mod:`.metrics`.

Example::

    >>> import numpy as np
    >>> labels = np.array([0, 0, 1, 1, 2, 2])
    >>> probabilities = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1],
    ...                           [0.3, 0.6, 0.1], [0.1, 0.2, 0.7], [0.5, 0.1, 0.4]])
    >>> m = summarize_multiclass(labels, probabilities, ["QCD", "Tbqq", "Hbb"])
    >>> round(m.accuracy, 4), m.background
    (0.8333, 'QCD')
    >>> m.confusion.tolist()
    [[2, 0, 0], [0, 2, 0], [1, 0, 1]]
    >>> m.per_class["Hbb"].auc_vs_background, m.per_class["Hbb"].rejection
    (1.0, inf)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from .metrics import background_rejection, roc_auc, roc_curve

#: Name of the background class (matched case-insensitively, see :func:`background_index`).
BACKGROUND_CLASS = "QCD"
#: Signal efficiency eps_S at which a signal class's background rejection is quoted ...
DEFAULT_WORKING_POINT = 0.5
#: ... except for these classes (JetClass convention: H -> l nu q q' and t -> b l nu).
WORKING_POINTS: Mapping[str, float] = MappingProxyType({"Hqql": 0.99, "Tbl": 0.995})
#: Value of the discriminant s_X / (s_X + s_QCD) for a jet with s_X = s_QCD = 0.
UNDEFINED_DISCRIMINANT = 0.5


def working_point(class_name: str) -> float:
    """The signal efficiency at which the background rejection of ``class_name`` is quoted:
    :data:`WORKING_POINTS` (names matched case-insensitively), else
    :data:`DEFAULT_WORKING_POINT`.

    >>> working_point("Hqql"), working_point("Tbl"), working_point("Hbb")
    (0.99, 0.995, 0.5)
    """
    folded = class_name.casefold()
    for name, eff in WORKING_POINTS.items():
        if name.casefold() == folded:
            return eff
    return DEFAULT_WORKING_POINT


def background_index(class_names: Sequence[str]) -> int:
    """Index of the first class named :data:`BACKGROUND_CLASS`, compared case-insensitively;
    ``0`` (the first class is taken as the background) when there is none.

    >>> background_index(["Hbb", "qcd", "Tbqq"]), background_index(["a", "b"])
    (1, 0)
    """
    target = BACKGROUND_CLASS.casefold()
    for i, name in enumerate(class_names):
        if name.casefold() == target:
            return i
    return 0


def normalise_confusion(confusion: np.ndarray) -> np.ndarray:
    """Row-normalised confusion matrix, float ``(C, C)``: each row of ``confusion`` (true
    class) divided by its sum; rows of classes without jets stay all zero."""
    confusion = np.asarray(confusion, dtype=np.float64)
    totals = confusion.sum(axis=1, keepdims=True)
    return np.divide(confusion, totals, out=np.zeros_like(confusion), where=totals > 0)


@dataclass(frozen=True)
class ClassMetrics:
    """The numbers of one class.

    ``auc_ovr``: AUC of ``p_c`` for this class against all others (``None`` when the class has
    no jets, or has all of them). For a signal class: ``auc_vs_background`` and ``rejection``
    (``1/eps_B``; ``math.inf`` when no background jet passes the cut) of the discriminant
    ``s_X / (s_X + s_QCD)`` at ``signal_efficiency`` (:func:`working_point`); the first two are
    ``None`` when the class or the background has no jets. All three are ``None`` for the
    background itself.
    """

    n_jets: int
    auc_ovr: float | None
    auc_vs_background: float | None = None
    rejection: float | None = None
    signal_efficiency: float | None = None


@dataclass(frozen=True, eq=False)
class MultiClassMetrics:
    """All the numbers of a multi-class tagger on a set of jets (:func:`summarize_multiclass`).

    ``confusion``: int ``(C, C)``, rows true class, columns predicted class (argmax), read-only;
    :attr:`confusion_normalised` is its row-normalised version. ``macro_auc``: mean of the
    one-vs-rest AUCs over the classes that have one (NaN when none has); ``skipped`` lists the
    classes left out of it. Compared by identity (it holds an array).
    """

    class_names: tuple[str, ...]
    accuracy: float
    macro_auc: float
    per_class: Mapping[str, ClassMetrics]
    confusion: np.ndarray
    background: str
    skipped: tuple[str, ...] = ()

    @property
    def n_jets(self) -> int:
        """Number of jets."""
        return int(self.confusion.sum())

    @property
    def confusion_normalised(self) -> np.ndarray:
        """Float ``(C, C)``: the fraction of each true class predicted as each class."""
        return normalise_confusion(self.confusion)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``json.dumps(..., allow_nan=False)`` accepts it): plain Python
        numbers and lists, infinite rejections as the string ``"inf"``, NaN as ``None``."""
        out = {
            "class_names": list(self.class_names),
            "background": self.background,
            "n_jets": self.n_jets,
            "accuracy": self.accuracy,
            "macro_auc": self.macro_auc,
            "skipped": list(self.skipped),
            "per_class": {name: vars(m) for name, m in self.per_class.items()},
            "confusion": self.confusion,
            "confusion_normalised": self.confusion_normalised,
        }
        result: dict[str, Any] = _json_safe(out)
        return result

    def table(self) -> str:
        """A text table as in the JetClass papers: one row per class with its jets, one-vs-rest
        AUC, AUC against the background, eps_S and 1/eps_B; accuracy and macro AUC above."""
        bkg = self.background
        header = ("class", "jets", "AUC (one-vs-rest)", f"AUC vs {bkg}", "eps_S", "1/eps_B")
        rows = [header]
        for name in self.class_names:
            m = self.per_class[name]
            eff = "-" if m.signal_efficiency is None else f"{100 * m.signal_efficiency:g}%"
            rows.append((name, str(m.n_jets), _fmt_auc(m.auc_ovr),
                         _fmt_auc(m.auc_vs_background), eff, _fmt_rejection(m.rejection)))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = [
            f"accuracy   {self.accuracy:.4f}  ({self.n_jets} jets, {len(self.class_names)} "
            f"classes, background {bkg})",
            f"macro AUC  {_fmt_auc(self.macro_auc)}  (one-vs-rest"
            + (f"; skipped: {', '.join(self.skipped)})" if self.skipped else ")"),
        ]
        for k, row in enumerate(rows):
            cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:],
                                                                              strict=True)]
            lines.append("  ".join(cells).rstrip())
            if k == 0:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)


def _fmt_auc(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


def _fmt_rejection(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


def _validate(labels: np.ndarray, probabilities: np.ndarray,
              class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Checked ``(labels int64 (n,), probabilities float64 (n, C), names)``."""
    if isinstance(class_names, str):
        raise TypeError("class_names must be a sequence of class names, not one string")
    names = tuple(class_names)
    if len(names) < 2:
        raise ValueError(f"multi-class metrics need at least 2 classes, got {len(names)}")
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be distinct, got {list(names)}")
    labels = np.asarray(labels)
    probs = np.asarray(probabilities, dtype=np.float64)
    if labels.ndim != 1 or probs.ndim != 2 or probs.shape != (labels.size, len(names)):
        raise ValueError(
            f"expected labels (n,) and probabilities (n, {len(names)}) for {len(names)} class "
            f"names, got shapes {labels.shape} and {probs.shape}"
        )
    if labels.size == 0:
        raise ValueError("no jets")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    bad = (labels < 0) | (labels >= len(names))
    if np.any(bad):
        raise ValueError(f"labels must be in 0..{len(names) - 1}, found values "
                         f"{np.unique(labels[bad])[:10].tolist()}")
    finite = np.isfinite(probs)
    if not np.all(finite):
        n_bad = int(np.sum(~np.all(finite, axis=1)))
        raise ValueError(f"{n_bad} jets have NaN or infinite scores; remove them first")
    if np.any(probs < 0):
        raise ValueError("probabilities must be non-negative (softmax outputs, not logits)")
    return labels.astype(np.int64), probs, names


def _versus_background(labels: np.ndarray, probs: np.ndarray, signal: int,
                       background: int) -> tuple[np.ndarray, np.ndarray]:
    """``(is_signal, s_X / (s_X + s_B))`` on the jets of class ``signal`` or ``background``
    (:data:`UNDEFINED_DISCRIMINANT` where both scores are zero)."""
    keep = _pair(labels, signal, background)
    s_x = probs[keep, signal]
    total = s_x + probs[keep, background]
    disc = np.divide(s_x, total, out=np.full_like(s_x, UNDEFINED_DISCRIMINANT), where=total > 0)
    return labels[keep] == signal, disc


def _pair(labels: np.ndarray, signal: int, background: int) -> np.ndarray:
    return (labels == signal) | (labels == background)


def _check_weights(weights: np.ndarray | None, n: int) -> np.ndarray | None:
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights must be finite and non-negative with shape ({n},), got "
                         f"shape {w.shape}")
    if not w.sum() > 0:
        raise ValueError("the weights sum to zero")
    return w


def summarize_multiclass(labels: np.ndarray, probabilities: np.ndarray,
                         class_names: Sequence[str],
                         weights: np.ndarray | None = None) -> MultiClassMetrics:
    """Accuracy, macro one-vs-rest AUC, confusion matrix and per-class numbers.

    ``labels`` int ``(n,)`` in ``0..C-1``, ``probabilities`` float ``(n, C)``, ``class_names``
    ``C`` distinct names; optional per-jet ``weights (n,)`` (finite, non-negative) weight the
    accuracy, the AUCs and the rejections (a jet of weight ``w`` counts as ``w`` jets; the
    confusion matrix and ``n_jets`` stay counts). Raises :class:`ValueError` on non-finite or
    negative scores or weights, shape mismatches, labels outside ``0..C-1``, non-integer
    labels, no jets or ``C < 2``.

    - ``accuracy``: fraction of jets whose argmax is their label (ties: the first class).
    - ``per_class[c].auc_ovr``: AUC of ``p_c`` for class ``c`` against all other jets, for every
      class with jets both in and out of it; ``macro_auc`` is their mean, the other classes are
      listed in ``skipped``.
    - for every signal class ``X`` (all but the background, :func:`background_index`): the AUC
      of ``s_X / (s_X + s_QCD)`` on jets of class ``X`` against QCD jets only, and the
      rejection 1/eps_B at eps_S = :func:`working_point` ``(X)`` (``inf`` when no background
      jet passes the cut).

    >>> import numpy as np
    >>> m = summarize_multiclass(np.array([0, 1, 1]),
    ...                          np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]]), ["QCD", "Tbqq"])
    >>> round(m.accuracy, 4), m.per_class["Tbqq"].auc_ovr, m.per_class["QCD"].rejection
    (0.6667, 1.0, None)
    """
    labels, probs, names = _validate(labels, probabilities, class_names)
    w = _check_weights(weights, labels.size)
    n_classes = len(names)
    bkg = background_index(names)
    predicted = np.argmax(probs, axis=1)
    confusion = np.bincount(labels * n_classes + predicted,
                            minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    confusion.setflags(write=False)
    counts = confusion.sum(axis=1)
    # with weights a class is present when it has weight
    weight = counts if w is None else np.bincount(labels, weights=w, minlength=n_classes)
    total = weight.sum()
    has_bkg = weight[bkg] > 0

    per_class: dict[str, ClassMetrics] = {}
    skipped: list[str] = []
    for c, name in enumerate(names):
        n_c = int(counts[c])
        if 0 < weight[c] < total:
            auc_ovr: float | None = roc_auc(labels == c, probs[:, c], w)
        else:
            auc_ovr = None
            skipped.append(name)
        if c == bkg:
            per_class[name] = ClassMetrics(n_jets=n_c, auc_ovr=auc_ovr)
            continue
        eff = working_point(name)
        auc_bkg = rejection = None
        if weight[c] > 0 and has_bkg:
            is_sig, disc = _versus_background(labels, probs, c, bkg)
            w_pair = None if w is None else w[_pair(labels, c, bkg)]
            auc_bkg = roc_auc(is_sig, disc, w_pair)
            rejection = background_rejection(is_sig, disc, eff, w_pair)
        per_class[name] = ClassMetrics(n_jets=n_c, auc_ovr=auc_ovr, auc_vs_background=auc_bkg,
                                       rejection=rejection, signal_efficiency=eff)

    aucs = [m.auc_ovr for m in per_class.values() if m.auc_ovr is not None]
    return MultiClassMetrics(
        class_names=names,
        accuracy=(float(np.mean(predicted == labels)) if w is None
                  else float(np.dot(predicted == labels, w) / w.sum())),
        macro_auc=float(np.mean(aucs)) if aucs else math.nan,
        per_class=MappingProxyType(per_class),
        confusion=confusion,
        background=names[bkg],
        skipped=tuple(skipped),
    )


def roc_curves_vs_background(labels: np.ndarray, probabilities: np.ndarray,
                             class_names: Sequence[str]
                             ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per signal class ``X``: ``(eps_b, eps_s)``, the ROC curve (:func:`.metrics.roc_curve`)
    of ``s_X / (s_X + s_QCD)`` on jets of class ``X`` against QCD jets, for
    :func:`.plots.plot_multiclass_roc`. Classes without jets (and every class when there are no
    background jets) are left out. Same inputs and errors as :func:`summarize_multiclass`."""
    labels, probs, names = _validate(labels, probabilities, class_names)
    bkg = background_index(names)
    counts = np.bincount(labels, minlength=len(names))
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if counts[bkg] == 0:
        return curves
    for c, name in enumerate(names):
        if c == bkg or counts[c] == 0:
            continue
        eps_b, eps_s, _ = roc_curve(*_versus_background(labels, probs, c, bkg))
        curves[name] = (eps_b, eps_s)
    return curves
