"""The ``lloca-hep`` command line: one module per command.

:func:`main` is the console script ``lloca-hep``; :func:`build_parser` assembles the parser from
the ``register(subparsers)`` function of each command module of :data:`COMMANDS`. Exit codes are
defined in :mod:`lloca_hep.cli._exitcodes`.

Modules: :mod:`.info`, :mod:`.demo`, :mod:`.train`, :mod:`.evaluate`, :mod:`.tag`,
:mod:`.export`, :mod:`.generate` (the commands), :mod:`._options` (options shared by several commands, and the
options built from the fields of :class:`~lloca_hep.training.TrainConfig`), :mod:`._argtypes`
(``type=`` converters) and :mod:`._exitcodes` (exit codes, exceptions and signals).
This package imports only ``argparse`` until a parser is built.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ._exitcodes import run_command

__all__ = ["COMMANDS", "build_parser", "console_main", "main"]

#: Subcommands of ``lloca-hep``, in the order ``--help`` lists them (module names of this package).
COMMANDS = ("info", "demo", "train", "evaluate", "tag", "export", "generate")
DESCRIPTION = (
    "Lorentz-equivariant jet tagging (LLoCa). Score jets in ROOT files with the shipped top "
    "tagger, train your own, evaluate it, or generate Pythia samples."
)


def build_parser(prog: str = "lloca-hep", commands: Sequence[str] = COMMANDS,
                 description: str | None = DESCRIPTION) -> argparse.ArgumentParser:
    """The parser of ``prog`` with the subcommands ``commands`` (names of :data:`COMMANDS`)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in commands:
        importlib.import_module(f".{name}", __name__).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lloca-hep`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    return run_command(parser, parser.parse_args(argv))


def console_main() -> int:
    """The ``lloca-hep`` console script (and ``python -m lloca_hep``): :func:`main` in a process
    of its own, which runs no numba code but lloca-hep's kernels, so numba's extension entry
    points (awkward's and vector's numba support) are skipped
    (:func:`lloca_hep._jit.skip_numba_extensions`); it hands no arrays to a user, so vector's
    awkward behaviours are not imported either (:func:`lloca_hep._vector.skip_vector_behaviours`)."""
    from lloca_hep._jit import skip_numba_extensions
    from lloca_hep._vector import skip_vector_behaviours

    skip_numba_extensions()
    skip_vector_behaviours()
    return main()


if __name__ == "__main__":
    sys.exit(console_main())
