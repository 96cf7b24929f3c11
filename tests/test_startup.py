"""Start-up cost: what building the command line and ``import lloca_hep`` pull in.

Batch jobs start ``lloca-hep`` often, so the parser must be built without torch, numba, uproot
or awkward (seconds of imports): each check runs in a fresh interpreter and lists the heavy
packages found in ``sys.modules``. No timing is asserted (timings: benchmarks/bench_startup.py).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Packages that cost most of a start-up; none may be imported before a command runs.
HEAVY = ("torch", "numba", "uproot", "awkward", "vector", "llvmlite", "scipy", "sympy")


def _heavy_modules_after(code: str) -> list[str]:
    """The packages of :data:`HEAVY` imported by running ``code`` in a fresh interpreter."""
    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    found: list[str] = json.loads(res.stdout.strip().splitlines()[-1])
    return found


def test_import_lloca_hep_is_light() -> None:
    assert _heavy_modules_after("import lloca_hep") == []
    assert "numpy" not in _heavy_modules_after("import lloca_hep")


def test_building_the_parser_imports_no_heavy_package() -> None:
    assert _heavy_modules_after("import lloca_hep.cli\nlloca_hep.cli.build_parser()") == []


@pytest.mark.parametrize("command", ["tag", "train", "evaluate", "export"])
def test_subcommand_help_imports_no_heavy_package(command: str) -> None:
    code = ("import contextlib, io\nfrom lloca_hep.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n"
            f"        main([{command!r}, '--help'])\n"
            "    except SystemExit as exc:\n"
            "        assert exc.code == 0, exc.code\n")
    assert _heavy_modules_after(code) == []


def test_the_help_shows_the_defaults_of_the_heavy_modules() -> None:
    """The light constants are the very objects the heavy modules use (named once)."""
    from lloca_hep import _defaults
    from lloca_hep.inference import tag as inference_tag
    from lloca_hep.preprocessing import padding
    from lloca_hep.tagger import format as tagger_format
    from lloca_hep.tagger import onnx_export
    from lloca_hep.training.config import TrainConfig

    assert padding.DEFAULT_MAX_CONSTITUENTS is _defaults.DEFAULT_MAX_CONSTITUENTS
    assert TrainConfig().max_constituents == _defaults.DEFAULT_MAX_CONSTITUENTS
    assert tagger_format.MAX_CONSTITUENTS_LIMIT is _defaults.MAX_CONSTITUENTS_LIMIT
    assert inference_tag.DEFAULT_TAG_STEP_SIZE is _defaults.DEFAULT_TAG_STEP_SIZE
    assert onnx_export.DEFAULT_OPSET is _defaults.DEFAULT_OPSET
    with pytest.raises(ValueError, match="at most"):
        TrainConfig(max_constituents=_defaults.MAX_CONSTITUENTS_LIMIT + 1)
