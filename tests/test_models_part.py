"""ParT and LLoCa-ParT: shapes, padding, permutation, empty inputs, Lorentz invariance (LLoCa) and
its absence (plain), chunked pair bias, registry, save/load, training from the CLI, export."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from jetclass_files import write_jetclass

from lloca_hep.core.attention import LLoCaAttention, prepare_attention_frames
from lloca_hep.core.lorentz import apply, random_lorentz
from lloca_hep.core.testing import toy_jets
from lloca_hep.models import LLoCaParT, ParticleTransformer, _part_layers, build_model, model_name
from lloca_hep.tagger import Tagger, load_tagger
from lloca_hep.tagger.export import export_tagger
from tests.test_models_transformer import DEFAULT_BOUNDS, FLOAT64_BOUND, relative_change

NUM_JETS = 12
SMALL = dict(embed_dims=[16, 32, 16], pair_embed_dims=[8, 8], heads=2, blocks=2, class_blocks=1)
SMALL_LLOCA = dict(SMALL, head_reps="4x0n+1x1n", frames_hidden=8)
#: Tolerance of the float64 padding / permutation checks.
EXACT = dict(rtol=1e-10, atol=1e-12)
CLASSES = [ParticleTransformer, LLoCaParT]


def _small(cls):
    return SMALL_LLOCA if cls is LLoCaParT else SMALL


def _model(cls, seed=0, **kw):
    torch.manual_seed(seed)
    return cls(**{**_small(cls), **kw}).eval()


@pytest.fixture(scope="module")
def jets():
    return toy_jets(NUM_JETS, 40, min_constituents=10, seed=7)


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
    with pytest.raises(ValueError, match="scalars"):
        multi(p, mask)
    with pytest.raises(ValueError, match="divisible"):
        cls(**{**_small(cls), "heads": 3})
    with pytest.raises(ValueError, match="embed_dims"):
        cls(**{**_small(cls), "embed_dims": []})


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("training", [False, True])
def test_padding_and_permutation(jets, cls, training):
    """Extra padded slots, junk in padded slots and a permutation leave the logits unchanged; in
    training too (the batch statistics of the normalisation see real particles and pairs only)."""
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
def test_empty_batches_and_jets(cls):
    model = _model(cls)
    with torch.no_grad():
        assert model(torch.zeros(0, 5, 4, dtype=torch.float64),
                     torch.zeros(0, 5, dtype=torch.bool)).shape == (0,)
        out = model(torch.zeros(2, 0, 4, dtype=torch.float64), torch.zeros(2, 0, dtype=torch.bool))
        assert out.shape == (2,) and torch.isfinite(out).all()
        p, mask = toy_jets(3, 6, min_constituents=1, seed=3)
        mask[1] = False  # a fully padded jet next to real ones
        mask[2, 1:] = False  # a jet with one constituent
        assert torch.isfinite(model(p, mask)).all()


def test_llocapart_invariant_in_default_precision(jets):
    p, mask = jets
    model = _model(LLoCaParT, 4, symmetry_breaking=False)
    m64 = _model(LLoCaParT, 4, symmetry_breaking=False).double()
    with torch.no_grad():
        s0, s64 = model(p, mask), m64(p, mask)
        for i, (y, bound) in enumerate(DEFAULT_BOUNDS.items()):
            lam = random_lorentz(NUM_JETS, max_rapidity=y, exact_rapidity=True, seed=400 + i)
            pt = apply(lam[:, None], p)
            assert relative_change(s0, model(pt, mask)) <= bound, y
            if y <= 2.0:
                assert relative_change(s64, m64(pt, mask)) <= FLOAT64_BOUND, y


@pytest.mark.parametrize(("cls", "kw"), [(ParticleTransformer, {}),
                                         (LLoCaParT, {"frames": "identity"})])
def test_plain_and_identity_twin_not_invariant(jets, cls, kw):
    p, mask = jets
    model = _model(cls, 5, **kw)
    lam = random_lorentz(NUM_JETS, max_rapidity=1.0, exact_rapidity=True, seed=5)
    with torch.no_grad():
        assert relative_change(model(p, mask), model(apply(lam[:, None], p), mask)) > 1e-3


@pytest.mark.parametrize("grad", [False, True])  # numba kernels / torch path
def test_attention_bias_and_queries(jets, grad):
    """A zero bias changes nothing, a bias enters the logits, ``queries`` slices the output."""
    p, mask = jets
    model = _model(LLoCaParT, 8)
    lf = model.frame_choice(p, mask)
    frames = prepare_attention_frames(lf.relative, torch.float32)
    torch.manual_seed(9)
    attn = LLoCaAttention(16, 2, "4x0n+1x1n")
    x = torch.randn(NUM_JETS, p.shape[1], 16)
    zero = torch.zeros(NUM_JETS, 2, p.shape[1], p.shape[1])
    with torch.set_grad_enabled(grad):
        full = attn(x, frames, mask)
        assert torch.allclose(attn(x, frames, mask, bias=zero), full, atol=1e-6)
        assert torch.allclose(attn(x, frames, mask, queries=3), full[:, :3], atol=1e-6)
        assert not torch.allclose(attn(x, frames, mask, bias=torch.randn_like(zero)), full,
                                  atol=1e-3)


@pytest.mark.parametrize("cls", CLASSES)
def test_chunked_pair_bias_matches_one_pass(jets, cls, monkeypatch):
    p, mask = jets
    model = _model(cls, 6).double()
    with torch.no_grad():
        whole = model(p, mask)
        monkeypatch.setattr(_part_layers, "PAIR_CHUNK_PAIRS", 3 * NUM_JETS * p.shape[1])
        chunked = model(p, mask)
    assert torch.allclose(chunked, whole, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", CLASSES)
def test_registry_save_load_and_export(jets, cls, tmp_path):
    p, mask = jets
    model = _model(cls, 7, num_classes=3, blocks=1)  # one block: a shorter export trace
    name = model_name(model)
    assert name == ("llocapart" if cls is LLoCaParT else "part")
    rebuilt = build_model(name, json.loads(json.dumps(model.config))).eval()
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(p, mask), model(p, mask))
    with pytest.raises(ValueError, match="dropout"):
        build_model(name, {**model.config, "dropout": 1.5})
    tagger = Tagger(model, name, 40, classes=["a", "b", "c"])
    want = tagger.score_padded(p.numpy(), mask.numpy())
    loaded = load_tagger(tagger.save(tmp_path / "t.pt"))
    np.testing.assert_array_equal(loaded.score_padded(p.numpy(), mask.numpy()), want)
    if cls is ParticleTransformer:
        return  # its graph is a part of LLoCa-ParT's; one export (~20 s loaded) is enough
    exported = load_tagger(export_tagger(tagger, tmp_path / "t.pt2"))
    np.testing.assert_allclose(exported.score_padded(p.numpy(), mask.numpy()), want,
                               rtol=0, atol=1e-6)


def test_cli_trains_part_with_full_features(tmp_path):
    data = write_jetclass(tmp_path / "train.root", 12, max_constituents=12)
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "lloca_hep", "train", str(data), "--model", "part",
                        "--features", "full", "--epochs", "1", "--config", json.dumps(SMALL),
                        "--max-constituents", "12", "-o", str(out), "--no-progress",
                        "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    tagger = load_tagger(out / "tagger.pt")
    assert tagger.model_name == "part" and tagger.config["num_scalars"] == 10
    assert isinstance(tagger.model, ParticleTransformer)
