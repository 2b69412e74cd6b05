"""What an audit of ``avssl overlay``, ``report``, ``inspect`` and ``synth`` found them let through:
an output that is a device or a pipe (renamed over: ``report -o /dev/null --force`` replaced the
system's ``/dev/null`` as root), flag errors naming another flag or none, flags refused only for
some kinds of file, a gallery size that can never hold a gallery, ``synth --out ""`` building in
the current folder, and a damaged ``metrics.jsonl`` described as merely empty."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from bad_media import run
from conftest import MediaFactory

from avssl.cli import main as cli
from avssl.tools.report import curves_section


def _one_line(code: int, out: str, err: str, start: str, reason: str) -> None:
    assert code == 2 and out == "", (code, out, err)
    (line,) = err.splitlines()
    assert line.startswith(f"error: {start}") and reason in line, line


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run folder with only its config (enough to be a run; no model work)."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text("name: audit\n")
    return folder


def test_report_refuses_an_output_that_is_a_pipe_or_a_link_to_one(run_dir, tmp_path, capsys):
    pipe = tmp_path / "pipe.html"
    os.mkfifo(pipe)
    link = tmp_path / "link.html"
    link.symlink_to(pipe)
    for out in (pipe, link):
        code, o, e = run(capsys, cli, ["report", str(run_dir), "-o", str(out)])
        _one_line(code, o, e, f"{out}: exists", "pass --force")
        code, o, e = run(capsys, cli, ["report", str(run_dir), "-o", str(out), "--force"])
        _one_line(code, o, e, f"{out}: is not a regular file", "give a file name")
    assert pipe.is_fifo() and link.is_symlink() and not (run_dir / "report.html").exists()


def test_overlay_refuses_a_pipe_output_before_loading_anything(media_factory, tmp_path, capsys):
    video = media_factory("v.mp4", duration=1.0)
    pipe = tmp_path / "pipe.mp4"
    os.mkfifo(pipe)
    sheet = tmp_path / "sheet.png"
    os.mkfifo(sheet)
    missing_ckpt = str(tmp_path / "no-such.pt")  # the refusal comes first
    argv = ["overlay", str(video), "--checkpoint", missing_ckpt, "-o", str(pipe), "--force"]
    _one_line(*run(capsys, cli, argv), f"{pipe}: is not a regular file", "give a file name")
    argv = ["overlay", str(video), "--checkpoint", missing_ckpt, "-o", str(tmp_path / "o.mp4"),
            "--png", str(sheet), "--force"]  # fmt: skip
    _one_line(*run(capsys, cli, argv), f"{sheet}: is not a regular file", "file name")
    assert pipe.is_fifo() and sheet.is_fifo() and not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize(
    "flags, line",
    [
        (["--chunk", "0"], "error: --chunk: must be at least 1, got 0"),
        (["--max-side", "8"], "error: --max-side: must be at least 16, got 8"),
        (["--alpha", "1.5"], "error: --alpha must be in [0, 1], got 1.5"),
        (["--cmap", "no-such-map"], "error: --cmap: unknown matplotlib colormap 'no-such-map'"),
    ],
)
def test_overlay_flag_errors_name_their_flag_before_the_work(
    flags, line, media_factory, tmp_path, capsys
):
    video = media_factory("v.mp4", duration=1.0)
    out = tmp_path / "o.mp4"
    argv = ["overlay", str(video), "--checkpoint", str(tmp_path / "none.pt"), "-o", str(out)]
    code, o, e = run(capsys, cli, [*argv, *flags])  # no checkpoint: refused before loading one
    assert code == 2 and o == "" and e.splitlines() == [line] and not out.exists()


@pytest.mark.parametrize(
    "flags, line",
    [
        (["-k", "0"], "error: -k: must be at least 1, got 0 (avssl report --help)"),
        (["--n-queries", "0"], "error: --n-queries: must be at least 1, got 0"),
        (["--n-overlays", "-2"], "error: --n-overlays: must be at least 1, got -2"),
        # a gallery ranks one clip's sound against the others' pictures: one clip never makes one
        (["--max-clips", "1"], "error: --max-clips: must be at least 2, got 1"),
    ],
)
def test_report_count_flags_are_named_and_refused_before_the_work(flags, line, run_dir, capsys):
    with pytest.raises(SystemExit) as stop:
        cli(["report", str(run_dir), *flags])
    assert stop.value.code == 2
    (got,) = capsys.readouterr().err.splitlines()
    assert got.startswith(line), got
    assert not (run_dir / "report.html").exists()


def test_report_results_naming_a_folder_says_so(run_dir, tmp_path, capsys):
    argv = ["report", str(run_dir), "--results", str(tmp_path)]
    _one_line(*run(capsys, cli, argv), f"{tmp_path}: ", "--results names a folder")


def test_a_damaged_metrics_file_is_called_damaged(tmp_path):
    (tmp_path / "metrics.jsonl").write_bytes(b"\x00\xff garbage\n{not json\n[1, 2]\n")
    section = curves_section(tmp_path)
    assert not section.ok and "3 unreadable line(s) skipped: the file is damaged" in section.body
    (tmp_path / "metrics.jsonl").write_text("")  # merely empty: no such claim
    assert "damaged" not in curves_section(tmp_path).body


@pytest.mark.parametrize(
    "name, flags, reason",
    [
        ("tone.wav", ["--fps", "0"], "invalid fps 0.0"),
        ("tone.wav", ["--size", "0"], "output size 0x0 outside the limit"),
        ("still.png", ["--sample-rate", "0"], "invalid sample rate 0"),
        ("mute.mp4", ["--sample-rate", "-1"], "invalid sample rate -1"),
    ],
)
def test_inspect_refuses_a_bad_flag_whatever_the_file_holds(
    name, flags, reason, media_factory: MediaFactory, capsys
):
    path = media_factory(name, duration=1.0, audio=name != "mute.mp4")
    _one_line(*run(capsys, cli, ["inspect", str(path), *flags]), f"{path}: ", reason)


def test_synth_refuses_an_empty_out(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # Path("") is "." : the world was built here
    with pytest.raises(SystemExit) as stop:
        cli(["synth", "--out", "", "--n-train", "1", "--n-val", "0", "--n-test", "0", "--quiet"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.startswith("error: --out: an empty folder name")
    assert list(tmp_path.iterdir()) == []


def test_every_output_refuses_a_pipe(tmp_path):
    from avssl.cli_outputs import check_new_file
    from avssl.errors import AvsslError

    pipe = tmp_path / "out.json"
    os.mkfifo(pipe)
    for in_place in (False, True):  # query --html, report -o, overlay -o; evaluate --out
        # renamed over, the pipe would be replaced; opened in place, the check waited for ever
        with pytest.raises(AvsslError, match="is not a regular file"):
            check_new_file(pipe, force=True, in_place=in_place)
    assert pipe.is_fifo()


def test_inspect_reads_a_late_sound_as_the_tools_do(media_factory: MediaFactory, tmp_path, capsys):
    """A track that starts after the window is read with silence before it, as index, query,
    embed and overlay read it; the window's note says training skips such a window."""
    import json

    from bad_media import delay_audio

    video = delay_audio(media_factory("v.mp4", duration=2.0), tmp_path / "late.mp4", 0.5)
    assert cli(["inspect", str(video)]) == 0
    window = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["window"]
    assert window["audio_samples"] == 16000
    assert window["note"].startswith("audio starts at 0.4") and "training skips" in window["note"]
    assert cli(["inspect", str(video), "--start", "1.0"]) == 0  # after its start: no note
    assert "note" not in json.loads(capsys.readouterr().out.strip().splitlines()[-1])["window"]
