"""The numba fast path of the attention frame transforms against the torch expression."""

from __future__ import annotations

import pytest
import torch

from lloca_hep.core.attention import LLoCaAttention, prepare_attention_frames
from lloca_hep.core.kernels import can_use_kernels, transform_vectors_
from lloca_hep.core.lorentz import random_lorentz


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_matches_matmul_on_strided_views(dtype):
    gen = torch.Generator().manual_seed(0)
    B, N, H, D = 3, 7, 2, 13  # 1 scalar, 3 vectors per head
    base = torch.randn(B, H, N, D, generator=gen, dtype=dtype)
    t = base.transpose(1, 2)[:, :, None]  # (B, N, 1, H, D), not contiguous
    L = random_lorentz(B * N, max_rapidity=2.0, seed=1).to(dtype).view(B, N, 1, 4, 4)
    vec = t[..., 1:].unflatten(-1, (3, 4))
    expected = torch.einsum("bnsij,bnshmj->bnshmi", L, vec)
    scalars = t[..., :1].clone()
    out = transform_vectors_(t, L, start=1, num_vectors=3)
    assert out is t
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(t[..., 1:].unflatten(-1, (3, 4)), expected, rtol=tol, atol=tol)
    assert torch.equal(t[..., :1], scalars)


def test_kernel_rejects_bad_shapes():
    t = torch.zeros(2, 3, 1, 2, 8)
    with pytest.raises(ValueError, match="frames"):
        transform_vectors_(t, torch.zeros(2, 3, 4, 4), 0, 2)
    with pytest.raises(ValueError, match="outside"):
        transform_vectors_(t, torch.zeros(2, 3, 1, 4, 4), 4, 2)


def test_can_use_kernels_only_without_autograd_on_cpu():
    x = torch.zeros(2, 3)
    w = torch.zeros(2, 3, requires_grad=True)
    assert can_use_kernels(x, x)
    assert not can_use_kernels(x, w)
    with torch.no_grad():
        assert can_use_kernels(x, w)
    assert not can_use_kernels(x.half(), x.half())
    assert not can_use_kernels(x, x.double())


@pytest.mark.parametrize("reps", ["8x0n+2x1n", "2x0n+1x1n+1x2n"])
def test_attention_fast_path_equals_autograd_path(reps):
    torch.manual_seed(0)
    att = LLoCaAttention(24, heads=2, head_reps=reps)
    x = torch.randn(4, 9, 24)
    mask = torch.rand(4, 9) > 0.3
    T = random_lorentz(36, max_rapidity=1.0, seed=2).view(4, 9, 4, 4)
    frames = prepare_attention_frames(T, torch.float32)
    slow = att(x, frames, mask)  # parameters require grad: torch path
    assert slow.requires_grad
    with torch.inference_mode():
        fast = att(x, frames, mask)
    torch.testing.assert_close(fast, slow.detach(), rtol=1e-5, atol=1e-6)
