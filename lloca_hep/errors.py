"""Exceptions raised for bad input and unsafe output.

All input problems derive from :class:`LLoCaInputError` (a ``ValueError``), so
``except ValueError`` keeps working for callers that do not care about the detail.
Messages name the file, the tree/branch, the jet or entry index and the problem.
"""

from __future__ import annotations


class LLoCaInputError(ValueError):
    """An input file or array cannot be used as given."""


class MissingFileError(LLoCaInputError, FileNotFoundError):
    """The input file does not exist."""


class CorruptFileError(LLoCaInputError):
    """The file exists but uproot cannot read it (truncated, corrupted or not ROOT)."""


class MissingTreeError(LLoCaInputError):
    """The requested TTree/RNTuple is not in the file (the message lists what is)."""


class MissingBranchError(LLoCaInputError):
    """A needed branch/field is not in the tree (the message lists what is)."""


class LayoutError(LLoCaInputError):
    """The tree does not match any supported jet layout, or not the one asked for."""


class InvalidMomentumError(LLoCaInputError):
    """NaN/inf momenta, negative energies or E < |p| beyond rounding."""


class InvalidFeatureError(InvalidMomentumError):
    """A per-particle feature is NaN/inf for a real constituent (the counted policy of the
    momenta: ``on_invalid="drop"`` drops such constituents)."""


class FeatureError(LLoCaInputError):
    """A feature specification is malformed, names a branch the file lacks, or a tagger needs
    features its input does not carry."""


class LabelError(LLoCaInputError):
    """The label branches are missing, not one-hot, out of range, or do not match ``classes``."""


class WeightError(LLoCaInputError):
    """A per-jet weight branch is missing, not one number per jet, or holds NaN/inf or negative
    values."""


class InvalidConstituentsWarning(UserWarning):
    """Constituents with unphysical momenta were dropped (``on_invalid="drop"``)."""


class OutputError(LLoCaInputError):
    """An output would overwrite an input, or exists and ``overwrite`` is False, or the scores
    do not line up with the input entries."""


__all__ = [
    "CorruptFileError",
    "FeatureError",
    "InvalidConstituentsWarning",
    "InvalidFeatureError",
    "InvalidMomentumError",
    "LLoCaInputError",
    "LabelError",
    "LayoutError",
    "MissingBranchError",
    "MissingFileError",
    "MissingTreeError",
    "OutputError",
    "WeightError",
]
