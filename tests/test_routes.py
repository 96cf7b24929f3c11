"""One ingestion path: the three routes to scores agree bit for bit.

Routes: ``lloca_hep.inference.tag_file`` (what ``lloca-hep tag`` runs; friend tree read back),
``lloca_hep.coffea.JetTagger`` on NanoEvents (PFNano) or on the ragged constituents of
``read_jets`` (flat JetClass sample), and ``lloca_hep.score_files`` with dask's synchronous
scheduler.

The tagger pads each batch to its longest jet, so scores are bit-identical only when the
batches are the same: every route here scores its file in ONE chunk (``tag_file`` with a step
larger than the file, ``score_files`` with ``step_size=None``, JetTagger on the whole array; all
files are far below JetTagger's ``PAD_CHUNK_JETS``). Other chunkings agree to float32 rounding
only.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

pytest.importorskip("dask_awkward")
pytest.importorskip("coffea")

import dask  # noqa: E402

import lloca_hep  # noqa: E402
from lloca_hep.coffea import JetTagger  # noqa: E402
from lloca_hep.inference import tag_file  # noqa: E402
from lloca_hep.io import read_jets  # noqa: E402

#: Seed of the small random tagger of conftest's ``tagger_file``.
TAGGER_SEED = 12
SAMPLE = Path(lloca_hep.__file__).resolve().parent / "data" / "sample.root"
SAMPLE_JETS = 4000
#: A step larger than any test file: tag_file reads (and scores) it in one chunk.
ONE_CHUNK = 10**9

pytestmark = [
    pytest.mark.filterwarnings("ignore::RuntimeWarning:coffea.*"),
    pytest.mark.filterwarnings("ignore:.*Missing cross-reference.*"),
]


def _friend_scores(path: Path) -> ak.Array:
    with uproot.open(path) as f:
        return f["scores"]["score"].array(library="ak")


def _tag_file_route(source: Path, out: Path, model: Path | None) -> ak.Array:
    out.parent.mkdir(parents=True, exist_ok=True)
    tag_file(source, out, model, step_size=ONE_CHUNK, progress=False, device="cpu")
    return _friend_scores(out)


def _score_files_route(source: Path, out_dir: Path, model: Path | None) -> ak.Array:
    with dask.config.set(scheduler="sync"):
        (written,) = lloca_hep.score_files(source, out_dir, model=model, step_size=None,
                                           device="cpu")
    assert written.name == f"{source.stem}_scores.root"  # the name lloca-hep tag uses
    return _friend_scores(written)


def test_shipped_sample_three_routes_bit_identical(tmp_path):
    if not SAMPLE.exists():
        pytest.skip("shipped sample.root not available")
    by_tag = _tag_file_route(SAMPLE, tmp_path / "tag" / "sample_scores.root", None)
    jets = read_jets(SAMPLE)
    by_coffea = JetTagger(device="cpu")(jets.constituents)  # ragged Cartesian records
    by_dask = _score_files_route(SAMPLE, tmp_path / "dask", None)
    for scores in (by_tag, by_coffea, by_dask):
        assert len(scores) == SAMPLE_JETS
    tag_np, coffea_np, dask_np = (np.asarray(ak.to_numpy(s)) for s in (by_tag, by_coffea, by_dask))
    assert tag_np.dtype == coffea_np.dtype == dask_np.dtype == np.float32
    assert np.isfinite(tag_np).all()
    assert np.array_equal(tag_np, coffea_np)
    assert np.array_equal(tag_np, dask_np)


def test_pfnano_three_routes_bit_identical(pfnano_source, tagger_file, nanoevents, tmp_path):
    source = tmp_path / "in" / "pfnano.root"  # never write next to the shared file
    source.parent.mkdir()
    shutil.copyfile(pfnano_source, source)
    by_tag = _tag_file_route(source, tmp_path / "tag" / "pfnano_scores.root", tagger_file)
    by_coffea = JetTagger(tagger_file, device="cpu")(nanoevents(source, "eager"))
    by_dask = _score_files_route(source, tmp_path / "dask", tagger_file)
    # [event][jet] in all three
    counts = ak.to_numpy(ak.num(by_coffea, axis=1))
    assert counts.sum() > 0
    for scores in (by_tag, by_dask):
        np.testing.assert_array_equal(ak.to_numpy(ak.num(scores, axis=1)), counts)
    flat = [np.asarray(ak.to_numpy(ak.flatten(s, axis=1))) for s in (by_tag, by_coffea, by_dask)]
    assert flat[0].dtype == flat[1].dtype == flat[2].dtype == np.float32
    assert np.array_equal(flat[0], flat[1], equal_nan=True)
    assert np.array_equal(flat[0], flat[2], equal_nan=True)
