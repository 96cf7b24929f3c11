"""Shared helpers for the models: input checks, masked pooling, output heads, and the skeleton
of the local-frame models (:class:`LocalFrameModel`)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..core.features import NUM_LOCAL_FEATURES, local_features
from ..core.framechoices import FrameChoice, LocalFrames

__all__ = [
    "ClassifierHead",
    "LocalFrameModel",
    "check_inputs",
    "check_scalars",
    "empty_logits",
    "full_precision",
    "masked_mean",
    "pad_empty",
]


def check_inputs(p4: torch.Tensor, mask: torch.Tensor) -> None:
    """Raise a clear error unless ``p4`` is ``(B, N, 4)`` and ``mask`` a bool ``(B, N)``, and every
    real constituent has a finite four-momentum (padded slots may hold anything)."""
    if p4.dim() != 3 or p4.shape[-1] != 4:
        raise ValueError(f"p4 must have shape (B, N, 4) of (E, px, py, pz), got {tuple(p4.shape)}")
    if mask.shape != p4.shape[:2]:
        raise ValueError(f"mask must have shape {tuple(p4.shape[:2])}, got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor, got {mask.dtype}")
    if torch.compiler.is_compiling():  # traced graphs (torch.export) carry no data checks
        return
    bad = mask & ~torch.isfinite(p4).all(-1)
    if bool(bad.any()):
        jet, const = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"non-finite four-momentum {p4[jet, const].tolist()} in jet {jet}, constituent {const}"
            f" ({int(bad.sum())} bad constituents in this batch)"
        )


@contextlib.contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """Switch off an enclosing :func:`torch.autocast` of ``device``'s type (``--amp``) for the
    frames and the canonicalisation, which keep their float64 precision; a no-op (no context
    entered, so traced and exported graphs stay as they are) when autocast is off."""
    if torch.is_autocast_enabled(device.type):
        with torch.autocast(device.type, enabled=False):
            yield
    else:
        yield


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``h (B, N, C)`` over real constituents -> ``(B, C)`` (zero for empty jets)."""
    m = mask[..., None].to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


class ClassifierHead(nn.Module):
    """LayerNorm -> Linear -> GELU -> Linear; ``(B, C_in)`` -> ``(B,)`` or ``(B, num_classes)``."""

    def __init__(self, dim: int, num_classes: int | None):
        super().__init__()
        self.num_classes = num_classes
        out = 1 if num_classes is None else int(num_classes)
        self.net = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, out)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        return y[:, 0] if self.num_classes is None else y


def pad_empty(p4: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Give ``N = 0`` inputs one padded slot, so that they behave like fully padded jets."""
    if p4.shape[1] == 0:
        p4 = p4.new_zeros(p4.shape[0], 1, 4)
        mask = mask.new_zeros(mask.shape[0], 1)
    return p4, mask


def check_scalars(scalars: torch.Tensor | None, mask: torch.Tensor, expected: int) -> torch.Tensor | None:
    """``scalars (B, N, expected)`` checked (None when ``expected`` is 0; given scalars are
    then refused), with an ``N = 0`` input padded to one slot as :func:`pad_empty` does."""
    if expected == 0:
        if scalars is not None and scalars.shape[-1] != 0:
            raise ValueError(f"this model takes no per-particle scalars, got {scalars.shape[-1]}"
                             " (build it with num_scalars=S)")
        return None
    if scalars is None:
        raise ValueError(f"this model takes {expected} per-particle scalars (B, N, {expected}); "
                         "got none")
    if scalars.dim() != 3 or scalars.shape[-1] != expected or scalars.shape[0] != mask.shape[0]:
        raise ValueError(f"scalars must have shape (B, N, {expected}) with B = "
                         f"{mask.shape[0]}, got {tuple(scalars.shape)}")
    if scalars.shape[1] == 0:
        scalars = scalars.new_zeros(scalars.shape[0], 1, expected)
    elif scalars.shape[1] != mask.shape[1]:
        raise ValueError(f"scalars have {scalars.shape[1]} constituents, the mask "
                         f"{mask.shape[1]}")
    return scalars


def empty_logits(num_classes: int | None, dtype: torch.dtype, device) -> torch.Tensor:
    """Logits for an empty batch: ``(0,)`` or ``(0, num_classes)``."""
    shape = (0,) if num_classes is None else (0, int(num_classes))
    return torch.zeros(shape, dtype=dtype, device=device)


class LocalFrameModel(nn.Module):
    """Skeleton shared by the LLoCa taggers: frames -> embedded local features -> backbone ->
    LayerNorm -> masked mean over constituents -> :class:`ClassifierHead`.

    Called as ``model(p4, mask, scalars=None)`` with ``p4`` float64 ``(B, N, 4)`` (E, px, py,
    pz) in GeV, ``mask`` bool ``(B, N)`` and, when the config has ``num_scalars`` +
    ``num_frames_scalars`` = S > 0, per-particle ``scalars (B, N, S)`` (float32 or float64):
    the first ``num_scalars`` are Lorentz scalars (charge, particle ID, ...) fed to the frames
    net and, next to the local features, to the backbone; the last ``num_frames_scalars`` are
    non-invariant and feed the frames net only. Returns logits ``(B,)`` (or
    ``(B, num_classes)``).

    A subclass calls ``super().__init__(config)`` with its full constructor keyword arguments
    (which must include ``frames``, ``symmetry_breaking``, ``hidden``, ``frames_hidden``,
    ``frames_key_dim`` and ``random_max_rapidity``; registers ``frame_choice`` and ``embed``),
    then registers its backbone, then calls :meth:`_add_head` (registers ``norm`` and ``head``);
    this keeps the parameter names and the order in which they are initialised. It implements
    :meth:`backbone`, which maps the embedded features ``h (B, N, hidden)`` to ``(B, N, hidden)``.

    Under :func:`torch.autocast` (training with ``--amp``, :mod:`lloca_hep.training.amp`) the
    frames and the local features are computed with autocast switched off (float64); the
    embedding, backbone and head run in the autocast dtype.
    """

    frame_choice: FrameChoice
    embed: nn.Linear
    norm: nn.LayerNorm
    head: ClassifierHead

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self._config: dict[str, Any] = dict(config)
        self.frame_choice = FrameChoice(
            config["frames"],
            config["symmetry_breaking"],
            frames_hidden=config["frames_hidden"],
            frames_key_dim=config["frames_key_dim"],
            random_max_rapidity=config["random_max_rapidity"],
            random_max_angle=math.pi,
            num_scalars=self.num_scalars + self.num_frames_scalars,
        )
        self.embed = nn.Linear(NUM_LOCAL_FEATURES + self.num_scalars, config["hidden"])

    @property
    def num_scalars(self) -> int:
        """Invariant per-particle scalars (backbone and frames net)."""
        return int(self._config.get("num_scalars", 0))

    @property
    def num_frames_scalars(self) -> int:
        """Non-invariant per-particle scalars (frames net only)."""
        return int(self._config.get("num_frames_scalars", 0))

    def _add_head(self, hidden: int, num_classes: int | None) -> None:
        """Register the final LayerNorm and the classifier head (after the backbone)."""
        self.norm = nn.LayerNorm(hidden)
        self.head = ClassifierHead(hidden, num_classes)

    @property
    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor keyword arguments."""
        return dict(self._config)

    def backbone(
        self, h: torch.Tensor, lf: LocalFrames, mask: torch.Tensor, dtype: torch.dtype
    ) -> torch.Tensor:
        """The model-specific layers: ``h (B, N, hidden)`` -> ``(B, N, hidden)`` in ``dtype``."""
        raise NotImplementedError

    def forward(self, p4: torch.Tensor, mask: torch.Tensor,
                scalars: torch.Tensor | None = None) -> torch.Tensor:
        check_inputs(p4, mask)
        n_inv = self.num_scalars
        scalars = check_scalars(scalars, mask, n_inv + self.num_frames_scalars)
        dtype = self.embed.weight.dtype
        if p4.shape[0] == 0:
            return empty_logits(self.head.num_classes, dtype, p4.device)
        p4, mask = pad_empty(p4, mask)
        with full_precision(p4.device):  # frames and local features: float64 under --amp
            lf = self.frame_choice(p4, mask, scalars)
            x = local_features(lf, mask)
            if n_inv:
                assert scalars is not None
                inv = scalars[..., :n_inv].to(x.dtype) * mask[..., None].to(x.dtype)
                x = torch.cat([x, inv], dim=-1)
        h = self.embed(x.to(dtype))  # the backbone runs under the caller's autocast, if any
        h = self.backbone(h, lf, mask, dtype)
        return self.head(masked_mean(self.norm(h), mask))
