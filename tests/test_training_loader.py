"""Issue 17: DataLoader workers, streamed mixing of files, bounded buffers, per-jet weights.

Files are small TTrees written by uproot in several ``extend`` calls, so that they have several
clusters (the unit a piece of :mod:`lloca_hep.training.pieces` is made of).
"""

from __future__ import annotations

import math
import multiprocessing
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch
import uproot

from lloca_hep.core.testing import toy_jets
from lloca_hep.errors import WeightError
from lloca_hep.io import read_jets
from lloca_hep.tagger import load_tagger, read_tagger_header
from lloca_hep.training import TrainConfig, train
from lloca_hep.training.data import (
    PaddedDataset,
    StreamingDataset,
    bytes_per_jet,
    load_dataset,
    split_dataset,
)
from lloca_hep.training.epoch import batch_loss
from lloca_hep.training.labels import LabelSpec
from lloca_hep.training.metrics import accuracy, roc_auc, summarize
from lloca_hep.training.mixing import apportion
from lloca_hep.training.multiclass import summarize_multiclass
from lloca_hep.training.weights import class_balance_factors
from tests.test_training_synthetic import synthetic_jets

CLASSES = ("QCD", "Hbb", "Tbqq")
ONEHOT = LabelSpec("onehot", tuple(f"label_{c}" for c in CLASSES), CLASSES)
N_MAX = 16
#: jets per ``extend`` call, i.e. per cluster of the written files
CLUSTER = 20
FAST = dict(model="jet_mass", max_constituents=N_MAX, device="cpu", num_threads=1)


def _write(path: Path, data: dict[str, object], cluster: int = CLUSTER) -> Path:
    """A TTree ``jets`` with ``data`` (``part`` a record array of constituents), one basket
    per ``cluster`` jets."""
    n = len(data["part"])  # type: ignore[arg-type]
    types = {k: (v.type if isinstance(v, ak.Array) else np.asarray(v).dtype)
             for k, v in data.items()}
    with uproot.recreate(path) as f:
        tree = f.mktree("jets", types)
        for lo in range(0, n, cluster):
            tree.extend({k: v[lo:lo + cluster] for k, v in data.items()})  # type: ignore[index]
    return path


def _toy_part(n: int, seed: int) -> ak.Array:
    p4, mask = toy_jets(n, N_MAX, min_constituents=4, seed=seed)
    counts = mask.sum(dim=1).numpy()
    flat = p4[mask].numpy()
    return ak.zip({name: ak.unflatten(flat[:, k].astype(np.float32), counts)
                   for name, k in (("px", 1), ("py", 2), ("pz", 3), ("energy", 0))})


def write_class_file(path: Path, cls: int, n: int, seed: int) -> Path:
    """``n`` jets of class ``CLASSES[cls]`` (one-hot ``label_*`` branches) and a weight ``w``."""
    data: dict[str, object] = {"part": _toy_part(n, seed)}
    for k, c in enumerate(CLASSES):
        data[f"label_{c}"] = np.full(n, k == cls)
    data["w"] = np.linspace(0.5, 1.5, n).astype(np.float32)
    return _write(path, data)


def write_binary_file(path: Path, n: int, seed: int, weights: np.ndarray | None = None) -> Path:
    data = synthetic_jets(n, seed)
    if weights is not None:
        data["w"] = np.asarray(weights, dtype=np.float32)
    return _write(path, data)


@pytest.fixture(scope="module")
def class_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("classes")
    return [write_class_file(d / f"{c}.root", k, n, seed=k)
            for k, (c, n) in enumerate(zip(CLASSES, (120, 200, 280), strict=True))]


def _stream(files, limit=1, **kw):
    data = load_dataset(files, max_constituents=N_MAX, labels=ONEHOT, memory_limit_bytes=limit,
                        progress=False, **kw)
    assert isinstance(data, StreamingDataset)
    return data


def _classes_per_batch(data, batch_size, seed, mixing=None):
    if mixing is not None:
        data.mixing = mixing
    return [np.bincount(b.labels.numpy(), minlength=len(CLASSES))
            for b in data.batches(batch_size, shuffle=True, seed=seed)]


def test_every_batch_of_the_first_epoch_holds_every_class(class_files):
    data = _stream(class_files, step_size=CLUSTER)  # reading steps of one cluster
    assert len(data) == 600 and data.counts == (120, 200, 280)
    counts = _classes_per_batch(data, 32, seed=3)
    assert sum(c.sum() for c in counts) == 600 and len(counts) == math.ceil(600 / 32)
    for c in counts:
        assert (c > 0).all(), c
        # each file gives its share of the batch up to rounding (2 with the drift correction)
        quota = c.sum() * np.array([120, 200, 280]) / 600
        assert np.abs(c - quota).max() < 2.0, (c, quota)
    # the old scheme (one file after the other, groups of reading steps) does not mix classes
    chunked = _classes_per_batch(data, 32, seed=3, mixing="chunks")
    assert sum(c.sum() for c in chunked) == 600
    assert any((c == 0).any() for c in chunked)


def test_apportion_is_proportional_and_exact():
    assert apportion(32, [1, 1, 1]) == [11, 11, 10]
    assert apportion(10, [0, 5, 5]) == [0, 5, 5]
    assert sum(apportion(128, [3.3, 7.1, 0.2, 9])) == 128


def _epoch(data, workers, seed=5, batch_size=48):
    data.close()
    data.workers = workers
    try:
        return list(data.batches(batch_size, shuffle=True, seed=seed))
    finally:
        data.close()


def _jet_keys(batches):
    """A key per jet (its momenta summed with fixed weights), sorted: the set of jets."""
    keys = np.concatenate([(b.p4.numpy() * np.arange(1, 5)).sum(axis=(1, 2)) for b in batches])
    return np.sort(keys)


def test_workers_give_the_same_batches_and_every_jet_once(class_files):
    data = _stream(class_files)
    serial, parallel = _epoch(data, 0), _epoch(data, 2)
    assert len(serial) == len(parallel)
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a.p4, b.p4) and torch.equal(a.labels, b.labels)
        assert torch.equal(a.mask, b.mask)
    memory = load_dataset(class_files, max_constituents=N_MAX, labels=ONEHOT, progress=False)
    assert isinstance(memory, PaddedDataset)
    everything = _jet_keys(memory.batches(1000))
    assert everything.size == 600 and np.unique(everything).size == 600
    np.testing.assert_array_equal(_jet_keys(parallel), everything)
    # another epoch (seed) gives another order of the same jets
    other = _epoch(data, 2, seed=6)
    assert not torch.equal(other[0].p4[:, :4], serial[0].p4[:, :4])
    np.testing.assert_array_equal(_jet_keys(other), everything)


def test_first_reading_with_workers_matches_in_process(class_files):
    a = load_dataset(class_files, max_constituents=N_MAX, labels=ONEHOT, progress=False,
                     weight_branch="w")
    b = load_dataset(class_files, max_constituents=N_MAX, labels=ONEHOT, progress=False,
                     weight_branch="w", workers=2)
    assert isinstance(a, PaddedDataset) and isinstance(b, PaddedDataset)
    for name in ("p4", "mask", "labels", "weights"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    # max_jets keeps the first jets in file order whatever the number of workers
    c = load_dataset(class_files, max_constituents=N_MAX, labels=ONEHOT, progress=False,
                     max_jets=150, workers=2)
    np.testing.assert_array_equal(c.p4, a.p4[:150])


def test_streamed_hold_out_split_is_disjoint_and_complete(class_files):
    data = _stream(class_files)
    train_part, val_part = split_dataset(data, 0.25, seed=0)
    keys_train = _jet_keys(train_part.batches(64, shuffle=True, seed=1))
    keys_val = _jet_keys(val_part.batches(64))
    assert keys_train.size + keys_val.size == 600
    assert np.intersect1d(keys_train, keys_val).size == 0
    assert abs(keys_val.size - 150) <= 3 and abs(len(val_part) - keys_val.size) <= 3


def test_streamed_buffers_stay_bounded_whatever_the_file_size(tmp_path):
    jet_bytes = bytes_per_jet(N_MAX)
    limit = 4 * 60 * jet_bytes  # buffers of about 60 jets per round of pieces
    peaks = {}
    for scale in (1, 4):
        files = [write_class_file(tmp_path / f"{scale}_{c}.root", k, 150 * scale, seed=k)
                 for k, c in enumerate(CLASSES)]
        data = _stream(files, limit=limit)
        n = 0
        for batch in data.batches(32, shuffle=True, seed=0):
            n += len(batch.labels)
            assert data.stats.buffered_jets <= data.stats.peak_buffered_jets
        assert n == len(data) == 450 * scale
        peaks[scale] = data.stats.peak_buffered_jets
        pieces, _ = data.plan(True, 0)
        largest = max(p.entry_stop - p.entry_start for p in pieces)
        # each of the three streams holds at most its current piece and the next one
        assert 32 <= peaks[scale] <= 3 * 2 * largest
    assert peaks[4] <= peaks[1] + 2 * CLUSTER  # independent of the size of the files
    assert peaks[4] < 1800 / 8


def test_training_with_workers_equals_training_without(class_files, tmp_path):
    results = []
    for workers in (0, 2):
        config = TrainConfig(epochs=2, batch_size=32, memory_limit_bytes=1, workers=workers,
                             **FAST)
        results.append(train(class_files, config, output_dir=tmp_path / str(workers),
                             progress=False))
    a, b = (torch.load(r.tagger_path, weights_only=True)["state_dict"] for r in results)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["train_loss"] for h in results[0].history] == \
        [h["train_loss"] for h in results[1].history]
    assert results[1].metadata["training"]["workers"] == 2
    assert results[1].metadata["training"]["mixing"] == "files"
    assert multiprocessing.active_children() == []  # the reading workers were stopped


def test_interleaved_passes_over_shared_workers_fail_loudly(class_files):
    data = _stream(class_files, workers=2)
    train_part, val_part = split_dataset(data, 0.25, seed=0)
    try:
        passing = train_part.batches(32, shuffle=True, seed=0)
        first = next(passing)
        assert len(first.labels) == 32
        assert sum(len(b.labels) for b in val_part.batches(64)) > 100
        with pytest.raises(RuntimeError, match="cannot interleave"):
            next(passing)
    finally:
        train_part.close()
        val_part.close()


# ---------------------------------------------------------------------------- weights


def test_weighted_loss_by_hand():
    logits = torch.tensor([2.0, -1.0, 0.5])
    labels = torch.tensor([1.0, 0.0, 0.0])
    weights = torch.tensor([1.0, 3.0, 0.0])
    per_jet = [math.log1p(math.exp(-2.0)), math.log1p(math.exp(-1.0)),
               math.log1p(math.exp(0.5))]
    expected = (1.0 * per_jet[0] + 3.0 * per_jet[1]) / 4.0
    assert float(batch_loss(logits, labels, weights, False)) == pytest.approx(expected, rel=1e-6)
    assert float(batch_loss(logits, labels, None, False)) == pytest.approx(sum(per_jet) / 3,
                                                                           rel=1e-6)
    logits3 = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]])
    labels3 = torch.tensor([0, 2])
    lse = [math.log(math.e + 1 + math.exp(-1)), math.log(2 + math.exp(2))]
    ce = [lse[0] - 1.0, lse[1] - 0.0]
    w3 = torch.tensor([0.25, 0.75])
    assert float(batch_loss(logits3, labels3, w3, True)) == pytest.approx(
        0.25 * ce[0] + 0.75 * ce[1], rel=1e-6)


def test_class_balance_factors():
    factors = class_balance_factors(np.array([1.0, 3.0]))
    np.testing.assert_allclose(factors, [2.0, 2.0 / 3.0])
    np.testing.assert_allclose(factors * [1.0, 3.0], [2.0, 2.0])  # equal totals, same sum
    np.testing.assert_allclose(class_balance_factors(np.array([0.0, 2.0, 6.0])),
                               [0.0, 2.0, 2.0 / 3.0])
    with pytest.raises(WeightError):
        class_balance_factors(np.zeros(2))


@pytest.mark.parametrize("seed", [0, 1])
def test_weighted_metrics_equal_repeated_jets(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 60)
    scores = np.round(rng.random(60), 1)  # ties
    weights = rng.integers(0, 4, 60)
    rep_l, rep_s = np.repeat(labels, weights), np.repeat(scores, weights)
    assert roc_auc(labels, scores, weights) == pytest.approx(roc_auc(rep_l, rep_s), abs=1e-12)
    assert accuracy(labels, scores, weights=weights) == pytest.approx(accuracy(rep_l, rep_s))
    a, b = summarize(labels, scores, weights), summarize(rep_l, rep_s)
    assert a.bce == pytest.approx(b.bce) and a.auc == pytest.approx(b.auc)
    assert a.rejection == pytest.approx(b.rejection)
    # pairwise statistic with weights
    sig, bkg = labels == 1, labels == 0
    diff = scores[sig][:, None] - scores[bkg][None, :]
    pair = np.outer(weights[sig], weights[bkg])
    stat = (pair * ((diff > 0) + 0.5 * (diff == 0))).sum() / pair.sum()
    assert roc_auc(labels, scores, weights) == pytest.approx(stat, abs=1e-12)
    probs = rng.dirichlet(np.ones(3), 60)
    labels3 = rng.integers(0, 3, 60)
    m = summarize_multiclass(labels3, probs, CLASSES, weights=weights)
    r = summarize_multiclass(np.repeat(labels3, weights), np.repeat(probs, weights, axis=0),
                             CLASSES)
    assert m.accuracy == pytest.approx(r.accuracy) and m.macro_auc == pytest.approx(r.macro_auc)
    for name in CLASSES[1:]:
        assert m.per_class[name].rejection == pytest.approx(r.per_class[name].rejection)
    unweighted = summarize(labels, scores)
    assert unweighted.auc != a.auc


def _bce(p, y):
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))


@pytest.mark.parametrize("balance", [False, True])
def test_weight_branch_and_class_balance_change_the_loss_as_computed(tmp_path, balance):
    n = 24
    weights = np.linspace(0.1, 2.0, n)
    train_file = write_binary_file(tmp_path / "train.root", n, seed=3, weights=weights)
    val_file = write_binary_file(tmp_path / "val.root", 40, seed=4, weights=np.ones(40))
    losses = []
    config = TrainConfig(epochs=1, batch_size=n, lr=0.0, schedule="constant",
                         weight_branch="w", class_balance=balance, **FAST)
    result = train(train_file, config, val_files=val_file, output_dir=tmp_path / "run",
                   progress=False, on_batch_end=lambda e, b, loss: losses.append(loss))
    jets = read_jets(train_file)
    y = ak.to_numpy(jets.is_signal).astype(np.float64)
    p = load_tagger(result.tagger_path, device="cpu").score(jets).astype(np.float64)
    w = weights.copy()
    if balance:
        totals = np.array([w[y == 0].sum(), w[y == 1].sum()])
        w = w * (totals.sum() / (2 * totals))[y.astype(int)]
    expected = float((w * _bce(p, y)).sum() / w.sum())
    assert len(losses) == 1 and losses[0] == pytest.approx(expected, rel=1e-5)
    assert losses[0] != pytest.approx(float(_bce(p, y).mean()), rel=1e-3)
    meta = read_tagger_header(result.tagger_path)["metadata"]
    assert meta["training"]["weight_branch"] == "w"
    assert meta["weighting"]["weight_branch"] == "w"
    assert meta["weighting"]["class_balance"] is balance
    assert (meta["weighting"]["class_factors"] is not None) is balance


def test_streamed_weights_match_in_memory(tmp_path):
    n = 200
    path = write_binary_file(tmp_path / "w.root", n, seed=9, weights=np.arange(n) % 7 + 0.5)
    spec = LabelSpec("binary", ("is_signal",), ("background", "signal"))
    mem = load_dataset(path, max_constituents=N_MAX, labels=spec, weight_branch="w",
                       progress=False)
    stream = load_dataset(path, max_constituents=N_MAX, labels=spec, weight_branch="w",
                          memory_limit_bytes=1, progress=False)
    got = np.concatenate([b.weights.numpy() for b in stream.batches(64)])
    np.testing.assert_array_equal(got, mem.weights)
    np.testing.assert_allclose(stream.class_weights,
                               np.bincount(mem.labels.astype(int), weights=mem.weights))


@pytest.mark.parametrize("bad, match", [
    (np.nan, r"jet 7: nan"), (-1.0, r"jet 7: -1.0"), (np.inf, r"jet 7: inf")])
@pytest.mark.parametrize("workers", [0, 2])
def test_bad_weights_name_file_branch_and_jet(tmp_path, bad, match, workers):
    weights = np.ones(50)
    weights[7] = bad
    path = write_binary_file(tmp_path / "bad.root", 50, seed=1, weights=weights)
    with pytest.raises(WeightError, match=match) as err:
        load_dataset(path, max_constituents=N_MAX, weight_branch="w", progress=False,
                     workers=workers)
    message = str(err.value)
    assert message.startswith(str(path)) and "'w'" in message and "worker" not in message


def test_missing_weight_branch_is_named(tmp_path):
    path = write_binary_file(tmp_path / "now.root", 30, seed=1)
    with pytest.raises(WeightError, match=r"weight branch 'wgt' not found.*now.root"):
        train(path, TrainConfig(epochs=1, weight_branch="wgt", **FAST),
              output_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_cli_spells_the_new_options(tmp_path):
    from lloca_hep.cli import build_parser
    from lloca_hep.cli._options import config_from_args

    parser = build_parser("lloca-hep", ("train",), description=None)
    args = parser.parse_args(["train", "x.root", "-o", str(tmp_path), "--workers", "2",
                              "--mixing", "chunks", "--weight-branch", "w", "--class-balance"])
    config = config_from_args(TrainConfig, args)
    assert (config.workers, config.mixing, config.weight_branch, config.class_balance) == \
        (2, "chunks", "w", True)
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "x.root", "-o", str(tmp_path), "--workers", "-1"])
    with pytest.raises(ValueError, match="mixing"):
        TrainConfig(mixing="random")
