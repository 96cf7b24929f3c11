"""lloca_hep.training: the loop, reproducibility, early stopping, budgets, resume, streaming."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
import uproot

from lloca_hep.tagger import load_tagger, read_tagger_header
from lloca_hep.training import TrainConfig, train
from lloca_hep.training.checkpoint import CheckpointError, load_checkpoint
from lloca_hep.training.data import (
    LabelError,
    PaddedDataset,
    StreamingDataset,
    load_dataset,
    split_dataset,
)
from tests.test_training_synthetic import write_jet_file

FAST = dict(model="jet_mass", batch_size=64, max_constituents=32, device="cpu")
TINY_TRANSFORMER = {"hidden": 16, "blocks": 1, "heads": 2, "frames_hidden": 16}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    return {
        "train": write_jet_file(d / "train.root", 600, seed=11),
        "val": write_jet_file(d / "val.root", 200, seed=12, n_empty=1),
    }


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def _same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_train_learns_and_writes_a_self_describing_tagger(files, tmp_path):
    result = train(files["train"], TrainConfig(epochs=3, lr=1e-2, **FAST), val_files=files["val"],
                   output_dir=tmp_path, progress=False)
    assert result.epochs_completed == 3 and result.stopped_reason == "epochs"
    assert result.tagger_path == tmp_path / "tagger.pt"
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["val_auc"] > 0.95  # the jet mass separates the synthetic classes
    header = read_tagger_header(result.tagger_path)
    assert header["model_name"] == "JetMassTagger"
    meta = header["metadata"]
    assert meta["training"]["seed"] == 0 and meta["training"]["epochs"] == 3
    assert meta["n_train_jets"] == 600 and meta["n_val_jets"] == 199  # empty jet dropped
    assert meta["best_epoch"] == result.best_epoch
    tagger = load_tagger(result.tagger_path, device="cpu")
    assert tagger.max_constituents == 32
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt.epoch == 3
    # checkpoints hold plain tensors only
    raw = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert set(raw) >= {"model", "best_model", "optimizer", "scheduler", "rng", "epoch", "meta"}
    # the tagger holds the best epoch's weights
    assert _same_weights(_weights(result.tagger_path), ckpt.best_model)


def test_seeded_runs_are_reproducible(files, tmp_path):
    a = train(files["train"], TrainConfig(epochs=2, seed=5, **FAST), output_dir=tmp_path / "a",
              progress=False)
    b = train(files["train"], TrainConfig(epochs=2, seed=5, **FAST), output_dir=tmp_path / "b",
              progress=False)
    c = train(files["train"], TrainConfig(epochs=2, seed=6, **FAST), output_dir=tmp_path / "c",
              progress=False)
    assert _same_weights(_weights(a.tagger_path), _weights(b.tagger_path))
    assert not _same_weights(_weights(a.tagger_path), _weights(c.tagger_path))
    assert a.history[-1]["train_loss"] == b.history[-1]["train_loss"]


def test_early_stopping_when_validation_does_not_improve(files, tmp_path):
    result = train(files["train"], TrainConfig(epochs=10, lr=0.0, schedule="constant", patience=2,
                   **FAST), val_files=files["val"], output_dir=tmp_path, progress=False)
    assert result.stopped_reason == "early stopping"
    assert result.epochs_completed == 3 and result.best_epoch == 1


def test_time_budget_stops_mid_epoch(files, tmp_path):
    result = train(files["train"], TrainConfig(epochs=5, time_budget_s=1e-6, **FAST),
                   val_files=files["val"], output_dir=tmp_path, progress=False)
    assert result.stopped_reason == "time budget"
    assert result.epochs_completed == 1
    assert result.history[0]["fraction"] < 1.0
    # resuming a finished run does not train further
    again = train(files["train"], TrainConfig(epochs=5, time_budget_s=1e-6, resume=True, **FAST),
                  val_files=files["val"], output_dir=tmp_path, progress=False)
    assert again.epochs_completed == 1
    assert _same_weights(_weights(result.tagger_path), _weights(again.tagger_path))


def test_existing_checkpoint_needs_resume_and_matching_settings(files, tmp_path):
    train(files["train"], TrainConfig(epochs=1, **FAST), output_dir=tmp_path, progress=False)
    with pytest.raises(FileExistsError, match="resume"):
        train(files["train"], TrainConfig(epochs=1, **FAST), output_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="seed"):
        train(files["train"], TrainConfig(epochs=2, resume=True, seed=99, **FAST),
              output_dir=tmp_path, progress=False)


def test_resume_continues_to_the_same_result(files, tmp_path):
    full = train(files["train"], TrainConfig(epochs=3, **FAST), val_files=files["val"],
                 output_dir=tmp_path / "full", progress=False)
    # interrupt a 3-epoch run inside its second epoch (an exception, so the process survives)
    with pytest.raises(_Interrupt):
        train(files["train"], TrainConfig(epochs=3, **FAST), val_files=files["val"],
              output_dir=tmp_path / "resumed", on_batch_end=_raise_at(epoch=1, batch=2),
              progress=False)
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt").epoch == 1
    resumed = train(files["train"], TrainConfig(epochs=3, resume=True, **FAST),
                    val_files=files["val"], output_dir=tmp_path / "resumed", progress=False)
    assert resumed.epochs_completed == 3
    assert _same_weights(_weights(full.tagger_path), _weights(resumed.tagger_path))
    assert [h["train_loss"] for h in full.history] == [h["train_loss"] for h in resumed.history]


class _Interrupt(Exception):
    pass


def _raise_at(epoch, batch):
    def callback(e, b, loss):
        if (e, b) == (epoch, batch):
            raise _Interrupt
    return callback


KILL_DRIVER = textwrap.dedent(
    """
    import os, sys, time
    from lloca_hep.training import TrainConfig, train

    marker, out, train_file, val_file = sys.argv[1:5]

    def on_batch_end(epoch, batch, loss):
        if epoch == 2 and batch == 3:          # mid-way through the third epoch
            with open(marker, "w") as fh:
                fh.write(str(os.getpid()))
            time.sleep(600)                    # wait to be SIGKILLed

    config = TrainConfig(model="transformer", model_config={tiny}, epochs=4, batch_size=32,
                         max_constituents=32, max_jets=300, seed=7, device="cpu",
                         num_threads=1)
    train(train_file, config, val_files=val_file, output_dir=out, progress=False,
          on_batch_end=on_batch_end)
    """
).replace("{tiny}", repr(TINY_TRANSFORMER))


def _cli_train(files, out, *extra):
    cmd = [sys.executable, "-m", "lloca_hep.training", "train", str(files["train"]), "--val",
           str(files["val"]), "--model", "transformer", "--config", json.dumps(TINY_TRANSFORMER),
           "--epochs", "4", "--batch-size", "32", "--max-jets", "300",
           "--max-constituents", "32", "--seed", "7", "--device", "cpu", "--threads", "1",
           "--no-progress", "-o", str(out), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_sigkill_mid_epoch_then_resume_loses_only_that_epoch(files, tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(KILL_DRIVER)
    marker = tmp_path / "reached"
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, str(driver), str(marker), str(out),
                             str(files["train"]), str(files["val"])], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert proc.poll() is None, f"driver exited early:\n{proc.stdout.read()}"
            assert time.monotonic() < deadline, "driver never reached epoch 3"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    # two full epochs survived the kill; the third was in progress
    assert load_checkpoint(out / "checkpoint.pt").epoch == 2
    assert not (out / "tagger.pt").exists()

    resumed = _cli_train(files, out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "after epoch 2" in resumed.stderr  # continued from the checkpoint, not from scratch
    reference = _cli_train(files, tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr

    history = json.loads((out / "history.json").read_text())
    ref_history = json.loads((tmp_path / "reference" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert [h["train_loss"] for h in history] == [h["train_loss"] for h in ref_history]
    assert _same_weights(_weights(out / "tagger.pt"), _weights(tmp_path / "reference" / "tagger.pt"))


def test_streaming_dataset_matches_in_memory(files, tmp_path):
    mem = load_dataset(files["val"], max_constituents=32, progress=False)
    stream = load_dataset(files["val"], max_constituents=32, memory_limit_bytes=1,
                          step_size=50, progress=False)
    assert isinstance(mem, PaddedDataset) and isinstance(stream, StreamingDataset)
    batches = list(stream.batches(1000, shuffle=False))
    p4 = np.concatenate([b[0].numpy() for b in batches])
    assert p4.shape[0] == len(mem) == 199
    # streamed batches are trimmed to the widest jet of the batch
    np.testing.assert_array_equal(p4, mem.p4[:, : p4.shape[1]])
    np.testing.assert_array_equal(np.concatenate([b[2].numpy() for b in batches]), mem.labels)
    shuffled = np.concatenate([b[2].numpy() for b in stream.batches(32, shuffle=True, seed=1)])
    assert sorted(shuffled) == sorted(mem.labels)

    train_part, val_part = split_dataset(stream, 0.25, seed=0)
    n_train = sum(len(b[2]) for b in train_part.batches(64))
    n_val = sum(len(b[2]) for b in val_part.batches(64))
    assert n_train + n_val == 199 and 40 <= n_val <= 60

    result = train(files["train"], TrainConfig(epochs=1, memory_limit_bytes=1, step_size=100,
                   **FAST), val_files=files["val"], output_dir=tmp_path, progress=False)
    assert result.metadata["n_train_jets"] == 600


def test_in_memory_split_is_seeded_and_disjoint(files):
    data = load_dataset(files["train"], max_constituents=32, progress=False)
    a_train, a_val = split_dataset(data, 0.2, seed=3)
    b_train, b_val = split_dataset(data, 0.2, seed=3)
    assert len(a_val) == 120 and len(a_train) == 480
    np.testing.assert_array_equal(a_val.p4, b_val.p4)
    rows = {r.tobytes() for r in a_train.p4[:, 0]}
    assert not any(r.tobytes() in rows for r in a_val.p4[:, 0])


def test_label_problems_are_named(files, tmp_path):
    with pytest.raises(ValueError, match="no_such_label"):
        train(files["train"], TrainConfig(epochs=1, label_branch="no_such_label", **FAST),
              output_dir=tmp_path / "a", progress=False)
    bad = tmp_path / "bad_labels.root"
    with uproot.open(files["val"]) as f:
        arrays = f["jets"].arrays(["npart", "part_px", "part_py", "part_pz", "part_energy",
                                   "is_signal"])
    import awkward as ak

    part = ak.zip({k: arrays[f"part_{k}"] for k in ("px", "py", "pz", "energy")})
    labels = np.asarray(arrays["is_signal"]).copy()
    labels[5] = 2
    with uproot.recreate(bad) as f:
        t = f.mktree("jets", {"part": part.type, "is_signal": np.int32})
        t.extend({"part": part, "is_signal": labels})
    with pytest.raises(LabelError, match="jet 5 has 2"):
        load_dataset(bad, max_constituents=8, progress=False)


def test_learned_frames_transformer_trains(files, tmp_path):
    result = train(files["train"], TrainConfig(epochs=2, model="transformer",
                   model_config=TINY_TRANSFORMER, lr=3e-3, batch_size=64, max_constituents=32,
                   device="cpu"), val_files=files["val"], output_dir=tmp_path, progress=False)
    assert result.history[-1]["val_auc"] > 0.9
    assert read_tagger_header(result.tagger_path)["config"]["frames"] == "learned"
