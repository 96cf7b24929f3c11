"""Where the time of ``lloca-hep tag`` goes inside the network (issue 16's profile).

Times the shipped tagger's forward pass on padded jets of a file, stage by stage, with forward
hooks on the model's top-level modules (frames: the frames net and the frame construction;
the embedding; each block's attention and MLP; the head; "inputs and glue" is the rest of the
forward pass: local features, masks, casts), in ``torch.inference_mode`` with one torch thread
and the batch size ``lloca-hep tag`` uses, batches in descending multiplicity as the scoring
does. A ``torch.profiler`` table of the heaviest operators follows (``--ops``).

    python benchmarks/profile_tag.py                        # shipped top tagger, sample x5
    python benchmarks/profile_tag.py --model jetclass --input lloca_hep/data/jetclass_sample.root

Prints markdown: stage, seconds, share, jets/s if that stage alone were the network.
"""

from __future__ import annotations

import argparse
import collections
import os
import time
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from lloca_hep import load_tagger
from lloca_hep.io import read_jets
from lloca_hep.preprocessing.inputs import network_inputs
from lloca_hep.tagger.scoring import DEFAULT_BATCH_SIZE


def _padded(tagger, path: Path, tile: int):
    features = tagger.inputs if len(tagger.inputs) else None
    jets = read_jets(path, jet_fields=[], features=features)
    padded = network_inputs(jets, tagger.inputs, tagger.max_constituents, tagger.sort_by_pt)
    p4, mask, scalars = padded.p4, padded.mask, padded.scalars
    order = np.argsort(-mask.sum(axis=1), kind="stable")
    p4, mask = np.tile(p4[order], (tile, 1, 1)), np.tile(mask[order], (tile, 1))
    if scalars is not None:
        scalars = np.tile(scalars[order], (tile, 1, 1))
    return p4, mask, scalars


def _stages(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    stages: dict[str, torch.nn.Module] = {}
    for name, child in model.named_children():
        if isinstance(child, torch.nn.ModuleList):
            for i, block in enumerate(child):
                subs = dict(block.named_children())
                if "attn" in subs and "mlp" in subs:
                    stages[f"{name}[{i}].attention"] = subs["attn"]
                    stages[f"{name}[{i}].mlp"] = subs["mlp"]
                else:
                    stages[f"{name}[{i}]"] = block
        else:
            stages[name] = child
    return stages


def _run(model, p4, mask, scalars, batch: int, stages) -> tuple[float, dict[str, float]]:
    spent: dict[str, float] = collections.defaultdict(float)
    started: dict[str, float] = {}
    handles = []
    for name, module in stages.items():
        handles.append(module.register_forward_pre_hook(
            lambda _m, _a, name=name: started.__setitem__(name, time.perf_counter())))
        handles.append(module.register_forward_hook(
            lambda _m, _a, _o, name=name: spent.__setitem__(
                name, spent[name] + time.perf_counter() - started[name])))
    t0 = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(p4), batch):
            n = max(int(mask[s:s + batch].sum(axis=1).max()), 1)  # trimmed, as the scoring does
            args = [torch.from_numpy(p4[s:s + batch, :n]), torch.from_numpy(mask[s:s + batch, :n])]
            if scalars is not None:
                args.append(torch.from_numpy(scalars[s:s + batch, :n]))
            model(*args)
    total = time.perf_counter() - t0
    for h in handles:
        h.remove()
    return total, dict(spent)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="tagger (path or shipped name)")
    parser.add_argument("--input", type=Path, default=None, help="ROOT file (default: shipped sample)")
    parser.add_argument("--tile", type=int, default=5, help="repeat the file's jets this often")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ops", type=int, default=12, help="operators in the profiler table")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    tagger = load_tagger(args.model)
    path = args.input or Path(str(resources.files("lloca_hep") / "data" / "sample.root"))
    p4, mask, scalars = _padded(tagger, path, args.tile)
    model = tagger.model.eval()
    stages = _stages(model)
    _run(model, p4[:512], mask[:512], None if scalars is None else scalars[:512],
         args.batch_size, stages)  # warm-up
    runs = [_run(model, p4, mask, scalars, args.batch_size, stages) for _ in range(args.repeat)]
    best = min(range(len(runs)), key=lambda i: runs[i][0])
    total, spent = runs[best]
    n_jets = len(p4)
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"# {args.model} on {path.name} x{args.tile}: {n_jets} jets, mean "
          f"{mask.sum(axis=1).mean():.1f} constituents, batch {args.batch_size}, 1 thread; "
          f"network {n_jets / total:.0f} jets/s (best of {args.repeat}: "
          f"{', '.join(f'{n_jets / r[0]:.0f}' for r in runs)}); load {load}")
    groups: dict[str, float] = collections.defaultdict(float)
    for name, sec in spent.items():
        key = name.split("].", 1)[1] if "]." in name else name.split("[")[0]
        groups[key] += sec
    groups["inputs and glue (rest of forward)"] = total - sum(spent.values())
    print("| stage | s | share | jets/s if alone |")
    print("| --- | --- | --- | --- |")
    for name, sec in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {sec:.3f} | {sec / total:.0%} | {n_jets / max(sec, 1e-9):.0f} |")
    if args.ops:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            _run(model, p4[:2048], mask[:2048], None if scalars is None else scalars[:2048],
                 args.batch_size, {})
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.ops)
        print("\n```\n" + table + "```")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
