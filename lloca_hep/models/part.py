"""ParT (Particle Transformer, Qu, Li, Qian, arXiv:2202.03772) and its Lorentz-equivariant twin.

:class:`ParticleTransformer` is the paper's network, written here from the paper: a particle
embedding MLP on jet-relative constituent features, particle-attention blocks whose attention
logits get a learned per-head bias from the pair interaction features ``ln ΔR, ln kT, ln z,
ln m²`` (embedded pointwise), then class-attention blocks with a class token. Its pair features
are invariant under rotations about the beam and boosts along it; its particle features carry
energies, so the network is not invariant under either (nor under general Lorentz
transformations).

:class:`LLoCaParT` is the same network made exactly Lorentz-equivariant by local
canonicalisation (arXiv:2505.20280): each constituent gets a local frame ``L_i``
(:class:`~lloca_hep.core.framechoices.FrameChoice`), the particle inputs are the local-frame
features of :func:`~lloca_hep.core.features.local_features`, the attention is tensorial LLoCa
attention (heads such as ``"8x0n+2x1n"``), and the pair features of the pair ``(i, j)`` are
those of ParT computed from ``L_i p_i`` and ``L_i p_j``: both momenta in the frame of the
receiving (attending) particle, hence Lorentz invariant. The class token lives in the per-jet
frame ``L_J``. With ``frames="identity"`` it is the non-equivariant "identity twin".

Sizes at the paper's configuration (the defaults): embedding (128, 512, 128), pair embedding
(64, 64, 64), 8 heads, 8 particle blocks, 2 class blocks, MLP ratio 4.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..core.attention import prepare_attention_frames
from ..core.features import NUM_LOCAL_FEATURES, local_features
from ..core.framechoices import FrameChoice, LocalFrames
from ._common import check_inputs, check_scalars, empty_logits, pad_empty
from ._layers import check_widths
from ._part_layers import PairFeatures, ParTBackbone, pair_features
from .plain import FEATURE_NAMES, jet_relative_features

__all__ = ["LLoCaParT", "ParticleTransformer", "local_pair_features"]

#: The paper's configuration.
EMBED_DIMS = (128, 512, 128)
PAIR_EMBED_DIMS = (64, 64, 64)
HEADS = 8
BLOCKS = 8
CLASS_BLOCKS = 2
MLP_RATIO = 4
DROPOUT = 0.1


def _check_dropout(dropout: float) -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
    return float(dropout)


class ParticleTransformer(nn.Module):
    """ParT: ``model(p4, mask, scalars=None)`` -> logits ``(B,)`` (or ``(B, num_classes)``).

    ``p4`` float64 ``(B, N, 4)`` (E, px, py, pz) in GeV, ``mask`` bool ``(B, N)``, optional
    per-particle ``scalars (B, N, S)`` appended to the particle features (both kinds alike:
    this network has no frames). Particle features: :func:`~lloca_hep.models.plain.
    jet_relative_features` (log pT, log E, their ratios to the jet, Δη, Δφ, ΔR); pair features
    in float64 from the lab momenta; the network runs in the dtype of its parameters.

    Args:
        num_classes: None for binary logits ``(B,)``, else the number of classes.
        embed_dims: widths of the particle embedding MLP; the last is the block width.
        pair_embed_dims: hidden widths of the pointwise pair embedding (output: one per head).
        heads: attention heads (must divide the block width); blocks: particle-attention
            blocks; class_blocks: class-attention blocks; mlp_ratio: MLP expansion.
        dropout: dropout in the particle-attention blocks (training only).
        num_scalars, num_frames_scalars: per-particle scalars ``S = num_scalars +
            num_frames_scalars``.
    """

    def __init__(
        self,
        num_classes: int | None = None,
        embed_dims: Sequence[int] = EMBED_DIMS,
        pair_embed_dims: Sequence[int] = PAIR_EMBED_DIMS,
        heads: int = HEADS,
        blocks: int = BLOCKS,
        class_blocks: int = CLASS_BLOCKS,
        mlp_ratio: int = MLP_RATIO,
        dropout: float = DROPOUT,
        num_scalars: int = 0,
        num_frames_scalars: int = 0,
    ):
        super().__init__()
        embed = check_widths("embed_dims", embed_dims)
        pair = check_widths("pair_embed_dims", pair_embed_dims, allow_empty=True)
        self._config: dict[str, Any] = dict(
            num_classes=num_classes, embed_dims=embed, pair_embed_dims=pair, heads=heads,
            blocks=blocks, class_blocks=class_blocks, mlp_ratio=mlp_ratio,
            dropout=_check_dropout(dropout), num_scalars=num_scalars,
            num_frames_scalars=num_frames_scalars)
        if embed[-1] % heads:
            raise ValueError(f"embed_dims[-1]={embed[-1]} must be divisible by heads={heads}")
        self.n_scalars = int(num_scalars) + int(num_frames_scalars)
        self.net = ParTBackbone(len(FEATURE_NAMES) + self.n_scalars, embed, pair, heads,
                                f"{embed[-1] // heads}x0n", blocks, class_blocks, mlp_ratio,
                                float(dropout), num_classes)

    @property
    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor keyword arguments."""
        return dict(self._config)

    def forward(self, p4: torch.Tensor, mask: torch.Tensor,
                scalars: torch.Tensor | None = None) -> torch.Tensor:
        check_inputs(p4, mask)
        scalars = check_scalars(scalars, mask, self.n_scalars)
        dtype = self.net.dtype
        if p4.shape[0] == 0:
            return empty_logits(self.net.num_classes, dtype, p4.device)
        p4, mask = pad_empty(p4, mask)
        x = jet_relative_features(p4, mask)
        if scalars is not None:
            x = torch.cat([x, scalars.to(x.dtype) * mask[..., None].to(x.dtype)], dim=-1)
        p = torch.where(mask[..., None], p4.to(torch.float64), 0.0)

        def pairs(lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
            valid = mask[:, lo:hi, None] & mask[:, None]
            return pair_features(p[:, lo:hi, None], p[:, None], valid), valid

        return self.net(x.to(dtype), mask, pairs, None, None)


def _distinct_pairs(mask: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """``(B, hi - lo, N)``: both particles real and ``i != j``."""
    rows = torch.arange(lo, hi, device=mask.device)[:, None]
    cols = torch.arange(mask.shape[1], device=mask.device)[None, :]
    return mask[:, lo:hi, None] & mask[:, None] & (rows != cols)


def local_pair_features(lf: LocalFrames, mask: torch.Tensor) -> PairFeatures:
    """The pair features of ParT from ``L_i p_i`` and ``L_i p_j`` (GeV, float64) as
    ``pairs(lo, hi) -> (features (B, hi - lo, N, 4), valid (B, hi - lo, N))`` for the
    receiving particles ``i`` in ``lo:hi``.

    Self-pairs get zero features: theirs are constants except ``ln m² = ln 4 m_i²``, which for a
    massless constituent is pure float64 rounding of the (boosted) input, up to 1e-5 GeV² after
    a rapidity-6 boost. With one frame shared by all constituents (identity, global, random
    frames) the momenta are transformed once, O(N); otherwise ``L_i p_j`` is formed for the
    pairs of each chunk.
    """
    p = lf.p4 * lf.scale[:, None, None]  # reference coordinates in GeV
    frames = lf.frames
    if lf.relative is None:  # one frame for the whole jet
        q = p if frames is None else torch.einsum("bnij,bnj->bni", frames, p)

        def shared(lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
            valid = _distinct_pairs(mask, lo, hi)
            return pair_features(q[:, lo:hi, None], q[:, None], valid), valid

        return shared
    assert frames is not None

    def local(lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        L = frames[:, lo:hi]  # (B, R, 4, 4)
        qj = torch.einsum("brij,bnj->brni", L, p)  # every p_j in the frame of i
        qi = torch.einsum("brij,brj->bri", L, p[:, lo:hi])[:, :, None]
        valid = _distinct_pairs(mask, lo, hi)
        return pair_features(qi, qj, valid), valid

    return local


class LLoCaParT(nn.Module):
    """Lorentz-equivariant ParT: ``model(p4, mask, scalars=None)`` -> logits ``(B,)`` (or
    ``(B, num_classes)``).

    ``p4`` float64 ``(B, N, 4)`` (E, px, py, pz) in GeV, ``mask`` bool ``(B, N)`` and, when
    ``num_scalars + num_frames_scalars = S > 0``, ``scalars (B, N, S)``: the first
    ``num_scalars`` are Lorentz scalars (frames net and particle embedding), the rest
    non-invariant (frames net only). Frames and pair features in float64, the network in the
    dtype of its parameters.

    Args:
        frames, symmetry_breaking, frames_hidden, frames_key_dim, random_max_rapidity: the
            frames, as for :class:`~lloca_hep.models.LLoCaTransformer`.
        num_classes, embed_dims, pair_embed_dims, heads, blocks, class_blocks, mlp_ratio,
            dropout: as for :class:`ParticleTransformer`.
        head_reps: tensor representation of one attention head (``"8x0n+2x1n"``: 8 scalars
            and 2 four-vectors, 16 components: with 8 heads the same widths as ParT's).
        num_scalars, num_frames_scalars: invariant / non-invariant per-particle scalars.
    """

    def __init__(
        self,
        frames: str = "learned",
        symmetry_breaking: bool | str = True,
        num_classes: int | None = None,
        embed_dims: Sequence[int] = EMBED_DIMS,
        pair_embed_dims: Sequence[int] = PAIR_EMBED_DIMS,
        heads: int = HEADS,
        head_reps: str = "8x0n+2x1n",
        blocks: int = BLOCKS,
        class_blocks: int = CLASS_BLOCKS,
        mlp_ratio: int = MLP_RATIO,
        dropout: float = DROPOUT,
        frames_hidden: int = 32,
        frames_key_dim: int = 8,
        random_max_rapidity: float = 1.0,
        num_scalars: int = 0,
        num_frames_scalars: int = 0,
    ):
        super().__init__()
        embed = check_widths("embed_dims", embed_dims)
        pair = check_widths("pair_embed_dims", pair_embed_dims, allow_empty=True)
        self._config: dict[str, Any] = dict(
            frames=frames, symmetry_breaking=symmetry_breaking, num_classes=num_classes,
            embed_dims=embed, pair_embed_dims=pair, heads=heads, head_reps=head_reps,
            blocks=blocks, class_blocks=class_blocks, mlp_ratio=mlp_ratio,
            dropout=_check_dropout(dropout), frames_hidden=frames_hidden,
            frames_key_dim=frames_key_dim, random_max_rapidity=random_max_rapidity,
            num_scalars=num_scalars, num_frames_scalars=num_frames_scalars)
        self.num_scalars = int(num_scalars)
        self.num_frames_scalars = int(num_frames_scalars)
        self.frame_choice = FrameChoice(
            frames, symmetry_breaking, frames_hidden=frames_hidden,
            frames_key_dim=frames_key_dim, random_max_rapidity=random_max_rapidity,
            num_scalars=self.num_scalars + self.num_frames_scalars)
        self.net = ParTBackbone(NUM_LOCAL_FEATURES + self.num_scalars, embed, pair, heads,
                                head_reps, blocks, class_blocks, mlp_ratio, float(dropout),
                                num_classes)

    @property
    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor keyword arguments."""
        return dict(self._config)

    def forward(self, p4: torch.Tensor, mask: torch.Tensor,
                scalars: torch.Tensor | None = None) -> torch.Tensor:
        check_inputs(p4, mask)
        n_inv = self.num_scalars
        scalars = check_scalars(scalars, mask, n_inv + self.num_frames_scalars)
        dtype = self.net.dtype
        if p4.shape[0] == 0:
            return empty_logits(self.net.num_classes, dtype, p4.device)
        p4, mask = pad_empty(p4, mask)
        lf = self.frame_choice(p4, mask, scalars)
        x = local_features(lf, mask)
        if n_inv:
            assert scalars is not None
            x = torch.cat([x, scalars[..., :n_inv].to(x.dtype) * mask[..., None].to(x.dtype)],
                          dim=-1)
        frames = prepare_attention_frames(lf.relative, dtype)
        class_frames = None
        if lf.relative is not None:  # the class token sits in the jet frame: T = identity
            eye = torch.eye(4, dtype=lf.relative.dtype, device=lf.relative.device)
            rel = torch.cat([eye.expand(lf.relative.shape[0], 1, 4, 4), lf.relative], dim=1)
            class_frames = prepare_attention_frames(rel, dtype)
        return self.net(x.to(dtype), mask, local_pair_features(lf, mask), frames, class_frames)
