"""Local frames: polar decomposition, equivariance L(Λp) = L(p)Λ^{-1}, Lorentz property, degenerate input."""

import torch

from lloca_hep.core.framechoices import FrameChoice
from lloca_hep.core.frames import beam_rotation_frames, polar_frames, rotation_frames
from lloca_hep.core.lorentz import apply, beam_rotation, inverse, lorentz_violation, random_lorentz
from lloca_hep.core.testing import degenerate_jets, toy_jets

LORENTZ_TOL = 1e-12


def _random_vectors(n, seed):
    gen = torch.Generator().manual_seed(seed)
    sp = torch.randn(n, 3, 3, generator=gen, dtype=torch.float64) * 50
    m = torch.rand(n, 3, generator=gen, dtype=torch.float64) * 20 + 1
    e = torch.sqrt((sp**2).sum(-1) + m**2)
    return torch.cat([e[..., None], sp], -1)  # (n, 3, 4), time-like


def test_polar_frames_equivariant_and_lorentz():
    v = _random_vectors(300, 0)
    lam = random_lorentz(300, max_rapidity=3.0, seed=11)
    L = polar_frames(v[:, 0], v[:, 1], v[:, 2])
    vt = apply(lam[:, None], v)
    Lt = polar_frames(vt[:, 0], vt[:, 1], vt[:, 2])
    assert lorentz_violation(L).max() < 1e-10
    scale = (L @ inverse(lam)).abs().amax((1, 2))
    assert ((Lt - L @ inverse(lam)).abs().amax((1, 2)) / scale).max() < 1e-8


def test_learned_frames_of_jets_transform_covariantly():
    """Lab-to-local frames F_i = L_i B_J satisfy F(Λp) = F(p) Λ^{-1}; L_i are Lorentz to 1e-12."""
    torch.manual_seed(0)
    p, mask = toy_jets(16, 40, seed=3)
    fc = FrameChoice("learned", symmetry_breaking=False).eval()
    from lloca_hep.core.restframe import to_jet_rest_frame

    for y in (0.5, 2.0):
        lam = random_lorentz(16, max_rapidity=y, exact_rapidity=True, seed=int(10 * y))
        pt = apply(lam[:, None], p)
        with torch.no_grad():
            a, b = fc(p, mask), fc(pt, mask)
        assert lorentz_violation(a.frames[mask]).max() < LORENTZ_TOL
        assert lorentz_violation(b.frames[mask]).max() < LORENTZ_TOL
        Fa = a.frames @ to_jet_rest_frame(p, mask).boost[:, None]
        Fb = b.frames @ to_jet_rest_frame(pt, mask).boost[:, None]
        expect = Fa @ inverse(lam)[:, None]
        err = (Fb - expect).abs().amax((-1, -2)) / expect.abs().amax((-1, -2))
        assert err[mask].max() < 1e-8
        # the local momenta are invariant
        la = torch.einsum("bnij,bnj->bni", a.frames, a.p4)
        lb = torch.einsum("bnij,bnj->bni", b.frames, b.p4)
        assert (la - lb).abs().max() < 1e-10


def test_subgroup_frames_equivariant():
    v = _random_vectors(50, 1)
    from lloca_hep.core.lorentz import rotation_from_axes

    gen = torch.Generator().manual_seed(5)
    q, _ = torch.linalg.qr(torch.randn(50, 3, 3, generator=gen, dtype=torch.float64))
    q = q * torch.linalg.det(q)[:, None, None]  # proper rotations
    R = rotation_from_axes(q)
    vr = apply(R[:, None], v)
    L, Lr = rotation_frames(v[:, 1], v[:, 2]), rotation_frames(vr[:, 1], vr[:, 2])
    assert torch.allclose(Lr, L @ inverse(R), atol=1e-12)
    Rb = beam_rotation(torch.rand(50, generator=gen, dtype=torch.float64) * 6)
    vb = apply(Rb[:, None], v)
    Lb, Lbr = beam_rotation_frames(v[:, 1]), beam_rotation_frames(vb[:, 1])
    assert torch.allclose(Lbr, Lb @ inverse(Rb), atol=1e-12)
    assert lorentz_violation(Lb).max() < LORENTZ_TOL


def test_degenerate_frames_finite_and_deterministic():
    p, mask = degenerate_jets()
    for kind in ("learned", "global", "rotations", "beam_rotations"):
        fc = FrameChoice(kind, symmetry_breaking=True).eval()
        with torch.no_grad():
            a, b = fc(p, mask), fc(p, mask)
        assert torch.isfinite(a.frames).all(), kind
        assert torch.equal(a.frames, b.frames), kind
        assert lorentz_violation(a.frames).max() < 1e-9, kind
    # direct degenerate vectors: light-like v0, parallel / zero v1 v2
    z = torch.zeros(4, dtype=torch.float64)
    ll = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    L = polar_frames(
        torch.stack([ll, z, ll]), torch.stack([ll, z, z]), torch.stack([ll, z, 2 * ll])
    )
    assert torch.isfinite(L).all() and lorentz_violation(L).max() < 1e-6
