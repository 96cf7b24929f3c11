"""Rows of docs/results.md: every tagger trained by the same loop, two budgets, one test set.

For each row (model + frame choice) and budget (``epochs``: the same number of epochs;
``time``: the same wall-time budget, with the cosine schedule annealing inside it) this trains
with :func:`lloca_hep.training.train` on the same jets, evaluates on the same independent test
jets and appends one JSON line to ``OUT/rows.jsonl``: accuracy, AUC, 1/eps_B at eps_S = 0.3 and
0.5, parameters, epochs, training time, inference jets/s (padding + network, this process's
torch threads) and the equivalent ``python -m lloca_hep.training`` command. Finished rows are
skipped, so the script can be rerun after an interruption.

    python benchmarks/results_table.py --train /work/data/train.root --val /work/data/val.root \
        --test /work/data/test.root --max-jets 20000 --epochs 2 --minutes 4 -o /work/runs/results

The ``reference`` row is the authors' ``lloca`` transformer (benchmarks/reference.py), registered
into the model registry for this process only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent

TRANSFORMER = {"hidden": 48, "blocks": 3, "heads": 3}
#: ParT at the transformer's width and depth (3 particle-attention blocks of 3 heads of 16, one
#: class-attention block, MLP ratio 4 as in the ParT paper, pair embedding 16 wide); weaver-core's
#: ParticleTransformer at the same configuration has the same parameters (+49 for its 2-logit head).
PART = {"embed_dims": [48, 96, 48], "pair_embed_dims": [16, 16, 16], "heads": 3, "blocks": 3,
        "class_blocks": 1}
#: ParticleNet at a comparable size: 12 neighbours, EdgeConv widths 32/64/96, 96-wide head.
PARTICLENET = {"neighbours": 12, "edge_dims": [[32, 32, 32], [64, 64, 64], [96, 96, 96]],
               "fc_dim": 96}
ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "lloca": ("LLoCaTransformer", {**TRANSFORMER, "frames": "learned"}),
    "identity": ("LLoCaTransformer", {**TRANSFORMER, "frames": "identity"}),
    "random": ("LLoCaTransformer", {**TRANSFORMER, "frames": "random"}),
    "global": ("LLoCaTransformer", {**TRANSFORMER, "frames": "global"}),
    "graphnet": ("LLoCaGraphNet", {"frames": "learned"}),
    "jet_mass": ("JetMassTagger", {}),
    "plain": ("plain_transformer", dict(TRANSFORMER)),
    "reference": ("ReferenceLLoCaTransformer", {"num_heads": 3, "blocks": 3}),
    "reference_identity": ("ReferenceLLoCaTransformer",
                           {"num_heads": 3, "blocks": 3, "frames": "identity"}),
    "llocapart": ("llocapart", {**PART, "frames": "learned"}),
    "llocapart_identity": ("llocapart", {**PART, "frames": "identity"}),
    "part": ("part", dict(PART)),
    "weaver_part": ("weaver_part", dict(PART)),
    "llocaparticlenet": ("llocaparticlenet", {**PARTICLENET, "frames": "learned"}),
    "llocaparticlenet_identity": ("llocaparticlenet", {**PARTICLENET, "frames": "identity"}),
    "particlenet": ("particlenet", dict(PARTICLENET)),
}
#: Safety stop for the equal-epochs budget (minutes), recorded when it triggers.
EPOCH_BUDGET_SAFETY_MINUTES = 25.0


def _register_reference() -> None:
    from lloca_hep.models import MODELS

    if "ReferenceLLoCaTransformer" not in MODELS:
        sys.path.insert(0, str(HERE))
        from reference import ReferenceLLoCaTransformer

        MODELS["ReferenceLLoCaTransformer"] = ReferenceLLoCaTransformer


def _register_weaver() -> None:
    sys.path.insert(0, str(HERE))
    from weaver_part import register

    register()


def _command(args: argparse.Namespace, name: str, config: dict[str, Any], budget: str,
             out: Path) -> str:
    if name in ("ReferenceLLoCaTransformer", "weaver_part"):
        row = name if name == "weaver_part" else (
            "reference" if config.get("frames", "learned") == "learned" else "reference_identity")
        return (f"python benchmarks/results_table.py --rows {row} --budgets {budget} "
                + _data_flags(args) + f" -o {args.output}")
    cmd = (f"python -m lloca_hep.training train {args.train} --val {args.val} "
           f"--max-jets {args.max_jets} --max-val-jets {args.max_val_jets} --model {name} "
           f"--config '{json.dumps(config)}' --max-constituents {args.max_constituents} "
           f"--batch-size {args.batch_size} --lr {args.lr} --seed {args.seed} --threads "
           f"{args.threads} --device cpu --patience 0 --features {args.features} ")
    if budget == "epochs":
        cmd += f"--epochs {args.epochs} --time-budget {EPOCH_BUDGET_SAFETY_MINUTES:g} "
    else:
        cmd += f"--epochs 1000 --time-budget {args.minutes:g} "
    cmd += (f"-o {out} && python -m lloca_hep.training evaluate {args.test} --max-jets "
            f"{args.max_test_jets} --model {out}/tagger.pt -o {out}/eval --device cpu")
    return cmd


def _data_flags(args: argparse.Namespace) -> str:
    return (f"--train {args.train} --val {args.val} --test {args.test} --max-jets "
            f"{args.max_jets} --max-val-jets {args.max_val_jets} --max-test-jets "
            f"{args.max_test_jets} --max-constituents {args.max_constituents} --epochs "
            f"{args.epochs} --minutes {args.minutes:g} --threads {args.threads} --features "
            f"{args.features}")


def run_row(args: argparse.Namespace, row: str, budget: str) -> dict[str, Any]:
    from lloca_hep.training import TrainConfig, train
    from lloca_hep.training.evaluate import evaluate

    name, config = ROWS[row]
    if name == "ReferenceLLoCaTransformer":
        _register_reference()
    if name == "weaver_part":
        _register_weaver()
    out = Path(args.output) / f"{row}_{budget}"
    t0 = time.perf_counter()
    settings = TrainConfig(
        model=name, model_config=config,
        epochs=args.epochs if budget == "epochs" else 1000,
        time_budget_s=60.0 * (EPOCH_BUDGET_SAFETY_MINUTES if budget == "epochs" else args.minutes),
        batch_size=args.batch_size, lr=args.lr, max_constituents=args.max_constituents,
        seed=args.seed, patience=None, max_jets=args.max_jets, max_val_jets=args.max_val_jets,
        device="cpu", num_threads=args.threads, resume=True, features=args.features,
    )
    result = train(args.train, settings, val_files=args.val, output_dir=out, progress=False)
    wall = time.perf_counter() - t0
    evaluation = evaluate(result.tagger, args.test, output_dir=out / "eval",
                          max_jets=args.max_test_jets, label=row, progress=False)
    metrics = evaluation.metrics
    epochs = sum(h["fraction"] for h in result.history)
    if hasattr(metrics, "macro_auc"):  # ten classes: accuracy, macro AUC, 1/eps_B per class
        quality: dict[str, Any] = {
            "accuracy": metrics.accuracy, "macro_auc": metrics.macro_auc,
            "rejection": {c: m.rejection for c, m in metrics.per_class.items()
                          if m.rejection is not None},
        }
        jets_per_s = evaluation.extra.get("jets_per_second")
    else:
        quality = {"accuracy": metrics.accuracy, "auc": metrics.auc,
                   "rejection_0.3": metrics.rejection_at(0.3),
                   "rejection_0.5": metrics.rejection_at(0.5)}
        jets_per_s = metrics.jets_per_second
    return {
        "row": row, "budget": budget, "model": name, "config": config,
        "features": args.features, **quality,
        "parameters": result.metadata["n_parameters"], "epochs": round(epochs, 2),
        "best_epoch": result.best_epoch, "stopped": result.stopped_reason,
        "training_s": result.metadata["training_time_s"], "wall_s": wall,
        "inference_jets_per_s": jets_per_s,
        "load_average": os.getloadavg()[0],
        "n_train": result.metadata["n_train_jets"], "n_test": metrics.n_jets,
        "command": _command(args, name, config, budget, out),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", required=True)
    p.add_argument("--val", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--max-jets", type=int, default=20000)
    p.add_argument("--max-val-jets", type=int, default=2000)
    p.add_argument("--max-test-jets", type=int, default=5000)
    p.add_argument("--max-constituents", type=int, default=48)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--minutes", type=float, default=4.0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--features", default="kin", help="per-particle inputs (kin, kinpid, full)")
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    p.add_argument("--budgets", nargs="+", default=["epochs", "time"], choices=["epochs", "time"])
    p.add_argument("-o", "--output", default="runs/results")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    table = out / "rows.jsonl"
    done = set()
    if table.exists():
        for line in table.read_text().splitlines():
            r = json.loads(line)
            done.add((r["row"], r["budget"]))
    for row in args.rows:  # row by row, so an interrupted run has both budgets of its rows
        for budget in args.budgets:
            if (row, budget) in done:
                continue
            try:
                record = run_row(args, row, budget)
            except Exception as exc:  # keep going; the failure is recorded, not hidden
                logging.exception("row %s (%s) failed", row, budget)
                record = {"row": row, "budget": budget, "error": f"{type(exc).__name__}: {exc}"}
            with open(table, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
