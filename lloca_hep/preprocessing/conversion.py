"""Polar -> Cartesian four-momenta: the one implementation every route uses.

>>> import numpy as np
>>> px, py, pz, E = polar_to_cartesian(np.array([10.0]), np.array([0.0]), np.array([0.0]),
...                                    np.array([0.0]))
>>> float(px[0]), float(E[0])
(10.0, 10.0)

Used by :func:`lloca_hep.io.read_jets` (PFNano and user-named pt/eta/phi/mass branches) and by
:class:`lloca_hep.integrations.coffea.JetTagger`, so both give bit-identical momenta.
"""

from __future__ import annotations

import numpy as np

__all__ = ["polar_to_cartesian"]


def polar_to_cartesian(
    pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, mass: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(px, py, pz, E)`` float64 ``(n,)`` in GeV from pT (GeV), eta, phi (rad), mass (GeV).

    Inputs are cast to float64 first. Negative masses follow vector's convention,
    ``E^2 = |p|^2 + m|m|``; a negative ``E^2`` gives ``E = 0``, which the momentum check
    (:mod:`lloca_hep.preprocessing.validation`) then reports as space-like.
    """
    pt, eta, phi, mass = (np.asarray(c, dtype=np.float64) for c in (pt, eta, phi, mass))
    px = pt * np.cos(phi)
    py = pt * np.sin(phi)
    pz = pt * np.sinh(eta)
    e2 = px * px + py * py + pz * pz + mass * np.abs(mass)
    energy = np.sqrt(np.maximum(e2, 0.0))
    return px, py, pz, energy
