"""Truth decay products of the boosted resonances of the ten-class recipe (H, W, Z, top).

A resonance's *visible decay products* are the quarks, gluons and charged leptons that come out
of its decay chain, taken as they leave the decays, before their own showers: the daughters of
the resonance's last copy in the event record (after initial-state recoils); an intermediate
resonance among them (the W of a top decay, the W and W* of H -> W W*) is replaced by the
daughters of its own last copy, recursively. Neutrinos are invisible: they are counted, not
kept. Anything else (a photon, a tau) is counted as "other", and no class accepts it.

:func:`find_resonance_decays` walks a Pythia event record (any object with Pythia's ``Event``
and ``Particle`` methods: ``size``, ``[]``, ``id``, ``idAbs``, ``status``, ``iBotCopyId``,
``daughterList``, ``e``, ``px``, ``py``, ``pz``, ``eta``, ``phi``), so it can be tested with a
stand-in record; :func:`signature_of` and :func:`match_decay` are pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .recipe import decay_contained

#: PDG identifiers of the quarks d, u, s, c, b
QUARK_PDG_IDS = (1, 2, 3, 4, 5)
GLUON_PDG_ID = 21
#: charged leptons the classes accept as decay products (e, mu); a tau counts as "other"
LEPTON_PDG_IDS = (11, 13)
TAU_PDG_ID = 15
NEUTRINO_PDG_IDS = (12, 14, 16)
#: resonances replaced by their own decay products (top, Z, W, H)
INTERMEDIATE_PDG_IDS = (6, 23, 24, 25)
#: status codes (absolute values) of hard-process entries (Pythia: 21-29), of beams (11-19)
HARD_STATUS = range(21, 30)
BEAM_STATUS = range(11, 20)
#: deepest resonance nesting followed (top -> W -> q q' is depth 2)
MAX_DEPTH = 4


@dataclass(frozen=True)
class DecaySignature:
    """Numbers of quarks, gluons, charged leptons (e, mu) and other visible particles."""

    n_quarks: int = 0
    n_gluons: int = 0
    n_leptons: int = 0
    n_other: int = 0


@dataclass(frozen=True)
class ResonanceDecay:
    """The visible decay products of one resonance.

    ``resonance_id``: signed PDG id of the resonance; ``ids``: int64 ``(n,)`` signed PDG ids of
    the visible products (quarks, gluons, e, mu, and any "other" visible particle);
    ``p4``: float64 ``(n, 4)`` (E, px, py, pz) in GeV; ``eta``, ``phi``: float64 ``(n,)``
    (pseudorapidity, azimuth in radians); ``n_invisible``: neutrinos in the chain.
    """

    resonance_id: int
    ids: np.ndarray
    p4: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    n_invisible: int

    @property
    def signature(self) -> DecaySignature:
        return signature_of(self.ids)


def signature_of(ids: Any) -> DecaySignature:
    """The :class:`DecaySignature` of visible products with PDG ids ``ids`` (``(n,)``, signed)."""
    a = np.abs(np.asarray(ids, dtype=np.int64)).reshape(-1)
    n_q = int(np.isin(a, QUARK_PDG_IDS).sum())
    n_g = int((a == GLUON_PDG_ID).sum())
    n_l = int(np.isin(a, LEPTON_PDG_IDS).sum())
    return DecaySignature(n_q, n_g, n_l, int(a.size) - n_q - n_g - n_l)


def _collect(event: Any, index: int, out: list[int], depth: int) -> int:
    """Append the visible products of entry ``index``'s decay to ``out``; return neutrinos."""
    n_invisible = 0
    for d in event[index].daughterList():
        ida = event[d].idAbs()
        if ida in INTERMEDIATE_PDG_IDS and depth < MAX_DEPTH:
            n_invisible += _collect(event, event[d].iBotCopyId(), out, depth + 1)
        elif ida in NEUTRINO_PDG_IDS:
            n_invisible += 1
        else:
            out.append(d)
    return n_invisible


def hard_resonances(event: Any, resonance_id: int) -> list[int]:
    """Event-record indices of the last copies of the hard-process resonances with
    ``|id| == resonance_id``.

    Only the hard-process entries at the top of the record are scanned (status 21-29 after
    the beams), so the walk is short; each found entry is replaced by its last copy.
    """
    found: list[int] = []
    for i in range(1, event.size()):
        p = event[i]
        status = abs(p.status())
        if status in BEAM_STATUS:
            continue
        if status not in HARD_STATUS:
            break
        if p.idAbs() == resonance_id:
            found.append(p.iBotCopyId())
    return found


def find_resonance_decays(event: Any, resonance_id: int) -> list[ResonanceDecay]:
    """The decays of every hard-process resonance with ``|id| == resonance_id`` (6, 23, 24, 25)."""
    decays: list[ResonanceDecay] = []
    for i in hard_resonances(event, resonance_id):
        members: list[int] = []
        n_invisible = _collect(event, i, members, 1)
        decays.append(ResonanceDecay(
            resonance_id=int(event[i].id()),
            ids=np.array([event[k].id() for k in members], dtype=np.int64),
            p4=np.array([(event[k].e(), event[k].px(), event[k].py(), event[k].pz())
                         for k in members], dtype=np.float64).reshape(-1, 4),
            eta=np.array([event[k].eta() for k in members], dtype=np.float64),
            phi=np.array([event[k].phi() for k in members], dtype=np.float64),
            n_invisible=n_invisible,
        ))
    return decays


def match_decay(
    jet_eta: float, jet_phi: float, decays: list[ResonanceDecay], signature: DecaySignature
) -> ResonanceDecay | None:
    """The first decay with the wanted ``signature`` whose visible products all lie within the
    truth-match radius (:data:`lloca_hep.generate.recipe.TRUTH_MATCH_RADIUS`) of the jet axis."""
    for d in decays:
        if d.signature == signature and decay_contained(jet_eta, jet_phi, d.eta, d.phi):
            return d
    return None
