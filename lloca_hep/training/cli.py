"""``lloca-hep train``, ``lloca-hep evaluate`` and ``lloca-hep tag``.

:func:`register` adds the three subcommands to the ``lloca-hep`` parser. Each handler returns an
exit code: 0 success, 2 bad input (missing/unreadable file, bad branch, bad model file, bad
option), 1 any other failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from typing import Any

from .._argtypes import non_negative_float, non_negative_int, positive_float, positive_int
from .._exitcodes import EXIT_OK, guard

log = logging.getLogger("lloca_hep")

FRAME_CHOICES = ("learned", "global", "random", "identity", "rotations", "beam_rotations")
SECONDS_PER_MINUTE = 60.0


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"hidden\": 32}'")
    return value


def _step_size(text: str) -> str | int:
    return int(text) if text.isdigit() else text


def _format_metrics(result: dict[str, Any]) -> str:
    lines = []
    for key in ("n_jets", "n_empty", "accuracy", "auc", "rejection_at_eps_s_0.3",
                "rejection_at_eps_s_0.5", "jets_per_second"):
        if key in result and result[key] is not None:
            v = result[key]
            text = f"{v:.4f}" if isinstance(v, float) and math.isfinite(v) and v < 10 else (
                f"{v:.1f}" if isinstance(v, float) else str(v))
            lines.append(f"  {key:<24} {text}")
    for name, path in (result.get("files") or {}).items():
        lines.append(f"  {name:<24} {path}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- handlers
@guard
def _cmd_train(args: argparse.Namespace) -> int:
    from .loop import train

    config = dict(args.config or {})
    if args.no_symmetry_breaking:
        config["symmetry_breaking"] = False
    result = train(
        args.files,
        output_dir=args.output,
        val_files=args.val,
        model=args.model,
        model_config=config,
        frames=args.frames,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        max_constituents=args.max_constituents,
        label_branch=args.label_branch,
        resume=args.resume,
        seed=args.seed,
        device=args.device,
        time_budget_s=None if args.time_budget is None else args.time_budget * SECONDS_PER_MINUTE,
        patience=None if args.patience == 0 else args.patience,
        max_jets=args.max_jets,
        max_val_jets=args.max_val_jets,
        num_threads=args.threads,
        progress=not args.no_progress,
        tree=args.tree,
    )
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


@guard
def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_files

    _set_threads(args)
    result = evaluate_files(
        args.files,
        model=args.model,
        output_dir=args.output,
        device=args.device,
        label_branch=args.label_branch,
        max_jets=args.max_jets,
        progress=not args.no_progress,
        tree=args.tree,
    )
    print(f"evaluated {result['model']} on {result['n_jets'] + result['n_empty']} jets")
    print(_format_metrics(result))
    return EXIT_OK


@guard
def _cmd_tag(args: argparse.Namespace) -> int:
    from .tag import tag_file

    _set_threads(args)
    summary = tag_file(
        args.input,
        args.output,
        model=args.model,
        step_size=args.step_size,
        overwrite=args.overwrite,
        device=args.device,
        batch_size=args.batch_size,
        tree=args.tree,
        progress=not args.no_progress,
    )
    print(
        f"wrote {summary['output']}: tree {summary['tree']!r}, branch {summary['branch']!r}, "
        f"{summary['n_entries']} entries, {summary['n_jets']} jets "
        f"({summary['jets_per_second']:.0f} jets/s)"
    )
    return EXIT_OK


# ---------------------------------------------------------------------------- registration
def _common(p: argparse.ArgumentParser, threads: bool = True) -> None:
    p.add_argument("--device", default="auto",
                   help="cpu, cuda, cuda:N or auto (CUDA when available; default)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--tree", default=None, metavar="NAME",
                   help="TTree/RNTuple with the jets (default: the tree that holds a jet "
                        "layout; FILE:NAME works too)")
    if threads:
        p.add_argument("--threads", type=positive_int, default=None,
                       help="torch CPU threads (default: torch's choice; 1 is fastest on a "
                            "machine whose cores are busy with other work)")


def _set_threads(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def register(subparsers: Any) -> None:
    """Add ``train``, ``evaluate`` and ``tag`` to the ``lloca-hep`` subcommand parsers."""
    # ------------------------------------------------------------------ train
    p = subparsers.add_parser(
        "train",
        help="train a tagger on labelled ROOT files",
        description=(
            "Train a LLoCa tagger (or a baseline) on ROOT files with a 0/1 label branch. "
            "Writes OUTPUT/checkpoint.pt every epoch, OUTPUT/history.json and the final "
            "OUTPUT/tagger.pt (best validation loss), which `lloca-hep tag --model` and "
            "lloca_hep.load_tagger() read. A killed run continues with --resume."
        ),
    )
    p.add_argument("files", nargs="+", help="training ROOT files")
    p.add_argument("--val", nargs="+", default=None, metavar="FILE",
                   help="validation files (default: hold out 10%% of the training jets)")
    p.add_argument("--model", default="transformer",
                   help="transformer (LLoCa transformer, default), graphnet, jet_mass, or a "
                        "name of lloca_hep.models.MODELS")
    p.add_argument("--frames", choices=FRAME_CHOICES, default=None,
                   help="frame choice: learned (LLoCa, model default), global, random "
                        "(augmentation), identity (plain network), rotations, beam_rotations")
    p.add_argument("--no-symmetry-breaking", action="store_true",
                   help="no beam/time reference vectors or non-invariant scalars in the frames")
    p.add_argument("--config", type=_json_object, default=None, metavar="JSON",
                   help="extra model keyword arguments as JSON, e.g. '{\"hidden\": 32}'")
    p.add_argument("--epochs", type=positive_int, default=20, help="epochs (default 20)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="default 128")
    p.add_argument("--lr", type=positive_float, default=1e-3,
                   help="peak learning rate (default 1e-3)")
    p.add_argument("--weight-decay", type=non_negative_float, default=1e-2,
                   help="AdamW weight decay")
    p.add_argument("--schedule", choices=("cosine", "onecycle", "constant"), default="cosine",
                   help="learning-rate schedule (default cosine with warm-up)")
    p.add_argument("--max-constituents", type=positive_int, default=64,
                   help="constituents kept per jet, hardest first (default 64)")
    p.add_argument("--label-branch", default="is_signal",
                   help="branch with 0/1 labels (default is_signal)")
    p.add_argument("-o", "--output", default="lloca-hep-train", metavar="DIR",
                   help="output directory (default ./lloca-hep-train)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUTPUT/checkpoint.pt")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--time-budget", type=positive_float, default=None, metavar="MINUTES",
                   help="stop after this many minutes; the LR schedule anneals within it")
    p.add_argument("--patience", type=non_negative_int, default=5,
                   help="early stopping after N epochs without improvement (0: off)")
    p.add_argument("--max-jets", type=positive_int, default=None,
                   help="use only the first N training jets")
    p.add_argument("--max-val-jets", type=positive_int, default=None,
                   help="use only the first N validation jets")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: torch's choice)")
    _common(p, threads=False)
    p.set_defaults(func=_cmd_train)

    # ------------------------------------------------------------------ evaluate
    p = subparsers.add_parser(
        "evaluate",
        help="accuracy, AUC, background rejection, ROC and score plots of a tagger",
        description=(
            "Score labelled ROOT files and report accuracy, ROC AUC and the background "
            "rejection 1/eps_B at signal efficiencies 0.3 and 0.5. With -o, also writes "
            "metrics.json, roc.png and scores.png."
        ),
    )
    p.add_argument("files", nargs="+", metavar="INPUT", help="labelled ROOT files")
    p.add_argument("--model", default=None, metavar="PATH",
                   help="tagger file (default: the tagger shipped with lloca-hep)")
    p.add_argument("-o", "--output", default=None, metavar="DIR",
                   help="directory for metrics.json, roc.png, scores.png")
    p.add_argument("--label-branch", default="is_signal", help="default is_signal")
    p.add_argument("--max-jets", type=positive_int, default=None,
                   help="evaluate only the first N jets")
    _common(p)
    p.set_defaults(func=_cmd_evaluate)

    # ------------------------------------------------------------------ tag
    p = subparsers.add_parser(
        "tag",
        help="score the jets of a ROOT file into a friend tree",
        description=(
            "Score every jet of INPUT with a tagger and write OUTPUT with a TTree 'scores' "
            "(branch 'score', one entry per INPUT entry; event layouts keep one score per "
            "jet), to be used as a friend of the input tree. The input is never modified."
        ),
    )
    p.add_argument("input", metavar="INPUT", help="ROOT file with jets")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help="ROOT file to write (must differ from INPUT)")
    p.add_argument("--model", default=None, metavar="PATH",
                   help="tagger file (.pt, or .pt2 exported); default: the shipped tagger")
    p.add_argument("--step-size", type=_step_size, default="50 MB",
                   help="chunk size: entries (e.g. 100000) or memory (e.g. '50 MB')")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="jets per forward pass")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUTPUT if it exists (only a regular file, never an input)")
    _common(p)
    p.set_defaults(func=_cmd_tag)
