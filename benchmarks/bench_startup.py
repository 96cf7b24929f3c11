"""Start-up cost of ``lloca-hep tag`` and throughput on cores shared with another process.

(a) ``startup``: ``python -m lloca_hep tag`` on a 100-jet file (the first 100 jets of the shipped
``sample.root``, written to a temporary folder) as a subprocess, for two source trees:
``--baseline`` (e.g. the unchanged main checkout) and ``--tree`` (default: the tree holding this
script), each put first on ``PYTHONPATH``. Runs are interleaved round by round. Per tree:

* a *first run*: a fresh ``NUMBA_CACHE_DIR`` (numba compiles every kernel);
* *later runs*: the same cache again (numba loads the kernels), median of ``--repeat``;
* ``lloca-hep --help``, median of ``--repeat``.

Python's bytecode goes to a temporary ``PYTHONPYCACHEPREFIX`` (written by an untimed warm-up
run), as for an installed package; ``PYTHONDONTWRITEBYTECODE`` is removed. Wall time and the CPU
time of the child (user + system) are reported; on a shared machine read the CPU times and the
ratios. ``--threads 1`` is passed to every ``tag`` so that only the start-up differs. With
``--importtime`` the later run of ``--tree`` is repeated once under ``python -X importtime``
and the packages that take the most import time are listed.

(b) ``contention``: ``--busy`` processes (default: one per usable core) spin in Python loops;
once the one-minute load average has risen (at most ``--settle`` seconds), this process scores
a 2000-jet file with :func:`lloca_hep.inference.tag_file` (tagger loaded once, one untimed
warm-up) with 1 thread, 2 threads and the thread policy of :mod:`lloca_hep._threads` (as a
fresh process would choose), interleaved, median of ``--repeat`` passes each; jets/s and the
load average are reported. The busy processes are stopped at the end.

Usage::

    python benchmarks/bench_startup.py startup --baseline /work/main --repeat 5 --importtime
    python benchmarks/bench_startup.py contention --repeat 3
    python benchmarks/bench_startup.py all --baseline /work/main
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
#: Jets of the start-up file and of the contention file.
STARTUP_JETS = 100
CONTENTION_JETS = 2000
#: A busy competitor: a Python loop that never sleeps.
BUSY_LOOP = "while True:\n    pass\n"
#: The steps of ``lloca-hep tag`` one after the other, each timed (wall and process CPU), in a
#: fresh interpreter: what the rest of a later run's start-up goes into.
PHASES_PROBE = """
import sys, time
marks = [("start", time.perf_counter(), time.process_time())]
def mark(name):
    marks.append((name, time.perf_counter(), time.process_time()))
import lloca_hep.cli
lloca_hep.cli.build_parser()
mark("python start, build the parser")
if CONSOLE:
    from lloca_hep._jit import skip_numba_extensions
    skip_numba_extensions()
import torch
torch.set_num_threads(1)
mark("import torch")
import lloca_hep.inference, lloca_hep.io
mark("import the rest (numba, awkward, uproot, vector, lloca_hep)")
from lloca_hep.tagger import load_tagger
tagger = load_tagger(None, device="cpu")
mark("load the shipped tagger")
from lloca_hep.io import iterate_jets
chunk = next(iter(iterate_jets(PATH, jet_fields=[])))
mark("read 100 jets (first numba kernel: numba start-up + cache load)")
from lloca_hep.preprocessing import pad_jets
padded = pad_jets(chunk.jets, max_constituents=tagger.max_constituents)
mark("pad (one more kernel from the cache)")
scores = tagger.score_padded(padded.p4, padded.mask)
mark("first forward pass (frame kernels from the cache, torch's first call)")
scores = tagger.score_padded(padded.p4, padded.mask)
mark("second forward pass")
from lloca_hep.io import FriendTreeWriter
with FriendTreeWriter(OUT, overwrite=True) as writer:
    writer.extend(scores, chunk)
mark("write the friend tree")
for (_, w0, c0), (name, w1, c1) in zip(marks, marks[1:]):
    print(f"{name}\t{w1 - w0:.3f}\t{c1 - c0:.3f}")
"""


def _sample() -> Path:
    return HERE / "lloca_hep" / "data" / "sample.root"


def write_jets(path: Path, n_jets: int) -> Path:
    """The first ``n_jets`` entries of the shipped sample, tree ``jets``, written to ``path``."""
    import uproot

    with uproot.open(_sample()) as f:
        arrays = f["jets"].arrays(entry_stop=n_jets)
    with uproot.recreate(path) as f:
        f["jets"] = {name: arrays[name] for name in arrays.fields}
    return path


def _load() -> float:
    return os.getloadavg()[0]


def _env(tree: Path, pycache: Path, numba_cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "NUMBA_CACHE_DIR")}
    env.update(PYTHONPATH=str(tree), PYTHONPYCACHEPREFIX=str(pycache),
               NUMBA_CACHE_DIR=str(numba_cache))
    return env


def timed_run(cmd: Sequence[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """``(wall s, child CPU s)`` of ``cmd``; raises on a non-zero exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(list(cmd), env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def importtime_table(cmd: Sequence[str], env: dict[str, str], cwd: Path,
                     top: int = 12) -> list[tuple[str, float]]:
    """Self import time per top-level package (ms) of ``cmd`` run under ``-X importtime``."""
    res = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], env=env, cwd=cwd,
                         capture_output=True, text=True, check=True)
    per_package: dict[str, float] = defaultdict(float)
    for line in res.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if m:
            per_package[m[2].split(".")[0]] += int(m[1]) / 1e3
    return sorted(per_package.items(), key=lambda kv: -kv[1])[:top]


def bench_startup(args: argparse.Namespace, work: Path) -> None:
    jets = write_jets(work / "jets100.root", STARTUP_JETS)
    trees = {"before": args.baseline.resolve(), "after": args.tree.resolve()}
    tag = [sys.executable, "-m", "lloca_hep", "tag", str(jets), "-o", str(work / "out.root"),
           "--overwrite", "--no-progress", "--threads", "1"]
    helpcmd = [sys.executable, "-m", "lloca_hep", "--help"]
    results: dict[str, dict[str, list[tuple[float, float]]]] = {
        name: defaultdict(list) for name in trees}
    envs = {}
    for name, tree in trees.items():  # untimed: writes the bytecode of both trees
        envs[name] = _env(tree, work / f"pyc-{name}", work / f"numba-{name}-warm")
        timed_run(tag, envs[name], work)
    load0 = _load()
    for k in range(args.first_runs):  # fresh numba cache each time
        for name, tree in trees.items():
            env = _env(tree, work / f"pyc-{name}", work / f"numba-{name}-first{k}")
            results[name]["first"].append(timed_run(tag, env, work))
    for _ in range(args.repeat):
        for name in trees:
            results[name]["later"].append(timed_run(tag, envs[name], work))
            results[name]["help"].append(timed_run(helpcmd, envs[name], work))
    load1 = _load()
    print(f"## start-up: python -m lloca_hep tag on {STARTUP_JETS} jets (--threads 1); "
          f"1-min load {load0:.2f} at the start, {load1:.2f} at the end; "
          f"{os.cpu_count()} cores")
    for name, tree in trees.items():
        print(f"#   {name}: PYTHONPATH={tree}")
    print("| what | runs | before wall s | after wall s | before CPU s | after CPU s "
          "| after/before CPU |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for what, label in (("first", "`tag`, first run (fresh numba cache)"),
                        ("later", "`tag`, later runs (numba cache filled)"),
                        ("help", "`lloca-hep --help`")):
        b, a = results["before"][what], results["after"][what]
        bw, aw = statistics.median(w for w, _ in b), statistics.median(w for w, _ in a)
        bc, ac = statistics.median(c for _, c in b), statistics.median(c for _, c in a)
        print(f"| {label} | {len(a)} | {bw:.2f} | {aw:.2f} | {bc:.2f} | {ac:.2f} "
              f"| {ac / bc:.2f} |")
    for name in trees:
        print(f"#   {name} per run (wall/CPU s): " + "; ".join(
            f"{what} " + ", ".join(f"{w:.2f}/{c:.2f}" for w, c in runs)
            for what, runs in results[name].items()))
    floor = {"python -c pass": [sys.executable, "-c", "pass"],
             "import torch": [sys.executable, "-c", "import torch"],
             "import torch, numba, awkward, uproot, vector":
                 [sys.executable, "-c", "import torch, numba, awkward, uproot, vector"]}
    for label, cmd in floor.items():
        runs = [timed_run(cmd, envs["after"], work) for _ in range(args.repeat)]
        print(f"#   floor: {label}: median wall {statistics.median(w for w, _ in runs):.2f} s, "
              f"CPU {statistics.median(c for _, c in runs):.2f} s")
    if args.importtime:
        print("#   import time of a later `tag` run of 'after', by top-level package (self ms):")
        for package, ms in importtime_table(tag, envs["after"], work):
            print(f"#     {package:<20} {ms:8.1f}")
    phases(envs["after"], jets, work, args.repeat)


def phases(env: dict[str, str], jets: Path, work: Path, repeat: int) -> None:
    """The steps of a later ``tag`` run (numba cache filled), median over ``repeat`` fresh
    interpreters, as the ``lloca-hep`` command runs them (numba's extensions skipped)."""
    code = (f"PATH = {str(jets)!r}\nOUT = {str(work / 'phases.root')!r}\nCONSOLE = True\n"
            + PHASES_PROBE)
    rows: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for _ in range(repeat):
        res = subprocess.run([sys.executable, "-c", code], env=env, cwd=work,
                             capture_output=True, text=True, check=True)
        for line in res.stdout.splitlines():
            name, wall, cpu = line.split("\t")
            rows[name].append((float(wall), float(cpu)))
    print(f"#   steps of a later run of 'after' (median of {repeat} fresh interpreters; "
          f"1-min load {_load():.2f}):")
    print("| step | wall s | CPU s |")
    print("| --- | --- | --- |")
    for name, values in rows.items():
        print(f"| {name} | {statistics.median(w for w, _ in values):.3f} "
              f"| {statistics.median(c for _, c in values):.3f} |")


@contextmanager
def busy_cores(n: int) -> Iterator[list[int]]:
    """``n`` processes spinning in a Python loop; stopped (by their pids) on exit."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(n)]
    try:
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=30)


def bench_contention(args: argparse.Namespace, work: Path) -> None:
    import torch

    from lloca_hep._threads import choose_threads
    from lloca_hep.inference import tag_file
    from lloca_hep.tagger import load_tagger

    jets = write_jets(work / "jets2000.root", CONTENTION_JETS)
    tagger = load_tagger(None, device="cpu")
    default_threads = torch.get_num_threads()
    n_busy = args.busy or len(os.sched_getaffinity(0))
    out = work / "scores.root"

    def run(threads: int) -> float:
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        tag_file(jets, out, tagger, overwrite=True, progress=False)
        return CONTENTION_JETS / (time.perf_counter() - t0)

    run(1)  # warm-up: numba kernels, torch
    with busy_cores(n_busy):
        t_start, load_start = time.perf_counter(), _load()
        while _load() < n_busy - 0.5 and time.perf_counter() - t_start < args.settle:
            time.sleep(2)
        settled, waited = _load(), time.perf_counter() - t_start
        rates: dict[str, list[float]] = defaultdict(list)
        chosen = []
        for _ in range(args.repeat):
            policy = choose_threads(None, torch_threads=default_threads)  # a fresh process's
            chosen.append(f"{policy.threads} ({policy.reason})")
            for label, threads in (("1 thread", 1), ("2 threads", 2),
                                   ("policy", policy.threads)):
                rates[label].append(run(threads))
        load_end = _load()
    torch.set_num_threads(default_threads)
    print(f"## contention: tag_file on {CONTENTION_JETS} jets, shipped tagger, {n_busy} busy "
          f"Python loops; 1-min load {load_start:.2f} when they started, {settled:.2f} after "
          f"{waited:.0f} s of settling, {load_end:.2f} at the end; "
          f"torch default {default_threads} threads")
    print("| torch threads | jets/s (median) | passes |")
    print("| --- | --- | --- |")
    for label, values in rates.items():
        print(f"| {label} | {statistics.median(values):.0f} | "
              f"{', '.join(f'{v:.0f}' for v in values)} |")
    print("#   policy chose: " + "; ".join(chosen))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("startup", "contention", "all"))
    parser.add_argument("--baseline", type=Path, default=HERE,
                        help="source tree to compare with (PYTHONPATH), e.g. the main checkout")
    parser.add_argument("--tree", type=Path, default=HERE,
                        help="source tree measured (default: the one holding this script)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--first-runs", type=int, default=2,
                        help="first runs (fresh numba cache) per tree")
    parser.add_argument("--importtime", action="store_true")
    parser.add_argument("--busy", type=int, default=0,
                        help="busy competitor processes (default: one per usable core)")
    parser.add_argument("--settle", type=float, default=90.0,
                        help="seconds to wait at most for the load average to rise")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_startup_") as tmp:
        work = Path(tmp)
        if args.what in ("startup", "all"):
            bench_startup(args, work)
        if args.what in ("contention", "all"):
            sys.path.insert(0, str(args.tree.resolve()))
            bench_contention(args, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
