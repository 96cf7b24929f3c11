"""Data-parallel training with torchrun + DDP (gloo on the CPU): two processes reproduce one
process with the same seed and global batch; rank 0 alone writes; --resume under DDP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from lloca_hep.tagger import read_tagger_header
from lloca_hep.training import TrainConfig, train
from lloca_hep.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from lloca_hep.training.data import PaddedDataset
from lloca_hep.training.distributed import (
    DistributedSetup,
    RankSlices,
    _rank_slice,
    _SliceWeight,
    setup_from_env,
)

SAMPLE = Path(__file__).resolve().parents[1] / "lloca_hep" / "data" / "sample.root"
TINY_TRANSFORMER = {"hidden": 16, "blocks": 1, "heads": 2, "frames_hidden": 16}
#: 541 jets: 487 for training (54 held out), so the last global batch of 64 has 39 jets,
#: which two processes cut into 20 + 19 (the weighting of a partial batch is exercised).
SETTINGS = dict(model="transformer", model_config=TINY_TRANSFORMER, epochs=2, batch_size=64,
                max_constituents=32, max_jets=541, seed=3, device="cpu", num_threads=1,
                schedule="cosine", lr=1e-3)
#: Float tolerance of "equal": the gradients of two processes are summed in another order.
#: (Measured: max |diff| 3e-6 after two epochs, in the attention's key bias, whose gradient is
#: zero up to round-off and which Adam moves by that noise; another seed differs by ~1, see
#: test_the_comparison_can_fail.)
ATOL, RTOL = 2e-4, 1e-3
FILES = {"checkpoint.pt", "history.json", "tagger.pt"}


def _cli_options(settings):
    return ["--model", settings["model"], "--config", json.dumps(settings["model_config"]),
            "--epochs", str(settings["epochs"]), "--batch-size", str(settings["batch_size"]),
            "--max-constituents", str(settings["max_constituents"]),
            "--max-jets", str(settings["max_jets"]), "--seed", str(settings["seed"]),
            "--device", "cpu", "--threads", "1", "--schedule", settings["schedule"],
            "--lr", str(settings["lr"]), "--no-progress"]


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}


def _torchrun(*args, nproc=2, timeout=300):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())


def _torchrun_train(out, *extra, nproc=2):
    return _torchrun("-m", "lloca_hep.training", "train", SAMPLE, *_cli_options(SETTINGS),
                     "-o", out, *extra, nproc=nproc)


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def _max_diff(a, b):
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def _allclose(a, b):
    return a.keys() == b.keys() and all(
        torch.allclose(a[k].double(), b[k].double(), rtol=RTOL, atol=ATOL) for k in a)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "run"
    return train(SAMPLE, TrainConfig(**SETTINGS), output_dir=out, progress=False)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("two") / "run"
    proc = _torchrun_train(out)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, proc


def test_two_processes_match_one_process(one_process, two_processes):
    out, proc = two_processes
    assert {p.name for p in out.iterdir()} == FILES  # no stray files of a second writer
    assert proc.stdout.count("saved ") == 1  # rank 0 reports
    ref = _weights(one_process.tagger_path)
    got = _weights(out / "tagger.pt")
    assert _allclose(got, ref), f"max |diff| {_max_diff(got, ref):.3g}"
    history = json.loads((out / "history.json").read_text())
    ref_history = one_process.history
    assert [h["epoch"] for h in history] == [1, 2]
    for h, r in zip(history, ref_history, strict=True):
        assert h["world_size"] == 2 and h["backend"] == "gloo"
        assert r["world_size"] == 1 and r["backend"] is None
        assert h["fraction"] == r["fraction"] == 1.0  # every training jet once, no copies
        assert h["train_loss"] == pytest.approx(r["train_loss"], rel=1e-5)
        assert h["val_loss"] == pytest.approx(r["val_loss"], rel=1e-4)
    meta = read_tagger_header(out / "tagger.pt")["metadata"]
    assert meta["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert one_process.metadata["distributed"] == {"world_size": 1, "backend": None}
    assert meta["n_train_jets"] == one_process.metadata["n_train_jets"] == 487


def test_the_comparison_can_fail(one_process, tmp_path):
    """A run that differs (another seed) is far outside the tolerance of "equal"."""
    other = train(SAMPLE, TrainConfig(**{**SETTINGS, "seed": 4}), output_dir=tmp_path,
                  progress=False)
    assert not _allclose(_weights(other.tagger_path), _weights(one_process.tagger_path))


INTERRUPT_DRIVER = textwrap.dedent(
    """
    import json, sys
    from lloca_hep.training import TrainConfig, train

    settings, out, sample = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]

    def on_batch_end(epoch, batch, loss):
        if (epoch, batch) == (1, 2):  # inside the second epoch, in every process
            raise SystemExit(3)

    train(sample, TrainConfig(**settings), output_dir=out, progress=False,
          on_batch_end=on_batch_end)
    """
)


def test_resume_under_ddp_continues_to_the_same_result(two_processes, tmp_path):
    full, _ = two_processes
    driver = tmp_path / "driver.py"
    driver.write_text(INTERRUPT_DRIVER)
    out = tmp_path / "interrupted"
    proc = _torchrun(driver, json.dumps(SETTINGS), out, SAMPLE)
    assert proc.returncode != 0
    assert load_checkpoint(out / "checkpoint.pt").epoch == 1
    assert not (out / "tagger.pt").exists()
    single = tmp_path / "single"
    shutil.copytree(out, single)

    resumed = _torchrun_train(out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "after epoch 1" in resumed.stderr
    history = json.loads((out / "history.json").read_text())
    ref_history = json.loads((full / "history.json").read_text())
    assert [h["train_loss"] for h in history] == [h["train_loss"] for h in ref_history]
    got, ref = _weights(out / "tagger.pt"), _weights(full / "tagger.pt")
    assert all(torch.equal(got[k], ref[k]) for k in ref), f"max |diff| {_max_diff(got, ref)}"

    # the same checkpoint resumed by one process gives the same result within tolerance
    one = train(SAMPLE, TrainConfig(**{**SETTINGS, "resume": True}), output_dir=single,
                progress=False)
    assert [h["world_size"] for h in one.history] == [2, 1]
    assert _allclose(_weights(one.tagger_path), ref)


# ---------------------------------------------------------------- in-process checks


def _dataset(n, n_const=5):
    rng = np.random.default_rng(0)
    p4 = rng.normal(size=(n, n_const, 4))
    mask = np.zeros((n, n_const), dtype=bool)
    for i in range(n):
        mask[i, : 1 + i % n_const] = True
    return PaddedDataset(p4, mask, np.arange(n, dtype=np.float32))


@pytest.mark.parametrize(("n", "world"), [(8, 2), (7, 2), (5, 3), (2, 3), (1, 4)])
def test_rank_slices_cover_each_batch_once(n, world):
    bounds = [_rank_slice(n, world, r) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1


def test_rank_slices_weights_and_zero_weight_copies():
    data = _dataset(21)  # batches of 8: 8, 8, 5 -> slices 3+3+2, 3+3+2, 2+2+1
    world = 3
    real, weights = [], []
    for rank in range(world):
        state = _SliceWeight()
        sliced = RankSlices(data, DistributedSetup(world_size=world, rank=rank), state)
        assert len(sliced) == 21 and sliced.n_batches(8) == 3
        batches = list(sliced.batches(8, shuffle=True, seed=5))
        queued = list(state.pending)  # (jets in the step, real jets, weight) per batch
        assert [b.labels.shape[0] for b in batches] == [q[0] for q in queued]
        real.append([b.labels[: q[1]] for b, q in zip(batches, queued, strict=True)])
        weights.append([q[2] for q in queued])
        for b in batches:  # padding columns that no jet of the slice uses are dropped
            assert bool(b.mask[:, -1].any())
    # the slices of the processes, in rank order, are the one-process batches (labels = ids)
    for i, batch in enumerate(data.batches(8, shuffle=True, seed=5)):
        assert torch.equal(torch.cat([real[r][i] for r in range(world)]), batch.labels)
    assert weights[0] == pytest.approx([3 / 8, 3 / 8, 2 / 5])
    assert np.allclose(np.sum(weights, axis=0), 1.0)  # n_r / b sums to one per batch

    tiny = _dataset(9)  # batches of 8, 1: the last jet goes to rank 0 alone
    state = _SliceWeight()
    batches = list(RankSlices(tiny, DistributedSetup(world_size=3, rank=2), state).batches(8))
    assert [q[1:3] for q in state.pending] == [(2, 2 / 8), (0, 0.0)]  # a zero-weight copy
    assert batches[1].labels.tolist() == [8.0]


def test_settings_ddp_cannot_honour_are_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    cpu = torch.device("cpu")
    with pytest.raises(ValueError, match="not divisible by the 2 processes"):
        setup_from_env(TrainConfig(batch_size=65), cpu)
    with pytest.raises(ValueError, match="time-budget"):
        setup_from_env(TrainConfig(batch_size=64, time_budget_s=60.0), cpu)
    with pytest.raises(ValueError, match="nccl needs CUDA"):
        setup_from_env(TrainConfig(batch_size=64, dist_backend="nccl"), cpu)
    monkeypatch.delenv("RANK")
    with pytest.raises(ValueError, match="torchrun"):
        setup_from_env(TrainConfig(batch_size=64), cpu)
    monkeypatch.setenv("WORLD_SIZE", "1")  # one process: no group at all
    assert setup_from_env(TrainConfig(), cpu) == DistributedSetup()


def test_only_rank_zero_writes_checkpoints(monkeypatch, tmp_path):
    ckpt = Checkpoint(epoch=1, model={}, best_model={}, optimizer={}, scheduler={},
                      rng={"torch": torch.get_rng_state()})
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None: 1)
    assert save_checkpoint(ckpt, tmp_path / "c.pt") == tmp_path / "c.pt"
    assert not (tmp_path / "c.pt").exists()
    monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None: 0)
    save_checkpoint(ckpt, tmp_path / "c.pt")
    assert load_checkpoint(tmp_path / "c.pt").epoch == 1


def test_rank_slices_keep_jet_weights_and_share_the_summed_weight():
    """With per-jet weights each process keeps its slice's weights, and its gradient share is
    its part of the batch's summed weight (so that the sum over the processes is the gradient
    of the batch's weighted mean loss)."""
    from lloca_hep.training.weights import Weighting

    data = _dataset(16)
    data.weights = np.linspace(0.5, 8.0, 16).astype(np.float32)
    world = 2
    shares, kept = [], []
    for rank in range(world):
        state = _SliceWeight()
        sliced = RankSlices(data, DistributedSetup(world_size=world, rank=rank), state,
                            Weighting(branch="w"))
        batches = list(sliced.batches(8, shuffle=True, seed=1))
        kept.append([b.weights for b in batches])
        shares.append([q[2] for q in state.pending])
    for i, batch in enumerate(data.batches(8, shuffle=True, seed=1)):
        assert torch.equal(torch.cat([kept[r][i] for r in range(world)]), batch.weights)
        w = batch.weights.double()
        expected = [float(w[:4].sum() / w.sum()), float(w[4:].sum() / w.sum())]
        assert [shares[r][i] for r in range(world)] == pytest.approx(expected)
        assert expected[0] != pytest.approx(0.5)  # unequal weights: not the count share


def test_weighted_two_processes_match_one_process(tmp_path):
    """--weight-branch and --class-balance under DDP reproduce the one-process run."""
    settings = {**SETTINGS, "epochs": 1, "weight_branch": "jet_pt", "class_balance": True}
    ref = train(SAMPLE, TrainConfig(**settings), output_dir=tmp_path / "one", progress=False)
    out = tmp_path / "two"
    proc = _torchrun("-m", "lloca_hep.training", "train", SAMPLE, *_cli_options(settings),
                     "--weight-branch", "jet_pt", "--class-balance", "-o", out)
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = _weights(out / "tagger.pt")
    want = _weights(ref.tagger_path)
    assert _allclose(got, want), f"max |diff| {_max_diff(got, want):.3g}"
    history = json.loads((out / "history.json").read_text())
    assert history[0]["train_loss"] == pytest.approx(ref.history[0]["train_loss"], rel=1e-5)
    meta = read_tagger_header(out / "tagger.pt")["metadata"]
    assert meta["weighting"] == ref.metadata["weighting"]
    assert meta["weighting"]["class_balance"] is True
