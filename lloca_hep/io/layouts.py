"""Layouts of jets in ROOT files: the branch-naming tables and names that readers look for."""

from __future__ import annotations

import re

#: Trees picked, in this order, when a file holds several and ``tree`` is not given.
PREFERRED_TREES = ("Events", "jets", "Jets", "tree", "Tree", "events")
#: JetClass constituent branches (E, px, py, pz order of the contract is restored on read).
JETCLASS_BRANCHES = {"px": "part_px", "py": "part_py", "pz": "part_pz", "E": "part_energy"}
#: NanoAOD jet fields carried by default (when present): ``jet_<name>`` from ``<coll>_<name>``.
NANOAOD_DEFAULT_JET_FIELDS = (
    "pt", "eta", "phi", "mass", "msoftdrop", "nConstituents", "hadronFlavour", "partonFlavour",
)
#: Branches listed in error messages before truncating the list.
MAX_LISTED_NAMES = 60

LAYOUTS = ("auto", "jetclass", "flat", "nanoaod", "mapping")
_TREE_CLASSES = ("TTree", "ROOT::RNTuple", "ROOT::Experimental::RNTuple")
_CARTESIAN_KEYS = {"px": ("px",), "py": ("py",), "pz": ("pz",), "E": ("E", "energy", "e", "t")}
_POLAR_KEYS = {"pt": ("pt",), "eta": ("eta",), "phi": ("phi",), "mass": ("mass", "m", "M")}
#: The accepted ``branches=`` keys, for error messages.
_ACCEPTED_BRANCH_KEYS = (
    "{px, py, pz, E} (E also spelled energy, e or t) or {pt, eta, phi, mass} (mass also "
    "spelled m or M)"
)
#: What a constituent (or NanoAOD per-event collection) branch must hold.
_EXPECTED_JAGGED = "a jagged array of numbers, one list per {unit}"
#: Memory sizes accepted as ``step_size`` (the spellings uproot understands, without sign).
_MEMORY_SIZE = re.compile(r"^\s*(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?\s*([kmgtpezy]?i?b)\s*$", re.IGNORECASE)
#: Branches of an unrelated tree shown when no tree of a file holds a jet layout.
_LISTED_PER_TREE = 8

