"""avssl used as a library (a notebook, a script): its functions on plain arrays and tensors, and
a bad input raised as a clear exception (never a silent wrong number or a deep traceback)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from avssl.eval import avc, localization, probe, retrieval_metrics

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("module", [avc, localization, probe, retrieval_metrics])
def test_metric_modules_name_their_public_functions(module):
    assert module.__all__ and all(
        callable(getattr(module, n)) or n.isupper() for n in module.__all__
    )
    for name in module.__all__:
        if callable(getattr(module, name)):
            assert getattr(module, name).__doc__, name


@pytest.mark.parametrize("shape", [(1, 14, 14), (14, 14, 1), (196,)])
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
