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

import numba
import numpy as np

from .padding import offsets_from_counts

__all__ = ["IndexTableError", "join_index_table"]


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


@numba.njit(cache=True)
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


@numba.njit(cache=True)
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
