"""AudioSet / VGGSound preparation: clip naming schemes, missing and corrupt clips, --strict."""

import json

import pytest

from avssl import cli
from avssl.data.manifest import read_manifest, resolve
from avssl.errors import AvsslError, MediaError
from avssl.prep import audioset, vggsound
from avssl.prep.audioset import carve_val, split_of_file
from avssl.prep.clips import ClipFile, companion_audio, index_folder, locate, parse_name

HEADER = (
    "# Segments csv created Sun Mar  5 10:54:31 2017\n"
    "# num_ytids=4, num_segs=4, num_unique_labels=3, num_positive_labels=5\n"
    "# YTID, start_seconds, end_seconds, positive_labels\n"
)


def test_parse_name_schemes():
    wanted = {"abc-DEF_123", "xyz"}
    assert parse_name("abc-DEF_123", wanted).start is None
    assert parse_name("Yabc-DEF_123", wanted).ytid == "abc-DEF_123"
    assert parse_name("abc-DEF_123_000030", wanted).start == 30.0
    assert parse_name("abc-DEF_123_30.5", wanted).start == 30.5
    c = parse_name("abc-DEF_123_30000_40000", wanted)
    assert (c.ytid, c.start, c.end) == ("abc-DEF_123", 30.0, 40.0)
    assert parse_name("other_30", wanted) is None and parse_name("xyz_abc", wanted) is None


def test_carve_val_is_a_stable_fraction():
    ids = [f"id{i:05d}" for i in range(4000)]
    share = sum(carve_val(i, 0.1) for i in ids) / len(ids)
    assert 0.08 < share < 0.12
    assert not any(carve_val(i, 0.0) for i in ids) and all(carve_val(i, 1.0) for i in ids)


@pytest.fixture
def clips(media_factory, tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    media_factory.folder = media
    media_factory("aaaaaaaaaaa.mp4", duration=4.0, size=(32, 32))  # whole video
    media_factory("bbbbbbbbbbb_1.000.mp4", duration=2.0, size=(32, 32))  # cut, start in s
    (media / "sub").mkdir()
    media_factory("sub/Ycc_cccccccc_30000_32000.mkv", duration=2.0, size=(32, 32))  # cut, ms
    media_factory("ddddddddddd.mp4", duration=2.0, size=(32, 32))  # plain name, a cut
    (media / "fffffffffff_5.mp4").write_bytes(b"\x00" * 64)  # corrupt (found only by --probe)
    (media / "ggggggggggg.mp4").write_bytes(b"junk")  # corrupt: its duration is needed
    train = tmp_path / "balanced_train_segments.csv"
    train.write_text(
        HEADER + 'aaaaaaaaaaa, 2.000, 3.500, "/m/01,/m/02"\n'
        'bbbbbbbbbbb, 1.000, 3.000, "/m/02"\n'
        'cc_cccccccc, 30.000, 32.000, "/m/03"\n'
        'eeeeeeeeeee, 0.000, 10.000, "/m/03"\n'
        'ggggggggggg, 10.000, 20.000, "/m/01"\n'
    )
    test = tmp_path / "eval_segments.csv"
    test.write_text(
        HEADER + 'ddddddddddd, 30.000, 32.000, "/m/01"\nfffffffffff, 5.0, 7.0, "/m/01"\n'
    )
    return media, train, test


def test_audioset_rows_missing_corrupt(clips, tmp_path, capsys):
    media, train, test = clips
    out = tmp_path / "out"
    args = ["--segments", str(train), str(test), "--media", str(media), "--out", str(out)]
    assert audioset.main([*args, "--val-fraction", "0", "--probe"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["written"] == 4 and summary["missing"] == 1 and summary["unreadable"] == 2
    rows = {r.id: r for r in read_manifest(out / "manifest.jsonl")}
    expect = {
        "aaaaaaaaaaa_2": (2.0, 3.5, "train"),
        "bbbbbbbbbbb_1": (0.0, None, "train"),  # a cut named without its end: to the file's end
        "cc_cccccccc_30": (0.0, 2.0, "train"),
        "ddddddddddd_30": (0.0, 2.0, "test"),
    }
    assert {k: (r.start, r.end, r.split) for k, r in rows.items()} == expect
    assert rows["aaaaaaaaaaa_2"].labels == ["/m/01", "/m/02"]
    assert all(resolve(out / "manifest.jsonl", r.video).is_file() for r in rows.values())
    report = json.loads((out / "prepare_report.json").read_text())
    assert [x[0] for x in report["missing_items"]] == ["eeeeeeeeeee_0"]
    assert {x[0] for x in report["unreadable_items"]} == {"ggggggggggg_10", "fffffffffff_5"}
    # without --probe the corrupt segment cut is not noticed; the existing manifest is kept
    with pytest.raises(AvsslError, match="already exists"):
        audioset.main(args)
    assert cli.main(["prepare", "audioset", *args, "--force", "--val-fraction", "0.9"]) == 0
    rows = read_manifest(out / "manifest.jsonl")
    assert len(rows) == 5 and {r.split for r in rows} == {"val", "test"}
    assert cli.main(["prepare", "audioset", *args, "--strict", "--force"]) == 2
    assert "eeeeeeeeeee_0" in capsys.readouterr().err


def test_audioset_split_needs_a_name(clips, tmp_path):
    media, train, _ = clips
    other = tmp_path / "mine.csv"
    other.write_text(train.read_text())
    args = ["--segments", str(other), "--media", str(media), "--out", str(tmp_path / "o")]
    with pytest.raises(AvsslError, match="--split-of"):
        audioset.main(args)
    assert audioset.main([*args, "--split-of", f"{other}=val"]) == 0
    assert {r.split for r in read_manifest(tmp_path / "o/manifest.jsonl")} == {"val"}


def test_vggsound(media_factory, tmp_path):
    media_factory("zpWuikVorYg_000032.mp4", duration=2.0, size=(32, 32))
    csv = tmp_path / "vggsound.csv"
    csv.write_text("zpWuikVorYg,32,elk bugling,test\n---g-f_I2yQ,1,people marching,train\n")
    out = tmp_path / "out"
    assert vggsound.main(["--csv", str(csv), "--media", str(tmp_path), "--out", str(out)]) == 0
    (row,) = read_manifest(out / "manifest.jsonl")
    assert (row.id, row.start, row.end, row.labels, row.split) == (
        "zpWuikVorYg_32", 0.0, None, ["elk bugling"], "test"
    )  # fmt: skip
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["missing_items"][0][0] == "---g-f_I2yQ_1"


def _vggsound(tmp_path, rows: list[str], *extra: str):
    """Prepare VGGSound from CSV ``rows`` and the media in ``tmp_path``: (rows, report)."""
    csv, out = tmp_path / "vggsound.csv", tmp_path / "out"
    csv.write_text("\n".join(rows) + "\n")
    argv = ["--csv", str(csv), "--media", str(tmp_path), "--layout", "whole", "--out", str(out)]
    assert vggsound.main([*argv, *extra]) == 0
    report = json.loads((out / "prepare_report.json").read_text())
    return read_manifest(out / "manifest.jsonl"), report


def test_vggsound_segments_last_10_s_and_comments_and_other_splits(tmp_path):
    (tmp_path / "zpWuikVorYg.mp4").write_bytes(b"\0")  # a whole video: only its name is read
    csv = tmp_path / "vggsound.csv"
    rows = ["# ytid,start,label,split", "zpWuikVorYg,30,elk,train", "zpWuikVorYg,60,elk,val",
            "zpWuikVorYg,90,elk,", "zpWuikVorYg,120,elk,test"]  # fmt: skip
    written, report = _vggsound(tmp_path, rows, "--val-fraction", "0")
    assert [(r.id, r.start, r.end, r.split) for r in written] == [
        ("zpWuikVorYg_30", 30.0, 40.0, "train"),
        ("zpWuikVorYg_120", 120.0, 130.0, "test"),
    ]
    assert report["unreadable_items"] == [  # the comment line is no row, not a bad one
        [f"{csv}:3", "split 'val' is not train or test"],
        [f"{csv}:4", "split '' is not train or test"],
    ]


def test_vggsound_rows_without_a_time_or_a_label_are_listed(media_factory, tmp_path):
    media_factory("zpWuikVorYg.mp4", duration=2.0, size=(32, 32))
    rows = ["zpWuikVorYg,nan,elk,test", "zpWuikVorYg,-3,elk,test", "zpWuikVorYg,inf,elk,test",
            "zpWuikVorYg,0,,test", "zpWuikVorYg,0,elk,test"]  # fmt: skip
    written, report = _vggsound(tmp_path, rows)
    assert [r.start for r in written] == [0.0]
    assert [reason for _, reason in report["unreadable_items"]] == [
        "start 'nan' is not a time (a finite number >= 0)",
        "start '-3' is not a time (a finite number >= 0)",
        "start 'inf' is not a time (a finite number >= 0)",
        "empty label",
    ]
    assert parse_name("zpWuikVorYg_nan", {"zpWuikVorYg"}) is None  # nor in a file name


def test_prepare_never_writes_over_its_inputs(clips, tmp_path):
    media, train, _ = clips
    segments = tmp_path / "o" / "manifest.jsonl"  # a segment CSV named as the output
    segments.parent.mkdir()
    segments.write_bytes(train.read_bytes())
    argv = ["--segments", str(segments), "--media", str(media), "--out", str(segments.parent)]
    for force in ([], ["--force"]):
        with pytest.raises(AvsslError, match="is an input of this run"):
            audioset.main([*argv, *force])
    assert segments.read_bytes() == train.read_bytes()


def test_audioset_malformed_rows_are_skipped_and_listed(clips, tmp_path, capsys):
    media, train, test = clips
    with train.open("a") as fh:  # lines 9 and 10 of the file
        fh.write('hhhhhhhhhhh, thirty, 40.000, "/m/01"\n, 1.000, 2.000, "/m/01"\n')
    out = tmp_path / "out"
    args = ["--segments", str(train), str(test), "--media", str(media), "--out", str(out)]
    assert audioset.main([*args, "--val-fraction", "0"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["written"] == 5  # as without the two rows (the cut is not probed)
    report = json.loads((out / "prepare_report.json").read_text())
    assert [x for x in report["unreadable_items"] if x[0].startswith(str(train))] == [
        [f"{train}:9", "start/end are not numbers"],
        [f"{train}:10", "empty YouTube id"],
    ]
    assert cli.main(["prepare", "audioset", *args, "--strict", "--force"]) == 2
    assert f"{train}:9: start/end are not numbers (--strict)" in capsys.readouterr().err


def test_probe_catches_a_download_cut_short(media_factory, tmp_path, capsys):
    # A Matroska file cut in half keeps the header that declares 4 s, and its first second
    # decodes: only a window at the end shows the loss.
    media = tmp_path / "media"
    media.mkdir()
    media_factory.folder = media
    whole = media_factory("iiiiiiiiiii.mkv", duration=4.0, size=(32, 32))
    cut = media / "jjjjjjjjjjj.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    segments = tmp_path / "balanced_train_segments.csv"
    segments.write_text(HEADER + 'iiiiiiiiiii, 0.0, 4.0, "/m/01"\njjjjjjjjjjj, 0.0, 4.0, "/m/01"\n')
    out = tmp_path / "out"
    args = ["--segments", str(segments), "--media", str(media), "--out", str(out)]
    assert audioset.main([*args, "--val-fraction", "0", "--probe"]) == 0
    assert [r.id for r in read_manifest(out / "manifest.jsonl")] == ["iiiiiiiiiii_0"]
    ((item, reason),) = json.loads((out / "prepare_report.json").read_text())["unreadable_items"]
    assert item == "jjjjjjjjjjj_0" and "truncated" in reason


def test_audioset_duplicate_segment_is_counted_and_listed(clips, tmp_path, capsys):
    media, train, test = clips
    with train.open("a") as fh:  # line 9: the segment of line 5 again; line 10: of a missing clip
        fh.write('aaaaaaaaaaa, 2.000, 3.500, "/m/01"\neeeeeeeeeee, 0.0, 10.0, "/m/03"\n')
    out = tmp_path / "out"
    args = ["--segments", str(train), str(test), "--media", str(media), "--out", str(out)]
    assert audioset.main([*args, "--val-fraction", "0"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["written"] == 5 and summary["missing"] == 1 and summary["unreadable"] == 3
    report = json.loads((out / "prepare_report.json").read_text())
    dup = "duplicate id (an earlier item has the same one)"
    assert [x for x in report["unreadable_items"] if x[1] == dup] == [
        ["aaaaaaaaaaa_2", dup],
        ["eeeeeeeeeee_0", dup],
    ]
    assert cli.main(["prepare", "audioset", *args, "--strict", "--force"]) == 2


def test_probe_trims_an_end_just_past_the_media_and_refuses_one_far_past(
    media_factory, tmp_path, capsys
):
    # downloaders round times: a whole video ending 0.3 s before the segment's end, and a cut
    # named for 2 s that holds 1.8 s, are good clips whose rows end at their media's end; a cut
    # named for 2 s that holds 1 s lost more than that: unreadable, not written as a 1-s row
    media = tmp_path / "media"
    media.mkdir()
    media_factory.folder = media
    media_factory("kkkkkkkkkkk.mp4", duration=4.7, size=(32, 32))
    media_factory("lllllllllll_10000_12000.mp4", duration=1.8, size=(32, 32))
    media_factory("mmmmmmmmmmm_10000_12000.mp4", duration=1.0, size=(32, 32))
    segments = tmp_path / "balanced_train_segments.csv"
    segments.write_text(
        HEADER
        + 'kkkkkkkkkkk, 3.0, 5.0, "/m/01"\nlllllllllll, 10.0, 12.0, "/m/01"\n'
        + 'mmmmmmmmmmm, 10.0, 12.0, "/m/01"\n'
    )
    out = tmp_path / "out"
    args = ["--segments", str(segments), "--media", str(media), "--out", str(out)]
    assert audioset.main([*args, "--val-fraction", "0", "--probe"]) == 0
    rows = {r.id: r for r in read_manifest(out / "manifest.jsonl")}
    assert rows.keys() == {"kkkkkkkkkkk_3", "lllllllllll_10"}
    assert rows["kkkkkkkkkkk_3"].start == 3.0 and 4.6 < rows["kkkkkkkkkkk_3"].end < 4.75
    assert rows["lllllllllll_10"].start == 0.0 and 1.7 < rows["lllllllllll_10"].end < 1.85
    ((item, reason),) = json.loads((out / "prepare_report.json").read_text())["unreadable_items"]
    assert item == "mmmmmmmmmmm_10" and "beyond the end" in reason


def test_a_video_is_chosen_over_an_audio_only_file_of_the_same_clip(media_factory):
    # yt-dlp -f bestaudio leaves {YTID}.m4a; .m4a, .mp3 and .aac sort before .mp4
    folder = media_factory.folder
    (folder / "a").mkdir()
    (folder / "b").mkdir()
    for name in ("a/HHHHHHHHHHH.m4a", "b/HHHHHHHHHHH.mp4", "b/HHHHHHHHHHH_20.aac",
                 "a/HHHHHHHHHHH_20.webm"):  # fmt: skip
        (folder / name).write_bytes(b"\0")  # not empty: only the names are read
    found = index_folder(folder, {"HHHHHHHHHHH"})["HHHHHHHHHHH"]
    assert [c.path.relative_to(folder).as_posix() for c in found][:2] == [
        "a/HHHHHHHHHHH_20.webm",
        "b/HHHHHHHHHHH.mp4",
    ]
    assert locate(found, 20.0, 30.0, "whole")[0].name == "HHHHHHHHHHH_20.webm"
    assert locate(found, 0.0, 10.0, "whole")[0].name == "HHHHHHHHHHH.mp4"
    # a cut named with its time is not probed, but an empty one (a failed download) is refused
    (folder / "a/HHHHHHHHHHH_20.webm").write_bytes(b"")
    with pytest.raises(MediaError, match="HHHHHHHHHHH_20.webm: empty file"):
        locate(found, 20.0, 30.0, "whole")


@pytest.mark.parametrize(
    "duration,expected",
    [
        (60.0, (20.0, 30.0)),  # a whole video
        (25.0, (20.0, 25.0)),  # a whole video ending inside the segment (was a cut: 0-10)
        (29.0, (20.0, 29.0)),
        (10.0, (0.0, 10.0)),  # a cut of the segment
        (9.7, (0.0, 9.7)),  # a cut a little short
        (10.8, (0.0, 10.0)),  # a cut left long by keyframes (was a whole video: 20-10.8 s)
        (12.9, (0.0, 10.0)),
        (15.0, "starts after the end"),  # a whole video ending before the segment starts
        (20.3, "starts after the end"),  # ends within what downloaders round of the start
    ],
)
def test_auto_layout_tells_a_whole_video_from_a_cut_by_its_length(
    media_factory, duration, expected
):
    path = media_factory(
        "YYYYYYYYYYY.mp4", duration=duration, fps=10.0, size=(16, 16), sample_rate=8000
    )
    got = locate([ClipFile(path, "YYYYYYYYYYY")], 20.0, 30.0, "auto")
    if isinstance(expected, str):
        assert isinstance(got, str) and expected in got
    else:
        assert got[0] == path and got[1:] == pytest.approx(expected, abs=1e-3)


def test_a_cut_named_in_seconds_is_reported_not_read_as_ten_milliseconds(tmp_path):
    for name in ("HHHHHHHHHHH_5_15.mp4", "HHHHHHHHHHH_0_10000.mp4", "HHHHHHHHHHH_0_10.mp4"):
        (tmp_path / name).write_bytes(b"\0")  # not empty: only the names are read
    wrong = ClipFile(tmp_path / "HHHHHHHHHHH_5_15.mp4", "HHHHHHHHHHH", 0.005, 0.015)
    got = locate([wrong], 0.0, 10.0)
    assert isinstance(got, str) and "HHHHHHHHHHH_5_15.mp4" in got and "seconds?" in got
    good = ClipFile(tmp_path / "HHHHHHHHHHH_0_10000.mp4", "HHHHHHHHHHH", 0.0, 10.0)
    assert locate([wrong, good], 0.0, 10.0) == (good.path, 0.0, 10.0)
    # whole seconds that give the segment's own times are seconds: a 10-ms cut is no download
    seconds = ClipFile(tmp_path / "HHHHHHHHHHH_0_10.mp4", "HHHHHHHHHHH", 0.0, 0.01)
    assert locate([seconds], 0.0, 10.0) == (seconds.path, 0.0, 10.0)


def test_names_with_decimal_seconds_are_parsed_as_seconds():
    clip = parse_name("Y--PJHxphWEs_30.000_40.000", {"--PJHxphWEs"})
    assert (clip.ytid, clip.start, clip.end) == ("--PJHxphWEs", 30.0, 40.0)
    clip = parse_name("-_abc_DEF12_30000_40000", {"-_abc_DEF12"})
    assert (clip.ytid, clip.start, clip.end) == ("-_abc_DEF12", 30.0, 40.0)


def test_a_whole_video_beats_an_audio_only_cut_and_audio_alone_is_no_picture(media_factory):
    folder = media_factory.folder
    for name in ("AAAAAAAAAAA.mp4", "AAAAAAAAAAA_30.m4a", "BBBBBBBBBBB_30.m4a"):
        (folder / name).write_bytes(b"\0")
    found = index_folder(folder, {"AAAAAAAAAAA", "BBBBBBBBBBB"})
    assert locate(found["AAAAAAAAAAA"], 30.0, 40.0, "whole") == (folder / "AAAAAAAAAAA.mp4",
                                                                  30.0, 40.0)  # fmt: skip
    got = locate(found["BBBBBBBBBBB"], 30.0, 40.0, "whole")
    assert isinstance(got, str) and "BBBBBBBBBBB_30.m4a" in got and "no picture" in got


def test_a_sound_beside_a_cut_of_another_segment_is_not_its_sound(tmp_path):
    # {YTID}_0.mp4 (a cut of the 0-s segment) and {YTID}_30.m4a (the sound of the 30-s one)
    for name in ("EEEEEEEEEEE_0.mp4", "EEEEEEEEEEE_30.m4a", "EEEEEEEEEEE_0.m4a"):
        (tmp_path / name).write_bytes(b"\0")
    found = index_folder(tmp_path, {"EEEEEEEEEEE"})["EEEEEEEEEEE"]
    assert companion_audio(found, tmp_path / "EEEEEEEEEEE_0.mp4") == tmp_path / "EEEEEEEEEEE_0.m4a"
    (tmp_path / "EEEEEEEEEEE_0.m4a").unlink()
    found = index_folder(tmp_path, {"EEEEEEEEEEE"})["EEEEEEEEEEE"]
    assert companion_audio(found, tmp_path / "EEEEEEEEEEE_0.mp4") is None


def test_a_segment_csv_named_test_is_the_test_split(tmp_path):
    assert split_of_file(tmp_path / "my_test_segments.csv", {}) == "test"
    assert split_of_file(tmp_path / "eval_segments.csv", {}) == "test"
    assert split_of_file(tmp_path / "balanced_train_segments.csv", {}) == "train"


def test_a_broken_link_is_unreadable_not_written(tmp_path):
    link = tmp_path / "CCCCCCCCCCC_30.mp4"
    link.symlink_to(tmp_path / "nowhere.mp4")
    found = index_folder(tmp_path, {"CCCCCCCCCCC"})["CCCCCCCCCCC"]
    with pytest.raises(MediaError, match="broken link"):
        locate(found, 30.0, 40.0)
    link.unlink()
    link.symlink_to(link.name)  # a loop: was "a broken link to" itself
    found = index_folder(tmp_path, {"CCCCCCCCCCC"})["CCCCCCCCCCC"]
    with pytest.raises(MediaError, match="is a symlink loop"):
        locate(found, 30.0, 40.0)


@pytest.mark.parametrize("layout", ["auto", "segment"])
def test_a_ytid_cut_is_refused_when_several_segments_of_it_are_listed(media_factory, layout):
    # {YTID}.mp4 holding one 10-s cut cannot be told apart from the YTID's other segments: it
    # was used for each of them, every row with another label and the same picture
    path = media_factory("DDDDDDDDDDD.mp4", duration=10.0, fps=10.0, size=(16, 16))
    clip = [ClipFile(path, "DDDDDDDDDDD")]
    got = locate(clip, 120.0, 130.0, layout, segments=2)
    assert isinstance(got, str) and "2 segments of DDDDDDDDDDD" in got and "{YTID}_{start}" in got
    assert locate(clip, 120.0, 130.0, layout, segments=1)[0] == path
    whole = media_factory("WWWWWWWWWWW.mp4", duration=60.0, fps=2.0, size=(16, 16))
    got = locate([ClipFile(whole, "WWWWWWWWWWW")], 30.0, 40.0, "auto", segments=2)
    assert got[1:] == (30.0, 40.0)  # a whole video holds every segment


def test_vggsound_two_rows_of_one_cut_are_both_missing(media_factory, tmp_path):
    media_factory("zpWuikVorYg.mp4", duration=10.0, size=(32, 32))
    media_factory("---g-f_I2yQ.mp4", duration=10.0, size=(32, 32))
    csv = tmp_path / "vggsound.csv"
    csv.write_text(
        "zpWuikVorYg,30,dog barking,train\nzpWuikVorYg,120,cat purring,test\n"
        "---g-f_I2yQ,1,people marching,train\n"
    )
    out = tmp_path / "out"
    assert vggsound.main(["--csv", str(csv), "--media", str(tmp_path), "--out", str(out)]) == 0
    assert [r.id for r in read_manifest(out / "manifest.jsonl")] == ["---g-f_I2yQ_1"]
    report = json.loads((out / "prepare_report.json").read_text())
    assert [item for item, _ in report["missing_items"]] == ["zpWuikVorYg_30", "zpWuikVorYg_120"]
    assert "cannot tell which" in report["missing_items"][0][1]


def test_a_failed_report_write_leaves_no_manifest_and_probe_no_folder(
    media_factory, tmp_path, monkeypatch
):
    # a manifest left without its report refused the corrected rerun ("already exists")
    from avssl.prep import report as report_module

    media_factory("zpWuikVorYg_000032.mp4", duration=2.0, size=(32, 32))
    csv = tmp_path / "vggsound.csv"
    csv.write_text("zpWuikVorYg,32,elk bugling,test\n")
    out = tmp_path / "new" / "out"
    argv = ["--csv", str(csv), "--media", str(tmp_path), "--out", str(out)]

    def full(path, text):
        raise OSError(27, "File too large")

    monkeypatch.setattr(report_module, "write_text", full)
    with pytest.raises(OSError):
        vggsound.main(argv)
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()
    # --probe made --out before it knew whether anything was usable
    csv.write_text("NOTHERE0000,32,elk bugling,test\n")
    with pytest.raises(AvsslError, match="no usable items"):
        vggsound.main([*argv, "--probe"])
    assert not (tmp_path / "new").exists()
    csv.write_text("zpWuikVorYg,32,elk bugling,test\n")
    assert vggsound.main(argv) == 0 and (out / "prepare_report.json").is_file()
    # a --force rerun whose report fails leaves neither file, not a new manifest by an old report
    monkeypatch.setattr(report_module, "write_text", full)
    with pytest.raises(OSError):
        vggsound.main([*argv, "--force"])
    assert not (out / "manifest.jsonl").exists() and not (out / "prepare_report.json").exists()


def test_transport_stream_and_asf_downloads_are_found(tmp_path):
    # "any container PyAV reads": a .ts clip was reported "no file named after" its YTID
    for name in ("TSCLIP00001_30.ts", "MTSCLIP0001_30.m2ts", "WMVCLIP0001_30.wmv"):
        (tmp_path / name).write_bytes(b"\0")
    found = index_folder(tmp_path, {"TSCLIP00001", "MTSCLIP0001", "WMVCLIP0001"})
    assert {ytid: [c.start for c in clips] for ytid, clips in found.items()} == {
        "TSCLIP00001": [30.0], "MTSCLIP0001": [30.0], "WMVCLIP0001": [30.0]
    }  # fmt: skip


@pytest.mark.parametrize("test_first", [False, True])
def test_a_segment_in_train_and_test_csvs_stays_in_test_whatever_their_order(tmp_path, test_first):
    # the test copy was dropped as a "duplicate id" when the training CSV came first: the
    # clip was trained on and left out of the test split
    (tmp_path / "aaaaaaaaaaa_30.mp4").write_bytes(b"\0")  # a cut: only its name is read
    (tmp_path / "bbbbbbbbbbb_0.mp4").write_bytes(b"\0")
    train = tmp_path / "balanced_train_segments.csv"
    train.write_text(HEADER + 'aaaaaaaaaaa, 30.000, 40.000, "/m/01"\nbbbbbbbbbbb, 0, 10, "/m/01"\n')
    test = tmp_path / "eval_segments.csv"
    test.write_text(HEADER + 'aaaaaaaaaaa, 30.000, 40.000, "/m/01"\n')
    csvs = [str(test), str(train)] if test_first else [str(train), str(test)]
    out = tmp_path / "out"
    argv = ["--segments", *csvs, "--split-of", "eval_segments.csv=test", "--media", str(tmp_path)]
    assert audioset.main([*argv, "--val-fraction", "0", "--out", str(out)]) == 0
    rows = {r.id: r.split for r in read_manifest(out / "manifest.jsonl")}
    assert rows == {"aaaaaaaaaaa_30": "test", "bbbbbbbbbbb_0": "train"}
    report = json.loads((out / "prepare_report.json").read_text())
    ((item, reason),) = report["unreadable_items"]
    assert item == "aaaaaaaaaaa_30"
    assert reason == f"listed as train in {train} and as test in {test}: kept in test only"
    assert "1 segments listed in two splits" in report["notes"][0]


def test_a_video_with_segments_in_test_and_train_is_noted(tmp_path):
    for name in ("aaaaaaaaaaa_30.mp4", "aaaaaaaaaaa_60.mp4", "bbbbbbbbbbb_0.mp4"):
        (tmp_path / name).write_bytes(b"\0")  # cuts: only their names are read
    train = tmp_path / "balanced_train_segments.csv"
    train.write_text(HEADER + 'aaaaaaaaaaa, 60, 70, "/m/01"\nbbbbbbbbbbb, 0, 10, "/m/01"\n')
    test = tmp_path / "eval_segments.csv"
    test.write_text(HEADER + 'aaaaaaaaaaa, 30, 40, "/m/01"\n')
    out = tmp_path / "out"
    argv = ["--segments", str(train), str(test), "--split-of", "eval_segments.csv=test"]
    assert audioset.main([*argv, "--media", str(tmp_path), "--out", str(out)]) == 0
    notes = json.loads((out / "prepare_report.json").read_text())["notes"]
    assert any(
        n.startswith("1 videos have segments in test and in another split (e.g. aaa") for n in notes
    )


@pytest.mark.parametrize("test_first", [False, True])
def test_vggsound_a_segment_in_both_splits_stays_in_test(tmp_path, test_first):
    (tmp_path / "aaaaaaaaaaa_30.mp4").write_bytes(b"\0")
    rows = ["aaaaaaaaaaa,30,dog,train", "aaaaaaaaaaa,30,dog,test"]
    written, report = _vggsound(tmp_path, rows[::-1] if test_first else rows)
    assert [(r.id, r.split) for r in written] == [("aaaaaaaaaaa_30", "test")]
    csv = tmp_path / "vggsound.csv"
    train_line, test_line = (2, 1) if test_first else (1, 2)
    assert report["unreadable_items"] == [[
        "aaaaaaaaaaa_30",
        f"listed as train in {csv}:{train_line} and as test in {csv}:{test_line}: kept in test "
        "only",
    ]]  # fmt: skip


def test_a_clip_named_by_an_unknown_scheme_is_named_in_its_missing_reason(tmp_path):
    # the report said only "no file named after b5bbbbbbbbb under ...", though the file was there
    (tmp_path / "b5bbbbbbbbb-30.mp4").write_bytes(b"\0")
    (tmp_path / "ccccccccccc_10.mp4").write_bytes(b"\0")
    rows = ["b5bbbbbbbbb,30,dog,train", "ccccccccccc,10,dog,train", "ddddddddddd,0,dog,test"]
    written, report = _vggsound(tmp_path, rows)
    assert [r.id for r in written] == ["ccccccccccc_10"]
    missing = dict(report["missing_items"])
    assert missing["b5bbbbbbbbb_30"] == (
        f"no file named after b5bbbbbbbbb under {tmp_path}: {tmp_path / 'b5bbbbbbbbb-30.mp4'} "
        "starts with the id but follows none of the naming schemes ({YTID}.ext, "
        "{YTID}_{start}.ext or {YTID}_{start_ms}_{end_ms}.ext); rename it"
    )
    assert missing["ddddddddddd_0"] == f"no file named after ddddddddddd under {tmp_path}"


def test_a_misnamed_file_is_named_when_another_segment_of_its_video_is_found(tmp_path):
    # the reason said only "no file for the segment at 30 s (found 0 s)", the misnamed
    # b5bbbbbbbbb-30.mp4 beside the well-named b5bbbbbbbbb_0.mp4 unmentioned
    (tmp_path / "b5bbbbbbbbb_0.mp4").write_bytes(b"\0")
    (tmp_path / "b5bbbbbbbbb-30.mp4").write_bytes(b"\0")
    rows = ["b5bbbbbbbbb,0,dog,train", "b5bbbbbbbbb,30,dog,train"]
    written, report = _vggsound(tmp_path, rows)
    assert [r.id for r in written] == ["b5bbbbbbbbb_0"]
    assert dict(report["missing_items"])["b5bbbbbbbbb_30"] == (
        f"no file for the segment at 30 s (found 0 s); {tmp_path / 'b5bbbbbbbbb-30.mp4'} starts "
        "with the id but follows none of the naming schemes ({YTID}.ext, {YTID}_{start}.ext or "
        "{YTID}_{start_ms}_{end_ms}.ext); rename it"
    )


def test_a_segment_twice_in_train_and_once_in_test_is_counted_once(tmp_path):
    (tmp_path / "aaaaaaaaaaa_30.mp4").write_bytes(b"\0")
    rows = ["aaaaaaaaaaa,30,dog,train", "aaaaaaaaaaa,30,dog,train", "aaaaaaaaaaa,30,dog,test"]
    written, report = _vggsound(tmp_path, rows)
    assert [(r.id, r.split) for r in written] == [("aaaaaaaaaaa_30", "test")]
    assert len(report["unreadable_items"]) == 2  # each dropped copy listed, with its line
    assert any(n.startswith("1 segments listed in two splits") for n in report["notes"])
