"""``avssl report`` against its inputs: the gallery scores clips as ``evaluate.py retrieval`` does,
the run's manifest and media are never overwritten, and the curves compare like with like."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY

from avssl import cli
from avssl.config import load_config, to_dict
from avssl.data.manifest import read_manifest
from avssl.data.source import load_split, manifest_path
from avssl.eval.cca import cca_project, fit_cca
from avssl.eval.retrieval import centre_pairs, embed_pairs, similarities
from avssl.models import build_model
from avssl.tools import report_figures as figures
from avssl.tools import report_gallery as gal
from avssl.train.checkpoint import load_model, save_checkpoint


def _checkpoint(path: Path, method: str, *sets: str) -> Path:
    """A random-weight checkpoint of ``method`` on the tiny synthetic world (frames of 32 px,
    below the gallery's 96-px thumbnails)."""
    cfg = load_config(None, [s for s in TINY if s.startswith(("data.", "model."))] + list(sets))
    cfg.model.method = method
    model = build_model(cfg.model, cfg.data, cfg.loss)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(path, {"model": model.state_dict(), "config": to_dict(cfg)})


def _evaluate_a2v(model, cfg) -> np.ndarray:
    """The a2v similarities of ``evaluate.py retrieval`` (its decoding, its CCA)."""

    def embed(split):
        ds = load_split(cfg.data, split, train=False, progress=False)
        return embed_pairs(model, *centre_pairs(ds.store, cfg.data.frame_size))

    emb = embed("test")
    if cfg.model.method == "l3":
        train = embed("train")
        emb = cca_project(fit_cca(train["audio"], train["visual"]), emb)
    return similarities(emb)["a2v"]


@pytest.mark.parametrize("method", ["contrastive", "l3"])
def test_gallery_scores_equal_evaluate(method, tiny_cache, tmp_path):
    model, cfg, _ = load_model(_checkpoint(tmp_path / "m.pt", method), "cpu")
    assert cfg.data.frame_size < gal.THUMB
    expect = _evaluate_a2v(model, cfg)
    manifest = manifest_path(cfg.data, progress=False)
    rows = read_manifest(manifest)
    test = [r for r in rows if r.split == "test"]
    # the training split fits in --max-clips: CCA is fitted on the clips evaluate.py uses
    train = gal.centre_clips([r for r in rows if r.split == "train"], manifest, cfg.data, 99)
    clips = gal.centre_clips(test, manifest, cfg.data, 99)
    assert [r.id for r in clips.rows] == [r.id for r in test]
    assert clips.thumbs.shape[1:] == (gal.THUMB, gal.THUMB, 3)
    sim = gal.a2v_similarity(model, method, clips, train, "cpu")
    np.testing.assert_allclose(sim, expect, atol=1e-5)
    if method == "contrastive":  # a subset of the test clips: the same scores, pair by pair
        part = gal.centre_clips(test, manifest, cfg.data, 3)
        idx = [[r.id for r in test].index(r.id) for r in part.rows]
        sub = gal.a2v_similarity(model, method, part, None, "cpu")
        np.testing.assert_allclose(sub, expect[np.ix_(idx, idx)], atol=1e-5)


@pytest.fixture
def run_on_own_data(tiny_cache, tmp_path):
    """A run whose checkpoint points at a copy of the tiny world (never named on the command
    line): ``(run_dir, manifest)``."""
    cfg = load_config(None, [s for s in TINY if s.startswith("data.")])
    data = tmp_path / "data"
    shutil.copytree(manifest_path(cfg.data, progress=False).parent, data)
    run = tmp_path / "run"
    _checkpoint(run / "best.pt", "contrastive", f"data.root={data / 'manifest.jsonl'}")
    return run, data / "manifest.jsonl"


def test_report_never_overwrites_its_manifest_or_media(run_on_own_data, tmp_path, capsys):
    run, manifest = run_on_own_data
    media = manifest.parent / read_manifest(manifest)[0].visual
    link = tmp_path / "link.html"
    link.symlink_to(manifest)
    for out in (manifest, media, link):
        before = out.read_bytes()
        assert cli.main(["report", str(run), "-o", str(out), "--force"]) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and out.read_bytes() == before, err
        if out != link:  # refused by its name: a page is named .html
            assert err == f"error: {out}: -o writes an HTML page: name it .html or .htm\n"
            continue
        assert err.startswith(f"error: {out}: is ") and "--force never overwrites it" in err
    # an empty name (an unset variable) is not the default file; a trailing slash is a folder
    for out, reason in (("", "-o: an empty file name"), (f"{tmp_path}/x.html/", "names a folder")):
        assert cli.main(["report", str(run), "-o", out]) == 2
        err = capsys.readouterr().err
        assert reason in err and len(err.splitlines()) == 1, err
    assert not (run / "report.html").exists() and not (tmp_path / "x.html").exists()
    # the same data named with --data, and an ordinary output beside it: written
    fine = manifest.parent / "page.html"
    fine.write_text("old")
    assert cli.main(["report", str(run), "-o", str(fine), "--force", "--data", str(manifest)]) == 0
    assert fine.read_text().startswith("<!DOCTYPE html>")


def test_accuracy_curves_compare_like_with_like():
    rows = [
        {"split": "train", "step": 1, "loss": 2.0, "acc": 0.1, "acc_easy": 0.6, "acc_hard": 0.5},
        {"split": "train", "step": 2, "loss": 1.5, "acc": 0.2, "acc_easy": 0.7, "acc_hard": 0.55},
        {"split": "val", "step": 2, "accuracy": 0.7, "accuracy_easy": 0.8, "accuracy_hard": 0.6},
    ]
    (_, loss), (ylabel, acc) = figures.plotted_series(rows)
    assert [label for label, _, _ in loss] == ["train loss"]
    assert "balanced accuracy" in ylabel
    got = {label: values for label, _, values in acc}
    # train acc (in-batch top-1 for contrastive models) is not on the axis
    assert 0.1 not in sum(got.values(), [])
    assert got == {
        "train, easy neg.": [0.6, 0.7],
        "val, easy neg.": [0.8],
        "train, hard neg.": [0.5, 0.55],
        "val, hard neg.": [0.6],
        "val AVC accuracy (mean of easy, hard)": [0.7],
    }
    # every train series has its val counterpart: the same kind of negatives
    for split, key, label in figures.ACC_SERIES:
        if split == "train":
            assert key.startswith("acc_") and ("val", f"accuracy_{key[4:]}") in {
                (s, k) for s, k, _ in figures.ACC_SERIES
            }
            assert label.startswith("train, ") and label.endswith(key[4:] + " neg.")
    assert figures.curves_png(rows)[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_gallery_of_unusable_clips_says_why(tiny_cache, tmp_path, capsys):
    # no test clip decodes: the page's note gives the first clip's reason
    run = tmp_path / "run"
    _checkpoint(run / "best.pt", "contrastive")
    data = tmp_path / "gone.jsonl"
    rows = [f'{{"id": "{n}", "video": "{n}.mp4", "split": "test"}}\n' for n in "ab"]
    data.write_text("".join(rows))
    assert cli.main(["report", str(run), "--data", str(data)]) == 0
    capsys.readouterr()
    page = (run / "report.html").read_text()
    assert f"{data}: 0 usable test clip(s), need at least 2; first skipped: " in page
    assert "a.mp4: no such file" in page
