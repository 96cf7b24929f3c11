"""Issue 11: outputs never destroy inputs or special files, signals clean up, errors are messages.

Every case runs the real ``lloca-hep`` command in a subprocess on real ROOT files and asserts the
exit code, that the message names the file and the problem (and is not a traceback), that no
input or special file changed (hashes and file types before and after), and that no temporary
file is left behind.
"""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from lloca_hep.demo import sample_path

#: Options that keep every tag run small and quiet.
QUIET = ["--no-progress", "--device", "cpu", "--threads", "1"]
#: Seconds a subprocess may take before the test fails.
RUN_TIMEOUT_S = 180


def lloca(*args: str | os.PathLike[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lloca_hep", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp") or ".tmp" in p.name)


def assert_bad_input(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


def write_jets(path: Path, n_jets: int, *, extra_tree: bool = True, seed: int = 0) -> Path:
    """A JetClass-layout file with ``n_jets`` jets in tree ``jets`` (and an unrelated tree)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(3, 12, n_jets)
    p3 = rng.normal(0.0, 5.0, (int(counts.sum()), 3))
    p3[:, 2] += 40.0
    energy = np.sqrt((p3**2).sum(1) + 0.01)
    cols = {f"part_{k}": ak.unflatten(v, counts) for k, v in
            (("px", p3[:, 0]), ("py", p3[:, 1]), ("pz", p3[:, 2]), ("energy", energy))}
    with uproot.recreate(path) as f:
        if n_jets:
            f["jets"] = {"part": ak.zip({k[5:]: v for k, v in cols.items()}),
                         "is_signal": rng.integers(0, 2, n_jets)}
        else:
            f.mktree("jets", {"npart": np.int32, "part_px": "var * float64",
                              "part_py": "var * float64", "part_pz": "var * float64",
                              "part_energy": "var * float64"})
        if extra_tree:
            f["meta"] = {"run": np.arange(3)}
    return path


@pytest.fixture
def empty_input(tmp_path: Path) -> Path:
    return write_jets(tmp_path / "empty.root", 0)


@pytest.fixture
def small_input(tmp_path: Path) -> Path:
    return write_jets(tmp_path / "small.root", 50)


# ----------------------------------------------------------------- the input is never written
@pytest.mark.parametrize("spelling", ["{p}:jets", "{d}/emp*.root", "{d}/empty.root",
                                      "{d}/./empty.root"])
def test_empty_tree_input_is_never_replaced(empty_input, spelling):
    before = sha(empty_input)
    spelled = spelling.format(p=empty_input, d=empty_input.parent)
    proc = lloca("tag", spelled, "-o", empty_input, "--overwrite", *QUIET)
    assert_bad_input(proc, str(empty_input), "is an input file")
    assert sha(empty_input) == before
    assert set(uproot.open(empty_input).keys(cycle=False)) == {"jets", "meta"}
    assert leftovers(empty_input.parent) == []


@pytest.mark.parametrize("how", ["symlink", "hardlink", "symlinked-input"])
def test_links_to_the_input_are_refused(small_input, how):
    d = small_input.parent
    before = sha(small_input)
    if how == "symlink":
        out, inp = d / "alias.root", small_input
        out.symlink_to(small_input)
    elif how == "hardlink":
        out, inp = d / "twin.root", small_input
        os.link(small_input, out)
    else:
        inp, out = d / "link_to_small.root", small_input
        inp.symlink_to(small_input)
    proc = lloca("tag", inp, "-o", out, "--overwrite", *QUIET)
    assert_bad_input(proc, "is an input file", "the same file on disk")
    assert sha(small_input) == before
    assert leftovers(d) == []


def test_empty_input_to_a_new_output_writes_an_empty_friend(empty_input, tmp_path):
    out = tmp_path / "friend.root"
    proc = lloca("tag", f"{empty_input}:jets", "-o", out, *QUIET)
    assert proc.returncode == 0, proc.stderr
    assert uproot.open(out)["scores"].num_entries == 0


# ----------------------------------------------------------------- only regular files are replaced
def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _char_device(path: Path) -> Path:
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # same device as /dev/null
    except PermissionError:
        pytest.skip("creating a device node needs root")
    return path


@pytest.mark.parametrize("make, kind", [(_fifo, "FIFO"), (_char_device, "character device")])
def test_special_files_are_never_replaced(small_input, tmp_path, make, kind):
    node = make(tmp_path / "special")
    mode = os.lstat(node).st_mode
    proc = lloca("tag", small_input, "-o", node, "--overwrite", *QUIET)
    assert_bad_input(proc, str(node), kind, "only regular files")
    assert os.lstat(node).st_mode == mode
    assert leftovers(tmp_path) == []


def test_existing_output_directory_or_file_without_overwrite(small_input, tmp_path):
    (tmp_path / "adir").mkdir()
    proc = lloca("tag", small_input, "-o", tmp_path / "adir", "--overwrite", *QUIET)
    assert_bad_input(proc, "adir", "a directory")
    existing = tmp_path / "old.root"
    existing.write_bytes(b"keep me")
    proc = lloca("tag", small_input, "-o", existing, *QUIET)
    assert_bad_input(proc, str(existing), "--overwrite")
    assert existing.read_bytes() == b"keep me"
    proc = lloca("tag", small_input, "-o", tmp_path / "missing" / "out.root", *QUIET)
    assert_bad_input(proc, "does not exist")
    dangling = tmp_path / "dangling.root"
    dangling.symlink_to(tmp_path / "nowhere.root")
    proc = lloca("tag", small_input, "-o", dangling, "--overwrite", *QUIET)
    assert_bad_input(proc, "broken symbolic link")
    assert leftovers(tmp_path) == []


def test_glob_matching_several_files_is_refused(small_input, tmp_path):
    write_jets(tmp_path / "small2.root", 10)
    proc = lloca("tag", tmp_path / "small*.root", "-o", tmp_path / "out.root", *QUIET)
    assert_bad_input(proc, "matches 2 files")
    assert not (tmp_path / "out.root").exists()


# ----------------------------------------------------------------- output names and directories
def test_longest_legal_output_name_works(small_input, tmp_path):
    out = tmp_path / ("s" * 245 + ".root")  # 250 characters; the temporary must still fit
    proc = lloca("tag", small_input, "-o", out, *QUIET)
    assert proc.returncode == 0, proc.stderr
    assert uproot.open(out)["scores"].num_entries == 50
    assert leftovers(tmp_path) == []


@pytest.fixture
def read_only_dir(tmp_path: Path):
    d = tmp_path / "ro"
    d.mkdir()
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode != 0:
            pytest.skip("root cannot make a read-only directory here (no chattr +i)")
        yield d
        subprocess.run(["chattr", "-i", str(d)], check=True)
    else:
        d.chmod(0o555)
        yield d
        d.chmod(0o755)


def test_read_only_output_directory_names_the_output(small_input, read_only_dir):
    out = read_only_dir / "out.root"
    proc = lloca("tag", small_input, "-o", out, *QUIET)
    assert_bad_input(proc, str(out))
    assert ".tmp" not in proc.stderr
    assert list(read_only_dir.iterdir()) == []


# ----------------------------------------------------------------- signals clean up
@pytest.fixture(scope="module")
def big_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file that takes the shipped tagger several seconds to score."""
    return write_jets(tmp_path_factory.mktemp("big") / "big.root", 60_000, extra_tree=False)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signals_remove_the_temporary_and_exit_128_plus_n(big_input, tmp_path, sig):
    out = tmp_path / "out.root"
    before = sha(big_input)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lloca_hep", "tag", str(big_input), "-o", str(out),
         "--step-size", "2000", *QUIET],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not leftovers(tmp_path):  # wait until the friend tree is being written
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 128 + sig, err
    assert signal.Signals(sig).name in err or sig == signal.SIGINT, err
    assert "partial outputs were removed" in err and "Traceback" not in err
    assert leftovers(tmp_path) == [] and not out.exists()
    assert sha(big_input) == before


# ----------------------------------------------------------------- demo and options
def test_demo_with_a_missing_model_or_a_file_as_output(tmp_path):
    proc = lloca("demo", "--model", tmp_path / "missing.pt", "-o", tmp_path / "d", "--no-progress")
    assert_bad_input(proc, "missing.pt")
    assert not (tmp_path / "d").exists()
    existing = tmp_path / "file"
    existing.write_text("mine")
    proc = lloca("demo", "-o", existing, "--no-progress")
    assert_bad_input(proc, str(existing), "is an existing file")
    assert existing.read_text() == "mine"


def test_tag_picks_the_tree_given_with_tree(tmp_path):
    path = write_jets(tmp_path / "two.root", 30)
    proc = lloca("tag", path, "--tree", "jets", "-o", tmp_path / "o.root", *QUIET)
    assert proc.returncode == 0, proc.stderr
    assert uproot.open(tmp_path / "o.root")["scores"].num_entries == 30
    proc = lloca("tag", path, "--tree", "nope", "-o", tmp_path / "p.root", *QUIET)
    assert_bad_input(proc, "nope", "jets")


def test_bogus_device_is_bad_usage(small_input, tmp_path):
    proc = lloca("tag", small_input, "-o", tmp_path / "o.root", "--no-progress", "--device",
                 "bogus")
    assert_bad_input(proc, "bogus")
    assert leftovers(tmp_path) == [] and not (tmp_path / "o.root").exists()


def test_shipped_sample_is_never_touched(tmp_path):
    sample = sample_path()
    before = sha(sample)
    proc = lloca("tag", sample, "-o", sample, "--overwrite", *QUIET)
    assert_bad_input(proc, "input file")
    assert sha(sample) == before
