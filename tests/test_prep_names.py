"""Preparation scripts and the media a downloader leaves: a sound kept beside its picture, cuts
named by other schemes, and a run that finds nothing usable leaving nothing behind."""

from __future__ import annotations

import json

import pytest

from avssl.data.manifest import read_manifest, resolve
from avssl.errors import AvsslError
from avssl.prep import audioset, esc50, vggss

YTID = "splitBBBBBB"


def test_a_video_only_download_takes_the_sound_beside_it(media_factory, tmp_path):
    # yt-dlp -f bv,ba: picture in {YTID}.mp4 (no audio track), sound in {YTID}.m4a
    media = tmp_path / "media"
    media_factory.folder = media
    media.mkdir()
    media_factory(f"{YTID}.mp4", duration=3.0, audio=False)
    media_factory(f"{YTID}.m4a", duration=3.0, video=False)
    csv = tmp_path / "balanced_train_segments.csv"
    csv.write_text(f'{YTID}, 0.000, 2.000, "/m/01"\n')
    out = tmp_path / "out"
    argv = ["--segments", str(csv), "--media", str(media), "--out", str(out), "--probe"]
    assert audioset.main([*argv, "--val-fraction", "0"]) == 0
    (row,) = read_manifest(out / "manifest.jsonl")
    assert row.video.endswith(f"{YTID}.mp4") and row.audio.endswith(f"{YTID}.m4a")
    assert resolve(out / "manifest.jsonl", row.audio).is_file()


def test_vggss_finds_cuts_named_as_vggsound_folders_hold_them(media_factory, tmp_path):
    media = tmp_path / "media"
    media_factory.folder = media
    media.mkdir()
    media_factory("zpWuikVorYg_32.mp4", duration=1.0, size=(32, 32))
    media_factory("gEvCUcZ6w88_30000_40000.mp4", duration=1.0, size=(32, 32))
    entries = [
        {"file": "zpWuikVorYg_000032", "class": "c", "bbox": [[0.1, 0.1, 0.5, 0.5]]},
        {"file": "gEvCUcZ6w88_000030", "class": "c", "bbox": [[0.2, 0.2, 0.6, 0.6]]},
        {"file": "nothere0000_000010", "class": "c", "bbox": [[0.2, 0.2, 0.6, 0.6]]},
    ]
    (tmp_path / "v.json").write_text(json.dumps(entries))
    out = tmp_path / "out"
    argv = ["--annotations", str(tmp_path / "v.json"), "--media", str(media), "--out", str(out)]
    assert vggss.main(argv) == 0
    rows = {r.id: r.video for r in read_manifest(out / "manifest.jsonl")}
    assert rows.keys() == {"zpWuikVorYg_000032", "gEvCUcZ6w88_000030"}
    assert rows["zpWuikVorYg_000032"].endswith("zpWuikVorYg_32.mp4")
    report = json.loads((out / "prepare_report.json").read_text())
    assert [x[0] for x in report["missing_items"]] == ["nothere0000_000010"]


def test_folds_with_nothing_usable_leave_nothing_behind(tmp_path):
    root = tmp_path / "ESC-50"
    (root / "meta").mkdir(parents=True)
    (root / "meta/esc50.csv").write_text(
        "filename,fold,target,category,esc10,src_file,take\n1-100032-A-0.wav,1,0,dog,True,100032,A\n"
    )
    out = tmp_path / "out"
    with pytest.raises(AvsslError, match="nothing written"):
        esc50.main(["--root", str(root), "--out", str(out), "--test-fold", "1"])
    assert not out.exists() or not any(out.iterdir())
    # the input mended, the same command runs without --force
    (root / "audio").mkdir()
    import numpy as np
    import soundfile as sf

    sf.write(root / "audio/1-100032-A-0.wav", np.zeros(8000, np.float32), 8000)
    assert esc50.main(["--root", str(root), "--out", str(out), "--test-fold", "1"]) == 0


def test_a_file_name_that_is_not_utf8_is_skipped_and_an_out_refused(media_factory, tmp_path):
    # the manifest is UTF-8 text: writing such a path gave a traceback and left --out behind
    import os

    good = tmp_path / "good"
    (good / os.fsdecode(b"sub\xff")).mkdir(parents=True)
    media_factory.folder = good / os.fsdecode(b"sub\xff")
    media_factory(f"{YTID}.mp4", duration=2.0, size=(16, 16))
    media_factory.folder = good
    media_factory("goodAAAAAAA.mp4", duration=2.0, size=(16, 16))
    csv = tmp_path / "balanced_train_segments.csv"
    csv.write_text(f'{YTID}, 0.000, 2.000, "/m/01"\ngoodAAAAAAA, 0.000, 2.000, "/m/01"\n')
    out = tmp_path / "out"
    argv = ["--segments", str(csv), "--media", str(good), "--val-fraction", "0"]
    assert audioset.main([*argv, "--out", str(out)]) == 0
    assert [r.id for r in read_manifest(out / "manifest.jsonl")] == ["goodAAAAAAA_0"]
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["unreadable_items"] == [[f"{YTID}_0", "a file name in its path is not UTF-8 "
                                           "(the manifest is UTF-8 text; rename it)"]]  # fmt: skip
    bad_out = tmp_path / os.fsdecode(b"out\xff")
    with pytest.raises(AvsslError, match="--out is not UTF-8 text"):
        audioset.main([*argv, "--out", str(bad_out)])
    assert not bad_out.exists()


def test_linked_subfolders_of_the_media_are_searched_once(media_factory, tmp_path):
    # clips split across disks by links were all reported missing; a link to a parent folder
    # must not loop
    store, media = tmp_path / "store", tmp_path / "media"
    store.mkdir()
    media.mkdir()
    media_factory.folder = store
    media_factory(f"{YTID}.mp4", duration=2.0, size=(16, 16))
    (media / "part1").symlink_to(store)
    (media / "part2").symlink_to(store)  # the same clips again: read once
    (store / "up").symlink_to(tmp_path)
    csv = tmp_path / "balanced_train_segments.csv"
    csv.write_text(f'{YTID}, 0.000, 2.000, "/m/01"\n')
    out = tmp_path / "out"
    argv = ["--segments", str(csv), "--media", str(media), "--val-fraction", "0"]
    assert audioset.main([*argv, "--out", str(out)]) == 0
    (row,) = read_manifest(out / "manifest.jsonl")
    assert row.video == f"../media/part1/{YTID}.mp4"  # through the link, not its target
