"""The training loop: AdamW + BCEWithLogits, LR schedule, validation, early stopping, resume.

Reproducibility: the model is initialised from ``seed``; every epoch reseeds the global torch
generator and the shuffling from ``(seed, epoch)``. A run resumed from a checkpoint therefore
continues exactly as the uninterrupted run would have (same hardware and thread count), unless
a wall-time budget drives the learning-rate schedule.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lloca_hep.tagger import MAX_CONSTITUENTS_LIMIT, Tagger, resolve_device

from .._files import atomic_output, check_output_dir, output_directory
from . import metrics
from ._checks import check_inputs_exist, require_number
from .checkpoint import (
    CHECKPOINT_NAME,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .data import (
    DEFAULT_LABEL_BRANCH,
    DEFAULT_MEMORY_LIMIT_BYTES,
    DEFAULT_STEP_SIZE,
    Dataset,
    LabelError,
    PaddedDataset,
    _as_paths,
    describe_class,
    load_dataset,
    single_class,
    split_dataset,
)
from .schedule import SCHEDULES, LRSchedule

log = logging.getLogger(__name__)

TAGGER_NAME = "tagger.pt"
HISTORY_NAME = "history.json"
#: Multiplier separating the per-epoch seeds derived from the run seed.
EPOCH_SEED_STRIDE = 1_000_003
#: Validation loss must improve by at least this much to reset early-stopping patience.
EARLY_STOPPING_MIN_DELTA = 1.0e-4
DEFAULT_EPOCHS = 20
DEFAULT_BATCH_SIZE = 128
DEFAULT_LR = 1.0e-3
DEFAULT_WEIGHT_DECAY = 1.0e-2
DEFAULT_PATIENCE = 5
DEFAULT_VAL_FRACTION = 0.1
DEFAULT_GRAD_CLIP = 1.0
DEFAULT_EVAL_BATCH_SIZE = 512

BatchCallback = Callable[[int, int, float], None]

#: Short names accepted for the models of :data:`lloca_hep.models.MODELS`.
MODEL_ALIASES = {
    "transformer": "LLoCaTransformer",
    "graphnet": "LLoCaGraphNet",
    "jet_mass": "JetMassTagger",
}


def resolve_model_name(name: str) -> str:
    """Registry name of ``name`` (a key of :data:`lloca_hep.models.MODELS` or an alias)."""
    from lloca_hep import models as model_registry

    full = MODEL_ALIASES.get(name, name)
    if full not in model_registry.MODELS:
        choices = sorted(set(model_registry.MODELS) | {
            a for a, f in MODEL_ALIASES.items() if f in model_registry.MODELS})
        raise ValueError(f"unknown model {name!r}; choose one of {choices}")
    return full


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    tagger: Tagger
    tagger_path: Path
    output_dir: Path
    history: list[dict[str, Any]]
    best_epoch: int
    epochs_completed: int
    stopped_reason: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * EPOCH_SEED_STRIDE + int(epoch)) % (2**63 - 1)


def evaluate_dataset(
    model: torch.nn.Module,
    data: Dataset,
    device: torch.device,
    batch_size: int = DEFAULT_EVAL_BATCH_SIZE,
) -> dict[str, Any]:
    """Validation metrics (BCE loss, accuracy, AUC, rejections) of ``model`` on ``data``."""
    was_training = model.training
    model.eval()
    probs: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    losses = 0.0
    n = 0
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="sum")
    try:
        with torch.no_grad():
            for p4, mask, y in data.batches(batch_size, shuffle=False):
                logits = model(p4.to(device), mask.to(device)).reshape(-1).float()
                y = y.to(device)
                losses += float(loss_fn(logits, y))
                n += int(y.numel())
                probs.append(torch.sigmoid(logits).cpu().numpy())
                labels.append(y.cpu().numpy())
    finally:
        model.train(was_training)
    p = np.concatenate(probs)
    lab = np.concatenate(labels).astype(np.int64)
    out: dict[str, Any] = {"loss": losses / max(n, 1)}
    if np.all(np.isfinite(p)) and 0 < lab.sum() < lab.size:
        s = metrics.summarize(lab, p)
        out.update({k: s[k] for k in ("accuracy", "auc", "rejection_at_eps_s_0.3",
                                      "rejection_at_eps_s_0.5")})
    return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def train(
    train_files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    output_dir: str | os.PathLike[str],
    val_files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    model: str = "LLoCaTransformer",
    model_config: dict[str, Any] | None = None,
    frames: str | None = None,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lr: float = DEFAULT_LR,
    weight_decay: float = DEFAULT_WEIGHT_DECAY,
    schedule: str = "cosine",
    max_constituents: int = 64,
    label_branch: str = DEFAULT_LABEL_BRANCH,
    resume: bool = False,
    seed: int = 0,
    device: str | torch.device | None = "auto",
    time_budget_s: float | None = None,
    patience: int | None = DEFAULT_PATIENCE,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    grad_clip: float | None = DEFAULT_GRAD_CLIP,
    max_jets: int | None = None,
    max_val_jets: int | None = None,
    num_threads: int | None = None,
    memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES,
    step_size: str | int = DEFAULT_STEP_SIZE,
    progress: bool = True,
    on_batch_end: BatchCallback | None = None,
    tree: str | None = None,
) -> TrainResult:
    """Train a model of :mod:`lloca_hep.models` on ROOT files and save it as a tagger.

    Parameters
    ----------
    train_files, val_files:
        ROOT files read with :func:`lloca_hep.io.iterate_jets`; ``label_branch`` holds 0/1
        (1 = signal). Without ``val_files`` a seeded ``val_fraction`` of the training jets is
        held out. ``tree`` names the TTree/RNTuple in them (default: the one holding jets).
    output_dir:
        Receives ``checkpoint.pt`` (every epoch), ``history.json`` and the final ``tagger.pt``
        (the weights with the lowest validation loss).
    model, model_config, frames:
        Model name in :data:`lloca_hep.models.MODELS` (or an alias of
        :data:`MODEL_ALIASES`: ``"transformer"``, ``"graphnet"``, ``"jet_mass"``), its constructor keyword arguments, and
        optionally the frame choice (``"learned"``, ``"global"``, ``"random"``,
        ``"identity"``), passed to the model as ``frames=``.
    epochs, batch_size, lr, weight_decay, schedule:
        AdamW with peak rate ``lr``; ``schedule`` one of ``"cosine"`` (with warm-up),
        ``"onecycle"``, ``"constant"``.
    time_budget_s:
        Wall-time budget in seconds (training + validation, summed over resumed runs); the run
        stops when it is spent, and the schedule anneals within it.
    patience:
        Early stopping after this many epochs without validation-loss improvement (None: off).
    resume:
        Continue from ``output_dir/checkpoint.pt`` (a run killed mid-epoch loses only that
        epoch). Without it an existing checkpoint in ``output_dir`` is an error.
    seed:
        Seeds initialisation, shuffling and the validation split.
    device:
        ``"auto"``, ``"cpu"``, ``"cuda"``...
    num_threads:
        ``torch.set_num_threads`` for this process (None: leave as is).
    on_batch_end:
        Called as ``on_batch_end(epoch, batch_index, loss)`` after each optimizer step
        (epochs and batches counted from 0).

    Errors
    ------
    Settings out of range (``epochs``, ``batch_size``, ``max_constituents``, ``patience`` < 1,
    ``lr``, ``weight_decay``, ``grad_clip`` < 0, ``time_budget_s`` <= 0, non-finite numbers),
    bad model options, missing input files, an ``output_dir`` that is a file, and an unreadable
    checkpoint raise :class:`ValueError` (or ``FileNotFoundError``) before any data are read.
    Training data whose jets all have one label raise :class:`~.data.LabelError`; validation
    data with one label only log a warning (AUC undefined; the loss still picks the best
    epoch). A run that completes no epoch, or no epoch with a finite validation loss, raises
    ``RuntimeError`` and writes no ``tagger.pt``. When the run fails, the directories it
    created for ``output_dir`` are removed again if they are still empty.
    """
    from lloca_hep.models.registry import check_config

    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
    model = resolve_model_name(model)
    _check_settings(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                    time_budget_s=time_budget_s, patience=patience, grad_clip=grad_clip,
                    max_constituents=max_constituents)
    config = dict(model_config or {})
    if frames is not None:
        config["frames"] = frames
    check_config(model, config)  # a bad option fails before any data are read
    train_paths = _as_paths(train_files)
    val_paths = None if val_files is None else _as_paths(val_files)
    check_inputs_exist(train_paths, "training")
    if val_paths is not None:
        check_inputs_exist(val_paths, "validation")
    _warn_overlap(train_paths, val_paths)
    out_dir = check_output_dir(output_dir)
    ckpt_path = out_dir / CHECKPOINT_NAME
    if ckpt_path.exists() and not resume:
        raise FileExistsError(
            f"{ckpt_path} exists: pass resume=True (--resume) to continue that run, or choose "
            "another output directory"
        )
    # read (and so check) the checkpoint before the data
    ckpt = load_checkpoint(ckpt_path) if resume and ckpt_path.exists() else None
    if resume and ckpt is None:
        log.warning("no checkpoint in %s; starting a new run", out_dir)
    if num_threads:
        torch.set_num_threads(int(num_threads))
    dev = resolve_device(device)

    # an output directory this run creates is removed again if the run fails leaving it empty
    with output_directory(out_dir):
        return _train(
            train_paths, val_paths, out_dir, ckpt, model=model, config=config, dev=dev,
            epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
            schedule=schedule, max_constituents=max_constituents, label_branch=label_branch,
            seed=seed, time_budget_s=time_budget_s, patience=patience,
            val_fraction=val_fraction, grad_clip=grad_clip, max_jets=max_jets,
            max_val_jets=max_val_jets, memory_limit_bytes=memory_limit_bytes,
            step_size=step_size, progress=progress, on_batch_end=on_batch_end, tree=tree,
        )


def _check_settings(*, epochs: int, batch_size: int, lr: float, weight_decay: float,
                    time_budget_s: float | None, patience: int | None, grad_clip: float | None,
                    max_constituents: int) -> None:
    """ValueError naming the first setting of :func:`train` that is out of range."""
    def bad_count(value: object) -> bool:
        return isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1

    for name, value in (("epochs", epochs), ("batch_size", batch_size),
                        ("max_constituents", max_constituents)):
        if bad_count(value):
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if max_constituents > MAX_CONSTITUENTS_LIMIT:
        raise ValueError(f"max_constituents must be at most {MAX_CONSTITUENTS_LIMIT} (the limit "
                         f"of tagger files), got {max_constituents}")
    if patience is not None and bad_count(patience):
        raise ValueError(f"patience must be an integer >= 1 or None (off), got {patience!r}")
    require_number("lr", lr, positive=False)  # lr=0 keeps the weights (tests of the loop)
    require_number("weight_decay", weight_decay, positive=False)
    if time_budget_s is not None:
        require_number("time_budget_s", time_budget_s)
    if grad_clip is not None:
        require_number("grad_clip", grad_clip, positive=False)


def _warn_overlap(train_paths: list[str], val_paths: list[str] | None) -> None:
    """Warn when a validation file is also a training file (the validation loss is then
    meaningless for early stopping and the choice of the best epoch)."""
    if not val_paths:
        return
    for v in val_paths:
        for t in train_paths:
            try:
                same = os.path.samefile(v, t)
            except OSError:  # missing files (or path:tree spellings) are reported when read
                same = False
            if same:
                log.warning("validation file %s is also a training file (%s): the validation "
                            "loss does not measure generalisation", v, t)


def _require_both_classes(data: Dataset, paths: list[str], label_branch: str) -> None:
    """LabelError when every training jet has the same label."""
    only = single_class(data)
    if only is not None:
        raise LabelError(
            f"{', '.join(paths)}: label branch {label_branch!r} holds only class "
            f"{describe_class(only)} in all {len(data)} training jets; training needs both "
            "signal (1) and background (0) jets"
        )


def _warn_single_class(data: Dataset, paths: list[str] | None, label_branch: str) -> None:
    """Warn when every validation jet has the same label (AUC and rejections are undefined)."""
    only = single_class(data)
    if only is not None:
        where = ", ".join(paths) if paths else "the held-out training jets"
        log.warning(
            "validation set (%s): label branch %r holds only class %s in all %d jets; the "
            "validation AUC, accuracy and rejections are undefined, only the validation loss "
            "(which picks the best epoch) is reported", where, label_branch,
            describe_class(only), len(data))


def _train(
    train_paths: list[str],
    val_paths: list[str] | None,
    out_dir: Path,
    ckpt: Checkpoint | None,
    *,
    model: str,
    config: dict[str, Any],
    dev: torch.device,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    schedule: str,
    max_constituents: int,
    label_branch: str,
    seed: int,
    time_budget_s: float | None,
    patience: int | None,
    val_fraction: float,
    grad_clip: float | None,
    max_jets: int | None,
    max_val_jets: int | None,
    memory_limit_bytes: int,
    step_size: str | int,
    progress: bool,
    on_batch_end: BatchCallback | None,
    tree: str | None,
) -> TrainResult:
    """The body of :func:`train`, once its arguments are checked and ``out_dir`` exists."""
    from tqdm.auto import tqdm

    from lloca_hep import models as model_registry

    ckpt_path = out_dir / CHECKPOINT_NAME

    # ---------------------------------------------------------------- data
    t_data = time.perf_counter()
    data = load_dataset(train_paths, max_constituents=max_constituents, label_branch=label_branch,
                        step_size=step_size, memory_limit_bytes=memory_limit_bytes,
                        max_jets=max_jets, progress=progress, tree=tree)
    _require_both_classes(data, train_paths, label_branch)
    if val_paths is None:
        train_data, val_data = split_dataset(data, val_fraction, seed)
    else:
        train_data = data
        val_data = load_dataset(val_paths, max_constituents=max_constituents,
                                label_branch=label_branch, step_size=step_size,
                                memory_limit_bytes=memory_limit_bytes, max_jets=max_val_jets,
                                progress=progress, tree=tree)
    if max_val_jets is not None and isinstance(val_data, PaddedDataset) and len(val_data) > max_val_jets:
        val_data = val_data.subset(np.arange(max_val_jets))
    _warn_single_class(val_data, val_paths, label_branch)
    log.info("data: %d training and %d validation jets (read in %.1f s)", len(train_data),
             len(val_data), time.perf_counter() - t_data)

    # ---------------------------------------------------------------- model
    torch.manual_seed(int(seed))
    net = model_registry.build_model(model, config).to(dev)
    n_params = sum(p.numel() for p in net.parameters())
    stored_config = dict(getattr(net, "config", config))
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = train_data.n_batches(batch_size)
    sched = LRSchedule(optimizer, schedule, lr, epochs * steps_per_epoch, time_budget_s)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    settings = {
        "model_name": model, "config": _json_safe(stored_config), "epochs": epochs,
        "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "schedule": schedule,
        "max_constituents": max_constituents, "label_branch": label_branch, "seed": seed,
        "time_budget_s": time_budget_s, "patience": patience, "grad_clip": grad_clip,
        "val_fraction": None if val_paths is not None else val_fraction,
        "max_jets": max_jets, "max_val_jets": max_val_jets,
    }
    history: list[dict[str, Any]] = []
    best_loss = math.inf
    best_epoch = -1
    bad_epochs = 0
    elapsed = 0.0
    start_epoch = 0
    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}

    if ckpt is not None:
        old = ckpt.meta.get("settings", {})
        for key in ("model_name", "config", "batch_size", "max_constituents", "label_branch",
                    "seed", "schedule"):
            if old.get(key) != settings[key]:
                raise CheckpointError(
                    ckpt_path,
                    f"was written with {key}={old.get(key)!r}, this run has "
                    f"{key}={settings[key]!r}; use another output directory",
                )
        net.load_state_dict(ckpt.model)
        best_state = ckpt.best_model
        optimizer.load_state_dict(ckpt.optimizer)
        sched.load_state_dict(ckpt.scheduler)
        set_rng_state(ckpt.rng)
        history = list(ckpt.meta.get("history", []))
        best_loss = float(ckpt.meta.get("best_loss", math.inf))
        best_epoch = int(ckpt.meta.get("best_epoch", -1))
        bad_epochs = int(ckpt.meta.get("bad_epochs", 0))
        elapsed = float(ckpt.meta.get("elapsed_s", 0.0))
        start_epoch = ckpt.epoch
        log.info("resuming from %s after epoch %d", ckpt_path, start_epoch)
        if ckpt.meta.get("finished"):
            start_epoch = max(start_epoch, epochs)

    stopped = "epochs"
    if start_epoch >= epochs:
        stopped = history[-1].get("stopped", "epochs") if history else "epochs"
    log.info("training %s (%d parameters) on %s for %d epochs", model, n_params, dev, epochs)
    net.train()
    for epoch in range(start_epoch, epochs):
        if time_budget_s is not None and elapsed >= time_budget_s:
            stopped = "time budget"
            break
        torch.manual_seed(_epoch_seed(seed, epoch))
        t0 = time.perf_counter()
        loss_sum = 0.0
        n_seen = 0
        out_of_time = False
        bar = tqdm(train_data.batches(batch_size, shuffle=True, seed=_epoch_seed(seed, epoch)),
                   total=steps_per_epoch, desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                   disable=not progress, leave=False)
        for i, (p4, mask, y) in enumerate(bar):
            lr_now = sched.apply(elapsed + time.perf_counter() - t0)
            p4, mask, y = p4.to(dev), mask.to(dev), y.to(dev)
            logits = net(p4, mask).reshape(-1)
            loss = loss_fn(logits.float(), y)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"training loss became {float(loss)} at epoch {epoch + 1}, batch {i}; "
                    "try a lower learning rate"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
            optimizer.step()
            sched.step()
            loss_val = float(loss.detach())
            loss_sum += loss_val * int(y.numel())
            n_seen += int(y.numel())
            if progress:
                bar.set_postfix(loss=f"{loss_val:.4f}", lr=f"{lr_now:.2e}", refresh=False)
            if on_batch_end is not None:
                on_batch_end(epoch, i, loss_val)
            if time_budget_s is not None and elapsed + time.perf_counter() - t0 >= time_budget_s:
                out_of_time = True
                break
        bar.close()
        t_train = time.perf_counter() - t0
        val = evaluate_dataset(net, val_data, dev)
        t_epoch = time.perf_counter() - t0
        elapsed += t_epoch
        record = {
            "epoch": epoch + 1,
            "fraction": n_seen / max(len(train_data), 1),
            "train_loss": loss_sum / max(n_seen, 1),
            "lr": lr_now,
            "train_s": t_train,
            "epoch_s": t_epoch,
            "elapsed_s": elapsed,
            **{f"val_{k}": v for k, v in val.items()},
        }
        improved = val["loss"] < best_loss - EARLY_STOPPING_MIN_DELTA
        if improved:
            best_loss = val["loss"]
            best_epoch = epoch + 1
            bad_epochs = 0
            best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        else:
            bad_epochs += 1
        finished = False
        if out_of_time:
            stopped, finished = "time budget", True
        elif patience is not None and bad_epochs >= patience:
            stopped, finished = "early stopping", True
        elif epoch + 1 == epochs:
            finished = True
        if finished:
            record["stopped"] = stopped
        history.append(_json_safe(record))
        log.info(
            "epoch %d: train loss %.4f, val loss %.4f, val acc %s, val AUC %s, %.1f s",
            epoch + 1, record["train_loss"], val["loss"],
            f"{val.get('accuracy', float('nan')):.4f}", f"{val.get('auc', float('nan')):.4f}",
            t_epoch,
        )
        meta = {"settings": settings, "history": history, "best_loss": best_loss,
                "best_epoch": best_epoch, "bad_epochs": bad_epochs, "elapsed_s": elapsed,
                "finished": finished}
        save_checkpoint(
            Checkpoint(epoch=epoch + 1, model=net.state_dict(), best_model=best_state,
                       optimizer=optimizer.state_dict(), scheduler=sched.state_dict(),
                       rng=rng_state(), meta=_json_safe(meta)),
            ckpt_path,
        )
        if finished:
            break

    # ---------------------------------------------------------------- final tagger
    if not history:
        raise RuntimeError(f"no epoch was completed; {out_dir / TAGGER_NAME} was not written")
    if best_epoch < 1:
        raise RuntimeError(
            f"no epoch reached a finite validation loss (last: {history[-1].get('val_loss')}); "
            f"{out_dir / TAGGER_NAME} was not written"
        )
    net.load_state_dict(best_state)
    best = next((h for h in history if h["epoch"] == best_epoch), {})
    metadata = {
        "training": settings,
        "train_files": train_paths,
        "val_files": val_paths,
        "n_train_jets": len(train_data),
        "n_val_jets": len(val_data),
        "n_parameters": n_params,
        "epochs_completed": len(history),
        "best_epoch": best_epoch,
        "stopped": stopped,
        "training_time_s": elapsed,
        "device": str(dev),
        "torch_threads": torch.get_num_threads(),
        "validation": {k[4:]: v for k, v in best.items() if k.startswith("val_")},
    }
    tagger = Tagger(net, model, max_constituents, metadata=_json_safe(metadata), device=dev)
    tagger_path = tagger.save(out_dir / TAGGER_NAME)
    with atomic_output(out_dir / HISTORY_NAME) as tmp:
        tmp.write_text(json.dumps(_json_safe(history), indent=1))
    log.info("saved %s (best epoch %d of %d, stopped by %s)", tagger_path, best_epoch,
             len(history), stopped)
    return TrainResult(tagger=tagger, tagger_path=tagger_path, output_dir=out_dir,
                       history=history, best_epoch=best_epoch, epochs_completed=len(history),
                       stopped_reason=stopped, metadata=metadata)
