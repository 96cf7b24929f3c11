"""Ten-class (JetClass-like) generation: pure helpers without Pythia, then small real samples
generated once per module (about a minute on a shared 2-core machine)."""

import argparse
import json
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import awkward as ak
import numpy as np
import pytest
import uproot

import lloca_hep
from lloca_hep.generate import classes, tracks
from lloca_hep.generate.classes import CLASS_NAMES, RECIPES, parse_classes
from lloca_hep.generate.truth import (
    DecaySignature,
    find_resonance_decays,
    hard_resonances,
    match_decay,
    signature_of,
)

W_MASS_GEV, Z_MASS_GEV, H_MASS_GEV, TOP_MASS_GEV = 80.4, 91.2, 125.0, 172.5
MASS_TOLERANCE_GEV = 25.0
# a track is "displaced" beyond this |d0| (mm): several sigma of the resolution above ~2 GeV
DISPLACED_D0_MM = 0.1


# --------------------------------------------------------------------------- pure helpers


def test_impact_parameters_of_straight_lines():
    # vertex on the x axis, momentum along y: the line passes the beam line at 1 mm
    d0, dz = tracks.impact_parameters([1.0], [0.0], [0.0], [0.0], [5.0], [0.0])
    assert d0[0] == pytest.approx(1.0) and dz[0] == pytest.approx(0.0)
    # pointing back through the beam line: r(t) = (1 + t, 0, 5 + t) is closest at (0, 0, 4)
    d0, dz = tracks.impact_parameters([1.0], [0.0], [5.0], [1.0], [0.0], [1.0])
    assert d0[0] == pytest.approx(0.0) and dz[0] == pytest.approx(4.0)
    # from the origin: no displacement; sign flips with the direction of travel
    d0, dz = tracks.impact_parameters([0.0, 1.0], [0.0, 0.0], [0.0, 0.0],
                                      [3.0, 0.0], [4.0, -5.0], [2.0, 0.0])
    np.testing.assert_allclose(d0, [0.0, -1.0], atol=1e-15)
    np.testing.assert_allclose(dz, [0.0, 0.0], atol=1e-15)
    # |d0| and dz do not change when vertex and momentum rotate together about the beam
    rng = np.random.default_rng(0)
    v, p = rng.normal(size=(50, 3)), rng.normal(size=(50, 3)) * 10
    a = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    vr, pr = v @ rot.T, p @ rot.T
    d0a, dza = tracks.impact_parameters(*v.T, *p.T)
    d0b, dzb = tracks.impact_parameters(*vr.T, *pr.T)
    np.testing.assert_allclose(d0a, d0b, atol=1e-12)
    np.testing.assert_allclose(dza, dzb, atol=1e-12)


def test_resolution_model():
    s_d0, s_dz = tracks.resolution([1.0, 1e6])
    assert s_d0[0] == pytest.approx(np.hypot(tracks.D0_SIGMA_CONST_MM, tracks.D0_SIGMA_MS_MM_GEV))
    assert s_dz[0] == pytest.approx(np.hypot(tracks.DZ_SIGMA_CONST_MM, tracks.DZ_SIGMA_MS_MM_GEV))
    assert s_d0[1] == pytest.approx(tracks.D0_SIGMA_CONST_MM, rel=1e-6)
    assert s_dz[1] == pytest.approx(tracks.DZ_SIGMA_CONST_MM, rel=1e-6)
    assert np.all(np.diff(tracks.resolution(np.linspace(0.5, 100, 20))[0]) < 0)


def test_smearing_is_charged_only_gaussian_and_seeded():
    n = 20_000
    charge = np.where(np.arange(n) % 4 == 0, 0.0, np.where(np.arange(n) % 2, 1.0, -1.0))
    vertex = np.zeros((n, 3))
    momentum = np.tile([10.0, 0.0, 5.0], (n, 1))
    out = tracks.smeared_impact_parameters(vertex, momentum, charge, np.random.default_rng(1))
    neutral, charged = charge == 0, charge != 0
    for key in ("d0val", "d0err", "dzval", "dzerr"):
        assert np.all(out[key][neutral] == 0.0), key
    s_d0, s_dz = tracks.resolution([10.0])
    np.testing.assert_allclose(out["d0err"][charged], s_d0[0])
    np.testing.assert_allclose(out["dzerr"][charged], s_dz[0])
    pull = out["d0val"][charged] / out["d0err"][charged]
    assert abs(pull.mean()) < 0.05 and abs(pull.std() - 1.0) < 0.05
    again = tracks.smeared_impact_parameters(vertex, momentum, charge, np.random.default_rng(1))
    for key in out:
        np.testing.assert_array_equal(out[key], again[key])


def test_pid_flags_one_per_particle():
    ids = np.array([211, -211, 321, 2212, 22, 11, -11, 13, -13, 130, 2112, 310, 3122, -3112])
    charge = np.array([1, -1, 1, 1, 0, -1, 1, -1, 1, 0, 0, 0, 0, 1], dtype=float)
    flags = tracks.pid_flags(ids, charge)
    assert list(flags) == ["isChargedHadron", "isNeutralHadron", "isPhoton", "isElectron", "isMuon"]
    stacked = np.stack(list(flags.values()), axis=1)
    np.testing.assert_array_equal(stacked.sum(axis=1), 1.0)
    expected = ["isChargedHadron"] * 4 + ["isPhoton"] + ["isElectron"] * 2 + ["isMuon"] * 2 \
        + ["isNeutralHadron"] * 4 + ["isChargedHadron"]
    assert [list(flags)[k] for k in stacked.argmax(axis=1)] == expected


def test_relative_angles_wrap():
    phi = -np.pi + 0.05
    deta, dphi = tracks.relative_angles([np.cos(phi)], [np.sin(phi)], [np.sinh(0.3)],
                                        0.5, np.pi - 0.05)
    assert deta[0] == pytest.approx(-0.2)
    assert dphi[0] == pytest.approx(0.1)


def test_parse_classes():
    assert parse_classes("QCD,Hbb, Tbl") == ("QCD", "Hbb", "Tbl")
    assert parse_classes(["Tbl", "QCD"]) == ("Tbl", "QCD")
    assert parse_classes(",".join(CLASS_NAMES)) == CLASS_NAMES
    with pytest.raises(ValueError, match="unknown class 'hbb'.*QCD,Hbb"):
        parse_classes("QCD,hbb")
    with pytest.raises(ValueError, match="repeated: QCD"):
        parse_classes("QCD,Hbb,QCD")
    with pytest.raises(ValueError, match="no classes"):
        parse_classes(" , ")


def test_class_recipes_as_specified():
    assert tuple(RECIPES) == CLASS_NAMES
    assert [RECIPES[n].label for n in CLASS_NAMES] == [
        "label_QCD", "label_Hbb", "label_Hcc", "label_Hgg", "label_H4q", "label_Hqql",
        "label_Zqq", "label_Wqq", "label_Tbqq", "label_Tbl"]
    keys = {classes.class_spawn_key(n) for n in CLASS_NAMES}
    assert len(keys) == 10 and not keys & {0, 1, 2, classes.SHUFFLE_SPAWN_KEY}
    for name in CLASS_NAMES:
        s = " | ".join(RECIPES[name].settings)
        assert "Beams:eCM = 14000" in s and "PartonLevel:MPI = off" in s
        assert "ParticleDecays:limitTau0 = on" in s and "ParticleDecays:tau0Max = 10.0" in s
        assert "PhaseSpace:pTHatMin" in s and "PhaseSpace:pTHatMax" in s
    assert "25:onIfMatch = 5 -5" in RECIPES["Hbb"].settings
    assert "24:onIfAny = 1 2 3 4 5" in RECIPES["H4q"].settings
    assert "24:onIfAny = 1 2 3 4 5 11 13" in RECIPES["Hqql"].settings and RECIPES["Hqql"].decay_veto
    assert "24:onIfAny = 11 13" in RECIPES["Tbl"].settings
    assert "WeakZ0:gmZmode = 2" in RECIPES["Zqq"].settings
    assert RECIPES["QCD"].signature is None and RECIPES["QCD"].settings[-1] == "HardQCD:all = on"
    assert classes.passes_class_cuts(500.1, 1.99) and not classes.passes_class_cuts(1000.0, 0.0)
    assert not classes.passes_class_cuts(600.0, -2.0)


class _Event:
    """A stand-in for Pythia's event record: entries (id, status, daughters, (E, px, py, pz))."""

    def __init__(self, entries):
        self.parts = []
        for i, (pid, status, daughters, (e, px, py, pz)) in enumerate(entries):
            pt = np.hypot(px, py)
            self.parts.append(SimpleNamespace(
                id=lambda pid=pid: pid, idAbs=lambda pid=pid: abs(pid),
                status=lambda s=status: s, iBotCopyId=lambda i=i: i,
                daughterList=lambda d=daughters: list(d),
                e=lambda v=e: v, px=lambda v=px: v, py=lambda v=py: v, pz=lambda v=pz: v,
                eta=lambda pz=pz, pt=pt: float(np.arcsinh(pz / pt)) if pt else 0.0,
                phi=lambda px=px, py=py: float(np.arctan2(py, px)),
            ))

    def size(self):
        return len(self.parts)

    def __getitem__(self, i):
        return self.parts[i]


Z4 = (0.0, 0.0, 0.0, 0.0)


def _higgs_event(w_plus, w_minus):
    """p p -> H g with H -> W+ W-; each W's daughters given as PDG ids (4-momenta along +x)."""
    entries = [(90, -11, (), Z4), (2212, -12, (), Z4), (2212, -12, (), Z4),
               (21, -21, (), Z4), (21, -21, (), Z4),
               (25, -22, (7, 8), (600, 500, 0, 0)), (21, 23, (), (500, -500, 0, 0)),
               (24, -22, (9, 10), (300, 250, 10, 0)), (-24, -22, (11, 12), (300, 250, -10, 0))]
    for pid in (*w_plus, *w_minus):
        entries.append((pid, 23, (), (150, 125, 5 if pid > 0 else -5, 1)))
    entries.append((21, -41, (), Z4))  # the shower starts: the scan stops here
    entries.append((25, -22, (), Z4))  # never looked at
    return _Event(entries)


def test_truth_follows_the_decay_chain_and_drops_neutrinos():
    event = _higgs_event((-13, 14), (3, -4))
    assert hard_resonances(event, 25) == [5]
    (decay,) = find_resonance_decays(event, 25)
    assert decay.resonance_id == 25 and decay.n_invisible == 1
    assert sorted(decay.ids.tolist()) == [-13, -4, 3]
    assert decay.p4.shape == (3, 4) and decay.eta.shape == (3,)
    assert decay.signature == DecaySignature(n_quarks=2, n_leptons=1)
    assert match_decay(0.0, 0.0, [decay], DecaySignature(n_quarks=2, n_leptons=1)) is decay
    assert match_decay(0.0, 0.0, [decay], DecaySignature(n_quarks=4)) is None
    assert match_decay(0.0, 2.0, [decay], DecaySignature(n_quarks=2, n_leptons=1)) is None
    assert signature_of([5, -5]) == DecaySignature(n_quarks=2)
    assert signature_of([21, 21]) == DecaySignature(n_gluons=2)
    assert signature_of([15, 5]) == DecaySignature(n_quarks=1, n_other=1)  # a tau is "other"


def test_hqql_lepton_selection():
    from lloca_hep.generate.jetclass_events import has_wanted_decay

    hqql, h4q = RECIPES["Hqql"], RECIPES["H4q"]
    one_lepton = _higgs_event((-11, 12), (1, -2))
    both_hadronic = _higgs_event((2, -1), (3, -4))
    both_leptonic = _higgs_event((-11, 12), (13, -14))
    assert has_wanted_decay(one_lepton, hqql)
    assert not has_wanted_decay(both_hadronic, hqql)
    assert not has_wanted_decay(both_leptonic, hqql)
    assert has_wanted_decay(both_hadronic, h4q) and not has_wanted_decay(one_lepton, h4q)
    assert has_wanted_decay(both_hadronic, RECIPES["QCD"])


SHIPPED = Path(lloca_hep.__file__).parent / "data" / "jetclass_sample.root"
MAX_SHIPPED_BYTES = 10_000_000


@pytest.mark.skipif(not SHIPPED.exists(), reason="jetclass_sample.root not generated yet")
def test_shipped_sample_matches_its_readme():
    assert SHIPPED.stat().st_size < MAX_SHIPPED_BYTES
    with uproot.open(SHIPPED) as f:
        config = json.loads(str(f["generation_config"]))
        tree = f["tree"]
        labels = {k: int(tree[k].array(library="np").sum()) for k in tree.keys()
                  if k.startswith("label_")}
        npart = tree["npart"].array(library="np")
    assert labels == {f"label_{n}": config["per_class"] for n in config["classes"]}
    assert npart.max() <= config["max_constituents"]
    readme = (SHIPPED.parent / "README.md").read_text()
    command = re.search(r"lloca_hep.generate --classes [^\n`]*jetclass_sample.root", readme).group(0)
    assert f"--classes {','.join(config['classes'])} " in command
    assert f"--per-class {config['per_class']} " in command
    assert f"--seed {config['seed']} " in command
    assert f"--max-constituents {config['max_constituents']} " in command


# --------------------------------------------------------------------------- real samples

pytest.importorskip("pythia8mc")
pytest.importorskip("fastjet")

from lloca_hep.generate import generate_classes  # noqa: E402

PER_CLASS = 40
SEED = 21
MAX_CONSTITUENTS = 64
SMALL_CLASSES = "Tbl,QCD,Hqql"
SMALL_PER_CLASS = 8
SMALL_CHUNK = 3  # several chunks per class


def _arrays(path):
    with uproot.open(path) as f:
        tree = f["tree"]
        return tree.arrays(library="np"), json.loads(str(f["generation_config"]))


def _assert_same(a, b):
    assert list(a) == list(b)
    for key in a:
        if a[key].dtype == object:
            assert all(np.array_equal(x, y) for x, y in zip(a[key], b[key], strict=True)), key
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    path = tmp_path_factory.mktemp("ten") / "ten.root"
    generate_classes(path, ",".join(CLASS_NAMES), PER_CLASS, SEED,
                     max_constituents=MAX_CONSTITUENTS, progress=False)
    return path


@pytest.fixture(scope="module")
def arrays(sample):
    return _arrays(sample)[0]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = tmp_path_factory.mktemp("small") / "small.root"
    generate_classes(path, SMALL_CLASSES, SMALL_PER_CLASS, SEED, progress=False,
                     chunk_size=SMALL_CHUNK, shuffle=False)
    return path


def _class(arrays, name):
    return arrays[f"label_{name}"]


def test_layout(sample):
    with uproot.open(sample) as f:
        tree = f["tree"]
        types = {name: str(tree[name].typename) for name in tree.keys()}
    expected = {"npart": "int32_t"}
    expected.update({f"part_{k}": "float[]" for k in (
        "px", "py", "pz", "energy", "deta", "dphi", "charge", "isChargedHadron",
        "isNeutralHadron", "isPhoton", "isElectron", "isMuon", "d0val", "d0err", "dzval",
        "dzerr")})
    expected.update({k: "float" for k in ("jet_pt", "jet_eta", "jet_phi", "jet_energy",
                                          "jet_mass", "jet_nparticles")})
    expected.update({f"label_{n}": "bool" for n in CLASS_NAMES})
    assert types == expected
    assert [k for k in types if k.startswith("label_")] == [f"label_{n}" for n in CLASS_NAMES]


def test_class_balance_one_hot_labels_and_shuffle(arrays):
    labels = np.stack([_class(arrays, n) for n in CLASS_NAMES], axis=1)
    np.testing.assert_array_equal(labels.sum(axis=1), 1)
    np.testing.assert_array_equal(labels.sum(axis=0), PER_CLASS)
    assert np.count_nonzero(np.diff(labels.argmax(axis=1))) > len(CLASS_NAMES)  # mixed


def test_jets_in_window_and_constituents(arrays):
    pt, eta = arrays["jet_pt"], arrays["jet_eta"]
    assert np.all((pt > classes.JET_PT_MIN_GEV) & (pt < classes.JET_PT_MAX_GEV))
    assert np.all(np.abs(eta) < classes.JET_ABS_ETA_MAX)
    npart = arrays["npart"]
    assert np.all((npart >= 1) & (npart <= MAX_CONSTITUENTS))
    assert np.all(arrays["jet_nparticles"] >= npart)
    assert np.any(arrays["jet_nparticles"] > MAX_CONSTITUENTS)  # truncation happened
    for i in range(len(npart)):
        px, py = arrays["part_px"][i], arrays["part_py"][i]
        assert len(px) == npart[i]
        assert np.all(np.diff(np.hypot(px, py)) <= 0), f"jet {i} not sorted by pT"
        # clustering is in rapidity, deta in pseudorapidity (slow massive hadrons differ):
        # check the azimuth, the same in both, within R plus the axis drift of soft merges
        dphi = arrays["part_dphi"][i]
        assert np.all(np.abs(dphi) < 0.85), f"jet {i}: |dphi| up to {np.abs(dphi).max()}"
        # relative to the axis: the pT-weighted distance is small
        dr = np.hypot(arrays["part_deta"][i], dphi)
        assert np.average(dr, weights=np.hypot(px, py)) < 0.5


def test_mass_peaks(arrays):
    mass = arrays["jet_mass"]
    for name, peak in (("Wqq", W_MASS_GEV), ("Zqq", Z_MASS_GEV), ("Hbb", H_MASS_GEV),
                       ("Hcc", H_MASS_GEV), ("Tbqq", TOP_MASS_GEV)):
        median = float(np.median(mass[_class(arrays, name)]))
        assert abs(median - peak) < MASS_TOLERANCE_GEV, f"{name}: median mass {median}"
    qcd = mass[_class(arrays, "QCD")]
    wqq = mass[_class(arrays, "Wqq")]
    iqr = lambda m: float(np.subtract(*np.percentile(m, [75, 25])))  # noqa: E731
    assert iqr(qcd) > 2 * iqr(wqq), (iqr(qcd), iqr(wqq))  # QCD is broad
    # the neutrino leaves the leptonic jets lighter than their resonances
    assert np.median(mass[_class(arrays, "Tbl")]) < TOP_MASS_GEV - MASS_TOLERANCE_GEV


def test_particle_id_and_leptons(arrays):
    flags = np.stack([np.concatenate(arrays[f"part_{f}"]) for f in (
        "isChargedHadron", "isNeutralHadron", "isPhoton", "isElectron", "isMuon")], axis=1)
    np.testing.assert_array_equal(flags.sum(axis=1), 1.0)
    charge = np.concatenate(arrays["part_charge"])
    charged_flag = flags[:, 0] + flags[:, 3] + flags[:, 4]
    np.testing.assert_array_equal(charge != 0, charged_flag == 1)
    # Hqql and Tbl jets contain their charged lepton (a hard electron or muon)
    for name in ("Hqql", "Tbl"):
        jets = np.flatnonzero(_class(arrays, name))
        with_lepton = [
            np.any(((arrays["part_isElectron"][i] + arrays["part_isMuon"][i]) > 0)
                   & (np.hypot(arrays["part_px"][i], arrays["part_py"][i]) > 10.0))
            for i in jets]
        assert np.mean(with_lepton) > 0.9, name


def test_displacement_charged_only_and_wider_for_b(arrays):
    charge = np.concatenate(arrays["part_charge"])
    d0, dz = np.concatenate(arrays["part_d0val"]), np.concatenate(arrays["part_dzval"])
    d0err, dzerr = np.concatenate(arrays["part_d0err"]), np.concatenate(arrays["part_dzerr"])
    neutral = charge == 0
    for values in (d0, dz, d0err, dzerr):
        assert np.all(values[neutral] == 0.0)
    assert np.all(d0err[~neutral] > 0) and np.all(dzerr[~neutral] > 0)

    def displaced_fraction(name):
        sel = _class(arrays, name)
        q = np.concatenate(arrays["part_charge"][sel]) != 0
        return float(np.mean(np.abs(np.concatenate(arrays["part_d0val"][sel])[q])
                             > DISPLACED_D0_MM))

    hbb, wqq, qcd = (displaced_fraction(n) for n in ("Hbb", "Wqq", "QCD"))
    assert hbb > 1.3 * wqq and hbb > 1.3 * qcd, (hbb, wqq, qcd)


def test_provenance(sample):
    _, config = _arrays(sample)
    assert config["classes"] == list(CLASS_NAMES) and config["per_class"] == PER_CLASS
    assert config["seed"] == SEED and config["decay_veto"] == ["Hqql"]
    assert config["jet_pt_gev"] == [500.0, 1000.0]


def test_reads_back_through_lloca_hep(sample, arrays):
    jets = lloca_hep.read_jets(sample)
    assert len(jets) == len(CLASS_NAMES) * PER_CLASS
    np.testing.assert_array_equal(ak.num(jets.constituents, axis=1).to_numpy(), arrays["npart"])
    for ours, theirs in (("px", "px"), ("py", "py"), ("pz", "pz"), ("E", "energy")):
        np.testing.assert_array_equal(ak.flatten(jets.constituents[ours]).to_numpy(),
                                      np.concatenate(arrays[f"part_{theirs}"]).astype(np.float64))
    np.testing.assert_array_equal(ak.to_numpy(jets.label_Hbb), arrays["label_Hbb"])
    full = lloca_hep.read_jets(sample, features="full")
    for name in ("part_charge", "part_isMuon", "part_d0val", "part_d0err", "part_dzval",
                 "part_dzerr"):
        np.testing.assert_array_equal(ak.flatten(full.constituents[name]).to_numpy(),
                                      np.concatenate(arrays[name]), err_msg=name)


def test_deterministic_any_worker_count_and_class_order(small, tmp_path):
    first, config = _arrays(small)
    labels = [k for k in first if k.startswith("label_")]
    assert labels == [f"label_{n}" for n in SMALL_CLASSES.split(",")]
    # unshuffled: class blocks in the order given
    block = np.stack([first[k] for k in labels], axis=1).argmax(axis=1)
    np.testing.assert_array_equal(block, np.repeat(np.arange(3), SMALL_PER_CLASS))
    again = tmp_path / "again.root"
    generate_classes(again, SMALL_CLASSES, SMALL_PER_CLASS, SEED, workers=2, progress=False,
                     chunk_size=SMALL_CHUNK, shuffle=False)
    second, config2 = _arrays(again)
    _assert_same(first, second)
    assert config == config2
    # a class's jets do not depend on the other classes requested
    alone = tmp_path / "alone.root"
    generate_classes(alone, "Hqql", SMALL_PER_CLASS, SEED, progress=False,
                     chunk_size=SMALL_CHUNK, shuffle=False)
    third, _ = _arrays(alone)
    sel = first["label_Hqql"]
    np.testing.assert_array_equal(third["jet_pt"], first["jet_pt"][sel])
    for a, b in zip(third["part_d0val"], first["part_d0val"][sel], strict=True):
        np.testing.assert_array_equal(a, b)
    # another seed differs
    other = tmp_path / "other.root"
    generate_classes(other, "Hqql", SMALL_PER_CLASS, SEED + 1, progress=False,
                     chunk_size=SMALL_CHUNK, shuffle=False)
    assert not np.array_equal(_arrays(other)[0]["jet_pt"], third["jet_pt"])


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"class_names": "QCD,Xbb"}, ValueError, "unknown class 'Xbb'"),
    ({"per_class": 0}, ValueError, "nothing to generate"),
    ({"per_class": -1}, ValueError, "per_class"),
    ({"workers": 0}, ValueError, "workers"),
    ({"seed": 1.5}, TypeError, "seed"),
])
def test_bad_arguments(tmp_path, kwargs, error, match):
    args = {"output": tmp_path / "x.root", "class_names": "QCD", "per_class": 1, "seed": 1,
            "progress": False}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        generate_classes(**args)
    assert not (tmp_path / "x.root").exists()


# --------------------------------------------------------------------------- command line


def _cli(argv):
    from lloca_hep.cli.generate import register

    parser = argparse.ArgumentParser(prog="lloca-hep")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["generate", *argv])
    return args.func(args)


def test_cli_writes_jetclass_layout(tmp_path, capsys):
    out = tmp_path / "c.root"
    assert _cli(["--classes", "Wqq,QCD", "--per-class", "2", "--seed", "3", "-o", str(out),
                 "--max-constituents", "20", "--no-progress"]) == 0
    assert str(out) in capsys.readouterr().out
    with uproot.open(out) as f:
        tree = f["tree"]
        assert tree.num_entries == 4
        assert [k for k in tree.keys() if k.startswith("label_")] == ["label_Wqq", "label_QCD"]
        assert tree["npart"].array(library="np").max() <= 20


def test_cli_unknown_class_is_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _cli(["--classes", "QCD,Hxx", "--per-class", "1", "--seed", "1",
              "-o", str(tmp_path / "x.root")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown class 'Hxx'" in err and "QCD,Hbb,Hcc" in err


@pytest.mark.parametrize("argv", [
    ["--classes", "QCD"],  # no --per-class
    ["--classes", "QCD", "--per-class", "1", "--signal", "1"],
    ["--per-class", "1"],  # no --classes
    ["--signal", "1"],  # no --background
])
def test_cli_bad_option_combinations_exit_2(tmp_path, argv, caplog):
    with caplog.at_level(logging.ERROR):
        assert _cli([*argv, "--seed", "1", "-o", str(tmp_path / "x.root")]) == 2
    assert "generate:" in caplog.text
    assert not (tmp_path / "x.root").exists()
