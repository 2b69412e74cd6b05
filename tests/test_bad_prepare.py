"""Bad annotation files, flags and output folders given to the dataset preparation scripts.

Each refusal is one ``error:`` line on stderr with exit status 2 and no traceback, naming the
file or flag; nothing the user made is changed. Bad rows or entries of an annotation file are
skipped, counted and listed in ``prepare_report.json`` (``--strict`` stops at the first).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bad_media import last_json, one_line_error, run
from test_prep_avdigits import load_script

from avssl.cli import main as cli
from avssl.data.annotations import read_vggss
from avssl.errors import ManifestError

NOT_UTF8 = b"\xff\xfe\x00id,x\n"


def _argparse_refusal(capsys, argv: list[str], flag: str, reason: str, out: Path) -> None:
    """``avssl prepare ARGV`` stops in argparse: status 2, its one error line names ``flag``."""
    with pytest.raises(SystemExit) as stop:
        cli(["prepare", *argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err
    (line,) = err.splitlines()  # one line, no usage block
    assert line.startswith(f"error: {flag}: ") and reason in line, line
    assert not out.exists()


def _esc50_root(tmp: Path, folds=(1, 2)) -> Path:
    """An ESC-50 folder whose clips are all missing (enough for the checks before decoding)."""
    (tmp / "esc" / "meta").mkdir(parents=True)
    (tmp / "esc" / "audio").mkdir()
    lines = ["filename,fold,target,category,esc10,src_file,take"]
    lines += [f"{f}-1-A-0.wav,{f},0,dog,True,1,A" for f in folds]
    (tmp / "esc" / "meta" / "esc50.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp / "esc"


@pytest.mark.parametrize("case", ["vggss-annotations", "vggss-ids", "flickr-ids", "vggsound",
                                  "esc50", "audioset"])  # fmt: skip
def test_text_files_that_are_not_utf8(case, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(NOT_UTF8)
    media = tmp_path / "media"
    media.mkdir()
    good_json = tmp_path / "vggss.json"
    good_json.write_text('[{"file": "a", "bbox": [[0, 0, 1, 1]]}]', encoding="utf-8")
    argv = {
        "vggss-annotations": ["vggss", "--annotations", str(bad), "--media", str(media)],
        "vggss-ids": ["vggss", "--annotations", str(good_json), "--ids", str(bad),
                      "--media", str(media)],
        "flickr-ids": ["flickr", "--ids", str(bad), "--media", str(media)],
        "vggsound": ["vggsound", "--csv", str(bad), "--media", str(media)],
        "esc50": ["esc50", "--root", str(tmp_path / "esc")],
        "audioset": ["audioset", "--segments", str(bad), "--split-of", f"{bad}=test",
                     "--media", str(media)],
    }[case]  # fmt: skip
    if case == "esc50":
        bad = _esc50_root(tmp_path) / "meta" / "esc50.csv"
        bad.write_bytes(NOT_UTF8)
    script = load_script(argv[0]).main
    code, out, err = run(capsys, script, [*argv[1:], "--out", str(tmp_path / "out")])
    one_line_error(code, out, err, bad, "not UTF-8 text")
    assert bad.read_bytes() == NOT_UTF8 and not (tmp_path / "out" / "manifest.jsonl").exists()


def test_out_that_is_a_regular_file(tmp_path, capsys):
    mine = tmp_path / "mine.txt"
    mine.write_bytes(b"precious\n")
    root = _esc50_root(tmp_path)
    for out in (mine, mine / "sub"):
        code, o, err = run(
            capsys, load_script("esc50").main, ["--root", str(root), "--out", str(out)]
        )
        one_line_error(code, o, err, mine, "not a folder")
    assert mine.read_bytes() == b"precious\n"


def test_force_covers_every_file_a_run_writes(media_factory, tmp_path, capsys):
    root = _esc50_root(tmp_path)
    media_factory.folder = root / "audio"
    media_factory("1-1-A-0.wav", duration=0.5)
    out = tmp_path / "out"
    out.mkdir()
    (out / "folds.json").write_text("user folds\n")
    (out / "prepare_report.json").write_text("user report\n")
    args = ["--root", str(root), "--out", str(out), "--test-fold", "1"]
    code, o, err = run(capsys, load_script("esc50").main, args)
    one_line_error(code, o, err, out / "prepare_report.json", "already exists")
    assert "folds.json" in err and "--force" in err
    assert (out / "folds.json").read_text() == "user folds\n"
    assert (out / "prepare_report.json").read_text() == "user report\n"
    assert sorted(p.name for p in out.iterdir()) == ["folds.json", "prepare_report.json"]
    code, o, err = run(capsys, load_script("esc50").main, [*args, "--force"])
    assert code == 0 and json.loads((out / "folds.json").read_text()) == {"1-1-A-0": 1}


@pytest.mark.parametrize("taken", ["items.jsonl", "images/mine.png", "heldout.jsonl"])
def test_avdigits_refuses_every_output_before_reading(taken, tmp_path, capsys):
    out = tmp_path / "out"
    (out / taken).parent.mkdir(parents=True)
    (out / taken).write_bytes(b"MINE")
    missing = str(tmp_path / "nothing")  # the inputs are never read: the refusal comes first
    argv = ["--fsdd", missing, "--mnist-images", missing, "--mnist-labels", missing,
            "--out", str(out), "--val-speaker", "amy"]  # fmt: skip
    code, o, err = run(capsys, load_script("avdigits").main, argv)
    shown = taken.split("/")[0] + ("/" if "/" in taken else "")
    one_line_error(code, o, err, out / shown, "already exists")
    assert (out / taken).read_bytes() == b"MINE"


def test_esc50_test_fold_not_present(tmp_path, capsys):
    root = _esc50_root(tmp_path, folds=(1, 2))
    out = tmp_path / "out"
    argv = ["--root", str(root), "--out", str(out), "--test-fold", "99"]
    code, o, err = run(capsys, load_script("esc50").main, argv)
    one_line_error(code, o, err, "--test-fold 99", "folds: 1, 2")
    assert not out.exists()


@pytest.mark.parametrize(
    "argv, flag, reason",
    [
        (["vggsound", "--csv", "x.csv", "--media", "m", "--val-fraction", "-1"],
         "--val-fraction", "[0, 1)"),
        (["vggsound", "--csv", "x.csv", "--media", "m", "--val-fraction", "5"],
         "--val-fraction", "[0, 1)"),
        (["vggsound", "--csv", "x.csv", "--media", "m", "--val-fraction", "nan"],
         "--val-fraction", "[0, 1)"),
        (["esc50", "--root", "r", "--probe", "--workers", "0"], "--workers", "at least 1"),
        (["esc50", "--root", "r", "--probe", "--workers", "-2"], "--workers", "at least 1"),
        (["avdigits", "--canvas-size", "0"], "--canvas-size", "at least 1"),
        (["avdigits", "--grid", "0"], "--grid", "at least 1"),
        (["avdigits", "--gallery-per-class", "-5"], "--gallery-per-class", "at least 1"),
        (["avdigits", "--mnist-test-fraction", "2"], "--mnist-test-fraction", "[0, 1)"),
        (["avdigits", "--mnist-val-fraction", "x"], "--mnist-val-fraction", "not a number"),
    ],
)  # fmt: skip
def test_numeric_flags_out_of_range(argv, flag, reason, tmp_path, capsys):
    if argv[0] == "avdigits":
        argv += ["--fsdd", "f", "--mnist-images", "i", "--mnist-labels", "l"]
    _argparse_refusal(capsys, argv, flag, reason, tmp_path / "out")


def test_avdigits_mnist_shares_leave_no_training_images(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--fsdd", "f", "--mnist-images", "i", "--mnist-labels", "l", "--out", str(out),
            "--mnist-test-fraction", "0.6", "--mnist-val-fraction", "0.4"]  # fmt: skip
    code, o, err = run(capsys, load_script("avdigits").main, argv)
    one_line_error(code, o, err, "--mnist-val-fraction 0.4 + --mnist-test-fraction 0.6", "sum")
    assert not out.exists()


def test_vggsound_bad_rows_are_skipped_counted_and_listed(media_factory, tmp_path, capsys):
    media_factory("zpWuikVorYg_000032.mp4", duration=1.0, size=(32, 32))
    csv = tmp_path / "vggsound.csv"
    csv.write_text(
        "zpWuikVorYg,32,elk bugling,test\n"
        "AAAAAAAAAAA,abc,dog,train\n"
        "BBBBBBBBBBB\n"
        "CCCCCCCCCCC,1,cat,bogus\n"
    )
    out = tmp_path / "out"
    argv = ["--csv", str(csv), "--media", str(tmp_path), "--out", str(out)]
    code, o, err = run(capsys, load_script("vggsound").main, argv)
    assert code == 0, err
    assert last_json(o)["written"] == 1 and last_json(o)["unreadable"] == 3
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["unreadable_items"] == [
        [f"{csv}:2", "start 'abc' is not a number"],
        [f"{csv}:3", "expected 4 fields, got 1"],
        [f"{csv}:4", "split 'bogus' is not train or test"],
    ]
    code, o, err = run(capsys, load_script("vggsound").main, [*argv, "--force", "--strict"])
    assert code == 2 and o == "" and len(err.strip().splitlines()) == 1, err
    assert f"{csv}:2: start 'abc'" in err and "--strict" in err


def test_vggss_entry_that_is_not_an_object(media_factory, tmp_path, capsys):
    media_factory("a.jpg", size=(32, 32))
    media_factory("a.wav", duration=1.0)
    ann = tmp_path / "vggss.json"
    ann.write_text('[{"file": "a", "class": "dog", "bbox": [[0.1, 0.1, 0.5, 0.5]]}, 5, "b"]')
    out = tmp_path / "out"
    argv = ["--annotations", str(ann), "--media", str(tmp_path), "--out", str(out)]
    code, o, err = run(capsys, load_script("vggss").main, argv)
    assert code == 0, err
    assert last_json(o)["written"] == 1 and last_json(o)["unreadable"] == 2
    report = json.loads((out / "prepare_report.json").read_text())
    assert [x[0] for x in report["unreadable_items"]] == ["entry 1", "entry 2"]
    assert "not a JSON object" in report["unreadable_items"][0][1]
    with pytest.raises(ManifestError, match="entry 1 is not a JSON object"):
        read_vggss(ann)  # the evaluation's reader still takes a file only whole
