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


def _into_closed_pipe(*args: str) -> tuple[int, str]:
    """Run ``python ARGS`` (from the repository) with stdout a pipe whose reader has already
    closed it, as ``| head`` leaves it; returns the exit code and stderr."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, *args], stdout=write, stderr=subprocess.PIPE, text=True,
            cwd=Path(__file__).parents[1], timeout=120,
        )  # fmt: skip
    finally:
        os.close(write)
    return done.returncode, done.stderr


def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    """``avssl --help | head -1`` printed a BrokenPipeError traceback, and ``evaluate.py --help``
    into such a pipe ``error: Broken pipe`` (exit 2): the reader had what it wanted."""
    import numpy as np
    import soundfile as sf

    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(1600, np.float32), 16000)
    for args in (["-m", "avssl", "--help"], ["-m", "avssl", "--version"],
                 ["evaluate.py", "--help"], ["-m", "avssl", "inspect", str(wav)]):  # fmt: skip
        assert _into_closed_pipe(*args) == (0, ""), args


def test_a_broken_pipe_that_is_not_stdout_is_an_error(capsys):
    """Only stdout's reader gone is quiet: another broken connection is an error, one line."""
    from avssl.cli import run_guarded

    def fn(argv):
        raise BrokenPipeError(32, "Broken pipe")

    assert run_guarded(fn, []) == 2
    assert capsys.readouterr().err == "error: Broken pipe\n"
