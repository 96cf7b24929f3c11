"""The authors' reference LLoCa transformer (``lloca`` 2.0.0) behind our ``model(p4, mask)`` call.

Used only for comparisons (benchmarks, reference training runs): nothing in ``lloca_hep`` imports
``lloca``. Needs the ``bench`` extra plus ``lloca``'s own runtime dependencies, which
``pip install --no-deps lloca`` skips: ``pip install torch-geometric pelican-lite``.

The wrapper follows the reference's recipe: the frames net (``MLPVectors`` edge convolution inside
``LearnedPDFrames``) runs on the packed real constituents of each jet (edges within jets only),
in float64 by default; the ``lloca`` ``Transformer`` runs dense with a padding mask, in float32,
on local momenta ``L_i p_i`` (GeV / ``INPUT_SCALE_GEV``) with ``p_ref`` = the jet momentum for the
reference's ``preserve_variance`` rescaling; the head is a masked mean and a small MLP, as ours.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn

try:
    from lloca import Frames, LearnedPDFrames, MLPVectors
    from lloca.backbone.transformer import Transformer
except ImportError as err:  # pragma: no cover - depends on the optional extra
    raise ImportError(
        "benchmarks/reference.py needs the authors' `lloca` package and its runtime dependencies: "
        "pip install lloca==2.0.0 torch-geometric pelican-lite"
    ) from err

__all__ = ["INPUT_SCALE_GEV", "ReferenceLLoCaTransformer"]

#: Momenta are divided by this before entering the reference backbone.
INPUT_SCALE_GEV = 100.0


class ReferenceLLoCaTransformer(nn.Module):
    """Reference ``lloca`` transformer tagger: ``model(p4 (B,N,4) float64, mask (B,N)) -> (B,)``.

    Args:
        frames: "learned" (``LearnedPDFrames`` + ``MLPVectors``) or "identity".
        hidden_heads: attention heads; attn_reps: representation of one head (width =
            heads * reps.dim); blocks: transformer blocks; mlp_factor: MLP expansion.
        frames_hidden, frames_layers: MLPVectors width and hidden layers.
        frames_float64: run the frames net in float64 (the network stays in its own dtype).
    """

    def __init__(
        self,
        frames: str = "learned",
        num_heads: int = 4,
        attn_reps: str = "8x0n+2x1n",
        blocks: int = 4,
        mlp_factor: int = 2,
        frames_hidden: int = 64,
        frames_layers: int = 2,
        frames_float64: bool = True,
        num_classes: int | None = None,
    ):
        super().__init__()
        if frames not in ("learned", "identity"):
            raise ValueError(f"reference frames must be 'learned' or 'identity', got {frames!r}")
        self._config: dict[str, Any] = dict(
            frames=frames,
            num_heads=num_heads,
            attn_reps=attn_reps,
            blocks=blocks,
            mlp_factor=mlp_factor,
            frames_hidden=frames_hidden,
            frames_layers=frames_layers,
            frames_float64=frames_float64,
            num_classes=num_classes,
        )
        self.frames_kind = frames
        self.frames_float64 = frames_float64
        if frames == "learned":
            vectors = partial(
                MLPVectors,
                num_scalars=0,
                hidden_channels=frames_hidden,
                num_layers_mlp=frames_layers,
            )
            self.framesnet = LearnedPDFrames(vectors)
        self.backbone = Transformer(
            in_channels=4,
            attn_reps=attn_reps,
            out_channels=64,
            num_blocks=blocks,
            num_heads=num_heads,
            mlp_factor=mlp_factor,
        )
        self.num_classes = num_classes
        out = 1 if num_classes is None else num_classes
        self.head = nn.Sequential(
            nn.LayerNorm(64), nn.Linear(64, 64), nn.GELU(), nn.Linear(64, out)
        )

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def _frames(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Dense frames ``(B, N, 4, 4)`` (identity on padded slots) from packed constituents."""
        B, N, _ = p4.shape
        dense = torch.eye(4, dtype=p4.dtype, device=p4.device).repeat(B, N, 1, 1)
        counts = mask.sum(1)
        ptr = torch.zeros(B + 1, dtype=torch.long, device=p4.device)
        ptr[1:] = counts.cumsum(0)
        packed = p4[mask]
        net = self.framesnet
        if self.frames_float64:
            net = net.double()
            packed = packed.double()
        packed = packed / INPUT_SCALE_GEV
        if not bool(net.equivectors.block.edge_inited):
            # the reference standardises edge features with statistics of the first batch
            net.equivectors.init_standardization(packed, ptr=ptr)
        fr = net(packed, ptr=ptr)
        dense[mask] = fr.matrices.to(p4.dtype)
        return dense

    def forward(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        dtype = self.backbone.linear_in.weight.dtype
        p4 = p4.to(torch.float64)
        B, N, _ = p4.shape
        jet = (p4 * mask[..., None]).sum(1) / INPUT_SCALE_GEV
        if self.frames_kind == "learned":
            L = self._frames(p4, mask)
            local = torch.einsum("bnij,bnj->bni", L, p4 / INPUT_SCALE_GEV)
            frames = Frames(L.to(dtype))
        else:
            local = p4 / INPUT_SCALE_GEV
            frames = Frames(is_identity=True, shape=(B, N), device=p4.device, dtype=dtype)
        x = (local * mask[..., None]).to(dtype)
        h = self.backbone(x, frames, p_ref=jet.to(dtype), attn_mask=mask[:, None, None, :])
        m = mask[..., None].to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        y = self.head(pooled)
        return y[:, 0] if self.num_classes is None else y
