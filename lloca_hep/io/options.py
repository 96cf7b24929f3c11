"""Checks of the reader options (``branches=``, ``jet_fields``, paths, entries, step sizes),
run before any file is opened; errors are :class:`~lloca_hep.errors.LLoCaInputError`."""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lloca_hep.errors import (
    LayoutError,
    LLoCaInputError,
    MissingFileError,
)
from lloca_hep.features import InputSpec, resolve_features

from .layouts import (
    _ACCEPTED_BRANCH_KEYS,
    _CARTESIAN_KEYS,
    _MEMORY_SIZE,
    _POLAR_KEYS,
    LAYOUTS,
    MAX_LISTED_NAMES,
)


def _listing(names: Sequence[str]) -> str:
    names = list(names)
    shown = ", ".join(names[:MAX_LISTED_NAMES])
    if len(names) > MAX_LISTED_NAMES:
        shown += f", ... ({len(names) - MAX_LISTED_NAMES} more)"
    return shown or "(nothing)"


# --------------------------------------------------------------------------- option checks
def _check_branches(branches: Any) -> dict[str, str] | None:
    """Validate a user ``branches=`` mapping before any file is opened.

    Returns the mapping with canonical keys (``px, py, pz, E`` or ``pt, eta, phi, mass``);
    raises :class:`LayoutError` naming the bad key/value and the accepted key sets.
    """
    if branches is None:
        return None
    if not isinstance(branches, Mapping):
        raise LayoutError(
            f"branches must be a dict mapping constituent components to branch names, keys "
            f"{_ACCEPTED_BRANCH_KEYS}; got {type(branches).__name__} {branches!r}"
        )
    aliases: dict[str, tuple[str, str]] = {}  # alias -> (coordinate system, canonical key)
    for coords, table in (("cartesian", _CARTESIAN_KEYS), ("polar", _POLAR_KEYS)):
        for canon, names in table.items():
            for alias in names:
                aliases[alias] = (coords, canon)
    chosen: dict[str, str] = {}
    given_as: dict[str, str] = {}
    systems: dict[str, list[str]] = {"cartesian": [], "polar": []}
    for key, value in branches.items():
        if not isinstance(key, str) or key not in aliases:
            raise LayoutError(
                f"branches: unknown key {key!r} (mapped to {value!r}); the accepted keys are "
                f"{_ACCEPTED_BRANCH_KEYS}"
            )
        if not isinstance(value, str) or not value.strip():
            raise LayoutError(
                f"branches[{key!r}] = {value!r} ({type(value).__name__}) is not a branch name; "
                f"give the name of the branch as a non-empty string, for keys "
                f"{_ACCEPTED_BRANCH_KEYS}"
            )
        coords, canon = aliases[key]
        if canon in chosen:
            raise LayoutError(
                f"branches gives {canon} twice: {given_as[canon]!r} -> {chosen[canon]!r} and "
                f"{key!r} -> {value!r}; keep one"
            )
        chosen[canon] = value
        given_as[canon] = key
        systems[coords].append(key)
    if systems["cartesian"] and systems["polar"]:
        raise LayoutError(
            f"branches={dict(branches)!r} mixes Cartesian keys ({', '.join(systems['cartesian'])})"
            f" and polar keys ({', '.join(systems['polar'])}); give one complete set, "
            f"{_ACCEPTED_BRANCH_KEYS}"
        )
    table = _POLAR_KEYS if systems["polar"] else _CARTESIAN_KEYS
    missing = [canon for canon in table if canon not in chosen]
    if missing:
        raise LayoutError(
            f"branches={dict(branches)!r} must map px, py, pz, E (or pt, eta, phi, mass) to "
            f"branch names; missing {', '.join(missing)} (accepted keys: {_ACCEPTED_BRANCH_KEYS})"
        )
    return {canon: chosen[canon] for canon in table}


def _check_jet_fields(jet_fields: Any) -> list[str] | str | None:
    """``None``, ``"all"`` or a list of names; a single other string is one name."""
    if jet_fields is None or jet_fields == "all":
        return jet_fields
    if isinstance(jet_fields, str):
        return [jet_fields]
    if isinstance(jet_fields, (Mapping, bytes)) or not isinstance(jet_fields, Iterable):
        raise LayoutError(
            f"jet_fields must be None, 'all' or a list of branch names; got "
            f"{type(jet_fields).__name__} {jet_fields!r}"
        )
    names = list(jet_fields)
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise LayoutError(
            f"jet_fields must hold branch names (non-empty strings); got {bad[0]!r} "
            f"({type(bad[0]).__name__}) in {names!r}"
        )
    return names


def _check_path(path: Any) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise MissingFileError(
            f"input path must be a file name (str or os.PathLike), got {type(path).__name__} "
            f"{path!r}"
        )
    return os.fspath(path)


def _check_entry(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise LLoCaInputError(
            f"{name} must be an integer entry number or None, got {type(value).__name__} "
            f"{value!r}"
        )
    return int(value)


def _check_step_size(step_size: Any) -> int | str:
    if isinstance(step_size, str):
        m = _MEMORY_SIZE.match(step_size)
        if m is None or float(m.group(1) + (m.group(3) or "")) <= 0:
            raise LLoCaInputError(
                f"step_size={step_size!r} is not a positive memory size such as '100 MB' "
                "(units B, kB, MB, GB, KiB, MiB, ...) or a number of entries"
            )
        return step_size
    if isinstance(step_size, bool) or not isinstance(step_size, numbers.Integral) or step_size < 1:
        raise LLoCaInputError(
            f"step_size must be a positive number of entries or a memory size such as "
            f"'100 MB'; got {type(step_size).__name__} {step_size!r}"
        )
    return int(step_size)


@dataclass(frozen=True)
class _Options:
    """The checked reading options shared by :func:`read_jets` and :func:`iterate_jets`."""

    tree: str | None
    layout: str
    collection: str
    branches: dict[str, str] | None
    jet_fields: list[str] | str | None
    pf_collection: str
    entry_start: int | None
    entry_stop: int | None
    features: InputSpec | None = None


def _check_options(
    tree: Any,
    layout: Any,
    collection: Any,
    branches: Any,
    jet_fields: Any,
    pf_collection: Any,
    entry_start: Any,
    entry_stop: Any,
    on_invalid: Any,
    features: Any = None,
) -> _Options:
    """Validate every option up front (before a file is opened); errors are
    :class:`LLoCaInputError` subclasses naming the option, the value and what is accepted."""
    _check_on_invalid(on_invalid)
    if not isinstance(layout, str) or layout not in LAYOUTS:
        raise LayoutError(f"unknown layout {layout!r}; choose from {LAYOUTS}")
    for name, value in (("tree", tree), ("collection", collection), ("pf_collection", pf_collection)):
        if (value is not None or name != "tree") and (not isinstance(value, str) or not value):
            raise LLoCaInputError(
                f"{name} must be a non-empty string{' or None' if name == 'tree' else ''}; got "
                f"{type(value).__name__} {value!r}"
            )
    checked = _check_branches(branches)
    if checked is not None and layout == "nanoaod":
        raise LayoutError(
            "branches= names the constituent branches of a flat (one jet per entry) tree; "
            "layout='nanoaod' reads the constituents from the PF-candidate tables "
            "(pf_collection=...). Drop branches= or use layout='mapping'"
        )
    return _Options(
        tree, layout, collection, checked, _check_jet_fields(jet_fields), pf_collection,
        _check_entry("entry_start", entry_start), _check_entry("entry_stop", entry_stop),
        None if features is None else resolve_features(features),
    )


def _check_on_invalid(on_invalid: object) -> None:
    if not isinstance(on_invalid, str) or on_invalid not in ("raise", "drop"):
        raise LLoCaInputError(f"on_invalid must be 'raise' or 'drop', got {on_invalid!r}")
