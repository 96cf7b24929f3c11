"""The tagger shipped in the package: loads offline, is small, and tags the shipped sample."""

from __future__ import annotations

from importlib import resources

import awkward as ak
import numpy as np

import lloca_hep
from lloca_hep.models import MODELS
from lloca_hep.tagger import Tagger, read_tagger_header
from lloca_hep.training.metrics import roc_auc

#: The package must stay small: the shipped weights are at most a few MB.
MAX_SHIPPED_BYTES = 5 * 1024**2
#: Jets of the shipped sample scored here (enough for a stable AUC, fast on 2 cores).
N_SAMPLE_JETS = 600
#: The shipped tagger must separate top from QCD clearly better than the jet mass (AUC ~0.93).
MIN_SAMPLE_AUC = 0.93


def _shipped():
    return resources.files("lloca_hep").joinpath("data", "default_tagger.pt")


def test_shipped_tagger_is_small_and_self_describing():
    path = _shipped()
    assert path.is_file()
    with resources.as_file(path) as p:
        assert p.stat().st_size < MAX_SHIPPED_BYTES
        header = read_tagger_header(p)
    assert header["model_name"] in MODELS
    meta = header["metadata"]
    assert meta["training"]["seed"] is not None and meta["n_train_jets"] > 0


def test_load_tagger_default_scores_the_shipped_sample():
    tagger = lloca_hep.load_tagger(device="cpu")
    assert isinstance(tagger, Tagger)
    with resources.as_file(resources.files("lloca_hep").joinpath("data", "sample.root")) as p:
        jets = lloca_hep.read_jets(p, entry_stop=N_SAMPLE_JETS)
    scores = tagger.score(jets)
    assert scores.dtype == np.float32 and scores.shape == (N_SAMPLE_JETS,)
    assert np.all((scores >= 0) & (scores <= 1))
    assert roc_auc(ak.to_numpy(jets.is_signal), scores) > MIN_SAMPLE_AUC
