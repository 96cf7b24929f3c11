"""The epochs of a training run: optimizer steps, validation, early stopping, checkpoints.

:func:`run_epochs` is the body of :func:`lloca_hep.training.train` once the data, the model and
the optimizer exist: it trains epoch after epoch until ``config.epochs``, the time budget or
early stopping ends the run, saving a checkpoint after every epoch. Its whole state between
epochs is a :class:`RunState`, which is what the checkpoint's ``meta`` stores.

Reproducibility: every epoch reseeds the global torch generator and the shuffling from
``(seed, epoch)``, so a resumed run continues exactly as the uninterrupted one would.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import metrics
from .checkpoint import Checkpoint, rng_state, save_checkpoint
from .config import TrainConfig
from .data import Batch, Dataset
from .labels import LabelSpec
from .schedule import LRSchedule

log = logging.getLogger(__name__)

#: Multiplier separating the per-epoch seeds derived from the run seed.
EPOCH_SEED_STRIDE = 1_000_003
#: Validation loss must improve by at least this much to reset early-stopping patience.
EARLY_STOPPING_MIN_DELTA = 1.0e-4
#: Jets per forward pass of the validation.
DEFAULT_EVAL_BATCH_SIZE = 512

#: ``on_batch_end(epoch, batch_index, loss)``, epochs and batches counted from 0.
BatchCallback = Callable[[int, int, float], None]
State = dict[str, torch.Tensor]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` (from 0) of a run seeded with ``seed``."""
    return (int(seed) * EPOCH_SEED_STRIDE + int(epoch)) % (2**63 - 1)


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats made JSON-safe (NaN -> None, inf -> "inf")."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def forward(model: torch.nn.Module, batch: Batch, device: torch.device) -> torch.Tensor:
    """The model's logits for ``batch`` (scalars passed only when the batch has them)."""
    p4, mask = batch.p4.to(device), batch.mask.to(device)
    if batch.scalars is None:
        return model(p4, mask)
    return model(p4, mask, batch.scalars.to(device))


def loss_function(multiclass: bool, reduction: str = "mean") -> torch.nn.Module:
    """Cross-entropy on ``(B, C)`` logits for C > 2, else BCE on ``(B,)`` logits."""
    if multiclass:
        return torch.nn.CrossEntropyLoss(reduction=reduction)
    return torch.nn.BCEWithLogitsLoss(reduction=reduction)


def prepare_logits(logits: torch.Tensor, multiclass: bool) -> torch.Tensor:
    """float32 ``(B, C)`` logits (multi-class) or ``(B,)`` (binary)."""
    return logits.float() if multiclass else logits.reshape(-1).float()


def evaluate_dataset(
    model: torch.nn.Module,
    data: Dataset,
    device: torch.device,
    batch_size: int = DEFAULT_EVAL_BATCH_SIZE,
    classes: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Validation numbers of ``model`` on ``data``: ``loss`` (mean BCE, or cross-entropy for
    more than two ``classes``) and, when the classes are present, ``accuracy``, ``auc`` (the
    macro one-vs-rest AUC for several classes) and for binary labels the rejections (keys of
    :meth:`Metrics.to_json`)."""
    multiclass = classes is not None and len(classes) > 2
    was_training = model.training
    model.eval()
    probs: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    losses = 0.0
    n = 0
    loss_fn = loss_function(multiclass, reduction="sum")
    try:
        with torch.no_grad():
            for batch in data.batches(batch_size, shuffle=False):
                logits = prepare_logits(forward(model, batch, device), multiclass)
                y = batch.labels.to(device)
                losses += float(loss_fn(logits, y))
                n += int(y.numel())
                prob = torch.softmax(logits, dim=1) if multiclass else torch.sigmoid(logits)
                probs.append(prob.cpu().numpy())
                labels.append(y.cpu().numpy())
    finally:
        model.train(was_training)
    p = np.concatenate(probs)
    lab = np.concatenate(labels).astype(np.int64)
    out: dict[str, Any] = {"loss": losses / max(n, 1)}
    if not np.all(np.isfinite(p)):
        return out
    if multiclass:
        from .multiclass import summarize_multiclass

        assert classes is not None
        if np.unique(lab).size >= 2:
            mm = summarize_multiclass(lab, p, classes)
            out.update({"accuracy": mm.accuracy, "auc": mm.macro_auc})
    elif 0 < lab.sum() < lab.size:
        m = metrics.summarize(lab, p)
        out.update({"accuracy": m.accuracy, "auc": m.auc})
        out.update({metrics.rejection_key(e): v for e, v in m.rejection.items()})
    return out


@dataclass
class RunState:
    """Everything a run carries from one epoch to the next (checkpointed after each)."""

    best_state: State
    history: list[dict[str, Any]] = field(default_factory=list)
    best_loss: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    elapsed_s: float = 0.0
    finished: bool = False

    def meta(self, settings: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint's ``meta`` (JSON): ``settings`` and the scalars of this state."""
        return json_safe({"settings": settings, "history": self.history,
                          "best_loss": self.best_loss, "best_epoch": self.best_epoch,
                          "bad_epochs": self.bad_epochs, "elapsed_s": self.elapsed_s,
                          "finished": self.finished})

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> RunState:
        meta = ckpt.meta
        return cls(best_state=ckpt.best_model, history=list(meta.get("history", [])),
                   best_loss=float(meta.get("best_loss", math.inf)),
                   best_epoch=int(meta.get("best_epoch", -1)),
                   bad_epochs=int(meta.get("bad_epochs", 0)),
                   elapsed_s=float(meta.get("elapsed_s", 0.0)),
                   finished=bool(meta.get("finished", False)))


@dataclass
class Trainer:
    """The objects one training run steps: network, optimizer, schedule and data."""

    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    train_data: Dataset
    val_data: Dataset
    device: torch.device
    config: TrainConfig
    progress: bool = True
    on_batch_end: BatchCallback | None = None
    labels: LabelSpec | None = None
    grad_scaler: torch.amp.GradScaler | None = None  # [amp] --amp fp16 loss scaling

    def __post_init__(self) -> None:
        self.multiclass = self.labels is not None and self.labels.multiclass
        self.loss_fn = loss_function(self.multiclass)

    def train_epoch(self, epoch: int, elapsed: float) -> dict[str, Any]:
        """One pass over the training data (cut short by the time budget); returns the
        epoch's record for ``history.json`` without the validation numbers."""
        from tqdm.auto import tqdm

        cfg = self.config
        budget = cfg.time_budget_s
        torch.manual_seed(epoch_seed(cfg.seed, epoch))
        t0 = time.perf_counter()
        loss_sum = 0.0
        n_seen = 0
        lr_now = math.nan
        out_of_time = False
        steps = self.train_data.n_batches(cfg.batch_size)
        bar = tqdm(self.train_data.batches(cfg.batch_size, shuffle=True,
                                           seed=epoch_seed(cfg.seed, epoch)),
                   total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not self.progress, leave=False)
        for i, batch in enumerate(bar):
            lr_now = self.schedule.apply(elapsed + time.perf_counter() - t0)
            loss_val = self._step(batch, epoch, i)
            n_batch = int(batch.labels.numel())
            loss_sum += loss_val * n_batch
            n_seen += n_batch
            if self.progress:
                bar.set_postfix(loss=f"{loss_val:.4f}", lr=f"{lr_now:.2e}", refresh=False)
            if self.on_batch_end is not None:
                self.on_batch_end(epoch, i, loss_val)
            if budget is not None and elapsed + time.perf_counter() - t0 >= budget:
                out_of_time = True
                break
        bar.close()
        return {"epoch": epoch + 1, "fraction": n_seen / max(len(self.train_data), 1),
                "train_loss": loss_sum / max(n_seen, 1), "lr": lr_now,
                "train_s": time.perf_counter() - t0, "out_of_time": out_of_time}

    def _step(self, data: Batch, epoch: int, batch: int) -> float:
        """One optimizer step on a batch; returns its loss."""
        logits = prepare_logits(forward(self.net, data, self.device), self.multiclass)
        loss = self.loss_fn(logits, data.labels.to(self.device))
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss became {float(loss)} at epoch {epoch + 1}, batch {batch}; "
                "try a lower learning rate"
            )
        self.optimizer.zero_grad(set_to_none=True)
        scaler = self.grad_scaler  # [amp] None unless --amp fp16
        (loss if scaler is None else scaler.scale(loss)).backward()  # [amp]
        if scaler is not None:  # [amp] clip the unscaled gradients
            scaler.unscale_(self.optimizer)
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.config.grad_clip)
        if scaler is None:  # [amp]
            self.optimizer.step()
        else:  # [amp] skips the step when the scaled gradients overflowed
            scaler.step(self.optimizer)
            scaler.update()
        self.schedule.step()
        return float(loss.detach())

    def run_epochs(self, state: RunState, start_epoch: int, ckpt_path: Path,
                   settings: dict[str, Any]) -> str:
        """Train from ``start_epoch`` until the run ends; returns why it stopped
        (``"epochs"``, ``"time budget"``, ``"early stopping"``). ``state`` is updated and
        checkpointed (with ``settings``) to ``ckpt_path`` after every epoch."""
        cfg = self.config
        stopped = "epochs"
        if start_epoch >= cfg.epochs:
            return state.history[-1].get("stopped", "epochs") if state.history else "epochs"
        self.net.train()
        for epoch in range(start_epoch, cfg.epochs):
            if cfg.time_budget_s is not None and state.elapsed_s >= cfg.time_budget_s:
                return "time budget"
            t0 = time.perf_counter()
            record = self.train_epoch(epoch, state.elapsed_s)
            out_of_time = record.pop("out_of_time")
            val = evaluate_dataset(self.net, self.val_data, self.device,
                                   classes=None if self.labels is None else self.labels.classes)
            t_epoch = time.perf_counter() - t0
            state.elapsed_s += t_epoch
            record.update({"epoch_s": t_epoch, "elapsed_s": state.elapsed_s,
                           **{f"val_{k}": v for k, v in val.items()}})
            if val["loss"] < state.best_loss - EARLY_STOPPING_MIN_DELTA:
                state.best_loss, state.best_epoch, state.bad_epochs = val["loss"], epoch + 1, 0
                state.best_state = {k: v.detach().cpu().clone()
                                    for k, v in self.net.state_dict().items()}
            else:
                state.bad_epochs += 1
            if out_of_time:
                stopped, state.finished = "time budget", True
            elif cfg.patience is not None and state.bad_epochs >= cfg.patience:
                stopped, state.finished = "early stopping", True
            elif epoch + 1 == cfg.epochs:
                state.finished = True
            if state.finished:
                record["stopped"] = stopped
            state.history.append(json_safe(record))
            log.info("epoch %d: train loss %.4f, val loss %.4f, val acc %s, val AUC %s, %.1f s",
                     epoch + 1, record["train_loss"], val["loss"],
                     f"{val.get('accuracy', math.nan):.4f}", f"{val.get('auc', math.nan):.4f}",
                     t_epoch)
            save_checkpoint(
                Checkpoint(epoch=epoch + 1, model=self.net.state_dict(),
                           best_model=state.best_state, optimizer=self.optimizer.state_dict(),
                           scheduler=self.schedule.state_dict(), rng=rng_state(),
                           meta=state.meta(settings)),
                ckpt_path,
            )
            if state.finished:
                break
        return stopped
