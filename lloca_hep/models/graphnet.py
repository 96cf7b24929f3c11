"""LLoCa graph network: tensorial message passing over k-nearest-neighbour graphs within each jet."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..core.features import NUM_LOCAL_FEATURES, local_features
from ..core.framechoices import FrameChoice
from ..core.messages import TensorialMessagePassing, edge_frames, edge_invariants, knn_neighbours
from ._common import ClassifierHead, check_inputs, empty_logits, masked_mean, pad_empty

__all__ = ["LLoCaGraphNet"]


class LLoCaGraphNet(nn.Module):
    """Lorentz-equivariant graph network (EdgeConv-like) with messages mapped by ``L_i L_j^{-1}``.

    Called as ``model(p4, mask)`` with ``p4`` float64 ``(B, N, 4)`` (E, px, py, pz) in GeV and
    ``mask`` bool ``(B, N)``; returns logits ``(B,)`` (or ``(B, num_classes)``).

    Args:
        frames, symmetry_breaking, num_classes: as for
            :class:`lloca_hep.models.LLoCaTransformer`.
        hidden: width; layers: message-passing layers; neighbours: k of the kNN graph (chosen with
            a Lorentz-invariant distance, in float64); num_vectors: vector channels per message.
        frames_hidden, frames_key_dim, random_max_rapidity: frames-net size / random-frame range.
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
    ):
        super().__init__()
        self._config: dict[str, Any] = dict(
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
        )
        self.neighbours = neighbours
        self.frame_choice = FrameChoice(
            frames,
            symmetry_breaking,
            frames_hidden=frames_hidden,
            frames_key_dim=frames_key_dim,
            random_max_rapidity=random_max_rapidity,
            random_max_angle=math.pi,
        )
        self.embed = nn.Linear(NUM_LOCAL_FEATURES, hidden)
        self.layers = nn.ModuleList(
            TensorialMessagePassing(hidden, num_vectors, num_edge_scalars=1) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(hidden)
        self.head = ClassifierHead(hidden, num_classes)

    @property
    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor keyword arguments."""
        return dict(self._config)

    def forward(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        check_inputs(p4, mask)
        dtype = self.embed.weight.dtype
        if p4.shape[0] == 0:
            return empty_logits(self.head.num_classes, dtype, p4.device)
        p4, mask = pad_empty(p4, mask)
        lf = self.frame_choice(p4, mask)
        idx, valid = knn_neighbours(lf.p4, lf.jet, mask, self.neighbours)
        # identity/random/global frames: all constituents share one frame, edges are identities
        edges = edge_frames(lf.relative, idx)
        edges = None if edges is None else edges.to(dtype)
        escal = edge_invariants(lf.p4, idx).to(dtype)
        h = self.embed(local_features(lf, mask).to(dtype))
        for layer in self.layers:
            h = layer(h, edges, idx, valid, escal)
        return self.head(masked_mean(self.norm(h), mask))
