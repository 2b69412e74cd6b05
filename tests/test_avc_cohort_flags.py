"""``evaluate.py avc --cohort/--cohort-top``: a bad value is one line naming the flag given."""

from __future__ import annotations

import pytest

import evaluate


def _error(capsys, *flags: str, tmp_path) -> str:
    """The one error line of ``evaluate.py avc`` with ``flags`` (exit 2, before any loading)."""
    argv = ["avc", "--checkpoint", str(tmp_path / "none.pt"), *flags]
    try:
        code = evaluate.main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    assert code == 2
    [line] = capsys.readouterr().err.splitlines()
    return line


@pytest.mark.parametrize("value", ["-5", "-1"])
def test_negative_cohort_names_only_cohort(capsys, tmp_path, value):
    line = _error(capsys, "--cohort", value, tmp_path=tmp_path)
    assert line == f"error: --cohort: must be at least 0, got {value} (evaluate.py avc --help)"


def test_cohort_top_is_checked_against_cohort(capsys, tmp_path):
    line = _error(capsys, "--cohort-top", "0", tmp_path=tmp_path)
    assert line.startswith("error: --cohort-top: must be at least 1, got 0")
    line = _error(capsys, "--cohort", "4", "--cohort-top", "5", tmp_path=tmp_path)
    assert line == "error: --cohort-top 5: at most --cohort 4"
    line = _error(capsys, "--cohort-top", "3", tmp_path=tmp_path)
    assert line == "error: --cohort-top 3: at most --cohort 0 (off)"


def test_a_cohort_of_one_names_the_flag(capsys, tmp_path):
    # it passed the parser, then failed saying the 480-clip train split had "1 usable clip"
    line = _error(capsys, "--cohort", "1", tmp_path=tmp_path)
    assert line == "error: --cohort 1: a cohort is at least 2 training pictures (0: off)"
