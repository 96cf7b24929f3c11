"""Labels of training and evaluation files: binary, one-hot ``label_*`` or an integer class.

Three kinds (:class:`LabelSpec`), chosen by :func:`resolve_labels` from the first file's
branches:

``onehot``
    JetClass naming: one branch per class, ``label_<class>`` (bool, int or float), exactly
    one set per jet; the class names are the suffixes in file order. Found automatically when
    the file has at least two ``label_*`` branches and no ``label_branch`` (``is_signal``) of
    its own. With ``classes`` given they must name the same classes (the columns then follow
    the order of ``classes``).
``index``
    an integer branch (``label_branch``) holding ``0 .. C-1`` with ``classes`` naming them.
``binary``
    ``label_branch`` (``is_signal`` by default) holding 0/1, as before multi-class tagging.

C = 2 (binary, or two one-hot classes) trains one logit with BCE; C > 2 trains C logits with
cross-entropy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lloca_hep.errors import LabelError

__all__ = ["LABEL_PREFIX", "LabelSpec", "extract_labels", "resolve_labels"]

#: Prefix of JetClass's one-hot label branches.
LABEL_PREFIX = "label_"
#: Branches listed in the message about a missing label branch.
MAX_LISTED = 40
#: Class names of a binary label branch without names of its own.
BINARY_CLASSES = ("background", "signal")


@dataclass(frozen=True)
class LabelSpec:
    """How labels are read: ``kind`` (``binary``, ``onehot``, ``index``), the ``branches``
    read, and the ``classes`` (names, in column order)."""

    kind: str
    branches: tuple[str, ...]
    classes: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def multiclass(self) -> bool:
        """True for C > 2 (cross-entropy, ``(B, C)`` logits)."""
        return self.n_classes > 2

    def describe(self) -> str:
        if self.kind == "onehot":
            return f"one-hot branches {', '.join(self.branches)}"
        return f"label branch {self.branches[0]!r}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "branches": list(self.branches), "classes": list(self.classes)}


def resolve_labels(branch_names: Sequence[str], label_branch: str,
                   classes: Sequence[str] | None, where: str,
                   default_branch: str) -> LabelSpec:
    """The :class:`LabelSpec` for a tree with ``branch_names`` (see the module docstring).

    ``label_branch``: the binary / integer label branch asked for; ``default_branch``: its
    default (``is_signal``), used to tell whether the user named it. Errors name ``where``.
    """
    onehot = [b for b in branch_names if b.startswith(LABEL_PREFIX) and len(b) > len(LABEL_PREFIX)]
    has_branch = label_branch in branch_names
    user_branch = label_branch != default_branch
    if len(onehot) >= 2 and not (has_branch and (user_branch or classes is None)):
        found = tuple(b[len(LABEL_PREFIX):] for b in onehot)
        if classes is None:
            return LabelSpec("onehot", tuple(onehot), found)
        if sorted(classes) != sorted(found):
            raise LabelError(
                f"{where}: --classes {','.join(classes)} do not match the one-hot labels found "
                f"({', '.join(onehot)}: classes {','.join(found)})")
        return LabelSpec("onehot", tuple(LABEL_PREFIX + c for c in classes), tuple(classes))
    if not has_branch:
        hint = (f"; one-hot branches found: {', '.join(onehot)}" if onehot else
                f"; no one-hot {LABEL_PREFIX}* branches either")
        shown = ", ".join(list(branch_names)[:MAX_LISTED])
        more = len(branch_names) - MAX_LISTED
        raise LabelError(f"{where}: label branch {label_branch!r} not found{hint} (branches in "
                         f"the tree: {shown}{f', ... ({more} more)' if more > 0 else ''})")
    if classes is not None:
        return LabelSpec("index", (label_branch,), tuple(classes))
    return LabelSpec("binary", (label_branch,), BINARY_CLASSES)


def file_labels(first: str, tree: str | None, label_branch: str,
                classes: Sequence[str] | None, default_branch: str) -> LabelSpec:
    """:func:`resolve_labels` for the tree of the ROOT file ``first`` (a path or
    ``path:tree``; ``tree`` as for the readers): only the branch names are read."""
    from lloca_hep.io.discovery import _keys, _open, _select_tree, _split_object_path

    path, tree = _split_object_path(first, tree)
    with _open(path) as fobj:
        tobj, name = _select_tree(fobj, path, tree)
        keys = _keys(tobj, path)
    return resolve_labels(keys, label_branch, classes, f"{path}:{name}", default_branch)


def extract_labels(jets: Any, spec: LabelSpec, where: str, first_jet: int = 0) -> np.ndarray:
    """Labels of a chunk of jets: float32 0/1 ``(n,)`` for C = 2, int64 class indices
    ``(n,)`` for C > 2. Errors (:class:`LabelError`) name ``where``, the branch and the jet
    (counted from ``first_jet``)."""
    import awkward as ak

    fields = ak.fields(jets)
    missing = [b for b in spec.branches if b not in fields]
    if missing:
        raise LabelError(f"{where}: label branch(es) {', '.join(missing)} not found; available "
                         f"fields: {fields}")
    cols = []
    for b in spec.branches:
        values = ak.to_numpy(jets[b])
        if values.ndim != 1:
            raise LabelError(f"{where}: label branch {b!r} is not one number per jet")
        cols.append(values)
    if spec.kind == "onehot":
        table = np.stack([np.asarray(c, dtype=np.float64) for c in cols], axis=1)
        ok = np.isin(table, (0.0, 1.0)).all(axis=1) & (table.sum(axis=1) == 1.0)
        if not ok.all():
            j = int(np.flatnonzero(~ok)[0])
            row = ", ".join(f"{b}={table[j, k]:g}" for k, b in enumerate(spec.branches))
            n_set = int(np.count_nonzero(table[j]))
            raise LabelError(
                f"{where}: jet {first_jet + j} is not one-hot ({n_set} of the "
                f"{len(spec.branches)} label branches set: {row}); {int((~ok).sum())} jets of "
                "the chunk are affected")
        index = np.argmax(table, axis=1)
    else:
        values = cols[0]
        allowed = np.arange(spec.n_classes)
        bad = ~np.isin(values, allowed)
        if np.any(bad):
            j = int(np.argmax(bad))
            what = "0 or 1" if spec.kind == "binary" else f"0 .. {spec.n_classes - 1}"
            raise LabelError(
                f"{where}: label branch {spec.branches[0]!r} must hold {what}; jet "
                f"{first_jet + j} has {values[j].item()!r}")
        index = values.astype(np.int64)
    if spec.multiclass:
        return index.astype(np.int64)
    return index.astype(np.float32)
