"""The chunked pair embedding of ParT / LLoCa-ParT: the same function as the all-pairs reference
(float64: outputs, gradients of every parameter and of the input momenta, running statistics), in
training and evaluation, and no tensor of the size of a hidden pair activation for all pairs."""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from lloca_hep.core.testing import toy_jets
from lloca_hep.models import LLoCaParT, ParticleTransformer, _part_layers
from lloca_hep.models._part_layers import NUM_PAIR_FEATURES, PairEmbed

NUM_JETS = 6
NUM_CONSTITUENTS = 24
#: Pair-embedding widths wider than the features and the heads, so that a hidden pair activation
#: for all pairs would be the largest tensor of the step.
PAIR_WIDTHS = [24, 16]
SMALL = dict(embed_dims=[16, 16], pair_embed_dims=PAIR_WIDTHS, heads=2, blocks=1, class_blocks=1,
             dropout=0.0)
SMALL_LLOCA = dict(SMALL, head_reps="4x0n+1x1n", frames_hidden=8)
#: Pairs per chunk in the chunked runs: several chunks, the last one ragged.
SMALL_CHUNK = 173
#: Tolerances of chunked against all-pairs, float64.
OUT_TOL = dict(rtol=1e-10, atol=1e-12)
GRAD_RTOL = 1e-6
CLASSES = [ParticleTransformer, LLoCaParT]


def _model(cls, seed=0):
    torch.manual_seed(seed)
    return cls(**(SMALL_LLOCA if cls is LLoCaParT else SMALL)).double()


def _run(model, p, mask, reference, monkeypatch):
    """Logits, gradients (parameters and momenta) and buffers after one loss.backward()."""
    with monkeypatch.context() as mp:
        if reference:
            mp.setattr(PairEmbed, "forward", PairEmbed.reference)
        else:
            mp.setattr(_part_layers, "PAIR_CHUNK_PAIRS", SMALL_CHUNK)
        p = p.clone().requires_grad_(True)
        out = model(p, mask)
        (out.square().sum() + out.sum()).backward()
    grads = {k: v.grad.clone() for k, v in model.named_parameters() if v.grad is not None}
    grads["p4"] = p.grad[mask]  # padded slots: not inputs (NaN through the frames of LLoCa)
    model.zero_grad()
    return out.detach(), grads, {k: b.clone() for k, b in model.named_buffers()}


def _assert_same(got, want, finite_p4=True):
    (out, grads, bufs), (out0, grads0, bufs0) = got, want
    torch.testing.assert_close(out, out0, **OUT_TOL)
    assert grads.keys() == grads0.keys()
    assert torch.isfinite(grads0["p4"]).all() or not finite_p4
    for k, g0 in grads0.items():
        scale = g0.nan_to_num().abs().max().item()
        torch.testing.assert_close(grads[k], g0, rtol=GRAD_RTOL, atol=GRAD_RTOL * scale + 1e-14,
                                   equal_nan=not finite_p4,
                                   msg=lambda m, k=k: f"gradient of {k}: {m}")
    for k, b0 in bufs0.items():
        torch.testing.assert_close(bufs[k], b0, **OUT_TOL, msg=lambda m, k=k: f"{k}: {m}")


@pytest.fixture(scope="module")
def jets():
    return toy_jets(NUM_JETS, NUM_CONSTITUENTS, min_constituents=5, seed=21)


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("training", [True, False])
def test_chunked_equals_all_pairs(jets, cls, training, monkeypatch):
    """Chunked (several chunks of features and of pairs) = all pairs at once, in float64: logits,
    gradients of all parameters and of the momenta (through the pair features and, for
    LLoCa-ParT, the learned frames), and the running statistics after the step."""
    p, mask = jets
    assert not mask.all()  # padded jets: the statistics must skip padded pairs
    want = _run(_model(cls).train(training), p, mask, True, monkeypatch)
    got = _run(_model(cls).train(training), p, mask, False, monkeypatch)
    _assert_same(got, want)
    if not training:  # evaluation without autograd: per chunk of rows straight into the bias
        model = _model(cls).eval()
        with torch.no_grad():
            with monkeypatch.context() as mp:
                mp.setattr(_part_layers, "PAIR_CHUNK_PAIRS", SMALL_CHUNK)
                chunked = model(p, mask)
            monkeypatch.setattr(PairEmbed, "forward", PairEmbed.reference)
            torch.testing.assert_close(chunked, model(p, mask), **OUT_TOL)
    if training:  # the statistics were really updated
        pe = _model(cls).net.pair_embed
        assert not torch.allclose(got[2]["net.pair_embed.norms.0.running_mean"],
                                  pe.norms[0].running_mean)


def test_no_counted_pair_leaves_statistics(monkeypatch):
    """LLoCa-ParT counts distinct pairs only: jets of one constituent have none. The chunked
    training step stays finite, equals the reference and leaves the running statistics."""
    p, mask = toy_jets(3, 4, min_constituents=1, seed=2)
    mask[:, 1:] = False
    want = _run(_model(LLoCaParT, 1).train(), p, mask, True, monkeypatch)
    got = _run(_model(LLoCaParT, 1).train(), p, mask, False, monkeypatch)
    _assert_same(got, want, finite_p4=False)  # the frames of one particle: NaN momentum gradient
    assert torch.isfinite(got[0]).all()
    fresh = _model(LLoCaParT, 1)
    for k, b in fresh.net.pair_embed.named_buffers():
        if k.startswith("norms"):
            assert torch.equal(got[2][f"net.pair_embed.{k}"], b), k


def _largest_allocation(fn) -> int:
    """Bytes of the largest single allocation of any op (forward and backward) during ``fn()``."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max(e.self_cpu_memory_usage for e in prof.events())


@pytest.mark.parametrize("cls", CLASSES)
def test_no_hidden_pair_activation_for_all_pairs(cls, monkeypatch):
    """A training step (forward and backward) allocates nothing as large as one hidden
    activation ``(B, N, N, width)`` of the pair embedding for all pairs; the all-pairs
    reference does (so the measurement can see it)."""
    p, mask = toy_jets(NUM_JETS, NUM_CONSTITUENTS, min_constituents=NUM_CONSTITUENTS, seed=3)
    model = _model(cls).float().train()
    hidden = NUM_JETS * NUM_CONSTITUENTS**2 * min(PAIR_WIDTHS) * 4  # float32 bytes
    features = NUM_JETS * NUM_CONSTITUENTS**2 * NUM_PAIR_FEATURES * 8  # float64, for reference

    def step():
        model(p, mask).sum().backward()

    monkeypatch.setattr(_part_layers, "PAIR_CHUNK_PAIRS", 64)
    chunked = _largest_allocation(step)
    assert chunked < hidden / 2, (chunked, hidden, features)
    monkeypatch.setattr(PairEmbed, "forward", PairEmbed.reference)
    assert _largest_allocation(step) >= hidden
