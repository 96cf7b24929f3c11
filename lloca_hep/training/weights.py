"""Per-jet sample weights: a weight branch of the input files and class-balanced weighting.

A jet's weight is ``w_branch * f_class``: ``w_branch`` is the value of ``--weight-branch`` (1
without one) and ``f_class`` the class-balance factor of its label (1 without
``--class-balance``). The factors give every class the same total weight in the training data,
``f_c = W / (C' W_c)`` with ``W_c`` the summed branch weight of class ``c``, ``W`` their sum and
``C'`` the number of classes that have weight, so the total weight ``W`` is unchanged. They are
computed on the training jets and applied to the validation jets too, so that the validation
loss estimates the training objective.

The loss of a batch is the weighted mean ``sum_i w_i l_i / sum_i w_i``; the validation loss,
accuracy and AUCs are weighted the same way (:mod:`.metrics`, :mod:`.multiclass`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lloca_hep.errors import WeightError

from .batch import Batch

__all__ = [
    "WeightError",
    "Weighting",
    "class_balance_factors",
    "extract_weights",
    "weighted_mean",
]

#: Offending jets listed in the message about bad weights.
MAX_LISTED = 5


def extract_weights(jets: Any, branch: str, where: str, first_jet: int = 0) -> np.ndarray:
    """The weights of a chunk of jets: float32 ``(n,)`` from field ``branch`` of ``jets``.

    :class:`~lloca_hep.errors.WeightError` naming ``where`` (file and entries), the branch and
    the first offending jets (counted from ``first_jet``) when the branch is missing, is not one
    number per jet, or holds NaN/inf or negative values."""
    import awkward as ak

    fields = ak.fields(jets)
    if branch not in fields:
        raise WeightError(f"{where}: weight branch {branch!r} not found; available fields: "
                          f"{fields}")
    try:
        values = np.asarray(ak.to_numpy(jets[branch]), dtype=np.float64)
    except (ValueError, TypeError) as err:
        raise WeightError(f"{where}: weight branch {branch!r} is not one number per jet "
                          f"({err})") from err
    if values.ndim != 1:
        raise WeightError(f"{where}: weight branch {branch!r} is not one number per jet")
    bad = ~np.isfinite(values) | (values < 0)
    if np.any(bad):
        index = np.flatnonzero(bad)
        shown = ", ".join(f"jet {first_jet + int(j)}: {float(values[j])!r}"
                          for j in index[:MAX_LISTED])
        raise WeightError(
            f"{where}: weight branch {branch!r} must hold finite non-negative weights; "
            f"{index.size} jets do not ({shown}{', ...' if index.size > MAX_LISTED else ''})")
    return values.astype(np.float32)


def class_balance_factors(totals: np.ndarray) -> np.ndarray:
    """float64 ``(C,)`` factors giving every class of summed weight ``totals (C,)`` the same
    total; classes without weight get 0 (they have no jets to weight)."""
    totals = np.asarray(totals, dtype=np.float64)
    present = totals > 0
    if not present.any():
        raise WeightError("class balancing needs jets with positive weight; all weights are 0")
    factors = np.zeros_like(totals)
    factors[present] = totals.sum() / (present.sum() * totals[present])
    return factors


def weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """``sum(w * v) / sum(w)`` (the plain mean without weights; 0 when all weights are 0)."""
    if weights is None:
        return values.mean()
    total = weights.sum()
    return (values * weights).sum() / torch.where(total > 0, total, torch.ones_like(total))


@dataclass(frozen=True)
class Weighting:
    """How the jets of a run are weighted: the weight ``branch`` (or None) and the
    class-balance ``class_factors`` (one per class, or None)."""

    branch: str | None = None
    class_factors: tuple[float, ...] | None = None

    @property
    def active(self) -> bool:
        return self.branch is not None or self.class_factors is not None

    def jet_weights(self, batch: Batch, device: torch.device | None = None,
                    ) -> torch.Tensor | None:
        """float32 ``(B,)`` weights of the jets of ``batch`` (None when nothing is weighted)."""
        weights = batch.weights
        if self.class_factors is not None:
            table = torch.tensor(self.class_factors, dtype=torch.float32)
            factors = table[batch.labels.long()]
            weights = factors if weights is None else weights * factors
        if weights is None:
            return None
        return weights.to(device) if device is not None else weights

    def to_json(self) -> dict[str, Any]:
        return {"weight_branch": self.branch, "class_balance": self.class_factors is not None,
                "class_factors": None if self.class_factors is None else list(self.class_factors)}
