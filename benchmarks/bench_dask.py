"""Jets per second: ``score_files`` on 1 and 2 dask workers against single-process scoring.

Same input files for every configuration: copies of the first ``--jets-per-file`` jets of a
JetClass-style flat file (default: the shipped ``lloca_hep/data/sample.root``), each copy a
separate input file. Every configuration scores all jets and writes friend trees.

* ``lloca-hep tag``: the command's code path, run in this process once per file
  (``lloca_hep.cli.main(["tag", ...])``; model loaded per file as the command does, Python
  start-up excluded);
* ``score_files sync``: :func:`lloca_hep.integrations.dask.score_files` with dask's
  single-threaded scheduler in this process (overhead of the dask path itself);
* ``score_files, N workers``: the same on a ``distributed.LocalCluster(n_workers=N,
  threads_per_worker=1, processes=True)``.

Every process is warmed up untimed first (imports, numba kernels, the model loaded once per
dask worker, by scoring a 64-jet file), so the timings are steady-state throughput including
reading, padding, inference and writing; the one-off costs (cluster start-up ~ seconds, model
load per worker) are not in them. Each configuration runs ``--repeat`` times with fresh
outputs; the table gives the first and the best wall time (on a shared machine compare best
times, and rerun).

Usage::

    python benchmarks/bench_dask.py --files 4 --jets-per-file 2000 --workers 1 2 --repeat 3
    python benchmarks/bench_dask.py --model my_tagger.pt --input jets.root

Prints a markdown table. Scores of all configurations are checked against each other.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot

log = logging.getLogger("bench_dask")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = ROOT / "lloca_hep" / "data" / "sample.root"
FLAT_BRANCHES = ("part_px", "part_py", "part_pz", "part_energy")
#: Largest score difference tolerated between configurations (different batch composition
#: changes float32 rounding only).
SCORE_TOL = 1e-5
#: Jets of the small file scored, untimed, to warm up every process before timing.
WARMUP_JETS = 64
#: Seed of the untrained stand-in model used when the shipped tagger cannot be loaded.
UNTRAINED_SEED = 0


def make_inputs(source: Path, out_dir: Path, n_files: int, jets_per_file: int) -> list[Path]:
    """Write ``n_files`` copies of the first ``jets_per_file`` jets of ``source`` (TTree jets)."""
    with uproot.open(source) as f:
        tree_name = next(k.split(";")[0] for k, c in f.classnames().items() if c == "TTree")
        arrays = f[tree_name].arrays(list(FLAT_BRANCHES), entry_stop=jets_per_file)
    paths = []
    for i in range(n_files):
        path = out_dir / f"jets_{i:03d}.root"
        with uproot.recreate(path) as out:
            out.mktree("jets", {b: arrays[b].type.content for b in FLAT_BRANCHES})
            out["jets"].extend({b: arrays[b] for b in FLAT_BRANCHES})
        paths.append(path)
    return paths


def untrained_like_shipped(path: Path) -> Path:
    """A seeded, untrained tagger with the shipped tagger's architecture (same speed)."""
    import torch

    from lloca_hep.models import build_model
    from lloca_hep.tagger import Tagger, _shipped_path, read_tagger_header

    with _shipped_path() as shipped:
        header = read_tagger_header(shipped)
    torch.manual_seed(UNTRAINED_SEED)
    model = build_model(header["model_name"], header["config"])
    return Tagger(model, header["model_name"], header["max_constituents"]).save(path)


def read_scores(paths: list[Path]) -> np.ndarray:
    parts = []
    for p in paths:
        with uproot.open(p) as f:
            parts.append(ak.to_numpy(f["scores"]["score"].array()))
    return np.concatenate(parts)


def bench_tag(inputs: list[Path], out_dir: Path, model: str | None) -> tuple[float, np.ndarray]:
    from lloca_hep import cli

    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = []
    t0 = time.perf_counter()
    for path in inputs:
        out = out_dir / f"{path.stem}_scores.root"
        argv = ["tag", str(path), "-o", str(out), "--no-progress", "--device", "cpu"]
        if model:
            argv += ["--model", model]
        rc = cli.main(argv)
        if rc != 0:
            raise RuntimeError(f"lloca-hep tag failed on {path} (exit {rc})")
        outputs.append(out)
    return time.perf_counter() - t0, read_scores(outputs)


def bench_score_files(inputs: list[Path], out_dir: Path, model: str | None,
                      step_size: int | str | None, scheduler: str | None) -> tuple[float, np.ndarray]:
    from lloca_hep.integrations.dask import score_files

    t0 = time.perf_counter()
    outputs = score_files(inputs, out_dir, model=model, step_size=step_size, device="cpu",
                          scheduler=scheduler)
    return time.perf_counter() - t0, read_scores(outputs)


def _warm_worker() -> tuple[int, int]:
    import torch

    import lloca_hep.coffea  # noqa: F401
    import lloca_hep.preprocessing  # noqa: F401

    return os.getpid(), torch.get_num_threads()


def _warm_worker_scoring(paths: list[str], model: str | None) -> None:
    """Score a tiny file in this worker: loads the model into the per-process cache and the
    numba kernels, so that timed runs measure steady-state throughput."""
    from lloca_hep.coffea import JetTagger
    from lloca_hep.io import read_jets

    JetTagger(model, device="cpu")(read_jets(paths[0])["constituents"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--jets-per-file", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--model", default=None, help="tagger file (default: shipped tagger)")
    parser.add_argument("--step-size", default="none",
                        help="score_files partition size: entries, '50 MB', or 'none' (one per file)")
    parser.add_argument("--skip-sync", action="store_true")
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs per configuration (fresh outputs each time); best is reported")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    step: int | str | None
    if args.step_size.lower() == "none":
        step = None
    elif args.step_size.isdigit():
        step = int(args.step_size)
    else:
        step = args.step_size

    import distributed
    import torch

    import lloca_hep.coffea  # noqa: F401  (warm imports outside the timings)
    import lloca_hep.integrations.dask  # noqa: F401
    from lloca_hep.tagger import load_tagger

    model: str | None = args.model
    untrained = False
    model_desc = ""
    try:
        model_desc = repr(load_tagger(model, device="cpu"))
    except Exception as exc:  # noqa: BLE001  (the shipped tagger may be out of date)
        if model is not None:
            raise
        log.warning("shipped tagger unusable (%s); timing a seeded untrained model of the "
                    "same architecture instead", str(exc).splitlines()[0][:200])
        untrained = True
    rows = []
    for noisy in ("distributed", "lloca_hep"):  # the tag command sets INFO logging
        logging.getLogger(noisy).setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench_dask_") as tmp:
        tmp_path = Path(tmp)
        if untrained:
            model = str(untrained_like_shipped(tmp_path / "untrained.pt"))
            model_desc = repr(load_tagger(model, device="cpu")) + " (untrained)"
        in_dir = tmp_path / "in"
        in_dir.mkdir()
        inputs = make_inputs(args.input, in_dir, args.files, args.jets_per_file)
        n_jets = args.files * args.jets_per_file
        warm_dir = tmp_path / "warm"
        warm_dir.mkdir()
        tiny = make_inputs(args.input, warm_dir, 1, WARMUP_JETS)
        # untimed warm-up in this process: numba compilation / cache loading, torch first calls
        bench_tag(tiny, warm_dir / "tag", model)
        bench_score_files(tiny, warm_dir / "sync", model, step, "sync")

        def runs(fn: Any) -> tuple[list[float], np.ndarray]:
            times, scores = [], np.zeros(0)
            for r in range(args.repeat):
                seconds, scores = fn(r)
                times.append(seconds)
            return times, scores

        times, reference = runs(lambda r: bench_tag(inputs, tmp_path / f"tag{r}", model))
        rows.append((f"lloca-hep tag (1 process, {torch.get_num_threads()} torch threads)",
                     times, 0.0))
        for noisy in ("distributed", "lloca_hep"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        if not args.skip_sync:
            times, scores = runs(lambda r: bench_score_files(
                inputs, tmp_path / f"sync{r}", model, step, "sync"))
            rows.append(("score_files, dask sync scheduler (1 process)", times,
                         float(np.max(np.abs(scores - reference)))))
        for n in args.workers:
            with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                          dashboard_address=None) as cluster, \
                    distributed.Client(cluster) as client:
                info = client.run(_warm_worker)
                threads = sorted({t for _, t in info.values()})
                # untimed warm-up on the workers (numba caches, model load once per worker)
                client.run(_warm_worker_scoring, [str(p) for p in tiny], model)
                times, scores = runs(lambda r, n=n: bench_score_files(
                    inputs, tmp_path / f"w{n}_{r}", model, step, None))
            rows.append((f"score_files, LocalCluster {n} worker(s) x 1 thread "
                         f"(torch threads/worker {threads})", times,
                         float(np.max(np.abs(scores - reference)))))

    print(f"\n{n_jets} jets in {args.files} files ({args.jets_per_file} jets each, "
          f"from {args.input.name}); model {model_desc}; step_size {step!r}; "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}\n")
    print("| configuration | first run s | best s | jets/s (best) | max |score diff| vs tag |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, times, diff in rows:
        best = min(times)
        print(f"| {name} | {times[0]:.1f} | {best:.1f} | {n_jets / best:.0f} | {diff:.1e} |")
    bad = [name for name, _, diff in rows if diff > SCORE_TOL]
    if bad:
        log.error("scores differ beyond %g in: %s", SCORE_TOL, bad)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
