"""``python -m lloca_hep.training {train,evaluate,tag} ...``: the same subcommands as
``lloca-hep`` (:mod:`lloca_hep.cli`), usable on their own (``torchrun -m lloca_hep.training
train ...``, subprocess-based tests)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lloca_hep.cli import build_parser
from lloca_hep.cli._exitcodes import run_command

#: The subcommands of ``python -m lloca_hep.training``.
COMMANDS = ("train", "evaluate", "tag")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m lloca_hep.training`` with ``argv``; returns the exit code."""
    parser = build_parser("python -m lloca_hep.training", COMMANDS, description=None)
    return run_command(parser, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
