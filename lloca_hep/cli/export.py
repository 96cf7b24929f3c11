"""``lloca-hep export``: write a tagger as an ONNX file (``.onnx``, for ONNX Runtime, CMSSW and
Triton; :func:`lloca_hep.tagger.export_onnx`) or a ``torch.export`` archive (``.pt2``;
:func:`lloca_hep.tagger.export_tagger`)."""

from __future__ import annotations

import argparse
from typing import Any

from ._argtypes import positive_int
from ._exitcodes import EXIT_OK, guard
from ._options import add_command, set_threads

HELP = "export a tagger to ONNX (.onnx) or torch.export (.pt2)"
DESCRIPTION = (
    "Export a tagger (default: the shipped top tagger) to OUTPUT: a .onnx file scored by ONNX "
    "Runtime (C++/CMSSW/Triton; inputs p4 float64 (B, N, 4), mask bool (B, N) [, scalars "
    "float32 (B, N, S)], output probabilities float32 (B, C); the preprocessing is in the ONNX "
    "metadata) or a .pt2 torch.export archive. ONNX Runtime must reproduce the torch scores "
    "before the file is written. 'lloca-hep tag --model OUTPUT' scores with either."
)
#: Output suffixes and what they are.
FORMATS = {".onnx": "ONNX", ".pt2": "torch.export"}
#: Bytes per MiB, for the printed file size.
MIB = 2**20


def _describe(signature: dict[str, list[Any]]) -> str:
    return ", ".join(f"{name} {dtype} ({', '.join(map(str, dims))})"
                     for name, (dtype, dims) in signature.items())


@guard
def run(args: argparse.Namespace) -> int:
    """Export the tagger and print what was written."""
    from pathlib import Path

    from lloca_hep._files import check_output
    from lloca_hep.tagger import OnnxTagger, export_onnx, export_tagger, load_tagger, shipped_name

    set_threads(args)
    out = Path(args.output)
    if out.suffix not in FORMATS:
        raise ValueError(f"{out}: the output must end in .onnx (ONNX) or .pt2 (torch.export)")
    inputs = [] if shipped_name(args.model) is not None else [args.model]
    check_output(out, overwrite=args.overwrite, inputs=inputs)
    tagger = load_tagger(args.model, device="cpu")
    if isinstance(tagger, OnnxTagger):
        raise ValueError(f"{args.model} is an ONNX tagger already; export a .pt tagger")
    name = args.model or "the shipped default tagger"
    if out.suffix == ".onnx":
        summary = export_onnx(tagger, out, opset=args.opset, overwrite=args.overwrite,
                              inputs=inputs)
        print(f"wrote {summary['path']}: ONNX opset {summary['opset']}, "
              f"{summary['bytes'] / MIB:.2f} MiB, from {name} ({tagger.model_name}) in "
              f"{summary['seconds']:.1f} s")
        print(f"  inputs:  {_describe(summary['inputs'])}")
        print(f"  outputs: {_describe(summary['outputs'])}")
        print(f"  ONNX Runtime vs torch: max |diff| {summary['max_abs_diff']:.2g}; "
              f"classes {', '.join(tagger.class_names)}; max_constituents "
              f"{tagger.max_constituents}")
        return EXIT_OK
    path = export_tagger(tagger, out)
    dims: list[Any] = ["batch", "constituents"]
    shapes: dict[str, list[Any]] = {"p4": ["float64", [*dims, 4]], "mask": ["bool", dims]}
    if len(tagger.inputs):
        shapes["scalars"] = ["float32", [*dims, len(tagger.inputs)]]
    logits: list[Any] = ["batch", tagger.n_classes] if tagger.is_multiclass else ["batch"]
    print(f"wrote {path}: torch.export archive, {path.stat().st_size / MIB:.2f} MiB, from "
          f"{name} ({tagger.model_name})")
    print(f"  inputs:  {_describe(shapes)}")
    print(f"  outputs: {_describe({'logits': ['float32', logits]})}")
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``export`` to the ``lloca-hep`` subcommand parsers."""
    from lloca_hep._defaults import DEFAULT_OPSET

    p = add_command(subparsers, "export", run, help=HELP, description=DESCRIPTION)
    p.add_argument("--model", default=None, metavar="TAGGER",
                   help="tagger file (.pt) or shipped name (default, jetclass); default: the "
                        "shipped tagger")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help="file to write: .onnx (ONNX) or .pt2 (torch.export)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ai.onnx opset of a .onnx output (default {DEFAULT_OPSET}, >= 18)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUTPUT if it exists (never the input tagger)")
    p.add_argument("--threads", dest="num_threads", type=positive_int, default=None,
                   help="torch threads while exporting")
