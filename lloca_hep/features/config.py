"""``features=``: a preset name, a JSON/YAML feature file, a mapping or an :class:`InputSpec`.

A feature file (as weaver's data configs, one file per input set) is either the full form ::

    {"name": "mine", "features": [
        {"name": "part_charge", "source": "my_charge"},
        {"name": "part_d0val", "source": "my_d0", "transform": ["tanh"]},
        {"name": "part_eta", "source": "my_eta", "role": "symmetry_breaking"}]}

or a preset with renamed branches (for one-entry-per-jet trees) ::

    preset: full
    branches: {part_charge: q, part_d0val: ip2d}

YAML needs PyYAML (a dependency of dask); JSON always works.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lloca_hep.errors import FeatureError

from .presets import PRESETS, preset
from .spec import InputSpec, Source

__all__ = ["FeatureInput", "load_feature_file", "resolve_features"]

#: What ``features=`` accepts.
FeatureInput = str | os.PathLike[str] | Mapping[str, Any] | InputSpec | None
_YAML_SUFFIXES = (".yaml", ".yml")


def load_feature_file(path: str | os.PathLike[str]) -> InputSpec:
    """Read a JSON or YAML feature file (see the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise FeatureError(f"{p}: no such feature file (presets: {', '.join(PRESETS)})")
    text = p.read_text()
    try:
        if p.suffix.lower() in _YAML_SUFFIXES:
            try:
                import yaml
            except ImportError as err:  # pragma: no cover - PyYAML comes with dask
                raise FeatureError(f"{p}: reading YAML needs PyYAML (pip install pyyaml), or "
                                   "write the file as JSON") from err
            obj = yaml.safe_load(text)
        else:
            obj = json.loads(text)
    except FeatureError:
        raise
    except Exception as err:
        raise FeatureError(f"{p}: not a valid {'YAML' if p.suffix in _YAML_SUFFIXES else 'JSON'}"
                           f" feature file: {err}") from err
    return _from_mapping(obj, str(p))


def _from_mapping(obj: Any, where: str) -> InputSpec:
    if not isinstance(obj, Mapping):
        raise FeatureError(f"{where}: a feature file holds an object with 'features' or "
                           f"'preset', got {type(obj).__name__}")
    if "preset" in obj:
        unknown = set(obj) - {"preset", "branches", "name"}
        if unknown:
            raise FeatureError(f"{where}: with 'preset' only 'branches' and 'name' are "
                               f"allowed, got {sorted(unknown)}")
        name = obj["preset"]
        if name not in PRESETS:
            raise FeatureError(f"{where}: unknown preset {name!r}; choose one of {PRESETS}")
        base = preset(name)
        renamed = obj.get("branches") or {}
        if not isinstance(renamed, Mapping):
            raise FeatureError(f"{where}: 'branches' maps feature names to branch names")
        known = {f.name for f in base.features}
        bad = sorted(set(renamed) - known)
        if bad:
            raise FeatureError(f"{where}: preset {name!r} has no features {bad} (it has "
                               f"{sorted(known)})")
        feats = []
        for f in base.features:
            if f.name in renamed:
                src = Source.from_json(renamed[f.name], f"{where}: branches[{f.name!r}]")
                f = dataclasses.replace(f, sources={**f.sources, "jetclass": src})
            feats.append(f)
        return InputSpec(str(obj.get("name", name if not renamed else f"{name}-custom")),
                         tuple(feats))
    return InputSpec.from_json(obj, where)


def resolve_features(value: FeatureInput) -> InputSpec:
    """The :class:`InputSpec` for ``features=``: None or ``"kin"`` (four-momenta only), a preset
    name (``kinpid``, ``full``), a JSON/YAML file, a mapping in the file's form, or a spec."""
    if value is None:
        return preset("kin")
    if isinstance(value, InputSpec):
        return value
    if isinstance(value, Mapping):
        return _from_mapping(value, "features")
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        if text in PRESETS:
            return preset(text)
        if os.path.exists(text) or text.lower().endswith((".json", *_YAML_SUFFIXES)):
            return load_feature_file(text)
        raise FeatureError(f"features={text!r} is neither a preset ({', '.join(PRESETS)}) nor "
                           "an existing JSON/YAML feature file")
    raise FeatureError(f"features must be a preset name, a feature file, a mapping or an "
                       f"InputSpec; got {type(value).__name__}")
