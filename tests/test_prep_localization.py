"""VGG-SS, Flickr-SoundNet, ESC-50 and UrbanSound8K preparation on their real annotation formats."""

import json

import pytest
from bad_media import one_line_error, run

from avssl.cli import main as cli
from avssl.data.manifest import read_manifest, resolve
from avssl.errors import AvsslError
from avssl.prep import esc50, flickr, us8k, vggss
from avssl.prep.flickr import read_annotation_boxes
from avssl.prep.localization import index_stems, media_row
from avssl.prep.report import PrepReport

VOC = """<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth></size>
{objects}</annotation>"""
OBJ = "<object><name>s</name><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax>"


def voc(w, h, *boxes) -> str:
    objects = "".join(OBJ.format(*b) + "</bndbox></object>\n" for b in boxes)
    return VOC.format(w=w, h=h, objects=objects)


def test_voc_boxes_normalised(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(voc(200, 100, (20, 10, 120, 60), (0, 0, 250, 100), (50, 50, 50, 90)))
    boxes, dropped = read_annotation_boxes(path)  # the zero-area third box is left out
    assert boxes == [[0.1, 0.1, 0.6, 0.6], [0.0, 0.0, 1.0, 1.0]]  # clipped
    assert dropped == {"zero-area": 1}
    path.write_text(voc(200, 100))
    with pytest.raises(ValueError, match="no <bndbox>"):
        read_annotation_boxes(path)
    path.write_text("<annotation><object><bndbox><xmin>1</xmin></bndbox></object></annotation>")
    with pytest.raises(ValueError, match="box 0"):
        read_annotation_boxes(path)


# the published Flickr-SoundNet files: one <bbox> per annotator, its first child an index, no
# <size> (pixels of the 256x256 SoundNet frames)
PUBLISHED = """<annotation><filename>{i}.jpg</filename>
<object><bbox><idx>1</idx><xmin>0</xmin><ymin>64</ymin><xmax>128</xmax><ymax>256</ymax></bbox>
</object><object><bbox><idx>2</idx><xmin>32</xmin><ymin>0</ymin><xmax>32</xmax><ymax>9</ymax>
</bbox></object></annotation>"""


def test_flickr_published_annotation_format(media_factory, tmp_path):
    media_factory("10000130166.jpg", size=(32, 32))
    media_factory("10000130166.wav", duration=1.0)
    (tmp_path / "10000130166.xml").write_text(PUBLISHED.format(i="10000130166"))
    (tmp_path / "ids.csv").write_text("10000130166\n")
    out = tmp_path / "out"
    assert flickr.main(["--ids", str(tmp_path / "ids.csv"), "--media", str(tmp_path),
                        "--out", str(out)]) == 0  # fmt: skip
    (row,) = read_manifest(out / "manifest.jsonl")
    # the zero-width box left out; each annotator's box also under "annotators", which marks
    # the row as Flickr data for localize's default protocol
    box = [0.0, 0.25, 0.5, 1.0]
    assert row.boxes == {"sources": [box], "annotators": [box]}
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["notes"] == [
        "items with zero-area boxes: 1 (10000130166); the boxes are left out (the reference "
        "evaluation draws them as nothing) and an item with no box left scores 0 in localize"
    ]


def test_flickr_annotations_beside_the_media_are_told_by_their_extension(media_factory, tmp_path):
    # the annotations folder sorts before the data folder: its .xml must not be replaced by
    # the picture or the sound of the same stem
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "10000130166.xml").write_text(PUBLISHED.format(i="10000130166"))
    media_factory.folder = tmp_path / "Data"
    media_factory.folder.mkdir()
    media_factory("10000130166.jpg", size=(32, 32))
    media_factory("10000130166.wav", duration=1.0)
    (tmp_path / "ids.csv").write_text("10000130166\n")
    out = tmp_path / "out"
    assert flickr.main(["--ids", str(tmp_path / "ids.csv"), "--media", str(tmp_path),
                        "--out", str(out)]) == 0  # fmt: skip
    (row,) = read_manifest(out / "manifest.jsonl")
    assert row.image == "../Data/10000130166.jpg" and row.audio == "../Data/10000130166.wav"


def _vggss_of(entries: list[dict], media_factory, tmp_path):
    """``vggss.main`` on ``entries`` and a 1-s clip named after each ``file``; its ``--out``."""
    (tmp_path / "v.json").write_text(json.dumps(entries))
    for entry in entries:
        media_factory(f"{entry['file']}.mp4", duration=1.0, size=(32, 32))
    out = tmp_path / "out"
    argv = ["--annotations", str(tmp_path / "v.json"), "--media", str(tmp_path), "--out", str(out)]
    assert vggss.main(argv) == 0
    return out


def test_vggss_zero_area_boxes_keep_their_item(media_factory, tmp_path):
    # as in the published vggss.json (e.g. M1P1xla8rg0_000000, whose only box has no height)
    entries = [
        {"file": "a", "class": "c", "bbox": [[0.1, 0.1, 0.5, 0.5], [0.006, 0.016, 0.006, 0.016]]},
        {"file": "b", "class": "c", "bbox": [[0.27, 1.0, 0.75, 1.0]]},
        {"file": "c", "class": "c", "bbox": [[0.1, 0.1, "x", 0.5]]},
    ]
    out = _vggss_of(entries, media_factory, tmp_path)
    rows = {r.id: r.boxes for r in read_manifest(out / "manifest.jsonl")}
    assert rows == {"a": {"sources": [[0.1, 0.1, 0.5, 0.5]]}, "b": {"sources": []}}
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["notes"][0].startswith("items with zero-area boxes: 2 (a, b);")
    assert report["unreadable_items"] == [["c", "bad bbox (c: box 0 is not four numbers: "
                                           "[0.1, 0.1, 'x', 0.5])"]]  # fmt: skip


def test_vggss_boxes_in_pixels_are_refused_not_clipped(media_factory, tmp_path):
    """Clipped to [0, 1], a box in pixels became the whole frame (a corner at 0) or nothing."""
    entries = [
        {"file": "a", "class": "c", "bbox": [[0, 0, 150, 200]]},
        {"file": "b", "class": "c", "bbox": [[0.1, 0.2, 1.0, 1]]},  # the published maximum
    ]
    out = _vggss_of(entries, media_factory, tmp_path)
    assert [r.id for r in read_manifest(out / "manifest.jsonl")] == ["b"]
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["unreadable_items"] == [
        ["a", "bad bbox (box 0 has coordinate 200 above 1: not normalised (pixels?))"]
    ]


def test_vggss_a_clip_named_by_an_unknown_scheme_is_named_in_its_missing_reason(tmp_path):
    entries = [{"file": "b5bbbbbbbbb_000030", "class": "c", "bbox": [[0.1, 0.1, 0.5, 0.5]]}]
    (tmp_path / "v.json").write_text(json.dumps(entries))
    media = tmp_path / "media"
    media.mkdir()
    (media / "b5bbbbbbbbb-30.mp4").write_bytes(b"\0")  # only its name is read
    out = tmp_path / "out"
    argv = ["--annotations", str(tmp_path / "v.json"), "--media", str(media), "--out", str(out)]
    with pytest.raises(AvsslError) as err:  # its only item: nothing written, the reason given
        vggss.main(argv)
    assert f"e.g. b5bbbbbbbbb_000030: no file named after b5bbbbbbbbb under {media}: " in str(
        err.value
    )
    assert f"{media / 'b5bbbbbbbbb-30.mp4'} starts with the id but follows none" in str(err.value)


def test_an_annotated_frame_beside_its_video_takes_the_videos_sound(tmp_path):
    for name in ("a/x.mp4", "a/x.jpg", "b/x.jpg", "b/y.mp4"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"\0")  # not empty: only the names are read
    stems = index_stems(tmp_path)
    assert stems["x"] == {"video": tmp_path / "a/x.mp4", "image": tmp_path / "a/x.jpg"}
    report, out = PrepReport("vggss"), tmp_path / "out"
    for item in ("x", "y"):
        media_row(report, item, stems[item], out, [[0.1, 0.1, 0.5, 0.5]], [])
    x, y = report.rows
    assert (x.image, x.audio, x.video) == ("../a/x.jpg", "../a/x.mp4", None)
    assert (y.image, y.audio, y.video) == (None, None, "../b/y.mp4")


def test_vggss_one_cut_named_after_a_ytid_of_two_clips_is_used_for_neither(media_factory, tmp_path):
    # 141 YouTube ids of the published vggss.json have several clips
    box = [[0.1, 0.1, 0.5, 0.5]]
    entries = [{"file": f"PWLeqsU7nUI_{t:06d}", "class": "c", "bbox": box} for t in (73, 131)]
    entries.append({"file": "zzzzzzzzzzz_000010", "class": "d", "bbox": box})
    (tmp_path / "v.json").write_text(json.dumps(entries))
    media_factory("PWLeqsU7nUI.mp4", duration=10.0, size=(32, 32))
    media_factory("zzzzzzzzzzz.mp4", duration=10.0, size=(32, 32))
    out = tmp_path / "out"
    argv = ["--annotations", str(tmp_path / "v.json"), "--media", str(tmp_path), "--out", str(out)]
    assert vggss.main(argv) == 0
    rows = read_manifest(out / "manifest.jsonl")
    assert [(r.id, r.start, r.end) for r in rows] == [("zzzzzzzzzzz_000010", 0.0, 10.0)]
    report = json.loads((out / "prepare_report.json").read_text())
    missing = dict(report["missing_items"])
    assert set(missing) == {"PWLeqsU7nUI_000073", "PWLeqsU7nUI_000131"}
    assert "2 segments of PWLeqsU7nUI are listed" in missing["PWLeqsU7nUI_000073"]


def test_vggss_real_annotations(shared_data, media_factory, tmp_path, capsys):
    meta = shared_data / "localization-meta"
    entries = json.loads((meta / "vggss.json").read_text())[:3]
    a, b, c = (e["file"] for e in entries)
    media_factory(f"{a}.jpg", size=(32, 32))
    media_factory(f"{a}.wav", duration=1.0)
    media_factory(f"{b}.mp4", duration=1.0, size=(32, 32))
    ids = tmp_path / "ids.csv"
    ids.write_text(f"{a}\n{b}\n{c}\n")
    out = tmp_path / "out"
    args = ["--annotations", str(meta / "vggss.json"), "--media", str(tmp_path)]
    assert vggss.main([*args, "--ids", str(ids), "--out", str(out), "--probe"]) == 0
    rows = {r.id: r for r in read_manifest(out / "manifest.jsonl")}
    assert set(rows) == {a, b} and {r.split for r in rows.values()} == {"test"}
    assert rows[a].image and rows[a].audio.endswith(".wav") and rows[b].video
    for e in entries[:2]:
        assert rows[e["file"]].boxes == {"sources": e["bbox"]}
        assert rows[e["file"]].labels == [e["class"]]
        assert resolve(out / "manifest.jsonl", rows[e["file"]].visual).is_file()
    report = json.loads((out / "prepare_report.json").read_text())
    assert [x[0] for x in report["missing_items"]] == [c]


def test_flickr_real_ids(shared_data, media_factory, tmp_path):
    ids = [line.split(",")[0] for line in (shared_data / "localization-meta/flickr_test.csv")
           .read_text().splitlines()[:4]]  # fmt: skip
    media_factory(f"{ids[0]}.jpg", size=(32, 32))
    media_factory(f"{ids[0]}.wav", duration=1.0)
    media_factory(f"{ids[1]}.jpg", size=(32, 32))  # image without audio: missing
    ann = tmp_path / "Annotations"
    ann.mkdir()
    (ann / f"{ids[0]}.xml").write_text(voc(400, 200, (40, 20, 200, 100), (0, 0, 100, 200)))
    (ann / f"{ids[1]}.xml").write_text(voc(400, 200, (40, 20, 200, 100)))
    (ann / f"{ids[2]}.xml").write_text("<annotation>")  # corrupt
    csv = tmp_path / "flickr_test.csv"
    csv.write_text("\n".join(f"{i},0" for i in ids) + "\n")
    out = tmp_path / "out"
    assert flickr.main(["--ids", str(csv), "--media", str(tmp_path), "--out", str(out)]) == 0
    (row,) = read_manifest(out / "manifest.jsonl")
    boxes = [[0.1, 0.1, 0.5, 0.5], [0, 0, 0.25, 1]]
    assert row.id == ids[0] and row.boxes == {"sources": boxes, "annotators": boxes}
    report = json.loads((out / "prepare_report.json").read_text())
    assert {x[0] for x in report["missing_items"]} == {ids[1], ids[3]}
    assert [x[0] for x in report["unreadable_items"]] == [ids[2]]


def test_esc10_real_metadata(shared_data, tmp_path):
    out = tmp_path / "out"
    assert esc50.main(["--root", str(shared_data / "esc10"), "--esc10", "--test-fold", "4",
                       "--out", str(out)]) == 0  # fmt: skip
    rows = read_manifest(out / "manifest.jsonl")
    folds = json.loads((out / "folds.json").read_text())
    assert len(rows) == 83 and set(folds) == {r.id for r in rows}
    assert {r.id for r in rows if r.split == "test"} == {k for k, f in folds.items() if f == 4}
    assert all(r.video == r.audio and r.audio.endswith(".wav") for r in rows)
    assert len({r.labels[0] for r in rows}) == 10


def test_us8k_missing_file(media_factory, tmp_path):
    root = tmp_path / "UrbanSound8K"
    (root / "metadata").mkdir(parents=True)
    (root / "audio/fold1").mkdir(parents=True)
    media_factory.folder = root / "audio/fold1"
    media_factory("100032-3-0-0.wav", duration=0.5)
    (root / "metadata/UrbanSound8K.csv").write_text(
        "slice_file_name,fsID,start,end,salience,fold,classID,class\n"
        "100032-3-0-0.wav,100032,0.0,0.3,1,1,3,dog_bark\n"
        "100263-2-0-117.wav,100263,58.5,62.5,1,10,2,children_playing\n"
    )
    out = tmp_path / "out"
    assert us8k.main(["--root", str(root), "--out", str(out)]) == 0
    (row,) = read_manifest(out / "manifest.jsonl")
    assert (row.id, row.labels, row.split) == ("100032-3-0-0", ["dog_bark"], "train")
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["missing_items"][0][0] == "100263-2-0-117"


@pytest.mark.parametrize(
    "w, h, box, reason",
    [
        ("nan", "inf", (10, 10, 20, 20), "<size> <width> is 'nan', not a finite number"),
        (200, " inf ", (10, 10, 20, 20), "<size> <height> is 'inf', not a finite number"),
        (200, 100, ("nan", 10, "inf", 20), "box 0 <xmin> is 'nan', not a finite number"),
        (200, 100, (10, 10, "-Infinity", 20), "box 0 <xmax> is '-Infinity', not a finite number"),
    ],
)
def test_flickr_non_finite_numbers_are_unreadable(w, h, box, reason, tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(voc(w, h, box))
    with pytest.raises(ValueError) as err:
        read_annotation_boxes(path)
    assert str(err.value) == f"{path}: {reason}"


def test_flickr_inverted_box_is_not_called_zero_area(media_factory, tmp_path):
    media_factory("1.mp4", duration=1.0, size=(32, 32))
    (tmp_path / "1.xml").write_text(voc(200, 100, (20, 10, 120, 60), (150, 10, 50, 60)))
    boxes, dropped = read_annotation_boxes(tmp_path / "1.xml")
    assert boxes == [[0.1, 0.1, 0.6, 0.6]] and dropped == {"inverted": 1}
    (tmp_path / "ids.csv").write_text("1\n")
    out = tmp_path / "out"
    assert flickr.main(["--ids", str(tmp_path / "ids.csv"), "--media", str(tmp_path),
                        "--out", str(out)]) == 0  # fmt: skip
    (note,) = json.loads((out / "prepare_report.json").read_text())["notes"]
    assert note.startswith("items with inverted boxes: 1 (1); the boxes are left out")


def test_flickr_empty_id_list(tmp_path, capsys):
    (tmp_path / "ids.csv").write_text("\n \n")
    argv = ["flickr", "--ids", str(tmp_path / "ids.csv"), "--media", str(tmp_path)]
    code, o, err = run(capsys, cli, ["prepare", *argv, "--out", str(tmp_path / "out")])
    one_line_error(code, o, err, tmp_path / "ids.csv", "no ids in the file")


def test_flickr_refuses_a_file_that_is_no_id_list(tmp_path, capsys):
    (tmp_path / "v.json").write_text(json.dumps([{"file": "a", "bbox": [[0, 0, 1, 1]]}]))
    argv = ["flickr", "--ids", str(tmp_path / "v.json"), "--media", str(tmp_path)]
    code, o, err = run(capsys, cli, ["prepare", *argv, "--out", str(tmp_path / "out")])
    one_line_error(code, o, err, tmp_path / "v.json", "not an id list (row 1 starts with '[{")
    assert not (tmp_path / "out").exists()


def test_vggss_refuses_ids_none_of_which_it_annotates(media_factory, tmp_path, capsys):
    (tmp_path / "v.json").write_text(json.dumps([{"file": "a", "bbox": [[0, 0, 1, 1]]}]))
    (tmp_path / "flickr_ids.csv").write_text("10000130166,202\n10007936344,0\n")
    media_factory("a.mp4", duration=1.0, size=(32, 32))
    argv = ["vggss", "--annotations", str(tmp_path / "v.json"), "--media", str(tmp_path)]
    argv += ["--ids", str(tmp_path / "flickr_ids.csv"), "--out", str(tmp_path / "out")]
    code, o, err = run(capsys, cli, ["prepare", *argv])
    one_line_error(code, o, err, tmp_path / "flickr_ids.csv", "none of its 2 ids is an entry of")
    assert "(e.g. '10000130166')" in err and not (tmp_path / "out").exists()


def test_vggss_ids_without_an_entry_are_counted_and_notes_count_written_items(
    media_factory, tmp_path
):
    entries = [
        {"file": "a", "class": "c", "bbox": [[0.1, 0.1, 0.5, 0.5]]},
        {"file": "b", "class": "c", "bbox": [[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.2, 0.2]]},
    ]
    (tmp_path / "v.json").write_text(json.dumps(entries))
    (tmp_path / "ids.csv").write_text("a\nb\nnotAnEntry1_000001\n")
    media_factory("a.mp4", duration=1.0, size=(32, 32))  # b's media is missing
    out = tmp_path / "out"
    argv = ["--annotations", str(tmp_path / "v.json"), "--media", str(tmp_path), "--out", str(out),
            "--ids", str(tmp_path / "ids.csv")]  # fmt: skip
    assert vggss.main(argv) == 0
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["written"] + report["missing"] + report["unreadable"] == 3  # was 2
    assert [item for item, _ in report["missing_items"]] == ["b", "notAnEntry1_000001"]
    assert report["notes"] == []  # b lost a zero-area box, but b was not written


def _clip_reference(raw):
    """Brute force of the box rule: ``(kind, box)``, kind None for a kept box (clipped)."""
    if raw[0] > raw[2] or raw[1] > raw[3]:
        return "inverted", None
    x0, y0, x1, y1 = (sorted([0.0, v, 1.0])[1] for v in raw)  # the middle of the three
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        return "zero-area", None
    return None, [x0, y0, x1, y1]


def test_clip_boxes_against_a_per_box_rule():
    """Random boxes, inverted on either axis, out of the frame on any side, empty or thin:
    each is kept (clipped to [0, 1]) or counted under the kind a per-box rule gives it."""
    import numpy as np

    from avssl.prep.localization import clip_boxes

    rng = np.random.default_rng(0)
    corners = [-0.5, -0.1, 0.0, 0.2, 0.5, 0.5, 0.9, 1.0, 1.3]  # repeats: zero widths
    boxes = [[float(rng.choice(corners)) for _ in range(4)] for _ in range(400)]
    boxes += [[0.1, 0.6, 0.4, 0.2], [0.6, 0.1, 0.2, 0.4], [1.1, 0.2, 1.4, 0.6]]
    kept, dropped = clip_boxes(boxes, "test")
    want_kept, want_dropped = [], {}
    for raw in boxes:
        kind, box = _clip_reference(raw)
        if kind is None:
            want_kept.append(box)
        else:
            want_dropped[kind] = want_dropped.get(kind, 0) + 1
    assert kept == want_kept and dropped == want_dropped
    assert clip_boxes(boxes[-3:-1], "test") == ([], {"inverted": 2})  # in y, then in x


# a Flickr bbox whose coordinates are not tagged xmin/ymin/xmax/ymax: the reference reads its
# children by position, after the first (the annotator's index)
POSITIONAL = """<annotation><object><bbox><idx>1</idx><a>32</a><b>64</b><c>160</c><d>192</d>
</bbox></object><object><bbox><idx>2</idx><a>0</a><b>16</b><c>256</c><d>128</d></bbox></object>
</annotation>"""


def test_flickr_boxes_read_by_position_and_a_half_given_size(tmp_path):
    path = tmp_path / "p.xml"
    path.write_text(POSITIONAL)
    boxes, dropped = read_annotation_boxes(path)
    want = [[32 / 256, 64 / 256, 160 / 256, 192 / 256], [0.0, 16 / 256, 1.0, 128 / 256]]
    assert boxes == want and dropped == {}
    # a <size> with a width and no height is no size: not the 256-pixel default
    path.write_text(voc(200, 100, (20, 10, 120, 60)).replace("<height>100</height>", ""))
    with pytest.raises(ValueError, match="no <size><width>/<height>"):
        read_annotation_boxes(path)
