"""The shipped ten-class tagger (``jetclass``) and sample: short names wherever a tagger path is
accepted, the ten-class demo, and its quality on the shipped sample."""

from __future__ import annotations

import json
import subprocess
import sys

import awkward as ak
import numpy as np
import pytest
import uproot

import lloca_hep
from lloca_hep.demo import sample_path
from lloca_hep.generate import CLASS_NAMES
from lloca_hep.tagger import read_tagger_header

#: The card's accuracy on independent jets is far above this; 10 classes at random give 0.1.
MIN_ACCURACY = 0.5


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lloca_hep", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def tagger():
    return lloca_hep.load_tagger("jetclass", device="cpu")


@pytest.fixture(scope="module")
def jets(tagger):
    return lloca_hep.read_jets(sample_path(classes=True), features=tagger.inputs)


def test_short_names():
    assert read_tagger_header("default") == read_tagger_header(None)
    header = read_tagger_header("jetclass")
    assert header["classes"] == list(CLASS_NAMES)
    assert header["inputs"]["name"] == "full"


def test_jetclass_tagger_on_the_shipped_sample(tagger, jets):
    assert tagger.is_multiclass and tagger.class_names == tuple(CLASS_NAMES)
    probs = tagger.score(jets)
    assert probs.shape == (len(jets), 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    labels = np.argmax(np.stack([ak.to_numpy(jets[f"label_{c}"]) for c in CLASS_NAMES], 1), 1)
    assert float(np.mean(np.argmax(probs, axis=1) == labels)) >= MIN_ACCURACY


def test_jettagger_and_tag_accept_the_short_name(tagger, jets, tmp_path):
    from lloca_hep.coffea import JetTagger

    want = tagger.score(jets[:200])
    records = JetTagger(model="jetclass", device="cpu")(jets[:200].constituents)
    np.testing.assert_array_equal(np.stack([ak.to_numpy(records[c]) for c in CLASS_NAMES], 1),
                                  want)
    out = tmp_path / "s.root"
    r = cli("tag", sample_path(classes=True), "--model", "jetclass", "-o", out, "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    tree = uproot.open(out)["scores"]
    assert tree.keys() == [f"score_{c}" for c in CLASS_NAMES]
    # the whole file is batched by multiplicity, the 200 jets above among themselves: the
    # same jets in other batches agree to float32 round-off, not bit for bit
    np.testing.assert_allclose(
        np.stack([tree[f"score_{c}"].array(library="np")[:200] for c in CLASS_NAMES], 1), want,
        rtol=1e-5, atol=1e-7)


def test_demo_classes(tmp_path):
    r = cli("demo", "--classes", "-o", tmp_path / "demo", "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "demo" / "jetclass"
    for name in ("jetclass_sample_scores.root", "confusion.png", "roc.png", "metrics.json"):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] >= MIN_ACCURACY and set(metrics["per_class"]) == set(CLASS_NAMES)
    assert "Tbl" in r.stdout and "macro AUC" in r.stdout
