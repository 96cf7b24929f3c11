"""Plain (non-equivariant) jet transformer on the usual jet-relative constituent features.

This is the baseline a physicist would build without any Lorentz machinery: each constituent is
described by its momentum relative to the jet axis (computed in float64 from ``p4``), embedded,
passed through standard pre-LayerNorm transformer blocks with padding-masked
:func:`torch.nn.functional.scaled_dot_product_attention`, mean-pooled and classified.

Per-constituent features (:data:`FEATURE_NAMES`, padded slots are zero):

``log pT``, ``log E`` (GeV), ``log(pT / pT_jet)``, ``log(E / E_jet)``, ``Δη``, ``Δφ`` (wrapped to
(-pi, pi]), ``ΔR = sqrt(Δη² + Δφ²)``.

``Δη`` is taken as the rapidity difference ``y_i - y_jet`` (equal to the pseudorapidity difference
for massless constituents at fixed jet rapidity), so that it is exactly invariant under
longitudinal boosts; ``Δφ`` is the signed angle between the transverse momenta of the constituent
and the jet. Hence ``pT``, ``Δη``, ``Δφ`` and ``ΔR`` are invariant under rotations about the beam
axis and boosts along it; ``E`` and ``E_jet`` are invariant only under the rotations. With
``energy_features=False`` the two energy features are dropped and the whole model is invariant
under both. No feature is invariant under a generic Lorentz boost.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.functional import scaled_dot_product_attention

from ..core.attention import key_padding_mask
from ..core.restframe import jet_momentum
from ..core.safe import safe_atan2, safe_hypot
from ._common import (
    ClassifierHead,
    check_inputs,
    check_scalars,
    empty_logits,
    masked_mean,
    pad_empty,
)

__all__ = [
    "ENERGY_FEATURES",
    "FEATURE_NAMES",
    "MIN_ENERGY_GEV",
    "MIN_LIGHTCONE_GEV",
    "MIN_PT_GEV",
    "PlainJetTransformer",
    "jet_relative_features",
]

#: Names of the per-constituent input features, in column order.
FEATURE_NAMES: tuple[str, ...] = (
    "log_pt",
    "log_e",
    "log_pt_rel",
    "log_e_rel",
    "delta_eta",
    "delta_phi",
    "delta_r",
)
#: The columns that depend on energies (not invariant under longitudinal boosts).
ENERGY_FEATURES: tuple[str, ...] = ("log_e", "log_e_rel")
#: Floor (GeV) on constituent and jet pT inside logarithms and ratios.
MIN_PT_GEV = 1e-3
#: Floor (GeV) on constituent and jet energies inside logarithms and ratios.
MIN_ENERGY_GEV = 1e-3
#: Floor (GeV) on the light-cone components ``E ± pz`` inside the rapidity logarithm.
MIN_LIGHTCONE_GEV = 1e-9


def _rapidity(p: torch.Tensor) -> torch.Tensor:
    """Rapidity ``0.5 log((E + pz) / (E - pz))`` of ``p (..., 4)`` -> ``(...)``."""
    plus = (p[..., 0] + p[..., 3]).clamp_min(MIN_LIGHTCONE_GEV)
    minus = (p[..., 0] - p[..., 3]).clamp_min(MIN_LIGHTCONE_GEV)
    return 0.5 * (torch.log(plus) - torch.log(minus))


def jet_relative_features(
    p4: torch.Tensor, mask: torch.Tensor, energy_features: bool = True
) -> torch.Tensor:
    """Jet-relative constituent features in float64.

    Args:
        p4: ``(B, N, 4)`` constituent four-momenta (E, px, py, pz) in GeV.
        mask: ``(B, N)`` bool, True for real constituents.
        energy_features: include ``log E`` and ``log(E / E_jet)``.

    Returns:
        ``(B, N, F)`` float64 with the columns of :data:`FEATURE_NAMES` (without
        :data:`ENERGY_FEATURES` if ``energy_features`` is False); padded slots are zero.
    """
    p = p4.to(torch.float64)
    m = mask.to(torch.float64)
    p = torch.where(mask[..., None], p, torch.zeros_like(p))  # padded slots may hold anything
    jet = jet_momentum(p, mask)[:, None, :]  # (B, 1, 4)

    pt = safe_hypot(p[..., 1], p[..., 2])
    pt_jet = safe_hypot(jet[..., 1], jet[..., 2]).clamp_min(MIN_PT_GEV)
    e = p[..., 0]
    e_jet = jet[..., 0].clamp_min(MIN_ENERGY_GEV)
    log_pt = torch.log(pt.clamp_min(MIN_PT_GEV))
    log_e = torch.log(e.clamp_min(MIN_ENERGY_GEV))

    d_eta = _rapidity(p) - _rapidity(jet)
    cross = jet[..., 1] * p[..., 2] - jet[..., 2] * p[..., 1]
    dot = jet[..., 1] * p[..., 1] + jet[..., 2] * p[..., 2]
    d_phi = safe_atan2(cross, dot)  # in (-pi, pi]
    d_r = safe_hypot(d_eta, d_phi)

    cols = {
        "log_pt": log_pt,
        "log_e": log_e,
        "log_pt_rel": log_pt - torch.log(pt_jet),
        "log_e_rel": log_e - torch.log(e_jet),
        "delta_eta": d_eta,
        "delta_phi": d_phi,
        "delta_r": d_r,
    }
    names = [n for n in FEATURE_NAMES if energy_features or n not in ENERGY_FEATURES]
    return torch.stack([cols[n] for n in names], dim=-1) * m[..., None]


class PlainBlock(nn.Module):
    """Pre-LayerNorm block: ``x + Attn(LN x)`` then ``x + MLP(LN x)`` with ordinary multi-head
    self-attention (padding-masked); ``x (B, N, dim)`` -> ``(B, N, dim)``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden={dim} must be divisible by heads={heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim)
        )

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(self.norm1(x)).view(B, N, 3, self.heads, C // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, N, D)
        a = scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + self.proj(a.transpose(1, 2).reshape(B, N, C))
        return x + self.mlp(self.norm2(x))


class PlainJetTransformer(nn.Module):
    """Non-equivariant transformer on jet-relative constituent features (a standard baseline).

    Called as ``model(p4, mask, scalars=None)`` with ``p4`` float64 ``(B, N, 4)`` (E, px, py,
    pz) in GeV, ``mask`` bool ``(B, N)`` and optional ``scalars (B, N, S)``; returns logits ``(B,)`` (or ``(B, num_classes)``). The features
    (:func:`jet_relative_features`) are computed in float64, the network runs in the dtype of its
    parameters.

    Args:
        num_classes: None for binary logits ``(B,)``, else the number of classes.
        hidden: width; blocks: number of transformer blocks; heads: attention heads (must
            divide ``hidden``); mlp_ratio: MLP expansion.
        energy_features: include ``log E`` and ``log(E / E_jet)`` (then the model is invariant
            under rotations about the beam axis only; without them also under longitudinal
            boosts).
        num_scalars, num_frames_scalars: per-particle scalars ``(B, N, S)`` appended to the
            features (both kinds alike: this network has no frames).
    """

    def __init__(
        self,
        num_classes: int | None = None,
        hidden: int = 64,
        blocks: int = 4,
        heads: int = 4,
        mlp_ratio: int = 2,
        energy_features: bool = True,
        num_scalars: int = 0,
        num_frames_scalars: int = 0,
    ):
        super().__init__()
        self._config: dict[str, Any] = dict(
            num_classes=num_classes,
            hidden=hidden,
            blocks=blocks,
            heads=heads,
            mlp_ratio=mlp_ratio,
            energy_features=energy_features,
            num_scalars=num_scalars,
            num_frames_scalars=num_frames_scalars,
        )
        self.energy_features = bool(energy_features)
        self.n_scalars = int(num_scalars) + int(num_frames_scalars)
        n_features = len(FEATURE_NAMES) - (0 if self.energy_features else len(ENERGY_FEATURES))
        self.embed = nn.Linear(n_features + self.n_scalars, hidden)
        self.blocks = nn.ModuleList(PlainBlock(hidden, heads, mlp_ratio) for _ in range(blocks))
        self.norm = nn.LayerNorm(hidden)
        self.head = ClassifierHead(hidden, num_classes)

    @property
    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor keyword arguments."""
        return dict(self._config)

    def forward(self, p4: torch.Tensor, mask: torch.Tensor,
                scalars: torch.Tensor | None = None) -> torch.Tensor:
        check_inputs(p4, mask)
        scalars = check_scalars(scalars, mask, self.n_scalars)
        dtype = self.embed.weight.dtype
        if p4.shape[0] == 0:
            return empty_logits(self.head.num_classes, dtype, p4.device)
        p4, mask = pad_empty(p4, mask)
        x = jet_relative_features(p4, mask, self.energy_features)
        if scalars is not None:
            x = torch.cat([x, scalars.to(x.dtype) * mask[..., None].to(x.dtype)], dim=-1)
        h = self.embed(x.to(dtype))
        attn_mask = key_padding_mask(mask)
        for block in self.blocks:
            h = block(h, attn_mask)
        return self.head(masked_mean(self.norm(h), mask))
