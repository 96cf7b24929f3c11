"""How many CPU threads torch uses within one operation (intra-op threads), for every route.

Batch jobs share cores: torch's default (one thread per core) collapses when another process
keeps the cores busy (threads waiting on each other: 331 jets/s with 2 threads against 559 with
1 on two busy cores). :func:`choose_threads` picks the count, in this order:

1. an explicit request (``--threads``, ``TrainConfig.num_threads``, ``threads=`` of
   :class:`~lloca_hep.integrations.coffea.JetTagger` and ``score_files``);
2. ``OMP_NUM_THREADS`` (torch reads it too when it starts; dask's nanny sets it to 1 in the
   worker processes it spawns);
3. inside a ``distributed`` worker: one thread per task, because the worker already runs as
   many tasks at once as it has task threads (``nthreads``), on the cores it was given;
4. otherwise the cores actually free: the usable cores (``os.sched_getaffinity``), at most the
   machine's cores minus the threads other processes are running now (the runnable count of
   ``/proc/loadavg``, a median of a few readings; the one-minute load average, rounded, where
   that file is missing), at least 1, and never more than torch is set to (a lower
   ``torch.set_num_threads`` of the caller stays).

:func:`apply_threads` sets the choice with ``torch.set_num_threads`` and logs it at DEBUG. The
free-core count (4.) is measured once per process and then reused, so that the process's own
work, which raises the load average, does not lower its later choices.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Literal

__all__ = ["ThreadChoice", "apply_threads", "busy_threads", "check_threads", "choose_threads",
           "dask_worker_threads", "free_cores", "omp_threads"]

log = logging.getLogger(__name__)

#: Environment variable honoured before the automatic choice.
OMP_ENV = "OMP_NUM_THREADS"
#: torch threads per task inside a dask worker.
DASK_TASK_THREADS = 1

Source = Literal["requested", "env", "dask", "torch", "free"]


@dataclass(frozen=True)
class ThreadChoice:
    """A thread count, the rule that chose it (``source``) and why (for the log)."""

    threads: int
    source: Source
    reason: str


#: Samples of the kernel's runnable-thread count taken by :func:`busy_threads`, and the pause
#: between two (seconds): about 10 ms in all, once per process.
BUSY_SAMPLES = 5
BUSY_SAMPLE_PAUSE_S = 0.002
LOADAVG_FILE = "/proc/loadavg"


def busy_threads() -> int | None:
    """Threads of other processes running or waiting for a core *now*: the median over
    :data:`BUSY_SAMPLES` readings of the runnable count in ``/proc/loadavg`` (fourth field,
    ``runnable/total``), minus this thread. None where that file cannot be read (not Linux).

    Unlike the one-minute load average, this sees a competitor that started a second ago and
    forgets a job that finished a second ago (a batch of jobs run one after another would
    otherwise each see the previous one's load and take one thread)."""
    counts = []
    for i in range(BUSY_SAMPLES):
        try:
            with open(LOADAVG_FILE, encoding="ascii") as f:
                counts.append(int(f.read().split()[3].split("/")[0]))
        except (OSError, ValueError, IndexError):
            return None
        if i + 1 < BUSY_SAMPLES:
            time.sleep(BUSY_SAMPLE_PAUSE_S)
    return max(0, sorted(counts)[len(counts) // 2] - 1)


def free_cores() -> tuple[int, str]:
    """``(cores free for this process, how that was worked out)``: the usable cores
    (``os.sched_getaffinity``), at most the machine's cores minus the threads of other
    processes running now (:func:`busy_threads`; where that cannot be read, the one-minute
    load average, rounded), at least 1."""
    total = os.cpu_count() or 1
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        usable = total
    busy = busy_threads()
    if busy is not None:
        free = max(1, min(usable, total - busy))
        return free, (f"{free} of {usable} usable cores free ({busy} other runnable "
                      f"thread(s) on {total} cores)")
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this platform
        return max(1, usable), f"{usable} usable cores (no load average)"
    free = max(1, min(usable, total - round(load)))
    return free, f"{free} of {usable} usable cores free (1-min load {load:.2f} on {total} cores)"


def omp_threads() -> int | None:
    """``OMP_NUM_THREADS`` when it is a positive integer, else None."""
    try:
        value = int(os.environ.get(OMP_ENV, "").strip())
    except ValueError:
        return None
    return value if value > 0 else None


def dask_worker_threads() -> int | None:
    """The task threads (``nthreads``) of the ``distributed`` worker running this code, or None
    outside a worker. ``distributed`` is not imported here (it takes most of a second): a
    worker has imported it already."""
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return None
    try:
        worker = distributed.get_worker()
    except ValueError:  # not inside a worker
        return None
    return int(worker.state.nthreads)


def check_threads(threads: object) -> int | None:
    """``threads`` when it is None or an integer >= 1; ValueError otherwise."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1 or None, got {threads!r}")
    return threads


def choose_threads(requested: int | None = None, *, torch_threads: int,
                   free: tuple[int, str] | None = None) -> ThreadChoice:
    """The intra-op thread count for this process or dask task (rules in the module docstring).

    ``requested``: an explicit count (wins), or None. ``torch_threads``: what torch is set to
    (the automatic choice never exceeds it). ``free``: a :func:`free_cores` result to use
    instead of measuring now. Raises ValueError for a count that is not an integer >= 1.
    """
    explicit = check_threads(requested)
    if explicit is not None:
        return ThreadChoice(explicit, "requested", "requested")
    omp = omp_threads()
    if omp is not None:
        return ThreadChoice(omp, "env", f"{OMP_ENV}={omp}")
    nthreads = dask_worker_threads()
    if nthreads is not None:
        return ThreadChoice(DASK_TASK_THREADS, "dask",
                            f"dask worker with {nthreads} task thread(s): one per task")
    n_free, how = free_cores() if free is None else free
    if torch_threads < n_free:
        return ThreadChoice(max(1, torch_threads), "torch",
                            f"torch was set to {torch_threads}; {how}")
    return ThreadChoice(n_free, "free", how)


_lock = threading.Lock()
#: torch's count before this module first changed it ("before"), the count it last set ("set").
_torch: dict[str, int] = {}
#: The free-core measurement of this process (rule 4), made once.
_free: list[tuple[int, str]] = []
#: The last choice logged.
_logged: dict[str, ThreadChoice] = {}


def apply_threads(requested: int | None = None) -> ThreadChoice:
    """Choose (:func:`choose_threads`) and ``torch.set_num_threads`` the count; logs it at DEBUG
    when it differs from the previous choice of this process. Returns the choice.

    Called again in the same process (each dask task, each ``JetTagger`` call), it reuses the
    free-core measurement of the first call.
    """
    import torch

    with _lock:
        current = torch.get_num_threads()
        # what the caller configured: torch's count, unless it is the one set here
        configured = _torch.get("before", current) if current == _torch.get("set") else current
        if not _free and requested is None and omp_threads() is None \
                and dask_worker_threads() is None:
            _free.append(free_cores())  # measured once per process
        choice = choose_threads(requested, torch_threads=configured,
                                free=_free[0] if _free else None)
        if choice.threads != current:
            _torch.setdefault("before", current)
            _torch["set"] = choice.threads
        if choice != _logged.get("last"):
            log.debug("torch threads: %d (%s)", choice.threads, choice.reason)
            _logged["last"] = choice
        torch.set_num_threads(choice.threads)  # also sets this thread's OpenMP team size
        return choice
