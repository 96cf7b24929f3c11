"""``lloca-hep tag`` with particle features: jets/s of the ``full`` input set against ``kin``.

Two untrained LLoCa transformers of the same size (the shipped top tagger's: hidden 48, 3
blocks, 3 heads), one reading only the four-momenta (``kin``) and one the ten ``full``
features, score the same JetClass-format file end to end with
:func:`lloca_hep.inference.tag_file` (read, pad, transform, score, write), one warm-up pass each,
then ``--repeat`` alternating timed passes; the median jets/s and the ratio full / kin are
printed (the issue's goal: at least 0.8).

    python benchmarks/bench_features.py --input lloca_hep/data/jetclass_sample.root --repeat 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lloca_hep.features import preset
from lloca_hep.inference import tag_file
from lloca_hep.models import LLoCaTransformer
from lloca_hep.tagger import Tagger

SIZE = dict(hidden=48, blocks=3, heads=3)
GOAL_RATIO = 0.8


def make_tagger(inputs: str, n_classes: int, max_constituents: int) -> Tagger:
    spec = preset(inputs)
    torch.manual_seed(0)
    model = LLoCaTransformer(**SIZE, num_classes=n_classes if n_classes > 2 else None,  # type: ignore[arg-type]
                             num_scalars=spec.num_invariant)
    classes = tuple(f"c{i}" for i in range(n_classes)) if n_classes > 2 else None
    return Tagger(model, "LLoCaTransformer", max_constituents, inputs=spec, classes=classes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", required=True, help="JetClass-format ROOT file with part_* features")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--classes", type=int, default=10, help="outputs of the taggers")
    ap.add_argument("--max-constituents", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    taggers = {k: make_tagger(k, args.classes, args.max_constituents) for k in ("kin", "full")}
    times: dict[str, list[float]] = {k: [] for k in taggers}
    n_jets = 0
    with tempfile.TemporaryDirectory() as tmp:
        for k, t in taggers.items():  # warm-up: numba compilation, torch start-up
            tag_file(args.input, Path(tmp) / f"warm_{k}.root", t, progress=False)
        for i in range(args.repeat):
            for k, t in taggers.items():
                t0 = time.perf_counter()
                out = tag_file(args.input, Path(tmp) / f"{k}_{i}.root", t, progress=False)
                times[k].append(time.perf_counter() - t0)
                n_jets = out["n_jets"]
    rate = {k: n_jets / statistics.median(v) for k, v in times.items()}
    result = {"input": args.input, "jets": n_jets, "threads": args.threads,
              "max_constituents": args.max_constituents, "classes": args.classes,
              "jets_per_second": rate, "ratio_full_over_kin": rate["full"] / rate["kin"],
              "goal": GOAL_RATIO}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
