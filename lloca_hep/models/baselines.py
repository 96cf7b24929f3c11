"""Baselines with the common model call signature."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..core.framechoices import JET_MASS_REFERENCE_GEV
from ..core.lorentz import minkowski
from ..core.restframe import MIN_JET_SCALE_GEV, jet_momentum
from ._common import check_inputs

__all__ = ["JetMassTagger"]


class JetMassTagger(nn.Module):
    """Jet mass alone: ``log(M / 100 GeV)`` -> small MLP -> logits ``(B,)`` / ``(B, C)``.

    Lorentz invariant by construction (the jet mass is computed in float64). Per-particle
    ``scalars`` are accepted and ignored (the jet mass alone is the point of this baseline).
    """

    def __init__(self, num_classes: int | None = None, hidden: int = 16, num_scalars: int = 0,
                 num_frames_scalars: int = 0):
        super().__init__()
        self._config: dict[str, Any] = dict(num_classes=num_classes, hidden=hidden,
                                            num_scalars=num_scalars,
                                            num_frames_scalars=num_frames_scalars)
        self.num_classes = num_classes
        out = 1 if num_classes is None else int(num_classes)
        self.net = nn.Sequential(
            nn.Linear(1, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, out),
        )

    @property
    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor keyword arguments."""
        return dict(self._config)

    def forward(self, p4: torch.Tensor, mask: torch.Tensor,
                scalars: torch.Tensor | None = None) -> torch.Tensor:
        check_inputs(p4, mask)
        jet = jet_momentum(p4.to(torch.float64), mask)
        m = torch.sqrt(minkowski(jet, jet).clamp_min(0)).clamp_min(MIN_JET_SCALE_GEV)
        dtype = next(self.net.parameters()).dtype
        x = torch.log(m / JET_MASS_REFERENCE_GEV)[:, None].to(dtype)
        y = self.net(x)
        return y[:, 0] if self.num_classes is None else y
