"""Tensorial message passing: messages re-expressed with ``L_i L_j^{-1}`` on every edge.

A message from ``j`` to ``i`` carries tensors expressed in frame ``j``. Before ``i`` uses it, it is
re-expressed in frame ``i`` with ``rho(L_i L_j^{-1})``. Edges connect each constituent to its
``k`` nearest neighbours *within the same jet* under a Lorentz-invariant distance (computed in
float64): ``d_ij = <u_i, u_j>`` with ``u = p / E`` the unit-energy direction in the jet frame
(``1 - cos`` of the opening angle in the jet rest frame for massless constituents).

The per-edge matrices are formed once per forward pass from the relative frames
``T_i = L_i L_J^{-1}`` as ``T_i T_j^{-1} = L_i L_j^{-1}`` (the per-jet frame cancels), in float64,
then cast to the network dtype.
"""

from __future__ import annotations

import torch
from torch import nn

from .framesnet import EPS_ENERGY, EPS_PAIR
from .lorentz import inverse, minkowski

__all__ = ["TensorialMessagePassing", "edge_frames", "edge_invariants", "knn_neighbours"]

#: Distance given to padded partners and to the constituent itself (never chosen first).
FAR = 1e30


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x (B, N, ...)`` gathered at ``idx (B, N, k)`` -> ``(B, N, k, ...)``."""
    B, N, k = idx.shape
    flat = idx.reshape(B, N * k)
    g = torch.gather(
        x, 1, flat.view(B, N * k, *([1] * (x.dim() - 2))).expand(B, N * k, *x.shape[2:])
    )
    return g.view(B, N, k, *x.shape[2:])


def knn_neighbours(
    p: torch.Tensor, jet: torch.Tensor, mask: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(B, N, k')`` of the nearest real neighbours and their validity mask.

    ``p (B, N, 4)`` and ``jet (B, 4)`` in jet-mass units (any frame), ``mask (B, N)``;
    ``k' = min(k, N - 1)``. The constituent itself is excluded; jets with fewer than ``k' + 1``
    constituents get invalid (masked) slots. Ties are broken by index (deterministic).
    """
    B, N, _ = p.shape
    kk = max(min(k, N - 1), 1)
    p = p.to(torch.float64)
    energy = minkowski(p, jet[:, None].to(torch.float64)).clamp_min(0)
    u = p / (energy + EPS_ENERGY)[..., None]
    d = torch.einsum("bia,bja->bij", u * u.new_tensor([1.0, -1.0, -1.0, -1.0]), u)
    bad = ~(mask[:, :, None] & mask[:, None, :]) | torch.eye(N, dtype=torch.bool, device=p.device)
    d = d.masked_fill(bad, FAR)
    dist, idx = torch.topk(d, kk, dim=-1, largest=False, sorted=True)
    valid = (dist < FAR) & mask[..., None]
    return idx, valid


def edge_frames(relative: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor | None:
    """Per-edge ``L_i L_j^{-1} = T_i T_j^{-1}`` ``(B, N, k, 4, 4)`` float64, or None for identity."""
    if relative is None:
        return None
    rel = relative.to(torch.float64)
    return rel[:, :, None] @ _gather(inverse(rel), idx)


def edge_invariants(p: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``(B, N, k, 1)`` float64 ``log(m_ij^2 + EPS_PAIR)`` of each edge (jet-mass units)."""
    p = p.to(torch.float64)
    pj = _gather(p, idx)
    s = p[:, :, None] + pj
    return torch.log(minkowski(s, s).clamp_min(0) + EPS_PAIR)[..., None]


class TensorialMessagePassing(nn.Module):
    """One residual message-passing layer with scalar and vector messages.

    Each constituent's features ``h (B, N, dim)`` (local-frame components, invariant) give
    ``num_vectors`` four-vectors in its own frame; on each edge those of ``j`` are mapped into frame
    ``i`` with ``L_i L_j^{-1}``. An MLP of ``[h_i, h_j, edge scalars, mapped vectors of j]`` gives the
    message; messages are averaged over valid neighbours and added to ``h_i``.
    """

    def __init__(
        self, dim: int, num_vectors: int = 4, num_edge_scalars: int = 1, hidden: int | None = None
    ):
        super().__init__()
        hidden = hidden or dim
        self.num_vectors = num_vectors
        self.norm = nn.LayerNorm(dim)
        self.to_vectors = nn.Linear(dim, 4 * num_vectors)
        # first MLP layer split in a per-receiver part (shared by its k edges) and a per-edge part
        self.self_proj = nn.Linear(dim, hidden)
        self.edge_proj = nn.Linear(dim + num_edge_scalars + 4 * num_vectors, hidden, bias=False)
        self.out = nn.Sequential(nn.GELU(), nn.Linear(hidden, dim))

    def forward(
        self,
        h: torch.Tensor,
        edges: torch.Tensor | None,
        idx: torch.Tensor,
        valid: torch.Tensor,
        edge_scalars: torch.Tensor,
    ) -> torch.Tensor:
        """``h (B, N, dim)``, ``edges (B, N, k, 4, 4)`` or None, ``idx``/``valid (B, N, k)``,
        ``edge_scalars (B, N, k, S)`` -> ``(B, N, dim)``."""
        x = self.norm(h)
        vec = self.to_vectors(x).unflatten(-1, (self.num_vectors, 4))  # frame j components
        vj = _gather(vec, idx)  # (B, N, k, nv, 4)
        if edges is not None:
            vj = torch.matmul(vj, edges.to(h.dtype).transpose(-1, -2))  # into frame i
        xj = _gather(x, idx)
        msg_in = torch.cat([xj, edge_scalars.to(h.dtype), vj.flatten(-2)], -1)
        msg = self.out(self.edge_proj(msg_in) + self.self_proj(x)[:, :, None])
        w = valid[..., None].to(h.dtype)
        agg = (msg * w).sum(2) / w.sum(2).clamp_min(1.0)
        return h + agg
