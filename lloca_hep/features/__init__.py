"""Per-particle input features (charge, particle ID, track displacement) as declarative specs.

>>> import lloca_hep
>>> jets = lloca_hep.read_jets("jetclass.root", features="full")   # doctest: +SKIP
>>> jets.constituents.part_d0val                                   # doctest: +SKIP

:class:`InputSpec` / :class:`FeatureSpec` (:mod:`.spec`), the presets ``kin``, ``kinpid`` and
``full`` (:mod:`.presets`), feature files and ``features=`` values (:mod:`.config`), the raw
columns (:mod:`.columns`) and the particle-ID flags (:mod:`.pid`).
"""

from .columns import feature_columns, feature_problems
from .config import FeatureInput, load_feature_file, resolve_features
from .pid import pid_flag
from .presets import PRESETS, preset
from .spec import PID_FLAGS, ROLES, FeatureSpec, InputSpec, Source, Transform

__all__ = [
    "PID_FLAGS",
    "PRESETS",
    "ROLES",
    "FeatureInput",
    "FeatureSpec",
    "InputSpec",
    "Source",
    "Transform",
    "feature_columns",
    "feature_problems",
    "load_feature_file",
    "pid_flag",
    "preset",
    "resolve_features",
]
