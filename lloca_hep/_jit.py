"""``numba.njit`` with numba's on-disk cache where one can be written, and without it elsewhere.

Every kernel of lloca-hep is compiled with ``cache=True``, so a process after the first loads
the machine code from disk (tens of milliseconds per kernel) instead of compiling it (about a
second per kernel). numba writes the cache into the ``__pycache__`` folder beside the source
file, or, where the install is read-only (a site-wide or CVMFS install), into the user's cache
folder (``~/.cache/numba``); ``NUMBA_CACHE_DIR`` overrides both. Where none of them can be
written, ``njit(cache=True)`` raises ``RuntimeError`` when the module is imported; here the
kernel is then compiled without the cache, with one warning naming ``NUMBA_CACHE_DIR``, so the
import still succeeds (each process compiles the kernels again).

The kernels hold no closures and take no functions as arguments; the module constants they read
live in their own files, whose changes invalidate the cache (numba keys it on the source file).

The first compilation or cache load of a process also runs numba's extension entry points:
awkward's and vector's numba support (about 0.5 s of CPU), which these kernels, taking numpy
arrays only, never use. The ``lloca-hep`` command runs no other numba code, so it calls
:func:`skip_numba_extensions` first (:func:`lloca_hep.cli.console_main`); a Python session that
imports lloca-hep keeps them (its own numba code may compile functions of awkward arrays).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["njit_cached", "skip_numba_extensions"]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
#: Start of numba's message when no cache location can be written.
_NO_CACHE_MESSAGE = "cannot cache function"
_warned = False
#: Set by :func:`skip_numba_extensions`: the process runs no numba code but these kernels.
_skip_extensions = False


def njit_cached(**options: Any) -> Callable[[F], F]:
    """``numba.njit(cache=True, **options)``, falling back to ``numba.njit(**options)`` (and one
    warning per process) when numba finds no writable cache location."""

    def decorate(func: F) -> F:
        import numba

        if _skip_extensions:
            _mark_extensions_loaded()
        try:
            return numba.njit(cache=True, **options)(func)
        except RuntimeError as err:
            if _NO_CACHE_MESSAGE not in str(err):
                raise
            _warn_uncached(err)
            return numba.njit(**options)(func)

    return decorate


def _warn_uncached(err: RuntimeError) -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning("numba cannot cache lloca-hep's compiled kernels (%s): each process compiles "
                    "them again, seconds per run; set NUMBA_CACHE_DIR to a writable directory",
                    err)


def skip_numba_extensions() -> None:
    """In this process, let numba skip its extension entry points (awkward's and vector's numba
    support) when it first compiles or loads a kernel. For processes that run no numba code
    but lloca-hep's kernels (the ``lloca-hep`` command); numba is not imported here."""
    global _skip_extensions
    _skip_extensions = True


def _mark_extensions_loaded() -> None:
    """Tell numba its extensions are loaded (``numba.core.entrypoints``; nothing happens on a
    numba without that flag, or when they are loaded already)."""
    from numba.core import entrypoints

    if getattr(entrypoints, "_already_initialized", True) is False:
        entrypoints._already_initialized = True
        log.debug("numba extension entry points skipped (lloca-hep command)")
