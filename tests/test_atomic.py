"""lloca_hep._atomic.atomic_output: complete file or the old one, never a partial one."""

import pytest

from lloca_hep._atomic import atomic_output


def test_atomic_output_renames_on_success_and_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old"
    with atomic_output(target, suffix=".pt2") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.bin.tmp-")
        assert tmp.suffix == ".pt2"
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
