"""``type=`` converters for argparse options, shared by the command-line modules.

Each takes the option's text and returns the value, or raises :class:`argparse.ArgumentTypeError`
with a message that argparse shows as a usage error (exit code 2).
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

__all__ = [
    "fraction",
    "json_object",
    "name_list",
    "non_negative_float",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "step_size",
]


def _int_at_least(text: str, minimum: int, kind: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _int_at_least(text, 0, "non-negative")


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _int_at_least(text, 1, "positive")


def _finite_float(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (argparse ``type=``)."""
    value = _finite_float(text, "a positive number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (argparse ``type=``)."""
    value = _finite_float(text, "a non-negative number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A number strictly between 0 and 1 (argparse ``type=``)."""
    value = _finite_float(text, "a number between 0 and 1")
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


def json_object(text: str) -> dict[str, Any]:
    """A JSON object, e.g. ``'{"hidden": 32}'`` (argparse ``type=``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"hidden\": 32}'")
    return value


def step_size(text: str) -> str | int:
    """A chunk size: a number of entries (``100000``) or of bytes (``"50 MB"``)."""
    return int(text) if text.isdigit() else text


def name_list(text: str) -> list[str]:
    """Comma-separated names (identifiers, e.g. class names ``QCD,Hbb,Tbqq``), at least two,
    none repeated."""
    names = [n.strip() for n in text.split(",")]
    bad = [n for n in names if not n.isidentifier()]
    if bad:
        raise argparse.ArgumentTypeError(f"expected comma-separated names such as QCD,Hbb,Tbqq; "
                                         f"{bad[0]!r} is not a name")
    if len(names) < 2 or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected at least two distinct names, got {text!r}")
    return names
