"""Sample generation with real Pythia 8 + fastjet (tiny samples, a few seconds)."""

import json
import sys

import awkward as ak
import numpy as np
import pytest
import uproot

pytest.importorskip("pythia8mc")
pytest.importorskip("fastjet")

from lloca_hep.errors import OutputError  # noqa: E402
from lloca_hep.generate import generate_sample, recipe  # noqa: E402
from lloca_hep.generate.events import (  # noqa: E402
    SIGNAL,
    ChunkTask,
    find_top_decays,
    make_pythia,
    run_chunk,
)

N_SIGNAL = 20
N_BACKGROUND = 20
SEED = 11
CHUNK = 8  # several chunks per class, so chunk seeding and ordering are exercised
MAX_CONSTITUENTS = 60  # small enough that some jets are truncated
TOP_MASS_GEV = 172.5
W_MASS_GEV = 80.4
MEDIAN_MASS_TOLERANCE_GEV = 3.0
# m(b q q') vs the top's own mass: equal up to the recoil of the W against gluons radiated
# by the b (a few per cent); partons from the wrong top or the wrong decay miss by far more
DECAY_MASS_RTOL = 0.10
# float32 storage of GeV-scale momenta: relative agreement expected to about 1e-6
FLOAT32_RTOL = 1e-5
# constituents may sit slightly beyond R from the final (E-scheme) jet axis
AXIS_DRIFT = 0.05


def _branches(path):
    with uproot.open(path) as f:
        return f["jets"].arrays(library="np"), json.loads(str(f["generation_config"]))


def _assert_same_content(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if a[key].dtype == object:
            assert len(a[key]) == len(b[key])
            assert all(np.array_equal(x, y) for x, y in zip(a[key], b[key], strict=True)), key
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "tiny.root"
    generate_sample(path, N_SIGNAL, N_BACKGROUND, SEED, workers=1,
                    max_constituents=MAX_CONSTITUENTS, progress=False, chunk_size=CHUNK)
    return path


def test_layout_and_counts(sample):
    with uproot.open(sample) as f:
        tree = f["jets"]
        assert tree.num_entries == N_SIGNAL + N_BACKGROUND
        types = {name: str(tree[name].typename) for name in tree.keys()}
    assert types == {
        "npart": "int32_t",
        "part_px": "float[]", "part_py": "float[]", "part_pz": "float[]", "part_energy": "float[]",
        "jet_pt": "float", "jet_eta": "float", "jet_phi": "float", "jet_mass": "float",
        "jet_energy": "float", "is_signal": "int32_t",
    }
    arrays, config = _branches(sample)
    assert int((arrays["is_signal"] == 1).sum()) == N_SIGNAL
    assert int((arrays["is_signal"] == 0).sum()) == N_BACKGROUND
    assert config["seed"] == SEED and config["n_signal"] == N_SIGNAL
    # shuffled: the classes are mixed, not two blocks
    labels = arrays["is_signal"]
    assert np.count_nonzero(np.diff(labels)) > 1


def test_jets_pass_cuts_and_constituents_are_sorted(sample):
    arrays, _ = _branches(sample)
    pt, eta, phi = arrays["jet_pt"], arrays["jet_eta"], arrays["jet_phi"]
    assert np.all((pt > recipe.JET_PT_MIN_GEV) & (pt < recipe.JET_PT_MAX_GEV))
    assert np.all(np.abs(eta) < recipe.JET_ABS_ETA_MAX)
    assert np.all((phi > -np.pi) & (phi <= np.pi))
    npart = arrays["npart"]
    assert np.all((npart >= 1) & (npart <= MAX_CONSTITUENTS))
    assert np.any(npart == MAX_CONSTITUENTS)  # truncation happened somewhere
    for i in range(len(npart)):
        px, py, pz, e = (arrays[f"part_{c}"][i] for c in ("px", "py", "pz", "energy"))
        assert len(px) == npart[i]
        cpt = np.hypot(px, py)
        assert np.all(np.diff(cpt) <= 0), f"jet {i}: constituents not sorted by pT"
        # physical four-momenta (massless photons up to float32 rounding)
        m2 = e.astype(np.float64) ** 2 - px**2 - py**2 - pz**2
        assert np.all(m2 > -FLOAT32_RTOL * e.astype(np.float64) ** 2), f"jet {i}"
        # the constituents lie inside the jet: anti-kT R = 0.8 in (rapidity, phi) around the
        # axis, up to the small axis drift of the last soft merges
        e64, pz64 = e.astype(np.float64), pz.astype(np.float64)
        cy = 0.5 * np.log((e64 + pz64) / (e64 - pz64))
        jet_pz = float(pt[i]) * np.sinh(float(eta[i]))
        jet_e = float(arrays["jet_energy"][i])
        jet_y = 0.5 * np.log((jet_e + jet_pz) / (jet_e - jet_pz))
        dr = recipe.delta_r(jet_y, phi[i], cy, np.arctan2(py, px))
        assert np.all(dr < recipe.JET_RADIUS + AXIS_DRIFT), f"jet {i}: max delta-R {dr.max()}"


def test_jet_kinematics_match_constituents_when_not_truncated(tmp_path):
    path = tmp_path / "full.root"
    generate_sample(path, 4, 4, SEED, max_constituents=1000, progress=False)
    arrays, _ = _branches(path)
    for i in range(len(arrays["npart"])):
        p = np.array([arrays[f"part_{c}"][i].astype(np.float64).sum()
                      for c in ("energy", "px", "py", "pz")])
        pt = np.hypot(p[1], p[2])
        mass = np.sqrt(max(p[0] ** 2 - p[1] ** 2 - p[2] ** 2 - p[3] ** 2, 0.0))
        np.testing.assert_allclose(arrays["jet_energy"][i], p[0], rtol=FLOAT32_RTOL)
        np.testing.assert_allclose(arrays["jet_pt"][i], pt, rtol=FLOAT32_RTOL)
        np.testing.assert_allclose(arrays["jet_eta"][i], np.arcsinh(p[3] / pt), atol=1e-4)
        np.testing.assert_allclose(arrays["jet_mass"][i], mass, rtol=1e-3)


def _invariant_mass(p4):
    e, px, py, pz = np.sum(p4, axis=0)
    return float(np.sqrt(max(e * e - px * px - py * py - pz * pz, 0.0)))


def test_truth_finder_finds_two_hadronic_top_decays():
    pythia = make_pythia(SIGNAL, 4242)
    n_events = 10
    top_masses, w_masses = [], []
    for _ in range(n_events):
        assert pythia.next()
        decays = find_top_decays(pythia.event)
        assert len(decays) == 2  # t and tbar, both hadronic (W forced to quarks)
        for d in decays:
            assert d.p4.shape == (4, 4)
            top_mass = _invariant_mass(d.p4[:1])
            # b + q + q' carry the top's four-momentum (up to shower recoils)
            assert abs(_invariant_mass(d.p4[1:]) - top_mass) < DECAY_MASS_RTOL * top_mass
            top_masses.append(top_mass)
            w_masses.append(_invariant_mass(d.p4[2:]))
    # Breit-Wigner tails aside, the partons are tops and Ws
    assert abs(np.median(top_masses) - TOP_MASS_GEV) < MEDIAN_MASS_TOLERANCE_GEV
    assert abs(np.median(w_masses) - W_MASS_GEV) < MEDIAN_MASS_TOLERANCE_GEV


def test_signal_jets_contain_their_top_decay_products():
    n_jets = 12
    task = ChunkTask(index=0, class_id=SIGNAL, chunk_index=0, n_jets=n_jets,
                     pythia_seed=recipe.pythia_seed(SEED, SIGNAL, 0), max_constituents=200)
    result = run_chunk(task)
    assert result.n_jets == n_jets and result.truth.shape == (n_jets, 4, 4)
    jet_eta, jet_phi = result.jet[:, 1], result.jet[:, 2]
    for i in range(n_jets):
        e, px, py, pz = result.truth[i].T  # (top, b, q, q')
        eta = np.arcsinh(pz / np.hypot(px, py))
        phi = np.arctan2(py, px)
        dr = recipe.delta_r(jet_eta[i], jet_phi[i], eta, phi)
        assert np.all(dr < recipe.TRUTH_MATCH_RADIUS), f"jet {i}: delta-R {dr}"
        top_mass = _invariant_mass(result.truth[i][:1])
        assert abs(_invariant_mass(result.truth[i][1:]) - top_mass) < DECAY_MASS_RTOL * top_mass
    # fewer jets than events: the truth requirement (and the cuts) reject some
    assert result.n_events > 0


def test_background_has_no_truth():
    task = ChunkTask(index=0, class_id=0, chunk_index=0, n_jets=3,
                     pythia_seed=recipe.pythia_seed(SEED, 0, 0), max_constituents=200)
    result = run_chunk(task)
    assert result.truth.shape == (3, 4, 4) and np.all(np.isnan(result.truth))


def test_same_seed_same_content_any_worker_count(sample, tmp_path):
    again = tmp_path / "again.root"
    generate_sample(again, N_SIGNAL, N_BACKGROUND, SEED, workers=2,
                    max_constituents=MAX_CONSTITUENTS, progress=False, chunk_size=CHUNK)
    _assert_same_content(_branches(sample)[0], _branches(again)[0])
    assert _branches(sample)[1] == _branches(again)[1]


def test_different_seed_differs(sample, tmp_path):
    other = tmp_path / "other.root"
    generate_sample(other, N_SIGNAL, N_BACKGROUND, SEED + 1, max_constituents=MAX_CONSTITUENTS,
                    progress=False, chunk_size=CHUNK)
    a, b = _branches(sample)[0], _branches(other)[0]
    assert not np.array_equal(np.sort(a["jet_pt"]), np.sort(b["jet_pt"]))


def test_unshuffled_keeps_blocks(tmp_path):
    path = tmp_path / "blocks.root"
    generate_sample(path, 3, 2, SEED, progress=False, shuffle=False)
    np.testing.assert_array_equal(_branches(path)[0]["is_signal"], [1, 1, 1, 0, 0])


def test_reads_back_through_lloca_hep(sample):
    import lloca_hep

    jets = lloca_hep.read_jets(sample)
    assert len(jets) == N_SIGNAL + N_BACKGROUND
    raw, _ = _branches(sample)
    np.testing.assert_array_equal(ak.num(jets.constituents, axis=1).to_numpy(), raw["npart"])
    for ours, theirs in (("px", "px"), ("py", "py"), ("pz", "pz"), ("E", "energy")):
        np.testing.assert_array_equal(ak.flatten(jets.constituents[ours]).to_numpy(),
                                      np.concatenate(raw[f"part_{theirs}"]).astype(np.float64))
    np.testing.assert_array_equal(ak.to_numpy(jets.is_signal), raw["is_signal"])
    np.testing.assert_array_equal(ak.to_numpy(jets.jet_mass), raw["jet_mass"])


def test_refuses_to_overwrite_and_leaves_no_temp_files(sample, tmp_path):
    existing = tmp_path / "keep.root"
    existing.write_bytes(b"precious")
    with pytest.raises(OutputError, match="keep.root"):
        generate_sample(existing, 2, 2, SEED, progress=False)
    assert existing.read_bytes() == b"precious"
    generate_sample(existing, 2, 2, SEED, progress=False, overwrite=True)
    assert uproot.open(existing)["jets"].num_entries == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.root"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_signal": -1}, ValueError, "n_signal"),
        ({"n_signal": 0, "n_background": 0}, ValueError, "nothing to generate"),
        ({"workers": 0}, ValueError, "workers"),
        ({"max_constituents": 0}, ValueError, "max_constituents"),
        ({"seed": 1.5}, TypeError, "seed"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, error, match):
    args = {"output": tmp_path / "x.root", "n_signal": 1, "n_background": 1, "seed": 1,
            "progress": False}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        generate_sample(**args)
    assert not (tmp_path / "x.root").exists()


def test_missing_output_directory(tmp_path):
    with pytest.raises(OutputError, match="no_such_dir"):
        generate_sample(tmp_path / "no_such_dir" / "x.root", 1, 1, 1, progress=False)


def test_missing_extra_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pythia8mc", None)  # makes `import pythia8mc` fail
    with pytest.raises(ImportError, match=r"lloca-hep\[generate\]"):
        generate_sample(tmp_path / "x.root", 1, 1, 1, progress=False)
