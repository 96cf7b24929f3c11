"""End-to-end speed of ``lloca-hep tag``: read, preprocess, score, write (jets per second).

Runs :func:`lloca_hep.inference.tag_file` (what ``lloca-hep tag`` calls) on a ROOT file with
a given number of torch threads, after one warm-up pass (numba compilation, torch start-up), and
reports the median of ``--repeat`` timed passes together with a breakdown measured separately:
reading (iterate_jets), padding (pad_jets), network (Tagger.score_padded) and writing
(FriendTreeWriter).

    python benchmarks/bench_tag.py                       # shipped tagger, sample file, 2 threads
    python benchmarks/bench_tag.py --input /work/data/test.root --threads 2 --repeat 3
    python benchmarks/bench_tag.py --config '{"hidden": 32, "blocks": 2, "heads": 2}' \
        --max-constituents 48                          # an untrained model of that size
    python benchmarks/bench_tag.py --model jetclass \
        --input lloca_hep/data/jetclass_sample.root --tile 7   # ten classes, 21k jets

With ``--jettagger`` it times :class:`lloca_hep.coffea.JetTagger` instead (the coffea route):
on the ragged constituents of ``read_jets(input)`` (reading excluded) and, with ``--pfnano``, on
eager PFNano NanoEvents of that file (building the events excluded); each after one warm-up
call, median of ``--repeat`` calls (``--pfnano-repeat`` for the small PFNano file).

    python benchmarks/bench_tag.py --jettagger --pfnano ../shared/data/pfnano.root --repeat 5

Target (issue 6): at least 2000 jets/s end to end on 2 CPU cores for the default tagger.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np
import torch

TARGET_JETS_PER_SECOND = 2000.0


def _default_input() -> Path:
    with resources.as_file(resources.files("lloca_hep").joinpath("data", "sample.root")) as p:
        return Path(p)


def _tagger(args: argparse.Namespace):
    from lloca_hep.models import build_model
    from lloca_hep.tagger import Tagger, load_tagger

    if args.config is not None:
        torch.manual_seed(0)
        model = build_model(args.model_name, json.loads(args.config))
        return Tagger(model, args.model_name, args.max_constituents, device="cpu",
                      **({} if args.batch_size is None else {"batch_size": args.batch_size}))
    if args.batch_size is None:
        return load_tagger(args.model, device="cpu")
    return load_tagger(args.model, device="cpu", batch_size=args.batch_size)


def _breakdown(tagger, path: Path, step_size, out_dir: Path) -> dict[str, float]:
    """Seconds spent reading (iterate_jets, with the tagger's per-particle features), padding
    (network_inputs, what Tagger.score runs), in the network (Tagger.score_padded) and writing
    (FriendTreeWriter), each phase timed on its own."""
    from lloca_hep.io import FriendTreeWriter, iterate_jets
    from lloca_hep.preprocessing.inputs import network_inputs

    features = tagger.inputs if len(tagger.inputs) else None
    t = {"read": 0.0, "pad": 0.0, "network": 0.0, "write": 0.0}
    t0 = time.perf_counter()
    chunks = list(iterate_jets(str(path), step_size=step_size, jet_fields=[],
                               features=features))
    t["read"] = time.perf_counter() - t0
    scores = []
    for chunk in chunks:
        t0 = time.perf_counter()
        padded = network_inputs(chunk.jets, tagger.inputs, tagger.max_constituents,
                                tagger.sort_by_pt)
        t["pad"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        scores.append(tagger.score_padded(padded.p4, padded.mask, warn_empty=False,
                                          scalars=padded.scalars))
        t["network"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    classes = tagger.class_names if tagger.is_multiclass else None
    with FriendTreeWriter(out_dir / "breakdown.root", overwrite=True,
                          class_names=classes) as writer:
        for s, chunk in zip(scores, chunks, strict=True):
            writer.extend(s, chunk)
    t["write"] = time.perf_counter() - t0
    return t


def _tiled(path: Path, times: int, out_dir: Path) -> Path:
    """``path``'s jet tree written ``times`` times over into ``out_dir`` (a larger file of the
    same layout and branches, for timing many chunks)."""
    import awkward as ak
    import uproot

    with uproot.open(path) as f:
        name = next(k.split(";")[0] for k, c in f.classnames().items() if c == "TTree")
        tree = f[name]
        arrays = tree.arrays(library="ak")
        jagged = [b.name for b in tree.branches if b.name.startswith("part_")]
        flat = [b.name for b in tree.branches
                if not b.name.startswith("part_") and b.name != "npart"]
    data = {"part": ak.zip({b[len("part_"):]: arrays[b] for b in jagged})}
    data.update({b: arrays[b] for b in flat})
    out = out_dir / f"{path.stem}_x{times}.root"
    with uproot.recreate(out) as f:
        tree = f.mktree(name, {k: v.type for k, v in data.items()})  # counter npart
        for _ in range(times):
            tree.extend(data)
    return out


def _tag_file():
    try:
        from lloca_hep.inference import tag_file
    except ImportError:  # an older checkout (before lloca_hep.inference), for comparisons
        from lloca_hep.training.tag import tag_file  # type: ignore[no-redef]
    return tag_file


def _median_seconds(call, repeat: int) -> tuple[float, list[float]]:
    call()  # warm-up (numba compilation, model loading)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def _bench_jettagger(args: argparse.Namespace, path: Path) -> int:
    """JetTagger on ragged constituents of ``path`` and on eager NanoEvents of ``--pfnano``."""
    import warnings

    import awkward as ak

    from lloca_hep.coffea import JetTagger
    from lloca_hep.io import read_jets

    tagger = JetTagger(args.model, device="cpu")
    constituents = read_jets(path).constituents
    n_jets = len(constituents)
    med, times = _median_seconds(lambda: tagger(constituents), args.repeat)
    print(f"# bench_tag --jettagger: torch {torch.__version__}, {args.threads} threads")
    print(f"JetTagger ragged constituents of {path} ({n_jets} jets): {n_jets / med:.0f} jets/s, "
          f"median {med * 1e3:.1f} ms of {args.repeat}: "
          f"{', '.join(f'{t * 1e3:.1f}' for t in times)}")
    if args.pfnano is not None:
        from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            events = NanoEventsFactory.from_root({str(args.pfnano): "Events"},
                                                 schemaclass=PFNanoAODSchema,
                                                 mode="eager").events()
            n_pf = int(ak.sum(ak.num(events.FatJet, axis=1)))
            med, times = _median_seconds(lambda: tagger(events), args.pfnano_repeat)
        print(f"JetTagger eager NanoEvents of {args.pfnano} ({len(events)} events, {n_pf} "
              f"FatJets): median {med * 1e3:.2f} ms per call of {args.pfnano_repeat} "
              f"(min {min(times) * 1e3:.2f} ms)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, default=None,
                        help="ROOT file to tag (default: the shipped sample.root)")
    parser.add_argument("--model", default=None, help="tagger file (default: shipped tagger)")
    parser.add_argument("--config", default=None,
                        help="JSON model config: benchmark an untrained model of this size")
    parser.add_argument("--model-name", default="LLoCaTransformer")
    parser.add_argument("--max-constituents", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="jets per forward pass (default: the tagger's default)")
    parser.add_argument("--step-size", default="50 MB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tile", type=int, default=1,
                        help="tag the input's jet tree written this many times over into one "
                             "temporary file (a larger file, e.g. 5 x sample.root = 20k jets)")
    parser.add_argument("--jettagger", action="store_true",
                        help="time lloca_hep.coffea.JetTagger instead of tag_file")
    parser.add_argument("--pfnano", type=Path, default=None,
                        help="with --jettagger: also time eager NanoEvents of this PFNano file")
    parser.add_argument("--pfnano-repeat", type=int, default=50)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    path = args.input or _default_input()
    if args.jettagger:
        return _bench_jettagger(args, path)
    tag_file = _tag_file()

    step_size = int(args.step_size) if str(args.step_size).isdigit() else args.step_size
    tagger = _tagger(args)
    n_params = sum(p.numel() for p in tagger.model.parameters())
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scores.root"
        if args.tile > 1:
            path = _tiled(path, args.tile, Path(tmp))
        tag_file(path, out, tagger, step_size=step_size, overwrite=True, progress=False)  # warm-up
        rates = []
        cpu_rates = []
        load_before = os.getloadavg()[0]
        for _ in range(args.repeat):
            c0 = time.process_time()
            summary = tag_file(path, out, tagger, step_size=step_size, overwrite=True,
                               progress=False)
            cpu_rates.append(summary["n_jets"] / (time.process_time() - c0))
            rates.append(summary["jets_per_second"])
        load_after = os.getloadavg()[0]
        n_jets = summary["n_jets"]
        parts = _breakdown(tagger, path, step_size, Path(tmp))
    rate = statistics.median(rates)
    total = sum(parts.values())
    print(f"# bench_tag: {platform.processor() or platform.machine()}, torch "
          f"{torch.__version__}, {args.threads} threads, python {sys.version.split()[0]}")
    print(f"input {path} ({n_jets} jets), model {tagger.model_name} ({n_params} parameters, "
          f"max_constituents {tagger.max_constituents}), batch {tagger.batch_size}")
    print(f"end to end: {rate:.0f} jets/s (median of {args.repeat}: "
          f"{', '.join(f'{r:.0f}' for r in rates)}); target {TARGET_JETS_PER_SECOND:.0f}: "
          f"{'met' if rate >= TARGET_JETS_PER_SECOND else 'NOT met'}")
    print(f"CPU time: {statistics.median(cpu_rates):.0f} jets per CPU-second of this process "
          f"(summed over its threads); 1-min load average {load_before:.1f} -> "
          f"{load_after:.1f} on {os.cpu_count()} CPUs (other processes slow the wall rate)")
    print("breakdown (separate pass): " + ", ".join(
        f"{k} {v:.2f} s ({100 * v / total:.0f}%)" for k, v in parts.items()))
    print(f"network alone: {n_jets / parts['network']:.0f} jets/s")
    return 0 if np.isfinite(rate) else 1


if __name__ == "__main__":
    sys.exit(main())
