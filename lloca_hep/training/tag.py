"""Moved to :mod:`lloca_hep.inference`; this name stays importable for old callers."""

from __future__ import annotations

from lloca_hep.inference.tag import DEFAULT_TAG_STEP_SIZE, tag_file

__all__ = ["DEFAULT_TAG_STEP_SIZE", "tag_file"]
