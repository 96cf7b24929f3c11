"""lloca_hep.tagger: scoring, safe save/load, bad files."""

from __future__ import annotations

import json
import os
import warnings

import awkward as ak
import numpy as np
import pytest
import torch
import vector

from lloca_hep.io import read_jets
from lloca_hep.models import build_model
from lloca_hep.preprocessing import pad_jets
from lloca_hep.tagger import (
    FORMAT_VERSION,
    FORMAT_VERSION_V1,
    EmptyJetWarning,
    Tagger,
    TaggerFileError,
    load_tagger,
    read_tagger_header,
)
from tests.test_training_synthetic import write_jet_file

vector.register_awkward()

TINY_TRANSFORMER = {"hidden": 16, "blocks": 1, "heads": 2, "frames_hidden": 16}


def _tagger(name="LLoCaTransformer", config=None, seed=0, max_constituents=32):
    torch.manual_seed(seed)
    model = build_model(name, TINY_TRANSFORMER if config is None and name == "LLoCaTransformer"
                        else (config or {}))
    return Tagger(model, name, max_constituents, metadata={"note": "test"}, device="cpu")


@pytest.fixture(scope="module")
def jet_file(tmp_path_factory):
    return write_jet_file(tmp_path_factory.mktemp("jets") / "jets.root", 120, seed=3, n_empty=2)


@pytest.fixture(scope="module")
def tagger():
    return _tagger()


def test_score_returns_float32_probabilities_and_nan_for_empty(tagger, jet_file):
    jets = read_jets(jet_file)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = tagger.score(jets)
    empty_warnings = [w for w in caught if issubclass(w.category, EmptyJetWarning)]
    assert len(empty_warnings) == 1
    assert "2 of 120 jets" in str(empty_warnings[0].message)
    assert scores.dtype == np.float32 and scores.shape == (120,)
    assert np.isnan(scores[:2]).all()
    assert np.all((scores[2:] > 0) & (scores[2:] < 1))


def test_score_accepts_plain_ragged_momentum4d(tagger, jet_file):
    jets = read_jets(jet_file)[2:]
    c = jets.constituents
    from_reader = tagger.score(jets)
    cartesian = ak.zip({"px": c.px, "py": c.py, "pz": c.pz, "E": c.E}, with_name="Momentum4D")
    polar = ak.zip({"pt": c.pt, "eta": c.eta, "phi": c.phi, "mass": c.mass},
                   with_name="Momentum4D")
    np.testing.assert_array_equal(tagger.score(c), from_reader)
    np.testing.assert_array_equal(tagger.score(cartesian), from_reader)
    # pt/eta/phi/mass -> px/py/pz/E round trip changes the float64 inputs in the last digits
    np.testing.assert_allclose(tagger.score(polar), from_reader, rtol=1e-5, atol=1e-6)


def test_score_padded_is_batch_and_padding_independent(tagger, jet_file):
    jets = read_jets(jet_file)[2:]
    padded = pad_jets(jets.constituents, max_constituents=tagger.max_constituents)
    full = tagger.score_padded(padded.p4, padded.mask)
    np.testing.assert_array_equal(full, tagger.score(jets))
    one_by_one = tagger.score_padded(padded.p4, padded.mask, batch_size=7)
    np.testing.assert_allclose(one_by_one, full, rtol=1e-5, atol=1e-6)
    wider_p4 = np.concatenate([padded.p4, np.zeros((len(padded.p4), 10, 4))], axis=1)
    wider_mask = np.concatenate([padded.mask, np.zeros((len(padded.p4), 10), bool)], axis=1)
    np.testing.assert_allclose(tagger.score_padded(wider_p4, wider_mask), full,
                               rtol=1e-5, atol=1e-6)
    assert not tagger.model.training


def test_score_padded_rejects_bad_shapes(tagger):
    with pytest.raises(ValueError, match=r"\(n_jets, N, 4\)"):
        tagger.score_padded(np.zeros((3, 5, 3)), np.ones((3, 5), bool))
    with pytest.raises(ValueError, match="mask shape"):
        tagger.score_padded(np.zeros((3, 5, 4)), np.ones((3, 4), bool))


def test_save_load_roundtrip_is_exact_and_plain(tagger, jet_file, tmp_path):
    path = tagger.save(tmp_path / "t.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["t.pt"]  # no temporary left behind
    # the file is a dict of plain tensors + a JSON string, readable with weights_only=True
    payload = torch.load(path, weights_only=True)
    assert set(payload) == {"state_dict", "header"}
    assert all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values())
    header = json.loads(payload["header"])
    # a binary tagger without features stays a version-1 file, which older lloca-hep reads
    assert header["format_version"] == FORMAT_VERSION_V1
    assert header["model_name"] == "LLoCaTransformer"
    assert header["config"]["hidden"] == TINY_TRANSFORMER["hidden"]
    assert header["max_constituents"] == 32 and header["metadata"] == {"note": "test"}
    assert read_tagger_header(path) == header

    loaded = load_tagger(path, device="cpu")
    assert loaded.model_name == tagger.model_name
    assert loaded.max_constituents == tagger.max_constituents
    assert loaded.metadata == {"note": "test"}
    jets = read_jets(jet_file)[2:]
    np.testing.assert_array_equal(loaded.score(jets), tagger.score(jets))


def test_save_replaces_existing_file_atomically(tmp_path):
    path = tmp_path / "t.pt"
    _tagger("JetMassTagger", seed=1).save(path)
    second = _tagger("JetMassTagger", seed=2)
    second.save(path)
    loaded = load_tagger(path, device="cpu")
    for a, b in zip(loaded.model.state_dict().values(), second.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert sorted(os.listdir(tmp_path)) == ["t.pt"]


class _Evil:
    """Unpickling this would create a marker file; a safe loader must never do it."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _bad_files(tmp_path, good):
    data = good.read_bytes()
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.pt").write_bytes(os.urandom(4096))
    torch.save({"weight": torch.zeros(3)}, tmp_path / "bare_state_dict.pt")
    state = torch.load(good, weights_only=True)
    header = json.loads(state["header"])
    for name, change in {
        "foreign_format.pt": {"format": "something-else"},
        "future_version.pt": {"format_version": FORMAT_VERSION + 1},
        "unknown_model.pt": {"model_name": "NoSuchModel"},
        "bad_config.pt": {"config": {"no_such_argument": 1}},
    }.items():
        torch.save({"state_dict": state["state_dict"], "header": json.dumps({**header, **change})},
                   tmp_path / name)
    wrong = dict(state["state_dict"])
    wrong.pop(next(iter(wrong)))
    torch.save({"state_dict": wrong, "header": state["header"]}, tmp_path / "missing_weight.pt")
    torch.save({"state_dict": state["state_dict"], "header": "{not json"}, tmp_path / "bad_json.pt")


@pytest.mark.parametrize("name, problem", [
    ("empty.pt", "empty"),
    ("truncated.pt", "not a readable"),
    ("garbage.pt", "not a readable"),
    ("bare_state_dict.pt", "expected entries 'header' and 'state_dict'"),
    ("foreign_format.pt", "format is 'something-else'"),
    ("future_version.pt", "newer than this lloca-hep"),
    ("unknown_model.pt", "unknown model 'NoSuchModel'"),
    ("bad_config.pt", "cannot build model"),
    ("missing_weight.pt", "weights do not fit"),
    ("bad_json.pt", "not valid JSON"),
])
def test_bad_files_raise_clear_errors(tmp_path, name, problem):
    good = _tagger("JetMassTagger").save(tmp_path / "good.pt")
    _bad_files(tmp_path, good)
    with pytest.raises(TaggerFileError, match=problem) as exc:
        load_tagger(tmp_path / name, device="cpu")
    assert str(tmp_path / name) in str(exc.value)
    assert isinstance(exc.value, ValueError)


def test_loading_never_unpickles_objects(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = str(marker)
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "header": evil}, path)
    with pytest.raises(TaggerFileError, match="not a readable"):
        load_tagger(path, device="cpu")
    assert not marker.exists()
    # the file really is dangerous: an unsafe load runs its payload (and returns an open file)
    torch.load(path, weights_only=False)["header"].close()
    assert marker.exists()


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such tagger file"):
        load_tagger(tmp_path / "nope.pt")
    with pytest.raises(TaggerFileError, match="directory"):
        load_tagger(tmp_path)


def test_pt2_dispatches_to_export_module(tmp_path, monkeypatch):
    path = tmp_path / "model.pt2"
    path.write_bytes(b"x")
    seen = []
    monkeypatch.setattr("lloca_hep.tagger.loading.load_exported",
                        lambda p, **kw: seen.append((p, kw)) or "exported tagger")
    assert load_tagger(path, device="cpu", batch_size=64) == "exported tagger"
    assert seen == [(path, {"device": "cpu", "batch_size": 64})]


def test_old_import_paths_still_work():
    import lloca_hep.export
    import lloca_hep.tagger
    import lloca_hep.tagger.export

    for name in lloca_hep.export.__all__:
        assert getattr(lloca_hep.export, name) is getattr(lloca_hep.tagger.export, name)
    assert lloca_hep.tagger.load_exported is lloca_hep.tagger.export.load_exported
    assert lloca_hep.tagger.validate_header is lloca_hep.tagger.format.validate_header


def test_cuda_request_without_cuda_is_clear(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        _tagger("JetMassTagger").to("cuda")
