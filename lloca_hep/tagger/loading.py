"""Loading tagger files: ``.pt`` (built from the header's model name and config) or ``.pt2``.

:func:`load_tagger` dispatches on the suffix: ``.pt2`` archives go to
:func:`lloca_hep.tagger.export.load_exported` (vetted before torch reads them), ``.onnx`` files
to :func:`lloca_hep.tagger.onnx_backend.load_onnx` (onnx imported on use), everything else
is read as a ``.pt`` file by :mod:`lloca_hep.tagger.format` and its model rebuilt from
:mod:`lloca_hep.models`. ``None`` is the tagger shipped in the package.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from .export import load_exported, read_exported_header
from .format import (
    EXPORTED_SUFFIX,
    TaggerFileError,
    check_finite_weights,
    header_inputs,
    parse_payload,
    read_payload,
)
from .onnx_backend import ONNX_SUFFIX, load_onnx, read_onnx_header  # imports onnx lazily
from .scoring import DEFAULT_BATCH_SIZE, Tagger, resolve_device

__all__ = ["DEFAULT_TAGGER_RESOURCE", "SHIPPED_TAGGERS", "load_tagger", "read_tagger_header",
           "shipped_name"]

log = logging.getLogger(__name__)

#: Name of the tagger file shipped inside the package (``lloca_hep/data``).
DEFAULT_TAGGER_RESOURCE = "default_tagger.pt"
#: Short names of the taggers shipped in ``lloca_hep/data``, accepted wherever a tagger path is
#: (``load_tagger("jetclass")``, ``lloca-hep tag FILE --model jetclass``, ``JetTagger(model=...)``);
#: a file of that name in the working directory wins over the shipped one.
SHIPPED_TAGGERS = {"default": DEFAULT_TAGGER_RESOURCE, "jetclass": "jetclass_tagger.pt"}


def _build(path: Path, header: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    from lloca_hep import models

    name = header["model_name"]
    if name not in models.MODELS:
        raise TaggerFileError(
            path,
            f"unknown model {name!r}; this lloca-hep knows {sorted(models.MODELS)}. A model "
            "of your own must be registered in this process first, with "
            f"lloca_hep.models.register_model({name!r}, cls): tagger files never import code",
        )
    config = header["config"]
    if not isinstance(config, dict):
        raise TaggerFileError(path, "model config is not a JSON object")
    try:
        model = models.build_model(name, config)
    except Exception as exc:
        raise TaggerFileError(
            path, f"cannot build model {name!r} from the stored config: {exc}"
        ) from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise TaggerFileError(
            path, f"weights do not fit model {name!r}: {' '.join(first[:3])}"
        ) from exc
    return model


@contextlib.contextmanager
def _shipped_path(resource_name: str = DEFAULT_TAGGER_RESOURCE) -> Iterator[Path]:
    resource = importlib.resources.files("lloca_hep").joinpath("data", resource_name)
    if not resource.is_file():
        raise FileNotFoundError(
            f"the shipped tagger lloca_hep/data/{resource_name} is missing from this "
            "installation; pass the path of a tagger file"
        )
    with importlib.resources.as_file(resource) as p:
        yield Path(p)


def shipped_name(path: str | os.PathLike[str] | None) -> str | None:
    """The resource of a shipped tagger that ``path`` names (None: the default), else None."""
    if path is None:
        return DEFAULT_TAGGER_RESOURCE
    text = os.fspath(path)
    if text in SHIPPED_TAGGERS and not os.path.exists(text):
        return SHIPPED_TAGGERS[text]
    return None


def load_tagger(
    path: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device | None = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Tagger:
    """Load a tagger file written by :meth:`Tagger.save` (``None`` or ``"default"``: the top
    tagger shipped in the package; ``"jetclass"``: the shipped ten-class tagger, see
    :data:`SHIPPED_TAGGERS`).

    ``device``: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ...
    Files ending in ``.pt2`` are ``torch.export`` archives, loaded by
    :func:`lloca_hep.tagger.export.load_exported`; ``.onnx`` files are scored by ONNX Runtime
    (:func:`lloca_hep.tagger.onnx_backend.load_onnx`, CPU only; needs the ``onnx`` extra).

    Raises :class:`FileNotFoundError` for a missing file and :class:`TaggerFileError`
    (a ``ValueError``) naming the file and the problem for anything that is not a valid tagger.
    """
    resource = shipped_name(path)
    if resource is not None:
        with _shipped_path(resource) as shipped:
            return load_tagger(shipped, device=device, batch_size=batch_size)
    assert path is not None
    path = Path(path)
    if path.suffix == EXPORTED_SUFFIX:
        return load_exported(path, device=device, batch_size=batch_size)
    if path.suffix == ONNX_SUFFIX:
        return load_onnx(path, device=device, batch_size=batch_size)
    dev = resolve_device(device)
    payload = read_payload(path, map_location="cpu")
    header = parse_payload(path, payload)
    check_finite_weights(path, payload["state_dict"])
    model = _build(path, header, payload["state_dict"])
    preprocessing = header.get("preprocessing") or {}
    max_constituents = header["max_constituents"]
    inputs, classes = header_inputs(path, header)
    try:
        tagger = Tagger(
            model,
            header["model_name"],
            max_constituents,
            metadata=header.get("metadata") or {},
            device=dev,
            batch_size=batch_size,
            sort_by_pt=bool(preprocessing.get("sort_by_pt", True)),
            inputs=inputs,
            classes=classes,
        )
    except ValueError as exc:
        if isinstance(exc, TaggerFileError):
            raise
        raise TaggerFileError(path, f"inconsistent header: {exc}") from exc
    log.debug("loaded %r from %s", tagger, path)
    return tagger


def read_tagger_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON header of a tagger file (model, config, metadata) without building the model.

    ``.pt2`` archives are read by :func:`lloca_hep.tagger.export.read_exported_header`; the
    short names of :data:`SHIPPED_TAGGERS` name the shipped taggers.
    """
    resource = shipped_name(path)
    if resource is not None:
        with _shipped_path(resource) as shipped:
            return read_tagger_header(shipped)
    path = Path(path)
    if path.suffix == EXPORTED_SUFFIX:
        return read_exported_header(path)
    if path.suffix == ONNX_SUFFIX:
        return read_onnx_header(path)
    payload = read_payload(path, map_location="cpu")
    return parse_payload(path, payload)
