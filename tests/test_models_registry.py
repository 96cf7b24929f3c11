"""lloca_hep.models.registry owns the model names: registry keys and their short aliases."""

from __future__ import annotations

import pytest

from lloca_hep.models import MODEL_ALIASES, MODELS, resolve_model_name
from lloca_hep.models.registry import model_names


@pytest.mark.parametrize(("alias", "full"), [
    ("transformer", "LLoCaTransformer"),
    ("graphnet", "LLoCaGraphNet"),
    ("jet_mass", "JetMassTagger"),
    ("plain_transformer", "plain_transformer"),
    ("part", "part"),
    ("llocapart", "llocapart"),
    ("particlenet", "particlenet"),
    ("llocaparticlenet", "llocaparticlenet"),
])
def test_aliases_resolve_to_registry_keys(alias, full):
    assert resolve_model_name(alias) == full
    assert full in MODELS


def test_every_alias_and_key_resolves():
    assert set(MODEL_ALIASES.values()) <= set(MODELS)
    for name in model_names():
        assert resolve_model_name(name) in MODELS
    for key in MODELS:
        assert resolve_model_name(key) == key


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match="unknown model 'resnet'.*graphnet.*transformer"):
        resolve_model_name("resnet")
