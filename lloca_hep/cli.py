"""The ``lloca-hep`` command line.

Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad input (missing file, bad
branch, unreadable model), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return func(args)
    except KeyboardInterrupt:
        log.error("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
