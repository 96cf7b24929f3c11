"""Benchmark sample generation: jets per second by class and by worker count.

    python benchmarks/bench_generate.py [--jets 1000] [--workers 1 2]
    python benchmarks/bench_generate.py --classes QCD,Hbb,Hcc,Hgg,H4q,Hqql,Zqq,Wqq,Tbqq,Tbl --jets 500

Prints a markdown table. Top/QCD (default): each run generates ``--jets`` jets per class
(signal-only, background-only and the mixed sample). With ``--classes``: one single-class run
per class with one worker (its jets/s and jets per generated event), then, for each worker
count above 1 in ``--workers``, all the classes together. Every run writes a temporary file
with progress bars off; the wall time includes Pythia initialisation, worker start-up (spawn)
and writing the ROOT file.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import uproot

from lloca_hep.generate import generate_classes, generate_sample, parse_classes

SEED = 12345


def _time(n_signal: int, n_background: int, workers: int, directory: Path) -> float:
    path = directory / f"bench_{n_signal}_{n_background}_{workers}.root"
    t0 = time.perf_counter()
    generate_sample(path, n_signal, n_background, SEED, workers=workers, progress=False,
                    overwrite=True)
    return time.perf_counter() - t0


def _top_qcd(n: int, workers_list: list[int], directory: Path) -> None:
    print("| sample | workers | jets | wall [s] | jets/s | jets/s per worker |")
    print("| --- | --- | --- | --- | --- | --- |")
    runs = [("top (signal)", n, 0, 1), ("QCD (background)", 0, n, 1)]
    runs += [("top + QCD", n, n, w) for w in workers_list]
    for name, ns, nb, workers in runs:
        wall = _time(ns, nb, workers, directory)
        rate = (ns + nb) / wall
        print(f"| {name} | {workers} | {ns + nb} | {wall:.1f} | {rate:.0f} | "
              f"{rate / workers:.0f} |", flush=True)


def _time_classes(names: tuple[str, ...], n: int, workers: int, directory: Path,
                  max_constituents: int) -> tuple[float, dict[str, int]]:
    path = directory / f"bench_{'_'.join(names)}_{workers}.root"
    t0 = time.perf_counter()
    generate_classes(path, names, n, SEED, workers=workers, progress=False, overwrite=True,
                     max_constituents=max_constituents)
    wall = time.perf_counter() - t0
    with uproot.open(path) as f:
        n_events: dict[str, int] = json.loads(str(f["generation_config"]))["n_events"]
    return wall, n_events


def _ten_class(names: tuple[str, ...], n: int, workers_list: list[int], directory: Path,
               max_constituents: int) -> None:
    print("| classes | workers | jets | wall [s] | jets/s | jets/s per worker | jets/event |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    total_wall = 0.0
    for name in names:
        wall, n_events = _time_classes((name,), n, 1, directory, max_constituents)
        total_wall += wall
        print(f"| {name} | 1 | {n} | {wall:.1f} | {n / wall:.1f} | {n / wall:.1f} | "
              f"{n / n_events[name]:.2f} |", flush=True)
    print(f"| all, one after the other | 1 | {n * len(names)} | {total_wall:.1f} | "
          f"{n * len(names) / total_wall:.1f} | {n * len(names) / total_wall:.1f} | |")
    for workers in (w for w in workers_list if w > 1):
        wall, n_events = _time_classes(names, n, workers, directory, max_constituents)
        rate = n * len(names) / wall
        print(f"| all | {workers} | {n * len(names)} | {wall:.1f} | {rate:.1f} | "
              f"{rate / workers:.1f} | {n * len(names) / sum(n_events.values()):.2f} |",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jets", type=int, default=1000, help="jets per class per run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--classes", type=parse_classes, default=None,
                        help="benchmark the ten-class generator for these classes (comma list)")
    parser.add_argument("--max-constituents", type=int, default=128,
                        help="constituents kept per jet with --classes (default 128)")
    args = parser.parse_args()
    print(f"CPU cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        if args.classes is None:
            _top_qcd(args.jets, args.workers, directory)
        else:
            _ten_class(args.classes, args.jets, args.workers, directory, args.max_constituents)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
