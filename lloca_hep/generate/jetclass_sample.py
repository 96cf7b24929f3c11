"""Generate a ten-class JetClass-like sample and write it in JetClass's layout (issue 14).

Work is cut into chunks of ``chunk_size`` jets of one class; chunk ``k`` of class ``c`` has its
own Pythia seed and smearing generator derived from ``seed``, the class's position in
:data:`lloca_hep.generate.classes.CLASS_NAMES` and ``k``
(:mod:`lloca_hep.generate.jetclass_events`), so the file content depends on ``seed``, the
classes, the count per class, ``max_constituents`` and ``chunk_size`` only, not on the number
of workers; a class's jets do not depend on which other classes are requested. The classes are
shuffled together with a permutation from ``SeedSequence(seed, spawn_key=(20,))``.

File layout (ROOT, ZSTD), TTree ``tree`` (JetClass's name), one entry per jet:

* counter ``npart`` (int32) and jagged float32 ``part_px part_py part_pz part_energy`` (GeV),
  ``part_deta part_dphi`` (to the jet axis), ``part_charge``, ``part_isChargedHadron
  part_isNeutralHadron part_isPhoton part_isElectron part_isMuon`` (0/1),
  ``part_d0val part_d0err part_dzval part_dzerr`` (mm; 0 for neutral particles), hardest first;
* float32 ``jet_pt jet_eta jet_phi jet_energy jet_mass jet_nparticles`` (all constituents);
* bool ``label_<class>`` for the requested classes, in the order given, exactly one true.

A JSON string ``generation_config`` next to the tree records the seed, counts (jets per class
and the events generated for them), settings and package versions.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._files import atomic_output, check_output
from . import classes, recipe, tracks
from .chunks import (
    DEFAULT_CHUNK_SIZE,
    check_count,
    package_version,
    permute_ragged,
    run_tasks,
    shuffle_permutation,
    write_jet_tree,
)
from .events import require_generators
from .jetclass_events import (
    JET_FIELDS,
    PART_FIELDS,
    ClassChunkResult,
    ClassChunkTask,
    run_class_chunk,
)

log = logging.getLogger(__name__)

#: name of the output TTree (as in JetClass files)
TREE_NAME = "tree"


def plan_class_tasks(
    names: Sequence[str], per_class: int, seed: int, max_constituents: int, chunk_size: int
) -> list[ClassChunkTask]:
    """The chunk tasks, class by class in the order of ``names``."""
    tasks: list[ClassChunkTask] = []
    for name in names:
        for k, start in enumerate(range(0, per_class, chunk_size)):
            tasks.append(ClassChunkTask(
                index=len(tasks), class_name=name, chunk_index=k,
                n_jets=min(chunk_size, per_class - start), seed=seed,
                max_constituents=max_constituents,
            ))
    return tasks


def _provenance(names: Sequence[str], per_class: int, seed: int, max_constituents: int,
                chunk_size: int, shuffle: bool, n_events: dict[str, int]) -> str:
    from .. import __version__

    return json.dumps({
        "generator": "lloca_hep.generate.generate_classes",
        "lloca_hep": __version__,
        "pythia8mc": package_version("pythia8mc"),
        "fastjet": package_version("fastjet"),
        "seed": seed,
        "classes": list(names),
        "per_class": per_class,
        "n_events": n_events,
        "max_constituents": max_constituents,
        "chunk_size": chunk_size,
        "shuffle": shuffle,
        "pythia": {n: list(classes.RECIPES[n].settings) for n in names},
        "decay_veto": [n for n in names if classes.RECIPES[n].decay_veto],
        "jet_radius": recipe.JET_RADIUS,
        "jet_pt_gev": [classes.JET_PT_MIN_GEV, classes.JET_PT_MAX_GEV],
        "jet_abs_eta_max": classes.JET_ABS_ETA_MAX,
        "truth_match_radius": recipe.TRUTH_MATCH_RADIUS,
        "tau0_max_mm": classes.TAU0_MAX_MM,
        "impact_parameter_resolution_mm": {
            "d0": [tracks.D0_SIGMA_CONST_MM, tracks.D0_SIGMA_MS_MM_GEV],
            "dz": [tracks.DZ_SIGMA_CONST_MM, tracks.DZ_SIGMA_MS_MM_GEV],
            "model": "sigma = a (+) b / pT[GeV]",
        },
    }, sort_keys=True)


def _assemble(results: list[ClassChunkResult], names: Sequence[str], seed: int,
              shuffle: bool) -> dict[str, np.ndarray]:
    """Concatenate chunk results (task order), add the labels, optionally permute jets."""
    npart = np.concatenate([r.npart for r in results])
    part = np.concatenate([r.part for r in results])
    jet = np.concatenate([r.jet for r in results])
    label = np.concatenate([np.full(r.n_jets, names.index(r.class_name), dtype=np.int64)
                            for r in results])
    if shuffle and len(npart) > 1:
        perm = shuffle_permutation(seed, classes.SHUFFLE_SPAWN_KEY, len(npart))
        npart, part = permute_ragged(npart, part, perm)
        jet = jet[perm]
        label = label[perm]
    return {"npart": npart, "part": part, "jet": jet, "label": label}


def _write(path: Path, data: dict[str, np.ndarray], names: Sequence[str], provenance: str) -> None:
    """Write the JetClass-layout TTree ``tree`` to ``path`` (see the module docstring)."""
    labels = [classes.RECIPES[n].label for n in names]
    write_jet_tree(path, TREE_NAME, provenance, data["npart"], data["part"], PART_FIELDS,
                   data["jet"], JET_FIELDS,
                   {name: data["label"] == i for i, name in enumerate(labels)})


def generate_classes(
    output: str | os.PathLike[str],
    class_names: str | Sequence[str],
    per_class: int,
    seed: int,
    workers: int = 1,
    max_constituents: int = recipe.DEFAULT_MAX_CONSTITUENTS,
    progress: bool = True,
    *,
    overwrite: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    shuffle: bool = True,
) -> Path:
    """Generate ``per_class`` jets of each class with Pythia 8 + fastjet, write them to ``output``.

    Parameters
    ----------
    output : ROOT file to write (atomically: temporary name, renamed when complete); an existing
        file is an error unless ``overwrite=True``.
    class_names : classes of :data:`lloca_hep.generate.classes.CLASS_NAMES`, a comma list or a
        sequence; the ``label_*`` branches follow this order.
    per_class : jets per class (exactly).
    seed : non-negative integer; every random number derives from it (module docstring).
    workers : worker processes (spawn); 1 runs in this process. The file does not depend on it.
    max_constituents : constituents kept per jet, hardest first (``jet_*`` use all of them).
    progress : show a tqdm progress bar (jets).
    chunk_size : jets per work unit (changing it changes the sample).
    shuffle : mix the classes with a seed-derived permutation; else class blocks in order.

    Returns the path written; the layout is in the module docstring.
    """
    names = classes.parse_classes(
        class_names if isinstance(class_names, str) else tuple(class_names))
    per_class = check_count("per_class", per_class)
    seed = check_count("seed", seed)
    workers = check_count("workers", workers)
    max_constituents = check_count("max_constituents", max_constituents)
    chunk_size = check_count("chunk_size", chunk_size)
    if per_class == 0:
        raise ValueError("nothing to generate: per_class is 0")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if max_constituents < 1:
        raise ValueError(f"max_constituents must be >= 1, got {max_constituents}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    output = check_output(output, overwrite=overwrite)
    require_generators()

    tasks = plan_class_tasks(names, per_class, seed, max_constituents, chunk_size)
    workers = min(workers, len(tasks))
    log.info("generating %d jets of each of %s (seed %d, %d chunks, %d worker%s) -> %s",
             per_class, ",".join(names), seed, len(tasks), workers, "" if workers == 1 else "s",
             output)
    t0 = time.perf_counter()
    results = run_tasks(tasks, run_class_chunk, workers, progress)
    elapsed = time.perf_counter() - t0
    total = per_class * len(names)
    log.info("generated %d jets in %.1f s (%.1f jets/s)", total, elapsed,
             total / elapsed if elapsed > 0 else float("inf"))
    n_events = {name: sum(r.n_events for r in results if r.class_name == name) for name in names}
    for name in names:
        log.info("  %s: %d jets from %d events", name, per_class, n_events[name])

    data = _assemble(results, names, seed, shuffle)
    provenance = _provenance(names, per_class, seed, max_constituents, chunk_size, shuffle,
                             n_events)
    with atomic_output(output, overwrite=overwrite) as tmp:
        _write(tmp, data, names, provenance)
    log.info("wrote %s (%.1f MB)", output, output.stat().st_size / 1e6)
    return output
