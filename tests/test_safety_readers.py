"""Readers against hostile or careless input (issue 11): real ROOT files written by uproot.

Every bad input must raise a :class:`~lloca_hep.io.LLoCaInputError` subclass (a ``ValueError``,
exit code 2 in the CLI) whose message names the file, tree, branch, entry and the problem.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from lloca_hep.io import (
    CorruptFileError,
    LayoutError,
    LLoCaInputError,
    MissingFileError,
    MissingTreeError,
    iterate_jets,
    read_jets,
)

ACCEPTED = r"\{px, py, pz, E\}.*\{pt, eta, phi, mass\}"


def jetclass_data(n_jets: int = 20, seed: int = 0) -> dict:
    """JetClass-like jets: a ``part`` record (-> ``part_px`` ... in TTrees, ``part.px`` ... in
    RNTuples) and two jet-level scalars."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 12, n_jets)
    n = int(counts.sum())
    px, py, pz = rng.normal(scale=30.0, size=(3, n))
    energy = np.sqrt(px**2 + py**2 + pz**2 + 0.1)
    part = ak.unflatten(
        ak.zip({k: v.astype(np.float32) for k, v in
                (("px", px), ("py", py), ("pz", pz), ("energy", energy))}),
        counts,
    )
    return {
        "part": part,
        "jet_pt": rng.uniform(200, 500, n_jets).astype(np.float32),
        "is_signal": rng.integers(0, 2, n_jets).astype(np.int32),
    }


def branch_types(data: dict) -> dict:
    return {k: (v.type.content if isinstance(v, ak.Array) else np.dtype((v.dtype, v.shape[1:])))
            for k, v in data.items()}


def add_ttree(f, name: str, data: dict) -> None:
    f.mktree(name, branch_types(data))
    if len(next(iter(data.values()))):
        f[name].extend(data)


def add_rntuple(f, name: str, data: dict) -> None:
    f.mkrntuple(name, branch_types(data))
    if len(next(iter(data.values()))):
        f[name].extend(data)


ADD = {"ttree": add_ttree, "rntuple": add_rntuple}


def flat_px(jets: ak.Array) -> np.ndarray:
    return ak.to_numpy(ak.flatten(jets.constituents.px))


# --------------------------------------------------------------------------- 1. tree selection
@pytest.mark.parametrize("kind", ["ttree", "rntuple", "mixed"])
def test_tree_holding_jets_is_chosen_over_preferred_unrelated_tree(tmp_path, kind):
    data = jetclass_data()
    path = tmp_path / "two_trees.root"
    with uproot.recreate(path) as f:
        # "Events" comes first in PREFERRED_TREES and first in the file but holds no jets
        (add_rntuple if kind == "rntuple" else add_ttree)(f, "Events", {"run": np.arange(5, dtype=np.int64)})
        (add_ttree if kind == "ttree" else add_rntuple)(f, "jets", data)
    jets = read_jets(path)
    assert jets.attrs["lloca_source"]["tree"] == "jets"
    assert jets.attrs["lloca_source"]["layout"] == "jetclass"
    assert len(jets) == 20
    np.testing.assert_array_equal(flat_px(jets), ak.to_numpy(ak.flatten(data["part"].px)).astype(np.float64))
    chunks = list(iterate_jets(path, step_size=7))
    assert {c.tree for c in chunks} == {"jets"} and sum(len(c) for c in chunks) == 20
    # tree= is used as given, even when it holds no jets: the error is about that tree
    with pytest.raises(LayoutError, match=r"two_trees.root:Events.*Branches in the tree: run"):
        read_jets(path, tree="Events")


def test_no_tree_holds_jets_error_names_every_tree(tmp_path):
    path = tmp_path / "unrelated.root"
    with uproot.recreate(path) as f:
        add_ttree(f, "Events", {"run": np.arange(3, dtype=np.int64)})
        add_ttree(f, "meta", {"lumi": np.ones(2), "xsec": np.ones(2)})
        add_rntuple(f, "Runs", {"genEventCount": np.arange(2, dtype=np.int64)})
    with pytest.raises(MissingTreeError) as info:
        read_jets(path)
    msg = str(info.value)
    assert "unrelated.root" in msg and "3 trees" in msg
    for tree, branch in (("Events", "run"), ("meta", "lumi, xsec"), ("Runs", "genEventCount")):
        assert f"{tree} (" in msg and branch in msg
    # and what was looked for
    assert "part_px" in msg and "FatJet_pt" in msg and "tree=" in msg
    with pytest.raises(MissingTreeError, match=r"none holds JetClass branches part_px"):
        read_jets(path, layout="jetclass")
    with pytest.raises(MissingTreeError, match=r"none holds the branches c_x, c_y, c_z, c_e"):
        read_jets(path, branches={"px": "c_x", "py": "c_y", "pz": "c_z", "E": "c_e"})
    with pytest.raises(MissingTreeError, match="Events.*meta.*Runs"):
        list(iterate_jets(path))


def test_tree_selection_follows_the_request(tmp_path):
    data = jetclass_data(12, seed=1)
    path = tmp_path / "several.root"
    renamed = {"pfc": ak.zip({"x": data["part"].px, "y": data["part"].py,
                              "z": data["part"].pz, "t": data["part"].energy})}
    with uproot.recreate(path) as f:
        add_ttree(f, "Events", {"run": np.arange(3, dtype=np.int64)})
        add_ttree(f, "zzz", jetclass_data(5, seed=2))
        add_ttree(f, "Jets", data)
        add_ttree(f, "custom", renamed)
    # two trees hold JetClass jets: the preferred name wins
    assert read_jets(path).attrs["lloca_source"]["tree"] == "Jets"
    # a branches= mapping is looked for in every tree
    mapped = read_jets(path, branches={"px": "pfc_x", "py": "pfc_y", "pz": "pfc_z", "E": "pfc_t"})
    assert mapped.attrs["lloca_source"]["tree"] == "custom"
    np.testing.assert_array_equal(flat_px(mapped), flat_px(read_jets(path, tree="Jets")))


# --------------------------------------------------------------------------- 2. branch types
@pytest.mark.parametrize("kind", ["ttree", "rntuple"])
def test_scalar_constituent_branches_are_rejected(tmp_path, kind):
    path = tmp_path / "scalar.root"
    with uproot.recreate(path) as f:
        ADD[kind](f, "jets", {k: np.ones(4, np.float32) for k in
                              ("part_px", "part_py", "part_pz", "part_energy")})
    with pytest.raises(LayoutError) as info:
        read_jets(path)
    msg = str(info.value)
    for piece in ("scalar.root:jets", "'part_px'", "float32", "scalar branch",
                  "expected a jagged array of numbers, one list per jet"):
        assert piece in msg
    if kind == "ttree":
        assert "C++ float" in msg
    with pytest.raises(LayoutError, match="scalar branch"):
        list(iterate_jets(path))


def test_doubly_jagged_constituent_branches_are_rejected(tmp_path):
    # uproot cannot write var * var * float TTree branches; RNTuples hold them
    nested = ak.Array([[[1.0, 2.0], [3.0]], [[4.0]], []])
    path = tmp_path / "nested.root"
    with uproot.recreate(path) as f:
        add_rntuple(f, "jets", {k: nested for k in ("part_px", "part_py", "part_pz", "part_energy")})
    with pytest.raises(LayoutError, match=r"nested.root:jets: branch 'part_px' \(constituent px\) "
                                          r"has type var \* var \* float64: it is doubly jagged.*"
                                          "expected a jagged array of numbers, one list per jet"):
        read_jets(path)
    with pytest.raises(LayoutError, match="'c_py'.*doubly jagged"):
        read_jets(_mapping_file(tmp_path, nested),
                  branches={"px": "c_px", "py": "c_py", "pz": "c_pz", "E": "c_e"})


def _mapping_file(tmp_path: Path, bad: ak.Array) -> Path:
    """A tree with good c_px/c_pz/c_e and a bad ``c_py`` branch."""
    good = ak.Array([[1.0, 2.0], [3.0], []])
    path = tmp_path / "mapping_bad.root"
    with uproot.recreate(path) as f:
        add_rntuple(f, "t", {"c_px": good, "c_py": bad, "c_pz": good, "c_e": good + 10})
    return path


@pytest.mark.parametrize("kind", ["ttree", "rntuple"])
def test_mapping_layout_branch_types_are_checked(tmp_path, kind):
    path = tmp_path / "map.root"
    good = ak.Array([[1.0, 2.0], [3.0], []])
    with uproot.recreate(path) as f:
        ADD[kind](f, "t", {"c_pt": good, "c_eta": good, "c_phi": good,
                           "c_mass": np.zeros(3, np.float64)})
    spec = {"pt": "c_pt", "eta": "c_eta", "phi": "c_phi", "mass": "c_mass"}
    with pytest.raises(LayoutError, match=r"map.root:t: branch 'c_mass' \(constituent mass\) has "
                                          r"type float64.*scalar branch.*one list per jet"):
        read_jets(path, branches=spec)
    with pytest.raises(LayoutError, match="'c_mass'"):
        list(iterate_jets(path, branches=spec))


def test_strings_and_booleans_are_not_momenta(tmp_path):
    good = ak.Array([[1.0, 2.0], [3.0]])
    path = tmp_path / "odd.root"
    with uproot.recreate(path) as f:
        add_ttree(f, "bools", {"part_px": ak.Array([[True, False], [True]]), "part_py": good,
                               "part_pz": good, "part_energy": good + 10})
        f.mktree("strings", {"part_px": "string", "part_py": good.type.content,
                             "part_pz": good.type.content, "part_energy": good.type.content})
        f["strings"].extend({"part_px": np.array(["a", "bc"]), "part_py": good, "part_pz": good,
                             "part_energy": good + 10})
        add_rntuple(f, "lists_of_strings", {"part_px": ak.Array([["a", "b"], ["c"]]),
                                            "part_py": good, "part_pz": good,
                                            "part_energy": good + 10})
    with pytest.raises(LayoutError, match=r"odd.root:bools: branch 'part_px'.*var \* bool.*booleans"):
        read_jets(path, tree="bools")
    with pytest.raises(LayoutError, match=r"odd.root:strings: branch 'part_px'.*string.*one string per entry"):
        read_jets(path, tree="strings")
    with pytest.raises(LayoutError, match=r"odd.root:lists_of_strings: branch 'part_px'.*lists of strings"):
        read_jets(path, tree="lists_of_strings")


def test_fixed_size_arrays_are_not_read_as_constituents(tmp_path):
    # float[8] per jet: the zero padding would become constituents
    path = tmp_path / "padded.root"
    with uproot.recreate(path) as f:
        add_ttree(f, "jets", {k: np.zeros((3, 8), np.float32) for k in
                              ("part_px", "part_py", "part_pz", "part_energy")})
    with pytest.raises(LayoutError, match=r"padded.root:jets: branch 'part_px'.*8 \* float32.*C\+\+ float\[8\].*fixed-size"):
        read_jets(path)


def _write_nano(path: Path, pf_pt=None, pf_idx=None) -> Path:
    jet_pt = ak.Array([[300.0, 250.0], [], [400.0]])
    data = {
        "FatJet_pt": jet_pt, "FatJet_eta": jet_pt * 0, "FatJet_phi": jet_pt * 0,
        "FatJet_mass": jet_pt * 0 + 80,
        "PFCands_pt": ak.Array([[1.0, 2.0, 3.0], [1.0], [2.0]]) if pf_pt is None else pf_pt,
        "PFCands_eta": ak.Array([[0.0, 0.0, 0.0], [0.0], [0.0]]),
        "PFCands_phi": ak.Array([[0.0, 0.0, 0.0], [0.0], [0.0]]),
        "PFCands_mass": ak.Array([[0.0, 0.0, 0.0], [0.0], [0.0]]),
        "FatJetPFCands_jetIdx": ak.values_astype(ak.Array([[0, 1, 1], [], [0]]), np.int32),
        "FatJetPFCands_pFCandsIdx": (
            ak.values_astype(ak.Array([[0, 1, 2], [], [0]]), np.int32) if pf_idx is None else pf_idx
        ),
    }
    with uproot.recreate(path) as f:
        add_rntuple(f, "Events", data)
    return path


def test_nanoaod_branch_types_are_checked(tmp_path):
    ok = read_jets(_write_nano(tmp_path / "nano.root"))
    assert ak.num(ok.constituents).tolist() == [1, 2, 1]
    scalar_pf = _write_nano(tmp_path / "nano_scalar.root", pf_pt=np.ones(3))
    with pytest.raises(LayoutError, match=r"nano_scalar.root:Events: branch 'PFCands_pt' \(PFCands pt\)"
                                          r".*scalar branch.*one list per event"):
        read_jets(scalar_pf)
    float_idx = _write_nano(tmp_path / "nano_float_idx.root",
                            pf_idx=ak.Array([[0.0, 1.0, 2.5], [], [0.0]]))
    with pytest.raises(LayoutError, match=r"'FatJetPFCands_pFCandsIdx' \(PF-candidate index\).*"
                                          r"float64 values, not integers.*jagged array of integers"):
        read_jets(float_idx)


def test_constituent_counts_that_disagree(tmp_path):
    px = ak.Array([[1.0], [1.0, 2.0, 3.0], [1.0, 2.0]])
    py = ak.Array([[1.0], [1.0, 2.0, 3.0, 4.0], [1.0, 2.0]])
    path = tmp_path / "counts.root"
    with uproot.recreate(path) as f:  # separate counters npart_px, npart_py, ...
        add_ttree(f, "jets", {"part_px": px, "part_py": py, "part_pz": px, "part_energy": px + 10})
    with pytest.raises(LayoutError, match=r"counts.root:jets: entry 1 \(jet 1 of the chunk\): "
                                          r"constituent branch 'part_py' has 4 values but 'part_px' "
                                          r"has 3.*1 of 3 jets"):
        read_jets(path)
    # entries are numbered in the file, not in the chunk
    with pytest.raises(LayoutError, match=r"entry 1 \(jet 0 of the chunk\)"):
        list(iterate_jets(path, step_size=1, entry_start=1))
    assert len(read_jets(path, entry_start=2)) == 1  # the good jet alone reads


# --------------------------------------------------------------------------- 3. branches=
BAD_BRANCHES = [
    ({"px": 1, "py": "a", "pz": "b", "E": "c"}, r"branches\['px'\] = 1 \(int\) is not a branch name"),
    ({"px": None, "py": "a", "pz": "b", "E": "c"}, r"branches\['px'\] = None \(NoneType\)"),
    ({"px": "", "py": "a", "pz": "b", "E": "c"}, r"branches\['px'\] = ''"),
    (["part_px", "part_py", "part_pz", "part_energy"], r"must be a dict.*got list \['part_px'"),
    ("part_px", r"must be a dict.*got str 'part_px'"),
    ({"px": "a", "py": "b", "pz": "c", "E": "d", "charge": "q"}, r"unknown key 'charge' \(mapped to 'q'\)"),
    ({1: "a"}, r"unknown key 1 \(mapped to 'a'\)"),
    ({"px": "a", "py": "b", "pz": "c"}, r"must map px, py, pz, E.*missing E"),
    ({"pt": "a", "eta": "b", "phi": "c"}, r"must map px, py, pz, E \(or pt, eta, phi, mass\).*missing mass"),
    ({"px": "a", "py": "b", "pz": "c", "E": "d", "pt": "e"}, r"mixes Cartesian keys \(px, py, pz, E\) and polar keys \(pt\)"),
    ({"px": "a", "py": "b", "pz": "c", "E": "d", "energy": "e"}, r"gives E twice: 'E' -> 'd' and 'energy' -> 'e'"),
]


@pytest.mark.parametrize("branches, message", BAD_BRANCHES)
def test_bad_branches_mappings(tmp_path, branches, message):
    path = tmp_path / "jets.root"
    with uproot.recreate(path) as f:
        add_ttree(f, "jets", jetclass_data(5))
    for call in (lambda: read_jets(path, branches=branches),
                 lambda: iterate_jets(path, branches=branches),  # raises at the call
                 lambda: iterate_jets(tmp_path / "missing*.root", branches=branches)):
        with pytest.raises(LayoutError, match=message) as info:
            call()
        assert isinstance(info.value, ValueError) and isinstance(info.value, LLoCaInputError)
        if "twice" not in message and "mixes" not in message:
            assert re.search(ACCEPTED, str(info.value)) or "must map" in str(info.value)


def test_branches_with_nanoaod_layout_is_refused(tmp_path):
    with pytest.raises(LayoutError, match="layout='nanoaod' reads the constituents from the PF-candidate"):
        read_jets(tmp_path / "whatever.root", layout="nanoaod",
                  branches={"px": "a", "py": "b", "pz": "c", "E": "d"})


# --------------------------------------------------------------------------- 4. empty trees, paths
@pytest.mark.parametrize("kind", ["ttree", "rntuple"])
def test_trees_without_entries_yield_nothing(tmp_path, kind):
    empty = {k: v[:0] for k, v in jetclass_data(3).items()}
    path = tmp_path / "empty.root"
    with uproot.recreate(path) as f:
        ADD[kind](f, "jets", empty)
    assert uproot.open(path)["jets"].num_entries == 0
    for spelled in (path, f"{path}:jets", str(tmp_path / "emp*.root"), str(tmp_path / "emp*.root:jets")):
        for step in (100, "10 MB"):
            assert list(iterate_jets(spelled, step_size=step)) == []
    jets = read_jets(f"{path}:jets")
    assert len(jets) == 0 and ak.fields(jets) == ["constituents", "jet_pt", "is_signal"]


def test_path_with_missing_tree_lists_trees(tmp_path):
    path = tmp_path / "jets.root"
    with uproot.recreate(path) as f:
        add_ttree(f, "jets", jetclass_data(5))
        add_ttree(f, "Events", {"run": np.arange(3, dtype=np.int64)})
    for call in (lambda: read_jets(f"{path}:nope"), lambda: list(iterate_jets(f"{path}:nope"))):
        with pytest.raises(MissingTreeError, match=r"jets.root has no TTree/RNTuple named 'nope'; "
                                                   r"trees in the file: Events, jets"):
            call()
    with pytest.raises(MissingTreeError, match=r"names tree 'jets' but tree='Events'"):
        read_jets(f"{path}:jets", tree="Events")
    # a glob with a tree suffix is expanded on the file part
    chunks = list(iterate_jets(str(tmp_path / "j*.root:jets"), step_size=100))
    assert [c.tree for c in chunks] == ["jets"]


# --------------------------------------------------------------------------- 5. other careless input
def test_paths_that_are_not_root_files(tmp_path):
    folder = tmp_path / "looks_like.root"
    folder.mkdir()
    with pytest.raises(MissingFileError, match="directory, not a ROOT file: .*looks_like.root"):
        read_jets(folder)
    with pytest.raises(MissingFileError, match="directory"):
        list(iterate_jets(str(tmp_path / "looks*.root")))
    zero = tmp_path / "zero.root"
    zero.write_bytes(b"")
    with pytest.raises(CorruptFileError, match="zero.root.*not ROOT"):
        read_jets(zero)
    csv = tmp_path / "jets.csv"
    csv.write_text("px,py,pz,E\n1,2,3,4\n")
    with pytest.raises(CorruptFileError, match="jets.csv"):
        list(iterate_jets(csv))


def test_entry_range_step_size_and_option_types(tmp_path):
    path = tmp_path / "jets.root"
    with uproot.recreate(path) as f:
        add_ttree(f, "jets", jetclass_data(20))
    # negative entries count from the end (Python slicing); the resolved range is recorded
    tail = read_jets(path, entry_start=-5)
    assert len(tail) == 5 and tail.attrs["lloca_source"]["entry_start"] == 15
    chunks = list(iterate_jets(path, step_size=3, entry_start=-5, entry_stop=-1))
    assert [(c.entry_start, c.entry_stop) for c in chunks] == [(15, 18), (18, 19)]
    assert len(read_jets(path, entry_start=np.int64(18))) == 2
    for bad in (1.5, "3", True):
        with pytest.raises(LLoCaInputError, match=r"entry_start must be an integer"):
            read_jets(path, entry_start=bad)
        with pytest.raises(LLoCaInputError, match=r"entry_stop must be an integer"):
            iterate_jets(path, entry_stop=bad)
    for bad in (0, -3, True, 2.5, "lots", "0 MB", "-5 MB", None):
        with pytest.raises(LLoCaInputError, match=r"step_size"):
            iterate_jets(path, step_size=bad)
    with pytest.raises(LLoCaInputError, match="on_invalid must be 'raise' or 'drop', got None"):
        read_jets(path, on_invalid=None)
    with pytest.raises(LLoCaInputError, match="tree must be a non-empty string or None; got int 5"):
        read_jets(path, tree=5)
    with pytest.raises(LLoCaInputError, match="collection must be a non-empty string; got NoneType"):
        read_jets(path, collection=None)
    with pytest.raises(LayoutError, match="unknown layout None"):
        read_jets(path, layout=None)
    # jet_fields: one name as a string is one name, not its letters
    assert ak.fields(read_jets(path, jet_fields="jet_pt")) == ["constituents", "jet_pt"]
    with pytest.raises(LayoutError, match=r"jet_fields must hold branch names.*got 1 \(int\)"):
        read_jets(path, jet_fields=["jet_pt", 1])
    with pytest.raises(LayoutError, match="jet_fields must be None, 'all' or a list"):
        read_jets(path, jet_fields=5)
    assert ak.fields(read_jets(path, jet_fields=np.array(["is_signal"]))) == ["constituents", "is_signal"]
    # no path at all
    with pytest.raises(MissingFileError, match="input path must be a file name.*got NoneType None"):
        read_jets(None)
    with pytest.raises(MissingFileError, match="got int 3"):
        iterate_jets([path, 3])
    assert os.path.exists(path)

