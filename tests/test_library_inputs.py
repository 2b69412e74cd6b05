"""avssl used as a library (a notebook, a script): its functions on plain arrays and tensors, and
a bad input raised as a clear exception (never a silent wrong number or a deep traceback)."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch

from avssl.config import load_config
from avssl.errors import ConfigError, ManifestError
from avssl.eval import avc, localization, probe, retrieval_metrics
from avssl.features import build_audio_frontend

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("module", [avc, localization, probe, retrieval_metrics])
def test_metric_modules_name_their_public_functions(module):
    assert module.__all__ and all(
        callable(getattr(module, n)) or n.isupper() for n in module.__all__
    )
    for name in module.__all__:
        if callable(getattr(module, name)):
            assert getattr(module, name).__doc__, name


@pytest.mark.parametrize("shape", [(1, 14, 14), (14, 14, 1), (196,), (0, 14), (14, 0)])
def test_a_heatmap_that_is_not_one_map_is_refused(shape):
    gt = localization.gt_map([[0.1, 0.1, 0.6, 0.6]])
    with pytest.raises(ValueError, match=r"heatmap must be one map \[h, w\], got shape"):
        localization.score_item(np.ones(shape), gt)
    with pytest.raises(ValueError, match="heatmap must be one map"):  # one map, not a batch
        localization.localization_metrics(RNG.random((14, 14)), [gt] * 14)


def test_masks_and_ground_truths_of_other_shapes_are_refused_not_broadcast():
    gt = localization.gt_map([[0.1, 0.1, 0.6, 0.6]])
    # [224, 1] against [224, 224] broadcast and scored 0.25
    with pytest.raises(ValueError, match=r"mask must be \[224, 224\], got shape \[224, 1\]"):
        localization.ciou(np.ones((224, 1), bool), gt)
    with pytest.raises(ValueError, match=r"gt must be \[224, 224\], got shape \[14, 14\]"):
        localization.score_item(RNG.random((14, 14)), gt[:14, :14])
    mask = np.zeros((224, 224), bool)
    mask[:100, :100] = True
    assert localization.ciou(torch.from_numpy(mask), torch.from_numpy(gt)) == localization.ciou(
        mask, gt
    )


def test_success_metrics_of_no_item_is_an_error_not_nan():
    with pytest.raises(ValueError, match="M > 0"):
        localization.success_metrics([])


def test_gt_map_box_checks():
    with pytest.raises(ValueError, match="a box must be 4 numbers"):
        localization.gt_map([[0.1, 0.2, 0.3]])
    with pytest.raises(ValueError, match="a box must be 4 numbers"):
        localization.gt_map([0.1, 0.1, 0.5, 0.5])  # one box, not a list of boxes
    with pytest.warns(UserWarning, match="pixel coordinates"):
        drawn = localization.gt_map([[10, 10, 100, 100]])
    assert drawn.sum() == 0  # drawn as the reference draws it: the warning is what is new
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert localization.gt_map([[-0.005, 0.0, 1.005, 1.0]]).sum() == 224 * 224
        assert localization.gt_map([[0.5, 0.5, 1.4, 1.3]]).sum() == 112 * 112  # past the edge


def test_localization_metrics_take_tensors():
    maps = RNG.random((3, 7, 7))
    gts = [localization.gt_map([[0.2, 0.2, 0.7, 0.9]])] * 3
    assert localization.localization_metrics(
        torch.from_numpy(maps), gts
    ) == localization.localization_metrics(maps, gts)


@pytest.mark.parametrize(
    "relevant,exclude,message",
    [
        ((1, 8), None, r"relevant must have sim's shape \[5, 8\], got \[1, 8\]"),  # broadcast
        ((8,), None, r"relevant must have sim's shape \[5, 8\], got \[8\]"),
        ((8, 5), None, r"relevant must have sim's shape"),
        ((5, 8), (5, 7), r"exclude must have sim's shape \[5, 8\], got \[5, 7\]"),
    ],
)
def test_ranking_inputs_of_another_shape_are_refused(relevant, exclude, message):
    sim = RNG.random((5, 8))
    ex = None if exclude is None else np.zeros(exclude, bool)
    with pytest.raises(ValueError, match=message):
        retrieval_metrics.ranking_metrics(sim, RNG.random(relevant) > 0.5, ex)


def test_ranking_and_ndcg_shape_checks():
    with pytest.raises(ValueError, match=r"sim must be \[Q, G\]"):
        retrieval_metrics.ranking_metrics(RNG.random(8), RNG.random(8) > 0.5)
    with pytest.raises(ValueError, match=r"gains must have sim's shape \[5, 8\], got \[8\]"):
        retrieval_metrics.ndcg_at_k(RNG.random((5, 8)), RNG.random(8))
    sim, rel = RNG.random((5, 8)), RNG.random((5, 8)) > 0.5
    as_tensors = retrieval_metrics.ranking_metrics(torch.from_numpy(sim), torch.from_numpy(rel))
    assert as_tensors == retrieval_metrics.ranking_metrics(sim, rel)


def _avc_scores(n=20):
    return {
        "pos": RNG.normal(1, 1, n),
        "easy": RNG.normal(0, 1, n),
        "hard": RNG.normal(0.5, 1, n),
        "hard_valid": RNG.random(n) < 0.7,
    }


def test_avc_metrics_take_tensors_and_lists():
    scores = _avc_scores()
    want = avc.avc_metrics(scores, 0.5)
    assert avc.avc_metrics({k: torch.from_numpy(v) for k, v in scores.items()}, 0.5) == want
    assert avc.avc_metrics({k: list(v) for k, v in scores.items()}, 0.5) == want


def test_avc_hard_valid_of_integers_is_refused_not_used_as_indices():
    scores = _avc_scores()
    scores["hard_valid"] = scores["hard_valid"].astype(int)  # indexed rows 0 and 1: a wrong number
    for f in (lambda s: avc.avc_metrics(s, 0.5), avc.calibrate_threshold):
        with pytest.raises(ValueError, match=r"hard_valid'\] must be bool of scores\['hard'\]"):
            f(scores)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"hard_valid": np.ones(5, bool)}, r"must be bool of scores\['hard'\]'s shape \[20\]"),
        ({"pos": np.ones((20, 1))}, r"scores\['pos'\] must be 1-D \[M\], got shape \[20, 1\]"),
        ({"pos": np.array([])}, r"scores\['pos'\] is empty"),
    ],
)
def test_avc_malformed_scores_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        avc.avc_metrics({**_avc_scores(), **change}, 0.5)
    scores = _avc_scores()
    del scores["hard_valid"]
    with pytest.raises(ValueError, match="scores lacks hard_valid"):
        avc.avc_metrics(scores, 0.5)


def test_linear_probe_refuses_rows_that_do_not_match_and_takes_lists_and_tensors():
    x = RNG.normal(size=(24, 4))
    y, groups = np.repeat(np.arange(3), 8), np.tile(np.arange(4), 6)
    folds = probe.group_kfold(list(y), list(groups), 2)  # lists as well as arrays
    want = probe.linear_probe(x, y, groups, folds, False)
    # more feature rows than labels: the first rows were probed, without a word
    with pytest.raises(ValueError, match=r"y and groups must be \[C\] for the 48 rows of x"):
        probe.linear_probe(np.r_[x, x], y, groups, folds, False)
    with pytest.raises(ValueError, match=r"x must be \[C, D\] clip features, got shape \[24\]"):
        probe.linear_probe(x[:, 0], y, groups, folds, False)
    got = probe.linear_probe(
        torch.from_numpy(x), torch.from_numpy(y), groups.tolist(), folds, False
    )
    assert got == want
    with pytest.raises(ValueError, match="for the 24 rows of x"):
        probe.standardize_by_group(x, groups[:10])


def test_folds_of_integer_groups_in_numeric_order():
    folds = probe.leave_one_group_out(np.array([10, 2, 2, 10, 1]))  # failed: int has no isdigit
    assert [f.name for f in folds] == ["1", "2", "10"]
    assert probe.leave_one_group_out(["b", "a", "b"])[0].name == "a"


def test_read_manifest_refuses_an_unknown_split_and_names_a_folder(tmp_path):
    from avssl.data.manifest import read_manifest

    path = tmp_path / "manifest.jsonl"
    path.write_text(json.dumps({"id": "a", "video": "a.mp4", "split": "test"}) + "\n")
    assert len(read_manifest(path, "test")) == 1
    with pytest.raises(ManifestError, match="split must be one of train, val, test"):
        read_manifest(path, "tset")  # kept no row, without a word
    with pytest.raises(ManifestError, match="no such manifest .a folder: give its manifest"):
        read_manifest(tmp_path)


def test_load_config_refuses_overrides_given_as_one_string():
    assert load_config(None, ["train.steps=3"]).train.steps == 3
    with pytest.raises(ConfigError, match="overrides must be a list of key=value strings"):
        load_config(None, "train.steps=3")


def test_audio_front_end_refuses_a_sound_without_its_batch_axis():
    cfg = load_config(None)
    front = build_audio_frontend(cfg.model.audio, cfg.data.sample_rate).eval()
    assert front(torch.zeros(2, 16000)).shape == (2, 1, 40, 49)
    with pytest.raises(ValueError, match=r"wave must be \[B, N\] .*got \[16000\]"):
        front(torch.zeros(16000))  # came out [40, 1, 49]


@pytest.mark.parametrize("hop", [0, -1, float("nan"), float("inf"), True, "0.1"])
def test_embed_file_refuses_a_hop_that_is_not_positive(hop, media_factory):
    from avssl.models import build_model
    from avssl.tools.index_media import embed_file

    cfg = load_config(None, ["model.channels=[8,16]", "model.embed_dim=16"])
    model = build_model(cfg.model, cfg.data, cfg.loss).eval()
    path = media_factory("tone.wav", duration=1.5)
    # hop 0 or below was one sample: a window for every sample of the file
    with pytest.raises(ValueError, match="hop must be a positive number of seconds"):
        embed_file(model, cfg, path, hop=hop)
    assert embed_file(model, cfg, path, hop=np.float32(0.25)).audio.shape[0] == 3


@pytest.mark.parametrize("center", [False, True])
def test_audio_front_end_names_the_shortest_wave_it_takes(center):
    """torch.stft's error named only the padded size; one frame is the least the front end reads
    (``win_length``; with ``center``, more than ``n_fft // 2`` for the reflection)."""
    cfg = load_config(None)
    feat = dataclasses.replace(cfg.model.audio, center=center)
    front = build_audio_frontend(feat, cfg.data.sample_rate).eval()
    shortest = feat.n_fft // 2 + 1 if center else feat.win_length
    assert front(torch.zeros(2, shortest)).shape[:3] == (2, 1, feat.n_mels)
    with pytest.raises(ValueError, match=f"a wave of {shortest - 1} samples is shorter than one"):
        front(torch.zeros(2, shortest - 1))
