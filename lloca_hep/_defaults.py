"""Defaults and limits that the command line shows, in a module that imports nothing.

Building the ``lloca-hep`` parser reads these; keeping them here (rather than in the modules
that use them, which import torch, numba or uproot) keeps ``lloca-hep --help`` and the start of
every command fast. Each name is defined only here and re-exported by the module it belongs to:
:mod:`lloca_hep.preprocessing.padding`, :mod:`lloca_hep.tagger.format`,
:mod:`lloca_hep.inference.tag` and :mod:`lloca_hep.tagger.onnx_export`.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "DEFAULT_MAX_CONSTITUENTS",
    "DEFAULT_OPSET",
    "DEFAULT_TAG_STEP_SIZE",
    "MAX_CONSTITUENTS_LIMIT",
]

#: Default number of constituents kept per jet (hardest first), the one default of every route
#: (padding, ``lloca-hep train``/``TrainConfig``); a tagger file stores its own value.
DEFAULT_MAX_CONSTITUENTS: Final = 64
#: Largest ``max_constituents`` a tagger may have. Real jets have at most a few hundred
#: constituents; a file asking for more is damaged or hostile (padding 10**12 constituents
#: would exhaust memory), so :func:`lloca_hep.tagger.validate_header` and
#: :class:`lloca_hep.tagger.Tagger` refuse it.
MAX_CONSTITUENTS_LIMIT: Final = 4096
#: Chunk size of ``lloca-hep tag`` / :func:`lloca_hep.inference.tag_file` (an uproot step size:
#: entries or memory).
DEFAULT_TAG_STEP_SIZE: Final = "50 MB"
#: ai.onnx opset of the exported graph (ONNX Runtime >= 1.14 runs it; the exporter needs >= 18).
DEFAULT_OPSET: Final = 18
