"""ONNX export and the ONNX Runtime back end (issue 16): every model kind, binary and multi-class
with features; same scores as torch; dynamic shapes; Lorentz invariance of the exported graph;
self-describing metadata; ``lloca-hep export`` and ``tag --model x.onnx``; hostile files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch
import uproot
from jetclass_files import write_jetclass

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

import lloca_hep  # noqa: E402
from lloca_hep.cli import main  # noqa: E402
from lloca_hep.core.lorentz import apply, random_lorentz  # noqa: E402
from lloca_hep.core.testing import toy_jets  # noqa: E402
from lloca_hep.features import preset  # noqa: E402
from lloca_hep.io import read_jets  # noqa: E402
from lloca_hep.models import build_model  # noqa: E402
from lloca_hep.tagger import (  # noqa: E402
    OnnxTagger,
    Tagger,
    TaggerFileError,
    export_onnx,
    read_tagger_header,
    validate_header,
)
from lloca_hep.tagger.onnx_backend import META_KEYS  # noqa: E402
from lloca_hep.tagger.onnx_export import probability_module  # noqa: E402

SAMPLE = Path(lloca_hep.__file__).parent / "data" / "sample.root"
#: Small models (hidden 16, one block); the LLoCa ones without symmetry breaking, so that the
#: binary exports double as the invariance test.
SMALL = {
    "LLoCaTransformer": dict(hidden=16, blocks=1, heads=2, frames_hidden=8,
                             symmetry_breaking=False),
    "LLoCaGraphNet": dict(hidden=16, layers=1, neighbours=4, frames_hidden=8,
                          symmetry_breaking=False),
    "plain_transformer": dict(hidden=16, blocks=1, heads=2),
    "JetMassTagger": dict(hidden=16),
}
LLOCA = ("LLoCaTransformer", "LLoCaGraphNet")
CLASSES = ("QCD", "Hbb", "Tbqq")
MAX_CONSTITUENTS = 24
#: The bound of the issue: ONNX Runtime vs torch probabilities.
SCORE_ATOL = 1e-5
#: tests/test_models_transformer.py DEFAULT_BOUNDS[4.0]: relative score change at rapidity 4.
INVARIANCE_BOUND = 1e-6
SAMPLE_JETS = 500
TAG_JETS = 300
SEED = 16

pytestmark = pytest.mark.slow  # every fixture exports a model (10-40 s each on a loaded machine)


def cli(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lloca_hep", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=600)


def _tagger(kind: str, multiclass: bool) -> Tagger:
    torch.manual_seed(SEED)
    config = dict(SMALL[kind])
    if multiclass:
        config.update(num_classes=len(CLASSES), num_scalars=len(preset("full")))
        return Tagger(build_model(kind, config), kind, MAX_CONSTITUENTS, inputs=preset("full"),
                      classes=CLASSES)
    return Tagger(build_model(kind, config), kind, MAX_CONSTITUENTS)


CASES = [(kind, multi) for kind in SMALL for multi in (False, True)]


@pytest.fixture(scope="module", params=CASES, ids=[f"{k}-{'multi' if m else 'binary'}"
                                                   for k, m in CASES])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[Tagger, Path, dict]:
    kind, multi = request.param
    tagger = _tagger(kind, multi)
    path = tmp_path_factory.mktemp("onnx") / f"{kind}.onnx"
    summary = export_onnx(tagger, path)
    return tagger, path, summary


@pytest.fixture(scope="module")
def jetclass_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jetclass(tmp_path_factory.mktemp("jc") / "jetclass.root", 20, CLASSES, seed=3,
                          max_constituents=MAX_CONSTITUENTS + 8)


@pytest.fixture(scope="module")
def sample_jets() -> ak.Array:
    return read_jets(SAMPLE, entry_stop=SAMPLE_JETS)


def test_scores_agree_on_a_jetclass_file(exported, jetclass_file):
    tagger, path, summary = exported
    loaded = lloca_hep.load_tagger(path)
    assert isinstance(loaded, OnnxTagger)
    assert summary["max_abs_diff"] <= SCORE_ATOL and summary["bytes"] == path.stat().st_size
    assert loaded.class_names == tagger.class_names
    assert loaded.is_multiclass == tagger.is_multiclass
    assert loaded.max_constituents == tagger.max_constituents
    assert loaded.inputs == tagger.inputs and loaded.model_name == tagger.model_name
    jets = read_jets(jetclass_file, features=tagger.inputs if len(tagger.inputs) else None)
    want, got = tagger.score(jets), loaded.score(jets)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert want.shape == ((len(jets), len(CLASSES)) if tagger.is_multiclass else (len(jets),))
    np.testing.assert_allclose(got, want, rtol=0, atol=SCORE_ATOL)


def test_binary_scores_agree_on_the_shipped_sample(exported, sample_jets):
    tagger, path, _ = exported
    if tagger.is_multiclass:
        pytest.skip("the shipped sample has no particle features")
    want = tagger.score(sample_jets)
    np.testing.assert_allclose(lloca_hep.load_tagger(path).score(sample_jets), want, rtol=0,
                               atol=SCORE_ATOL)


def test_dynamic_batch_and_constituents(exported):
    tagger, path, _ = exported
    session = lloca_hep.load_tagger(path).session
    wrapper = probability_module(tagger).eval()
    n_scalars = len(tagger.inputs)
    gen = torch.Generator().manual_seed(7)
    for batch, width in ((1, 1), (1, 17), (5, 1), (9, MAX_CONSTITUENTS), (2, 3 * MAX_CONSTITUENTS)):
        p4, mask = toy_jets(batch, width, min_constituents=1, seed=batch * 100 + width)
        feed = {"p4": p4.numpy(), "mask": mask.numpy()}
        args = [p4, mask]
        if n_scalars:
            scalars = torch.randn(batch, width, n_scalars, generator=gen) * mask[..., None]
            feed["scalars"] = scalars.numpy()
            args.append(scalars)
        (got,) = session.run(["probabilities"], feed)
        with torch.no_grad():
            want = wrapper(*args).numpy()
        assert got.shape == (batch, tagger.n_classes) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=SCORE_ATOL)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)


def test_exported_lloca_graph_is_lorentz_invariant(exported):
    tagger, path, _ = exported
    if tagger.model_name not in LLOCA or tagger.is_multiclass:
        pytest.skip("invariance is checked on the binary LLoCa exports")
    session = lloca_hep.load_tagger(path).session
    p4, mask = toy_jets(16, 60, min_constituents=20, seed=123)
    lam = random_lorentz(16, max_rapidity=4.0, exact_rapidity=True, seed=202)
    boosted = apply(lam[:, None], p4)
    (s0,) = session.run(["probabilities"], {"p4": p4.numpy(), "mask": mask.numpy()})
    (s1,) = session.run(["probabilities"], {"p4": boosted.numpy(), "mask": mask.numpy()})
    p0, p1 = s0[:, 1].astype(np.float64), s1[:, 1].astype(np.float64)
    assert np.max(np.abs(p1 - p0) / p0) <= INVARIANCE_BOUND


def test_metadata_describes_the_tagger(exported):
    tagger, path, _ = exported
    model = onnx.load(path)
    props = {p.key: p.value for p in model.metadata_props}
    assert set(META_KEYS) <= set(props)
    assert json.loads(props["class_names"]) == list(tagger.class_names)
    assert int(props["max_constituents"]) == MAX_CONSTITUENTS
    assert json.loads(props["inputs"]) == tagger.inputs.to_json()
    assert props["model_name"] == tagger.model_name
    assert props["lloca_hep_version"] == lloca_hep.__version__
    pre = json.loads(props["preprocessing"])
    assert pre["p4"] == {"order": ["E", "px", "py", "pz"], "units": "GeV", "frame": "lab",
                         "dtype": "float64"}
    assert pre["sort_by_pt"] is True and pre["max_constituents"] == MAX_CONSTITUENTS
    assert pre["scalars"] == list(tagger.inputs.names)
    header = validate_header(path, props["lloca_hep_header"])
    assert header["config"] == tagger.config and read_tagger_header(path)["config"] == tagger.config
    inputs = {v.name: v.type.tensor_type for v in model.graph.input}
    want = {"p4": onnx.TensorProto.DOUBLE, "mask": onnx.TensorProto.BOOL}
    if len(tagger.inputs):
        want["scalars"] = onnx.TensorProto.FLOAT
    assert {k: t.elem_type for k, t in inputs.items()} == want
    assert [d.dim_param for d in inputs["p4"].shape.dim[:2]] == ["batch", "constituents"]
    (out,) = model.graph.output
    assert out.name == "probabilities" and out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}


# ---------------------------------------------------------------- the CLI and the shipped tagger
@pytest.fixture(scope="module")
def shipped_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "top.onnx"
    r = cli("export", "-o", out)
    assert r.returncode == 0, r.stderr[-2000:]
    assert str(out) in r.stdout and "opset 18" in r.stdout and "probabilities" in r.stdout
    return out


@pytest.fixture(scope="module")
def small_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tagger("JetMassTagger", False).save(tmp_path_factory.mktemp("pt") / "small.pt")


@pytest.fixture(scope="module")
def tag_file_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first TAG_JETS jets of the shipped sample, in the same layout."""
    with uproot.open(SAMPLE) as f:
        arrays = f["jets"].arrays(entry_stop=TAG_JETS)
    part = ak.zip({name[5:]: arrays[name] for name in arrays.fields if name.startswith("part_")})
    data = {"part": part, **{k: arrays[k] for k in arrays.fields
                             if not k.startswith("part_") and k != "npart"}}
    path = tmp_path_factory.mktemp("tag") / "jets.root"
    with uproot.recreate(path) as f:
        f["jets"] = data
    return path


def test_shipped_tagger_exported_by_the_cli_scores_like_torch(shipped_onnx, sample_jets):
    loaded = lloca_hep.load_tagger(shipped_onnx)
    shipped = lloca_hep.load_tagger(device="cpu")
    assert loaded.header()["config"] == shipped.config
    np.testing.assert_allclose(loaded.score(sample_jets), shipped.score(sample_jets), rtol=0,
                               atol=SCORE_ATOL)


def test_tag_with_an_onnx_model(shipped_onnx, tag_file_input, tmp_path):
    out = tmp_path / "scores.root"
    r = cli("tag", tag_file_input, "--model", shipped_onnx, "-o", out, "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    with uproot.open(out) as f:
        got = f["scores"]["score"].array(library="np")
    want = lloca_hep.load_tagger(device="cpu").score(read_jets(tag_file_input))
    assert got.shape == (TAG_JETS,)
    np.testing.assert_allclose(got, want, rtol=0, atol=SCORE_ATOL)


def test_export_cli_pt2_and_no_overwrite(small_pt, tmp_path, caplog):
    pt2 = tmp_path / "small.pt2"
    r = cli("export", "--model", small_pt, "-o", pt2)
    assert r.returncode == 0, r.stderr[-2000:]
    assert str(pt2) in r.stdout and pt2.stat().st_size > 0
    jets = read_jets(SAMPLE, entry_stop=50)
    np.testing.assert_allclose(lloca_hep.load_tagger(pt2).score(jets),
                               lloca_hep.load_tagger(small_pt).score(jets))
    before = pt2.read_bytes()
    # the same command code in this process (no second Python start-up)
    assert main(["export", "--model", str(small_pt), "-o", str(pt2)]) == 2
    assert "exists" in caplog.text and pt2.read_bytes() == before
    assert main(["export", "--model", str(small_pt), "-o", str(tmp_path / "small.txt")]) == 2
    assert ".onnx" in caplog.text and not (tmp_path / "small.txt").exists()


# ---------------------------------------------------------------- files that are not taggers
@pytest.fixture(scope="module")
def small_onnx(small_pt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("small") / "small.onnx"
    export_onnx(lloca_hep.load_tagger(small_pt), path)
    return path


def _foreign(path: Path) -> Path:
    h = onnx.helper
    graph = h.make_graph([h.make_node("Identity", ["x"], ["y"])], "g",
                         [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 18)]), path)
    return path


def _truncated(src: Path, path: Path) -> Path:
    data = src.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("kind", ["truncated", "foreign"])
def test_bad_onnx_file_exits_2_naming_the_file(kind, small_onnx, tag_file_input, tmp_path,
                                               caplog):
    bad = (_truncated(small_onnx, tmp_path / "bad.onnx") if kind == "truncated"
           else _foreign(tmp_path / "bad.onnx"))
    out = tmp_path / "scores.root"
    # lloca-hep tag's code in this process: exit code and the one-line message it logs
    assert main(["tag", str(tag_file_input), "--model", str(bad), "-o", str(out),
                 "--no-progress"]) == 2
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert str(bad) in record.getMessage() and record.exc_info is None
    assert ("truncated" if kind == "truncated" else "without lloca-hep metadata") in record.getMessage()
    assert not out.exists() and not list(tmp_path.glob(".scores*"))
    with pytest.raises(TaggerFileError, match="bad.onnx"):
        lloca_hep.load_tagger(bad)


def _edit(src: Path, dst: Path, change) -> Path:
    model = onnx.load(src)
    change(model)
    onnx.save(model, dst)
    return dst


def _custom_domain(model) -> None:
    model.opset_import.add(domain="com.example.evil", version=1)
    model.graph.node.add(op_type="RunShell", domain="com.example.evil", input=["p4"],
                         output=["unused"])


def _external_data(model) -> None:
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="/etc/passwd")


def _no_header(model) -> None:
    kept = [p for p in model.metadata_props if p.key != "lloca_hep_header"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)


def _bad_json(model) -> None:
    next(p for p in model.metadata_props if p.key == "class_names").value = "[not json"


@pytest.mark.parametrize("change, problem", [
    (_custom_domain, "custom operator domain"),
    (_external_data, "external data"),
    (_no_header, "lacks"),
    (_bad_json, "class_names"),
])
def test_unsafe_or_damaged_onnx_is_refused(small_onnx, tmp_path, change, problem):
    bad = _edit(small_onnx, tmp_path / "edited.onnx", change)
    with pytest.raises(TaggerFileError, match=problem):
        lloca_hep.load_tagger(bad)
    with pytest.raises(TaggerFileError, match=problem):
        read_tagger_header(bad)


@pytest.mark.filterwarnings("ignore::RuntimeWarning:coffea.*")
@pytest.mark.filterwarnings("ignore:.*Missing cross-reference.*")
def test_jettagger_accepts_an_onnx_model(exported, pfnano, nanoevents, tmp_path):
    tagger, path, _ = exported
    if tagger.model_name != "LLoCaTransformer" or tagger.is_multiclass:
        pytest.skip("one model is enough")
    pytest.importorskip("coffea")
    from lloca_hep import coffea as lc

    pt = tagger.save(tmp_path / "small.pt")
    events = nanoevents(pfnano, "eager")
    got = lc.JetTagger(model=path)(events)
    want = lc.JetTagger(model=pt)(events)
    assert ak.sum(ak.num(got, axis=1)) > 0
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(got)), ak.to_numpy(ak.flatten(want)),
                               rtol=0, atol=SCORE_ATOL)


def test_missing_onnxruntime_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    path = tmp_path / "x.onnx"
    path.write_bytes(b"not read")
    with pytest.raises(ImportError, match=r'pip install "lloca-hep\[onnx\]"'):
        lloca_hep.load_tagger(path)
