"""An unknown ``avssl`` command or ``avssl prepare`` dataset is one ``error:`` line, exit 2."""

from __future__ import annotations

import signal
import sys

import pytest

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


def _piped(code: str, closed: bool) -> tuple[int, str]:
    """Run ``python -c CODE`` (from the repository, stdout block-buffered as in a user's shell)
    into a pipe whose reader has already closed it, as ``| head`` leaves it, or into one still
    read; returns the exit code and stderr."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    read, write = os.pipe()
    if closed:
        os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], stdout=write, stderr=subprocess.PIPE, text=True,
            cwd=Path(__file__).parents[1], env=env, timeout=120,
        )  # fmt: skip
    finally:
        os.close(write)
        if not closed:
            os.close(read)
    return done.returncode, done.stderr


def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    """``avssl --help | head -1`` printed a BrokenPipeError traceback, and ``evaluate.py --help``
    into such a pipe ``error: Broken pipe`` (exit 2): the reader had what it wanted. The exit
    code is a command's killed by SIGPIPE, as other tools'."""
    import numpy as np
    import soundfile as sf

    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(1600, np.float32), 16000)
    for argv in (["--help"], ["--version"], ["evaluate", "--help"], ["index", "--help"],
                 ["inspect", str(wav)]):  # fmt: skip
        code = f"import sys; from avssl.cli import main; sys.exit(main({argv!r}))"
        assert _piped(code, closed=True) == (141, ""), argv
    code = "import sys, evaluate; sys.exit(evaluate.main(['--help']))"
    assert _piped(code, closed=True) == (141, "")


def test_a_broken_pipe_that_is_not_stdout_is_an_error():
    """Only stdout's reader gone is quiet: another broken connection, stdout being a pipe still
    read, is an error in one line."""
    code = (
        "import sys\nfrom avssl.cli import run_guarded\n"
        "def fn(argv):\n    print('out')\n    raise BrokenPipeError(32, 'Broken pipe')\n"
        "sys.exit(run_guarded(fn, []))"
    )
    assert _piped(code, closed=False) == (2, "error: Broken pipe\n")


def _interrupted_in_teardown(
    main: str, args: list[str], ignored: bool = False, call: str = "main()"
) -> tuple[int, str]:
    """Run ``MAIN(ARGS)`` as its script runs it (``sys.exit``, the arguments from ``sys.argv``)
    with a SIGINT sent from an exit callback, as a Ctrl-C pressed while the finished command's
    interpreter shuts down (its threads joined, atexit callbacks: up to a second after a
    training's summary); returns the exit code and stderr. ``ignored``: the process starts with
    SIGINT ignored, as a shell script's ``cmd &`` starts it; ``call``: how ``main`` is called."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import atexit, os, signal, sys\n"
        "atexit.register(lambda: os.kill(os.getpid(), signal.SIGINT))\n"
        f"sys.argv = ['x', *{args!r}]\n"
        f"from {main.split(':')[0]} import {main.split(':')[1]} as main\n"
        f"sys.exit({call})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
        cwd=Path(__file__).resolve().parents[1],
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignored else None,
    )  # fmt: skip
    return done.returncode, done.stderr


def test_a_ctrl_c_while_the_process_exits_ends_it_without_a_traceback(tmp_path):
    """A second Ctrl-C after the first stopped a command (or one pressed as it ends) raised a
    KeyboardInterrupt in Python's teardown: an ``Exception ignored in atexit callback`` or
    ``in threading._shutdown`` traceback below the command's own line."""
    bad = ["--set", "train.lr=-1", "--set", f"train.runs_dir={tmp_path}"]
    for main, args in [("train:main", bad), ("avssl.cli:main", ["train", *bad])]:
        code, err = _interrupted_in_teardown(main, args)
        assert err == "error: train.lr: must be > 0, got -1.0\n", err
        assert code == -signal.SIGINT  # ended by the signal, at once, as a second Ctrl-C does
    # a developer script (benchmarks/*.py) runs its main under run_script: the same teardown
    script = "main('benchmarks/decode.py')"
    code, err = _interrupted_in_teardown("avssl.cli:run_script", ["--nope"], call=script)
    assert err == "error: unrecognized arguments: --nope (benchmarks/decode.py --help)\n", err
    assert code == -signal.SIGINT


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX: a process started with SIGINT ignored")
def test_a_process_started_with_sigint_ignored_keeps_ignoring_it_as_it_exits():
    """A command started with SIGINT ignored (``cmd &`` in a shell script: a Ctrl-C meant for
    the script) was killed by one pressed as it exited (exit -2, not its own code): the
    teardown's default handler replaced the ignore it inherited."""
    for main, args in [("train:main", ["--set", "train.lr=-1"]), ("avssl.cli:main", ["nope"])]:
        code, err = _interrupted_in_teardown(main, args, ignored=True)
        assert code == 2, (code, err)
        assert err.startswith("error: ") and "Traceback" not in err, err
