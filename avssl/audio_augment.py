"""Training-time audio augmentations of a front end (each the identity in eval mode).

On the waveform: :class:`WaveWarp` (speed perturbation and time shift) and :class:`AddNoise`
(white noise at a random signal-to-noise ratio). On the log spectrogram:
:class:`FreqMixStyle` (band statistics mixed across the batch), :class:`FrequencyWarp` (vocal
tract length perturbation) and :class:`SpecMask` (SpecAugment).
Every draw is per example from the global torch generator, so seeded runs repeat.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn

from avssl.errors import ConfigError


class WaveWarp(nn.Module):
    """Speed perturbation and time shift of waveforms in training (identity in eval).

    Each example is resampled by a factor ``s ~ U(1 - speed, 1 + speed)`` about its centre, which
    changes tempo, pitch and formants together as a faster or slower talker would (speed
    perturbation, Ko et al., Interspeech 2015,
    https://www.danielpovey.com/files/2015_interspeech_augmentation.pdf), and moved by
    ``d ~ U(-shift, shift)`` samples. Output sample ``i`` reads input position
    ``c + (i - c) * s - d`` (``c`` the centre) by linear interpolation, zero outside the input;
    the length is kept. Linear interpolation is a random low-pass, so the augmented sound is
    also duller than the evaluated one: a fractional shift alone attenuates the top of the band
    (power averaged over shifts: -1.8 dB at half the Nyquist frequency, -4.7 dB at 95 % of it,
    where a half-sample shift gives -22 dB), a slower sound (``s < 1``) gains images above ``s``
    times Nyquist and a faster one aliases. A band-limited (windowed-sinc) kernel would avoid
    both, at a gather and a kernel evaluation per tap: dozens of taps against these two.

    Args:
        speed: largest relative speed change, in ``[0, 1)``.
        shift: largest shift in samples, ``>= 0``.
    """

    def __init__(self, speed: float, shift: int):
        super().__init__()
        if not 0 <= speed < 1 or shift < 0:
            raise ConfigError(
                f"model.audio: speed_perturb must be in [0, 1) and time_shift >= 0 "
                f"(got {speed}, {shift} samples)"
            )
        self.speed, self.shift = speed, shift

    def forward(self, wave: Tensor) -> Tensor:
        """``[B, N]`` float -> ``[B, N]``."""
        if not self.training or (self.speed == 0 and self.shift == 0):
            return wave
        b = wave.shape[0]
        s = 1 + self.speed * (2 * torch.rand(b, 1, device=wave.device) - 1)
        d = self.shift * (2 * torch.rand(b, 1, device=wave.device) - 1)
        return warp_waves(wave, s, d)


class AddNoise(nn.Module):
    """White Gaussian noise at a random signal-to-noise ratio in training (identity in eval).

    Each example gets noise at ``snr ~ U(lo, hi)`` dB of its own energy
    (:func:`torchaudio.functional.add_noise`): the additive-noise augmentation speech and speaker
    recognisers train with against recording-chain mismatch (as with MUSAN's noises,
    https://arxiv.org/abs/1510.08484). A silent example stays silent.

    Args:
        snr_db: ``[lo, hi]`` in dB, ``lo <= hi``; empty turns it off.
    """

    def __init__(self, snr_db: list[float]):
        super().__init__()
        if snr_db and (len(snr_db) != 2 or snr_db[0] > snr_db[1]):
            raise ConfigError(
                f"model.audio.noise_snr must be [] or [lo, hi] with lo <= hi, got {snr_db}"
            )
        self.snr_db = tuple(float(x) for x in snr_db)

    def forward(self, wave: Tensor) -> Tensor:
        """``[B, N]`` float -> ``[B, N]``."""
        if not self.training or not self.snr_db:
            return wave
        lo, hi = self.snr_db
        snr = lo + (hi - lo) * torch.rand(wave.shape[0], device=wave.device)
        return torchaudio.functional.add_noise(wave, torch.randn_like(wave), snr)


def warp_waves(wave: Tensor, speed: Tensor, shift: Tensor | float = 0.0) -> Tensor:
    """Resample each waveform by its speed factor about its centre and move it (:class:`WaveWarp`).

    Output sample ``i`` reads input position ``c + (i - c) * speed - shift`` (``c`` the centre)
    by linear interpolation, zero outside the input; the length is kept. Linear interpolation
    low-passes a fractional position and neither band-limits a speed-up nor removes the images
    of a slow-down (:class:`WaveWarp`).

    Args:
        wave: ``[B, N]`` float.
        speed: ``[B, 1]`` factors (> 1: faster and higher).
        shift: ``[B, 1]`` shifts in samples, or one number for all.

    Returns:
        ``[B, N]``.
    """
    n = wave.shape[1]
    c = (n - 1) / 2
    pos = c + (torch.arange(n, device=wave.device, dtype=torch.float32) - c) * speed - shift
    lo = pos.floor()
    w = pos - lo
    lo = lo.long()

    def read(idx: Tensor) -> Tensor:
        inside = (idx >= 0) & (idx < n)
        return wave.gather(1, idx.clamp(0, n - 1)) * inside

    return read(lo) * (1 - w) + read(lo + 1) * w


class FrequencyWarp(nn.Module):
    """Training-time vocal tract length perturbation on a log spectrogram (identity in eval).

    Each example's frequency axis is stretched by ``alpha ~ U(1 - w, 1 + w)`` about 0 Hz: the
    output band centred on ``f`` Hz reads the input at ``f / alpha`` Hz (linear interpolation
    between band centres, the edge bands repeated past the edges), which moves formants as a
    longer or shorter vocal tract would (Jaitly and Hinton, 2013). On mel bands the warp is in
    Hz, not in band index: mel bands widen with frequency, so scaling the index would stretch
    high frequencies far more than ``alpha``. Draws come from the global torch generator (seeded
    runs repeat).

    Args:
        width: ``w`` in ``[0, 1)``; 0 is off.
        band_hz: float ``[F]``, increasing centre frequency of each input band; ``None``: bands
            equally spaced from 0 Hz (a linear STFT's bins).
    """

    def __init__(self, width: float, band_hz: Tensor | None = None):
        super().__init__()
        if not 0 <= width < 1:
            raise ConfigError(f"model.audio.freq_warp must be in [0, 1), got {width}")
        self.width = width
        self.register_buffer("band_hz", band_hz, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, 1, F, T]`` -> ``[B, 1, F, T]``."""
        if not self.training or self.width == 0:
            return x
        alpha = 1 + self.width * (2 * torch.rand(x.shape[0], device=x.device) - 1)
        return self.warp(x, alpha)

    def warp(self, x: Tensor, alpha: Tensor) -> Tensor:
        """``x`` ``[B, 1, F, T]`` with each example's frequencies scaled by ``alpha`` ``[B]``."""
        b, _, f, t = x.shape
        hz = self.band_hz
        if hz is None:
            hz = torch.arange(f, device=x.device, dtype=torch.float32)
        rows = _fractional_index(hz.view(1, f) / alpha.view(b, 1).float(), hz).to(x.dtype)
        ys = (2 * rows / max(f - 1, 1) - 1).view(b, f, 1).expand(b, f, t)
        xs = torch.linspace(-1, 1, t, device=x.device, dtype=x.dtype).view(1, 1, t).expand(b, f, t)
        grid = torch.stack([xs, ys], dim=-1)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _fractional_index(values: Tensor, points: Tensor) -> Tensor:
    """Where ``values`` fall on increasing ``points`` ``[F]``, as fractional indices (linear
    between neighbours, extrapolated from the end intervals)."""
    if points.numel() < 2:
        return torch.zeros_like(values)
    i = torch.searchsorted(points, values.contiguous()).clamp(1, points.numel() - 1)
    lo, hi = points[i - 1], points[i]
    return (i - 1) + (values - lo) / (hi - lo)


class SpecMask(nn.Module):
    """Training-time SpecAugment masking (identity in eval), https://arxiv.org/abs/1904.08779.

    Each example gets ``masks`` frequency masks and ``masks`` time masks (independent draws per
    example, torchaudio's ``iid_masks``). A mask's width is drawn as torchaudio's ``mask_param``
    draws it, ``floor(U(0, 1) * freq)`` bins (``time`` frames): 0 to ``freq - 1``, mean
    ``(freq - 1) / 2``, one less at most than the paper's "0 to F". Masked cells take the
    example's mean, so a mask reads as "no information" rather than as silence.
    """

    def __init__(self, freq: int, time: int, masks: int):
        super().__init__()
        if freq < 0 or time < 0 or masks < 0:
            raise ConfigError(
                f"model.audio: freq_mask, time_mask and spec_masks must be >= 0 "
                f"(got {freq}, {time}, {masks})"
            )
        self.masks = masks
        self.freq = torchaudio.transforms.FrequencyMasking(freq, iid_masks=True) if freq else None
        self.time = torchaudio.transforms.TimeMasking(time, iid_masks=True) if time else None

    def forward(self, x: Tensor) -> Tensor:
        """``[B, 1, F, T]`` -> ``[B, 1, F, T]``."""
        if not self.training or not self.masks or (self.freq is None and self.time is None):
            return x
        mean = x.mean(dim=(2, 3), keepdim=True)
        x = x - mean
        for _ in range(self.masks):
            for mask in (self.freq, self.time):
                if mask is not None:
                    x = mask(x)
        return x + mean


class FreqMixStyle(nn.Module):
    """Training-time frequency-wise MixStyle on a log spectrogram (identity in eval).

    With probability ``p`` per batch (under DDP each rank's batch, drawn by that rank), each
    example's bands are standardised by their own mean and standard deviation over time and
    re-coloured with a mixture of its own and a random other example's statistics, weights
    ``lambda ~ Beta(alpha, alpha)`` per example. A voice's and a microphone's fixed spectral
    colouring lives in those statistics, so the tower sees voices in between the training ones.
    MixStyle: Zhou et al., ICLR 2021, https://arxiv.org/abs/2104.02008; per frequency band of
    the input spectrogram ("Freq-MixStyle") as in CP-JKU's DCASE 2022 acoustic scene systems.

    Args:
        p: probability that a batch is mixed, in ``[0, 1]``.
        alpha: Beta concentration, ``> 0`` (small: mostly one example's statistics or the other's).
        eps: added to the variances.
    """

    def __init__(self, p: float, alpha: float = 0.3, eps: float = 1e-6):
        super().__init__()
        if not 0 <= p <= 1 or alpha <= 0:
            raise ConfigError(
                f"model.audio: mixstyle must be in [0, 1] and mixstyle_alpha > 0 (got {p}, {alpha})"
            )
        self.p, self.alpha, self.eps = p, alpha, eps

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, F, T]`` -> ``[B, C, F, T]``."""
        if not self.training or self.p == 0 or float(torch.rand(())) >= self.p:
            return x
        b = x.shape[0]
        mu = x.mean(dim=(1, 3), keepdim=True)  # [B, 1, F, 1]
        sig = (x.var(dim=(1, 3), keepdim=True) + self.eps).sqrt()
        beta = torch.distributions.Beta(torch.tensor(self.alpha), torch.tensor(self.alpha))
        lam = beta.sample((b, 1, 1, 1)).to(x.device, x.dtype)
        perm = torch.randperm(b, device=x.device)
        mu_mix = lam * mu + (1 - lam) * mu[perm]
        sig_mix = lam * sig + (1 - lam) * sig[perm]
        return (x - mu) / sig * sig_mix + mu_mix
