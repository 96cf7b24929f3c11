"""Lorentz toolkit: metric, products, boosts, rotations, random transformations, inverse."""

import math

import torch

from lloca_hep.core.lorentz import (
    apply,
    beam_rotation,
    boost_along_z,
    inverse,
    lorentz_violation,
    metric,
    minkowski,
    random_lorentz,
    rest_boost,
)

TOL = 1e-12


def test_metric_and_product():
    g = metric()
    assert torch.equal(torch.diag(g), torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=torch.float64))
    a = torch.tensor([5.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    b = torch.tensor([4.0, -1.0, 0.5, 2.0], dtype=torch.float64)
    assert minkowski(a, b).item() == 20.0 + 1.0 - 1.0 - 6.0


def test_random_lorentz_is_lorentz_and_seeded():
    L = random_lorentz(200, max_rapidity=6.0, seed=7)
    assert lorentz_violation(L).max() < 1e-9 * torch.cosh(torch.tensor(6.0)) ** 2
    assert (L[:, 0, 0] >= 1.0).all()  # orthochronous
    assert torch.allclose(torch.linalg.det(L), torch.ones(200, dtype=torch.float64), atol=1e-6)
    assert torch.equal(L, random_lorentz(200, max_rapidity=6.0, seed=7))
    assert not torch.equal(L, random_lorentz(200, max_rapidity=6.0, seed=8))
    # rapidity range respected: gamma = L00 of the boost part <= cosh(y) * (rotations keep L00)
    assert (L[:, 0, 0] <= math.cosh(6.0) * (1 + 1e-12)).all()
    exact = random_lorentz(50, max_rapidity=2.0, exact_rapidity=True, seed=1)
    assert torch.allclose(exact[:, 0, 0], torch.full((50,), math.cosh(2.0), dtype=torch.float64))


def test_inverse_via_metric():
    L = random_lorentz(100, max_rapidity=3.0, seed=3)
    eye = torch.eye(4, dtype=torch.float64).expand(100, 4, 4)
    assert (inverse(L) @ L - eye).abs().max() < 1e-10
    assert (L @ inverse(L) - eye).abs().max() < 1e-10


def test_rest_boost_brings_to_rest():
    gen = torch.Generator().manual_seed(0)
    p = torch.randn(100, 3, generator=gen, dtype=torch.float64) * 300
    m = torch.rand(100, generator=gen, dtype=torch.float64) * 50 + 1
    v = torch.cat([torch.sqrt((p**2).sum(-1) + m**2)[:, None], p], -1)
    B = rest_boost(v)
    r = apply(B, v)
    assert torch.allclose(r[:, 0], m, rtol=1e-10)
    assert r[:, 1:].abs().max() < 1e-9 * v[:, 0].max()
    assert lorentz_violation(B).max() < 1e-10
    # exact for a vector at rest
    rest = torch.tensor([[3.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    assert torch.equal(rest_boost(rest)[0], torch.eye(4, dtype=torch.float64))


def test_boosts_compose_and_rotations():
    y = torch.tensor([0.3, 1.2], dtype=torch.float64)
    assert torch.allclose(boost_along_z(y[0]) @ boost_along_z(y[1]), boost_along_z(y.sum()))
    R = beam_rotation(torch.tensor(0.7, dtype=torch.float64))
    assert lorentz_violation(R) < TOL
    p = torch.tensor([10.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    q = apply(R, p)
    assert q[3] == p[3] and torch.isclose(q[1:3].norm(), p[1:3].norm())
