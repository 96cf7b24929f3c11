"""``lloca-hep demo``: the shipped tagger on the shipped sample, end to end.

Reads ``lloca_hep/data/sample.root`` (4000 generated top and QCD jets), scores it with the shipped
tagger, writes the scores as an entry-aligned friend tree and evaluates them (accuracy, AUC,
background rejection, ROC curve and score histograms).

``lloca-hep demo --classes`` (``run_demo(classes=True)``) does the same with the shipped
ten-class tagger (``jetclass``, ``full`` features) on ``lloca_hep/data/jetclass_sample.root``
(300 generated jets of each JetClass class): friend tree with one ``score_<class>`` branch per
class, the JetClass table, ``confusion.png`` and per-class ``roc.png``.
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
#: Subdirectory of the output directory for the ten-class demo.
CLASSES_SUBDIR = "jetclass"
SAMPLE_NAME = "sample.root"
SCORED_NAME = "sample_scores.root"
JETCLASS_SAMPLE_NAME = "jetclass_sample.root"
JETCLASS_SCORED_NAME = "jetclass_sample_scores.root"
LABEL_BRANCH = "is_signal"


def sample_path(classes: bool = False) -> Path:
    """Path of the shipped sample ROOT file: top/QCD (TTree ``jets``, JetClass naming), or with
    ``classes`` the ten-class sample (TTree ``tree``, JetClass branches and labels)."""
    name = JETCLASS_SAMPLE_NAME if classes else SAMPLE_NAME
    return Path(str(resources.files("lloca_hep.data").joinpath(name)))


def run_demo(
    output_dir: str | os.PathLike[str] = DEFAULT_DEMO_DIR,
    *,
    model: str | os.PathLike[str] | None = None,
    progress: bool = True,
    classes: bool = False,
) -> EvaluationResult:
    """Score and evaluate the shipped sample; outputs go to ``output_dir`` (created).

    With ``classes``: the shipped ten-class tagger (default ``model="jetclass"``) on the
    ten-class sample, outputs in ``output_dir/jetclass``; ``files`` then hold ``scored``,
    ``confusion``, ``roc`` and ``metrics``.

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

    if classes:
        return _run_classes(Path(output_dir) / CLASSES_SUBDIR, model, progress)
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


def _run_classes(output_dir: Path, model: str | os.PathLike[str] | None,
                 progress: bool) -> EvaluationResult:
    import numpy as np
    import uproot

    from lloca_hep._files import output_directory
    from lloca_hep.inference import tag_file
    from lloca_hep.io import read_jets
    from lloca_hep.io.writers import FRIEND_TREE
    from lloca_hep.tagger import load_tagger
    from lloca_hep.training.evaluate import labels_for, report_multiclass
    from lloca_hep.training.labels import extract_labels

    sample = sample_path(classes=True)
    tagger = load_tagger("jetclass" if model is None else model)
    with output_directory(output_dir, option="-o/--output") as out:
        tagged = tag_file(sample, out / JETCLASS_SCORED_NAME, tagger, overwrite=True,
                          progress=progress)
    names = tagged["branches"]
    with uproot.open(tagged["output"]) as scored:
        tree = scored[FRIEND_TREE]
        scores = np.stack([tree[b].array(library="np") for b in names], axis=1)
    if scores.shape[1] == 1:
        raise ValueError(f"demo --classes needs a multi-class tagger; {model} is binary")
    spec = labels_for(tagger, str(sample), LABEL_BRANCH, None)
    labels = extract_labels(read_jets(sample, jet_fields=list(spec.branches)), spec, str(sample))
    result = report_multiclass(labels, scores, tagger.class_names, output_dir=out,
                               model=tagger.model_name, inputs=[sample],
                               tag_jets_per_second=tagged["jets_per_second"])
    files = {"scored": tagged["output"], **result.files}
    return replace(result, files={k: str(Path(v).resolve()) for k, v in files.items()})
