"""ONNX export and ONNX Runtime against torch: ``lloca-hep tag`` jets/s, export time, file size.

For each tagger (the shipped top tagger, and untrained LLoCa transformers of the same size with
``max_constituents`` 48 and 128):

* export it with :func:`lloca_hep.tagger.export_onnx` (timed, including the ONNX Runtime check)
  and record the file size;
* for 1 and 2 threads (torch's ``set_num_threads``; ONNX Runtime's intra-op threads), load the
  torch tagger and the ONNX tagger once, warm up with one untimed pass, then time
  :func:`lloca_hep.inference.tag_file` (the code of ``lloca-hep tag``: read, pad, score, write;
  Python start-up and model loading excluded) on the input file, median of ``--repeat`` passes;
* and the network alone: ``score_padded`` on the pre-padded jets (what is left is reading,
  padding and writing).

    python benchmarks/bench_onnx.py                       # sample.root, 1 and 2 threads
    python benchmarks/bench_onnx.py --input jets.root --threads 1 2 --repeat 3

Prints a markdown table; scores of the two back ends are checked against each other (1e-5).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger("bench_onnx")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = ROOT / "lloca_hep" / "data" / "sample.root"
#: ``max_constituents`` of the untrained stand-ins (the shipped tagger has 48).
UNTRAINED_N = (48, 128)
#: Seed of the untrained stand-ins.
UNTRAINED_SEED = 0
#: Largest |ONNX - torch| score tolerated.
SCORE_TOL = 1e-5
MIB = 2**20


def _taggers() -> list[tuple[str, Any]]:
    from lloca_hep.models import build_model
    from lloca_hep.tagger import Tagger, load_tagger

    shipped = load_tagger(device="cpu")
    out: list[tuple[str, Any]] = [("shipped top tagger, N = 48", shipped)]
    for n in UNTRAINED_N:
        torch.manual_seed(UNTRAINED_SEED)
        model = build_model(shipped.model_name, shipped.config)
        out.append((f"untrained, same size, N = {n}", Tagger(model, shipped.model_name, n)))
    return out


def _time_tag(tagger: Any, source: Path, out: Path, repeat: int) -> tuple[float, np.ndarray]:
    """Median jets/s of ``tag_file`` with a loaded tagger (one untimed warm-up pass first)."""
    import uproot

    from lloca_hep.inference import tag_file

    rates = []
    for i in range(repeat + 1):
        summary = tag_file(source, out, model=tagger, overwrite=True, progress=False)
        if i:
            rates.append(summary["jets_per_second"])
    with uproot.open(out) as f:
        scores = f["scores"]["score"].array(library="np")
    return statistics.median(rates), scores


def _time_network(tagger: Any, p4: np.ndarray, mask: np.ndarray, repeat: int) -> float:
    tagger.score_padded(p4, mask)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        tagger.score_padded(p4, mask)
        times.append(time.perf_counter() - t0)
    return len(p4) / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    from lloca_hep.io import read_jets
    from lloca_hep.preprocessing.inputs import network_inputs
    from lloca_hep.tagger import export_onnx, load_onnx
    from lloca_hep.tagger.scoring import _constituents_of

    jets = read_jets(args.input)
    counts = np.asarray([len(c) for c in _constituents_of(jets)])
    log.info("%s: %d jets, constituents mean %.1f, max %d; load average %s", args.input,
             len(jets), counts.mean(), counts.max(), os.getloadavg())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, tagger in _taggers():
            onnx_path = Path(tmp) / "tagger.onnx"
            summary = export_onnx(tagger, onnx_path)
            padded = network_inputs(_constituents_of(jets), tagger.inputs,
                                    tagger.max_constituents, tagger.sort_by_pt)
            for threads in args.threads:
                torch.set_num_threads(threads)
                backends = {"torch": tagger, "ONNX Runtime": load_onnx(onnx_path, threads=threads)}
                scores = {}
                for name, backend in backends.items():
                    rate, scores[name] = _time_tag(backend, args.input, Path(tmp) / "s.root",
                                                   args.repeat)
                    net = _time_network(backend, padded.p4, padded.mask, args.repeat)
                    rows.append((label, name, threads, rate, net, summary["seconds"],
                                 summary["bytes"] / MIB))
                    log.info("%s | %s | %d threads: %.0f jets/s (network %.0f)", label, name,
                             threads, rate, net)
                diff = float(np.max(np.abs(scores["torch"] - scores["ONNX Runtime"])))
                assert diff <= SCORE_TOL, f"ONNX and torch scores differ by {diff}"
    print(f"\nload average after the run: {os.getloadavg()}\n")
    print("| tagger | back end | threads | `tag` jets/s | network only, jets/s | ONNX export, s "
          "| ONNX file, MiB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, name, threads, rate, net, seconds, mib in rows:
        print(f"| {label} | {name} | {threads} | {rate:.0f} | {net:.0f} | {seconds:.0f} "
              f"| {mib:.2f} |")


if __name__ == "__main__":
    main()
