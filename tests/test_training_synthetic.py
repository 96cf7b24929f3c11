"""Synthetic labelled jet files for the training/tagger tests (plus tests of the generator).

Signal jets have three hard prongs about 0.4 apart (large jet mass), background jets one prong
(small mass), so even the jet-mass baseline separates them. Files use the JetClass layout that
``lloca-hep generate`` writes: TTree ``jets``, counter ``npart``, jagged float32
``part_px, part_py, part_pz, part_energy``, float32 ``jet_pt``, int32 ``is_signal``.
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import uproot

JET_PT_GEV = 600.0
PRONG_SEPARATION = 0.4
CONSTITUENT_SPREAD = 0.04


def synthetic_jets(n_jets: int, seed: int, *, n_empty: int = 0) -> dict[str, object]:
    """Arrays for ``n_jets`` jets (half signal), the first ``n_empty`` without constituents."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n_jets) < 0.5).astype(np.int32)
    px, py, pz, en, jet_pt = [], [], [], [], []
    for i in range(n_jets):
        if i < n_empty:
            for col in (px, py, pz, en):
                col.append(np.zeros(0, np.float32))
            jet_pt.append(0.0)
            continue
        eta0, phi0 = rng.uniform(-1.5, 1.5), rng.uniform(-np.pi, np.pi)
        n_prongs = 3 if labels[i] else 1
        fractions = rng.dirichlet(np.full(n_prongs, 3.0))
        etas, phis, pts = [], [], []
        for k in range(n_prongs):
            angle = rng.uniform(0, 2 * np.pi)
            d = 0.0 if n_prongs == 1 else PRONG_SEPARATION * rng.uniform(0.7, 1.3)
            n_c = int(rng.integers(4, 16))
            etas.append(eta0 + d * np.cos(angle) + rng.normal(0, CONSTITUENT_SPREAD, n_c))
            phis.append(phi0 + d * np.sin(angle) + rng.normal(0, CONSTITUENT_SPREAD, n_c))
            pts.append(JET_PT_GEV * fractions[k] * rng.dirichlet(np.ones(n_c)))
        eta, phi, pt = (np.concatenate(x) for x in (etas, phis, pts))
        cx, cy, cz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
        px.append(cx.astype(np.float32))
        py.append(cy.astype(np.float32))
        pz.append(cz.astype(np.float32))
        en.append(np.sqrt(cx**2 + cy**2 + cz**2).astype(np.float32))
        jet_pt.append(float(np.hypot(cx.sum(), cy.sum())))
    part = ak.zip({"px": ak.Array(px), "py": ak.Array(py), "pz": ak.Array(pz),
                   "energy": ak.Array(en)})
    return {"part": part, "jet_pt": np.asarray(jet_pt, np.float32), "is_signal": labels}


def write_jet_file(path: str | Path, n_jets: int, seed: int, *, n_empty: int = 0) -> Path:
    """Write a synthetic JetClass-layout ROOT file and return its path."""
    path = Path(path)
    data = synthetic_jets(n_jets, seed, n_empty=n_empty)
    with uproot.recreate(path) as f:
        tree = f.mktree("jets", {k: (v.type if isinstance(v, ak.Array) else v.dtype)
                                 for k, v in data.items()})
        tree.extend(data)
    return path


def test_synthetic_file_reads_back_with_labels(tmp_path):
    from lloca_hep.io import read_jets

    path = write_jet_file(tmp_path / "s.root", 50, seed=1, n_empty=2)
    jets = read_jets(path)
    assert len(jets) == 50
    assert set(np.unique(ak.to_numpy(jets.is_signal))) <= {0, 1}
    counts = ak.to_numpy(ak.num(jets.constituents, axis=1))
    assert (counts[:2] == 0).all() and (counts[2:] >= 4).all()
