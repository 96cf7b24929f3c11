"""The lloca-hep tagger file format: its constants, its one header validator, ``.pt`` files.

A ``.pt`` tagger file is one ``torch.save`` of a dict with exactly two entries,

* ``"state_dict"``: ``{name: torch.Tensor}``, the model weights;
* ``"header"``: a JSON string with ``format`` (``"lloca-hep-tagger"``), ``format_version``,
  ``model_name`` (a key of :data:`lloca_hep.models.MODELS`), ``config`` (the model's constructor
  keyword arguments), ``max_constituents``, ``preprocessing`` and free-form ``metadata``
  (how it was trained, metrics, ...).

It is read back with ``torch.load(..., weights_only=True)``: no arbitrary object is ever
unpickled. :func:`validate_header` is the one check of a header, for ``.pt`` files and for the
header embedded in ``.pt2`` archives (:mod:`lloca_hep.tagger.export`): ``max_constituents``
must lie in ``1..``:data:`MAX_CONSTITUENTS_LIMIT`; weights holding NaN or inf are refused
(:func:`check_finite_weights`). Every problem is a :class:`TaggerFileError` naming the file.

This module knows bytes, JSON and tensors only; building a model and a
:class:`~lloca_hep.tagger.Tagger` from them is :mod:`lloca_hep.tagger.loading`'s job.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lloca_hep._defaults import MAX_CONSTITUENTS_LIMIT
from lloca_hep._files import atomic_output
from lloca_hep.errors import FeatureError
from lloca_hep.features import InputSpec

__all__ = [
    "EXPORTED_SUFFIX",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "FORMAT_VERSION_V1",
    "MAX_CLASSES",
    "MAX_CONSTITUENTS_LIMIT",
    "TaggerFileError",
    "atomic_torch_save",
    "check_finite_weights",
    "header_inputs",
    "parse_payload",
    "read_payload",
    "validate_header",
    "write_tagger_file",
]

FORMAT_NAME = "lloca-hep-tagger"
#: Version 2 adds ``inputs`` (the per-particle features, :class:`lloca_hep.features.InputSpec`
#: JSON) and ``classes``; taggers without features and with two classes are still written as
#: version 1, which older lloca-hep reads.
FORMAT_VERSION = 2
FORMAT_VERSION_V1 = 1
#: Suffix of ``torch.export`` archives, loaded through :mod:`lloca_hep.tagger.export`.
EXPORTED_SUFFIX = ".pt2"
_HEADER_KEYS = ("format", "format_version", "model_name", "config", "max_constituents")
#: Most classes a tagger file may name.
MAX_CLASSES = 1000


class TaggerFileError(ValueError):
    """A tagger file is missing pieces, foreign, truncated or from a newer lloca-hep."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a temporary name in the same directory, fsync, then rename over ``path``.

    A reader (or a process killed mid-write) sees either the old file or the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())


def write_tagger_file(path: str | os.PathLike[str], header: Mapping[str, Any],
                      state_dict: Mapping[str, torch.Tensor]) -> Path:
    """Write a ``.pt`` tagger file (``header`` as sorted JSON + ``state_dict``) atomically."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    payload = {"state_dict": state, "header": json.dumps(dict(header), sort_keys=True)}
    atomic_torch_save(payload, path)
    return path


def read_payload(path: Path, map_location: torch.device | str) -> dict[str, Any]:
    """``torch.load`` a tagger-like file safely; every failure becomes a TaggerFileError."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such tagger file")
    if path.is_dir():
        raise TaggerFileError(path, "is a directory, not a tagger file")
    if path.stat().st_size == 0:
        raise TaggerFileError(path, "file is empty")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([A-Za-z0-9_.]+)", str(exc))
        detail = f" (it would call {found.group(1)})" if found else ""
        raise TaggerFileError(
            path,
            "not a readable lloca-hep tagger file: refusing to load, it holds pickled objects "
            f"other than tensors{detail}; a tagger file from a stranger must not run code",
        ) from exc
    except Exception as exc:  # torch raises RuntimeError / EOFError ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TaggerFileError(
            path,
            "not a readable lloca-hep tagger file (truncated, corrupted, or a pickle holding "
            f"objects other than tensors): {first}",
        ) from exc
    if not isinstance(payload, dict):
        raise TaggerFileError(
            path, f"holds a {type(payload).__name__}, not a lloca-hep tagger dict"
        )
    return payload


def _count(path: str | os.PathLike[str], header: Mapping[str, Any], key: str) -> int:
    """``header[key]`` as an integer >= 1, else a :class:`TaggerFileError` naming it."""
    value = header[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise TaggerFileError(path, f"invalid {key} {value!r}")
    return value


def validate_header(path: str | os.PathLike[str], raw: Any, *,
                    where: str = "header") -> dict[str, Any]:
    """The checked header of a tagger file (``.pt`` or ``.pt2``): ``raw`` is its JSON text.

    Checks the format name, the keys of :data:`_HEADER_KEYS`, ``format_version`` (not newer
    than :data:`FORMAT_VERSION`), ``model_name`` (a string), ``config`` (an object),
    ``max_constituents`` (an integer in ``1..``:data:`MAX_CONSTITUENTS_LIMIT`) and, when
    present, ``preprocessing`` and ``metadata`` (objects). ``where`` names the header in
    messages. Raises :class:`TaggerFileError` naming ``path``.
    """
    if not isinstance(raw, str):
        raise TaggerFileError(path, f"{where} is not a JSON string")
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise TaggerFileError(path, f"{where} is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise TaggerFileError(path, f"{where} is not a JSON object")
    if header.get("format") != FORMAT_NAME:
        raise TaggerFileError(
            path, f"format is {header.get('format')!r}, expected {FORMAT_NAME!r}"
        )
    missing = [k for k in _HEADER_KEYS if k not in header]
    if missing:
        raise TaggerFileError(path, f"{where} lacks {missing}")
    version = _count(path, header, "format_version")
    if version > FORMAT_VERSION:
        raise TaggerFileError(
            path,
            f"format_version {version} is newer than this lloca-hep understands "
            f"({FORMAT_VERSION}); upgrade lloca-hep",
        )
    if not isinstance(header["model_name"], str):
        raise TaggerFileError(path, f"invalid model_name {header['model_name']!r}")
    if not isinstance(header["config"], dict):
        raise TaggerFileError(path, "model config is not a JSON object")
    n = _count(path, header, "max_constituents")
    if n > MAX_CONSTITUENTS_LIMIT:
        raise TaggerFileError(
            path,
            f"max_constituents {n} is above the limit of {MAX_CONSTITUENTS_LIMIT} "
            "(lloca_hep.tagger.MAX_CONSTITUENTS_LIMIT); no jet has that many constituents",
        )
    for key in ("preprocessing", "metadata", "inputs"):
        if header.get(key) is not None and not isinstance(header[key], dict):
            raise TaggerFileError(path, f"{where} entry {key!r} is not a JSON object")
    classes = header.get("classes")
    if classes is not None and (
            not isinstance(classes, list) or len(classes) < 2 or len(classes) > MAX_CLASSES
            or not all(isinstance(c, str) and c.isidentifier() for c in classes)):
        raise TaggerFileError(path, f"{where} entry 'classes' must be a list of 2 to "
                              f"{MAX_CLASSES} class names (identifiers), got {classes!r}")
    return header


def check_finite_weights(path: str | os.PathLike[str],
                         tensors: Mapping[str, torch.Tensor]) -> None:
    """Refuse (:class:`TaggerFileError`) weights holding NaN or inf: they score every jet NaN."""
    for name, tensor in tensors.items():
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(
                torch.isfinite(tensor).all()):
            n_nan = int(torch.isnan(tensor).sum())
            n_inf = int(torch.isinf(tensor).sum())
            raise TaggerFileError(
                path,
                f"parameter {name!r} holds NaN/inf ({n_nan} NaN, {n_inf} inf of "
                f"{tensor.numel()} values): the weights are damaged (or training diverged)",
            )


def parse_payload(path: Path, payload: Mapping[str, Any]) -> dict[str, Any]:
    if "header" not in payload or "state_dict" not in payload:
        keys = sorted(str(k) for k in payload)[:8]
        raise TaggerFileError(
            path,
            f"not a lloca-hep tagger file (expected entries 'header' and 'state_dict', "
            f"found {keys}); a bare state_dict or training checkpoint cannot be scored",
        )
    header = validate_header(path, payload["header"])
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise TaggerFileError(path, "state_dict is not a mapping of names to tensors")
    return header


def header_inputs(path: str | os.PathLike[str], header: Mapping[str, Any]) -> tuple[InputSpec | None, Any]:
    """The input set and class names of a checked header (TaggerFileError when malformed)."""
    inputs = None
    if header.get("inputs") is not None:
        try:
            inputs = InputSpec.from_json(header["inputs"], "header entry 'inputs'")
        except FeatureError as exc:
            raise TaggerFileError(path, str(exc)) from exc
    return inputs, header.get("classes")
