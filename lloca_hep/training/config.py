"""The settings of a training run: :class:`TrainConfig`, the single source of their defaults.

:func:`lloca_hep.training.train` takes a :class:`TrainConfig`; ``lloca-hep train`` builds its
options (flag, type, default, help) from the fields of :class:`TrainConfig` (see
:mod:`lloca_hep.cli.train`); the saved tagger records ``dataclasses.asdict(config)`` under
``metadata["training"]``. A default is therefore spelled once, here.

Each field's ``metadata`` holds its command-line spelling: ``help``, and optionally ``flag``
(default ``--field-name``), ``type`` (an argparse converter of :mod:`lloca_hep.cli._argtypes`),
``choices``, ``metavar``, ``action``, and ``from_cli`` (turns the parsed option into the field's
value, e.g. minutes into seconds).

This module imports neither torch nor the models, so building the command line stays fast.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from typing import Any

from lloca_hep._defaults import DEFAULT_MAX_CONSTITUENTS, MAX_CONSTITUENTS_LIMIT
from lloca_hep.cli._argtypes import (
    fraction,
    json_object,
    name_list,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    step_size,
)

from ._checks import require_number

__all__ = [
    "AMP_CHOICES",
    "DEFAULT_LABEL_BRANCH",
    "DEFAULT_MEMORY_LIMIT_BYTES",
    "DEFAULT_MIXING",
    "DEFAULT_STEP_SIZE",
    "DIST_BACKENDS",
    "FRAME_CHOICES",
    "FREEZE_CHOICES",
    "MIXING_CHOICES",
    "SCHEDULES",
    "TrainConfig",
]

#: Branch with the 0/1 labels (1 = signal).
DEFAULT_LABEL_BRANCH = "is_signal"
#: Padded arrays larger than this are streamed from disk instead of kept in memory (bytes).
DEFAULT_MEMORY_LIMIT_BYTES = 2 * 1024**3
#: Chunk size passed to :func:`lloca_hep.io.iterate_jets` when reading training data.
DEFAULT_STEP_SIZE = "100 MB"
#: How streamed training data are shuffled (:class:`lloca_hep.training.data.StreamingDataset`):
#: every batch drawn from all files in proportion, or files one after the other.
MIXING_CHOICES = ("files", "chunks")
DEFAULT_MIXING = "files"
#: Learning-rate schedules of :mod:`lloca_hep.training.schedule`.
SCHEDULES = ("cosine", "onecycle", "constant")
#: Frame choices of the LLoCa models (``frames=`` of their constructors).
FRAME_CHOICES = ("learned", "global", "random", "identity", "rotations", "beam_rotations")
#: Mixed precision of the backbone (``--amp``): off (float32), bfloat16 or float16 autocast.
AMP_CHOICES = ("off", "bf16", "fp16")
#: ``torch.distributed`` backends under torchrun (auto: nccl on CUDA, gloo on the CPU).
DIST_BACKENDS = ("auto", "gloo", "nccl")
#: What ``--init-from`` fine-tuning keeps fixed: nothing, the frames net, or all but the head.
FREEZE_CHOICES = ("none", "frames", "backbone")
#: The ``torch.compile`` backend of ``--compile`` unless ``--compile-backend`` names another.
DEFAULT_COMPILE_BACKEND = "inductor"
#: ``--time-budget`` is given in minutes, :attr:`TrainConfig.time_budget_s` in seconds.
SECONDS_PER_MINUTE = 60.0


def _setting(default: Any = None, *, help: str, factory: Any = None, **cli: Any) -> Any:
    """A dataclass field with its command-line spelling in ``metadata``."""
    meta = {"help": help, **cli}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _minutes_to_seconds(minutes: float | None) -> float | None:
    return None if minutes is None else minutes * SECONDS_PER_MINUTE


def _zero_is_off(value: int | None) -> int | None:
    return None if value == 0 else value


@dataclass
class TrainConfig:
    """Every setting of a training run (the data files and output directory excepted).

    Settings out of range raise :class:`ValueError` naming the field when the config is built
    (or :meth:`validate` is called after changing a field).
    """

    # ------------------------------------------------------------------ model
    model: str = _setting(
        "transformer", metavar="NAME",
        help="model: transformer (LLoCa transformer), graphnet, llocapart, part (ParT), "
             "llocaparticlenet, particlenet, plain_transformer, jet_mass, or a name of "
             "lloca_hep.models.MODELS (also models added with register_model)")
    model_config: dict[str, Any] = _setting(
        factory=dict, flag="--config", type=json_object, metavar="JSON",
        help="extra model keyword arguments as JSON, e.g. '{\"hidden\": 32}'")
    frames: str | None = _setting(
        None, choices=FRAME_CHOICES,
        help="frame choice: learned (LLoCa), global, random (augmentation), identity (plain "
             "network), rotations, beam_rotations (default: the model's)")
    symmetry_breaking: bool | None = _setting(
        None, flag="--no-symmetry-breaking", action="store_const", const=False,
        help="False: no beam/time reference vectors or non-invariant scalars in the frames "
             "(default: the model's)")
    # ------------------------------------------------------------------ optimisation
    epochs: int = _setting(20, type=positive_int, help="maximum number of epochs")
    batch_size: int = _setting(128, type=positive_int, help="jets per optimizer step")
    lr: float = _setting(1.0e-3, type=positive_float,
                         help="peak learning rate of AdamW (0 keeps the weights)")
    weight_decay: float = _setting(1.0e-2, type=non_negative_float, help="AdamW weight decay")
    schedule: str = _setting("cosine", choices=SCHEDULES,
                             help="learning-rate schedule (cosine: with warm-up)")
    grad_clip: float | None = _setting(
        1.0, type=non_negative_float,
        help="clip the gradient norm to this value (0 or None: off)")
    seed: int = _setting(0, type=int,
                         help="seeds initialisation, shuffling and the validation split")
    # ------------------------------------------------------------------ stopping
    time_budget_s: float | None = _setting(
        None, flag="--time-budget", type=positive_float, metavar="MINUTES",
        from_cli=_minutes_to_seconds,
        help="wall-time budget in seconds (option: minutes), training + validation summed "
             "over resumed runs; the LR schedule anneals within it (None: no budget)")
    patience: int | None = _setting(
        5, type=non_negative_int, from_cli=_zero_is_off,
        help="early stopping after this many epochs without validation-loss improvement "
             "(None, option 0: off)")
    resume: bool = _setting(False, action="store_true",
                            help="continue from OUTPUT/checkpoint.pt")
    # ------------------------------------------------------------------ data
    max_constituents: int = _setting(
        DEFAULT_MAX_CONSTITUENTS, type=positive_int,
        help="constituents kept per jet, hardest first")
    label_branch: str = _setting(
        DEFAULT_LABEL_BRANCH, metavar="BRANCH",
        help="branch with 0/1 labels (1 = signal), or with class indices 0..C-1 when --classes "
             "is given; files with one-hot label_* branches (JetClass) need neither")
    classes: list[str] | None = _setting(
        None, type=name_list, metavar="NAME,...",
        help="class names: with an integer label branch, the names of 0..C-1; with one-hot "
             "label_* branches, the classes expected (in this order). Default: the label_* "
             "suffixes in file order, else binary")
    features: str = _setting(
        "kin", metavar="PRESET|FILE",
        help="per-particle inputs: kin (four-momenta only), kinpid (+ charge and particle "
             "ID), full (+ track displacement), or a JSON/YAML feature file")
    tree: str | None = _setting(
        None, metavar="NAME",
        help="TTree/RNTuple with the jets (default: the one holding a jet layout; FILE:NAME "
             "works too)")
    val_fraction: float = _setting(
        0.1, type=fraction,
        help="fraction of the training jets held out for validation when no validation "
             "files are given")
    max_jets: int | None = _setting(None, type=positive_int, metavar="N",
                                    help="use only the first N training jets (None: all)")
    max_val_jets: int | None = _setting(None, type=positive_int, metavar="N",
                                        help="use only the first N validation jets (None: all)")
    memory_limit_bytes: int = _setting(
        DEFAULT_MEMORY_LIMIT_BYTES, flag="--memory-limit", type=positive_int, metavar="BYTES",
        help="padded data larger than this many bytes are streamed from disk")
    step_size: str | int = _setting(
        DEFAULT_STEP_SIZE, type=step_size,
        help="chunk size for reading: entries (e.g. 100000) or memory (e.g. '100 MB')")
    # data loading and per-jet weights (issue 17)
    workers: int = _setting(
        0, type=non_negative_int, metavar="N",
        help="DataLoader worker processes that read and pad the ROOT files (streamed data: "
             "every epoch, ahead of the training; in-memory data: the first reading). 0 reads "
             "in the training process; the batches do not depend on N")
    mixing: str = _setting(
        DEFAULT_MIXING, choices=MIXING_CHOICES,
        help="streamed data: files (every batch drawn from all files in proportion to their "
             "jets, bounded shuffle buffer per file) or chunks (files one after the other in "
             "random order, groups of reading steps shuffled)")
    weight_branch: str | None = _setting(
        None, metavar="BRANCH",
        help="branch of per-jet sample weights (finite, >= 0), used in the loss (weighted "
             "mean) and the validation metrics")
    class_balance: bool = _setting(
        False, action="store_true",
        help="weight the jets so that every class has the same total training weight "
             "(times the --weight-branch weights)")
    # ------------------------------------------------------------------ machine
    device: str = _setting("auto", help="cpu, cuda, cuda:N or auto (CUDA when available)")
    num_threads: int | None = _setting(
        None, flag="--threads", type=positive_int, metavar="N",
        help="torch CPU threads (None: OMP_NUM_THREADS, else the cores not busy with other "
             "processes)")

    # ------------------------------------------- distributed / precision / fine-tuning
    amp: str = _setting(
        "off", choices=AMP_CHOICES,
        help="mixed precision: autocast the backbone to bfloat16 (bf16) or float16 (fp16, with "
             "a GradScaler); frames and canonicalisation stay float64")
    compile: bool = _setting(False, action="store_true",
                             help="wrap the model in torch.compile for training")
    compile_backend: str = _setting(
        DEFAULT_COMPILE_BACKEND, metavar="NAME",
        help="torch.compile backend of --compile (e.g. aot_eager: no C++ compiler needed)")
    dist_backend: str = _setting(
        "auto", choices=DIST_BACKENDS,
        help="torch.distributed backend when launched by torchrun (auto: nccl on CUDA, "
             "gloo on the CPU)")
    init_from: str | None = _setting(
        None, metavar="TAGGER",
        help="fine-tune: start from the weights of this tagger file or shipped name "
             "(default, jetclass); same model, new head for other classes or features")
    freeze: str = _setting(
        "none", choices=FREEZE_CHOICES,
        help="with --init-from: keep the frames net (frames) or everything but the head and "
             "re-initialised layers (backbone) fixed")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """:class:`ValueError` naming the first field that is out of range."""
        for name in ("epochs", "batch_size", "max_constituents", "memory_limit_bytes"):
            _require_count(name, getattr(self, name))
        if isinstance(self.workers, bool) or not isinstance(self.workers, numbers.Integral) \
                or self.workers < 0:
            raise ValueError(f"workers must be an integer >= 0, got {self.workers!r}")
        if self.mixing not in MIXING_CHOICES:
            raise ValueError(f"mixing must be one of {MIXING_CHOICES}, got {self.mixing!r}")
        if self.weight_branch is not None and (not isinstance(self.weight_branch, str)
                                               or not self.weight_branch):
            raise ValueError(f"weight_branch must be a branch name or None, got "
                             f"{self.weight_branch!r}")
        for name in ("patience", "max_jets", "max_val_jets", "num_threads"):
            if getattr(self, name) is not None:
                _require_count(name, getattr(self, name), suffix=" or None")
        if self.max_constituents > MAX_CONSTITUENTS_LIMIT:
            raise ValueError(f"max_constituents must be at most {MAX_CONSTITUENTS_LIMIT} (the "
                             f"limit of tagger files), got {self.max_constituents}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule: unknown schedule {self.schedule!r}; choose one of "
                             f"{SCHEDULES}")
        if self.frames is not None and self.frames not in FRAME_CHOICES:
            raise ValueError(f"frames must be one of {FRAME_CHOICES} or None, got "
                             f"{self.frames!r}")
        if not isinstance(self.model_config, dict):
            raise ValueError(f"model_config must be a dict, got {self.model_config!r}")
        require_number("lr", self.lr, positive=False)  # lr=0 keeps the weights (tests)
        require_number("weight_decay", self.weight_decay, positive=False)
        if self.time_budget_s is not None:
            require_number("time_budget_s", self.time_budget_s)
        if self.grad_clip is not None:
            require_number("grad_clip", self.grad_clip, positive=False)
        value = require_number("val_fraction", self.val_fraction)
        if value >= 1.0:
            raise ValueError(f"val_fraction must be below 1, got {self.val_fraction!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if not isinstance(self.features, str) or not self.features:
            raise ValueError(f"features must be a preset name or a feature file, got "
                             f"{self.features!r}")
        for name, choices in (("amp", AMP_CHOICES), ("dist_backend", DIST_BACKENDS),
                              ("freeze", FREEZE_CHOICES)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got "
                                 f"{getattr(self, name)!r}")
        if not isinstance(self.compile_backend, str) or not self.compile_backend:
            raise ValueError(f"compile_backend must be a backend name, got "
                             f"{self.compile_backend!r}")
        if self.init_from is not None and (not isinstance(self.init_from, str)
                                           or not self.init_from):
            raise ValueError(f"init_from must be a tagger path or shipped name, got "
                             f"{self.init_from!r}")
        if self.freeze != "none" and self.init_from is None:
            raise ValueError(f"freeze={self.freeze!r} needs init_from (a pretrained tagger)")
        if self.classes is not None:
            names = list(self.classes)
            if len(names) < 2 or len(set(names)) != len(names) or not all(
                    isinstance(c, str) and c.isidentifier() for c in names):
                raise ValueError(f"classes must be at least two distinct names, got "
                                 f"{self.classes!r}")

    def model_kwargs(self) -> dict[str, Any]:
        """The model's constructor keyword arguments: ``model_config`` plus ``frames`` and
        ``symmetry_breaking`` when they are set."""
        kwargs = dict(self.model_config)
        if self.frames is not None:
            kwargs["frames"] = self.frames
        if self.symmetry_breaking is not None:
            kwargs["symmetry_breaking"] = self.symmetry_breaking
        return kwargs

    def to_dict(self) -> dict[str, Any]:
        """``dataclasses.asdict(self)``: what the tagger header and checkpoints record."""
        return dataclasses.asdict(self)


def _require_count(name: str, value: object, suffix: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1{suffix}, got {value!r}")

