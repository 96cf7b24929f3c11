"""Metrics of lloca_hep.training.metrics against independent brute-force computations."""

import json
import math
import sys

import numpy as np
import pytest

from lloca_hep.training import metrics


def _auc_pairwise(labels, scores):
    """Mann-Whitney statistic: P(score_sig > score_bkg) + 0.5 P(equal), by brute force."""
    s = scores[labels == 1][:, None]
    b = scores[labels == 0][None, :]
    return float(np.mean((s > b) + 0.5 * (s == b)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_equals_pairwise_statistic_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 400)
    scores = np.round(rng.normal(labels * 0.7, 1.0), 1)  # rounding creates many ties
    assert metrics.roc_auc(labels, scores) == pytest.approx(_auc_pairwise(labels, scores), abs=1e-12)


def test_auc_extremes_and_order_independence():
    labels = np.array([0, 0, 1, 1])
    assert metrics.roc_auc(labels, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert metrics.roc_auc(labels, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert metrics.roc_auc(labels, np.full(4, 0.5)) == 0.5
    perm = np.array([2, 0, 3, 1])
    scores = np.array([0.3, 0.6, 0.5, 0.9])
    assert metrics.roc_auc(labels, scores) == metrics.roc_auc(labels[perm], scores[perm])


def test_rejection_worked_example():
    # signal 0.9 0.8 0.7 0.6, background 0.85 0.5 0.4 0.3: at eps_S = 0.5 (cut 0.8) one of four
    # background jets passes -> 1/eps_B = 4; at eps_S = 0.3 the best cut also lets 0.85 through.
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.85, 0.5, 0.4, 0.3])
    assert metrics.background_rejection(labels, scores, 0.5) == pytest.approx(4.0)
    assert metrics.background_rejection(labels, scores, 0.3) == pytest.approx(4.0)
    # at eps_S = 1 all signal passes: cut 0.6 keeps only background 0.85 -> 4 again
    assert metrics.background_rejection(labels, scores, 1.0) == pytest.approx(4.0)
    perfect = np.array([0.9, 0.8, 0.7, 0.6, 0.1, 0.2, 0.3, 0.4])
    assert math.isinf(metrics.background_rejection(labels, perfect, 0.5))


def test_rejection_interpolates_linearly():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 2000)
    scores = rng.normal(labels, 1.0)
    eps_b, eps_s, thr = metrics.roc_curve(labels, scores)
    # brute force at each threshold
    for k in (5, 100, 500):
        t = thr[k]
        assert eps_s[k] == pytest.approx(np.mean(scores[labels == 1] >= t))
        assert eps_b[k] == pytest.approx(np.mean(scores[labels == 0] >= t))
    target = 0.5
    i = np.searchsorted(eps_s, target)
    frac = (target - eps_s[i - 1]) / (eps_s[i] - eps_s[i - 1])
    expected = 1.0 / (eps_b[i - 1] + frac * (eps_b[i] - eps_b[i - 1]))
    assert metrics.background_rejection(labels, scores, target) == pytest.approx(expected)


def test_accuracy_and_summary():
    labels = np.array([1, 1, 0, 0, 1])
    probs = np.array([0.9, 0.4, 0.2, 0.6, 0.5])
    assert metrics.accuracy(labels, probs) == pytest.approx(3 / 5)
    s = metrics.summarize(labels, probs)
    assert s.n_jets == 5 and s.n_signal == 3 and s.n_background == 2
    assert s.accuracy == pytest.approx(0.6)
    assert s.auc == pytest.approx(_auc_pairwise(labels, probs))
    assert set(s.rejection) == {0.3, 0.5}
    assert s.rejection_at(0.5) == metrics.background_rejection(labels, probs, 0.5)
    with pytest.raises(KeyError, match="0.7"):
        s.rejection_at(0.7)
    assert {"rejection_at_eps_s_0.3", "rejection_at_eps_s_0.5", "bce"} <= set(s.to_json())
    expected_bce = -np.mean(np.where(labels == 1, np.log(probs), np.log(1 - probs)))
    assert s.bce == pytest.approx(expected_bce)


def test_metrics_json_writes_infinite_rejection_as_string():
    m = metrics.Metrics(n_jets=2, n_signal=1, n_background=1, accuracy=1.0, auc=1.0, bce=0.1,
                        rejection={0.3: math.inf})
    assert m.to_json()["rejection_at_eps_s_0.3"] == "inf"
    json.dumps(m.to_json())


def test_missing_plot_extra_names_the_install_command(monkeypatch, tmp_path):
    from lloca_hep.training import plots

    monkeypatch.setitem(sys.modules, "mplhep", None)  # simulates mplhep not installed
    with pytest.raises(ImportError, match=r'mplhep.*pip install "lloca-hep\[plot\]"'):
        plots.plot_roc(np.array([0.0, 1.0]), np.array([0.0, 1.0]), tmp_path / "roc.png")
    assert not (tmp_path / "roc.png").exists()


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="NaN"):
        metrics.roc_auc(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="both classes"):
        metrics.roc_auc(np.array([1, 1]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="0 or 1"):
        metrics.roc_auc(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="equal length"):
        metrics.roc_auc(np.array([0, 1, 1]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="signal_efficiency"):
        metrics.background_rejection(np.array([0, 1]), np.array([0.1, 0.2]), 0.0)
