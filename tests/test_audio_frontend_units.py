"""The front end's frequency and level units: the frequency warp in Hz on mel bands, and the
active-span floor in dB of power on a log-magnitude spectrogram."""

from __future__ import annotations

import math

import torch

from avssl.config import AudioFeatures
from avssl.features import band_centres_hz, build_audio_frontend

SR = 16000
MEL = dict(kind="logmel", n_fft=512, win_length=400, hop_length=160, n_mels=40)


def tone(hz: float, seconds: float = 0.5, gain: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    return gain * torch.sin(2 * math.pi * hz * t)


def test_mel_band_centres_are_the_filter_peaks():
    front = build_audio_frontend(AudioFeatures(**MEL), SR)
    fb = front.spec.fb  # [n_mels, n_freqs]
    peak_hz = fb.argmax(dim=1).float() * SR / MEL["n_fft"]
    assert (band_centres_hz(AudioFeatures(**MEL), SR) - peak_hz).abs().max() <= SR / MEL["n_fft"]


def centroid_hz(x: torch.Tensor, centres: torch.Tensor) -> float:
    """Power-weighted mean frequency of the five bands around the peak of ``[F, T]``."""
    p = x.mean(dim=-1).exp()
    k = int(p.argmax())
    near = slice(max(k - 2, 0), k + 3)
    return float((centres[near] * p[near]).sum() / p[near].sum())


def test_frequency_warp_on_mel_bands_scales_hertz_not_band_index():
    front = build_audio_frontend(AudioFeatures(**MEL, freq_warp=0.2), SR).eval()
    centres = band_centres_hz(AudioFeatures(**MEL), SR)
    for hz in (1000.0, 2500.0, 5000.0):
        x = front.spec(tone(hz)[None])  # [1, 1, 40, T]
        assert abs(centroid_hz(x[0, 0], centres) - hz) < 0.01 * hz
        for alpha in (1.1, 0.9):
            warped = front.warp.warp(x, torch.tensor([alpha]))
            # within 3 %: bands 100-300 Hz wide interpolated linearly (scaling the band index
            # instead moved 5 kHz to 6.5 kHz)
            assert abs(centroid_hz(warped[0, 0], centres) - alpha * hz) < 0.03 * alpha * hz


def test_frequency_warp_on_linear_bins_is_unchanged_by_the_units():
    feat = AudioFeatures(kind="logstft", n_fft=256, win_length=200, hop_length=80, freq_warp=0.2)
    front = build_audio_frontend(feat, 8000)
    x = torch.randn(2, 1, 129, 5)
    y = front.warp.warp(x, torch.tensor([1.1, 0.9]))
    src = torch.arange(129.0) / 1.1  # output bin k reads input bin k / alpha
    lo = src.floor().long()
    w = (src - lo)[:, None]
    want = x[0, 0, lo] * (1 - w) + x[0, 0, (lo + 1).clamp(max=128)] * w
    assert torch.allclose(y[0, 0], want, atol=1e-4)


def test_active_span_floor_is_in_power_db_for_log_magnitude_and_log_mel():
    wave = torch.zeros(1, 8000)
    wave[0, 2000:4000] = tone(1000.0, 2000 / SR)
    wave[0, 5000:7000] = tone(1000.0, 2000 / SR, gain=0.5 * 10 ** (-41 / 20))  # 41 dB quieter
    spans = {}
    for kind in ("logmel", "logstft"):
        feat = AudioFeatures(**{**MEL, "kind": kind}, stretch_active_db=30.0)
        front = build_audio_frontend(feat, SR).eval()
        start, end = front.stretch.span(front.spec(wave))
        spans[kind] = (int(start), int(end))
    # the 30 dB floor keeps the loud tone (samples 2000-4000: frames ~10-24) and drops the
    # quiet one (samples 5000-7000) for both kinds of spectrogram
    assert spans["logstft"] == spans["logmel"]
    assert spans["logmel"][1] * MEL["hop_length"] < 4500
