"""ParticleNet and LLoCa-ParticleNet: shapes, padding, permutation, empty and tiny jets, Lorentz
invariance (LLoCa) and its absence (plain), registry, save/load, training, export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from jetclass_files import write_jetclass

import lloca_hep
from lloca_hep.core.lorentz import apply, random_lorentz
from lloca_hep.core.testing import degenerate_jets, toy_jets
from lloca_hep.models import LLoCaParticleNet, ParticleNet, build_model, model_name, particlenet
from lloca_hep.models.particlenet import EdgeConvBlock, _gather, select_neighbours
from lloca_hep.tagger import Tagger, load_tagger
from lloca_hep.tagger.export import export_tagger
from lloca_hep.training import TrainConfig, train
from tests.test_models_transformer import DEFAULT_BOUNDS, FLOAT64_BOUND, relative_change

NUM_JETS = 12
SMALL = dict(neighbours=6, edge_dims=[[16, 16], [24, 24]], fc_dim=16)
SMALL_LLOCA = dict(SMALL, num_vectors=2, frames_hidden=8)
EXACT = dict(rtol=1e-10, atol=1e-12)
CLASSES = [ParticleNet, LLoCaParticleNet]


def _small(cls):
    return SMALL_LLOCA if cls is LLoCaParticleNet else SMALL


def _model(cls, seed=0, **kw):
    torch.manual_seed(seed)
    return cls(**{**_small(cls), **kw}).eval()


@pytest.fixture(scope="module")
def jets():
    return toy_jets(NUM_JETS, 40, min_constituents=10, seed=8)


def test_select_neighbours_masks_self_padding_and_small_jets():
    d = torch.tensor([[[0.0, 1.0, 2.0], [1.0, 0.0, 3.0], [2.0, 3.0, 0.0]]])
    idx, valid = select_neighbours(d, torch.tensor([[True, True, False]]), 3)
    assert idx.shape == valid.shape == (1, 3, 3)
    assert idx[0, 0, 0] == 1 and idx[0, 1, 0] == 0
    assert valid[0, :2].sum(-1).tolist() == [1, 1] and not valid[0, 2].any()


@pytest.mark.parametrize("cls", CLASSES)
def test_shapes_scalars_and_gradients(jets, cls):
    p, mask = jets
    model = _model(cls).train()
    out = model(p, mask)
    assert out.shape == (NUM_JETS,) and out.dtype == torch.float32
    out.sum().backward()
    assert all(torch.isfinite(q.grad).all() for q in model.parameters() if q.grad is not None)
    scalars = torch.randn(NUM_JETS, p.shape[1], 3, generator=torch.Generator().manual_seed(1))
    multi = _model(cls, num_classes=4, num_scalars=2, num_frames_scalars=1)
    with torch.no_grad():
        assert multi(p, mask, scalars).shape == (NUM_JETS, 4)
    with pytest.raises(ValueError, match="edge_dims"):
        cls(**{**_small(cls), "edge_dims": [[16], []]})


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("training", [False, True])
def test_padding_and_permutation(jets, cls, training):
    p, mask = jets
    model = _model(cls, 3, dropout=0.0).double().train(training)
    gen = torch.Generator().manual_seed(2)
    perm = torch.stack([torch.randperm(p.shape[1], generator=gen) for _ in range(NUM_JETS)])
    pp = torch.gather(p, 1, perm[..., None].expand(-1, -1, 4))
    padded = torch.cat([p, torch.zeros(NUM_JETS, 5, 4, dtype=p.dtype)], 1)
    mpad = torch.cat([mask, torch.zeros(NUM_JETS, 5, dtype=torch.bool)], 1)
    junk = p.clone()
    junk[~mask] = 77.0
    with torch.no_grad():
        s0 = model(p, mask)
        assert torch.allclose(model(pp, torch.gather(mask, 1, perm)), s0, **EXACT)
        assert torch.allclose(model(padded, mpad), s0, **EXACT)
        assert torch.allclose(model(junk, mask), s0, **EXACT)


@pytest.mark.parametrize("cls", CLASSES)
def test_empty_batches_and_degenerate_jets(cls):
    model = _model(cls)
    with torch.no_grad():
        assert model(torch.zeros(0, 5, 4, dtype=torch.float64),
                     torch.zeros(0, 5, dtype=torch.bool)).shape == (0,)
        out = model(torch.zeros(2, 0, 4, dtype=torch.float64), torch.zeros(2, 0, dtype=torch.bool))
        assert out.shape == (2,) and torch.isfinite(out).all()
        p, mask = degenerate_jets()  # 1-3 constituents (< k), collinear, duplicates, empty
        a, b = model(p, mask), model(p, mask)
    assert torch.isfinite(a).all() and torch.equal(a, b)


def test_llocaparticlenet_invariant_in_default_precision(jets):
    p, mask = jets
    model = _model(LLoCaParticleNet, 4, symmetry_breaking=False)
    m64 = _model(LLoCaParticleNet, 4, symmetry_breaking=False).double()
    with torch.no_grad():
        s0, s64 = model(p, mask), m64(p, mask)
        for i, (y, bound) in enumerate(DEFAULT_BOUNDS.items()):
            lam = random_lorentz(NUM_JETS, max_rapidity=y, exact_rapidity=True, seed=500 + i)
            pt = apply(lam[:, None], p)
            assert relative_change(s0, model(pt, mask)) <= bound, y
            if y <= 2.0:
                assert relative_change(s64, m64(pt, mask)) <= FLOAT64_BOUND, y


@pytest.mark.parametrize(("cls", "kw"), [(ParticleNet, {}),
                                         (LLoCaParticleNet, {"frames": "identity"})])
def test_plain_and_identity_twin_not_invariant(jets, cls, kw):
    p, mask = jets
    model = _model(cls, 5, **kw)
    lam = random_lorentz(NUM_JETS, max_rapidity=1.0, exact_rapidity=True, seed=5)
    with torch.no_grad():
        assert relative_change(model(p, mask), model(apply(lam[:, None], p), mask)) > 1e-3


@pytest.mark.parametrize("cls", CLASSES)
def test_registry_save_load_and_export(jets, cls, tmp_path):
    p, mask = jets
    model = _model(cls, 7, num_classes=3)
    name = model_name(model)
    assert name == ("llocaparticlenet" if cls is LLoCaParticleNet else "particlenet")
    rebuilt = build_model(name, json.loads(json.dumps(model.config))).eval()
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(p, mask), model(p, mask))
    tagger = Tagger(model, name, 40, classes=["a", "b", "c"])
    want = tagger.score_padded(p.numpy(), mask.numpy())
    loaded = load_tagger(tagger.save(tmp_path / "t.pt"))
    np.testing.assert_array_equal(loaded.score_padded(p.numpy(), mask.numpy()), want)
    if cls is LLoCaParticleNet:
        return  # its export is the slowest (~35 s loaded); ParticleNet's covers the kNN graph
    exported = load_tagger(export_tagger(tagger, tmp_path / "t.pt2"))
    np.testing.assert_allclose(exported.score_padded(p.numpy(), mask.numpy()), want,
                               rtol=0, atol=1e-6)


def test_llocaparticlenet_trains_on_full_features(tmp_path):
    path = write_jetclass(tmp_path / "train.root", 12, max_constituents=12)
    config = TrainConfig(model="llocaparticlenet", epochs=1, features="full",
                         model_config=SMALL_LLOCA, max_constituents=12, device="cpu")
    result = train(path, config, output_dir=tmp_path / "run", progress=False)
    tagger = load_tagger(tmp_path / "run" / "tagger.pt")
    assert tagger.model_name == "llocaparticlenet" and tagger.config["num_scalars"] == 10
    jets = lloca_hep.read_jets(path, features=tagger.inputs)
    np.testing.assert_array_equal(tagger.score(jets), result.tagger.score(jets))


def _edgeconv_reference(block, x, idx, valid, mask, extra):
    """EdgeConv as the paper writes it: edge features ``[x_i, x_j - x_i, extra]`` through
    ``Linear -> MaskedBatchNorm -> ReLU``, mean over the valid neighbours, shortcut."""
    xj = _gather(x, idx)
    xi = x[:, :, None].expand_as(xj)
    e = torch.cat([xi, xj - xi, extra], dim=-1)
    for lin, norm in zip(block.linears, block.norms, strict=True):
        e = torch.relu(norm(lin(e), valid))
    w = valid[..., None].to(e.dtype)
    agg = (e * w).sum(2) / w.sum(2).clamp_min(1.0)
    sc = block.shortcut_norm(block.shortcut(x), mask)
    return torch.relu(agg + sc) * mask[..., None].to(x.dtype)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("padded", [False, True])
def test_edgeconv_equals_edge_feature_form(training, padded, monkeypatch):
    """The per-particle form of the first layer, the fused normalisations and (evaluation) the
    folded ones compute the textbook EdgeConv: outputs, gradients of the inputs and of every
    parameter, running statistics (float64); evaluation without autograd (chunks of edges) too."""
    import copy

    gen = torch.Generator().manual_seed(3)
    B, N, C, k, E = 5, 12, 6, 4, 3
    mask = torch.ones(B, N, dtype=torch.bool)
    if padded:
        mask[:, 9:] = False
        mask[0, 3:] = False  # fewer than k + 1 constituents: invalid edges
    idx, valid = select_neighbours(torch.rand(B, N, N, generator=gen, dtype=torch.float64),
                                   mask, k)
    assert valid.all() != padded
    torch.manual_seed(4)
    fast = EdgeConvBlock(C, [8, 10], E).double().train(training)
    for norm in [*fast.norms, fast.shortcut_norm]:  # statistics away from the initial ones
        norm.running_mean.normal_(generator=gen)
        norm.running_var.uniform_(0.5, 2.0, generator=gen)
        nn_init = torch.randn(2, norm.weight.shape[0], generator=gen, dtype=torch.float64)
        norm.weight.data.copy_(1 + 0.3 * nn_init[0])
        norm.bias.data.copy_(0.3 * nn_init[1])
    ref = copy.deepcopy(fast)
    results = []
    for block, fn in ((fast, fast.forward), (ref, lambda *a: _edgeconv_reference(ref, *a))):
        x = torch.randn(B, N, C, generator=torch.Generator().manual_seed(5),
                        dtype=torch.float64).requires_grad_(True)
        extra = torch.randn(B, N, k, E, generator=torch.Generator().manual_seed(6),
                            dtype=torch.float64).requires_grad_(True)
        out = fn(x, idx, valid, mask, extra)
        (out.square().sum() + out.sum()).backward()
        grads = {"x": x.grad, "extra": extra.grad,
                 **{n: q.grad for n, q in block.named_parameters()}}
        results.append((out.detach(), grads, dict(block.named_buffers())))
    (out, grads, bufs), (out0, grads0, bufs0) = results
    torch.testing.assert_close(out, out0, **EXACT)
    if not training:
        monkeypatch.setattr(particlenet, "EDGE_CHUNK", 2 * k + 1)  # a few particles per chunk
        with torch.no_grad():
            chunked = fast(x.detach(), idx, valid, mask, extra.detach())
        torch.testing.assert_close(chunked, out0, **EXACT)
    for name, g0 in grads0.items():
        torch.testing.assert_close(grads[name], g0, **EXACT, msg=lambda m, n=name: f"{n}: {m}")
    for name, b0 in bufs0.items():
        torch.testing.assert_close(bufs[name], b0, **EXACT, msg=lambda m, n=name: f"{n}: {m}")
