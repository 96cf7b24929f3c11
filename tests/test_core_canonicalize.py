"""Backbone wrapper: scalar, vector and rank-2 outputs are Lorentz equivariant."""

import torch
from torch import nn

from lloca_hep.core.canonicalize import LorentzCanonicalized
from lloca_hep.core.features import NUM_LOCAL_FEATURES
from lloca_hep.core.lorentz import apply, random_lorentz
from lloca_hep.core.testing import toy_jets

B = 6
REPS = "2x0n+1x1n+1x2n"
DIM = 2 + 4 + 16


class Mixer(nn.Module):
    """A deliberately non-equivariant backbone: flattens the first constituents."""

    def __init__(self, n_in, n_out, per_particle=False, keep=5):
        super().__init__()
        self.keep, self.per_particle = keep, per_particle
        self.net = nn.Sequential(nn.Linear(n_in * keep, 32), nn.Tanh(), nn.Linear(32, n_out))
        self.local = nn.Linear(n_in, n_out)

    def forward(self, x, mask):
        if self.per_particle:
            return self.local(x) + self.net(x[:, : self.keep].flatten(1))[:, None]
        return self.net(x[:, : self.keep].flatten(1))


def _check(model, per_particle):
    p, mask = toy_jets(B, 24, min_constituents=10, seed=2)
    lam = random_lorentz(B, max_rapidity=2.0, seed=3)
    with torch.no_grad():
        out = model(p, mask)
        out_t = model(apply(lam[:, None], p), mask)
    L = lam[:, None] if per_particle else lam
    s = out[..., :2]
    vec = out[..., 2:6]
    ten = out[..., 6:].unflatten(-1, (4, 4))
    scale = out.abs().amax()
    assert torch.allclose(out_t[..., :2], s, atol=1e-9 * scale)
    assert torch.allclose(out_t[..., 2:6], apply(L, vec), atol=1e-9 * scale * 50)
    expect_t = L @ ten @ L.transpose(-1, -2)
    assert torch.allclose(
        out_t[..., 6:].unflatten(-1, (4, 4)), expect_t, atol=1e-9 * expect_t.abs().amax()
    )
    return out


def test_wrapper_per_jet_equivariant():
    torch.manual_seed(0)
    for frames in ("global", "learned"):
        model = LorentzCanonicalized(Mixer(NUM_LOCAL_FEATURES, DIM), REPS, frames=frames).double()
        out = _check(model, per_particle=False)
        assert out.shape == (B, DIM) and out.dtype == torch.float64


def test_wrapper_per_particle_equivariant_and_rescale():
    torch.manual_seed(1)
    model = LorentzCanonicalized(
        Mixer(NUM_LOCAL_FEATURES, DIM, per_particle=True), REPS, frames="learned", per_particle=True
    ).double()
    _check(model, per_particle=True)
    model.rescale = True
    _check(model, per_particle=True)


def test_wrapper_identity_frames_not_equivariant():
    torch.manual_seed(2)
    model = LorentzCanonicalized(Mixer(NUM_LOCAL_FEATURES, 4), "1x1n", frames="identity").double()
    p, mask = toy_jets(B, 24, min_constituents=10, seed=2)
    lam = random_lorentz(B, max_rapidity=1.0, seed=3)
    with torch.no_grad():
        a = apply(lam, model(p, mask))
        b = model(apply(lam[:, None], p), mask)
    assert not torch.allclose(a, b, rtol=1e-3)


def test_documented_examples_run():
    import doctest

    import lloca_hep.core.canonicalize as canonicalize
    import lloca_hep.core.reps as reps

    for mod in (canonicalize, reps):
        result = doctest.testmod(mod)
        assert result.attempted > 0 and result.failed == 0, mod.__name__
