"""Synthetic test jets: reproducible, realistic kinematics, soft constituents, degenerate set."""

import torch

from lloca_hep.core.lorentz import minkowski
from lloca_hep.core.testing import SOFT_PT_GEV, degenerate_jets, toy_jets


def test_toy_jets_kinematics_and_reproducibility():
    p, mask = toy_jets(200, 64, min_constituents=20, num_soft=3, seed=4)
    p2, mask2 = toy_jets(200, 64, min_constituents=20, num_soft=3, seed=4)
    assert torch.equal(p, p2) and torch.equal(mask, mask2)
    assert not torch.equal(p, toy_jets(200, 64, min_constituents=20, seed=5)[0])
    n = mask.sum(1)
    assert n.min() >= 20 and n.max() <= 64
    jet = (p * mask[..., None]).sum(1)
    pt = jet[:, 1:3].norm(dim=-1)
    assert ((pt > 549.9) & (pt < 650.1)).all()
    assert (minkowski(jet, jet) > 0).all()
    cpt = p[..., 1:3].norm(dim=-1)
    soft = (cpt - SOFT_PT_GEV).abs() < 1e-9
    assert (soft.sum(1) >= 3).all()
    m2 = minkowski(p, p)[mask]
    assert (m2.abs() < 1e-6 * p[..., 0][mask] ** 2).any()  # massless constituents present
    assert (m2 > 0.01).any()  # and massive ones
    assert (p[~mask] == 0).all()
    # sorted by pT within each jet
    assert (torch.where(mask, cpt, -1.0).diff(dim=1) <= 1e-9).all()


def test_degenerate_jets_shape():
    p, mask = degenerate_jets()
    assert p.shape == (8, 6, 4) and mask.shape == (8, 6)
    assert not mask[6].any() and mask[7].all()
