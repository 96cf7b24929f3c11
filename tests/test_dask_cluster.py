"""A real dask.distributed LocalCluster (2 worker processes): same scores as eager scoring,
one model load per worker, score_files and coffea's Runner with the dask executor.

One cluster is started for the whole module (about 10-30 s on a busy 2-core machine).
"""

from __future__ import annotations

import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch
import uproot

distributed = pytest.importorskip("distributed")
pytest.importorskip("coffea")
pytest.importorskip("dask_awkward")

from coffea import processor  # noqa: E402
from coffea.nanoevents import PFNanoAODSchema  # noqa: E402

from lloca_hep.coffea import JetTagger  # noqa: E402
from lloca_hep.integrations import dask as ld  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: Seed of the small random tagger of conftest's ``tagger_file``.
TAGGER_SEED = 777
EVENTS_IN_FILE = 10
FATJETS_IN_FILE = 24
#: Scores of differently chunked (or threaded) runs agree to float32 rounding.
CHUNKING_ATOL = 1e-6
#: Partitions of the 10 events: more than one per worker.
STEPS = [[0, 3], [3, 6], [6, 8], [8, 10]]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.filterwarnings("ignore::RuntimeWarning:coffea.*"),
    pytest.mark.filterwarnings("ignore:.*Missing cross-reference.*"),
    pytest.mark.filterwarnings("ignore:.*Port .* is already in use.*"),
]


@pytest.fixture(scope="module")
def client():
    # worker processes inherit sys.path: the example processor must be importable there
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as c:
            yield c


@pytest.fixture(scope="module")
def eager_events(pfnano: Path, nanoevents):
    return nanoevents(pfnano, "eager")


@pytest.fixture(scope="module")
def eager(tagger_file: Path, eager_events, client):
    """``eager(ranges)``: eager scores in this process, one tagger call per entry range.

    Bit-identity is expected for identical inputs per call: the model pads each batch to its
    longest jet, so a different chunking (or torch thread count) may change float32 rounding.
    Ranges mirror the dask partitions, and the workers' torch thread count is used (dask
    workers run with OMP_NUM_THREADS=1).
    """
    (worker_threads,) = set(client.run(torch.get_num_threads).values())
    tagger = JetTagger(tagger_file)

    def score(ranges: list[list[int]]) -> list:
        before = torch.get_num_threads()
        torch.set_num_threads(worker_threads)
        try:
            parts = [tagger(eager_events[a:b]) for a, b in ranges]
        finally:
            torch.set_num_threads(before)
        return ak.to_list(ak.concatenate(parts))

    return score


@pytest.fixture(scope="module")
def eager_scores(tagger_file: Path, eager_events) -> list:
    """Eager scores of the whole file in one call, default thread count."""
    return ak.to_list(JetTagger(tagger_file)(eager_events))


def _worker_loads(c) -> dict[str, int]:
    def loads() -> int:
        import lloca_hep.integrations.coffea

        return lloca_hep.integrations._inputs._TAGGER_LOADS

    return c.run(loads)


def test_local_cluster_scores_identical_and_model_loaded_once_per_worker(
        client, tagger_file, pfnano, eager, eager_scores, nanoevents):
    events = nanoevents({str(pfnano): {"object_path": "Events", "steps": STEPS}}, "dask")
    assert events.npartitions == len(STEPS)
    lazy = JetTagger(tagger_file)(events)
    first = lazy.compute()  # the active Client runs it
    assert ak.to_list(first) == eager(STEPS)
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(first)),
                               ak.to_numpy(ak.flatten(ak.Array(eager_scores))), rtol=0,
                               atol=CHUNKING_ATOL)
    second = JetTagger(tagger_file)(events).compute()
    assert ak.to_list(second) == ak.to_list(first)
    loads = _worker_loads(client)
    assert len(loads) == 2
    # 2 x 4 partitions over 2 worker processes: one model load per process that scored any
    assert all(n <= 1 for n in loads.values()) and sum(loads.values()) >= 1


def test_score_files_on_the_cluster(client, tagger_file, pfnano, eager, tmp_path):
    outputs = ld.score_files(pfnano, tmp_path / "out", model=tagger_file, step_size=3)
    assert len(outputs) == 4
    parts = []
    for p in outputs:
        with uproot.open(p) as f:
            parts.append(f[ld.FRIEND_TREE]["score"].array())
    assert ak.to_list(ak.concatenate(parts)) == eager([[0, 3], [3, 6], [6, 9], [9, 10]])
    assert all(n <= 1 for n in _worker_loads(client).values())


def test_runner_with_dask_executor(client, tagger_file, pfnano, eager_scores):
    from examples.coffea_processor import SCORE_BINS, TopTagProcessor

    runner = processor.Runner(processor.DaskExecutor(client=client, status=False),
                              schema=PFNanoAODSchema, chunksize=4)
    result = runner({"ttbar": [str(pfnano)]}, TopTagProcessor(tagger_file), treename="Events")
    out = result["ttbar"]
    assert int(out["events"]) == EVENTS_IN_FILE
    assert int(out["jets"]) == FATJETS_IN_FILE
    h = out["score"]["ttbar", :]
    want, _ = np.histogram(ak.flatten(ak.Array(eager_scores)).to_numpy(), bins=SCORE_BINS,
                           range=(0.0, 1.0))
    np.testing.assert_array_equal(h.values(), want)
