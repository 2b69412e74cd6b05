"""Speed test-time augmentation of the audio side (``evaluate.py ... --audio-tta R``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_models import load, make_batch

import evaluate
import train
from avssl.audio_augment import warp_waves
from avssl.audio_tta import speed_views, tta_speeds
from avssl.errors import AvsslError
from avssl.eval.sliding import sharing_blocker

ROOT = Path(__file__).resolve().parents[1]


def test_tta_speeds():
    assert tta_speeds(0.0) == () and len(tta_speeds(0.2)) == 9
    with pytest.raises(AvsslError, match="--audio-tta-views 9: read only with --audio-tta"):
        tta_speeds(0.0, 9)  # views that would be ignored
    speeds = tta_speeds(0.2, 9)
    assert len(speeds) == 9 and speeds[0] == pytest.approx(0.8) and speeds[-1] == pytest.approx(1.2)
    assert 1.0 in speeds
    for radius, views in ((1.0, 9), (-0.1, 9), (0.2, 1), (1e-9, 9)):
        with pytest.raises(AvsslError):
            tta_speeds(radius, views)


def test_speed_views_layout():
    wave = torch.randn(3, 400)
    views = speed_views(wave, (1.0, 0.8, 1.25))
    assert views.shape == (9, 400)
    torch.testing.assert_close(views[:3], wave)  # speed 1 reads every sample where it is
    for k, s in enumerate((0.8, 1.25)):
        want = warp_waves(wave, torch.full((3, 1), s))
        torch.testing.assert_close(views[3 * (k + 1) : 3 * (k + 2)], want)
    # slower: the centre stays, the edges come from nearer the centre
    assert not torch.allclose(views[3:6], wave)


@pytest.mark.parametrize("name", ["contrastive", "avenet", "avolnet", "l3"])
def test_embedding_is_the_mean_of_the_views(name):
    cfg, model = load(name)
    model.eval()
    wave = make_batch(cfg, 4)["audio"]
    speeds = (0.85, 1.0, 1.15)
    with torch.no_grad():
        per_view = [model.embed_audio(warp_waves(wave, torch.full((4, 1), s))) for s in speeds]
        want = torch.stack(per_view).float().mean(0)
        if model.unit_audio:
            want = F.normalize(want, dim=1)
        model.audio_tta = speeds
        got = model.embed_audio(wave)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    if model.unit_audio:
        torch.testing.assert_close(got.norm(dim=1), torch.ones(4))
    model.train()  # training never averages views
    assert model.embed_audio(wave).shape == (4, want.shape[1])
    assert "speed test-time augmentation" in sharing_blocker(model, 16000, 1.0, 0.5)


def _last(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_evaluate_with_audio_tta(tiny_train_args, capsys, tmp_path):
    assert train.main(["--config", str(ROOT / "configs/contrastive.yaml"), *tiny_train_args()]) == 0
    run = Path(_last(capsys)["run_dir"])
    base = ["--checkpoint", str(run), "--no-progress"]

    assert evaluate.main(["avc", *base]) == 0
    plain = _last(capsys)
    assert "audio_tta" not in plain
    assert evaluate.main(["avc", *base, "--audio-tta", "0.2", "--audio-tta-views", "3"]) == 0
    tta = _last(capsys)
    assert tta["audio_tta"] == pytest.approx([0.8, 1.0, 1.2])
    # other scores need their own threshold: chosen on val by the stored rule
    assert tta["threshold_from"].startswith("val (") and tta["n"] == plain["n"]

    assert evaluate.main(["retrieval", *base, "--audio-tta", "0.1"]) == 0
    assert len(_last(capsys)["audio_tta"]) == 9
    assert evaluate.main(["localize", *base, "--audio-tta", "0.1"]) == 0
    assert len(_last(capsys)["audio_tta"]) == 9

    for bad in (["avc", *base, "--audio-tta", "1.5"], ["avc", *base, "--audio-tta-views", "1",
                                                       "--audio-tta", "0.1"],
                ["avc", *base, "--audio-tta-views", "5"]):  # fmt: skip
        assert evaluate.main(bad) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "--audio-tta" in err


def test_a_two_way_head_keeps_its_own_rule_under_audio_tta(tiny_train_args, capsys):
    # its logit > 0 applies to the averaged embedding as it does to one view: the threshold
    # was recalibrated on val, which mixed a tuned threshold into TTA-against-none comparisons
    assert train.main(["--config", str(ROOT / "configs/l3.yaml"), *tiny_train_args()]) == 0
    base = ["avc", "--checkpoint", _last(capsys)["run_dir"], "--no-progress"]
    assert evaluate.main([*base, "--audio-tta", "0.2", "--audio-tta-views", "3"]) == 0
    tta = _last(capsys)
    assert tta["threshold_from"] == "checkpoint" and tta["threshold"] == 0.0
    assert evaluate.main([*base, "--audio-tta", "0.2", "--recalibrate", "val"]) == 0
    assert _last(capsys)["threshold_from"].startswith("val (")  # when asked
