"""Particle-ID flags from a PDG id and a charge (the five flags of JetClass and ParT).

|pdgId| 11 is an electron, 13 a muon, 22 a photon; any other particle is a charged hadron when
its charge is non-zero and a neutral hadron otherwise. Exactly one flag is 1 per particle.

>>> import numpy as np
>>> pid_flag("isChargedHadron", np.array([211, 22, -11, 130]), np.array([1, 0, -1, 0]))
array([1., 0., 0., 0.], dtype=float32)
"""

from __future__ import annotations

import numpy as np

__all__ = ["ELECTRON_PDG_ID", "MUON_PDG_ID", "PHOTON_PDG_ID", "pid_flag"]

ELECTRON_PDG_ID = 11
MUON_PDG_ID = 13
PHOTON_PDG_ID = 22


def pid_flag(flag: str, pdg_id: np.ndarray, charge: np.ndarray) -> np.ndarray:
    """float32 ``(n,)`` 0/1 values of ``flag`` (one of :data:`lloca_hep.features.spec.PID_FLAGS`)
    for particles with PDG ids ``pdg_id`` and charges ``charge`` (both ``(n,)``)."""
    apid = np.abs(np.asarray(pdg_id).astype(np.int64, copy=False))
    lepton_or_photon = (apid == ELECTRON_PDG_ID) | (apid == MUON_PDG_ID) | (apid == PHOTON_PDG_ID)
    charged = np.asarray(charge) != 0
    if flag == "isElectron":
        out = apid == ELECTRON_PDG_ID
    elif flag == "isMuon":
        out = apid == MUON_PDG_ID
    elif flag == "isPhoton":
        out = apid == PHOTON_PDG_ID
    elif flag == "isChargedHadron":
        out = ~lepton_or_photon & charged
    elif flag == "isNeutralHadron":
        out = ~lepton_or_photon & ~charged
    else:
        raise ValueError(f"unknown particle-ID flag {flag!r}")
    return out.astype(np.float32)
