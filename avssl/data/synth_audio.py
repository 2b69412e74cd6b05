"""Sound synthesis for the synthetic AV world (:mod:`avssl.data.synth_render` draws the
pictures): sums of sinusoids or filtered noise under a decaying envelope, vectorised numpy."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from avssl.data.synth_render import ClassSpec


def onset_times(rng: np.random.Generator, duration: float, ioi: tuple[float, float]) -> np.ndarray:
    """Irregular note onsets in ``[0, duration)``: first in [0, 0.3) s, then ``ioi`` steps.

    Args:
        rng: the clip's random generator.
        duration: clip length in seconds.
        ioi: ``(low, high)`` range in seconds of the uniform intervals between onsets.

    Returns:
        ``[K]`` increasing onset times in seconds.
    """
    times = [rng.uniform(0.0, 0.3)]
    while True:
        nxt = times[-1] + rng.uniform(*ioi)
        if nxt >= duration:
            return np.asarray(times)
        times.append(nxt)


def envelope(t: np.ndarray, onsets: np.ndarray, tau: float) -> np.ndarray:
    """``exp(-(t - last onset) / tau)`` at times ``t`` (0 before the first onset). Shape of t.

    Args:
        t: times in seconds, any shape.
        onsets: ``[K]`` increasing onset times in seconds.
        tau: decay time constant in seconds.
    """
    idx = np.searchsorted(onsets, t, side="right") - 1
    since = t - onsets[np.maximum(idx, 0)]
    return np.where(idx >= 0, np.exp(-since / tau), 0.0)


def tone(spec: ClassSpec, n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A continuous tone of the class timbre, float ``[n]`` with unit RMS.

    Args:
        spec: the class (its ``pitch`` and ``timbre``).
        n: number of samples.
        sample_rate: rate in Hz.
        rng: draws the phase (and the noise of the ``noise`` timbre).
    """
    t = np.arange(n) / sample_rate
    f0, phase = spec.pitch, rng.uniform(0, 2 * np.pi)
    nyquist = 0.45 * sample_rate
    if spec.timbre in ("sine", "square", "saw"):
        step = 2 if spec.timbre == "square" else 1
        harmonics = [1] if spec.timbre == "sine" else range(1, int(nyquist // f0) + 1, step)
        x = sum(np.sin(2 * np.pi * k * f0 * t + k * phase) / k for k in harmonics)
    elif spec.timbre == "fm":  # inharmonic, bell-like
        x = np.sin(2 * np.pi * f0 * t + 2.0 * np.sin(2 * np.pi * 1.41 * f0 * t + phase))
    elif spec.timbre == "noise":  # third-octave-wide band of noise around the pitch
        spectrum = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1 / sample_rate)
        gain = np.exp(-0.5 * (np.log2(np.maximum(freqs, 1.0) / f0) / 0.15) ** 2)
        x = np.fft.irfft(spectrum * gain, n)
    else:
        raise ValueError(f"unknown timbre {spec.timbre!r}")
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def background_noise(n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """White or pink noise (one of the two at random), float ``[n]`` with unit RMS.

    Args:
        n: number of samples.
        sample_rate: rate in Hz (shapes the pink spectrum).
        rng: draws the noise and the choice between white and pink.
    """
    x = rng.standard_normal(n)
    if rng.random() < 0.5:
        freqs = np.fft.rfftfreq(n, 1 / sample_rate)
        x = np.fft.irfft(np.fft.rfft(x) / np.sqrt(np.maximum(freqs, 20.0)), n)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)
