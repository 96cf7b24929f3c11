"""Invariant per-constituent input features for the float32 backbone, built in float64.

For constituent ``i`` with local frame ``L_i`` (reference coordinates in jet-mass units, see
:mod:`lloca_hep.core.framechoices`) the backbone sees

* ``asinh`` of the components of ``L_i p_i`` and ``L_i J`` (J: the jet momentum over its mass),
* ``log(E_i + EPS_ENERGY)`` with ``E_i = <p_i, J>`` the energy in the jet rest frame,
* ``log(M / JET_MASS_REFERENCE_GEV)``.

Constituent masses enter only through ``L_i p_i``, never through a logarithm: the float64 rounding
of strongly boosted inputs changes small masses squared by up to 1e-4 relative.

With learned or global frames all of them are Lorentz invariant, and none is a raw small
invariant: the logarithms carry jet-scale regularisers, so float64 rounding of soft constituents
cannot reach the float32 network. ``asinh`` is linear for the bounded canonical components and
compresses the large lab-frame components of identity/random frames.
"""

from __future__ import annotations

import torch

from .framechoices import LocalFrames
from .framesnet import EPS_ENERGY
from .lorentz import minkowski

__all__ = ["NUM_LOCAL_FEATURES", "local_features"]

#: Width of :func:`local_features`.
NUM_LOCAL_FEATURES = 10


def local_features(frames: LocalFrames, mask: torch.Tensor) -> torch.Tensor:
    """``(B, N, NUM_LOCAL_FEATURES)`` float64 features; padded constituents get zeros."""
    p, jet = frames.p4, frames.jet
    B, N, _ = p.shape
    jet_b = jet[:, None].expand(B, N, 4)
    if frames.frames is None:
        lp, lj = p, jet_b
    else:
        both = torch.matmul(frames.frames, torch.stack([p, jet_b], dim=-1))  # (B, N, 4, 2)
        lp, lj = both[..., 0], both[..., 1]
    energy = minkowski(p, jet_b).clamp_min(0)
    feats = torch.cat(
        [
            torch.asinh(lp),
            torch.asinh(lj),
            torch.log(energy + EPS_ENERGY)[..., None],
            frames.log_mass[:, None, None].expand(B, N, 1),
        ],
        dim=-1,
    )
    return feats * mask[..., None].to(feats.dtype)
