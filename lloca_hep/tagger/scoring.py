"""The jet tagger users call: a trained model plus the preprocessing it needs.

>>> import lloca_hep
>>> tagger = lloca_hep.load_tagger()            # the tagger shipped in the package
>>> jets = lloca_hep.read_jets("jets.root")
>>> scores = tagger.score(jets)                 # float32 top probability, one per jet

:class:`Tagger` (scoring ragged or padded jets in batches), :func:`resolve_device` and the
warnings about jets it cannot score (:class:`EmptyJetWarning`, :class:`NonFiniteScoreWarning`).
The file format lives in :mod:`lloca_hep.tagger.format`, loading in
:mod:`lloca_hep.tagger.loading`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lloca_hep.errors import FeatureError
from lloca_hep.features import InputSpec, preset

from .format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    FORMAT_VERSION_V1,
    MAX_CONSTITUENTS_LIMIT,
    write_tagger_file,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEVICE_CHOICES",
    "EmptyJetWarning",
    "NonFiniteScoreWarning",
    "Tagger",
    "resolve_device",
]

#: Jets scored per forward pass by default. On the CPU larger batches are not faster: at 512
#: jets of 48-64 constituents a forward pass frees and re-touches tens of MB, which glibc's
#: malloc returns to the system and faults in again each time (docs/benchmarks.md, issue 14).
DEFAULT_BATCH_SIZE = 256
#: On the CPU, an input of at least this many jets is split into at least this many batches,
#: so that two cores share even a small input. The split never depends on the thread count,
#: and each batch runs with one intra-op thread: on one kind of CPU the scores are bitwise the
#: same on 1 or 64 threads.
MIN_CPU_BATCHES = 2
#: Devices :func:`resolve_device` accepts, as told to the user.
DEVICE_CHOICES = "cpu, cuda, cuda:N, mps, auto"
_DEVICE_TYPES = ("cpu", "cuda", "mps")
#: Class names of a binary tagger without its own: background, then signal (column 1).
DEFAULT_BINARY_CLASSES = ("background", "signal")


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
    inputs:
        The per-particle features the model reads (:class:`lloca_hep.features.InputSpec`;
        None: the four-momenta only, preset ``kin``). Their count must match the model's
        ``num_scalars`` (+ ``num_frames_scalars``).
    classes:
        Names of the output classes (the model's ``num_classes`` of them for a multi-class
        tagger; for a binary tagger two names, background then signal). None: ``background,
        signal`` for binary taggers, ``class0 ...`` otherwise.

    A binary tagger (logits ``(B,)``, or two classes) scores one float32 signal probability
    per jet; a multi-class tagger (``num_classes`` > 2) scores ``(n_jets, C)`` probabilities
    whose columns :attr:`class_names` names.

    On the CPU, :meth:`score_padded` scores its batches on ``torch.get_num_threads()``
    threads side by side, one intra-op thread each (:attr:`parallel_batches`), with batches
    that do not depend on the thread count, so the scores do not either; the model's
    ``forward`` must then be safe to call from several threads in evaluation mode, as torch
    modules without state written in ``forward`` are.
    """

    #: Score batches on several threads on the CPU (False: one batch at a time, each with
    #: torch's intra-op threads; for back ends with their own thread pool).
    parallel_batches: bool = True

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
        inputs: InputSpec | None = None,
        classes: Sequence[str] | None = None,
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
        self.inputs: InputSpec = preset("kin") if inputs is None else inputs
        config = self.config
        n_model = int(config.get("num_scalars", 0) or 0) + int(
            config.get("num_frames_scalars", 0) or 0)
        if config and n_model != len(self.inputs):
            raise ValueError(
                f"the model reads {n_model} per-particle scalars but the input set "
                f"{self.inputs.name!r} has {len(self.inputs)} features")
        if config and int(config.get("num_scalars", 0) or 0) != self.inputs.num_invariant:
            raise ValueError(
                f"the model takes {config.get('num_scalars', 0)} invariant scalars but the "
                f"input set {self.inputs.name!r} has {self.inputs.num_invariant}")
        n_out = config.get("num_classes")
        self.n_classes = 2 if n_out is None else int(n_out)
        if classes is None:
            classes = (DEFAULT_BINARY_CLASSES if self.n_classes == 2
                       else tuple(f"class{i}" for i in range(self.n_classes)))
        classes = tuple(str(c) for c in classes)
        if len(classes) != self.n_classes or len(set(classes)) != len(classes):
            raise ValueError(f"classes {list(classes)} must be {self.n_classes} distinct names "
                             "(one per model output)")
        self.class_names: tuple[str, ...] = classes

    # ------------------------------------------------------------------ properties
    @property
    def config(self) -> dict[str, Any]:
        """The model's constructor keyword arguments (JSON-serialisable)."""
        return dict(getattr(self.model, "config", {}))

    @property
    def is_multiclass(self) -> bool:
        """True when :meth:`score` returns ``(n_jets, C)`` (more than two classes)."""
        return self.n_classes > 2

    @property
    def preprocessing(self) -> dict[str, Any]:
        """How jets are turned into the network input."""
        out: dict[str, Any] = {
            "max_constituents": self.max_constituents,
            "sort_by_pt": self.sort_by_pt,
            "p4_order": "E,px,py,pz",
            "units": "GeV",
        }
        if len(self.inputs):
            out["scalars"] = list(self.inputs.names)
        return out

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
        scalars: np.ndarray | torch.Tensor | None = None,
    ) -> np.ndarray:
        """Class probabilities for padded jets.

        ``p4``: float64 ``(n_jets, N, 4)`` ordered (E, px, py, pz) in GeV; ``mask``: bool
        ``(n_jets, N)``, True for real constituents; ``scalars``: the transformed per-particle
        features ``(n_jets, N, S)`` (columns ``inputs.names``; required when S > 0).
        Returns float32 ``(n_jets,)`` (signal probability; ``(n_jets, C)`` for a
        multi-class tagger); jets
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
        scalars_t = None
        if len(self.inputs):
            if scalars is None:
                raise FeatureError(
                    f"this tagger reads {len(self.inputs)} per-particle features (input set "
                    f"{self.inputs.name!r}: {', '.join(self.inputs.names)}); pass scalars=")
            scalars_t = torch.as_tensor(scalars).to(torch.float32)
            if scalars_t.shape != (*p4_t.shape[:2], len(self.inputs)):
                raise ValueError(f"scalars must have shape {(*p4_t.shape[:2], len(self.inputs))},"
                                 f" got {tuple(scalars_t.shape)}")
        shape = (n_jets, self.n_classes) if self.is_multiclass else (n_jets,)
        out = np.full(shape, np.nan, dtype=np.float32)
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
        batches, workers = self._plan_batches(counts, nonempty, bs)
        was_training = self.model.training
        self.model.eval()
        try:
            self._run_batches(batches, workers, p4_t, mask_t, scalars_t, counts, out)
        finally:
            self.model.train(was_training)
        finite = np.isfinite(out[nonempty.numpy()])
        n_bad = int(np.count_nonzero(~(finite.all(axis=1) if finite.ndim == 2 else finite)))
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

    def _one_thread_batches(self) -> bool:
        """True where batches run with one intra-op thread each (the CPU, torch back end)."""
        return self.device.type == "cpu" and self.parallel_batches

    def _batch_workers(self) -> int:
        """Threads that score batches side by side: ``torch.get_num_threads()`` on the CPU
        (each then runs its batches with one intra-op thread), else 1."""
        if not self._one_thread_batches():
            return 1
        return max(1, int(torch.get_num_threads()))

    def _plan_batches(self, counts: torch.Tensor, nonempty: torch.Tensor,
                      batch_size: int) -> tuple[list[torch.Tensor], int]:
        """The batches (indices into the jets) of at most ``batch_size`` jets with
        constituents, and how many threads score them.

        Jets are ordered by descending multiplicity (stable), so that each batch is padded
        only to its own longest jet and the widest batches start first; the network sees
        every jet alone (no batch statistics in evaluation), so the order changes the scores
        only by float round-off. The batches do not depend on the thread count: on the CPU
        there are at least :data:`MIN_CPU_BATCHES` of them (when there are that many jets),
        their sizes within one jet.
        """
        n = int(nonempty.numel())
        order = nonempty[torch.argsort(counts[nonempty], descending=True, stable=True)]
        n_batches = -(-n // batch_size)
        if self._one_thread_batches():
            n_batches = max(n_batches, min(n, MIN_CPU_BATCHES))
        workers = min(self._batch_workers(), n_batches)
        return list(torch.tensor_split(order, n_batches)), max(workers, 1)

    def _run_batches(self, batches: list[torch.Tensor], workers: int, p4: torch.Tensor,
                     mask: torch.Tensor, scalars: torch.Tensor | None, counts: torch.Tensor,
                     out: np.ndarray) -> None:
        """Score ``batches`` into the rows of ``out``, on ``workers`` threads.

        With several workers, each thread scores whole batches with one torch intra-op
        thread (:func:`torch.set_num_threads` acts on the calling thread's OpenMP/MKL pools;
        the caller's count is restored): the two cores stay busy through the serial parts of
        a forward pass (Python, the numba frame kernels) and no thread spins at an OpenMP
        barrier waiting for a core that another process holds.
        """
        device = self.device

        def one(idx: torch.Tensor) -> np.ndarray:
            width = max(int(counts[idx].max()), 1)  # trim padding no jet of this batch uses
            batch_p4 = p4[idx, :width].to(device, non_blocking=True)
            batch_mask = mask[idx, :width].to(device, non_blocking=True)
            with torch.no_grad():
                if scalars is None:
                    logits = self.model(batch_p4, batch_mask)
                else:
                    batch_s = scalars[idx, :width].to(device, non_blocking=True)
                    logits = self.model(batch_p4, batch_mask, batch_s)
                probs = _probabilities(logits, self.is_multiclass)
                return np.asarray(probs.float().cpu().numpy())

        if not self._one_thread_batches():
            for idx in batches:
                out[idx.numpy()] = one(idx)
            return

        threads = torch.get_num_threads()
        if workers <= 1:  # one intra-op thread here too: the same arithmetic as on a pool
            try:
                torch.set_num_threads(1)
                for idx in batches:
                    out[idx.numpy()] = one(idx)
            finally:
                torch.set_num_threads(threads)
            return

        def single_threaded(idx: torch.Tensor) -> np.ndarray:
            torch.set_num_threads(1)
            return one(idx)

        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lloca-score")
        try:
            futures = [pool.submit(single_threaded, idx) for idx in batches]
            for idx, future in zip(batches, futures, strict=True):
                out[idx.numpy()] = future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(threads)

    def score(self, jets: Any, *, batch_size: int | None = None) -> np.ndarray:
        """Signal probabilities, float32 ``(n_jets,)`` (``(n_jets, C)`` for a multi-class
        tagger, columns :attr:`class_names`), one row per jet.

        ``jets``: the awkward array returned by :func:`lloca_hep.read_jets` (field
        ``constituents``; for a tagger with features read with ``features=tagger.inputs``), or
        any ragged array of constituent records with ``px, py, pz, E`` (e.g. ``Momentum4D``)
        in GeV and the raw feature fields. Jets are sorted by pT, truncated to
        :attr:`max_constituents` and padded as in training; the features are transformed as
        the input set says. Jets without constituents get NaN.
        """
        from lloca_hep.preprocessing.inputs import network_inputs

        padded = network_inputs(_constituents_of(jets), self.inputs, self.max_constituents,
                                self.sort_by_pt)
        return self.score_padded(padded.p4, padded.mask, batch_size=batch_size,
                                 scalars=padded.scalars)

    # ------------------------------------------------------------------ saving
    def header(self) -> dict[str, Any]:
        """The JSON header written into the tagger file."""
        from lloca_hep import __version__

        header = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION_V1,
            "lloca_hep_version": __version__,
            "model_name": self.model_name,
            "config": self.config,
            "max_constituents": self.max_constituents,
            "preprocessing": self.preprocessing,
            "metadata": self.metadata,
            "classes": list(self.class_names),
        }
        if len(self.inputs) or self.is_multiclass:
            # older lloca-hep cannot score these: they refuse version 2 with "upgrade"
            header["format_version"] = FORMAT_VERSION
            header["inputs"] = self.inputs.to_json()
        return header

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the tagger to ``path`` atomically (temporary file + rename). Returns the path."""
        return write_tagger_file(path, self.header(), self.model.state_dict())


def _probabilities(logits: torch.Tensor, multiclass: bool = False) -> torch.Tensor:
    """Probabilities from model logits: sigmoid of ``(B,)``/``(B, 1)``; for ``(B, C)`` the
    softmax, all of it when ``multiclass`` else its column 1 (the signal)."""
    if logits.ndim == 2 and logits.shape[1] == 1:
        logits = logits[:, 0]
    if logits.ndim == 1:
        return torch.sigmoid(logits)
    if logits.ndim == 2:
        probs = torch.softmax(logits, dim=1)
        return probs if multiclass else probs[:, 1]
    raise ValueError(f"model returned logits of shape {tuple(logits.shape)}; expected (B,)")


