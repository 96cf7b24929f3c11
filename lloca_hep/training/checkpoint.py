"""Training checkpoints: everything needed to continue a run, in plain tensors.

A checkpoint is one ``torch.save`` of a dict holding only tensors, numbers, strings, lists,
tuples and dicts, so :func:`load_checkpoint` reads it with ``weights_only=True``:

* ``model``, ``best_model``: state dicts (current weights, and the best ones seen so far);
* ``optimizer``: ``optimizer.state_dict()``;
* ``scheduler``: the learning-rate schedule's state;
* ``rng``: torch CPU (and CUDA) generator states as uint8 tensors;
* ``epoch``: number of completed epochs;
* ``meta``: a JSON string (model name and config, training settings, history, early-stopping
  state, elapsed training seconds).

Writes are atomic (temporary file + rename): a run killed while saving leaves the previous
checkpoint intact. Under ``torch.distributed`` (torchrun, :mod:`.distributed`) only rank 0
writes (:func:`is_main_process`); every rank reads the checkpoint to resume.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lloca_hep.tagger import atomic_torch_save

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "lloca-hep-checkpoint"
CHECKPOINT_VERSION = 1
CORRUPT = "the checkpoint file is truncated or corrupt"
START_OVER = ("it cannot be resumed: restore a complete copy, or move it away (or choose "
              "another output directory) to start a new run")


class CheckpointError(ValueError):
    """A checkpoint file is unreadable or does not belong to this run."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = str(path)
        super().__init__(f"{path}: {problem}")


@dataclass
class Checkpoint:
    """The state of a training run after ``epoch`` completed epochs."""

    epoch: int
    model: dict[str, torch.Tensor]
    best_model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)


def is_main_process() -> bool:
    """False only in a process of an initialised ``torch.distributed`` group whose rank is not
    0: the files of a run (checkpoint, history, tagger) are written by rank 0 alone."""
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized() and dist.get_rank() != 0)


def _cpu_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def rng_state() -> dict[str, Any]:
    """Global torch RNG states (CPU and every CUDA device) as uint8 tensors."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(ckpt: Checkpoint, path: str | os.PathLike[str]) -> Path:
    """Write ``ckpt`` atomically to ``path`` (on rank 0 only under ``torch.distributed``: the
    other ranks return ``path`` without writing)."""
    path = Path(path)
    if not is_main_process():
        return path
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "epoch": int(ckpt.epoch),
        "model": _cpu_state(ckpt.model),
        "best_model": _cpu_state(ckpt.best_model),
        "optimizer": ckpt.optimizer,
        "scheduler": ckpt.scheduler,
        "rng": ckpt.rng,
        "meta": json.dumps(ckpt.meta, sort_keys=True),
    }
    atomic_torch_save(payload, path)
    return path


def _check_archive(path: Path) -> None:
    """CheckpointError unless ``path`` is a complete zip archive (what ``torch.save`` writes)
    whose members all pass their CRC check: a cut-off file has no zip index, and torch itself
    does not notice damaged tensor data."""
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(
            path, f"{CORRUPT} ({size} bytes, not a complete torch archive); {START_OVER}"
        ) from exc
    if bad is not None:
        raise CheckpointError(path, f"{CORRUPT} ({bad} fails its CRC check); {START_OVER}")


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``, on CPU).

    A truncated or damaged file raises :class:`CheckpointError` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint")
    _check_archive(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refuses anything but plain data
        raise CheckpointError(
            path, "holds objects other than tensors, numbers and strings (refused by "
                  "torch.load(weights_only=True)): not a lloca-hep training checkpoint, or "
                  "corrupt") from exc
    except Exception as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CheckpointError(
            path, f"{CORRUPT} (torch cannot read it: {detail}); {START_OVER}"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(path, "not a lloca-hep training checkpoint")
    version = payload.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(path, f"invalid checkpoint version {version!r}")
    if version > CHECKPOINT_VERSION:
        raise CheckpointError(path, f"checkpoint version {version} is too new")
    try:
        meta = json.loads(payload["meta"])
        return Checkpoint(
            epoch=int(payload["epoch"]),
            model=payload["model"],
            best_model=payload["best_model"],
            optimizer=payload["optimizer"],
            scheduler=payload["scheduler"],
            rng=payload["rng"],
            meta=meta,
        )
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise CheckpointError(path, f"checkpoint is incomplete ({exc})") from exc
