"""An unknown ``avssl`` command or ``avssl prepare`` dataset is one ``error:`` line, exit 2."""

from __future__ import annotations

from avssl.cli import main as cli


def test_unknown_command_is_one_line(capsys):
    assert cli(["foo"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("error: unknown command 'foo' (commands: train, evaluate, ")
    assert line.endswith("; avssl --help)")


def test_unknown_dataset_is_one_line(capsys):
    assert cli(["prepare", "avdigitz"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("error: unknown dataset 'avdigitz' (datasets: avdigits, ")
    assert line.endswith("; avssl prepare --help)")
