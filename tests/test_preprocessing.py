"""Numba preprocessing kernels against plain awkward/numpy references on random ragged jets."""

from __future__ import annotations

import warnings

import awkward as ak
import numpy as np
import pytest
import vector

from lloca_hep.preprocessing import (
    EmptyJetsWarning,
    argsort_by_pt,
    offsets_from_counts,
    pad_flat,
    pad_jets,
)

vector.register_awkward()

METRIC = np.diag([1.0, -1.0, -1.0, -1.0])


def random_jets(seed: int, n_jets: int = 300, max_count: int = 40, dtype=np.float64, ties=False):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, max_count, size=n_jets)
    counts[:3] = 0  # always some empty jets
    n = int(counts.sum())
    px, py, pz = rng.normal(scale=30.0, size=(3, n))
    if ties:  # equal pT inside jets: order must stay stable
        px = np.round(px / 10.0) * 10.0
        py = np.zeros_like(py)
    mass = rng.uniform(0.0, 1.0, size=n)
    energy = np.sqrt(px**2 + py**2 + pz**2 + mass**2)
    cols = [c.astype(dtype) for c in (px, py, pz, energy)]
    jets = ak.unflatten(
        ak.zip(dict(zip(("px", "py", "pz", "E"), cols, strict=True)), with_name="Momentum4D"), counts
    )
    return jets, counts, cols


def reference_pad(jets: ak.Array, n_max: int, sort_by_pt: bool):
    """The pure-awkward route: argsort, pad_none, fill_none, to_numpy."""
    if sort_by_pt:
        pt2 = jets.px**2 + jets.py**2
        jets = jets[ak.argsort(pt2, axis=1, ascending=False, stable=True)]
    comps = []
    for name in ("E", "px", "py", "pz"):
        padded = ak.pad_none(jets[name], n_max, axis=1, clip=True)
        comps.append(ak.to_numpy(ak.fill_none(padded, 0.0)).astype(np.float64))
    mask = ak.to_numpy(ak.fill_none(ak.pad_none(ak.ones_like(jets.px, dtype=bool), n_max, clip=True), False))
    return np.stack(comps, axis=-1), mask.astype(bool)


@pytest.mark.parametrize("n_max", [1, 7, 32, 64])
@pytest.mark.parametrize("sort_by_pt", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pad_jets_matches_awkward_reference(n_max, sort_by_pt, dtype):
    jets, counts, _ = random_jets(seed=n_max, dtype=dtype)
    with pytest.warns(EmptyJetsWarning, match="3 of 300 jets"):
        padded = pad_jets(jets, n_max, sort_by_pt=sort_by_pt)
    ref_p4, ref_mask = reference_pad(jets, n_max, sort_by_pt)
    assert padded.p4.dtype == np.float64
    assert padded.p4.shape == (300, n_max, 4)
    np.testing.assert_array_equal(padded.p4, ref_p4)
    np.testing.assert_array_equal(padded.mask, ref_mask)
    np.testing.assert_array_equal(padded.n_constituents, counts)
    assert padded.n_empty == 3
    assert padded.n_truncated == int(np.count_nonzero(counts > n_max))


@pytest.mark.parametrize("max_count", [40, 300])
def test_sort_is_stable_for_equal_pt(max_count):
    jets, _, _ = random_jets(seed=5, ties=True, max_count=max_count)
    padded = pad_jets(jets, max_count, warn_empty=False)
    ref_p4, _ = reference_pad(jets, max_count, True)
    np.testing.assert_array_equal(padded.p4, ref_p4)


def test_long_jets_sorted_and_truncated():
    jets, _, _ = random_jets(seed=6, max_count=400)
    padded = pad_jets(jets, 128, warn_empty=False)
    np.testing.assert_array_equal(padded.p4, reference_pad(jets, 128, True)[0])


@pytest.mark.parametrize("n", [0, 1, 2, 47, 48, 49, 95, 96, 97, 150, 500])
@pytest.mark.parametrize("pattern", ["random", "sorted", "reversed", "ties"])
def test_stable_argsort_kernel(n, pattern):
    from lloca_hep.preprocessing.kernels import _stable_argsort

    rng = np.random.default_rng(n)
    keys = {
        "random": rng.normal(size=n),
        "sorted": np.sort(rng.normal(size=n)),
        "reversed": np.sort(rng.normal(size=n))[::-1].copy(),
        "ties": rng.integers(0, 4, size=n).astype(np.float64),
    }[pattern]
    idx = np.full(max(n, 1), -1, np.int64)
    _stable_argsort(keys, n, idx, np.empty(max(n, 1), np.int64), np.empty(max(n, 1)))
    np.testing.assert_array_equal(idx[:n], np.argsort(keys, kind="stable"))


def test_sort_only_when_truncating():
    jets, counts, cols = random_jets(seed=7, max_count=60)
    n_max = 30
    got = pad_jets(jets, n_max, sort_by_pt="truncated", warn_empty=False)
    long_jets = counts > n_max
    np.testing.assert_array_equal(got.p4[long_jets], reference_pad(jets, n_max, True)[0][long_jets])
    np.testing.assert_array_equal(got.p4[~long_jets], reference_pad(jets, n_max, False)[0][~long_jets])
    np.testing.assert_array_equal(got.mask, reference_pad(jets, n_max, False)[1])
    with pytest.raises(ValueError, match="'truncated'"):
        pad_jets(jets, n_max, sort_by_pt="yes")


def test_pad_flat_offsets_counts_and_sliced_offsets():
    jets, counts, cols = random_jets(seed=11)
    a = pad_flat(offsets_from_counts(counts), *cols, max_constituents=16, warn_empty=False)
    b = pad_flat(None, *cols, max_constituents=16, counts=counts, warn_empty=False)
    np.testing.assert_array_equal(a.p4, b.p4)
    np.testing.assert_array_equal(a.mask, b.mask)
    # offsets that do not start at 0 (a slice of a larger ListOffsetArray)
    offsets = offsets_from_counts(counts)
    c = pad_flat(offsets[100:], *cols, max_constituents=16, warn_empty=False)
    np.testing.assert_array_equal(c.p4, a.p4[100:])
    np.testing.assert_array_equal(c.n_constituents, counts[100:])


def test_pad_flat_reuses_buffers_and_zeroes_padding():
    jets, counts, cols = random_jets(seed=12)
    out = np.full((len(counts), 8, 4), np.nan)
    mask = np.ones((len(counts), 8), dtype=bool)
    padded = pad_flat(None, *cols, max_constituents=8, counts=counts, out=out, mask_out=mask, warn_empty=False)
    assert padded.p4 is out and padded.mask is mask
    ref_p4, ref_mask = reference_pad(jets, 8, True)
    np.testing.assert_array_equal(out, ref_p4)
    np.testing.assert_array_equal(mask, ref_mask)


def test_pad_flat_rejects_bad_arguments():
    _, counts, cols = random_jets(seed=13)
    with pytest.raises(ValueError, match="exactly one"):
        pad_flat(None, *cols)
    with pytest.raises(ValueError, match="exactly one"):
        pad_flat(offsets_from_counts(counts), *cols, counts=counts)
    with pytest.raises(ValueError, match="same length"):
        pad_flat(None, cols[0], cols[1], cols[2], cols[3][:-1], counts=counts)
    with pytest.raises(ValueError, match="non-decreasing"):
        pad_flat(np.array([0, 5, 3]), *cols)
    with pytest.raises(ValueError, match="address"):
        pad_flat(None, *cols, counts=counts + 1)
    with pytest.raises(ValueError, match="max_constituents"):
        pad_flat(None, *cols, counts=counts, max_constituents=0)


def test_pad_jets_after_boolean_mask_listarray():
    jets, _, _ = random_jets(seed=21)
    selected = jets[jets.pt > 20.0]  # masked: content no longer contiguous with the original
    padded = pad_jets(selected, 24, warn_empty=False)
    ref_p4, ref_mask = reference_pad(ak.to_packed(selected), 24, True)
    np.testing.assert_array_equal(padded.p4, ref_p4)
    np.testing.assert_array_equal(padded.mask, ref_mask)
    # a jet-level slice with a step yields a ListArray (starts/stops, no offsets)
    assert isinstance(jets[::3].layout, ak.contents.ListArray)
    padded2 = pad_jets(jets[::3], 24, warn_empty=False)
    np.testing.assert_array_equal(padded2.p4, reference_pad(ak.to_packed(jets[::3]), 24, True)[0])


def test_pad_jets_option_types_from_index_joins():
    jets, counts, _ = random_jets(seed=22)
    # missing jets (option at the jet level) become empty jets
    keep = np.arange(len(jets)) % 4 != 0
    masked_jets = ak.mask(jets, keep)
    padded = pad_jets(masked_jets, 16, warn_empty=False)
    ref_p4, _ = reference_pad(jets, 16, True)
    np.testing.assert_array_equal(padded.p4[keep], ref_p4[keep])
    assert np.all(padded.n_constituents[~keep] == 0)
    # missing constituents (option inside jets, what index joins produce) are dropped
    flat = ak.flatten(jets)
    idx = np.arange(len(flat))
    idx_opt = ak.Array([None if i % 5 == 0 else int(i) for i in idx])
    joined = ak.unflatten(flat[idx_opt], counts)
    padded2 = pad_jets(joined, 16, warn_empty=False)
    expected = ak.unflatten(flat, counts)[ak.unflatten(idx % 5 != 0, counts)]
    np.testing.assert_array_equal(padded2.p4, reference_pad(expected, 16, True)[0])


def test_pad_jets_from_pt_eta_phi_mass_behaviour():
    jets, _, _ = random_jets(seed=23)
    polar = ak.zip(
        {"pt": jets.pt, "eta": jets.eta, "phi": jets.phi, "mass": jets.mass}, with_name="Momentum4D"
    )
    padded = pad_jets(polar, 16, warn_empty=False)
    ref_p4, _ = reference_pad(jets, 16, True)
    np.testing.assert_allclose(padded.p4, ref_p4, rtol=1e-9, atol=1e-9)


def test_pad_jets_accepts_read_jets_records_and_rejects_event_nesting():
    jets, _, _ = random_jets(seed=24)
    records = ak.zip({"constituents": jets, "jet_pt": ak.sum(jets.pt, axis=1)}, depth_limit=1)
    a = pad_jets(records, 8, warn_empty=False)
    b = pad_jets(jets, 8, warn_empty=False)
    np.testing.assert_array_equal(a.p4, b.p4)
    events = ak.unflatten(jets, [100, 200])
    with pytest.raises(ValueError, match="ak.flatten"):
        pad_jets(events, 8)


def test_no_warning_without_empty_jets():
    jets, _, _ = random_jets(seed=25)
    nonempty = jets[ak.num(jets) > 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pad_jets(nonempty, 8)


def test_argsort_by_pt_matches_awkward():
    jets, counts, cols = random_jets(seed=31)
    perm = argsort_by_pt(offsets_from_counts(counts), cols[0], cols[1])
    ref = ak.argsort(jets.pt, axis=1, ascending=False, stable=True)
    ref_global = ak.to_numpy(ak.flatten(ref + offsets_from_counts(counts)[:-1]))
    np.testing.assert_array_equal(perm, ref_global)







# ---------------------------------------------------------------- one conversion, one join, one policy
def test_polar_to_cartesian_matches_vector_including_negative_mass():
    from lloca_hep.preprocessing import polar_to_cartesian

    rng = np.random.default_rng(5)
    pt, eta, phi = rng.uniform(1, 100, 50), rng.uniform(-3, 3, 50), rng.uniform(-3, 3, 50)
    mass = rng.uniform(-0.5, 2.0, 50).astype(np.float32)  # float32 storage is cast first
    px, py, pz, e = polar_to_cartesian(pt, eta, phi, mass)
    ref = vector.array({"pt": pt, "eta": eta, "phi": phi, "mass": mass.astype(np.float64)})
    np.testing.assert_allclose(np.stack([px, py, pz]), np.stack([ref.px, ref.py, ref.pz]), rtol=1e-12)
    e2 = px**2 + py**2 + pz**2 + mass.astype(np.float64) * np.abs(mass)
    np.testing.assert_allclose(e, np.sqrt(np.maximum(e2, 0.0)), rtol=1e-15)
    assert e.dtype == np.float64


def test_join_index_table_against_a_python_loop_and_bad_rows():
    from lloca_hep.preprocessing import IndexTableError, join_index_table

    rng = np.random.default_rng(9)
    n_events = 40
    jets = rng.integers(0, 4, n_events)
    cands = rng.integers(1, 30, n_events)
    rows = [(ev, int(rng.integers(0, jets[ev])), int(rng.integers(0, cands[ev])))
            for ev in range(n_events) if jets[ev] for _ in range(int(rng.integers(0, 15)))]
    row_counts = np.bincount([r[0] for r in rows], minlength=n_events).astype(np.int64)
    row_jet = np.array([r[1] for r in rows], dtype=np.int64)
    row_cand = np.array([r[2] for r in rows], dtype=np.int64)
    offsets, sel = join_index_table(jets.astype(np.int64), row_counts, row_jet, row_cand,
                                    cands.astype(np.int64))
    cand_start = np.concatenate([[0], np.cumsum(cands)])
    expected = [[] for _ in range(int(jets.sum()))]
    jet_start = np.concatenate([[0], np.cumsum(jets)])
    for ev, j, c in rows:  # table order within each jet
        expected[jet_start[ev] + j].append(cand_start[ev] + c)
    assert [list(sel[offsets[k]:offsets[k + 1]]) for k in range(len(expected))] == expected
    bad_cand = row_cand.copy()
    bad_cand[3] = 10**6
    with pytest.raises(IndexTableError, match="candidate index out of range; 1 bad rows") as err:
        join_index_table(jets.astype(np.int64), row_counts, row_jet, bad_cand, cands.astype(np.int64))
    assert err.value.bad.candidate == 10**6 and not err.value.bad.bad_jet_index


def test_momentum_policy_raises_or_drops_with_one_warning():
    from lloca_hep.errors import InvalidConstituentsWarning, InvalidMomentumError
    from lloca_hep.preprocessing import apply_momentum_policy

    px = np.array([1.0, 0.0, 3.0, np.nan])
    py = np.zeros(4)
    pz = np.zeros(4)
    e = np.array([2.0, -1.0, 1.0, 1.0])  # ok, negative energy, space-like, NaN
    counts = np.array([2, 2])
    with pytest.raises(InvalidMomentumError, match=r"f.root: jet 0 of the chunk, constituent 1: negative energy"):
        apply_momentum_policy([px, py, pz, e], counts, "raise", where="f.root")
    with pytest.warns(InvalidConstituentsWarning, match="dropped 3 constituents.*1 jets became empty"):
        cols, new_counts = apply_momentum_policy([px, py, pz, e], counts, "drop", where="f.root")
    assert list(new_counts) == [1, 0] and list(cols[0]) == [1.0]
    with pytest.raises(ValueError, match="on_invalid"):
        apply_momentum_policy([px, py, pz, e], counts, "ignore", where="f.root")
