"""Gradients with respect to the input momenta are finite for every model (saliency maps,
attributions, gradient-based checks), also for padded slots and one-constituent jets, where
``hypot(0, 0)`` and ``atan2(0, 0)`` occur (lloca_hep/core/safe.py)."""

from __future__ import annotations

import pytest
import torch

from lloca_hep.core.safe import safe_atan2, safe_hypot
from lloca_hep.models import build_model

SMALL_PART = {"embed_dims": [16, 32, 16], "pair_embed_dims": [8, 8, 8], "heads": 1, "blocks": 1,
              "class_blocks": 1}
SMALL_PN = {"neighbours": 3, "edge_dims": [[8, 8, 8]], "fc_dim": 8}
MODELS = [
    ("LLoCaTransformer", {"hidden": 16, "blocks": 1, "heads": 2, "frames_hidden": 16}),
    ("LLoCaGraphNet", {}),
    ("plain_transformer", {"hidden": 16, "blocks": 1, "heads": 2}),
    ("part", SMALL_PART),
    ("llocapart", SMALL_PART),
    ("particlenet", SMALL_PN),
    ("llocaparticlenet", SMALL_PN),
]


def _jets(real: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two boosted jets of 6 slots, the first ``real`` filled, the rest zero padding."""
    g = torch.Generator().manual_seed(3)
    p3 = torch.randn(2, 6, 3, dtype=torch.float64, generator=g)
    p3[..., 0] += 50.0
    p4 = torch.cat([p3.norm(dim=-1, keepdim=True) + 0.3, p3], dim=-1)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[:, :real] = True
    return torch.where(mask[..., None], p4, torch.zeros_like(p4)), mask


@pytest.mark.parametrize(("name", "config"), MODELS, ids=[m for m, _ in MODELS])
@pytest.mark.parametrize("real", [1, 2, 4])
def test_momentum_gradients_are_finite(name: str, config: dict, real: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, config).double()
    p4, mask = _jets(real)
    p4.requires_grad_(True)
    model(p4, mask).sum().backward()
    assert p4.grad is not None
    assert torch.isfinite(p4.grad).all()
    assert p4.grad[mask].abs().sum() > 0  # the real constituents do get a gradient


def test_safe_functions_keep_the_values_and_zero_the_gradient_at_the_origin() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.randn(1000, dtype=torch.float64, generator=g)
    b = torch.randn(1000, dtype=torch.float64, generator=g)
    a[:10] = 0.0
    b[:10] = 0.0
    b[10:20] = 0.0
    assert torch.equal(safe_hypot(a, b), torch.hypot(a, b))
    assert torch.equal(safe_atan2(b, a), torch.atan2(b, a))
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    y = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    (safe_hypot(x, y) + safe_atan2(y, x)).sum().backward()
    assert x.grad is not None and y.grad is not None
    assert torch.equal(x.grad, torch.zeros(3, dtype=torch.float64))
    assert torch.equal(y.grad, torch.zeros(3, dtype=torch.float64))
    # away from the origin the gradients are torch's
    u = a[20:].clone().requires_grad_(True)
    v = b[20:].clone().requires_grad_(True)
    (safe_hypot(u, v) + safe_atan2(v, u)).sum().backward()
    u2 = a[20:].clone().requires_grad_(True)
    v2 = b[20:].clone().requires_grad_(True)
    (torch.hypot(u2, v2) + torch.atan2(v2, u2)).sum().backward()
    assert torch.equal(u.grad, u2.grad) and torch.equal(v.grad, v2.grad)
