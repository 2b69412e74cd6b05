"""``avssl.model_inputs``: every config field is classed (a new front-end field cannot be missed
by ``train.py --resume``, ``avssl index`` and ``avssl embed``), and only the keys a model reads
are compared."""

from __future__ import annotations

import dataclasses

import pytest

from avssl.config import AudioFeatures, Config, DataConfig, ModelConfig, to_dict
from avssl.model_inputs import INPUT_KEYS, input_changes, input_settings

# what the weights' shapes or the checkpoint's own values already pin, and nested sections
SHAPE_OR_SECTION = {
    "model.method", "model.channels", "model.embed_dim", "model.fusion_hidden",
    "model.head_hidden", "model.head_bn", "model.audio", "data.synthetic",
}  # fmt: skip
# what training alone reads: data loading, sampling, augmentation, loss and initial values
TRAINING_ONLY = {
    "data.root", "data.load_size", "data.positive_jitter", "data.min_shift",
    "data.hard_fraction", "data.preload", "data.num_workers", "data.prefetch", "data.cache",
    "data.stream", "data.shuffle_buffer", "data.augment", "data.frame_fit",
    "data.unseen_negatives",
    "model.temperature", "model.learn_temperature", "model.mil_pool", "model.lse_sharpness",
    "model.avol_scale_init", "model.audio_views",
    "model.audio.freq_warp", "model.audio.mixstyle", "model.audio.mixstyle_alpha",
    "model.audio.freq_mask", "model.audio.time_mask", "model.audio.spec_masks",
    "model.audio.speed_perturb", "model.audio.time_shift", "model.audio.noise_snr",
}  # fmt: skip


def test_every_field_is_classed_once():
    keys = {
        f"{prefix}.{f.name}"
        for prefix, section in (
            ("data", DataConfig),
            ("model", ModelConfig),
            ("model.audio", AudioFeatures),
        )  # fmt: skip
        for f in dataclasses.fields(section)
    }
    classes = [set(INPUT_KEYS), SHAPE_OR_SECTION, TRAINING_ONLY]
    assert set().union(*classes) == keys, "class each new field in one of the three"
    assert sum(len(c) for c in classes) == len(keys), "a field is in two classes"


def test_only_the_keys_the_model_reads_are_compared():
    cfg = Config()  # contrastive, log-mel, no RFN blocks
    got = input_settings(cfg)
    assert "data.fps" not in got and "model.audio_rfn_lambda" not in got
    assert got["model.spatial"] is True and got["model.audio.n_mels"] == 40
    cfg.model.method, cfg.model.audio.kind, cfg.model.audio_rfn_blocks = "avenet", "logstft", 2
    got = input_settings(cfg)
    assert "model.spatial" not in got and "model.audio.n_mels" not in got
    assert got["model.audio_rfn_lambda"] == 0.5
    assert input_settings(to_dict(cfg)) == got  # a recorded config reads the same


@pytest.mark.parametrize("damage", [None, "text", ["a"], 3])
def test_a_damaged_or_older_record_compares_what_it_holds(damage):
    recorded = to_dict(Config())
    recorded["model"]["audio"] = damage  # no front end recorded, or not a mapping
    recorded["data"].pop("window")
    current = Config()
    current.model.audio.hop_length, current.data.window, current.model.conv1_stride = 160, 0.5, 1
    changes = input_changes(input_settings(recorded), input_settings(current))
    assert changes == ["model.conv1_stride 2 -> 1"]
