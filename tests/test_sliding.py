"""Shared-computation window embeddings equal the per-window tower (the brute-force reference)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avssl.config import Config
from avssl.eval.clip_features import WindowEmbedder
from avssl.eval.embed import audio_windows, embed_audio
from avssl.eval.sliding import sharing_blocker, sliding_embeddings
from avssl.models import build_model

SR = 8000
FRONT = {"kind": "logmel", "n_fft": 256, "win_length": 200, "hop_length": 80, "n_mels": 32,
         "center": False}  # fmt: skip


def make_model(method="l3", channels=(4, 8, 8, 8), time_bins=1, **audio):
    cfg = Config()
    cfg.data.sample_rate = SR
    cfg.model.method = method
    cfg.model.channels = list(channels)
    cfg.model.conv1_stride = 1
    cfg.model.audio_time_bins = time_bins
    for key, value in {**FRONT, **audio}.items():
        setattr(cfg.model.audio, key, value)
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.data, cfg.loss)
    for m in model.modules():  # batch norm as after training, not the identity it starts as
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-1, 1)
    return model.eval()


def per_window(model, wave, window, hop):
    return embed_audio(model, audio_windows(wave, SR, window, hop))


def rel_error(a, b):
    return float(((a - b).norm(dim=1) / b.norm(dim=1).clamp_min(1e-12)).max())


@pytest.mark.parametrize(
    ("seconds", "window", "hop"),
    [
        (3.0, 1.0, 0.1),  # 10 frames per hop: windows split by offset parity at the 2nd pool
        (2.37, 1.0, 0.05),  # odd frame offsets: split at the 1st pool; ragged end
        (4.0, 1.0, 0.5),
        (0.6, 1.0, 0.1),  # shorter than a window: one zero-padded window
        (2.0, 0.5, 0.1),  # narrow windows: the edge strips meet and windows finish alone
    ],
)
def test_shared_windows_equal_per_window_embeddings(seconds, window, hop):
    model = make_model()
    assert sharing_blocker(model, SR, window, hop) is None
    wave = torch.randn(int(seconds * SR))
    ref = per_window(model, wave, window, hop)
    out = sliding_embeddings(model, wave, SR, window, hop, batch_size=7)  # several passes
    assert out.shape == ref.shape
    assert rel_error(out, ref) < 1e-5


def test_cepstral_liftering_is_per_frame_so_windows_still_share():
    model = make_model(lifter=12)
    assert model.audio_frontend.lifter.active
    assert sharing_blocker(model, SR, 1.0, 0.1) is None
    wave = torch.randn(int(2.5 * SR))
    ref = per_window(model, wave, 1.0, 0.1)
    assert rel_error(sliding_embeddings(model, wave, SR, 1.0, 0.1), ref) < 1e-5


@pytest.mark.parametrize("method", ["contrastive", "avenet", "avolnet"])
def test_heads_and_time_spans_are_applied_per_window(method):
    model = make_model(method, channels=(4, 8, 8), time_bins=3)
    wave = torch.randn(int(2.5 * SR))
    ref = per_window(model, wave, 1.0, 0.1)
    assert rel_error(sliding_embeddings(model, wave, SR, 1.0, 0.1), ref) < 1e-5


def test_bf16_stays_within_one_percent_of_fp32():
    model = make_model(channels=(8, 16, 16, 32))
    wave = torch.randn(3 * SR)
    ref = per_window(model, wave, 1.0, 0.1)
    out = sliding_embeddings(model, wave, SR, 1.0, 0.1, precision="bf16")
    assert rel_error(out, ref) < 0.01


@pytest.mark.parametrize(
    ("audio", "hop", "reason"),
    [
        ({"center": True}, 0.1, "centred"),
        ({"normalize": "band"}, 0.1, "band"),
        ({"stretch_active_db": 30.0}, 0.1, "time normalisation"),
        ({}, 0.105, "multiple"),  # 840 samples is not a whole number of 80-sample hops
        ({}, 1.0, "overlap"),  # hop = window: nothing to share
    ],
)
def test_models_that_cannot_share_fall_back_to_per_window(audio, hop, reason):
    model = make_model(**audio)
    assert reason in sharing_blocker(model, SR, 1.0, hop)
    wave = torch.randn(2 * SR)
    assert torch.equal(
        sliding_embeddings(model, wave, SR, 1.0, hop), per_window(model, wave, 1.0, hop)
    )


def test_strided_first_convolution_is_not_shared():
    model = make_model()
    model.audio.tower.body[0].stride = (2, 2)
    assert "convolution" in sharing_blocker(model, SR, 1.0, 0.1)


def test_window_embedder_pools_the_same_embeddings_either_way():
    model = make_model()
    waves = [torch.randn(int(s * SR)) for s in (1.0, 2.3, 3.1)]
    shared = WindowEmbedder(model, SR, 1.0, hop=0.1, pool="mean")
    assert shared.shared
    alone = WindowEmbedder(model, SR, 1.0, hop=0.1, pool="mean")
    alone.shared = False
    a, b = shared(waves), alone(waves)
    assert a.shape == (3, 8)
    assert rel_error(a, b) < 1e-5
