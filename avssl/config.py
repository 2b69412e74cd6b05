"""Nested dataclass configuration, loaded from YAML with ``--set key=value`` overrides.

Every size in the method table of the README is a value here. ``configs/<method>.yaml`` hold the
small, fast defaults; ``configs/<method>-paper.yaml`` the paper sizes.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from avssl.config_checks import check_ranges
from avssl.config_decided import file_error, written_keys
from avssl.config_parse import apply_override, from_dict, read_config_file
from avssl.errors import ConfigError


@dataclass
class SynthConfig:
    """The built-in synthetic AV world (see :mod:`avssl.data.synthetic`)."""

    n_train: int = 480
    n_val: int = 64
    n_test: int = 64
    duration: float = 4.0
    size: int = 96
    fps: int = 25
    sample_rate: int = 16000
    n_classes: int = 6
    max_distractors: int = 2
    seed: int = 0


@dataclass
class DataConfig:
    """Where clips come from and how pairs are cut out of them."""

    root: str | None = None  # a manifest.jsonl (or a folder holding one); None = synthetic world
    fps: float = 25.0  # frame rate frames are decoded at
    load_size: int = 72  # decoded frame size before the random crop
    frame_size: int = 64  # model input size (square)
    sample_rate: int = 16000
    window: float = 1.0  # seconds of audio per pair, centred on the frame (see positive_jitter)
    # training positives: the audio window's centre up to this share of half the window from
    # the frame (0: centred; 1: any window holding the frame, as Look, Listen and Learn)
    positive_jitter: float = 0.0
    min_shift: float = 1.0  # hard negatives: audio shifted by at least this many seconds
    # l3, avenet, avolnet: share of negatives that are hard (same clip, shifted); contrastive
    # ignores it (loss.hard_negatives)
    hard_fraction: float = 0.5
    preload: bool = True  # decode every clip once into memory (small datasets)
    num_workers: int = 0
    # with num_workers=0: batches prepared ahead in a background thread of the training process
    # (0: none, each batch is built between steps)
    prefetch: int = 2
    cache: str | None = None  # a shard cache folder (avssl cache) read instead of the media
    # train from data.cache shard by shard (datasets larger than memory) instead of loading the
    # train split into memory; needs data.cache (validation is still loaded)
    stream: bool = False
    # decoded clips each loader worker holds to shuffle a stream (memory: clips x their frames)
    shuffle_buffer: int = 64
    augment: bool = True  # L3 training augmentations (random crop, flip, colour jitter)
    # how a train-split frame is made square when decoded: "squash" resizes the whole frame
    # (aspect ratio lost); "crop" scales its shorter side to the size and keeps the centre
    # square. val and test frames always squash (boxes stay valid; avssl.data.frame_fit)
    frame_fit: str = "squash"
    # easy negatives only from clips whose (first) label the frame does not show (labels, or
    # the manifest's frame_labels): with AV-Digits canvases a random other recording is often
    # a digit on the canvas, a correct match, not a negative
    unseen_negatives: bool = False
    synthetic: SynthConfig = field(default_factory=SynthConfig)


@dataclass
class AudioFeatures:
    """Audio front end: L3 log-magnitude STFT or log-mel, computed on the model's device."""

    kind: str = "logmel"  # "logstft" | "logmel"
    n_fft: int = 1024
    win_length: int = 640  # 40 ms at 16 kHz
    hop_length: int = 320  # 20 ms: half a video frame at 25 fps
    n_mels: int = 40
    center: bool = False
    # "band": subtract each frequency band's mean over the window (cepstral mean normalisation:
    # removes the speaker's and the microphone's fixed spectral envelope); "none": raw
    normalize: str = "none"
    # keep only the first ``lifter`` cepstral coefficients of each frame (DCT of the log bands,
    # truncated, transformed back): a smooth spectral envelope without the pitch harmonics,
    # as MFCCs keep it; 0 keeps the bands as they are
    lifter: int = 0
    # isolated words: stretch the span from the first to the last frame within this many dB of
    # the loudest frame to the whole window (linear time normalisation, in training and
    # evaluation); 0 is off
    stretch_active_db: float = 0.0
    # training only, per example: stretch the frequency axis by a random factor in [1-w, 1+w]
    # (vocal tract length perturbation, https://www.cs.toronto.edu/~ndjaitly/jaitly_vtlp.pdf)
    freq_warp: float = 0.0
    # training only: with this probability per batch, each example's band statistics (mean and
    # std over time) are mixed with another example's (frequency-wise MixStyle); 0 is off
    mixstyle: float = 0.0
    mixstyle_alpha: float = 0.3
    # training only, per example: SpecAugment masks (https://arxiv.org/abs/1904.08779),
    # ``spec_masks`` bands of fewer than ``freq_mask`` mel bins and as many spans of fewer than
    # ``time_mask`` frames (widths 0 to N - 1, torchaudio's mask_param) set to the example's
    # mean; 0 turns a kind off
    freq_mask: int = 0
    time_mask: int = 0
    spec_masks: int = 2
    # training only, per example, on the waveform: resample by a random factor in [1-s, 1+s]
    # (speed perturbation: tempo, pitch and formants change together) and shift by up to
    # time_shift seconds (zeros shifted in), both by linear interpolation (a random low-pass:
    # audio_augment.WaveWarp); for clips whose timing carries no signal (never with hard,
    # time-shifted negatives: refused)
    speed_perturb: float = 0.0
    time_shift: float = 0.0
    # training only, per example, on the waveform after that: white noise at a signal-to-noise
    # ratio drawn uniformly from [lo, hi] dB; [] turns it off
    noise_snr: list[float] = field(default_factory=list)


@dataclass
class ModelConfig:
    """Encoders and head. ``method`` picks an entry of :data:`avssl.models.METHODS`, or a method
    installed by another package (:mod:`avssl.models.plugins`)."""

    method: str = "contrastive"
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 128])
    conv1_stride: int = 2  # 2 in AVE-Net / AVOL-Net, 1 in L3-Net
    vision_pool_last: bool = False  # False keeps the last block's resolution (AVOL 14x14 map)
    audio_time_bins: int = 3  # 1: global max-pool (the papers); k: keep k time spans (sync)
    # the first k audio blocks are each followed by relaxed instance frequency-wise normalisation
    # (RFN, https://arxiv.org/abs/2206.12513; against device and voice shift); 0: none (papers)
    audio_rfn_blocks: int = 0
    audio_rfn_lambda: float = 0.5
    embed_dim: int = 128
    fusion_hidden: int = 128  # L3 fusion FC
    head_hidden: int = 128  # hidden width of the AVE/AVOL/contrastive projection heads
    # batch norm in the projection heads (MoCo v3, https://arxiv.org/abs/2104.02057; statistics
    # per process, no SyncBatchNorm), and in L3's hidden fusion layer; False: the papers' heads
    head_bn: bool = False
    temperature: float = 0.07  # contrastive; learnt when learn_temperature
    learn_temperature: bool = True
    mil_pool: str = "lse"  # training-time pooling over locations: "max" | "lse" (eval: max)
    lse_sharpness: float = 10.0
    # AVOL-Net's calibration a * x + b starts at a = avol_scale_init (1 in the paper's form);
    # 1 / sqrt(embed_dim) gives unit-variance location logits under head batch norm
    avol_scale_init: float = 1.0
    spatial: bool = True  # contrastive: score = max over locations of the visual map
    # contrastive: each sound augmented this many times per step, the InfoNCE averaged over the
    # views (batch augmentation, https://arxiv.org/abs/1901.09335); 1: one view (the papers)
    audio_views: int = 1
    audio: AudioFeatures = field(default_factory=AudioFeatures)


@dataclass
class LossConfig:
    """Objective settings (see :mod:`avssl.losses`)."""

    hard_negatives: bool = True  # contrastive: add same-clip shifted audio as extra negatives
    # contrastive (and avolnet with pair_negatives: batch): a frame showing the sound's class
    # (same label, or in the row's frame_labels) is not a negative for that sound; uses labels,
    # so off for self-supervised training
    mask_same_label: bool = False
    # avolnet: the negatives of the logistic loss. "sampled": each clip's audio_neg, one per
    # positive (the paper); "batch": every other sound of the batch (the sigmoid loss over all
    # pairs of SigLIP, https://arxiv.org/abs/2303.15343), balanced half positives, half negatives
    pair_negatives: str = "sampled"
    # contrastive: weight of the reversed gradient of a domain classifier on the audio embedding
    # (domain-adversarial training, https://arxiv.org/abs/1505.07818); the domains are the
    # manifest rows' ``domain`` field (AV-Digits: the speaker). 0: off
    domain_adversary: float = 0.0
    # the domain names the classifier tells apart; [] with domain_adversary > 0: the training
    # split's, sorted, filled in when the run starts (and saved with it)
    domains: list[str] = field(default_factory=list)


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping."""

    batch_size: int = 64
    steps: int = 1200
    # wall-clock budget of the whole run in minutes (data loading and validation included; 0:
    # none). When train.steps would not fit, the run plans fewer steps, compresses the learning
    # rate's decay into them and ends inside the budget (avssl.train.schedule.TimeBudget)
    max_minutes: float = 0.0
    # adamw: decoupled decay (weights shrink by lr x weight_decay a step); adam: the decay is
    # an L2 term in the gradient, as the papers' TensorFlow Adam (avssl.train.optim)
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    # false: weight decay on matrices and kernels only, not on biases, norms or the temperature
    # (avssl.train.optim)
    decay_all: bool = True
    warmup_steps: int = 100
    # exponential moving average of the weights for validation, best.pt and evaluation (0: off;
    # avssl.train.averaging)
    ema_decay: float = 0.0
    schedule: str = "cosine"  # cosine | constant (after warm-up)
    eval_every: int = 200
    log_every: int = 50
    precision: str = "auto"  # auto (bf16 on CPUs/GPUs that support it) | bf16 | fp16 | fp32
    channels_last: bool = True
    # torch.compile the training step (inductor); off: on this project's 2-core CPU it measured
    # no gain for the small configs (see the README's benchmarks), and compiling takes minutes
    compile: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0
    # true also keeps cuDNN's autotuner off on CUDA (avssl.train.runtime.configure_cuda)
    deterministic: bool = False
    # CUDA only: float32 matmuls and cuDNN convolutions may round their inputs to TF32 (Ampere
    # and later GPUs); false: IEEE float32 (avssl.train.runtime.configure_cuda)
    tf32: bool = False
    runs_dir: str = "runs"
    val_windows: int = 4  # windows per validation clip


@dataclass
class Config:
    """The whole resolved configuration of a run (saved in ``config.yaml`` and checkpoints)."""

    name: str = "default"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def to_dict(cfg) -> dict:
    """Plain nested dict of a config dataclass (YAML/JSON/checkpoint friendly)."""
    return dataclasses.asdict(cfg)


def dotted_values(cfg) -> dict:
    """``{"train.lr": 0.002, "model.audio.n_mels": 40, ...}``: every value of a config
    dataclass that is not a section, by its dotted key (to compare two configs key by key)."""

    def leaves(tree: dict, prefix: str) -> dict:
        out = {}
        for key, value in tree.items():
            if isinstance(value, dict) and value:
                out.update(leaves(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = value
        return out

    return leaves(to_dict(cfg), "")


def load_config(path: str | os.PathLike | None = None, overrides: list[str] = ()) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply overrides.

    Args:
        path: a YAML file such as ``configs/l3.yaml``, or None for the defaults.
        overrides: ``key=value`` strings, as ``--set`` takes them, e.g.
            ``["train.steps=7", "model.channels=[8, 16]"]`` (a list, not one string).

    Raises:
        ConfigError: an unreadable file, an unknown key, a value of the wrong type or out of
            range (:mod:`avssl.config_checks`), or ``overrides`` given as one string. The file
            is named when it gave the refused value (:func:`~avssl.config_decided.file_decided`).
    """
    if isinstance(overrides, str):  # was read character by character: "expects key=value, 't'"
        raise ConfigError(f"overrides must be a list of key=value strings: [{overrides!r}]")
    data = {}
    if path is not None:
        path = Path(path)
        data = read_config_file(path)
        try:
            cfg = from_dict(Config, data)
        except ConfigError as err:
            raise file_error(path, str(err)) from None
    else:
        cfg = Config()
    for item in overrides:
        apply_override(cfg, item)
    check_ranges(cfg, path, overrides, written_keys(data))
    return cfg


def config_from_dict(data: dict) -> Config:
    """Rebuild a :class:`Config` saved by :func:`to_dict` (e.g. inside a checkpoint)."""
    return from_dict(Config, data)


def dump_yaml(cfg) -> str:
    """YAML text of a config (as in a run's ``config.yaml``), fields in declaration order."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
