"""The declarative input specification of a tagger: which per-particle scalars it reads, from
where, how they are transformed, and which role they play.

An :class:`InputSpec` is plain data, stored as JSON in the tagger file's header (never
pickled). Each :class:`FeatureSpec` has

``name``
    the canonical (JetClass) name, e.g. ``part_charge``; the field of the constituent records
    that :func:`lloca_hep.io.read_jets` returns (raw values, before the transform);
``sources``
    per layout family (``"jetclass"``: one-entry-per-jet trees, also used for user-named
    ``branches=``; ``"nanoaod"``: PFNano ``PFCands`` fields) a :class:`Source`: a branch, an
    optional unit ``scale`` (PFNano impact parameters are in cm, JetClass's in mm), or a
    particle-ID flag derived from a PDG-id branch and a charge branch;
``transform``
    steps applied in order to the raw values of real constituents (padded slots stay zero):
    ``log`` (``log(max(x, floor))``), ``tanh``, ``standardise`` (``(x - a) * b``), ``clip``
    (``min``/``max``);
``role``
    ``"invariant"``: a Lorentz scalar (charge, particle ID, impact parameters and their errors
    are detector-level quantities that no boost of the jet changes): fed to the backbone and
    to the frames net, keeping exact equivariance; ``"symmetry_breaking"``: a non-invariant
    scalar, fed to the frames net only (it breaks the symmetry there, deliberately).

The model sees ``scalars (B, N, S)``: the invariant features first (in spec order), then the
symmetry-breaking ones (:attr:`InputSpec.ordered`).

>>> from lloca_hep.features import preset
>>> spec = preset("kinpid")
>>> spec.names[:2]
('part_charge', 'part_isChargedHadron')
>>> InputSpec.from_json(spec.to_json()) == spec
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lloca_hep.errors import FeatureError

__all__ = [
    "LAYOUT_FAMILIES",
    "PID_FLAGS",
    "ROLES",
    "TRANSFORM_OPS",
    "FeatureSpec",
    "InputSpec",
    "Source",
    "Transform",
]

#: Roles of a feature.
ROLES = ("invariant", "symmetry_breaking")
#: Transform operations, in the spelling of the JSON header.
TRANSFORM_OPS = ("log", "tanh", "standardise", "clip")
#: Layout families a feature has sources for (``mapping`` layouts use the ``jetclass`` ones).
LAYOUT_FAMILIES = ("jetclass", "nanoaod")
#: Particle-ID flags derivable from a PDG id and a charge (JetClass's five flags).
PID_FLAGS = ("isChargedHadron", "isNeutralHadron", "isPhoton", "isElectron", "isMuon")
#: Default floor of the ``log`` transform.
LOG_FLOOR = 1e-8
#: Value of a per-particle scalar in padded slots.
PAD_VALUE = 0.0


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FeatureError(f"{what} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Transform:
    """One transform step; ``op`` is one of :data:`TRANSFORM_OPS`."""

    op: str
    a: float = 0.0
    b: float = 1.0
    min: float | None = None
    max: float | None = None
    floor: float = LOG_FLOOR

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The step applied to ``x`` (float32, any shape), a new array."""
        if self.op == "log":
            return np.log(np.maximum(x, np.float32(self.floor)))
        if self.op == "tanh":
            return np.tanh(x)
        if self.op == "standardise":
            return (x - np.float32(self.a)) * np.float32(self.b)
        lo = -np.inf if self.min is None else self.min
        hi = np.inf if self.max is None else self.max
        return np.clip(x, np.float32(lo), np.float32(hi))

    def to_json(self) -> dict[str, Any]:
        if self.op == "log":
            return {"op": "log", "floor": self.floor}
        if self.op == "standardise":
            return {"op": "standardise", "a": self.a, "b": self.b}
        if self.op == "clip":
            return {"op": "clip", "min": self.min, "max": self.max}
        return {"op": self.op}

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Transform:
        if isinstance(obj, str):
            obj = {"op": obj}
        if not isinstance(obj, Mapping) or obj.get("op") not in TRANSFORM_OPS:
            raise FeatureError(
                f"{where}: a transform step is an object with 'op' one of {TRANSFORM_OPS} "
                f"(e.g. {{'op': 'standardise', 'a': 1.7, 'b': 0.7}}), got {obj!r}")
        op = obj["op"]
        allowed = {"log": {"floor"}, "tanh": set(), "standardise": {"a", "b"},
                   "clip": {"min", "max"}}[op]
        unknown = set(obj) - allowed - {"op"}
        if unknown:
            raise FeatureError(f"{where}: transform {op!r} takes {sorted(allowed) or 'no'} "
                               f"parameters, got {sorted(unknown)}")
        if op == "log":
            floor = _number(obj.get("floor", LOG_FLOOR), f"{where}: log floor")
            if floor <= 0:
                raise FeatureError(f"{where}: log floor must be positive, got {floor}")
            return cls("log", floor=floor)
        if op == "standardise":
            return cls("standardise", a=_number(obj.get("a", 0.0), f"{where}: standardise a"),
                       b=_number(obj.get("b", 1.0), f"{where}: standardise b"))
        if op == "clip":
            lo = obj.get("min")
            hi = obj.get("max")
            lo = None if lo is None else _number(lo, f"{where}: clip min")
            hi = None if hi is None else _number(hi, f"{where}: clip max")
            if lo is not None and hi is not None and lo > hi:
                raise FeatureError(f"{where}: clip min {lo} is above max {hi}")
            return cls("clip", min=lo, max=hi)
        return cls(op)


@dataclass(frozen=True)
class Source:
    """Where a raw feature comes from in one layout family.

    ``branch``: the branch (flat layouts) or the ``PFCands`` field (NanoAOD; ``PFCands_d0``
    and ``d0`` both name the field ``d0`` of the PF-candidate collection); raw value =
    ``value * scale``. For a particle-ID flag ``pid`` is one of :data:`PID_FLAGS`, ``branch``
    holds the PDG id and ``charge`` the charge branch (see :func:`lloca_hep.features.pid`).
    """

    branch: str
    scale: float = 1.0
    pid: str | None = None
    charge: str | None = None

    def branches(self) -> tuple[str, ...]:
        """The stored names this source reads."""
        return (self.branch,) if self.charge is None else (self.branch, self.charge)

    def to_json(self) -> Any:
        if self.pid is not None:
            return {"pid": self.pid, "pdgid": self.branch, "charge": self.charge}
        if self.scale != 1.0:
            return {"branch": self.branch, "scale": self.scale}
        return self.branch

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Source:
        if isinstance(obj, str) and obj:
            return cls(obj)
        if isinstance(obj, Mapping):
            if "pid" in obj:
                flag, pdgid, charge = obj.get("pid"), obj.get("pdgid"), obj.get("charge")
                if flag not in PID_FLAGS or not isinstance(pdgid, str) or not pdgid \
                        or not isinstance(charge, str) or not charge or set(obj) - {"pid", "pdgid", "charge"}:
                    raise FeatureError(
                        f"{where}: a particle-ID source is {{'pid': one of {PID_FLAGS}, "
                        f"'pdgid': BRANCH, 'charge': BRANCH}}, got {dict(obj)!r}")
                return cls(pdgid, pid=flag, charge=charge)
            branch = obj.get("branch")
            if isinstance(branch, str) and branch and set(obj) <= {"branch", "scale"}:
                return cls(branch, scale=_number(obj.get("scale", 1.0), f"{where}: scale"))
        raise FeatureError(
            f"{where}: a source is a branch name, {{'branch': NAME, 'scale': S}} or "
            f"{{'pid': FLAG, 'pdgid': BRANCH, 'charge': BRANCH}}; got {obj!r}")


@dataclass(frozen=True)
class FeatureSpec:
    """One per-particle input: canonical ``name``, ``sources`` per layout family, ``transform``
    steps and ``role`` (see the module docstring)."""

    name: str
    sources: Mapping[str, Source]
    transform: tuple[Transform, ...] = ()
    role: str = "invariant"

    def source(self, family: str) -> Source | None:
        """The source for ``family`` (``"jetclass"`` or ``"nanoaod"``; ``"mapping"`` layouts
        read the ``jetclass`` names), None when absent."""
        return self.sources.get("jetclass" if family == "mapping" else family)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The transform steps applied to float32 ``x``."""
        for step in self.transform:
            x = step.apply(x)
        return x

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name,
                "sources": {k: v.to_json() for k, v in self.sources.items()},
                "transform": [t.to_json() for t in self.transform], "role": self.role}

    @classmethod
    def from_json(cls, obj: Any, where: str) -> FeatureSpec:
        if not isinstance(obj, Mapping):
            raise FeatureError(f"{where}: a feature is a JSON object, got {obj!r}")
        name = obj.get("name")
        if not isinstance(name, str) or not name.isidentifier():
            raise FeatureError(f"{where}: feature name must be an identifier, got {name!r}")
        where = f"{where}: feature {name!r}"
        unknown = set(obj) - {"name", "sources", "source", "transform", "role"}
        if unknown:
            raise FeatureError(f"{where}: unknown keys {sorted(unknown)} (allowed: name, "
                               "source or sources, transform, role)")
        raw_sources = obj.get("sources")
        if raw_sources is None and "source" in obj:
            raw_sources = {"jetclass": obj["source"]}
        if not isinstance(raw_sources, Mapping) or not raw_sources:
            raise FeatureError(f"{where}: give 'source' (a branch) or 'sources' "
                               f"{{family: source}} for families {LAYOUT_FAMILIES}")
        bad = [k for k in raw_sources if k not in LAYOUT_FAMILIES]
        if bad:
            raise FeatureError(f"{where}: unknown layout families {bad}; use {LAYOUT_FAMILIES}")
        sources = {k: Source.from_json(v, f"{where} ({k} source)") for k, v in raw_sources.items()}
        steps = obj.get("transform", [])
        if isinstance(steps, (str, Mapping)):
            steps = [steps]
        if not isinstance(steps, Sequence):
            raise FeatureError(f"{where}: transform must be a list of steps, got {steps!r}")
        transform = tuple(Transform.from_json(s, where) for s in steps)
        role = obj.get("role", "invariant")
        if role not in ROLES:
            raise FeatureError(f"{where}: role must be one of {ROLES}, got {role!r}")
        return cls(name, sources, transform, role)


@dataclass(frozen=True)
class InputSpec:
    """The per-particle inputs of a tagger (besides the four-momenta, always read).

    ``name``: a preset name (``kin``, ``kinpid``, ``full``) or ``"custom"``; ``features``: the
    :class:`FeatureSpec` list in the order the user gave.
    """

    name: str = "kin"
    features: tuple[FeatureSpec, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        names = [f.name for f in self.features]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise FeatureError(f"input set {self.name!r}: feature names repeated: {dup}")
        reserved = {"px", "py", "pz", "E"} & set(names)
        if reserved:
            raise FeatureError(f"input set {self.name!r}: {sorted(reserved)} are the "
                               "four-momentum fields, not feature names")

    @property
    def ordered(self) -> tuple[FeatureSpec, ...]:
        """Features in the column order of ``scalars``: invariant ones first."""
        return tuple(f for f in self.features if f.role == "invariant") + tuple(
            f for f in self.features if f.role != "invariant")

    @property
    def names(self) -> tuple[str, ...]:
        """Column names of ``scalars (B, N, S)``, in order."""
        return tuple(f.name for f in self.ordered)

    @property
    def num_invariant(self) -> int:
        """S_inv: scalars fed to the backbone and the frames net."""
        return sum(f.role == "invariant" for f in self.features)

    @property
    def num_symmetry_breaking(self) -> int:
        """Scalars fed to the frames net only."""
        return len(self.features) - self.num_invariant

    def __len__(self) -> int:
        return len(self.features)

    def transform(self, raw: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Transform padded raw values ``(n, N, S)`` (columns :attr:`names`) in place into the
        network input; padded slots (``mask`` False, ``(n, N)``) are set to zero. float32."""
        out = np.asarray(raw, dtype=np.float32)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            for k, feat in enumerate(self.ordered):
                if feat.transform:
                    out[..., k] = feat.apply(out[..., k])
        out[~mask] = PAD_VALUE
        return out

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "features": [f.to_json() for f in self.features]}

    @classmethod
    def from_json(cls, obj: Any, where: str = "input specification") -> InputSpec:
        if not isinstance(obj, Mapping) or not isinstance(obj.get("features", []), Sequence):
            raise FeatureError(f"{where}: expected {{'name': ..., 'features': [...]}}, got "
                               f"{obj!r}")
        name = obj.get("name", "custom")
        if not isinstance(name, str):
            raise FeatureError(f"{where}: name must be a string, got {name!r}")
        feats = tuple(FeatureSpec.from_json(f, where) for f in obj.get("features", []))
        return cls(name, feats)
