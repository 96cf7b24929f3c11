"""PlainJetTransformer: features, shapes, padding and permutation invariance, the symmetries it
has (rotations about the beam axis, longitudinal boosts for the non-energy features) and the one it
lacks (generic Lorentz boosts), registry round trip."""

import json
import math

import pytest
import torch

from lloca_hep.core.lorentz import apply, beam_rotation, boost_along_z, random_lorentz
from lloca_hep.core.testing import toy_jets
from lloca_hep.models import build_model, model_name, resolve_model_name
from lloca_hep.models.plain import (
    ENERGY_FEATURES,
    FEATURE_NAMES,
    PlainJetTransformer,
    jet_relative_features,
)

NUM_JETS = 12
#: Largest change of a float64 logit allowed for an exact symmetry.
FLOAT64_TOL = 1e-9
#: Smallest change of a logit that counts as "not invariant".
BROKEN_MIN = 1e-4
SMALL = dict(hidden=24, blocks=2, heads=3)


@pytest.fixture(scope="module")
def jets():
    return toy_jets(NUM_JETS, 40, min_constituents=10, seed=7)


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return PlainJetTransformer(**{**SMALL, **kw}).double().eval()


def _columns(names):
    return [FEATURE_NAMES.index(n) for n in names]


def test_shapes_and_config():
    p4, mask = toy_jets(3, 20, min_constituents=5, seed=1)
    model = PlainJetTransformer()
    assert model(p4, mask).shape == (3,)
    assert PlainJetTransformer(num_classes=4, **SMALL)(p4, mask).shape == (3, 4)
    assert model(p4[:0], mask[:0]).shape == (0,)
    assert json.loads(json.dumps(model.config)) == model.config
    feats = jet_relative_features(p4, mask)
    assert feats.dtype == torch.float64 and feats.shape == (3, 20, len(FEATURE_NAMES))
    assert torch.all(feats[~mask] == 0) and torch.isfinite(feats).all()
    no_e = jet_relative_features(p4, mask, energy_features=False)
    assert no_e.shape[-1] == len(FEATURE_NAMES) - len(ENERGY_FEATURES)


def test_features_match_hand_computation(jets):
    p4, mask = jets
    f = jet_relative_features(p4, mask)
    jet = (p4 * mask[..., None]).sum(1)
    b, i = 3, 2
    e, px, py, pz = p4[b, i].tolist()
    je, jx, jy, jz = jet[b].tolist()
    pt, jpt = math.hypot(px, py), math.hypot(jx, jy)
    y = 0.5 * math.log((e + pz) / (e - pz))
    jy_ = 0.5 * math.log((je + jz) / (je - jz))
    dphi = (math.atan2(py, px) - math.atan2(jy, jx) + math.pi) % (2 * math.pi) - math.pi
    expected = [
        math.log(pt),
        math.log(e),
        math.log(pt / jpt),
        math.log(e / je),
        y - jy_,
        dphi,
        math.hypot(y - jy_, dphi),
    ]
    assert f[b, i].tolist() == pytest.approx(expected, rel=1e-10, abs=1e-10)
    # delta-phi stays in (-pi, pi] for jets straddling phi = pi
    assert f[..., FEATURE_NAMES.index("delta_phi")].abs().max() <= math.pi


def test_padding_invariance(jets):
    p4, mask = jets
    model = _model()
    ref = model(p4, mask)
    extra = 7
    junk = torch.randn(NUM_JETS, extra, 4, dtype=torch.float64) * 100.0
    padded = torch.cat([p4, junk], 1)
    pmask = torch.cat([mask, torch.zeros(NUM_JETS, extra, dtype=torch.bool)], 1)
    # garbage (even non-finite) values in padded slots change nothing
    padded[:, -1] = float("nan")
    assert torch.allclose(model(padded, pmask), ref, atol=FLOAT64_TOL, rtol=0)


def test_permutation_invariance(jets):
    p4, mask = jets
    model = _model()
    perm = torch.randperm(p4.shape[1], generator=torch.Generator().manual_seed(3))
    assert torch.allclose(
        model(p4[:, perm], mask[:, perm]), model(p4, mask), atol=FLOAT64_TOL, rtol=0
    )


def test_beam_rotation_invariance(jets):
    p4, mask = jets
    model = _model()
    angle = (
        torch.rand(NUM_JETS, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
        * 2
        * math.pi
    )
    rotated = apply(beam_rotation(angle)[:, None], p4)
    assert torch.allclose(model(rotated, mask), model(p4, mask), atol=FLOAT64_TOL, rtol=0)


def test_longitudinal_boosts(jets):
    p4, mask = jets
    rap = torch.linspace(-2.0, 2.0, NUM_JETS, dtype=torch.float64)
    boosted = apply(boost_along_z(rap)[:, None], p4)
    # pT, delta-eta (rapidity difference), delta-phi, delta-R are boost invariant...
    f, fb = jet_relative_features(p4, mask), jet_relative_features(boosted, mask)
    inv = _columns([n for n in FEATURE_NAMES if n not in ENERGY_FEATURES])
    assert torch.allclose(fb[..., inv], f[..., inv], atol=1e-9, rtol=0)
    # ...the energies are not, so the default model changes, the one without them does not
    e_cols = _columns(ENERGY_FEATURES)
    assert (fb[..., e_cols] - f[..., e_cols]).abs().max() > 0.1
    no_e = _model(energy_features=False)
    assert torch.allclose(no_e(boosted, mask), no_e(p4, mask), atol=FLOAT64_TOL, rtol=0)
    model = _model()
    assert (model(boosted, mask) - model(p4, mask)).abs().max() > BROKEN_MIN


def test_not_lorentz_invariant(jets):
    p4, mask = jets
    L = random_lorentz(NUM_JETS, max_rapidity=1.0, seed=5, exact_rapidity=True)
    transformed = apply(L[:, None], p4)
    for model in (_model(), _model(energy_features=False)):
        assert (model(transformed, mask) - model(p4, mask)).abs().max() > BROKEN_MIN


def test_registry_round_trip(jets):
    p4, mask = jets
    model = _model(seed=2, energy_features=False)
    assert model_name(model) == "plain_transformer"
    assert resolve_model_name("plain_transformer") == "plain_transformer"
    rebuilt = build_model(model_name(model), json.loads(json.dumps(model.config))).double()
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt.eval()(p4, mask), model(p4, mask))


def test_heads_must_divide_hidden():
    with pytest.raises(ValueError, match="divisible"):
        PlainJetTransformer(hidden=10, heads=3)
