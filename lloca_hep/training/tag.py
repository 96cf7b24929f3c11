"""``lloca-hep tag``: ROOT file in, entry-aligned friend tree of scores out, streaming."""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from lloca_hep.io.writers import FRIEND_TREE, SCORE_BRANCH
from lloca_hep.tagger import EmptyJetWarning, Tagger, load_tagger

log = logging.getLogger(__name__)

DEFAULT_TAG_STEP_SIZE = "50 MB"


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
    """Score every jet of ``input`` and write the friend tree ``scores`` (branch ``score``).

    ``model``: a tagger file (``.pt`` or exported ``.pt2``), a loaded :class:`Tagger`, or None
    for the shipped tagger. Chunks of ``step_size`` (entries, or a size such as ``"50 MB"``)
    stream through :func:`lloca_hep.io.iterate_jets` -> :meth:`Tagger.score` ->
    :class:`lloca_hep.io.FriendTreeWriter`: one output entry per input entry (event layouts keep
    one score per jet of each event). The output is written atomically and must differ from
    the input; an existing output is replaced only with ``overwrite``. Jets without
    constituents get NaN (one warning at the end).

    Returns a summary: ``output``, ``tree``, ``branch``, ``n_entries``, ``n_jets``, ``n_empty``,
    ``seconds`` (end to end) and ``jets_per_second``.
    """
    from tqdm.auto import tqdm

    from lloca_hep.io import FriendTreeWriter, iterate_jets

    t0 = time.perf_counter()
    input_path = os.fspath(input)
    output_path = Path(output)
    if isinstance(model, Tagger):
        tagger = model
    else:
        tagger = load_tagger(model, device=device)
    if batch_size is not None:
        tagger.batch_size = int(batch_size)
    n_jets = 0
    n_empty = 0
    chunks = iterate_jets(input_path, step_size=step_size, tree=tree, layout=layout,
                          collection=collection, jet_fields=[])
    bar = tqdm(desc=f"tagging {os.path.basename(input_path)}", unit=" entries",
               disable=not progress)
    try:
        with FriendTreeWriter(output_path, FRIEND_TREE, overwrite=overwrite,
                              inputs=[input_path]) as writer:
            for chunk in chunks:
                if bar.total is None and chunk.num_entries >= 0:
                    bar.total = chunk.num_entries
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", EmptyJetWarning)
                    scores = tagger.score(chunk.jets)
                n_jets += len(scores)
                n_empty += int(np.isnan(scores).sum())
                writer.extend(scores, chunk)
                bar.update(chunk.entry_stop - chunk.entry_start)
                bar.set_postfix(jets=n_jets, refresh=False)
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    if n_empty:
        warnings.warn(
            f"{n_empty} of {n_jets} jets in {input_path} have no constituents; their score is NaN",
            EmptyJetWarning,
            stacklevel=2,
        )
    summary = {
        "output": str(writer.output),
        "tree": FRIEND_TREE,
        "branch": SCORE_BRANCH,
        "n_entries": int(writer.entries_written),
        "n_jets": n_jets,
        "n_empty": n_empty,
        "seconds": seconds,
        "jets_per_second": n_jets / seconds if seconds > 0 else float("nan"),
        "model": tagger.model_name,
    }
    log.info("wrote %s (%d jets, %.0f jets/s)", summary["output"], n_jets,
             summary["jets_per_second"])
    return summary
