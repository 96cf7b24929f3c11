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
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import awkward as ak
import numpy as np
import uproot
import vector

from ..preprocessing import kernels
from .errors import (
    CorruptFileError,
    InvalidMomentumError,
    LayoutError,
    LLoCaInputError,
    MissingBranchError,
    MissingFileError,
    MissingTreeError,
)

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


def _select_tree(fobj: Any, path: str, tree: str | None, collection: str) -> tuple[Any, str]:
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
    elif not candidates:
        raise MissingTreeError(f"{path} holds no TTree or RNTuple (objects: {_listing(fobj.keys())})")
    elif len(candidates) == 1:
        name = next(iter(candidates))
    else:
        name = next((n for n in PREFERRED_TREES if n in candidates), "")
        if not name:
            for cand in candidates:
                keys = set(_keys(_get_tree(fobj, path, cand), path))
                if _resolve(keys, "part_px") or f"{collection}_pt" in keys:
                    name = cand
                    break
        if not name:
            raise MissingTreeError(
                f"{path} holds several trees and none looks like jets; pass tree=... "
                f"(trees: {_listing(sorted(candidates))})"
            )
    return _get_tree(fobj, path, name), name


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
    """Pick Cartesian or polar coordinates from a user mapping and resolve the names."""
    spec_keys = set(spec)

    def pick(table: dict[str, tuple[str, ...]]) -> dict[str, str] | None:
        chosen = {}
        for canon, aliases in table.items():
            found = [a for a in aliases if a in spec_keys]
            if not found:
                return None
            chosen[canon] = spec[found[0]]
        return chosen

    cart, polar = pick(_CARTESIAN_KEYS), pick(_POLAR_KEYS)
    if cart is not None:
        coords, chosen = "cartesian", cart
    elif polar is not None:
        coords, chosen = "polar", polar
    else:
        raise LayoutError(
            f"branches={dict(spec)} must map px, py, pz, E (or energy) or pt, eta, phi, mass "
            "(or m) to branch names"
        )
    resolved = {}
    missing = []
    for canon, name in chosen.items():
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

    if layout in ("jetclass", "mapping"):
        spec = dict(branches) if branches is not None else dict(JETCLASS_BRANCHES)
        coords, constituent = _resolve_components(keys, spec, path, tree_name)
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
                bad = int(np.flatnonzero(c != counts)[0])
                raise LLoCaInputError(
                    f"{where}: entry {start + bad}: branch {name!r} has {int(c[bad])} values "
                    f"but {list(plan.constituent.values())[0]!r} has {int(counts[bad])}"
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
    if on_invalid not in ("raise", "drop"):
        raise ValueError(f"on_invalid must be 'raise' or 'drop', got {on_invalid!r}")


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
        tobj, tree_name = _select_tree(fobj, path, tree, collection)
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
    tree : TTree/RNTuple name; None picks the only tree, else one of :data:`PREFERRED_TREES`,
        else the first that looks like jets.
    layout : ``"auto"``, ``"jetclass"`` (``"flat"``), ``"nanoaod"`` or ``"mapping"`` (see the
        module docstring).
    collection : NanoAOD jet collection, ``"FatJet"`` (default) or ``"Jet"``.
    branches : user mapping of constituent components to branch names, Cartesian
        (``px, py, pz, E``) or polar (``pt, eta, phi, mass``); implies ``layout="mapping"``.
    jet_fields : jet-level fields to carry. None: every scalar numeric branch (flat layouts)
        or :data:`NANOAOD_DEFAULT_JET_FIELDS` (NanoAOD); ``"all"``: every scalar branch /
        every numeric ``<collection>_*`` branch; or a list of names.
    pf_collection : NanoAOD PF-candidate collection (``PFCands``).
    entry_start, entry_stop : entry range (jets for flat layouts, events for NanoAOD).
    on_invalid : ``"raise"`` or ``"drop"`` for NaN/inf momenta, negative energies and
        E < |p| beyond rounding.

    Returns
    -------
    ak.Array, one entry per jet: ``constituents`` (var * Momentum4D{px, py, pz, E}, float64,
    GeV), jet-level and label fields, and for NanoAOD ``entry`` and ``jet_index``.
    """
    _check_on_invalid(on_invalid)
    with _open_planned(
        os.fspath(path), tree, layout, collection, branches, jet_fields, pf_collection,
        entry_start, entry_stop,
    ) as t:
        arrays = _read_arrays(t.tobj, t.plan, t.path, t.tree_name, t.entry_start, t.entry_stop)
        return _build_jets(
            arrays, t.plan, t.path, t.tree_name, t.entry_start, t.entry_stop, on_invalid
        )


def _expand_paths(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[str] = []
    for p in paths:
        p = os.fspath(p)
        if any(ch in p for ch in "*?["):
            matches = sorted(glob.glob(p))
            if not matches:
                raise MissingFileError(f"no file matches {p}")
            out.extend(matches)
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
    chunks of one file are contiguous and in order. Each file is opened once.
    """
    _check_on_invalid(on_invalid)
    files = _expand_paths(paths)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(files), unit="file", desc="reading jets")
    try:
        for spelled in files:
            with _open_planned(
                spelled, tree, layout, collection, branches, jet_fields, pf_collection,
                entry_start, entry_stop,
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
                    step = int(step_size)
                if step < 1:
                    step = 1
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
