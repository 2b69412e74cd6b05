"""Preparation scripts on folders as real downloads leave them: CSVs named by another spelling
of their path, audio-only downloads, empty files and broken links, linked dataset folders, a
test fold with nothing present, and WAV files cut short reaching ``classify``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from bad_media import last_json
from test_classify import make_us8k

import evaluate
from avssl.data.manifest import read_manifest, resolve
from avssl.errors import AvsslError
from avssl.prep import audioset, esc50, flickr, vggss

BOX = [[0.1, 0.1, 0.5, 0.5]]


def _report(out):
    return json.loads((out / "prepare_report.json").read_text())


def test_split_of_takes_any_spelling_of_the_csv_path_and_refuses_a_stray_one(
    media_factory, tmp_path, monkeypatch
):
    media = tmp_path / "media"
    media.mkdir()
    media_factory.folder = media
    media_factory("eeeeeeeeeee_0.mp4", duration=1.0, size=(16, 16))
    (tmp_path / "eval_segments.csv").write_text('eeeeeeeeeee, 0.000, 1.000, "/m/01"\n')
    monkeypatch.chdir(tmp_path)
    base = ["--segments", "./eval_segments.csv", "--media", "media"]
    for n, key in enumerate(("./eval_segments.csv", str(tmp_path / "eval_segments.csv"),
                             "eval_segments.csv")):  # fmt: skip
        out = tmp_path / f"out{n}"
        assert audioset.main([*base, "--split-of", f"{key}=val", "--out", str(out)]) == 0
        assert _report(out)["splits"] == {"val": 1}, key  # not the name's guess, test
    with pytest.raises(AvsslError, match=r"--split-of eval_segment.csv=val: .* none of the"):
        audioset.main([*base, "--split-of", "eval_segment.csv=val", "--out", "o9"])
    assert not (tmp_path / "o9").exists()


def test_audio_only_downloads_are_missing_not_rows(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    sf.write(media / "aaaaaaaaaaa_30.m4a.wav", np.zeros(800, np.float32), 8000)  # not a name
    sf.write(media / "Yaaaaaaaaaaa_30.000_40.000.wav", np.zeros(800, np.float32), 8000)
    (media / "bbbbbbbbbbb_30.mp4").write_bytes(b"")  # a failed download
    csv = tmp_path / "balanced_train_segments.csv"
    csv.write_text('aaaaaaaaaaa, 30.000, 40.000, "/m/01"\nbbbbbbbbbbb, 30.000, 40.000, "/m/01"\n')
    with pytest.raises(AvsslError, match="no usable items"):
        audioset.main(["--segments", str(csv), "--media", str(media), "--out", str(tmp_path / "o")])
    with pytest.raises(AvsslError, match=r"aaaaaaaaaaa_30: only audio-only files .* no picture"):
        audioset.main(["--segments", str(csv), "--media", str(media), "--out",
                       str(tmp_path / "o"), "--strict"])  # fmt: skip


def test_vggss_falls_back_to_a_video_and_takes_a_whole_one_with_the_clip_times(
    media_factory, tmp_path
):
    media = tmp_path / "media"
    media.mkdir()
    media_factory.folder = media
    sf.write(media / "zpWuikVorYg_000032.wav", np.zeros(8000, np.float32), 8000)  # sound only
    media_factory("zpWuikVorYg_32.mp4", duration=1.0, size=(16, 16))
    media_factory("wholeVIDEO1.mp4", duration=25.0, fps=2.0, size=(16, 16), sample_rate=8000)
    (media / "emptyFILE11_000010.mp4").write_bytes(b"")
    entries = [
        {"file": "zpWuikVorYg_000032", "class": "c", "bbox": BOX},
        {"file": "wholeVIDEO1_000012", "class": "c", "bbox": BOX},
        {"file": "emptyFILE11_000010", "class": "c", "bbox": BOX},
    ]
    (tmp_path / "v.json").write_text(json.dumps(entries))
    out = tmp_path / "out"
    argv = ["--annotations", str(tmp_path / "v.json"), "--media", str(media), "--out", str(out)]
    assert vggss.main(argv) == 0
    rows = {r.id: r for r in read_manifest(out / "manifest.jsonl")}
    assert rows.keys() == {"zpWuikVorYg_000032", "wholeVIDEO1_000012"}
    cut = rows["zpWuikVorYg_000032"]
    assert cut.video.endswith("zpWuikVorYg_32.mp4") and (cut.start, cut.end) == (0.0, None)
    whole = rows["wholeVIDEO1_000012"]
    assert whole.video.endswith("wholeVIDEO1.mp4") and (whole.start, whole.end) == (12.0, 22.0)
    [(item, reason)] = _report(out)["unreadable_items"]
    assert item == "emptyFILE11_000010" and reason.endswith("emptyFILE11_000010.mp4: empty file")


def test_manifests_keep_a_linked_dataset_folder(tmp_path):
    real = tmp_path / "disk" / "ESC-50"
    (real / "meta").mkdir(parents=True)
    (real / "audio").mkdir()
    (real / "meta/esc50.csv").write_text(
        "filename,fold,target,category,esc10,src_file,take\n"
        "1-1-A-0.wav,1,0,dog,True,1,A\n2-1-A-0.wav,2,0,dog,True,1,A\n3-1-A-0.wav,3,0,dog,True,1,A\n"
    )
    sf.write(real / "audio/1-1-A-0.wav", np.zeros(8000, np.float32), 8000)
    sf.write(real / "audio/2-1-A-0.wav", np.zeros(8000, np.float32), 8000)
    (real / "audio/3-1-A-0.wav").write_bytes(b"")
    (tmp_path / "project").mkdir()
    link = tmp_path / "project" / "ESC-50"
    link.symlink_to(real)
    out = tmp_path / "project" / "data"
    assert esc50.main(["--root", str(link), "--out", str(out), "--test-fold", "3"]) == 0
    rows = read_manifest(out / "manifest.jsonl")
    assert [r.video for r in rows] == ["../ESC-50/audio/1-1-A-0.wav", "../ESC-50/audio/2-1-A-0.wav"]
    assert all(resolve(out / "manifest.jsonl", r.video).is_file() for r in rows)
    report = _report(out)
    assert report["unreadable_items"] == [["3-1-A-0", f"{link}/audio/3-1-A-0.wav: empty file"]]
    assert report["splits"] == {"train": 2}
    assert any("no clip of --test-fold 3 is usable" in note for note in report["notes"])


def test_flickr_names_the_annotation_it_lacks(tmp_path, media_factory):
    media = tmp_path / "media"
    media.mkdir()
    (tmp_path / "ids.csv").write_text("1000\n1001\n")
    media_factory.folder = media
    media_factory("1000.mp4", duration=1.0, size=(16, 16))
    (media / "1000.xml").write_text(
        "<annotation><bbox><xmin>10</xmin><ymin>10</ymin><xmax>100</xmax><ymax>100</ymax></bbox>"
        "</annotation>"
    )
    out = tmp_path / "out"
    assert flickr.main(["--ids", str(tmp_path / "ids.csv"), "--media", str(media),
                        "--out", str(out)]) == 0  # fmt: skip
    assert _report(out)["missing_items"] == [["1001", f"no annotation file 1001.xml under {media}"]]


def test_classify_skips_a_wav_cut_short(tmp_path, capsys):
    root = make_us8k(tmp_path / "us", with_csv=True)
    victim = sorted((root / "audio" / "fold1").iterdir())[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) * 2 // 3])
    code = evaluate.main(["classify", "--dataset", "us8k", "--root", str(root),
                          "--features", "logmel", "--no-progress"])  # fmt: skip
    res = last_json(capsys.readouterr().out)
    assert code == 0 and res["n_skipped"] == 1
    [skip] = res["skipped"]
    assert skip["path"] == str(victim) and skip["reason"].startswith("truncated: header declares")


def test_an_empty_sound_beside_its_picture_is_unreadable(media_factory, tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    media_factory.folder = media
    media_factory("xxxxxxxxxxx_30.mp4", duration=1.0, size=(16, 16), audio=False)
    media_factory("yyyyyyyyyyy_30.mp4", duration=1.0, size=(16, 16))
    (media / "xxxxxxxxxxx_30.m4a").write_bytes(b"")
    csv = tmp_path / "balanced_train_segments.csv"
    csv.write_text('xxxxxxxxxxx, 30.0, 31.0, "/m/01"\nyyyyyyyyyyy, 30.0, 31.0, "/m/01"\n')
    out = tmp_path / "out"
    assert audioset.main(["--segments", str(csv), "--media", str(media), "--out", str(out),
                          "--val-fraction", "0"]) == 0  # fmt: skip
    assert [r.id for r in read_manifest(out / "manifest.jsonl")] == ["yyyyyyyyyyy_30"]
    [(item, reason)] = _report(out)["unreadable_items"]
    assert item == "xxxxxxxxxxx_30" and reason == f"{media / 'xxxxxxxxxxx_30.m4a'}: empty file"


def test_a_path_climbing_out_of_a_link_is_written_as_the_kernel_follows_it(tmp_path, monkeypatch):
    from avssl.prep.report import relpath

    (tmp_path / "disk" / "sub").mkdir(parents=True)
    (tmp_path / "disk" / "a.wav").write_bytes(b"x")
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "link").symlink_to(tmp_path / "disk" / "sub")
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    rel = relpath("project/link/../a.wav", "out")  # link/.. is disk, not project
    assert rel == "../disk/a.wav" and resolve(tmp_path / "out" / "m.jsonl", rel).is_file()


def test_split_of_a_path_wins_over_a_file_name(tmp_path):
    from avssl.prep.audioset import split_of_file

    (tmp_path / "a").mkdir()
    csv = tmp_path / "a" / "x.csv"
    explicit = {"x.csv": "train", str(csv): "val"}
    assert split_of_file(csv, explicit) == "val"
    assert split_of_file(tmp_path / "x.csv", explicit) == "train"


def test_a_clip_listed_twice_is_one_duplicate_not_two_unreadable_files(tmp_path):
    """An ESC-50 row repeated (a copy-paste) was counted as two unreadable items when its file
    was empty, each "empty file"; a readable one was listed once as a duplicate id."""
    root = tmp_path / "ESC-50"
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    rows = ["1-1-A-0.wav,1,0,dog,True,1,A", "2-1-A-0.wav,2,0,dog,True,1,A"]
    (root / "meta/esc50.csv").write_text(
        "filename,fold,target,category,esc10,src_file,take\n" + "\n".join(rows + rows) + "\n"
    )
    sf.write(root / "audio/1-1-A-0.wav", np.zeros(8000, np.float32), 8000)
    (root / "audio/2-1-A-0.wav").write_bytes(b"")
    out = tmp_path / "out"
    assert esc50.main(["--root", str(root), "--out", str(out), "--test-fold", "2"]) == 0
    meta = root / "meta/esc50.csv"
    assert _report(out)["unreadable_items"] == [
        ["1-1-A-0", f"{meta}:4: duplicate of line 2"],
        ["2-1-A-0", f"{meta}:5: duplicate of line 3"],
        ["2-1-A-0", f"{root}/audio/2-1-A-0.wav: empty file"],
    ]


def test_a_clip_whose_first_line_is_skipped_is_read_from_its_second(tmp_path):
    """A line skipped (a fold that is not a number) is no original for a later one: the clip is
    read from the next line, as evaluate.py reads the CSV, not dropped as its duplicate."""
    root = tmp_path / "ESC-50"
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    rows = ["1-1-A-0.wav,x,0,dog,True,1,A", "1-1-A-0.wav,1,0,dog,True,1,A",
            "2-1-A-0.wav,2,0,cat,True,1,A"]  # fmt: skip
    (root / "meta/esc50.csv").write_text(
        "filename,fold,target,category,esc10,src_file,take\n" + "\n".join(rows) + "\n"
    )
    for name in ("1-1-A-0", "2-1-A-0"):
        sf.write(root / f"audio/{name}.wav", np.full(8000, 0.1, np.float32), 8000)
    out = tmp_path / "out"
    assert esc50.main(["--root", str(root), "--out", str(out), "--test-fold", "2"]) == 0
    meta = root / "meta/esc50.csv"
    assert _report(out)["unreadable_items"] == [["1-1-A-0", f"{meta}:2: fold 'x' is not a number"]]
    assert json.loads((out / "folds.json").read_text()) == {"1-1-A-0": 1, "2-1-A-0": 2}
