"""Readers: real ROOT files written with uproot (TTree and RNTuple) and the PFNano sample."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
import vector

from lloca_hep.io import (
    CorruptFileError,
    InvalidConstituentsWarning,
    InvalidMomentumError,
    LayoutError,
    LLoCaInputError,
    MissingBranchError,
    MissingFileError,
    MissingTreeError,
    iterate_jets,
    read_jets,
)
from lloca_hep.preprocessing import EmptyJetsWarning, pad_jets


def make_jetclass(n_jets: int = 500, seed: int = 0, empty=(), nan_at=None, energy_shift=None):
    """Random JetClass-like jets as a dict of awkward arrays (float32 like the real files)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 50, size=n_jets)
    for i in empty:
        counts[i] = 0
    n = int(counts.sum())
    px, py, pz = rng.normal(scale=40.0, size=(3, n))
    energy = np.sqrt(px**2 + py**2 + pz**2 + rng.uniform(0, 0.5, n) ** 2)
    if nan_at is not None:
        px[nan_at] = np.nan
    if energy_shift is not None:
        idx, value = energy_shift
        energy[idx] = value
    part = ak.unflatten(
        ak.zip(
            {
                "px": px.astype(np.float32),
                "py": py.astype(np.float32),
                "pz": pz.astype(np.float32),
                "energy": energy.astype(np.float32),
            }
        ),
        counts,
    )
    jet_pt = np.hypot(ak.to_numpy(ak.sum(part.px, axis=1)), ak.to_numpy(ak.sum(part.py, axis=1)))
    return {
        "part": part,
        "jet_pt": jet_pt.astype(np.float32),
        "jet_mass": rng.uniform(0, 300, n_jets).astype(np.float32),
        "is_signal": rng.integers(0, 2, n_jets).astype(np.int32),
        "label_QCD": rng.integers(0, 2, n_jets).astype(np.int32),
    }


def write_ttree(path: Path, data: dict, name: str = "jets", chunk: int = 200) -> Path:
    n = len(data["jet_pt"])
    with uproot.recreate(path) as f:
        f.mktree(name, {k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in data.items()})
        for lo in range(0, n, chunk):
            f[name].extend({k: v[lo : lo + chunk] for k, v in data.items()})
    return path


def write_rntuple(path: Path, data: dict, name: str = "jets") -> Path:
    with uproot.recreate(path) as f:
        f[name] = data
    return path


def expected_p4(data: dict) -> ak.Array:
    part = data["part"]
    return ak.zip({c: ak.values_astype(part[s], np.float64) for c, s in
                   (("px", "px"), ("py", "py"), ("pz", "pz"), ("E", "energy"))})


def assert_constituents_equal(jets: ak.Array, data: dict, start: int = 0):
    exp = expected_p4(data)[start : start + len(jets)]
    for c in ("px", "py", "pz", "E"):
        got = jets.constituents[c]
        assert ak.all(ak.num(got) == ak.num(exp[c]))
        np.testing.assert_array_equal(ak.to_numpy(ak.flatten(got)), ak.to_numpy(ak.flatten(exp[c])))


# --------------------------------------------------------------------------- JetClass TTree
def test_jetclass_ttree_round_trip(tmp_path):
    data = make_jetclass()
    path = write_ttree(tmp_path / "jets.root", data)
    jets = read_jets(path)
    assert len(jets) == 500
    assert jets.constituents.layout.content.parameter("__record__") == "Momentum4D"
    assert set(ak.fields(jets)) == {"constituents", "jet_pt", "jet_mass", "is_signal", "label_QCD"}
    assert jets.constituents.E.type.content.content.primitive == "float64"
    assert_constituents_equal(jets, data)
    np.testing.assert_array_equal(ak.to_numpy(jets.is_signal), data["is_signal"])
    np.testing.assert_array_equal(ak.to_numpy(jets.label_QCD), data["label_QCD"])
    # vector behaviour works on the result
    np.testing.assert_allclose(
        ak.to_numpy(ak.flatten(jets.constituents.pt)),
        np.hypot(ak.to_numpy(ak.flatten(data["part"].px)), ak.to_numpy(ak.flatten(data["part"].py))).astype(np.float64),
        rtol=1e-6,
    )
    src = jets.attrs["lloca_source"]
    assert src["layout"] == "jetclass" and src["entry_start"] == 0 and src["entry_stop"] == 500
    # explicit layout and jet_fields selection
    colon = read_jets(f"{path}:jets", entry_stop=5)
    assert_constituents_equal(colon, data)
    few = read_jets(path, layout="flat", jet_fields=["is_signal"], entry_start=10, entry_stop=20)
    assert ak.fields(few) == ["constituents", "is_signal"]
    assert_constituents_equal(few, data, start=10)


@pytest.mark.parametrize("step", [1, 7, 128, 1000, "20 kB"])
def test_iterate_jets_ttree_chunks(tmp_path, step):
    data = make_jetclass(n_jets=300 if step == 1 else 500, seed=3)
    path = write_ttree(tmp_path / "jets.root", data)
    chunks = list(iterate_jets([path], step_size=step))
    starts = [c.entry_start for c in chunks]
    stops = [c.entry_stop for c in chunks]
    assert starts[0] == 0 and stops[-1] == len(data["jet_pt"])
    assert starts[1:] == stops[:-1]
    if isinstance(step, int):
        assert all(c.entry_stop - c.entry_start <= step for c in chunks)
        assert len(chunks) == -(-len(data["jet_pt"]) // step)
    else:
        assert len(chunks) > 1
    for c in chunks:
        assert len(c.jets) == c.entry_stop - c.entry_start
        assert c.file == str(path.resolve()) and c.tree == "jets" and c.layout == "jetclass"
        assert c.num_entries == len(data["jet_pt"])
    whole = ak.concatenate([c.jets for c in chunks])
    assert_constituents_equal(whole, data)


def test_iterate_jets_several_files_and_entry_range(tmp_path):
    a = write_ttree(tmp_path / "a.root", make_jetclass(100, seed=1))
    b = write_ttree(tmp_path / "b.root", make_jetclass(60, seed=2))
    chunks = list(iterate_jets(str(tmp_path / "*.root"), step_size=25, entry_start=10, entry_stop=70))
    files = [Path(c.file).name for c in chunks]
    assert files == ["a.root"] * 3 + ["b.root"] * 2
    assert [(c.entry_start, c.entry_stop) for c in chunks] == [(10, 35), (35, 60), (60, 70), (10, 35), (35, 60)]
    assert sum(len(c) for c in chunks) == 60 + 50
    assert a.exists() and b.exists()


# --------------------------------------------------------------------------- RNTuple
def test_rntuple_field_naming_trap_is_handled(tmp_path):
    data = make_jetclass(seed=4)
    path = write_rntuple(tmp_path / "jets_rn.root", data)
    ntuple = uproot.open(path)["jets"]
    assert "part.px" in ntuple.keys() and "part_px" not in ntuple.keys()
    # the trap: uproot silently returns empty records for the TTree-style name
    trap = ntuple.arrays(["part_px"])
    assert ak.fields(trap) == [] and len(trap) == len(data["jet_pt"])
    jets = read_jets(path)
    assert jets.attrs["lloca_source"]["layout"] == "jetclass"
    assert_constituents_equal(jets, data)
    np.testing.assert_array_equal(ak.to_numpy(jets.is_signal), data["is_signal"])
    assert set(ak.fields(jets)) == {"constituents", "jet_pt", "jet_mass", "is_signal", "label_QCD"}
    # TTree-style names given by the user are translated as well
    mapped = read_jets(path, branches={"px": "part_px", "py": "part_py", "pz": "part_pz", "E": "part_energy"})
    assert_constituents_equal(mapped, data)


@pytest.mark.parametrize("step", [1, 64, 499, "10 kB"])
def test_iterate_jets_rntuple_chunks(tmp_path, step):
    data = make_jetclass(n_jets=200 if step == 1 else 500, seed=5)
    path = write_rntuple(tmp_path / "jets_rn.root", data)
    chunks = list(iterate_jets(path, step_size=step))
    assert [c.entry_start for c in chunks[1:]] == [c.entry_stop for c in chunks[:-1]]
    assert chunks[-1].entry_stop == len(data["jet_pt"])
    assert_constituents_equal(ak.concatenate([c.jets for c in chunks]), data)


def test_rntuple_with_flat_top_level_names(tmp_path):
    data = make_jetclass(seed=6)
    flat = {f"part_{k}": data["part"][k] for k in ("px", "py", "pz", "energy")}
    flat["jet_pt"] = data["jet_pt"]
    path = write_rntuple(tmp_path / "flat_rn.root", flat)
    jets = read_jets(path)
    assert_constituents_equal(jets, data)
    assert ak.fields(jets) == ["constituents", "jet_pt"]


# --------------------------------------------------------------------------- user mapping
def test_mapping_polar_branches_are_converted_in_float64(tmp_path):
    rng = np.random.default_rng(7)
    counts = rng.integers(1, 30, 200)
    n = int(counts.sum())
    pt = rng.uniform(1, 100, n).astype(np.float32)
    eta = rng.uniform(-2.5, 2.5, n).astype(np.float32)
    phi = rng.uniform(-np.pi, np.pi, n).astype(np.float32)
    mass = rng.uniform(0, 1, n).astype(np.float32)
    data = {
        "c": ak.unflatten(ak.zip({"PT": pt, "Eta": eta, "Phi": phi, "M": mass}), counts),
        "weight": rng.random(200).astype(np.float64),
    }
    path = tmp_path / "polar.root"
    with uproot.recreate(path) as f:
        f.mktree("t", {k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in data.items()})
        f["t"].extend(data)
    jets = read_jets(path, tree="t", branches={"pt": "c_PT", "eta": "c_Eta", "phi": "c_Phi", "m": "c_M"})
    assert jets.attrs["lloca_source"]["layout"] == "mapping"
    ref = vector.array({"pt": pt.astype(np.float64), "eta": eta.astype(np.float64),
                        "phi": phi.astype(np.float64), "mass": mass.astype(np.float64)})
    for ours, theirs in (("px", ref.px), ("py", ref.py), ("pz", ref.pz), ("E", ref.E)):
        np.testing.assert_allclose(ak.to_numpy(ak.flatten(jets.constituents[ours])), theirs, rtol=1e-12)
    assert "weight" in ak.fields(jets)


def test_mapping_cartesian_custom_names(tmp_path):
    data = make_jetclass(100, seed=8)
    renamed = {
        "pfc": ak.zip({"x": data["part"].px, "y": data["part"].py, "z": data["part"].pz, "t": data["part"].energy}),
        "jet_pt": data["jet_pt"],
    }
    path = write_ttree(tmp_path / "custom.root", renamed, name="mytree")
    jets = read_jets(path, branches={"px": "pfc_x", "py": "pfc_y", "pz": "pfc_z", "energy": "pfc_t"})
    assert_constituents_equal(jets, data)
    with pytest.raises(LayoutError, match="must map px, py, pz, E"):
        read_jets(path, branches={"px": "pfc_x"})


# --------------------------------------------------------------------------- PFNano
def test_pfnano_fatjets(pfnano_copy):
    jets = read_jets(pfnano_copy)
    assert jets.attrs["lloca_source"]["layout"] == "nanoaod"
    assert jets.attrs["lloca_source"]["tree"] == "Events"
    events = uproot.open(pfnano_copy)["Events"].arrays(
        ["nFatJet", "FatJet_pt", "FatJet_eta", "FatJet_phi", "FatJetPFCands_jetIdx"]
    )
    n_fat = ak.to_numpy(events.nFatJet)
    assert len(jets) == int(n_fat.sum()) == 24
    np.testing.assert_array_equal(ak.to_numpy(jets.entry), np.repeat(np.arange(10), n_fat))
    np.testing.assert_array_equal(ak.to_numpy(jets.jet_index), np.concatenate([np.arange(k) for k in n_fat]))
    # constituent counts = rows of the index table per jet
    table_counts = [int(np.count_nonzero(ak.to_numpy(events.FatJetPFCands_jetIdx[e]) == j))
                    for e in range(10) for j in range(n_fat[e])]
    assert ak.num(jets.constituents).tolist() == table_counts
    np.testing.assert_array_equal(ak.to_numpy(jets.jet_pt), ak.to_numpy(ak.flatten(events.FatJet_pt)))
    # the summed constituents point along the jet axis (PUPPI-weighted jets: pT about 0.9)
    c = jets.constituents
    total = ak.zip({k: ak.sum(c[k], axis=1) for k in ("px", "py", "pz", "E")}, with_name="Momentum4D")
    axis = ak.zip({"pt": jets.jet_pt, "eta": jets.jet_eta, "phi": jets.jet_phi, "mass": jets.jet_mass},
                  with_name="Momentum4D")
    assert ak.max(total.deltaR(axis)) < 0.05
    ratio = ak.to_numpy(total.pt / jets.jet_pt)
    assert np.all((ratio > 0.7) & (ratio < 1.1))
    # energies are consistent with the stored masses
    assert ak.all(c.E >= c.p * (1 - 1e-6))


def test_pfnano_ak4_jets_match_nconstituents(pfnano_copy):
    jets = read_jets(pfnano_copy, collection="Jet")
    assert len(jets) == 64
    assert ak.num(jets.constituents).tolist() == ak.to_list(jets.jet_nConstituents)
    every = read_jets(pfnano_copy, collection="Jet", jet_fields="all")
    assert "jet_btagDeepFlavB" in ak.fields(every) and len(ak.fields(every)) > 100


@pytest.mark.parametrize("step", [1, 3, 10])
def test_pfnano_iterate_events(pfnano_copy, step):
    whole = read_jets(pfnano_copy)
    chunks = list(iterate_jets(pfnano_copy, step_size=step))
    assert [(c.entry_start, c.entry_stop) for c in chunks][-1][1] == 10
    joined = ak.concatenate([c.jets for c in chunks])
    assert ak.to_list(joined.entry) == ak.to_list(whole.entry)
    np.testing.assert_array_equal(
        ak.to_numpy(ak.flatten(joined.constituents.px)), ak.to_numpy(ak.flatten(whole.constituents.px))
    )
    for c in chunks:
        assert ak.all((c.jets.entry >= c.entry_start) & (c.jets.entry < c.entry_stop))


# --------------------------------------------------------------------------- bad input
def test_missing_file(tmp_path):
    with pytest.raises(MissingFileError, match="not found: .*nope.root"):
        read_jets(tmp_path / "nope.root")
    with pytest.raises(MissingFileError, match="no file matches"):
        list(iterate_jets(str(tmp_path / "nothing*.root")))
    assert issubclass(MissingFileError, LLoCaInputError) and issubclass(LLoCaInputError, ValueError)


def test_missing_tree_lists_trees(tmp_path):
    path = write_ttree(tmp_path / "jets.root", make_jetclass(20))
    with pytest.raises(MissingTreeError, match=r"no TTree/RNTuple named 'Events'.*trees in the file: jets"):
        read_jets(path, tree="Events")


def test_missing_branch_lists_branches(tmp_path):
    path = write_ttree(tmp_path / "jets.root", make_jetclass(20))
    with pytest.raises(MissingBranchError, match=r"no branch 'part_charge'.*branches in the tree: npart, part_px"):
        read_jets(path, branches={"px": "part_px", "py": "part_py", "pz": "part_pz", "E": "part_charge"})
    with pytest.raises(MissingBranchError, match=r"no jet field\(s\) 'jet_tau21'"):
        read_jets(path, jet_fields=["jet_tau21"])
    # a tree that matches no layout: the error lists what the tree has
    other = tmp_path / "other.root"
    with uproot.recreate(other) as f:
        f.mktree("t", {"x": np.float32})
        f["t"].extend({"x": np.zeros(3, np.float32)})
    with pytest.raises(LayoutError, match=r"cannot recognise the jet layout.*Branches in the tree: x"):
        read_jets(other)
    with pytest.raises(LayoutError, match="unknown layout"):
        read_jets(path, layout="delphes")
    with pytest.raises(ValueError, match="on_invalid must be 'raise' or 'drop'"):
        read_jets(path, on_invalid="ignore")


def write_nano_like(
    path: Path, with_pf: bool = True, bad_index: bool = False, n_fat=(2, 0, 1), rntuple: bool = False
):
    """A small NanoAOD-like Events tree (counters nFatJet/nPFCands/nFatJetPFCands)."""
    rng = np.random.default_rng(9)
    n_fat = np.array(n_fat)
    n_pf = np.array([6, 2, 4])
    fat = ak.unflatten(ak.zip({"pt": rng.uniform(200, 500, n_fat.sum()).astype(np.float32),
                               "eta": np.zeros(n_fat.sum(), np.float32),
                               "phi": np.zeros(n_fat.sum(), np.float32),
                               "mass": np.full(n_fat.sum(), 80.0, np.float32)}), n_fat)
    data = {"FatJet": fat}
    if with_pf:
        pf = ak.unflatten(ak.zip({k: rng.uniform(0.5, 1.0, n_pf.sum()).astype(np.float32)
                                  for k in ("pt", "eta", "phi", "mass")}), n_pf)
        # event 0: jet 1 gets pf 5 and 0, jet 0 gets 2, 3 (rows deliberately unsorted); event 2: jet 0 gets 1
        jet_idx = [[1, 0, 1, 0], [], [0]]
        pf_idx = [[5, 2, 0, 3], [], [1]]
        if bad_index:
            pf_idx[2] = [7]
        data["PFCands"] = pf
        data["FatJetPFCands"] = ak.zip({"jetIdx": ak.values_astype(ak.Array(jet_idx), np.int32),
                                        "pFCandsIdx": ak.values_astype(ak.Array(pf_idx), np.int32)})
    with uproot.recreate(path) as f:
        if rntuple:  # record sub-fields FatJet.pt, FatJetPFCands.jetIdx, no counters
            f["Events"] = data
        else:
            f.mktree("Events", {k: v.type.content for k, v in data.items()})
            f["Events"].extend(data)
    return path, data


@pytest.mark.parametrize("rntuple", [False, True])
def test_nanoaod_join_order_and_events_without_jets(tmp_path, rntuple):
    path, data = write_nano_like(tmp_path / "nano.root", rntuple=rntuple)
    if rntuple:
        assert "FatJetPFCands.jetIdx" in uproot.open(path)["Events"].keys()
    jets = read_jets(path)
    assert jets.attrs["lloca_source"]["layout"] == "nanoaod"
    assert ak.fields(jets) == ["constituents", "entry", "jet_index", "jet_pt", "jet_eta", "jet_phi", "jet_mass"]
    np.testing.assert_array_equal(ak.to_numpy(jets.jet_pt), ak.to_numpy(ak.flatten(data["FatJet"].pt)))
    assert ak.to_list(jets.entry) == [0, 0, 2]
    assert ak.to_list(jets.jet_index) == [0, 1, 0]
    pf = data["PFCands"]
    expected_pt = [[pf.pt[0][2], pf.pt[0][3]], [pf.pt[0][5], pf.pt[0][0]], [pf.pt[2][1]]]
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(jets.constituents.pt)),
                               np.concatenate(expected_pt).astype(np.float64), rtol=1e-6)


@pytest.mark.parametrize("rntuple", [False, True])
def test_nanoaod_without_pf_candidates_names_needed_branches(tmp_path, rntuple):
    path, _ = write_nano_like(tmp_path / "nano_nopf.root", with_pf=False, rntuple=rntuple)
    with pytest.raises(MissingBranchError, match=r"NanoAOD without the PF candidates.*FatJetPFCands_jetIdx.*FatJetPFCands_pFCandsIdx.*PFCands_pt"):
        read_jets(path)
    path2, _ = write_nano_like(tmp_path / "nano.root", rntuple=rntuple)
    with pytest.raises(MissingBranchError, match=r"no jet collection 'Jet'.*FatJet"):
        read_jets(path2, collection="Jet")


def test_nanoaod_index_out_of_range(tmp_path):
    path, _ = write_nano_like(tmp_path / "nano_bad.root", bad_index=True)
    with pytest.raises(LLoCaInputError, match=r"entry 2: FatJetPFCands_pFCandsIdx = 7 is out of range \[0, 4\)"):
        read_jets(path)


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"nan_at": 40}, "NaN or infinite momentum"),
        ({"energy_shift": (40, -5.0)}, "negative energy"),
        ({"energy_shift": (40, 0.5)}, r"energy below \|p\|"),
        ({"energy_shift": (40, np.inf)}, "NaN or infinite momentum"),
    ],
)
def test_invalid_momenta_raise_with_location(tmp_path, kwargs, problem):
    data = make_jetclass(50, seed=10, **kwargs)
    path = write_ttree(tmp_path / "bad.root", data)
    counts = ak.to_numpy(ak.num(data["part"]))
    jet = int(np.searchsorted(np.cumsum(counts), 40, side="right"))
    k = 40 - int(np.concatenate([[0], np.cumsum(counts)])[jet])
    with pytest.raises(InvalidMomentumError, match=rf"bad.root:jets.*part_px.*entry {jet} .*constituent {k}: {problem}.*1 constituents in 1 jets"):
        read_jets(path)
    with pytest.warns(InvalidConstituentsWarning, match="dropped 1 constituents"):
        jets = read_jets(path, on_invalid="drop")
    assert ak.num(jets.constituents)[jet] == counts[jet] - 1
    assert int(ak.sum(ak.num(jets.constituents))) == int(counts.sum()) - 1


def test_rounding_level_spacelike_is_accepted(tmp_path):
    rng = np.random.default_rng(11)
    data = make_jetclass(50, seed=11)
    part = data["part"]
    # massless particles stored in float32: E rounds below |p| by ~1e-7 relative
    p = np.sqrt(ak.to_numpy(ak.flatten(part.px)).astype(np.float64) ** 2
                + ak.to_numpy(ak.flatten(part.py)).astype(np.float64) ** 2
                + ak.to_numpy(ak.flatten(part.pz)).astype(np.float64) ** 2)
    e = (p * (1 - rng.uniform(0, 3e-7, p.size))).astype(np.float32)
    data["part"] = ak.with_field(part, ak.unflatten(e, ak.num(part)), "energy")
    path = write_ttree(tmp_path / "massless.root", data)
    jets = read_jets(path)
    assert len(jets) == 50


def test_empty_jets_are_kept_and_counted(tmp_path):
    data = make_jetclass(40, seed=12, empty=(3, 17, 18))
    path = write_ttree(tmp_path / "empty.root", data)
    jets = read_jets(path)
    assert ak.num(jets.constituents)[[3, 17, 18]].tolist() == [0, 0, 0]
    with pytest.warns(EmptyJetsWarning, match="3 of 40 jets have no constituents"):
        padded = pad_jets(jets.constituents, 16)
    assert not padded.mask[[3, 17, 18]].any()
    assert padded.empty.nonzero()[0].tolist() == [3, 17, 18]


def test_truncated_and_corrupted_files(tmp_path):
    data = make_jetclass(2000, seed=13)
    good = write_ttree(tmp_path / "good.root", data, chunk=500)
    raw = good.read_bytes()
    truncated = tmp_path / "truncated.root"
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptFileError, match="truncated.root"):
        read_jets(truncated)
    corrupted = tmp_path / "corrupted.root"
    blob = bytearray(raw)
    rng = np.random.default_rng(0)
    # scribble over the compressed baskets in the middle of the file, keep header and footer
    lo, hi = len(raw) // 4, len(raw) // 2
    blob[lo:hi] = rng.integers(0, 256, hi - lo, dtype=np.uint8).tobytes()
    corrupted.write_bytes(bytes(blob))
    with pytest.raises(CorruptFileError, match=r"corrupted.root.*truncated or corrupted"):
        read_jets(corrupted)
    not_root = tmp_path / "text.root"
    not_root.write_text("hello")
    with pytest.raises(CorruptFileError, match="not ROOT"):
        read_jets(not_root)
