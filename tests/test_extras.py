"""Optional extras missing: the integrations fail with an install hint, as hist does."""

from __future__ import annotations

import importlib
import sys

import pytest


def test_coffea_integration_names_the_extra(monkeypatch):
    monkeypatch.delitem(sys.modules, "lloca_hep.integrations.coffea", raising=False)
    monkeypatch.setitem(sys.modules, "coffea.ml_tools.helper", None)  # as if not installed
    with pytest.raises(ImportError, match=r'pip install "lloca-hep\[coffea\]"'):
        importlib.import_module("lloca_hep.integrations.coffea")


def test_score_files_names_the_extra(monkeypatch, tmp_path):
    from lloca_hep.integrations.dask import score_files

    monkeypatch.setitem(sys.modules, "dask", None)
    with pytest.raises(ImportError, match=r'pip install "lloca-hep\[coffea\]"'):
        score_files([tmp_path / "a.root"], tmp_path)
