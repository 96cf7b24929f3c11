"""The PFNano/NanoAOD index join: candidates stored once per event, linked to jets by a table.

PFNano stores the particle-flow candidates per event (``PFCands_*``) and an index table per jet
collection (``FatJetPFCands_jetIdx``, ``FatJetPFCands_pFCandsIdx``: jet and candidate index of
each row, within its event). :func:`join_index_table` turns the table into jet offsets and the
flat candidate index of every constituent, jets in event order and, within a jet, rows in
table order. Gathering the candidate columns with it (``pt[selection]``) gives each jet's
constituents. One implementation, used by :func:`lloca_hep.io.read_jets` and
:class:`lloca_hep.integrations.coffea.JetTagger`.

>>> offsets, selection = join_index_table(jet_counts, row_counts, row_jet, row_cand, cand_counts)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lloca_hep._jit import njit_cached

from .conversion import polar_to_cartesian
from .padding import offsets_from_counts

__all__ = ["IndexTableError", "check_total", "flat_column", "join_index_table",
           "join_indexed_constituents"]

#: Field of the index table holding the jet index (within its event).
LINK_JET_FIELD = "jetIdx"
#: Field of the index table holding the candidate index (within its event).
LINK_CAND_FIELD = "pFCandsIdx"
#: Candidate kinematics read from ``PFCands`` (pT and mass in GeV, phi in rad).
CANDIDATE_FIELDS = ("pt", "eta", "phi", "mass")


@dataclass(frozen=True)
class BadRow:
    """The first index-table row that points outside its event."""

    event: int  #: event (within the arrays given)
    row: int  #: row within the event
    jet: int  #: its jet index
    candidate: int  #: its candidate index
    jets_in_event: int
    candidates_in_event: int
    bad_jet_index: bool  #: True when the jet index is out of range (else the candidate's)
    n_bad_rows: int  #: rows of the arrays that are out of range


class IndexTableError(ValueError):
    """An index-table row points outside its event; :attr:`bad` says which (callers re-word
    the message with the file, tree and branch)."""

    def __init__(self, bad: BadRow) -> None:
        self.bad = bad
        what = "jet" if bad.bad_jet_index else "candidate"
        super().__init__(
            f"index table row {bad.row} of event {bad.event} links jet {bad.jet} to candidate "
            f"{bad.candidate}, but the event has {bad.jets_in_event} jets and "
            f"{bad.candidates_in_event} candidates ({what} index out of range; "
            f"{bad.n_bad_rows} bad rows)"
        )


@njit_cached()
def _count_rows(jet_counts, row_counts, row_jet, row_cand, cand_counts, per_jet):  # pragma: no cover
    """Fill ``per_jet`` with the rows of each jet; -1 if every index is valid, else the flat
    index of the first bad row."""
    jet_start = 0
    row = 0
    for event in range(jet_counts.shape[0]):
        n_jets = jet_counts[event]
        n_cands = cand_counts[event]
        for _ in range(row_counts[event]):
            j = row_jet[row]
            c = row_cand[row]
            if j < 0 or j >= n_jets or c < 0 or c >= n_cands:
                return row
            per_jet[jet_start + j] += 1
            row += 1
        jet_start += n_jets
    return -1


@njit_cached()
def _fill_selection(jet_counts, row_counts, row_jet, row_cand, cand_counts, offsets,
                    selection):  # pragma: no cover
    """Scatter each row's flat candidate index into its jet's slot (table order kept)."""
    fill = offsets[:-1].copy()
    jet_start = 0
    cand_start = 0
    row = 0
    for event in range(jet_counts.shape[0]):
        for _ in range(row_counts[event]):
            slot = jet_start + row_jet[row]
            selection[fill[slot]] = cand_start + row_cand[row]
            fill[slot] += 1
            row += 1
        jet_start += jet_counts[event]
        cand_start += cand_counts[event]


def _bad_row(flat_row: int, jet_counts: np.ndarray, row_counts: np.ndarray,
             row_jet: np.ndarray, row_cand: np.ndarray, cand_counts: np.ndarray) -> BadRow:
    row_offsets = offsets_from_counts(row_counts)
    event_of_row = np.repeat(np.arange(row_counts.shape[0]), row_counts)
    n_bad = int(np.count_nonzero(
        (row_jet < 0) | (row_jet >= jet_counts[event_of_row])
        | (row_cand < 0) | (row_cand >= cand_counts[event_of_row])))
    event = int(event_of_row[flat_row])
    jet, cand = int(row_jet[flat_row]), int(row_cand[flat_row])
    return BadRow(event, flat_row - int(row_offsets[event]), jet, cand,
                  int(jet_counts[event]), int(cand_counts[event]),
                  not 0 <= jet < int(jet_counts[event]), n_bad)


def join_index_table(
    jet_counts: np.ndarray,
    row_counts: np.ndarray,
    row_jet: np.ndarray,
    row_cand: np.ndarray,
    cand_counts: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Join an index table: ``(offsets int64 (n_jets + 1,), selection int64 (n_rows,))``.

    ``jet_counts``, ``row_counts``, ``cand_counts``: int64 ``(n_events,)`` jets, table rows and
    candidates per event; ``row_jet``, ``row_cand``: int64 ``(sum(row_counts),)`` jet and
    candidate index of each row within its event. ``selection[offsets[j]:offsets[j+1]]`` are
    the flat candidate indices of jet ``j`` (jets in event order). Raises
    :class:`IndexTableError` for an out-of-range index.
    """
    per_jet = np.zeros(int(jet_counts.sum()), dtype=np.int64)
    bad = int(_count_rows(jet_counts, row_counts, row_jet, row_cand, cand_counts, per_jet))
    if bad >= 0:
        raise IndexTableError(_bad_row(bad, jet_counts, row_counts, row_jet, row_cand,
                                       cand_counts))
    offsets = offsets_from_counts(per_jet)
    selection = np.empty(int(offsets[-1]), dtype=np.int64)
    _fill_selection(jet_counts, row_counts, row_jet, row_cand, cand_counts, offsets, selection)
    return offsets, selection


def flat_column(name: str, x: Any, dtype: Any | None = None) -> np.ndarray:
    """A 1-d numpy array from ``x``; masked entries (None) are an error naming ``name``."""
    if isinstance(x, np.ma.MaskedArray):
        if np.ma.getmaskarray(x).any():
            raise ValueError(
                f"{name}: {int(np.ma.getmaskarray(x).sum())} missing (None) values; the tagger "
                "needs complete constituents (drop None entries, e.g. with ak.drop_none)"
            )
        x = np.ma.getdata(x)
    arr = np.ascontiguousarray(np.asarray(x))
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a flat 1-d column, got shape {arr.shape}")
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    return arr


def check_total(name: str, counts: np.ndarray, column: np.ndarray, column_name: str) -> None:
    total = int(counts.sum()) if counts.size else 0
    if total != column.shape[0]:
        raise ValueError(
            f"{name} add up to {total} but {column_name} has {column.shape[0]} entries"
        )


def join_indexed_constituents(
    jet_counts: np.ndarray,
    link_counts: np.ndarray,
    link_jet: np.ndarray,
    link_cand: np.ndarray,
    cand_counts: np.ndarray,
    pt: np.ndarray,
    eta: np.ndarray,
    phi: np.ndarray,
    mass: np.ndarray,
    *,
    what: str = "jets",
    return_selection: bool = False,
) -> tuple[np.ndarray, ...]:
    """Join per-event candidates onto jets through an index table (PFNano layout).

    Parameters (all 1-d numpy, flattened over events)
    ----------
    jet_counts, link_counts, cand_counts:
        ``(n_events,)`` jets, index-table rows and candidates per event.
    link_jet, link_cand:
        ``(sum(link_counts),)`` jet index and candidate index of each row, within its event.
    pt, eta, phi, mass:
        ``(sum(cand_counts),)`` candidate kinematics (GeV, rad).

    Returns ``(offsets, px, py, pz, E)``: int64 ``(n_jets + 1,)`` jet offsets and float64
    Cartesian momenta in GeV of the joined constituents, jets in event order; with
    ``return_selection`` also the flat candidate index of every constituent (to gather other
    candidate columns, e.g. features, in the same order).
    Raises ``ValueError`` naming the event and row of an out-of-range index.
    """
    jet_counts = flat_column(f"{what} counts", jet_counts, np.int64)
    link_counts = flat_column(f"{what} index-table counts", link_counts, np.int64)
    cand_counts = flat_column("candidate counts", cand_counts, np.int64)
    link_jet = flat_column(f"{what} index table {LINK_JET_FIELD}", link_jet, np.int64)
    link_cand = flat_column(f"{what} index table {LINK_CAND_FIELD}", link_cand, np.int64)
    cols = [flat_column(f"candidate {n}", c) for n, c in zip(CANDIDATE_FIELDS, (pt, eta, phi, mass), strict=True)]
    n_events = jet_counts.shape[0]
    if link_counts.shape[0] != n_events or cand_counts.shape[0] != n_events:
        raise ValueError(
            f"per-event counts disagree on the number of events: {what} {n_events}, "
            f"index table {link_counts.shape[0]}, candidates {cand_counts.shape[0]}"
        )
    check_total("index-table counts", link_counts, link_jet, LINK_JET_FIELD)
    check_total("index-table counts", link_counts, link_cand, LINK_CAND_FIELD)
    for name, col in zip(CANDIDATE_FIELDS, cols, strict=True):
        check_total("candidate counts", cand_counts, col, f"candidate {name}")
    try:
        offsets, selection = join_index_table(jet_counts, link_counts, link_jet, link_cand,
                                              cand_counts)
    except IndexTableError as exc:
        bad = exc.bad
        raise ValueError(
            f"index table row {bad.row} of event {bad.event} (partition-local) links "
            f"{what[:-1]} {bad.jet} to candidate {bad.candidate}, but the event has "
            f"{bad.jets_in_event} {what} and {bad.candidates_in_event} candidates"
        ) from None
    px, py, pz, energy = polar_to_cartesian(*(c[selection] for c in cols))
    if return_selection:
        return offsets, px, py, pz, energy, selection
    return offsets, px, py, pz, energy
