"""Fixtures shared by the io, coffea and dask tests.

- ``pfnano_source``: the shared PFNano test file (10 events), read-only; the test is skipped
  when it is absent.
- ``pfnano``: a private copy of it per test module (tests never write next to the shared file);
  ``pfnano_copy``: one per test.
- ``tagger_file``: a small random :class:`~lloca_hep.models.LLoCaTransformer` tagger saved as a
  ``.pt`` file per test module, seeded with the module's ``TAGGER_SEED`` (the tests check
  plumbing, not physics).
- ``nanoevents``: ``nanoevents(source, mode)`` builds PFNano NanoEvents ("eager", "virtual" or
  "dask" mode) of a path or of a coffea file spec (``{path: "Events"}`` or
  ``{path: {"object_path": ..., "steps": ...}}``).
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from lloca_hep.models import LLoCaTransformer, model_name
from lloca_hep.tagger import Tagger

#: The repository's shared data directory sits next to the checkout; /work/shared otherwise.
PFNANO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pfnano.root"
if not PFNANO.exists():
    PFNANO = Path("/work/shared/data/pfnano.root")
#: Size of the tagger in ``tagger_file``.
SMALL_TAGGER = dict(hidden=16, blocks=1, heads=2, frames_hidden=8)
SMALL_TAGGER_MAX_CONSTITUENTS = 24


@pytest.fixture(scope="session")
def pfnano_source() -> Path:
    if not PFNANO.exists():
        pytest.skip("pfnano.root not available")
    return PFNANO


@pytest.fixture(scope="module")
def pfnano(pfnano_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("data") / "pfnano.root"
    shutil.copyfile(pfnano_source, dest)
    return dest


@pytest.fixture
def pfnano_copy(pfnano_source: Path, tmp_path: Path) -> Path:
    """A private copy of the PFNano file for one test (outputs may be written beside it)."""
    dest = tmp_path / "pfnano.root"
    shutil.copyfile(pfnano_source, dest)
    return dest


@pytest.fixture(scope="module")
def tagger_file(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(request.module.TAGGER_SEED)
    model = LLoCaTransformer(**SMALL_TAGGER)
    path = tmp_path_factory.mktemp("tagger") / "small.pt"
    Tagger(model, model_name(model), SMALL_TAGGER_MAX_CONSTITUENTS).save(path)
    return path


def _nanoevents(source: Path | dict[str, Any], mode: str) -> Any:
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    if isinstance(source, Path):
        source = {str(source): "Events"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return NanoEventsFactory.from_root(source, schemaclass=PFNanoAODSchema, mode=mode).events()


@pytest.fixture(scope="session")
def nanoevents() -> Callable[..., Any]:
    return _nanoevents
