"""Number flags of the data commands: a bad value is one argparse line naming the flag, exit 2.

``positive_float`` (lengths, sizes), ``fraction`` and ``share`` (parts of a whole) refuse nan and
infinity too, which a plain ``value <= 0`` test lets through.
"""

from __future__ import annotations

import argparse

import pytest

from avssl.cli import main as cli
from avssl.cli import positive_float


@pytest.mark.parametrize("text", ["0", "-1", "-0.0", "nan", "inf", "-inf", "1e999", "ten", ""])
def test_positive_float_refuses(text):
    with pytest.raises(argparse.ArgumentTypeError):
        positive_float(text)


@pytest.mark.parametrize("text, value", [("1", 1.0), ("0.25", 0.25), ("1e-6", 1e-6), (" 3 ", 3.0)])
def test_positive_float_accepts(text, value):
    assert positive_float(text) == value


@pytest.mark.parametrize(
    "argv, flag, reason",
    [
        (["cache", "--shard-mb", "0"], "--shard-mb", "above 0, got 0"),
        (["cache", "--shard-mb", "nan"], "--shard-mb", "above 0, got nan"),
        (["cache", "--workers", "0"], "--workers", "at least 1, got 0"),
        (["cache", "--shard-size", "-5"], "--shard-size", "at least 1, got -5"),
        (["cache", "--seed", "-1"], "--seed", "at least 0, got -1"),
        (["synth", "--duration", "0"], "--duration", "above 0, got 0"),
        (["synth", "--duration", "inf"], "--duration", "above 0, got inf"),
        (["prepare", "audioset", "--segments", "s.csv", "--media", "m", "--val-fraction", "2"],
         "--val-fraction", "[0, 1), got 2"),
        (["prepare", "audioset", "--segments", "s.csv", "--media", "m", "--val-fraction", "nan"],
         "--val-fraction", "[0, 1), got nan"),
    ],
)  # fmt: skip
def test_bad_number_flags_are_one_line(argv, flag, reason, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        cli([*argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err
    (line,) = err.splitlines()
    assert line.startswith(f"error: {flag}: ") and reason in line, line
    assert not out.exists()
