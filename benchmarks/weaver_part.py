"""weaver-core's ``ParticleTransformer`` behind lloca-hep's model interface, for comparisons.

:class:`WeaverParT` is called like every lloca-hep model, ``model(p4, mask, scalars=None)``
with ``p4`` float64 ``(B, N, 4)`` (E, px, py, pz) in GeV and ``mask`` bool ``(B, N)``, and
returns binary logits ``(B,)`` (or ``(B, num_classes)``). It feeds weaver's network the same
per-particle inputs lloca-hep's ParT uses (:func:`lloca_hep.models.plain.jet_relative_features`,
computed here by lloca-hep's own code) and the four-momenta from which weaver computes its
pair features. weaver-core (PyPI ``weaver-core``, the ``bench`` environment) is imported only
when the model is built; none of its code is copied. Registered for one process with
:func:`register`, as ``benchmarks/results_table.py --rows weaver_part`` does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

from lloca_hep.models.plain import FEATURE_NAMES, jet_relative_features

#: Registry name of the wrapper.
NAME = "weaver_part"


class WeaverParT(nn.Module):
    """weaver-core ParT (pair features ``ln kT, ln z, ln dR, ln m^2``, MLP ratio 4, no extra
    fully connected layers) with lloca-hep's inputs; configuration names as lloca-hep's
    :class:`~lloca_hep.models.ParticleTransformer`."""

    def __init__(self, num_classes: int | None = None, embed_dims: Sequence[int] = (128, 512, 128),
                 pair_embed_dims: Sequence[int] = (64, 64, 64), heads: int = 8, blocks: int = 8,
                 class_blocks: int = 2):
        super().__init__()
        from weaver.nn.model.ParticleTransformer import ParticleTransformer

        logging.getLogger("weaver").setLevel(logging.WARNING)
        self.num_classes = num_classes
        self._config = {"num_classes": num_classes, "embed_dims": list(embed_dims),
                        "pair_embed_dims": list(pair_embed_dims), "heads": heads,
                        "blocks": blocks, "class_blocks": class_blocks}
        self.net = ParticleTransformer(
            input_dim=len(FEATURE_NAMES), num_classes=2 if num_classes is None else num_classes,
            embed_dims=list(embed_dims), pair_embed_dims=list(pair_embed_dims), num_heads=heads,
            num_layers=blocks, num_cls_layers=class_blocks, fc_params=())

    @property
    def config(self) -> dict:
        """The JSON constructor arguments (tagger files store them)."""
        return dict(self._config)

    def forward(self, p4: torch.Tensor, mask: torch.Tensor,
                scalars: torch.Tensor | None = None) -> torch.Tensor:
        dtype = next(self.parameters()).dtype
        x = jet_relative_features(p4, mask).to(dtype).transpose(1, 2)   # (B, F, N)
        v = p4[..., [1, 2, 3, 0]].to(dtype).transpose(1, 2)             # (B, 4, N) px, py, pz, E
        v = v * mask[:, None, :].to(dtype)
        out = self.net(x, v=v, mask=mask[:, None, :].to(dtype))
        return out[:, 1] - out[:, 0] if self.num_classes is None else out


def register() -> None:
    """Add :class:`WeaverParT` to lloca-hep's model registry for this process."""
    from lloca_hep.models import MODELS, register_model

    if NAME not in MODELS:
        register_model(NAME, WeaverParT)
