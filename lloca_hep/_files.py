"""Files on disk: what an input spelling really names, and outputs that never destroy data.

Every writer of files in lloca-hep (friend trees, tagger files, exported programs, generated
samples, dask friend-tree parts) goes through these functions:

* :func:`resolve_inputs` turns input spellings (``file.root``, ``file.root:tree``, globs,
  symlinks) into the real files they name, so an output can be compared with them by identity
  on disk (device and inode: hard links and symlinks are caught, not only equal spellings).
* :func:`check_output` refuses an output that is an input, a directory or any non-regular file
  (FIFO, device, socket: ``-o /dev/null --overwrite`` never replaces ``/dev/null``), an existing
  file without ``overwrite``, or a missing or unwritable directory. It raises
  :class:`~lloca_hep.errors.OutputError` naming the output and the problem.
* :func:`check_output_dir` and :func:`output_directory` do the same for output directories
  (``train -o``, ``evaluate -o``, ``demo -o``): an existing file is never used as one, and a
  failed run removes the directories it created while they are still empty.
* :func:`atomic_output` writes to a hidden temporary name next to the target and renames it
  onto the target only when the block completes, so a reader, or a process killed mid-write
  (the CLI turns SIGINT, SIGTERM and SIGHUP into exceptions), sees the old file or the complete
  new one, never a partial file; the temporary is removed in every case.
  (:class:`lloca_hep.io.FriendTreeWriter` streams over many calls and uses
  :func:`temporary_path` and :func:`check_output` directly.)

>>> with atomic_output("scores.root", overwrite=False, inputs=["jets.root:jets"]) as tmp:
...     write_something(tmp)
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import stat
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from lloca_hep.errors import OutputError

log = logging.getLogger(__name__)

__all__ = ["atomic_output", "check_output", "check_output_dir", "output_directory", "resolve_inputs",
           "split_object_path", "temporary_path"]

#: Characters that make a path spelling a glob pattern.
GLOB_CHARS = "*?["
#: Longest file name (bytes) when the file system does not say (POSIX NAME_MAX on Linux).
DEFAULT_NAME_MAX = 255
#: Hex digits of randomness in a temporary name.
TEMP_TOKEN_DIGITS = 12


def split_object_path(spelling: str) -> tuple[str, str | None]:
    """``"file.root:tree"`` -> ``("file.root", "tree")`` when ``file.root`` exists and the whole
    spelling does not (uproot's convention); otherwise ``(spelling, None)``."""
    if not os.path.exists(spelling) and ":" in spelling:
        head, _, tail = spelling.rpartition(":")
        if head and tail and os.path.exists(head):
            return head, tail
    return spelling, None


def resolve_inputs(spellings: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The real files (symlinks resolved, absolute) that input spellings name.

    Each spelling may be a path, ``path:tree``, or a glob pattern (which may match several
    files). Spellings that name nothing are skipped: readers report missing files themselves.
    """
    out: list[Path] = []
    for spelled in spellings:
        path, _ = split_object_path(os.fspath(spelled))
        if not os.path.exists(path) and any(ch in path for ch in GLOB_CHARS):
            candidates = sorted(glob.glob(path))
        else:
            candidates = [path]
        out.extend(Path(os.path.realpath(c)) for c in candidates if os.path.exists(c))
    return out


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_output(
    target: str | os.PathLike[str],
    *,
    overwrite: bool,
    inputs: Iterable[str | os.PathLike[str]] = (),
    option: str = "overwrite=True (CLI: --overwrite)",
    directory_exists: bool = True,
) -> Path:
    """Refuse an unsafe output; returns its absolute path.

    Raises :class:`~lloca_hep.errors.OutputError` when ``target`` is the same file on disk as
    one of ``inputs`` (any spelling, see :func:`resolve_inputs`), is a directory or any other
    non-regular file, exists while ``overwrite`` is False (``option`` names the flag that
    allows it), or its directory is not writable or (with ``directory_exists``, for writers
    that do not create it) missing.
    """
    out = Path(os.path.abspath(os.fspath(target)))
    if os.path.lexists(out):
        try:
            st = os.stat(out)
        except OSError as exc:
            raise OutputError(f"output {out} is a broken symbolic link ({exc.strerror})") from exc
        for real in resolve_inputs(inputs):
            if os.path.samestat(st, os.stat(real)):
                raise OutputError(
                    f"refusing to write {out}: it is an input file ({real}, the same file on "
                    "disk); outputs go to a separate file"
                )
        if not stat.S_ISREG(st.st_mode):
            raise OutputError(
                f"refusing to write {out}: it is {_kind(st.st_mode)}; only regular files are "
                "ever replaced"
            )
        if not overwrite:
            raise OutputError(f"output {out} exists; pass {option} to replace it")
    directory = out.parent
    if not directory.is_dir():
        if directory_exists:
            raise OutputError(f"cannot write {out}: the directory {directory} does not exist")
    elif not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {out}: the directory {directory} is not writable")
    return out


def _name_max(directory: Path) -> int:
    try:
        return int(os.pathconf(directory, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return DEFAULT_NAME_MAX


def temporary_path(target: str | os.PathLike[str], suffix: str = "") -> Path:
    """A hidden, unique temporary name beside ``target``: ``.NAME.<hex>.tmp`` + ``suffix``.

    The name part is shortened when needed so that the temporary fits the file system's
    name limit whenever ``target``'s own name does.
    """
    target = Path(target)
    tail = f".{uuid.uuid4().hex[:TEMP_TOKEN_DIGITS]}.tmp{suffix}"
    room = _name_max(target.parent) - len(tail.encode()) - 1
    name = target.name.encode()[:max(room, 1)].decode(errors="ignore")
    return target.with_name(f".{name}{tail}")


def _as_output_error(exc: OSError, tmp: Path, target: Path) -> OutputError | None:
    """An OSError about the temporary file, re-worded to name the output."""
    if exc.filename is None or os.path.abspath(os.fspath(exc.filename)) != str(tmp.absolute()):
        return None
    return OutputError(f"cannot write {target}: {exc.strerror or exc} (in {target.parent})")


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike[str],
    suffix: str = "",
    *,
    overwrite: bool = True,
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block ends
    without an exception. The temporary is removed in every case.

    ``path`` is checked with :func:`check_output` before the block and again just before the
    rename (a FIFO or an input file put there meanwhile is not replaced). ``suffix`` is
    appended to the temporary name (for writers that dispatch on the file extension).
    """
    inputs = list(inputs)
    target = check_output(path, overwrite=overwrite, inputs=inputs)
    tmp = temporary_path(target, suffix)
    try:
        try:
            yield tmp
        except OSError as exc:
            better = _as_output_error(exc, tmp, target)
            if better is None:
                raise
            raise better from exc
        check_output(target, overwrite=overwrite, inputs=inputs)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def check_output_dir(path: str | os.PathLike[str], option: str = "-o/--output") -> Path:
    """``path`` as a Path; :class:`ValueError` when it (or a parent) is an existing non-directory."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OutputError(
            f"output directory {out} is an existing file; choose a directory ({option})"
        )
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(
                    f"cannot create output directory {out}: {parent} is an existing file; "
                    f"choose a directory ({option})"
                )
            break
    return out


def _missing_dirs(out: Path) -> list[Path]:
    """``out`` and its parents that do not exist yet, deepest first."""
    missing = []
    for d in (out, *out.parents):
        if d.exists():
            break
        missing.append(d)
    return missing


@contextlib.contextmanager
def output_directory(path: str | os.PathLike[str], option: str = "-o/--output") -> Iterator[Path]:
    """Create ``path`` (and missing parents); on an exception in the block remove those that
    this call created and that are still empty, then re-raise."""
    out = check_output_dir(path, option)
    created = _missing_dirs(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_empty(created)
        raise OutputError(
            f"cannot create output directory {out}: {exc.strerror or exc} ({option})"
        ) from exc
    try:
        yield out
    except BaseException:
        _remove_empty(created)
        raise


def _remove_empty(dirs: list[Path]) -> None:
    for d in dirs:  # deepest first; stop at the first one that is not empty (or not ours)
        try:
            d.rmdir()
        except OSError:
            return
        log.debug("removed the empty output directory %s", d)
