"""Make any torch module Lorentz-equivariant by local canonicalisation.

:class:`LorentzCanonicalized` wraps a user backbone ``backbone(x, mask)``: it computes frames
(float64) with :class:`~lloca_hep.core.framechoices.FrameChoice`, hands the backbone only
frame-invariant inputs (the local features of :func:`~lloca_hep.core.features.local_features`,
optionally followed by the user's own invariant per-constituent scalars), and maps the backbone's
tensor outputs back to the lab frame with the inverse frames. The result is exactly Lorentz
equivariant whatever the backbone does: scalar outputs are invariant, vector outputs transform as
``out(Λ p) = Λ out(p)``, rank-2 outputs as ``Λ T Λ^T``.

Example (a deep-sets backbone predicting one four-vector per jet)::

    >>> import torch
    >>> from torch import nn
    >>> from lloca_hep.core.canonicalize import LorentzCanonicalized
    >>> from lloca_hep.core.features import NUM_LOCAL_FEATURES
    >>> from lloca_hep.core.lorentz import apply, random_lorentz
    >>> from lloca_hep.core.testing import toy_jets
    >>> class DeepSets(nn.Module):
    ...     def __init__(self, n_in, n_out):
    ...         super().__init__()
    ...         self.phi, self.rho = nn.Linear(n_in, 32), nn.Linear(32, n_out)
    ...     def forward(self, x, mask):
    ...         h = torch.relu(self.phi(x)) * mask[..., None]
    ...         return self.rho(h.sum(1))
    >>> model = LorentzCanonicalized(DeepSets(NUM_LOCAL_FEATURES, 4), out_reps="1x1n").double()
    >>> p4, mask = toy_jets(3, 20)
    >>> lam = random_lorentz(3, max_rapidity=2.0, seed=0)
    >>> out = model(p4, mask)                       # (3, 4), lab frame
    >>> out_t = model(apply(lam[:, None], p4), mask)
    >>> bool(torch.allclose(out_t, apply(lam, out), atol=1e-8))
    True

With ``per_particle=True`` the backbone returns ``(B, N, out_reps.dim)`` and each constituent's
output is mapped back with its own frame (padded constituents get zeros); otherwise it returns ``(B, out_reps.dim)`` mapped back
with the per-jet frame. ``frames="global"`` (default) gives every constituent the same canonical
frame, which suits a backbone that mixes constituents freely; ``"learned"`` uses LLoCa local frames.
Outputs are in the units the backbone produces (inputs are in jet-mass units); ``rescale=True``
multiplies rank-r blocks by ``M**r`` (M: jet mass in GeV).
"""

from __future__ import annotations

import torch
from torch import nn

from .features import local_features
from .framechoices import FrameChoice
from .lorentz import inverse
from .reps import TensorReps

__all__ = ["LorentzCanonicalized"]


class LorentzCanonicalized(nn.Module):
    """Wrap ``backbone(x (B, N, F), mask (B, N)) -> (B, D)`` or ``(B, N, D)`` equivariantly.

    Args:
        backbone: any ``nn.Module``; receives ``x`` in the dtype of its first parameter
            (float32 unless converted), ``F = NUM_LOCAL_FEATURES + S`` with ``S`` user scalars.
        out_reps: tensor representation of the backbone output (``D = out_reps.dim``).
        frames: "global" (default), "learned", "identity", "rotations", "beam_rotations", "random".
        symmetry_breaking: frames-net inputs, see :mod:`lloca_hep.core.symmetry_breaking`.
        per_particle: whether the backbone returns one output per constituent.
        rescale: multiply rank-r output blocks by ``M**r``.
        num_scalars: when > 0, the ``scalars`` given to :meth:`forward` (then exactly this
            many, Lorentz scalars) feed the frames net too; with 0 they reach the backbone only.
    """

    def __init__(
        self,
        backbone: nn.Module,
        out_reps: str = "1x0n",
        frames: str = "global",
        symmetry_breaking: bool | str = False,
        per_particle: bool = False,
        rescale: bool = False,
        num_scalars: int = 0,
    ):
        super().__init__()
        self.backbone = backbone
        self.out_reps = TensorReps(out_reps)
        self.num_scalars = int(num_scalars)
        self.frame_choice = FrameChoice(frames, symmetry_breaking, num_scalars=self.num_scalars)
        self.per_particle = per_particle
        self.rescale = rescale

    def _backbone_dtype(self) -> torch.dtype:
        for p in self.backbone.parameters():
            return p.dtype
        return torch.float32

    def forward(
        self, p4: torch.Tensor, mask: torch.Tensor, scalars: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``p4 (B, N, 4)`` GeV, ``mask (B, N)`` bool, optional invariant ``scalars (B, N, S)``.

        Returns float64 ``(B, D)`` (or ``(B, N, D)`` with ``per_particle``) in the lab frame.
        """
        lf = self.frame_choice(p4, mask, scalars if self.num_scalars else None)
        x = local_features(lf, mask)
        if scalars is not None:
            x = torch.cat([x, scalars.to(x.dtype) * mask[..., None].to(x.dtype)], -1)
        out = self.backbone(x.to(self._backbone_dtype()), mask).to(torch.float64)
        if self.per_particle:
            back = inverse(lf.lab_frames())
            scale = lf.scale[:, None]
        else:
            back = inverse(lf.lab_jet_frame())
            scale = lf.scale
        out = self.out_reps.transform(out, back)
        if self.rescale and not self.out_reps.is_scalar_only:
            out = out * self._rank_scale(scale, out)
        if self.per_particle:
            out = out * mask[..., None].to(out.dtype)  # padded constituents: zeros
        return out

    def _rank_scale(self, scale: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        powers = []
        for b in self.out_reps.blocks:
            powers.extend([b.rank] * b.dim)
        pw = torch.tensor(powers, dtype=out.dtype, device=out.device)
        return scale[..., None] ** pw
