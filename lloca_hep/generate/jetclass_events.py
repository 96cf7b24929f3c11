"""One chunk of ten-class (JetClass-like) jets: generation, truth matching and the JetClass
per-constituent record (runs inside worker processes; Pythia and fastjet imported lazily).

Per constituent (hardest first, at most ``max_constituents``): the :data:`PART_FIELDS`
(``px py pz energy`` GeV; ``deta dphi`` to the jet axis; ``charge``; the five particle-ID
flags; ``d0val d0err dzval dzerr`` mm, :mod:`lloca_hep.generate.tracks`). Per jet the
:data:`JET_FIELDS` from *all* its constituents: ``jet_pt`` (GeV), ``jet_eta``, ``jet_phi``
(rad, (-pi, pi]), ``jet_energy``, ``jet_mass`` (GeV), ``jet_nparticles`` (constituents before
truncation).

Randomness: Pythia's seed is ``SeedSequence(seed, spawn_key=(key, chunk))`` mapped into
Pythia's range (:func:`lloca_hep.generate.recipe.pythia_seed`), the impact-parameter smearing
uses ``default_rng(SeedSequence(seed, spawn_key=(key, chunk, 1)))``, with ``key`` the class's
:func:`lloca_hep.generate.classes.class_spawn_key`. A chunk depends on nothing else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import recipe
from .classes import JET_PT_MIN_GEV, RECIPES, ClassRecipe, class_spawn_key, passes_class_cuts
from .events import (
    MAX_EVENTS_PER_JET,
    JetEvents,
    configure_pythia,
    require_generators,
    silence_fastjet,
)
from .tracks import pid_flags, relative_angles, smeared_impact_parameters
from .truth import find_resonance_decays, match_decay

log = logging.getLogger(__name__)

#: fields of the per-constituent record (branches ``part_<field>``), all float32
PART_FIELDS = ("px", "py", "pz", "energy", "deta", "dphi", "charge",
               "isChargedHadron", "isNeutralHadron", "isPhoton", "isElectron", "isMuon",
               "d0val", "d0err", "dzval", "dzerr")
#: per-jet branches, float32, in the column order of :attr:`ClassChunkResult.jet`
JET_FIELDS = ("jet_pt", "jet_eta", "jet_phi", "jet_energy", "jet_mass", "jet_nparticles")
#: last spawn-key entry of a chunk's smearing generator (the Pythia seed uses (key, chunk))
SMEAR_SPAWN_KEY = 1


@dataclass(frozen=True)
class ClassChunkTask:
    """``n_jets`` jets of class ``class_name``, chunk ``chunk_index`` of the user ``seed``."""

    index: int
    class_name: str
    chunk_index: int
    n_jets: int
    seed: int
    max_constituents: int

    @property
    def pythia_seed(self) -> int:
        return recipe.pythia_seed(self.seed, class_spawn_key(self.class_name), self.chunk_index)

    def smear_rng(self) -> np.random.Generator:
        """The impact-parameter smearing generator of this chunk."""
        key = (class_spawn_key(self.class_name), self.chunk_index, SMEAR_SPAWN_KEY)
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=key))


@dataclass
class ClassChunkResult:
    """Jets of one chunk, in generation order.

    ``npart``: int32 ``(n_jets,)`` constituents kept per jet; ``part``: float32
    ``(sum(npart), len(PART_FIELDS))`` constituent rows; ``jet``: float32
    ``(n_jets, len(JET_FIELDS))``; ``n_events``: events generated (after any process-level veto).
    """

    index: int
    class_name: str
    npart: np.ndarray
    part: np.ndarray
    jet: np.ndarray
    n_events: int

    @property
    def n_jets(self) -> int:
        return int(self.npart.shape[0])


def has_wanted_decay(record: Any, rec: ClassRecipe) -> bool:
    """True when the record (Pythia's ``process`` or ``event``) holds a decay of the class's
    resonance with the class's signature (Hqql: exactly one W -> e/mu nu and one W -> q q');
    always True for QCD."""
    if rec.signature is None:
        return True
    return any(d.signature == rec.signature
               for d in find_resonance_decays(record, rec.resonance_id))


def _decay_veto(pythia8mc: Any, rec: ClassRecipe) -> Any:
    """A ``UserHooks`` vetoing, before the shower, the events without :func:`has_wanted_decay`
    (Pythia then generates another event inside the same ``next()``)."""

    class DecayVeto(pythia8mc.UserHooks):
        def __init__(self) -> None:
            pythia8mc.UserHooks.__init__(self)
            self.n_vetoed = 0

        def canVetoProcessLevel(self) -> bool:  # noqa: N802 - Pythia's name
            return True

        def doVetoProcessLevel(self, process: Any) -> bool:  # noqa: N802 - Pythia's name
            keep = has_wanted_decay(process, rec)
            self.n_vetoed += not keep
            return not keep

    return DecayVeto()


def make_class_pythia(rec: ClassRecipe, seed: int) -> tuple[Any, Any]:
    """``(pythia, hooks)``: an initialised Pythia for class ``rec`` (``hooks`` is the decay
    veto or None; keep it alive with the Pythia instance)."""
    pythia8mc, _ = require_generators()
    hooks = _decay_veto(pythia8mc, rec) if rec.decay_veto else None
    return configure_pythia(rec.settings, seed, hooks), hooks


def constituent_record(
    jet: Any, event: Any, max_constituents: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(part, summary)`` of one jet whose constituents carry their event-record index as
    ``user_index``: float64 ``(n, len(PART_FIELDS))`` rows sorted by decreasing pT and
    truncated to ``max_constituents``, and float64 ``(len(JET_FIELDS),)``."""
    cons = jet.constituents()
    mom = np.array([(c.px(), c.py(), c.pz(), c.e()) for c in cons], dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.hypot(mom[:, 0], mom[:, 1]), kind="stable")[:max_constituents]
    mom = mom[order]
    particles = [event[cons[int(k)].user_index()] for k in order]
    info = np.array([(p.id(), p.charge(), p.xProd(), p.yProd(), p.zProd()) for p in particles],
                    dtype=np.float64).reshape(-1, 5)
    pdg_id, charge = info[:, 0].astype(np.int64), info[:, 1]
    jet_eta, jet_phi = jet.eta(), jet.phi_std()
    deta, dphi = relative_angles(mom[:, 0], mom[:, 1], mom[:, 2], jet_eta, jet_phi)
    flags = pid_flags(pdg_id, charge)
    ip = smeared_impact_parameters(info[:, 2:5], mom[:, :3], charge, rng)
    columns = {"px": mom[:, 0], "py": mom[:, 1], "pz": mom[:, 2], "energy": mom[:, 3],
               "deta": deta, "dphi": dphi, "charge": charge, **flags, **ip}
    part = np.stack([columns[f] for f in PART_FIELDS], axis=1)
    summary = np.array([jet.pt(), jet_eta, jet_phi, jet.e(), jet.m(), len(cons)], dtype=np.float64)
    return part, summary


def run_class_chunk(task: ClassChunkTask) -> ClassChunkResult:
    """Generate ``task.n_jets`` selected jets of one class (signal jets truth-matched).

    Every selected jet of an event is kept, hardest first, until the quota is reached.
    Deterministic for a given task.
    """
    _, fastjet = require_generators()
    silence_fastjet()
    rec = RECIPES[task.class_name]
    jet_def = fastjet.JetDefinition(fastjet.antikt_algorithm, recipe.JET_RADIUS)
    pythia, hooks = make_class_pythia(rec, task.pythia_seed)
    event = pythia.event
    rng = task.smear_rng()
    parts: list[np.ndarray] = []
    jets: list[np.ndarray] = []
    where = f"chunk {task.index} (class {task.class_name}, Pythia seed {task.pythia_seed})"
    loop = JetEvents(pythia, fastjet, jet_def, JET_PT_MIN_GEV,
                     MAX_EVENTS_PER_JET * max(task.n_jets, 1), where, with_index=True)
    for jets_of_event in ([] if task.n_jets == 0 else loop):
        candidates = [j for j in jets_of_event if passes_class_cuts(j.pt(), j.eta())]
        if not candidates:
            continue
        decays = (find_resonance_decays(event, rec.resonance_id)
                  if rec.signature is not None else [])
        for jet in candidates:
            if rec.signature is not None and match_decay(
                    jet.eta(), jet.phi_std(), decays, rec.signature) is None:
                continue
            p, s = constituent_record(jet, event, task.max_constituents, rng)
            parts.append(p)
            jets.append(s)
            if len(jets) == task.n_jets:
                break
        if len(jets) == task.n_jets:
            break
    if hooks is not None:
        log.debug("%s: %d events vetoed at process level", where, hooks.n_vetoed)
    npart = np.array([len(p) for p in parts], dtype=np.int32)
    part = (np.concatenate(parts) if parts else np.zeros((0, len(PART_FIELDS)))).astype(np.float32)
    jet_arr = (np.stack(jets) if jets else np.zeros((0, len(JET_FIELDS)))).astype(np.float32)
    return ClassChunkResult(index=task.index, class_name=task.class_name, npart=npart,
                            part=part, jet=jet_arr, n_events=loop.n_events)
