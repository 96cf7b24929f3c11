"""Padding benchmark: numba kernels (lloca_hep.preprocessing) vs the pure-awkward route.

Synthetic ragged jets (Poisson constituent counts, mean 55 by default, float32 columns like
JetClass files) are padded to (n_jets, N, 4) float64 (E, px, py, pz) plus a mask, on one core.

* awkward route: ``ak.pad_none`` + ``ak.fill_none`` + ``ak.to_numpy`` per component into a
  preallocated float64 output (no pT sorting; the awkward route has none);
* numba ``pad_flat`` into a fresh output (page faults included), no sorting;
* numba ``pad_flat`` in batches into reused buffers (steady state of a scoring loop);
* numba ``pad_flat`` with pT sorting (the default of ``pad_jets``), on random-order input
  and on pT-ordered input (as JetClass files store it);
* ``pad_jets`` on the awkward array (includes extracting offsets/columns from awkward).

The outputs of the awkward and numba routes are checked to be identical.

Usage::

    python benchmarks/bench_padding.py                  # 1M jets, N = 128
    python benchmarks/bench_padding.py --n-jets 200000  # lighter, when the CPU is shared
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import awkward as ak  # noqa: E402
import numba  # noqa: E402
import numpy as np  # noqa: E402

from lloca_hep.preprocessing import argsort_by_pt, offsets_from_counts, pad_flat, pad_jets  # noqa: E402


def make_jets(n_jets: int, mean: float, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    counts = np.maximum(rng.poisson(mean, size=n_jets), 1).astype(np.int64)
    n = int(counts.sum())
    px, py, pz = (rng.normal(scale=30.0, size=n).astype(np.float32) for _ in range(3))
    energy = np.sqrt(px.astype(np.float64) ** 2 + py**2 + pz**2 + 0.01).astype(np.float32)
    return counts, [px, py, pz, energy]


def awkward_route(jets: ak.Array, n_max: int) -> tuple[np.ndarray, np.ndarray]:
    out = np.empty((len(jets), n_max, 4), dtype=np.float64)
    for k, name in enumerate(("E", "px", "py", "pz")):
        padded = ak.pad_none(jets[name], n_max, axis=1, clip=True)
        out[:, :, k] = ak.to_numpy(ak.fill_none(padded, 0.0))
    mask = ak.to_numpy(ak.fill_none(ak.pad_none(ak.ones_like(jets["px"], dtype=bool), n_max, clip=True), False))
    return out, mask


def timed(fn, repeats: int):
    """Best wall time and best CPU time (this process, user + system) over ``repeats``.

    On a shared machine the CPU time is the better measure of the work done: wall time also
    counts the time other processes held the core."""
    best = (np.inf, np.inf)
    result = None
    for _ in range(repeats):
        result = None
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        best = (min(best[0], wall), min(best[1], cpu))
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-jets", type=int, default=1_000_000)
    parser.add_argument("--mean", type=float, default=55.0, help="mean constituents per jet")
    parser.add_argument("--max-constituents", type=int, default=128)
    parser.add_argument("--batch", type=int, default=10_000, help="jets per batch in the batched run")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the numba runs (best kept)")
    parser.add_argument("--skip-awkward", action="store_true")
    args = parser.parse_args()
    numba.set_num_threads(1)
    n_max = args.max_constituents

    counts, cols = make_jets(args.n_jets, args.mean)
    offsets = offsets_from_counts(counts)
    print(f"# {platform.processor() or platform.machine()}, numba {numba.__version__} "
          f"threads {numba.get_num_threads()}, awkward {ak.__version__}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"jets: {args.n_jets:,}  constituents: {int(counts.sum()):,} (mean {counts.mean():.1f}, "
          f"max {counts.max()})  N = {n_max}  output float64 {args.n_jets * n_max * 32 / 1e9:.2f} GB")

    # compile outside the timings
    small = offsets_from_counts(counts[:100])
    pad_flat(small, *cols, max_constituents=n_max, sort_by_pt=False)
    pad_flat(small, *cols, max_constituents=n_max, sort_by_pt=True)

    rows = []

    def report(name: str, seconds: tuple[float, float]) -> None:
        wall, cpu = seconds
        rows.append((name, wall, cpu))
        print(f"{name:<62s} wall {wall:8.3f} s {args.n_jets / wall / 1e6:6.2f} M jets/s | "
              f"cpu {cpu:8.3f} s {args.n_jets / cpu / 1e6:6.2f} M jets/s", flush=True)

    t_ak = None
    if not args.skip_awkward:
        jets = ak.zip(
            {"px": ak.unflatten(cols[0], counts), "py": ak.unflatten(cols[1], counts),
             "pz": ak.unflatten(cols[2], counts), "E": ak.unflatten(cols[3], counts)}
        )
        pad_jets(jets[:100], n_max, sort_by_pt=False)  # compile outside the timings
        t_ak, (ref_p4, ref_mask) = timed(lambda: awkward_route(jets, n_max), 1)
        report("awkward pad_none+fill_none+to_numpy", t_ak)

    t_fresh, padded = timed(
        lambda: pad_flat(offsets, *cols, max_constituents=n_max, sort_by_pt=False), args.repeats
    )
    report("numba pad_flat, fresh output, no sort", t_fresh)
    if t_ak is not None:
        assert np.array_equal(padded.p4, ref_p4) and np.array_equal(padded.mask, ref_mask)
        print("  outputs identical to the awkward route")
        del ref_p4, ref_mask

    def batched(sort: bool | str):
        out = np.empty((args.batch, n_max, 4))
        mask = np.empty((args.batch, n_max), dtype=bool)
        for lo in range(0, args.n_jets, args.batch):
            hi = min(lo + args.batch, args.n_jets)
            pad_flat(offsets[lo : hi + 1], *cols, max_constituents=n_max, sort_by_pt=sort,
                     out=out[: hi - lo], mask_out=mask[: hi - lo])
        return out

    t_batch, _ = timed(lambda: batched(False), args.repeats)
    report(f"numba pad_flat, batches of {args.batch}, no sort", t_batch)
    t_sort, _ = timed(lambda: batched(True), args.repeats)
    report(f"numba pad_flat, batches of {args.batch}, pT sort (random order)", t_sort)
    t_trunc, _ = timed(lambda: batched("truncated"), args.repeats)
    report(f"numba pad_flat, batches of {args.batch}, sort only if n > N", t_trunc)
    # files such as JetClass store constituents pT-ordered already: the sort is one pass then
    order = argsort_by_pt(offsets, cols[0], cols[1])
    cols[:] = [c[order] for c in cols]
    t_sorted_in, _ = timed(lambda: batched(True), args.repeats)
    report(f"numba pad_flat, batches of {args.batch}, pT sort (pT-ordered input)", t_sorted_in)
    del padded
    if not args.skip_awkward:
        t_jets, _ = timed(lambda: pad_jets(jets, n_max, sort_by_pt=False), args.repeats)
        report("pad_jets(awkward array), fresh output, no sort", t_jets)
    if t_ak is not None:
        for k, kind in enumerate(("wall", "cpu")):
            print(f"speed-up over awkward ({kind} time): fresh output {t_ak[k] / t_fresh[k]:.1f}x, "
                  f"batched {t_ak[k] / t_batch[k]:.1f}x, batched with sort "
                  f"{t_ak[k] / t_sort[k]:.1f}x")


if __name__ == "__main__":
    main()
