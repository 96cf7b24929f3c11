"""Taggers and their files: the one home of the tagger file format.

>>> import lloca_hep
>>> tagger = lloca_hep.load_tagger()            # the tagger shipped in the package
>>> scores = tagger.score(lloca_hep.read_jets("jets.root"))

Modules, each with one job (imports only go down this list, never up)::

    format    the file format: constants, validate_header (the one header check, for .pt and
              .pt2), TaggerFileError, reading and writing .pt files (torch.load weights_only)
    scoring   Tagger (model + preprocessing -> float32 scores), resolve_device, the warnings
    safeload  vetting a .pt2 archive record by record before torch reads it
    export    torch.export .pt2 archives: export_tagger, load_exported, ExportedTagger
    onnx_backend  ONNX Runtime scoring of .onnx files: OnnxTagger, load_onnx (vetted; the onnx extra)
    onnx_export   export_onnx: ONNX files for ONNX Runtime / CMSSW / Triton
    loading   load_tagger / read_tagger_header: dispatch on the suffix (.pt2 -> export,
              .onnx -> onnx_backend)

Loading a tagger file from a stranger never runs its code.
"""

from __future__ import annotations

from .export import (
    HEADER_FILE,
    ExportedTagger,
    export_tagger,
    load_exported,
    read_exported_header,
)
from .format import (
    EXPORTED_SUFFIX,
    FORMAT_NAME,
    FORMAT_VERSION,
    FORMAT_VERSION_V1,
    MAX_CONSTITUENTS_LIMIT,
    TaggerFileError,
    atomic_torch_save,
    check_finite_weights,
    validate_header,
    write_tagger_file,
)
from .format import parse_payload as _parse_header  # noqa: F401 (old private name)
from .format import read_payload as _read_payload  # noqa: F401 (old private name)
from .loading import (
    DEFAULT_TAGGER_RESOURCE,
    SHIPPED_TAGGERS,
    load_tagger,
    read_tagger_header,
    shipped_name,
)
from .loading import _shipped_path as _shipped_path
from .onnx_backend import ONNX_SUFFIX, OnnxTagger, load_onnx, read_onnx_header
from .onnx_export import export_onnx
from .scoring import (
    DEFAULT_BATCH_SIZE,
    DEVICE_CHOICES,
    EmptyJetWarning,
    NonFiniteScoreWarning,
    Tagger,
    resolve_device,
)
from .scoring import _constituents_of as _constituents_of
from .scoring import _probabilities as _probabilities

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_TAGGER_RESOURCE",
    "DEVICE_CHOICES",
    "EXPORTED_SUFFIX",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "FORMAT_VERSION_V1",
    "HEADER_FILE",
    "MAX_CONSTITUENTS_LIMIT",
    "ONNX_SUFFIX",
    "SHIPPED_TAGGERS",
    "EmptyJetWarning",
    "ExportedTagger",
    "NonFiniteScoreWarning",
    "OnnxTagger",
    "Tagger",
    "TaggerFileError",
    "atomic_torch_save",
    "check_finite_weights",
    "export_onnx",
    "export_tagger",
    "load_exported",
    "load_onnx",
    "load_tagger",
    "read_exported_header",
    "read_onnx_header",
    "read_tagger_header",
    "resolve_device",
    "shipped_name",
    "validate_header",
    "write_tagger_file",
]
# Private names kept importable from here for older callers: _constituents_of
# (lloca_hep.training.data), _shipped_path (benchmarks/bench_dask.py).
