"""Canonical jet rest frame: the boost-aware first step of every equivariant model, float64.

For an exactly Lorentz-invariant model any input-dependent Lorentz transformation of a jet is
harmless, and applying one that brings the jet to rest bounds every boost that later stages see.
:func:`to_jet_rest_frame` boosts each jet (and, optionally, reference vectors) to the jet rest
frame and divides momenta by the jet mass, so that canonical momenta are dimensionless with the
jet at ``(1, 0, 0, 0)``. Under a Lorentz transformation ``Λ`` of the input, canonical momenta
change only by a rotation (the Wigner rotation of ``Λ`` and the jet boost).

Degenerate jets (zero mass, e.g. one massless constituent or only collinear massless ones, and
fully padded rows) are regularised deterministically with
:func:`lloca_hep.core.frames.regularise_timelike`; their outputs are finite but the canonical
frame is then only defined up to that regulariser.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .frames import ABSOLUTE_FLOOR, DEGENERATE_TIME_SHIFT, TIMELIKE_TOL, regularise_timelike
from .kernels import can_use_kernels, rest_boosts_numba
from .lorentz import apply_per_jet, minkowski, rest_boost

__all__ = ["MIN_JET_SCALE_GEV", "CanonicalJets", "jet_momentum", "to_jet_rest_frame"]

#: Smallest jet mass scale (GeV) used to make momenta dimensionless (fully padded rows).
MIN_JET_SCALE_GEV = 1e-6


@dataclass
class CanonicalJets:
    """Jets in their canonical rest frame.

    Attributes:
        p4: ``(B, N, 4)`` float64 constituent momenta in the jet rest frame divided by the jet mass
            (padded entries are zero).
        boost: ``(B, 4, 4)`` float64 pure boosts (lab GeV -> rest-frame GeV).
        scale: ``(B,)`` float64 jet mass in GeV (regularised for degenerate jets).
        references: ``(B, R, 4)`` float64 reference vectors in the rest frame, each normalised to
            unit energy there (``<r, P> / M = 1``), or ``None``.
    """

    p4: torch.Tensor
    boost: torch.Tensor
    scale: torch.Tensor
    references: torch.Tensor | None = None


def jet_momentum(p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of the real constituents' momenta: ``(B, N, 4)``, ``(B, N)`` -> ``(B, 4)`` (GeV)."""
    return (p4 * mask[..., None].to(p4.dtype)).sum(-2)


def to_jet_rest_frame(
    p4: torch.Tensor, mask: torch.Tensor, references: torch.Tensor | None = None
) -> CanonicalJets:
    """Boost jets to their rest frame and divide by the jet mass, in float64.

    Args:
        p4: ``(B, N, 4)`` constituent momenta (E, px, py, pz) in GeV (cast to float64).
        mask: ``(B, N)`` bool, True for real constituents.
        references: optional ``(B, R, 4)`` or ``(R, 4)`` lab-frame reference vectors (GeV or
            dimensionless; only their directions and ratios matter after normalisation).
    """
    p4 = p4.to(torch.float64)
    maskf = mask[..., None].to(torch.float64)
    if can_use_kernels(p4):  # one numba pass, same rules
        boost, mass = rest_boosts_numba(
            jet_momentum(p4, mask),
            timelike_tol=TIMELIKE_TOL,
            time_shift=DEGENERATE_TIME_SHIFT,
            floor=ABSOLUTE_FLOOR,
        )
        scale = mass.clamp_min(MIN_JET_SCALE_GEV)
    else:
        jet = regularise_timelike(jet_momentum(p4, mask))
        boost = rest_boost(jet)
        scale = torch.sqrt(minkowski(jet, jet)).clamp_min(MIN_JET_SCALE_GEV)
    canon = apply_per_jet(boost, p4) * maskf / scale[:, None, None]
    refs = None
    if references is not None:
        if references.dim() == 2:
            references = references.expand(p4.shape[0], *references.shape)
        refs = apply_per_jet(boost, references.to(torch.float64))
        refs = refs / refs[..., :1].clamp_min(MIN_JET_SCALE_GEV)
    return CanonicalJets(p4=canon, boost=boost, scale=scale, references=refs)
