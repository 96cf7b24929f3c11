"""The network input of a tagger from ragged jets: one implementation for scoring and training.

:func:`network_inputs` pads the momenta and the raw per-particle features in one numba pass
(:func:`~lloca_hep.preprocessing.padding.pad_jets`) and applies the input set's transforms
(:meth:`lloca_hep.features.InputSpec.transform`; padded slots stay zero).

>>> padded = network_inputs(jets, tagger.inputs, max_constituents=64)   # doctest: +SKIP
>>> padded.p4.shape, padded.scalars.shape                               # doctest: +SKIP
((n, 64, 4), (n, 64, S))
"""

from __future__ import annotations

import dataclasses
from typing import Any

import awkward as ak

from lloca_hep.errors import FeatureError
from lloca_hep.features import InputSpec

from .padding import PaddedJets, pad_jets

__all__ = ["network_inputs"]


def network_inputs(constituents: Any, inputs: InputSpec, max_constituents: int,
                   sort_by_pt: bool | str = True) -> PaddedJets:
    """Padded momenta (float64 ``(n, N, 4)``), mask and transformed scalars (float32
    ``(n, N, S)``, columns ``inputs.names``; None when the set has no feature) of ragged
    ``constituents`` (or jets with a ``constituents`` field) that carry the raw feature fields.

    Raises :class:`~lloca_hep.errors.FeatureError` naming the missing fields.
    """
    if isinstance(constituents, ak.Array) and constituents.ndim == 1 \
            and "constituents" in ak.fields(constituents):
        constituents = constituents["constituents"]
    names = list(inputs.names)
    if names:
        have = ak.fields(constituents)
        missing = [n for n in names if n not in have]
        if missing:
            raise FeatureError(
                f"the input set {inputs.name!r} reads the per-particle features "
                f"{', '.join(missing)}, but the constituents have only "
                f"{', '.join(have) or 'no fields'}: read the jets with "
                f"read_jets(path, features=...) naming this input set")
    padded = pad_jets(constituents, max_constituents=max_constituents, sort_by_pt=sort_by_pt,
                      warn_empty=False, scalars=names or None)
    if padded.scalars is None:
        return padded
    return dataclasses.replace(padded, scalars=inputs.transform(padded.scalars, padded.mask))
