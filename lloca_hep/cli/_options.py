"""Options shared by several commands, and options built from the fields of a dataclass.

:func:`add_config_options` turns every field of a settings dataclass such as
:class:`~lloca_hep.training.TrainConfig` into an option (flag, type, choices and help from the
field's ``metadata``, default from the field itself), and :func:`config_from_args` turns the
parsed options back into the dataclass, so a default is never spelled twice.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

__all__ = ["add_command", "add_config_option", "add_config_options", "add_progress_option",
           "add_run_options", "config_from_args", "field_default", "flag_of", "set_threads"]

T = TypeVar("T")
#: Keys of a field's ``metadata`` passed on to ``add_argument``.
ARGPARSE_KEYS = ("type", "choices", "metavar", "action", "const")


def field_default(f: dataclasses.Field[Any]) -> Any:
    """The default value of dataclass field ``f``."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def flag_of(f: dataclasses.Field[Any]) -> str:
    """The option of field ``f``: ``metadata["flag"]`` or ``--field-name``."""
    return str(f.metadata.get("flag", "--" + f.name.replace("_", "-")))


def add_config_option(parser: argparse.ArgumentParser, cls: type, name: str,
                      **overrides: Any) -> None:
    """Add the option of field ``name`` of dataclass ``cls`` (``overrides`` replace what the
    field's metadata says, e.g. a command-specific ``help`` or ``default``)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    kwargs: dict[str, Any] = {k: f.metadata[k] for k in ARGPARSE_KEYS if k in f.metadata}
    default = field_default(f)
    help_text = str(f.metadata.get("help", ""))
    if default not in (None, False, {}) and kwargs.get("action") is None:
        help_text += f" (default {default})"
    kwargs.update(dest=f.name, default=default, help=help_text.replace("%", "%%"))
    kwargs.update(overrides)
    parser.add_argument(flag_of(f), **kwargs)


def add_config_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """An option for every field of dataclass ``cls`` (see :func:`add_config_option`)."""
    group = parser.add_argument_group(f"settings ({cls.__name__} fields)")
    for f in dataclasses.fields(cls):
        add_config_option(group, cls, f.name)  # type: ignore[arg-type]


def config_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """``cls(**options)`` from the options :func:`add_config_options` added (each passed
    through its field's ``metadata["from_cli"]`` when it has one)."""
    values = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        value = getattr(args, f.name)
        convert = f.metadata.get("from_cli")
        values[f.name] = convert(value) if convert is not None else value
    return cls(**values)


def add_command(subparsers: Any, name: str, func: Any, *, help: str,
                description: str | None = None) -> argparse.ArgumentParser:
    """The parser of subcommand ``name`` running ``func(args)``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help,
                                                            description=description or help)
    parser.set_defaults(func=func)
    return parser


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``."""
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_run_options(parser: argparse.ArgumentParser, *, threads: bool = True) -> None:
    """``--device``, ``--tree``, ``--threads`` (as for training) and ``--no-progress``."""
    from lloca_hep.training.config import TrainConfig

    for name in ("device", "tree", "num_threads")[: 3 if threads else 2]:
        add_config_option(parser, TrainConfig, name)
    add_progress_option(parser)


def set_threads(args: argparse.Namespace) -> None:
    """torch's CPU threads: ``--threads`` when given, else ``OMP_NUM_THREADS`` or the cores
    free (:func:`lloca_hep._threads.apply_threads`; the choice is logged)."""
    from lloca_hep._threads import apply_threads

    apply_threads(getattr(args, "num_threads", None))
