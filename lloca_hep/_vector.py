"""vector's awkward behaviours (``Momentum4D``), registered when the readers first build jets.

The readers name their constituent records ``Momentum4D``; with vector's behaviours
registered, a user's ``jets.constituents.mass`` works. Importing vector costs about 0.4 s of
CPU beyond awkward (it imports sympy for its optional symbolic back end), so it happens at the
first read rather than at ``import lloca_hep.io``, and not at all in the ``lloca-hep`` command
(:func:`lloca_hep.cli.console_main`), which hands no arrays to a user. This module imports
nothing heavy.

>>> from lloca_hep._vector import register_vector
>>> register_vector()        # idempotent; then awkward arrays named Momentum4D get vector's methods
"""

from __future__ import annotations

_state = {"enabled": True, "registered": False}


def register_vector() -> None:
    """Register vector's awkward behaviours once per process (no-op once
    :func:`skip_vector_behaviours` was called)."""
    if _state["enabled"] and not _state["registered"]:
        import vector

        vector.register_awkward()
        _state["registered"] = True


def skip_vector_behaviours() -> None:
    """Never import vector in this process: the arrays the readers build are then plain
    records (named ``Momentum4D``, without vector's methods). For the command only."""
    _state["enabled"] = False
