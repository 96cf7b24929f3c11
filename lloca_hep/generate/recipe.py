"""The top-tagging sample recipe (LLOCA.md section 11) as named constants and pure functions.

Truth level, after the public top-tagging dataset's recipe without its detector simulation:
Pythia 8, pp at 14 TeV, default tune, no multi-parton interactions, no pile-up.
Signal: all-hadronic t tbar; background: QCD multijets. Jets: anti-kT R = 0.8 on the visible
final-state particles, 550 < pT < 650 GeV, |eta| < 2. A signal jet must contain, within
delta-R < 0.8 of its axis, the top quark, the down-type quark of its decay (the b) and both
quarks of the W decay.

Everything here is importable without Pythia or fastjet, so the cuts and the truth check can be
tested on their own.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: proton-proton centre-of-mass energy in GeV
CENTRE_OF_MASS_ENERGY_GEV = 14000.0
#: generator-level cut on the hard-process transverse momentum, GeV
PTHAT_MIN_GEV = 500.0
PTHAT_MAX_GEV = 700.0
#: anti-kT distance parameter
JET_RADIUS = 0.8
#: jet selection, GeV and pseudorapidity
JET_PT_MIN_GEV = 550.0
JET_PT_MAX_GEV = 650.0
JET_ABS_ETA_MAX = 2.0
#: a signal jet must contain the top and its decay quarks within this delta-R (eta, phi) of its axis
TRUTH_MATCH_RADIUS = 0.8
#: constituents kept per jet (hardest first) unless the caller asks otherwise
DEFAULT_MAX_CONSTITUENTS = 200
#: Pythia accepts ``Random:seed`` in [0, 900000000]; 0 means "seed from the clock", so we use 1..max
PYTHIA_SEED_MAX = 900_000_000

#: PDG identifiers
TOP_PDG_ID = 6
W_PDG_ID = 24
#: quark PDG identifiers d, u, s, c, b (the W is forced to decay into these)
LIGHT_QUARK_PDG_IDS = (1, 2, 3, 4, 5)

#: settings shared by signal and background
COMMON_SETTINGS: tuple[str, ...] = (
    f"Beams:eCM = {CENTRE_OF_MASS_ENERGY_GEV}",
    "PartonLevel:MPI = off",
    f"PhaseSpace:pTHatMin = {PTHAT_MIN_GEV}",
    f"PhaseSpace:pTHatMax = {PTHAT_MAX_GEV}",
    "Print:quiet = on",
    "Random:setSeed = on",
)
#: all-hadronic t tbar: both production channels, W+- forced into quark pairs
SIGNAL_SETTINGS: tuple[str, ...] = (
    "Top:gg2ttbar = on",
    "Top:qqbar2ttbar = on",
    f"{W_PDG_ID}:onMode = off",
    f"{W_PDG_ID}:onIfAny = " + " ".join(str(i) for i in LIGHT_QUARK_PDG_IDS),
)
#: QCD multijet background
BACKGROUND_SETTINGS: tuple[str, ...] = ("HardQCD:all = on",)


def delta_phi(phi1: npt.ArrayLike, phi2: npt.ArrayLike) -> np.ndarray:
    """Azimuthal difference wrapped into [-pi, pi) (radians, broadcasting)."""
    d = np.asarray(phi1, dtype=np.float64) - np.asarray(phi2, dtype=np.float64)
    return (d + np.pi) % (2.0 * np.pi) - np.pi


def delta_r(
    eta1: npt.ArrayLike, phi1: npt.ArrayLike, eta2: npt.ArrayLike, phi2: npt.ArrayLike
) -> np.ndarray:
    """Distance sqrt(d_eta^2 + d_phi^2) in the (pseudorapidity, azimuth) plane (broadcasting)."""
    deta = np.asarray(eta1, dtype=np.float64) - np.asarray(eta2, dtype=np.float64)
    return np.hypot(deta, delta_phi(phi1, phi2))


def passes_jet_cuts(pt: npt.ArrayLike, eta: npt.ArrayLike) -> np.ndarray:
    """Jet selection of the recipe: ``550 < pt < 650`` GeV and ``|eta| < 2`` (element-wise bool)."""
    pt = np.asarray(pt, dtype=np.float64)
    eta = np.asarray(eta, dtype=np.float64)
    return (pt > JET_PT_MIN_GEV) & (pt < JET_PT_MAX_GEV) & (np.abs(eta) < JET_ABS_ETA_MAX)


def decay_contained(
    jet_eta: float,
    jet_phi: float,
    parton_eta: npt.ArrayLike,
    parton_phi: npt.ArrayLike,
    radius: float = TRUTH_MATCH_RADIUS,
) -> bool:
    """True when every parton lies strictly within ``radius`` (delta-R in eta, phi) of the jet axis.

    ``parton_eta``, ``parton_phi``: shape ``(n_partons,)``; for a top decay the four partons
    (top, b, q, q') of :class:`lloca_hep.generate.events.TopDecay`. An empty set of partons is
    never "contained" (a jet with no truth partons is not a signal jet).
    """
    parton_eta = np.asarray(parton_eta, dtype=np.float64)
    parton_phi = np.asarray(parton_phi, dtype=np.float64)
    if parton_eta.shape != parton_phi.shape or parton_eta.ndim != 1:
        raise ValueError(
            f"parton_eta and parton_phi must be 1-d of equal length, got shapes "
            f"{parton_eta.shape} and {parton_phi.shape}"
        )
    if parton_eta.size == 0:
        return False
    return bool(np.all(delta_r(jet_eta, jet_phi, parton_eta, parton_phi) < radius))


def pythia_seed(seed: int, class_id: int, chunk_index: int) -> int:
    """Pythia ``Random:seed`` for one chunk, derived independently from the user seed.

    Uses ``numpy.random.SeedSequence(seed, spawn_key=(class_id, chunk_index))``, i.e. the
    ``chunk_index``-th spawned child of the ``class_id``-th child of ``SeedSequence(seed)``,
    mapped into Pythia's allowed range ``1..900000000``.
    """
    state = np.random.SeedSequence(seed, spawn_key=(class_id, chunk_index)).generate_state(
        1, dtype=np.uint64
    )[0]
    return int(state % np.uint64(PYTHIA_SEED_MAX)) + 1
