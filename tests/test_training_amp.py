"""--amp (autocast of the backbone, float64 frames) and --compile on the CPU."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from lloca_hep.core.lorentz import random_lorentz
from lloca_hep.core.testing import assert_lorentz_equivariant, toy_jets
from lloca_hep.models import build_model
from lloca_hep.tagger import load_tagger, read_tagger_header
from lloca_hep.training import TrainConfig, train
from lloca_hep.training.__main__ import main
from lloca_hep.training.amp import TrainingModel
from tests.test_training_synthetic import write_jet_file

TINY_TRANSFORMER = {"hidden": 16, "blocks": 1, "heads": 2, "frames_hidden": 16}
RUN = dict(model="transformer", model_config=TINY_TRANSFORMER, epochs=1, batch_size=64,
           max_constituents=24, seed=2, device="cpu", num_threads=1)
BF16_EPS = torch.finfo(torch.bfloat16).eps
#: Boosts of the equivariance tests reach this rapidity (project rule).
RAPIDITY = 6.0


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    return write_jet_file(tmp_path_factory.mktemp("amp") / "train.root", 300, seed=31)


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def _model(frames="learned", **extra):
    torch.manual_seed(0)
    return build_model("LLoCaTransformer", {"frames": frames, "symmetry_breaking": False,
                                            **extra}).eval()


def test_frames_run_without_autocast_the_backbone_in_bf16():
    model = _model()
    p4, mask = toy_jets(16, 20, min_constituents=4, seed=3)
    seen = {}

    def frames_pre(module, args):
        seen["autocast_in_frames"] = torch.is_autocast_enabled("cpu")

    def frames_out(module, args, out):
        seen.setdefault("frames", []).append(out)

    def embed_out(module, args, out):
        seen["embed_dtype"] = out.dtype

    model.frame_choice.register_forward_pre_hook(frames_pre)
    model.frame_choice.register_forward_hook(frames_out)
    model.embed.register_forward_hook(embed_out)
    with torch.no_grad():
        plain = model(p4.double(), mask)
        amp = TrainingModel(model, amp="bf16")(p4.double(), mask)
    assert seen["autocast_in_frames"] is False  # switched off around the frames
    assert seen["embed_dtype"] == torch.bfloat16  # the backbone runs in bfloat16
    exact, under_amp = seen["frames"]
    for name in ("p4", "frames", "relative"):
        a, b = getattr(exact, name), getattr(under_amp, name)
        assert b.dtype == torch.float64 and torch.equal(a, b), name  # bit for bit
    assert amp.dtype == torch.bfloat16
    assert not torch.equal(amp.float(), plain)  # the backbone did round


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_lorentz_invariance_with_amp(amp):
    """Random float64 Lorentz transformations (boosts to rapidity 6): with the AMP backbone
    the logits change by at most a few units of the AMP dtype's precision, while the same
    network without local frames changes by orders of magnitude more."""
    p4, mask = toy_jets(48, 24, min_constituents=4, seed=5)
    p4 = p4.double()
    net = TrainingModel(_model(), amp=amp)
    plain = TrainingModel(_model(frames="identity"), amp=amp)
    with torch.no_grad():
        scale = float(net(p4, mask).abs().max())
    eps = torch.finfo(torch.bfloat16 if amp == "bf16" else torch.float16).eps
    tol = 4 * eps * max(scale, 1e-2)
    assert_lorentz_equivariant(lambda p: net(p, mask), p4, rapidity=RAPIDITY, n_transforms=4,
                               atol=tol, rtol=0.0, seed=1)
    gen = torch.Generator().manual_seed(1)
    boost = random_lorentz(1, max_rapidity=RAPIDITY, exact_rapidity=True, generator=gen)[0]
    moved = torch.einsum("ij,bnj->bni", boost, p4)
    with torch.no_grad():
        lloca_change = float((net(moved, mask) - net(p4, mask)).abs().max())
        plain_change = float((plain(moved, mask) - plain(p4, mask)).abs().max())
    assert lloca_change <= tol
    assert plain_change > 30 * tol, (plain_change, tol)


def test_amp_bf16_trains_one_epoch_on_cpu(train_file, tmp_path):
    ref = train(train_file, TrainConfig(**RUN), output_dir=tmp_path / "fp32", progress=False)
    result = train(train_file, TrainConfig(**RUN, amp="bf16"), output_dir=tmp_path / "bf16",
                   progress=False)
    record = result.history[0]
    assert math.isfinite(record["train_loss"]) and math.isfinite(record["val_loss"])
    assert record["train_loss"] == pytest.approx(ref.history[0]["train_loss"], abs=0.02)
    header = read_tagger_header(result.tagger_path)
    assert header["metadata"]["training"]["amp"] == "bf16"
    weights, ref_weights = _weights(result.tagger_path), _weights(ref.tagger_path)
    assert all(w.dtype == ref_weights[k].dtype for k, w in weights.items())  # float32 master
    assert any(not torch.equal(w, ref_weights[k]) for k, w in weights.items())  # it rounded
    tagger = load_tagger(result.tagger_path, device="cpu")  # scores in float32
    p4, mask = toy_jets(4, 10, min_constituents=3, seed=0)
    assert tagger.score_padded(p4.double(), mask).dtype.name == "float32"


def test_amp_fp16_steps_through_a_grad_scaler(train_file, tmp_path, monkeypatch):
    updates = []
    original = torch.amp.GradScaler.update

    def counting(self, *args, **kwargs):
        updates.append(self.get_scale())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.amp.GradScaler, "update", counting)
    result = train(train_file, TrainConfig(**RUN, amp="fp16"), output_dir=tmp_path,
                   progress=False)
    assert math.isfinite(result.history[0]["train_loss"])
    n_steps = -(-result.metadata["n_train_jets"] // RUN["batch_size"])
    assert len(updates) == n_steps


def test_compile_trains_like_eager(train_file, tmp_path, caplog):
    eager = train(train_file, TrainConfig(**RUN), output_dir=tmp_path / "eager", progress=False)
    compiled = train(train_file, TrainConfig(**RUN, compile=True, compile_backend="aot_eager"),
                     output_dir=tmp_path / "compiled", progress=False)
    assert "continues in eager mode" not in caplog.text  # it did compile
    a, b = _weights(eager.tagger_path), _weights(compiled.tagger_path)
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4) for k in a)
    assert compiled.history[0]["val_loss"] == pytest.approx(eager.history[0]["val_loss"],
                                                            rel=1e-5)
    assert read_tagger_header(compiled.tagger_path)["metadata"]["training"]["compile"] is True


def test_a_failing_compiler_backend_falls_back_to_eager(train_file, tmp_path, caplog):
    from torch._dynamo import register_backend

    @register_backend(name="lloca_test_broken")
    def broken(graph_module, example_inputs):
        raise RuntimeError("no compiler on this machine")

    eager = train(train_file, TrainConfig(**RUN), output_dir=tmp_path / "eager", progress=False)
    with caplog.at_level(logging.WARNING, logger="lloca_hep.training.amp"):
        result = train(train_file, TrainConfig(**RUN, compile=True,
                                               compile_backend="lloca_test_broken"),
                       output_dir=tmp_path / "fallback", progress=False)
    assert "continues in eager mode" in caplog.text
    a, b = _weights(eager.tagger_path), _weights(result.tagger_path)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_amp_choices_are_refused(train_file, tmp_path):
    with pytest.raises(ValueError, match="amp must be one of"):
        TrainConfig(amp="fp8")
    with pytest.raises(SystemExit) as exc:
        main(["train", str(train_file), "--amp", "fp8", "-o", str(tmp_path)])
    assert exc.value.code == 2


@pytest.mark.slow
# torch's inductor imports torch.utils.mkldnn, which warns about torch.jit at import time
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compile_with_inductor_trains_like_eager(train_file, tmp_path, caplog):
    """The default backend (inductor, C++ code generation) on a small model: about a minute
    of compilation on two CPU cores (less with inductor's cache from an earlier run)."""
    run = {**RUN, "model": "jet_mass", "model_config": {}}
    eager = train(train_file, TrainConfig(**run), output_dir=tmp_path / "eager", progress=False)
    compiled = train(train_file, TrainConfig(**run, compile=True), output_dir=tmp_path / "ind",
                     progress=False)
    assert "continues in eager mode" not in caplog.text  # inductor did compile
    a, b = _weights(eager.tagger_path), _weights(compiled.tagger_path)
    assert all(torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4) for k in a)
