"""LLoCaGraphNet: invariance, symmetry breaking, permutation/padding, degenerate jets, registry."""

import json

import pytest
import torch

from lloca_hep.core.lorentz import apply, beam_rotation, random_lorentz
from lloca_hep.core.testing import degenerate_jets, toy_jets
from lloca_hep.models import LLoCaGraphNet, build_model, model_name

NUM_JETS = 16
FLOAT64_BOUND = 1e-9
DEFAULT_BOUNDS = {0.5: 1e-6, 2.0: 1e-6, 4.0: 1e-6, 6.0: 3e-5}


def relative_change(a, b):
    """Relative change of the score (sigmoid, float64), and of logits over max(1, mean |logit|)."""
    a, b = a.double(), b.double()
    sa, sb = torch.sigmoid(a), torch.sigmoid(b)
    logit = ((a - b).abs().max() / max(1.0, a.abs().mean().item())).item()
    return max(((sa - sb).abs() / sa).max().item(), logit)


@pytest.fixture(scope="module")
def jets():
    return toy_jets(NUM_JETS, 50, min_constituents=20, seed=321)


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return LLoCaGraphNet(**kw).eval()


def test_invariance_float64_and_default_precision(jets):
    p, mask = jets
    m64 = _model(1, symmetry_breaking=False).double()
    m32 = _model(1, symmetry_breaking=False)
    with torch.no_grad():
        s64, s32 = m64(p, mask), m32(p, mask)
        for i, (y, bound) in enumerate(DEFAULT_BOUNDS.items()):
            lam = random_lorentz(NUM_JETS, max_rapidity=y, exact_rapidity=True, seed=300 + i)
            pt = apply(lam[:, None], p)
            if y <= 2.0:
                assert relative_change(s64, m64(pt, mask)) <= FLOAT64_BOUND, y
            assert relative_change(s32, m32(pt, mask)) <= bound, y


def test_symmetry_breaking(jets):
    p, mask = jets
    model = _model(2)
    rot = beam_rotation(torch.linspace(0.3, 5.0, NUM_JETS, dtype=torch.float64))
    lam = random_lorentz(NUM_JETS, max_rapidity=1.0, exact_rapidity=True, seed=6)
    with torch.no_grad():
        s0 = model(p, mask)
        assert relative_change(s0, model(apply(rot[:, None], p), mask)) <= 1e-6
        # the break is real: far above the float32 floor (~1e-7)
        assert relative_change(s0, model(apply(lam[:, None], p), mask)) > 1e-4


def test_permutation_padding_reproducible(jets):
    p, mask = jets
    model = _model(3).double()
    gen = torch.Generator().manual_seed(1)
    perm = torch.stack([torch.randperm(p.shape[1], generator=gen) for _ in range(NUM_JETS)])
    pp = torch.gather(p, 1, perm[..., None].expand(-1, -1, 4))
    padded = torch.cat([p, torch.zeros(NUM_JETS, 5, 4, dtype=p.dtype)], 1)
    mpad = torch.cat([mask, torch.zeros(NUM_JETS, 5, dtype=torch.bool)], 1)
    with torch.no_grad():
        s0 = model(p, mask)
        assert torch.allclose(model(pp, torch.gather(mask, 1, perm)), s0, rtol=1e-10, atol=1e-12)
        assert torch.allclose(model(padded, mpad), s0, rtol=1e-10, atol=1e-12)
        assert torch.equal(model(p, mask), s0)


def test_degenerate_frames_and_registry(jets):
    p, mask = degenerate_jets()
    for frames in ("learned", "global", "identity", "rotations"):
        model = _model(4, frames=frames)
        with torch.no_grad():
            a, b = model(p, mask), model(p, mask)
        assert torch.isfinite(a).all() and torch.equal(a, b), frames
    model = _model(5, num_classes=4, layers=1)
    pj, mj = jets
    assert model(pj, mj).shape == (NUM_JETS, 4)
    rebuilt = build_model(model_name(model), json.loads(json.dumps(model.config)))
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(pj, mj), model(pj, mj))
