"""Careless and hostile input to ``lloca-hep train`` and ``lloca-hep evaluate`` (issue 11).

The contract: exit code 0 success, 1 runtime failure, 2 bad input or usage, with a message that
names the file, branch or option and the problem; never a traceback; inputs never modified; no
temporary files and no empty output directory left by a failed run. Every case runs the real
command in a subprocess inside a private directory, and compares a snapshot of that directory
(every file's sha256, every directory) before and after.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch
import uproot

from lloca_hep.models import build_model
from lloca_hep.training import TrainConfig, train
from lloca_hep.training.checkpoint import CheckpointError, load_checkpoint
from tests.test_training_synthetic import synthetic_jets, write_jet_file

#: Seed of the ``tagger_file`` fixture (tests/conftest.py).
TAGGER_SEED = 7
FAST = ["--model", "jet_mass", "--epochs", "1", "--batch-size", "64", "--max-constituents",
        "16", "--device", "cpu", "--threads", "1", "--no-progress"]
COMMAND_TIMEOUT_S = 300


# ---------------------------------------------------------------------------- helpers
def _write_labelled(path: Path, n_jets: int, label: int, seed: int) -> Path:
    """A synthetic jet file whose ``is_signal`` is ``label`` for every jet."""
    data = synthetic_jets(n_jets, seed)
    data["is_signal"] = np.full(n_jets, label, np.int32)
    with uproot.recreate(path) as f:
        tree = f.mktree("jets", {k: (v.type if isinstance(v, ak.Array) else v.dtype)
                                 for k, v in data.items()})
        tree.extend(data)
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("safety-data")
    return {
        "train.root": write_jet_file(d / "train.root", 200, seed=31),
        "val.root": write_jet_file(d / "val.root", 100, seed=32),
        "sig.root": _write_labelled(d / "sig.root", 80, 1, seed=33),
        "sig_b.root": _write_labelled(d / "sig_b.root", 80, 1, seed=34),
        "bkg.root": _write_labelled(d / "bkg.root", 80, 0, seed=35),
    }


@pytest.fixture
def work(sources, tmp_path):
    """A private directory holding copies of the input files (and a text file posing as ROOT)."""
    for name, src in sources.items():
        shutil.copyfile(src, tmp_path / name)
    (tmp_path / "notroot.root").write_text("this is not a ROOT file\n")
    return tmp_path


def snapshot(root: Path) -> dict[str, str]:
    """Every file (sha256) and directory under ``root``, hidden ones included."""
    state = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        state[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return state


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m lloca_hep ARGS`` in ``cwd``."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "lloca_hep", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr


def assert_refused(result: subprocess.CompletedProcess[str], code: int, *needles: str,
                   root: Path, before: dict[str, str]) -> None:
    """Exit ``code``, every needle in stderr, no traceback, and ``root`` exactly as before (inputs
    unchanged, no temporary file, no output directory left)."""
    assert result.returncode == code, (result.returncode, result.stderr)
    no_traceback(result)
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)
    assert snapshot(root) == before


def no_temporaries(root: Path) -> None:
    leftovers = [p for p in root.rglob("*") if ".tmp" in p.name]
    assert not leftovers, leftovers


# ---------------------------------------------------------------------------- 1. time budget
@pytest.mark.parametrize("budget", ["-1", "0", "nan", "inf"])
def test_non_positive_time_budget_is_a_usage_error(work, budget):
    before = snapshot(work)
    result = cli(work, "train", "train.root", *FAST, "-o", "run", f"--time-budget={budget}")
    assert_refused(result, 2, "--time-budget", "expected a positive number", root=work,
                   before=before)


@pytest.mark.parametrize("budget", [-60.0, 0.0, float("nan")])
def test_train_function_refuses_non_positive_time_budget(work, budget):
    before = snapshot(work)
    with pytest.raises(ValueError, match="time_budget_s must be a positive"):
        train(work / "train.root", TrainConfig(model="jet_mass", time_budget_s=budget,
              device="cpu"), output_dir=work / "run", progress=False)
    assert snapshot(work) == before


def test_run_that_completes_no_epoch_writes_no_tagger(work):
    """A (doctored) finished checkpoint without history: nothing was trained, so no tagger.pt
    is written, and the command fails (exit 1) saying so."""
    run = work / "run"
    train(work / "train.root", TrainConfig(model="jet_mass", epochs=1, batch_size=64,
          max_constituents=16, device="cpu"), output_dir=run, progress=False)
    ckpt = run / "checkpoint.pt"
    payload = torch.load(ckpt, weights_only=True)
    meta = json.loads(payload["meta"])
    meta["history"] = []
    payload["meta"] = json.dumps(meta)
    torch.save(payload, ckpt)
    (run / "tagger.pt").unlink()
    (run / "history.json").unlink()
    before = snapshot(work)
    result = cli(work, "train", "train.root", "--model", "jet_mass", "--epochs", "1",
                 "--batch-size", "64", "--max-constituents", "16", "--device", "cpu",
                 "--no-progress", "-o", "run", "--resume")
    assert_refused(result, 1, "no epoch was completed", "tagger.pt was not written",
                   root=work, before=before)


# ---------------------------------------------------------------------------- 2. one class
@pytest.mark.parametrize(("files", "found"), [
    (["sig.root"], "1 (signal)"),
    (["bkg.root"], "0 (background)"),
    (["sig.root", "sig_b.root"], "1 (signal)"),
])
def test_single_class_training_data_is_refused(work, files, found):
    before = snapshot(work)
    result = cli(work, "train", *files, *FAST, "-o", "run")
    assert_refused(result, 2, *files, "label branch 'is_signal'", f"only class {found}",
                   "needs both", root=work, before=before)


def test_single_class_validation_data_warn_and_train(work):
    """Documented choice: a one-class validation set is allowed (the validation loss still
    picks the best epoch) but warned about, since AUC and rejections are undefined."""
    before = snapshot(work)
    result = cli(work, "train", "train.root", "--val", "sig.root", *FAST, "-o", "run")
    assert result.returncode == 0, result.stderr
    no_traceback(result)
    assert "WARNING" in result.stderr and "sig.root" in result.stderr
    assert "only class 1 (signal)" in result.stderr and "AUC" in result.stderr
    assert "AUC n/a" in result.stdout
    after = snapshot(work)
    assert {k: after[k] for k in before} == before  # inputs unchanged
    assert {"run", "run/tagger.pt", "run/checkpoint.pt", "run/history.json"} == (
        set(after) - set(before))
    no_temporaries(work)


# ---------------------------------------------------------------------------- 3. model sizes
@pytest.mark.parametrize(("model", "config", "option"), [
    ("transformer", {"hidden": 0}, "hidden"),
    ("transformer", {"heads": 0}, "heads"),
    ("transformer", {"blocks": -1}, "blocks"),
    ("graphnet", {"neighbours": 0}, "neighbours"),
])
def test_non_positive_model_sizes_are_refused(work, model, config, option):
    before = snapshot(work)
    result = cli(work, "train", "train.root", "--model", model, "--config", json.dumps(config),
                 "--no-progress", "--device", "cpu", "-o", "run")
    assert_refused(result, 2, f"option {option!r}", "must be an integer >= 1", root=work,
                   before=before)


@pytest.mark.parametrize(("name", "config"), [
    ("LLoCaTransformer", {"hidden": 0}), ("LLoCaTransformer", {"heads": -2}),
    ("LLoCaTransformer", {"mlp_ratio": 0}), ("LLoCaTransformer", {"num_classes": 0}),
    ("LLoCaTransformer", {"blocks": True}), ("LLoCaTransformer", {"frames_hidden": 8.5}),
    ("LLoCaGraphNet", {"layers": 0}), ("JetMassTagger", {"hidden": -4}),
    ("plain_transformer", {"heads": 0}),
])
def test_build_model_names_the_bad_size(name, config):
    (option,) = config
    with pytest.raises(ValueError, match=f"option '{option}' must be an integer >= 1"):
        build_model(name, config)


def test_valid_sizes_still_build():
    model = build_model("LLoCaTransformer", {"hidden": 8, "blocks": 1, "heads": 1,
                                             "num_classes": None})
    assert model.config["hidden"] == 8


# ---------------------------------------------------------------------------- 4. output dirs
def test_failed_run_removes_the_directories_it_created(work):
    before = snapshot(work)
    result = cli(work, "train", "sig.root", *FAST, "-o", "new/nested/run")
    assert_refused(result, 2, "sig.root", root=work, before=before)
    assert not (work / "new").exists()


@pytest.mark.parametrize("out", ["empty", "used"])
def test_failed_run_keeps_a_directory_that_existed(work, out):
    (work / "empty").mkdir()
    (work / "used").mkdir()
    (work / "used" / "notes.txt").write_text("mine\n")
    before = snapshot(work)
    result = cli(work, "train", "bkg.root", *FAST, "-o", out)
    assert_refused(result, 2, "bkg.root", root=work, before=before)


# ---------------------------------------------------------------------------- 5. checkpoints
@pytest.fixture
def checkpoint_run(work):
    """A finished one-epoch run in ``work/run``."""
    train(work / "train.root", TrainConfig(model="jet_mass", epochs=1, batch_size=64,
          max_constituents=16, device="cpu"), output_dir=work / "run", progress=False)
    return work / "run"


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _stub(data: bytes) -> bytes:
    return data[:100]


def _damage(data: bytes) -> bytes:  # zeros over tensor data: torch.load alone does not notice
    third = len(data) // 3
    return data[:third] + bytes(200) + data[third + 200:]


@pytest.mark.parametrize("spoil", [_truncate, _stub, _damage])
def test_truncated_or_damaged_checkpoint_is_named_on_resume(work, checkpoint_run, spoil):
    ckpt = checkpoint_run / "checkpoint.pt"
    ckpt.write_bytes(spoil(ckpt.read_bytes()))
    before = snapshot(work)
    result = cli(work, "train", "train.root", *FAST, "-o", "run", "--epochs", "2", "--resume")
    assert_refused(result, 2, os.path.join("run", "checkpoint.pt"), "truncated or corrupt",
                   root=work, before=before)
    assert "Errno" not in result.stderr


def test_checkpoint_is_read_with_weights_only(tmp_path):
    """A checkpoint holding an arbitrary pickled object is refused, not unpickled."""
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": "lloca-hep-checkpoint", "payload": argparse.Namespace(x=1)}, path)
    with pytest.raises(CheckpointError, match="objects other than tensors"):
        load_checkpoint(path)


# ---------------------------------------------------------------------------- 6. -o is a file
@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_output_that_is_an_existing_file_is_refused(work, command, tagger_file):
    (work / "results").write_text("precious\n")
    before = snapshot(work)
    extra = FAST if command == "train" else ["--model", str(tagger_file), "--no-progress",
                                             "--device", "cpu"]
    result = cli(work, command, "train.root", *extra, "-o", "results")
    assert_refused(result, 2, "output directory results is an existing file; choose a directory",
                   root=work, before=before)
    assert "Errno" not in result.stderr


def test_output_below_an_existing_file_is_refused(work):
    (work / "results").write_text("precious\n")
    before = snapshot(work)
    result = cli(work, "train", "train.root", *FAST, "-o", "results/run")
    assert_refused(result, 2, "results is an existing file", root=work, before=before)


# ---------------------------------------------------------------------------- 7. more cases
@pytest.mark.parametrize("option", [
    ["--lr", "nan"], ["--lr", "-1"], ["--lr", "0"], ["--weight-decay", "-0.1"],
    ["--patience", "-3"], ["--epochs", "0"], ["--batch-size", "0"], ["--max-jets", "-5"],
])
def test_bad_numeric_options_are_usage_errors(work, option):
    before = snapshot(work)
    result = cli(work, "train", "train.root", "-o", "run", *option)
    assert_refused(result, 2, f"argument {option[0]}", "expected a", root=work, before=before)


def test_missing_validation_file_is_named_before_reading_data(work):
    before = snapshot(work)
    result = cli(work, "train", "train.root", *FAST, "--val", "val.root", "missing.root",
                 "-o", "run")
    assert_refused(result, 2, "validation file not found: missing.root", root=work,
                   before=before)


def test_missing_label_branch_lists_the_branches(work):
    before = snapshot(work)
    result = cli(work, "train", "train.root", *FAST, "--label-branch", "is_top", "-o", "run")
    assert_refused(result, 2, "train.root", "is_top", "is_signal", "part_px", root=work,
                   before=before)


def test_training_file_that_is_not_root_is_named(work):
    before = snapshot(work)
    result = cli(work, "train", "notroot.root", *FAST, "-o", "run")
    assert_refused(result, 2, "notroot.root", "not ROOT", root=work, before=before)


def test_evaluate_single_class_file_names_file_and_branch(work, tagger_file):
    before = snapshot(work)
    result = cli(work, "evaluate", "bkg.root", "--model", str(tagger_file), "--device", "cpu",
                 "--no-progress", "-o", "eval")
    assert_refused(result, 2, "bkg.root", "label branch 'is_signal'", "only class 0",
                   root=work, before=before)


def test_validation_file_that_is_a_training_file_is_warned_about(work):
    result = cli(work, "train", "train.root", *FAST, "--val", "./train.root", "-o", "run")
    assert result.returncode == 0, result.stderr
    no_traceback(result)
    assert "WARNING" in result.stderr and "is also a training file" in result.stderr
    no_temporaries(work)
