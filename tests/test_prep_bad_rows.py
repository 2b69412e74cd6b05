"""Malformed rows and entries of the annotation files given to the preparation scripts.

Each is skipped and listed in ``prepare_report.json`` with its file, line (or entry) and a
reason, never written as a row the manifest reader later refuses and never a traceback;
``--strict`` turns the first into a one-line error.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from bad_media import last_json, one_line_error, run
from PIL import Image
from test_prep_avdigits import digit_images, load_script, write_idx

from avssl.data.manifest import read_manifest

ESC50_HEADER = "filename,fold,target,category,esc10,src_file,take"
US8K_HEADER = "slice_file_name,fsID,start,end,salience,fold,classID,class"


def _fold_set(media_factory, tmp: Path, dataset: str, rows: list[str]) -> tuple[list[str], Path]:
    """An ESC-50 or UrbanSound8K folder (fold 3 holds one good clip): the argv and its CSV."""
    root = tmp / "root"
    if dataset == "esc50":
        meta, audio, header = root / "meta" / "esc50.csv", root / "audio", ESC50_HEADER
        good = "3-1-A-0.wav,3,0,dog,True,1,A"
    else:
        meta, audio, header = root / "metadata" / "UrbanSound8K.csv", root / "audio", US8K_HEADER
        good = "3-1-A-0.wav,1,0.0,1.0,1,3,3,dog_bark"
    meta.parent.mkdir(parents=True)
    meta.write_text("\n".join([header, good, *rows]) + "\n", encoding="utf-8")
    for row in [good, *rows]:  # every clip exists: only the rows are bad
        fold = row.split(",")[5] if dataset == "us8k" else ""
        media_factory.folder = audio / (f"fold{fold}" if fold else "")
        media_factory.folder.mkdir(parents=True, exist_ok=True)
        media_factory(row.split(",")[0], duration=0.5)
    return [dataset, "--root", str(root), "--test-fold", "3"], meta


@pytest.mark.parametrize(
    "dataset, flags, row, reason",
    [
        ("esc50", ["--esc10"], "4-1234-A-1.wav,4,1", "missing column(s) category, esc10, "
         "src_file, take"),
        ("esc50", [], "4-1234-A-1.wav,4", "missing column(s) target, category, esc10, "
         "src_file, take"),
        ("esc50", [], "4-1234-A-1.wav,4,1,,True,1,A", "empty column(s) category"),
        ("esc50", ["--esc10"], "4-1234-A-1.wav,4,1,dog,bark,True,1,A", "8 fields, the header "
         "has 7"),
        ("us8k", [], "4-1234-A-1.wav,7,0,4,1,2", "missing column(s) classID, class"),
    ],
)  # fmt: skip
def test_fold_csv_rows_with_missing_columns(dataset, flags, row, reason, media_factory,
                                            tmp_path, capsys):  # fmt: skip
    argv, meta = _fold_set(media_factory, tmp_path, dataset, [row])
    script = load_script(dataset).main
    code, o, err = run(capsys, script, [*argv[1:], *flags, "--out", str(tmp_path / "o")])
    assert code == 0, err
    assert last_json(o)["written"] == 1 and last_json(o)["unreadable"] == 1
    report = json.loads((tmp_path / "o" / "prepare_report.json").read_text())
    assert report["unreadable_items"] == [["4-1234-A-1", f"{meta}:3: {reason}"]]
    assert [r.labels for r in read_manifest(tmp_path / "o" / "manifest.jsonl")] == [
        ["dog" if dataset == "esc50" else "dog_bark"]
    ]
    code, o, err = run(
        capsys, script, [*argv[1:], *flags, "--strict", "--out", str(tmp_path / "s")]
    )
    assert code == 2 and o == "" and len(err.strip().splitlines()) == 1, err
    assert f"{meta}:3: {reason} (--strict)" in err


def test_fold_labels_are_stripped(media_factory, tmp_path, capsys):
    """ " dog " is the class dog, not a class of its own; a blank one is no class."""
    rows = ["4-1234-A-1.wav,4,1, dog ,True,1,A", "4-1235-A-1.wav,4,1,  ,True,1,A"]
    argv, meta = _fold_set(media_factory, tmp_path, "esc50", rows)
    code, o, err = run(capsys, load_script("esc50").main, [*argv[1:], "--out", str(tmp_path / "o")])
    assert code == 0, err
    assert {r.labels[0] for r in read_manifest(tmp_path / "o" / "manifest.jsonl")} == {"dog"}
    report = json.loads((tmp_path / "o" / "prepare_report.json").read_text())
    assert [x[0] for x in report["unreadable_items"]] == ["4-1235-A-1"]
    assert "empty" in report["unreadable_items"][0][1]


def test_esc10_keeps_only_the_esc10_rows_without_listing_the_others(
    media_factory, tmp_path, capsys
):
    argv, _ = _fold_set(media_factory, tmp_path, "esc50", ["4-1234-A-1.wav,4,1,cat,False,1,A"])
    script = load_script("esc50").main
    code, o, err = run(capsys, script, [*argv[1:], "--esc10", "--out", str(tmp_path / "o")])
    assert code == 0, err
    assert last_json(o)["written"] == 1 and last_json(o)["unreadable"] == 0
    assert [r.id for r in read_manifest(tmp_path / "o" / "manifest.jsonl")] == ["3-1-A-0"]
    assert json.loads((tmp_path / "o" / "folds.json").read_text()) == {"3-1-A-0": 3}
    code, o, err = run(capsys, script, [*argv[1:], "--out", str(tmp_path / "all")])
    assert code == 0 and last_json(o)["written"] == 2, err


def test_fold_counts_count_the_rows_written_only(media_factory, tmp_path, capsys):
    rows = ["4-1234-A-1.wav,4,1,cat,True,1,A", "4-1235-A-1.wav,4,1,cat,True,1,A"]
    argv, meta = _fold_set(media_factory, tmp_path, "esc50", rows)
    (meta.parents[1] / "audio" / "4-1235-A-1.wav").unlink()  # missing: not in folds.json
    code, o, err = run(capsys, load_script("esc50").main, [*argv[1:], "--out", str(tmp_path / "o")])
    assert code == 0 and last_json(o)["missing"] == 1, err
    report = json.loads((tmp_path / "o" / "prepare_report.json").read_text())
    assert report["fold_counts"] == {"3": 1, "4": 1}


def test_esc50_duplicate_row_keeps_the_first_fold(media_factory, tmp_path, capsys):
    rows = ["4-1234-A-1.wav,4,1,cat,True,1,A", "4-1234-A-1.wav,3,1,cat,True,1,A"]
    argv, _ = _fold_set(media_factory, tmp_path, "esc50", rows)
    code, o, err = run(capsys, load_script("esc50").main, [*argv[1:], "--out", str(tmp_path / "o")])
    assert code == 0, err
    report = json.loads((tmp_path / "o" / "prepare_report.json").read_text())
    assert [x[0] for x in report["unreadable_items"]] == ["4-1234-A-1"]
    assert "duplicate" in report["unreadable_items"][0][1]
    rows = {r.id: r.split for r in read_manifest(tmp_path / "o" / "manifest.jsonl")}
    folds = json.loads((tmp_path / "o" / "folds.json").read_text())
    assert folds == {"3-1-A-0": 3, "4-1234-A-1": 4} and rows["4-1234-A-1"] == "train"


def test_vggss_entries_without_file_or_bbox(media_factory, tmp_path, capsys):
    for name in "abc":
        media_factory(f"{name}.mp4", duration=1.0, size=(32, 32))
    zero = [[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.2, 0.6]]  # the second box has no width
    entries = [
        {"file": "a", "class": "dog", "bbox": zero},
        {"class": "dog", "bbox": [[0.1, 0.1, 0.5, 0.5]]},  # entry 1: no file
        {"file": "b", "class": "dog"},
        {"file": "a", "class": "dog", "bbox": zero},  # a duplicate
        {"file": None, "bbox": zero},
    ]
    ann = tmp_path / "vggss.json"
    ann.write_text(json.dumps(entries) + "\n")
    out = tmp_path / "out"
    argv = ["--annotations", str(ann), "--media", str(tmp_path), "--out", str(out)]
    code, o, err = run(capsys, load_script("vggss").main, argv)
    assert code == 0, err
    assert last_json(o)["written"] == 1 and last_json(o)["missing"] == 0
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["unreadable_items"] == [
        ["entry 1", "no 'file' key"],
        ["b", "no 'bbox' key"],
        ["a", "duplicate id (an earlier item has the same one)"],
        ["entry 4", "'file' is null, not a file name"],
    ]
    assert report["notes"][0].startswith("items with zero-area boxes: 1 (a);")


def test_vggss_non_finite_box_and_empty_id_list(media_factory, tmp_path, capsys):
    media_factory("a.mp4", duration=1.0, size=(32, 32))
    ann = tmp_path / "vggss.json"
    ann.write_text('[{"file": "a", "bbox": [[NaN, 0.1, 0.5, 0.5]]}]\n')  # Python's json reads NaN
    argv = ["--annotations", str(ann), "--media", str(tmp_path)]
    code, o, err = run(capsys, load_script("vggss").main, [*argv, "--out", str(tmp_path / "o")])
    assert code == 2 and "a: bad bbox (a: box 0 has a coordinate that is not finite" in err
    ids = tmp_path / "ids.csv"
    ids.write_text("")
    code, o, err = run(capsys, load_script("vggss").main, [*argv, "--ids", str(ids), "--out",
                                                           str(tmp_path / "o")])  # fmt: skip
    one_line_error(code, o, err, ids, "no ids in the file")


def test_avdigits_recording_that_is_no_audio_says_so(tmp_path, capsys):
    fsdd = tmp_path / "fsdd"
    fsdd.mkdir()
    t = np.arange(6000) / 8000
    for speaker in ("amy", "zed"):
        for digit in range(10):
            sf.write(fsdd / f"{digit}_{speaker}_1.wav", 0.3 * np.sin(2 * np.pi * 300 * t), 8000)
    Image.new("RGB", (16, 16)).save(fsdd / "3_amy_2.wav", format="PNG")  # a renamed PNG
    sf.write(fsdd / "4_amy_2.wav", np.zeros(0), 8000)  # a header and no samples
    x, y = digit_images(100, 0)
    argv = ["--fsdd", str(fsdd), "--mnist-images", str(write_idx(tmp_path / "i.gz", x, 2051)),
            "--mnist-labels", str(write_idx(tmp_path / "l.gz", y, 2049)), "--test-speakers",
            "zed", "--gallery-per-class", "1", "--out", str(tmp_path / "o")]  # fmt: skip
    code, o, err = run(capsys, load_script("avdigits").main, argv)
    assert code == 0, err
    report = json.loads((tmp_path / "o" / "prepare_report.json").read_text())
    assert report["unreadable_items"] == [
        ["3_amy_2", "not an audio file (image, png; no audio stream)"],
        ["4_amy_2", "no audio samples"],
    ]


def test_csv_lines_csv_cannot_read_or_with_a_quote_left_open(media_factory, tmp_path):
    # a 200-KB line (a crashed write pads with NULs) gave _csv.Error with a traceback; a quote
    # left open swallowed every line after it into one "bad row"
    from avssl.prep import audioset, vggsound

    media_factory("zpWuikVorYg_000032.mp4", duration=2.0, size=(32, 32))
    huge = "AAAAAAAAAAA, 1, 11, " + "\0" * 200_000
    seg = tmp_path / "x_train.csv"
    seg.write_text(f'{huge}\nzpWuikVorYg, 32.000, 42.000, "/m/a"\n')
    csv = tmp_path / "vggsound.csv"
    csv.write_text(f'"zpWuikVorYg,1,dog,train\n{huge}\nzpWuikVorYg,32,elk bugling,test\n')
    for main, argv in ((audioset.main, ["--segments", str(seg), "--val-fraction", "0"]),
                       (vggsound.main, ["--csv", str(csv)])):  # fmt: skip
        out = tmp_path / main.__module__
        assert main([*argv, "--media", str(tmp_path), "--out", str(out)]) == 0
        assert [r.id for r in read_manifest(out / "manifest.jsonl")] == ["zpWuikVorYg_32"]
        report = json.loads((out / "prepare_report.json").read_text())
        reasons = [reason for _, reason in report["unreadable_items"]]
        limit = "not a CSV row (field larger than field limit (131072))"
        assert reasons == ([limit] if main is audioset.main else ["a quote is not closed on "
                                                                  "its line", limit])  # fmt: skip
