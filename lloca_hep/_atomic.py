"""Atomic output files: write to a hidden temporary name next to the target, rename when done.

Every writer of whole files in lloca-hep (tagger files, exported programs, generated samples,
dask friend-tree parts) goes through :func:`atomic_output`, so a reader, or a process killed
mid-write, sees either the old file or the complete new one, never a partial file.
(:class:`lloca_hep.io.FriendTreeWriter` streams over many calls and keeps its own temporary.)
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_output"]


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in ``path``'s directory; rename it onto ``path`` when the block
    ends without an exception. The temporary is removed in every case. ``suffix`` is appended
    to the temporary name (for writers that dispatch on the file extension)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
