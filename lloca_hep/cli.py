"""The ``lloca-hep`` command line.

Exit codes (defined in :mod:`lloca_hep._exitcodes`): 0 success, 1 runtime failure, 2 bad
usage or bad input (missing file, bad branch, unreadable model, unsafe output), 128 + N when
stopped by signal N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP; partial outputs are removed).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ._exitcodes import EXIT_OK, guard, run_command

log = logging.getLogger("lloca_hep")


def _cmd_info(args: argparse.Namespace) -> int:
    import importlib.metadata as md

    from . import __version__

    print(f"lloca-hep {__version__}")
    for pkg in ("torch", "awkward", "uproot", "vector", "numba", "numpy", "coffea", "dask-awkward",
                "hist", "mplhep", "pythia8mc", "fastjet"):
        try:
            version = md.version(pkg)
        except md.PackageNotFoundError:
            version = "not installed"
        print(f"  {pkg:<14} {version}")
    return EXIT_OK


@guard
def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    result = run_demo(args.output, model=args.model, progress=not args.no_progress)
    files = result["files"]
    print(f"Scored {result['n_jets']} jets of the shipped sample with the shipped tagger "
          f"({result['tag_jets_per_second']:.0f} jets/s end to end).")
    print(f"  accuracy {result['accuracy']:.4f}   ROC AUC {result['auc']:.4f}   "
          f"1/eps_B(eps_S=0.3) {result['rejection_at_eps_s_0.3']:.1f}   "
          f"1/eps_B(eps_S=0.5) {result['rejection_at_eps_s_0.5']:.1f}")
    print(f"  scored ROOT file (friend tree 'scores'): {files['scored']}")
    print(f"  ROC curve:        {files['roc']}")
    print(f"  score histograms: {files['scores']}")
    print(f"  metrics (JSON):   {files['metrics']}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lloca-hep",
        description=(
            "Lorentz-equivariant jet tagging (LLoCa). Score jets in ROOT files with the shipped "
            "top tagger, train your own, evaluate it, or generate Pythia samples."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("info", help="show versions of lloca-hep and the packages it uses")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "demo",
        help="score the shipped sample with the shipped tagger; write scores and a ROC plot",
        description=(
            "Run the shipped top tagger on the shipped sample of 4000 generated top and QCD jets: "
            "writes an entry-aligned friend tree of scores, a ROC curve, score histograms and a "
            "JSON of accuracy, AUC and background rejection into DIR, and prints the paths."
        ),
    )
    p.add_argument("-o", "--output", default="lloca-hep-demo", metavar="DIR",
                   help="output directory (default ./lloca-hep-demo; its demo files are replaced)")
    p.add_argument("--model", default=None, metavar="PATH",
                   help="tagger file to use instead of the shipped one")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_cmd_demo)

    from .generate.cli import register as register_generate
    from .training.cli import register as register_training

    register_training(sub)
    register_generate(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    return run_command(parser, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
