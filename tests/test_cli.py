import subprocess
import sys

import pytest

from lloca_hep.cli import build_parser, main

SUBCOMMANDS = [a for a in build_parser()._subparsers._group_actions[0].choices]  # type: ignore[union-attr]


def test_info_lists_versions(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "lloca-hep" in out and "torch" in out and "awkward" in out


def test_console_script_help():
    res = subprocess.run([sys.executable, "-m", "lloca_hep", "--help"], capture_output=True, text=True)
    assert res.returncode == 0
    assert "usage: lloca-hep" in res.stdout


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_no_command_is_usage_error(capsys):
    assert main([]) == 2


def test_demo_writes_scored_file_plots_and_metrics(tmp_path, capsys):
    import json

    import uproot

    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for name in ("sample_scores.root", "roc.png", "scores.png", "metrics.json"):
        assert (out / name).stat().st_size > 0 and str(out / name) in printed
    numbers = json.loads((out / "metrics.json").read_text())
    with uproot.open(out / "sample_scores.root") as f:
        scores = f["scores"]["score"].array(library="np")
    assert numbers["n_jets"] == scores.size == 4000
    assert numbers["auc"] > 0.95  # the shipped tagger on the shipped sample
