"""lloca_hep._malloc: glibc malloc keeps freed memory during training."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.test_training_synthetic import write_jet_file

CODE = "from lloca_hep._malloc import keep_freed_memory as k; print(k(), k())"


def _run(env_extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES",
                        "LD_PRELOAD")}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux") or "glibc" not in " ".join(
    __import__("platform").libc_ver()), reason="glibc only")
def test_thresholds_raised_once():
    assert _run({}) == "True True"


def test_user_settings_are_left_alone():
    assert _run({"MALLOC_TRIM_THRESHOLD_": "131072"}) == "False False"
    assert _run({"LD_PRELOAD": "libjemalloc.so.2"}) == "False False"


def test_training_raises_them(monkeypatch, tmp_path):
    import lloca_hep.training.loop as loop
    from lloca_hep.training import TrainConfig

    calls = []
    monkeypatch.setattr(loop, "keep_freed_memory", lambda: calls.append(1) or True)
    data = write_jet_file(tmp_path / "train.root", 200, seed=3)
    loop.train(data, TrainConfig(model="jet_mass", epochs=1, batch_size=64, max_constituents=16,
                                 device="cpu"), output_dir=tmp_path / "out", progress=False)
    assert calls == [1]
