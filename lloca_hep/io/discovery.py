"""Discovery: open a ROOT file, choose the tree (TTree or RNTuple) that holds the requested
jet layout, and plan what to read from it (:class:`Plan`). One implementation for every route:
:func:`lloca_hep.io.read_jets`, :func:`lloca_hep.io.iterate_jets` and
:func:`lloca_hep.integrations.dask.score_files`."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import awkward as ak
import uproot

from lloca_hep.errors import (
    CorruptFileError,
    FeatureError,
    LayoutError,
    MissingBranchError,
    MissingFileError,
    MissingTreeError,
)
from lloca_hep.features import InputSpec

from .forms import (
    _check_jagged,
    _is_rntuple,
    _jagged_problem,
    _top_form,
)
from .layouts import (
    _LISTED_PER_TREE,
    _TREE_CLASSES,
    JETCLASS_BRANCHES,
    LAYOUTS,
    NANOAOD_DEFAULT_JET_FIELDS,
    PREFERRED_TREES,
)
from .options import (
    _check_branches,
    _listing,
)

log = logging.getLogger(__name__)


@dataclass
class _Plan:
    """What to read from one tree and how to build jets from it."""

    layout: str
    coords: str  # "cartesian" or "polar"
    constituent: dict[str, str]  # canonical component -> resolved branch/field name
    jet_fields: dict[str, str] = field(default_factory=dict)  # output name -> resolved name
    nano: dict[str, str] = field(default_factory=dict)  # role -> branch (nanoaod only)
    features: InputSpec | None = None  # per-particle features to read (None: momenta only)
    #: branch named by a feature source -> resolved stored name (per constituent, or per
    #: PF candidate for NanoAOD)
    feature_branches: dict[str, str] = field(default_factory=dict)

    def names(self) -> list[str]:
        names = list(self.constituent.values()) + list(self.jet_fields.values())
        names += list(self.nano.values()) + list(self.feature_branches.values())
        seen: dict[str, None] = {}
        for n in names:
            seen.setdefault(n, None)
        return list(seen)


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


def _resolve_all(
    keys: set[str] | Sequence[str], wanted: Mapping[str, str], path: str, tree_name: str,
    what: str, listed: Sequence[str] | None = None,
) -> dict[str, str]:
    """``{role: stored name}`` for ``wanted`` = ``{role: requested name}``; a
    :class:`MissingBranchError` names every missing one and lists the tree's branches."""
    resolved = {role: _resolve(keys, name) for role, name in wanted.items()}
    missing = [wanted[role] for role, r in resolved.items() if r is None]
    if missing:
        raise MissingBranchError(
            f"{path}:{tree_name} has no {what} {', '.join(repr(m) for m in missing)} "
            f"(branches in the tree: {_listing(list(keys) if listed is None else listed)})"
        )
    return {role: r for role, r in resolved.items() if r is not None}


def _resolve_components(
    keys: list[str], spec: Mapping[str, str], path: str, tree_name: str
) -> tuple[str, dict[str, str]]:
    """Resolve the stored names of a canonical mapping (from :func:`_check_branches`)."""
    spec = _check_branches(spec) or {}
    coords = "cartesian" if "px" in spec else "polar"
    return coords, _resolve_all(keys, spec, path, tree_name, "branch")


def _plan(
    tree: Any,
    path: str,
    tree_name: str,
    layout: str,
    collection: str,
    branches: Mapping[str, str] | None,
    jet_fields: Sequence[str] | str | None,
    pf_collection: str,
    features: InputSpec | None = None,
) -> _Plan:
    """What to read from ``tree`` for the requested layout (and ``features``)."""
    plan = _plan_momenta(tree, path, tree_name, layout, collection, branches, jet_fields,
                         pf_collection)
    if features is not None and len(features):
        plan.features = features
        plan.feature_branches = _plan_features(tree, path, tree_name, plan.layout, features,
                                               pf_collection)
    return plan


def _feature_branch(branch: str, layout: str, pf_collection: str) -> str:
    """The stored name a feature source names: itself for flat layouts; for NanoAOD the field
    of ``pf_collection`` (``PFCands_d0`` and ``d0`` both name ``<pf_collection>_d0``)."""
    if layout != "nanoaod":
        return branch
    for prefix in ("PFCands_", f"{pf_collection}_"):
        if branch.startswith(prefix):
            branch = branch[len(prefix):]
    return f"{pf_collection}_{branch}"


def _plan_features(tree: Any, path: str, tree_name: str, layout: str, features: InputSpec,
                   pf_collection: str) -> dict[str, str]:
    """``{source branch: stored name}`` of every feature; a :class:`MissingBranchError` names
    the input set, the feature and the branch the file lacks."""
    keys = _keys(tree, path)
    keyset = set(keys)
    out: dict[str, str] = {}
    unit = "event" if layout == "nanoaod" else "jet"
    for feat in features.ordered:
        src = feat.source(layout)
        if src is None:
            raise FeatureError(
                f"{path}:{tree_name}: feature {feat.name!r} of input set {features.name!r} has "
                f"no source for the {layout} layout (it has {sorted(feat.sources)})")
        for branch in src.branches():
            stored = _resolve(keyset, _feature_branch(branch, layout, pf_collection))
            if stored is None:
                raise MissingBranchError(
                    f"{path}:{tree_name} has no branch "
                    f"{_feature_branch(branch, layout, pf_collection)!r}, which feature "
                    f"{feat.name!r} of input set {features.name!r} reads (branches in the "
                    f"tree: {_listing(keys)}); read the file without features, or name your "
                    "branches in a feature file")
            out[branch] = stored
    _check_jagged(tree, _top_form(tree), {n: f"feature {b}" for b, n in out.items()}, path,
                  tree_name, unit, "value")
    return out


def _plan_momenta(
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
            fields = _resolve_all(keyset, {n: n for n in jet_fields}, path, tree_name,
                                  "jet field(s)", listed=keys)
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


