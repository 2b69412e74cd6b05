"""JSON-lines manifests: round trip, split filtering, path resolution and one-line errors."""

from __future__ import annotations

import json

import pytest

from avssl.data.manifest import Row, read_manifest, resolve, write_manifest
from avssl.errors import ManifestError

ROWS = [
    Row(id="a", video="clips/a.mp4", start=30.0, end=40.0, labels=["/m/09x0r"], split="train"),
    Row(id="b", video="clips/b.mp4", audio="wav/b.wav", end=10.0, split="val"),
    Row(
        id="c",
        image="img/c.jpg",
        labels=["dog", "bark"],
        split="test",
        boxes={"sources": [[0.1, 0.2, 0.5, 0.6]]},
        frame_labels=["dog", "cat"],
    ),
]


def test_round_trip(tmp_path):
    path = tmp_path / "sub" / "manifest.jsonl"
    assert write_manifest(path, ROWS) == 3
    assert read_manifest(path) == ROWS
    assert [p.name for p in path.parent.iterdir()] == ["manifest.jsonl"]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert "image" not in lines[0] and "video" not in lines[2]
    assert "frame_labels" not in lines[0] and lines[2]["frame_labels"] == ["dog", "cat"]
    assert lines[2]["image"] == "img/c.jpg" and ROWS[2].visual == "img/c.jpg"
    assert ROWS[0].duration == 10.0 and ROWS[2].duration is None


def test_split_filter_and_blank_lines(tmp_path):
    path = tmp_path / "m.jsonl"
    write_manifest(path, ROWS)
    path.write_text(path.read_text() + "\n   \n")
    assert [r.id for r in read_manifest(path, split="val")] == ["b"]
    assert len(read_manifest(path)) == 3


def test_a_byte_order_mark_starts_no_row(tmp_path):
    # Windows editors save UTF-8 with one; later lines cannot hold one legitimately
    path = tmp_path / "m.jsonl"
    row = '{"id": "a", "video": "a.mp4"}'
    path.write_bytes(("\ufeff" + row + "\n" + row.replace('"a', '"b') + "\n").encode())
    assert [r.id for r in read_manifest(path)] == ["a", "b"]
    path.write_bytes((row + "\n\ufeff" + row.replace('"a', '"b') + "\n").encode())
    with pytest.raises(ManifestError, match=r"m.jsonl:2: not JSON"):
        read_manifest(path)


def test_values_are_normalised(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"id": 7, "video": "x.mp4", "start": "1.5", "labels": [3]}) + "\n")
    (row,) = read_manifest(path)
    assert row.id == "7" and row.start == 1.5 and row.labels == ["3"] and row.end is None


def test_resolve(tmp_path):
    path = tmp_path / "m.jsonl"
    assert resolve(path, "clips/a.mp4") == tmp_path.resolve() / "clips" / "a.mp4"
    assert resolve(path, "/abs/a.mp4").as_posix() == "/abs/a.mp4"
    assert resolve(path, None) is None


GOOD = json.dumps({"id": "ok", "video": "ok.mp4"})


@pytest.mark.parametrize(
    "bad,reason",
    [
        ('{"id": "x", "video": ', "not JSON"),
        ('["x"]', "must be a JSON object"),
        ('{"video": "x.mp4"}', "row has no 'id'"),
        ('{"id": "x"}', "neither 'video' nor 'image'"),
        ('{"id": "x", "video": "x.mp4", "colour": 1}', r"unknown keys \['colour'\]"),
        ('{"id": "x", "video": "x.mp4", "start": 5, "end": 5}', "end <= start"),
        ('{"id": "x", "video": "x.mp4", "start": "soon"}', "row 'x'"),
    ],
)
def test_malformed_row_names_file_and_line(tmp_path, bad, reason):
    path = tmp_path / "m.jsonl"
    path.write_text(GOOD + "\n" + bad + "\n" + GOOD + "\n")
    with pytest.raises(ManifestError, match=rf"m\.jsonl:2: .*{reason}"):
        read_manifest(path)


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="no such manifest"):
        read_manifest(tmp_path / "absent.jsonl")
