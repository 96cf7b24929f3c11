"""Branch types from metadata (awkward forms of TTrees and RNTuples): is a branch a jagged
array of numbers, one list per jet/event? No data is read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lloca_hep.errors import (
    LayoutError,
)

from .layouts import (
    _EXPECTED_JAGGED,
)


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


def _is_rntuple(tree: Any) -> bool:
    return "RNTuple" in type(tree).__name__
