"""Keep freed memory in the process during training (glibc's malloc), so steps reuse it.

A training step allocates and frees the same large tensors every step (activations saved for
the backward pass, their gradients). glibc's malloc hands memory above its trim threshold back
to the kernel when it is freed and serves large requests with fresh ``mmap`` s; the next step
then takes a page fault for every 4 KiB page it touches again. For the LLoCa transformer at the
shipped size (batch 128, N = 48, one thread) that was about 3,500 page faults and 6 ms of a
90 ms step; the identity-frame twin, which holds less memory at its peak, had none
(``docs/benchmarks.md``, "the LLoCa training step"). :func:`keep_freed_memory` raises both
thresholds with ``mallopt``, the equivalent of the environment variables
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` that glibc reads at start-up.
The process then keeps the memory of its peak step until it exits, as a training process
does anyway.

Nothing is changed when the user chose an allocator setting already (one of those variables
set, or ``LD_PRELOAD`` naming another allocator such as jemalloc or tcmalloc), or where the C
library has no ``mallopt`` (not glibc, not Linux).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

__all__ = ["MMAP_THRESHOLD_BYTES", "TRIM_THRESHOLD_BYTES", "keep_freed_memory"]

log = logging.getLogger(__name__)

#: Requests up to this size come from the heap, not from fresh ``mmap`` s (glibc's maximum).
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
#: Free memory at the top of the heap kept in the process up to this size.
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024
#: ``mallopt`` parameters of glibc's ``malloc.h``.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Environment variables meaning the user chose the allocator's behaviour.
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc malloc's mmap and trim thresholds for this process (once); True if set.

    Example::

        >>> from lloca_hep._malloc import keep_freed_memory
        >>> keep_freed_memory() in (True, False)
        True
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux"):
        return False
    if any(os.environ.get(k) for k in _USER_SETTINGS) or os.environ.get("LD_PRELOAD"):
        log.debug("malloc settings left as they are (set in the environment)")
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
    _applied = ok
    log.debug("malloc thresholds %s", "raised" if ok else "not changed (mallopt refused)")
    return ok
