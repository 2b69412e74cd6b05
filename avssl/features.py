"""Fixed (non-learnt) input transforms that live inside every model and run on its device.

Audio: waveform ``[B, N]`` float -> log spectrogram ``[B, 1, F, T]``. Frames: ``[B, 3, H, W]`` in
``[0, 1]`` -> ImageNet-normalised. Their buffers are not persistent, so checkpoints hold only what
is learnt and a checkpoint still embeds raw media by itself (the config rebuilds the front end).
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn

from avssl.audio_augment import AddNoise, FreqMixStyle, FrequencyWarp, SpecMask, WaveWarp
from avssl.config import AudioFeatures
from avssl.errors import ConfigError

LOG_EPS = 1e-6


def one_frame(feat) -> int:
    """The fewest samples a front end with ``feat``'s ``n_fft``, ``win_length`` and ``center``
    reads: one frame (``win_length``; with ``center``, more than ``n_fft // 2`` to reflect)."""
    return feat.n_fft // 2 + 1 if feat.center else feat.win_length


class _Spectrogram(nn.Module):
    """|STFT|**power of a batch of waveforms, always computed in float32 (also under autocast).

    With ``center=False`` a frame is ``win_length`` samples zero-padded to ``n_fft`` (as L3-Net's
    TensorFlow front end), so 1 s at 48 kHz with win 480 / hop 240 gives the paper's 199 frames
    (``torch.stft`` alone would frame on ``n_fft`` and give 198).
    """

    def __init__(self, n_fft: int, win_length: int, hop_length: int, center: bool, power: float):
        super().__init__()
        if not 0 < win_length <= n_fft or hop_length <= 0:
            raise ConfigError(
                f"model.audio.win_length: need 0 < win_length <= model.audio.n_fft and "
                f"model.audio.hop_length > 0 (got n_fft={n_fft}, win_length={win_length}, "
                f"hop_length={hop_length})"
            )
        self.n_fft, self.win_length, self.hop_length = n_fft, win_length, hop_length
        self.center, self.power = center, power
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)

    def forward(self, wave: Tensor) -> Tensor:
        """``[B, N]`` -> ``[B, n_fft // 2 + 1, T]``.

        Raises:
            ValueError: ``N`` is shorter than one frame (``win_length`` samples; with
                ``center``, more than ``n_fft // 2``, which the reflection pads).
        """
        shortest = one_frame(self)
        if wave.shape[-1] < shortest:  # torch.stft's own error names the padded size only
            raise ValueError(
                f"a wave of {wave.shape[-1]} samples is shorter than one frame of the audio "
                f"front end ({shortest} samples: n_fft {self.n_fft}, win_length "
                f"{self.win_length}, center {self.center})"
            )
        with torch.autocast(device_type=wave.device.type, enabled=False):
            wave = wave.float()
            if not self.center and self.win_length < self.n_fft:
                left = (self.n_fft - self.win_length) // 2  # torch.stft centres the window
                wave = F.pad(wave, (left, self.n_fft - self.win_length - left))
            spec = torch.stft(
                wave, self.n_fft, self.hop_length, self.win_length, window=self.window,
                center=self.center, pad_mode="reflect", return_complex=True,
            ).abs()  # fmt: skip
            return spec if self.power == 1 else spec.pow(self.power)


class LogSTFT(nn.Module):
    """L3-Net's log-magnitude spectrogram: ``log(|STFT| + eps)``.

    Args:
        feat: STFT sizes (``n_fft``, ``win_length``, ``hop_length``, ``center``).
        sample_rate: unused (the bins are linear); kept so every front end is built alike.
    """

    def __init__(self, feat: AudioFeatures, sample_rate: int | None = None):
        super().__init__()
        self.spec = _Spectrogram(feat.n_fft, feat.win_length, feat.hop_length, feat.center, 1)

    def forward(self, wave: Tensor) -> Tensor:
        """``[B, N]`` float waveform -> ``[B, 1, n_fft // 2 + 1, T]`` float32."""
        return torch.log(self.spec(wave) + LOG_EPS).unsqueeze(1)


class LogMel(nn.Module):
    """Log mel power spectrogram (HTK mel scale, 0 Hz to Nyquist).

    Args:
        feat: STFT sizes and ``n_mels``.
        sample_rate: of the incoming waveforms, in Hz.
    """

    def __init__(self, feat: AudioFeatures, sample_rate: int):
        super().__init__()
        self.spec = _Spectrogram(feat.n_fft, feat.win_length, feat.hop_length, feat.center, 2)
        # torchaudio warns of empty filters in several lines: a new run with them is refused
        # (avssl.training_checks.mel_error); a model trained with them still evaluates
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            fb = torchaudio.functional.melscale_fbanks(
                feat.n_fft // 2 + 1, 0.0, sample_rate / 2, feat.n_mels, sample_rate
            )  # [n_freqs, n_mels]
        self.register_buffer("fb", fb.T.contiguous(), persistent=False)

    def forward(self, wave: Tensor) -> Tensor:
        """``[B, N]`` float waveform -> ``[B, 1, n_mels, T]`` float32."""
        with torch.autocast(device_type=wave.device.type, enabled=False):
            mel = torch.matmul(self.fb, self.spec(wave))
            return torch.log(mel + LOG_EPS).unsqueeze(1)


class CepstralLifter(nn.Module):
    """Low-quefrency liftering of a log spectrogram along frequency.

    Each frame's ``F`` log bands are projected on the first ``k`` orthonormal DCT-II basis
    vectors (the cepstral coefficients MFCCs keep) and back, so the output has the input's
    shape: the spectral envelope (formants) stays, the fine structure of the pitch harmonics,
    which tells voices apart more than it tells words apart, goes (Davis & Mermelstein, 1980,
    https://doi.org/10.1109/TASSP.1980.1163420). ``k = 0`` or ``k >= F`` is the identity.

    Args:
        k: cepstral coefficients kept.
        n_bands: ``F``, the bands of the incoming spectrogram.
    """

    def __init__(self, k: int, n_bands: int):
        super().__init__()
        if k < 0:
            raise ConfigError(f"model.audio.lifter must be >= 0, got {k}")
        self.active = 0 < k < n_bands
        if self.active:
            dct = torchaudio.functional.create_dct(k, n_bands, norm="ortho")  # [F, k]
            self.register_buffer("proj", dct @ dct.T, persistent=False)  # [F, F]

    def forward(self, x: Tensor) -> Tensor:
        """``[B, 1, F, T]`` -> ``[B, 1, F, T]``."""
        if not self.active:
            return x
        return torch.einsum("fg,bcgt->bcft", self.proj, x)


class ActiveSpanStretch(nn.Module):
    """Linear time normalisation of an isolated word: the alignment isolated-word recognisers used
    before dynamic time warping (Sakoe & Chiba, 1978, https://doi.org/10.1109/TASSP.1978.1163055,
    the warping that replaced it).

    In each example, the frames from the first to the last whose energy lies within ``floor_db``
    of the loudest frame are stretched (linear interpolation in time) to fill the whole window,
    so one word said fast or slowly, early or late in the window, spans the same frames. The
    same deterministic transform runs in training and evaluation. ``floor_db = 0`` is off.

    Args:
        floor_db: energy floor below the loudest frame, in dB (power); ``>= 0``.
        power: the exponent of the incoming spectrogram: 2 for log power (log-mel), 1 for log
            magnitude (L3-Net's log-STFT, whose values are doubled to measure power).
    """

    def __init__(self, floor_db: float, power: float = 2.0):
        super().__init__()
        if floor_db < 0:
            raise ConfigError(f"model.audio.stretch_active_db must be >= 0, got {floor_db}")
        self.active = floor_db > 0
        self.floor = floor_db * math.log(10) / 10  # dB of power -> natural log of power
        self.to_power = 2.0 / power

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, F, T]`` log spectrogram (natural log) -> ``[B, C, F, T]``."""
        if not self.active or x.shape[-1] < 2:
            return x
        b, _, f, t = x.shape
        start, end = self.span(x)
        frame = torch.arange(t, device=x.device)
        pos = start + (end - start) * frame.to(x.dtype) / (t - 1)  # [B, T] input frame
        xs = (2 * pos / (t - 1) - 1).view(b, 1, t).expand(b, f, t)
        ys = torch.linspace(-1, 1, f, device=x.device, dtype=x.dtype).view(1, f, 1).expand(b, f, t)
        grid = torch.stack([xs, ys], dim=-1)  # rows sampled exactly: linear in time only
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)

    def span(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, C, F, T]`` -> the first and last active frame of each example, long ``[B, 1]``."""
        t = x.shape[-1]
        # [B, T] log frame power
        energy = torch.logsumexp(x.float() * self.to_power, dim=2).amax(dim=1)
        on = energy >= energy.amax(dim=1, keepdim=True) - self.floor
        frame = torch.arange(t, device=x.device)
        start = torch.where(on, frame, t).amin(dim=1, keepdim=True)
        end = torch.where(on, frame, -1).amax(dim=1, keepdim=True)
        return start, end


AUDIO_FRONTENDS = {"logstft": LogSTFT, "logmel": LogMel}
NORMALIZERS = ("none", "band")


class AudioFrontend(nn.Module):
    """Training-time waveform warping (:class:`WaveWarp`) and noise (:class:`AddNoise`), log
    spectrogram, then optional cepstral liftering (:class:`CepstralLifter`), time normalisation
    of the active span (:class:`ActiveSpanStretch`), band-mean normalisation and training-time
    band-statistics mixing, frequency warping and masking."""

    def __init__(self, feat: AudioFeatures, sample_rate: int):
        super().__init__()
        if feat.kind not in AUDIO_FRONTENDS:
            valid = ", ".join(AUDIO_FRONTENDS)
            raise ConfigError(f"model.audio.kind: unknown front end {feat.kind!r} (valid: {valid})")
        if feat.normalize not in NORMALIZERS:
            raise ConfigError(
                f"model.audio.normalize: {feat.normalize!r} is not one of {', '.join(NORMALIZERS)}"
            )
        self.wave_warp = WaveWarp(feat.speed_perturb, round(feat.time_shift * sample_rate))
        self.noise = AddNoise(feat.noise_snr)
        self.spec = AUDIO_FRONTENDS[feat.kind](feat, sample_rate)
        self.lifter = CepstralLifter(feat.lifter, n_bands(feat))
        power = 2.0 if feat.kind == "logmel" else 1.0
        self.stretch = ActiveSpanStretch(feat.stretch_active_db, power)
        self.band_mean = feat.normalize == "band"
        self.mixstyle = FreqMixStyle(feat.mixstyle, feat.mixstyle_alpha)
        self.warp = FrequencyWarp(feat.freq_warp, band_centres_hz(feat, sample_rate))
        self.mask = SpecMask(feat.freq_mask, feat.time_mask, feat.spec_masks)

    def forward(self, wave: Tensor) -> Tensor:
        """``[B, N]`` float waveform -> ``[B, 1, F, T]`` float32.

        Raises:
            ValueError: ``wave`` is not ``[B, N]`` (one ``[N]`` sound came out ``[F, 1, T]``,
                silently; add its batch axis: ``wave[None]``).
        """
        if wave.dim() != 2:
            raise ValueError(f"wave must be [B, N] (a batch of sounds), got {list(wave.shape)}")
        x = self.spec(self.noise(self.wave_warp(wave)))
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = self.stretch(self.lifter(x))
            if self.band_mean:
                x = x - x.mean(dim=-1, keepdim=True)
            return self.mask(self.warp(self.mixstyle(x)))


def build_audio_frontend(feat: AudioFeatures, sample_rate: int) -> nn.Module:
    """The front end of ``feat``: waveform ``[B, N]`` -> ``[B, 1, F, T]`` (see
    :class:`AudioFrontend`)."""
    # on the CPU even where a device context says otherwise: its filterbanks are computed with
    # checks that read values (torchaudio's melscale_fbanks), which the meta device that counts
    # a model's parameters (avssl.train.memory) cannot give; the model is moved as a whole later
    with torch.device("cpu"):
        return AudioFrontend(feat, sample_rate)


def n_bands(feat: AudioFeatures) -> int:
    """Frequency bins ``F`` of the front end's output."""
    return feat.n_mels if feat.kind == "logmel" else feat.n_fft // 2 + 1


def band_centres_hz(feat: AudioFeatures, sample_rate: int) -> Tensor:
    """float ``[F]``: the centre frequency of each band of the front end's output, in Hz (for
    log-mel, the peaks of :class:`LogMel`'s HTK filters, equally spaced in mel)."""
    if feat.kind != "logmel":
        return torch.arange(n_bands(feat), dtype=torch.float32) * sample_rate / feat.n_fft
    top = 2595.0 * math.log10(1.0 + sample_rate / 2 / 700.0)
    mel = torch.linspace(0.0, top, feat.n_mels + 2, dtype=torch.float64)[1:-1]
    return (700.0 * (10.0 ** (mel / 2595.0) - 1.0)).float()


def audio_feature_shape(feat: AudioFeatures, sample_rate: int, window: float) -> tuple[int, int]:
    """``(F, T)`` of the front end's output for ``window`` seconds at ``sample_rate``."""
    n = round(window * sample_rate)
    n_freq = n_bands(feat)
    if feat.center:
        return n_freq, 1 + n // feat.hop_length
    if n < feat.win_length:
        raise ConfigError(f"audio window of {n} samples is shorter than win_length")
    return n_freq, 1 + (n - feat.win_length) // feat.hop_length
