"""The jet tagger users call: a trained model plus the preprocessing it needs.

>>> import lloca_hep
>>> tagger = lloca_hep.load_tagger()            # the tagger shipped in the package
>>> jets = lloca_hep.read_jets("jets.root")
>>> scores = tagger.score(jets)                 # float32 top probability, one per jet

File format (``.pt``): one ``torch.save`` of a dict with exactly two entries,

* ``"state_dict"``: ``{name: torch.Tensor}``, the model weights;
* ``"header"``: a JSON string with ``format`` (``"lloca-hep-tagger"``), ``format_version``,
  ``model_name`` (a key of :data:`lloca_hep.models.MODELS`), ``config`` (the model's constructor
  keyword arguments), ``max_constituents``, ``preprocessing`` and free-form ``metadata``
  (how it was trained, metrics, ...).

It is read back with ``torch.load(..., weights_only=True)``: no arbitrary object is ever
unpickled. The header is checked by :func:`validate_header` (also for ``.pt2`` archives):
``max_constituents`` must lie in ``1..``:data:`MAX_CONSTITUENTS_LIMIT`; weights holding NaN or
inf are refused (:func:`check_finite_weights`). Files ending in ``.pt2`` are ``torch.export``
archives and are handed to :func:`lloca_hep.export.load_exported`, which vets them first
(:mod:`lloca_hep._safeload`): loading a tagger file from a stranger never runs its code.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.resources
import json
import logging
import os
import pickle
import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lloca_hep._files import atomic_output

log = logging.getLogger(__name__)

FORMAT_NAME = "lloca-hep-tagger"
FORMAT_VERSION = 1
#: Jets scored per forward pass by default.
DEFAULT_BATCH_SIZE = 512
#: Name of the tagger file shipped inside the package (``lloca_hep/data``).
DEFAULT_TAGGER_RESOURCE = "default_tagger.pt"
#: Suffix of ``torch.export`` archives, loaded through :mod:`lloca_hep.export`.
EXPORTED_SUFFIX = ".pt2"
_HEADER_KEYS = ("format", "format_version", "model_name", "config", "max_constituents")
#: Largest ``max_constituents`` a tagger may have. Real jets have at most a few hundred
#: constituents; a file asking for more is damaged or hostile (padding 10**12 constituents
#: would exhaust memory), so :func:`validate_header` and :class:`Tagger` refuse it.
MAX_CONSTITUENTS_LIMIT = 4096
#: Devices :func:`resolve_device` accepts, as told to the user.
DEVICE_CHOICES = "cpu, cuda, cuda:N, mps, auto"
_DEVICE_TYPES = ("cpu", "cuda", "mps")


class TaggerFileError(ValueError):
    """A tagger file is missing pieces, foreign, truncated or from a newer lloca-hep."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class _JetCount(Warning):
    """Base of warnings about ``count`` of ``total`` jets (for callers that add them up)."""

    def __init__(self, message: str = "", count: int = 0, total: int = 0) -> None:
        super().__init__(message)
        self.count = int(count)
        self.total = int(total)


class EmptyJetWarning(_JetCount, UserWarning):
    """Some jets have no constituents; their score is NaN (``count`` of ``total`` jets)."""


class NonFiniteScoreWarning(_JetCount, RuntimeWarning):
    """The model gave NaN/inf for jets that have constituents (``count`` of ``total`` jets):
    the tagger's weights or the inputs are not finite. Distinct from :class:`EmptyJetWarning`."""


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/``None`` -> CUDA when available, else CPU; otherwise ``torch.device(device)``.

    Raises ValueError for anything but :data:`DEVICE_CHOICES` (``"cpu"``, ``"cuda"``,
    ``"cuda:N"``, ``"mps"``, ``"auto"`` or such a :class:`torch.device`) and for a device that
    this machine lacks.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(
            f"invalid device {device!r}: the device option takes {DEVICE_CHOICES}"
        ) from exc
    if dev.type not in _DEVICE_TYPES:
        raise ValueError(
            f"invalid device {str(device)!r}: the device option takes {DEVICE_CHOICES}"
        )
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} requested but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {str(device)!r} requested but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s) (cuda:0 ...)"
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(device)!r} requested but MPS is not available")
    return dev


def _constituents_of(jets: Any) -> Any:
    """The ragged constituents of ``jets``: the ``constituents`` field when there is one."""
    import awkward as ak

    if isinstance(jets, ak.Array):
        fields = ak.fields(jets)
        if "constituents" in fields:
            return jets["constituents"]
    return jets


class Tagger:
    """A trained jet tagger: ``model`` plus the preprocessing that feeds it.

    Parameters
    ----------
    model:
        A module of :mod:`lloca_hep.models`, called as ``model(p4, mask)`` with ``p4`` float64
        ``(B, N, 4)`` ordered (E, px, py, pz) in GeV and ``mask`` bool ``(B, N)``; returns
        logits ``(B,)``.
    model_name:
        The model's key in :data:`lloca_hep.models.MODELS` (needed to save and reload it).
    max_constituents:
        Jets are truncated to their ``max_constituents`` hardest constituents (by pT);
        ``1 <= max_constituents <= MAX_CONSTITUENTS_LIMIT``.
    metadata:
        Free-form JSON-serialisable description (training data, seeds, metrics, ...).
    device:
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"`` (CUDA when available) or a torch device.
    batch_size:
        Jets per forward pass in :meth:`score` and :meth:`score_padded`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        model_name: str,
        max_constituents: int,
        metadata: Mapping[str, Any] | None = None,
        *,
        device: str | torch.device | None = "cpu",
        batch_size: int = DEFAULT_BATCH_SIZE,
        sort_by_pt: bool = True,
    ) -> None:
        if int(max_constituents) < 1:
            raise ValueError(f"max_constituents must be >= 1, got {max_constituents}")
        if int(max_constituents) > MAX_CONSTITUENTS_LIMIT:
            raise ValueError(
                f"max_constituents must be <= {MAX_CONSTITUENTS_LIMIT} "
                f"(lloca_hep.tagger.MAX_CONSTITUENTS_LIMIT), got {max_constituents}"
            )
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_name = str(model_name)
        self.max_constituents = int(max_constituents)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.batch_size = int(batch_size)
        self.sort_by_pt = bool(sort_by_pt)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()

    # ------------------------------------------------------------------ properties
    @property
    def config(self) -> dict[str, Any]:
        """The model's constructor keyword arguments (JSON-serialisable)."""
        return dict(getattr(self.model, "config", {}))

    @property
    def preprocessing(self) -> dict[str, Any]:
        """How jets are turned into the network input."""
        return {
            "max_constituents": self.max_constituents,
            "sort_by_pt": self.sort_by_pt,
            "p4_order": "E,px,py,pz",
            "units": "GeV",
        }

    def __repr__(self) -> str:
        n_params = sum(p.numel() for p in self.model.parameters())
        return (
            f"Tagger(model={self.model_name!r}, parameters={n_params}, "
            f"max_constituents={self.max_constituents}, device={str(self.device)!r})"
        )

    def to(self, device: str | torch.device) -> Tagger:
        """Move the model to ``device`` (in place) and return ``self``."""
        self.device = resolve_device(device)
        self.model.to(self.device)
        return self

    # ------------------------------------------------------------------ scoring
    def score_padded(
        self,
        p4: np.ndarray | torch.Tensor,
        mask: np.ndarray | torch.Tensor,
        *,
        batch_size: int | None = None,
        warn_empty: bool = True,
        warn_nonfinite: bool = True,
    ) -> np.ndarray:
        """Top probabilities for padded jets.

        ``p4``: float64 ``(n_jets, N, 4)`` ordered (E, px, py, pz) in GeV; ``mask``: bool
        ``(n_jets, N)``, True for real constituents. Returns float32 ``(n_jets,)``; jets
        whose mask is all False get NaN (one :class:`EmptyJetWarning` says how many). Jets
        with constituents that the model scores NaN/inf (non-finite weights or inputs) keep
        that score and one :class:`NonFiniteScoreWarning` says how many.
        """
        p4_t = torch.as_tensor(p4)
        mask_t = torch.as_tensor(mask)
        if p4_t.ndim != 3 or p4_t.shape[-1] != 4:
            raise ValueError(f"p4 must have shape (n_jets, N, 4), got {tuple(p4_t.shape)}")
        if mask_t.shape != p4_t.shape[:2]:
            raise ValueError(
                f"mask shape {tuple(mask_t.shape)} does not match p4 shape {tuple(p4_t.shape)}"
            )
        p4_t = p4_t.to(torch.float64)
        mask_t = mask_t.to(torch.bool)
        n_jets = p4_t.shape[0]
        out = np.full(n_jets, np.nan, dtype=np.float32)
        counts = mask_t.sum(dim=1)
        nonempty = torch.nonzero(counts > 0).flatten()
        n_empty = n_jets - int(nonempty.numel())
        if n_empty and warn_empty:
            warnings.warn(
                EmptyJetWarning(
                    f"{n_empty} of {n_jets} jets have no constituents; their score is NaN",
                    n_empty, n_jets,
                ),
                stacklevel=2,
            )
        if nonempty.numel() == 0:
            return out
        bs = int(batch_size or self.batch_size)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for start in range(0, int(nonempty.numel()), bs):
                    idx = nonempty[start:start + bs]
                    # trim padding columns that no jet of this batch uses
                    width = max(int(counts[idx].max()), 1)
                    batch_p4 = p4_t[idx, :width].to(self.device, non_blocking=True)
                    batch_mask = mask_t[idx, :width].to(self.device, non_blocking=True)
                    logits = self.model(batch_p4, batch_mask)
                    probs = _probabilities(logits)
                    out[idx.numpy()] = probs.float().cpu().numpy()
        finally:
            self.model.train(was_training)
        n_bad = int(np.count_nonzero(~np.isfinite(out[nonempty.numpy()])))
        if n_bad and warn_nonfinite:
            warnings.warn(
                NonFiniteScoreWarning(
                    f"the model produced non-finite scores for {n_bad} of {n_jets} jets (the "
                    "tagger file's weights or the inputs are not finite)",
                    n_bad, n_jets,
                ),
                stacklevel=2,
            )
        return out

    def score(self, jets: Any, *, batch_size: int | None = None) -> np.ndarray:
        """Top probabilities, float32 ``(n_jets,)``, one per jet.

        ``jets``: the awkward array returned by :func:`lloca_hep.read_jets` (field
        ``constituents``), or any ragged array of constituent records with ``px, py, pz, E``
        (e.g. ``Momentum4D``) in GeV. Jets are sorted by pT, truncated to
        :attr:`max_constituents` and padded as in training. Jets without constituents get NaN.
        """
        from lloca_hep.preprocessing import pad_jets

        constituents = _constituents_of(jets)
        padded = pad_jets(
            constituents,
            max_constituents=self.max_constituents,
            sort_by_pt=self.sort_by_pt,
            warn_empty=False,
        )
        return self.score_padded(padded.p4, padded.mask, batch_size=batch_size)

    # ------------------------------------------------------------------ saving
    def header(self) -> dict[str, Any]:
        """The JSON header written into the tagger file."""
        from lloca_hep import __version__

        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "lloca_hep_version": __version__,
            "model_name": self.model_name,
            "config": self.config,
            "max_constituents": self.max_constituents,
            "preprocessing": self.preprocessing,
            "metadata": self.metadata,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the tagger to ``path`` atomically (temporary file + rename). Returns the path."""
        path = Path(path)
        state = {k: v.detach().cpu().contiguous().clone() for k, v in
                 self.model.state_dict().items()}
        payload = {"state_dict": state, "header": json.dumps(self.header(), sort_keys=True)}
        atomic_torch_save(payload, path)
        return path


def _probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Top probability from model logits: sigmoid of ``(B,)``/``(B, 1)``, softmax[:, 1] of ``(B, 2+)``."""
    if logits.ndim == 2 and logits.shape[1] == 1:
        logits = logits[:, 0]
    if logits.ndim == 1:
        return torch.sigmoid(logits)
    if logits.ndim == 2:
        return torch.softmax(logits, dim=1)[:, 1]
    raise ValueError(f"model returned logits of shape {tuple(logits.shape)}; expected (B,)")


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


def _read_payload(path: Path, map_location: torch.device | str) -> dict[str, Any]:
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
    version = header["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise TaggerFileError(path, f"invalid format_version {version!r}")
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
    n = header["max_constituents"]
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise TaggerFileError(path, f"invalid max_constituents {n!r}")
    if n > MAX_CONSTITUENTS_LIMIT:
        raise TaggerFileError(
            path,
            f"max_constituents {n} is above the limit of {MAX_CONSTITUENTS_LIMIT} "
            "(lloca_hep.tagger.MAX_CONSTITUENTS_LIMIT); no jet has that many constituents",
        )
    for key in ("preprocessing", "metadata"):
        if header.get(key) is not None and not isinstance(header[key], dict):
            raise TaggerFileError(path, f"{where} entry {key!r} is not a JSON object")
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


def _parse_header(path: Path, payload: Mapping[str, Any]) -> dict[str, Any]:
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


def _build(path: Path, header: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    from lloca_hep import models

    name = header["model_name"]
    if name not in models.MODELS:
        raise TaggerFileError(
            path,
            f"unknown model {name!r}; this lloca-hep knows {sorted(models.MODELS)}",
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
def _shipped_path() -> Iterator[Path]:
    resource = importlib.resources.files("lloca_hep").joinpath("data", DEFAULT_TAGGER_RESOURCE)
    if not resource.is_file():
        raise FileNotFoundError(
            f"the shipped tagger lloca_hep/data/{DEFAULT_TAGGER_RESOURCE} is missing from this "
            "installation; pass the path of a tagger file"
        )
    with importlib.resources.as_file(resource) as p:
        yield Path(p)


def load_tagger(
    path: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device | None = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Tagger:
    """Load a tagger file written by :meth:`Tagger.save` (``None``: the tagger shipped in the package).

    ``device``: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ...
    Files ending in ``.pt2`` are ``torch.export`` archives, loaded by
    :func:`lloca_hep.export.load_exported`.

    Raises :class:`FileNotFoundError` for a missing file and :class:`TaggerFileError`
    (a ``ValueError``) naming the file and the problem for anything that is not a valid tagger.
    """
    if path is None:
        with _shipped_path() as shipped:
            return load_tagger(shipped, device=device, batch_size=batch_size)
    path = Path(path)
    if path.suffix == EXPORTED_SUFFIX:
        try:
            export = importlib.import_module("lloca_hep.export")
        except ImportError as exc:
            raise ImportError(
                f"{path}: loading exported ({EXPORTED_SUFFIX}) taggers needs the module "
                f"lloca_hep.export, which is not available: {exc}"
            ) from exc
        return export.load_exported(path, device=device, batch_size=batch_size)
    dev = resolve_device(device)
    payload = _read_payload(path, map_location="cpu")
    header = _parse_header(path, payload)
    check_finite_weights(path, payload["state_dict"])
    model = _build(path, header, payload["state_dict"])
    preprocessing = header.get("preprocessing") or {}
    max_constituents = header["max_constituents"]
    tagger = Tagger(
        model,
        header["model_name"],
        max_constituents,
        metadata=header.get("metadata") or {},
        device=dev,
        batch_size=batch_size,
        sort_by_pt=bool(preprocessing.get("sort_by_pt", True)),
    )
    log.debug("loaded %r from %s", tagger, path)
    return tagger


def read_tagger_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON header of a tagger file (model, config, metadata) without building the model.

    ``.pt2`` archives are read by :func:`lloca_hep.export.read_exported_header`.
    """
    path = Path(path)
    if path.suffix == EXPORTED_SUFFIX:
        export = importlib.import_module("lloca_hep.export")
        header: dict[str, Any] = export.read_exported_header(path)
        return header
    payload = _read_payload(path, map_location="cpu")
    return _parse_header(path, payload)
