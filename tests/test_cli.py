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
