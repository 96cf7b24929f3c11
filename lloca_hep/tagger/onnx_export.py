"""ONNX export of taggers (``.onnx``), for ONNX Runtime, CMSSW and Triton.

>>> export_onnx(lloca_hep.load_tagger(), "top.onnx")          # doctest: +SKIP

:func:`export_onnx` uses the dynamo exporter (``torch.onnx.export(..., dynamo=True)``, which
goes through :func:`torch.export.export`; the TorchScript exporter is not used). The model is
wrapped so that the graph computes the probabilities:

* inputs ``p4`` float64 ``(B, N, 4)`` (E, px, py, pz) GeV, lab frame, hardest constituents
  first, zero-padded; ``mask`` bool ``(B, N)``; for taggers with particle features also
  ``scalars`` float32 ``(B, N, S)`` (the transformed features, columns ``tagger.inputs.names``).
  ``B`` and ``N`` are dynamic (``batch``, ``constituents``; any value >= 1).
* output ``probabilities`` float32 ``(B, C)``: ``C = 2`` for binary taggers (column 0 is
  ``1 - p``, column 1 the signal probability ``p``), the softmax over the classes otherwise.
* ``metadata_props``: see :data:`lloca_hep.tagger.onnx_backend.META_KEYS` (the tagger header
  JSON, ``max_constituents``, ``class_names``, the input set, the preprocessing).

Opset :data:`DEFAULT_OPSET` (ai.onnx 18, ONNX Runtime >= 1.14); the frames stay float64 inside
the graph. Operators used by the registered models (LLoCaTransformer, LLoCaGraphNet,
plain_transformer, JetMassTagger; all run by ONNX Runtime's CPU provider in the dtypes the graph
uses, which the tests check): Abs, Add, And, ArgMin, Atan (float32 only, see below), Cast, Clip,
Concat, Constant, ConstantOfShape, Cos, Div, Einsum, Equal, Erf, Exp, Expand, Floor, Gather,
GatherElements, Gemm, Greater, Identity, IsNaN, LayerNormalization, Less, Log, MatMul, Max, Min,
Mul, Neg, Not, Or, Range, ReduceL2, ReduceMax, ReduceSum, Reshape, ScatterElements, ScatterND,
Shape, Sigmoid, Sign, Sin, Slice, Softmax, Split, Sqrt, Squeeze, Sub, TopK, Transpose, Unsqueeze,
Where.

Equivalent forms, used only while exporting (the ``custom_translation_table`` of the exporter:
the torch models and their numerics are unchanged):

* ``hypot(x, y)`` (``prims.hypot`` has no ONNX translation): ``m sqrt(1 + (min/m)^2)`` with
  ``m = max(|x|, |y|)``, no overflow;
* ``asinh`` (no float64 kernel in ONNX Runtime): ``sign(x) log(|x| + sqrt(x^2 + 1))``, with the
  series ``x - x^3/6 + 3x^5/40`` for ``|x| < 1e-3`` and ``log 2|x|`` above ``1e8``;
* ``atan2`` (ONNX has no Atan2, ONNX Runtime no float64 Atan): a float32 ``atan`` with the
  quadrant rules, refined by one exact rotation step in float64,
  ``phi = phi0 + (y cos phi0 - x sin phi0) / (x cos phi0 + y sin phi0)``, which is accurate to
  float64 rounding (the neglected term is ``delta^3/3`` with ``|delta| < 1e-7``);
* ``scalar_tensor`` (constants such as ``1.001`` or ``1e-10`` inside the frame code): the
  default translation makes a float32 constant and casts it, so a float64 ``1.001`` became
  ``1.00100004673``; here the constant is made in its own dtype;
* ``leaky_relu`` (the float64 frames net): ONNX's LeakyRelu takes its slope as a float32
  attribute (0.1 -> 0.10000000149); here ``where(x > 0, x, slope * x)`` in the input's dtype;
* ``slice_scatter`` with step 1 (``t[..., a:b] = v`` in the attention's frame transforms): a
  Concat of the kept slices around ``v`` instead of the default Transpose-ScatterND-Transpose,
  which took 40% of ONNX Runtime's time (exact either way).

The exporter's graph optimizer is not run (its rewrite rules changed one of 500 shipped-sample
scores by 7.6e-4); per-node stack traces are dropped and ``CastLike`` is replaced by ``Cast``.
Each agrees with torch to a few float64 ulps for finite inputs. Before writing, the file is
scored by ONNX Runtime on two batches of different shape and must reproduce the torch tagger's
probabilities within :data:`CHECK_ATOL`; the file is written atomically.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lloca_hep._defaults import DEFAULT_OPSET
from lloca_hep._files import atomic_output

from .export import EXAMPLE_BATCH, EXAMPLE_CONSTITUENTS, EXAMPLE_SEED, _example_inputs
from .onnx_backend import (
    MASK_INPUT,
    ONNX_FORMAT,
    ONNX_SUFFIX,
    OUTPUT_NAME,
    P4_INPUT,
    SCALARS_INPUT,
    _graphs,
    _session,
    require_onnx,
)
from .scoring import Tagger

__all__ = ["CHECK_ATOL", "DEFAULT_OPSET", "export_onnx", "onnx_metadata", "probability_module"]

log = logging.getLogger(__name__)

#: Largest |ONNX Runtime - torch| probability accepted by the check before writing.
CHECK_ATOL = 1e-5
#: Shapes (batch, constituents) of the example batches of that check.
CHECK_SHAPES = ((EXAMPLE_BATCH, EXAMPLE_CONSTITUENTS), (EXAMPLE_BATCH + 2, 2 * EXAMPLE_CONSTITUENTS + 1))
#: ONNX data type codes used by the translations (TensorProto.FLOAT, TensorProto.INT64).
ONNX_FLOAT, ONNX_INT64 = 1, 7
#: "To the end" in ONNX Slice bounds.
INT64_MAX = 2**63 - 1
#: Branch points of the float64 asinh: series below, ``log 2|x|`` above.
ASINH_SERIES_BELOW = 1e-3
ASINH_LOG_ABOVE = 1e8
#: Names of the dynamic dimensions in the ONNX graph.
BATCH_DIM, CONSTITUENTS_DIM = "batch", "constituents"
#: Warnings of torch.onnx / torch.export that say nothing about the result (filtered while
#: exporting only): (category, message regex).
HARMLESS_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    (UserWarning, r"# The axis name: .* will not be used"),
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    (DeprecationWarning, r".*(LeafSpec|treespec).*"),
)
#: Loggers that chatter during every export (torchvision registrations, optimizer passes).
QUIET_LOGGERS = ("torch.onnx", "onnx_ir", "onnxscript")


def probability_module(tagger: Tagger) -> torch.nn.Module:
    """``tagger.model`` wrapped to return probabilities float32 ``(B, C)`` (binary: columns
    ``1 - p``, ``p``; multi-class: the softmax), as the ONNX graph does."""
    return _Probabilities(tagger.model, len(tagger.inputs) > 0)


class _Probabilities(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, with_scalars: bool) -> None:
        super().__init__()
        self.model = model
        self.with_scalars = with_scalars

    def forward(self, p4: torch.Tensor, mask: torch.Tensor,
                scalars: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.model(p4, mask, scalars) if self.with_scalars else self.model(p4, mask)
        if logits.ndim == 2 and logits.shape[1] == 1:
            logits = logits[:, 0]
        if logits.ndim == 1:
            p = torch.sigmoid(logits)
            probs = torch.stack([1.0 - p, p], dim=1)
        else:
            probs = torch.softmax(logits, dim=1)
        return probs.to(torch.float32)


def _translation_table() -> dict[Any, Any]:
    """The equivalent forms of the module docstring, as onnxscript functions."""
    import onnxscript

    ir: Any = onnxscript.ir  # onnxscript's typed opsets are too strict for dtype-generic code
    op: Any = onnxscript.opset18

    def const(value: float, like: Any) -> Any:
        return op.Constant(value=ir.tensor(value, dtype=like.dtype))

    def hypot(x: Any, y: Any) -> Any:
        ax, ay = op.Abs(x), op.Abs(y)
        m = op.Max(ax, ay)
        safe = op.Where(op.Greater(m, const(0.0, x)), m, const(1.0, x))
        u = op.Div(op.Min(ax, ay), safe)
        return op.Mul(m, op.Sqrt(op.Add(const(1.0, x), op.Mul(u, u))))

    def asinh(x: Any) -> Any:
        a = op.Abs(x)
        a2 = op.Mul(a, a)
        mid = op.Log(op.Add(a, op.Sqrt(op.Add(a2, const(1.0, x)))))
        big = op.Add(op.Log(a), const(math.log(2.0), x))
        series = op.Mul(a, op.Add(const(1.0, x), op.Mul(
            a2, op.Add(const(-1.0 / 6.0, x), op.Mul(a2, const(3.0 / 40.0, x))))))
        r = op.Where(op.Greater(a, const(ASINH_LOG_ABOVE, x)), big,
                     op.Where(op.Less(a, const(ASINH_SERIES_BELOW, x)), series, mid))
        return op.Mul(op.Sign(x), r)

    def atan2(y: Any, x: Any) -> Any:
        zero, one, pi = const(0.0, x), const(1.0, x), const(math.pi, x)
        r = op.Max(op.Abs(x), op.Abs(y))
        scale = op.Where(op.Greater(r, zero), r, one)
        xs, ys = op.Div(x, scale), op.Div(y, scale)  # in [-1, 1]: safe in float32
        x32, y32 = op.Cast(xs, to=ONNX_FLOAT), op.Cast(ys, to=ONNX_FLOAT)
        pi32 = op.Constant(value_float=math.pi)
        y_neg = op.Less(op.Div(one, y), zero)  # y < 0 or y == -0.0
        x_neg = op.Less(op.Div(one, x), zero)
        a32 = op.Atan(op.Div(y32, x32))
        phi32 = op.Where(op.Less(x32, op.Constant(value_float=0.0)),
                         op.Where(y_neg, op.Sub(a32, pi32), op.Add(a32, pi32)), a32)
        phi0 = op.Cast(phi32, to=x.dtype)
        c0, s0 = op.Cos(phi0), op.Sin(phi0)
        num = op.Sub(op.Mul(ys, c0), op.Mul(xs, s0))
        den = op.Add(op.Mul(xs, c0), op.Mul(ys, s0))
        phi = op.Add(phi0, op.Div(num, den))
        at_zero = op.Where(x_neg, op.Where(y_neg, op.Neg(pi), pi), y)  # atan2(+-0, +-0)
        return op.Where(op.Equal(r, zero), at_zero, phi)

    def scalar_tensor(s: float, dtype: int = ONNX_FLOAT, layout: str = "", device: str = "",
                      pin_memory: bool = False) -> Any:
        kind = ir.DataType(ONNX_FLOAT if dtype == -1 else dtype)
        if isinstance(s, (bool, int, float)):  # the constant itself in its dtype, not float32
            return op.Constant(value=ir.tensor(s, dtype=kind))
        return op.Cast(s, to=kind)

    def leaky_relu(x: Any, negative_slope: float = 0.01) -> Any:
        # LeakyRelu's alpha is a float32 attribute: 0.1 would become 0.10000000149
        scaled = op.Mul(x, const(negative_slope, x))
        return op.Where(op.Greater(x, const(0.0, x)), x, scaled)

    def slice_scatter(x: Any, src: Any, dim: int = 0, start: Any = None, end: Any = None,
                      step: int = 1) -> Any:
        # ``x`` with ``x[dim][start:end] = src``: the default translation transposes ``dim`` to
        # the front and back around a ScatterND (40% of ONNX Runtime's time); for step 1 this
        # is a Concat of the two kept slices of ``x`` around ``src``
        if step != 1:
            from onnxscript.function_libs.torch_lib.ops.core import aten_slice_scatter

            return aten_slice_scatter(x, src, dim, start, end, step)
        axis = dim % len(x.shape)

        def bound(v: Any, default: int) -> Any:
            if v is None:
                return op.Constant(value_ints=[default])
            return op.Cast(op.Reshape(v, op.Constant(value_ints=[-1])), to=ONNX_INT64)

        axes = op.Constant(value_ints=[axis])
        first = bound(start, 0)
        left = op.Slice(x, op.Constant(value_ints=[0]), first, axes)
        right = op.Slice(x, bound(end, INT64_MAX), op.Constant(value_ints=[INT64_MAX]), axes)
        return op.Concat(left, src, right, axis=axis)

    aten, prims = torch.ops.aten, torch.ops.prims
    return {prims.hypot.default: hypot, aten.hypot.default: hypot,
            aten.asinh.default: asinh, aten.atan2.default: atan2,
            aten.scalar_tensor.default: scalar_tensor, aten.leaky_relu.default: leaky_relu,
            aten.slice_scatter.default: slice_scatter}


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Filter :data:`HARMLESS_WARNINGS` and silence :data:`QUIET_LOGGERS` inside the block."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        for category, message in HARMLESS_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def onnx_metadata(tagger: Tagger, opset: int) -> dict[str, str]:
    """The ``metadata_props`` of the ONNX file of ``tagger`` (every value a string; the JSON
    ones are compact, keys sorted)."""
    from lloca_hep import __version__

    def dump(obj: Any) -> str:
        return json.dumps(obj, sort_keys=True)

    header = tagger.header()
    header.setdefault("classes", list(tagger.class_names))
    n_scalars = len(tagger.inputs)
    preprocessing = {
        "p4": {"order": ["E", "px", "py", "pz"], "units": "GeV", "frame": "lab",
               "dtype": "float64"},
        "sort_by_pt": tagger.sort_by_pt,
        "order": "constituents sorted by pT, descending" if tagger.sort_by_pt
                 else "constituents in file order",
        "truncation": f"the hardest max_constituents = {tagger.max_constituents} kept",
        "padding": "zeros after the last constituent; mask False on padded slots",
        "max_constituents": tagger.max_constituents,
        "mask": "bool, True for real constituents",
        "scalars": list(tagger.inputs.names),
        "scalars_dtype": "float32",
        "scalars_transform": ("each raw feature transformed as metadata 'inputs' says, padded "
                              "slots zero" if n_scalars else "none (no particle features)"),
        "empty_jets": "not scored (lloca-hep gives NaN): skip jets without constituents",
        "output": ("probabilities (B, 2): column 0 = 1 - p, column 1 = p(signal)"
                   if not tagger.is_multiclass else
                   f"probabilities (B, {tagger.n_classes}): softmax, columns class_names"),
        "opset": opset,
    }
    return {
        "lloca_hep_format": ONNX_FORMAT,
        "lloca_hep_version": __version__,
        "model_name": tagger.model_name,
        "max_constituents": str(tagger.max_constituents),
        "class_names": dump(list(tagger.class_names)),
        "inputs": dump(tagger.inputs.to_json()),
        "preprocessing": dump(preprocessing),
        "lloca_hep_header": dump(header),
    }


def _example(batch: int, n: int, n_scalars: int) -> tuple[torch.Tensor, ...]:
    p4, mask = _example_inputs(batch, n)
    if not n_scalars:
        return p4, mask
    gen = torch.Generator().manual_seed(EXAMPLE_SEED + 1)
    return p4, mask, torch.randn(batch, n, n_scalars, generator=gen)


def _name_dims(model: Any, names: dict[str, str]) -> None:
    """Rename the symbolic dims of the graph (inputs, outputs, value infos)."""
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in names:
                dim.dim_param = names[dim.dim_param]


def _cast_like_to_cast(model: Any) -> int:
    """Replace ``CastLike(x, like)`` by ``Cast(x, to=dtype of like)`` where that dtype is known
    (ONNX Runtime has no CastLike kernel: it warns while folding constants). Returns the count."""
    from onnx import helper

    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*graph.input, *graph.value_info, *graph.output]}
    types.update({t.name: t.data_type for t in graph.initializer})
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Constant" and attr.name == "value":
                types[node.output[0]] = attr.t.data_type
    done = 0
    for i, node in enumerate(graph.node):
        if node.op_type == "CastLike" and node.domain in ("", "ai.onnx") and types.get(node.input[1]):
            graph.node[i].CopyFrom(helper.make_node("Cast", [node.input[0]], list(node.output),
                                                    name=node.name, to=types[node.input[1]]))
            done += 1
    return done


def _export_proto(wrapper: torch.nn.Module, args: tuple[torch.Tensor, ...], opset: int) -> Any:
    from torch.export import Dim

    batch, constituents = Dim(BATCH_DIM, min=1), Dim(CONSTITUENTS_DIM, min=1)
    names = [P4_INPUT, MASK_INPUT, SCALARS_INPUT][: len(args)]
    dynamic = {name: {0: batch, 1: constituents} for name in names}
    with _quiet_export(), torch.no_grad():
        program = torch.onnx.export(
            wrapper, args, dynamo=True, input_names=names, output_names=[OUTPUT_NAME],
            dynamic_shapes=dynamic, opset_version=opset, verbose=False,
            # not optimize=True: onnxscript's rewrite rules changed the top probability of one
            # of the first 500 shipped sample jets by 7.6e-4 (constant folding alone did not);
            # ONNX Runtime folds constants itself when it builds a session
            optimize=False,
            custom_translation_table=_translation_table())
    assert program is not None
    model = program.model_proto
    for graph in _graphs(model.graph):  # stack traces (local paths) of every node: 85% of the file
        for node in graph.node:
            del node.metadata_props[:]
            node.doc_string = ""
    _cast_like_to_cast(model)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    _name_dims(model, {dims[0].dim_param: BATCH_DIM, dims[1].dim_param: CONSTITUENTS_DIM})
    return model


def _check(data: bytes, wrapper: torch.nn.Module, n_scalars: int, path: Path) -> float:
    """Largest |ONNX Runtime - torch| over :data:`CHECK_SHAPES`; RuntimeError above the bound."""
    session = _session(data, torch.get_num_threads(), path)
    worst = 0.0
    for shape in CHECK_SHAPES:
        xs = _example(*shape, n_scalars)
        with torch.no_grad():
            want = wrapper(*xs).numpy()
        names = [P4_INPUT, MASK_INPUT, SCALARS_INPUT][: len(xs)]
        feed = dict(zip(names, (x.numpy() for x in xs), strict=True))
        (got,) = session.run([OUTPUT_NAME], feed)
        diff = float(np.max(np.abs(got - want))) if got.shape == want.shape else math.inf
        worst = max(worst, diff)
        if not diff <= CHECK_ATOL:
            raise RuntimeError(
                f"the ONNX graph changed the probabilities on a {shape} batch (max |diff| "
                f"{diff:.3g}, shapes {got.shape} / {want.shape}); not writing {path}")
    return worst


def export_onnx(tagger: Tagger, path: str | os.PathLike[str], *, opset: int = DEFAULT_OPSET,
                overwrite: bool = True, inputs: Iterable[str | os.PathLike[str]] = ()
                ) -> dict[str, Any]:
    """Export ``tagger`` to the ONNX file ``path`` (``.onnx``), as the module docstring says.

    ``opset``: the ai.onnx opset (>= 18). ``overwrite``: replace an existing ``path``;
    ``inputs``: files that must never be replaced (:func:`lloca_hep._files.atomic_output`).
    The model is exported in eval mode on CPU; ONNX Runtime must reproduce its probabilities
    within :data:`CHECK_ATOL` on two example batches, else RuntimeError and nothing is written.
    Returns a summary: ``path``, ``bytes``, ``opset``, ``inputs`` and ``outputs`` (name ->
    ``[dtype, shape]``), ``seconds`` (export time), ``max_abs_diff`` (of the check).
    """
    onnx, _ = require_onnx()
    path = Path(path)
    if path.suffix != ONNX_SUFFIX:
        raise ValueError(f"{path}: the ONNX tagger file must end in {ONNX_SUFFIX}")
    if int(opset) < DEFAULT_OPSET:
        raise ValueError(f"opset {opset}: the torch ONNX exporter needs opset >= {DEFAULT_OPSET}")
    start = time.perf_counter()
    model = tagger.model
    was_training = model.training
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.to("cpu").eval()
    n_scalars = len(tagger.inputs)
    wrapper = probability_module(tagger).eval()
    try:
        args = _example(EXAMPLE_BATCH, EXAMPLE_CONSTITUENTS, n_scalars)
        with torch.no_grad():
            wrapper(*args)  # one eager pass first, as for torch.export
        try:
            proto = _export_proto(wrapper, args, int(opset))
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RuntimeError(f"torch.onnx cannot export {tagger.model_name!r}: {first}") from exc
        proto.doc_string = (f"lloca-hep tagger {tagger.model_name}: probabilities from p4, mask"
                            + (", scalars" if n_scalars else "") + "; see metadata_props")
        del proto.metadata_props[:]
        for key, value in onnx_metadata(tagger, int(opset)).items():
            proto.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(proto)
        data = proto.SerializeToString()
        worst = _check(data, wrapper, n_scalars, path)
    finally:
        model.to(device).train(was_training)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, suffix=ONNX_SUFFIX, overwrite=overwrite, inputs=list(inputs)) as tmp:
        tmp.write_bytes(data)
    seconds = time.perf_counter() - start
    summary = {"path": str(path), "bytes": len(data), "opset": int(opset),
               "inputs": _signature(proto.graph.input), "outputs": _signature(proto.graph.output),
               "seconds": seconds, "max_abs_diff": worst}
    log.info("exported %r to %s (%d bytes, opset %d, %.1f s)", tagger, path, len(data),
             int(opset), seconds)
    return summary


def _signature(values: Any) -> dict[str, list[Any]]:
    from onnx import helper

    out: dict[str, list[Any]] = {}
    for v in values:
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]
        out[v.name] = [str(helper.tensor_dtype_to_np_dtype(t.elem_type)), dims]
    return out
