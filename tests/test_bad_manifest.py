"""Bad manifests and checkpoints: one line naming the file (and line), never a traceback."""

import json
import pickle
import warnings

import pytest
import torch

import evaluate
from avssl.config import Config, to_dict
from avssl.data.manifest import Row, read_manifest
from avssl.errors import CheckpointError, ManifestError
from avssl.models import build_model
from avssl.prep.report import PrepReport
from avssl.train.checkpoint import load_checkpoint, save_checkpoint

GOOD = {"id": "ok", "image": "ok.png", "split": "test", "boxes": {"sources": [[0, 0, 1, 1]]}}


def _write(path, *rows) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def _bad(**fields) -> dict:
    return {**GOOD, "id": "bad", **fields}


@pytest.mark.parametrize(
    "row,reason",
    [
        (_bad(image=123), "'image' must be a file path \\(a non-empty string\\), not 123"),
        (_bad(image=None, video=["a.mp4"]), "'video' must be a file path"),
        (_bad(audio={"x": 1}), "'audio' must be a file path"),
        (_bad(image=""), "'image' must be a file path"),
        (_bad(labels="12"), "'labels' must be a list of strings, not \"12\""),
        (_bad(labels=[["a"]]), "'labels' must be a list of strings"),
        (_bad(labels=[True]), "'labels' must be a list of strings"),
        (_bad(frame_labels="34"), "'frame_labels' must be a list of strings"),
        (_bad(boxes="x"), "'boxes' must be null or"),
        (_bad(boxes=[[0, 0, 1, 1]]), "'boxes' must be null or"),
        (_bad(boxes={}), "'boxes' must be null or"),
        (_bad(boxes={"sources": "x"}), "'boxes.sources' must be a list of"),
        (_bad(boxes={"sources": [[0, 0, 2, "a"]]}), r"boxes.sources\[0\]: a box must be a list"),
        (_bad(boxes={"sources": [5]}), r"boxes.sources\[0\]: a box must be a list"),
        (_bad(boxes={"sources": [[0, 0, 1]]}), "a box needs 4 coordinates, got 3"),
        (_bad(boxes={"sources": [[0, 0, 1, None]]}), "box coordinates are not numbers"),
        (_bad(boxes={"sources": [[0.8, 0.8, 0.2, 0.2]]}), "empty or inverted box"),
        (_bad(boxes={"sources": [[0, 0.5, 1, 0.5]]}), "empty or inverted box"),
        (_bad(boxes={"sources": [], "distractors": [[1, 0, 0, 1]]}), r"boxes.distractors\[0\]"),
        (_bad(boxes={"sources": [[10, 20, 110, 90]]}), r"not normalised to \[0, 1\] \(pixel"),
        (_bad(boxes={"sources": [[-0.2, 0, 0.5, 0.5]]}), "not normalised"),
        ('{"id": "bad", "image": "a.png", "boxes": {"sources": [[0, 0, NaN, 1]]}}', "finite"),
        (_bad(split="bogus"), "'split' must be one of train, val, test, not \"bogus\""),
        (_bad(split=None), "'split' must be one of"),
        (_bad(split="Train"), "'split' must be one of"),
        ('{"id": "bad", "image": "a.png", "start": NaN}', "'start' must be a finite number >= 0"),
        ('{"id": "bad", "image": "a.png", "start": -2}', "'start' must be a finite number >= 0"),
        ('{"id": "bad", "image": "a.png", "start": -Infinity}', "'start' must be a finite"),
        ('{"id": "bad", "image": "a.png", "end": NaN}', "'end' must be a finite number"),
        ('{"id": "bad", "image": "a.png", "end": Infinity}', "'end' must be a finite number"),
    ],
)
def test_malformed_field_names_file_line_and_row(tmp_path, row, reason):
    path = _write(tmp_path / "m.jsonl", GOOD, row)
    with pytest.raises(ManifestError, match=rf"m\.jsonl:2: row 'bad': .*{reason}") as info:
        read_manifest(path)
    assert "\n" not in str(info.value)


def test_a_row_with_both_video_and_image_is_refused(tmp_path):
    # writing it back kept only the image: a round trip switched the row to its still
    path = _write(tmp_path / "m.jsonl", GOOD, _bad(video="v.mp4"))
    with pytest.raises(ManifestError, match=r"m\.jsonl:2: row 'bad' has both 'video' and 'image'"):
        read_manifest(path)


def test_not_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"\xff\xfe\x00{}\n")
    with pytest.raises(ManifestError, match=r"m\.jsonl:1: not UTF-8 text$"):
        read_manifest(path)
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + '{"id": "\u00e9"}'.encode("latin-1"))
    with pytest.raises(ManifestError, match=r"m\.jsonl:2: not UTF-8 text$"):
        read_manifest(path)


def test_repeated_id_names_both_lines(tmp_path):
    other = {**GOOD, "id": "other"}
    path = _write(tmp_path / "m.jsonl", GOOD, other, "", {**GOOD, "split": "train"})
    with pytest.raises(ManifestError, match=r"m\.jsonl:4: id 'ok' already used on line 1$"):
        read_manifest(path, split="test")  # found whichever split is kept


def test_valid_rows_stay_valid(tmp_path):
    rows = [
        {"id": "a", "image": "a.png"},  # no split: a training row, as before
        {"id": 7, "video": "b.mp4", "labels": [3, "x"], "frame_labels": [3, 4], "split": "val"},
        {"id": "c", "image": "c.png", "split": "test", "labels": None,
         "boxes": {"sources": [[0, 0, 1, 1]], "distractors": []}},
        {"id": "d", "image": "d.png", "split": "test", "boxes": {"sources": []}},
        {"id": "e", "image": "e.png", "split": "test", "boxes": None},
    ]  # fmt: skip
    a, b, c, d, e = read_manifest(_write(tmp_path / "m.jsonl", *rows))
    assert a.split == "train" and b.split == "val" and b.id == "7"
    assert b.labels == ["3", "x"] and b.frame_labels == ["3", "4"] and c.labels == []
    assert c.boxes == {"sources": [[0.0, 0.0, 1.0, 1.0]], "distractors": []}
    assert d.boxes == {"sources": []} and e.boxes is None


def test_prepare_skips_and_counts_a_repeated_id():
    report = PrepReport("demo")
    for row in (Row("a", image="1.png"), Row("b", image="2.png"), Row("a", image="3.png")):
        report.add(row)
    assert [r.image for r in report.rows] == ["1.png", "2.png"]
    assert report.unreadable == [("a", "duplicate id (an earlier item has the same one)")]


@pytest.fixture
def checkpoint(tmp_path):
    cfg = Config()
    state = {"model": build_model(cfg.model, cfg.data).state_dict(), "config": to_dict(cfg)}
    return save_checkpoint(tmp_path / "ok.pt", state)


def _one_error_line(capsys, *names) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and "Warning" not in err, err
    for name in names:
        assert name in lines[0], err
    return lines[0]


@pytest.mark.parametrize(
    "row,reason",
    [
        (_bad(boxes={"sources": [[0, 0, 2, "a"]]}), "a box must be a list of 4 numbers"),
        (_bad(boxes="x"), "'boxes' must be null or"),
        (_bad(image=123), "'image' must be a file path"),
        ({**GOOD, "split": "train"}, "id 'ok' already used on line 1"),
    ],
)
def test_evaluate_bad_manifest_is_one_line(checkpoint, tmp_path, capsys, row, reason):
    path = _write(tmp_path / "m.jsonl", GOOD, row)
    for sub in ("avc", "localize"):
        argv = [sub, "--checkpoint", str(checkpoint), "--data", path, "--no-progress"]
        assert evaluate.main([*argv, "--device", "cpu"]) == 2
        _one_error_line(capsys, f"error: {path}:2: ", reason)


def test_evaluate_not_utf8_manifest_is_one_line(checkpoint, tmp_path, capsys):
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"\xff\xfe\x00\n")
    argv = ["avc", "--checkpoint", str(checkpoint), "--data", str(path), "--device", "cpu"]
    assert evaluate.main(argv) == 2
    assert _one_error_line(capsys) == f"error: {path}:1: not UTF-8 text"


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_checkpoint_reasons_are_short_and_whole(tmp_path, checkpoint):
    (tmp_path / "text.pt").write_text("hello")
    with open(tmp_path / "pickle.pt", "wb") as fh:
        pickle.dump({"format": "avssl-checkpoint-v1"}, fh, protocol=4)
    (tmp_path / "trunc.pt").write_bytes(checkpoint.read_bytes()[:300])
    # a zip checkpoint pickled with protocol 4: torch warns about the protocol, then refuses
    torch.save({"payload": _Evil()}, tmp_path / "evil.pt", pickle_protocol=4)
    expected = {
        "text.pt": "not a PyTorch checkpoint file",
        "pickle.pt": "not a PyTorch checkpoint file",
        "trunc.pt": "corrupt or truncated checkpoint file",
        "evil.pt": "refused: holds objects other than tensors and plain values "
        "(loading could run code)",
    }
    for name, reason in expected.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(CheckpointError) as info:
                load_checkpoint(tmp_path / name)
        assert str(info.value) == f"{tmp_path / name}: {reason}"
        assert caught == [], [str(w.message) for w in caught]


def test_evaluate_text_checkpoint_is_one_line(tmp_path, capsys):
    ckpt = tmp_path / "text.pt"
    ckpt.write_text("hello")
    assert evaluate.main(["avc", "--checkpoint", str(ckpt), "--no-progress"]) == 2
    line = _one_error_line(capsys)
    assert line == f"error: {ckpt}: not a PyTorch checkpoint file"
