"""The settings that change what a model's weights compute without changing any weight's shape.

A checkpoint's weights hash (``avssl.tools.index.weights_hash``) covers every parameter and
buffer, but the audio front end keeps its window and filter bank out of the state dict, and
pooling, normalisation and the clip window are settings, not weights. The same weights read with
another ``model.audio.hop_length`` give other embeddings, so whatever stores embeddings for later
comparison (``avssl index``, ``avssl embed``) records these beside the hash, and ``train.py
--resume`` refuses to change them.
"""

from __future__ import annotations

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


def _lookup(cfg: Any, key: str) -> Any:
    """The value at dotted ``key`` of a config dataclass or of its :func:`~avssl.config.to_dict`
    form; :data:`_MISSING` when a level lacks it (a record written by an older version)."""
    for part in key.split("."):
        if isinstance(cfg, dict):
            cfg = cfg.get(part, _MISSING)
        else:
            cfg = getattr(cfg, part, _MISSING)
        if cfg is _MISSING:
            return _MISSING
    return cfg


def input_settings(cfg: Any) -> dict[str, Any]:
    """``{key: value}`` of :data:`INPUT_KEYS` in ``cfg`` (a :class:`~avssl.config.Config` or the
    dict of one); keys it lacks are left out."""
    values = {key: _lookup(cfg, key) for key in INPUT_KEYS}
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
