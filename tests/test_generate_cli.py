"""The ``generate`` subcommand registered into an argparse parser (lloca_hep.cli.generate)."""

import argparse
import logging

import pytest
import uproot

from lloca_hep.cli._exitcodes import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK
from lloca_hep.cli.generate import register


def _run(argv):
    parser = argparse.ArgumentParser(prog="lloca-hep")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_generate_writes_file_and_refuses_overwrite(tmp_path, capsys, caplog):
    pytest.importorskip("pythia8mc")
    pytest.importorskip("fastjet")
    out = tmp_path / "s.root"
    argv = ["generate", "--signal", "3", "--background", "2", "--seed", "5", "-o", str(out),
            "--max-constituents", "30", "--no-progress"]
    assert _run(argv) == EXIT_OK
    assert str(out) in capsys.readouterr().out
    with uproot.open(out) as f:
        assert f["jets"].num_entries == 5
        assert f["jets"]["npart"].array(library="np").max() <= 30
    before = out.read_bytes()
    with caplog.at_level(logging.ERROR):
        assert _run(argv) == EXIT_BAD_INPUT
    assert "exists" in caplog.text and "--overwrite" in caplog.text
    assert out.read_bytes() == before
    assert _run([*argv, "--overwrite"]) == EXIT_OK


@pytest.mark.parametrize("argv", [
    ["--signal", "-1", "--background", "1", "--seed", "1"],
    ["--signal", "x", "--background", "1", "--seed", "1"],
    ["--signal", "1", "--background", "1", "--seed", "1", "--workers", "0"],
    ["--signal", "1", "--background", "1"],  # seed is required
])
def test_bad_usage_exits_2(tmp_path, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        _run(["generate", *argv, "-o", str(tmp_path / "x.root")])
    assert exc.value.code == 2
    assert not (tmp_path / "x.root").exists()


def test_nothing_to_generate_is_bad_input(tmp_path):
    argv = ["generate", "--signal", "0", "--background", "0", "--seed", "1",
            "-o", str(tmp_path / "x.root")]
    assert _run(argv) == EXIT_BAD_INPUT


def test_missing_output_directory_is_bad_input(tmp_path):
    argv = ["generate", "--signal", "1", "--background", "0", "--seed", "1",
            "-o", str(tmp_path / "nowhere" / "x.root")]
    assert _run(argv) == EXIT_BAD_INPUT


def test_missing_extra_is_failure(tmp_path, monkeypatch, caplog):
    import sys

    monkeypatch.setitem(sys.modules, "fastjet", None)
    argv = ["generate", "--signal", "1", "--background", "0", "--seed", "1",
            "-o", str(tmp_path / "x.root")]
    with caplog.at_level(logging.ERROR):
        assert _run(argv) == EXIT_FAILURE
    assert "lloca-hep[generate]" in caplog.text
