"""LLoCa graph network: tensorial message passing over k-nearest-neighbour graphs within each jet."""

from __future__ import annotations

import torch
from torch import nn

from ..core.framechoices import LocalFrames
from ..core.messages import TensorialMessagePassing, edge_frames, edge_invariants, knn_neighbours
from ._common import LocalFrameModel

__all__ = ["LLoCaGraphNet"]


class LLoCaGraphNet(LocalFrameModel):
    """Lorentz-equivariant graph network (EdgeConv-like) with messages mapped by ``L_i L_j^{-1}``.

    Called as ``model(p4, mask, scalars=None)`` with ``p4`` float64 ``(B, N, 4)`` (E, px, py,
    pz) in GeV, ``mask`` bool ``(B, N)`` and optional per-particle ``scalars (B, N, S)`` (see
    :class:`~lloca_hep.models._common.LocalFrameModel`); returns logits ``(B,)`` (or
    ``(B, num_classes)``).

    Args:
        frames, symmetry_breaking, num_classes: as for
            :class:`lloca_hep.models.LLoCaTransformer`.
        hidden: width; layers: message-passing layers; neighbours: k of the kNN graph (chosen with
            a Lorentz-invariant distance, in float64); num_vectors: vector channels per message.
        frames_hidden, frames_key_dim, random_max_rapidity: frames-net size / random-frame range.
        num_scalars: invariant per-particle scalars (backbone + frames net);
        num_frames_scalars: non-invariant ones (frames net only).
    """

    def __init__(
        self,
        frames: str = "learned",
        symmetry_breaking: bool | str = True,
        num_classes: int | None = None,
        hidden: int = 64,
        layers: int = 3,
        neighbours: int = 16,
        num_vectors: int = 4,
        frames_hidden: int = 32,
        frames_key_dim: int = 8,
        random_max_rapidity: float = 1.0,
        num_scalars: int = 0,
        num_frames_scalars: int = 0,
    ):
        super().__init__(
            dict(
                frames=frames,
                symmetry_breaking=symmetry_breaking,
                num_classes=num_classes,
                hidden=hidden,
                layers=layers,
                neighbours=neighbours,
                num_vectors=num_vectors,
                frames_hidden=frames_hidden,
                frames_key_dim=frames_key_dim,
                random_max_rapidity=random_max_rapidity,
                num_scalars=num_scalars,
                num_frames_scalars=num_frames_scalars,
            )
        )
        self.neighbours = neighbours
        self.layers = nn.ModuleList(
            TensorialMessagePassing(hidden, num_vectors, num_edge_scalars=1) for _ in range(layers)
        )
        self._add_head(hidden, num_classes)

    def backbone(
        self, h: torch.Tensor, lf: LocalFrames, mask: torch.Tensor, dtype: torch.dtype
    ) -> torch.Tensor:
        idx, valid = knn_neighbours(lf.p4, lf.jet, mask, self.neighbours)
        # identity/random/global frames: all constituents share one frame, edges are identities
        edges = edge_frames(lf.relative, idx)
        edges = None if edges is None else edges.to(dtype)
        escal = edge_invariants(lf.p4, idx).to(dtype)
        for layer in self.layers:
            h = layer(h, edges, idx, valid, escal)
        return h
