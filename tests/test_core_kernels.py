"""The numba fast path of the attention frame transforms against the torch expression."""

from __future__ import annotations

import pytest
import torch

from lloca_hep.core.attention import LLoCaAttention, prepare_attention_frames
from lloca_hep.core.kernels import can_use_kernels, relative_frames_numba, transform_vectors_
from lloca_hep.core.lorentz import random_lorentz


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_matches_matmul_on_strided_views(dtype):
    gen = torch.Generator().manual_seed(0)
    B, N, H, D = 3, 7, 2, 13  # 1 scalar, 3 vectors per head
    base = torch.randn(B, H, N, D, generator=gen, dtype=dtype)
    t = base.transpose(1, 2)[:, :, None]  # (B, N, 1, H, D), not contiguous
    L = random_lorentz(B * N, max_rapidity=2.0, seed=1).to(dtype).view(B, N, 4, 4)
    vec = t[..., 1:].unflatten(-1, (3, 4))
    expected = torch.einsum("bnij,bnshmj->bnshmi", L, vec)
    scalars = t[..., :1].clone()
    out = transform_vectors_(t, L, start=1, num_vectors=3)
    assert out is t
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(t[..., 1:].unflatten(-1, (3, 4)), expected, rtol=tol, atol=tol)
    assert torch.equal(t[..., :1], scalars)


def test_kernel_rejects_bad_shapes():
    t = torch.zeros(2, 3, 1, 2, 8)
    with pytest.raises(ValueError, match="frames"):
        transform_vectors_(t, torch.zeros(2, 3, 1, 4, 4), 0, 2)
    with pytest.raises(ValueError, match="outside"):
        transform_vectors_(t, torch.zeros(2, 3, 4, 4), 4, 2)
    with pytest.raises(ValueError, match="row_signs"):
        transform_vectors_(t, torch.zeros(2, 3, 4, 4), 0, 2, torch.ones(3, 4))


def test_kernel_row_signs_lower_the_index():
    t = torch.randn(2, 3, 2, 1, 4, dtype=torch.float64)
    L = random_lorentz(6, max_rapidity=1.0, seed=2).view(2, 3, 4, 4)
    g = torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=torch.float64)
    expected = torch.einsum("bnij,bnshj->bnshi", L, t)
    expected[:, :, 1] *= g
    signs = torch.stack([torch.ones(4, dtype=torch.float64), g])
    torch.testing.assert_close(transform_vectors_(t, L, 0, 1, signs), expected)


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


def _degenerate_vectors(n: int = 600) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    v0 = torch.randn(n, 4, generator=gen, dtype=torch.float64)
    v0[:, 0] = v0[:, 1:].norm(dim=-1) * 2 * torch.rand(n, generator=gen, dtype=torch.float64)
    v1 = torch.randn(n, 4, generator=gen, dtype=torch.float64)
    v2 = torch.randn(n, 4, generator=gen, dtype=torch.float64)
    v0[:10] = 0.0  # fully padded rows
    v0[10:20] = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64)  # light-like
    v1[10:20] = v0[10:20]  # ... and v1 along it
    v1[20:40] = 0.0  # no first axis
    v2[30:50] = 3.0 * v1[30:50]  # parallel
    v2[50:60] = 0.0
    v1[60:70] = v0[60:70]  # v1 at rest after the boost
    return v0, v1, v2


def test_polar_frames_kernel_matches_torch_including_degenerate_input():
    from lloca_hep.core.frames import polar_frames
    from lloca_hep.core.lorentz import lorentz_violation

    v0, v1, v2 = _degenerate_vectors()
    with torch.no_grad():
        fast = polar_frames(v0, v1, v2)  # numba
    slow = polar_frames(v0.requires_grad_(), v1, v2).detach()  # torch (autograd)
    v0.requires_grad_(False)
    assert torch.isfinite(fast).all()
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-10)
    assert lorentz_violation(fast).max() < 1e-9
    with torch.no_grad():
        assert torch.equal(polar_frames(v0, v1, v2), fast)  # deterministic


def test_relative_frames_kernel_matches_matmul():
    from lloca_hep.core.lorentz import inverse

    frames = random_lorentz(24, max_rapidity=3.0, seed=4).view(2, 12, 4, 4)
    ref = random_lorentz(2, max_rapidity=3.0, seed=5)
    expected = frames @ inverse(ref)[:, None]
    torch.testing.assert_close(relative_frames_numba(frames, ref), expected, rtol=1e-12, atol=1e-9)


def test_rest_boost_kernel_matches_torch_including_degenerate_jets():
    from lloca_hep.core.frames import (
        ABSOLUTE_FLOOR,
        DEGENERATE_TIME_SHIFT,
        TIMELIKE_TOL,
        regularise_timelike,
    )
    from lloca_hep.core.kernels import rest_boosts_numba
    from lloca_hep.core.lorentz import minkowski, rest_boost

    v0, _, _ = _degenerate_vectors()  # zero, light-like, space-like and time-like vectors
    boost, mass = rest_boosts_numba(
        v0, timelike_tol=TIMELIKE_TOL, time_shift=DEGENERATE_TIME_SHIFT, floor=ABSOLUTE_FLOOR
    )
    reg = regularise_timelike(v0)
    torch.testing.assert_close(boost, rest_boost(reg), rtol=0, atol=1e-9)
    torch.testing.assert_close(mass, minkowski(reg, reg).sqrt(), rtol=1e-12, atol=1e-300)
    assert torch.isfinite(boost).all()
