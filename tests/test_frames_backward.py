"""The hand-written backward of the learned frames (lloca_hep.core.frames_backward)."""

from __future__ import annotations

import pytest
import torch

import lloca_hep.core.framechoices as framechoices_mod
from lloca_hep.core.frames import polar_frames
from lloca_hep.core.frames_backward import learned_frames
from lloca_hep.core.kernels import relative_frames_numba
from lloca_hep.core.lorentz import inverse
from lloca_hep.core.testing import assert_lorentz_equivariant, degenerate_jets, toy_jets
from lloca_hep.models import LLoCaTransformer


def _regular_vectors(B: int, N: int, seed: int) -> torch.Tensor:
    """``(B, N + 1, 3, 4)`` with time-like, future-pointing ``v0`` and generic ``v1, v2``."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(B, N + 1, 3, 4, dtype=torch.float64, generator=gen)
    v[..., 0, 0] = v[..., 0, 1:].norm(dim=-1) * 1.5 + 0.1
    return v


def _degenerate_vectors() -> torch.Tensor:
    v = _regular_vectors(3, 6, seed=1)
    v[0, 1, 1] = 0.0  # a padded row: v1 = 0 (e1 from v2, e2 from the least aligned axis)
    v[0, 2, 1:] = 0.0  # v1 = v2 = 0 (both axes fixed)
    v[1, 3, 0] = torch.tensor([0.5, 1.0, 0.0, 0.0])  # space-like v0: regularised
    v[1, 4, 0] = torch.tensor([-2.0, 0.1, 0.2, 0.3])  # past-pointing v0: regularised
    v[2, 1, 2] = v[2, 1, 1] * 2.0  # v2 parallel to v1 (e2 from v1, then an axis)
    v[2, 2, 2] = 0.0  # v2 = 0 (e2 from v1 or an axis)
    return v


def _torch_path(v: torch.Tensor):
    both = polar_frames(v[:, :, 0], v[:, :, 1], v[:, :, 2])
    frames, ref = both[:, :-1], both[:, -1]
    return frames, ref, frames @ inverse(ref)[:, None]


def test_gradcheck_regular():
    v = _regular_vectors(2, 4, seed=0).requires_grad_()
    assert torch.autograd.gradcheck(learned_frames, (v,))


@pytest.mark.parametrize("make", [lambda: _regular_vectors(4, 9, seed=2), _degenerate_vectors])
def test_values_and_gradients_equal_torch_path(make):
    v = make().requires_grad_()
    ours = learned_frames(v)
    ref = _torch_path(v)
    gen = torch.Generator().manual_seed(5)
    weights = [torch.randn(t.shape, dtype=torch.float64, generator=gen) for t in ref]
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    def loss(outs):
        return sum((t * w).sum() for t, w in zip(outs, weights, strict=True))

    g_ours = torch.autograd.grad(loss(ours), v)[0]
    g_ref = torch.autograd.grad(loss(ref), v)[0]
    scale = g_ref.abs().max()
    assert ((g_ours - g_ref).abs().max() / scale).item() < 1e-12
    assert bool(torch.isfinite(g_ours).all())


def test_forward_is_the_inference_kernel_bitwise():
    v = _degenerate_vectors()
    frames, ref, rel = learned_frames(v.clone().requires_grad_())
    with torch.no_grad():
        both = polar_frames(v[:, :, 0], v[:, :, 1], v[:, :, 2])  # the numba path
        want_rel = relative_frames_numba(both[:, :-1].contiguous(), both[:, -1].contiguous())
    assert torch.equal(frames, both[:, :-1]) and torch.equal(ref, both[:, -1])
    assert torch.equal(rel, want_rel)


def test_only_some_outputs_used():
    v = _regular_vectors(2, 3, seed=3).requires_grad_()
    frames, ref, rel = learned_frames(v)
    (g,) = torch.autograd.grad(rel.sum(), v)
    frames2, ref2, _ = _torch_path(v)
    (want,) = torch.autograd.grad((frames2 @ inverse(ref2)[:, None]).sum(), v)
    torch.testing.assert_close(g, want, rtol=1e-12, atol=1e-12)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="B, N \\+ 1, 3, 4"):
        learned_frames(torch.zeros(2, 3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="float64"):
        learned_frames(torch.zeros(2, 3, 3, 4))


def test_frame_choice_takes_it_when_training(monkeypatch):
    calls = []
    real = framechoices_mod.frames_backward.learned_frames

    def spy(v):
        calls.append(v.shape)
        return real(v)

    monkeypatch.setattr(framechoices_mod.frames_backward, "learned_frames", spy)
    torch.manual_seed(0)
    model = LLoCaTransformer(hidden=16, blocks=1, heads=2).double()
    p4, mask = toy_jets(4, 12, min_constituents=3)
    with torch.no_grad():
        want = model(p4, mask)
    assert not calls
    got = model(p4, mask)  # autograd records: the hand-written backward
    assert calls == [(4, 13, 3, 4)]
    torch.testing.assert_close(got.detach(), want, rtol=1e-12, atol=1e-12)


def test_training_path_is_lorentz_invariant():
    torch.manual_seed(1)
    model = LLoCaTransformer(hidden=16, blocks=2, heads=2, symmetry_breaking=False).double()
    p4, mask = toy_jets(6, 16, min_constituents=2)
    # the small jets with a frame (one massive constituent, two, three, duplicates, fully
    # padded); the massless and collinear ones have none, in either path
    keep = [1, 3, 4, 5, 6]
    dp, dm = degenerate_jets()
    p4 = torch.cat([p4, torch.nn.functional.pad(dp[keep], (0, 0, 0, 10))])
    mask = torch.cat([mask, torch.nn.functional.pad(dm[keep], (0, 10))])

    def logits(p, m):
        with torch.enable_grad():  # the training path (assert_lorentz_equivariant uses no_grad)
            out = model(p, m)
            assert out.requires_grad
            return out

    assert_lorentz_equivariant(logits, p4, mask, rapidity=6.0, rtol=1e-7, atol=1e-7)
