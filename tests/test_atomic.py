"""lloca_hep._files: complete file or the old one, never a partial one; unsafe outputs refused."""

import os

import pytest

from lloca_hep._files import atomic_output, check_output, resolve_inputs, temporary_path
from lloca_hep.errors import OutputError


def test_atomic_output_renames_on_success_and_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old"
    with atomic_output(target, suffix=".pt2") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.bin.")
        assert tmp.suffix == ".pt2"
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_atomic_output_refuses_existing_without_overwrite_and_special_files(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(OutputError, match="exists"), atomic_output(target, overwrite=False):
        pass
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="FIFO"), atomic_output(fifo):
        pass
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "out.bin"]


def test_atomic_output_rechecks_before_the_rename(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(OutputError, match="FIFO"), atomic_output(target) as tmp:
        tmp.write_bytes(b"new")
        os.mkfifo(target)  # a special file appears while writing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    assert not target.is_file()


def test_temporary_names_fit_the_name_limit(tmp_path):
    target = tmp_path / ("x" * 250)
    tmp = temporary_path(target, ".pt2")
    assert len(tmp.name.encode()) <= os.pathconf(tmp_path, "PC_NAME_MAX")
    assert tmp.name.startswith(".xxx") and tmp.name.endswith(".tmp.pt2")
    assert temporary_path(target) != temporary_path(target)


def test_resolve_inputs_sees_through_spellings(tmp_path):
    real = tmp_path / "a.root"
    real.write_bytes(b"x")
    (tmp_path / "link.root").symlink_to(real)
    spellings = [f"{real}:jets", str(tmp_path / "a*.root"), str(tmp_path / "link.root"),
                 str(tmp_path / "missing.root")]
    assert resolve_inputs(spellings) == [real.resolve()] * 3
    with pytest.raises(OutputError, match="same file on disk"):
        check_output(tmp_path / "link.root", overwrite=True, inputs=[f"{real}:jets"])
