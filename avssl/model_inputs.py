"""The settings that change what a model's weights compute without changing any weight's shape.

A checkpoint's weights hash (``avssl.tools.index.weights_hash``) covers every parameter and
buffer, but the audio front end keeps its window and filter bank out of the state dict, and
pooling, normalisation and the clip window are settings, not weights. The same weights read with
another ``model.audio.hop_length`` give other embeddings, so whatever stores embeddings for later
comparison (``avssl index``, ``avssl embed``) records those of them its model reads
(:func:`input_settings`) beside the hash, and ``train.py --resume`` refuses to change any.
"""

from __future__ import annotations

import dataclasses
from typing import Any

# dotted config keys; training-only augmentation is not here (it changes no output in eval)
INPUT_KEYS = (
    "data.fps", "data.frame_size", "data.sample_rate", "data.window",
    "model.conv1_stride", "model.vision_pool_last", "model.audio_time_bins",
    "model.audio_rfn_blocks", "model.audio_rfn_lambda", "model.spatial",
    "model.audio.kind", "model.audio.n_fft", "model.audio.win_length", "model.audio.hop_length",
    "model.audio.n_mels", "model.audio.center", "model.audio.normalize", "model.audio.lifter",
    "model.audio.stretch_active_db",
)  # fmt: skip

_MISSING = object()
# read by training (frames are decoded at this rate), never by the tools that embed a file at
# window times (its frames are picked by timestamp)
_TRAINING_ONLY = ("data.fps",)


def _lookup(cfg: dict, key: str) -> Any:
    """The value at dotted ``key`` of a config's dict; :data:`_MISSING` when a level lacks it (a
    record written by an older version, or a damaged one: a level that is not a mapping)."""
    for part in key.split("."):
        if not isinstance(cfg, dict):
            return _MISSING
        cfg = cfg.get(part, _MISSING)
        if cfg is _MISSING:
            return _MISSING
    return cfg


def _inactive(cfg: dict) -> set[str]:
    """The keys of :data:`INPUT_KEYS` that ``cfg``'s model never reads (another method's, a
    front end's other kind's, the strength of blocks it does not have)."""
    from avssl.models import method_class

    off = set()
    if not method_class(_lookup(cfg, "model.method")).reads_spatial:
        off.add("model.spatial")
    if _lookup(cfg, "model.audio_rfn_blocks") == 0:
        off.add("model.audio_rfn_lambda")
    if _lookup(cfg, "model.audio.kind") == "logstft":
        off.add("model.audio.n_mels")
    return off


def input_settings(cfg: Any) -> dict[str, Any]:
    """``{key: value}`` of the :data:`INPUT_KEYS` that change a model's embedding of a window:
    those its method and front end read, ``data.fps`` left out (frames are picked by time).

    Args:
        cfg: a :class:`~avssl.config.Config` or the dict of one; keys it lacks are left out.
    """
    if dataclasses.is_dataclass(cfg):
        cfg = dataclasses.asdict(cfg)
    skip = set(_TRAINING_ONLY) | _inactive(cfg)
    values = {key: _lookup(cfg, key) for key in INPUT_KEYS if key not in skip}
    return {key: value for key, value in values.items() if value is not _MISSING}


def input_changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between two :func:`input_settings`, as ``"key old -> new"`` strings.

    A key missing from ``recorded`` (written before the key existed, or before it was recorded)
    is not a difference: only values both sides hold are compared.
    """
    return [
        f"{k} {recorded[k]!r} -> {current[k]!r}"
        for k in INPUT_KEYS
        if k in recorded and k in current and recorded[k] != current[k]
    ]
