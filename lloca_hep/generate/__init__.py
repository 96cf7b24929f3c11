"""Top-tagging samples with Pythia 8 and fastjet (recipe: LLOCA.md section 11).

Needs the optional extra ``generate`` (``pip install 'lloca-hep[generate]'``): ``pythia8mc`` and
``fastjet`` are imported only when generation runs, so this package imports without them.

>>> from lloca_hep.generate import generate_sample
>>> generate_sample("top.root", n_signal=1000, n_background=1000, seed=1, workers=2)  # doctest: +SKIP
"""

from __future__ import annotations

from .events import TopDecay, find_top_decays, is_top_jet, match_top_decay, require_generators
from .recipe import decay_contained, delta_r, passes_jet_cuts, pythia_seed
from .sample import generate_sample

__all__ = [
    "TopDecay",
    "decay_contained",
    "delta_r",
    "find_top_decays",
    "generate_sample",
    "is_top_jet",
    "match_top_decay",
    "passes_jet_cuts",
    "pythia_seed",
    "require_generators",
]
