"""lloca_hep.models.register_model: a model from another package, made Lorentz invariant with
LorentzCanonicalized, registered, trained for one epoch and scored; what registration refuses;
tagger files naming unregistered models fail clearly and import nothing."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

import lloca_hep
from lloca_hep.core.canonicalize import LorentzCanonicalized
from lloca_hep.core.features import NUM_LOCAL_FEATURES
from lloca_hep.core.lorentz import apply, random_lorentz
from lloca_hep.core.testing import toy_jets
from lloca_hep.models import MODELS, build_model, model_name, register_model
from lloca_hep.tagger import Tagger, TaggerFileError, load_tagger, write_tagger_file
from lloca_hep.training import TrainConfig, train
from tests.test_training_synthetic import write_jet_file

NAME = "lorentz_deep_sets"
#: A standard-library module nothing imports (importing it prints the Zen of Python).
UNIMPORTED_MODULE = "this"


class DeepSets(nn.Module):
    """Stands for a model from another package: ``x (B, N, F), mask (B, N) -> (B, 1)``."""

    def __init__(self, n_in: int, hidden: int):
        super().__init__()
        self.phi = nn.Sequential(nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.rho = nn.Sequential(nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.phi(x) * mask[..., None].to(x.dtype)
        return self.rho(h.sum(1) / mask.sum(1, keepdim=True).clamp_min(1).to(x.dtype))


class LorentzDeepSets(LorentzCanonicalized):
    """The user's adapter: the lloca-hep call ``model(p4, mask, scalars=None) -> logits (B,)``
    and a JSON ``config``."""

    def __init__(self, hidden: int = 16, frames: str = "global"):
        super().__init__(DeepSets(NUM_LOCAL_FEATURES, hidden), frames=frames)
        self._config = {"hidden": hidden, "frames": frames}

    @property
    def config(self) -> dict:
        return dict(self._config)

    def forward(self, p4, mask, scalars=None):
        return super().forward(p4, mask)[:, 0].float()


@pytest.fixture
def registered():
    register_model(NAME, LorentzDeepSets)
    yield NAME
    MODELS.pop(NAME, None)


def test_register_train_and_score(registered, tmp_path):
    assert model_name(LorentzDeepSets()) == NAME
    register_model(NAME, LorentzDeepSets)  # again, same class: fine
    path = write_jet_file(tmp_path / "train.root", 200, seed=3)
    config = TrainConfig(model=NAME, epochs=1, batch_size=64, max_constituents=24,
                         model_config={"hidden": 8}, device="cpu")
    result = train(path, config, output_dir=tmp_path / "run", progress=False)
    jets = lloca_hep.read_jets(path)
    scores = result.tagger.score(jets)
    assert scores.shape == (len(jets),) and np.isfinite(scores).all()
    tagger = load_tagger(tmp_path / "run" / "tagger.pt")
    assert tagger.model_name == NAME and tagger.config == {"hidden": 8, "frames": "global"}
    np.testing.assert_array_equal(tagger.score(jets), scores)
    # the wrapped model is Lorentz invariant (global canonical frame, float64 frames)
    p, mask = toy_jets(6, 30, seed=2)
    lam = random_lorentz(6, max_rapidity=2.0, exact_rapidity=True, seed=1)
    with torch.no_grad():
        a, b = tagger.model(p, mask), tagger.model(apply(lam[:, None], p), mask)
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)


def test_registration_errors(registered):
    class Other(LorentzDeepSets):
        pass

    class NoConfig(nn.Module):
        def forward(self, p4, mask, scalars=None):
            return p4[..., 0].sum(1)

    class TupleConfig(NoConfig):
        @property
        def config(self):
            return {"widths": (1, 2)}

    with pytest.raises(ValueError, match="is taken"):
        register_model(NAME, Other)
    with pytest.raises(ValueError, match="is taken"):
        register_model("transformer", Other)  # an alias
    with pytest.raises(ValueError, match="already registered as"):
        register_model("second_name", LorentzDeepSets)
    with pytest.raises(ValueError, match="identifier"):
        register_model("my.model", Other)
    with pytest.raises(TypeError, match="nn.Module"):
        register_model("not_a_module", dict)
    with pytest.raises(TypeError, match="config"):
        register_model("no_config", NoConfig)
    register_model("tuple_config", TupleConfig)
    try:
        with pytest.raises(ValueError, match="JSON"):
            build_model("tuple_config", {})
    finally:
        MODELS.pop("tuple_config")
    assert "second_name" not in MODELS and "no_config" not in MODELS


@pytest.mark.parametrize("stored_name", [NAME, f"{UNIMPORTED_MODULE}.DeepSets"])
def test_unregistered_model_file_fails_without_imports(registered, tmp_path, stored_name):
    tagger = Tagger(LorentzDeepSets(), NAME, 24)
    header = {**tagger.header(), "model_name": stored_name}
    path = write_tagger_file(tmp_path / "t.pt", header, tagger.model.state_dict())
    MODELS.pop(NAME)
    assert UNIMPORTED_MODULE not in sys.modules
    before = set(sys.modules)
    with pytest.raises(TaggerFileError, match=r"unknown model .*register_model"):
        load_tagger(path)
    assert set(sys.modules) - before == set()
