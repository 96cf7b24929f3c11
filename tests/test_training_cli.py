"""`train`, `evaluate` and `tag` subcommands (lloca_hep.cli) and their Python functions."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch
import uproot

from lloca_hep.inference import tag_file
from lloca_hep.io import read_jets
from lloca_hep.models import build_model
from lloca_hep.tagger import EmptyJetWarning, Tagger, load_tagger
from lloca_hep.training import evaluate_files
from lloca_hep.training.__main__ import main
from lloca_hep.training.evaluate import evaluate
from lloca_hep.training.metrics import roc_auc
from tests.test_training_synthetic import write_jet_file

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PFNANO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pfnano.root"
TINY_TRANSFORMER = {"hidden": 16, "blocks": 1, "heads": 2, "frames_hidden": 16}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    train_file = write_jet_file(d / "train.root", 400, seed=21)
    test_file = write_jet_file(d / "test.root", 300, seed=22, n_empty=2)
    torch.manual_seed(0)
    tagger = Tagger(build_model("LLoCaTransformer", TINY_TRANSFORMER), "LLoCaTransformer", 32,
                    device="cpu")
    model = tagger.save(d / "tiny.pt")
    return {"dir": d, "train": train_file, "test": test_file, "model": model, "tagger": tagger}


def test_train_command_writes_tagger(data, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", str(data["train"]), "--model", "jet_mass", "--epochs", "2",
               "--batch-size", "64", "--lr", "1e-2", "--max-constituents", "16", "-o", str(out),
               "--device", "cpu", "--no-progress"])
    assert rc == 0
    assert "saved" in capsys.readouterr().out
    tagger = load_tagger(out / "tagger.pt", device="cpu")
    assert tagger.model_name == "JetMassTagger" and tagger.max_constituents == 16
    assert len(json.loads((out / "history.json").read_text())) == 2
    # the same directory again without --resume is refused as bad input
    assert main(["train", str(data["train"]), "--model", "jet_mass", "-o", str(out),
                 "--no-progress"]) == 2


@pytest.mark.parametrize("argv", [
    ["train", "missing.root", "--no-progress"],
    ["train", "{train}", "--model", "no_such_model", "--no-progress"],
    ["train", "{train}", "--label-branch", "nope", "--no-progress"],
    ["evaluate", "missing.root", "--model", "{model}"],
    ["evaluate", "{test}", "--model", "missing.pt"],
    ["tag", "missing.root", "-o", "x.root", "--model", "{model}"],
    ["tag", "{test}", "-o", "{out}", "--model", "{test}"],  # a ROOT file is no tagger
])
def test_bad_input_exits_2(data, tmp_path, argv, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fmt = {"train": data["train"], "test": data["test"], "model": data["model"],
           "out": tmp_path / "o.root"}
    assert main([a.format(**fmt) for a in argv]) == 2


def test_evaluate_command_and_function_agree(data, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["evaluate", str(data["test"]), "--model", str(data["model"]), "-o", str(out),
               "--device", "cpu", "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "auc" in printed and "rejection_at_eps_s_0.3" in printed
    numbers = json.loads((out / "metrics.json").read_text())
    for name in ("roc.png", "scores.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    # independent recomputation from the tagger's scores
    jets = read_jets(data["test"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyJetWarning)
        scores = data["tagger"].score(jets)
    labels = ak.to_numpy(jets.is_signal)
    ok = np.isfinite(scores)
    assert numbers["n_jets"] == 298 and numbers["n_empty"] == 2
    assert numbers["auc"] == pytest.approx(roc_auc(labels[ok], scores[ok]), abs=1e-9)
    assert numbers["accuracy"] == pytest.approx(np.mean((scores[ok] >= 0.5) == labels[ok]))
    direct = evaluate(data["tagger"], data["test"], progress=False)
    assert direct.metrics.auc == pytest.approx(numbers["auc"], abs=1e-9)
    assert direct.files == {}
    assert direct.to_json()["n_jets"] == numbers["n_jets"]
    via_path = evaluate_files(data["test"], model=data["model"], device="cpu", progress=False)
    # JSON has no infinity: an infinite rejection is written as the string "inf"
    assert via_path.metrics.rejection_at(0.5) == pytest.approx(
        float(numbers["rejection_at_eps_s_0.5"]))


@pytest.mark.filterwarnings("ignore::lloca_hep.tagger.EmptyJetWarning")
def test_tag_writes_entry_aligned_friend(data, tmp_path, capsys):
    out = tmp_path / "scores.root"
    rc = main(["tag", str(data["test"]), "-o", str(out), "--model", str(data["model"]),
               "--step-size", "64", "--device", "cpu", "--no-progress"])
    assert rc == 0
    assert "300 entries" in capsys.readouterr().out
    with uproot.open(out) as f:
        tree = f["scores"]
        assert tree.keys() == ["score"]
        written = tree["score"].array(library="np")
    assert written.dtype == np.float32 and len(written) == 300
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyJetWarning)
        expected = data["tagger"].score(read_jets(data["test"]))
    np.testing.assert_array_equal(np.isnan(written), np.isnan(expected))
    np.testing.assert_allclose(written[2:], expected[2:], rtol=1e-5, atol=1e-6)
    # existing output: refused without --overwrite, replaced with it
    assert main(["tag", str(data["test"]), "-o", str(out), "--model", str(data["model"]),
                 "--no-progress"]) == 2
    assert main(["tag", str(data["test"]), "-o", str(out), "--model", str(data["model"]),
                 "--overwrite", "--no-progress"]) == 0


def test_tag_never_writes_over_its_input(data, tmp_path):
    victim = tmp_path / "input.root"
    shutil.copy(data["test"], victim)
    before = victim.read_bytes()
    assert main(["tag", str(victim), "-o", str(victim), "--model", str(data["model"]),
                 "--overwrite", "--no-progress"]) == 2
    assert victim.read_bytes() == before


def test_tag_file_function_counts_empty_jets(data, tmp_path):
    with pytest.warns(EmptyJetWarning, match="2 of 300 jets"):
        summary = tag_file(data["test"], tmp_path / "s.root", model=data["tagger"],
                           step_size=100, progress=False)
    assert summary["n_entries"] == 300 and summary["n_jets"] == 300 and summary["n_empty"] == 2
    assert summary["tree"] == "scores" and summary["branch"] == "score"


@pytest.mark.skipif(not PFNANO.exists(), reason="shared PFNano file not available")
def test_tag_event_layout_keeps_jets_per_event(data, tmp_path):
    out = tmp_path / "pfnano_scores.root"
    summary = tag_file(PFNANO, out, model=data["tagger"], step_size=3, progress=False)
    jets = read_jets(PFNANO)
    with uproot.open(PFNANO) as f:
        n_events = f["Events"].num_entries
    with uproot.open(out) as f:
        scores = f["scores"]["score"].array()
    assert summary["n_entries"] == n_events == len(scores)
    assert ak.sum(ak.num(scores)) == len(jets) == summary["n_jets"]
    expected = data["tagger"].score(jets)
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(scores)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore::lloca_hep.tagger.EmptyJetWarning")
def test_tag_threads_option_sets_torch_threads(data, tmp_path):
    before = torch.get_num_threads()
    try:
        rc = main(["tag", str(data["test"]), "-o", str(tmp_path / "t.root"), "--model",
                   str(data["model"]), "--threads", "1", "--no-progress"])
        assert rc == 0 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
