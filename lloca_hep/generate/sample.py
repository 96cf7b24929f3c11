"""Generate a top-tagging sample and write it as a flat ROOT TTree (LLOCA.md section 11).

Work is cut into chunks of ``chunk_size`` jets of one class. Chunk ``k`` of class ``c``
(1 signal, 0 background) gets its own Pythia instance seeded with
``SeedSequence(seed, spawn_key=(c, k))`` (see :func:`lloca_hep.generate.recipe.pythia_seed`), so
chunks are independent, can run in any worker, and results are put back in chunk order: the
file content depends on ``seed``, the jet counts, ``max_constituents`` and ``chunk_size`` only,
not on the number of workers or on scheduling. Signal and background are then shuffled
together with a permutation drawn from ``SeedSequence(seed, spawn_key=(2,))`` (``shuffle=True``,
the default), so any prefix of the file is a random mix of both classes.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from .._files import atomic_output, check_output
from . import recipe
from .chunks import (
    DEFAULT_CHUNK_SIZE,
    check_count,
    package_version,
    permute_ragged,
    run_tasks,
    shuffle_permutation,
    write_jet_tree,
)
from .events import BACKGROUND, SIGNAL, ChunkResult, ChunkTask, require_generators, run_chunk

log = logging.getLogger(__name__)

#: name of the output TTree
TREE_NAME = "jets"
#: spawn key of the shuffle permutation (0 and 1 are the class chunk seeds)
SHUFFLE_SPAWN_KEY = 2

_JET_BRANCHES = ("jet_pt", "jet_eta", "jet_phi", "jet_mass", "jet_energy")
_PART_FIELDS = ("px", "py", "pz", "energy")


def plan_tasks(
    n_signal: int, n_background: int, seed: int, max_constituents: int, chunk_size: int
) -> list[ChunkTask]:
    """The chunk tasks, signal chunks first then background, each with its derived Pythia seed."""
    tasks: list[ChunkTask] = []
    for class_id, total in ((SIGNAL, n_signal), (BACKGROUND, n_background)):
        for k, start in enumerate(range(0, total, chunk_size)):
            tasks.append(ChunkTask(
                index=len(tasks), class_id=class_id, chunk_index=k,
                n_jets=min(chunk_size, total - start),
                pythia_seed=recipe.pythia_seed(seed, class_id, k),
                max_constituents=max_constituents,
            ))
    return tasks


def _run_tasks(tasks: list[ChunkTask], workers: int, progress: bool) -> list[ChunkResult]:
    """Run the tasks (in this process for one worker, else a spawn pool); results in task order."""
    return run_tasks(tasks, run_chunk, workers, progress)


def _provenance(
    n_signal: int, n_background: int, seed: int, max_constituents: int, chunk_size: int,
    shuffle: bool,
) -> str:
    from .. import __version__

    return json.dumps({
        "generator": "lloca_hep.generate.generate_sample",
        "lloca_hep": __version__,
        "pythia8mc": package_version("pythia8mc"),
        "fastjet": package_version("fastjet"),
        "seed": seed,
        "n_signal": n_signal,
        "n_background": n_background,
        "max_constituents": max_constituents,
        "chunk_size": chunk_size,
        "shuffle": shuffle,
        "pythia_common": list(recipe.COMMON_SETTINGS),
        "pythia_signal": list(recipe.SIGNAL_SETTINGS),
        "pythia_background": list(recipe.BACKGROUND_SETTINGS),
        "jet_radius": recipe.JET_RADIUS,
        "jet_pt_gev": [recipe.JET_PT_MIN_GEV, recipe.JET_PT_MAX_GEV],
        "jet_abs_eta_max": recipe.JET_ABS_ETA_MAX,
        "truth_match_radius": recipe.TRUTH_MATCH_RADIUS,
    }, sort_keys=True)


def _assemble(results: list[ChunkResult], seed: int, shuffle: bool) -> dict[str, np.ndarray]:
    """Concatenate chunk results (in task order) and optionally permute jets."""
    npart = np.concatenate([r.npart for r in results])
    part = np.concatenate([r.part for r in results])
    jet = np.concatenate([r.jet for r in results])
    label = np.concatenate([np.full(r.n_jets, r.class_id, dtype=np.int32) for r in results])
    if shuffle and len(npart) > 1:
        perm = shuffle_permutation(seed, SHUFFLE_SPAWN_KEY, len(npart))
        npart, part = permute_ragged(npart, part, perm)
        jet = jet[perm]
        label = label[perm]
    return {"npart": npart, "part": part, "jet": jet, "is_signal": label}


def _write(path: Path, data: dict[str, np.ndarray], provenance: str) -> None:
    """Write the flat ``jets`` TTree (branch names as in LLOCA.md section 11) to ``path``."""
    write_jet_tree(path, TREE_NAME, provenance, data["npart"], data["part"], _PART_FIELDS,
                   data["jet"], _JET_BRANCHES, {"is_signal": data["is_signal"].astype(np.int32)})


def generate_sample(
    output: str | os.PathLike[str],
    n_signal: int,
    n_background: int,
    seed: int,
    workers: int = 1,
    max_constituents: int = recipe.DEFAULT_MAX_CONSTITUENTS,
    progress: bool = True,
    *,
    overwrite: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    shuffle: bool = True,
) -> Path:
    """Generate a top-tagging sample with Pythia 8 + fastjet and write it to ``output`` (ROOT).

    Parameters
    ----------
    output : path of the ROOT file to write; written to a temporary name in the same directory
        and renamed when complete. An existing file is an error unless ``overwrite=True``.
    n_signal, n_background : number of top jets (``is_signal == 1``) and QCD jets (0).
    seed : non-negative integer; all Pythia seeds derive from it (see module docstring).
    workers : worker processes (``multiprocessing`` spawn context); 1 runs in this process.
        The file content does not depend on it.
    max_constituents : keep at most this many constituents per jet, hardest (highest pT) first.
        ``jet_*`` branches are computed from all constituents, before truncation.
    progress : show a tqdm progress bar (jets).
    chunk_size : jets per work unit (changing it changes the sample).
    shuffle : shuffle signal and background together with a seed-derived permutation; with
        ``False`` the file holds all signal jets, then all background jets.

    Returns the path written. The file holds TTree ``jets`` (one entry per jet): counter ``npart``
    (int32), jagged float32 ``part_px part_py part_pz part_energy`` (GeV, sorted by decreasing
    pT), float32 ``jet_pt`` (GeV) ``jet_eta`` ``jet_phi`` (rad, in (-pi, pi]) ``jet_mass`` (GeV)
    ``jet_energy`` (GeV), int32 ``is_signal``; plus a JSON string ``generation_config``.
    """
    n_signal = check_count("n_signal", n_signal)
    n_background = check_count("n_background", n_background)
    seed = check_count("seed", seed)
    workers = check_count("workers", workers)
    max_constituents = check_count("max_constituents", max_constituents)
    chunk_size = check_count("chunk_size", chunk_size)
    if n_signal + n_background == 0:
        raise ValueError("nothing to generate: n_signal and n_background are both 0")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if max_constituents < 1:
        raise ValueError(f"max_constituents must be >= 1, got {max_constituents}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    output = check_output(output, overwrite=overwrite)
    require_generators()

    tasks = plan_tasks(n_signal, n_background, seed, max_constituents, chunk_size)
    workers = min(workers, len(tasks))
    log.info("generating %d signal + %d background jets (seed %d, %d chunks, %d worker%s) -> %s",
             n_signal, n_background, seed, len(tasks), workers, "" if workers == 1 else "s", output)
    t0 = time.perf_counter()
    results = _run_tasks(tasks, workers, progress)
    elapsed = time.perf_counter() - t0
    n_events = {c: sum(r.n_events for r in results if r.class_id == c) for c in (SIGNAL, BACKGROUND)}
    log.info("generated %d jets in %.1f s (%.1f jets/s; %d signal and %d background events)",
             n_signal + n_background, elapsed, (n_signal + n_background) / elapsed if elapsed > 0 else float("inf"),
             n_events[SIGNAL], n_events[BACKGROUND])

    data = _assemble(results, seed, shuffle)
    provenance = _provenance(n_signal, n_background, seed, max_constituents, chunk_size, shuffle)
    with atomic_output(output, overwrite=overwrite) as tmp:
        _write(tmp, data, provenance)
    log.info("wrote %s (%.1f MB)", output, output.stat().st_size / 1e6)
    return output
