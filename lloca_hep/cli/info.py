"""``lloca-hep info``: the versions of lloca-hep and of the packages it uses."""

from __future__ import annotations

import argparse
from typing import Any

from ._exitcodes import EXIT_OK
from ._options import add_command

#: Distributions whose versions ``info`` reports (optional ones show "not installed").
PACKAGES = ("torch", "awkward", "uproot", "vector", "numba", "numpy", "coffea", "dask-awkward",
            "hist", "mplhep", "matplotlib", "pythia8mc", "fastjet")


def run(args: argparse.Namespace) -> int:
    """Print the versions; always succeeds."""
    import importlib.metadata as md

    from lloca_hep import __version__

    print(f"lloca-hep {__version__}")
    for pkg in PACKAGES:
        try:
            version = md.version(pkg)
        except md.PackageNotFoundError:
            version = "not installed"
        print(f"  {pkg:<14} {version}")
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``info`` to the ``lloca-hep`` subcommand parsers."""
    add_command(subparsers, "info", run, help="show versions of lloca-hep and the packages it uses")
