"""``lloca-hep demo``: the shipped tagger on the shipped sample, end to end.

Reads ``lloca_hep/data/sample.root`` (4000 generated top and QCD jets), scores it with the shipped
tagger, writes the scores as an entry-aligned friend tree and evaluates them (accuracy, AUC,
background rejection, ROC curve and score histograms).
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lloca_hep.training.evaluate import EvaluationResult

log = logging.getLogger(__name__)

DEFAULT_DEMO_DIR = "lloca-hep-demo"
SAMPLE_NAME = "sample.root"
SCORED_NAME = "sample_scores.root"
LABEL_BRANCH = "is_signal"


def sample_path() -> Path:
    """Path of the shipped sample ROOT file (TTree ``jets``, JetClass naming)."""
    return Path(str(resources.files("lloca_hep.data").joinpath(SAMPLE_NAME)))


def run_demo(
    output_dir: str | os.PathLike[str] = DEFAULT_DEMO_DIR,
    *,
    model: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> EvaluationResult:
    """Score and evaluate the shipped sample; outputs go to ``output_dir`` (created).

    The demo's own outputs in ``output_dir`` are replaced on a rerun; the input is never
    written. Returns an :class:`~lloca_hep.training.evaluate.EvaluationResult` whose ``files``
    are the absolute paths of the scored ROOT file (``scored``), the ROC curve (``roc``), the
    score histograms (``scores``) and ``metrics`` (metrics.json).
    """
    import awkward as ak
    import uproot

    from lloca_hep._files import output_directory
    from lloca_hep.inference import tag_file
    from lloca_hep.io import read_jets
    from lloca_hep.io.writers import FRIEND_TREE, SCORE_BRANCH
    from lloca_hep.tagger import load_tagger
    from lloca_hep.training.evaluate import report

    sample = sample_path()
    tagger = load_tagger(model)  # a bad --model fails before anything is created
    with output_directory(output_dir, option="-o/--output") as out:
        tagged = tag_file(sample, out / SCORED_NAME, tagger, overwrite=True, progress=progress)
    # the numbers come from the friend tree just written: the sample is scored once
    with uproot.open(tagged["output"]) as scored:
        scores = scored[FRIEND_TREE][SCORE_BRANCH].array(library="np")
    labels = ak.to_numpy(read_jets(sample, jet_fields=[LABEL_BRANCH])[LABEL_BRANCH])
    result = report(labels, scores, output_dir=out, label="lloca-hep tagger",
                    model=tagger.model_name, inputs=[sample],
                    tag_jets_per_second=tagged["jets_per_second"])
    files = {"scored": tagged["output"], **result.files}
    return replace(result, files={k: str(Path(v).resolve()) for k, v in files.items()})
