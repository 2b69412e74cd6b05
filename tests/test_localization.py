"""Localisation protocol against pixel-loop references, known answers, parsers and the CLI."""

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import evaluate
import train
from avssl.config import Config, load_config, to_dict
from avssl.data.annotations import read_flickr_ids, read_flickr_xml, read_vggss
from avssl.data.manifest import read_manifest, resolve, write_manifest
from avssl.data.source import load_split
from avssl.errors import ManifestError
from avssl.eval import localization as loc
from avssl.eval.localize_cli import item_protocol, safe_name
from avssl.models import build_model
from avssl.prep import flickr as flickr_prep
from avssl.prep import vggss as vggss_prep
from avssl.train.checkpoint import save_checkpoint
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
S = loc.SIZE


# ---- slow, obviously-correct references ---------------------------------------------------------


def ref_gt(boxes, protocol):
    gt = np.zeros((S, S))
    for box in boxes:
        x0, y0, x1, y1 = (int(S * max(v, 0)) for v in box)
        for y in range(S):
            for x in range(S):
                if y0 <= y < y1 and x0 <= x < x1:
                    gt[y, x] += 1
    return np.minimum(gt / 2, 1) if protocol == "flickr" else (gt > 0).astype(float)


def ref_scores(pred, gt):
    """pred: already 224x224 and normalised. Returns (cIoU, adaptive cIoU, pointing)."""
    values = sorted(pred.ravel().tolist())
    thr = values[S * S // 2]
    inter = union_extra = 0.0
    for y in range(S):
        for x in range(S):
            if pred[y, x] > thr or pred[y, x] == 1:  # the reference: > thr set to 1, < 1 to 0
                inter += gt[y, x]
                union_extra += gt[y, x] == 0
    c = inter / (gt.sum() + union_extra) if gt.sum() + union_extra else 0.0
    k = int((gt > 0).sum())
    flat = pred.ravel().tolist()
    top = sorted(range(len(flat)), key=lambda i: (-flat[i], i))[:k]
    inter_a = sum(gt.ravel()[i] for i in top)
    extra_a = sum(gt.ravel()[i] == 0 for i in top)
    ca = inter_a / (gt.sum() + extra_a) if gt.sum() + extra_a else 0.0
    top_value = max(flat)
    tied = [i for i in range(len(flat)) if flat[i] == top_value]
    return c, ca, sum(gt.ravel()[i] > 0 for i in tied) / len(tied)  # expected hit over ties


def ref_normalised(h):
    """Bilinear resize to SxS with half-pixel centres (source edges clamped), then min-max."""
    h = np.asarray(h, dtype=np.float64)

    def taps(i, n):  # output index -> (lower source index, upper source index, weight of upper)
        s = max((i + 0.5) * n / S - 0.5, 0.0)
        lo = min(int(np.floor(s)), n - 1)
        return lo, min(lo + 1, n - 1), s - lo

    out = np.zeros((S, S))
    for y in range(S):
        y0, y1, wy = taps(y, h.shape[0])
        for x in range(S):
            x0, x1, wx = taps(x, h.shape[1])
            top = (1 - wx) * h[y0, x0] + wx * h[y0, x1]
            bottom = (1 - wx) * h[y1, x0] + wx * h[y1, x1]
            out[y, x] = (1 - wy) * top + wy * bottom
    return (out - out.min()) / (out.max() - out.min())


def ref_summary(cious):
    rates = [sum(c >= 0.05 * i for c in cious) / len(cious) for i in range(21)]
    auc = sum((rates[i] + rates[i + 1]) / 2 * 0.05 for i in range(20))
    return sum(c >= 0.5 for c in cious) / len(cious), auc, sum(cious) / len(cious)


def _random_boxes(rng, n):
    boxes = []
    for _ in range(n):
        x0, y0 = rng.uniform(-0.1, 0.8, size=2)
        w, h = rng.uniform(0.05, 0.6, size=2)
        boxes.append([x0, y0, x0 + w, y0 + h])
    return boxes


@pytest.mark.parametrize("protocol", ["vggss", "flickr"])
def test_metrics_match_pixel_loop_reference(protocol):
    rng = np.random.default_rng(0 if protocol == "vggss" else 1)
    maps, gts, want = [], [], []
    for i in range(5):
        h = rng.random((7, 7)) if i % 2 else rng.integers(0, 3, size=(S, S)).astype(float)
        boxes = _random_boxes(rng, int(rng.integers(1, 4)))
        if i == 4:  # boxes that draw nothing: the item stays and scores 0
            boxes = [[0.5, 0.5, 0.5, 0.9], [0.2, 1.0, 0.6, 1.0]]
        gt = loc.gt_map(boxes, protocol)
        np.testing.assert_array_equal(gt, ref_gt(boxes, protocol))
        maps.append(h)
        gts.append(gt)
        want.append(ref_scores(loc.normalise_map(h), gt))
    for h, gt, (c, ca, hit) in zip(maps, gts, want, strict=True):
        got = loc.score_item(h, gt)
        assert got["ciou"] == pytest.approx(c, abs=1e-12)
        assert got["ciou_adaptive"] == pytest.approx(ca, abs=1e-12)
        assert got["pointing"] == pytest.approx(hit, abs=1e-12)
    res = loc.localization_metrics(maps, gts)
    ap, auc, mean = ref_summary([w[0] for w in want])
    assert (res["ciou@0.5"], res["mean_ciou"]) == (pytest.approx(ap), pytest.approx(mean))
    assert res["auc"] == pytest.approx(auc, abs=1e-12)
    assert res["auc_adaptive"] == pytest.approx(ref_summary([w[1] for w in want])[1], abs=1e-12)
    assert res["pointing"] == pytest.approx(np.mean([w[2] for w in want])) and res["n"] == 5
    assert want[4] == (0.0, 0.0, 0.0) and not gts[4].any()
    assert 0 < want[0][2] < 1  # levels 0-2 at random: a third of the pixels tie at the maximum


def test_normalise_map_is_half_pixel_bilinear_then_min_max():
    # the protocol's resize: bilinear, align_corners=False, on a non-square map
    h = np.array([[0.0, 3.0, 1.0, 4.0, 2.0], [5.0, 0.5, 2.5, 1.0, 0.0], [1.5, 4.5, 0.0, 3.5, 2.0]])
    want = ref_normalised(h)
    assert want[0, 0] == want[0, 10] == 0.0  # the corner pixels copy h[0, 0], the minimum
    np.testing.assert_allclose(loc.normalise_map(h), want, atol=1e-6)


def test_success_metrics_known_values():
    res = loc.success_metrics([0.0, 0.5, 1.0, 0.49])
    assert res["ciou@0.5"] == 0.5 and res["mean_ciou"] == pytest.approx(0.4975)
    assert loc.success_metrics([1.0] * 3)["auc"] == pytest.approx(1.0)
    assert loc.success_metrics([0.0] * 3)["auc"] == pytest.approx(0.05 / 2)  # only t = 0 passes


def _box_map(box, inside=1.0, outside=0.0):
    h = np.full((S, S), outside)
    x0, y0, x1, y1 = (int(S * v) for v in box)
    h[y0:y1, x0:x1] = inside
    return h


def test_heatmap_equal_to_box():
    box = [0.25, 0.25, 0.5, 0.75]  # an eighth of the frame
    gt = loc.gt_map([box])
    res = loc.score_item(_box_map(box), gt)
    assert res == {"ciou": 1.0, "ciou_adaptive": 1.0, "pointing": 1.0}


def test_tied_maxima_score_the_expected_hit():
    # the centre prior's four central pixels tie, one in each cell of a 2x2 canvas: each cell
    # earns a quarter (taking the first tied pixel credited the top-left cell alone); on a 3x3
    # canvas all four lie in the centre cell
    prior = loc.centre_prior()
    for k in range(4):
        x0, y0 = (k % 2) / 2, (k // 2) / 2
        assert loc.score_item(prior, loc.gt_map([[x0, y0, x0 + 0.5, y0 + 0.5]]))["pointing"] == 0.25
    centre = loc.gt_map([[1 / 3, 1 / 3, 2 / 3, 2 / 3]])
    assert loc.score_item(prior, centre)["pointing"] == 1.0
    h = np.zeros((S, S))
    h[0, :3] = 1.0  # three tied maxima, one inside the box
    assert loc.score_item(h, loc.gt_map([[2 / S, 0.0, 0.5, 0.5]]))["pointing"] == pytest.approx(
        1 / 3
    )


def test_a_flat_map_is_a_miss_and_counted():
    # no information, yet its ties would earn pointing credit by the box's area and its top-k would
    # start in the top-left corner: a miss
    gt = loc.gt_map([[0.0, 0.0, 0.3, 0.3]])
    for flat in (np.zeros((14, 14)), np.ones((7, 7))):
        res = loc.score_item(flat, gt)
        assert res == {"ciou": 0.0, "ciou_adaptive": 0.0, "pointing": 0.0, "flat": True}
    res = loc.localization_metrics([np.ones((7, 7)), _box_map([0.0, 0.0, 0.3, 0.3])], [gt, gt])
    assert res["flat_maps"] == 1 and res["nonfinite_maps"] == 0 and res["pointing"] == 0.5


def test_a_map_that_is_not_finite_is_a_miss_and_counted():
    # one NaN made the whole map flat, and its ties then earned credit: a miss
    gt = loc.gt_map([[0.0, 0.0, 0.25, 0.25]])
    h = np.zeros((14, 14))
    h[-1, -1] = 1.0  # points bottom-right, away from the box
    assert loc.score_item(h, gt)["pointing"] == 0.0
    for bad in (np.nan, np.inf):
        h[3, 3] = bad
        res = loc.score_item(h, gt)
        assert res == {"ciou": 0.0, "ciou_adaptive": 0.0, "pointing": 0.0, "nonfinite": True}
    res = loc.localization_metrics([h, _box_map([0.0, 0.0, 0.25, 0.25])], [gt, gt])
    assert res["nonfinite_maps"] == 1 and res["pointing"] == 0.5


def test_tied_pixels_at_the_threshold_fall_out_unless_at_the_maximum():
    # three levels: 1 on an eighth of the frame, 0.5 on five eighths, 0 on the rest. The value
    # at the median index is 0.5: "> threshold" predicts the top eighth only (the tied 0.5
    # pixels fall out), where ">= threshold" would predict three quarters
    top, mid = [0.0, 0.0, 0.5, 0.25], [0.0, 0.0, 1.0, 0.75]
    h = np.maximum(_box_map(top), _box_map(mid, inside=0.5))
    assert loc.score_item(h, loc.gt_map([top]))["ciou"] == 1.0
    assert loc.ciou(h >= np.sort(h.ravel())[S * S // 2], loc.gt_map([top])) == pytest.approx(1 / 6)
    # a binary map lit on 3/4 of the frame: the median value is the maximum, 1, and the reference
    # keeps the pixels equal to 1 (it sets those above the threshold to 1, then those below 1
    # to 0): the lit area is predicted
    box = [0.0, 0.0, 1.0, 0.75]
    gt = loc.gt_map([box])
    assert loc.score_item(_box_map(box), gt) == {
        "ciou": 1.0,
        "ciou_adaptive": 1.0,
        "pointing": 1.0,
    }


def test_quarter_frame_cap():
    box = [0.0, 0.0, 0.5, 0.5]
    gt = loc.gt_map([box])
    rng = np.random.default_rng(3)
    h = np.where(_box_map(box) > 0, 2.0, rng.random((S, S)))  # source on top, distinct elsewhere
    res = loc.score_item(h, gt)
    assert res["ciou"] == pytest.approx(0.5, abs=1e-4)  # half the frame predicted: capped
    assert res["ciou_adaptive"] == 1.0 and res["pointing"]


def test_gt_map_protocols_and_bad_boxes():
    one = loc.gt_map([[0, 0, 0.5, 0.5]], "flickr")
    assert one.max() == 0.5  # a single annotator counts half
    two = loc.gt_map([[0, 0, 0.5, 0.5], [0.25, 0, 0.75, 0.5]], "flickr")
    assert two[0, 60] == 1.0 and two[0, 10] == 0.5 and two[0, 150] == 0.5
    union = loc.gt_map([[0, 0, 0.5, 0.5], [0.25, 0, 0.75, 0.5]], "vggss")
    assert set(np.unique(union)) == {0.0, 1.0} and union.sum() == 112 * 168
    assert loc.gt_map([[0.38, 0.86, 0.70, -2.88e16]]).sum() == 0  # as published in vggss.json


def test_baselines_shapes():
    c = loc.centre_prior()
    assert c.shape == (S, S) and np.unravel_index(c.argmax(), c.shape) == (111, 111)
    r1, r2 = loc.random_maps(3, (4, 5), seed=7), loc.random_maps(3, (4, 5), seed=7)
    assert r1.shape == (3, 4, 5) and np.array_equal(r1, r2)


# ---- annotation parsers --------------------------------------------------------------------------

FLICKR_XML = """<?xml version="1.0"?>
<annotation>
  <filename>{name}.jpg</filename>
  <object><bbox><label>1</label><xmin>{a}</xmin><ymin>0</ymin><xmax>128</xmax><ymax>64</ymax></bbox></object>
  <object><bbox><label>2</label><xmin>64</xmin><ymin>32</ymin><xmax>256</xmax><ymax>256</ymax></bbox></object>
</annotation>
"""


def test_flickr_xml_parser(tmp_path):
    path = tmp_path / "10000130166.xml"
    path.write_text(FLICKR_XML.format(name="10000130166", a=0))
    boxes = read_flickr_xml(path)
    assert boxes == [[0, 0, 0.5, 0.25], [0.25, 0.125, 1.0, 1.0]]
    gt = loc.gt_map(boxes, "flickr")
    assert gt[40, 100] == 1.0 and gt[10, 10] == 0.5 and gt[200, 200] == 0.5
    # int(224 * v / 256) as in the reference: xmax 128 -> column 112 is the first left out
    assert gt[10, 111] == 0.5 and gt[10, 112] == 0.0
    bad = tmp_path / "bad.xml"
    bad.write_text(FLICKR_XML.format(name="x", a="left"))
    with pytest.raises(ManifestError, match="bad.xml"):
        read_flickr_xml(bad)
    (tmp_path / "empty.xml").write_text("<annotation/>")
    with pytest.raises(ManifestError, match="no <bbox>"):
        read_flickr_xml(tmp_path / "empty.xml")


@pytest.mark.parametrize(
    "text,reason",
    [
        (json.dumps([{"file": "a", "bbox": [[0, 0, 1]]}]), "a box needs 4 coordinates, got 3"),
        ('[{"file": "a",\n', "v.json:2: not JSON"),
        ('{"a": [[0, 0, 1, 1]]}', "v.json: expected a JSON list of objects"),
    ],
)
def test_vggss_parser_errors(tmp_path, text, reason):
    path = tmp_path / "v.json"
    path.write_text(text)
    with pytest.raises(ManifestError, match=re.escape(reason)):
        read_vggss(path)


def test_real_annotation_files(shared_data):
    meta = shared_data / "localization-meta"
    boxes = read_vggss(meta / "vggss.json")
    assert len(boxes) == 5158 and boxes["zpWuikVorYg_000032"] == [[0.403125, 0.253125, 0.6, 0.75]]
    test_ids = read_flickr_ids(meta / "vggss_test.csv")
    assert len(test_ids) == 5158 and set(test_ids) <= set(boxes)
    empty = [f for f, b in boxes.items() if loc.gt_map(b).sum() == 0]
    assert len(empty) < 5  # a few published boxes are degenerate
    flickr = read_flickr_ids(meta / "flickr_test.csv")
    assert len(flickr) == 249 and flickr[0] == "10000130166"


def test_safe_name():
    assert safe_name(3, "../../etc/pass wd") == "00003_etc_pass_wd.png"
    assert safe_name(0, "///") == "00000_item.png"


# ---- end to end ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def contrastive_run(tiny_cache, tmp_path_factory):
    base = tmp_path_factory.mktemp("loc-runs")
    sets = [*TINY, "train.steps=2", "train.eval_every=2", f"train.runs_dir={base}"]
    args = ["--config", str(ROOT / "configs/contrastive.yaml"), "--no-progress"]
    assert train.main(args + [a for s in sets for a in ("--set", s)]) == 0
    return next(base.iterdir())


def test_cli_localize_end_to_end(contrastive_run, tmp_path, capsys):
    out_dir = tmp_path / "maps"
    argv = ["localize", "--checkpoint", str(contrastive_run), "--out-dir", str(out_dir)]
    assert evaluate.main([*argv, "--no-progress"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    keys = {"ciou@0.5", "auc", "mean_ciou", "pointing", "ciou_adaptive@0.5", "auc_adaptive", "n"}
    assert keys | {"baselines"} <= set(res) and res["n"] == 4
    for name in ("center", "random"):
        assert keys <= set(res["baselines"][name])
    for key in keys - {"n"}:
        assert 0.0 <= res[key] <= 1.0
    pngs = sorted(out_dir.glob("*.png"))
    assert len(pngs) == 4 and Image.open(pngs[0]).size == (S, S)
    # the folder now holds the first run's maps: writing into it again takes --force
    assert evaluate.main([*argv, "--protocol", "flickr", "--no-progress", "--force"]) == 0
    flickr = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert flickr["protocol"] == "flickr" and flickr["n"] == 4
    # same maps; one source box counts half under flickr, which changes the cIoU
    assert flickr["mean_ciou"] != res["mean_ciou"] and flickr["pointing"] == res["pointing"]


def test_cli_localize_keeps_items_whose_boxes_draw_nothing(contrastive_run, tmp_path, capsys):
    # as the reference code: a clip annotated with zero-area boxes only stays in the test set
    # and scores 0; a clip without annotation is not an item
    cfg = load_config(contrastive_run / "config.yaml")
    store = load_split(cfg.data, "test", train=False, progress=False).store
    rows = [replace(r, video=str(resolve(store.manifest, r.video))) for r in store.rows]
    rows[0] = replace(rows[0], boxes={"sources": []})
    rows[1] = replace(rows[1], boxes=None)
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, rows)
    argv = ["localize", "--checkpoint", str(contrastive_run), "--no-progress"]
    assert evaluate.main([*argv, "--data", str(manifest)]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (res["n"], res["no_box"], res["empty_gt"]) == (3, 1, 1)
    assert evaluate.main(argv) == 0
    full = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (full["n"], full["no_box"], full["empty_gt"]) == (4, 0, 0)


def _prepare_both(run: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The run's test clips through ``prepare.py flickr`` and ``prepare.py vggss`` with the same
    two boxes per clip: the clip's source box and a second annotator's top half of the frame
    (their consensus and their union then differ). Returns the two manifests."""
    import shutil

    cfg = load_config(run / "config.yaml")
    store = load_split(cfg.data, "test", train=False, progress=False).store
    media, ann = tmp_path / "media", tmp_path / "ann"
    media.mkdir()
    ann.mkdir()
    entries = []
    for r in store.rows:
        shutil.copy(resolve(store.manifest, r.video), media / f"{r.id}.mp4")
        # pixels of a 1000x1000 frame, so that both files give the same normalised boxes
        px = [[round(v * 1000) for v in r.boxes["sources"][0]], [0, 0, 1000, 500]]
        objects = "".join(
            "<object><bndbox>" + "".join(f"<{k}>{v}</{k}>" for k, v in zip(XY, b, strict=True))
            + "</bndbox></object>"
            for b in px
        )  # fmt: skip
        size = "<size><width>1000</width><height>1000</height></size>"
        (ann / f"{r.id}.xml").write_text(f"<annotation>{size}{objects}</annotation>")
        entries.append({"file": r.id, "class": "c", "bbox": [[v / 1000 for v in b] for b in px]})
    (tmp_path / "ids.csv").write_text("".join(f"{r.id}\n" for r in store.rows))
    (tmp_path / "vggss.json").write_text(json.dumps(entries))
    flk, vgg = tmp_path / "flickr", tmp_path / "vggss"
    assert flickr_prep.main(["--ids", str(tmp_path / "ids.csv"), "--media", str(media),
                             "--annotations", str(ann), "--out", str(flk)]) == 0  # fmt: skip
    assert vggss_prep.main(["--annotations", str(tmp_path / "vggss.json"), "--media", str(media),
                            "--out", str(vgg)]) == 0  # fmt: skip
    return flk / "manifest.jsonl", vgg / "manifest.jsonl"


XY = ("xmin", "ymin", "xmax", "ymax")
SCORES = ("ciou@0.5", "auc", "mean_ciou", "pointing", "ciou_adaptive@0.5", "auc_adaptive", "n")


def _localize(capsys, run: Path, manifest: Path, *extra: str) -> dict:
    argv = ["localize", "--checkpoint", str(run), "--data", str(manifest), "--no-progress"]
    assert evaluate.main([*argv, *extra]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return {k: res[k] for k in (*SCORES, "baselines", "protocol", "protocol_items")}


def test_cli_flickr_manifest_is_scored_with_the_flickr_protocol(contrastive_run, tmp_path, capsys):
    flk, vgg = _prepare_both(contrastive_run, tmp_path)
    auto = _localize(capsys, contrastive_run, flk)
    assert auto == _localize(capsys, contrastive_run, flk, "--protocol", "flickr")
    assert auto["protocol"] == "flickr" and auto["protocol_items"] == {"flickr": 4, "vggss": 0}
    union = _localize(capsys, contrastive_run, flk, "--protocol", "vggss")  # asked: allowed
    assert union["protocol"] == "vggss" and union["protocol_items"] == {"flickr": 0, "vggss": 4}
    # same maps, same boxes: only the ground truth differs
    assert union["pointing"] == auto["pointing"] and union["mean_ciou"] != auto["mean_ciou"]
    assert union["baselines"]["center"]["mean_ciou"] != auto["baselines"]["center"]["mean_ciou"]
    # a VGG-SS manifest of the same clips and boxes: auto is the union
    vggss_auto = _localize(capsys, contrastive_run, vgg)
    assert vggss_auto == _localize(capsys, contrastive_run, vgg, "--protocol", "vggss") == union


def test_cli_mixed_manifest_records_the_protocols(contrastive_run, tmp_path, capsys):
    flk, vgg = _prepare_both(contrastive_run, tmp_path)
    rows = [
        replace(r, id=f"{tag}-{r.id}", image=None, video=str(resolve(m, r.visual)))
        for tag, m in (("f", flk), ("v", vgg))
        for r in read_manifest(m)
    ]
    mixed = tmp_path / "mixed.jsonl"
    write_manifest(mixed, rows)
    res = _localize(capsys, contrastive_run, mixed)
    assert res["protocol"] == "mixed" and res["protocol_items"] == {"flickr": 4, "vggss": 4}


def test_item_protocol_picks_annotators_for_flickr():
    box, other = [0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.6, 0.6]
    flickr_row = {"sources": [box], "annotators": [other]}
    old_row = {"sources": [box]}  # a Flickr manifest written before "annotators" existed
    assert item_protocol(flickr_row, "auto") == ("flickr", [other])
    assert item_protocol(flickr_row, "vggss") == ("vggss", [box])
    assert item_protocol(old_row, "auto") == ("vggss", [box])
    assert item_protocol(old_row, "flickr") == ("flickr", [box])


def test_cli_result_survives_a_report_that_cannot_be_written(contrastive_run, tmp_path, capsys):
    # a run folder whose report.md cannot be appended to (read-only for another user; here a
    # folder in its place, which stops root too): a warning, and the result still printed
    report = contrastive_run / "report.md"
    saved = report.read_bytes() if report.exists() else None
    report.unlink(missing_ok=True)
    report.mkdir()
    try:
        argv = ["localize", "--checkpoint", str(contrastive_run), "--no-progress"]
        assert evaluate.main(argv) == 0
        cap = capsys.readouterr()
        assert json.loads(cap.out.strip().splitlines()[-1])["n"] == 4
        assert "warning: " in cap.err and "report.md: not updated" in cap.err
    finally:
        report.rmdir()
        if saved is not None:
            report.write_bytes(saved)


@pytest.mark.parametrize("method", ["l3", "avenet"])
def test_cli_method_without_map_is_one_line_error(method, tmp_path, capsys):
    cfg = Config()
    cfg.model.method = method
    path = save_checkpoint(
        tmp_path / "m.pt",
        {"model": build_model(cfg.model, cfg.data).state_dict(), "config": to_dict(cfg)},
    )
    assert evaluate.main(["localize", "--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(path) in err and "no localisation map" in err
    assert len(err.strip().splitlines()) == 1


def test_a_flipped_numpy_view_scores_as_its_copy():
    from avssl.eval.localization import normalise_map

    h = np.random.default_rng(0).random((7, 7)).astype(np.float32)
    np.testing.assert_array_equal(normalise_map(h[:, ::-1]), normalise_map(h[:, ::-1].copy()))


def test_cli_records_what_changes_its_numbers(contrastive_run, tmp_path, capsys):
    # --frame-size, --precision and --seed change the figures: the JSON and the report's heading
    # say which were used
    argv = ["localize", "--checkpoint", str(contrastive_run), "--no-progress"]
    assert evaluate.main([*argv, "--frame-size", "48", "--seed", "3", "--precision", "bf16"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (res["frame_size"], res["baseline_seed"], res["precision"]) == (48, 3, "bf16")
    assert (
        "## Localisation (vggss, test, frame 48, seed 3, bf16)"
        in (contrastive_run / "report.md").read_text()
    )
    assert evaluate.main(argv) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (res["frame_size"], res["baseline_seed"], res["precision"]) == (32, 0, "fp32")


def test_cli_out_dir_fails_before_the_work_or_after_the_result(contrastive_run, tmp_path, capsys):
    argv = ["localize", "--checkpoint", str(contrastive_run), "--no-progress"]
    same = str(tmp_path / "same")
    assert evaluate.main([*argv, "--out", same, "--out-dir", same]) == 2
    cap = capsys.readouterr()
    assert not cap.out and cap.err.strip().endswith("the JSON needs a file of its own")
    assert evaluate.main([*argv, "--out-dir", "/proc/avssl-no/maps"]) == 2  # cannot be made
    cap = capsys.readouterr()
    assert not cap.out and "--out-dir cannot be made" in cap.err.strip().splitlines()[-1]
    # a PNG that cannot be written (a folder in its place) comes after the result is printed
    cfg = load_config(contrastive_run / "config.yaml")
    first = load_split(cfg.data, "test", train=False, progress=False).store.rows[0]
    maps = tmp_path / "maps"
    (maps / safe_name(0, first.id)).mkdir(parents=True)
    assert evaluate.main([*argv, "--out-dir", str(maps), "--force"]) == 2
    cap = capsys.readouterr()
    assert json.loads(cap.out.strip().splitlines()[-1])["n"] == 4
    assert cap.err.strip().splitlines()[-1].endswith("; the result is on stdout")


def test_cli_a_manifest_without_a_test_split_says_so(contrastive_run, tmp_path, capsys):
    cfg = load_config(contrastive_run / "config.yaml")
    store = load_split(cfg.data, "test", train=False, progress=False).store
    rows = [
        replace(r, video=str(resolve(store.manifest, r.video)), split="val") for r in store.rows
    ]
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, rows)
    argv = ["localize", "--checkpoint", str(contrastive_run), "--data", str(manifest)]
    assert evaluate.main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"error: {manifest}: split 'test' has no rows"


def test_cli_one_annotated_clip_is_scored(contrastive_run, tmp_path, capsys):
    # localisation forms no pairs: a one-image test set was refused as "need at least 2"
    cfg = load_config(contrastive_run / "config.yaml")
    store = load_split(cfg.data, "test", train=False, progress=False).store
    row = replace(store.rows[0], video=str(resolve(store.manifest, store.rows[0].video)))
    manifest = tmp_path / "one.jsonl"
    write_manifest(manifest, [row])
    argv = ["localize", "--checkpoint", str(contrastive_run), "--no-progress"]
    assert evaluate.main([*argv, "--data", str(manifest)]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["n"] == 1 and 0 <= res["pointing"] <= 1
    write_manifest(manifest, [replace(row, video=str(tmp_path / "gone.mp4"))])
    assert evaluate.main([*argv, "--data", str(manifest)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: {manifest}: split 'test' has no usable clip of its 1 (first: ")


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (4, 4), (8, 8), (3, 5)])
def test_a_flat_map_of_any_size_stays_flat_through_the_resize(shape):
    # float32 bilinear weights made a constant 2 x 2 map differ in its last bits after the resize;
    # min-max normalisation stretched that noise to [0, 1], which then scored as a real map
    gt = loc.gt_map([[0.1, 0.1, 0.6, 0.6]])
    for value in (0.1, 1234.567, -51.2):
        flat = np.full(shape, value, np.float32)
        assert not loc.normalise_map(flat).any()
        res = loc.score_item(flat, gt)
        assert res == {"ciou": 0.0, "ciou_adaptive": 0.0, "pointing": 0.0, "flat": True}


def test_a_bf16_tensor_map_scores_as_its_float32_copy():
    # the functions take tensors; a bf16 one (a model run under bf16) failed in .numpy()
    gt = loc.gt_map([[0.1, 0.1, 0.5, 0.5]])
    h = torch.rand(7, 7, generator=torch.Generator().manual_seed(0)).bfloat16()
    assert loc.score_item(h, gt) == loc.score_item(h.float(), gt)


def test_a_float64_map_is_thresholded_at_its_own_median_not_a_float32_rounding():
    # rounded to float32, 50,176 distinct values within 5e-5 of 1 collapse into a few hundred
    # levels, and the pixels tied with the median fell out of the prediction
    h = 1.0 + np.random.default_rng(0).permutation(loc.SIZE * loc.SIZE).reshape(224, 224) * 1e-9
    mask = loc.median_mask(loc.normalise_map(h))
    assert mask.sum() == loc.SIZE * loc.SIZE - loc.SIZE * loc.SIZE // 2 - 1
