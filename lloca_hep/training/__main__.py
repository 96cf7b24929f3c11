"""``python -m lloca_hep.training {train,evaluate,tag} ...``: the same subcommands as
``lloca-hep``, usable on their own (e.g. in subprocess-based tests)."""

from __future__ import annotations

import argparse
import sys

from .._exitcodes import run_command
from .cli import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lloca_hep.training")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    register(sub)
    return run_command(parser, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
