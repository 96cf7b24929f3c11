"""Kept for ``python -m lloca_hep.generate`` and old imports: the command is
:mod:`lloca_hep.cli.generate`."""

from __future__ import annotations

from lloca_hep.cli.generate import add_arguments, main, register, run

__all__ = ["add_arguments", "main", "register", "run"]
