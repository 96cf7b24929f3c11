"""The epochs of a training run: optimizer steps, validation, early stopping, checkpoints.

:func:`run_epochs` is the body of :func:`lloca_hep.training.train` once the data, the model and
the optimizer exist: it trains epoch after epoch until ``config.epochs``, the time budget or
early stopping ends the run, saving a checkpoint after every epoch. Its whole state between
epochs is a :class:`RunState`, which is what the checkpoint's ``meta`` stores.

Reproducibility: every epoch reseeds the global torch generator and the shuffling from
``(seed, epoch)``, so a resumed run continues exactly as the uninterrupted one would; the
batches do not depend on the number of DataLoader workers (:mod:`.data`).

Weights (:mod:`.weights`): with a weight branch or class balancing the loss of a batch is the
weighted mean of the per-jet losses, and the validation loss, accuracy and AUCs are weighted.
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
from .data import Batch, Dataset, class_weight_totals
from .labels import LabelSpec
from .schedule import LRSchedule
from .weights import Weighting, class_balance_factors, weighted_mean

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
    p4 = batch.p4.to(device, non_blocking=True)
    mask = batch.mask.to(device, non_blocking=True)
    if batch.scalars is None:
        return model(p4, mask)
    return model(p4, mask, batch.scalars.to(device, non_blocking=True))


def loss_function(multiclass: bool, reduction: str = "mean") -> torch.nn.Module:
    """Cross-entropy on ``(B, C)`` logits for C > 2, else BCE on ``(B,)`` logits."""
    if multiclass:
        return torch.nn.CrossEntropyLoss(reduction=reduction)
    return torch.nn.BCEWithLogitsLoss(reduction=reduction)


def prepare_logits(logits: torch.Tensor, multiclass: bool) -> torch.Tensor:
    """float32 ``(B, C)`` logits (multi-class) or ``(B,)`` (binary)."""
    return logits.float() if multiclass else logits.reshape(-1).float()


def batch_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None,
               multiclass: bool) -> torch.Tensor:
    """The loss of a batch: the mean BCE (cross-entropy for C > 2) of ``logits`` against
    ``labels``, weighted by ``weights (B,)`` when given (``sum w_i l_i / sum w_i``)."""
    if weights is None:
        return loss_function(multiclass)(logits, labels)
    return weighted_mean(loss_function(multiclass, reduction="none")(logits, labels), weights)


def make_weighting(config: TrainConfig, data: Dataset) -> Weighting:
    """The :class:`~.weights.Weighting` of a run: ``config.weight_branch`` and, with
    ``config.class_balance``, the class factors of the training ``data``."""
    factors = None
    if config.class_balance:
        factors = tuple(float(f) for f in class_balance_factors(class_weight_totals(data)))
    return Weighting(config.weight_branch, factors)


def evaluate_dataset(
    model: torch.nn.Module,
    data: Dataset,
    device: torch.device,
    batch_size: int = DEFAULT_EVAL_BATCH_SIZE,
    classes: tuple[str, ...] | None = None,
    weighting: Weighting | None = None,
    pin_memory: bool = False,
) -> dict[str, Any]:
    """Validation numbers of ``model`` on ``data``: ``loss`` (mean BCE, or cross-entropy for
    more than two ``classes``) and, when the classes are present, ``accuracy``, ``auc`` (the
    macro one-vs-rest AUC for several classes) and for binary labels the rejections (keys of
    :meth:`Metrics.to_json`); all weighted by ``weighting`` when it weights the jets."""
    multiclass = classes is not None and len(classes) > 2
    was_training = model.training
    model.eval()
    probs: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    weighted = weighting is not None and weighting.active
    losses = 0.0
    n = 0.0
    loss_fn = loss_function(multiclass, reduction="sum" if not weighted else "none")
    try:
        with torch.no_grad():
            for batch in data.batches(batch_size, shuffle=False, pin_memory=pin_memory):
                logits = prepare_logits(forward(model, batch, device), multiclass)
                y = batch.labels.to(device, non_blocking=True)
                if weighted:
                    assert weighting is not None
                    w = weighting.jet_weights(batch)
                    assert w is not None
                    losses += float((loss_fn(logits, y).cpu().double() * w.double()).sum())
                    n += float(w.double().sum())
                    weights.append(w.numpy())
                else:
                    losses += float(loss_fn(logits, y))
                    n += int(y.numel())
                prob = torch.softmax(logits, dim=1) if multiclass else torch.sigmoid(logits)
                probs.append(prob.cpu().numpy())
                labels.append(y.cpu().numpy())
    finally:
        model.train(was_training)
    p = np.concatenate(probs)
    lab = np.concatenate(labels).astype(np.int64)
    wts = np.concatenate(weights).astype(np.float64) if weighted else None
    out: dict[str, Any] = {"loss": losses / n if n > 0 else (math.nan if weighted else 0.0)}
    if not np.all(np.isfinite(p)):
        return out
    if wts is not None:  # jets of zero weight do not count
        keep = wts > 0
        p, lab, wts = p[keep], lab[keep], wts[keep]
    if multiclass:
        from .multiclass import summarize_multiclass

        assert classes is not None
        if np.unique(lab).size >= 2:
            mm = summarize_multiclass(lab, p, classes, weights=wts)
            out.update({"accuracy": mm.accuracy, "auc": mm.macro_auc})
    elif 0 < lab.sum() < lab.size:
        m = metrics.summarize(lab, p, weights=wts)
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
        self.weighting = make_weighting(self.config, self.train_data)
        #: batches are pinned for the asynchronous copy to a CUDA device
        self.pin_memory = self.device.type == "cuda"

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
                                           seed=epoch_seed(cfg.seed, epoch),
                                           pin_memory=self.pin_memory),
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
        labels = data.labels.to(self.device, non_blocking=True)
        if self.weighting.active:
            loss = batch_loss(logits, labels, self.weighting.jet_weights(data, self.device),
                              self.multiclass)
        else:
            loss = self.loss_fn(logits, labels)
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
        checkpointed (with ``settings``) to ``ckpt_path`` after every epoch. The data's reading
        workers are stopped when it returns or raises."""
        try:
            return self._run_epochs(state, start_epoch, ckpt_path, settings)
        finally:
            self.train_data.close()
            self.val_data.close()

    def _run_epochs(self, state: RunState, start_epoch: int, ckpt_path: Path,
                    settings: dict[str, Any]) -> str:
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
                                   classes=None if self.labels is None else self.labels.classes,
                                   weighting=self.weighting, pin_memory=self.pin_memory)
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
