"""``train()``: check the settings and files, read the data, build the model, run the epochs of
:mod:`.epoch`, and save the best epoch's weights as a self-describing tagger.

The model is initialised from ``config.seed``; with the per-epoch reseeding of :mod:`.epoch` a
run resumed from a checkpoint continues exactly as the uninterrupted run would have (same
hardware and thread count), unless a wall-time budget drives the learning-rate schedule.

Under torchrun the run is data-parallel (:mod:`.distributed`: DDP, rank 0 writes the files);
``--amp`` and ``--compile`` are applied by :mod:`.amp`, ``--init-from`` / ``--freeze`` by
:mod:`.finetune`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lloca_hep._malloc import keep_freed_memory
from lloca_hep._threads import apply_threads
from lloca_hep.errors import LabelError
from lloca_hep.features import InputSpec, resolve_features
from lloca_hep.models.registry import resolve_model_name
from lloca_hep.tagger import Tagger, resolve_device

from .._files import atomic_output, check_output_dir, output_directory
from ._checks import check_inputs_exist
from .amp import TrainingModel, check_amp, make_grad_scaler
from .checkpoint import CHECKPOINT_NAME, Checkpoint, CheckpointError, load_checkpoint, set_rng_state
from .config import DEFAULT_LABEL_BRANCH, TrainConfig
from .data import (
    Dataset,
    PaddedDataset,
    _as_paths,
    describe_class,
    load_dataset,
    single_class,
    split_dataset,
)
from .distributed import (
    DistributedSetup,
    DistributedTrainer,
    RankSlices,
    setup_from_env,
    wrap_model,
)
from .epoch import BatchCallback, RunState, json_safe, make_weighting
from .finetune import Pretrained, TransferReport, finetune_model, freeze, load_pretrained, transfer
from .labels import LabelSpec, file_labels
from .schedule import LRSchedule

log = logging.getLogger(__name__)

__all__ = ["TrainResult", "train"]

TAGGER_NAME = "tagger.pt"
HISTORY_NAME = "history.json"
#: Settings a resumed run must share with the run that wrote the checkpoint.
RESUME_MUST_MATCH = ("model", "model_config", "frames", "symmetry_breaking", "batch_size",
                     "max_constituents", "label_branch", "classes", "features", "seed",
                     "schedule", "mixing", "weight_branch", "class_balance", "init_from",
                     "freeze")

Files = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]

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
    config: TrainConfig
    metadata: dict[str, Any] = field(default_factory=dict)
    #: This process's rank under torchrun (0 in one process; rank 0 wrote the files).
    rank: int = 0


def train(
    train_files: Files,
    config: TrainConfig | None = None,
    *,
    output_dir: str | os.PathLike[str],
    val_files: Files | None = None,
    progress: bool = True,
    on_batch_end: BatchCallback | None = None,
    **old_keywords: Any,
) -> TrainResult:
    """Train a model of :mod:`lloca_hep.models` on ROOT files and save it as a tagger.

    Parameters
    ----------
    train_files, val_files:
        ROOT files read with :func:`lloca_hep.io.iterate_jets` (with the per-particle
        features of ``config.features``). Labels (:mod:`lloca_hep.training.labels`): one-hot
        ``label_*`` branches when the files have them, an integer ``config.label_branch``
        with ``config.classes``, or 0/1 ``config.label_branch`` (1 = signal). Without
        ``val_files`` a seeded ``config.val_fraction`` of the training jets is held out.
    config:
        Every setting of the run (:class:`TrainConfig`; None: all defaults).
    output_dir:
        Receives ``checkpoint.pt`` (every epoch), ``history.json`` and the final ``tagger.pt``
        (the weights with the lowest validation loss; its header records ``config`` under
        ``metadata["training"]``). An existing checkpoint there is an error unless
        ``config.resume``.
    progress:
        Show progress bars.
    on_batch_end:
        Called as ``on_batch_end(epoch, batch_index, loss)`` after each optimizer step
        (epochs and batches counted from 0).

    Errors
    ------
    Settings out of range raise :class:`ValueError` when the :class:`TrainConfig` is built;
    bad model options, missing input files, an ``output_dir`` that is a file, and an
    unreadable checkpoint raise :class:`ValueError` (or ``FileNotFoundError``) before any data
    are read. Training data whose jets all have one label raise :class:`~.data.LabelError`;
    validation data with one label only log a warning (AUC undefined; the loss still picks the
    best epoch). A run that completes no epoch, or no epoch with a finite validation loss,
    raises ``RuntimeError`` and writes no ``tagger.pt``. When the run fails, the directories
    it created for ``output_dir`` are removed again if they are still empty.
    """
    from lloca_hep.models.registry import check_config

    if old_keywords:
        raise TypeError(
            f"train() got settings as keywords ({', '.join(sorted(old_keywords))}); pass them "
            "in a TrainConfig: train(files, TrainConfig(epochs=..., ...), output_dir=...)")
    config = TrainConfig() if config is None else config
    config.validate()  # fields may have been changed after construction
    config = dataclasses.replace(config, model=resolve_model_name(config.model))
    if config.init_from is None:  # (with --init-from: checked below, for the tagger's model)
        check_config(config.model, config.model_kwargs())  # before any data are read
    resolve_features(config.features)
    train_paths = _as_paths(train_files)
    val_paths = None if val_files is None else _as_paths(val_files)
    check_inputs_exist(train_paths, "training")
    if val_paths is not None:
        check_inputs_exist(val_paths, "validation")
    _warn_overlap(train_paths, val_paths)
    out_dir = check_output_dir(output_dir)
    ckpt_path = out_dir / CHECKPOINT_NAME
    if ckpt_path.exists() and not config.resume:
        raise FileExistsError(
            f"{ckpt_path} exists: pass resume=True (--resume) to continue that run, or choose "
            "another output directory"
        )
    # read (and so check) the checkpoint before the data
    ckpt = load_checkpoint(ckpt_path) if config.resume and ckpt_path.exists() else None
    if config.resume and ckpt is None:
        log.warning("no checkpoint in %s; starting a new run", out_dir)
    apply_threads(config.num_threads)  # None: OMP_NUM_THREADS or the cores free
    keep_freed_memory()  # steps reuse freed memory instead of faulting it in again
    dev = resolve_device(config.device)
    check_amp(config.amp, dev)
    pretrained = None if config.init_from is None else load_pretrained(config.init_from)

    inputs = resolve_features(config.features)  # feature files are checked before any data
    labels = _resolve_label_spec(train_paths[0], config)
    if pretrained is None:
        model_kwargs = network_kwargs(config, labels, inputs)
    else:
        name, model_kwargs = finetune_model(pretrained, config, labels, inputs)
        config = dataclasses.replace(config, model=name)
        check_config(config.model, model_kwargs)
    setup = setup_from_env(config, dev)  # torchrun: one process of a DDP group
    try:
        dev = setup.device(dev)
        progress = progress and setup.is_main
        # an output directory this run creates is removed again if the run fails leaving it
        # empty
        with output_directory(out_dir):
            train_data, val_data = _load_data(train_paths, val_paths, config, progress, labels,
                                              inputs)
            run = _Run(config, out_dir, ckpt, dev, progress, on_batch_end, labels, inputs,
                       model_kwargs, pretrained, setup)
            return _fit(train_data, val_data, run,
                        inputs={"train_files": train_paths, "val_files": val_paths})
    finally:
        setup.close()


@dataclass
class _Run:
    """What :func:`_fit` needs besides the data: the settings, where to write, the checkpoint
    to resume from, the device, the labels and inputs, the model's keyword arguments, the
    tagger to fine-tune and the process group."""

    config: TrainConfig
    out_dir: Path
    ckpt: Checkpoint | None
    device: torch.device
    progress: bool
    on_batch_end: BatchCallback | None
    labels: LabelSpec
    features: InputSpec
    model_kwargs: dict[str, Any]
    pretrained: Pretrained | None
    setup: DistributedSetup


def _resolve_label_spec(first: str, config: TrainConfig) -> LabelSpec:
    """How the labels are read, from the branch names of the first training file."""
    return file_labels(first, config.tree, config.label_branch, config.classes,
                       DEFAULT_LABEL_BRANCH)


def _warn_overlap(train_paths: list[str], val_paths: list[str] | None) -> None:
    """Warn when a validation file is also a training file (the validation loss is then
    meaningless for early stopping and the choice of the best epoch)."""
    for v in val_paths or ():
        for t in train_paths:
            try:
                same = os.path.samefile(v, t)
            except OSError:  # missing files (or path:tree spellings) are reported when read
                same = False
            if same:
                log.warning("validation file %s is also a training file (%s): the validation "
                            "loss does not measure generalisation", v, t)


def _load_data(train_paths: list[str], val_paths: list[str] | None, config: TrainConfig,
               progress: bool, labels: LabelSpec, inputs: InputSpec,
               ) -> tuple[Dataset, Dataset]:
    """The training and validation data (a seeded split of the training jets without
    ``val_paths``); LabelError when all training jets have one label."""
    t_data = time.perf_counter()
    read = dict(max_constituents=config.max_constituents, labels=labels, inputs=inputs,
                step_size=config.step_size, memory_limit_bytes=config.memory_limit_bytes,
                progress=progress, tree=config.tree, weight_branch=config.weight_branch,
                workers=config.workers, mixing=config.mixing)
    data = load_dataset(train_paths, max_jets=config.max_jets, **read)  # type: ignore[arg-type]
    only = single_class(data)
    if only is not None:
        raise LabelError(
            f"{', '.join(train_paths)}: {labels.describe()} holds only class "
            f"{describe_class(only, labels.classes)} in all {len(data)} training jets; training "
            + ("needs both signal (1) and background (0) jets" if labels.kind == "binary"
               else "needs jets of at least two classes")
        )
    if val_paths is None:
        train_data, val_data = split_dataset(data, config.val_fraction, config.seed)
    else:
        train_data = data
        val_data = load_dataset(val_paths, max_jets=config.max_val_jets,
                                **read)  # type: ignore[arg-type]
    limit = config.max_val_jets
    if limit is not None and isinstance(val_data, PaddedDataset) and len(val_data) > limit:
        val_data = val_data.subset(np.arange(limit))
    only = single_class(val_data)
    if only is not None:
        log.warning(
            "validation set (%s): %s holds only class %s in all %d jets; the "
            "validation AUC, accuracy and rejections are undefined, only the validation loss "
            "(which picks the best epoch) is reported",
            ", ".join(val_paths) if val_paths else "the held-out training jets",
            labels.describe(), describe_class(only, labels.classes), len(val_data))
    log.info("data: %d training and %d validation jets (read in %.1f s)", len(train_data),
             len(val_data), time.perf_counter() - t_data)
    return train_data, val_data


def _check_resumable(ckpt_path: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    """CheckpointError naming the first setting of :data:`RESUME_MUST_MATCH` that differs (a
    setting the checkpoint predates counts as its default)."""
    defaults = TrainConfig().to_dict()
    for key in RESUME_MUST_MATCH:
        was = old.get(key, defaults[key])
        if was != new[key]:
            raise CheckpointError(
                ckpt_path,
                f"was written with {key}={was!r}, this run has {key}={new[key]!r}; "
                "use another output directory",
            )


def network_kwargs(config: TrainConfig, labels: LabelSpec, features: InputSpec) -> dict[str, Any]:
    """The model's keyword arguments: the config's, plus the number of classes (C > 2) and of
    per-particle scalars that the labels and the input set call for."""
    kwargs = config.model_kwargs()
    if labels.multiclass:
        kwargs["num_classes"] = labels.n_classes
    if len(features):
        kwargs["num_scalars"] = features.num_invariant
        kwargs["num_frames_scalars"] = features.num_symmetry_breaking
    return kwargs


def _fit(train_data: Dataset, val_data: Dataset, run: _Run,
         inputs: dict[str, Any]) -> TrainResult:
    """Build the model and optimizer (or restore them from the checkpoint), run the epochs and
    save the tagger and ``history.json`` (rank 0)."""
    from lloca_hep import models as model_registry

    config, out_dir, dev, setup = run.config, run.out_dir, run.device, run.setup
    labels, features, ckpt = run.labels, run.features, run.ckpt
    ckpt_path = out_dir / CHECKPOINT_NAME
    torch.manual_seed(int(config.seed))
    net = model_registry.build_model(config.model, run.model_kwargs).to(dev)
    report: TransferReport | None = None
    if run.pretrained is not None:
        report = transfer(net, run.pretrained)
        freeze(net, config.freeze, report)
    n_params = sum(p.numel() for p in net.parameters())
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    total_steps = config.epochs * train_data.n_batches(config.batch_size)
    sched = LRSchedule(optimizer, config.schedule, config.lr, total_steps, config.time_budget_s)
    settings = json_safe(config.to_dict())
    state = RunState(best_state={k: v.detach().clone() for k, v in net.state_dict().items()})
    start_epoch = 0
    if ckpt is not None:
        _check_resumable(ckpt_path, ckpt.meta.get("settings", {}), settings)
        net.load_state_dict(ckpt.model)
        optimizer.load_state_dict(ckpt.optimizer)
        sched.load_state_dict(ckpt.scheduler)
        set_rng_state(ckpt.rng)
        state = RunState.from_checkpoint(ckpt)
        start_epoch = ckpt.epoch
        log.info("resuming from %s after epoch %d", ckpt_path, start_epoch)
        if state.finished:
            start_epoch = max(start_epoch, config.epochs)
    log.info("training %s (%d parameters) on %s for %d epochs%s", config.model, n_params, dev,
             config.epochs, f" in {setup.world_size} processes ({setup.backend})"
             if setup.enabled else "")
    step_net: torch.nn.Module = net
    if config.amp != "off" or config.compile:
        step_net = TrainingModel(net, amp=config.amp, device_type=dev.type,
                                 compile=config.compile, compile_backend=config.compile_backend)
    step_net, slices = wrap_model(step_net, setup, dev)
    step_data: Dataset | RankSlices = train_data
    if slices is not None:
        step_data = RankSlices(train_data, setup, slices, make_weighting(config, train_data))
    trainer = DistributedTrainer(step_net, optimizer, sched, step_data,  # type: ignore[arg-type]
                                 val_data, dev, config, progress=run.progress,
                                 on_batch_end=run.on_batch_end, labels=labels,
                                 grad_scaler=make_grad_scaler(config.amp, dev), setup=setup,
                                 slice_state=slices)
    stopped = trainer.run_epochs(state, start_epoch, ckpt_path, settings)

    history = state.history
    if not history:
        raise RuntimeError(f"no epoch was completed; {out_dir / TAGGER_NAME} was not written")
    if state.best_epoch < 1:
        raise RuntimeError(
            f"no epoch reached a finite validation loss (last: {history[-1].get('val_loss')}); "
            f"{out_dir / TAGGER_NAME} was not written"
        )
    net.load_state_dict(state.best_state)
    best = next((h for h in history if h["epoch"] == state.best_epoch), {})
    metadata = {
        "training": settings,
        **inputs,
        "n_train_jets": len(train_data),
        "n_val_jets": len(val_data),
        "n_parameters": n_params,
        "epochs_completed": len(history),
        "best_epoch": state.best_epoch,
        "stopped": stopped,
        "training_time_s": state.elapsed_s,
        "device": str(dev),
        "torch_threads": torch.get_num_threads(),
        "distributed": setup.to_json(),
        "labels": labels.to_json(),
        "weighting": trainer.weighting.to_json(),
        "validation": {k[4:]: v for k, v in best.items() if k.startswith("val_")},
    }
    if report is not None:
        metadata["init_from"] = report.to_json()
    tagger = Tagger(net, config.model, config.max_constituents, metadata=json_safe(metadata),
                    device=dev, inputs=features, classes=labels.classes)
    tagger_path = out_dir / TAGGER_NAME
    if setup.is_main:  # under DDP rank 0 alone writes
        tagger.save(tagger_path)
        with atomic_output(out_dir / HISTORY_NAME) as tmp:
            tmp.write_text(json.dumps(json_safe(history), indent=1))
        log.info("saved %s (best epoch %d of %d, stopped by %s)", tagger_path, state.best_epoch,
                 len(history), stopped)
    setup.barrier()  # every process returns once the files are written
    return TrainResult(tagger=tagger, tagger_path=tagger_path, output_dir=out_dir,
                       history=history, best_epoch=state.best_epoch,
                       epochs_completed=len(history), stopped_reason=stopped, config=config,
                       metadata=metadata, rank=setup.rank)
