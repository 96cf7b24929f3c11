"""Small JetClass-format ROOT files for the feature and multi-class tests (written by uproot).

``write_jetclass(path, ...)`` writes TTree ``tree`` with JetClass's per-constituent branches
(``part_px/py/pz/energy``, ``part_charge``, the five PID flags, ``part_d0val/d0err/dzval/dzerr``),
``jet_pt`` and one-hot ``label_<class>`` branches (or an integer ``label`` branch). The momenta
are :func:`lloca_hep.core.testing.toy_jets`; the track displacement depends on the class (b
hadrons fly: wide |d0| for ``Hbb``, some for ``Tbqq``), so the features carry the class.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from lloca_hep.core.testing import toy_jets

CLASSES = ("QCD", "Hbb", "Tbqq")
#: width (mm) of the d0 distribution per class
D0_WIDTH_MM = {"QCD": 0.01, "Hbb": 0.5, "Tbqq": 0.1}
#: probability that a constituent is charged, per class
P_CHARGED = {"QCD": 0.3, "Hbb": 0.8, "Tbqq": 0.55}
PID_FLAGS = ("isChargedHadron", "isNeutralHadron", "isPhoton", "isElectron", "isMuon")


def write_jetclass(path: Path, n_per_class: int = 40, classes: Sequence[str] = CLASSES, *,
                   seed: int = 0, max_constituents: int = 24, label_dtype: str = "bool",
                   integer_label: bool = False, tree: str = "tree") -> Path:
    rng = np.random.default_rng(seed)
    p4, mask = toy_jets(n_per_class * len(classes), max_constituents, min_constituents=6,
                        seed=seed)
    p4n, m = p4.numpy(), mask.numpy()
    counts = m.sum(axis=1)
    flat = p4n[m]  # (n_total, 4) E, px, py, pz
    cls = np.repeat(np.arange(len(classes)), n_per_class)
    rng.shuffle(cls)
    cls_of = np.repeat(cls, counts)
    n = flat.shape[0]
    p_charged = np.array([P_CHARGED.get(c, 0.5) for c in classes])[cls_of]
    charged = rng.random(n) < p_charged
    charge = np.where(charged, rng.choice([-1.0, 1.0], size=n), 0.0).astype(np.float32)
    kind = np.where(charge != 0, 0, rng.choice([1, 2], size=n))
    width = np.array([D0_WIDTH_MM.get(c, 0.05) for c in classes])[cls_of]
    d0 = np.where(charge != 0, rng.normal(0, 1, n) * width, 0.0).astype(np.float32)
    dz = np.where(charge != 0, rng.normal(0, 1, n) * width, 0.0).astype(np.float32)
    err = np.where(charge != 0, 0.02, 0.0).astype(np.float32)
    cols = {"part_px": flat[:, 1], "part_py": flat[:, 2], "part_pz": flat[:, 3],
            "part_energy": flat[:, 0], "part_charge": charge,
            **{f"part_{f}": (kind == k).astype(np.float32) for k, f in enumerate(PID_FLAGS)},
            "part_d0val": d0, "part_d0err": err, "part_dzval": dz, "part_dzerr": err}
    data: dict[str, object] = {
        "part": ak.zip({k[5:]: ak.unflatten(v, counts) for k, v in cols.items()}),
        "jet_pt": np.hypot(p4n[..., 1].sum(1), p4n[..., 2].sum(1)),
    }
    if integer_label:
        data["label"] = cls.astype(np.int32)
    else:
        for k, c in enumerate(classes):
            data[f"label_{c}"] = (cls == k).astype(label_dtype)
    with uproot.recreate(path) as f:
        f[tree] = data
    return path
