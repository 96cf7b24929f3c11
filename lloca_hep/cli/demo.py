"""``lloca-hep demo``: the shipped tagger on the shipped sample (:func:`lloca_hep.demo.run_demo`)."""

from __future__ import annotations

import argparse
from typing import Any

from ._exitcodes import EXIT_OK, guard
from ._options import add_command, add_progress_option

HELP = "score the shipped sample with the shipped tagger; write scores and a ROC plot"
DESCRIPTION = (
    "Run the shipped top tagger on the shipped sample of 4000 generated top and QCD jets: "
    "writes an entry-aligned friend tree of scores, a ROC curve, score histograms and a "
    "JSON of accuracy, AUC and background rejection into DIR, and prints the paths."
)


@guard
def run(args: argparse.Namespace) -> int:
    """Run the demo and print its numbers and the paths it wrote."""
    from lloca_hep.demo import run_demo
    from lloca_hep.training.metrics import Metrics

    result = run_demo(args.output, model=args.model, progress=not args.no_progress,
                      classes=args.classes)
    m, files = result.metrics, result.files
    if args.classes:
        print(f"Scored {m.n_jets} jets of the shipped ten-class sample with the shipped "
              f"ten-class tagger ({result.tag_jets_per_second or 0:.0f} jets/s end to end).")
        print(m.table())  # type: ignore[union-attr]
        print(f"  scored ROOT file (friend tree 'scores'): {files['scored']}")
        print(f"  confusion matrix: {files['confusion']}")
        if "roc" in files:
            print(f"  ROC curves:       {files['roc']}")
        print(f"  metrics (JSON):   {files['metrics']}")
        return EXIT_OK
    assert isinstance(m, Metrics)  # the shipped top tagger is binary
    print(f"Scored {m.n_jets} jets of the shipped sample with the shipped tagger "
          f"({result.tag_jets_per_second or 0:.0f} jets/s end to end).")
    print(f"  accuracy {m.accuracy:.4f}   ROC AUC {m.auc:.4f}   " + "   ".join(
        f"1/eps_B(eps_S={eff}) {value:.1f}" for eff, value in m.rejection.items()))
    print(f"  scored ROOT file (friend tree 'scores'): {files['scored']}")
    print(f"  ROC curve:        {files['roc']}")
    print(f"  score histograms: {files['scores']}")
    print(f"  metrics (JSON):   {files['metrics']}")
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``demo`` to the ``lloca-hep`` subcommand parsers."""
    from lloca_hep.demo import DEFAULT_DEMO_DIR

    p = add_command(subparsers, "demo", run, help=HELP, description=DESCRIPTION)
    p.add_argument("-o", "--output", default=DEFAULT_DEMO_DIR, metavar="DIR",
                   help=f"output directory (default ./{DEFAULT_DEMO_DIR}; its demo files are "
                        "replaced)")
    p.add_argument("--model", default=None, metavar="PATH",
                   help="tagger file to use instead of the shipped one")
    p.add_argument("--classes", action="store_true",
                   help="the ten-class demo: the shipped jetclass tagger (full features) on the "
                        "shipped ten-class sample; outputs in DIR/jetclass")
    add_progress_option(p)
