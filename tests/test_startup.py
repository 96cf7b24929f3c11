"""Start-up cost: what building the command line and ``import lloca_hep`` pull in.

Batch jobs start ``lloca-hep`` often, so the parser must be built without torch, numba, uproot
or awkward (seconds of imports): each check runs in a fresh interpreter and lists the heavy
packages found in ``sys.modules``. No timing is asserted (timings: benchmarks/bench_startup.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

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


# ------------------------------------------------------------------ numba's cache, read-only
#: Runs one kernel on four constituents (ok, negative energy, space-like, NaN) and prints its
#: flags and numba's cache hits and misses.
KERNEL_PROBE = """
import json
import numpy as np
from lloca_hep.preprocessing import kernels as k
px = np.array([1.0, 0.0, 5.0, np.nan]); zero = np.zeros(4)
energy = np.array([2.0, -1.0, 1.0, 1.0]); flags = np.zeros(4, np.uint8)
k.check_momenta_kernel(px, zero, zero, energy, 1e-6, 1e-9, flags)
stats = k.check_momenta_kernel.stats
print(json.dumps({"flags": flags.tolist(), "hits": sum(stats.cache_hits.values()),
                  "misses": sum(stats.cache_misses.values())}))
"""


def _read_only_copy(tmp_path: Path) -> Path:
    """A copy of the package's code (no data files) with every write bit removed; returns the
    folder to put on ``PYTHONPATH``."""
    import lloca_hep

    site = tmp_path / "site"
    shutil.copytree(Path(lloca_hep.__file__).parent, site / "lloca_hep",
                    ignore=shutil.ignore_patterns("__pycache__", "*.root", "*.pt"))
    for path in [site, *site.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    return site


def _unprivileged(cmd: list[str], probe_dir: Path) -> list[str]:
    """``cmd`` run so that read-only folders stay read-only (as root: without the capabilities
    that override file permissions); skips the test where that cannot be arranged."""
    if os.geteuid() != 0:
        return cmd
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: read-only folders cannot be tested")
    caps = "-dac_override,-dac_read_search,-fowner"
    wrapped = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", "--", *cmd]
    touch = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", "--", "touch",
             str(probe_dir / "probe")]
    if subprocess.run(touch, capture_output=True).returncode == 0:
        pytest.skip("cannot drop root's write override here")
    return wrapped


def _run_probe(site: Path, env: dict[str, str], probe_dir: Path) -> tuple[dict[str, Any], str]:
    cmd = _unprivileged([sys.executable, "-c", KERNEL_PROBE], probe_dir)
    res = subprocess.run(cmd, capture_output=True, text=True, env={**env, "PYTHONPATH": str(site)},
                         cwd=probe_dir)
    assert res.returncode == 0, res.stderr
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return out, res.stderr


def _clean_env(home: Path) -> dict[str, str]:
    drop = {"NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "PYTHONPATH"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "HOME": str(home)}


#: The flags the probe must print: ok, negative energy, space-like, non-finite.
PROBE_FLAGS = [0, 2, 3, 1]


def test_numba_cache_works_from_a_read_only_install(tmp_path: Path) -> None:
    """With the package folder read-only, the compiled kernels go to ``NUMBA_CACHE_DIR`` and the
    next process loads them from there."""
    site = _read_only_copy(tmp_path)
    try:
        home = tmp_path / "home"
        home.mkdir()
        cache = tmp_path / "numba-cache"
        env = {**_clean_env(home), "NUMBA_CACHE_DIR": str(cache)}
        first, _ = _run_probe(site, env, site)
        second, _ = _run_probe(site, env, site)
        assert first == {"flags": PROBE_FLAGS, "hits": 0, "misses": 1}
        assert second == {"flags": PROBE_FLAGS, "hits": 1, "misses": 0}
        assert list(cache.rglob("*check_momenta_kernel*.nbi"))
        assert not list(site.rglob("*.nbi"))  # nothing was written into the install
    finally:
        for path in [site, *site.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_numba_kernels_work_when_no_cache_can_be_written(tmp_path: Path) -> None:
    """Read-only install and home, no ``NUMBA_CACHE_DIR``: numba cannot cache (its
    ``cache=True`` would fail the import); the kernels compile uncached, with one warning."""
    site = _read_only_copy(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o555)
    try:
        for _ in range(2):  # the second process compiles again: nothing was cached
            out, stderr = _run_probe(site, _clean_env(home), site)
            assert out["flags"] == PROBE_FLAGS and out["hits"] == 0
            assert stderr.count("NUMBA_CACHE_DIR") == 1  # one warning, not one per kernel
        assert not list(home.rglob("*"))
    finally:
        home.chmod(0o755)
        for path in [site, *site.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


# ------------------------------------------------------------------ numba extension entry points
#: Tags a small file through ``lloca_hep.cli.<entry>`` and prints whether vector's numba
#: extension (loaded by numba's entry points at the first compilation) got imported.
ENTRY_PROBE = """
import json, sys
from lloca_hep import cli
sys.argv = ["lloca-hep", "tag", {input!r}, "-o", {output!r}, "--no-progress", "--threads", "1"]
rc = cli.console_main() if {console!r} else cli.main()
print(json.dumps([rc, "vector.backends._numba_object" in sys.modules, "vector" in sys.modules]))
"""


def test_the_command_skips_numba_extensions_and_the_library_keeps_them(tmp_path: Path) -> None:
    """``lloca-hep`` (console_main) runs only lloca-hep's kernels: numba's extension entry points
    (awkward's and vector's numba support) and vector itself are skipped there, and the scores
    do not change;
    ``main()`` called from a Python session keeps them for the session's own numba code."""
    import uproot

    import lloca_hep

    shipped = Path(lloca_hep.__file__).resolve().parent / "data" / "sample.root"
    sample = tmp_path / "jets50.root"
    with uproot.open(shipped) as f:
        arrays = f["jets"].arrays(entry_stop=50)
    with uproot.recreate(sample) as f:
        f["jets"] = {name: arrays[name] for name in arrays.fields}
    scores = {}
    for console in (True, False):
        out = tmp_path / f"scores_{console}.root"
        probe = ENTRY_PROBE.format(input=str(sample), output=str(out), console=console)
        res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        rc, extension_loaded, vector_loaded = json.loads(res.stdout.strip().splitlines()[-1])
        assert rc == 0 and extension_loaded is (not console)
        # the command hands no arrays to a user: vector (and sympy) stay unimported there
        assert vector_loaded is (not console)
        with uproot.open(out) as f:
            scores[console] = f["scores"]["score"].array(library="np")
    assert scores[True].tolist() == scores[False].tolist()


def test_read_jets_registers_vector_in_a_fresh_interpreter() -> None:
    """vector is imported at the first read, not at ``import lloca_hep.io``, and what the
    readers return carries vector's ``Momentum4D`` methods (``pt``) (a fresh process: no test module
    has registered vector's behaviours there)."""
    probe = (
        "import sys, json, numpy as np, awkward as ak\n"
        "import lloca_hep.io\n"
        "before = 'vector' in sys.modules\n"
        "jets = lloca_hep.io.read_jets(lloca_hep.io.readers.__file__.rsplit('/io/', 1)[0]"
        " + '/data/sample.root', entry_stop=20)\n"
        "c = jets.constituents\n"
        "ref = np.hypot(ak.to_numpy(ak.flatten(c.px)), ak.to_numpy(ak.flatten(c.py)))\n"
        "print(json.dumps([before, float(np.max(np.abs(ak.to_numpy(ak.flatten(c.pt)) - ref)))]))\n"
    )
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    before, err = json.loads(res.stdout.strip().splitlines()[-1])
    assert before is False
    assert err < 1e-9
