"""The ten JetClass-like jet classes as data: Pythia settings, decay signature, pT-hat window.

Truth level, after JetClass (Qu, Li, Qian 2022) without its detector simulation: Pythia 8, pp
at 14 TeV, default tune, no multi-parton interactions, no pile-up; particles with
c*tau0 > 10 mm are stable (``ParticleDecays:limitTau0 = on``, ``tau0Max = 10``): b and c
hadrons and taus decay (displaced tracks), K0S, Lambda, Sigma+-, Xi and Omega do not. Jets:
anti-kT R = 0.8 on the visible final-state particles, 500 < pT < 1000 GeV, |eta| < 2.

Each signal class is one boosted resonance from a 2 -> 2 process with its decay forced:

=====  ==========================================  ===========================  ============
class  process                                     forced decay                 pT-hat, GeV
=====  ==========================================  ===========================  ============
QCD    ``HardQCD:all``                             -                            450 - 1100
Hbb    H + jet through the top loop (gg, qg, qq)   H -> b bbar                  450 - 1100
Hcc    same                                        H -> c cbar                  450 - 1100
Hgg    same                                        H -> g g                     450 - 1100
H4q    same                                        H -> W W*, both W -> q q'    450 - 1100
Hqql   same                                        H -> W W*, one W -> e/mu nu  500 - 1200
                                                   and one W -> q q'
Zqq    Z + jet (q qbar -> Z g, q g -> Z q), Z only  Z -> q qbar (d u s c b)      450 - 1100
Wqq    W + jet (q qbar' -> W g, q g -> W q')        W -> q q' (d u s c b)        450 - 1100
Tbqq   t tbar (gg and q qbar)                      both W -> q q'               450 - 1100
Tbl    t tbar (gg and q qbar)                      both W -> e/mu nu            500 - 1200
=====  ==========================================  ===========================  ============

Hqql: Pythia cannot force "one W of each kind", so W decays are restricted to quarks, e nu and
mu nu, and a process-level veto (:func:`lloca_hep.generate.jetclass_events.make_class_pythia`)
rejects, before the shower, every event whose Higgs decay is not exactly one e/mu nu plus one
q q' (about 63 %); the accepted events are exactly those a rejection after generation would
keep, at a fraction of the cost. Tbl: both Ws are forced to e/mu nu, so each top of an
event can give a Tbl jet.

The pT-hat windows (the resonance's or parton's transverse momentum) start 50 GeV below the
jet window for the hadronic classes, so jets that gain pT from radiation are not cut away;
the two classes with a neutrino start at 500 GeV and reach 1200 GeV, since their jets carry
less than the resonance's pT (measured on one core: 86 Tbl jets/s against 38 with
450 - 1100, and 48 Hqql jets/s against 37; starting at 550 GeV would sculpt the low end of
the jet pT spectrum).

A signal jet must contain, within delta-R(eta, phi) < 0.8 of its axis, every visible decay
product of its resonance (:mod:`lloca_hep.generate.truth`: the quarks, gluons and charged
leptons as they come out of the decays, before their showers; neutrinos excluded), with the
class's decay signature. QCD keeps every jet in the window, hardest first.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import recipe
from .truth import DecaySignature

#: class names in JetClass's order; their ``label_<name>`` branches keep the order of --classes
CLASS_NAMES = ("QCD", "Hbb", "Hcc", "Hgg", "H4q", "Hqql", "Zqq", "Wqq", "Tbqq", "Tbl")
#: particles with a proper decay length c*tau0 above this stay stable, mm
TAU0_MAX_MM = 10.0
#: jet selection, GeV and pseudorapidity (JetClass's window)
JET_PT_MIN_GEV = 500.0
JET_PT_MAX_GEV = 1000.0
JET_ABS_ETA_MAX = 2.0
#: pT-hat windows, GeV: hadronic final states, and the classes with a neutrino in the decay
PTHAT_HADRONIC_GEV = (450.0, 1100.0)
PTHAT_LEPTONIC_GEV = (500.0, 1200.0)
#: spawn key of class k's chunk seeds is (CLASS_SPAWN_OFFSET + k, chunk): disjoint from the
#: top/QCD sample's keys (0, 1 and the shuffle key 2)
CLASS_SPAWN_OFFSET = 10
#: spawn key of the shuffle permutation of a ten-class sample
SHUFFLE_SPAWN_KEY = 20

#: PDG identifiers
HIGGS_PDG_ID = 25
Z_PDG_ID = 23
W_PDG_ID = recipe.W_PDG_ID
TOP_PDG_ID = recipe.TOP_PDG_ID
_QUARKS = " ".join(str(i) for i in recipe.LIGHT_QUARK_PDG_IDS)
#: W -> e nu, mu nu
_LEPTONS = "11 13"

#: settings shared by all ten classes (the pT-hat window is per class)
COMMON_SETTINGS: tuple[str, ...] = (
    f"Beams:eCM = {recipe.CENTRE_OF_MASS_ENERGY_GEV}",
    "PartonLevel:MPI = off",
    "ParticleDecays:limitTau0 = on",
    f"ParticleDecays:tau0Max = {TAU0_MAX_MM}",
    "Print:quiet = on",
    "Random:setSeed = on",
)
#: H + jet with the full top-loop matrix elements, all Higgs decays off
_HIGGS_JET = (
    "HiggsSM:gg2Hg(l:t) = on",
    "HiggsSM:qg2Hq(l:t) = on",
    "HiggsSM:qqbar2Hg(l:t) = on",
    f"{HIGGS_PDG_ID}:onMode = off",
)
_TTBAR = ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on", f"{W_PDG_ID}:onMode = off")


@dataclass(frozen=True)
class ClassRecipe:
    """One jet class.

    ``process``: Pythia settings of the process and the forced decays; ``resonance_id``: PDG id
    (absolute) of the resonance a jet must contain, 0 for QCD; ``signature``: its visible decay
    products (None for QCD); ``pthat_gev``: (min, max) pT-hat in GeV; ``decay_veto``: veto, at
    process level, events without a resonance decay of this signature.
    """

    name: str
    process: tuple[str, ...]
    resonance_id: int
    signature: DecaySignature | None
    pthat_gev: tuple[float, float]
    decay_veto: bool = False

    @property
    def label(self) -> str:
        """The one-hot label branch, ``label_<name>``."""
        return f"label_{self.name}"

    @property
    def settings(self) -> tuple[str, ...]:
        """Every Pythia setting of the class (without the seed)."""
        lo, hi = self.pthat_gev
        return (*COMMON_SETTINGS, f"PhaseSpace:pTHatMin = {lo}", f"PhaseSpace:pTHatMax = {hi}",
                *self.process)


def _higgs(name: str, decay: str, signature: DecaySignature, w_decays: str | None = None,
           veto: bool = False) -> ClassRecipe:
    w = () if w_decays is None else (f"{W_PDG_ID}:onMode = off", f"{W_PDG_ID}:onIfAny = {w_decays}")
    window = PTHAT_LEPTONIC_GEV if signature.n_leptons else PTHAT_HADRONIC_GEV
    return ClassRecipe(name, (*_HIGGS_JET, f"{HIGGS_PDG_ID}:onIfMatch = {decay}", *w),
                       HIGGS_PDG_ID, signature, window, veto)


#: the recipes by class name, in :data:`CLASS_NAMES` order
RECIPES: dict[str, ClassRecipe] = {r.name: r for r in (
    ClassRecipe("QCD", ("HardQCD:all = on",), 0, None, PTHAT_HADRONIC_GEV),
    _higgs("Hbb", "5 -5", DecaySignature(n_quarks=2)),
    _higgs("Hcc", "4 -4", DecaySignature(n_quarks=2)),
    _higgs("Hgg", "21 21", DecaySignature(n_gluons=2)),
    _higgs("H4q", "24 -24", DecaySignature(n_quarks=4), _QUARKS),
    _higgs("Hqql", "24 -24", DecaySignature(n_quarks=2, n_leptons=1), f"{_QUARKS} {_LEPTONS}",
           veto=True),
    ClassRecipe("Zqq", ("WeakBosonAndParton:qqbar2gmZg = on", "WeakBosonAndParton:qg2gmZq = on",
                        "WeakZ0:gmZmode = 2", f"{Z_PDG_ID}:onMode = off",
                        f"{Z_PDG_ID}:onIfAny = {_QUARKS}"),
                Z_PDG_ID, DecaySignature(n_quarks=2), PTHAT_HADRONIC_GEV),
    ClassRecipe("Wqq", ("WeakBosonAndParton:qqbar2Wg = on", "WeakBosonAndParton:qg2Wq = on",
                        f"{W_PDG_ID}:onMode = off", f"{W_PDG_ID}:onIfAny = {_QUARKS}"),
                W_PDG_ID, DecaySignature(n_quarks=2), PTHAT_HADRONIC_GEV),
    ClassRecipe("Tbqq", (*_TTBAR, f"{W_PDG_ID}:onIfAny = {_QUARKS}"),
                TOP_PDG_ID, DecaySignature(n_quarks=3), PTHAT_HADRONIC_GEV),
    ClassRecipe("Tbl", (*_TTBAR, f"{W_PDG_ID}:onIfAny = {_LEPTONS}"),
                TOP_PDG_ID, DecaySignature(n_quarks=1, n_leptons=1), PTHAT_LEPTONIC_GEV),
)}


def parse_classes(spec: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Class names from a comma list (``"QCD,Hbb"``) or a sequence, in the given order.

    Names are matched exactly (case-sensitive, as in the label branches); an unknown, repeated
    or empty list raises ``ValueError`` naming the valid classes.
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = tuple(str(s).strip() for s in items)
    names = tuple(n for n in names if n)
    if not names:
        raise ValueError(f"no classes given; choose from {','.join(CLASS_NAMES)}")
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise ValueError(f"unknown class{'es' if len(unknown) > 1 else ''} "
                         f"{', '.join(map(repr, unknown))}; choose from {','.join(CLASS_NAMES)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"classes repeated: {', '.join(repeated)}")
    return names


def class_spawn_key(name: str) -> int:
    """First spawn-key entry of class ``name``'s chunk seeds (independent of the other classes
    requested: a class's jets depend on the seed, its count and the chunk size only)."""
    return CLASS_SPAWN_OFFSET + CLASS_NAMES.index(name)


def passes_class_cuts(pt: float, eta: float) -> bool:
    """JetClass's jet window: ``500 < pt < 1000`` GeV and ``|eta| < 2``."""
    return JET_PT_MIN_GEV < pt < JET_PT_MAX_GEV and abs(eta) < JET_ABS_ETA_MAX
