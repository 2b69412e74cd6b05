"""AVC accuracy: the threshold rule, the metrics and the pair scoring against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avssl.eval.avc import avc_metrics, calibrate_threshold, score_pairs


def random_scores(seed: int, n: int = 40, valid_share: float = 0.5) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "pos": rng.normal(1.0, 1.0, n).round(1),  # rounded: ties between and within the sets
        "easy": rng.normal(0.0, 1.0, n).round(1),
        "hard": rng.normal(0.5, 1.0, n).round(1),
        "hard_valid": rng.random(n) < valid_share,
    }


def brute_accuracy(scores: dict, thr: float) -> float:
    pos = [s >= thr for s in scores["pos"]]
    easy = [s < thr for s in scores["easy"]]
    hard = [s < thr for s, ok in zip(scores["hard"], scores["hard_valid"], strict=True) if ok]
    acc_easy = (np.mean(pos) + np.mean(easy)) / 2
    return (acc_easy + (np.mean(pos) + np.mean(hard)) / 2) / 2 if hard else acc_easy


@pytest.mark.parametrize("seed,valid_share", [(0, 0.5), (1, 0.0), (2, 1.0)])
def test_threshold_maximises_accuracy_over_every_cut(seed, valid_share):
    scores = random_scores(seed, valid_share=valid_share)
    thr = calibrate_threshold(scores)
    grid = np.unique(np.r_[scores["pos"], scores["easy"], scores["hard"]])
    cuts = np.r_[grid - 0.05, grid, grid + 0.05]  # scores are on a 0.1 lattice
    best = max(brute_accuracy(scores, c) for c in cuts)
    assert avc_metrics(scores, thr)["accuracy"] == pytest.approx(best)
    assert brute_accuracy(scores, thr) == pytest.approx(best)


def test_invalid_hard_scores_change_nothing():
    scores = random_scores(3)
    other = dict(scores, hard=np.where(scores["hard_valid"], scores["hard"], np.nan))
    assert calibrate_threshold(other) == calibrate_threshold(scores)
    garbage = dict(scores, hard=np.where(scores["hard_valid"], scores["hard"], 99.0))
    assert calibrate_threshold(garbage) == calibrate_threshold(scores)
    m = avc_metrics(other, 0.3)
    assert m == avc_metrics(scores, 0.3) and np.isfinite(m["roc_auc_hard"])


def test_bf16_tensor_scores_are_read_as_float32():
    # tensors are accepted; bf16 ones (a model scored under bf16) failed in .numpy()
    scores = random_scores(5)
    bf16 = {k: torch.as_tensor(v).bfloat16() if k != "hard_valid" else torch.as_tensor(v)
            for k, v in scores.items()}  # fmt: skip
    f32 = {k: v.float() if k != "hard_valid" else v for k, v in bf16.items()}
    assert avc_metrics(bf16, 0.3) == avc_metrics(f32, 0.3)
    assert calibrate_threshold(bf16) == calibrate_threshold(f32)


def test_roc_auc_is_the_share_of_correctly_ordered_pairs():
    scores = random_scores(4, valid_share=1.0)
    pos, easy = scores["pos"], scores["easy"]
    pairs = [(p > e) + 0.5 * (p == e) for p in pos for e in easy]
    assert avc_metrics(scores, 0.0)["roc_auc_easy"] == pytest.approx(np.mean(pairs))


def test_a_score_equal_to_the_threshold_is_a_match():
    # the rule "score >= threshold is a match" at the boundary, in all three sets
    scores = {
        "pos": np.array([0.5, 0.2, 0.9, 0.5]),
        "easy": np.array([0.5, 0.1, -0.3, 0.7]),
        "hard": np.array([0.5, 0.6, 0.0, 0.5]),
        "hard_valid": np.array([True, True, True, False]),
    }
    m = avc_metrics(scores, 0.5)
    pos = np.mean([s >= 0.5 for s in scores["pos"]])  # 3 / 4
    easy = np.mean([s < 0.5 for s in scores["easy"]])  # 2 / 4
    hard = np.mean([s < 0.5 for s in scores["hard"][:3]])  # 1 / 3
    assert m["accuracy_positive"] == pytest.approx(pos) and pos == 0.75
    assert m["accuracy_easy"] == pytest.approx((pos + easy) / 2)
    assert m["accuracy_hard"] == pytest.approx((pos + hard) / 2)
    assert m["accuracy"] == pytest.approx(brute_accuracy(scores, 0.5))


class CountingModel(torch.nn.Module):
    """Scores a pair by the dot product of the frame's mean pixel and the sound's first sample."""

    def __init__(self):
        super().__init__()
        self.audio_passes = 0

    def visual_codes(self, frames):
        return frames.flatten(1).mean(1)

    def audio_codes(self, wave):
        self.audio_passes += 1
        return wave[:, 0]

    def pair_scores(self, visual, audio):
        return visual * audio

    def cross_scores(self, visual, audio):  # [F], [A] -> [A, F]
        return audio[:, None] * visual[None, :]


def items(n: int, valid) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [
        {
            "frames": torch.randint(0, 256, (3, 4, 4), dtype=torch.uint8, generator=g),
            "audio": torch.rand(8, generator=g),
            "audio_easy": torch.rand(8, generator=g),
            "audio_hard": torch.rand(8, generator=g),
            "hard_valid": torch.tensor(bool(valid[i])),
        }
        for i in range(n)
    ]


def test_score_pairs_skips_the_audio_pass_of_batches_without_a_shifted_sound():
    valid = [False] * 4 + [True, False, True, False]  # batch 1: none valid; batch 2: mixed
    ds, model = items(8, valid), CountingModel()
    scores = score_pairs(model, ds, "cpu", batch_size=4)
    assert model.audio_passes == 2 + 3  # pos and easy for each batch, hard for the second only
    assert np.isnan(scores["hard"][~scores["hard_valid"]]).all()
    for key, audio_key in (("pos", "audio"), ("easy", "audio_easy"), ("hard", "audio_hard")):
        want = [float(x["frames"].float().div(255).mean() * x[audio_key][0]) for x in ds]
        got = scores[key]
        keep = scores["hard_valid"] if key == "hard" else np.ones(8, bool)
        assert np.allclose(got[keep], np.array(want)[keep], atol=1e-6)


def test_cohort_centring_subtracts_each_sounds_top_k_cohort_mean():
    # score - mean of the sound's k best scores against the cohort (not +)
    ds, model = items(6, [True] * 6), CountingModel()
    cohort = torch.tensor([0.9, -0.4, 0.3, 0.7, -1.0])  # cohort codes: mean pixels
    got = score_pairs(model, ds, "cpu", batch_size=4, cohort=cohort, cohort_top=2)
    for key, audio_key in (("pos", "audio"), ("easy", "audio_easy"), ("hard", "audio_hard")):
        for i, x in enumerate(ds):
            sound = float(x[audio_key][0])
            plain = float(x["frames"].float().div(255).mean()) * sound
            offset = np.mean(sorted((sound * c for c in cohort.tolist()), reverse=True)[:2])
            assert got[key][i] == pytest.approx(plain - offset, abs=1e-6), (key, i)
