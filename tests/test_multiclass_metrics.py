"""Multi-class metrics of lloca_hep.training.multiclass and their figures."""

import doctest
import json
import math

import numpy as np
import pytest

from lloca_hep.training import metrics, multiclass

JETCLASS = ["QCD", "Hbb", "Hcc", "Hgg", "H4q", "Hqql", "Zqq", "Wqq", "Tbqq", "Tbl"]


def _softmax(logits):
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _perfect(n_per_class=20):
    n_classes = len(JETCLASS)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    probs = np.full((labels.size, n_classes), 0.01)
    probs[np.arange(labels.size), labels] = 1.0
    return labels, probs / probs.sum(axis=1, keepdims=True)


def _separable(seed=0, n=3000, shift=1.5):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(JETCLASS), n)
    logits = rng.normal(size=(n, len(JETCLASS)))
    logits[np.arange(n), labels] += shift
    return labels, _softmax(logits)


def test_doctests():
    result = doctest.testmod(multiclass, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 5 and result.failed == 0


def test_perfect_classifier():
    labels, probs = _perfect()
    m = multiclass.summarize_multiclass(labels, probs, JETCLASS)
    assert m.accuracy == 1.0 and m.macro_auc == 1.0 and m.skipped == ()
    assert m.background == "QCD" and m.n_jets == labels.size
    assert np.array_equal(m.confusion, np.diag(np.full(len(JETCLASS), 20)))
    assert np.array_equal(m.confusion_normalised, np.eye(len(JETCLASS)))
    for name in JETCLASS:
        c = m.per_class[name]
        assert c.n_jets == 20 and c.auc_ovr == 1.0
        if name == "QCD":
            assert c.auc_vs_background is c.rejection is c.signal_efficiency is None
        else:
            assert c.auc_vs_background == 1.0 and math.isinf(c.rejection)
            assert c.signal_efficiency == multiclass.working_point(name)


def test_random_classifier_has_auc_one_half():
    rng = np.random.default_rng(1234)
    n = 40_000
    labels = rng.integers(0, 4, n)
    probs = _softmax(rng.normal(size=(n, 4)))
    m = multiclass.summarize_multiclass(labels, probs, ["QCD", "Hbb", "Tbqq", "Wqq"])
    assert m.macro_auc == pytest.approx(0.5, abs=0.01)
    assert m.accuracy == pytest.approx(0.25, abs=0.01)
    for name in ("Hbb", "Tbqq", "Wqq"):
        c = m.per_class[name]
        assert c.auc_ovr == pytest.approx(0.5, abs=0.015)
        assert c.auc_vs_background == pytest.approx(0.5, abs=0.015)
        assert c.rejection == pytest.approx(2.0, rel=0.05)  # 1/eps_B = 1/eps_S at random


def test_confusion_and_accuracy_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    probs = np.array([
        [0.7, 0.2, 0.1],  # 0 -> 0
        [0.3, 0.6, 0.1],  # 0 -> 1
        [0.5, 0.1, 0.4],  # 0 -> 0
        [0.1, 0.8, 0.1],  # 1 -> 1
        [0.2, 0.3, 0.5],  # 1 -> 2
        [0.1, 0.1, 0.8],  # 2 -> 2
        [0.6, 0.2, 0.2],  # 2 -> 0
        [0.2, 0.2, 0.6],  # 2 -> 2
    ])
    m = multiclass.summarize_multiclass(labels, probs, ["qcd", "Wqq", "Zqq"])
    assert m.confusion.tolist() == [[2, 1, 0], [0, 1, 1], [1, 0, 2]]
    assert m.confusion.dtype.kind == "i" and not m.confusion.flags.writeable
    assert m.accuracy == pytest.approx(5 / 8)
    np.testing.assert_allclose(m.confusion_normalised,
                               [[2 / 3, 1 / 3, 0], [0, 0.5, 0.5], [1 / 3, 0, 2 / 3]])
    assert [m.per_class[n].n_jets for n in m.class_names] == [3, 2, 3]
    assert m.background == "qcd"
    ovr = [metrics.roc_auc(labels == c, probs[:, c]) for c in range(3)]
    assert m.macro_auc == pytest.approx(np.mean(ovr))


@pytest.mark.parametrize("seed", [0, 1])
def test_discriminant_auc_and_rejection_match_direct_computation(seed):
    labels, probs = _separable(seed)
    m = multiclass.summarize_multiclass(labels, probs, JETCLASS)
    curves = multiclass.roc_curves_vs_background(labels, probs, JETCLASS)
    assert set(curves) == set(JETCLASS) - {"QCD"}
    for x, name in enumerate(JETCLASS[1:], start=1):
        keep = (labels == x) | (labels == 0)
        disc = probs[keep, x] / (probs[keep, x] + probs[keep, 0])
        is_sig = labels[keep] == x
        c = m.per_class[name]
        assert c.auc_vs_background == pytest.approx(metrics.roc_auc(is_sig, disc), abs=1e-12)
        assert c.rejection == pytest.approx(
            metrics.background_rejection(is_sig, disc, multiclass.working_point(name)))
        assert c.auc_ovr == pytest.approx(metrics.roc_auc(labels == x, probs[:, x]), abs=1e-12)
        eps_b, eps_s, _ = metrics.roc_curve(is_sig, disc)
        np.testing.assert_allclose(curves[name][0], eps_b)
        np.testing.assert_allclose(curves[name][1], eps_s)
    assert 0.5 < m.macro_auc < 1.0


def test_zero_scores_give_undefined_discriminant_without_warning():
    labels = np.array([0, 1, 2, 2])
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    m = multiclass.summarize_multiclass(labels, probs, ["QCD", "Hbb", "Tbl"])
    # Tbl vs QCD: signal jets 1.0 and 0/0 -> UNDEFINED_DISCRIMINANT, the QCD jet 0.0
    assert multiclass.UNDEFINED_DISCRIMINANT == 0.5
    eps_b, eps_s = multiclass.roc_curves_vs_background(labels, probs, m.class_names)["Tbl"]
    assert eps_s.tolist() == [0.0, 0.5, 1.0, 1.0] and eps_b.tolist() == [0.0, 0.0, 0.0, 1.0]
    assert m.per_class["Tbl"].auc_vs_background == 1.0
    assert math.isinf(m.per_class["Tbl"].rejection)
    assert m.per_class["Hbb"].auc_vs_background == 1.0


def test_working_points():
    assert multiclass.working_point("Hqql") == 0.99
    assert multiclass.working_point("Tbl") == 0.995
    assert multiclass.working_point("tbl") == 0.995
    for name in ("Hbb", "Hcc", "Hgg", "H4q", "Zqq", "Wqq", "Tbqq", "anything"):
        assert multiclass.working_point(name) == multiclass.DEFAULT_WORKING_POINT == 0.5
    labels, probs = _separable(3)
    m = multiclass.summarize_multiclass(labels, probs, JETCLASS)
    assert m.per_class["Hqql"].signal_efficiency == 0.99
    assert m.per_class["Tbl"].signal_efficiency == 0.995
    assert m.per_class["Hbb"].signal_efficiency == 0.5


def test_background_index():
    assert multiclass.BACKGROUND_CLASS == "QCD"
    assert multiclass.background_index(["Hbb", "QCD"]) == 1
    assert multiclass.background_index(["Hbb", "Tbqq", "qcd"]) == 2
    assert multiclass.background_index(["Hbb", "Tbqq"]) == 0
    m = multiclass.summarize_multiclass(np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]),
                                        ["Tbqq", "Qcd"])
    assert m.background == "Qcd" and m.per_class["Qcd"].rejection is None
    assert m.per_class["Tbqq"].auc_vs_background == 1.0


def test_classes_without_jets_are_skipped():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1]])
    m = multiclass.summarize_multiclass(labels, probs, ["QCD", "Hbb", "Tbl"])
    assert m.skipped == ("Tbl",) and m.macro_auc == 1.0
    tbl = m.per_class["Tbl"]
    assert tbl.n_jets == 0 and tbl.auc_ovr is tbl.auc_vs_background is tbl.rejection is None
    assert tbl.signal_efficiency == 0.995
    assert m.confusion_normalised[2].tolist() == [0.0, 0.0, 0.0]
    assert list(multiclass.roc_curves_vs_background(labels, probs, m.class_names)) == ["Hbb"]
    # no background jets at all: no curves, no vs-background numbers, and no warning
    only = multiclass.summarize_multiclass(np.array([1, 1]), probs[2:], m.class_names)
    assert math.isnan(only.macro_auc) and only.to_json()["macro_auc"] is None
    assert only.per_class["Hbb"].auc_vs_background is None
    assert multiclass.roc_curves_vs_background(np.array([1, 1]), probs[2:], m.class_names) == {}
    assert "Hbb" in only.table()


@pytest.mark.parametrize("labels, probs, names, match", [
    ([0, 1], [[0.5, np.nan], [0.5, 0.5]], ["QCD", "Hbb"], "NaN"),
    ([0, 1], [[0.5, np.inf], [0.5, 0.5]], ["QCD", "Hbb"], "infinite"),
    ([0, 2], [[0.5, 0.5], [0.5, 0.5]], ["QCD", "Hbb"], r"0\.\.1"),
    ([0, -1], [[0.5, 0.5], [0.5, 0.5]], ["QCD", "Hbb"], r"0\.\.1"),
    ([0.0, 1.0], [[0.5, 0.5], [0.5, 0.5]], ["QCD", "Hbb"], "integers"),
    ([0, 1, 1], [[0.5, 0.5], [0.5, 0.5]], ["QCD", "Hbb"], "shapes"),
    ([0, 1], [[0.3, 0.3, 0.4], [0.5, 0.4, 0.1]], ["QCD", "Hbb"], "shapes"),
    ([0, 1], [0.5, 0.5], ["QCD", "Hbb"], "shapes"),
    ([[0, 1]], [[0.5, 0.5]], ["QCD", "Hbb"], "shapes"),
    ([0, 0], [[1.0], [1.0]], ["QCD"], "at least 2"),
    ([0, 1], [[0.5, 0.5], [0.5, 0.5]], ["QCD", "QCD"], "distinct"),
    ([0, 1], [[1.5, -0.5], [0.5, 0.5]], ["QCD", "Hbb"], "non-negative"),
    (np.zeros(0, int), np.zeros((0, 2)), ["QCD", "Hbb"], "no jets"),
])
def test_errors(labels, probs, names, match):
    with pytest.raises(ValueError, match=match):
        multiclass.summarize_multiclass(np.asarray(labels), np.asarray(probs), names)
    with pytest.raises(ValueError, match=match):
        multiclass.roc_curves_vs_background(np.asarray(labels), np.asarray(probs), names)


def test_class_names_must_not_be_a_string():
    with pytest.raises(TypeError):
        multiclass.summarize_multiclass(np.array([0, 1]), np.eye(2), "ab")


def test_to_json_and_table():
    labels, probs = _perfect(5)
    m = multiclass.summarize_multiclass(labels, probs, JETCLASS)
    out = m.to_json()
    text = json.dumps(out, allow_nan=False)
    assert '"inf"' in text
    assert json.loads(text) == out
    assert out["per_class"]["Hbb"]["rejection"] == "inf"
    assert out["per_class"]["QCD"]["rejection"] is None
    assert out["confusion"][0][0] == 5 and type(out["confusion"][0][0]) is int
    assert out["accuracy"] == 1.0 and out["n_jets"] == 50 and out["background"] == "QCD"
    table = m.table()
    for name in JETCLASS:
        assert name in table
    for column in ("jets", "AUC (one-vs-rest)", "AUC vs QCD", "eps_S", "1/eps_B",
                   "accuracy", "macro AUC", "99.5%", "99%", "50%", "inf"):
        assert column in table
    labels, probs = _separable(4)
    table = multiclass.summarize_multiclass(labels, probs, JETCLASS).table()
    assert len(table.splitlines()) == 2 + 2 + len(JETCLASS)


def test_plots_write_png_and_leave_no_temporary(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("mplhep")
    pytest.importorskip("hist")
    from lloca_hep.training import plots

    labels, probs = _separable(5, n=2000)
    m = multiclass.summarize_multiclass(labels, probs, JETCLASS)
    curves = multiclass.roc_curves_vs_background(labels, probs, JETCLASS)
    aucs = {name: m.per_class[name].auc_vs_background for name in curves}
    written = [
        plots.plot_confusion_matrix(m.confusion, m.class_names, tmp_path / "confusion.png",
                                    title="JetClass"),
        plots.plot_confusion_matrix(m.confusion, m.class_names, tmp_path / "counts.png",
                                    normalise=False),
        plots.plot_multiclass_roc(curves, tmp_path / "roc.png", aucs=aucs, title="JetClass"),
        plots.plot_multiclass_roc(curves, tmp_path / "roc_plain.png"),
    ]
    for path in written:
        data = path.read_bytes()
        assert len(data) > 1000 and data.startswith(b"\x89PNG\r\n\x1a\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)
    with pytest.raises(ValueError, match="shape"):
        plots.plot_confusion_matrix(m.confusion, m.class_names[:3], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="no ROC"):
        plots.plot_multiclass_roc({}, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
