"""An item of VGG-SS or Flickr-SoundNet found as two files of one kind under ``--media``.

Found preparing Flickr-SoundNet from a folder laid out as several public copies are
(``frames/{id}.jpg`` beside ``extend_frames/{id}.jpg``): the first picture in path order,
``extend_frames/``, was written to every row and nothing said so, although the boxes are drawn
on one particular frame. The first is still used; the report's notes now say which items had
another file and name both.
"""

from __future__ import annotations

import json

from avssl.prep import flickr, vggss

XML = (
    "<annotation><object><bbox><idx>1</idx><xmin>10</xmin><ymin>10</ymin><xmax>100</xmax>"
    "<ymax>100</ymax></bbox></object></annotation>"
)


def _make(factory, name: str, **kwargs) -> None:
    (factory.folder / name).parent.mkdir(parents=True, exist_ok=True)
    factory(name, **kwargs)


def _notes(out) -> list[str]:
    return json.loads((out / "prepare_report.json").read_text())["notes"]


def test_flickr_item_with_two_pictures_is_noted(media_factory, tmp_path):
    for name in ("frames/1001.jpg", "extend_frames/1001.jpg", "frames/1002.jpg"):
        _make(media_factory, name, size=(32, 32))
    for name in ("audio/1001.wav", "audio/1002.wav"):
        _make(media_factory, name, duration=1.0)
    for item in ("1001", "1002"):
        (tmp_path / f"{item}.xml").write_text(XML)
    (tmp_path / "ids.csv").write_text("1001\n1002\n")
    out = tmp_path / "out"
    argv = ["--ids", str(tmp_path / "ids.csv"), "--media", str(media_factory.folder),
            "--annotations", str(tmp_path), "--out", str(out)]  # fmt: skip
    assert flickr.main(argv) == 0
    (note,) = _notes(out)
    assert "1 (1001:" in note and "extend_frames/1001.jpg" in note and "frames/1001.jpg" in note


def test_vggss_item_with_two_sounds_is_noted(media_factory, tmp_path):
    item = "zpWuikVorYg_000032"
    media_factory(f"{item}.jpg", size=(32, 32))
    _make(media_factory, f"a/{item}.wav", duration=1.0)
    _make(media_factory, f"b/{item}.flac", duration=1.0)
    ann = tmp_path / "vggss.json"
    ann.write_text(json.dumps([{"file": item, "class": "x", "bbox": [[0.1, 0.1, 0.5, 0.5]]}]))
    out = tmp_path / "out"
    argv = ["--annotations", str(ann), "--media", str(media_factory.folder), "--out", str(out)]
    assert vggss.main(argv) == 0
    (note,) = _notes(out)
    assert f"a/{item}.wav" in note and f"b/{item}.flac" in note
