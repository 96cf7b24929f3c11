"""LLoCaTransformer: invariance (float64 and default precision), symmetry breaking, permutation,
padding, reproducibility, degenerate jets, frame choices, registry."""

import json

import pytest
import torch

from lloca_hep.core.lorentz import apply, beam_rotation, random_lorentz
from lloca_hep.core.testing import degenerate_jets, toy_jets
from lloca_hep.models import MODELS, JetMassTagger, LLoCaTransformer, build_model, model_name

NUM_JETS = 16
#: Bounds from the issue: float64 throughout up to rapidity 2, default precision up to 4 and at 6.
FLOAT64_BOUND = 1e-9
DEFAULT_BOUNDS = {0.5: 1e-6, 2.0: 1e-6, 4.0: 1e-6, 6.0: 3e-5}


def relative_change(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest relative change of the jet score (sigmoid of the logit, in float64) over the batch.

    Also checks that no logit moves by more than that bound times max(1, mean |logit|), so the
    score metric cannot hide a large logit change behind saturation.
    """
    a, b = a.double(), b.double()
    sa, sb = torch.sigmoid(a), torch.sigmoid(b)
    rel = ((sa - sb).abs() / sa).max().item()
    logit = ((a - b).abs().max() / max(1.0, a.abs().mean().item())).item()
    return max(rel, logit)


@pytest.fixture(scope="module")
def jets():
    return toy_jets(NUM_JETS, 60, min_constituents=20, seed=123)


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return LLoCaTransformer(**kw).eval()


@pytest.mark.parametrize("frames", ["learned", "global"])
def test_invariance_float64(jets, frames):
    p, mask = jets
    model = _model(1, frames=frames, symmetry_breaking=False).double()
    with torch.no_grad():
        s0 = model(p, mask)
        for i, y in enumerate((0.5, 1.0, 2.0)):
            lam = random_lorentz(NUM_JETS, max_rapidity=y, exact_rapidity=True, seed=100 + i)
            assert relative_change(s0, model(apply(lam[:, None], p), mask)) <= FLOAT64_BOUND


@pytest.mark.parametrize("frames", ["learned", "global"])
def test_invariance_default_precision(jets, frames):
    p, mask = jets
    model = _model(2, frames=frames, symmetry_breaking=False)
    with torch.no_grad():
        s0 = model(p, mask)
        for i, (y, bound) in enumerate(DEFAULT_BOUNDS.items()):
            lam = random_lorentz(NUM_JETS, max_rapidity=y, exact_rapidity=True, seed=200 + i)
            assert relative_change(s0, model(apply(lam[:, None], p), mask)) <= bound, y


def test_identity_frames_not_invariant(jets):
    p, mask = jets
    model = _model(3, frames="identity")
    lam = random_lorentz(NUM_JETS, max_rapidity=1.0, exact_rapidity=True, seed=5)
    with torch.no_grad():
        assert relative_change(model(p, mask), model(apply(lam[:, None], p), mask)) > 1e-3


def test_symmetry_breaking_beam_rotation_invariant_boost_not(jets):
    p, mask = jets
    model = _model(4, frames="learned", symmetry_breaking=True)
    gen = torch.Generator().manual_seed(9)
    rot = beam_rotation(torch.rand(NUM_JETS, generator=gen, dtype=torch.float64) * 6.28)
    lam = random_lorentz(NUM_JETS, max_rapidity=1.0, exact_rapidity=True, seed=6)
    with torch.no_grad():
        s0 = model(p, mask)
        assert relative_change(s0, model(apply(rot[:, None], p), mask)) <= 1e-6
        assert relative_change(s0, model(apply(lam[:, None], p), mask)) > 1e-4
    # each ingredient alone breaks the symmetry too
    for sb in ("references", "scalars"):
        m = _model(4, frames="learned", symmetry_breaking=sb)
        with torch.no_grad():
            assert relative_change(m(p, mask), m(apply(lam[:, None], p), mask)) > 1e-4, sb


@pytest.mark.parametrize("frames", ["learned", "identity", "rotations"])
def test_permutation_and_padding(jets, frames):
    p, mask = jets
    model = _model(5, frames=frames).double()
    gen = torch.Generator().manual_seed(1)
    perm = torch.stack([torch.randperm(p.shape[1], generator=gen) for _ in range(NUM_JETS)])
    pp = torch.gather(p, 1, perm[..., None].expand(-1, -1, 4))
    mp = torch.gather(mask, 1, perm)
    padded = torch.cat([p, torch.zeros(NUM_JETS, 7, 4, dtype=p.dtype)], 1)
    mpad = torch.cat([mask, torch.zeros(NUM_JETS, 7, dtype=torch.bool)], 1)
    with torch.no_grad():
        s0 = model(p, mask)
        assert torch.allclose(model(pp, mp), s0, rtol=1e-10, atol=1e-12)
        assert torch.allclose(model(padded, mpad), s0, rtol=1e-10, atol=1e-12)
        # garbage in padded slots is ignored
        junk = p.clone()
        junk[~mask] = 123.0
        assert torch.allclose(model(junk, mask), s0, rtol=1e-10, atol=1e-12)


def test_bitwise_reproducible_and_finite_on_degenerate():
    p, mask = degenerate_jets()
    for frames in ("learned", "global", "random", "identity", "rotations", "beam_rotations"):
        model = _model(6, frames=frames)
        with torch.no_grad():
            a, b = model(p, mask), model(p, mask)
        assert torch.isfinite(a).all(), frames
        assert torch.equal(a, b), frames
    p2, m2 = toy_jets(8, 30, seed=4)
    model = _model(7)
    with torch.no_grad():
        assert torch.equal(model(p2, m2), model(p2, m2))


def test_random_frames_only_in_training(jets):
    p, mask = jets
    model = _model(8, frames="random")
    with torch.no_grad():
        assert torch.equal(model(p, mask), model(p, mask))
        model.train()
        assert not torch.equal(model(p, mask), model(p, mask))


def test_shapes_config_registry_and_gradients(jets):
    p, mask = jets
    model = LLoCaTransformer()
    assert model.config["frames"] == "learned" and model.config["symmetry_breaking"] is True
    out = model(p, mask)
    assert out.shape == (NUM_JETS,) and out.dtype == torch.float32
    out.sum().backward()
    fn = model.frame_choice.net
    assert fn.fc1.weight.grad is not None and torch.isfinite(fn.fc1.weight.grad).all()
    multi = LLoCaTransformer(num_classes=3, blocks=1, hidden=32)
    assert multi(p, mask).shape == (NUM_JETS, 3)
    for m in (model, multi, JetMassTagger()):
        name = model_name(m)
        assert name in MODELS
        rebuilt = build_model(name, json.loads(json.dumps(m.config)))
        rebuilt.load_state_dict(m.state_dict())
        rebuilt.eval(), m.eval()
        with torch.no_grad():
            assert torch.equal(rebuilt(p, mask), m(p, mask))
    with pytest.raises(KeyError):
        build_model("nope", {})
    with pytest.raises(ValueError):
        LLoCaTransformer(frames="bogus")
    with pytest.raises(ValueError):
        model(p[..., :3], mask)
    with pytest.raises(ValueError):
        model(p, mask.float())
    nan = p.clone()
    nan[3, 2, 1] = float("nan")
    with pytest.raises(ValueError, match="jet 3, constituent 2"):
        model(nan, mask)


def test_jet_mass_tagger_invariant(jets):
    p, mask = jets
    model = JetMassTagger().double().eval()
    lam = random_lorentz(NUM_JETS, max_rapidity=2.0, seed=3)
    with torch.no_grad():
        assert relative_change(model(p, mask), model(apply(lam[:, None], p), mask)) <= FLOAT64_BOUND


@pytest.mark.parametrize("cls", [LLoCaTransformer, JetMassTagger])
def test_empty_batches_and_jets(cls):
    model = cls().eval()
    with torch.no_grad():
        assert model(
            torch.zeros(0, 5, 4, dtype=torch.float64), torch.zeros(0, 5, dtype=torch.bool)
        ).shape == (0,)
        out = model(torch.zeros(2, 0, 4, dtype=torch.float64), torch.zeros(2, 0, dtype=torch.bool))
        assert out.shape == (2,) and torch.isfinite(out).all()
