"""``lloca-hep evaluate``: accuracy, AUC, rejections, ROC and score plots of a tagger
(:func:`lloca_hep.training.evaluate_files`)."""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING, Any

from ._exitcodes import EXIT_OK, guard
from ._options import add_command, add_config_option, add_run_options, set_threads

if TYPE_CHECKING:
    from lloca_hep.training.evaluate import EvaluationResult

#: Numbers below this are printed with four decimals, larger ones with one.
SMALL_NUMBER = 10


def format_result(result: EvaluationResult) -> str:
    """One line per number of ``result.metrics`` (its JSON keys) and per file written."""
    lines = []
    for key, v in result.metrics.to_json().items():
        if v is None:
            continue
        small = isinstance(v, float) and math.isfinite(v) and v < SMALL_NUMBER
        text = f"{v:.4f}" if small else (f"{v:.1f}" if isinstance(v, float) else str(v))
        lines.append(f"  {key:<24} {text}")
    lines += [f"  {name:<24} {path}" for name, path in result.files.items()]
    return "\n".join(lines)

HELP = "accuracy, AUC, background rejection, ROC and score plots of a tagger"
DESCRIPTION = (
    "Score labelled ROOT files and report accuracy, ROC AUC and the background "
    "rejection 1/eps_B at signal efficiencies 0.3 and 0.5. With -o, also writes "
    "metrics.json, roc.png and scores.png. For a multi-class tagger: accuracy, macro AUC and "
    "per class the AUC and 1/eps_B against QCD (JetClass table), confusion.png and roc.png."
)


@guard
def run(args: argparse.Namespace) -> int:
    """Evaluate and print the numbers."""
    from lloca_hep.training.evaluate import evaluate_files

    set_threads(args)
    result = evaluate_files(args.files, model=args.model, output_dir=args.output,
                            device=args.device, label_branch=args.label_branch,
                            max_jets=args.max_jets, progress=not args.no_progress,
                            tree=args.tree)
    m = result.metrics
    if result.multiclass:
        print(f"evaluated {result.model} on {m.n_jets + int(result.extra.get('n_empty', 0))} "
              "jets")
        print(m.table())  # type: ignore[union-attr]
        print("\n".join(f"  {name:<24} {path}" for name, path in result.files.items()))
        return EXIT_OK
    print(f"evaluated {result.model} on {m.n_jets + m.n_empty} jets")  # type: ignore[union-attr]
    print(format_result(result))
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``evaluate`` to the ``lloca-hep`` subcommand parsers."""
    from lloca_hep.training.config import TrainConfig

    p = add_command(subparsers, "evaluate", run, help=HELP, description=DESCRIPTION)
    p.add_argument("files", nargs="+", metavar="INPUT", help="labelled ROOT files")
    p.add_argument("--model", default=None, metavar="PATH",
                   help="tagger file (default: the tagger shipped with lloca-hep)")
    p.add_argument("-o", "--output", default=None, metavar="DIR",
                   help="directory for metrics.json, roc.png, scores.png")
    add_config_option(p, TrainConfig, "label_branch")
    add_config_option(p, TrainConfig, "max_jets", help="evaluate only the first N jets")
    add_run_options(p)
