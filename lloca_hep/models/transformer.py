"""LLoCa transformer: a plain pre-LayerNorm transformer made Lorentz-equivariant by local frames."""

from __future__ import annotations

import torch
from torch import nn

from ..core.attention import AttentionFrames, LLoCaAttention, prepare_attention_frames
from ..core.framechoices import LocalFrames
from ._common import LocalFrameModel

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


class LLoCaTransformer(LocalFrameModel):
    """Lorentz-equivariant jet tagger: local frames + transformer with tensorial attention.

    Called as ``model(p4, mask, scalars=None)`` with ``p4`` float64 ``(B, N, 4)`` (E, px, py,
    pz) in GeV, ``mask`` bool ``(B, N)`` and optional per-particle ``scalars (B, N, S)`` (see
    :class:`~lloca_hep.models._common.LocalFrameModel`); returns logits ``(B,)`` (or
    ``(B, num_classes)``).

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
        num_scalars: invariant per-particle scalars (backbone + frames net);
        num_frames_scalars: non-invariant ones (frames net only).
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
        num_scalars: int = 0,
        num_frames_scalars: int = 0,
    ):
        super().__init__(
            dict(
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
                num_scalars=num_scalars,
                num_frames_scalars=num_frames_scalars,
            )
        )
        self.blocks = nn.ModuleList(
            TransformerBlock(hidden, heads, head_reps, mlp_ratio) for _ in range(blocks)
        )
        self._add_head(hidden, num_classes)

    def backbone(
        self, h: torch.Tensor, lf: LocalFrames, mask: torch.Tensor, dtype: torch.dtype
    ) -> torch.Tensor:
        frames = prepare_attention_frames(lf.relative, dtype)
        for block in self.blocks:
            h = block(h, frames, mask)
        return h
