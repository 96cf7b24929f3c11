"""Layers shared by ParT and ParticleNet: batch normalisation that ignores padding, and
ParT's particle embedding.

Both published networks normalise their inputs with batch normalisation. With padded jets the
statistics must come from the real constituents (or real pairs, real edges) only, otherwise the
amount of padding in a batch would change the result. :class:`MaskedBatchNorm` takes the mask
next to the tensor; in evaluation it is the fixed affine map of ``nn.BatchNorm1d`` (same
parameters: ``weight`` and ``bias``, buffers ``running_mean`` and ``running_var``), so a
tagger scores each jet independently of the batch and of its padding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["BN_EPS", "BN_MOMENTUM", "MaskedBatchNorm", "ParticleEmbed", "check_widths"]

#: Momentum of the running statistics (torch's ``BatchNorm1d`` default).
BN_MOMENTUM = 0.1
#: Added to the variance before the square root (torch's ``BatchNorm1d`` default).
BN_EPS = 1e-5


def check_widths(name: str, widths: Sequence[int], *, allow_empty: bool = False) -> list[int]:
    """``widths`` as a list of integers >= 1 (a JSON list in a model config); else ValueError."""
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise ValueError(f"{name} must be a list of integers >= 1, got {widths!r}")
    out = list(widths)
    if (not out and not allow_empty) or not all(
            isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in out):
        raise ValueError(f"{name} must be a {'' if allow_empty else 'non-empty '}list of "
                         f"integers >= 1, got {widths!r}")
    return out


class MaskedBatchNorm(nn.Module):
    """Batch normalisation of the last axis of ``x (..., C)`` over the entries where ``mask``
    (``x.shape[:-1]``, bool) is True.

    Training: mean and (biased) variance of the masked entries of the batch; the running
    estimates follow with momentum :data:`BN_MOMENTUM` (unbiased variance; a batch without
    real entries leaves them unchanged). Evaluation: the running estimates. Masked-out entries
    are transformed too (by the same affine map) and are the caller's to ignore.
    """

    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, num_features: int, momentum: float = BN_MOMENTUM, eps: float = BN_EPS):
        super().__init__()
        self.momentum = float(momentum)
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.training:
            dims = tuple(range(x.dim() - 1))
            w = mask[..., None].to(x.dtype)
            n = w.sum()
            mean = (x * w).sum(dims) / n.clamp_min(1.0)
            var = ((x - mean).square() * w).sum(dims) / n.clamp_min(1.0)
            with torch.no_grad():
                step = self.momentum * (n > 0).to(x.dtype)
                unbiased = var * n / (n - 1.0).clamp_min(1.0)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), step)
                self.running_var.lerp_(unbiased.detach().to(self.running_var.dtype), step)
        else:
            mean, var = self.running_mean.to(x.dtype), self.running_var.to(x.dtype)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


class ParticleEmbed(nn.Module):
    """ParT's particle embedding: :class:`MaskedBatchNorm` of the inputs, then for every width
    ``LayerNorm -> Linear -> GELU``; ``x (B, N, F)`` -> ``(B, N, widths[-1])``, padded rows
    zero."""

    def __init__(self, num_inputs: int, widths: Sequence[int]):
        super().__init__()
        self.input_norm = MaskedBatchNorm(num_inputs)
        layers: list[nn.Module] = []
        prev = num_inputs
        for w in widths:
            layers += [nn.LayerNorm(prev), nn.Linear(prev, w), nn.GELU()]
            prev = w
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.mlp(self.input_norm(x, mask))
        return h * mask[..., None].to(h.dtype)
