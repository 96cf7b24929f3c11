"""The input presets of ParT's three input sets, with JetClass's and PFNano's branch names.

``kin``
    the four-momenta only (what every lloca-hep tagger reads; no extra scalar);
``kinpid``
    + ``part_charge`` and the five particle-ID flags ``part_isChargedHadron``,
    ``part_isNeutralHadron``, ``part_isPhoton``, ``part_isElectron``, ``part_isMuon``;
``full``
    + the track displacement ``part_d0val``, ``part_d0err``, ``part_dzval``, ``part_dzerr``
    (mm), with ``tanh`` on the values and the errors clipped to [0, 1] mm, as ParT does.

On CMS PFNano the same features come from ``PFCands_charge``, the flags from
``PFCands_pdgId`` and ``PFCands_charge`` (:mod:`lloca_hep.features.pid`), and the impact
parameters from ``PFCands_d0``, ``PFCands_d0Err``, ``PFCands_dz``, ``PFCands_dzErr``, which
CMS stores in cm: they are scaled by :data:`CM_TO_MM` so that the raw values are in mm as in
JetClass. Every preset feature is a Lorentz scalar (role ``invariant``).
"""

from __future__ import annotations

from .spec import PID_FLAGS, FeatureSpec, InputSpec, Source, Transform

__all__ = ["CM_TO_MM", "PRESETS", "preset"]

#: PFNano impact parameters are in cm; JetClass's (and the raw feature values) in mm.
CM_TO_MM = 10.0
#: The names of the presets.
PRESETS = ("kin", "kinpid", "full")
#: Clip range (mm) of the impact-parameter errors, as in ParT.
IP_ERROR_CLIP_MM = (0.0, 1.0)

_PF = "PFCands"


def _charge() -> FeatureSpec:
    return FeatureSpec("part_charge", {"jetclass": Source("part_charge"),
                                       "nanoaod": Source(f"{_PF}_charge")})


def _flag(flag: str) -> FeatureSpec:
    return FeatureSpec(f"part_{flag}", {
        "jetclass": Source(f"part_{flag}"),
        "nanoaod": Source(f"{_PF}_pdgId", pid=flag, charge=f"{_PF}_charge"),
    })


def _impact(jetclass: str, nano: str, is_error: bool) -> FeatureSpec:
    lo, hi = IP_ERROR_CLIP_MM
    steps = (Transform("clip", min=lo, max=hi),) if is_error else (Transform("tanh"),)
    return FeatureSpec(jetclass, {"jetclass": Source(jetclass),
                                  "nanoaod": Source(f"{_PF}_{nano}", scale=CM_TO_MM)}, steps)


def preset(name: str) -> InputSpec:
    """The :class:`InputSpec` of preset ``name`` (one of :data:`PRESETS`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown feature preset {name!r}; choose one of {PRESETS} or give a "
                         "JSON/YAML feature file")
    feats: list[FeatureSpec] = []
    if name in ("kinpid", "full"):
        feats += [_charge(), *(_flag(f) for f in PID_FLAGS)]
    if name == "full":
        feats += [_impact("part_d0val", "d0", False), _impact("part_d0err", "d0Err", True),
                  _impact("part_dzval", "dz", False), _impact("part_dzerr", "dzErr", True)]
    return InputSpec(name, tuple(feats))
