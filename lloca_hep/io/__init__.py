"""ROOT in, ROOT out: jet readers (TTree + RNTuple) and atomic friend-tree score writers.

Public API::

    read_jets(path, *, tree=None, layout="auto", collection="FatJet", branches=None,
              jet_fields=None, pf_collection="PFCands", entry_start=None, entry_stop=None,
              on_invalid="raise") -> ak.Array
    iterate_jets(paths, step_size="100 MB", **same options, progress=False) -> Iterator[JetChunk]
    FriendTreeWriter(output, tree_name="scores", compression="ZSTD", overwrite=False,
                     rntuple=False, *, inputs=(), class_names=None)  # .extend(scores, chunk)
    write_scores(output, scores, jets, ...), add_scores(jets, scores, name="score"),
    friend_path(input_path, suffix="_scores")

The constituents are records named ``Momentum4D``; the readers register vector's awkward
behaviours at their first read, so ``jets.constituents.mass`` works on what they return.
"""

from __future__ import annotations

from lloca_hep import errors
from lloca_hep.errors import *  # noqa: F403  (the io errors, re-exported)

from .readers import JetChunk, iterate_jets, read_jets
from .writers import FriendTreeWriter, add_scores, friend_path, write_scores

__all__ = [  # noqa: PLE0604  (the errors first, as strings from lloca_hep.errors)
    *errors.__all__,
    "FriendTreeWriter",
    "JetChunk",
    "add_scores",
    "friend_path",
    "iterate_jets",
    "read_jets",
    "write_scores",
]
