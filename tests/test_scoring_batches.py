"""How Tagger.score_padded forms and runs its batches (issues 14 and 16: throughput).

Jets are batched by descending multiplicity and, on the CPU, scored on several threads with
one torch intra-op thread each; none of that may change a score beyond float round-off, lose
or misplace a jet, or leave torch's thread count changed. tag_file reads ahead on a thread
(lloca_hep.inference.readahead): order, errors and early stops must be those of a plain loop.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from lloca_hep.core.testing import toy_jets
from lloca_hep.inference.readahead import read_ahead
from lloca_hep.models import build_model
from lloca_hep.tagger import Tagger

TINY = {"hidden": 16, "blocks": 1, "heads": 2, "frames_hidden": 16}
N_JETS = 150
MAX_CONSTITUENTS = 40
#: Float32 round-off between batchings / thread counts (scores are probabilities in [0, 1]).
ATOL = 2e-6


@pytest.fixture(scope="module")
def tagger() -> Tagger:
    torch.manual_seed(0)
    return Tagger(build_model("LLoCaTransformer", TINY), "LLoCaTransformer", MAX_CONSTITUENTS,
                  device="cpu", batch_size=32)


@pytest.fixture(scope="module")
def jets() -> tuple[np.ndarray, np.ndarray]:
    p4, mask = toy_jets(N_JETS, max_constituents=MAX_CONSTITUENTS, min_constituents=2, seed=5)
    p4, mask = p4.numpy().copy(), mask.numpy().copy()
    p4[[3, 77]] = 0.0  # two empty jets among them
    mask[[3, 77]] = False
    return p4, mask


class _Threads:
    """Set torch's intra-op thread count inside the block, restore it after."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self) -> None:
        self.before = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.before)


def _one_at_a_time(tagger: Tagger, p4: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The reference: every jet alone, trimmed to its own constituents."""
    out = np.full(len(p4), np.nan, dtype=np.float32)
    with torch.no_grad():
        for i in range(len(p4)):
            n = int(mask[i].sum())
            if n:
                logits = tagger.model(torch.from_numpy(p4[i:i + 1, :n]),
                                      torch.from_numpy(mask[i:i + 1, :n]))
                out[i] = float(torch.sigmoid(logits.reshape(-1)[0]))
    return out


@pytest.mark.parametrize("threads", [1, 2])
def test_batched_scores_are_those_of_each_jet_alone(tagger, jets, threads):
    p4, mask = jets
    want = _one_at_a_time(tagger, p4, mask)
    with _Threads(threads):
        got = tagger.score_padded(p4, mask, warn_empty=False)
        assert torch.get_num_threads() == threads
    assert np.isnan(got[[3, 77]]).all()
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)


def test_scores_follow_the_jets_through_any_input_order(tagger, jets):
    p4, mask = jets
    perm = np.random.default_rng(1).permutation(len(p4))
    with _Threads(2):
        plain = tagger.score_padded(p4, mask, warn_empty=False)
        shuffled = tagger.score_padded(p4[perm], mask[perm], warn_empty=False)
    np.testing.assert_allclose(shuffled, plain[perm], rtol=0, atol=ATOL)


def test_batch_plan_covers_every_jet_once_widest_first(tagger, jets):
    _, mask = jets
    counts = torch.from_numpy(mask).sum(1)
    nonempty = torch.nonzero(counts > 0).flatten()
    for batch_size in (32, 1000, 7):
        plans = []
        for threads in (1, 2, 3):
            with _Threads(threads):
                batches, workers = tagger._plan_batches(counts, nonempty, batch_size)
            assert workers == min(threads, len(batches))
            flat = torch.cat(batches)
            assert sorted(flat.tolist()) == sorted(nonempty.tolist())
            assert all(len(b) <= batch_size for b in batches)
            assert len(batches) >= 2  # even one batch's worth of jets is shared by two cores
            assert torch.all(counts[flat][:-1] >= counts[flat][1:])  # descending multiplicity
            plans.append([b.tolist() for b in batches])
        assert plans[0] == plans[1] == plans[2]  # the plan does not depend on the threads


def test_scores_are_bitwise_the_same_on_any_thread_count(tagger, jets):
    """Batches independent of the thread count, one intra-op thread each: the same scores
    whatever the cores free (and the ``lloca-hep`` command writes those of a Python session)."""
    p4, mask = jets
    got = {}
    for threads in (1, 2, 3):
        with _Threads(threads):
            got[threads] = tagger.score_padded(p4, mask, warn_empty=False)
    assert got[1].tobytes() == got[2].tobytes() == got[3].tobytes()


def test_worker_threads_score_with_one_intraop_thread_and_errors_propagate(jets):
    p4, mask = jets
    seen: list[tuple[int, str]] = []
    fail = {"after": 10**9}

    class Recording(torch.nn.Module):
        def forward(self, p4, mask):
            seen.append((torch.get_num_threads(), threading.current_thread().name))
            if len(seen) > fail["after"]:
                raise RuntimeError("boom in forward")
            return p4[..., 0].sum(1) * 0.0

    tagger = Tagger(Recording(), "recording", MAX_CONSTITUENTS, device="cpu", batch_size=16)
    with _Threads(2):
        tagger.score_padded(p4[:40], mask[:40], warn_empty=False)
        assert torch.get_num_threads() == 2
        assert seen and all(n == 1 for n, _ in seen)
        assert all(name.startswith("lloca-score") for _, name in seen)
        seen.clear()
        fail["after"] = 3
        with pytest.raises(RuntimeError, match="boom in forward"):
            tagger.score_padded(p4, mask, warn_empty=False)
        assert torch.get_num_threads() == 2
    fail["after"] = 10**9
    with _Threads(2):
        tagger.parallel_batches = False
        seen.clear()
        tagger.score_padded(p4[:40], mask[:40], warn_empty=False)
        assert all(n == 2 and name == threading.current_thread().name for n, name in seen)


def test_read_ahead_keeps_order_and_prepares_on_another_thread():
    where: list[str] = []

    def prepare(x: int) -> int:
        where.append(threading.current_thread().name)
        return x * x

    assert list(read_ahead(iter(range(7)), prepare)) == [(i, i * i) for i in range(7)]
    assert where and all(name == "lloca-read-ahead" for name in where)
    assert list(read_ahead(iter([]), prepare)) == []
    with pytest.raises(ValueError, match="depth"):
        next(read_ahead(iter(range(3)), prepare, depth=0))


class _Source:
    """An iterator of 0..n-1 that records whether it was closed and can fail at ``fail_at``."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n, self.fail_at, self.closed = n, fail_at, False

    def __iter__(self) -> Iterator[int]:
        return self._gen()

    def _gen(self) -> Iterator[int]:
        try:
            for i in range(self.n):
                if i == self.fail_at:
                    raise KeyError(f"bad entry {i}")
                yield i
        finally:
            self.closed = True


def test_read_ahead_raises_the_source_error_in_turn_and_closes_the_source():
    source = _Source(5, fail_at=3)
    got = []
    with pytest.raises(KeyError, match="bad entry 3"):
        for item, _ in read_ahead(iter(source), lambda x: x):
            got.append(item)
    assert got == [0, 1, 2] and source.closed

    def prepare(x: int) -> int:
        if x == 1:
            raise ValueError("cannot pad jet 1")
        return x

    source = _Source(5)
    with pytest.raises(ValueError, match="cannot pad jet 1"):
        list(read_ahead(iter(source), prepare))
    assert source.closed


def test_read_ahead_stops_and_closes_the_source_when_the_caller_stops():
    source = _Source(1000)
    stream = read_ahead(iter(source), lambda x: x)
    assert next(stream) == (0, 0)
    stream.close()  # what a break or an error of the caller does
    assert source.closed
    assert not any(t.name == "lloca-read-ahead" for t in threading.enumerate())
