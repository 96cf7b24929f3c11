"""``lloca-hep tag``: ROOT file in, entry-aligned friend tree of scores out, streaming."""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from lloca_hep._defaults import DEFAULT_TAG_STEP_SIZE
from lloca_hep.io.writers import FRIEND_TREE, SCORE_BRANCH
from lloca_hep.tagger import EmptyJetWarning, NonFiniteScoreWarning, Tagger, load_tagger

__all__ = ["DEFAULT_TAG_STEP_SIZE", "tag_file"]

log = logging.getLogger(__name__)


def tag_file(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    model: str | os.PathLike[str] | Tagger | None = None,
    *,
    step_size: str | int = DEFAULT_TAG_STEP_SIZE,
    overwrite: bool = False,
    device: str = "auto",
    batch_size: int | None = None,
    tree: str | None = None,
    layout: str = "auto",
    collection: str = "FatJet",
    progress: bool = True,
) -> dict[str, Any]:
    """Score every jet of ``input`` and write the friend tree ``scores`` (branch ``score``;
    a multi-class tagger writes one branch per class, ``score_<name>``).

    ``model``: a tagger file (``.pt`` or exported ``.pt2``), a loaded :class:`Tagger`, or None
    for the shipped tagger. Chunks of ``step_size`` (entries, or a size such as ``"50 MB"``)
    stream through :func:`lloca_hep.io.iterate_jets` -> :meth:`Tagger.score` (its padding,
    :func:`lloca_hep.preprocessing.inputs.network_inputs`, done for the next chunk on a
    read-ahead thread while this one is scored) -> :class:`lloca_hep.io.FriendTreeWriter`: one
    output entry per input entry (event layouts keep one score per jet of each event). The output is written atomically and must differ from
    the input; an existing output is replaced only with ``overwrite``. Jets without
    constituents get NaN (one warning at the end).

    Returns a summary: ``output``, ``tree``, ``branch``, ``n_entries``, ``n_jets``, ``n_empty``,
    ``n_nonfinite`` (jets with constituents whose score is not finite),
    ``seconds`` (end to end) and ``jets_per_second``.
    """
    from tqdm.auto import tqdm

    from lloca_hep._files import check_output, resolve_inputs
    from lloca_hep.io import FriendTreeWriter, JetChunk, OutputError, iterate_jets
    from lloca_hep.preprocessing.inputs import network_inputs
    from lloca_hep.preprocessing.padding import PaddedJets

    from .readahead import read_ahead

    t0 = time.perf_counter()
    input_path = os.fspath(input)
    real = resolve_inputs([input_path])
    if len(real) > 1:
        raise OutputError(
            f"{input_path} matches {len(real)} files; a friend tree belongs to one input file: "
            "tag each file into its own output (or use lloca_hep.score_files)"
        )
    # the output is checked against the real input file before anything is loaded or written
    check_output(Path(output), overwrite=overwrite, inputs=[input_path])
    if isinstance(model, Tagger):
        tagger = model
    else:
        tagger = load_tagger(model, device=device)
    writer = FriendTreeWriter(Path(output), FRIEND_TREE, overwrite=overwrite, inputs=[input_path],
                              class_names=tagger.class_names if tagger.is_multiclass else None)
    if batch_size is not None:
        tagger.batch_size = int(batch_size)
    n_jets = 0
    n_empty = 0
    n_nonfinite = 0
    chunks = iterate_jets(input_path, step_size=step_size, tree=tree, layout=layout,
                          collection=collection, jet_fields=[],
                          features=tagger.inputs if len(tagger.inputs) else None)

    def prepare(chunk: JetChunk) -> PaddedJets:  # on the read-ahead thread
        return network_inputs(chunk.jets, tagger.inputs, tagger.max_constituents,
                              tagger.sort_by_pt)

    bar = tqdm(desc=f"tagging {os.path.basename(input_path)}", unit=" entries",
               disable=not progress)
    try:
        with writer:
            for chunk, padded in read_ahead(chunks, prepare):
                if bar.total is None and chunk.num_entries >= 0:
                    bar.total = chunk.num_entries
                # what Tagger.score does, with the padding done ahead
                scores = tagger.score_padded(padded.p4, padded.mask, scalars=padded.scalars,
                                             warn_empty=False, warn_nonfinite=False)
                empty = padded.n_empty
                n_jets += len(scores)
                n_empty += empty
                finite = np.isfinite(scores)
                if finite.ndim == 2:
                    finite = finite.all(axis=1)
                n_nonfinite += int(np.count_nonzero(~finite)) - empty
                writer.extend(scores, chunk)
                bar.update(chunk.entry_stop - chunk.entry_start)
                bar.set_postfix(jets=n_jets, refresh=False)
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    if n_nonfinite:
        warnings.warn(NonFiniteScoreWarning(
            f"the model produced non-finite scores for {n_nonfinite} of {n_jets} jets of "
            f"{input_path} that have constituents: the tagger's weights or these inputs are "
            "not finite", n_nonfinite, n_jets), stacklevel=2)
    if n_empty:
        warnings.warn(EmptyJetWarning(
            f"{n_empty} of {n_jets} jets in {input_path} have no constituents; their score is NaN",
            n_empty, n_jets), stacklevel=2)
    summary = {
        "output": str(writer.output),
        "tree": FRIEND_TREE,
        "branch": SCORE_BRANCH,
        "branches": ([f"{SCORE_BRANCH}_{c}" for c in tagger.class_names]
                     if tagger.is_multiclass else [SCORE_BRANCH]),
        "n_entries": int(writer.entries_written),
        "n_jets": n_jets,
        "n_empty": n_empty,
        "n_nonfinite": n_nonfinite,
        "seconds": seconds,
        "jets_per_second": n_jets / seconds if seconds > 0 else float("nan"),
        "model": tagger.model_name,
    }
    log.debug("wrote %s (%d jets, %.0f jets/s)", summary["output"], n_jets,
             summary["jets_per_second"])
    return summary
