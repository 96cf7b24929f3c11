"""``python -m lloca_hep.training {train,evaluate,tag} ...``: the same subcommands as
``lloca-hep``, usable on their own (e.g. in subprocess-based tests)."""

from __future__ import annotations

import argparse
import logging
import sys

from .cli import EXIT_BAD_INPUT, register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lloca_hep.training")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    register(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "func", None) is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
