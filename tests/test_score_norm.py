"""Cohort centring of AVC scores and threshold recalibration (``evaluate.py avc --cohort``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_models import load, make_batch

import evaluate
import train
from avssl.errors import AvsslError
from avssl.eval.score_norm import cohort_offsets
from avssl.train.checkpoint import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["l3", "avenet", "avolnet", "contrastive", "contrastive-flat"])
def test_cross_scores_agree_with_pair_scores(name):
    cfg, model = load(name.removesuffix("-flat"))
    if name.endswith("-flat"):
        cfg.model.spatial = False
        torch.manual_seed(0)
        model = type(model)(cfg.model, cfg.data, cfg.loss)
    model.eval()
    batch = make_batch(cfg, 5)
    frames, wave = batch["frames"], batch["audio"]
    with torch.no_grad():
        cross = model.cross_scores(model.visual_codes(frames[:3]), model.audio_codes(wave))
        assert cross.shape == (5, 3)
        for i in range(5):  # sound i against each frame j, one pair at a time
            for j in range(3):
                ref = model.score(frames[j : j + 1], wave[i : i + 1])[0]
                torch.testing.assert_close(cross[i, j], ref.float(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("top", [1, 3, 4])
def test_cohort_offsets_against_brute_force(top):
    cfg, model = load("contrastive")
    model.eval()
    batch = make_batch(cfg, 4, seed=1)
    cohort_frames, wave = batch["frames"], batch["audio"][:3]
    with torch.no_grad():
        got = cohort_offsets(model, wave, model.visual_codes(cohort_frames), top)
        for i in range(3):
            s = torch.stack([model.score(f[None], wave[i : i + 1])[0] for f in cohort_frames])
            want = s.sort(descending=True).values[:top].mean()
            torch.testing.assert_close(got[i], want, rtol=1e-5, atol=1e-6)


class _Louder:
    """A model whose every score of a sound is raised by ``10 * wave[:, 0]`` (a voice offset)."""

    def __init__(self, model):
        self.m = model

    def score(self, frames, wave):
        return self.m.score(frames, wave) + 10 * wave[:, 0]

    def audio_codes(self, wave):
        return self.m.audio_codes(wave), wave[:, 0]

    def cross_scores(self, visual, audio):
        codes, shift = audio
        return self.m.cross_scores(visual, codes) + 10 * shift[:, None]


def test_centring_removes_a_per_sound_offset():
    cfg, model = load("contrastive")
    model.eval()
    batch = make_batch(cfg, 6, seed=2)
    frames, wave = batch["frames"][:3], batch["audio"][:3]
    codes = model.visual_codes(batch["frames"][3:])
    with torch.no_grad():
        plain = model.score(frames, wave) - cohort_offsets(model, wave, codes, 2)
        louder = _Louder(model)
        shifted = louder.score(frames, wave) - cohort_offsets(louder, wave, codes, 2)
        assert not torch.allclose(louder.score(frames, wave), model.score(frames, wave))
    torch.testing.assert_close(shifted, plain, rtol=1e-4, atol=1e-5)


def test_cohort_top_out_of_range_is_an_error():
    cfg, model = load("contrastive")
    batch = make_batch(cfg, 2)
    codes = model.visual_codes(batch["frames"])
    with pytest.raises(AvsslError, match="between 1 and the cohort size 2"):
        cohort_offsets(model, batch["audio"], codes, 3)


def _last(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_avc_recalibrate_and_cohort(tiny_train_args, capsys):
    assert train.main(["--config", str(ROOT / "configs/contrastive.yaml"), *tiny_train_args()]) == 0
    run = Path(_last(capsys)["run_dir"])
    stored = float(load_checkpoint(run / "best.pt")["model"]["decision_threshold"])
    base = ["avc", "--checkpoint", str(run), "--no-progress"]

    assert evaluate.main(base) == 0
    plain = _last(capsys)
    assert plain["threshold_from"] == "checkpoint" and plain["threshold"] == pytest.approx(stored)
    # the training loop chose the stored threshold on val by the same rule: recalibrating there
    # must find it again
    assert evaluate.main([*base, "--recalibrate", "val"]) == 0
    again = _last(capsys)
    assert again["threshold_from"].startswith("val (") and again["threshold"] == pytest.approx(
        stored, abs=1e-6
    )
    assert again["accuracy"] == pytest.approx(plain["accuracy"])

    assert evaluate.main([*base, "--cohort", "4", "--cohort-top", "2"]) == 0
    centred = _last(capsys)
    assert centred["cohort"] == 4 and centred["cohort_top"] == 2
    assert centred["threshold_from"].startswith("val (")
    assert centred["n"] == plain["n"]

    assert evaluate.main([*base, "--cohort", "4"]) == 0  # top defaults to the whole cohort here
    assert _last(capsys)["cohort_top"] == 4
    assert evaluate.main([*base, "--cohort", "4", "--cohort-top", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--cohort-top 5" in err
    # a cohort larger than the training split: --cohort-top is checked against the clips drawn,
    # before the evaluated split is decoded
    assert evaluate.main([*base, "--cohort", "100000", "--cohort-top", "99999"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the world's "reused" line
    assert err == (
        "error: --cohort-top 99999: the cohort holds 12 training clips (--cohort 100000); "
        "at most 12"
    )


def test_avc_chooses_a_threshold_no_validation_chose(tiny_train_args, tmp_path, capsys):
    """A last.pt saved before the run's first validation (a run stopped early) holds the initial
    threshold 0: it is chosen on val, and the JSON says why."""
    assert train.main(["--config", str(ROOT / "configs/contrastive.yaml"), *tiny_train_args()]) == 0
    run = Path(_last(capsys)["run_dir"])
    state = load_checkpoint(run / "last.pt")
    state["model"]["decision_threshold"].fill_(0.0)
    state.update(best=None)
    early = tmp_path / "early" / "last.pt"
    early.parent.mkdir()
    save_checkpoint(early, {k: v for k, v in state.items() if k not in ("format", "path")})
    base = ["avc", "--checkpoint", str(early), "--no-progress"]
    assert evaluate.main(base) == 0
    chosen = _last(capsys)
    why = "; the checkpoint was saved before its first validation"
    assert chosen["threshold_from"].startswith("val (") and chosen["threshold_from"].endswith(why)
    assert evaluate.main([*base, "--recalibrate", "val"]) == 0  # the same rule on the same rows
    assert chosen["threshold"] == pytest.approx(_last(capsys)["threshold"])
    assert chosen["threshold"] != 0.0


def test_avc_chooses_anew_a_threshold_chosen_for_earlier_weights(tiny_train_args, tmp_path, capsys):
    """A last.pt saved on a stop holds the threshold of the last validation, chosen for the
    weights of that step: it is chosen on val for its own weights, and the JSON says why."""
    assert train.main(["--config", str(ROOT / "configs/contrastive.yaml"), *tiny_train_args()]) == 0
    run = Path(_last(capsys)["run_dir"])
    state = load_checkpoint(run / "last.pt")
    assert state["threshold_step"] == state["step"]  # the final validation chose it
    base = ["avc", "--checkpoint", str(run / "last.pt"), "--no-progress"]
    assert evaluate.main(base) == 0
    assert _last(capsys)["threshold_from"] == "checkpoint"
    state["model"]["decision_threshold"].fill_(0.5)
    state.update(threshold_step=state["step"] - 1)
    stopped = tmp_path / "stopped" / "last.pt"
    stopped.parent.mkdir()
    save_checkpoint(stopped, {k: v for k, v in state.items() if k not in ("format", "path")})
    assert evaluate.main(["avc", "--checkpoint", str(stopped), "--no-progress"]) == 0
    chosen = _last(capsys)
    why = f"; its threshold was chosen at step {state['step'] - 1}, not its {state['step']}"
    assert chosen["threshold_from"].startswith("val (") and chosen["threshold_from"].endswith(why)
    assert chosen["threshold"] != 0.5
