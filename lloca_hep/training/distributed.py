"""Multi-process data-parallel training: ``torchrun`` + ``torch.distributed`` DDP.

Launch::

    torchrun --standalone --nproc-per-node 2 -m lloca_hep.training train FILE ... -o OUT

:func:`setup_from_env` reads torchrun's ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` and calls
:func:`torch.distributed.init_process_group` (``--dist-backend``; ``auto``: ``nccl`` on CUDA,
``gloo`` on the CPU); without them (or with ``WORLD_SIZE=1``) training runs in one process as
before. The network is wrapped in :class:`torch.nn.parallel.DistributedDataParallel`.

The scheme reproduces a one-process run with the same seed and global batch size ``B``
(``--batch-size``, which must be divisible by the number of processes W):

* every process reads the same files and iterates the same seeded stream of global batches
  of ``B`` jets; process ``r`` keeps the contiguous slice ``r`` of each batch (``B / W``
  jets; a last, partial batch of ``b`` jets is cut into slices of ``b // W`` or
  ``b // W + 1`` jets; a process whose slice would be empty, ``b < W``, runs on one copy of a
  jet with weight 0) -- :class:`RankSlices`;
* DDP's gradient all-reduce goes through a communication hook that weights each process's
  gradient by its share ``n_r / b`` of the batch and sums, which is exactly the gradient of
  the mean loss over the global batch (for equal slices: DDP's usual average); with per-jet
  weights (``--weight-branch``, ``--class-balance``) the share is the slice's part of the
  batch's summed weight, ``sum_{i in r} w_i / sum_i w_i``, which makes the sum the gradient of
  the batch's weighted mean loss, as in one process;
* all processes hold the same weights (DDP broadcasts them at the start, the all-reduced
  gradients and the optimizer steps are the same everywhere), evaluate the whole validation
  set and so take the same early-stopping decisions; the training loss of ``history.json``
  is the mean over all processes' jets.

Only rank 0 writes the checkpoint, ``history.json`` and ``tagger.pt``; ``--resume`` reads the
checkpoint in every process (and may use another number of processes). The tagger's metadata
(``"distributed"``) and every epoch record of ``history.json`` hold ``world_size`` and
``backend``.

Equality with one process holds within float round-off (the gradient sums are added in
another order) for models whose forward pass draws no random numbers and uses no batch
statistics: dropout and ``random`` frames draw per process, and the batch norm of
``particlenet`` / ``llocaparticlenet`` sees the process's slice only (no SyncBatchNorm; DDP
broadcasts rank 0's running statistics). A wall-time budget (``--time-budget``) is refused
under DDP: the processes would stop, and anneal the learning rate, at different steps.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .checkpoint import is_main_process
from .config import TrainConfig
from .data import Batch, Dataset, class_weight_totals
from .epoch import BatchCallback, Trainer
from .weights import Weighting

log = logging.getLogger(__name__)

__all__ = ["DistributedSetup", "DistributedTrainer", "RankSlices", "is_main_process",
           "setup_from_env", "wrap_model"]

#: Environment variables torchrun sets for every process.
ENV_WORLD_SIZE, ENV_RANK, ENV_LOCAL_RANK = "WORLD_SIZE", "RANK", "LOCAL_RANK"


@dataclass(frozen=True)
class DistributedSetup:
    """The process group of a run: ``world_size`` processes, this one ``rank`` (``local_rank``
    on its machine), ``backend`` (None in one process); ``owns_group`` when
    :func:`setup_from_env` created the group (and :meth:`close` destroys it)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    backend: str | None = None
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files."""
        return self.rank == 0

    def to_json(self) -> dict[str, Any]:
        """``{"world_size": W, "backend": name or None}`` (tagger metadata, history)."""
        return {"world_size": self.world_size, "backend": self.backend}

    def device(self, device: torch.device) -> torch.device:
        """This process's device: ``cuda:LOCAL_RANK`` for a CUDA run under DDP, else
        ``device``. ``ValueError`` for a CUDA device index under DDP (each process uses the
        GPU of its local rank)."""
        if not self.enabled or device.type != "cuda":
            return device
        if device.index not in (None, 0) or torch.cuda.device_count() <= self.local_rank:
            raise ValueError(
                f"--device {device}: under torchrun every process uses cuda:LOCAL_RANK; pass "
                f"--device cuda (or auto) and at most {torch.cuda.device_count()} processes "
                "per node")
        return torch.device("cuda", self.local_rank)

    def barrier(self) -> None:
        """Wait for every process (no-op in one process)."""
        if self.enabled:
            torch.distributed.barrier()

    def close(self) -> None:
        """Destroy the process group if :func:`setup_from_env` created it."""
        if self.owns_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _env_int(name: str) -> int | None:
    text = os.environ.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} is not an integer (set by "
                         "torchrun)") from None


def setup_from_env(config: TrainConfig, device: torch.device) -> DistributedSetup:
    """The process group of this run: an already initialised ``torch.distributed`` group, one
    created from torchrun's environment (``WORLD_SIZE`` > 1; backend ``config.dist_backend``,
    ``auto``: nccl when ``device`` is CUDA, else gloo), or none.

    ``ValueError`` for settings DDP cannot honour: a ``batch_size`` not divisible by the
    number of processes, a time budget, nccl on the CPU, or an incomplete environment.
    """
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        setup = DistributedSetup(dist.get_world_size(), dist.get_rank(),
                                 _env_int(ENV_LOCAL_RANK) or 0, str(dist.get_backend()))
    else:
        world = _env_int(ENV_WORLD_SIZE)
        if world is None or world <= 1:
            return DistributedSetup()
        rank, local_rank = _env_int(ENV_RANK), _env_int(ENV_LOCAL_RANK)
        if rank is None or local_rank is None:
            raise ValueError(f"{ENV_WORLD_SIZE}={world} but {ENV_RANK} or {ENV_LOCAL_RANK} is "
                             "not set: launch distributed training with torchrun")
        _check_settings(config, world)
        backend = config.dist_backend
        if backend == "auto":
            backend = "nccl" if device.type == "cuda" else "gloo"
        if backend == "nccl" and device.type != "cuda":
            raise ValueError(f"--dist-backend nccl needs CUDA devices, this run uses {device}; "
                             "use gloo")
        if not dist.is_available():
            raise ValueError("this torch build has no torch.distributed")
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
        setup = DistributedSetup(world, rank, local_rank, backend, owns_group=True)
        log.info("distributed training: rank %d of %d (local rank %d), backend %s", rank,
                 world, local_rank, backend)
        return setup
    if setup.enabled:
        _check_settings(config, setup.world_size)
    return setup


def _check_settings(config: TrainConfig, world: int) -> None:
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the {world} "
                         "processes: every process takes an equal slice of each global batch")
    if config.time_budget_s is not None:
        raise ValueError("--time-budget is not supported with several processes (they would "
                         "stop and anneal the learning rate at different steps); use --epochs")


@dataclass
class _SliceWeight:
    """What the communication hook and the loss bookkeeping need about the current step:
    this process's share of the batch (``n_r / b``, or of its summed jet weight), its number
    of real jets and ``share * b``, the jets its loss stands for in the epoch's mean."""

    pending: deque[tuple[int, int, float, float]] = field(default_factory=deque)
    weight: float = 1.0
    real: int = 0
    jets: float = 0.0


def _rank_slice(n: int, world: int, rank: int) -> tuple[int, int]:
    """``[lo, hi)`` of slice ``rank`` of ``n`` jets cut into ``world`` contiguous slices whose
    sizes differ by at most one (the first ``n % world`` one jet larger)."""
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def _trim(batch: Batch) -> Batch:
    """Drop padding columns no jet of ``batch`` uses (at least one column is kept)."""
    width = max(int(batch.mask.sum(dim=1).max()), 1) if batch.mask.numel() else 1
    if width == batch.mask.shape[1]:
        return batch
    return batch._replace(p4=batch.p4[:, :width], mask=batch.mask[:, :width],
                          scalars=None if batch.scalars is None else batch.scalars[:, :width])


class RankSlices:
    """The training data as one process of ``setup`` sees them: slice ``setup.rank`` of every
    global batch of the wrapped dataset (see the module docstring). ``len`` and ``n_batches``
    are the global ones; the batches must be consumed in this process, in order (each one
    queues the weight its training step needs)."""

    def __init__(self, data: Dataset, setup: DistributedSetup, state: _SliceWeight,
                 weighting: Weighting | None = None) -> None:
        self.data = data
        self.setup = setup
        self._state = state
        #: the run's per-jet weights (None or inactive: every jet counts 1)
        self.weighting = weighting

    @property
    def class_weights(self) -> tuple[float, ...]:
        """Summed weight per class of the whole training data (for ``--class-balance``)."""
        return tuple(float(w) for w in class_weight_totals(self.data))

    def __len__(self) -> int:
        return len(self.data)

    def n_batches(self, batch_size: int) -> int:
        return self.data.n_batches(batch_size)

    def close(self) -> None:
        """Stop the wrapped data's reading workers."""
        self.data.close()

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                pin_memory: bool = False) -> Iterator[Batch]:
        world, rank = self.setup.world_size, self.setup.rank
        for batch in self.data.batches(batch_size, shuffle=shuffle, seed=seed,
                                       pin_memory=pin_memory):
            n = int(batch.labels.shape[0])
            lo, hi = _rank_slice(n, world, rank)
            real = hi - lo
            if real == 0:  # fewer jets than processes: a zero-weight copy of the last jet
                lo, hi = n - 1, n
            share = real / n
            weights = None if self.weighting is None or not self.weighting.active \
                else self.weighting.jet_weights(batch)
            if weights is not None and real:
                total = float(weights.sum())
                share = float(weights[lo:hi].sum()) / total if total > 0 else 0.0
            part = batch._replace(
                p4=batch.p4[lo:hi], mask=batch.mask[lo:hi], labels=batch.labels[lo:hi],
                scalars=None if batch.scalars is None else batch.scalars[lo:hi],
                weights=None if batch.weights is None else batch.weights[lo:hi])
            self._state.pending.append((hi - lo, real, share, share * n))
            yield _trim(part)


def _weighted_allreduce(state, bucket):
    """DDP communication hook: ``sum_r (n_r / b) * grad_r`` over the processes, the gradient of
    the mean loss over the global batch of ``b`` jets. (Not annotated: DDP refuses hooks whose
    annotations are not the ``dist.GradBucket`` class, and this module's are strings.)"""
    tensor = bucket.buffer()
    tensor.mul_(state.weight)
    future = torch.distributed.all_reduce(tensor, async_op=True).get_future()
    return future.then(lambda fut: fut.value()[0])


class _DataParallel(nn.parallel.DistributedDataParallel):
    """DDP whose ``state_dict`` / ``load_state_dict`` are the wrapped module's (no ``module.``
    prefix: checkpoints and taggers look as in one process) and whose training forward passes
    take their batch weight from the queue :class:`RankSlices` fills."""

    def __init__(self, module: nn.Module, state: _SliceWeight, **kwargs: Any) -> None:
        super().__init__(module, **kwargs)
        self._slice_state = state
        self.register_comm_hook(state, _weighted_allreduce)

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        if self.training and torch.is_grad_enabled():
            state = self._slice_state
            if not state.pending:
                raise RuntimeError("DDP training step without a batch weight: the training "
                                   "batches must come from RankSlices.batches in this process")
            n, state.real, state.weight, state.jets = state.pending.popleft()
            if n != inputs[0].shape[0]:
                raise RuntimeError(f"DDP training step on {inputs[0].shape[0]} jets, the "
                                   f"batch queued by RankSlices has {n}: batches out of order")
        return super().forward(*inputs, **kwargs)

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True,
                        assign: bool = False) -> Any:
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)


def wrap_model(model: nn.Module, setup: DistributedSetup, device: torch.device,
               ) -> tuple[nn.Module, _SliceWeight | None]:
    """``model`` in DDP for ``setup`` (unchanged in one process), and the per-step state that
    :class:`RankSlices` and :class:`DistributedTrainer` share with it."""
    if not setup.enabled:
        return model, None
    state = _SliceWeight()
    ids = [device.index] if device.type == "cuda" else None
    return _DataParallel(model, state, device_ids=ids), state


@dataclass
class DistributedTrainer(Trainer):
    """:class:`~.epoch.Trainer` that records the process group in every epoch record and, under
    DDP, makes the epoch's training loss and fraction those of all processes together."""

    setup: DistributedSetup = field(default_factory=DistributedSetup)
    slice_state: _SliceWeight | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._loss_sum = 0.0
        self._n_real = 0
        user = self.on_batch_end
        if self.setup.enabled:
            self.on_batch_end = self._counting(user)

    def _counting(self, user: BatchCallback | None) -> BatchCallback:
        state = self.slice_state
        assert state is not None

        def on_batch_end(epoch: int, batch: int, loss: float) -> None:
            self._loss_sum += loss * state.jets  # the 1-process sum: batch mean x batch jets
            self._n_real += state.real
            if user is not None:
                user(epoch, batch, loss)
        return on_batch_end

    def train_epoch(self, epoch: int, elapsed: float) -> dict[str, Any]:
        self._loss_sum, self._n_real = 0.0, 0
        record = super().train_epoch(epoch, elapsed)
        if self.setup.enabled:
            totals = torch.tensor([self._loss_sum, float(self._n_real)], dtype=torch.float64,
                                  device=self.device)  # nccl reduces CUDA tensors only
            torch.distributed.all_reduce(totals)
            loss_sum, n_seen = float(totals[0]), float(totals[1])
            record["train_loss"] = loss_sum / max(n_seen, 1.0)
            record["fraction"] = n_seen / max(len(self.train_data), 1)
        record.update(self.setup.to_json())
        return record
