"""The example processor (examples/coffea_processor.py) under coffea's Runner and in dask mode."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

pytest.importorskip("coffea")
pytest.importorskip("hist")

from coffea import processor  # noqa: E402
from coffea.nanoevents import PFNanoAODSchema  # noqa: E402

from lloca_hep.coffea import JetTagger  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: Seed of the small random tagger of conftest's ``tagger_file``.
TAGGER_SEED = 99
EVENTS_IN_FILE = 10
FATJETS_IN_FILE = 24

pytestmark = [
    pytest.mark.filterwarnings("ignore::RuntimeWarning:coffea.*"),
    pytest.mark.filterwarnings("ignore:.*Missing cross-reference.*"),
]


def _load_example():
    """Import examples/coffea_processor.py as a module (as a user of the repository would)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    spec = importlib.util.find_spec("examples.coffea_processor")
    assert spec is not None, "examples/coffea_processor.py must be importable"
    return importlib.import_module("examples.coffea_processor")


@pytest.fixture(scope="module")
def example():
    return _load_example()


@pytest.fixture(scope="module")
def expected_hist(tagger_file: Path, pfnano: Path, example, nanoevents) -> np.ndarray:
    events = nanoevents(pfnano, "virtual")
    scores = ak.to_numpy(ak.flatten(JetTagger(tagger_file)(events)))
    counts, _ = np.histogram(scores, bins=example.SCORE_BINS, range=(0.0, 1.0))
    return counts


def _check(result: dict, dataset: str, expected: np.ndarray) -> None:
    out = result[dataset]
    assert int(out["events"]) == EVENTS_IN_FILE
    assert int(out["jets"]) == FATJETS_IN_FILE
    assert int(out["scored_jets"]) == FATJETS_IN_FILE
    h = out["score"]
    np.testing.assert_array_equal(h[dataset, :].values(), expected)
    assert out["score_vs_pt"].sum() == FATJETS_IN_FILE


def test_runner_iterative_executor(example, tagger_file, pfnano, expected_hist):
    proc = example.TopTagProcessor(tagger_file)
    runner = processor.Runner(processor.IterativeExecutor(), schema=PFNanoAODSchema,
                              chunksize=4)  # three chunks, accumulated by the Runner
    result = runner({"ttbar": [str(pfnano)]}, proc, treename="Events")
    _check(result, "ttbar", expected_hist)


def test_dask_mode_with_hist_dask(example, tagger_file, pfnano, expected_hist):
    import dask
    import hist.dask
    from coffea.dataset_tools import DataGroupSpec, apply_to_fileset, preprocess

    proc = example.TopTagProcessor(tagger_file)
    fileset = {"ttbar": {"files": {str(pfnano): "Events"}}}
    available, _ = preprocess(DataGroupSpec(fileset), step_size=4)
    lazy = apply_to_fileset(proc, available, schemaclass=PFNanoAODSchema)
    assert isinstance(lazy["ttbar"]["ttbar"]["score"], hist.dask.Hist)
    (result,) = dask.compute(lazy, scheduler="threads")
    _check(result["ttbar"], "ttbar", expected_hist)


def test_example_command_line(example, tagger_file, pfnano, capsys):
    assert example.main([str(pfnano), "--model", str(tagger_file), "--mode", "virtual"]) == 0
    out = capsys.readouterr().out
    assert f"{EVENTS_IN_FILE} events, {FATJETS_IN_FILE} FatJets" in out
