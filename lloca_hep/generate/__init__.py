"""Jet samples with Pythia 8 and fastjet: the top-tagging sample (recipe: LLOCA.md section 11)
and ten-class JetClass-like samples (:mod:`.classes`, written in JetClass's layout).

Needs the optional extra ``generate`` (``pip install 'lloca-hep[generate]'``): ``pythia8mc`` and
``fastjet`` are imported only when generation runs, so this package imports without them.

>>> from lloca_hep.generate import generate_classes, generate_sample
>>> generate_sample("top.root", n_signal=1000, n_background=1000, seed=1)  # doctest: +SKIP
>>> generate_classes("ten.root", "QCD,Hbb,Tbqq", per_class=1000, seed=1)  # doctest: +SKIP

Modules: :mod:`.recipe` (top/QCD constants, cuts, seeds), :mod:`.events` (Pythia set-up, the
event loop, top/QCD chunks), :mod:`.sample` (top/QCD files); :mod:`.classes` (the ten class
recipes), :mod:`.truth` (resonance decay products), :mod:`.tracks` (impact parameters,
resolution, particle-ID flags), :mod:`.jetclass_events` (ten-class chunks),
:mod:`.jetclass_sample` (JetClass-layout files); :mod:`.chunks` (worker pool, shuffling).
"""

from __future__ import annotations

from .classes import CLASS_NAMES, RECIPES, parse_classes
from .events import TopDecay, find_top_decays, is_top_jet, match_top_decay, require_generators
from .jetclass_sample import generate_classes
from .recipe import decay_contained, delta_r, passes_jet_cuts, pythia_seed
from .sample import generate_sample

__all__ = [
    "CLASS_NAMES",
    "RECIPES",
    "TopDecay",
    "decay_contained",
    "delta_r",
    "find_top_decays",
    "generate_classes",
    "generate_sample",
    "is_top_jet",
    "match_top_decay",
    "parse_classes",
    "passes_jet_cuts",
    "pythia_seed",
    "require_generators",
]
