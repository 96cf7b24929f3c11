"""Vetting a ``torch.export`` archive (``.pt2``) from a stranger before torch reads it.

:func:`torch.export.load` is not safe for untrusted files: besides the graph and raw weight
bytes it unpickles records with ``weights_only=False`` (the sample inputs, when a
``weights_only`` load fails; weights and constants flagged ``use_pickle``; custom objects),
``exec``\\ s the archive's ``guards_code`` strings, hands symbolic-shape strings to
``sympy.sympify`` (an ``eval``), imports modules named in tree specs, writes attribute names into
generated Python source and loads AOTInductor shared libraries. :func:`read_archive` and
:func:`check_archive` refuse every one of those routes for an archive that does not look like
one :func:`torch.export.save` writes for a lloca-hep tagger:

* the zip must read cleanly (CRCs, sizes below :data:`MAX_ARCHIVE_BYTES`), with every record
  under one root folder and of a known kind (:data:`FIXED_RECORDS`, ``models/model.json``, the
  weights and constants configs and the records they name, ``data/sample_inputs/model.pt``,
  ``extra/*``); anything else (``data/aotinductor/``, legacy weight pickles, a second model)
  is refused;
* every record that is a pickle or a nested ``torch.save`` archive must load with
  ``torch.load(..., weights_only=True)``; constants that are Python or TorchScript objects are
  refused;
* the graph may call only ATen operators (less :data:`DENIED_ATEN_OPS`, which touch files) and
  a few :mod:`operator` / ``torch.sym_*`` / :mod:`math` functions; symbolic expressions,
  guards and tree specs must stay within small grammars; names must be dotted identifiers; no
  string may hold control characters other than newline and tab.

:func:`rebuilt_archive` then writes the vetted records into a fresh in-memory zip, so torch
reads exactly what was checked (no zip-parser differences between Python and torch).
"""

from __future__ import annotations

import ast
import io
import json
import os
import pickle
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .format import TaggerFileError

#: Why anything that could run code is refused, appended to every such error.
NOT_CODE = "a tagger file from a stranger must not run code"
#: Largest total uncompressed size of an archive's records (1 GiB; lloca-hep taggers are MBs).
MAX_ARCHIVE_BYTES = 1 << 30
#: Most records an archive may hold.
MAX_ARCHIVE_RECORDS = 100_000
#: Longest symbolic expression or guard accepted, characters.
MAX_EXPRESSION_CHARS = 10_000
#: Largest integer literal in a symbolic expression or guard (int64 range).
MAX_INT_LITERAL = 2**63
#: Largest literal exponent in a symbolic expression (bigger ones are a denial of service).
MAX_LITERAL_EXPONENT = 64

#: The one program a lloca-hep archive holds (``torch.export.load`` returns ``"model"``).
MODEL_NAME = "model"
#: Record names of the PT2 archive layout (torch/csrc/export/pt2_archive_constants.h), relative
#: to the archive's root folder.
ARCHIVE_FORMAT_RECORD = "archive_format"
ARCHIVE_FORMAT_VALUE = "pt2"
ARCHIVE_VERSION_RECORD = "archive_version"
FIXED_RECORDS = frozenset({
    ARCHIVE_FORMAT_RECORD, ARCHIVE_VERSION_RECORD, "byteorder", ".data/version",
    ".data/serialization_id",
})
MODEL_RECORD = f"models/{MODEL_NAME}.json"
SAMPLE_INPUTS_RECORD = f"data/sample_inputs/{MODEL_NAME}.pt"
WEIGHTS_DIR = "data/weights/"
CONSTANTS_DIR = "data/constants/"
WEIGHTS_CONFIG_RECORD = f"{WEIGHTS_DIR}{MODEL_NAME}_weights_config.json"
CONSTANTS_CONFIG_RECORD = f"{CONSTANTS_DIR}{MODEL_NAME}_constants_config.json"
EXTRA_DIR = "extra/"
WEIGHT_PREFIX = "weight_"
TENSOR_CONSTANT_PREFIX = "tensor_"

#: ATen operators that read or write files; refused in a graph.
DENIED_ATEN_OPS = frozenset({"save", "from_file"})
_ATEN_TARGET = re.compile(r"torch\.ops\.aten\.([A-Za-z_][A-Za-z0-9_]*)\.[A-Za-z_][A-Za-z0-9_]*\Z")
_OTHER_TARGETS = frozenset(
    [f"_operator.{n}" for n in ("getitem", "add", "sub", "mul", "truediv", "floordiv", "mod",
                                "pow", "neg", "pos", "abs", "eq", "ne", "lt", "le", "gt", "ge",
                                "and_", "or_", "xor", "not_", "invert")]
    + [f"torch.{n}" for n in ("sym_max", "sym_min", "sym_not", "sym_float", "sym_int",
                              "sym_ite", "sym_sum", "sym_sqrt", "_sym_sqrt")]
    + [f"math.{n}" for n in ("ceil", "floor", "trunc", "sqrt")]
)
#: A parameter, buffer, node or argument name: dotted identifiers (digits allowed after a dot,
#: as in ``net.0.weight``).
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*\Z")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_RECORD_NAME = re.compile(r"[A-Za-z0-9_.\-]+\Z")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
#: Pickle protocol 2+ opcode, and the start of a zip (a nested ``torch.save`` archive).
_PICKLE_START = b"\x80"
_ZIP_START = b"PK\x03\x04"
#: How torch's weights-only unpickler names the callable it refused.
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([A-Za-z0-9_.]+)")
#: Tree-spec node types a lloca-hep program's inputs and outputs use.
_TREESPEC_TYPES = frozenset({
    None, "builtins.tuple", "builtins.list", "builtins.dict", "collections.OrderedDict",
    "torch.Size", "torch.fx.immutable_collections.immutable_dict",
    "torch.fx.immutable_collections.immutable_list",
})
_SYMPY_CORE_FUNCTIONS = frozenset({
    "Symbol", "Integer", "Float", "Rational", "Add", "Mul", "Pow", "Abs", "floor", "ceiling",
    "sqrt", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "Equality", "Inequality", "StrictLessThan",
    "StrictGreaterThan", "LessThan", "GreaterThan", "And", "Or", "Not", "Piecewise",
    "ExprCondPair", "Max", "Min", "Mod",
})
_POW_FUNCTIONS = frozenset({"Pow", "PowByNatural", "FloatPow"})
_GUARD_METHODS = frozenset({"size", "stride", "storage_offset", "dim", "numel"})
_GUARD_FUNCTIONS = frozenset({"IsNonOverlappingAndDenseIndicator",
                              "cast_symbool_to_symint_guardless"})
_GUARD_MODULE_FUNCTIONS = {
    "math": frozenset({"ceil", "floor", "trunc", "sqrt"}),
    "torch": frozenset({"sym_max", "sym_min", "sym_float", "sym_int", "sym_not", "sym_ite",
                        "sym_sqrt"}),
}
_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
_EXPRESSION_NODES = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.Constant, ast.Name,
    ast.Call, ast.keyword, ast.Load, ast.USub, ast.UAdd, ast.Not, ast.And, ast.Or, ast.Eq,
    ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, *_ARITHMETIC,
)


def _sympy_functions() -> frozenset[str]:
    """Names of torch's sympy functions (``FloorDiv``, ``Mod``, ...) that expressions may call."""
    try:
        import sympy
        import torch.utils._sympy.functions as functions
    except ImportError:  # pragma: no cover - sympy comes with torch
        return _SYMPY_CORE_FUNCTIONS
    names = {name for name, obj in vars(functions).items()
             if not name.startswith("_") and isinstance(obj, type)
             and issubclass(obj, sympy.Basic)}
    return _SYMPY_CORE_FUNCTIONS | names


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _refuse(path: Path, what: str) -> TaggerFileError:
    return TaggerFileError(path, f"refusing to load: {what}; {NOT_CODE}")


# ---------------------------------------------------------------------------- the zip
def read_archive(path: Path) -> dict[str, bytes]:
    """The records of the ``.pt2`` zip at ``path``, keyed by name below its root folder.

    Raises :class:`~lloca_hep.tagger.TaggerFileError` for an empty, truncated, corrupted or
    oversized file, or one whose record names are not all ``ROOT/relative/name``.
    """
    if path.stat().st_size == 0:
        raise TaggerFileError(path, "file is empty; not a readable torch.export archive")
    unreadable = "not a readable torch.export archive (truncated, corrupted or not a .pt2 file)"
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            _check_layout(path, infos)
            records: dict[str, bytes] = {}
            for info in infos:
                records[info.filename.split("/", 1)[1]] = archive.read(info)
    except TaggerFileError:
        raise
    except Exception as exc:  # BadZipFile, zlib.error, EOFError, OSError, NotImplementedError
        raise TaggerFileError(path, f"{unreadable}: {_first_line(exc)}") from exc
    return records


def _check_layout(path: Path, infos: list[zipfile.ZipInfo]) -> None:
    if not infos:
        raise TaggerFileError(path, "not a readable torch.export archive: the zip is empty")
    if len(infos) > MAX_ARCHIVE_RECORDS:
        raise TaggerFileError(
            path, f"archive holds {len(infos)} records, more than {MAX_ARCHIVE_RECORDS}")
    total = sum(info.file_size for info in infos)
    if total > MAX_ARCHIVE_BYTES:
        raise TaggerFileError(
            path, f"archive unpacks to {total} bytes, more than the {MAX_ARCHIVE_BYTES} a "
            "tagger may hold")
    roots = set()
    seen = set()
    for info in infos:
        name = info.filename
        if name in seen:
            raise _refuse(path, f"record {name!r} appears twice in the archive")
        seen.add(name)
        if info.flag_bits & 0x1:
            raise TaggerFileError(path, f"record {name!r} is encrypted")
        root, _, rel = name.partition("/")
        parts = rel.split("/")
        if (not root or not rel or _CONTROL_CHARS.search(name) or "\\" in name
                or any(p in ("", ".", "..") for p in parts) or root in (".", "..")):
            raise _refuse(path, f"record name {name!r} is not ROOT/relative/name")
        roots.add(root)
    if len(roots) != 1:
        raise _refuse(path, f"records lie under {len(roots)} root folders, not one "
                      f"({sorted(roots)[:4]})")


def rebuilt_archive(records: dict[str, bytes], root: str = "archive") -> io.BytesIO:
    """A fresh uncompressed zip holding exactly ``records`` under ``root/``, for torch to read."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in records.items():
            archive.writestr(f"{root}/{name}", data)
    buffer.seek(0)
    return buffer


# ---------------------------------------------------------------------------- the records
def check_archive(path: Path, records: dict[str, bytes]) -> None:
    """Refuse (:class:`~lloca_hep.tagger.TaggerFileError`) an archive that could run code.

    ``records``: from :func:`read_archive`. See the module docstring for what is checked.
    """
    fmt = _text(path, records, ARCHIVE_FORMAT_RECORD)
    if fmt != ARCHIVE_FORMAT_VALUE:
        raise TaggerFileError(path, f"not a torch.export archive ({ARCHIVE_FORMAT_RECORD} "
                              f"is {fmt[:20]!r}, expected {ARCHIVE_FORMAT_VALUE!r})")
    for required in (MODEL_RECORD, WEIGHTS_CONFIG_RECORD, CONSTANTS_CONFIG_RECORD,
                     SAMPLE_INPUTS_RECORD, ARCHIVE_VERSION_RECORD):
        if required not in records:
            raise TaggerFileError(
                path, f"not a complete torch.export archive of one program: no {required}")
    raw: set[str] = set()
    pickled: set[str] = set()
    for config, directory, prefix in ((WEIGHTS_CONFIG_RECORD, WEIGHTS_DIR, WEIGHT_PREFIX),
                                      (CONSTANTS_CONFIG_RECORD, CONSTANTS_DIR,
                                       TENSOR_CONSTANT_PREFIX)):
        _check_payload_config(path, records, config, directory, prefix, raw, pickled)
    known = FIXED_RECORDS | {MODEL_RECORD, WEIGHTS_CONFIG_RECORD, CONSTANTS_CONFIG_RECORD,
                             SAMPLE_INPUTS_RECORD} | raw | pickled
    for name in records:
        if name in known:
            continue
        extra = name[len(EXTRA_DIR):] if name.startswith(EXTRA_DIR) else ""
        if not extra or "/" in extra or not _RECORD_NAME.match(extra):
            raise _refuse(path, f"unexpected record {name!r} (lloca-hep archives hold one "
                          "exported program: no AOTInductor libraries, legacy weight "
                          "pickles or other programs)")
    for name in sorted(pickled | {SAMPLE_INPUTS_RECORD}):
        _load_weights_only(path, name, records[name])
    for name, data in records.items():  # any other pickle, wherever it hides
        if name not in raw and name not in pickled and name != SAMPLE_INPUTS_RECORD and (
                data.startswith(_PICKLE_START) or data.startswith(_ZIP_START)):
            _load_weights_only(path, name, data)
    _check_program(path, MODEL_RECORD, _json(path, records, MODEL_RECORD))


def _text(path: Path, records: dict[str, bytes], name: str) -> str:
    if name not in records:
        raise TaggerFileError(path, f"not a torch.export archive: no {name} record")
    try:
        return records[name].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TaggerFileError(path, f"record {name!r} is not UTF-8 text") from exc


def _json(path: Path, records: dict[str, bytes], name: str) -> Any:
    text = _text(path, records, name)
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise TaggerFileError(path, f"record {name!r} is not valid JSON ({_first_line(exc)})"
                              ) from exc
    for where, value in _strings(doc):
        if _CONTROL_CHARS.search(value):
            raise _refuse(path, f"{name} holds control characters in {where!r}")
    return doc


def _strings(doc: Any) -> Iterator[tuple[str, str]]:
    """Every string (dict keys too) in a JSON document, with the key it sits under."""
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack:
        key, value = stack.pop()
        if isinstance(value, str):
            yield key, value
        elif isinstance(value, dict):
            for k, v in value.items():
                yield key, str(k)
                stack.append((str(k), v))
        elif isinstance(value, list):
            stack.extend((key, v) for v in value)


def _check_payload_config(path: Path, records: dict[str, bytes], config: str, directory: str,
                          prefix: str, raw: set[str], pickled: set[str]) -> None:
    doc = _json(path, records, config)
    entries = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(entries, dict):
        raise TaggerFileError(path, f"{config} has no 'config' mapping")
    for fqn, meta in entries.items():
        if not _NAME.match(fqn):
            raise _refuse(path, f"{config} names {fqn!r}, not a dotted identifier")
        if not isinstance(meta, dict) or not isinstance(meta.get("path_name"), str):
            raise TaggerFileError(path, f"{config}: entry {fqn!r} has no path_name")
        file = meta["path_name"]
        if not file.startswith(prefix) or not _IDENTIFIER.match(file):
            raise _refuse(path, f"{config}: {fqn!r} is stored as {file!r}, not a plain tensor "
                          f"record ({prefix}N); Python and TorchScript objects are refused")
        record = directory + file
        if record not in records:
            raise TaggerFileError(path, f"{config}: record {record!r} of {fqn!r} is missing")
        (pickled if meta.get("use_pickle") else raw).add(record)
    if raw & pickled:
        shared = sorted(raw & pickled)[0]
        raise _refuse(path, f"record {shared!r} is listed both as raw bytes and as a pickle")


def _load_weights_only(path: Path, name: str, data: bytes) -> Any:
    """``torch.load(weights_only=True)`` of one record; a refusal names the record."""
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _UNSUPPORTED_GLOBAL.search(str(exc))
        detail = f" (it would call {found.group(1)})" if found else ""
        raise _refuse(path, f"record {name!r} holds pickled objects other than tensors{detail}"
                      ) from exc
    except Exception as exc:
        raise TaggerFileError(
            path, f"record {name!r} is not a readable torch.save archive: {_first_line(exc)}"
        ) from exc


# ---------------------------------------------------------------------------- the program
def _check_program(path: Path, record: str, doc: Any) -> None:
    """Walk the serialized program: operators, expressions, guards, tree specs, names."""
    if not isinstance(doc, dict):
        raise TaggerFileError(path, f"{record} is not a JSON object")
    sympy_functions = _sympy_functions()
    stack: list[tuple[str, Any, Any]] = [("", doc, None)]
    while stack:
        key, value, parent = stack.pop()
        if isinstance(value, dict):
            if key in ("tensor_values", "sym_int_values", "sym_bool_values",
                       "sym_float_values", "range_constraints"):
                for name in value:
                    _check_name(path, record, key, name)
            if key == "custom_obj_values" and value:
                raise _refuse(path, f"{record} uses custom (TorchScript) objects")
            stack.extend((str(k), v, value) for k, v in value.items())
            continue
        if isinstance(value, list):
            if key == "guards_code":
                for guard in value:
                    _check_guard(path, record, guard)
                continue
            stack.extend((key, v, parent) for v in value)
            continue
        if not isinstance(value, str):
            continue
        if key == "target" and isinstance(parent, dict) and "inputs" in parent:
            _check_target(path, record, value)
        elif key == "expr_str":
            _check_sym_expr(path, record, value, sympy_functions)
        elif key in ("in_spec", "out_spec"):
            _check_treespec(path, record, key, value)
        elif key in ("name", "fqn", "forward_arg_names") or key.endswith("_name"):
            if not (key == "fqn" and value == ""):
                _check_name(path, record, key, value)


def _check_name(path: Path, record: str, key: str, name: str) -> None:
    if not _NAME.match(name):
        raise _refuse(path, f"{record}: {key} {name[:80]!r} is not a dotted identifier "
                      "(names end up in generated Python code)")


def _check_target(path: Path, record: str, target: str) -> None:
    aten = _ATEN_TARGET.match(target)
    if aten and aten.group(1) not in DENIED_ATEN_OPS:
        return
    if target in _OTHER_TARGETS:
        return
    raise _refuse(path, f"{record}: the graph calls {target[:80]!r}, which is not an allowed "
                  "ATen tensor operator")


def _parse_expression(path: Path, record: str, kind: str, text: Any) -> ast.Expression:
    if not isinstance(text, str) or len(text) > MAX_EXPRESSION_CHARS:
        raise _refuse(path, f"{record}: a {kind} is not a short string")
    try:
        return ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise _refuse(path, f"{record}: {kind} {text[:80]!r} is not a Python expression") from exc


def _int_literal(node: ast.AST) -> int | None:
    """The value of ``5``, ``-5`` or ``Integer(5)``; None for anything else."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _int_literal(node.operand)
        return None if inner is None else -inner
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "Integer" and len(node.args) == 1):
        return _int_literal(node.args[0])
    return None


def _check_literals(path: Path, record: str, kind: str, text: str, tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, str) and not _IDENTIFIER.match(value):
                raise _refuse(path, f"{record}: {kind} {text[:80]!r} holds the string "
                              f"{value[:40]!r}")
            if type(value) is int and abs(value) > MAX_INT_LITERAL:
                raise _refuse(path, f"{record}: {kind} {text[:80]!r} holds a huge integer")
            if not isinstance(value, (str, int, float, bool)):
                raise _refuse(path, f"{record}: {kind} {text[:80]!r} holds the constant "
                              f"{type(value).__name__}")
        elif isinstance(node, ast.Name) and node.id.startswith("_"):
            raise _refuse(path, f"{record}: {kind} {text[:80]!r} uses the name {node.id!r}")


def _check_sym_expr(path: Path, record: str, text: str, functions: frozenset[str]) -> None:
    """A symbolic shape expression (``sympy.sympify`` evaluates it): sympy calls only."""
    kind = "symbolic expression"
    tree = _parse_expression(path, record, kind, text)
    _check_literals(path, record, kind, text, tree)
    for node in ast.walk(tree):
        if not isinstance(node, _EXPRESSION_NODES):
            raise _refuse(path, f"{record}: {kind} {text[:80]!r} uses "
                          f"{type(node).__name__} syntax")
        exponent: ast.AST | None = None
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in functions:
                raise _refuse(path, f"{record}: {kind} {text[:80]!r} calls something other "
                              "than a sympy function")
            if node.func.id in _POW_FUNCTIONS and len(node.args) == 2:
                exponent = node.args[1]
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            exponent = node.right
        if exponent is not None:
            value = _int_literal(exponent)
            if value is not None and abs(value) > MAX_LITERAL_EXPONENT:
                raise _refuse(path, f"{record}: {kind} {text[:80]!r} raises to the power "
                              f"{value}")


def _check_guard(path: Path, record: str, text: Any) -> None:
    """A shape guard (``exec``\\ d by torch): comparisons of ``L['input'].size()[i]`` only."""
    kind = "guard"
    tree = _parse_expression(path, record, kind, text)
    _check_literals(path, record, kind, str(text), tree)
    allowed = (*_EXPRESSION_NODES, ast.Subscript, ast.Attribute)
    for node in ast.walk(tree):
        if not isinstance(node, allowed) or isinstance(node, ast.keyword):
            raise _refuse(path, f"{record}: {kind} {str(text)[:80]!r} uses "
                          f"{type(node).__name__} syntax")
        if isinstance(node, ast.Name) and node.id not in ("L", *_GUARD_MODULE_FUNCTIONS,
                                                          *_GUARD_FUNCTIONS):
            raise _refuse(path, f"{record}: {kind} {str(text)[:80]!r} uses {node.id!r}")
        if isinstance(node, ast.Subscript) and not (
                (isinstance(node.value, ast.Name) and node.value.id == "L"
                 and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str))
                or (not isinstance(node.value, ast.Name) and isinstance(node.slice, ast.Constant)
                    and type(node.slice.value) is int)):
            raise _refuse(path, f"{record}: {kind} {str(text)[:80]!r} indexes something other "
                          "than an input's sizes")
        if isinstance(node, ast.Attribute) and not _guard_attribute_ok(node):
            raise _refuse(path, f"{record}: {kind} {str(text)[:80]!r} uses .{node.attr}")
        if isinstance(node, ast.Call) and not (
                (isinstance(node.func, ast.Name) and node.func.id in _GUARD_FUNCTIONS)
                or isinstance(node.func, ast.Attribute)):
            raise _refuse(path, f"{record}: {kind} {str(text)[:80]!r} calls something other "
                          "than a size method")


def _guard_attribute_ok(node: ast.Attribute) -> bool:
    if isinstance(node.value, ast.Name) and node.value.id in _GUARD_MODULE_FUNCTIONS:
        return node.attr in _GUARD_MODULE_FUNCTIONS[node.value.id]
    return (node.attr in _GUARD_METHODS and isinstance(node.value, ast.Subscript)
            and isinstance(node.value.value, ast.Name) and node.value.value.id == "L")


def _check_treespec(path: Path, record: str, key: str, text: str) -> None:
    """A pytree spec: only container types; contexts are plain JSON without ``__enum__``
    objects (whose loader imports a module named in the file)."""
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise TaggerFileError(path, f"{record}: {key} is not valid JSON") from exc
    if not (isinstance(doc, list) and len(doc) == 2):
        raise TaggerFileError(path, f"{record}: {key} is not a tree spec")
    stack = [doc[1]]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict) or node.get("type") not in _TREESPEC_TYPES:
            what = node.get("type") if isinstance(node, dict) else type(node).__name__
            raise _refuse(path, f"{record}: {key} holds a {str(what)[:60]!r} node")
        context = node.get("context")
        if context is not None:
            try:
                parsed = json.loads(context) if isinstance(context, str) else context
            except (json.JSONDecodeError, RecursionError) as exc:
                raise TaggerFileError(path, f"{record}: {key} context is not JSON") from exc
            for value in _json_values(parsed):
                if isinstance(value, dict):
                    raise _refuse(path, f"{record}: {key} context holds an object")
        children = node.get("children_spec") or []
        if not isinstance(children, list):
            raise TaggerFileError(path, f"{record}: {key} children are not a list")
        stack.extend(children)


def _json_values(doc: Any) -> Iterator[Any]:
    stack = [doc]
    while stack:
        value = stack.pop()
        yield value
        if isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())


def vet_archive(path: str | os.PathLike[str]) -> dict[str, bytes]:
    """:func:`read_archive` + :func:`check_archive`: the vetted records of ``path``."""
    path = Path(path)
    records = read_archive(path)
    check_archive(path, records)
    return records
