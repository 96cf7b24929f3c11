"""Argument checks shared by ``train`` and ``evaluate``.

* :func:`require_number`: a finite-number check for the Python API (raises :class:`ValueError`
  naming the argument); the CLI uses :mod:`lloca_hep.cli._argtypes`.
* :func:`check_inputs_exist` reports a missing input file before any file is read (a missing
  validation file is not found only after all the training data were read).
"""

from __future__ import annotations

import math
import os

from .._files import GLOB_CHARS, split_object_path

__all__ = ["check_inputs_exist", "require_number"]


def require_number(name: str, value: object, *, positive: bool = True) -> float:
    """``value`` as a float, or :class:`ValueError` naming ``name`` unless it is a finite number
    > 0 (``positive``) or >= 0."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    number = float(value) if ok else math.nan  # type: ignore[arg-type]
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        kind = "a positive" if positive else "a non-negative"
        raise ValueError(f"{name} must be {kind} finite number, got {value!r}")
    return number


def check_inputs_exist(paths: list[str], role: str) -> None:
    """:class:`FileNotFoundError` naming the first of ``paths`` (``file.root`` or
    ``file.root:tree``) that does not exist; ``role`` ("training", "validation") says which
    files they are. Glob patterns are left to the reader, which reports unmatched ones."""
    for spelled in paths:
        path, _ = split_object_path(spelled)
        if any(ch in path for ch in GLOB_CHARS) or os.path.exists(path):
            continue
        raise FileNotFoundError(f"{role} file not found: {spelled}")
