"""Read jets from ROOT files (TTree or RNTuple) into awkward arrays.

Layouts (``layout=``):

``"jetclass"`` (alias ``"flat"``)
    One entry per jet; jagged constituent branches ``part_px part_py part_pz part_energy``
    (counter ``npart`` in TTrees; in RNTuples a record field ``part`` with sub-fields
    ``part.px`` ...). Every scalar numeric branch (``jet_pt``, ``jet_mass``, ``is_signal``,
    ``label_*``, ...) is carried as a jet-level field under its own name.
``"nanoaod"``
    CMS NanoAOD/PFNano: one entry per event; jets of ``collection`` (``FatJet`` by default,
    ``Jet`` on request) get their constituents through the index table
    ``<collection>PFCands`` (``_jetIdx``, ``_pFCandsIdx``) from ``PFCands`` (pt, eta, phi,
    mass). One output entry per jet, with ``entry`` (int64 tree entry of the event),
    ``jet_index`` (position of the jet in its event) and jet fields ``jet_<name>`` from
    ``<collection>_<name>``.
``"mapping"``
    The user names the constituent branches: ``branches={"px":..., "py":..., "pz":...,
    "E":...}`` or ``{"pt":..., "eta":..., "phi":..., "mass":...}``; one entry per jet.
``"auto"``
    ``mapping`` when ``branches`` is given, else ``jetclass`` when ``part_px``/``part.px``
    exists, else ``nanoaod`` when ``<collection>_pt`` or ``PFCands_pt`` exists.

Tree (``tree=``): used as given when named (also spelled ``"file.root:tree"``); else the only
tree of the file; else, among the trees whose branch names hold the requested layout (JetClass
branches, ``<collection>_pt``/PF candidates, or the ``branches=`` names), the first of
:data:`PREFERRED_TREES`, else the first in the file. When no tree holds one, the error lists every
tree with its branches and what was looked for.

Bad input raises :class:`~lloca_hep.io.LLoCaInputError` subclasses naming file, tree, branch and
entry: options are checked before a file is opened (``branches=`` keys and names, ``jet_fields``,
entry numbers, ``step_size``), and the constituent branches' types are checked from the file's
metadata (a jagged array of numbers, one list per jet, or per event for NanoAOD) before any data
is read.

Output (the io -> preprocessing contract): ``ak.Array``, one entry per jet; field
``constituents`` holds ragged records named ``Momentum4D`` with float64 Cartesian
``px, py, pz, E`` in GeV (computed in float64 from pt/eta/phi/mass when the file stores those,
with ``E = sqrt(|p|^2 + m|m|)``). The array's ``attrs["lloca_source"]`` records the file, tree,
layout and entry range, which the friend-tree writer uses to align scores.

Bad momenta (``on_invalid=``): ``"raise"`` (default) raises :class:`InvalidMomentumError`
naming file, branches, entry, jet and constituent; ``"drop"`` removes the offending constituents
and emits an :class:`InvalidConstituentsWarning` with the counts. Jets without constituents are
kept (counted in the log); :func:`lloca_hep.preprocessing.pad_jets` warns about them and taggers
score them NaN.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import numbers
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import awkward as ak
import numpy as np
import uproot
import vector

from lloca_hep.errors import (
    CorruptFileError,
    InvalidMomentumError,
    LayoutError,
    LLoCaInputError,
    MissingBranchError,
    MissingFileError,
    MissingTreeError,
)

from ..preprocessing import kernels

vector.register_awkward()

log = logging.getLogger(__name__)

#: A constituent is space-like "beyond rounding" when |p| - E > this * |p| + ABS tolerance.
#: float32 storage rounds each component by ~6e-8 relative; pt/eta/phi/mass conversions and
#: reduced-precision NanoAOD floats lose more, so the tolerance is generous.
SPACELIKE_REL_TOL = 1e-4
#: Absolute tolerance (GeV) of the energy checks.
MOMENTUM_ABS_TOL = 1e-6
#: Trees picked, in this order, when a file holds several and ``tree`` is not given.
PREFERRED_TREES = ("Events", "jets", "Jets", "tree", "Tree", "events")
#: JetClass constituent branches (E, px, py, pz order of the contract is restored on read).
JETCLASS_BRANCHES = {"px": "part_px", "py": "part_py", "pz": "part_pz", "E": "part_energy"}
#: NanoAOD jet fields carried by default (when present): ``jet_<name>`` from ``<coll>_<name>``.
NANOAOD_DEFAULT_JET_FIELDS = (
    "pt", "eta", "phi", "mass", "msoftdrop", "nConstituents", "hadronFlavour", "partonFlavour",
)
#: Branches listed in error messages before truncating the list.
MAX_LISTED_NAMES = 60

LAYOUTS = ("auto", "jetclass", "flat", "nanoaod", "mapping")
_TREE_CLASSES = ("TTree", "ROOT::RNTuple", "ROOT::Experimental::RNTuple")
_CARTESIAN_KEYS = {"px": ("px",), "py": ("py",), "pz": ("pz",), "E": ("E", "energy", "e", "t")}
_POLAR_KEYS = {"pt": ("pt",), "eta": ("eta",), "phi": ("phi",), "mass": ("mass", "m", "M")}
#: The accepted ``branches=`` keys, for error messages.
_ACCEPTED_BRANCH_KEYS = (
    "{px, py, pz, E} (E also spelled energy, e or t) or {pt, eta, phi, mass} (mass also "
    "spelled m or M)"
)
#: What a constituent (or NanoAOD per-event collection) branch must hold.
_EXPECTED_JAGGED = "a jagged array of numbers, one list per {unit}"
#: Memory sizes accepted as ``step_size`` (the spellings uproot understands, without sign).
_MEMORY_SIZE = re.compile(r"^\s*(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?\s*([kmgtpezy]?i?b)\s*$", re.IGNORECASE)
#: Branches of an unrelated tree shown when no tree of a file holds a jet layout.
_LISTED_PER_TREE = 8


class InvalidConstituentsWarning(UserWarning):
    """Constituents with unphysical momenta were dropped (``on_invalid="drop"``)."""


@dataclass(frozen=True)
class JetChunk:
    """One chunk of :func:`iterate_jets`: ``jets`` read from ``file`` entries
    ``[entry_start, entry_stop)`` of ``tree`` (entries are jets for flat layouts and events for
    NanoAOD); ``num_entries`` is the size of the whole tree."""

    jets: ak.Array
    file: str
    entry_start: int
    entry_stop: int
    tree: str = ""
    layout: str = ""
    num_entries: int = -1

    def __len__(self) -> int:
        return len(self.jets)


@dataclass
class _Plan:
    """What to read from one tree and how to build jets from it."""

    layout: str
    coords: str  # "cartesian" or "polar"
    constituent: dict[str, str]  # canonical component -> resolved branch/field name
    jet_fields: dict[str, str] = field(default_factory=dict)  # output name -> resolved name
    nano: dict[str, str] = field(default_factory=dict)  # role -> branch (nanoaod only)

    def names(self) -> list[str]:
        names = list(self.constituent.values()) + list(self.jet_fields.values())
        names += list(self.nano.values())
        seen: dict[str, None] = {}
        for n in names:
            seen.setdefault(n, None)
        return list(seen)


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
    )


def _split_object_path(path: str, tree: str | None) -> tuple[str, str | None]:
    """Accept uproot's ``"file.root:tree"`` spelling when ``file.root`` exists."""
    if not os.path.exists(path) and ":" in path:
        head, _, tail = path.rpartition(":")
        if head and tail and os.path.exists(head):
            if tree is not None and tree.split(";")[0] != tail.split(";")[0]:
                raise MissingTreeError(f"{path} names tree {tail!r} but tree={tree!r} was given")
            return head, tail
    return path, tree


def _open(path: str | os.PathLike) -> Any:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingFileError(f"input file not found: {path}")
    if os.path.isdir(path):
        raise MissingFileError(f"input path is a directory, not a ROOT file: {path}")
    try:
        return uproot.open(path)
    except Exception as err:  # uproot raises many types for broken files
        raise CorruptFileError(
            f"cannot open {path} as a ROOT file ({type(err).__name__}: {err}); "
            "the file looks truncated, corrupted or is not ROOT"
        ) from err


def _tree_candidates(fobj: Any, path: str) -> dict[str, str]:
    try:
        classnames = fobj.classnames(recursive=True)
    except Exception as err:
        raise CorruptFileError(
            f"cannot list the contents of {path} ({type(err).__name__}: {err}); "
            "the file looks truncated or corrupted"
        ) from err
    out: dict[str, str] = {}
    for key, cls in classnames.items():
        if cls in _TREE_CLASSES:
            out.setdefault(key.split(";")[0], cls)
    return out


def _holds_layout(
    keys: set[str], layout: str, collection: str, branches: Mapping[str, str] | None,
    pf_collection: str,
) -> bool:
    """Whether a tree with branches ``keys`` holds jets of the requested layout (names only)."""
    if branches is not None and layout != "nanoaod":
        return all(_resolve(keys, name) is not None for name in branches.values())
    jetclass = _resolve(keys, JETCLASS_BRANCHES["px"]) is not None
    nanoaod = any(
        _resolve(keys, name) is not None
        for name in (f"{collection}_pt", f"{pf_collection}_pt", f"{collection}{pf_collection}_jetIdx")
    )
    if layout in ("jetclass", "flat"):
        return jetclass
    if layout == "nanoaod":
        return nanoaod
    return jetclass or nanoaod  # auto (mapping without branches is refused by _plan)


def _looked_for(
    layout: str, collection: str, branches: Mapping[str, str] | None, pf_collection: str
) -> str:
    if branches is not None and layout != "nanoaod":
        return f"the branches {', '.join(branches.values())} (branches=)"
    jetclass = "JetClass branches " + ", ".join(JETCLASS_BRANCHES.values())
    nanoaod = (
        f"NanoAOD/PFNano branches {collection}_pt, {collection}{pf_collection}_jetIdx or "
        f"{pf_collection}_pt"
    )
    if layout in ("jetclass", "flat"):
        return jetclass
    if layout == "nanoaod":
        return nanoaod
    return f"{jetclass}, or {nanoaod}"


def _select_tree(
    fobj: Any,
    path: str,
    tree: str | None,
    layout: str = "auto",
    collection: str = "FatJet",
    branches: Mapping[str, str] | None = None,
    pf_collection: str = "PFCands",
) -> tuple[Any, str]:
    """The tree to read: ``tree`` when given; else the only tree; else, among the trees that
    hold a jet layout of the request (branch names only, no data read), the first of
    :data:`PREFERRED_TREES`, else the first in the file."""
    candidates = _tree_candidates(fobj, path)
    if tree is not None:
        name = tree.split(";")[0]
        if name not in candidates:
            try:
                everything = list(fobj.classnames(recursive=True).items())
            except Exception:
                everything = []
            raise MissingTreeError(
                f"{path} has no TTree/RNTuple named {tree!r}; trees in the file: "
                f"{_listing(sorted(candidates)) if candidates else '(none)'}; all objects: "
                f"{_listing([f'{k} ({c})' for k, c in everything])}"
            )
        return _get_tree(fobj, path, name), name
    if not candidates:
        raise MissingTreeError(f"{path} holds no TTree or RNTuple (objects: {_listing(fobj.keys())})")
    if len(candidates) == 1:
        name = next(iter(candidates))
        return _get_tree(fobj, path, name), name
    # Trees in the order that ranks them (PREFERRED_TREES, then file order): the first that
    # holds a jet layout is the choice, so usually only one tree's metadata is read.
    rank = {n: i for i, n in enumerate(PREFERRED_TREES)}
    order = sorted(candidates, key=lambda n: rank.get(n, len(rank)))
    others: list[str] = []
    unreadable: list[str] = []
    for cand in order:
        cls = candidates[cand]
        try:
            tobj = _get_tree(fobj, path, cand)
            keys = _keys(tobj, path)
        except CorruptFileError as err:
            unreadable.append(f"{cand} ({cls}): {err}")
            continue
        if _holds_layout(set(keys), layout, collection, branches, pf_collection):
            return tobj, cand
        shown = _listing(keys[:_LISTED_PER_TREE])
        if len(keys) > _LISTED_PER_TREE:
            shown += f", ... ({len(keys) - _LISTED_PER_TREE} more)"
        others.append(f"{cand} ({cls}; branches: {shown})")
    wanted = _looked_for(layout, collection, branches, pf_collection)
    if unreadable:
        raise CorruptFileError(
            f"{path}: no readable tree holds {wanted} and some trees cannot be read: "
            f"{'; '.join(unreadable)}"
        )
    raise MissingTreeError(
        f"{path} holds {len(candidates)} trees and none holds {wanted}; pass tree=... or "
        f"branches=... Trees in the file: {'; '.join(others)}"
    )


def _get_tree(fobj: Any, path: str, name: str) -> Any:
    try:
        return fobj[name]
    except Exception as err:
        raise CorruptFileError(
            f"cannot read tree {name!r} of {path} ({type(err).__name__}: {err}); "
            "the file looks truncated or corrupted"
        ) from err


def _is_rntuple(tree: Any) -> bool:
    return "RNTuple" in type(tree).__name__


def _keys(tree: Any, path: str) -> list[str]:
    try:
        return list(tree.keys())
    except Exception as err:
        raise CorruptFileError(
            f"cannot list the branches of {path} ({type(err).__name__}: {err})"
        ) from err


def _resolve(keys: set[str] | Sequence[str], name: str) -> str | None:
    """The stored name for ``name``: RNTuple record sub-fields are ``part.px`` where TTrees
    have ``part_px``; asking an RNTuple for ``part_px`` silently returns empty records, so the
    name is translated here before reading."""
    keys = set(keys)
    if name in keys:
        return name
    if "_" in name:
        head, tail = name.split("_", 1)
        dotted = f"{head}.{tail}"
        if dotted in keys:
            return dotted
    if "." in name:
        flat = name.replace(".", "_", 1)
        if flat in keys:
            return flat
    return None


def _top_form(tree: Any) -> Any:
    """The awkward form of a whole RNTuple (metadata only; None for TTrees)."""
    if not _is_rntuple(tree):
        return None
    form = tree.to_akform()
    return form[0] if isinstance(form, tuple) else form


def _project_form(form: Any, parts: Sequence[str]) -> Any:
    """The form of record sub-field ``parts`` under ``form``, keeping the lists around it
    (``part.px`` of ``var * {px, ...}`` is ``var * px``)."""
    if not parts:
        return form
    if form.is_record:
        if parts[0] not in form.fields:
            raise KeyError(parts[0])
        return _project_form(form.content(parts[0]), parts[1:])
    if form.is_list or form.is_option or form.is_indexed:
        return form.copy(content=_project_form(form.content, parts))
    raise KeyError(parts[0])


def _column_form(tree: Any, top: Any, name: str, path: str, tree_name: str) -> Any:
    """The awkward form of branch/field ``name`` as read, from the metadata."""
    if top is not None:
        if name in top.fields:
            return top.content(name)
        try:
            return _project_form(top, name.split("."))
        except KeyError:
            return None
    branch = tree[name]
    try:
        return branch.interpretation.awkward_form(tree.file)
    except Exception as err:
        raise LayoutError(
            f"{path}:{tree_name}: branch {name!r} (C++ type {branch.typename}) cannot be "
            f"interpreted by uproot ({type(err).__name__}: {err}); lloca-hep reads jagged "
            "arrays of numbers"
        ) from err


def _is_string(form: Any) -> bool:
    return form.parameter("__array__") in ("string", "bytestring")


def _form_problem(form: Any, kind: str = "number") -> str | None:
    """Why a column of this form is not a jagged array of ``kind`` (``"number"``,
    ``"integer"`` or ``"value"``: numbers or booleans); None when it is one."""
    wanted = {"number": "real numbers", "integer": "integers", "value": "numbers"}[kind]
    if form.is_option:
        return "its entries can be missing (option type)"
    if form.is_list and not form.is_regular and not _is_string(form):
        content = form.content
        if content.is_numpy and content.inner_shape == ():
            prim = content.primitive
            if prim.startswith(("int", "uint")):
                return None
            if prim.startswith("float") and kind != "integer":
                return None
            if prim == "bool":
                return None if kind == "value" else f"it holds booleans, not {wanted}"
            return f"it holds {prim} values, not {wanted}"
        if content.is_option:
            return "its values can be missing (option type)"
        if _is_string(content):
            return "it holds lists of strings"
        if content.is_record:
            return (
                f"it holds lists of records with fields {', '.join(content.fields)}; name one "
                "sub-field ('record.field')"
            )
        if content.is_regular or content.is_numpy:
            return "each entry holds a list of fixed-size arrays, not a list of numbers"
        if content.is_list:
            return "it is doubly jagged (a list of lists per entry), not one list per entry"
        return f"its lists hold {content.type}"
    if _is_string(form):
        return "it holds one string per entry"
    if form.is_numpy and form.inner_shape == ():
        return "it is a scalar branch: one value per entry, not a list per entry"
    if form.is_regular or form.is_numpy:
        return (
            "it is a fixed-size array per entry; zero padding would be read as constituents, "
            "so store the constituents as variable-length lists"
        )
    if form.is_record:
        return f"it is one record per entry with fields {', '.join(form.fields)}"
    return "it is not a list of numbers per entry"


def _jagged_problem(
    tree: Any,
    top: Any,
    name: str,
    path: str,
    tree_name: str,
    what: str,
    unit: str = "jet",
    kind: str = "number",
) -> str | None:
    """The error message when branch ``name`` is not a jagged array of ``kind`` (one list per
    ``unit``), from the metadata only; None when it is one (or when the form is unknown)."""
    form = _column_form(tree, top, name, path, tree_name)
    if form is None:
        return None  # unknown here; reading reports it
    problem = _form_problem(form, kind)
    if problem is None:
        return None
    cpp = "" if top is not None else f", C++ {tree[name].typename}"
    expected = _EXPECTED_JAGGED.format(unit=unit)
    if kind == "integer":
        expected = expected.replace("numbers", "integers")
    return (
        f"{path}:{tree_name}: branch {name!r} ({what}) has type {form.type}{cpp}: {problem}; "
        f"expected {expected}"
    )


def _check_jagged(
    tree: Any,
    top: Any,
    names: Mapping[str, str],
    path: str,
    tree_name: str,
    unit: str = "jet",
    kind: str = "number",
) -> None:
    """Raise :class:`LayoutError` unless every branch of ``names`` (branch -> role) is a jagged
    array of ``kind``; metadata only, nothing is read."""
    for name, what in names.items():
        message = _jagged_problem(tree, top, name, path, tree_name, what, unit, kind)
        if message is not None:
            raise LayoutError(message)


def _scalar_fields(tree: Any) -> list[str]:
    """Names of the scalar numeric (one value per entry) branches/fields, file order."""
    out = []
    if _is_rntuple(tree):
        form = tree.to_akform()
        form = form[0] if isinstance(form, tuple) else form
        for name, content in zip(form.fields, form.contents, strict=True):
            if isinstance(content, ak.forms.NumpyForm) and content.inner_shape == ():
                out.append(name)
        return out
    for branch in tree.values(recursive=True):
        interp = branch.interpretation
        if isinstance(interp, uproot.AsDtype) and interp.inner_shape == ():
            if interp.from_dtype.kind in "biuf":
                out.append(branch.name)
    return out


def _counter_names(tree: Any, names: Sequence[str]) -> set[str]:
    out: set[str] = set()
    if _is_rntuple(tree):
        return out
    for n in names:
        try:
            cb = tree[n].count_branch
        except Exception:
            cb = None
        if cb is not None:
            out.add(cb.name)
    return out


def _jagged_numeric_branches(tree: Any, prefix: str) -> list[str]:
    out = []
    for branch in tree.values(recursive=True):
        if not branch.name.startswith(prefix):
            continue
        interp = branch.interpretation
        if isinstance(interp, uproot.AsJagged) and isinstance(interp.content, uproot.AsDtype):
            if interp.content.inner_shape == () and interp.content.from_dtype.kind in "biuf":
                out.append(branch.name)
    return out


def _resolve_components(
    keys: list[str], spec: Mapping[str, str], path: str, tree_name: str
) -> tuple[str, dict[str, str]]:
    """Resolve the stored names of a canonical mapping (from :func:`_check_branches`)."""
    spec = _check_branches(spec) or {}
    coords = "cartesian" if "px" in spec else "polar"
    resolved = {}
    missing = []
    for canon, name in spec.items():
        r = _resolve(keys, name)
        if r is None:
            missing.append(name)
        resolved[canon] = r or name
    if missing:
        raise MissingBranchError(
            f"{path}:{tree_name} has no branch {', '.join(repr(m) for m in missing)} "
            f"(branches in the tree: {_listing(keys)})"
        )
    return coords, resolved


def _plan(
    tree: Any,
    path: str,
    tree_name: str,
    layout: str,
    collection: str,
    branches: Mapping[str, str] | None,
    jet_fields: Sequence[str] | str | None,
    pf_collection: str,
) -> _Plan:
    if layout not in LAYOUTS:
        raise LayoutError(f"unknown layout {layout!r}; choose from {LAYOUTS}")
    keys = _keys(tree, path)
    keyset = set(keys)
    if layout == "auto":
        if branches is not None:
            layout = "mapping"
        elif _resolve(keyset, "part_px") is not None:
            layout = "jetclass"
        elif any(
            _resolve(keyset, name) is not None
            for name in (
                f"{collection}_pt",
                f"{pf_collection}_pt",
                f"{collection}{pf_collection}_jetIdx",
            )
        ):
            layout = "nanoaod"
        else:
            raise LayoutError(
                f"cannot recognise the jet layout of {path}:{tree_name}. Expected JetClass "
                f"branches (part_px, part_py, part_pz, part_energy), NanoAOD/PFNano "
                f"({collection}_pt with {collection}{pf_collection}_jetIdx/_pFCandsIdx and "
                f"{pf_collection}_pt/eta/phi/mass), or pass branches={{'px': ..., 'py': ..., "
                f"'pz': ..., 'E': ...}}. Branches in the tree: {_listing(keys)}"
            )
    if layout == "flat":
        layout = "jetclass"
    if layout == "mapping" and branches is None:
        raise LayoutError("layout='mapping' needs branches={'px': ..., 'py': ..., 'pz': ..., 'E': ...}")

    top = _top_form(tree)
    if layout in ("jetclass", "mapping"):
        spec = dict(branches) if branches is not None else dict(JETCLASS_BRANCHES)
        coords, constituent = _resolve_components(keys, spec, path, tree_name)
        _check_jagged(
            tree, top, {n: f"constituent {c}" for c, n in constituent.items()}, path, tree_name
        )
        if jet_fields is None or jet_fields == "all":
            skip = _counter_names(tree, list(constituent.values()))
            names = [n for n in _scalar_fields(tree) if n not in skip]
            fields = {n: n for n in names}
        else:
            fields = {}
            missing = []
            for n in jet_fields:
                r = _resolve(keyset, n)
                if r is None:
                    missing.append(n)
                fields[n] = r or n
            if missing:
                raise MissingBranchError(
                    f"{path}:{tree_name} has no jet field(s) {missing} (branches in the tree: "
                    f"{_listing(keys)})"
                )
        return _Plan(layout, coords, constituent, fields)

    # NanoAOD / PFNano (TTree branches FatJet_pt; RNTuple record sub-fields FatJet.pt)
    table = f"{collection}{pf_collection}"
    wanted_names = {
        "jet_pt": f"{collection}_pt",
        "jet_idx": f"{table}_jetIdx",
        "pf_idx": f"{table}_pFCandsIdx",
    }
    if _resolve(keyset, wanted_names["jet_pt"]) is None:
        others = sorted(
            {k.split("_")[0].split(".")[0] for k in keys if k.endswith(("_pt", ".pt"))}
        )
        raise MissingBranchError(
            f"{path}:{tree_name} has no jet collection {collection!r} (no {collection}_pt); "
            f"collections with pt in the file: {_listing(others)}"
        )
    constituent_names = {c: f"{pf_collection}_{c}" for c in ("pt", "eta", "phi", "mass")}
    missing = [
        b
        for b in [*wanted_names.values(), *constituent_names.values()]
        if _resolve(keyset, b) is None
    ]
    if missing:
        raise MissingBranchError(
            f"{path}:{tree_name} is NanoAOD without the PF candidates needed for the "
            f"{collection} constituents: missing {', '.join(missing)}. lloca-hep needs PFNano "
            f"branches {wanted_names['jet_idx']}, {wanted_names['pf_idx']} and "
            f"{pf_collection}_pt/_eta/_phi/_mass."
        )
    needed = {role: _resolve(keyset, b) or b for role, b in wanted_names.items()}
    constituent = {c: _resolve(keyset, b) or b for c, b in constituent_names.items()}
    _check_jagged(tree, top, {needed["jet_pt"]: f"{collection} pt"}, path, tree_name, "event")
    _check_jagged(
        tree, top, {n: f"{pf_collection} {c}" for c, n in constituent.items()}, path, tree_name,
        "event",
    )
    _check_jagged(
        tree, top, {needed["jet_idx"]: "jet index", needed["pf_idx"]: "PF-candidate index"},
        path, tree_name, "event", "integer",
    )
    prefix = f"{collection}_"
    members = sorted(
        {k[len(prefix) :] for k in keys if k.startswith((prefix, f"{collection}."))},
        key=lambda m: keys.index(_resolve(keyset, prefix + m) or prefix + m),
    )
    if jet_fields is None:
        chosen = [f for f in NANOAOD_DEFAULT_JET_FIELDS if f in members]
    elif jet_fields == "all":
        if _is_rntuple(tree):
            chosen = members
        else:
            chosen = [b[len(prefix) :] for b in _jagged_numeric_branches(tree, prefix)]
    else:
        chosen = []
        for f in jet_fields:
            member = f[len(prefix) :] if f.startswith(prefix) else f
            if member not in members:
                raise MissingBranchError(
                    f"{path}:{tree_name} has no branch {prefix + member!r} (branches of "
                    f"{collection}: {_listing([prefix + m for m in members])})"
                )
            chosen.append(member)
    fields = {f"jet_{m}": _resolve(keyset, prefix + m) or prefix + m for m in chosen}
    for out_name, stored in list(fields.items()):
        message = _jagged_problem(
            tree, top, stored, path, tree_name, f"jet field {out_name}", "event", "value"
        )
        if message is None:
            continue
        if isinstance(jet_fields, list):
            raise LayoutError(message)
        log.debug("skipping jet field: %s", message)
        del fields[out_name]
    return _Plan("nanoaod", "polar", constituent, fields, needed)


def _read_arrays(tree: Any, plan: _Plan, path: str, tree_name: str, start: int, stop: int) -> ak.Array:
    names = plan.names()
    try:
        if _is_rntuple(tree):
            arrays = tree.arrays(names, entry_start=start, entry_stop=stop)
        else:
            arrays = tree.arrays(filter_name=names, entry_start=start, entry_stop=stop, library="ak")
    except LLoCaInputError:
        raise
    except MemoryError:
        raise
    except Exception as err:
        raise CorruptFileError(
            f"cannot read entries {start}-{stop} of {path}:{tree_name} (branches "
            f"{_listing(names)}): {type(err).__name__}: {err}; the file looks truncated or "
            "corrupted"
        ) from err
    return arrays


def _column(arrays: ak.Array, name: str, path: str, tree_name: str) -> ak.Array:
    """Fetch a (possibly dotted RNTuple) column and check that it holds numbers."""
    col: Any = arrays
    if name in ak.fields(arrays):
        col = arrays[name]
    else:
        for part in name.split("."):
            if part not in ak.fields(col):
                raise MissingBranchError(
                    f"{path}:{tree_name}: reading {name!r} returned fields {ak.fields(col)}"
                )
            col = col[part]
    if ak.fields(col):
        raise MissingBranchError(
            f"{path}:{tree_name}: {name!r} read back as records {ak.fields(col)}, not numbers "
            "(RNTuple sub-fields are named 'record.field')"
        )
    return col


def _flat(values: ak.Array, dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """counts (int64) and flat numpy values of a per-entry jagged column."""
    values = ak.to_packed(values)
    counts = ak.to_numpy(ak.num(values, axis=1)).astype(np.int64)
    flat = np.asarray(ak.to_numpy(ak.flatten(values, axis=1)), dtype=dtype)
    return counts, flat


def _polar_to_cartesian(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, mass: np.ndarray):
    """(px, py, pz, E) float64 from pt/eta/phi/mass; negative masses follow vector's
    convention (E^2 = |p|^2 + m|m|), energies of a negative E^2 are set to 0 so that the
    space-like check reports them."""
    px = pt * np.cos(phi)
    py = pt * np.sin(phi)
    pz = pt * np.sinh(eta)
    e2 = px * px + py * py + pz * pz + mass * np.abs(mass)
    energy = np.sqrt(np.maximum(e2, 0.0))
    return px, py, pz, energy


#: What each flag of :func:`momentum_flags` means, for error messages.
MOMENTUM_PROBLEMS = {
    kernels.FLAG_NONFINITE: "NaN or infinite momentum",
    kernels.FLAG_NEGATIVE_ENERGY: "negative energy",
    kernels.FLAG_SPACELIKE: "energy below |p| beyond rounding (E < |p|)",
}


def momentum_flags(
    px: np.ndarray, py: np.ndarray, pz: np.ndarray, energy: np.ndarray
) -> tuple[np.ndarray, int]:
    """The constituent checks of the readers on float64 ``(n,)`` components (GeV).

    Returns ``(flags, n_bad)``: ``flags`` uint8 ``(n,)``, ``kernels.FLAG_OK`` or one of the keys
    of :data:`MOMENTUM_PROBLEMS` (tolerances :data:`SPACELIKE_REL_TOL`,
    :data:`MOMENTUM_ABS_TOL`), and the number of flagged constituents.
    """
    flags = np.empty(px.shape[0], dtype=np.uint8)
    n_bad = int(
        kernels.check_momenta_kernel(
            px, py, pz, energy, SPACELIKE_REL_TOL, MOMENTUM_ABS_TOL, flags
        )
    )
    return flags, n_bad


def _validate(
    cols: list[np.ndarray],
    counts: np.ndarray,
    on_invalid: str,
    where: str,
    branches: Sequence[str],
    entries: np.ndarray,
    jet_index: np.ndarray | None,
) -> tuple[list[np.ndarray], np.ndarray]:
    px, py, pz, energy = cols
    flags, n_bad = momentum_flags(px, py, pz, energy)
    if n_bad == 0:
        return cols, counts
    jet_of = np.repeat(np.arange(counts.shape[0]), counts)
    bad = flags != kernels.FLAG_OK
    bad_jets = np.unique(jet_of[bad])
    by_kind = {
        MOMENTUM_PROBLEMS[k]: int(np.count_nonzero(flags == k))
        for k in MOMENTUM_PROBLEMS
        if np.any(flags == k)
    }
    summary = ", ".join(f"{n} with {p}" for p, n in by_kind.items())
    if on_invalid == "raise":
        first = int(np.flatnonzero(bad)[0])
        j = int(jet_of[first])
        offsets = np.concatenate([[0], np.cumsum(counts)])
        k = first - int(offsets[j])
        jet_desc = f"entry {int(entries[j])}"
        if jet_index is not None:
            jet_desc += f", jet {int(jet_index[j])} of the event (jet {j} of the chunk)"
        else:
            jet_desc += f" (jet {j} of the chunk)"
        raise InvalidMomentumError(
            f"{where} (branches {', '.join(branches)}): {jet_desc}, constituent {k}: "
            f"{MOMENTUM_PROBLEMS[int(flags[first])]} (E={energy[first]!r}, px={px[first]!r}, "
            f"py={py[first]!r}, pz={pz[first]!r}). In total {n_bad} constituents in "
            f"{bad_jets.size} jets are affected ({summary}). Pass on_invalid='drop' to drop "
            "them with a counted warning."
        )
    if on_invalid != "drop":
        raise ValueError(f"on_invalid must be 'raise' or 'drop', got {on_invalid!r}")
    keep = ~bad
    new_counts = np.bincount(jet_of[keep], minlength=counts.shape[0]).astype(np.int64)
    warnings.warn(
        f"{where}: dropped {n_bad} constituents ({summary}) from {bad_jets.size} jets; "
        f"{int(np.count_nonzero((new_counts == 0) & (counts > 0)))} jets became empty",
        InvalidConstituentsWarning,
        stacklevel=4,
    )
    return [c[keep] for c in cols], new_counts


def _build_jets(
    arrays: ak.Array,
    plan: _Plan,
    path: str,
    tree_name: str,
    start: int,
    stop: int,
    on_invalid: str,
) -> ak.Array:
    where = f"{path}:{tree_name}"
    out: dict[str, Any] = {}
    if plan.layout == "nanoaod":
        cols, counts, entries, jet_index, jet_cols = _join_nanoaod(arrays, plan, where, start)
        out_fields = jet_cols
    else:
        comps = [_column(arrays, plan.constituent[c], path, tree_name) for c in plan.constituent]
        flat = [_flat(c) for c in comps]
        counts = flat[0][0]
        for (c, _), name in zip(flat[1:], list(plan.constituent.values())[1:], strict=True):
            if not np.array_equal(c, counts):
                differ = c != counts
                bad = int(np.flatnonzero(differ)[0])
                raise LayoutError(
                    f"{where}: entry {start + bad} (jet {bad} of the chunk): constituent branch "
                    f"{name!r} has {int(c[bad])} values but {list(plan.constituent.values())[0]!r}"
                    f" has {int(counts[bad])}; the constituent branches must hold one value per "
                    f"constituent in every jet ({int(np.count_nonzero(differ))} of "
                    f"{counts.shape[0]} jets in the chunk disagree)"
                )
        raw = [f for _, f in flat]
        if plan.coords == "polar":
            cols = list(_polar_to_cartesian(*raw))
        else:
            cols = raw
        entries = np.arange(start, start + counts.shape[0], dtype=np.int64)
        jet_index = None
        out_fields = {}
        for name, stored in plan.jet_fields.items():
            col = _column(arrays, stored, path, tree_name)
            out_fields[name] = col
    cols, counts = _validate(
        cols, counts, on_invalid, where, list(plan.constituent.values()), entries, jet_index
    )
    flat_record = ak.zip(
        {"px": cols[0], "py": cols[1], "pz": cols[2], "E": cols[3]}, with_name="Momentum4D"
    )
    out["constituents"] = ak.unflatten(flat_record, counts)
    if plan.layout == "nanoaod":
        out["entry"] = entries
        out["jet_index"] = jet_index
    out.update(out_fields)
    n_empty = int(np.count_nonzero(counts == 0))
    if n_empty:
        log.info("%s entries %d-%d: %d of %d jets have no constituents", where, start, stop,
                 n_empty, counts.shape[0])
    jets = ak.zip(out, depth_limit=1)
    return ak.Array(
        jets,
        attrs={
            "lloca_source": {
                "file": os.path.abspath(path),
                "tree": tree_name,
                "layout": plan.layout,
                "entry_start": int(start),
                "entry_stop": int(stop),
            }
        },
    )


def _join_nanoaod(arrays: ak.Array, plan: _Plan, where: str, start: int):
    """Join <coll>PFCands index tables onto PFCands; returns Cartesian columns, counts per jet,
    entry and jet_index per jet, and the jet-level fields."""
    nano = plan.nano
    path, tree_name = where.rsplit(":", 1)

    def col(name: str) -> ak.Array:
        return _column(arrays, name, path, tree_name)

    n_events = len(arrays)
    n_jets = ak.to_numpy(ak.num(col(nano["jet_pt"]), axis=1)).astype(np.int64)
    jet_off = np.zeros(n_events + 1, dtype=np.int64)
    np.cumsum(n_jets, out=jet_off[1:])
    total_jets = int(jet_off[-1])
    table_counts, jidx = _flat(col(nano["jet_idx"]), np.int64)
    table_counts2, pidx = _flat(col(nano["pf_idx"]), np.int64)
    if not np.array_equal(table_counts, table_counts2):
        first_bad = int(np.flatnonzero(table_counts != table_counts2)[0])
        raise LLoCaInputError(
            f"{where}: entry {start + first_bad}: {nano['jet_idx']} and {nano['pf_idx']} differ in length"
        )
    pf_counts, pt = _flat(col(plan.constituent["pt"]))
    pf_off = np.zeros(n_events + 1, dtype=np.int64)
    np.cumsum(pf_counts, out=pf_off[1:])
    raw = [pt] + [_flat(col(plan.constituent[c]))[1] for c in ("eta", "phi", "mass")]
    event_of_row = np.repeat(np.arange(n_events), table_counts)
    bad_jet = (jidx < 0) | (jidx >= n_jets[event_of_row])
    bad_pf = (pidx < 0) | (pidx >= pf_counts[event_of_row])
    for bad, branch, limit in ((bad_jet, nano["jet_idx"], n_jets), (bad_pf, nano["pf_idx"], pf_counts)):
        if np.any(bad):
            row = int(np.flatnonzero(bad)[0])
            ev = int(event_of_row[row])
            value = int((jidx if branch == nano["jet_idx"] else pidx)[row])
            raise LLoCaInputError(
                f"{where}: entry {start + ev}: {branch} = {value} is out of range "
                f"[0, {int(limit[ev])}) ({int(np.count_nonzero(bad))} bad index rows in the chunk)"
            )
    global_jet = jet_off[event_of_row] + jidx
    global_pf = pf_off[event_of_row] + pidx
    order = np.argsort(global_jet, kind="stable")
    counts = np.bincount(global_jet, minlength=total_jets).astype(np.int64)
    sel = global_pf[order]
    cols = list(_polar_to_cartesian(*(r[sel] for r in raw)))
    entries = np.repeat(np.arange(start, start + n_events, dtype=np.int64), n_jets)
    jet_index = np.arange(total_jets, dtype=np.int64) - np.repeat(jet_off[:-1], n_jets)
    jet_cols = {}
    for name, branch in plan.jet_fields.items():
        c, values = _flat(col(branch), None)
        if not np.array_equal(c, n_jets):
            raise LLoCaInputError(
                f"{where}: branch {branch!r} does not have one value per {nano['jet_pt']}"
            )
        jet_cols[name] = values
    return cols, counts, entries, jet_index, jet_cols


def _check_on_invalid(on_invalid: str) -> None:
    if not isinstance(on_invalid, str) or on_invalid not in ("raise", "drop"):
        raise LLoCaInputError(f"on_invalid must be 'raise' or 'drop', got {on_invalid!r}")


def _entry_range(num_entries: int, entry_start: int | None, entry_stop: int | None) -> tuple[int, int]:
    start = 0 if entry_start is None else int(entry_start)
    stop = num_entries if entry_stop is None else int(entry_stop)
    if start < 0:
        start += num_entries
    if stop < 0:
        stop += num_entries
    start = min(max(start, 0), num_entries)
    stop = min(max(stop, start), num_entries)
    return start, stop


@dataclass(frozen=True)
class _OpenTree:
    """A tree opened and planned for reading: ``entry_start:entry_stop`` of ``num_entries``."""

    path: str
    tobj: Any
    tree_name: str
    plan: _Plan
    num_entries: int
    entry_start: int
    entry_stop: int


@contextlib.contextmanager
def _open_planned(
    spelled: str,
    tree: str | None,
    layout: str,
    collection: str,
    branches: Mapping[str, str] | None,
    jet_fields: Sequence[str] | str | None,
    pf_collection: str,
    entry_start: int | None,
    entry_stop: int | None,
) -> Iterator[_OpenTree]:
    """Open ``spelled`` (``file.root`` or ``file.root:tree``), select its tree, plan the branches
    to read and clip the entry range; the file stays open inside the ``with`` block."""
    path, tree = _split_object_path(spelled, tree)
    with _open(path) as fobj:
        tobj, tree_name = _select_tree(
            fobj, path, tree, layout, collection, branches, pf_collection
        )
        plan = _plan(tobj, path, tree_name, layout, collection, branches, jet_fields, pf_collection)
        num_entries = int(tobj.num_entries)
        start, stop = _entry_range(num_entries, entry_start, entry_stop)
        yield _OpenTree(path, tobj, tree_name, plan, num_entries, start, stop)


def read_jets(
    path: str | os.PathLike,
    *,
    tree: str | None = None,
    layout: str = "auto",
    collection: str = "FatJet",
    branches: Mapping[str, str] | None = None,
    jet_fields: Sequence[str] | str | None = None,
    pf_collection: str = "PFCands",
    entry_start: int | None = None,
    entry_stop: int | None = None,
    on_invalid: str = "raise",
) -> ak.Array:
    """Read the jets of one ROOT file (TTree or RNTuple) into an awkward array.

    Parameters
    ----------
    path : the ROOT file (``"file.root:tree"`` is accepted too).
    tree : TTree/RNTuple name; None picks the only tree, else among the trees that hold the
        requested jet layout the first of :data:`PREFERRED_TREES`, else the first in the file.
    layout : ``"auto"``, ``"jetclass"`` (``"flat"``), ``"nanoaod"`` or ``"mapping"`` (see the
        module docstring).
    collection : NanoAOD jet collection, ``"FatJet"`` (default) or ``"Jet"``.
    branches : user mapping of constituent components to branch names, Cartesian
        (``px, py, pz, E``; ``E`` also spelled ``energy``, ``e``, ``t``) or polar
        (``pt, eta, phi, mass``; ``mass`` also ``m``, ``M``), one complete set of string
        values; implies ``layout="mapping"``. Anything else raises :class:`LayoutError`.
    jet_fields : jet-level fields to carry. None: every scalar numeric branch (flat layouts)
        or :data:`NANOAOD_DEFAULT_JET_FIELDS` (NanoAOD); ``"all"``: every scalar branch /
        every numeric ``<collection>_*`` branch; or a list of names (one name as a string).
    pf_collection : NanoAOD PF-candidate collection (``PFCands``).
    entry_start, entry_stop : entry range (jets for flat layouts, events for NanoAOD);
        integers, negative ones count from the end as in Python slicing.
    on_invalid : ``"raise"`` or ``"drop"`` for NaN/inf momenta, negative energies and
        E < |p| beyond rounding.

    Returns
    -------
    ak.Array, one entry per jet: ``constituents`` (var * Momentum4D{px, py, pz, E}, float64,
    GeV), jet-level and label fields, and for NanoAOD ``entry`` and ``jet_index``.
    """
    o = _check_options(
        tree, layout, collection, branches, jet_fields, pf_collection, entry_start, entry_stop,
        on_invalid,
    )
    with _open_planned(
        _check_path(path), o.tree, o.layout, o.collection, o.branches, o.jet_fields,
        o.pf_collection, o.entry_start, o.entry_stop,
    ) as t:
        arrays = _read_arrays(t.tobj, t.plan, t.path, t.tree_name, t.entry_start, t.entry_stop)
        return _build_jets(
            arrays, t.plan, t.path, t.tree_name, t.entry_start, t.entry_stop, on_invalid
        )


def _expand_paths(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    elif not isinstance(paths, Iterable):
        _check_path(paths)
    out: list[str] = []
    for p in paths:
        p = _check_path(p)
        if any(ch in p for ch in "*?["):
            matches = sorted(glob.glob(p))
            suffix = ""
            if not matches and ":" in p:  # "dir/*.root:tree"
                head, _, tail = p.rpartition(":")
                if head and tail and not any(ch in tail for ch in "*?[/"):
                    matches, suffix = sorted(glob.glob(head)), f":{tail}"
            if not matches:
                raise MissingFileError(f"no file matches {p}")
            out.extend(m + suffix for m in matches)
        else:
            out.append(p)
    return out


def iterate_jets(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    step_size: int | str = "100 MB",
    *,
    tree: str | None = None,
    layout: str = "auto",
    collection: str = "FatJet",
    branches: Mapping[str, str] | None = None,
    jet_fields: Sequence[str] | str | None = None,
    pf_collection: str = "PFCands",
    entry_start: int | None = None,
    entry_stop: int | None = None,
    on_invalid: str = "raise",
    progress: bool = False,
) -> Iterator[JetChunk]:
    """Stream jets from many files in chunks, for inputs larger than memory.

    ``step_size``: entries per chunk (int; jets for flat layouts, events for NanoAOD) or a
    memory size such as ``"100 MB"`` (converted per file by uproot from the branches read).
    ``entry_start``/``entry_stop`` apply to every file. Other options as in :func:`read_jets`.
    Yields :class:`JetChunk` (``jets``, ``file``, ``entry_start``, ``entry_stop``, ...);
    chunks of one file are contiguous and in order. Each file is opened once. Bad options and
    unmatched globs raise at the call; problems of a file when its turn comes. A tree without
    entries yields nothing.
    """
    o = _check_options(
        tree, layout, collection, branches, jet_fields, pf_collection, entry_start, entry_stop,
        on_invalid,
    )
    step = _check_step_size(step_size)
    files = _expand_paths(paths)
    return _iterate_files(files, o, step, on_invalid, progress)


def _iterate_files(
    files: list[str], o: _Options, step_size: int | str, on_invalid: str, progress: bool
) -> Iterator[JetChunk]:
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(files), unit="file", desc="reading jets")
    try:
        for spelled in files:
            with _open_planned(
                spelled, o.tree, o.layout, o.collection, o.branches, o.jet_fields,
                o.pf_collection, o.entry_start, o.entry_stop,
            ) as t:
                if isinstance(step_size, str):
                    try:
                        step = int(t.tobj.num_entries_for(step_size, filter_name=t.plan.names()))
                    except Exception as err:
                        raise CorruptFileError(
                            f"cannot size chunks of {t.path}:{t.tree_name}: "
                            f"{type(err).__name__}: {err}"
                        ) from err
                else:
                    step = step_size
                step = max(step, 1)  # a memory size below one entry reads one entry per chunk
                for lo in range(t.entry_start, t.entry_stop, step):
                    hi = min(lo + step, t.entry_stop)
                    arrays = _read_arrays(t.tobj, t.plan, t.path, t.tree_name, lo, hi)
                    jets = _build_jets(arrays, t.plan, t.path, t.tree_name, lo, hi, on_invalid)
                    yield JetChunk(
                        jets, os.path.abspath(t.path), lo, hi, t.tree_name, t.plan.layout,
                        t.num_entries,
                    )
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
