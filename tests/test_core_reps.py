"""Tensor representations: parsing, dimensions, transformation, Minkowski contraction."""

import pytest
import torch

from lloca_hep.core.lorentz import random_lorentz
from lloca_hep.core.reps import TensorReps


def test_parse_and_dims():
    r = TensorReps("8x0n+2x1n")
    assert (r.dim, r.num_scalars, r.num_vectors, r.num_rank2) == (16, 8, 2, 0)
    r2 = TensorReps("4x0n+1x1n+1x2p")
    assert r2.dim == 4 + 4 + 16 and r2.num_rank2 == 1
    assert TensorReps(r2) == r2
    for bad in ["", "8x", "2x3n", "ax0n", "0x1n"]:
        with pytest.raises(ValueError):
            TensorReps(bad)


def test_transform_vector_and_rank2():
    reps = TensorReps("2x0n+1x1n+1x2n+1x1n")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, reps.dim, generator=gen, dtype=torch.float64)
    L = random_lorentz(5, max_rapidity=1.0, seed=2)
    y = reps.transform(x, L)
    assert torch.equal(y[:, :2], x[:, :2])
    assert torch.allclose(y[:, 2:6], torch.einsum("bij,bj->bi", L, x[:, 2:6]))
    t = x[:, 6:22].reshape(5, 4, 4)
    assert torch.allclose(y[:, 6:22].reshape(5, 4, 4), L @ t @ L.transpose(1, 2))
    assert torch.allclose(y[:, 22:26], torch.einsum("bij,bj->bi", L, x[:, 22:26]))
    # full Minkowski contraction with lowered indices is invariant
    z = torch.randn(5, reps.dim, generator=gen, dtype=torch.float64)
    s = reps.metric_signs(torch.float64)
    before = (x * s * z).sum(-1)
    after = (y * s * reps.transform(z, L)).sum(-1)
    assert torch.allclose(before, after, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError):
        reps.transform(x[:, :5], L)
