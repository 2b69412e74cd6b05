"""Relaxed instance frequency-wise normalisation (RFN) in the audio tower."""

from __future__ import annotations

import pytest
import torch

from avssl.config import Config, ModelConfig
from avssl.errors import ConfigError
from avssl.eval.embed import audio_windows, embed_audio
from avssl.eval.sliding import sharing_blocker, sliding_embeddings
from avssl.models import build_model
from avssl.models.towers import AudioTower, RelaxedFreqNorm


def brute_rfn(x: torch.Tensor, lam: float, eps: float = 1e-5) -> torch.Tensor:
    """RFN by loops: each example's frequency rows, then the whole example, standardised."""
    out = torch.empty_like(x)
    for b in range(x.shape[0]):
        whole = x[b]
        ln = (whole - whole.mean()) / torch.sqrt(whole.var(unbiased=False) + eps)
        for f in range(x.shape[2]):
            row = x[b, :, f, :]  # [C, T]
            ifn = (row - row.mean()) / torch.sqrt(row.var(unbiased=False) + eps)
            out[b, :, f, :] = lam * ifn + (1 - lam) * ln[:, f, :]
    return out


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.5, 1.0])
def test_rfn_matches_its_definition(lam):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 5, 7, generator=g, dtype=torch.float64) * 3 + 1
    x[1, :, 2] += 10  # a band offset IFN removes
    out = RelaxedFreqNorm(lam)(x)
    torch.testing.assert_close(out, brute_rfn(x, lam))


def test_rfn_removes_a_per_band_gain_and_offset():
    # a voice or a microphone as a per-band affine change: IFN (lam 1) does not see it at all
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 6, 20, generator=g, dtype=torch.float64)
    gain = torch.rand(1, 1, 6, 1, generator=g, dtype=torch.float64) + 0.5
    shift = torch.randn(1, 1, 6, 1, generator=g, dtype=torch.float64)
    rfn = RelaxedFreqNorm(1.0)
    torch.testing.assert_close(rfn(gain * x + shift), rfn(x), atol=1e-4, rtol=1e-4)
    half = RelaxedFreqNorm(0.5)  # relaxed: the layer-norm half keeps band differences
    assert not torch.allclose(half(gain * x + shift), half(x), atol=1e-3)


def test_tower_places_rfn_after_the_first_blocks_only():
    tower = AudioTower([4, 8, 8], time_bins=2, rfn_blocks=2, rfn_lambda=0.25)
    kinds = [type(m).__name__ for m in tower.tower.body]
    pools = [i for i, k in enumerate(kinds) if k == "MaxPool2d"]
    rfns = [i for i, k in enumerate(kinds) if k == "RelaxedFreqNorm"]
    assert rfns == [pools[0] + 1, pools[1] + 1]
    assert all(m.lam == 0.25 for m in tower.tower.body if isinstance(m, RelaxedFreqNorm))
    assert tower(torch.randn(2, 1, 16, 40)).shape == (2, 16)
    plain = AudioTower([4, 8, 8])
    assert not any(isinstance(m, RelaxedFreqNorm) for m in plain.modules())


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [("audio_rfn_blocks", 5, r"audio_rfn_blocks: 5 is not in \[0, 3\]"),
     ("audio_rfn_blocks", -1, "audio_rfn_blocks"),
     ("audio_rfn_lambda", 1.5, r"audio_rfn_lambda: 1.5 is not in \[0, 1\]")],
)  # fmt: skip
def test_rfn_settings_out_of_range_are_config_errors(key, value, match):
    cfg = Config()
    cfg.model = ModelConfig(channels=[4, 8, 8])
    setattr(cfg.model, key, value)
    with pytest.raises(ConfigError, match=match):
        build_model(cfg.model, cfg.data, cfg.loss)


def test_every_method_builds_its_audio_tower_with_rfn():
    for method in ("l3", "avenet", "avolnet", "contrastive"):
        cfg = Config()
        cfg.model = ModelConfig(method=method, channels=[4, 8, 8], audio_rfn_blocks=1)
        cfg.data.hard_fraction = 0.0
        model = build_model(cfg.model, cfg.data, cfg.loss)
        assert sum(isinstance(m, RelaxedFreqNorm) for m in model.audio.modules()) == 1


def test_sliding_windows_fall_back_to_per_window_with_rfn():
    cfg = Config()
    cfg.data.sample_rate = 8000
    cfg.model = ModelConfig(method="l3", channels=[4, 8, 8], conv1_stride=1, audio_rfn_blocks=1)
    for key, value in {"n_fft": 256, "win_length": 200, "hop_length": 80, "n_mels": 32}.items():
        setattr(cfg.model.audio, key, value)
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.data, cfg.loss).eval()
    assert "RFN" in sharing_blocker(model, 8000, 1.0, 0.1)
    wave = torch.randn(2 * 8000)
    ref = embed_audio(model, audio_windows(wave, 8000, 1.0, 0.1))
    assert ref.shape[0] == 11
    assert torch.equal(sliding_embeddings(model, wave, 8000, 1.0, 0.1), ref)
