"""Writers: entry-aligned friend trees (TTree and RNTuple), atomic output, awkward fields."""

from __future__ import annotations

import os
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from lloca_hep.io import (
    FriendTreeWriter,
    JetChunk,
    OutputError,
    add_scores,
    friend_path,
    iterate_jets,
    read_jets,
    write_scores,
)


def write_jets(path: Path, n_jets: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 20, n_jets)
    n = int(counts.sum())
    px, py, pz = rng.normal(scale=20, size=(3, n)).astype(np.float32)
    energy = (np.sqrt(px.astype(np.float64) ** 2 + py**2 + pz**2) + 1.0).astype(np.float32)
    part = ak.unflatten(ak.zip({"px": px, "py": py, "pz": pz, "energy": energy}), counts)
    data = {"part": part, "is_signal": rng.integers(0, 2, n_jets).astype(np.int32)}
    with uproot.recreate(path) as f:
        f.mktree("jets", {"part": part.type.content, "is_signal": np.int32})
        f["jets"].extend(data)
    return path


def fake_scores(jets: ak.Array) -> np.ndarray:
    """Deterministic per-jet numbers that identify the jet (its leading px)."""
    return ak.to_numpy(ak.fill_none(ak.firsts(jets.constituents.px), -1.0)).astype(np.float32)


def no_temporaries(directory: Path) -> bool:
    return not any(p.name.endswith(".tmp") for p in directory.iterdir())


@pytest.mark.parametrize("step", [1, 37, 500])
@pytest.mark.parametrize("compression", ["ZSTD", "LZ4"])
def test_flat_friend_tree_is_entry_aligned(tmp_path, step, compression):
    src = write_jets(tmp_path / "jets.root", 200 if step == 1 else 500)
    out = tmp_path / "jets_scores.root"
    with FriendTreeWriter(out, compression=compression, inputs=[src]) as writer:
        for chunk in iterate_jets(src, step_size=step):
            writer.extend(fake_scores(chunk.jets), chunk)
    assert no_temporaries(tmp_path)
    f = uproot.open(out)
    assert f.file.compression.__class__.__name__ == compression
    scores = f["scores"]["score"].array(library="np")
    expected = fake_scores(read_jets(src))
    np.testing.assert_array_equal(scores, expected)
    assert f["scores"].num_entries == uproot.open(src)["jets"].num_entries


def test_multiclass_branches_and_class_names(tmp_path):
    src = write_jets(tmp_path / "jets.root", 120)
    jets = read_jets(src)
    scores = np.random.default_rng(1).random((120, 3)).astype(np.float32)
    out = write_scores(tmp_path / "multi.root", scores, jets)
    tree = uproot.open(out)["scores"]
    assert tree.keys() == ["score_0", "score_1", "score_2"]
    np.testing.assert_array_equal(np.stack([tree[f"score_{k}"].array(library="np") for k in range(3)], 1), scores)
    out2 = write_scores(tmp_path / "named.root", scores, jets, class_names=["qcd", "top", "w"])
    assert uproot.open(out2)["scores"].keys() == ["score_qcd", "score_top", "score_w"]
    with pytest.raises(ValueError, match="class_names has 2 names for 3 classes"):
        write_scores(tmp_path / "bad.root", scores, jets, class_names=["a", "b"])
    assert not (tmp_path / "bad.root").exists() and no_temporaries(tmp_path)


def test_rntuple_output(tmp_path):
    src = write_jets(tmp_path / "jets.root", 300)
    out = tmp_path / "scores_rn.root"
    with FriendTreeWriter(out, rntuple=True) as writer:
        for chunk in iterate_jets(src, step_size=100):
            writer.extend(fake_scores(chunk.jets), chunk)
    obj = uproot.open(out)["scores"]
    assert "RNTuple" in type(obj).__name__
    np.testing.assert_array_equal(ak.to_numpy(obj.arrays()["score"]), fake_scores(read_jets(src)))


@pytest.mark.parametrize("step", [1, 4, 10])
def test_event_layout_keeps_event_and_jet_structure(pfnano_copy, step):
    out = friend_path(pfnano_copy)
    assert out.endswith("pfnano_scores.root")
    with FriendTreeWriter(out, inputs=[pfnano_copy]) as writer:
        for chunk in iterate_jets(pfnano_copy, step_size=step):
            writer.extend(fake_scores(chunk.jets), chunk)
    tree = uproot.open(out)["scores"]
    assert tree.num_entries == 10
    n_fat = uproot.open(pfnano_copy)["Events"]["nFatJet"].array(library="np")
    scores = tree["score"].array()
    assert ak.num(scores).tolist() == n_fat.tolist()
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(scores)), fake_scores(read_jets(pfnano_copy)))
    assert ak.to_list(tree["score_jet_index"].array()) == [list(range(k)) for k in n_fat]


def write_small_nano(path: Path) -> Path:
    """NanoAOD-like Events: 2, 0 and 1 FatJets, constituents joined through FatJetPFCands."""
    fat = ak.Array([[{"pt": 300.0, "eta": 0.1, "phi": 0.2, "mass": 80.0}] * 2, [],
                    [{"pt": 400.0, "eta": -0.3, "phi": 1.0, "mass": 170.0}]])
    pf = ak.Array([[{"pt": 1.0, "eta": 0.1, "phi": 0.2, "mass": 0.1}] * 4, [],
                   [{"pt": 2.0, "eta": -0.3, "phi": 1.0, "mass": 0.1}] * 2])
    table = ak.Array([[{"jetIdx": 0, "pFCandsIdx": 0}, {"jetIdx": 1, "pFCandsIdx": 1},
                       {"jetIdx": 0, "pFCandsIdx": 2}], [], [{"jetIdx": 0, "pFCandsIdx": 1}]])
    data = {
        "FatJet": ak.values_astype(fat, np.float32),
        "PFCands": ak.values_astype(pf, np.float32),
        "FatJetPFCands": ak.values_astype(table, np.int32),
    }
    with uproot.recreate(path) as f:
        f.mktree("Events", {k: v.type.content for k, v in data.items()})
        f["Events"].extend(data)
    return path


def test_event_layout_events_without_jets_and_filtered_jets(tmp_path):
    src = write_small_nano(tmp_path / "nano.root")
    jets = read_jets(src)
    out = write_scores(tmp_path / "nano_scores.root", np.array([0.1, 0.2, 0.3], np.float32), jets)
    tree = uproot.open(out)["scores"]
    assert tree.num_entries == 3
    written = tree["score"].array()
    assert ak.num(written).tolist() == [2, 0, 1]
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(written)), np.array([0.1, 0.2, 0.3], np.float32))
    # the user filtered jets: the friend keeps the event alignment and says which jets
    kept = jets[jets.jet_index != 0]
    out2 = write_scores(tmp_path / "nano_kept.root", np.array([0.5], np.float32), kept)
    tree2 = uproot.open(out2)["scores"]
    assert ak.to_list(tree2["score_jet_index"].array()) == [[1], [], []]


def test_refuses_existing_output_unless_overwrite(tmp_path):
    src = write_jets(tmp_path / "jets.root", 50)
    jets = read_jets(src)
    out = tmp_path / "scores.root"
    out.write_bytes(b"precious")
    with pytest.raises(OutputError, match="exists; pass overwrite=True"):
        write_scores(out, fake_scores(jets), jets)
    assert out.read_bytes() == b"precious"
    write_scores(out, fake_scores(jets), jets, overwrite=True)
    np.testing.assert_array_equal(uproot.open(out)["scores"]["score"].array(library="np"), fake_scores(jets))


def test_refuses_to_write_over_an_input(tmp_path):
    src = write_jets(tmp_path / "jets.root", 50)
    before = src.read_bytes()
    jets = read_jets(src)
    with pytest.raises(OutputError, match="it is an input file"):
        FriendTreeWriter(src, inputs=[src], overwrite=True)
    with pytest.raises(OutputError, match="it is an input file"):
        write_scores(src, fake_scores(jets), jets, overwrite=True)
    link = tmp_path / "alias.root"
    os.symlink(src, link)
    with pytest.raises(OutputError, match="it is an input file"):
        write_scores(link, fake_scores(jets), jets, overwrite=True)
    assert src.read_bytes() == before and no_temporaries(tmp_path)


def test_failure_inside_with_leaves_no_output(tmp_path):
    src = write_jets(tmp_path / "jets.root", 100)
    out = tmp_path / "scores.root"
    with pytest.raises(RuntimeError, match="tagger crashed"):
        with FriendTreeWriter(out) as writer:
            for i, chunk in enumerate(iterate_jets(src, step_size=30)):
                if i == 2:
                    raise RuntimeError("tagger crashed")
                writer.extend(fake_scores(chunk.jets), chunk)
    assert not out.exists() and no_temporaries(tmp_path)


def test_alignment_errors(tmp_path):
    src = write_jets(tmp_path / "jets.root", 100)
    other = write_jets(tmp_path / "other.root", 100, seed=1)
    chunks = list(iterate_jets(src, step_size=40))
    with pytest.raises(OutputError, match="starts at entry 40 but the friend tree has 0 entries"):
        with FriendTreeWriter(tmp_path / "a.root") as writer:
            writer.extend(fake_scores(chunks[1].jets), chunks[1])
    with pytest.raises(OutputError, match="3 scores for 40 jets"):
        with FriendTreeWriter(tmp_path / "b.root") as writer:
            writer.extend(np.zeros(3, np.float32), chunks[0])
    with pytest.raises(OutputError, match="one FriendTreeWriter per input file"):
        with FriendTreeWriter(tmp_path / "c.root") as writer:
            writer.extend(fake_scores(chunks[0].jets), chunks[0])
            oc = next(iter(iterate_jets(other, step_size=40, entry_start=40)))
            writer.extend(fake_scores(oc.jets), oc)
    selected = chunks[0].jets[chunks[0].jets.is_signal == 1]
    filtered = JetChunk(selected, chunks[0].file, 0, 40, "jets", "jetclass", 100)
    with pytest.raises(OutputError, match="one score per input entry"):
        with FriendTreeWriter(tmp_path / "d.root") as writer:
            writer.extend(fake_scores(selected), filtered)
    with pytest.raises(OutputError, match="no source information"):
        write_scores(tmp_path / "e.root", np.zeros(2), ak.Array([{"x": 1}, {"x": 2}]))
    assert not any((tmp_path / n).exists() for n in "abcde") and no_temporaries(tmp_path)


def test_partial_friend_logs_a_warning(tmp_path, caplog):
    src = write_jets(tmp_path / "jets.root", 100)
    chunk = next(iter(iterate_jets(src, step_size=60)))
    with FriendTreeWriter(tmp_path / "part.root") as writer:
        writer.extend(fake_scores(chunk.jets), chunk)
    assert "holds 60 entries but the input" in caplog.text
    assert uproot.open(tmp_path / "part.root")["scores"].num_entries == 60


def test_add_scores_flat_and_event_structure():
    jets = ak.Array([{"pt": 1.0}, {"pt": 2.0}, {"pt": 3.0}])
    with_s = add_scores(jets, np.array([0.1, 0.2, 0.3], np.float32))
    assert ak.to_list(with_s.score) == pytest.approx([0.1, 0.2, 0.3])
    multi = add_scores(jets, np.arange(6, dtype=np.float32).reshape(3, 2), name="probs")
    assert ak.to_list(multi.probs) == [[0, 1], [2, 3], [4, 5]]
    events = ak.Array([[{"pt": 1.0}, {"pt": 2.0}], [], [{"pt": 3.0}]])
    ev = add_scores(events, np.array([0.1, 0.2, 0.3]))
    assert ak.to_list(ev.score) == [[0.1, 0.2], [], [0.3]]
    with pytest.raises(ValueError, match="2 scores for 3 jets"):
        add_scores(jets, np.zeros(2))
    with pytest.raises(ValueError, match="2 scores for 3 jets in 3 events"):
        add_scores(events, np.zeros(2))
