"""LLoCa transformer: a plain pre-LayerNorm transformer made Lorentz-equivariant by local frames."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..core.attention import AttentionFrames, LLoCaAttention, prepare_attention_frames
from ..core.features import NUM_LOCAL_FEATURES, local_features
from ..core.framechoices import FrameChoice
from ._common import ClassifierHead, check_inputs, empty_logits, masked_mean, pad_empty

__all__ = ["LLoCaTransformer", "TransformerBlock"]


class TransformerBlock(nn.Module):
    """``x + Attn(LN x)`` then ``x + MLP(LN x)``; the attention is :class:`LLoCaAttention`."""

    def __init__(self, dim: int, heads: int, head_reps: str, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = LLoCaAttention(dim, heads, head_reps)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim)
        )

    def forward(
        self, x: torch.Tensor, frames: AttentionFrames | None, mask: torch.Tensor
    ) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), frames, mask)
        return x + self.mlp(self.norm2(x))


class LLoCaTransformer(nn.Module):
    """Lorentz-equivariant jet tagger: local frames + transformer with tensorial attention.

    Called as ``model(p4, mask)`` with ``p4`` float64 ``(B, N, 4)`` (E, px, py, pz) in GeV and
    ``mask`` bool ``(B, N)``; returns logits ``(B,)`` (or ``(B, num_classes)``).

    The frames (float64) are computed by :class:`lloca_hep.core.framechoices.FrameChoice`; the
    backbone runs in the dtype of its parameters (float32 by default, ``model.double()`` for
    float64 throughout).

    Args:
        frames: "learned" (LLoCa), "global", "random" (augmentation in training), "identity"
            (the plain transformer), "rotations", "beam_rotations".
        symmetry_breaking: reference vectors and non-invariant scalars for the frames net
            (True/False/"references"/"scalars").
        num_classes: None for binary logits ``(B,)``, else the number of classes.
        hidden: backbone width; blocks: number of transformer blocks; heads: attention heads;
        head_reps: tensor representation of one head; mlp_ratio: MLP expansion.
        frames_hidden, frames_key_dim: frames-net size; random_max_rapidity: random-frame range.
    """

    def __init__(
        self,
        frames: str = "learned",
        symmetry_breaking: bool | str = True,
        num_classes: int | None = None,
        hidden: int = 64,
        blocks: int = 4,
        heads: int = 4,
        head_reps: str = "8x0n+2x1n",
        mlp_ratio: int = 2,
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
            blocks=blocks,
            heads=heads,
            head_reps=head_reps,
            mlp_ratio=mlp_ratio,
            frames_hidden=frames_hidden,
            frames_key_dim=frames_key_dim,
            random_max_rapidity=random_max_rapidity,
        )
        self.frame_choice = FrameChoice(
            frames,
            symmetry_breaking,
            frames_hidden=frames_hidden,
            frames_key_dim=frames_key_dim,
            random_max_rapidity=random_max_rapidity,
            random_max_angle=math.pi,
        )
        self.embed = nn.Linear(NUM_LOCAL_FEATURES, hidden)
        self.blocks = nn.ModuleList(
            TransformerBlock(hidden, heads, head_reps, mlp_ratio) for _ in range(blocks)
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
        h = self.embed(local_features(lf, mask).to(dtype))
        frames = prepare_attention_frames(lf.relative, dtype)
        for block in self.blocks:
            h = block(h, frames, mask)
        return self.head(masked_mean(self.norm(h), mask))
