"""torch.export of taggers (.pt2): dynamic shapes, embedded header, same scores as eager."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch

from lloca_hep.io import read_jets
from lloca_hep.models import LLoCaTransformer, model_name
from lloca_hep.tagger import Tagger, TaggerFileError, load_tagger
from lloca_hep.tagger.export import (
    ExportedTagger,
    export_tagger,
    load_exported,
    read_exported_header,
)

PFNANO = Path("/work/shared/data/pfnano.root")
SMALL = dict(hidden=16, blocks=1, heads=2, frames_hidden=8)
MAX_CONSTITUENTS = 24
SEED = 2024
#: Exported and eager programs run the same float operations; allow only rounding noise.
SCORE_ATOL = 1e-6


@pytest.fixture(scope="module")
def tagger() -> Tagger:
    torch.manual_seed(SEED)
    model = LLoCaTransformer(**SMALL)
    return Tagger(model, model_name(model), MAX_CONSTITUENTS, metadata={"purpose": "test"},
                  device="cpu")


@pytest.fixture(scope="module")
def exported_file(tagger: Tagger, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tagger(tagger, tmp_path_factory.mktemp("export") / "small.pt2")


@pytest.fixture(scope="module")
def loaded(exported_file: Path) -> ExportedTagger:
    return load_tagger(exported_file)  # dispatched to load_exported on the .pt2 suffix


@pytest.fixture(scope="module")
def jets(tmp_path_factory: pytest.TempPathFactory) -> ak.Array:
    if not PFNANO.exists():
        pytest.skip("pfnano.root not available")
    copy = tmp_path_factory.mktemp("data") / "pfnano.root"
    shutil.copyfile(PFNANO, copy)
    return read_jets(copy)


def test_exported_tagger_reproduces_eager_scores(tagger, loaded, jets):
    assert isinstance(loaded, ExportedTagger)
    assert loaded.max_constituents == MAX_CONSTITUENTS
    assert loaded.model_name == tagger.model_name and loaded.config == tagger.config
    want = tagger.score(jets)
    got = loaded.score(jets)
    assert got.dtype == np.float32 and got.shape == want.shape == (len(jets),)
    np.testing.assert_allclose(got, want, rtol=0, atol=SCORE_ATOL)


def test_dynamic_batch_and_constituent_dimensions(tagger, loaded):
    gen = torch.Generator().manual_seed(3)
    for batch, width in ((1, 1), (1, 17), (5, 1), (9, MAX_CONSTITUENTS), (2, 3 * MAX_CONSTITUENTS)):
        p3 = torch.randn(batch, width, 3, dtype=torch.float64, generator=gen) * 30.0
        p3[..., 2] += 100.0
        p4 = torch.cat([(p3.pow(2).sum(-1) + 0.01).sqrt()[..., None], p3], dim=-1)
        mask = torch.ones(batch, width, dtype=torch.bool)
        if width > 2:
            mask[0, width // 2:] = False
        with torch.no_grad():
            want = tagger.model(p4, mask)
            got = loaded.model(p4, mask)
        assert got.shape == (batch,)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_header_is_embedded_and_save_round_trips(tagger, exported_file, loaded, tmp_path, jets):
    header = read_exported_header(exported_file)
    assert header["model_name"] == tagger.model_name
    assert header["max_constituents"] == MAX_CONSTITUENTS
    assert header["config"] == tagger.config
    assert header["metadata"] == {"purpose": "test"}
    assert header["export"]["torch_version"] == torch.__version__
    assert not list(exported_file.parent.glob(".*tmp*"))  # atomic write left no temp file
    again = loaded.save(tmp_path / "again.pt2")
    assert read_exported_header(again) == header
    np.testing.assert_array_equal(load_exported(again).score(jets), loaded.score(jets))


def test_coffea_jet_tagger_accepts_exported_files(tagger, exported_file, tmp_path):
    pytest.importorskip("coffea")
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    from lloca_hep.coffea import JetTagger

    pt_file = tagger.save(tmp_path / "small.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        events = NanoEventsFactory.from_root({str(PFNANO): "Events"},
                                             schemaclass=PFNanoAODSchema).events()
    from_pt = ak.to_numpy(ak.flatten(JetTagger(pt_file)(events)))
    from_pt2 = ak.to_numpy(ak.flatten(JetTagger(exported_file)(events)))
    np.testing.assert_allclose(from_pt2, from_pt, rtol=0, atol=SCORE_ATOL)


def test_bad_files(tagger, tmp_path):
    with pytest.raises(ValueError, match=r"must end in \.pt2"):
        export_tagger(tagger, tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError):
        load_exported(tmp_path / "missing.pt2")
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"not a zip archive")
    with pytest.raises(TaggerFileError, match="junk.pt2.*not a readable torch.export"):
        load_tagger(junk)
