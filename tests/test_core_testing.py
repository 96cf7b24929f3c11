"""lloca_hep.core.testing.assert_lorentz_equivariant: passes for invariants, fails otherwise."""

from __future__ import annotations

import pytest
import torch

from lloca_hep.core.lorentz import minkowski
from lloca_hep.core.testing import assert_lorentz_equivariant, toy_jets


def _jet_mass(p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Minkowski mass of the summed jet (float64): a Lorentz invariant."""
    jet = (p4 * mask[..., None]).sum(1)
    return minkowski(jet, jet).clamp(min=0).sqrt()


def _jet_pt(p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Transverse momentum of the summed jet: not invariant under boosts or rotations."""
    jet = (p4 * mask[..., None]).sum(1)
    return torch.hypot(jet[:, 1], jet[:, 2])


def _jet_p4(p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The summed jet four-momentum: a Lorentz vector."""
    return (p4 * mask[..., None]).sum(1)


@pytest.fixture(scope="module")
def jets() -> tuple[torch.Tensor, torch.Tensor]:
    return toy_jets(32, max_constituents=24, min_constituents=4, seed=5)


def test_invariant_mass_passes_at_rapidity_six(jets):
    # float64 round-off at rapidity 6 (gamma ~ 200) is ~1e-6 GeV on masses of ~100 GeV
    assert_lorentz_equivariant(_jet_mass, *jets, rapidity=6.0, n_transforms=8, rtol=1e-6,
                               atol=1e-6)


def test_summed_pt_is_not_invariant(jets):
    with pytest.raises(AssertionError, match="not Lorentz invariant"):
        assert_lorentz_equivariant(_jet_pt, *jets)


def test_summed_pt_fails_even_for_small_boosts(jets):
    with pytest.raises(AssertionError, match=r"rapidity 0\.1"):
        assert_lorentz_equivariant(_jet_pt, *jets, rapidity=0.1, n_transforms=1)


def test_vector_outputs_transform(jets):
    assert_lorentz_equivariant(_jet_p4, *jets, output="vector", rtol=1e-9, atol=1e-6)
    with pytest.raises(AssertionError, match="not Lorentz invariant"):
        assert_lorentz_equivariant(_jet_p4, *jets, output="invariant")


def test_float32_inputs_are_checked_in_float64(jets):
    p4, mask = jets
    seen = []

    def mass(p, m):
        seen.append(p.dtype)
        return _jet_mass(p, m)

    assert_lorentz_equivariant(mass, p4.float(), mask, n_transforms=2)
    assert set(seen) == {torch.float64}


def test_is_seeded_and_validates_arguments(jets):
    with pytest.raises(ValueError, match="no four-vector input"):
        assert_lorentz_equivariant(lambda m: m.sum(), jets[1])
    with pytest.raises(ValueError, match="output must be"):
        assert_lorentz_equivariant(_jet_mass, *jets, output="tensor")
    messages = []
    for _ in range(2):
        with pytest.raises(AssertionError) as exc:
            assert_lorentz_equivariant(_jet_pt, *jets, seed=3)
        messages.append(str(exc.value))
    assert messages[0] == messages[1]
