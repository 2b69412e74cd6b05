"""File names that start with a dash reach the commands as files, not as unknown options; errors
the commands did not foresee still end in one line."""

from __future__ import annotations

import argparse
import sys

import pytest
from tqdm import tqdm

from avssl.cli import ArgumentParser, dash_paths_last, json_line, one_line, run_guarded
from avssl.errors import MediaError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("file")
    p.add_argument("--start", type=float, default=0.0)
    p.add_argument("-o", "--output")
    p.add_argument("--force", action="store_true")
    return p


def test_dash_names_become_positionals(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-clip").write_bytes(b"")  # exists, no extension
    p = _parser()
    for argv, file in [
        (["-x.mp4"], "-x.mp4"),
        (["--start", "-1", "-x.mp4"], "-x.mp4"),  # a negative option value stays a value
        (["-x.mp4", "--force"], "-x.mp4"),
        (["-clip", "--start=2"], "-clip"),
        (["plain.mp4"], "plain.mp4"),
        (["--", "-y.wav"], "-y.wav"),
    ]:
        args = p.parse_args(dash_paths_last(p, argv))
        assert args.file == file, argv
    args = p.parse_args(dash_paths_last(p, ["in.mp4", "-o", "-out.mp4", "--start", "-0.5"]))
    assert (args.file, args.output, args.start) == ("in.mp4", "-out.mp4", -0.5)
    args = p.parse_args(dash_paths_last(p, ["in.mp4", "--output", "-out.mp4"]))
    assert args.output == "-out.mp4"


def test_unknown_options_are_still_errors():
    p = _parser()
    assert dash_paths_last(p, ["x.mp4", "--bogus"]) == ["x.mp4", "--bogus"]


def test_unforeseen_os_errors_are_one_line(tmp_path, capsys):
    # what an output below a regular file, a read-only folder or a full disk raise
    blocker = tmp_path / "file"
    blocker.write_text("")

    def write_below_a_file(argv):
        (blocker / "out").mkdir()

    assert run_guarded(write_below_a_file, []) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"error: {blocker / 'out'}: Not a directory"]


@pytest.mark.parametrize(
    ("raised", "code", "line"),
    [
        (MediaError("b.wav", "truncated"), 2, "error: b.wav: truncated"),  # --strict's first
        (KeyboardInterrupt(), 130, "error: interrupted"),
    ],
)
def test_an_error_during_a_progress_bar_starts_its_own_line(raised, code, line, capsys):
    def walk(argv):
        bar = tqdm(total=10, desc="index", file=sys.stderr, disable=False)  # as on a terminal
        bar.update(4)
        raise raised  # the bar still drawn: the traceback holds it

    assert run_guarded(walk, []) == code
    err = capsys.readouterr().err
    assert "index:" in err and line in err.split("\n"), repr(err)


def test_no_command_is_an_error_with_the_usage_on_stderr(capsys):
    import evaluate
    from avssl.cli import main as avssl_main

    for entry in (avssl_main, evaluate.main):
        assert entry([]) == 2
        cap = capsys.readouterr()
        assert cap.out == "" and "usage" in cap.err.lower()
        assert entry(["--help"]) == 0
        cap = capsys.readouterr()
        assert cap.err == "" and "usage" in cap.out.lower()


def test_dash_values_attach_only_where_argparse_sees_no_option():
    p = ArgumentParser(prog="t")
    p.add_argument("--video")
    p.add_argument("-o", "--output")
    p.add_argument("--results", nargs="*", default=[])
    p.add_argument("-k", type=int, default=4)
    p.add_argument("--force", action="store_true")
    args = p.parse_args(["--video", "-clip.mp4", "-o", "-out.mp4"])
    assert (args.video, args.output) == ("-clip.mp4", "-out.mp4")
    args = p.parse_args(["--results", "-k2"])  # a list option never swallows the next option
    assert (args.results, args.k) == ([], 2)
    assert p.parse_args(["--results", "a.json", "--forc"]).force  # an abbreviation
    with pytest.raises(SystemExit):  # a missing value, not a file named "--forc"
        p.parse_args(["--video", "--forc"])


def test_one_line_escapes_c1_controls_and_unicode_line_breaks():
    # a NEL (U+0085) or a line separator (U+2028) breaks a line in many terminals and editors
    assert one_line("a\u2028b\u2029c\x85d\x9be") == "a\\u2028b\\u2029c\\x85d\\x9be"
    assert one_line("café é.mp4") == "café é.mp4"


def test_json_lines_hold_no_nan_inside_lists_either():
    nan, inf = float("nan"), float("inf")
    assert json_line({"a": [nan, (1.0, -inf)], "b": {"c": [nan]}}) == (
        '{"a": [null, [1.0, null]], "b": {"c": [null]}}'
    )


def test_version_is_the_installed_packages(capsys):
    from importlib.metadata import version

    from avssl.cli import main as cli_main

    assert cli_main(["--version"]) == 0
    assert capsys.readouterr().out == f"avssl {version('avssl')}\n"


def test_help_texts_read_as_plain_text(capsys):
    """The descriptions come from docstrings: ``--help`` showed their markup (``avssl index``,
    :mod:`avssl.tools.index`)."""
    from avssl.cli import COMMANDS
    from avssl.cli import main as avssl_main

    for name in COMMANDS:
        if name == "prepare":  # a registry of datasets, its own usage text
            continue
        try:
            code = avssl_main([name, "--help"])
        except SystemExit as stop:  # argparse's --help exits
            code = stop.code
        assert code == 0, name
        text = capsys.readouterr().out
        assert "usage:" in text and "``" not in text and ":mod:" not in text, name
