"""Forward throughput, FLOPs and equivariance error: our LLoCa models vs the reference ``lloca``.

Usage::

    python benchmarks/bench_models.py                 # full table (a few minutes on 2 cores)
    python benchmarks/bench_models.py --quick         # N=50 only, fewer repeats
    python benchmarks/bench_models.py --quick --no-reference --no-lgatr --no-graph  # overhead only
    python benchmarks/bench_models.py --twins         # issue 15: each LLoCa model against its twin
    python benchmarks/bench_models.py --memory        # issue 15: peak memory of ParT / LLoCa-ParT

Measures, on ``--threads`` CPU threads (default 2), forward jets/s (inference mode, eval) at
N = 50 and 128 constituents (all real) and batch 64 and 256 for

* ``ours-learned``: :class:`lloca_hep.models.LLoCaTransformer` (defaults, frames-net width matched
  to the reference: ``frames_hidden=64``), ``ours-identity``: the same backbone, identity frames;
* ``ours-graph-learned`` / ``ours-graph-identity``: :class:`lloca_hep.models.LLoCaGraphNet`;
* ``ref-learned`` / ``ref-identity``: the authors' ``lloca`` transformer at matched size
  (4 blocks, width 64, 4 heads of ``8x0n+2x1n``, MLP factor 2, frames net 64 wide);
* ``lgatr``: L-GATr (4 blocks, 8 multivector + 32 scalar channels, 4 heads).

Timings use the median (and best) of ``--repeats`` calls after a warm-up, each model interleaved
round-robin with its own baseline (see ``model_groups``) so that load from other processes hits
both alike. Wall-clock on a shared,
loaded machine is noisy, so the same table is also measured as the CPU time of the calling thread
with one intra-op thread (``time.thread_time``), which excludes time spent descheduled. FLOPs per jet come from
``torch.utils.flop_counter.FlopCounterMode`` (matrix products and attention only; elementwise
work is not counted). The equivariance error is the largest change of a logit under a random
Lorentz transformation of exact rapidity y, over the mean |logit| (64 jets, random weights,
float64 frames and float32 network for both implementations).

``--twins`` (issue 15) times every LLoCa model against its own plain twin (see
:data:`TWIN_PAIRS`: LLoCa-ParT / ParT, LLoCa-ParticleNet / ParticleNet, LLoCa transformer /
the same transformer with identity frames, LLoCa-ParticleNet / the LLoCa graph net, and
LLoCa-ParticleNet at the graph net's width / the graph net), registry defaults otherwise (the
papers' sizes for ParT and ParticleNet): inference (eval, ``inference_mode``,
batch ``--infer-batch``) and one training step (train mode, forward, binary cross-entropy,
backward, AdamW step, batch ``--train-batch``), all constituents real, the two models of a pair
alternated call by call (the order flipped every round), median of ``--repeats`` after a warm-up
call; wall clock and CPU time of the calling thread (with ``--threads 1``, the default here, the
thread does all the work).

``--memory`` (issue 15) runs every configuration of :data:`MEMORY_CONFIGS` (ParT and LLoCa-ParT,
inference and a training step, N = 128, batch 256) in fresh subprocesses, after warm-up calls
with two jets at the same N (numba compilation, caches, first-touch costs), and reports (1) the
peak resident memory of the process (``ru_maxrss``) and its increase by the measured call, and
(2) in a second process the peak of live tensor bytes during the call, from the allocations and
frees that ``torch.profiler`` records with ``profile_memory=True``. ``tracemalloc`` does not see
torch's allocations and torch keeps no allocator statistics on the CPU. (1) is what the machine
pays and includes memory that glibc's allocator keeps after frees (fragmentation, reusable by
the next call); (2) is what the tensors need.
``--memory-limit-gb`` caps the address space of each child, so that an implementation that needs
more fails with an allocation error instead of pushing the machine into swap or the OOM killer.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from lloca_hep.core.lorentz import apply, random_lorentz
from lloca_hep.core.testing import toy_jets
from lloca_hep.models import LLoCaGraphNet, LLoCaTransformer, build_model

log = logging.getLogger("bench_models")
#: Models slower than this per call (seconds) are timed once (their warm-up call).
SLOW_CALL_S = 4.0
#: Models faster than this per call (seconds) get an untimed call right before each timed one.
SETTLE_CALL_S = 0.5
#: Fast groups get more timed rounds, up to about this many seconds of timed calls per model
#: (the 2-vCPU VM has bursts of interference lasting seconds; a median over ~1 s of calls rides
#: them out) and at most MAX_REPEATS rounds.
MIN_TIMED_S = 1.5
MAX_REPEATS = 100
sys.path.insert(0, str(Path(__file__).resolve().parent))


#: Frames-net width of our learned models here: the reference's MLPVectors width.
MATCHED_FRAMES_HIDDEN = 64


#: glibc ``mallopt`` parameters and the value ``--steady-malloc`` gives them (bytes).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
STEADY_MALLOC_BYTES = 1 << 28


def steady_malloc() -> bool:
    """Keep freed memory in the process (glibc): large fresh temporaries then reuse pages instead
    of page-faulting on every call. Same effect as ``MALLOC_TRIM_THRESHOLD_`` and
    ``MALLOC_MMAP_THRESHOLD_`` in the environment; applies to every model alike."""
    path = ctypes.util.find_library("c")
    if path is None:
        return False
    libc = ctypes.CDLL(path)
    if not hasattr(libc, "mallopt"):
        return False
    return bool(
        libc.mallopt(M_TRIM_THRESHOLD, STEADY_MALLOC_BYTES)
        and libc.mallopt(M_MMAP_THRESHOLD, STEADY_MALLOC_BYTES)
    )


def build_models(
    include_reference: bool = True,
    include_lgatr: bool = True,
    include_graph: bool = True,
    frames_hidden: int = MATCHED_FRAMES_HIDDEN,
) -> dict:
    torch.manual_seed(0)
    models = {
        "ours-learned": LLoCaTransformer(frames="learned", frames_hidden=frames_hidden),
        "ours-identity": LLoCaTransformer(frames="identity"),
    }
    if include_graph:
        models["ours-graph-learned"] = LLoCaGraphNet(frames="learned", frames_hidden=frames_hidden)
        models["ours-graph-identity"] = LLoCaGraphNet(frames="identity")
    if include_reference:
        try:
            from reference import ReferenceLLoCaTransformer

            models["ref-learned"] = ReferenceLLoCaTransformer(frames="learned")
            models["ref-identity"] = ReferenceLLoCaTransformer(frames="identity")
        except ImportError as err:
            log.warning("reference lloca unavailable: %s", err)
    if include_lgatr:
        try:
            models["lgatr"] = LGATrTagger()
        except ImportError as err:
            log.warning("lgatr unavailable: %s", err)
    return {k: m.eval() for k, m in models.items()}


class LGATrTagger(torch.nn.Module):
    """L-GATr tagger with the common call: vectors p/100 GeV embedded, masked mean of scalars."""

    def __init__(self, blocks: int = 4, mv: int = 8, s: int = 32, heads: int = 4):
        super().__init__()
        from lgatr import LGATr

        self.net = LGATr(
            num_blocks=blocks,
            in_mv_channels=1,
            out_mv_channels=1,
            hidden_mv_channels=mv,
            in_s_channels=0,
            out_s_channels=0,
            hidden_s_channels=s,
            attention=dict(num_heads=heads),
            mlp=dict(),
        )

    def forward(self, p4, mask):
        from lgatr import embed_vector, extract_scalar

        mv = embed_vector((p4 / 100.0).float()[:, :, None])
        out, _ = self.net(mv, None, attn_mask=mask[:, None, None, :])
        s = extract_scalar(out)[..., 0, 0]
        m = mask.float()
        return (s * m).sum(1) / m.sum(1).clamp_min(1)


def time_models(
    models: dict, n: int, batch: int, repeats: int, clock=time.perf_counter
) -> dict[str, tuple[float, float]]:
    """(median, best) jets/s per model; models interleaved round-robin.

    A model whose warm-up call takes longer than ``SLOW_CALL_S`` is timed by that call alone.
    The number of rounds is at least ``repeats`` and, for fast groups, enough for about
    ``MIN_TIMED_S`` of timed calls per model (at most ``MAX_REPEATS``).
    A model faster than ``SETTLE_CALL_S`` gets an untimed call right before each timed one: the
    previous model in the round (e.g. L-GATr, hundreds of MB of temporaries) leaves the allocator
    in a state that makes the next model's fresh temporaries page-fault, which otherwise always
    penalises the model timed first in the round.
    """
    p4, mask = toy_jets(batch, n, min_constituents=n, seed=n + batch)
    times: dict[str, list[float]] = {k: [] for k in models}
    slow, settle = set(), set()
    longest = 0.0
    with torch.inference_mode():
        for k, m in models.items():  # warm-up (a second call for fast models: compile caches)
            t0 = clock()
            m(p4, mask)
            dt = clock() - t0
            if dt < SETTLE_CALL_S:
                t0 = clock()
                m(p4, mask)
                dt = clock() - t0
            if dt > SLOW_CALL_S:
                slow.add(k)
                times[k].append(dt)
            else:
                longest = max(longest, dt)
                if dt < SETTLE_CALL_S:
                    settle.add(k)
        rounds = max(repeats, min(MAX_REPEATS, int(MIN_TIMED_S / max(longest, 1e-6))))
        for _ in range(rounds):
            for k, m in models.items():
                if k in slow:
                    continue
                if k in settle:
                    m(p4, mask)
                t0 = clock()
                m(p4, mask)
                times[k].append(clock() - t0)
    return {k: (batch / statistics.median(v), batch / min(v)) for k, v in times.items()}


def flops_per_jet(models: dict, n: int, batch: int = 16) -> dict[str, float]:
    p4, mask = toy_jets(batch, n, min_constituents=n, seed=7)
    out = {}
    with torch.inference_mode():
        for k, m in models.items():
            fc = FlopCounterMode(display=False)
            with fc:
                m(p4, mask)
            out[k] = fc.get_total_flops() / batch
    return out


def frames_net_flops(n: int, batch: int = 16) -> dict[str, float]:
    """FLOPs per jet of the frames nets alone (ours vs reference)."""
    p4, mask = toy_jets(batch, n, min_constituents=n, seed=7)
    res = {}
    with torch.inference_mode():
        ours = LLoCaTransformer(frames="learned", frames_hidden=MATCHED_FRAMES_HIDDEN).eval()
        fc = FlopCounterMode(display=False)
        with fc:
            ours.frame_choice(p4, mask)
        res["ours"] = fc.get_total_flops() / batch
        try:
            from reference import ReferenceLLoCaTransformer

            ref = ReferenceLLoCaTransformer().eval()
            ref._frames(p4, mask)  # initialise edge standardisation
            fc = FlopCounterMode(display=False)
            with fc:
                ref._frames(p4, mask)
            res["reference"] = fc.get_total_flops() / batch
        except ImportError:
            pass
    return res


def equivariance(
    models: dict, rapidities=(0.5, 2.0, 4.0, 6.0)
) -> dict[str, dict[float, tuple[float, float, float]]]:
    """Per model and rapidity: (max |d logit| / mean |logit|, max |d logit|,
    max relative change of the score sigmoid(logit))."""
    p4, mask = toy_jets(64, 50, min_constituents=20, seed=11)
    out: dict[str, dict[float, tuple[float, float, float]]] = {}
    with torch.inference_mode():
        for k, m in models.items():
            s0 = m(p4, mask).double()
            out[k] = {}
            for i, y in enumerate(rapidities):
                lam = random_lorentz(64, max_rapidity=y, exact_rapidity=True, seed=500 + i)
                s1 = m(apply(lam[:, None], p4), mask).double()
                d = (s1 - s0).abs()
                score = ((torch.sigmoid(s1) - torch.sigmoid(s0)).abs() / torch.sigmoid(s0)).max()
                out[k][y] = ((d.max() / s0.abs().mean()).item(), d.max().item(), score.item())
    return out


def model_groups(models: dict) -> list[dict]:
    """Split the models into the round-robin groups timed together: ours (transformer), ours
    (graph), the reference, L-GATr. A learned model and its identity baseline are interleaved
    with each other only: a heavy neighbour in the round (L-GATr allocates GBs, the reference
    hundreds of MB) measurably slows whichever model is timed after it on this VM (N = 50,
    batch 64, 2 threads: ours-learned / ours-identity 1.50x when ours-learned followed L-GATr,
    1.40x when ours-identity did), which would bias the ratios by the order of the round."""
    prefixes = ("ours-learned", "ours-identity"), ("ours-graph-",), ("ref-",), ("lgatr",)
    groups = [
        {k: m for k, m in models.items() if any(k.startswith(p) for p in pre)} for pre in prefixes
    ]
    return [g for g in groups if g]


def throughput_tables(models, sizes, repeats, threads, clock, what) -> None:
    """Print jets/s and the overhead / speed-up ratios, measured with ``clock``."""
    torch.set_num_threads(threads)
    print(f"\n### Forward jets/s, {threads} thread(s), {what}\n")
    print("| N | batch | " + " | ".join(models) + " |")
    print("|---|---|" + "---|" * len(models))
    rates = {}
    for n in sizes:
        for b in (64, 256):
            r = {}
            for group in model_groups(models):  # each learned/identity pair side by side
                r.update(time_models(group, n, b, repeats, clock))
            rates[(n, b)] = r
            print(
                f"| {n} | {b} | "
                + " | ".join(f"{r[k][0]:.0f} ({r[k][1]:.0f})" for k in models)
                + " |"
            )
    print("\njets/s: median (best) of the repeats. Ratios from the median (best):\n")
    print(
        "| N | batch | ours overhead: learned time / identity time "
        "| ours-learned / ref-learned throughput | ref overhead: learned / identity time |"
    )
    print("|---|---|---|---|---|")

    def ratio(r, a, c):
        if a not in r or c not in r:
            return "n/a"
        return f"{r[a][0] / r[c][0]:.2f}x ({r[a][1] / r[c][1]:.2f}x)"

    for (n, b), r in rates.items():
        print(
            f"| {n} | {b} | {ratio(r, 'ours-identity', 'ours-learned')} "
            f"| {ratio(r, 'ours-learned', 'ref-learned')} "
            f"| {ratio(r, 'ref-identity', 'ref-learned')} |"
        )


#: Models of the twin benchmark: registry name and configuration (registry defaults otherwise).
TWIN_MODELS: dict[str, tuple[str, dict]] = {
    "llocapart": ("llocapart", {}),
    "part": ("part", {}),
    "llocaparticlenet": ("llocaparticlenet", {}),
    "particlenet": ("particlenet", {}),
    "transformer": ("LLoCaTransformer", {}),
    "transformer-identity": ("LLoCaTransformer", {"frames": "identity"}),
    "graphnet": ("LLoCaGraphNet", {}),
    # LLoCa-ParticleNet at the graph net's width: 3 EdgeConv blocks of two 64-wide layers
    "llocaparticlenet-64": ("llocaparticlenet", {"edge_dims": [[64, 64]] * 3, "fc_dim": 64}),
}
#: (LLoCa model, the model it is compared with); ratios are first / second in time.
TWIN_PAIRS = (
    ("llocapart", "part"),
    ("llocaparticlenet", "particlenet"),
    ("transformer", "transformer-identity"),
    ("llocaparticlenet", "graphnet"),
    ("llocaparticlenet-64", "graphnet"),
)
TWIN_SIZES = (50, 128)
TRAIN_BATCH = 128
INFER_BATCH = 128
TWIN_REPEATS = 3
#: Learning rate of the AdamW steps (any value: only the time is measured).
TWIN_LR = 1e-4
#: (model, "inference" or "train", N, batch) of ``--memory``.
MEMORY_CONFIGS = tuple(
    (m, kind, 128, 256) for m in ("part", "llocapart") for kind in ("inference", "train")
)
#: Warm-up calls of a memory child before the measured one (this many jets at the measured N):
#: numba compilation, caches, and the first-touch costs of that N.
MEMORY_WARMUP_JETS = 2
#: Warm-up training step of the twin benchmark (jets, constituents).
MEMORY_WARMUP = (2, 8)


def _twin_model(key: str) -> torch.nn.Module:
    name, config = TWIN_MODELS[key]
    torch.manual_seed(0)
    return build_model(name, config)


class _Stepper:
    """One model with its AdamW optimiser; ``infer`` and ``train`` are the timed calls."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.opt = torch.optim.AdamW(model.parameters(), lr=TWIN_LR)

    def infer(self, p4: torch.Tensor, mask: torch.Tensor) -> None:
        self.model.eval()
        with torch.inference_mode():
            self.model(p4, mask)

    def train(self, p4: torch.Tensor, mask: torch.Tensor) -> None:
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        logits = self.model(p4, mask).float()
        labels = (torch.arange(logits.shape[0]) % 2).to(logits.dtype)
        torch.nn.functional.binary_cross_entropy_with_logits(logits, labels).backward()
        self.opt.step()


def time_pair(steppers: dict[str, _Stepper], kind: str, n: int, batch: int,
              repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall s, thread CPU s) per call of ``kind`` ("infer"/"train") for the two models of
    ``steppers``, alternated call by call, the order flipped every round, after one warm-up."""
    p4, mask = toy_jets(batch, n, min_constituents=n, seed=n + batch)
    keys = list(steppers)
    for k in keys:
        getattr(steppers[k], kind)(p4, mask)
    wall: dict[str, list[float]] = {k: [] for k in keys}
    cpu: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(repeats):
        for k in keys if r % 2 == 0 else keys[::-1]:
            w0, c0 = time.perf_counter(), time.thread_time()
            getattr(steppers[k], kind)(p4, mask)
            cpu[k].append(time.thread_time() - c0)
            wall[k].append(time.perf_counter() - w0)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in keys}


def twins_table(pairs, sizes, infer_batch: int, train_batch: int, repeats: int) -> None:
    """Print the twin table of issue 15 (see the module docstring)."""
    needed = {k for pair in pairs for k in pair}
    steppers = {k: _Stepper(_twin_model(k)) for k in TWIN_MODELS if k in needed}
    # a training call first: a tensor cached under inference_mode cannot enter autograd later
    warm_p4, warm_mask = toy_jets(*MEMORY_WARMUP, min_constituents=2, seed=1)
    for s in steppers.values():
        s.train(warm_p4, warm_mask)
    print("| pair (LLoCa / twin) | N | inference jets/s, LLoCa / twin (CPU) | inference ratio "
          "CPU (wall) | train step s, LLoCa / twin (CPU) | train ratio CPU (wall) |")
    print("|---|---|---|---|---|---|")
    for a, b in pairs:
        for n in sizes:
            pair = {a: steppers[a], b: steppers[b]}
            inf = time_pair(pair, "infer", n, infer_batch, repeats)
            tr = time_pair(pair, "train", n, train_batch, repeats)
            print(f"| {a} / {b} | {n} | {infer_batch / inf[a][1]:.0f} / {infer_batch / inf[b][1]:.0f}"
                  f" | **{inf[a][1] / inf[b][1]:.2f}x** ({inf[a][0] / inf[b][0]:.2f}x)"
                  f" | {tr[a][1]:.2f} / {tr[b][1]:.2f}"
                  f" | **{tr[a][1] / tr[b][1]:.2f}x** ({tr[a][0] / tr[b][0]:.2f}x) |", flush=True)
    print(f"\nratio: LLoCa time / twin time (median of {repeats}); inference batch {infer_batch}, "
          f"training batch {train_batch}; load average {os.getloadavg()[0]:.2f} at the end")
    keys = [k for k in TWIN_MODELS if k in needed]
    print("\nForward MFLOP per jet (FlopCounterMode: matrix products and attention) and "
          "parameters:\n")
    print("| model | parameters | " + " | ".join(f"N = {n}" for n in sizes) + " |")
    print("|---|---|" + "---|" * len(sizes))
    for k in keys:
        model = steppers[k].model.eval()
        flops = [flops_per_jet({k: model}, n, batch=4)[k] / 1e6 for n in sizes]
        params = sum(q.numel() for q in model.parameters())
        print(f"| {k} | {params} | " + " | ".join(f"{f:.1f}" for f in flops) + " |")


def _live_tensor_peak(fn) -> float:
    """MiB: the highest sum of live tensor bytes during ``fn()``, from the allocations and frees
    that ``torch.profiler`` records with ``profile_memory=True`` (every op, forward and
    backward), relative to the start."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak / 2**20


def memory_child(model_key: str, kind: str, n: int, batch: int, limit_gb: float,
                 method: str) -> dict:
    """Memory of one call in this (fresh) process; see the module docstring. ``method``
    "rss": the peak resident set (``ru_maxrss``) and its increase by the call; "tensors": the
    peak of live tensor bytes during the call (:func:`_live_tensor_peak`)."""
    if limit_gb > 0:
        cap = int(limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    stepper = _Stepper(_twin_model(model_key))
    call = getattr(stepper, "infer" if kind == "inference" else "train")
    call(*toy_jets(MEMORY_WARMUP_JETS, n, min_constituents=n, seed=1))  # warm-up, same kind
    p4, mask = toy_jets(batch, n, min_constituents=n, seed=n + batch)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    t0 = time.perf_counter()
    try:
        if method == "tensors":
            return {"tensors_mb": _live_tensor_peak(lambda: call(p4, mask))}
        call(p4, mask)
    except (RuntimeError, MemoryError) as err:  # the address-space cap
        return {"error": str(err).splitlines()[0][:200], "before_mb": before}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"before_mb": before, "peak_mb": peak, "seconds": time.perf_counter() - t0}


def _memory_run(args: list[str]) -> dict:
    r = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args],
                       capture_output=True, text=True)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode or not lines:
        tail = r.stderr.strip().splitlines()[-1:] or [""]
        return {"error": f"exit {r.returncode}: {tail[0][:80]}"}
    return json.loads(lines[-1])


def memory_table(limit_gb: float, threads: int, batches: list[int] | None = None) -> None:
    """Print the memory of :data:`MEMORY_CONFIGS` (at each of ``batches`` instead of their
    batch, if given), two fresh subprocesses each (resident set; live tensors)."""
    import lloca_hep

    print(f"lloca_hep from {Path(lloca_hep.__file__).parent}\n")
    print("| model | call | N | batch | peak RSS MB | RSS increase by the call MB "
          "| live tensor peak MB | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    configs = [(m, k, n, b) for m, k, n, b0 in MEMORY_CONFIGS for b in (batches or [b0])]
    for model_key, kind, n, batch in configs:
        base = ["--memory-child", f"{model_key},{kind},{n},{batch}", "--memory-limit-gb",
                str(limit_gb), "--threads", str(threads)]
        rss = _memory_run([*base, "--memory-method", "rss"])
        cells = [f"{model_key} | {kind} | {n} | {batch}"]
        if "error" in rss:
            cells += [f"refused at {limit_gb:g} GB address space ({rss['error'][:50]})", "", "",
                      ""]
        else:
            tensors = _memory_run([*base, "--memory-method", "tensors"])
            cells += [f"{rss['peak_mb']:.0f}", f"{rss['peak_mb'] - rss['before_mb']:.0f}",
                      f"{tensors['tensors_mb']:.0f}" if "tensors_mb" in tensors else "n/a",
                      f"{rss['seconds']:.1f}"]
        print("| " + " | ".join(cells) + " |", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default 2; 1 with --twins: CPU time of the thread)")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls per model (default 5)")
    ap.add_argument("--quick", action="store_true", help="N=50 only, 3 repeats unless --repeats")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--no-lgatr", action="store_true")
    ap.add_argument("--no-graph", action="store_true", help="skip the LLoCa graph nets")
    ap.add_argument(
        "--steady-malloc",
        action="store_true",
        help="glibc mallopt: keep freed memory (removes page-fault noise for every model)",
    )
    ap.add_argument(
        "--frames-hidden",
        type=int,
        default=MATCHED_FRAMES_HIDDEN,
        help="frames-net width of our learned models (matched to the reference: 64; default "
        "of LLoCaTransformer: 32)",
    )
    ap.add_argument(
        "--no-cpu-time", action="store_true", help="skip the single-thread CPU-time tables"
    )
    ap.add_argument(
        "--equivariance-only", action="store_true", help="only the equivariance-error table"
    )
    ap.add_argument("--twins", action="store_true",
                    help="issue 15: each LLoCa model against its plain twin (inference, train step)")
    ap.add_argument("--pairs", default=None,
                    help="with --twins: comma-separated pairs of TWIN_PAIRS to run, by first "
                    "model (all its pairs) or as 'first+second' (e.g. llocapart,"
                    "llocaparticlenet+graphnet)")
    ap.add_argument("--sizes", default=",".join(map(str, TWIN_SIZES)),
                    help="with --twins: constituents N, comma-separated")
    ap.add_argument("--train-batch", type=int, default=TRAIN_BATCH)
    ap.add_argument("--infer-batch", type=int, default=INFER_BATCH)
    ap.add_argument("--memory", action="store_true",
                    help="issue 15: peak memory of ParT / LLoCa-ParT, one subprocess each")
    ap.add_argument("--memory-limit-gb", type=float, default=12.0,
                    help="address-space cap of each --memory child (0: none)")
    ap.add_argument("--memory-batches", default=None,
                    help="with --memory: comma-separated batch sizes instead of 256")
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--memory-method", default="rss", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads is None:
        args.threads = 1 if args.twins else 2
    if args.memory_child:
        torch.set_num_threads(args.threads)
        key, kind, n, batch = args.memory_child.split(",")
        print(json.dumps(memory_child(key, kind, int(n), int(batch), args.memory_limit_gb,
                                      args.memory_method)))
        return
    if args.memory:
        batches = [int(b) for b in args.memory_batches.split(",")] if args.memory_batches else None
        memory_table(args.memory_limit_gb, args.threads, batches)
        return
    if args.twins:
        torch.set_num_threads(args.threads)
        pairs = list(TWIN_PAIRS)
        if args.pairs:
            want = args.pairs.split(",")
            pairs = [p for p in pairs if p[0] in want or "+".join(p) in want]
        print(f"torch {torch.__version__}, {args.threads} thread(s)\n")
        twins_table(pairs, [int(x) for x in args.sizes.split(",")], args.infer_batch,
                    args.train_batch, args.repeats if args.repeats is not None else TWIN_REPEATS)
        return
    if args.steady_malloc:
        log.info("steady malloc (glibc mallopt): %s", steady_malloc())
    torch.set_num_threads(args.threads)
    models = build_models(
        not args.no_reference, not args.no_lgatr, not args.no_graph, args.frames_hidden
    )
    sizes = [50] if args.quick else [50, 128]
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 5)

    print(f"torch {torch.__version__}\n")
    if not args.equivariance_only:
        throughput_tables(models, sizes, repeats, args.threads, time.perf_counter, "wall-clock")
        if not args.no_cpu_time:
            throughput_tables(models, sizes, repeats, 1, time.thread_time, "CPU time of the thread")
        torch.set_num_threads(args.threads)
        print("\nFLOPs per jet (MFLOP, FlopCounterMode):\n")
        print("| N | " + " | ".join(models) + " | frames net ours | frames net ref |")
        print("|---|" + "---|" * (len(models) + 2))
        for n in sizes:
            f = flops_per_jet(models, n)
            fn = frames_net_flops(n)
            print(
                f"| {n} | "
                + " | ".join(f"{f[k] / 1e6:.1f}" for k in models)
                + f" | {fn.get('ours', float('nan')) / 1e6:.2f} | {fn.get('reference', float('nan')) / 1e6:.1f} |"
            )
    eq_models = {
        k: models[k] for k in ("ours-learned", "ours-graph-learned", "ref-learned") if k in models
    }
    eq_models["ours-learned-no-sb"] = LLoCaTransformer(
        frames="learned", symmetry_breaking=False
    ).eval()
    eq = equivariance(eq_models)
    print(
        "\nEquivariance error (float64 frames, float32 network, random weights), each cell: "
        "max |d logit| / mean |logit|; max |d logit|; max relative change of sigmoid(logit):\n"
    )
    print("| model | " + " | ".join(f"y={y}" for y in (0.5, 2.0, 4.0, 6.0)) + " |")
    print("|---|---|---|---|---|")
    for k, v in eq.items():
        print(
            f"| {k} | " + " | ".join(f"{a:.1e}; {b:.1e}; {c:.1e}" for a, b, c in v.values()) + " |"
        )
    print(
        "\n(ours-learned/ours-graph-learned use symmetry_breaking=True, so they are not meant to be "
        "invariant; ours-learned-no-sb is the invariant configuration.)"
    )


if __name__ == "__main__":
    main()
