"""Jet-level quantities: four-momenta, rest-frame boosts, reference vectors, features.

All four-vectors are ordered (E, px, py, pz) in GeV and computed in float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from . import kernels
from .padding import _as_flat_float

#: A jet lighter than this fraction of its energy (boost factor above 1e8) gets no rest frame.
REST_FRAME_MIN_REL_MASS = 1e-8
#: Floor (GeV) on pT and E before logarithms and pseudorapidities in constituent features.
FEATURE_PT_FLOOR = 1e-8
#: Names (in order) of the per-constituent features of :func:`constituent_features`.
FEATURE_NAMES = ("log_pt", "log_energy", "delta_eta", "delta_phi", "delta_r")
#: Reference directions of LLoCa's symmetry breaking (E, px, py, pz).
REFERENCE_VECTORS = {
    "beam_plus": (1.0, 0.0, 0.0, 1.0),
    "beam_minus": (1.0, 0.0, 0.0, -1.0),
    "time": (1.0, 0.0, 0.0, 0.0),
}


def jet_four_momenta_flat(
    offsets: npt.ArrayLike,
    px: npt.ArrayLike,
    py: npt.ArrayLike,
    pz: npt.ArrayLike,
    energy: npt.ArrayLike,
) -> np.ndarray:
    """Sum of all constituents per jet: float64 ``(n_jets, 4)`` (E, px, py, pz), GeV."""
    offsets_arr = np.ascontiguousarray(np.asarray(offsets), dtype=np.int64)
    cols = [_as_flat_float(n, v) for n, v in (("px", px), ("py", py), ("pz", pz), ("energy", energy))]
    out = np.empty((offsets_arr.shape[0] - 1, 4), dtype=np.float64)
    kernels.jet_p4_kernel(offsets_arr, cols[0], cols[1], cols[2], cols[3], out)
    return out


def jet_four_momenta(p4: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Sum of the kept (masked) constituents of padded jets.

    ``p4`` float ``(n_jets, N, 4)``, ``mask`` bool ``(n_jets, N)`` -> float64 ``(n_jets, 4)``.
    """
    p4 = np.asarray(p4)
    mask = np.asarray(mask, dtype=np.bool_)
    if p4.ndim != 3 or p4.shape[2] != 4 or mask.shape != p4.shape[:2]:
        raise ValueError(f"expected p4 (n, N, 4) and mask (n, N), got {p4.shape} and {mask.shape}")
    out = np.empty((p4.shape[0], 4), dtype=np.float64)
    kernels.jet_p4_padded_kernel(p4, mask, out)
    return out


def rest_frame_boosts(
    jet_p4: np.ndarray, min_rel_mass: float = REST_FRAME_MIN_REL_MASS
) -> tuple[np.ndarray, np.ndarray]:
    """Pure Lorentz boosts into each jet's rest frame.

    Parameters
    ----------
    jet_p4 : float ``(n_jets, 4)`` (E, px, py, pz), GeV.
    min_rel_mass : jets with ``m <= min_rel_mass * E`` (or m^2 <= 0, or E <= 0) get no boost.

    Returns
    -------
    boosts : float64 ``(n_jets, 4, 4)`` with ``boosts[i] @ jet_p4[i] = (m_i, 0, 0, 0)``;
        the identity where no rest frame exists.
    valid : bool ``(n_jets,)``, False where the identity was used (empty, massless or
        space-like jets).
    """
    jet_p4 = np.ascontiguousarray(jet_p4, dtype=np.float64)
    if jet_p4.ndim != 2 or jet_p4.shape[1] != 4:
        raise ValueError(f"jet_p4 must have shape (n_jets, 4), got {jet_p4.shape}")
    out = np.empty((jet_p4.shape[0], 4, 4), dtype=np.float64)
    valid = np.empty(jet_p4.shape[0], dtype=np.bool_)
    kernels.rest_frame_boost_kernel(jet_p4, float(min_rel_mass), out, valid)
    return out, valid


def reference_vectors(
    n_jets: int,
    names: Sequence[str] = ("beam_plus", "beam_minus", "time"),
    boosts: np.ndarray | None = None,
) -> np.ndarray:
    """Reference four-vectors per jet for symmetry breaking: float64 ``(n_jets, R, 4)``.

    ``names`` picks from :data:`REFERENCE_VECTORS` (beams (1,0,0,+-1), time (1,0,0,0)).
    If ``boosts`` (``(n_jets, 4, 4)``, e.g. from :func:`rest_frame_boosts`) is given, each jet's
    references are transformed with its boost, so that references and momenta stay in the same
    frame when jets are brought to rest.
    """
    unknown = [n for n in names if n not in REFERENCE_VECTORS]
    if unknown:
        raise ValueError(f"unknown reference vectors {unknown}; choose from {sorted(REFERENCE_VECTORS)}")
    base = np.array([REFERENCE_VECTORS[n] for n in names], dtype=np.float64)
    refs = np.broadcast_to(base, (int(n_jets), len(names), 4))
    if boosts is None:
        return np.array(refs)
    boosts = np.asarray(boosts, dtype=np.float64)
    if boosts.shape != (int(n_jets), 4, 4):
        raise ValueError(f"boosts must have shape {(int(n_jets), 4, 4)}, got {boosts.shape}")
    return np.einsum("nab,rb->nra", boosts, base)


def constituent_features(
    p4: np.ndarray,
    mask: np.ndarray,
    jet_p4: np.ndarray | None = None,
    pt_floor: float = FEATURE_PT_FLOOR,
) -> np.ndarray:
    """Non-invariant per-constituent scalars :data:`FEATURE_NAMES` relative to the jet.

    ``p4`` float ``(n_jets, N, 4)``, ``mask`` bool ``(n_jets, N)``, ``jet_p4`` ``(n_jets, 4)``
    (default: the sum of the masked constituents). Returns float64 ``(n_jets, N, 5)``:
    log(pT/GeV), log(E/GeV), delta-eta, delta-phi (wrapped to [-pi, pi)), delta-R; zeros in
    padded slots.
    """
    p4 = np.asarray(p4)
    mask = np.asarray(mask, dtype=np.bool_)
    if jet_p4 is None:
        jet_p4 = jet_four_momenta(p4, mask)
    jet_p4 = np.ascontiguousarray(jet_p4, dtype=np.float64)
    out = np.empty(p4.shape[:2] + (len(FEATURE_NAMES),), dtype=np.float64)
    kernels.constituent_features_kernel(p4, mask, jet_p4, float(pt_floor), out)
    return out
