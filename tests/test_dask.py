"""lloca_hep.integrations.dask.score_files with dask's threaded scheduler (no cluster)."""

from __future__ import annotations

import shutil
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

dak = pytest.importorskip("dask_awkward")
pytest.importorskip("coffea")


from lloca_hep.coffea import JetTagger, required_branches  # noqa: E402
from lloca_hep.integrations import dask as ld  # noqa: E402
from lloca_hep.io import LayoutError, MissingTreeError, OutputError, read_jets  # noqa: E402
from lloca_hep.tagger import load_tagger  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "lloca_hep" / "data" / "sample.root"
#: Seed of the small random tagger of conftest's ``tagger_file``.
TAGGER_SEED = 4321
EVENTS_IN_FILE = 10
#: Scores of differently chunked runs agree to float32 rounding.
CHUNKING_ATOL = 1e-6
#: Jets copied from the shipped sample into the small flat test file.
FLAT_JETS = 120

pytestmark = [
    pytest.mark.filterwarnings("ignore::RuntimeWarning:coffea.*"),
    pytest.mark.filterwarnings("ignore:.*Missing cross-reference.*"),
]


@pytest.fixture()
def pfnano(pfnano_source: Path, tmp_path: Path) -> Path:
    """A fresh copy per test (score_files writes its outputs next to it)."""
    dest = tmp_path / "in" / "pfnano.root"
    dest.parent.mkdir()
    shutil.copyfile(pfnano_source, dest)
    return dest


@pytest.fixture(scope="module")
def eager_events(pfnano_source: Path, nanoevents) -> ak.Array:
    return nanoevents(pfnano_source, "virtual")


@pytest.fixture(scope="module")
def eager_scores(tagger_file: Path, eager_events) -> ak.Array:
    return JetTagger(tagger_file)(eager_events)


def _read_friends(paths: list[Path]) -> ak.Array:
    parts = []
    for p in paths:
        with uproot.open(p) as f:
            parts.append(f[ld.FRIEND_TREE].arrays())
    return ak.concatenate(parts)


def test_score_files_partitions_match_eager(tagger_file, pfnano, eager_events, eager_scores,
                                            tmp_path):
    out_dir = tmp_path / "out"
    outputs = ld.score_files([pfnano], out_dir, model=tagger_file, step_size=4,
                             scheduler="threads")
    assert [p.name for p in outputs] == [
        "pfnano_scores_0-4.root", "pfnano_scores_4-8.root", "pfnano_scores_8-10.root"]
    assert all(p.parent == out_dir.resolve() for p in outputs)
    friends = _read_friends(outputs)
    assert len(friends) == EVENTS_IN_FILE  # entry-aligned with the input tree
    assert friends.score.type.content.content.primitive == "float32"
    # bit-identical to eager scoring of the same chunks (the model pads each batch to its
    # longest jet, so other chunkings may differ in float32 rounding)
    tagger = JetTagger(tagger_file)
    chunks = [tagger(eager_events[a:b]) for a, b in ((0, 4), (4, 8), (8, 10))]
    assert ak.to_list(friends.score) == ak.to_list(ak.concatenate(chunks))
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(friends.score)),
                               ak.to_numpy(ak.flatten(eager_scores)), rtol=0, atol=CHUNKING_ATOL)
    assert ak.to_list(friends.score_jet_index) == ak.to_list(ak.local_index(eager_scores))
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(p.name for p in outputs)  # no temp


def test_one_output_per_file_named_like_lloca_hep_tag(tagger_file, pfnano, eager_scores,
                                                      tmp_path):
    second = pfnano.parent / "other" / "pfnano.root"  # same name, other directory
    second.parent.mkdir()
    shutil.copyfile(pfnano, second)
    outputs = ld.score_files([pfnano, second], tmp_path / "out", model=tagger_file,
                             step_size=None, scheduler="threads")
    assert len(outputs) == 2 and len({p.name for p in outputs}) == 2
    assert outputs[0].name.startswith("pfnano_") and outputs[0].name.endswith("_scores.root")
    for p in outputs:
        assert ak.to_list(_read_friends([p]).score) == ak.to_list(eager_scores)


def test_only_needed_branches_are_read(tagger_file, pfnano):
    inp = ld._inspect(pfnano, None, "FatJet")
    scores, partitions = ld._lazy_scores([inp], JetTagger(tagger_file), step_size=5)
    assert [(start, stop) for _, start, stop in partitions] == [(0, 5), (5, 10)]
    assert scores.npartitions == 2
    (needed,) = dak.necessary_columns(scores).values()
    # uproot reads the index-table and candidate counters with their jagged branches
    expected = set(required_branches("FatJet")) - {"nFatJetPFCands", "nPFCands"}
    assert set(needed) == expected


def test_flat_jetclass_file_with_a_pfnano_file(tagger_file, pfnano, eager_scores, tmp_path):
    if not SAMPLE.exists():
        pytest.skip("shipped sample.root not available")
    with uproot.open(SAMPLE) as f:
        arrays = f["jets"].arrays(entry_stop=FLAT_JETS)
    flat = tmp_path / "flat.root"
    with uproot.recreate(flat) as f:
        f.mktree("jets", {k: arrays[k].type.content for k in
                          ("part_px", "part_py", "part_pz", "part_energy", "jet_pt")})
        f["jets"].extend({k: arrays[k] for k in
                          ("part_px", "part_py", "part_pz", "part_energy", "jet_pt")})
    outputs = ld.score_files([flat, pfnano], tmp_path / "out", model=tagger_file, step_size=50,
                             scheduler="threads")
    assert [p.name for p in outputs] == [
        "flat_scores_0-50.root", "flat_scores_50-100.root", "flat_scores_100-120.root",
        "pfnano_scores_0-10.root"]  # input order, then entry order
    assert ak.to_list(_read_friends(outputs[3:]).score) == ak.to_list(eager_scores)
    outputs = outputs[:3]
    reference = load_tagger(tagger_file, device="cpu")
    for path, (start, stop) in zip(outputs, [(0, 50), (50, 100), (100, 120)], strict=True):
        got = ak.to_numpy(_read_friends([path]).score)
        # the same jets, read by lloca_hep.io in the same chunks, scored by the Tagger
        want = reference.score(read_jets(flat, entry_start=start, entry_stop=stop))
        np.testing.assert_array_equal(got, want)


def test_existing_outputs_and_inputs_are_protected(tagger_file, pfnano, tmp_path):
    out_dir = tmp_path / "out"
    first = ld.score_files(pfnano, out_dir, model=tagger_file, step_size=None,
                           scheduler="threads")
    before = first[0].stat().st_mtime_ns
    with pytest.raises(OutputError, match="exist.*overwrite=True"):
        ld.score_files(pfnano, out_dir, model=tagger_file, step_size=None)
    assert first[0].stat().st_mtime_ns == before
    again = ld.score_files(pfnano, out_dir, model=tagger_file, step_size=None,
                           overwrite=True, scheduler="threads")
    assert again == first
    # an input that has the name an output would get is never written over
    trap = pfnano.parent / "x_scores.root"
    shutil.copyfile(pfnano, pfnano.parent / "x.root")
    shutil.copyfile(pfnano, trap)
    data = trap.read_bytes()
    with pytest.raises(OutputError, match="is an input file"):
        ld.score_files([pfnano.parent / "x.root", trap], pfnano.parent, model=tagger_file,
                       step_size=None, overwrite=True)
    assert trap.read_bytes() == data


def test_bad_inputs(tagger_file, pfnano, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.root"):
        ld.score_files(tmp_path / "missing.root", tmp_path / "out", model=tagger_file)
    with pytest.raises(MissingTreeError, match="no TTree/RNTuple named 'Nope'.*Events"):
        ld.score_files(pfnano, tmp_path / "out", model=tagger_file, tree="Nope")
    with pytest.raises(LayoutError, match="cannot recognise the jet layout of .*:Runs"):
        ld.score_files(pfnano, tmp_path / "out", model=tagger_file, tree="Runs")
    with pytest.raises(ValueError, match="at least one"):
        ld.score_files([], tmp_path / "out", model=tagger_file)


def test_rntuple_inputs_score_like_ttrees(tagger_file, pfnano, eager_scores, tmp_path):
    """RNTuples go through the same discovery (the reader's plan: ``part.px`` sub-fields of a
    flat file, ``FatJet_pt``... fields of PFNano) and give the TTree scores."""
    if not SAMPLE.exists():
        pytest.skip("shipped sample.root not available")
    with uproot.open(SAMPLE) as f:
        arrays = f["jets"].arrays(["part_px", "part_py", "part_pz", "part_energy"],
                                  entry_stop=FLAT_JETS)
    flat_rn = tmp_path / "flat_rn.root"
    with uproot.recreate(flat_rn) as f:
        f["jets"] = {"part": ak.zip({c: arrays[f"part_{c}"]
                                     for c in ("px", "py", "pz", "energy")})}
    nano_rn = tmp_path / "nano_rn.root"
    with uproot.open(pfnano) as f:
        nano = f["Events"].arrays(
            [b for b in required_branches("FatJet") if not b.startswith("n")] + ["FatJet_pt"])
    with uproot.recreate(nano_rn) as f:
        f["Events"] = {k: nano[k] for k in nano.fields}
    outputs = ld.score_files([flat_rn, nano_rn], tmp_path / "out", model=tagger_file,
                             step_size=None, scheduler="sync")
    assert [p.name for p in outputs] == ["flat_rn_scores.root", "nano_rn_scores.root"]
    reference = load_tagger(tagger_file, device="cpu")
    np.testing.assert_array_equal(ak.to_numpy(_read_friends(outputs[:1]).score),
                                  reference.score(read_jets(flat_rn)))
    friend = _read_friends(outputs[1:])
    assert ak.to_list(friend.score) == ak.to_list(eager_scores)
    assert ak.to_list(friend.score_jet_index) == ak.to_list(ak.local_index(eager_scores))
