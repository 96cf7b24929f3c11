"""Inference: ROOT file in, entry-aligned friend tree of scores out.

Public API::

    tag_file(input, output, model=None, *, step_size="50 MB", overwrite=False, tree=None, ...)
        -> dict   (what ``lloca-hep tag`` runs)

The way is the one every route shares: :func:`lloca_hep.io.iterate_jets` ->
:meth:`lloca_hep.tagger.Tagger.score` -> :class:`lloca_hep.io.FriendTreeWriter`, with the
next chunk read and padded on a thread (:mod:`lloca_hep.inference.readahead`) while this one
is scored.
"""

from __future__ import annotations

from .tag import DEFAULT_TAG_STEP_SIZE, tag_file

__all__ = ["DEFAULT_TAG_STEP_SIZE", "tag_file"]
