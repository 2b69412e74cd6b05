"""Settings a run must not train with, though a model built with them still works: each would
train to nothing, or ask more of the machine than it has. Checked with the config of a new or
resumed run (:func:`avssl.config_checks.check_ranges`), never with the config stored in a
checkpoint, so a model trained before a check existed can still be evaluated.

Each check returns ``(key, reason)`` or None; a reason names every other key that decides it, as
a whole dotted key, so that the config file is named only when it set one of them and no
``--set`` override did (:func:`avssl.config_decided.file_decided`).
"""

from __future__ import annotations

import warnings

# upper bounds of settings only training reads
TRAINING_LIMITS: dict[str, float] = {
    "data.prefetch": 64,  # batches held ready: each is a batch of decoded clips in memory
    # scores times the sharpness must stay far inside float32 (3.4e38) in the log-sum-exp; 1e308
    # made the loss NaN at step 0 with a hint at the learning rate
    "model.lse_sharpness": 1000,
    "model.avol_scale_init": 1000,
}
# beyond it the noise (or the signal) is all there is; -500 dB overflowed float32 into NaN
# weights that a bf16 ReLU hid from the loss
MAX_SNR_DB = 120


def limit_error(cfg) -> tuple[str, str] | None:
    """``(key, reason)`` for the first value above :data:`TRAINING_LIMITS`."""
    for key, top in TRAINING_LIMITS.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value > top:
            return key, f"must be at most {top}, got {value}"
    return None


def spectrogram_shape(cfg) -> tuple[int, int]:
    """``(bands, frames)`` of the audio front end's output for one ``data.window``, framed as
    :class:`avssl.features._Spectrogram` frames it (``torch.stft`` pads ``n_fft // 2`` on each
    side when centred; uncentred, a window shorter than ``n_fft`` is centred in it)."""
    from avssl.features import n_bands

    audio = cfg.model.audio
    n = round(cfg.data.window * cfg.data.sample_rate)
    bands = n_bands(audio)
    if audio.center:
        frames = 1 + (n + 2 * (audio.n_fft // 2) - audio.n_fft) // audio.hop_length
    else:
        frames = 1 + (n - audio.win_length) // audio.hop_length
    return bands, frames


def mask_error(cfg) -> tuple[str, str] | None:
    """``(key, reason)`` when a SpecAugment mask can be wider than the spectrogram: torchaudio
    draws a width below the mask's parameter, so a parameter above the size can mask it whole."""
    audio = cfg.model.audio
    if not audio.spec_masks:
        return None
    bands, frames = spectrogram_shape(cfg)
    band = "model.audio.n_mels" if audio.kind == "logmel" else "model.audio.n_fft"
    band_keys = f"model.audio.kind {audio.kind}, {band}"
    frame = "model.audio.n_fft" if audio.center else "model.audio.win_length"
    frame_keys = (f"data.window, data.sample_rate, {frame}, model.audio.hop_length, "
                  "model.audio.center")  # fmt: skip
    for key, width, size, what, keys in (
        ("freq_mask", audio.freq_mask, bands, "bands", band_keys),
        ("time_mask", audio.time_mask, frames, "frames", frame_keys),
    ):
        if width > size:
            return f"model.audio.{key}", (
                f"{width} is wider than the spectrogram's {size} {what} (from {keys}) that "
                f"model.audio.spec_masks {audio.spec_masks} masks"
            )
    return None


def optimiser_error(cfg) -> tuple[str, str] | None:
    """``(key, reason)`` when AdamW's decoupled decay (``w -= lr * weight_decay * w``) would wipe
    the weights at every step at the peak learning rate."""
    t = cfg.train
    if t.optimizer == "adamw" and t.lr * t.weight_decay >= 1:
        return "train.weight_decay", (
            f"{t.weight_decay:g} x train.lr {t.lr:g} is >= 1: each step would decay the weights "
            "to zero or past it (train.optimizer adamw)"
        )
    return None


def shift_error(cfg) -> tuple[str, str] | None:
    """``("data.min_shift", reason)`` when a hard negative (the clip's own sound, shifted) may
    be a positive window itself: every method draws them, for training or for validation, and
    a training positive may sit ``data.positive_jitter * data.window / 2`` from its frame."""
    d = cfg.data
    reach = d.positive_jitter * d.window / 2  # how far from its frame a positive may sit
    if d.min_shift > reach:
        return None
    jitter = ""
    if reach:  # with no jitter (reach 0) min_shift 0 alone is refused, whatever the window
        jitter = (
            f" (data.positive_jitter {d.positive_jitter:g}: a positive sits up to {reach:g} s "
            f"from its frame, {d.positive_jitter:g} x half the data.window of {d.window:g} s)"
        )
    return "data.min_shift", (
        f"{d.min_shift:g} lets a hard negative (the clip's sound shifted in time) be a positive "
        f"itself{jitter}; set it above {reach:g} ({d.window * (1 + d.positive_jitter / 2):g} or "
        "more keeps the two from overlapping)"
    )


def stream_error(cfg) -> tuple[str, str] | None:
    """``("data.stream", reason)`` when streaming is asked for without a shard cache to stream."""
    if cfg.data.stream and not cfg.data.cache:
        return "data.stream", "true needs data.cache (a shard cache from avssl cache)"
    return None


def noise_error(cfg) -> tuple[str, str] | None:
    """``("model.audio.noise_snr", reason)`` for an SNR beyond +-:data:`MAX_SNR_DB` dB."""
    snr = cfg.model.audio.noise_snr
    if all(-MAX_SNR_DB <= x <= MAX_SNR_DB for x in snr):
        return None
    return "model.audio.noise_snr", f"must lie in [-{MAX_SNR_DB}, {MAX_SNR_DB}] dB, got {snr}"


def mel_error(cfg) -> tuple[str, str] | None:
    """``("model.audio.n_mels", reason)`` when more than a tenth of the mel filters are empty:
    their bands fall between two FFT bins and stay at a constant ``log(eps)``. A few empty
    low bands are common (128 bands of a 512-point FFT at 16 kHz leave one) and harmless."""
    audio, rate = cfg.model.audio, cfg.data.sample_rate
    if audio.kind != "logmel":
        return None
    import torchaudio

    with warnings.catch_warnings():  # torchaudio warns of empty filters in several lines
        warnings.simplefilter("ignore", UserWarning)
        fb = torchaudio.functional.melscale_fbanks(
            audio.n_fft // 2 + 1, 0.0, rate / 2, audio.n_mels, rate
        )  # as avssl.features.LogMel builds them
    empty = int((fb.max(dim=0).values <= 0).sum())
    if empty * 10 <= audio.n_mels:
        return None
    return "model.audio.n_mels", (
        f"{audio.n_mels}: {empty} of the mel filters are empty at model.audio.n_fft "
        f"{audio.n_fft} and data.sample_rate {rate} (model.audio.kind logmel; fewer bands or a "
        "larger n_fft)"
    )


def training_error(cfg) -> tuple[str, str] | None:
    """The first setting a run must not train with, as ``(key, reason)``, or None."""
    checks = (limit_error, mask_error, optimiser_error, shift_error, stream_error, noise_error,
              mel_error)  # fmt: skip
    for check in checks:
        found = check(cfg)
        if found is not None:
            return found
    return None
