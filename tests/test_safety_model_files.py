"""Tagger files from strangers: loading never runs their code, bad files fail clearly.

Hostile ``.pt2`` archives are real exports rewritten record by record; each test first shows
(where torch would run the payload) that plain :func:`torch.export.load` does run it, then
that :func:`lloca_hep.load_tagger` refuses the file with a :class:`TaggerFileError` naming it
and the payload's marker file never appears. The CLI cases run ``python -m lloca_hep tag`` as
real subprocesses (all at once, in a module fixture).
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import os
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from lloca_hep.demo import sample_path
from lloca_hep.models import JetMassTagger
from lloca_hep.tagger import (
    MAX_CONSTITUENTS_LIMIT,
    EmptyJetWarning,
    NonFiniteScoreWarning,
    Tagger,
    TaggerFileError,
    load_tagger,
    read_tagger_header,
    resolve_device,
)
from lloca_hep.tagger import safeload as _safeload
from lloca_hep.tagger.export import export_tagger, load_exported, read_exported_header

SEED = 11
MAX_CONSTITUENTS = 24
#: Exit code of the CLI for bad input (a bad model file).
EXIT_BAD_INPUT = 2
#: A max_constituents no tagger may have (padding that many would exhaust memory).
ABSURD_MAX_CONSTITUENTS = 10**12
#: Seconds each CLI subprocess may take.
CLI_TIMEOUT_S = 300


class _Payload:
    """Unpickling this runs ``code`` through ``builtins.exec`` (what an attacker ships)."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (builtins.exec, (self.code,))


def _touch(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()"


def _saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _rewrite(src: Path, dst: Path, edit: Callable[[dict[str, bytes]], None]) -> Path:
    """Copy the zip ``src`` to ``dst`` with ``edit`` applied to its records (names below the
    root folder), as an attacker editing a real export would."""
    with zipfile.ZipFile(src) as archive:
        records = {info.filename: archive.read(info) for info in archive.infolist()}
    root = next(iter(records)).split("/", 1)[0]
    rel = {name.split("/", 1)[1]: data for name, data in records.items()}
    edit(rel)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as archive:
        for name, data in rel.items():
            archive.writestr(f"{root}/{name}", data)
    return dst


def _edit_json(rel: dict[str, bytes], name: str, change: Callable[[dict], None]) -> None:
    doc = json.loads(rel[name])
    change(doc)
    rel[name] = json.dumps(doc).encode()


def _unsafe_torch_load(path: Path) -> None:
    """What torch alone does with the file: load it, build the module, run it once."""
    with contextlib.suppress(Exception), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.load(path)
        p4 = torch.tensor([[[100.0, 10.0, 0.0, 50.0], [80.0, 0.0, 10.0, 40.0]]] * 2,
                          dtype=torch.float64)
        program.module()(p4, torch.ones(2, 2, dtype=torch.bool))


@pytest.fixture(scope="module")
def small() -> Tagger:
    torch.manual_seed(SEED)
    return Tagger(JetMassTagger(), "JetMassTagger", MAX_CONSTITUENTS, device="cpu")


@pytest.fixture(scope="module")
def good_pt2(small: Tagger, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tagger(small, tmp_path_factory.mktemp("good") / "good.pt2")


@pytest.fixture(scope="module")
def good_pt(small: Tagger, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small.save(tmp_path_factory.mktemp("good") / "good.pt")


# ---------------------------------------------------------------------------- legitimate files
def test_real_export_passes_the_vetting_and_scores_like_eager(small, good_pt2):
    with zipfile.ZipFile(good_pt2) as archive:
        rel = sorted(name.split("/", 1)[1] for name in archive.namelist())
    # the layout torch.export.save writes, which the vetting knows record by record
    assert {"models/model.json", "data/sample_inputs/model.pt", "archive_format",
            "data/weights/model_weights_config.json", "extra/lloca_hep_header.json",
            "data/constants/model_constants_config.json"} <= set(rel)
    assert all(not name.startswith("data/aotinductor") for name in rel)
    records = _safeload.vet_archive(good_pt2)
    assert sorted(records) == rel
    loaded = load_tagger(good_pt2, device="cpu")
    gen = torch.Generator().manual_seed(5)
    p3 = torch.randn(6, 9, 3, dtype=torch.float64, generator=gen) * 30.0
    p4 = torch.cat([(p3.pow(2).sum(-1) + 1.0).sqrt()[..., None], p3], dim=-1)
    mask = torch.ones(6, 9, dtype=torch.bool)
    np.testing.assert_allclose(loaded.score_padded(p4, mask), small.score_padded(p4, mask),
                               rtol=0, atol=1e-6)
    assert read_tagger_header(good_pt2)["max_constituents"] == MAX_CONSTITUENTS


# ---------------------------------------------------------------------------- hostile pickles
def _pickled_sample_inputs(rel, marker):
    # torch retries a failed weights_only load of the sample inputs with weights_only=False
    rel["data/sample_inputs/model.pt"] = _saved(((_Payload(_touch(marker)),), {}))


def _pickled_constant(rel, marker):
    def change(doc):
        entry = next(iter(doc["config"].values()))
        entry["use_pickle"] = True
        rel["data/constants/" + entry["path_name"]] = _saved(_Payload(_touch(marker)))
    _edit_json(rel, "data/constants/model_constants_config.json", change)


def _pickled_weight(rel, marker):
    def change(doc):
        entry = next(iter(doc["config"].values()))
        entry["use_pickle"] = True
        rel["data/weights/" + entry["path_name"]] = _saved(_Payload(_touch(marker)))
    _edit_json(rel, "data/weights/model_weights_config.json", change)


@pytest.mark.parametrize("edit, record", [
    (_pickled_sample_inputs, "data/sample_inputs/model.pt"),
    (_pickled_constant, "data/constants/tensor_0"),
    (_pickled_weight, "data/weights/weight_0"),
])
def test_pickled_payload_in_archive_is_refused(good_pt2, tmp_path, edit, record):
    marker = tmp_path / "pwned"
    evil = _rewrite(good_pt2, tmp_path / "evil.pt2", lambda rel: edit(rel, marker))
    with pytest.raises(TaggerFileError, match="must not run code") as exc:
        load_tagger(evil, device="cpu")
    message = str(exc.value)
    assert str(evil) in message and record in message
    assert "pickled objects other than tensors" in message
    assert not marker.exists()
    with pytest.raises(TaggerFileError, match="must not run code"):
        read_exported_header(evil)
    assert not marker.exists()
    # the file really is hostile: torch.export.load alone runs the payload
    _unsafe_torch_load(evil)
    assert marker.exists()


# ---------------------------------------------------------------------------- hostile strings
def _guard(rel, marker):
    _edit_json(rel, "models/model.json", lambda d: d["guards_code"].append(
        f"(lambda: open({str(marker)!r}, 'w'))() is not None"))


def _sym_expr(rel, marker):
    def change(doc):
        for value in doc["graph_module"]["graph"]["tensor_values"].values():
            for size in value["sizes"]:
                if "as_expr" in size:
                    size["as_expr"]["expr_str"] = (f"exec({_touch(marker)!r}) or "
                                                   + size["as_expr"]["expr_str"])
                    return
        raise AssertionError("no symbolic size in the exported graph")
    _edit_json(rel, "models/model.json", change)


def _treespec_enum(rel, marker):
    # the pytree loader imports the module named by an "__enum__" object in a spec context
    def change(doc):
        signature = doc["graph_module"]["module_call_graph"][0]["signature"]
        spec = json.loads(signature["in_spec"])
        spec[1]["children_spec"][1]["context"] = json.dumps(
            [{"__enum__": True, "fqn": "lloca_evil_module:E", "name": "A"}])
        signature["in_spec"] = json.dumps(spec)
    _edit_json(rel, "models/model.json", change)
    module = marker.parent / "lloca_evil_module.py"
    module.write_text(f"import enum\n{_touch(marker)}\nclass E(enum.Enum):\n    A = 1\n")


@pytest.mark.parametrize("edit, problem", [
    (_guard, "guard"),
    (_sym_expr, "symbolic expression"),
    (_treespec_enum, "in_spec context"),
])
def test_code_in_graph_strings_is_refused(good_pt2, tmp_path, monkeypatch, edit, problem):
    monkeypatch.syspath_prepend(str(tmp_path))
    marker = tmp_path / "pwned"
    evil = _rewrite(good_pt2, tmp_path / "evil.pt2", lambda rel: edit(rel, marker))
    with pytest.raises(TaggerFileError, match="must not run code") as exc:
        load_tagger(evil, device="cpu")
    assert str(evil) in str(exc.value) and problem in str(exc.value)
    assert not marker.exists()
    _unsafe_torch_load(evil)  # torch alone runs it (exec / sympify / import)
    assert marker.exists()


def _node_target(rel):
    _edit_json(rel, "models/model.json", lambda d: d["graph_module"]["graph"]["nodes"][0]
               .update(target="torch.os.system"))


def _file_op(rel):
    _edit_json(rel, "models/model.json", lambda d: d["graph_module"]["graph"]["nodes"][0]
               .update(target="torch.ops.aten.save.default"))


def _quoted_name(rel):
    # attribute names are written into generated source as getattr(x, "NAME")
    def change(doc):
        key = next(iter(doc["config"]))
        doc["config"]['net")or(print(1)),("'] = doc["config"].pop(key)
    _edit_json(rel, "data/weights/model_weights_config.json", change)


def _carriage_return(rel):
    def change(doc):
        node = doc["graph_module"]["graph"]["nodes"][1]
        node["metadata"]["stack_trace"] = 'File "x", line 1, in f\rprint(1)\n    code'
    _edit_json(rel, "models/model.json", change)


def _aoti_library(rel):
    rel["data/aotinductor/model/model.so"] = b"\x7fELF not really a library"


def _legacy_weights(rel):
    rel["data/weights/model.pt"] = _saved({"w": torch.zeros(2)})


def _opaque_constant(rel):
    def change(doc):
        entry = next(iter(doc["config"].values()))
        rel["data/constants/opaque_obj_0"] = rel.pop("data/constants/" + entry["path_name"])
        entry["path_name"] = "opaque_obj_0"
    _edit_json(rel, "data/constants/model_constants_config.json", change)


def _hidden_pickle(rel):
    rel["extra/notes.txt"] = _saved(_Payload("pass"))


@pytest.mark.parametrize("edit, problem", [
    (_node_target, "'torch.os.system', which is not an allowed ATen"),
    (_file_op, "torch.ops.aten.save.default"),
    (_quoted_name, "not a dotted identifier"),
    (_carriage_return, "control characters"),
    (_aoti_library, "unexpected record 'data/aotinductor/model/model.so'"),
    (_legacy_weights, "unexpected record 'data/weights/model.pt'"),
    (_opaque_constant, "not a plain tensor record"),
    (_hidden_pickle, "record 'extra/notes.txt' holds pickled objects"),
])
def test_other_code_routes_are_refused(good_pt2, tmp_path, edit, problem):
    evil = _rewrite(good_pt2, tmp_path / "evil.pt2", edit)
    with pytest.raises(TaggerFileError, match="must not run code") as exc:
        load_exported(evil)
    assert str(evil) in str(exc.value) and problem in str(exc.value)


def test_hostile_pt_file_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "header": _Payload(_touch(marker))}, evil)
    with pytest.raises(TaggerFileError, match="must not run code") as exc:
        load_tagger(evil, device="cpu")
    assert str(evil) in str(exc.value) and "exec" in str(exc.value)
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # the file really is hostile
    assert marker.exists()


# ---------------------------------------------------------------------------- header limits
def _with_header(src: Path, dst: Path, change: dict) -> Path:
    payload = torch.load(src, weights_only=True)
    header = {**json.loads(payload["header"]), **change}
    torch.save({"state_dict": payload["state_dict"], "header": json.dumps(header)}, dst)
    return dst


def test_absurd_max_constituents_is_refused(good_pt, good_pt2, tmp_path):
    change = {"max_constituents": ABSURD_MAX_CONSTITUENTS}
    bad_pt = _with_header(good_pt, tmp_path / "huge.pt", change)
    with pytest.raises(TaggerFileError, match=f"above the limit of {MAX_CONSTITUENTS_LIMIT}"):
        load_tagger(bad_pt, device="cpu")

    def edit(rel):
        _edit_json(rel, "extra/lloca_hep_header.json", lambda d: d.update(change))
    bad_pt2 = _rewrite(good_pt2, tmp_path / "huge.pt2", edit)
    with pytest.raises(TaggerFileError, match="above the limit") as exc:
        load_tagger(bad_pt2, device="cpu")
    assert str(bad_pt2) in str(exc.value)
    with pytest.raises(ValueError, match="max_constituents must be <="):
        Tagger(JetMassTagger(), "JetMassTagger", MAX_CONSTITUENTS_LIMIT + 1)
    Tagger(JetMassTagger(), "JetMassTagger", MAX_CONSTITUENTS_LIMIT)  # the limit itself is fine


@pytest.mark.parametrize("change, problem", [
    ({"format_version": 99}, "newer than this lloca-hep"),
    ({"format": "other"}, "format is 'other'"),
    ({"max_constituents": True}, "invalid max_constituents"),
    ({"config": [1]}, "config is not a JSON object"),
])
def test_pt2_header_goes_through_the_same_validation(good_pt2, tmp_path, change, problem):
    def edit(rel):
        _edit_json(rel, "extra/lloca_hep_header.json", lambda d: d.update(change))
    bad = _rewrite(good_pt2, tmp_path / "bad.pt2", edit)
    with pytest.raises(TaggerFileError, match=problem):
        load_tagger(bad, device="cpu")


# ---------------------------------------------------------------------------- non-finite weights
def _nan_tagger() -> Tagger:
    tagger = Tagger(JetMassTagger(), "JetMassTagger", MAX_CONSTITUENTS, device="cpu")
    with torch.no_grad():
        tagger.model.net[0].weight[0, 0] = float("nan")
    return tagger


def test_nan_weights_are_refused_at_load_time(tmp_path):
    tagger = _nan_tagger()
    pt = tagger.save(tmp_path / "nan.pt")
    with pytest.raises(TaggerFileError, match=r"parameter 'net\.0\.weight' holds NaN/inf") as exc:
        load_tagger(pt, device="cpu")
    assert str(pt) in str(exc.value)
    pt2 = export_tagger(tagger, tmp_path / "nan.pt2", check=False)  # NaN != NaN in the check
    with pytest.raises(TaggerFileError, match=r"parameter 'net\.0\.weight' holds NaN/inf"):
        load_tagger(pt2, device="cpu")


def _jets(n: int, width: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    p3 = torch.randn(n, width, 3, dtype=torch.float64, generator=gen) * 20.0
    p4 = torch.cat([(p3.pow(2).sum(-1) + 1.0).sqrt()[..., None], p3], dim=-1)
    return p4, torch.ones(n, width, dtype=torch.bool)


def test_nonfinite_scores_warn_distinctly_from_empty_jets():
    p4, mask = _jets(6)
    mask[4:] = False  # two empty jets
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = _nan_tagger().score_padded(p4, mask)
    assert np.isnan(scores).all()
    by_kind = {w.category: w.message for w in caught}
    assert set(by_kind) == {EmptyJetWarning, NonFiniteScoreWarning}
    nonfinite = by_kind[NonFiniteScoreWarning]
    assert "non-finite scores for 4 of 6 jets" in str(nonfinite)
    assert "have no constituents" not in str(nonfinite)
    assert (nonfinite.count, nonfinite.total) == (4, 6)
    assert (by_kind[EmptyJetWarning].count, by_kind[EmptyJetWarning].total) == (2, 6)
    assert not issubclass(NonFiniteScoreWarning, EmptyJetWarning)


def test_finite_scores_do_not_warn_and_the_warning_can_be_switched_off(small):
    p4, mask = _jets(5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(small.score_padded(p4, mask)).all()
        assert np.isnan(_nan_tagger().score_padded(p4, mask, warn_nonfinite=False)).all()


# ---------------------------------------------------------------------------- devices
@pytest.mark.parametrize("device", ["bogus", "gpu", "meta", "cuda:x"])
def test_bad_device_is_a_clear_value_error(device):
    with pytest.raises(ValueError, match=r"invalid device .*cpu, cuda, cuda:N, mps, auto"):
        resolve_device(device)


def test_good_devices_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:1")


def test_cli_bad_device_exits_2(good_pt, tmp_path, caplog):
    from lloca_hep.cli import main

    code = main(["tag", str(sample_path()), "--model", str(good_pt), "-o",
                 str(tmp_path / "out.root"), "--device", "bogus", "--no-progress"])
    assert code == EXIT_BAD_INPUT
    assert "invalid device 'bogus'" in caplog.text and "cpu, cuda, cuda:N, mps, auto" in caplog.text
    assert not (tmp_path / "out.root").exists()


# ---------------------------------------------------------------------------- the CLI
def _corrupt_crc(data: bytes) -> bytes:
    """Flip bytes in the middle of the archive (a record's data): CRC no longer matches."""
    mid = len(data) // 2
    return data[:mid] + bytes(b ^ 0xFF for b in data[mid:mid + 16]) + data[mid + 16:]


@pytest.fixture(scope="module")
def cli_runs(good_pt, good_pt2, tmp_path_factory) -> dict[str, dict]:
    """``python -m lloca_hep tag SAMPLE --model CASE -o OUT`` for every case, concurrently.

    Each case has its own model directory and output directory; the result holds the exit
    code, stderr, the model path and both directories' contents afterwards.
    """
    base = tmp_path_factory.mktemp("cli")
    good = good_pt2.read_bytes()
    cases: dict[str, Callable[[Path, Path], None]] = {
        "hostile.pt2": lambda dst, marker: _rewrite(
            good_pt2, dst, lambda rel: _pickled_sample_inputs(rel, marker)),
        "hostile.pt": lambda dst, marker: torch.save(
            {"state_dict": {}, "header": _Payload(_touch(marker))}, dst),
        "empty.pt2": lambda dst, marker: dst.write_bytes(b""),
        "random.pt2": lambda dst, marker: dst.write_bytes(
            np.random.default_rng(0).bytes(4096)),
        "truncated.pt2": lambda dst, marker: dst.write_bytes(good[: len(good) // 2]),
        "bad_crc.pt2": lambda dst, marker: dst.write_bytes(_corrupt_crc(good)),
        "bad_schema.pt2": lambda dst, marker: _rewrite(
            good_pt2, dst, lambda rel: rel.update({"models/model.json": b'{"graph_module": {}}'})),
        "huge.pt": lambda dst, marker: _with_header(
            good_pt, dst, {"max_constituents": ABSURD_MAX_CONSTITUENTS}),
    }
    runs = {}
    for name, make in cases.items():
        model_dir = base / name.replace(".", "_")
        out_dir = model_dir / "out"
        out_dir.mkdir(parents=True)
        model = model_dir / name
        marker = base / f"{name}.pwned"
        make(model, marker)
        proc = subprocess.Popen(
            [sys.executable, "-m", "lloca_hep", "tag", str(sample_path()), "--model",
             str(model), "-o", str(out_dir / "out.root"), "--no-progress", "--device", "cpu"],
            cwd=out_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        runs[name] = {"proc": proc, "model": model, "marker": marker, "out_dir": out_dir}
    for run in runs.values():
        _, run["stderr"] = run["proc"].communicate(timeout=CLI_TIMEOUT_S)
        run["code"] = run["proc"].returncode
        run["model_dir_files"] = sorted(os.listdir(run["model"].parent))
        run["out_dir_files"] = sorted(os.listdir(run["out_dir"]))
    return runs


@pytest.mark.parametrize("name, problem", [
    ("hostile.pt2", "record 'data/sample_inputs/model.pt' holds pickled objects other than "
                    "tensors"),
    ("hostile.pt", "holds pickled objects other than tensors"),
])
def test_cli_refuses_hostile_files(cli_runs, name, problem):
    run = cli_runs[name]
    assert run["code"] == EXIT_BAD_INPUT, run["stderr"]
    assert str(run["model"]) in run["stderr"] and problem in run["stderr"]
    assert "must not run code" in run["stderr"]
    assert not run["marker"].exists()
    assert run["out_dir_files"] == []  # no out.root, no temporary file
    assert run["model_dir_files"] == [name, "out"]
    assert "Traceback" not in run["stderr"]


@pytest.mark.parametrize("name, problem", [
    ("empty.pt2", "file is empty"),
    ("random.pt2", "not a readable torch.export archive"),
    ("truncated.pt2", "not a readable torch.export archive"),
    ("bad_crc.pt2", "not a readable torch.export archive"),
    ("bad_schema.pt2", "not a readable torch.export archive"),
    ("huge.pt", f"above the limit of {MAX_CONSTITUENTS_LIMIT}"),
])
def test_cli_bad_model_file_is_one_clear_line(cli_runs, name, problem):
    run = cli_runs[name]
    assert run["code"] == EXIT_BAD_INPUT, run["stderr"]
    lines = [line for line in run["stderr"].splitlines() if line.strip()]
    assert len(lines) == 1, run["stderr"]
    assert str(run["model"]) in lines[0] and problem in lines[0]
    assert "Traceback" not in run["stderr"]
    assert run["out_dir_files"] == []


@pytest.mark.parametrize("name", ["empty.pt2", "random.pt2", "truncated.pt2", "bad_crc.pt2",
                                  "bad_schema.pt2"])
def test_corrupt_pt2_in_process_is_a_tagger_file_error(cli_runs, name):
    path = cli_runs[name]["model"]
    with pytest.raises(TaggerFileError) as exc:
        load_tagger(path, device="cpu")
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)
