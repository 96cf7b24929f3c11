"""Moved to :mod:`lloca_hep.tagger.export` (``torch.export`` ``.pt2`` archives); this module
keeps the old import path working."""

from __future__ import annotations

from lloca_hep.tagger.export import (
    HEADER_FILE,
    ExportedTagger,
    export_tagger,
    load_exported,
    read_exported_header,
)

__all__ = ["HEADER_FILE", "ExportedTagger", "export_tagger", "load_exported", "read_exported_header"]
