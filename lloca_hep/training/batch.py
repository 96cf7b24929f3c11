"""One training batch (:class:`Batch`) and how it is made from padded numpy arrays.

Every route that feeds the network (in-memory data, streamed data, validation) ends in
:func:`assemble`: padded parts are concatenated, padding columns that no jet of the batch uses are
trimmed, and the arrays become torch tensors (pinned for an asynchronous copy to a CUDA device
when asked).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["Batch", "Part", "assemble", "trim"]


class Batch(NamedTuple):
    """One batch: ``p4`` float64 ``(B, N, 4)`` (E, px, py, pz) GeV, ``mask`` bool ``(B, N)``,
    ``labels`` (float32 0/1 for C = 2, int64 class indices for C > 2) ``(B,)``, ``scalars``
    float32 ``(B, N, S)`` (None without features) and ``weights`` float32 ``(B,)``, the per-jet
    sample weights read from the weight branch (None without one)."""

    p4: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor
    scalars: torch.Tensor | None = None
    weights: torch.Tensor | None = None

    def pin_memory(self) -> Batch:
        """The batch in page-locked memory (for ``.to(cuda, non_blocking=True)``)."""
        def pin(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.pin_memory()

        return Batch(self.p4.pin_memory(), self.mask.pin_memory(), self.labels.pin_memory(),
                     pin(self.scalars), pin(self.weights))


class Part(NamedTuple):
    """Padded numpy arrays of some jets (the fields of :class:`Batch`, as numpy)."""

    p4: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    scalars: np.ndarray | None = None
    weights: np.ndarray | None = None

    @property
    def n_jets(self) -> int:
        return int(self.labels.shape[0])

    def take(self, index: np.ndarray | slice) -> Part:
        """The jets at ``index`` (a copy for an index array, views for a slice)."""
        return Part(self.p4[index], self.mask[index], self.labels[index],
                    None if self.scalars is None else self.scalars[index],
                    None if self.weights is None else self.weights[index])

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self if a is not None))

    @staticmethod
    def concatenate(parts: Sequence[Part]) -> Part:
        """The jets of ``parts``, in order, in one :class:`Part`."""
        def cat(arrays: list[np.ndarray | None]) -> np.ndarray | None:
            return None if arrays[0] is None else np.concatenate(arrays)  # type: ignore[arg-type]

        first = cat([p.p4 for p in parts])
        mask = cat([p.mask for p in parts])
        labels = cat([p.labels for p in parts])
        assert first is not None and mask is not None and labels is not None
        return Part(first, mask, labels, cat([p.scalars for p in parts]),
                    cat([p.weights for p in parts]))


def trim(p4: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop padding columns that no jet of the batch uses (at least one column is kept)."""
    width = max(int(mask.sum(dim=1).max()), 1) if mask.numel() else 1
    return p4[:, :width], mask[:, :width]


def _width(parts: Sequence[Part]) -> int:
    widths = [int(p.mask.sum(axis=1).max()) for p in parts if p.n_jets]
    return max(max(widths, default=1), 1)


def assemble(parts: Sequence[Part], *, pin_memory: bool = False) -> Batch:
    """The :class:`Batch` of the jets of ``parts`` (in order), trimmed to the widest jet."""
    width = _width(parts)

    def cat(arrays: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(arrays[0] if len(arrays) == 1 else np.concatenate(arrays))

    scalars = weights = None
    if parts[0].scalars is not None:
        scalars = cat([p.scalars[:, :width] for p in parts])  # type: ignore[index]
    if parts[0].weights is not None:
        weights = cat([p.weights for p in parts])  # type: ignore[misc]
    batch = Batch(cat([p.p4[:, :width] for p in parts]), cat([p.mask[:, :width] for p in parts]),
                  cat([p.labels for p in parts]), scalars, weights)
    return batch.pin_memory() if pin_memory else batch
