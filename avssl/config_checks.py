"""Range checks of the config's sizes, counts and rates, run before anything is built.

Three tables map a dotted config key to the values it accepts: :data:`RANGES` (numbers),
:data:`LIMITS` (upper bounds of some of them, as far as the machine goes) and :data:`CHOICES`
(names); :func:`name_error` checks the run name. Settings with checks of their own where they
are used (augmentations, pooling, weight averaging, the synthetic world) are not repeated here;
those run before any folder is made too (``check_model_config``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import reduce

from avssl.config_decided import file_decided, file_error
from avssl.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """An interval of accepted numbers; ``low_open``/``high_open`` exclude the bound itself."""

    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = True

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1, high_open=False)
# the contrastive similarity's temperature is kept in this range (a learnt one as well): a
# configured value outside it would be silently replaced by the bound
TEMPERATURE = Range(0.01, 1.0, high_open=False)

RANGES: dict[str, Range] = {
    "data.fps": POSITIVE,
    "data.load_size": POSITIVE,
    "data.frame_size": POSITIVE,
    "data.sample_rate": POSITIVE,
    "data.window": POSITIVE,
    "data.min_shift": NON_NEGATIVE,
    "data.hard_fraction": FRACTION,
    "data.positive_jitter": FRACTION,
    "data.num_workers": NON_NEGATIVE,
    "data.prefetch": NON_NEGATIVE,
    "data.shuffle_buffer": NON_NEGATIVE,  # 0 or 1: shard order only
    "model.channels": POSITIVE,  # each block's width; at least one block
    "model.conv1_stride": POSITIVE,
    "model.audio_time_bins": POSITIVE,
    "model.embed_dim": POSITIVE,
    "model.fusion_hidden": POSITIVE,
    "model.head_hidden": POSITIVE,
    "model.temperature": TEMPERATURE,
    "model.lse_sharpness": POSITIVE,
    "model.avol_scale_init": POSITIVE,
    "model.audio.n_fft": POSITIVE,
    "model.audio.win_length": POSITIVE,
    "model.audio.hop_length": POSITIVE,
    "model.audio.n_mels": POSITIVE,
    "train.batch_size": POSITIVE,
    "train.steps": POSITIVE,
    "train.max_minutes": NON_NEGATIVE,
    "train.lr": POSITIVE,
    "train.weight_decay": NON_NEGATIVE,
    "train.warmup_steps": NON_NEGATIVE,
    "train.eval_every": POSITIVE,
    "train.log_every": POSITIVE,
    "train.val_windows": POSITIVE,
    "train.seed": NON_NEGATIVE,  # numpy's generators take no negative seed
    "data.synthetic.seed": NON_NEGATIVE,
}

# Upper bounds far above any real setting, for values that pass RANGES but are too large for
# the machine: a finite but huge one (1e20, 1e308) would overflow a C integer in torch or numpy,
# or an int() of an infinite product, with a traceback, some of them in the middle of the run.
SIZE_LIMIT = 100_000  # widths, sizes in pixels or samples, per-clip counts: tensor dimensions
# what the media readers decode (avssl.data.media_checks.MAX_PIXELS, MAX_SAMPLE_RATE): above it
# every clip would be skipped as "outside the limit", after minutes of decoding
FRAME_LIMIT, RATE_LIMIT = 4096, 384_000
LIMITS: dict[str, float] = {
    "data.fps": 1000,
    "data.load_size": FRAME_LIMIT,
    "data.frame_size": FRAME_LIMIT,
    "data.sample_rate": RATE_LIMIT,
    "data.window": 3600,  # s
    "model.channels": SIZE_LIMIT,
    "model.conv1_stride": SIZE_LIMIT,
    "model.audio_time_bins": SIZE_LIMIT,
    "model.embed_dim": SIZE_LIMIT,
    "model.fusion_hidden": SIZE_LIMIT,
    "model.head_hidden": SIZE_LIMIT,
    "model.audio.n_fft": SIZE_LIMIT,
    "model.audio.win_length": SIZE_LIMIT,
    "model.audio.hop_length": SIZE_LIMIT,
    "model.audio.n_mels": SIZE_LIMIT,
    "train.max_minutes": 1_000_000,  # about two years
    # the optimiser's step (up to 10 x lr in AdamW's first steps) must fit a float32 (3.4e38):
    # 1e300 raised in the middle of the first step, with a traceback
    "train.lr": 1e30,
    "train.val_windows": SIZE_LIMIT,
    "train.seed": 2**32 - 1,  # numpy's and the data loader's generators take 32-bit seeds
    "data.synthetic.seed": 2**32 - 1,
}

# settings that name one of a few choices, where a typo would otherwise fall back silently
CHOICES: dict[str, tuple[str, ...]] = {
    "data.frame_fit": ("squash", "crop"),  # the first is the default (avssl.data.frame_fit)
    "train.optimizer": ("adamw", "adam"),
    "train.schedule": ("cosine", "constant"),
}


def range_error(cfg) -> tuple[str, str] | None:
    """The first out-of-range value of ``cfg`` as ``(key, reason)``, or None when all fit."""
    for key, accepted in RANGES.items():
        value = reduce(getattr, key.split("."), cfg)
        each = "every value " if isinstance(value, list) else ""
        if each and not value:
            return key, "must not be empty"
        for v in value if each else [value]:
            if not isinstance(v, int) and not math.isfinite(v):  # isfinite(10**400) raises
                return key, f"{each}must be a finite number, got {value}"
            if v not in accepted:
                return key, f"{each}must be {accepted}, got {value}"
            if v > LIMITS.get(key, math.inf):
                return key, f"{each}must be at most {LIMITS[key]}, got {value}"
    for key, names in CHOICES.items():
        value = reduce(getattr, key.split("."), cfg)
        if value not in names:
            return key, f"must be one of {', '.join(names)}, got {value!r}"
    return None


def stft_error(cfg) -> tuple[str, str] | None:
    """``(key, reason)`` when a frame's window is longer than the FFT it is zero-padded to."""
    audio = cfg.model.audio
    if audio.win_length <= audio.n_fft:
        return None
    return "model.audio.win_length", (
        f"{audio.win_length} is more than model.audio.n_fft {audio.n_fft} (a frame of "
        "win_length samples is zero-padded to n_fft)"
    )


def window_error(cfg) -> tuple[str, str] | None:
    """``(key, reason)`` when ``data.window`` holds fewer samples than one STFT frame needs; the
    reason names every key that decides it."""
    audio, data = cfg.model.audio, cfg.data
    n = round(data.window * data.sample_rate)
    if audio.center:  # torch.stft pads n_fft // 2 on each side
        need, frame = audio.n_fft // 2 + 1, "model.audio.n_fft // 2 + 1 with model.audio.center"
    else:
        need, frame = audio.win_length, "model.audio.win_length, model.audio.center false"
    if n >= need:
        return None
    return "data.window", (
        f"{data.window:g} s at data.sample_rate {data.sample_rate} is {n} samples, fewer than "
        f"one frame of the audio features needs ({need}: {frame})"
    )


def name_error(cfg) -> tuple[str, str] | None:
    """``("name", reason)`` when the run name cannot name a run folder."""
    name = cfg.name
    if not isinstance(name, str) or not name.strip() or name in (".", "..") or "/" in name:
        return "name", f"must be a folder name (no '/'), got {name!r}"
    return None


def config_error(cfg) -> tuple[str, str] | None:
    """The first problem :func:`check_ranges` refuses, as ``(key, reason)``, or None.

    For a config read from elsewhere than a file or ``--set`` (the one stored in a checkpoint),
    whose error names that source.
    """
    return range_error(cfg) or stft_error(cfg) or window_error(cfg) or name_error(cfg)


def check_ranges(cfg, path=None, overrides: list[str] = (), file_keys: Iterable[str] = ()) -> None:
    """Refuse a config to train with: an out-of-range size, count or rate, or a setting that
    would train to nothing (:mod:`avssl.training_checks`, not applied to a stored checkpoint's
    config, which evaluation reads with :func:`config_error` alone).

    Args:
        cfg: a :class:`avssl.config.Config`.
        path: the config file the values were read from, named in the error when the file
            decided it (:func:`file_decided`).
        overrides: the ``--set key=value`` assignments applied after the file.
        file_keys: the dotted keys the file gives a value (:func:`written_keys`); with none, the
            file is never named.

    Raises:
        ConfigError: naming the first such key, what it accepts and the value it holds.
    """
    from avssl.training_checks import training_error

    found = config_error(cfg) or training_error(cfg)
    if found is None:
        return
    key, reason = found
    message = f"{key}: {reason}"
    if path is not None and file_decided(key, reason, file_keys, overrides):
        raise file_error(path, message)
    raise ConfigError(message)
