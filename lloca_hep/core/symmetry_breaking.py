"""Symmetry breaking for collider data: reference vectors and non-invariant scalars.

Detectors are not Lorentz invariant. Following LLoCa, the frames net (and only the frames net)
may see

* reference vectors: the two beam directions ``(1, 0, 0, +1)``, ``(1, 0, 0, -1)`` and the time
  direction ``(1, 0, 0, 0)`` (lab frame). They are transformed with the same canonical boost as the
  jet, so the model is exactly equivariant under Lorentz transformations of momenta *and*
  references together, and invariant under rotations about the beam axis;
* non-invariant scalars per constituent (lab frame): ``log pT``, ``log E`` (GeV), and the
  pseudorapidity, azimuth and angular distance relative to the jet axis (all invariant under
  rotations about the beam axis).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .safe import safe_atan2, safe_hypot

__all__ = [
    "BEAM_REFERENCES",
    "LOG_FLOOR_GEV",
    "SymmetryBreaking",
    "non_invariant_scalars",
    "reference_vectors",
]

#: Lab-frame reference vectors (E, px, py, pz): beam +z, beam -z, time.
BEAM_REFERENCES = ((1.0, 0.0, 0.0, 1.0), (1.0, 0.0, 0.0, -1.0), (1.0, 0.0, 0.0, 0.0))
#: Floor (GeV) inside logarithms of pT and E (keeps padded/zero momenta finite).
LOG_FLOOR_GEV = 1e-3
#: Number of non-invariant scalars per constituent.
NUM_NON_INVARIANT_SCALARS = 5


def reference_vectors(dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """The beam and time reference vectors, shape ``(3, 4)``."""
    return torch.tensor(BEAM_REFERENCES, dtype=dtype, device=device)


def _eta_phi(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pt = safe_hypot(p[..., 1], p[..., 2])
    eta = torch.asinh(p[..., 3] / pt.clamp_min(LOG_FLOOR_GEV))
    phi = safe_atan2(p[..., 2], p[..., 1])
    return pt, eta, phi


def non_invariant_scalars(p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Lab-frame scalars ``(B, N, 5)``: log pT, log E, d-eta, d-phi, d-R to the jet axis.

    ``p4 (B, N, 4)`` in GeV (float64 recommended), ``mask (B, N)`` bool. Padded entries are zero.
    """
    p4 = p4.to(torch.float64)
    maskf = mask.to(p4.dtype)
    jet = (p4 * maskf[..., None]).sum(-2)
    pt, eta, phi = _eta_phi(p4)
    _, jeta, jphi = _eta_phi(jet[:, None])
    deta = eta - jeta
    dphi = torch.remainder(phi - jphi + torch.pi, 2 * torch.pi) - torch.pi
    dr = safe_hypot(deta, dphi)
    feats = torch.stack(
        [
            torch.log(pt.clamp_min(LOG_FLOOR_GEV)),
            torch.log(p4[..., 0].clamp_min(LOG_FLOOR_GEV)),
            deta,
            dphi,
            dr,
        ],
        dim=-1,
    )
    return feats * maskf[..., None]


@dataclass(frozen=True)
class SymmetryBreaking:
    """Which symmetry-breaking inputs the frames net sees.

    ``SymmetryBreaking.parse(True)`` turns on both reference vectors and non-invariant scalars;
    ``False`` neither; ``"references"`` / ``"scalars"`` one of them.
    """

    references: bool = True
    scalars: bool = True

    @classmethod
    def parse(cls, value: bool | str | SymmetryBreaking) -> SymmetryBreaking:
        if isinstance(value, SymmetryBreaking):
            return value
        if value is True or value == "both":
            return cls(True, True)
        if value is False or value == "none" or value is None:
            return cls(False, False)
        if value == "references":
            return cls(True, False)
        if value == "scalars":
            return cls(False, True)
        raise ValueError(
            f"symmetry_breaking must be True, False, 'references', 'scalars' or 'both', got {value!r}"
        )

    @property
    def enabled(self) -> bool:
        return self.references or self.scalars

    @property
    def num_references(self) -> int:
        return len(BEAM_REFERENCES) if self.references else 0

    @property
    def num_scalars(self) -> int:
        return NUM_NON_INVARIANT_SCALARS if self.scalars else 0
