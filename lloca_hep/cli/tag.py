"""``lloca-hep tag``: score the jets of a ROOT file into an entry-aligned friend tree
(:func:`lloca_hep.inference.tag_file`)."""

from __future__ import annotations

import argparse
from typing import Any

from ._argtypes import positive_int, step_size
from ._exitcodes import EXIT_OK, guard
from ._options import add_command, add_run_options, set_threads

HELP = "score the jets of a ROOT file into a friend tree"
DESCRIPTION = (
    "Score every jet of INPUT with a tagger and write OUTPUT with a TTree 'scores' "
    "(branch 'score', one entry per INPUT entry; event layouts keep one score per "
    "jet), to be used as a friend of the input tree. The input is never modified."
)


@guard
def run(args: argparse.Namespace) -> int:
    """Tag the file and print a summary."""
    from lloca_hep.inference import tag_file

    set_threads(args)
    summary = tag_file(args.input, args.output, model=args.model, step_size=args.step_size,
                       overwrite=args.overwrite, device=args.device,
                       batch_size=args.batch_size, tree=args.tree,
                       progress=not args.no_progress)
    print(
        f"wrote {summary['output']}: tree {summary['tree']!r}, branch {summary['branch']!r}, "
        f"{summary['n_entries']} entries, {summary['n_jets']} jets "
        f"({summary['jets_per_second']:.0f} jets/s)"
    )
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``tag`` to the ``lloca-hep`` subcommand parsers."""
    from lloca_hep._defaults import DEFAULT_TAG_STEP_SIZE

    p = add_command(subparsers, "tag", run, help=HELP, description=DESCRIPTION)
    p.add_argument("input", metavar="INPUT", help="ROOT file with jets")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help="ROOT file to write (must differ from INPUT)")
    p.add_argument("--model", default=None, metavar="PATH",
                   help="tagger file (.pt, or .pt2 exported); default: the shipped tagger")
    p.add_argument("--step-size", type=step_size, default=DEFAULT_TAG_STEP_SIZE,
                   help="chunk size: entries (e.g. 100000) or memory (e.g. '50 MB'; default "
                        f"{DEFAULT_TAG_STEP_SIZE})")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="jets per forward pass")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUTPUT if it exists (only a regular file, never an input)")
    add_run_options(p)
