"""Audio front-end options: cepstral liftering, time normalisation, band-mean normalisation,
training-time frequency warping and SpecAugment masking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avssl.audio_augment import AddNoise, FreqMixStyle, FrequencyWarp, SpecMask, WaveWarp
from avssl.config import AudioFeatures
from avssl.errors import ConfigError
from avssl.features import ActiveSpanStretch, CepstralLifter, build_audio_frontend


def test_band_mean_normalisation_zeroes_each_band_mean():
    feat = AudioFeatures(n_fft=256, win_length=200, hop_length=80, n_mels=20, normalize="band")
    front = build_audio_frontend(feat, 8000).eval()
    raw = build_audio_frontend(AudioFeatures(n_fft=256, win_length=200, hop_length=80, n_mels=20),
                               8000).eval()  # fmt: skip
    wave = torch.randn(3, 8000)
    x, r = front(wave), raw(wave)
    assert torch.allclose(x.mean(dim=-1), torch.zeros(3, 1, 20), atol=1e-4)
    assert torch.allclose(x, r - r.mean(dim=-1, keepdim=True), atol=1e-5)


def test_cepstral_lifter_matches_a_truncated_dct_and_keeps_the_envelope():
    n, k = 24, 8
    x = torch.randn(2, 1, n, 7, dtype=torch.float64)
    # brute force: orthonormal DCT-II matrix from its formula, keep the first k coefficients
    f = np.arange(n)
    m = np.cos(np.pi / n * (f[None, :] + 0.5) * np.arange(n)[:, None]) * np.sqrt(2 / n)
    m[0] /= np.sqrt(2)
    c = np.einsum("qf,bcft->bcqt", m, x.numpy())
    c[:, :, k:] = 0
    want = np.einsum("qf,bcqt->bcft", m, c)
    got = CepstralLifter(k, n).double()(x)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)
    # an envelope (slow along frequency) stays; a harmonic ripple (fast) goes
    envelope = torch.cos(torch.pi * (torch.arange(n) + 0.5) * 2 / n).view(1, 1, n, 1)
    ripple = torch.cos(torch.pi * (torch.arange(n) + 0.5) * 18 / n).view(1, 1, n, 1)
    lifter = CepstralLifter(k, n)
    assert torch.allclose(lifter(envelope + ripple), envelope, atol=1e-5)
    for off in (0, n, n + 5):  # identity when nothing is cut
        assert torch.equal(CepstralLifter(off, n)(x.float()), x.float())
    feat = AudioFeatures(n_fft=256, win_length=200, hop_length=80, n_mels=n, lifter=k)
    wave = torch.randn(2, 8000)
    raw = AudioFeatures(n_fft=256, win_length=200, hop_length=80, n_mels=n)
    r = build_audio_frontend(raw, 8000).eval()(wave)
    assert torch.allclose(build_audio_frontend(feat, 8000).eval()(wave), lifter(r), atol=1e-4)


def test_freq_mixstyle_recolours_each_band_with_a_mixture_of_two_examples_statistics():
    torch.manual_seed(0)
    b, f, t = 6, 12, 50
    x = torch.randn(b, 1, f, t, dtype=torch.float64) * torch.rand(b, 1, f, 1) * 3 + torch.randn(
        b, 1, f, 1
    )
    mix = FreqMixStyle(1.0, alpha=0.3, eps=0.0).double()
    assert torch.equal(mix.eval()(x), x)
    assert torch.equal(FreqMixStyle(0.0).train()(x), x)
    y = mix.train()(x)
    mu, sig = x.mean(dim=(1, 3)), x.std(dim=(1, 3), correction=0)  # [B, F]
    my, sy = y.mean(dim=(1, 3)), y.std(dim=(1, 3), correction=0)
    # brute force: some example j and one weight lam in [0, 1] give every band's mean and std
    for i in range(b):
        fits = []
        for j in range(b):
            d_mu, d_sig = mu[i] - mu[j], sig[i] - sig[j]
            a = torch.cat([d_mu, d_sig])
            r = torch.cat([my[i] - mu[j], sy[i] - sig[j]])
            lam = float(a @ r / (a @ a)) if i != j else 1.0
            err = float((lam * a - r).abs().max()) if i != j else float(r.abs().max())
            fits.append(err < 1e-6 and -1e-9 <= lam <= 1 + 1e-9)
        assert any(fits)
    # the standardised pattern over time is the example's own
    zx = (x - mu[:, None, :, None]) / sig[:, None, :, None]
    zy = (y - my[:, None, :, None]) / sy[:, None, :, None]
    assert torch.allclose(zx, zy, atol=1e-6)
    assert not torch.allclose(y, x)


def test_frequency_warp_matches_interpolation_and_is_identity_in_eval():
    warp = FrequencyWarp(0.2)
    x = torch.randn(4, 1, 16, 5)
    assert torch.equal(warp.eval()(x), x)
    assert torch.equal(FrequencyWarp(0.0).train()(x), x)
    torch.manual_seed(3)
    y = warp.train()(x)
    torch.manual_seed(3)
    alpha = 1 + 0.2 * (2 * torch.rand(4, 1, 1) - 1)
    for b in range(4):  # brute force: output band f reads input band f / alpha (edge repeated)
        src = np.minimum(np.arange(16) / float(alpha[b]), 15)
        for t in range(5):
            want = np.interp(src, np.arange(16), x[b, 0, :, t].numpy())
            np.testing.assert_allclose(y[b, 0, :, t].numpy(), want, atol=1e-5)
    assert not torch.allclose(y, x)


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="normalize"):
        build_audio_frontend(AudioFeatures(normalize="cmvn"), 16000)
    with pytest.raises(ConfigError, match="freq_warp"):
        build_audio_frontend(AudioFeatures(freq_warp=1.5), 16000)
    with pytest.raises(ConfigError, match="freq_mask"):
        build_audio_frontend(AudioFeatures(freq_mask=-1), 16000)
    with pytest.raises(ConfigError, match="mixstyle"):
        build_audio_frontend(AudioFeatures(mixstyle=1.5), 16000)
    with pytest.raises(ConfigError, match="lifter"):
        build_audio_frontend(AudioFeatures(lifter=-1), 16000)
    for bad in ([30.0, 10.0], [10.0]):
        with pytest.raises(ConfigError, match="noise_snr"):
            build_audio_frontend(AudioFeatures(noise_snr=bad), 16000)


def test_add_noise_meets_its_signal_to_noise_ratio_in_training_only():
    x = torch.randn(64, 800) * torch.linspace(0.1, 3.0, 64)[:, None]
    x[0] = 0.0  # silence stays silence
    noise = AddNoise([5.0, 25.0])
    assert torch.equal(noise.eval()(x), x) and torch.equal(AddNoise([]).train()(x), x)
    torch.manual_seed(3)
    y = noise.train()(x)
    torch.manual_seed(3)
    want = 5.0 + 20.0 * torch.rand(64)  # the draws AddNoise makes, in its order
    added = y - x
    snr = 10 * torch.log10(x[1:].pow(2).sum(1) / added[1:].pow(2).sum(1))
    torch.testing.assert_close(snr, want[1:], atol=1e-3, rtol=0)
    assert torch.equal(y[0], x[0])
    assert float(snr.min()) >= 5.0 - 1e-3 and float(snr.max()) <= 25.0 + 1e-3


def test_spec_masks_fill_bands_and_spans_with_the_example_mean_in_training_only():
    x = torch.randn(6, 1, 20, 50) + torch.arange(6.0).view(6, 1, 1, 1)
    mask = SpecMask(freq=6, time=10, masks=2)
    assert torch.equal(mask.eval()(x), x)
    torch.manual_seed(0)
    y = mask.train()(x)
    changed = (y - x).abs() > 1e-4  # (x - mean) + mean is not bit-exact elsewhere
    assert changed.any()
    mean = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    assert torch.allclose(y[changed], mean[changed], atol=1e-5)
    for b in range(6):  # each changed cell lies in a fully masked row (band) or column (span)
        c = changed[b, 0]
        rows, cols = c.all(dim=1), c.all(dim=0)
        assert torch.equal(c, rows[:, None] | cols[None, :])
        assert int(rows.sum()) <= 2 * 6 and int(cols.sum()) <= 2 * 10
    assert not torch.equal(changed[0], changed[1])  # independent draws per example


def _masked_lines(x: torch.Tensor, y: torch.Tensor, axis: int) -> torch.Tensor:
    """long ``[B]``: rows (``axis=2``) or columns (``axis=3``) of ``[B, 1, F, T]`` that ``y``
    filled with each example's mean (no line of random values lies that close to it)."""
    filled = (y - x.mean(dim=(2, 3), keepdim=True)).abs() < 1e-5
    return filled.all(dim=5 - axis).sum(dim=-1)[:, 0]


@pytest.mark.parametrize("axis", [2, 3])
def test_spec_mask_widths_and_counts_follow_the_documented_law(axis):
    """Brute force: one mask is ``floor(U(0, 1) * width)`` lines, 0 to ``width - 1`` equally
    often; ``masks`` masks placed uniformly among the places they fit (SpecAugment's ``f0``)
    cover on average what a numpy simulation of that law covers."""
    n, size = 3000, 40
    g = torch.Generator().manual_seed(0)  # the same input whatever ran before
    x = torch.randn(n, 1, size, size, generator=g) + torch.arange(float(n)).view(n, 1, 1, 1) % 7
    along = {2: lambda w, k: SpecMask(w, 0, k), 3: lambda w, k: SpecMask(0, w, k)}[axis]
    torch.manual_seed(0)
    widths = _masked_lines(x, along(6, 1).train()(x), axis)
    counts = torch.bincount(widths, minlength=7).numpy()
    assert counts[6:].sum() == 0, counts  # never the full width
    assert np.all(np.abs(counts[:6] - n / 6) < 0.15 * n / 6), counts
    rng = np.random.default_rng(0)
    for masks in (2, 3):
        torch.manual_seed(masks)
        covered = _masked_lines(x, along(8, masks).train()(x), axis).double().mean()
        ref = []
        for _ in range(20000):
            line = np.zeros(size, bool)
            for _ in range(masks):
                w = int(rng.uniform(0, 8))
                f0 = int(rng.integers(0, size - w + 1))
                line[f0 : f0 + w] = True
            ref.append(line.sum())
        assert abs(float(covered) - np.mean(ref)) < 0.3, (masks, float(covered), np.mean(ref))


def test_wave_warp_matches_interpolation_about_the_centre_and_is_identity_in_eval():
    warp = WaveWarp(speed=0.2, shift=50)
    x = torch.randn(5, 400)
    assert torch.equal(warp.eval()(x), x)
    assert torch.equal(WaveWarp(0.0, 0).train()(x), x)
    torch.manual_seed(1)
    y = warp.train()(x)
    torch.manual_seed(1)
    s = 1 + 0.2 * (2 * torch.rand(5, 1) - 1)
    d = 50 * (2 * torch.rand(5, 1) - 1)
    c = 399 / 2
    for b in range(5):  # brute force: output i reads c + (i - c) * s - d, zero outside the input
        src = c + (np.arange(400) - c) * float(s[b]) - float(d[b])
        padded = np.concatenate([[0.0], x[b].numpy(), [0.0]])  # zeros one sample past each end
        want = np.interp(src + 1, np.arange(402), padded, left=0.0, right=0.0)
        np.testing.assert_allclose(y[b].numpy(), want, atol=5e-4)  # float32 positions
    assert y.shape == x.shape and not torch.allclose(y, x)


def test_wave_warp_shift_alone_moves_the_signal_and_feeds_the_front_end():
    torch.manual_seed(0)
    wave = torch.zeros(64, 1000)
    wave[:, 500] = 1.0  # an impulse: each example's shift is where it lands
    out = WaveWarp(0.0, 100).train()(wave)
    peak = out.argmax(dim=1) + (out.max(dim=1).values < 0.5).long()  # a split impulse rounds up
    assert ((peak - 500).abs() <= 100).all() and peak.unique().numel() > 20
    assert torch.allclose(out.sum(dim=1), torch.ones(64), atol=1e-5)  # nothing lost inside
    feat = AudioFeatures(n_fft=256, win_length=200, hop_length=80, n_mels=20, time_shift=0.05,
                         speed_perturb=0.1)  # fmt: skip
    front = build_audio_frontend(feat, 8000)
    assert front.wave_warp.shift == 400 and front.wave_warp.speed == 0.1
    clip = torch.randn(2, 8000)
    assert torch.equal(front.eval()(clip), front.eval()(clip))
    assert not torch.allclose(front.train()(clip), front.eval()(clip))
    with pytest.raises(ConfigError, match="speed_perturb"):
        build_audio_frontend(AudioFeatures(speed_perturb=1.0), 16000)


def stretch_reference(x: torch.Tensor, floor_db: float) -> np.ndarray:
    """Loop version of :class:`ActiveSpanStretch` with numpy's interpolation."""
    x = x.double().numpy()
    out = np.empty_like(x)
    t = x.shape[-1]
    for b in range(x.shape[0]):
        power = np.exp(x[b]).sum(axis=1).max(axis=0)  # [T]: frame power, max over channels
        db = 10 * np.log10(power)
        on = np.nonzero(db >= db.max() - floor_db)[0]
        src = np.linspace(on[0], on[-1], t)
        for c in range(x.shape[1]):
            for f in range(x.shape[2]):
                out[b, c, f] = np.interp(src, np.arange(t), x[b, c, f])
    return out


def test_active_span_stretch_matches_a_loop_reference():
    torch.manual_seed(0)
    x = torch.randn(4, 2, 6, 30) - 12.0  # quiet background
    for b, (s, e) in enumerate([(3, 9), (0, 29), (20, 28), (11, 11)]):
        x[b, :, :, s : e + 1] += 10.0  # a word 10 nats (43 dB) above it
    y = ActiveSpanStretch(30.0)(x)
    np.testing.assert_allclose(y.double().numpy(), stretch_reference(x, 30.0), atol=1e-5)
    assert (y[..., 0] > -7).all() and (y[..., -1] > -7).all()  # words fill the window


def test_active_span_stretch_equalises_speaking_rate_and_position():
    t = torch.linspace(0, 1, 400)
    word = torch.stack([torch.sin(6.28 * (k + 1) * t) for k in range(5)])  # [5 bands, 400]

    def said(start: int, frames: int) -> torch.Tensor:
        x = torch.full((5, 100), -14.0)
        x[:, start : start + frames] = torch.nn.functional.interpolate(
            word[None], size=frames, mode="linear", align_corners=True
        )[0]
        return x

    fast, slow = said(5, 35), said(30, 60)  # the same word, at twice the rate, elsewhere
    stretch = ActiveSpanStretch(30.0)
    a, b = stretch(fast[None, None])[0, 0], stretch(slow[None, None])[0, 0]
    assert (a - b).abs().max() < 0.1
    assert (fast - slow).abs().max() > 5  # before: nothing lines up
    assert torch.equal(ActiveSpanStretch(0.0)(fast[None, None]), fast[None, None])


def test_active_span_stretch_runs_in_the_front_end_in_training_and_evaluation():
    base = dict(n_fft=256, win_length=200, hop_length=80, n_mels=20)
    front = build_audio_frontend(AudioFeatures(**base, stretch_active_db=30.0), 8000)
    raw = build_audio_frontend(AudioFeatures(**base), 8000)
    wave = torch.zeros(2, 8000)
    wave[:, 2000:4000] = torch.randn(2, 2000)
    for mode in (True, False):
        front.train(mode), raw.train(mode)
        assert torch.allclose(front(wave), ActiveSpanStretch(30.0)(raw(wave)), atol=1e-5)
    with pytest.raises(ConfigError, match="stretch_active_db"):
        build_audio_frontend(AudioFeatures(stretch_active_db=-1.0), 16000)
