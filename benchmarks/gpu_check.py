"""GPU check of issue 17: eager against ``torch.compile`` inference, an AMP training step, and
Lorentz invariance with AMP. Prepared to run in under 10 minutes on one GPU; never used by the
tests.

Usage::

    python benchmarks/gpu_check.py                          # CUDA, full sizes (batch 1024)
    python benchmarks/gpu_check.py --out result.json        # also write the numbers as JSON
    python benchmarks/gpu_check.py --device cpu --quick     # end to end on the CPU (small sizes)

Sections (each skipped, and said so, once ``--budget`` seconds are spent):

1. ``inference``: jets/s of the forward pass (eval, ``torch.no_grad``) at batch ``--batch``
   (1024) and N = 50 and 128 constituents (all real), for the LLoCa transformer (learned frames,
   default size) and the same network with identity frames, eager and compiled
   (``torch.compile``, backend ``--backend``, static shapes; the compile time is the first
   call's), plus eager under bf16 autocast. Median of ``--repeats`` timed calls after a
   warm-up, with ``torch.cuda.synchronize``.
2. ``train_step``: one optimizer step (forward, BCE loss, backward, gradient clipping, AdamW)
   at batch 256 (``--quick``: 32), N = 128, with ``--amp`` off, bf16 and fp16 (GradScaler),
   through :class:`lloca_hep.training.amp.TrainingModel` as in ``lloca-hep train``; ms per step
   and whether the loss stayed finite.
3. ``invariance``: the largest change of a logit under random float64 Lorentz transformations
   (rotations, boosts to rapidity 6, the last exactly 6) for the LLoCa transformer without
   symmetry breaking, with AMP off / bf16 / fp16, against the identity-frame network (which
   is not invariant), and the same in units of the AMP dtype's epsilon times the largest logit.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lloca_hep.core.lorentz import random_lorentz
from lloca_hep.core.testing import toy_jets
from lloca_hep.models import LLoCaTransformer
from lloca_hep.training.amp import AMP_DTYPES, TrainingModel, make_grad_scaler

#: Constituent counts of the inference table.
N_VALUES = (50, 128)
#: Batch of the training step (full run, --quick).
TRAIN_BATCH, TRAIN_BATCH_QUICK = 256, 32
#: Rapidity of the invariance check's boosts (project rule).
RAPIDITY = 6.0
#: Jets and transformations of the invariance check.
INVARIANCE_JETS, INVARIANCE_TRANSFORMS = 256, 8
#: Calls before timing (more for compiled models: the first ones compile and autotune).
WARMUP_CALLS = 3


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> tuple[float, float]:
    """(first-call seconds, median seconds of ``repeats`` later calls)."""
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    first = time.perf_counter() - t0
    for _ in range(WARMUP_CALLS - 1):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times)


def _jets(batch: int, n: int, device: torch.device, seed: int = 0,
          ) -> tuple[torch.Tensor, torch.Tensor]:
    p4, mask = toy_jets(batch, n, min_constituents=n, seed=seed)  # all constituents real
    return p4.to(device), mask.to(device)


def _model(frames: str, device: torch.device, symmetry_breaking: bool = True,
           ) -> LLoCaTransformer:
    torch.manual_seed(0)
    return LLoCaTransformer(frames=frames, symmetry_breaking=symmetry_breaking).to(device)


class Budget:
    """Wall-time budget of the whole check: sections past it are skipped."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def inference(args: argparse.Namespace, device: torch.device, budget: Budget,
              ) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for n in N_VALUES:
        p4, mask = _jets(args.batch, n, device)
        for frames in ("learned", "identity"):
            model = _model(frames, device).eval()
            modes: list[tuple[str, Callable[..., torch.Tensor]]] = [("eager", model)]
            if not args.no_compile:
                modes.append(("compiled", torch.compile(model, backend=args.backend,
                                                        dynamic=False)))
            modes.append(("eager-bf16", TrainingModel(model, amp="bf16",
                                                      device_type=device.type)))
            for mode, fn in modes:
                if budget.left() < 0:
                    rows.append({"N": n, "frames": frames, "mode": mode, "skipped": "budget"})
                    continue
                with torch.no_grad():
                    try:
                        first, median = _timed(lambda fn=fn, p4=p4, mask=mask: fn(p4, mask),
                                               device, args.repeats)
                    except Exception as exc:  # a compiler failure is a result, not a crash
                        rows.append({"N": n, "frames": frames, "mode": mode,
                                     "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
                        continue
                row = {"N": n, "frames": frames, "mode": mode, "batch": args.batch,
                       "jets_per_s": args.batch / median, "ms_per_call": 1e3 * median,
                       "first_call_s": first}
                rows.append(row)
                print(f"inference N={n:3d} {frames:8s} {mode:10s} "
                      f"{row['jets_per_s']:12.0f} jets/s  (first call {first:.1f} s)",
                      flush=True)
    return rows


def _train_step(net: torch.nn.Module, optimizer: torch.optim.Optimizer,
                scaler: torch.amp.GradScaler | None,
                batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], losses: list[float],
                ) -> Callable[[], None]:
    """One optimizer step as :class:`lloca_hep.training.epoch.Trainer` takes it (BCE loss,
    loss scaling for fp16, gradient clipping at 1, AdamW); appends the loss to ``losses``."""
    p4, mask, labels = batch
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step() -> None:
        loss = loss_fn(net(p4, mask).float().reshape(-1), labels)
        optimizer.zero_grad(set_to_none=True)
        (loss if scaler is None else scaler.scale(loss)).backward()
        if scaler is not None:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()
        losses.append(float(loss.detach()))
    return step


def train_step(args: argparse.Namespace, device: torch.device, budget: Budget,
               ) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    batch = TRAIN_BATCH_QUICK if args.quick else TRAIN_BATCH
    p4, mask = _jets(batch, 128, device, seed=1)
    labels = (torch.arange(batch, device=device) % 2).float()
    for amp in ("off", *AMP_DTYPES):
        if budget.left() < 0:
            rows.append({"amp": amp, "skipped": "budget"})
            continue
        model = _model("learned", device).train()
        net = TrainingModel(model, amp=amp, device_type=device.type)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        scaler = make_grad_scaler(amp, device)
        losses: list[float] = []
        step = _train_step(net, optimizer, scaler, (p4, mask, labels), losses)
        try:
            first, median = _timed(step, device, args.repeats)
        except Exception as exc:
            rows.append({"amp": amp, "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
            continue
        row = {"amp": amp, "batch": batch, "N": 128, "ms_per_step": 1e3 * median,
               "jets_per_s": batch / median, "first_step_s": first,
               "losses_finite": all(math.isfinite(v) for v in losses),
               "first_loss": losses[0], "last_loss": losses[-1]}
        rows.append(row)
        print(f"train step amp={amp:4s} {row['ms_per_step']:9.1f} ms/step "
              f"({row['jets_per_s']:.0f} jets/s), loss {losses[0]:.4f} -> {losses[-1]:.4f}",
              flush=True)
    return rows


def invariance(args: argparse.Namespace, device: torch.device, budget: Budget,
               ) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    n_jets = 32 if args.quick else INVARIANCE_JETS
    p4, mask = _jets(n_jets, 50, device, seed=2)
    gen = torch.Generator().manual_seed(3)
    transforms = torch.cat([
        random_lorentz(INVARIANCE_TRANSFORMS - 1, max_rapidity=RAPIDITY, generator=gen),
        random_lorentz(1, max_rapidity=RAPIDITY, exact_rapidity=True, generator=gen),
    ]).to(device)
    for frames in ("learned", "identity"):
        model = _model(frames, device, symmetry_breaking=False).eval()
        for amp in ("off", *AMP_DTYPES):
            if budget.left() < 0:
                rows.append({"frames": frames, "amp": amp, "skipped": "budget"})
                continue
            net = TrainingModel(model, amp=amp, device_type=device.type)
            with torch.no_grad():
                ref = net(p4, mask).double()
                change = max(float((net(torch.einsum("ij,bnj->bni", L, p4), mask).double()
                                    - ref).abs().max()) for L in transforms)
            dtype = AMP_DTYPES.get(amp, torch.float32)
            scale = float(ref.abs().max())
            units = change / (torch.finfo(dtype).eps * max(scale, 1e-12))
            rows.append({"frames": frames, "amp": amp, "max_logit_change": change,
                         "max_abs_logit": scale, "in_eps_times_logit": units})
            print(f"invariance {frames:8s} amp={amp:4s} max |dlogit| {change:.3g} "
                  f"(max |logit| {scale:.3g}; {units:.3g} x eps(dtype) x max|logit|)",
                  flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (batch 64, 3 timed calls): checks the script runs")
    parser.add_argument("--batch", type=int, default=None,
                        help="inference batch (default 1024; --quick: 64)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per measurement (default 20; --quick: 3)")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled models")
    parser.add_argument("--budget", type=float, default=540.0,
                        help="seconds after which the remaining measurements are skipped")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    args.batch = args.batch or (64 if args.quick else 1024)
    args.repeats = args.repeats or (3 if args.quick else 20)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --device cpu (and --quick)", file=sys.stderr)
        return 2
    budget = Budget(args.budget)
    t0 = time.perf_counter()
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else
        platform.processor() or platform.machine(),
        "torch": torch.__version__, "cuda": torch.version.cuda, "python": sys.version.split()[0],
        "threads": torch.get_num_threads(), "quick": args.quick, "backend": args.backend,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    print(f"device {result['device']}, torch {result['torch']}", flush=True)
    result["inference"] = inference(args, device, budget)
    result["train_step"] = train_step(args, device, budget)
    result["invariance"] = invariance(args, device, budget)
    result["total_s"] = time.perf_counter() - t0
    print(f"total {result['total_s']:.0f} s", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
