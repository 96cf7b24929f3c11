"""Per-particle features: specs, presets, feature files, reading (JetClass and PFNano), the
invalid-input policy, padding in one pass, and exact invariance with features on."""

from __future__ import annotations

import json
import warnings

import awkward as ak
import numpy as np
import pytest
import torch
from jetclass_files import write_jetclass
from test_models_transformer import DEFAULT_BOUNDS, relative_change

import lloca_hep
from lloca_hep.core.lorentz import apply, random_lorentz
from lloca_hep.core.testing import toy_jets
from lloca_hep.errors import (
    FeatureError,
    InvalidConstituentsWarning,
    InvalidFeatureError,
    MissingBranchError,
)
from lloca_hep.features import (
    PRESETS,
    InputSpec,
    load_feature_file,
    pid_flag,
    preset,
    resolve_features,
)
from lloca_hep.models import build_model
from lloca_hep.preprocessing import argsort_by_pt, pad_jets
from lloca_hep.preprocessing.inputs import network_inputs

KINPID = ("part_charge", "part_isChargedHadron", "part_isNeutralHadron", "part_isPhoton",
          "part_isElectron", "part_isMuon")
FULL = (*KINPID, "part_d0val", "part_d0err", "part_dzval", "part_dzerr")


@pytest.fixture(scope="module")
def jetclass_file(tmp_path_factory):
    return write_jetclass(tmp_path_factory.mktemp("fe") / "jc.root", 20)


# ----------------------------------------------------------------------------- specs
def test_presets_names_and_roles():
    assert PRESETS == ("kin", "kinpid", "full")
    assert preset("kin").names == ()
    assert preset("kinpid").names == KINPID
    full = preset("full")
    assert full.names == FULL and full.num_invariant == 10 and full.num_symmetry_breaking == 0
    # ParT's transforms: tanh on the impact parameters, errors clipped to [0, 1] mm
    ops = {f.name: [t.op for t in f.transform] for f in full.features}
    assert ops["part_d0val"] == ["tanh"] and ops["part_d0err"] == ["clip"]
    # PFNano: flags from pdgId + charge, impact parameters cm -> mm
    flag = next(f for f in full.features if f.name == "part_isMuon").source("nanoaod")
    assert flag is not None and (flag.pid, flag.branch, flag.charge) == (
        "isMuon", "PFCands_pdgId", "PFCands_charge")
    d0 = next(f for f in full.features if f.name == "part_d0val").source("nanoaod")
    assert d0 is not None and d0.branch == "PFCands_d0" and d0.scale == 10.0


def test_spec_json_roundtrip_is_plain_json():
    for name in PRESETS:
        spec = preset(name)
        text = json.dumps(spec.to_json())
        assert InputSpec.from_json(json.loads(text)) == spec


def test_ordered_puts_invariant_features_first():
    spec = resolve_features({"features": [
        {"name": "eta_like", "source": "b1", "role": "symmetry_breaking"},
        {"name": "q", "source": "b2"},
    ]})
    assert spec.names == ("q", "eta_like")
    assert (spec.num_invariant, spec.num_symmetry_breaking) == (1, 1)


def test_transforms_and_padding_zeroed():
    spec = resolve_features({"features": [
        {"name": "a", "source": "a", "transform": [{"op": "log", "floor": 1e-3}]},
        {"name": "b", "source": "b", "transform": [{"op": "standardise", "a": 1.0, "b": 2.0},
                                                   {"op": "clip", "min": -1.0, "max": 3.0}]},
    ]})
    raw = np.array([[[np.e, 0.0], [0.0, 5.0], [7.0, 7.0]]], dtype=np.float32)
    mask = np.array([[True, True, False]])
    out = spec.transform(raw.copy(), mask)
    np.testing.assert_allclose(out[0, 0], [1.0, -1.0], rtol=1e-6)
    np.testing.assert_allclose(out[0, 1], [np.log(1e-3), 3.0], rtol=1e-6)
    assert np.all(out[0, 2] == 0.0)


def test_pid_flags_are_exclusive():
    pdg = np.array([211, -211, 130, 22, 11, -13, 2112, 321])
    charge = np.array([1, -1, 0, 0, -1, 1, 0, 1])
    flags = np.stack([pid_flag(f, pdg, charge) for f in
                      ("isChargedHadron", "isNeutralHadron", "isPhoton", "isElectron", "isMuon")])
    assert np.all(flags.sum(axis=0) == 1)
    assert flags[:, 4].tolist() == [0, 0, 0, 1, 0]  # electron
    assert flags[:, 6].tolist() == [0, 1, 0, 0, 0]  # neutron: neutral hadron


def test_feature_files_json_and_yaml(tmp_path):
    j = tmp_path / "f.json"
    j.write_text(json.dumps({"preset": "kinpid", "branches": {"part_charge": "q"}}))
    spec = load_feature_file(j)
    charge = next(f for f in spec.features if f.name == "part_charge")
    assert charge.source("jetclass").branch == "q"  # type: ignore[union-attr]
    assert charge.source("nanoaod").branch == "PFCands_charge"  # type: ignore[union-attr]
    y = tmp_path / "f.yaml"
    y.write_text("name: mine\nfeatures:\n  - name: part_d0val\n    source: ip\n"
                 "    transform: [tanh]\n")
    spec = load_feature_file(y)
    assert spec.name == "mine" and spec.names == ("part_d0val",)
    assert resolve_features(str(y)) == spec


@pytest.mark.parametrize("bad, match", [
    ({"features": [{"name": "x"}]}, "give 'source'"),
    ({"features": [{"name": "x", "source": "b", "role": "weird"}]}, "role must be one of"),
    ({"features": [{"name": "x", "source": "b", "transform": [{"op": "sqrt"}]}]}, "op"),
    ({"features": [{"name": "x", "source": "b", "transform": [{"op": "clip", "min": 2,
                                                               "max": 1}]}]}, "above max"),
    ({"features": [{"name": "x", "source": "b"}, {"name": "x", "source": "c"}]}, "repeated"),
    ({"features": [{"name": "px", "source": "b"}]}, "four-momentum"),
    ({"preset": "full", "branches": {"nope": "b"}}, "has no features"),
    ({"preset": "fancy"}, "unknown preset"),
])
def test_bad_specs_are_clear(bad, match):
    with pytest.raises(FeatureError, match=match):
        resolve_features(bad)


def test_unknown_preset_name():
    with pytest.raises(FeatureError, match="neither a preset"):
        resolve_features("fullest")


# ----------------------------------------------------------------------------- reading
def test_read_jetclass_features(jetclass_file):
    plain = lloca_hep.read_jets(jetclass_file)
    jets = lloca_hep.read_jets(jetclass_file, features="full")
    assert ak.fields(plain.constituents) == ["px", "py", "pz", "E"]
    assert ak.fields(jets.constituents) == ["px", "py", "pz", "E", *FULL]
    assert ak.all(jets.constituents.px == plain.constituents.px)
    # neutral constituents carry no displacement
    neutral = jets.constituents.part_charge == 0
    assert ak.all(jets.constituents.part_d0val[neutral] == 0)
    assert ak.any(jets.constituents.part_d0val[~neutral] != 0)


def test_read_pfnano_features(pfnano):
    import uproot

    jets = lloca_hep.read_jets(pfnano, features="full")
    c = jets.constituents
    flags = np.stack([ak.to_numpy(ak.flatten(c[f"part_{f}"])) for f in
                      ("isChargedHadron", "isNeutralHadron", "isPhoton", "isElectron", "isMuon")])
    assert np.all(flags.sum(axis=0) == 1)
    # the first jet's first constituent is the first row of its index table
    ev = uproot.open(pfnano)["Events"].arrays(["FatJetPFCands_jetIdx", "FatJetPFCands_pFCandsIdx",
                                               "PFCands_d0", "PFCands_charge"], entry_stop=1)
    first = int(ev["FatJetPFCands_pFCandsIdx"][0][0])
    assert float(c.part_d0val[0][0]) == pytest.approx(10 * float(ev["PFCands_d0"][0][first]),
                                                      rel=1e-6)
    assert float(c.part_charge[0][0]) == float(ev["PFCands_charge"][0][first])


def test_missing_feature_branch_names_set_and_branch(tmp_path):
    import uproot

    path = tmp_path / "nofeat.root"
    with uproot.recreate(path) as f:
        f["tree"] = {"part": ak.zip({"px": [[1.0]], "py": [[0.0]], "pz": [[0.0]],
                                     "energy": [[2.0]]})}
    with pytest.raises(MissingBranchError, match=r"part_charge.*input set 'kinpid'"):
        lloca_hep.read_jets(path, features="kinpid")


def test_nan_feature_raises_or_drops_counted(tmp_path):
    import uproot

    path = tmp_path / "nan.root"
    with uproot.recreate(path) as f:
        f["tree"] = {"part": ak.zip({
            "px": [[10.0, 5.0], [3.0]], "py": [[0.0, 1.0], [1.0]], "pz": [[1.0, 1.0], [0.0]],
            "energy": [[11.0, 6.0], [4.0]], "charge": [[1.0, np.nan], [0.0]]})}
    spec = {"features": [{"name": "part_charge", "source": "part_charge"}]}
    with pytest.raises(InvalidFeatureError, match=r"part_charge.*entry 0.*constituent 1"):
        lloca_hep.read_jets(path, features=spec)
    with pytest.warns(InvalidConstituentsWarning, match="dropped 1 constituents"):
        jets = lloca_hep.read_jets(path, features=spec, on_invalid="drop")
    assert ak.num(jets.constituents).tolist() == [1, 1]


# ----------------------------------------------------------------------------- padding
def test_scalars_padded_in_the_momenta_order(jetclass_file):
    jets = lloca_hep.read_jets(jetclass_file, features="full")
    padded = pad_jets(jets, 8, scalars=list(FULL))
    assert padded.scalars is not None and padded.scalars.shape == (len(jets), 8, 10)
    c = jets.constituents
    offsets = np.concatenate([[0], np.cumsum(ak.to_numpy(ak.num(c)))])
    order = argsort_by_pt(offsets, ak.to_numpy(ak.flatten(c.px)), ak.to_numpy(ak.flatten(c.py)))
    d0 = ak.to_numpy(ak.flatten(c.part_d0val))[order]
    for j in range(len(jets)):
        n = min(int(offsets[j + 1] - offsets[j]), 8)
        np.testing.assert_array_equal(padded.scalars[j, :n, 6], d0[offsets[j]:offsets[j] + n])
        assert np.all(padded.scalars[j, n:] == 0)
    same = pad_jets(jets, 8)
    np.testing.assert_array_equal(same.p4, padded.p4)
    np.testing.assert_array_equal(same.mask, padded.mask)
    assert same.scalars is None


def test_network_inputs_transform_and_missing_fields(jetclass_file):
    jets = lloca_hep.read_jets(jetclass_file, features="full")
    padded = network_inputs(jets, preset("full"), 8)
    assert padded.scalars is not None
    assert np.all(np.abs(padded.scalars[..., 6]) <= 1.0)  # tanh(d0)
    with pytest.raises(FeatureError, match="part_charge"):
        network_inputs(lloca_hep.read_jets(jetclass_file), preset("kinpid"), 8)


# ----------------------------------------------------------------------------- models
@pytest.mark.parametrize("name", ["LLoCaTransformer", "LLoCaGraphNet"])
@pytest.mark.parametrize("frames_scalars", [0, 2])
def test_invariance_with_features_on(name, frames_scalars):
    """Invariant features (backbone + frames net) and frames-only scalars keep the model
    exactly invariant: default precision, boosts to rapidity 4 and 6, today's bounds."""
    p, mask = toy_jets(12, 40, min_constituents=10, seed=5)
    gen = torch.Generator().manual_seed(1)
    scalars = torch.randn(12, 40, 3 + frames_scalars, generator=gen)
    torch.manual_seed(0)
    model = build_model(name, dict(symmetry_breaking=False, num_scalars=3,
                                   num_frames_scalars=frames_scalars, num_classes=None)).eval()
    with torch.no_grad():
        s0 = model(p, mask, scalars)
        for i, y in enumerate((4.0, 6.0)):
            lam = random_lorentz(12, max_rapidity=y, exact_rapidity=True, seed=300 + i)
            assert relative_change(s0, model(apply(lam[:, None], p), mask, scalars)) <= \
                DEFAULT_BOUNDS[y], y
        # the scalars matter
        assert relative_change(s0, model(p, mask, scalars.flip(0))) > 1e-3


def test_plain_model_with_features_is_not_invariant():
    p, mask = toy_jets(8, 30, min_constituents=10, seed=6)
    scalars = torch.randn(8, 30, 2, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(0)
    model = build_model("plain_transformer", dict(num_scalars=2)).eval()
    lam = random_lorentz(8, max_rapidity=2.0, exact_rapidity=True, seed=4)
    with torch.no_grad():
        assert relative_change(model(p, mask, scalars),
                               model(apply(lam[:, None], p), mask, scalars)) > 1e-3


def test_models_check_the_scalars():
    p, mask = toy_jets(2, 10, min_constituents=5, seed=1)
    model = build_model("LLoCaTransformer", dict(num_scalars=2, hidden=16, blocks=1, heads=2))
    with pytest.raises(ValueError, match="takes 2 per-particle scalars"):
        model(p, mask)
    with pytest.raises(ValueError, match=r"shape \(B, N, 2\)"):
        model(p, mask, torch.zeros(2, 10, 3))
    plain = build_model("LLoCaTransformer", dict(hidden=16, blocks=1, heads=2))
    with pytest.raises(ValueError, match="takes no per-particle scalars"):
        plain(p, mask, torch.zeros(2, 10, 1))
    assert model(p, mask, torch.zeros(2, 10, 2)).shape == (2,)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model(p[:0], mask[:0], torch.zeros(0, 10, 2)).shape == (0,)
