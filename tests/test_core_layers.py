"""Layer-level equivariance: frames net vectors, LLoCa attention, tensorial message passing."""

import torch

from lloca_hep.core.attention import LLoCaAttention
from lloca_hep.core.framesnet import FramesNet
from lloca_hep.core.lorentz import apply, inverse, minkowski, random_lorentz
from lloca_hep.core.messages import (
    TensorialMessagePassing,
    edge_frames,
    edge_invariants,
    knn_neighbours,
)
from lloca_hep.core.restframe import to_jet_rest_frame
from lloca_hep.core.testing import toy_jets

#: gamma bound of the local frames relative to the jet rest frame (velocity <= 1/2).
MAX_LOCAL_GAMMA = 1.0 / (1.0 - 0.25) ** 0.5


def _jets(n=8, N=30, seed=0):
    return toy_jets(n, N, min_constituents=N // 2, seed=seed)


def test_frames_net_vectors_equivariant_and_bounded():
    torch.manual_seed(0)
    p, mask = _jets()
    net = FramesNet(num_references=0, num_global=0)
    lam = random_lorentz(8, max_rapidity=2.0, seed=1)
    jet = p.new_zeros(8, 4)
    # lab frame, jet-mass units: vectors must be exactly equivariant in any frame
    J = (p * mask[..., None]).sum(1)
    M = minkowski(J, J).sqrt()
    pl, jl = p / M[:, None, None], J / M[:, None]
    with torch.no_grad():
        v = net(pl, mask, jl)
        vt = net(apply(lam[:, None], pl), mask, apply(lam, jl))
    expect = apply(lam[:, None, None], v)
    err = (vt - expect).abs().amax(-1) / expect.abs().amax(-1)
    assert err[mask].max() < 1e-10
    # canonical coordinates: v0 time-like with bounded boost relative to the jet
    c = to_jet_rest_frame(p, mask)
    jet[:, 0] = 1.0
    with torch.no_grad():
        v = net(c.p4, mask, jet)
    v0 = v[:, :, 0][mask]
    gamma = v0[:, 0] / minkowski(v0, v0).sqrt()
    assert (gamma <= MAX_LOCAL_GAMMA + 1e-12).all()
    assert torch.isfinite(v).all()


def test_frames_net_chunks_of_jets_equal_one_pass(monkeypatch):
    import lloca_hep.core.framesnet as framesnet

    torch.manual_seed(0)
    p, mask = _jets(n=11)
    c = to_jet_rest_frame(p, mask, torch.eye(4, dtype=torch.float64)[:3])
    jet = p.new_zeros(11, 4)
    jet[:, 0] = 1.0
    net = FramesNet(num_references=3, num_scalars=2, num_global=1)
    scalars, logm = torch.randn(11, 30, 2, dtype=torch.float64), torch.randn(11, 1)
    with torch.no_grad():
        whole = net(c.p4, mask, jet, c.references, scalars, logm)
        monkeypatch.setattr(framesnet, "CHUNK_ELEMENTS", 2 * 30 * 33 * 4)  # 4 jets per chunk
        chunked = net(c.p4, mask, jet, c.references, scalars, logm)
    torch.testing.assert_close(chunked, whole, rtol=1e-14, atol=1e-14)


def _relative_frames(B, N, seed):
    """Random relative frames T_i (bounded boosts) and a global change Λ."""
    T = random_lorentz(B * N, max_rapidity=0.5, seed=seed).view(B, N, 4, 4)
    lam = random_lorentz(B, max_rapidity=1.5, seed=seed + 1)
    return T, lam


def test_attention_invariant_under_change_of_common_frame():
    torch.manual_seed(0)
    B, N, dim = 4, 12, 32
    attn = LLoCaAttention(dim, heads=2, head_reps="4x0n+2x1n+1x2n").double()
    x = torch.randn(B, N, dim, dtype=torch.float64)
    mask = torch.ones(B, N, dtype=torch.bool)
    mask[1, 7:] = False
    T, lam = _relative_frames(B, N, 3)
    out = attn(x, T, mask)
    # T_i -> T_i Λ^{-1}: L_i L_j^{-1} unchanged, so the local-frame output is unchanged
    out2 = attn(x, T @ inverse(lam)[:, None], mask)
    assert torch.allclose(out, out2, atol=1e-10)
    # ... but genuinely depends on the relative frames (vector and tensor channels are used)
    T3 = T.clone()
    T3[:, 0] = T3[:, 0] @ random_lorentz(B, max_rapidity=0.5, seed=9)
    assert not torch.allclose(out, attn(x, T3, mask), atol=1e-6)
    # padding: junk in padded slots does not matter for real ones
    xj = x.clone()
    xj[1, 7:] = 5.0
    assert torch.allclose(attn(xj, T, mask)[mask], out[mask], atol=1e-12)


def test_attention_uses_minkowski_products():
    """With identity frames, the vector channels contract with the metric g."""
    torch.manual_seed(1)
    attn = LLoCaAttention(8, heads=1, head_reps="1x1n").double()
    signs = attn.key_signs
    assert torch.equal(signs, torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=torch.float64))


def test_message_passing_invariant_under_change_of_common_frame():
    torch.manual_seed(2)
    p, mask = _jets(4, 20, seed=5)
    c = to_jet_rest_frame(p, mask)
    jet = p.new_zeros(4, 4)
    jet[:, 0] = 1.0
    idx, valid = knn_neighbours(c.p4, jet, mask, 6)
    assert not valid[~mask].any()
    layer = TensorialMessagePassing(16, num_vectors=3).double()
    h = torch.randn(4, 20, 16, dtype=torch.float64)
    T, lam = _relative_frames(4, 20, 7)
    es = edge_invariants(c.p4, idx)
    out = layer(h, edge_frames(T, idx), idx, valid, es)
    out2 = layer(h, edge_frames(T @ inverse(lam)[:, None], idx), idx, valid, es)
    assert torch.allclose(out, out2, atol=1e-10)
    e = edge_frames(T, idx)
    # the edge matrix is L_i L_j^{-1}
    i, j = 3, idx[0, 3, 1]
    assert torch.allclose(e[0, 3, 1], T[0, i] @ inverse(T[0, j]), atol=1e-12)
    assert not torch.allclose(out, layer(h, None, idx, valid, es), atol=1e-6)


def test_knn_is_lorentz_invariant_and_within_jet():
    p, mask = _jets(6, 25, seed=8)
    J = (p * mask[..., None]).sum(1)
    M = minkowski(J, J).sqrt()
    lam = random_lorentz(6, max_rapidity=2.0, seed=4)
    idx, valid = knn_neighbours(p / M[:, None, None], J / M[:, None], mask, 5)
    pt = apply(lam[:, None], p)
    idx2, _ = knn_neighbours(pt / M[:, None, None], apply(lam, J) / M[:, None], mask, 5)
    assert torch.equal(idx[valid], idx2[valid])
    chosen_real = torch.gather(mask, 1, idx.flatten(1)).view_as(idx)
    assert chosen_real[valid].all()
