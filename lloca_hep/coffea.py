"""``lloca_hep.coffea``: short name of :mod:`lloca_hep.integrations.coffea` (the coffea
``numpy_call_wrapper`` tagger), kept so ``from lloca_hep.coffea import JetTagger`` works."""

from lloca_hep.integrations.coffea import (
    CANDIDATES,
    LINK_SUFFIX,
    JetTagger,
    join_indexed_constituents,
    required_branches,
)

__all__ = ["CANDIDATES", "LINK_SUFFIX", "JetTagger", "join_indexed_constituents", "required_branches"]
