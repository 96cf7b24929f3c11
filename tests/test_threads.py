"""The torch thread policy of lloca_hep._threads: explicit > OMP_NUM_THREADS > dask worker >
the cores free (usable cores, at most the machine's cores minus the one-minute load)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from lloca_hep import _threads
from lloca_hep._threads import apply_threads, check_threads, choose_threads, free_cores

SAMPLE = Path(_threads.__file__).resolve().parent / "data" / "sample.root"


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch):
    """``machine(cores, usable, load, busy=None)``: a machine of ``cores`` cores, this process
    allowed on ``usable`` of them, one-minute load ``load`` (None: no load average), ``busy``
    other runnable threads now (None: ``/proc/loadavg`` unreadable, so the load average
    decides); no OMP_NUM_THREADS, not in a dask worker."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(_threads, "dask_worker_threads", lambda: None)

    def set_machine(cores: int, usable: int, load: float | None, busy: int | None = None) -> None:
        monkeypatch.setattr(_threads, "busy_threads", lambda: busy)

        def getloadavg() -> tuple[float, float, float]:
            if load is None:
                raise OSError("no load average")
            return (load, load, load)

        monkeypatch.setattr(_threads.os, "cpu_count", lambda: cores)
        monkeypatch.setattr(_threads.os, "sched_getaffinity", lambda pid: set(range(usable)))
        monkeypatch.setattr(_threads.os, "getloadavg", getloadavg)

    return set_machine


@pytest.fixture
def fresh_policy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh process state of :func:`apply_threads`; torch's thread count restored after."""
    before = torch.get_num_threads()
    monkeypatch.setattr(_threads, "_torch", {})
    monkeypatch.setattr(_threads, "_free", [])
    monkeypatch.setattr(_threads, "_logged", {})
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(("cores", "usable", "load", "free"), [
    (2, 2, 0.3, 2),    # idle two-core machine
    (2, 2, 1.2, 1),    # one core busy (load rounds to 1)
    (2, 2, 2.0, 1),    # both busy: still one thread
    (2, 2, 7.5, 1),    # oversubscribed: at least one
    (64, 4, 50.0, 4),  # a 4-core cpuset on a busy node: the 14 idle cores cover ours
    (64, 4, 61.6, 2),  # only 2 of the machine's cores idle
    (8, 8, None, 8),   # no load average: the usable cores
])
def test_free_cores(machine, cores: int, usable: int, load: float | None, free: int) -> None:
    machine(cores, usable, load)
    n_free, how = free_cores()
    assert n_free == free
    assert f"{usable}" in how


@pytest.mark.parametrize(("cores", "usable", "load", "busy", "free"), [
    (2, 2, 1.2, 0, 2),    # the previous job just finished: the lagging load average is ignored
    (2, 2, 0.1, 1, 1),    # a competitor started a second ago
    (2, 2, 0.0, 2, 1),    # both cores taken now
    (64, 4, 0.0, 61, 3),  # a 4-core cpuset, 3 of the node's cores idle now
])
def test_free_cores_from_the_runnable_threads_now(machine, cores: int, usable: int, load: float,
                                                  busy: int, free: int) -> None:
    machine(cores, usable, load, busy)
    n_free, how = free_cores()
    assert n_free == free
    assert f"{busy} other runnable" in how


def test_busy_threads_reads_the_runnable_count(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    """The median of the readings of ``/proc/loadavg``'s ``runnable/total``, minus this thread;
    None for an unreadable or malformed file."""
    readings = iter(["0.5 0.4 0.3 3/200 99", "0.5 0.4 0.3 9/200 99", "0.5 0.4 0.3 2/200 99",
                     "0.5 0.4 0.3 3/200 99", "0.5 0.4 0.3 1/200 99"])
    fake = tmp_path / "loadavg"

    real_open = open

    def fake_open(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if path == str(fake):
            fake.write_text(next(readings))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(_threads, "LOADAVG_FILE", str(fake))
    monkeypatch.setattr("builtins.open", fake_open)
    assert _threads.busy_threads() == 2  # median of 3, 9, 2, 3, 1 is 3; minus this thread
    fake.write_text("garbage")
    monkeypatch.setattr("builtins.open", real_open)
    assert _threads.busy_threads() is None
    monkeypatch.setattr(_threads, "LOADAVG_FILE", str(tmp_path / "missing"))
    assert _threads.busy_threads() is None


def test_explicit_request_wins(machine, monkeypatch: pytest.MonkeyPatch) -> None:
    machine(2, 2, 5.0)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setattr(_threads, "dask_worker_threads", lambda: 4)
    choice = choose_threads(2, torch_threads=1)
    assert (choice.threads, choice.source) == (2, "requested")


def test_omp_num_threads_before_the_load(machine, monkeypatch: pytest.MonkeyPatch) -> None:
    machine(16, 16, 0.0)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setattr(_threads, "dask_worker_threads", lambda: 4)
    choice = choose_threads(None, torch_threads=16)
    assert (choice.threads, choice.source) == (3, "env")
    assert "OMP_NUM_THREADS=3" in choice.reason


@pytest.mark.parametrize("text", ["", "0", "-2", "four", "2.5"])
def test_unusable_omp_num_threads_is_ignored(machine, monkeypatch: pytest.MonkeyPatch,
                                             text: str) -> None:
    machine(4, 4, 1.0)
    monkeypatch.setenv("OMP_NUM_THREADS", text)
    assert choose_threads(None, torch_threads=4).threads == 3


def test_dask_worker_gets_one_thread_per_task(machine, monkeypatch: pytest.MonkeyPatch) -> None:
    machine(16, 16, 0.0)
    monkeypatch.setattr(_threads, "dask_worker_threads", lambda: 4)
    choice = choose_threads(None, torch_threads=16)
    assert (choice.threads, choice.source) == (1, "dask")
    assert "4 task thread" in choice.reason


def test_free_cores_but_never_more_than_torch_is_set_to(machine) -> None:
    machine(8, 8, 1.0)
    assert choose_threads(None, torch_threads=8) == choose_threads(None, torch_threads=16)
    assert choose_threads(None, torch_threads=8).threads == 7
    lower = choose_threads(None, torch_threads=2)
    assert (lower.threads, lower.source) == (2, "torch")


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_thread_counts_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="threads must be an integer"):
        check_threads(bad)
    with pytest.raises(ValueError, match="threads must be an integer"):
        choose_threads(bad, torch_threads=2)  # type: ignore[arg-type]


def test_apply_threads_sets_torch_and_logs(machine, fresh_policy,
                                           caplog: pytest.LogCaptureFixture) -> None:
    machine(2, 2, 2.0)
    torch.set_num_threads(2)
    with caplog.at_level(logging.DEBUG, logger="lloca_hep._threads"):
        choice = apply_threads()
    assert choice.threads == 1 and torch.get_num_threads() == 1
    assert "torch threads: 1" in caplog.text and "load 2.00" in caplog.text
    assert apply_threads(2).threads == 2 and torch.get_num_threads() == 2


def test_apply_threads_measures_the_load_once(machine, fresh_policy) -> None:
    """The process's own work raises the load; later calls keep the first measurement."""
    torch.set_num_threads(2)
    machine(2, 2, 0.0)
    assert apply_threads().threads == 2
    machine(2, 2, 2.0)  # e.g. this process busy with its own two threads
    assert apply_threads().threads == 2


def test_apply_threads_does_not_ratchet_down(machine, fresh_policy,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A count this module lowered is not taken for the caller's setting."""
    torch.set_num_threads(2)
    machine(2, 2, 1.0)
    assert apply_threads().threads == 1
    # torch now says 1, but that was the policy: with the cores free again, 2 (the caller's)
    monkeypatch.setattr(_threads, "_free", [])  # as if measured anew
    machine(2, 2, 0.0)
    assert apply_threads().threads == 2
    assert apply_threads(1).threads == 1 and apply_threads().threads == 2


def test_apply_threads_keeps_a_lower_caller_setting(machine, fresh_policy) -> None:
    machine(2, 2, 0.0)
    torch.set_num_threads(1)  # the caller's choice
    choice = apply_threads()
    assert (choice.threads, choice.source) == (1, "torch") and torch.get_num_threads() == 1


def test_cli_threads_option_and_default(machine, fresh_policy) -> None:
    from lloca_hep.cli._options import set_threads

    machine(2, 2, 1.4)
    set_threads(argparse.Namespace(num_threads=None))
    assert torch.get_num_threads() == 1
    set_threads(argparse.Namespace(num_threads=2))
    assert torch.get_num_threads() == 2


def test_jet_tagger_applies_its_threads(machine, fresh_policy) -> None:
    pytest.importorskip("coffea")
    from lloca_hep.coffea import JetTagger
    from lloca_hep.io import read_jets

    with pytest.raises(ValueError, match="threads must be an integer"):
        JetTagger(threads=0)
    jets = read_jets(SAMPLE, entry_stop=20).constituents
    torch.set_num_threads(2)
    machine(2, 2, 2.0)
    tagger = JetTagger(threads=2)
    tagger(jets)
    assert torch.get_num_threads() == 2
    JetTagger()(jets)  # the policy: both cores busy
    assert torch.get_num_threads() == 1


def test_dask_worker_threads_inside_a_real_worker() -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        assert client.submit(_threads.dask_worker_threads, pure=False).result() == 2
        choice = client.submit(choose_threads, None, torch_threads=2, pure=False).result()
    assert choice.source in ("dask", "env")  # OMP_NUM_THREADS, when set, comes first
    assert choice.threads == 1 or choice.source == "env"
    assert _threads.dask_worker_threads() is None  # not in a worker here


def test_the_policy_does_not_import_dask() -> None:
    """Looking for a dask worker must not import ``distributed`` (most of a second)."""
    import subprocess
    import sys

    code = ("import sys\nfrom lloca_hep._threads import apply_threads\napply_threads()\n"
            "print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert res.stdout.strip() == "[]"
