"""ONNX Runtime as a scoring back end: loading ``.onnx`` taggers written by
:func:`lloca_hep.tagger.onnx_export.export_onnx`, safely.

>>> tagger = lloca_hep.load_tagger("top.onnx")        # dispatched here on the suffix
>>> scores = tagger.score(jets)                       # same preprocessing as for .pt taggers

The file is self-describing: its ``metadata_props`` (:data:`META_KEYS`) hold the tagger's JSON
header (model name and config, ``max_constituents``, preprocessing, input set, classes), from
which :class:`OnnxTagger` is rebuilt; scoring runs one :class:`onnxruntime.InferenceSession` on
the CPU provider. Graph inputs ``p4`` float64 ``(B, N, 4)`` (E, px, py, pz) GeV, ``mask`` bool
``(B, N)``, ``scalars`` float32 ``(B, N, S)`` (taggers with features only); output
``probabilities`` float32 ``(B, C)``.

Loading a file from a stranger never runs its code. ONNX Runtime executes no Python, but an ONNX
file can name custom-operator domains (code from shared libraries) and external data files
(reads of arbitrary paths), so :func:`read_onnx` refuses, before any session is built:

* anything but the default ``ai.onnx`` operator set (opset imports, nodes in the graph and in
  every subgraph), and model-local functions;
* tensors with external data (initializers, sparse initializers, ``Constant`` attributes);
* files that do not parse, fail :func:`onnx.checker.check_model`, lack the lloca-hep metadata
  or whose metadata is malformed or disagrees with the graph's inputs and outputs.

The session is built from the vetted bytes already read (never from the path again).
Every problem is a :class:`~lloca_hep.tagger.TaggerFileError` naming the file. The ``onnx`` extra
(``pip install "lloca-hep[onnx]"``) provides ``onnx`` and ``onnxruntime``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from lloca_hep._files import atomic_output

from .format import MAX_CLASSES, TaggerFileError, header_inputs, validate_header
from .scoring import DEFAULT_BATCH_SIZE, Tagger, resolve_device

__all__ = [
    "META_KEYS",
    "ONNX_FORMAT",
    "ONNX_SUFFIX",
    "OnnxTagger",
    "load_onnx",
    "read_onnx",
    "read_onnx_header",
    "require_onnx",
]

log = logging.getLogger(__name__)

#: Suffix of ONNX taggers (``load_tagger`` dispatches on it).
ONNX_SUFFIX = ".onnx"
#: Value of the ``lloca_hep_format`` metadata entry: the layout of the metadata, version 1.
ONNX_FORMAT = "lloca-hep-onnx/1"
#: Graph input and output names.
P4_INPUT, MASK_INPUT, SCALARS_INPUT, OUTPUT_NAME = "p4", "mask", "scalars", "probabilities"
#: ``metadata_props`` keys written by the exporter; every one is required on loading.
META_KEYS = ("lloca_hep_format", "lloca_hep_version", "model_name", "max_constituents",
             "class_names", "inputs", "preprocessing", "lloca_hep_header")
#: Operator-set domains a tagger file may use: the default ONNX domain only.
ALLOWED_DOMAINS = ("", "ai.onnx")
#: Largest ONNX tagger file read, bytes (protobuf itself stops at 2 GiB).
MAX_ONNX_FILE_BYTES = 2**31 - 1
#: Longest piece of an onnx / onnxruntime message quoted in a TaggerFileError.
MESSAGE_CHARS = 200
#: ONNX Runtime's intra-op threads do not busy-wait between operators: on shared cores spinning
#: threads steal the time of the others (shipped tagger, 2 threads, loaded 2-core machine: 377
#: jets/s spinning, 615 not; 1 thread unchanged).
ALLOW_SPINNING = "0"
#: Extra that installs the ONNX packages, as told to the user.
ONNX_EXTRA = 'pip install "lloca-hep[onnx]"'


def require_onnx() -> tuple[Any, Any]:
    """``(onnx, onnxruntime)``; an :class:`ImportError` saying how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ImportError(
            f"ONNX taggers need the packages onnx and onnxruntime ({exc}): {ONNX_EXTRA}"
        ) from exc
    return onnx, onnxruntime


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= MESSAGE_CHARS else line[:MESSAGE_CHARS] + " ..."


def _graphs(graph: Any) -> Iterator[Any]:
    """``graph`` and every subgraph of its nodes' attributes (If/Loop/Scan bodies), recursively."""
    stack = [graph]
    while stack:
        g = stack.pop()
        yield g
        for node in g.node:
            for attr in node.attribute:
                if attr.HasField("g"):
                    stack.append(attr.g)
                stack.extend(attr.graphs)


def _tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of ``graph`` (initializers, sparse parts, node attributes)."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sparse in [attr.sparse_tensor, *attr.sparse_tensors]:
                yield sparse.values
                yield sparse.indices


def _check_graph(path: Path, model: Any) -> None:
    """Refuse custom domains, local functions and external data (see the module docstring)."""
    from onnx import TensorProto

    foreign = sorted({o.domain for o in model.opset_import if o.domain not in ALLOWED_DOMAINS})
    if foreign:
        raise TaggerFileError(path, f"uses the custom operator domain(s) {foreign}: lloca-hep "
                              "taggers use the default ONNX operators only")
    if len(model.functions):
        raise TaggerFileError(path, f"defines {len(model.functions)} local function(s): "
                              "lloca-hep taggers use the default ONNX operators only")
    for graph in _graphs(model.graph):
        for node in graph.node:
            if node.domain not in ALLOWED_DOMAINS:
                raise TaggerFileError(path, f"node {node.name!r} runs {node.op_type!r} of the "
                                      f"custom domain {node.domain!r}; refusing to load it")
        for tensor in _tensors(graph):
            if tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data):
                raise TaggerFileError(path, f"tensor {tensor.name!r} refers to external data "
                                      "(a file outside the model); refusing to read it")


def _metadata(path: Path, model: Any) -> dict[str, str]:
    props = {p.key: p.value for p in model.metadata_props}
    missing = [k for k in META_KEYS if k not in props]
    if len(missing) == len(META_KEYS):
        raise TaggerFileError(path, "an ONNX model without lloca-hep metadata: not a tagger "
                              "written by lloca-hep export")
    if missing:
        raise TaggerFileError(path, f"the ONNX metadata lacks {missing}")
    if props["lloca_hep_format"] != ONNX_FORMAT:
        raise TaggerFileError(path, f"lloca_hep_format is {props['lloca_hep_format']!r}, "
                              f"expected {ONNX_FORMAT!r} (written by a newer lloca-hep?)")
    return props


def _json_entry(path: Path, props: dict[str, str], key: str) -> Any:
    try:
        return json.loads(props[key])
    except (json.JSONDecodeError, RecursionError) as exc:
        raise TaggerFileError(path, f"ONNX metadata entry {key!r} is not valid JSON") from exc


def _check_metadata(path: Path, props: dict[str, str]) -> dict[str, Any]:
    """The checked tagger header of the metadata; the other entries must agree with it."""
    header = validate_header(path, props["lloca_hep_header"], where="ONNX metadata header")
    classes = _json_entry(path, props, "class_names")
    if (not isinstance(classes, list) or not 2 <= len(classes) <= MAX_CLASSES
            or classes != header.get("classes", classes)):
        raise TaggerFileError(path, f"ONNX metadata class_names {classes!r} are malformed or "
                              "disagree with the header")
    if props["max_constituents"] != str(header["max_constituents"]):
        raise TaggerFileError(path, "ONNX metadata max_constituents disagrees with the header")
    if props["model_name"] != header["model_name"]:
        raise TaggerFileError(path, "ONNX metadata model_name disagrees with the header")
    for key in ("inputs", "preprocessing"):
        if not isinstance(_json_entry(path, props, key), dict):
            raise TaggerFileError(path, f"ONNX metadata entry {key!r} is not a JSON object")
    header["classes"] = classes
    return header


def _value_info(v: Any) -> tuple[int, list[int | str]]:
    t = v.type.tensor_type
    return t.elem_type, [d.dim_value if d.HasField("dim_value") else d.dim_param
                         for d in t.shape.dim]


def _check_signature(path: Path, model: Any, header: dict[str, Any]) -> None:
    """The graph's inputs and output must be those the header describes."""
    from onnx import TensorProto

    inputs, _ = header_inputs(path, header)
    n_scalars = 0 if inputs is None else len(inputs)
    n_classes = len(header["classes"])
    want = {P4_INPUT: (TensorProto.DOUBLE, 3, 4), MASK_INPUT: (TensorProto.BOOL, 2, None)}
    if n_scalars:
        want[SCALARS_INPUT] = (TensorProto.FLOAT, 3, n_scalars)
    got = {v.name: _value_info(v) for v in model.graph.input}
    outputs = {v.name: _value_info(v) for v in model.graph.output}
    expected = {OUTPUT_NAME: (TensorProto.FLOAT, 2, n_classes)}
    for what, table, have in (("input", want, got), ("output", expected, outputs)):
        if sorted(table) != sorted(have):
            raise TaggerFileError(path, f"graph {what}s are {sorted(have)}, expected "
                                  f"{sorted(table)}")
        for name, (dtype, rank, last) in table.items():
            elem, dims = have[name]
            if elem != dtype or len(dims) != rank or (last is not None and dims[-1] != last):
                raise TaggerFileError(
                    path, f"graph {what} {name!r} is {TensorProto.DataType.Name(elem)} "
                    f"{dims}, expected {TensorProto.DataType.Name(dtype)} of rank {rank}"
                    + (f" ending in {last}" if last is not None else ""))


def read_onnx(path: str | os.PathLike[str]) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    """``(file bytes, checked tagger header, ONNX facts)`` of an ONNX tagger file, vetted as the
    module docstring says; ``ONNX facts``: ``opset``, ``ir_version``, ``producer``.

    Raises :class:`FileNotFoundError` or :class:`~lloca_hep.tagger.TaggerFileError`.
    """
    onnx, _ = require_onnx()
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such ONNX tagger file")
    if path.is_dir():
        raise TaggerFileError(path, "is a directory, not an ONNX tagger")
    size = path.stat().st_size
    if size == 0:
        raise TaggerFileError(path, "file is empty")
    if size > MAX_ONNX_FILE_BYTES:
        raise TaggerFileError(path, f"is {size} bytes, above the ONNX limit of 2 GiB")
    data = path.read_bytes()
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise TaggerFileError(path, "not a readable ONNX model (truncated or corrupted): "
                              f"{_one_line(exc)}") from exc
    if not model.HasField("graph"):
        raise TaggerFileError(path, "not a readable ONNX model (truncated or corrupted): no graph")
    _check_graph(path, model)
    props = _metadata(path, model)
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        raise TaggerFileError(path, f"not a valid ONNX model (truncated or corrupted): "
                              f"{_one_line(exc)}") from exc
    header = _check_metadata(path, props)
    _check_signature(path, model, header)
    opset = next((o.version for o in model.opset_import if o.domain in ALLOWED_DOMAINS), None)
    facts = {"opset": opset, "ir_version": int(model.ir_version),
             "producer": f"{model.producer_name} {model.producer_version}".strip()}
    return data, header, facts


def read_onnx_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The tagger header stored in an ONNX tagger's metadata (the file is vetted; no session
    is built)."""
    return read_onnx(path)[1]


class _OnnxModule(torch.nn.Module):
    """``model(p4, mask, scalars=None) -> log-probabilities`` float64 ``(B, C)`` through an
    ONNX Runtime session: :class:`~lloca_hep.tagger.Tagger`'s softmax of them gives back the
    session's probabilities (to float32 rounding)."""

    session: Any
    _config: dict[str, Any]

    def __init__(self, session: Any, config: dict[str, Any]) -> None:
        super().__init__()
        self.__dict__["session"] = session
        self.__dict__["_config"] = dict(config)

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def forward(self, p4: torch.Tensor, mask: torch.Tensor,
                scalars: torch.Tensor | None = None) -> torch.Tensor:
        feed = {P4_INPUT: p4.detach().cpu().to(torch.float64).numpy(),
                MASK_INPUT: mask.detach().cpu().to(torch.bool).numpy()}
        if scalars is not None:
            feed[SCALARS_INPUT] = scalars.detach().cpu().to(torch.float32).numpy()
        (probs,) = self.session.run([OUTPUT_NAME], feed)
        with np.errstate(divide="ignore"):
            return torch.from_numpy(np.log(np.asarray(probs, dtype=np.float64)))


def _session(data: bytes, threads: int, path: Path) -> Any:
    _, ort = require_onnx()
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: no optimizer chatter on stderr
    options.add_session_config_entry("session.intra_op.allow_spinning", ALLOW_SPINNING)
    try:
        return ort.InferenceSession(data, sess_options=options,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise TaggerFileError(path, f"ONNX Runtime cannot run this model: {_one_line(exc)}"
                              ) from exc


class OnnxTagger(Tagger):
    """A :class:`~lloca_hep.tagger.Tagger` scored by ONNX Runtime (CPU provider).

    Same interface: :meth:`score` (same preprocessing,
    :func:`lloca_hep.preprocessing.inputs.network_inputs`), :meth:`score_padded`,
    :attr:`max_constituents`, :attr:`inputs`, :attr:`class_names`, :attr:`is_multiclass`,
    :meth:`header`; :meth:`save` writes the ONNX file again. ``threads``: ONNX Runtime's
    intra-op threads (None: ``torch.get_num_threads()``).
    """

    #: ONNX Runtime has its own intra-op pool: one batch at a time.
    parallel_batches = False

    def __init__(self, data: bytes, header: dict[str, Any], *, source: str | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE, threads: int | None = None,
                 onnx_info: dict[str, Any] | None = None) -> None:
        path = Path(source or "ONNX tagger")
        self.threads = int(threads or torch.get_num_threads())
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        preprocessing = header.get("preprocessing") or {}
        inputs, classes = header_inputs(path, header)
        try:
            super().__init__(
                _OnnxModule(_session(data, self.threads, path), header.get("config") or {}),
                header["model_name"], header["max_constituents"],
                metadata=header.get("metadata") or {}, device="cpu", batch_size=batch_size,
                sort_by_pt=bool(preprocessing.get("sort_by_pt", True)), inputs=inputs,
                classes=classes)
        except ValueError as exc:
            if isinstance(exc, TaggerFileError):
                raise
            raise TaggerFileError(path, f"inconsistent header: {exc}") from exc
        self._data = data
        self.onnx_info: dict[str, Any] = dict(onnx_info or {})
        self.source = source

    @property
    def session(self) -> Any:
        """The :class:`onnxruntime.InferenceSession`."""
        return cast(_OnnxModule, self.model).session

    def __repr__(self) -> str:
        return (f"OnnxTagger(model={self.model_name!r}, max_constituents="
                f"{self.max_constituents}, threads={self.threads}, source={self.source!r})")

    def to(self, device: str | torch.device) -> OnnxTagger:
        """Only the CPU: ONNX taggers run on ONNX Runtime's CPU provider."""
        if resolve_device(device).type != "cpu":
            raise ValueError(f"an ONNX tagger runs on the CPU only, not {str(device)!r}")
        return self

    def header(self) -> dict[str, Any]:
        header = super().header()
        header["onnx"] = dict(self.onnx_info)
        return header

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the ONNX file (the bytes it was loaded from) to ``path`` (``.onnx``),
        atomically."""
        path = Path(path)
        if path.suffix != ONNX_SUFFIX:
            raise ValueError(f"{path}: an ONNX tagger is saved as a {ONNX_SUFFIX} file")
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path, suffix=ONNX_SUFFIX) as tmp:
            tmp.write_bytes(self._data)
        return path


def load_onnx(path: str | os.PathLike[str], *, device: str | torch.device | None = "cpu",
              batch_size: int = DEFAULT_BATCH_SIZE, threads: int | None = None) -> OnnxTagger:
    """Load an ONNX tagger written by :func:`~lloca_hep.tagger.onnx_export.export_onnx`.

    ``device``: ``"cpu"``, ``"auto"`` or None (all the CPU provider); anything else is a
    ValueError. ``threads``: intra-op threads (None: ``torch.get_num_threads()``). Raises
    :class:`FileNotFoundError` or :class:`~lloca_hep.tagger.TaggerFileError`.
    """
    if device not in (None, "auto") and resolve_device(device).type != "cpu":
        raise ValueError(f"an ONNX tagger runs on the CPU only, not {str(device)!r} "
                         "(use a .pt or .pt2 tagger for GPUs)")
    path = Path(path)
    data, header, facts = read_onnx(path)
    tagger = OnnxTagger(data, header, source=str(path), batch_size=batch_size,
                        threads=threads, onnx_info=facts)
    log.debug("loaded %r from %s", tagger, path)
    return tagger
