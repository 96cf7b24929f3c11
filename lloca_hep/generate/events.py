"""Event generation and jet building for one chunk of jets (runs inside worker processes).

Pythia 8 (``pythia8mc``) and fastjet are imported lazily; :func:`require_generators` raises an
``ImportError`` that names the ``generate`` extra when either is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import recipe

log = logging.getLogger(__name__)

#: class identifiers (also the value of the ``is_signal`` branch)
SIGNAL = 1
BACKGROUND = 0

#: give up a chunk when this many events in a row fail in Pythia (a broken setup, not bad luck)
MAX_CONSECUTIVE_FAILURES = 100
#: give up a chunk when it needs more than this many events per requested jet (efficiency is
#: about 0.5 to 1 jet per event for this recipe)
MAX_EVENTS_PER_JET = 200

_INSTALL_HINT = "install the optional extra: pip install 'lloca-hep[generate]'"


def require_generators() -> tuple[Any, Any]:
    """Import and return ``(pythia8mc, fastjet)``; ImportError naming the extra if missing."""
    try:
        import pythia8mc
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"sample generation needs pythia8mc: {_INSTALL_HINT} ({err})") from err
    try:
        import fastjet
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"sample generation needs fastjet: {_INSTALL_HINT} ({err})") from err
    return pythia8mc, fastjet


@dataclass(frozen=True)
class TopDecay:
    """Truth partons of one hadronic top decay, ordered (top, b, q, q').

    ``p4``: float64 ``(4, 4)``, one row (E, px, py, pz) in GeV per parton;
    ``eta``, ``phi``: float64 arrays of shape ``(4,)`` (pseudorapidity, azimuth in radians).
    The top is its last copy before decay (after radiation recoils); the b and the W's quarks are
    the partons as they come out of the decays, before their own showers. ``b`` is the down-type
    quark of the top decay (b in practically all events, d or s for the CKM-suppressed modes).
    """

    p4: np.ndarray
    eta: np.ndarray
    phi: np.ndarray


@dataclass(frozen=True)
class ChunkTask:
    """One unit of work: ``n_jets`` jets of class ``class_id`` with a fixed Pythia seed."""

    index: int
    class_id: int
    chunk_index: int
    n_jets: int
    pythia_seed: int
    max_constituents: int


@dataclass
class ChunkResult:
    """Jets of one chunk, in generation order.

    ``npart``: int32 ``(n_jets,)`` constituents kept per jet (after truncation);
    ``part``: float32 ``(sum(npart), 4)`` constituent (px, py, pz, E) in GeV, each jet's
    constituents sorted by decreasing pT; ``jet``: float32 ``(n_jets, 5)`` (pt [GeV], eta, phi
    [rad, (-pi, pi]], mass [GeV], energy [GeV]) of the jet built from *all* its constituents;
    ``truth``: float64 ``(n_jets, 4, 4)``, for signal jets the (E, px, py, pz) in GeV of the
    matched top decay's partons (top, b, q, q'), NaN for background jets (not written to files);
    ``n_events``: events generated for this chunk.
    """

    index: int
    class_id: int
    npart: np.ndarray
    part: np.ndarray
    jet: np.ndarray
    truth: np.ndarray
    n_events: int

    @property
    def n_jets(self) -> int:
        return int(self.npart.shape[0])


def configure_pythia(settings: Sequence[str], seed: int, hooks: Any = None) -> Any:
    """A quiet, initialised Pythia instance from ``settings`` plus ``Random:seed = seed``.

    ``hooks``: an optional ``pythia8mc.UserHooks`` instance (the caller keeps a reference to it
    for as long as the Pythia instance lives).
    """
    pythia8mc, _ = require_generators()
    if not 1 <= seed <= recipe.PYTHIA_SEED_MAX:
        raise ValueError(f"Pythia seed must be in 1..{recipe.PYTHIA_SEED_MAX}, got {seed}")
    pythia = pythia8mc.Pythia("", False)  # no banner
    lines = (*settings, f"Random:seed = {seed}")
    for line in lines:
        if not pythia.readString(line):
            raise RuntimeError(f"Pythia rejected the setting {line!r}")
    if hooks is not None:
        pythia.setUserHooksPtr(hooks)
    if not pythia.init():
        raise RuntimeError("Pythia initialisation failed for settings: " + "; ".join(lines))
    return pythia


def make_pythia(class_id: int, seed: int) -> Any:
    """A quiet, initialised Pythia instance for signal (1) or background (0) with ``Random:seed``."""
    if class_id not in (SIGNAL, BACKGROUND):
        raise ValueError(f"class_id must be {SIGNAL} (signal) or {BACKGROUND} (background), got {class_id}")
    return configure_pythia(
        recipe.COMMON_SETTINGS
        + (recipe.SIGNAL_SETTINGS if class_id == SIGNAL else recipe.BACKGROUND_SETTINGS),
        seed,
    )


def find_top_decays(event: Any) -> list[TopDecay]:
    """Hadronic top decays in a Pythia event record: one :class:`TopDecay` per top.

    For each top's last copy, the daughters must be a W and a quark; the W's last copy must decay
    into two quarks. Tops whose decay does not have this form are skipped.
    """
    decays: list[TopDecay] = []
    for i in range(event.size()):
        top = event[i]
        if top.idAbs() != recipe.TOP_PDG_ID or top.iBotCopyId() != i:
            continue
        w_index = -1
        b_index = -1
        for d in top.daughterList():
            ida = event[d].idAbs()
            if ida == recipe.W_PDG_ID:
                w_index = d
            elif ida in recipe.LIGHT_QUARK_PDG_IDS:
                b_index = d
        if w_index < 0 or b_index < 0:
            continue
        w_last = event[w_index].iBotCopyId()
        quarks = [d for d in event[w_last].daughterList()
                  if event[d].idAbs() in recipe.LIGHT_QUARK_PDG_IDS]
        if len(quarks) != 2:
            continue
        members = [i, b_index, quarks[0], quarks[1]]
        decays.append(TopDecay(
            p4=np.array([(event[k].e(), event[k].px(), event[k].py(), event[k].pz())
                         for k in members], dtype=np.float64),
            eta=np.array([event[k].eta() for k in members], dtype=np.float64),
            phi=np.array([event[k].phi() for k in members], dtype=np.float64),
        ))
    return decays


def match_top_decay(jet_eta: float, jet_phi: float, decays: list[TopDecay]) -> TopDecay | None:
    """The first top decay with all four partons within the match radius of the jet, else None."""
    for d in decays:
        if recipe.decay_contained(jet_eta, jet_phi, d.eta, d.phi):
            return d
    return None


def is_top_jet(jet_eta: float, jet_phi: float, decays: list[TopDecay]) -> bool:
    """True when at least one top decay has all four partons within the match radius of the jet."""
    return match_top_decay(jet_eta, jet_phi, decays) is not None


def visible_final_state(event: Any, fastjet: Any, with_index: bool = False) -> list[Any]:
    """PseudoJets (px, py, pz, E in GeV) of the visible final-state particles (no neutrinos).

    With ``with_index`` each PseudoJet's ``user_index`` is the particle's event-record index.
    """
    if not with_index:
        return [fastjet.PseudoJet(p.px(), p.py(), p.pz(), p.e())
                for p in event if p.isFinal() and p.isVisible()]
    out = []
    for i, p in enumerate(event):
        if p.isFinal() and p.isVisible():
            pj = fastjet.PseudoJet(p.px(), p.py(), p.pz(), p.e())
            pj.set_user_index(i)
            out.append(pj)
    return out


class JetEvents:
    """Pythia events clustered into anti-kT jets: iterate to get each event's candidate jets.

    Each step generates one event (events that fail in Pythia are retried, up to
    :data:`MAX_CONSECUTIVE_FAILURES` in a row), clusters its visible final state with
    ``jet_def`` and yields the inclusive jets above ``jet_pt_min`` (GeV), hardest first; events
    without such a jet are skipped. ``n_events`` counts the events generated so far. Raises
    ``RuntimeError`` (naming ``where``) once ``max_events`` are used up: the consumer stops
    iterating when it has its jets. The event record is ``pythia.event``.
    """

    def __init__(self, pythia: Any, fastjet: Any, jet_def: Any, jet_pt_min: float,
                 max_events: int, where: str, with_index: bool = False) -> None:
        self.pythia = pythia
        self.fastjet = fastjet
        self.jet_def = jet_def
        self.jet_pt_min = jet_pt_min
        self.max_events = max_events
        self.where = where
        self.with_index = with_index
        self.n_events = 0
        self.sequence: Any = None

    def __iter__(self) -> Iterator[list[Any]]:
        fastjet = self.fastjet
        event = self.pythia.event
        failures = 0
        while True:
            if self.n_events >= self.max_events:
                raise RuntimeError(f"{self.where}: not enough jets after {self.n_events} events; "
                                   "check the settings")
            if not self.pythia.next():
                failures += 1
                if failures >= MAX_CONSECUTIVE_FAILURES:
                    raise RuntimeError(f"{self.where}: Pythia failed {failures} events in a row")
                continue
            failures = 0
            self.n_events += 1
            particles = visible_final_state(event, fastjet, self.with_index)
            if not particles:
                continue
            # keep the sequence alive while its jets are used (constituents refer to it)
            self.sequence = fastjet.ClusterSequence(particles, self.jet_def)
            jets = fastjet.sorted_by_pt(self.sequence.inclusive_jets(self.jet_pt_min))
            if jets:
                yield list(jets)


def silence_fastjet() -> None:
    """Switch off fastjet's banner (printed once per process otherwise)."""
    import fastjet._swig as fastjet_swig

    fastjet_swig.ClusterSequence.set_fastjet_banner_stream(None)


def _jet_record(jet: Any, max_constituents: int) -> tuple[np.ndarray, np.ndarray]:
    """(constituents float64 (n, 4) px,py,pz,E sorted by decreasing pT and truncated, jet (5,))."""
    cons = np.array([(c.px(), c.py(), c.pz(), c.e()) for c in jet.constituents()],
                    dtype=np.float64).reshape(-1, 4)
    pt = np.hypot(cons[:, 0], cons[:, 1])
    order = np.argsort(-pt, kind="stable")[:max_constituents]
    summary = np.array([jet.pt(), jet.eta(), jet.phi_std(), jet.m(), jet.e()], dtype=np.float64)
    return cons[order], summary


def run_chunk(task: ChunkTask) -> ChunkResult:
    """Generate ``task.n_jets`` selected jets of one class (signal jets truth-matched to a top).

    Every selected jet of an event is kept, hardest first, until the quota is reached (the last
    event may contribute fewer jets than it has). Deterministic for a given task.
    """
    _, fastjet = require_generators()
    silence_fastjet()
    jet_def = fastjet.JetDefinition(fastjet.antikt_algorithm, recipe.JET_RADIUS)
    pythia = make_pythia(task.class_id, task.pythia_seed)
    event = pythia.event

    consts: list[np.ndarray] = []
    jets: list[np.ndarray] = []
    truth: list[np.ndarray] = []
    no_truth = np.full((4, 4), np.nan)
    where = f"chunk {task.index} (class {task.class_id}, Pythia seed {task.pythia_seed})"
    loop = JetEvents(pythia, fastjet, jet_def, recipe.JET_PT_MIN_GEV,
                     MAX_EVENTS_PER_JET * max(task.n_jets, 1), where)
    for jets_of_event in ([] if task.n_jets == 0 else loop):
        candidates = [j for j in jets_of_event if recipe.passes_jet_cuts(j.pt(), j.eta())]
        if not candidates:
            continue
        decays = find_top_decays(event) if task.class_id == SIGNAL else []
        for jet in candidates:
            matched = (match_top_decay(jet.eta(), jet.phi_std(), decays)
                       if task.class_id == SIGNAL else None)
            if task.class_id == SIGNAL and matched is None:
                continue
            c, s = _jet_record(jet, task.max_constituents)
            consts.append(c)
            jets.append(s)
            truth.append(no_truth if matched is None else matched.p4)
            if len(jets) == task.n_jets:
                break
        if len(jets) == task.n_jets:
            break

    npart = np.array([len(c) for c in consts], dtype=np.int32)
    part = (np.concatenate(consts) if consts else np.zeros((0, 4))).astype(np.float32)
    jet_arr = (np.stack(jets) if jets else np.zeros((0, 5))).astype(np.float32)
    truth_arr = np.stack(truth) if truth else np.zeros((0, 4, 4))
    return ChunkResult(index=task.index, class_id=task.class_id, npart=npart, part=part,
                       jet=jet_arr, truth=truth_arr, n_events=loop.n_events)
