"""``evaluate.py classify`` on bad input: malformed or duplicated metadata rows, media files
outside the class folders, audio FFmpeg cannot decode and too few clips for the folds are
skipped and listed, or stopped with one line, never a traceback."""

import json
import shutil

import av
import numpy as np
import pytest
import soundfile as sf
from bad_media import last_json
from test_classify import _tone, make_esc50, make_folder, make_us8k
from test_prep_avdigits import load_script

import evaluate
from avssl.data.media import probe, read_audio
from avssl.data.video_io import read_frames
from avssl.errors import AvsslError, ManifestError, MediaError
from avssl.eval.audio_sets import list_esc50, list_folder, list_us8k
from avssl.eval.clip_features import load_clip
from avssl.eval.probe import group_kfold, inner_splits
from avssl.tools.stream_io import iter_frames_at


def _run(capsys, *args) -> tuple[int, str, str]:
    code = evaluate.main(["classify", *args, "--features", "logmel", "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err.strip()


def _append(path, *lines):
    with open(path, "a") as fh:
        fh.write("".join(line + "\n" for line in lines))


def test_us8k_skips_and_lists_rows_lacking_columns(tmp_path, capsys):
    root = make_us8k(tmp_path / "us", with_csv=True)
    shutil.copy(next((root / "audio" / "fold1").iterdir()), root / "audio" / "fold2" / "u7.wav")
    csv_path = root / "metadata" / "UrbanSound8K.csv"
    _append(
        csv_path,
        "u7.wav,7,0,4,1,2",  # no classID, class: line 20
        "u7.wav,7,0,4,1,2,3,",  # an empty class
        "u7.wav,7,0,4,1,two,3,low",  # a fold that is not a number
        "u7.wav,7,0,4,1,2,3,low,extra",  # a long row: shifted columns
    )
    for protocol in (["--protocol", "kfold", "--folds", "2"], []):
        code, out, _ = _run(capsys, "--dataset", "us8k", "--root", str(root), *protocol)
        res = last_json(out)
        assert code == 0 and res["n_clips"] == 18 and res["n_skipped"] == 4
        assert [s["path"] for s in res["skipped"]] == [f"{csv_path}:{i}" for i in range(20, 24)]
        reasons = [s["reason"] for s in res["skipped"]]
        assert reasons == ["missing column(s) classID, class", "empty column(s) class",
                           "fold 'two' is not a number", "9 fields, the header has 8"]  # fmt: skip
    code, _, err = _run(capsys, "--dataset", "us8k", "--root", str(root), "--strict")
    assert code == 2 and err == f"error: {csv_path}:20: missing column(s) classID, class"
    with pytest.raises(ManifestError, match="missing column"):
        list_us8k(root)


def test_us8k_duplicate_row_is_skipped(tmp_path):
    root = make_us8k(tmp_path / "us", with_csv=True)
    csv_path = root / "metadata" / "UrbanSound8K.csv"
    lines = csv_path.read_text().splitlines()
    _append(csv_path, lines[3])
    bad = []
    assert len(list_us8k(root, bad)) == 18
    assert bad == [{"path": f"{csv_path}:20", "reason": "duplicate of line 4"}]


def test_esc50_short_row_with_its_needed_values_is_still_malformed(tmp_path, capsys):
    root = make_esc50(tmp_path / "esc")
    _tone(root / "audio" / "extra.wav", "low", 99)
    csv_path = root / "meta" / "esc50.csv"
    _append(csv_path, "extra.wav,1,0,low,True", ",1,0,low,True,5,A")  # 5 of 7; no filename
    code, out, _ = _run(capsys, "--dataset", "esc50", "--root", str(root))
    res = last_json(out)
    assert code == 0 and res["n_clips"] == 24 and res["n_skipped"] == 2
    assert res["skipped"] == [
        {"path": f"{csv_path}:26", "reason": "missing column(s) src_file, take"},
        {"path": f"{csv_path}:27", "reason": "empty column(s) filename"},
    ]


def test_prepare_and_classify_name_a_bad_row_alike_with_its_line_in_the_file(tmp_path, capsys):
    root = make_esc50(tmp_path / "esc")  # 24 rows: lines 2-25
    csv_path = root / "meta" / "esc50.csv"
    # a blank line, a quote left open on line 27 (each line is read on its own: it does not
    # swallow the lines after it into one record), then a short row on line 30
    _append(csv_path, "", '"4-1900-A-0.wav",4,0,low,True,"1900', "4-1901-A-0.wav,4,0,low,True,"
            "1901,A", "", "y.wav,1")  # fmt: skip
    _tone(root / "audio" / "4-1901-A-0.wav", "low", 99)
    code, out, _ = _run(capsys, "--dataset", "esc50", "--root", str(root))
    expected = [
        {"path": f"{csv_path}:27", "reason": "a quote is not closed on its line"},
        {"path": f"{csv_path}:30", "reason": "missing column(s) target, category, esc10, "
         "src_file, take"},
    ]  # fmt: skip
    assert code == 0 and last_json(out)["skipped"] == expected
    assert last_json(out)["n_clips"] == 25  # line 28 is read
    prepare = load_script("esc50").main
    assert prepare(["--root", str(root), "--test-fold", "4", "--out", str(tmp_path / "o")]) == 0
    report = json.loads((tmp_path / "o" / "prepare_report.json").read_text())
    assert report["unreadable_items"] == [
        [item, f"{e['path']}: {e['reason']}"]
        for item, e in zip((f"{csv_path}:27", "y"), expected, strict=True)
    ]


def test_metadata_with_a_byte_order_mark_is_read(tmp_path, capsys):
    root = make_esc50(tmp_path / "esc")  # as Excel saves "CSV UTF-8": a BOM before the header
    csv_path = root / "meta" / "esc50.csv"
    csv_path.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())
    code, out, _ = _run(capsys, "--dataset", "esc50", "--root", str(root))
    assert code == 0 and last_json(out)["n_clips"] == 24


def test_metadata_that_is_not_utf8_is_one_line(tmp_path, capsys):
    root = make_esc50(tmp_path / "esc")
    csv_path = root / "meta" / "esc50.csv"
    with open(csv_path, "ab") as fh:
        fh.write(b"4-1900-A-0.wav,4,0,l\xe9w,True,1900,A\n")  # Latin-1, not UTF-8
    code, out, err = _run(capsys, "--dataset", "esc50", "--root", str(root))
    assert code == 2 and out == "" and err == f"error: {csv_path}:26: not UTF-8 text"


def test_esc50_duplicate_row_is_skipped_and_listed(tmp_path, capsys):
    root = make_esc50(tmp_path / "esc")
    csv_path = root / "meta" / "esc50.csv"
    lines = csv_path.read_text().splitlines()
    _append(csv_path, lines[1], lines[3])  # lines 2 and 4 again (both ESC-10 rows)
    code, out, _ = _run(capsys, "--dataset", "esc50", "--root", str(root))
    res = last_json(out)
    assert code == 0 and res["n_clips"] == 24 and res["n_skipped"] == 2
    assert res["skipped"] == [
        {"path": f"{csv_path}:26", "reason": "duplicate of line 2"},
        {"path": f"{csv_path}:27", "reason": "duplicate of line 4"},
    ]
    esc10 = []
    assert len(list_esc50(root, "esc10", esc10)) == 16 and len(esc10) == 2
    code, _, err = _run(capsys, "--dataset", "esc50", "--root", str(root), "--strict")
    assert code == 2 and err == f"error: {csv_path}:26: duplicate of line 2"


def test_folder_lists_media_outside_the_class_folders(tmp_path, capsys):
    root = make_folder(tmp_path / "f")
    stray = _tone(root / "stray.wav", "low", 7)
    (root / "notes.txt").write_text("not media")
    args = ["--dataset", "folder", "--root", str(root), "--folds", "3"]
    code, out, _ = _run(capsys, *args)
    res = last_json(out)
    assert code == 0 and res["n_clips"] == 24 and res["n_skipped"] == 1
    assert res["skipped"] == [{"path": str(stray), "reason": "not in a class folder"}]
    code, _, err = _run(capsys, *args, "--strict")
    assert code == 2 and err == f"error: {stray}: not in a class folder"
    bad = []
    assert len(list_folder(root, bad=bad)) == 24 and len(bad) == 1


@pytest.mark.parametrize("features", ["logmel", "mfcc"])
def test_folder_with_fewer_clips_per_class_than_folds_is_one_line(tmp_path, capsys, features):
    root = make_folder(tmp_path / "f", recordings=2, takes=2)  # 4 clips of each class
    args = ["classify", "--dataset", "folder", "--root", str(root), "--no-progress"]
    assert evaluate.main([*args, "--features", features]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: {root}: --folds 5: every class has fewer than 5 clips (the largest, 'high', "
        "has 4); use --folds 4 or fewer"
    )
    assert evaluate.main([*args, "--features", features, "--folds", "4"]) == 0
    assert len(last_json(capsys.readouterr().out)["per_fold"]) == 4
    # grouped by recording: 6 recordings (two of each class) for 7 folds
    regex = ["--group-regex", r"^(.+)_take", "--features", features, "--folds", "7"]
    assert evaluate.main([*args, *regex]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: {root}: --folds 7: 6 groups (recordings), fewer than 7 folds; "
        "use --folds 4 or fewer"
    )


def test_group_kfold_names_the_shortfall():
    y = np.array(list("aaabb"))
    with pytest.raises(AvsslError, match=r"^n_splits 4: every class has fewer than 4 clips "
                       r"\(the largest, 'a', has 3\); use n_splits 3 or fewer$"):  # fmt: skip
        group_kfold(y, np.arange(5).astype(str), 4)
    with pytest.raises(AvsslError, match="too few to cross-validate"):
        group_kfold(np.array(list("ab")), np.array(["1", "2"]), 2)
    assert len(group_kfold(y, np.arange(5).astype(str), 3)) == 3  # 'b' short: allowed


def test_inner_splits_fall_back_on_an_empty_validation_split(monkeypatch):
    from avssl.eval import probe_folds as probe_mod

    y, groups = np.array(list("aaabbb")), np.array(list("012345"))
    folds = [(np.arange(6), np.arange(0)), (np.array([0, 1, 3, 4]), np.array([2, 5]))]
    monkeypatch.setattr(
        probe_mod, "group_kfold", lambda *a: [probe_mod.Fold("", *f) for f in folds]
    )
    splits, why = inner_splits(y, groups, predefined=False)
    assert splits is None and "empty" in why


def _float_tagged_pcm16(path):
    """A 16-bit PCM WAV whose header claims IEEE float samples (format tag 3): soundfile
    refuses it and FFmpeg opens it with an audio stream it has no decoder for."""
    _tone(path, "low", 5)
    sf.write(path, sf.read(path, dtype="int16")[0], 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"fmt " and data[20:22] == b"\x01\x00"  # PCM, where the tag lives
    data[20:22] = b"\x03\x00"
    path.write_bytes(bytes(data))
    return path


NO_DECODER = "no decodable audio stream (unknown or unsupported codec)"


def test_wav_whose_header_claims_float_is_skipped_or_one_line(tmp_path, capsys):
    root = make_folder(tmp_path / "f")
    bad = _float_tagged_pcm16(root / "low" / "zz_bad.wav")
    args = ["--dataset", "folder", "--root", str(root), "--folds", "3"]
    code, out, _ = _run(capsys, *args)
    res = last_json(out)
    assert code == 0 and res["n_clips"] == 24
    assert res["skipped"] == [{"path": str(bad), "reason": NO_DECODER}]
    code, out, err = _run(capsys, *args, "--strict")
    assert code == 2 and out == "" and err == f"error: {bad}: {NO_DECODER}"


def test_streams_without_a_decoder_are_one_media_error(tmp_path):
    bad = _float_tagged_pcm16(tmp_path / "bad.wav")
    for read in (lambda: read_audio(bad, 0.0, 0.2, 16000), lambda: load_clip(bad, 16000)):
        with pytest.raises(MediaError) as err:
            read()
        assert err.value.reason == NO_DECODER
    with pytest.raises(MediaError, match="no decodable audio stream"):
        probe(bad)
    # an AVI whose video codec tag FFmpeg does not know
    avi = tmp_path / "v.avi"
    with av.open(str(avi), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width = stream.height = 32
        for i in range(5):
            image = np.full((32, 32, 3), 40 * i, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    data = avi.read_bytes()
    assert data.count(b"FMP4") == 2  # the stream header's and the format header's tag
    avi.write_bytes(data.replace(b"FMP4", b"QQQQ"))
    for read in (
        lambda: probe(avi),
        lambda: read_frames(avi, 0.0, 0.1, 25),
        lambda: next(iter_frames_at(avi, [0.0])),
    ):
        with pytest.raises(MediaError, match=r"v\.avi: no decodable video stream"):
            read()


def test_one_class_is_refused_not_scored_perfect(tmp_path, capsys):
    # an ESC-50 root given as a folder dataset: its one sub-folder `audio/` is the only class,
    # and every fold was a constant guess scoring 1.0
    root = make_esc50(tmp_path / "esc")
    code, out, err = _run(capsys, "--dataset", "folder", "--root", str(root), "--folds", "2")
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith(f"error: {root}: the ") and "clips are all of class 'audio'" in err


@pytest.mark.parametrize(
    "flags,reason",
    [
        (["--dataset", "esc50", "--folds", "3"], "--folds applies to a k-fold protocol only"),
        (["--dataset", "manifest", "--folds", "3"], "--folds does not apply to --dataset manifest"),
        (["--dataset", "us8k", "--group-regex", "(x)"], "--group-regex applies to --dataset"),
    ],
)
def test_flags_the_protocol_does_not_read_are_refused(tmp_path, capsys, flags, reason):
    code, out, err = _run(capsys, *flags, "--root", str(tmp_path))
    assert code == 2 and out == "" and err.startswith(f"error: {reason}")


def test_a_huge_hop_names_the_flag(tmp_path, capsys):
    root = make_folder(tmp_path / "f", recordings=2, takes=1)
    argv = ["classify", "--dataset", "folder", "--root", str(root), "--hop", "1e308"]
    assert evaluate.main([*argv, "--features", "random", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --hop 1e+308: at most 600 s (a clip's longest)"


def test_a_manifest_without_a_test_clip_names_the_manifest(tmp_path, capsys):
    from test_classify import make_manifest

    path = make_manifest(tmp_path / "m", {"train": 6, "val": 2})
    code, out, err = _run(capsys, "--dataset", "manifest", "--root", str(path))
    assert code == 2 and err.startswith(f"error: {path}: no clip in split 'test'")


@pytest.mark.parametrize(
    "flags",
    [("--hop", "1"), ("--pool", "max"), ("--layer", "tower"), ("--audio-tta", "0.1"),
     ("--audio-tta-views", "3")],
)  # fmt: skip
def test_window_flags_are_refused_with_clip_statistics(tmp_path, capsys, flags):
    # logmel and mfcc are statistics of the whole clip: a window flag would be ignored
    code, out, err = _run(capsys, "--dataset", "folder", "--root", str(tmp_path), *flags)
    assert code == 2 and not out
    assert err == f"error: {flags[0]} applies to network features (model, random), not logmel"
