"""``lloca-hep generate`` (also ``python -m lloca_hep.generate``): a top-tagging sample with
Pythia 8 + fastjet (:func:`lloca_hep.generate.generate_sample`), or with ``--classes`` and
``--per-class`` a ten-class JetClass-like sample in JetClass's layout
(:func:`lloca_hep.generate.generate_classes`).

Exit codes (:mod:`._exitcodes`): 0 success, 1 runtime failure (including a missing
``generate`` extra, reported with its install hint), 2 bad usage or bad input (negative counts,
existing output without ``--overwrite``, missing output directory, an unknown class, or
``--signal``/``--background`` mixed with ``--classes``).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any

from ._argtypes import non_negative_int, positive_int
from ._exitcodes import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, run_command

log = logging.getLogger("lloca_hep")

DESCRIPTION = (
    "Generate truth-level top (all-hadronic t tbar) and QCD jets at 14 TeV with Pythia 8, "
    "anti-kT R=0.8, 550 < pT < 650 GeV, |eta| < 2, and write them to a flat ROOT TTree "
    "'jets' (npart, part_px/py/pz/energy, jet_pt/eta/phi/mass/energy, is_signal). "
    "With --classes and --per-class: JetClass-like jets of the chosen classes (QCD, Hbb, Hcc, "
    "Hgg, H4q, Hqql, Zqq, Wqq, Tbqq, Tbl), 500 < pT < 1000 GeV, |eta| < 2, written in "
    "JetClass's layout (TTree 'tree': part_* kinematics, charge, particle ID and impact "
    "parameters, jet_*, one-hot label_<class>)."
)


def class_list(text: str) -> tuple[str, ...]:
    """``--classes``: a comma list of known class names (argparse usage error otherwise)."""
    from lloca_hep.generate.classes import parse_classes

    try:
        return parse_classes(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``generate`` options to ``parser``."""
    from lloca_hep.generate.recipe import DEFAULT_MAX_CONSTITUENTS

    parser.add_argument("--signal", type=non_negative_int, metavar="N",
                        help="number of top jets (is_signal = 1); required without --classes")
    parser.add_argument("--background", type=non_negative_int, metavar="N",
                        help="number of QCD jets (is_signal = 0); required without --classes")
    parser.add_argument("--classes", type=class_list, metavar="C1,C2,...",
                        help="make a JetClass-like sample of these classes (comma list of "
                        "QCD,Hbb,Hcc,Hgg,H4q,Hqql,Zqq,Wqq,Tbqq,Tbl; label_* branches in this "
                        "order) instead of the top/QCD sample; needs --per-class")
    parser.add_argument("--per-class", type=positive_int, metavar="N",
                        help="jets per class with --classes")
    parser.add_argument("--seed", type=non_negative_int, required=True, metavar="S",
                        help="random seed; the same seed gives the same file content")
    parser.add_argument("-o", "--output", required=True, metavar="FILE.root",
                        help="ROOT file to write (TTree 'jets'; 'tree' with --classes)")
    parser.add_argument("--workers", type=positive_int, default=1, metavar="W",
                        help="worker processes (default 1; does not change the result)")
    parser.add_argument("--max-constituents", type=positive_int, default=DEFAULT_MAX_CONSTITUENTS,
                        metavar="N", help=f"constituents kept per jet, hardest first "
                        f"(default {DEFAULT_MAX_CONSTITUENTS})")
    parser.add_argument("--overwrite", action="store_true", help="replace FILE.root if it exists")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def _usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the combination of options, None when it is fine."""
    classes = getattr(args, "classes", None)
    per_class = getattr(args, "per_class", None)
    if classes is not None:
        if args.signal is not None or args.background is not None:
            return "--signal/--background make the top/QCD sample; with --classes use --per-class"
        if per_class is None:
            return "--classes needs --per-class N"
        return None
    if per_class is not None:
        return "--per-class needs --classes"
    missing = [o for o, v in (("--signal", args.signal), ("--background", args.background))
               if v is None]
    if missing:
        return f"{' and '.join(missing)} required (or --classes with --per-class)"
    return None


def run(args: argparse.Namespace) -> int:
    """Execute ``generate`` for parsed ``args``; returns the exit code."""
    problem = _usage_problem(args)
    if problem is not None:
        log.error("generate: %s", problem)
        return EXIT_BAD_INPUT
    try:
        if getattr(args, "classes", None) is not None:
            from lloca_hep.generate.jetclass_sample import generate_classes

            path = generate_classes(
                args.output, args.classes, per_class=args.per_class, seed=args.seed,
                workers=args.workers, max_constituents=args.max_constituents,
                progress=not args.no_progress, overwrite=args.overwrite,
            )
        else:
            from lloca_hep.generate.sample import generate_sample

            path = generate_sample(
                args.output, n_signal=args.signal, n_background=args.background, seed=args.seed,
                workers=args.workers, max_constituents=args.max_constituents,
                progress=not args.no_progress, overwrite=args.overwrite,
            )
    except (ValueError, TypeError, FileExistsError, FileNotFoundError, IsADirectoryError) as err:
        log.error("generate: %s", err)
        return EXIT_BAD_INPUT
    except ImportError as err:  # the message carries the install hint
        log.error("generate: %s", err)
        return EXIT_FAILURE
    print(f"wrote {path}")
    return EXIT_OK


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``generate`` subcommand to an ``argparse`` subparsers object; returns its parser."""
    parser = subparsers.add_parser(
        "generate",
        help="generate a top-tagging or ten-class JetClass-like sample with Pythia 8 + fastjet "
        "(needs the 'generate' extra)",
        description=DESCRIPTION,
    )
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (``python -m lloca_hep.generate``)."""
    parser = argparse.ArgumentParser(prog="python -m lloca_hep.generate", description=DESCRIPTION)
    add_arguments(parser)
    return run_command(parser, parser.parse_args(argv))
