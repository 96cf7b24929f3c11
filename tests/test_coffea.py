"""lloca_hep.coffea.JetTagger on the real PFNano file: eager, virtual, dask, inputs and errors."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

pytest.importorskip("coffea")
dak = pytest.importorskip("dask_awkward")

from lloca_hep import coffea as lc  # noqa: E402
from lloca_hep.io import InvalidMomentumError, read_jets  # noqa: E402
from lloca_hep.tagger import load_tagger  # noqa: E402

#: Seed of the small random tagger of conftest's ``tagger_file``.
TAGGER_SEED = 1234
FATJETS_IN_FILE = 24
JETS_IN_FILE = 64

pytestmark = [
    pytest.mark.filterwarnings("ignore::RuntimeWarning:coffea.*"),
    pytest.mark.filterwarnings("ignore:.*Missing cross-reference.*"),
]


@pytest.fixture(scope="module")
def pfnano_events(pfnano: Path, nanoevents) -> Callable[[str], ak.Array]:
    """``pfnano_events(mode)``: NanoEvents of ``pfnano``, cached per mode (building them parses
    1800 branches)."""
    cache: dict[str, ak.Array] = {}

    def get(mode: str) -> ak.Array:
        if mode not in cache:
            cache[mode] = nanoevents(pfnano, mode)
        return cache[mode]

    return get


@pytest.fixture(scope="module")
def eager_scores(tagger_file: Path, pfnano_events) -> ak.Array:
    return lc.JetTagger(tagger_file)(pfnano_events("eager"))


def _same(a: ak.Array, b: ak.Array) -> bool:
    """Equal structure and bit-identical values (NaN equal to NaN)."""
    if ak.to_list(ak.num(a, axis=1)) != ak.to_list(ak.num(b, axis=1)):
        return False
    fa = ak.to_numpy(ak.flatten(a, axis=None))
    fb = ak.to_numpy(ak.flatten(b, axis=None))
    return fa.dtype == fb.dtype and np.array_equal(fa, fb, equal_nan=True)


def test_eager_scores_match_the_tagger_on_read_jets(
    tagger_file, pfnano, eager_scores, pfnano_events
):
    events = pfnano_events("eager")
    assert eager_scores.type.content.content.primitive == "float32"
    assert ak.to_list(ak.num(eager_scores, axis=1)) == ak.to_list(ak.num(events.FatJet, axis=1))
    assert ak.sum(ak.num(eager_scores, axis=1)) == FATJETS_IN_FILE
    flat = ak.to_numpy(ak.flatten(eager_scores))
    assert np.all((flat > 0) & (flat < 1))
    # the same jets read by lloca_hep.io (independent join) and scored by the Tagger itself
    reference = load_tagger(tagger_file, device="cpu").score(read_jets(pfnano))
    np.testing.assert_array_equal(flat, reference)


def test_virtual_and_dask_threads_identical_to_eager(tagger_file, eager_scores, pfnano_events):
    tagger = lc.JetTagger(tagger_file)
    virtual = tagger(pfnano_events("virtual"))
    assert _same(virtual, eager_scores)
    lazy = tagger(pfnano_events("dask"))
    assert isinstance(lazy, dak.Array)
    computed = lazy.compute(scheduler="threads")
    assert _same(computed, eager_scores)


def test_dask_reads_only_the_branches_it_needs(tagger_file, pfnano_events):
    lazy = lc.JetTagger(tagger_file)(pfnano_events("dask"))
    columns = dak.necessary_columns(lazy)
    assert len(columns) == 1
    (needed,) = columns.values()
    assert set(needed) == set(lc.required_branches("FatJet"))
    assert "PFCands_d0" not in needed and "FatJet_pt" not in needed


def test_typetracer_pass_never_loads_the_model(tagger_file, pfnano, pfnano_events, nanoevents):
    tagger = lc.JetTagger(tagger_file)
    lazy = tagger(pfnano_events("dask"))
    assert str(lazy.type.content) == "var * float32"
    assert tagger._tagger is None  # building the graph neither loaded nor ran the model
    events = nanoevents(pfnano, "dask")._meta
    out = tagger(events)  # a typetracer in, a typetracer out
    assert ak.backend(out) == "typetracer"
    assert tagger._tagger is None


def test_small_radius_jets(tagger_file, pfnano, pfnano_events):
    scores = lc.JetTagger(tagger_file, collection="Jet")(pfnano_events("virtual"))
    assert ak.sum(ak.num(scores, axis=1)) == JETS_IN_FILE
    reference = load_tagger(tagger_file, device="cpu").score(read_jets(pfnano, collection="Jet"))
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(scores)), reference)


def test_ragged_constituent_arrays(tagger_file, pfnano, eager_scores):
    tagger = lc.JetTagger(tagger_file)
    jets = read_jets(pfnano)
    constituents = jets["constituents"]  # [jet][constituent] Momentum4D px, py, pz, E
    flat = tagger(constituents)
    np.testing.assert_array_equal(ak.to_numpy(flat), ak.to_numpy(ak.flatten(eager_scores)))
    # [event][jet][constituent] keeps the event structure
    nested = ak.unflatten(constituents, ak.num(eager_scores, axis=1))
    assert _same(tagger(nested), eager_scores)
    # (pt, eta, phi, mass) records give the same scores up to rounding of the conversion
    polar = ak.zip({"pt": constituents.pt, "eta": constituents.eta, "phi": constituents.phi,
                    "mass": constituents.mass})
    assert set(polar.fields) == {"pt", "eta", "phi", "mass"}
    np.testing.assert_allclose(ak.to_numpy(tagger(polar)), ak.to_numpy(flat), rtol=0, atol=1e-6)
    # dask-awkward constituents
    lazy = tagger(dak.from_awkward(constituents, npartitions=3))
    np.testing.assert_array_equal(ak.to_numpy(lazy.compute()), ak.to_numpy(flat))


def test_join_kernel_against_python_reference():
    rng = np.random.default_rng(7)
    n_events = 40
    jet_counts = rng.integers(0, 4, n_events)
    cand_counts = rng.integers(0, 30, n_events)
    link_jet, link_cand, link_counts = [], [], []
    for nj, nc in zip(jet_counts, cand_counts, strict=True):
        rows = [(j, c) for j in range(nj) for c in range(nc) if rng.random() < 0.3]
        rng.shuffle(rows)  # index tables need not be ordered by jet
        link_counts.append(len(rows))
        link_jet += [r[0] for r in rows]
        link_cand += [r[1] for r in rows]
    n_c = int(cand_counts.sum())
    pt = rng.uniform(1, 100, n_c).astype(np.float32)
    eta = rng.uniform(-2, 2, n_c).astype(np.float32)
    phi = rng.uniform(-np.pi, np.pi, n_c).astype(np.float32)
    mass = rng.uniform(0, 1, n_c).astype(np.float32)
    offsets, px, py, pz, energy = lc.join_indexed_constituents(
        jet_counts, np.array(link_counts), np.array(link_jet, dtype=np.int32),
        np.array(link_cand, dtype=np.int32), cand_counts, pt, eta, phi, mass,
    )
    cand_off = np.concatenate([[0], np.cumsum(cand_counts)])
    link_off = np.concatenate([[0], np.cumsum(link_counts)])
    expected_px, expected_mass, expected_counts = [], [], []
    for e in range(n_events):
        rows = list(zip(link_jet[link_off[e]:link_off[e + 1]],
                        link_cand[link_off[e]:link_off[e + 1]], strict=True))
        for j in range(jet_counts[e]):
            members = [c for jj, c in rows if jj == j]  # table order within a jet
            expected_counts.append(len(members))
            for c in members:
                k = cand_off[e] + c
                expected_px.append(float(pt[k]) * np.cos(float(phi[k])))
                expected_mass.append(float(mass[k]))
    np.testing.assert_array_equal(np.diff(offsets), expected_counts)
    np.testing.assert_allclose(px, expected_px, rtol=1e-12)
    m2 = energy**2 - px**2 - py**2 - pz**2
    np.testing.assert_allclose(m2, np.square(expected_mass), atol=1e-9 * energy.max() ** 2)


def test_out_of_range_index_names_event_and_row():
    with pytest.raises(ValueError, match=r"row 1 of event 1 .*links jet 0 to candidate 5.*3 candidates"):
        lc.join_indexed_constituents(
            np.array([1, 1]), np.array([1, 2]), np.array([0, 0, 0]), np.array([0, 2, 5]),
            np.array([1, 3]), *(np.ones(4, np.float32) for _ in range(4)),
        )
    with pytest.raises(ValueError, match="add up to 3 but pFCandsIdx has 2"):
        lc.join_indexed_constituents(
            np.array([1]), np.array([3]), np.array([0, 0, 0]), np.array([0, 0]),
            np.array([1]), *(np.ones(1, np.float32) for _ in range(4)),
        )


def test_bad_inputs_give_clear_errors(tagger_file, tmp_path, pfnano_events):
    with pytest.raises(FileNotFoundError, match="no such tagger file"):
        lc.JetTagger(tmp_path / "missing.pt")
    tagger = lc.JetTagger(tagger_file)
    events = pfnano_events("eager")
    without_links = ak.zip({"FatJet": events.FatJet, "PFCands": events.PFCands}, depth_limit=1)
    with pytest.raises(ValueError, match="no FatJetPFCands"):
        tagger(without_links)
    with pytest.raises(ValueError, match="cannot find jets to score"):
        tagger(ak.Array([[{"a": 1.0}]]))
    with pytest.raises(TypeError, match="awkward or dask-awkward"):
        tagger(np.zeros(3))
    with pytest.raises(ValueError, match="on_invalid"):
        lc.JetTagger(tagger_file, on_invalid="ignore")


def test_invalid_momenta_raise_or_drop(tagger_file, pfnano):
    constituents = read_jets(pfnano)["constituents"]
    px = ak.to_numpy(ak.flatten(constituents.px)).copy()
    px[5] = np.nan
    counts = ak.num(constituents, axis=1)
    broken = ak.unflatten(ak.zip({
        "px": px, "py": ak.flatten(constituents.py), "pz": ak.flatten(constituents.pz),
        "E": ak.flatten(constituents.E)}), counts)
    with pytest.raises(InvalidMomentumError, match="jet 0 of the chunk .*constituent 5: NaN"):
        lc.JetTagger(tagger_file)(broken)
    with pytest.warns(UserWarning, match="dropped 1 constituents"):
        scores = lc.JetTagger(tagger_file, on_invalid="drop")(broken)
    assert np.isfinite(ak.to_numpy(scores)).all()


def test_model_is_lazy_cached_and_never_pickled(tagger_file, pfnano_events):
    tagger = lc.JetTagger(tagger_file)
    assert tagger._tagger is None
    blob = pickle.dumps(tagger)
    tagger(pfnano_events("virtual"))
    assert tagger._tagger is not None
    blob_after = pickle.dumps(tagger)
    assert len(blob_after) == len(blob) < 2000  # the model does not travel
    clone = pickle.loads(blob_after)
    assert clone._tagger is None
    assert clone.tagger is tagger.tagger  # one model per process, shared through the cache
    in_memory = lc.JetTagger(load_tagger(tagger_file, device="cpu"))
    with pytest.raises(TypeError, match="Tagger.save"):
        pickle.dumps(in_memory)
