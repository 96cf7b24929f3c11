"""A full epoch of the shipped tagger's recipe with DataLoader workers 0/1/2 against today's loop.

The recipe of ``lloca_hep/data/default_tagger.md``: LLoCa transformer
``{"hidden": 48, "blocks": 3, "heads": 3}``, 48 constituents, batch 128, AdamW lr 1e-3, cosine
schedule, one torch thread, CPU. Each run is one ``train()`` call with ``epochs=1`` in a fresh
subprocess (reading the training file + one epoch + validation + writing the tagger); the
baseline runs the same driver with ``PYTHONPATH`` set to another checkout (``--baseline``, the
code before issue 17). Runs are interleaved round by round so that the machine's load hits all
configurations alike; the script prints the median wall time per configuration, its ratio to
the baseline and the load average, and writes the rows as JSON (``--out``).

Two data regimes: in memory (the default memory limit; the recipe's 100k jets take 160 MB) and
streamed (``--stream-limit`` bytes, read again every epoch).

    python benchmarks/bench_loader.py --baseline /work/main --jets 20000 --repeat 3
    python benchmarks/bench_loader.py --input /work/data/train.root --val /work/data/val.root
    python benchmarks/bench_loader.py --breakdown 30 --repeat 3   # the bound, from CPU times

``--breakdown STEPS`` measures instead, with the thread CPU time of one process (robust under
load), what DataLoader workers could at best take off the training thread: one epoch's reading
+ padding (what streamed data cost every epoch), gathering the in-memory batches, and the
training steps (``STEPS`` of them, scaled to the epoch).

Without ``--input`` a training file of ``--jets`` jets is made by repeating the entries of
``lloca_hep/data/sample.root`` (4000 top/QCD jets) in clusters of 20,000 jets (as
``lloca-hep generate`` writes them); the validation file is ``sample.root`` itself.
Goal (issue 17): workers make the epoch at least 1.3x faster than today's loop on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "lloca_hep" / "data" / "sample.root"
RECIPE = dict(model="transformer", model_config={"hidden": 48, "blocks": 3, "heads": 3},
              max_constituents=48, batch_size=128, lr=1e-3, schedule="cosine", epochs=1,
              seed=1, num_threads=1, device="cpu", patience=None)
#: jets per basket when the training file is made here (lloca_hep.generate's WRITE_BATCH_JETS)
CLUSTER_JETS = 20_000

DRIVER = textwrap.dedent("""
    import json, os, resource, sys, time
    from lloca_hep.training import TrainConfig, train
    settings, train_file, val_file, out = json.loads(sys.argv[1]), *sys.argv[2:5]
    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.thread_time()
    result = train(train_file, TrainConfig(**settings), val_files=val_file, output_dir=out,
                   progress=False)
    wall, main_thread = time.perf_counter() - t0, time.thread_time() - c0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    h = result.history[0]
    print(json.dumps({"wall_s": wall, "main_thread_cpu_s": main_thread,
                      "workers_cpu_s": children.ru_utime + children.ru_stime,
                      "epoch_s": h["epoch_s"], "train_s": h["train_s"],
                      "n_train_jets": result.metadata["n_train_jets"],
                      "load_before": load0, "load_after": os.getloadavg()[0]}))
""")


def make_input(path: Path, n_jets: int, cluster: int = CLUSTER_JETS) -> Path:
    """``n_jets`` jets: the entries of sample.root repeated, written in clusters of
    ``cluster`` jets."""
    import awkward as ak
    import numpy as np
    import uproot

    src = uproot.open(SAMPLE)["jets"].arrays()
    reps = -(-n_jets // len(src))
    jets = ak.concatenate([src] * reps)[:n_jets]
    comps = ("px", "py", "pz", "energy")
    data = {"part": ak.zip({c: jets[f"part_{c}"] for c in comps}),
            **{k: ak.to_numpy(jets[k]) for k in jets.fields
               if k.startswith("jet_") or k == "is_signal"}}
    with uproot.recreate(path) as f:
        tree = f.mktree("jets", {k: (v.type if isinstance(v, ak.Array) else v.dtype)
                                 for k, v in data.items()}, counter_name=lambda _: "npart")
        for lo in range(0, n_jets, cluster):
            tree.extend({k: v[lo:lo + cluster] for k, v in data.items()})
    np.testing.assert_equal(uproot.open(path)["jets"].num_entries, n_jets)
    return path


def run(code_root: Path, settings: dict, train_file: Path, val_file: Path,
        work: Path) -> dict:
    out = Path(tempfile.mkdtemp(dir=work))
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    # cwd outside any checkout: `python -c` puts the working directory first on sys.path, which
    # would shadow PYTHONPATH when run from a checkout
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(settings), str(train_file),
                           str(val_file), str(out / "run")], env=env, capture_output=True,
                          text=True, check=False, cwd=work)
    if proc.returncode:
        raise RuntimeError(f"driver failed ({code_root}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


BREAKDOWN = textwrap.dedent("""
    import json, math, sys, time
    import numpy as np, torch
    torch.set_num_threads(1)
    from lloca_hep.models import build_model
    from lloca_hep.training.data import load_dataset
    from lloca_hep.training.epoch import batch_loss, forward, prepare_logits
    from lloca_hep.training.pieces import read_piece
    settings, train_file, steps = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    n_max, bs = settings["max_constituents"], settings["batch_size"]
    stream = load_dataset(train_file, max_constituents=n_max, memory_limit_bytes=1,
                          progress=False)
    memory = load_dataset(train_file, max_constituents=n_max, progress=False)
    pieces, _ = stream.plan(True, 0)
    read_piece(stream.source, pieces[0])  # warm-up (numba, imports)
    c0 = time.thread_time()
    for piece in pieces:
        read_piece(stream.source, piece)
    read_s = time.thread_time() - c0
    c0 = time.thread_time()
    batches = []
    for i, b in enumerate(memory.batches(bs, shuffle=True, seed=1)):
        if i < steps + 2:
            batches.append(b)
    gather_s = time.thread_time() - c0
    torch.manual_seed(0)
    net = build_model("LLoCaTransformer", settings["model_config"])
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    def step(b):
        loss = batch_loss(prepare_logits(forward(net, b, torch.device("cpu")), False),
                          b.labels, None, False)
        opt.zero_grad(); loss.backward(); opt.step()
    for b in batches[:2]:
        step(b)
    c0 = time.thread_time()
    for b in batches[2:]:
        step(b)
    step_s = (time.thread_time() - c0) / steps
    n_steps = math.ceil(len(memory) / bs)
    print(json.dumps({"jets": len(memory), "read_pad_s_per_epoch": read_s,
                      "gather_s_per_epoch": gather_s, "step_s": step_s,
                      "train_s_per_epoch": step_s * n_steps}))
""")


def breakdown(settings: dict, train_file: Path, steps: int) -> dict:
    """Thread CPU seconds of one epoch's reading + padding, batch gathering and steps."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", BREAKDOWN, json.dumps(settings),
                           str(train_file), str(steps)], env=env, capture_output=True,
                          text=True, check=False, cwd=train_file.parent)
    if proc.returncode:
        raise RuntimeError(f"breakdown failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, help="training file (default: made here)")
    parser.add_argument("--val", type=Path, default=SAMPLE, help="validation file")
    parser.add_argument("--jets", type=int, default=20_000, help="jets of the made file")
    parser.add_argument("--cluster", type=int, default=CLUSTER_JETS,
                        help="jets per cluster (basket) of the made file; a streamed piece is "
                             "at least one cluster, so reading overlaps training only from the "
                             "second cluster on")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="checkout of today's code (e.g. /work/main); omitted: no baseline")
    parser.add_argument("--workers", default="0,1,2", help="worker counts to time")
    parser.add_argument("--regimes", default="memory,stream", help="memory and/or stream")
    parser.add_argument("--stream-limit", type=int, default=8 * 1024**2,
                        help="memory limit (bytes) of the streamed regime")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (median reported)")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    parser.add_argument("--breakdown", type=int, default=0, metavar="STEPS",
                        help="instead: thread CPU time of one epoch's reading + padding and of "
                             "STEPS training steps, scaled to the epoch (the share that "
                             "workers can take off the training thread)")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench_loader_"))
    try:
        return _bench(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _bench(args: argparse.Namespace, work: Path) -> int:
    train_file = args.input or make_input(work / "train.root", args.jets, args.cluster)
    if args.breakdown:
        for r in range(args.repeat):
            row = breakdown(RECIPE, train_file, args.breakdown)
            train_s = row["train_s_per_epoch"]
            print(f"round {r + 1}: {row['jets']} jets, CPU s per epoch: reading + padding "
                  f"{row['read_pad_s_per_epoch']:.2f}, gathering in-memory batches "
                  f"{row['gather_s_per_epoch']:.2f}, training steps {train_s:.1f} "
                  f"({1e3 * row['step_s']:.0f} ms/step); best possible speed-up by workers: "
                  f"streamed {(train_s + row['read_pad_s_per_epoch']) / train_s:.3f}x, in "
                  f"memory {(train_s + row['gather_s_per_epoch']) / train_s:.4f}x; load "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
        return 0
    configs: list[tuple[str, Path, dict]] = []
    for regime in args.regimes.split(","):
        limit = {} if regime == "memory" else {"memory_limit_bytes": args.stream_limit}
        if args.baseline is not None:
            configs.append((f"{regime} baseline", args.baseline, {**RECIPE, **limit}))
        for w in (int(x) for x in args.workers.split(",")):
            configs.append((f"{regime} workers={w}", ROOT, {**RECIPE, **limit, "workers": w}))
    rows: dict[str, list[dict]] = {name: [] for name, _, _ in configs}
    for r in range(args.repeat):
        for name, code, settings in configs:
            row = run(code, settings, train_file, args.val, work)
            rows[name].append(row)
            print(f"round {r + 1} {name:24s} wall {row['wall_s']:7.1f} s  epoch "
                  f"{row['epoch_s']:7.1f} s  main thread CPU {row['main_thread_cpu_s']:7.1f} s"
                  f"  workers CPU {row['workers_cpu_s']:6.1f} s  load "
                  f"{row['load_before']:.1f}/{row['load_after']:.1f}", flush=True)
    print(f"\n{'configuration':24s} {'wall s':>8s} {'ratio':>6s} {'epoch s':>8s} "
          f"{'main CPU s':>10s} {'load':>5s}  (medians of {args.repeat})")
    summary = {}
    for name, _, _ in configs:
        med = {k: statistics.median(row[k] for row in rows[name])
               for k in ("wall_s", "epoch_s", "main_thread_cpu_s", "load_before")}
        base = f"{name.split()[0]} baseline"
        ratio = (statistics.median(x["wall_s"] for x in rows[base]) / med["wall_s"]
                 if base in rows else float("nan"))
        summary[name] = {**med, "speedup_vs_baseline": ratio}
        print(f"{name:24s} {med['wall_s']:8.1f} {ratio:6.2f} {med['epoch_s']:8.1f} "
              f"{med['main_thread_cpu_s']:10.1f} {med['load_before']:5.1f}")
    if args.out is not None:
        args.out.write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
