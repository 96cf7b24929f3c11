"""Fine-tuning (--init-from TAGGER, --freeze): the shipped top tagger into a ten-class tagger
on a JetClass-format file; new input features; what is copied, re-initialised and frozen."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lloca_hep.models import build_model
from lloca_hep.tagger import Tagger, load_tagger, read_tagger_header
from lloca_hep.training import TrainConfig, train
from lloca_hep.training.__main__ import main
from lloca_hep.training.finetune import load_pretrained, transfer
from tests.jetclass_files import write_jetclass

JETCLASS_SAMPLE = Path(__file__).resolve().parents[1] / "lloca_hep" / "data" / "jetclass_sample.root"
TEN_CLASSES = ["QCD", "Hbb", "Hcc", "Hgg", "H4q", "Hqql", "Zqq", "Wqq", "Tbqq", "Tbl"]
NEW_HEAD = ["head.net.3.weight", "head.net.3.bias"]
TINY_TRANSFORMER = {"hidden": 16, "blocks": 1, "heads": 2, "frames_hidden": 16}


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def test_default_tagger_fine_tuned_into_ten_classes(tmp_path, capsys):
    out = tmp_path / "ten"
    rc = main(["train", str(JETCLASS_SAMPLE), "--init-from", "default", "--freeze", "backbone",
               "--max-jets", "2000", "--epochs", "1", "--max-constituents", "48",
               "--batch-size", "128", "--lr", "3e-3", "--device", "cpu", "--threads", "2",
               "--no-progress", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    tagger = load_tagger(out / "tagger.pt", device="cpu")
    assert tagger.model_name == "LLoCaTransformer"
    assert list(tagger.class_names) == TEN_CLASSES
    meta = read_tagger_header(out / "tagger.pt")["metadata"]
    init = meta["init_from"]
    assert init["tagger"] == "default" and init["freeze"] == "backbone"
    assert init["reinitialised"] == NEW_HEAD and init["new"] == [] and init["unused"] == []

    before = load_tagger("default", device="cpu").model.state_dict()
    after = _weights(out / "tagger.pt")
    assert init["n_copied"] == len(before) - len(NEW_HEAD)
    assert after["head.net.3.weight"].shape == (10, before["head.net.3.weight"].shape[1])
    head = [k for k in after if k.startswith("head.")]
    frozen = [k for k in after if not k.startswith("head.")]
    assert frozen and all(torch.equal(after[k], before[k]) for k in frozen)  # kept fixed
    assert all(not torch.equal(after[k], before[k]) for k in head if k not in NEW_HEAD)
    history = json.loads((out / "history.json").read_text())
    assert np.isfinite(history[0]["val_loss"])


@pytest.fixture(scope="module")
def tiny_tagger(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("LLoCaTransformer", TINY_TRANSFORMER)
    return Tagger(model, "LLoCaTransformer", 24, device="cpu").save(
        tmp_path_factory.mktemp("tiny") / "tiny.pt")


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory):
    return write_jetclass(tmp_path_factory.mktemp("jc") / "jc.root", n_per_class=60)


def test_new_features_reinitialise_the_input_layers_and_freeze_frames(tiny_tagger,
                                                                      three_classes, tmp_path):
    config = TrainConfig(init_from=str(tiny_tagger), freeze="frames", features="kinpid",
                         epochs=1, batch_size=32, max_constituents=24, lr=3e-3, device="cpu",
                         num_threads=1)
    result = train(three_classes, config, output_dir=tmp_path, progress=False)
    init = result.metadata["init_from"]
    # six new invariant scalars widen the embedding and the frames net's first layer
    assert set(init["reinitialised"]) == {"embed.weight", "frame_choice.net.fc1.weight",
                                          *NEW_HEAD}
    before, after = _weights(tiny_tagger), _weights(result.tagger_path)
    frames = [k for k in before if k.startswith("frame_choice.")
              and k not in init["reinitialised"]]
    assert frames and all(torch.equal(after[k], before[k]) for k in frames)
    trained = ["blocks.0.attn.qkv.weight", "embed.bias", "head.net.0.weight"]
    assert all(not torch.equal(after[k], before[k]) for k in trained)
    assert after["frame_choice.net.fc1.weight"].shape != before["frame_choice.net.fc1.weight"].shape
    assert init["n_frozen"] == len(frames)
    assert set(result.tagger.class_names) == {"QCD", "Hbb", "Tbqq"}
    assert result.config.model == "LLoCaTransformer"


def test_transfer_copies_matching_tensors_only(tiny_tagger):
    pre = load_pretrained(str(tiny_tagger))
    torch.manual_seed(1)
    model = build_model("LLoCaTransformer", {**TINY_TRANSFORMER, "num_classes": 4})
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    report = transfer(model, pre)
    assert report.reinitialised == NEW_HEAD
    state = model.state_dict()
    assert all(torch.equal(state[k], pre.state[k]) for k in report.copied)
    assert all(torch.equal(state[k], fresh[k]) for k in NEW_HEAD)


def test_fine_tuning_settings_are_checked(tiny_tagger, three_classes, tmp_path):
    with pytest.raises(ValueError, match="needs init_from"):
        TrainConfig(freeze="backbone")
    with pytest.raises(ValueError, match="freeze must be one of"):
        TrainConfig(init_from="default", freeze="all")
    with pytest.raises(ValueError, match="differs from the model"):
        train(three_classes, TrainConfig(init_from=str(tiny_tagger), model="graphnet",
                                         device="cpu"), output_dir=tmp_path / "a",
              progress=False)
    with pytest.raises(ValueError, match="exported tagger"):
        train(three_classes, TrainConfig(init_from=str(tmp_path / "x.onnx"), device="cpu"),
              output_dir=tmp_path / "b", progress=False)
    with pytest.raises(ValueError, match="no frames net"):
        train(three_classes, TrainConfig(init_from=str(tiny_tagger), frames="identity",
                                         freeze="frames", epochs=1, device="cpu"),
              output_dir=tmp_path / "c", progress=False)
    rc = main(["train", str(three_classes), "--init-from", str(tmp_path / "missing.pt"),
               "--no-progress", "-o", str(tmp_path / "d")])
    assert rc == 2
    assert not (tmp_path / "d").exists()
