"""One mechanism for every frame choice: learned, global, random, identity and subgroup frames.

:class:`FrameChoice` maps lab momenta ``(B, N, 4)`` (GeV, float64) and a mask to
:class:`LocalFrames`: momenta in *reference coordinates* (jet-mass units), one Lorentz matrix
``L_i`` per constituent acting on those coordinates, and the *relative* matrices
``T_i = L_i L_J^{-1}`` to a per-jet attention frame ``L_J`` used by the O(N) attention.

=================  ===================================  ==========================================
kind               reference coordinates                 frames
=================  ===================================  ==========================================
``learned``        jet rest frame / jet mass             ``L_i`` from the frames net (LLoCa)
``global``         jet rest frame / jet mass             one learned frame per jet (``L_i = L_J``)
``random``         lab / jet mass                        training: one random Λ per jet; eval: I
``identity``       lab / jet mass                        ``I`` (the plain, non-equivariant network)
``rotations``      lab / jet mass                        learned 3D rotations (SO(3) subgroup)
``beam_rotations`` lab / jet mass                        learned rotations about the beam axis
=================  ===================================  ==========================================

Everything here is float64. With ``learned`` and ``global`` frames the network input is exactly
Lorentz invariant (and, because the reference coordinates are the jet rest frame, the boosts
between ``L_i`` and ``L_J`` are bounded by gamma <= 1.16, see :mod:`lloca_hep.core.framesnet`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from . import frames_backward
from .autograd import use_autograd_function
from .frames import beam_rotation_frames, polar_frames, rotation_frames
from .framesnet import FramesNet
from .kernels import can_use_kernels, relative_frames_numba
from .lorentz import inverse, minkowski, random_lorentz
from .restframe import MIN_JET_SCALE_GEV, jet_momentum, to_jet_rest_frame
from .symmetry_breaking import SymmetryBreaking, non_invariant_scalars, reference_vectors

__all__ = ["FRAME_KINDS", "JET_MASS_REFERENCE_GEV", "FrameChoice", "LocalFrames"]

#: Supported frame choices.
FRAME_KINDS = ("learned", "global", "random", "identity", "rotations", "beam_rotations")
#: Jet masses enter the networks as log(M / JET_MASS_REFERENCE_GEV).
JET_MASS_REFERENCE_GEV = 100.0


@dataclass
class LocalFrames:
    """Output of :class:`FrameChoice` (all float64).

    Attributes:
        p4: ``(B, N, 4)`` momenta in reference coordinates, jet-mass units (padded entries zero).
        jet: ``(B, 4)`` jet momentum over jet mass in reference coordinates.
        frames: ``(B, N, 4, 4)`` local frames ``L_i`` or ``None`` for identity.
        relative: ``(B, N, 4, 4)`` ``T_i = L_i L_J^{-1}`` for the attention, or ``None`` when all
            ``T_i`` are the identity (identity, random and global frames).
        log_mass: ``(B,)`` ``log(M / JET_MASS_REFERENCE_GEV)``, Lorentz invariant.
        jet_frame: ``(B, 4, 4)`` the per-jet frame ``L_J`` in reference coordinates (identity,
            or the random Λ, for frame choices without one).
        lab_to_reference: ``(B, 4, 4)`` Lorentz part of the map from lab to reference coordinates
            (the jet rest-frame boost, or the identity); reference = lab_to_reference @ lab / scale.
        scale: ``(B,)`` jet mass in GeV (regularised) used as unit of the reference coordinates.
    """

    p4: torch.Tensor
    jet: torch.Tensor
    frames: torch.Tensor | None
    relative: torch.Tensor | None
    log_mass: torch.Tensor
    jet_frame: torch.Tensor
    lab_to_reference: torch.Tensor
    scale: torch.Tensor

    def lab_frames(self) -> torch.Tensor:
        """Lorentz matrices ``(B, N, 4, 4)`` from lab coordinates to each local frame."""
        B, N = self.p4.shape[:2]
        if self.frames is None:
            return self.lab_to_reference[:, None].expand(B, N, 4, 4)
        return self.frames @ self.lab_to_reference[:, None]

    def lab_jet_frame(self) -> torch.Tensor:
        """Lorentz matrices ``(B, 4, 4)`` from lab coordinates to the jet frame ``L_J``."""
        return self.jet_frame @ self.lab_to_reference


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(x.dtype)
    while m.dim() < x.dim():
        m = m[..., None]
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


class FrameChoice(nn.Module):
    """Frames for a batch of jets, for any of :data:`FRAME_KINDS`.

    Args:
        kind: one of :data:`FRAME_KINDS`.
        symmetry_breaking: ``True``/``False``/``"references"``/``"scalars"``; inputs for the frames
            net only (see :mod:`lloca_hep.core.symmetry_breaking`).
        frames_hidden, frames_key_dim: size of the :class:`FramesNet`.
        random_max_rapidity, random_max_angle: ranges of the random frames (training only).
        num_scalars: per-particle scalars given to :meth:`forward` (charge, particle ID, ...),
            fed to the frames net next to the symmetry-breaking scalars.
    """

    def __init__(
        self,
        kind: str = "learned",
        symmetry_breaking: bool | str = True,
        frames_hidden: int = 32,
        frames_key_dim: int = 8,
        random_max_rapidity: float = 1.0,
        random_max_angle: float = math.pi,
        num_scalars: int = 0,
    ):
        super().__init__()
        self.num_scalars = int(num_scalars)
        if kind not in FRAME_KINDS:
            raise ValueError(f"frames must be one of {FRAME_KINDS}, got {kind!r}")
        self.kind = kind
        self.sb = SymmetryBreaking.parse(symmetry_breaking)
        self.random_max_rapidity = random_max_rapidity
        self.random_max_angle = random_max_angle
        self.needs_net = kind in ("learned", "global", "rotations", "beam_rotations")
        self.canonical = kind in ("learned", "global")
        if self.needs_net:
            self.net = FramesNet(
                hidden=frames_hidden,
                key_dim=frames_key_dim,
                num_scalars=self.sb.num_scalars + self.num_scalars,
                num_references=self.sb.num_references,
                num_global=1,
            )

    def forward(self, p4: torch.Tensor, mask: torch.Tensor,
                scalars: torch.Tensor | None = None) -> LocalFrames:
        """``p4 (B, N, 4)`` lab momenta in GeV, ``mask (B, N)`` bool, ``scalars (B, N, S)``
        (``S = num_scalars``; None when 0) -> :class:`LocalFrames`."""
        p4 = p4.to(torch.float64)
        B = p4.shape[0]
        refs_lab = (
            reference_vectors(device=p4.device) if self.sb.references and self.needs_net else None
        )
        eye = torch.eye(4, dtype=p4.dtype, device=p4.device).expand(B, 4, 4)
        if self.canonical:
            cj = to_jet_rest_frame(p4, mask, refs_lab)
            p, refs, scale, to_ref = cj.p4, cj.references, cj.scale, cj.boost
            jet = p.new_zeros(B, 4)
            jet[:, 0] = 1.0
        else:
            to_ref = eye
            jet_lab = jet_momentum(p4, mask)
            m2 = minkowski(jet_lab, jet_lab)
            scale = torch.sqrt(m2.clamp_min(0)).clamp_min(MIN_JET_SCALE_GEV)
            p = p4 * mask[..., None].to(p4.dtype) / scale[:, None, None]
            jet = jet_lab / scale[:, None]
            refs = None
            if refs_lab is not None:
                r = refs_lab.expand(B, -1, -1)
                refs = r / minkowski(r, jet[:, None]).clamp_min(MIN_JET_SCALE_GEV)[..., None]
        log_mass = torch.log(scale / JET_MASS_REFERENCE_GEV)

        if not self.needs_net:
            frames, ref = None, eye
            if self.kind == "random" and self.training:
                ref = random_lorentz(
                    B, max_rapidity=self.random_max_rapidity, max_angle=self.random_max_angle
                ).to(p.device)
                frames = ref[:, None].expand(-1, p.shape[1], -1, -1)
            return LocalFrames(p, jet, frames, None, log_mass, ref, to_ref, scale)

        extra = non_invariant_scalars(p4, mask) if self.sb.scalars else None
        if self.num_scalars:
            if scalars is None or scalars.shape[-1] != self.num_scalars:
                raise ValueError(f"the frames net takes {self.num_scalars} per-particle scalars, "
                                 f"got {None if scalars is None else scalars.shape[-1]}")
            user = scalars.to(torch.float64) * mask[..., None].to(torch.float64)
            extra = user if extra is None else torch.cat([extra, user], dim=-1)
        v = self.net(p, mask, jet, refs, extra, log_mass[:, None])  # (B, N, 3, 4)
        vmean = _masked_mean(v, mask)  # (B, 3, 4)
        if self.kind == "global":
            ref = polar_frames(jet, vmean[:, 1], vmean[:, 2])
            frames = ref[:, None].expand(-1, p.shape[1], -1, -1)
            return LocalFrames(p, jet, frames, None, log_mass, ref, to_ref, scale)
        if self.kind == "learned":
            # local frames and the per-jet frame (v0 = J: no boost) in one call
            vj = torch.stack([jet, vmean[:, 1], vmean[:, 2]], dim=1)[:, None]
            allv = torch.cat([v, vj], dim=1)
            if use_autograd_function(allv) and frames_backward.supports(allv):
                # training on the CPU: numba forward, hand-written backward
                frames, ref, relative = frames_backward.learned_frames(allv)
                return LocalFrames(p, jet, frames, relative, log_mass, ref, to_ref, scale)
            both = polar_frames(allv[:, :, 0], allv[:, :, 1], allv[:, :, 2])
            frames, ref = both[:, :-1], both[:, -1]
        elif self.kind == "rotations":
            ref = rotation_frames(vmean[:, 1], vmean[:, 2])
            frames = rotation_frames(v[:, :, 1], v[:, :, 2])
        else:
            ref = beam_rotation_frames(vmean[:, 1])
            frames = beam_rotation_frames(v[:, :, 1])
        if can_use_kernels(frames, ref):
            relative = relative_frames_numba(frames, ref)
        else:
            relative = frames @ inverse(ref)[:, None]
        return LocalFrames(p, jet, frames, relative, log_mass, ref, to_ref, scale)
