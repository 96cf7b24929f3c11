"""The hand-written autograd of lloca_hep.core.autograd (issue 17): gradcheck in float64, and
full-model gradients of the fast path against the plain torch path."""

from __future__ import annotations

import pytest
import torch

import lloca_hep.core.attention as attention_mod
import lloca_hep.core.autograd as ag
import lloca_hep.core.framechoices as framechoices_mod
import lloca_hep.core.framesnet as framesnet_mod
from lloca_hep.core.framesnet import FramesNet
from lloca_hep.core.lorentz import random_lorentz
from lloca_hep.core.testing import toy_jets
from lloca_hep.models import LLoCaTransformer

B, N, S, H = 2, 3, 3, 2
SIGNS = torch.tensor([[1.0, 1, 1, 1], [1, -1, -1, -1], [1, 1, 1, 1]], dtype=torch.float64)


def _inputs(ns: int, nv: int, n2: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    d = ns + 4 * nv + 16 * n2
    t = torch.randn(B, N, S, H, d, dtype=torch.float64, generator=gen, requires_grad=True)
    # generic (non-Lorentz) well-conditioned matrices: the formulas must not rely on Lorentz
    f = torch.eye(4, dtype=torch.float64) + 0.3 * torch.randn(
        B, N, 4, 4, dtype=torch.float64, generator=gen
    )
    return t, f.requires_grad_()


REPS = [(3, 2, 0), (2, 1, 1), (0, 0, 2)]


@pytest.fixture(params=[True, False], ids=["numba", "torch"])
def kernel_path(request, monkeypatch):
    if not request.param:
        monkeypatch.setattr(ag, "_on_kernel_path", lambda *t: False)
    return request.param


@pytest.mark.parametrize("ns,nv,n2", REPS)
def test_frame_transform_gradcheck(ns, nv, n2, kernel_path):
    t, f = _inputs(ns, nv, n2)

    def fn(t, f):
        return ag.frame_transform(t, f, ns, nv, n2, SIGNS)

    assert torch.autograd.gradcheck(fn, (t, f))


@pytest.mark.parametrize("ns,nv,n2", REPS)
@pytest.mark.parametrize("given_inverse", [False, True])
def test_frame_transform_inplace_gradcheck(ns, nv, n2, given_inverse, kernel_path):
    t, f = _inputs(ns, nv, n2, seed=1)
    flat = t.detach().reshape(B, N, -1).requires_grad_()
    shape = tuple(t.shape)

    def fn(x, f):
        fresh = x * 1.0  # a fresh tensor, as a linear layer's output
        finv = torch.linalg.inv(f).detach() if given_inverse else None
        return ag.frame_transform(
            fresh, f, ns, nv, n2, SIGNS, inplace=True, shape=shape, frames_inverse=finv
        )

    assert torch.autograd.gradcheck(fn, (flat, f))


@pytest.mark.parametrize("ns,nv,n2", REPS)
def test_frame_transform_matches_reps_transform(ns, nv, n2, kernel_path):
    """Forward: vectors M_s v, rank-2 M_s T M_s^T, scalars unchanged (TensorReps spelling)."""
    from lloca_hep.core.reps import TensorReps

    t, f = _inputs(ns, nv, n2, seed=2)
    out = ag.frame_transform(t, f, ns, nv, n2, SIGNS)
    spec = "+".join(f"{m}x{r}n" for m, r in ((ns, 0), (nv, 1), (n2, 2)) if m)
    reps = TensorReps(spec)
    for s in range(S):
        m = SIGNS[s][:, None] * f
        ref = reps.transform(t[:, :, s].detach(), m[:, :, None])
        torch.testing.assert_close(out[:, :, s].detach(), ref, rtol=1e-12, atol=1e-12)


def test_softmax_weighted_sum_gradcheck():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 2, 4, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    units = torch.randn(2, 5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    coef = torch.tensor([-0.5, 0.7], dtype=torch.float64, requires_grad=True)
    log_pair = torch.randn(2, 4, 5, dtype=torch.float64, generator=gen, requires_grad=True)

    def fn(logits, units, coef, log_pair):
        return ag.softmax_weighted_sum(logits * 1.0, units, coef, log_pair)

    assert torch.autograd.gradcheck(fn, (logits, units, coef, log_pair))
    ref = torch.softmax(logits + coef[:, None, None] * log_pair[:, None], -1) @ units[:, None]
    torch.testing.assert_close(fn(logits, units, coef, log_pair), ref, rtol=1e-12, atol=1e-12)


def test_use_autograd_function_only_when_recording():
    x = torch.ones(2, requires_grad=True)
    assert ag.use_autograd_function(x)
    assert not ag.use_autograd_function(x.detach())
    with torch.no_grad():
        assert not ag.use_autograd_function(x)
    with torch.inference_mode():
        assert not ag.use_autograd_function(x)


def _grads(model, p4, mask, fast: bool, monkeypatch):
    if not fast:
        monkeypatch.setattr(attention_mod, "use_autograd_function", lambda *t: False)
        monkeypatch.setattr(framesnet_mod, "use_autograd_function", lambda *t: False)
        monkeypatch.setattr(framechoices_mod, "use_autograd_function", lambda *t: False)
    model.zero_grad()
    out = model(p4, mask)
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    monkeypatch.undo()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                          if p.grad is not None}


@pytest.mark.parametrize("head_reps", ["8x0n+2x1n", "4x0n+1x1n+1x2n"])
def test_model_gradients_fast_equal_reference(head_reps, monkeypatch):
    torch.manual_seed(0)
    model = LLoCaTransformer(hidden=24, blocks=2, heads=2, head_reps=head_reps).double()
    p4, mask = toy_jets(5, 30, min_constituents=4)
    out_fast, g_fast = _grads(model, p4, mask, True, monkeypatch)
    out_ref, g_ref = _grads(model, p4, mask, False, monkeypatch)
    torch.testing.assert_close(out_fast, out_ref, rtol=1e-12, atol=1e-12)
    assert g_fast.keys() == g_ref.keys() and "frame_choice.net.fc1.weight" in g_fast
    for name in g_ref:
        scale = g_ref[name].abs().max().clamp_min(1e-30)
        err = ((g_fast[name] - g_ref[name]).abs().max() / scale).item()
        assert err < 1e-10, (name, err)


def test_llocapart_gradients_fast_equal_reference(monkeypatch):
    from lloca_hep.models.registry import build_model

    torch.manual_seed(0)
    model = build_model(
        "llocapart",
        {"embed_dims": [16, 32], "pair_embed_dims": [8], "heads": 2, "blocks": 1, "class_blocks": 1,
         "dropout": 0.0},
    ).double()
    p4, mask = toy_jets(3, 20, min_constituents=4)
    _, g_fast = _grads(model, p4, mask, True, monkeypatch)
    _, g_ref = _grads(model, p4, mask, False, monkeypatch)
    # gradients that vanish up to round-off (a LayerNorm bias before a softmax-invariant
    # shift: ~1e-17) are compared on the scale of the largest gradient
    floor = 1e-6 * max(g.abs().max().item() for g in g_ref.values())
    for name in g_ref:
        scale = g_ref[name].abs().max().clamp_min(floor)
        assert ((g_fast[name] - g_ref[name]).abs().max() / scale).item() < 1e-10, name


@pytest.mark.parametrize("gain, chunk, trimmed", [(1.0, 2 * 41 * 44, True),
                                                (0.0, 2 * 40 * 43 * 2, False)])
def test_frames_net_trimmed_padding_equals_full_width(gain, chunk, trimmed, monkeypatch):
    """Chunks trimmed to the jets' widths give the full-width result, padded rows included;
    so do consecutive full-width chunks (trimming not worth it, MIN_TRIM_GAIN)."""
    monkeypatch.setattr(framesnet_mod, "MIN_TRIM_GAIN", gain)
    monkeypatch.setattr(framesnet_mod, "CHUNK_ELEMENTS", chunk)
    widths = []
    real = FramesNet._vectors

    def spy(self, p, *args):
        widths.append((p.shape[0], p.shape[1]))
        return real(self, p, *args)

    monkeypatch.setattr(FramesNet, "_vectors", spy)
    torch.manual_seed(0)
    net = FramesNet(num_references=3, num_scalars=2)
    p4, mask = toy_jets(7, 40, min_constituents=4)
    mask[2, 1] = False  # a hole inside a jet
    p = p4 / 100.0 * mask[..., None]
    lam = random_lorentz(7, max_rapidity=0.5, seed=1)
    jet = (p * mask[..., None]).sum(1)
    jet = jet / torch.sqrt(jet[:, 0] ** 2 - (jet[:, 1:] ** 2).sum(-1))[:, None]
    refs = torch.einsum("bij,rj->bri", lam, torch.tensor(
        [[1.0, 0, 0, 1], [1, 0, 0, -1], [1, 0, 0, 0]], dtype=torch.float64))
    scalars = torch.randn(7, 40, 2, dtype=torch.float64) * mask[..., None]
    glob = torch.randn(7, 1, dtype=torch.float64)
    out = net(p, mask, jet, refs, scalars, glob)
    seen, widths[:] = list(widths), []
    full = net._vectors(p, mask, jet, refs, scalars, glob)
    torch.testing.assert_close(out, full, rtol=1e-12, atol=1e-12)
    assert sum(b for b, _ in seen) == 7 and len(seen) > 1  # several chunks
    assert any(w < 40 for _, w in seen) == trimmed


def test_training_after_inference_mode_call():
    """Regression: the metric cache of lloca_hep.core.lorentz must not keep inference tensors."""
    import lloca_hep.core.lorentz as lorentz

    lorentz._GDIAG_CACHE.clear()
    model = LLoCaTransformer(hidden=16, blocks=1, heads=2)
    p4, mask = toy_jets(3, 20, min_constituents=4)
    model.eval()
    with torch.inference_mode():
        model(p4, mask)
    model.train()
    model(p4, mask).sum().backward()
    assert model.embed.weight.grad is not None
    assert all(not t.is_inference() for t in lorentz._GDIAG_CACHE.values())
