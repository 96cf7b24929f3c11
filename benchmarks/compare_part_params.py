"""Parameter counts: lloca-hep's ParT against weaver-core's ``ParticleTransformer``.

Both networks are built at the same configuration (input features, classes, particle
embedding widths, pair embedding widths, heads, particle and class-attention blocks, MLP ratio
4) and their trainable parameters counted; lloca-hep's LLoCa-ParT at the same configuration is
listed too (its extra parameters are the frames net's). weaver-core (PyPI ``weaver-core``) is
only imported here, to build its model; no code of it is used by lloca-hep.

Usage::

    pip install weaver-core
    python benchmarks/compare_part_params.py

Prints a markdown table and exits with status 1 if any pair of ParT counts differs.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from torch import nn

from lloca_hep.models import LLoCaParT, ParticleTransformer
from lloca_hep.models.plain import FEATURE_NAMES

#: Per-particle inputs: the 7 kinematic features, plus 10 more for JetClass's ``full`` set.
KIN_FEATURES = len(FEATURE_NAMES)
FULL_EXTRA = 10
#: (label, classes, extra per-particle features, configuration)
CONFIGS: list[tuple[str, int, int, dict[str, Any]]] = [
    ("paper, JetClass full", 10, FULL_EXTRA,
     dict(embed_dims=[128, 512, 128], pair_embed_dims=[64, 64, 64], heads=8, blocks=8,
          class_blocks=2)),
    ("paper, top tagging kin", 2, 0,
     dict(embed_dims=[128, 512, 128], pair_embed_dims=[64, 64, 64], heads=8, blocks=8,
          class_blocks=2)),
    ("small (docs/LLOCA.md run), kin", 2, 0,
     dict(embed_dims=[64, 128, 64], pair_embed_dims=[32, 32, 32], heads=4, blocks=4,
          class_blocks=2)),
]


def count(model: nn.Module) -> int:
    """Trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def weaver_part(n_in: int, n_classes: int, cfg: dict[str, Any]) -> nn.Module:
    """weaver-core's ParticleTransformer at ``cfg`` (its defaults otherwise: pair features
    ``pp`` with 4 inputs, MLP ratio 4, NormFormer scalings, no extra fully connected layers)."""
    from weaver.nn.model.ParticleTransformer import ParticleTransformer as WeaverParT

    logging.getLogger("weaver").setLevel(logging.WARNING)
    return WeaverParT(input_dim=n_in, num_classes=n_classes, embed_dims=cfg["embed_dims"],
                      pair_embed_dims=cfg["pair_embed_dims"], num_heads=cfg["heads"],
                      num_layers=cfg["blocks"], num_cls_layers=cfg["class_blocks"],
                      fc_params=())


def main() -> int:
    try:
        import weaver  # noqa: F401
    except ImportError:
        print("weaver-core is not installed: pip install weaver-core", file=sys.stderr)
        return 2
    print("| configuration | inputs | classes | weaver-core ParT | lloca-hep ParT | "
          "lloca-hep LLoCa-ParT |")
    print("|---|---|---|---|---|---|")
    ok = True
    for label, n_classes, extra, cfg in CONFIGS:
        n_in = KIN_FEATURES + extra
        ours = count(ParticleTransformer(num_classes=n_classes, num_scalars=extra, **cfg))
        lloca = count(LLoCaParT(num_classes=n_classes, num_scalars=extra, **cfg))
        theirs = count(weaver_part(n_in, n_classes, cfg))
        ok &= ours == theirs
        print(f"| {label} | {n_in} | {n_classes} | {theirs:,} | {ours:,} | {lloca:,} |")
    if not ok:
        print("parameter counts differ", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
