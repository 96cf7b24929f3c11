"""``hypot`` and ``atan2`` with a zero gradient where they have none (at the origin).

Padded constituents are zero four-vectors and a one-constituent jet sits exactly on its own
axis, so ``hypot(0, 0)`` and ``atan2(0, 0)`` occur in every batch; their values are fine (0),
but their gradients are 0/0 = NaN and reach the input momenta (saliency maps, attributions,
gradient-based checks). These give the same values bit for bit, and a zero gradient at the
origin. Pure functions of tensors of any shape (float64 in lloca-hep's frames).

>>> import torch
>>> x = torch.zeros(2, dtype=torch.float64, requires_grad=True)
>>> safe_hypot(x, x).sum().backward(); x.grad
tensor([0., 0.], dtype=torch.float64)
"""

from __future__ import annotations

import torch

__all__ = ["safe_atan2", "safe_hypot"]


def safe_hypot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.hypot(a, b)``, with gradient 0 (instead of NaN) where ``a = b = 0``."""
    origin = (a == 0) & (b == 0)
    r = torch.hypot(torch.where(origin, torch.ones_like(a), a), b)
    return torch.where(origin, torch.zeros_like(r), r)


def safe_atan2(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``torch.atan2(y, x)``, with gradient 0 (instead of NaN) where ``x = y = 0``; the value
    there is ``atan2(0, 0) = 0`` (for ``+0``; ``torch.atan2`` gives ``+-pi`` for ``x = -0``)."""
    origin = (x == 0) & (y == 0)
    phi = torch.atan2(y, torch.where(origin, torch.ones_like(x), x))
    return torch.where(origin, torch.atan2(y, x).detach(), phi)
