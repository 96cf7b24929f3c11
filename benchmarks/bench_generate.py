"""Benchmark sample generation: jets per second by class and by worker count.

    python benchmarks/bench_generate.py [--jets 1000] [--workers 1 2]

Prints a markdown table. Each run generates ``--jets`` jets per class (signal-only,
background-only and the mixed sample) into a temporary file with progress bars off; the wall
time includes Pythia initialisation, worker start-up (spawn) and writing the ROOT file.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from lloca_hep.generate import generate_sample

SEED = 12345


def _time(n_signal: int, n_background: int, workers: int, directory: Path) -> float:
    path = directory / f"bench_{n_signal}_{n_background}_{workers}.root"
    t0 = time.perf_counter()
    generate_sample(path, n_signal, n_background, SEED, workers=workers, progress=False,
                    overwrite=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jets", type=int, default=1000, help="jets per class per run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    n = args.jets
    print(f"CPU cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")
    print("| sample | workers | jets | wall [s] | jets/s | jets/s per worker |")
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        runs = [("top (signal)", n, 0, 1), ("QCD (background)", 0, n, 1)]
        runs += [("top + QCD", n, n, w) for w in args.workers]
        for name, ns, nb, workers in runs:
            wall = _time(ns, nb, workers, directory)
            rate = (ns + nb) / wall
            print(f"| {name} | {workers} | {ns + nb} | {wall:.1f} | {rate:.0f} | "
                  f"{rate / workers:.0f} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
