"""Multi-class tagging from ROOT file to per-class scores: one-hot labels found automatically,
cross-entropy training with the ``full`` features, ``evaluate``'s JetClass table, ``tag``'s
``score_<class>`` branches, the same scores through every route, and the label errors."""

from __future__ import annotations

import importlib.resources
import json
import subprocess
import sys

import awkward as ak
import numpy as np
import pytest
import torch
import uproot
from jetclass_files import write_jetclass

import lloca_hep
from lloca_hep.errors import LabelError
from lloca_hep.tagger import FORMAT_VERSION, read_tagger_header
from lloca_hep.training import TrainConfig, train
from lloca_hep.training.labels import LabelSpec, extract_labels, resolve_labels

SMALL = '{"hidden": 16, "blocks": 1, "heads": 2, "frames_hidden": 8}'
#: uproot writes the branches of a dict in sorted order, so the file order of the classes is
FILE_CLASSES = ("Hbb", "QCD", "Tbqq")


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lloca_hep", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("mc")
    return {"dir": d, "train": write_jetclass(d / "train.root", 60, seed=1),
            "val": write_jetclass(d / "val.root", 20, seed=2),
            "test": write_jetclass(d / "test.root", 20, seed=3)}


@pytest.fixture(scope="module")
def run(data):
    out = data["dir"] / "run"
    r = cli("train", data["train"], "--val", data["val"], "--features", "full", "-o", out,
            "--epochs", "1", "--config", SMALL, "--max-constituents", "16", "--no-progress",
            "--threads", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def test_train_finds_onehot_labels_and_records_inputs(run):
    header = read_tagger_header(run / "tagger.pt")
    assert header["classes"] == list(FILE_CLASSES)
    assert header["format_version"] == FORMAT_VERSION
    assert header["inputs"]["name"] == "full" and len(header["inputs"]["features"]) == 10
    assert header["config"]["num_classes"] == 3 and header["config"]["num_scalars"] == 10
    assert header["metadata"]["labels"]["kind"] == "onehot"
    history = json.loads((run / "history.json").read_text())
    assert np.isfinite(history[0]["val_loss"]) and "val_auc" in history[0]
    tagger = lloca_hep.load_tagger(run / "tagger.pt", device="cpu")
    assert tagger.is_multiclass and tagger.class_names == FILE_CLASSES


def test_evaluate_prints_the_jetclass_table(run, data):
    out = run / "eval"
    r = cli("evaluate", data["test"], "--model", run / "tagger.pt", "-o", out, "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    for name in FILE_CLASSES:
        assert name in r.stdout
    assert "macro AUC" in r.stdout and "1/eps_B" in r.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_jets"] == 60 and 0.0 <= metrics["accuracy"] <= 1.0
    assert set(metrics["per_class"]) == set(FILE_CLASSES)
    assert metrics["per_class"]["QCD"]["rejection"] is None  # the background
    assert metrics["per_class"]["Hbb"]["signal_efficiency"] == 0.5
    for png in ("confusion.png", "roc.png"):
        assert (out / png).stat().st_size > 0


def test_tag_writes_one_branch_per_class_entry_aligned(run, data):
    out = data["dir"] / "scores.root"
    r = cli("tag", data["test"], "--model", run / "tagger.pt", "-o", out, "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    tree = uproot.open(out)["scores"]
    assert tree.keys() == [f"score_{c}" for c in FILE_CLASSES]
    assert tree.num_entries == uproot.open(data["test"])["tree"].num_entries
    got = np.stack([tree[f"score_{c}"].array(library="np") for c in FILE_CLASSES], axis=1)
    tagger = lloca_hep.load_tagger(run / "tagger.pt", device="cpu")
    want = tagger.score(lloca_hep.read_jets(data["test"], features=tagger.inputs))
    assert want.shape == (60, 3)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)


def test_routes_agree(run, data):
    """tag_file (above), JetTagger on read_jets' constituents and score_files: bit-identical."""
    from lloca_hep.coffea import JetTagger
    from lloca_hep.integrations.dask import score_files

    tagger = lloca_hep.load_tagger(run / "tagger.pt", device="cpu")
    jets = lloca_hep.read_jets(data["test"], features=tagger.inputs)
    want = tagger.score(jets)
    records = JetTagger(model=run / "tagger.pt", device="cpu")(jets.constituents)
    assert records.fields == list(FILE_CLASSES)
    np.testing.assert_array_equal(
        np.stack([ak.to_numpy(records[c]) for c in FILE_CLASSES], axis=1), want)
    [path] = score_files([data["test"]], data["dir"] / "dask", model=run / "tagger.pt",
                         device="cpu", scheduler="sync")
    tree = uproot.open(path)["scores"]
    np.testing.assert_array_equal(
        np.stack([tree[f"score_{c}"].array(library="np") for c in FILE_CLASSES], axis=1), want)


def test_tagger_on_file_without_its_features_exits_2(run, tmp_path):
    plain = tmp_path / "plain.root"
    with uproot.recreate(plain) as f:
        f["tree"] = {"part": ak.zip({"px": [[10.0]], "py": [[1.0]], "pz": [[0.0]],
                                     "energy": [[11.0]]})}
    out = tmp_path / "s.root"
    r = cli("tag", plain, "--model", run / "tagger.pt", "-o", out, "--no-progress")
    assert r.returncode == 2
    assert "part_charge" in r.stderr and "input set 'full'" in r.stderr and str(plain) in r.stderr
    assert not out.exists()


# ----------------------------------------------------------------------------- labels
BRANCHES = ["part_px", "jet_pt", "label_QCD", "label_Hbb", "label_Tbqq"]


def test_resolve_labels_kinds():
    spec = resolve_labels(BRANCHES, "is_signal", None, "f.root:tree", "is_signal")
    assert spec == LabelSpec("onehot", ("label_QCD", "label_Hbb", "label_Tbqq"),
                             ("QCD", "Hbb", "Tbqq"))
    # --classes reorders the columns; names that do not match are an error
    spec = resolve_labels(BRANCHES, "is_signal", ["Tbqq", "QCD", "Hbb"], "f", "is_signal")
    assert spec.branches == ("label_Tbqq", "label_QCD", "label_Hbb")
    with pytest.raises(LabelError, match="do not match the one-hot labels"):
        resolve_labels(BRANCHES, "is_signal", ["QCD", "Zqq"], "f.root:tree", "is_signal")
    # binary is_signal as before, integer classes with --classes
    assert resolve_labels(["is_signal"], "is_signal", None, "f", "is_signal").kind == "binary"
    spec = resolve_labels(["cls"], "cls", ["a", "b", "c"], "f", "is_signal")
    assert (spec.kind, spec.n_classes, spec.multiclass) == ("index", 3, True)
    with pytest.raises(LabelError, match="label branch 'is_signal' not found"):
        resolve_labels(["part_px"], "is_signal", None, "f.root:tree", "is_signal")


@pytest.mark.parametrize("row, n_set", [((0, 0, 0), 0), ((1, 1, 0), 2), ((0.5, 0.5, 0), 2)])
def test_not_one_hot_rows_are_named(row, n_set):
    spec = LabelSpec("onehot", ("label_a", "label_b", "label_c"), ("a", "b", "c"))
    good = {"label_a": 1, "label_b": 0, "label_c": 0}
    jets = ak.Array([good, good, dict(zip(spec.branches, row, strict=True))])
    with pytest.raises(LabelError, match=rf"f.root:tree: jet 12 is not one-hot \({n_set} of"):
        extract_labels(jets, spec, "f.root:tree", first_jet=10)


def test_labels_of_bool_int_float_branches(tmp_path):
    for dtype in ("bool", "int32", "float32"):
        path = write_jetclass(tmp_path / f"{dtype}.root", 5, label_dtype=dtype)
        jets = lloca_hep.read_jets(path)
        spec = resolve_labels(ak.fields(jets), "is_signal", None, "f", "is_signal")
        y = extract_labels(jets, spec, "f")
        assert y.dtype == np.int64 and np.bincount(y).tolist() == [5, 5, 5]


def test_integer_class_branch_with_classes_trains(tmp_path):
    path = write_jetclass(tmp_path / "int.root", 20, integer_label=True)
    config = TrainConfig(epochs=1, label_branch="label", classes=["QCD", "Hbb", "Tbqq"],
                         features="kinpid", model_config=json.loads(SMALL), max_constituents=12,
                         device="cpu")
    result = train(path, config, output_dir=tmp_path / "run", progress=False)
    assert result.tagger.class_names == ("QCD", "Hbb", "Tbqq")
    assert result.tagger.inputs.name == "kinpid"
    assert result.tagger.score(lloca_hep.read_jets(path, features="kinpid")).shape == (60, 3)


def test_cli_label_errors_exit_2(tmp_path):
    path = write_jetclass(tmp_path / "t.root", 5)
    r = cli("train", path, "--classes", "QCD,Zqq,Wqq", "-o", tmp_path / "run", "--epochs", "1",
            "--no-progress")
    assert r.returncode == 2
    assert "do not match the one-hot labels" in r.stderr and str(path) in r.stderr
    assert not (tmp_path / "run").exists()


def test_binary_tagger_unchanged():
    tagger = lloca_hep.load_tagger(device="cpu")
    assert not tagger.is_multiclass and tagger.class_names == ("background", "signal")
    assert tagger.inputs.name == "kin" and len(tagger.inputs) == 0
    sample = importlib.resources.files("lloca_hep") / "data" / "sample.root"
    with torch.no_grad():
        scores = tagger.score(lloca_hep.read_jets(str(sample), entry_stop=5))
    assert scores.shape == (5,)
