"""Issue 17: time of one training step of a LLoCa model against its identity-frame twin.

Usage::

    python benchmarks/bench_train.py                                  # transformer, shipped size
    python benchmarks/bench_train.py --n 48 128 --batch 128 --steps 15 --threads 1
    python benchmarks/bench_train.py --model llocapart --config '{}'   # LLoCa-ParT, registry size
    python benchmarks/bench_train.py --baseline /work/main            # before/after in one run
    python benchmarks/bench_train.py --unpadded                       # all N constituents real
    python benchmarks/bench_train.py --default-malloc                 # malloc as glibc starts

A step is train mode, forward, binary cross-entropy, backward and an AdamW step. The twin is the
same model and configuration with ``frames="identity"`` (``--twin-config`` overrides). Jets are
the shipped sample (``lloca_hep/data/sample.root``) padded to ``N`` constituents (realistic
multiplicities: at N = 128 most jets are padded), batches taken in turn from the file; with
``--unpadded`` toy jets with all ``N`` constituents real (:func:`lloca_hep.core.testing.toy_jets`).
The two models alternate step by step (the order flipped every round), after ``--warmup`` steps
each, so load from other processes hits both alike; the table gives the median wall-clock step
time, the median CPU time of the process and the LLoCa / twin ratio of the medians. With
``--baseline PATH`` the same measurement runs first in a subprocess with ``PYTHONPATH=PATH``
(another checkout, e.g. main before a change) and both appear in one table. Like ``lloca-hep
train``, the script raises glibc malloc's thresholds first (:mod:`lloca_hep._malloc`, where the
checkout has it); ``--default-malloc`` leaves them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

#: Shipped size of the transformer tagger (lloca_hep/data/default_tagger.pt).
SHIPPED_CONFIG = {"hidden": 48, "blocks": 3, "heads": 3}
SAMPLE = Path(__file__).resolve().parents[1] / "lloca_hep" / "data" / "sample.root"
LEARNING_RATE = 1e-4


def _batches(
    n: int, batch: int, unpadded: bool, count: int, seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``count`` batches ``(p4, mask, labels)`` of ``batch`` jets at ``N = n``."""
    gen = torch.Generator().manual_seed(seed)
    if unpadded:
        from lloca_hep.core.testing import toy_jets

        p4, mask = toy_jets(batch * count, n, min_constituents=n, seed=seed)
    else:
        from lloca_hep import read_jets
        from lloca_hep.preprocessing.padding import pad_jets

        padded = pad_jets(read_jets(SAMPLE), n)
        reps = -(-batch * count // padded.n_jets)
        p4 = torch.from_numpy(padded.p4).repeat(reps, 1, 1)[: batch * count]
        mask = torch.from_numpy(padded.mask).repeat(reps, 1)[: batch * count]
    labels = torch.randint(0, 2, (batch * count,), generator=gen).to(torch.float32)
    return [
        (p4[i * batch : (i + 1) * batch], mask[i * batch : (i + 1) * batch],
         labels[i * batch : (i + 1) * batch])
        for i in range(count)
    ]


def _stepper(model: torch.nn.Module) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]:
    opt = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    model.train()

    def step(p4: torch.Tensor, mask: torch.Tensor, y: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        logits = model(p4, mask)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()

    return step


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rows ``{n, lloca_ms, twin_ms, ratio, lloca_cpu_ms, twin_cpu_ms, mean_real}``."""
    from lloca_hep.models.registry import build_model, resolve_model_name

    name = resolve_model_name(args.model)
    torch.set_num_threads(args.threads)
    if not args.default_malloc:
        try:  # as `lloca-hep train` does (lloca_hep/_malloc.py); older checkouts lack it
            from lloca_hep._malloc import keep_freed_memory
        except ImportError:
            pass
        else:
            keep_freed_memory()
    config = json.loads(args.config)
    twin_config = {**config, "frames": "identity"}
    if args.twin_config:
        twin_config = {**config, **json.loads(args.twin_config)}
    rows = []
    for n in args.n:
        torch.manual_seed(0)
        models = {"lloca": build_model(name, config), "twin": build_model(name, twin_config)}
        steps = {k: _stepper(m) for k, m in models.items()}
        data = _batches(n, args.batch, args.unpadded, 4)
        wall: dict[str, list[float]] = {k: [] for k in models}
        cpu: dict[str, list[float]] = {k: [] for k in models}
        for r in range(args.warmup + args.steps):
            order = list(models) if r % 2 == 0 else list(models)[::-1]
            p4, mask, y = data[r % len(data)]
            for k in order:
                t0, c0 = time.perf_counter(), time.process_time()
                steps[k](p4, mask, y)
                t1, c1 = time.perf_counter(), time.process_time()
                if r >= args.warmup:
                    wall[k].append(1e3 * (t1 - t0))
                    cpu[k].append(1e3 * (c1 - c0))
        med = {k: statistics.median(v) for k, v in wall.items()}
        cmed = {k: statistics.median(v) for k, v in cpu.items()}
        rows.append(dict(
            n=n, lloca_ms=med["lloca"], twin_ms=med["twin"], ratio=med["lloca"] / med["twin"],
            lloca_cpu_ms=cmed["lloca"], twin_cpu_ms=cmed["twin"],
            cpu_ratio=cmed["lloca"] / cmed["twin"],
            mean_real=float(data[0][1].sum(1).float().mean()),
        ))
    return rows


def _table(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> str:
    lines = [
        f"model {args.model} {args.config}, twin frames=identity"
        f"{' ' + args.twin_config if args.twin_config else ''}, batch {args.batch}, "
        f"{args.threads} thread(s), {args.steps} steps (median), "
        f"{'unpadded' if args.unpadded else 'sample.root padded'}",
        "",
        "| code | N | mean real | LLoCa ms | twin ms | ratio | LLoCa CPU ms | twin CPU ms "
        "| CPU ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, rows in results.items():
        for r in rows:
            lines.append(
                f"| {label} | {r['n']} | {r['mean_real']:.1f} | {r['lloca_ms']:.1f} | "
                f"{r['twin_ms']:.1f} | {r['ratio']:.2f} | {r['lloca_cpu_ms']:.1f} | "
                f"{r['twin_cpu_ms']:.1f} | {r['cpu_ratio']:.2f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="transformer", help="registry name (default transformer)")
    ap.add_argument("--config", default=json.dumps(SHIPPED_CONFIG),
                    help="JSON configuration of the LLoCa model (default: the shipped size)")
    ap.add_argument("--twin-config", default="",
                    help="JSON overrides for the twin (default {\"frames\": \"identity\"})")
    ap.add_argument("--n", type=int, nargs="+", default=[48, 128], help="constituents N")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per model")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--unpadded", action="store_true", help="toy jets, all N constituents real")
    ap.add_argument("--default-malloc", action="store_true",
                    help="leave glibc malloc's thresholds as they are (train raises them)")
    ap.add_argument("--baseline", default="", help="another checkout, measured in a subprocess")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON only")
    args = ap.parse_args(argv)
    results: dict[str, list[dict[str, Any]]] = {}
    if args.baseline:
        cmd = [sys.executable, __file__, "--json"] + [
            a for a in (argv if argv is not None else sys.argv[1:])
        ]
        i = cmd.index("--baseline")
        del cmd[i : i + 2]
        env = {**os.environ, "PYTHONPATH": str(Path(args.baseline).resolve())}
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
        results[f"baseline {args.baseline}"] = json.loads(out.strip().splitlines()[-1])
    load_before = os.getloadavg()
    results["this checkout"] = measure(args)
    if args.json:
        print(json.dumps(results["this checkout"]))
        return
    print(_table(results, args))
    print(f"\nload average before/after the last measurement: "
          f"{' '.join(f'{x:.2f}' for x in load_before)} / "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
