"""I/O benchmark: reading jets (TTree, RNTuple) and writing friend score trees.

Writes a synthetic JetClass-like file (float32 ``part_*`` branches, mean 55 constituents) into a
temporary directory, then times

* plain ``uproot`` ``tree.arrays`` of the four constituent branches (baseline);
* ``lloca_hep.io.read_jets`` (adds float64 conversion, momentum checks, ``Momentum4D`` zip);
* ``iterate_jets`` in chunks, and the same followed by ``pad_flat`` to N = 128;
* the same file as an RNTuple;
* ``FriendTreeWriter`` with ZSTD(1), LZ4(1) and ZLIB(1), chunked like a scoring loop.

Usage::

    python benchmarks/bench_io.py                 # 200k jets
    python benchmarks/bench_io.py --n-jets 50000
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import awkward as ak  # noqa: E402
import numpy as np  # noqa: E402
import uproot  # noqa: E402

from lloca_hep.io import FriendTreeWriter, iterate_jets, read_jets  # noqa: E402
from lloca_hep.preprocessing import pad_jets  # noqa: E402

BRANCHES = ["part_px", "part_py", "part_pz", "part_energy"]


def make_data(n_jets: int, mean: float, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    counts = np.maximum(rng.poisson(mean, n_jets), 1)
    n = int(counts.sum())
    px, py, pz = (rng.normal(scale=30.0, size=n).astype(np.float32) for _ in range(3))
    energy = (np.sqrt(px.astype(np.float64) ** 2 + py**2 + pz**2) + 0.1).astype(np.float32)
    part = ak.unflatten(ak.zip({"px": px, "py": py, "pz": pz, "energy": energy}), counts)
    return {
        "part": part,
        "jet_pt": rng.uniform(500, 650, n_jets).astype(np.float32),
        "is_signal": rng.integers(0, 2, n_jets).astype(np.int32),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-jets", type=int, default=200_000)
    parser.add_argument("--mean", type=float, default=55.0)
    parser.add_argument("--step", type=int, default=50_000, help="jets per chunk")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many read timings")
    args = parser.parse_args()
    n = args.n_jets
    rows = []

    def report(name: str, seconds: float, extra: str = "") -> None:
        rows.append((name, seconds))
        print(f"{name:<52s} {seconds:7.3f} s  {n / seconds / 1e6:6.3f} M jets/s {extra}", flush=True)

    data = make_data(n, args.mean)
    print(f"jets: {n:,}  constituents: {int(ak.sum(ak.num(data['part']))):,}  chunk {args.step:,}")
    with tempfile.TemporaryDirectory() as tmp:
        ttree = Path(tmp) / "jets.root"
        rntuple = Path(tmp) / "jets_rn.root"
        t0 = time.perf_counter()
        with uproot.recreate(ttree, compression=uproot.ZSTD(1)) as f:
            f.mktree("jets", {k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in data.items()})
            for lo in range(0, n, args.step):
                f["jets"].extend({k: v[lo : lo + args.step] for k, v in data.items()})
        report("write input TTree (uproot, ZSTD(1))", time.perf_counter() - t0,
               f"{ttree.stat().st_size / 1e6:.0f} MB")
        with uproot.recreate(rntuple, compression=uproot.ZSTD(1)) as f:
            f["jets"] = data

        jets = read_jets(ttree, entry_stop=100)  # compile the checks outside the timings
        pad_jets(jets, 128)

        def best(fn) -> float:
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            return min(times)

        def iterate(pad: bool) -> None:
            for chunk in iterate_jets(ttree, step_size=args.step):
                if pad:
                    pad_jets(chunk.jets, 128)

        report("uproot tree.arrays (4 constituent branches)",
               best(lambda: uproot.open(ttree)["jets"].arrays(BRANCHES)))
        report("read_jets TTree", best(lambda: read_jets(ttree)))
        report("read_jets RNTuple", best(lambda: read_jets(rntuple)))
        report(f"iterate_jets TTree, step {args.step}", best(lambda: iterate(False)))
        report(f"iterate_jets + pad_jets(N=128), step {args.step}", best(lambda: iterate(True)))

        scores = np.random.default_rng(1).random(n).astype(np.float32)
        chunks = list(iterate_jets(ttree, step_size=args.step, jet_fields=[]))
        for comp in ("ZSTD", "LZ4", "ZLIB"):
            out = Path(tmp) / f"scores_{comp}.root"
            t0 = time.perf_counter()
            with FriendTreeWriter(out, compression=comp, inputs=[ttree]) as writer:
                for c in chunks:
                    writer.extend(scores[c.entry_start : c.entry_stop], c)
            report(f"FriendTreeWriter {comp}(1), step {args.step}", time.perf_counter() - t0,
                   f"{out.stat().st_size / 1e6:.2f} MB")
            assert np.array_equal(uproot.open(out)["scores"]["score"].array(library="np"), scores)


if __name__ == "__main__":
    main()
