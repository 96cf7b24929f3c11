"""Pure recipe functions of lloca_hep.generate (no Pythia/fastjet needed)."""

import numpy as np
import pytest

from lloca_hep.generate import recipe
from lloca_hep.generate.recipe import decay_contained, delta_r, passes_jet_cuts, pythia_seed


def test_delta_r_wraps_azimuth():
    # points either side of phi = +-pi are close, not 2 pi apart
    assert delta_r(0.0, np.pi - 0.1, 0.0, -np.pi + 0.1) == pytest.approx(0.2)
    assert delta_r(1.0, 0.0, -2.0, 0.0) == pytest.approx(3.0)
    assert delta_r(0.3, 0.4, 0.0, 0.0) == pytest.approx(0.5)


def test_jet_cuts_are_strict_windows():
    pt = np.array([549.9, 550.0, 550.1, 600.0, 649.9, 650.0, 600.0, 600.0, 600.0])
    eta = np.array([0.0, 0.0, 0.0, 1.99, 0.0, 0.0, -1.99, 2.0, -2.01])
    expected = np.array([False, False, True, True, True, False, True, False, False])
    np.testing.assert_array_equal(passes_jet_cuts(pt, eta), expected)


def test_decay_contained():
    jet_eta, jet_phi = 0.5, 3.0
    inside = (np.array([0.5, 0.9, 0.1, 0.6]), np.array([3.0, 3.2, 2.7, -3.0]))  # last wraps
    assert decay_contained(jet_eta, jet_phi, *inside)
    # one parton just outside the radius
    outside_eta = inside[0].copy()
    outside_eta[2] = jet_eta - recipe.TRUTH_MATCH_RADIUS - 1e-3
    phis = inside[1].copy()
    phis[2] = jet_phi
    assert not decay_contained(jet_eta, jet_phi, outside_eta, phis)
    # nothing to contain: not a top jet
    assert not decay_contained(jet_eta, jet_phi, np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="equal length"):
        decay_contained(0.0, 0.0, np.zeros(3), np.zeros(4))


def test_pythia_seeds_in_range_and_independent():
    seeds = {pythia_seed(s, c, k) for s in (0, 1, 2**40) for c in (0, 1) for k in range(50)}
    assert len(seeds) == 3 * 2 * 50  # all distinct
    assert all(1 <= s <= recipe.PYTHIA_SEED_MAX for s in seeds)
    assert pythia_seed(5, 1, 3) == pythia_seed(5, 1, 3)


def test_settings_follow_the_recipe():
    common = " ".join(recipe.COMMON_SETTINGS)
    assert "Beams:eCM = 14000" in common and "PartonLevel:MPI = off" in common
    assert "pTHatMin = 500" in common and "pTHatMax = 700" in common
    assert "Print:quiet = on" in common
    signal = " ".join(recipe.SIGNAL_SETTINGS)
    assert "Top:gg2ttbar = on" in signal and "Top:qqbar2ttbar = on" in signal
    assert "24:onMode = off" in signal and "24:onIfAny = 1 2 3 4 5" in signal
    assert recipe.BACKGROUND_SETTINGS == ("HardQCD:all = on",)
