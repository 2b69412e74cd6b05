"""Audio-visual correspondence models: one class per method, one explicit registry.

A new method is a subclass of :class:`~avssl.models.base.AVModel` that declares its properties
(:class:`~avssl.models.traits.MethodTraits`) and is registered by name, ``METHODS["mine"] =
Mine``, or installed by its own package as an entry point of the group ``avssl.methods``
(:mod:`avssl.models.plugins`); ``model.method: mine`` then selects it (README, "Adding a
method"). A name in :data:`METHODS` is never looked up among the installed packages.
"""

from __future__ import annotations

import dataclasses

import torch

from avssl.config import DataConfig, LossConfig, ModelConfig
from avssl.errors import ConfigError
from avssl.features import audio_feature_shape
from avssl.models.avenet import AVENet
from avssl.models.avolnet import AVOLNet
from avssl.models.base import AVModel
from avssl.models.contrastive import ContrastiveAV
from avssl.models.l3 import L3Net
from avssl.models.plugins import plugin_class, unknown_method

METHODS: dict[str, type[AVModel]] = {
    "l3": L3Net,
    "avenet": AVENet,
    "avolnet": AVOLNet,
    "contrastive": ContrastiveAV,
}

MIL_POOLS = ("lse", "max")


def _lookup(name: object) -> type[AVModel] | None:
    """The class of :data:`METHODS` named ``name``, else that of the installed plugin of that
    name (imported now), else None.

    Raises:
        ConfigError: the plugin of that name cannot be used (:func:`plugins.load
            <avssl.models.plugins.load>`).
    """
    if not isinstance(name, str):
        return None
    if name in METHODS:  # before any metadata is read: plugins never touch a registered name
        return METHODS[name]
    return plugin_class(name)


def method_class(name: str) -> type[AVModel]:
    """The class registered or installed as ``name``, whose attributes tell what the method does
    (:class:`~avssl.models.traits.MethodTraits`); :class:`AVModel` itself, with the defaults,
    for a name that is neither (a record of another version, or of a package not installed
    here: :func:`build_model` refuses it where a model is built).

    Raises:
        ConfigError: the installed plugin of that name cannot be used.
    """
    cls = _lookup(name)
    return AVModel if cls is None else cls


def _allowing(trait: str) -> str:
    """The registered methods whose class sets ``trait``, for a refusal's message (installed
    plugins are not imported to be listed)."""
    return ", ".join(name for name, cls in METHODS.items() if getattr(cls, trait))


def build_model(cfg: ModelConfig, data: DataConfig, loss: LossConfig | None = None) -> AVModel:
    """Build the model named by ``cfg.method``.

    Args:
        cfg: encoders and head.
        data: the data settings the model's front ends depend on (``sample_rate``).
        loss: objective settings (used by ``contrastive``); defaults to ``LossConfig()``.

    Raises:
        ConfigError: unknown method or pooling, an installed method that cannot be used, or
            RFN, view, time span or adversary settings out of range.
    """
    cls = _lookup(cfg.method)
    if cls is None:
        raise unknown_method(cfg.method, METHODS)
    if cfg.mil_pool not in MIL_POOLS:
        raise ConfigError(f"model.mil_pool: {cfg.mil_pool!r} (valid: {', '.join(MIL_POOLS)})")
    if not 0 <= cfg.audio_rfn_blocks <= len(cfg.channels):
        raise ConfigError(
            f"model.audio_rfn_blocks: {cfg.audio_rfn_blocks} is not in [0, {len(cfg.channels)}]"
            " (the audio tower's blocks)"
        )
    if not 0.0 <= cfg.audio_rfn_lambda <= 1.0:
        raise ConfigError(f"model.audio_rfn_lambda: {cfg.audio_rfn_lambda} is not in [0, 1]")
    if cfg.audio_views < 1 or (cfg.audio_views > 1 and not cls.supports_audio_views):
        raise ConfigError(
            f"model.audio_views: {cfg.audio_views} "
            f"(>= 1; views above 1 are for {_allowing('supports_audio_views')} only)"
        )
    loss = loss or LossConfig()
    if loss.domain_adversary < 0 or (
        loss.domain_adversary > 0 and not cls.supports_domain_adversary
    ):
        raise ConfigError(
            f"loss.domain_adversary: {loss.domain_adversary} "
            f"(>= 0; above 0 is for {_allowing('supports_domain_adversary')} only)"
        )
    pairs = loss.pair_negatives
    if pairs not in ("sampled", "batch") or (pairs == "batch" and not cls.supports_batch_pairs):
        raise ConfigError(
            f"loss.pair_negatives: {pairs!r} "
            f"(sampled | batch; batch is for {_allowing('supports_batch_pairs')} only)"
        )
    _, frames = audio_feature_shape(cfg.audio, data.sample_rate, data.window)
    if cfg.audio_time_bins > frames:  # 100000 spans built a 6 GB head, then the kernel killed it
        one_span = dataclasses.replace(cfg, audio_time_bins=1)  # a window too short for the
        with torch.device("cpu"):  # towers says so, from a real pass even on the meta device
            embedding_dims(cls(one_span, data, loss).eval(), data)
        # each key that decides the frame count, by its whole name: a config file that set
        # one of them is named for the refusal, one that set only other model.audio keys is not
        a = cfg.audio
        framing = (
            f"model.audio.hop_length {a.hop_length}, model.audio.center {str(a.center).lower()}"
        )
        if not a.center:
            framing += f", model.audio.win_length {a.win_length}"
        raise ConfigError(
            f"model.audio_time_bins: {cfg.audio_time_bins} is more spans than the {frames} frames "
            f"of the audio features (data.window {data.window:g} s at data.sample_rate "
            f"{data.sample_rate}, {framing}): each span would repeat frames"
        )
    return cls(cfg, data, loss)


# what, beside data.window and data.frame_size, decides whether the towers have an output
TOWER_KEYS = (
    "model.channels, model.conv1_stride, model.vision_pool_last, model.audio, data.sample_rate"
)


def embedding_dims(model: AVModel, data: DataConfig) -> tuple[int, int]:
    """Embedding sizes ``(audio, visual)`` found by one forward pass of a silent window and a
    black frame of ``data``'s sizes (the model must be in eval mode).

    Raises:
        ConfigError: ``data.window`` or ``data.frame_size`` is too small for the towers, or
            too large for one forward pass in memory.
    """
    import torch

    device = next(model.parameters()).device
    samples = int(round(data.window * data.sample_rate))
    try:
        with torch.no_grad():
            a = model.embed_audio(torch.zeros(1, samples, device=device))
            v = model.embed_visual(torch.zeros(1, 3, data.frame_size, data.frame_size).to(device))
    except (RuntimeError, MemoryError) as err:  # a pooling or convolution left with no output
        first = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
        if isinstance(err, MemoryError) or "alloc" in first.lower():
            raise ConfigError(
                f"data.window {data.window:g} s / data.frame_size {data.frame_size}: too large "
                f"for this machine's memory (with {TOWER_KEYS}; {first})"
            ) from None
        raise ConfigError(  # the keys that shape the towers named, for naming_config_file
            f"data.window {data.window:g} s / data.frame_size {data.frame_size}: too small for "
            f"the model's towers (shaped by {TOWER_KEYS}; {first})"
        ) from None
    return a.shape[1], v.shape[1]


__all__ = ["METHODS", "AVModel", "build_model", "embedding_dims", "method_class"]
