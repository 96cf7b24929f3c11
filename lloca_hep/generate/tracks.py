"""Per-constituent JetClass quantities as pure numpy functions: impact parameters, their
resolution and smearing, angles to the jet axis and the particle-ID flags.

Impact parameters (mm) of the straight line from a charged particle's production vertex
``(x, y, z)`` (Pythia's ``xProd``, ``yProd``, ``zProd``, mm; the primary vertex is the origin,
no beam spot) along its momentum ``(px, py, pz)``, with respect to the beam line (the z axis),
as Delphes computes them for straight tracks:

* ``d0 = (x * py - y * px) / pT``, signed transverse distance of closest approach;
* ``dz = z - (x * px + y * py) / pT * pz / pT``, the z of that point of closest approach.

No magnetic field bends the tracks (truth level). Particles from the primary interaction and
from prompt decays have d0 = dz = 0 up to femtometres; the decay products of b and c hadrons
and of taus (c*tau0 0.1 - 0.5 mm, boosted) are displaced by up to millimetres.

Resolution model (Gaussian, added in quadrature, pT in GeV, roughly a CMS-like silicon
tracker): ``sigma_d0 = 0.010 (+) 0.100 / pT`` mm and ``sigma_dz = 0.030 (+) 0.120 / pT`` mm.
The stored ``part_d0val``/``part_dzval`` are the true values plus ``sigma * N(0, 1)`` drawn from
a seeded generator; ``part_d0err``/``part_dzerr`` are the sigmas used. Neutral particles get
0 for all four.

The particle-ID flags are :func:`lloca_hep.features.pid_flag`'s (one definition for writing
and reading): |pdgId| 11 electron, 13 muon, 22 photon, any other charged particle a charged
hadron, any other neutral one a neutral hadron.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ..features.pid import pid_flag
from ..features.spec import PID_FLAGS
from .recipe import delta_phi

#: d0 resolution: constant term (high-pT limit) and multiple-scattering term, mm and mm*GeV
D0_SIGMA_CONST_MM = 0.010
D0_SIGMA_MS_MM_GEV = 0.100
#: dz resolution: constant and multiple-scattering terms, mm and mm*GeV
DZ_SIGMA_CONST_MM = 0.030
DZ_SIGMA_MS_MM_GEV = 0.120
#: smallest transverse momentum used in divisions, GeV (final-state particles have far more)
PT_FLOOR_GEV = 1e-9


def _f64(x: npt.ArrayLike) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def impact_parameters(
    x: npt.ArrayLike, y: npt.ArrayLike, z: npt.ArrayLike,
    px: npt.ArrayLike, py: npt.ArrayLike, pz: npt.ArrayLike,
) -> tuple[np.ndarray, np.ndarray]:
    """True ``(d0, dz)`` in mm, float64 ``(n,)``, of straight lines from vertices ``x, y, z``
    (mm) along momenta ``px, py, pz`` (GeV), relative to the z axis (see the module docstring)."""
    x, y, z, px, py, pz = map(_f64, (x, y, z, px, py, pz))
    pt = np.maximum(np.hypot(px, py), PT_FLOOR_GEV)
    d0 = (x * py - y * px) / pt
    dz = z - (x * px + y * py) / pt * (pz / pt)
    return d0, dz


def resolution(pt: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """``(sigma_d0, sigma_dz)`` in mm, float64 ``(n,)``, for transverse momenta ``pt`` (GeV)."""
    inv = 1.0 / np.maximum(_f64(pt), PT_FLOOR_GEV)
    return (np.hypot(D0_SIGMA_CONST_MM, D0_SIGMA_MS_MM_GEV * inv),
            np.hypot(DZ_SIGMA_CONST_MM, DZ_SIGMA_MS_MM_GEV * inv))


def smeared_impact_parameters(
    vertex: npt.ArrayLike, momentum: npt.ArrayLike, charge: npt.ArrayLike,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Measured impact parameters of ``n`` particles.

    ``vertex``: ``(n, 3)`` production vertices (mm); ``momentum``: ``(n, 3)`` (px, py, pz) in
    GeV; ``charge``: ``(n,)``. Returns float64 ``(n,)`` arrays ``d0val``, ``d0err``, ``dzval``,
    ``dzerr`` (mm): smeared values and sigmas for charged particles, 0 for neutral ones. Draws
    two normal numbers per charged particle from ``rng`` (d0 then dz, in particle order).
    """
    v = _f64(vertex).reshape(-1, 3)
    p = _f64(momentum).reshape(-1, 3)
    charged = np.asarray(charge).reshape(-1) != 0
    n = charged.shape[0]
    out = {k: np.zeros(n) for k in ("d0val", "d0err", "dzval", "dzerr")}
    if not charged.any():
        return out
    vc, pc = v[charged], p[charged]
    d0, dz = impact_parameters(vc[:, 0], vc[:, 1], vc[:, 2], pc[:, 0], pc[:, 1], pc[:, 2])
    s_d0, s_dz = resolution(np.hypot(pc[:, 0], pc[:, 1]))
    noise = rng.standard_normal((int(charged.sum()), 2))
    out["d0val"][charged] = d0 + s_d0 * noise[:, 0]
    out["d0err"][charged] = s_d0
    out["dzval"][charged] = dz + s_dz * noise[:, 1]
    out["dzerr"][charged] = s_dz
    return out


def pid_flags(pdg_id: npt.ArrayLike, charge: npt.ArrayLike) -> dict[str, np.ndarray]:
    """``{flag: float32 (n,)}`` 0/1 for the five flags of :data:`lloca_hep.features.PID_FLAGS`
    (``isChargedHadron``, ``isNeutralHadron``, ``isPhoton``, ``isElectron``, ``isMuon``)."""
    ids = np.asarray(pdg_id).reshape(-1)
    q = np.asarray(charge).reshape(-1)
    return {flag: pid_flag(flag, ids, q) for flag in PID_FLAGS}


def relative_angles(
    px: npt.ArrayLike, py: npt.ArrayLike, pz: npt.ArrayLike, jet_eta: float, jet_phi: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(deta, dphi)`` float64 ``(n,)``: pseudorapidity and azimuth (wrapped into [-pi, pi))
    of momenta ``px, py, pz`` (GeV) minus those of the jet axis."""
    px, py, pz = map(_f64, (px, py, pz))
    pt = np.maximum(np.hypot(px, py), PT_FLOOR_GEV)
    return np.arcsinh(pz / pt) - jet_eta, delta_phi(np.arctan2(py, px), jet_phi)
