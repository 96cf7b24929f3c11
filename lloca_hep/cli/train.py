"""``lloca-hep train``: its options are the fields of :class:`~lloca_hep.training.TrainConfig`
(plus the files, ``--val``, ``-o`` and ``--no-progress``); it runs
:func:`lloca_hep.training.train`."""

from __future__ import annotations

import argparse
from typing import Any

from ._exitcodes import EXIT_OK, guard
from ._options import add_command, add_config_options, add_progress_option, config_from_args

DEFAULT_OUTPUT = "lloca-hep-train"

HELP = "train a tagger on labelled ROOT files"
DESCRIPTION = (
    "Train a LLoCa tagger (or a baseline) on ROOT files with a 0/1 label branch. "
    "Writes OUTPUT/checkpoint.pt every epoch, OUTPUT/history.json and the final "
    "OUTPUT/tagger.pt (best validation loss), which `lloca-hep tag --model` and "
    "lloca_hep.load_tagger() read. A killed run continues with --resume. The settings "
    "are the fields of lloca_hep.training.TrainConfig. Data-parallel on several processes: "
    "torchrun --standalone --nproc-per-node N -m lloca_hep.training train FILE ... "
    "(DDP; --batch-size is the global batch, divisible by N; rank 0 writes the files)."
)


@guard
def run(args: argparse.Namespace) -> int:
    """Train, then print where the tagger went and its best validation numbers."""
    from lloca_hep.training import TrainConfig, train

    config = config_from_args(TrainConfig, args)
    result = train(args.files, config, output_dir=args.output, val_files=args.val,
                   progress=not args.no_progress)
    if result.rank != 0:  # under torchrun rank 0 reports
        return EXIT_OK
    best = result.metadata.get("validation", {})
    print(f"saved {result.tagger_path}")
    print(f"  epochs {result.epochs_completed} (stopped by {result.stopped_reason}), "
          f"best epoch {result.best_epoch}, training time "
          f"{result.metadata['training_time_s']:.0f} s")
    if best:  # accuracy and AUC are missing when the validation jets have one class
        print("  validation: " + ", ".join(
            f"{name} {best[key]:.4f}" if isinstance(best.get(key), float) else f"{name} n/a"
            for name, key in (("loss", "loss"), ("accuracy", "accuracy"), ("AUC", "auc"))))
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``train`` to the ``lloca-hep`` subcommand parsers."""
    from lloca_hep.training.config import TrainConfig

    p = add_command(subparsers, "train", run, help=HELP, description=DESCRIPTION)
    p.add_argument("files", nargs="+", help="training ROOT files")
    p.add_argument("--val", nargs="+", default=None, metavar="FILE",
                   help="validation files (default: hold out --val-fraction of the training "
                        "jets)")
    p.add_argument("-o", "--output", default=DEFAULT_OUTPUT, metavar="DIR",
                   help=f"output directory (default ./{DEFAULT_OUTPUT})")
    add_progress_option(p)
    add_config_options(p, TrainConfig)
