"""Config values that trained "successfully" to nothing, or ate the machine: each refused in one
line before any folder is made (helper audit of ``train.py --set``, 2026-12-06)."""

from __future__ import annotations

import json
from functools import reduce

import numpy as np
import pytest
import torch
import yaml
from conftest import TINY
from test_bad_config import _one_error, refused_before_any_folder

import train
from avssl.config import Config, load_config
from avssl.config_decided import _named
from avssl.config_parse import apply_override
from avssl.errors import ConfigError, TrainingError
from avssl.models import build_model, embedding_dims
from avssl.train.divergence import check_validation


@pytest.mark.parametrize(
    "override,message",
    [
        # -500 dB overflowed float32 into NaN weights that a bf16 ReLU hid from the loss
        ("model.audio.noise_snr=[-500,-460]", "model.audio.noise_snr: must lie in [-120, 120] dB"),
        # AdamW's decoupled decay wiped the weights at every step: a run of ROC-AUC 0.5
        ("train.weight_decay=500", "train.weight_decay: 500 x train.lr 0.002 is >= 1"),
        ("data.prefetch=100000", "data.prefetch: must be at most 64, got 100000"),
        # 85 constant log(eps) bands at the default 1,024-point FFT, with a torchaudio warning
        ("model.audio.n_mels=600", "model.audio.n_mels: 600: 85 of the mel filters are empty"),
        ("model.audio.freq_mask=41", "model.audio.freq_mask: 41 is wider than the spectrogram's "
                                     "40 bands"),
        ("model.audio.time_mask=1000", "model.audio.time_mask: 1000 is wider than the "
                                       "spectrogram's 49 frames"),
        ("model.lse_sharpness=1e308", "model.lse_sharpness: must be at most 1000"),
        ("model.avol_scale_init=1e308", "model.avol_scale_init: must be at most 1000"),
        # a hard negative could be the positive window itself (overlap up to 99.9 %)
        ("data.min_shift=0", "data.min_shift: 0 lets a hard negative (the clip's sound shifted "
                             "in time) be a positive itself; set it above 0 (1 or more keeps"),
    ],
)  # fmt: skip
def test_a_setting_that_trains_to_nothing_is_refused(
    override, message, tiny_train_args, tmp_path, capsys
):
    refused_before_any_folder(override, message, tiny_train_args, tmp_path, capsys)


@pytest.mark.parametrize(
    ("jitter", "min_shift", "refused"),
    [
        (1.0, 0.5, True),
        (1.0, 0.51, False),
        (0.5, 0.25, True),
        (0.5, 0.3, False),
        (0.0, 0.01, False),
    ],
)
def test_a_hard_negative_must_lie_beyond_a_jittered_positives_reach(jitter, min_shift, refused):
    """With ``data.positive_jitter`` a positive sits up to ``jitter * window / 2`` from its
    frame: a hard negative no farther than that would be a positive too."""
    sets = [f"data.positive_jitter={jitter}", f"data.min_shift={min_shift}", "data.window=1"]
    if not refused:
        assert load_config(None, sets).data.min_shift == min_shift
        return
    with pytest.raises(ConfigError) as err:
        load_config(None, sets)
    reason = str(err.value)
    assert reason.startswith(f"data.min_shift: {min_shift:g} lets a hard negative")
    assert f"(data.positive_jitter {jitter:g}: a positive sits up to {jitter / 2:g} s" in reason
    assert f"set it above {jitter / 2:g} ({1 + jitter / 2:g} or more keeps" in reason


def test_adam_takes_a_decay_adamw_could_not():
    # the L2 term is no multiplicative decay: lr x weight_decay >= 1 wipes no weight
    cfg = load_config(None, ["train.optimizer=adam", "train.weight_decay=500"])
    assert (cfg.train.optimizer, cfg.train.weight_decay) == ("adam", 500)


def test_the_widest_masks_the_spectrogram_holds_are_accepted():
    cfg = load_config(None, ["model.audio.freq_mask=40", "model.audio.time_mask=49"])
    assert (cfg.model.audio.freq_mask, cfg.model.audio.time_mask) == (40, 49)


def test_contrastive_with_one_clip_per_step_and_no_hard_negative_is_refused(
    tiny_train_args, tmp_path, capsys
):
    # InfoNCE over one pair: loss 0 and accuracy 1 at every step
    sets = ("train.batch_size=1", "loss.hard_negatives=false")
    run = tmp_path / "run"
    assert train.main([*tiny_train_args(*sets), "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err  # after the world's "built" line: checked with the world size
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: train.batch_size 1 in one process")
    assert not run.exists()


def test_contrastive_ignores_hard_fraction_so_it_does_not_block_time_shift():
    # data.hard_fraction is the two-way methods' setting: it refused contrastive's time shift
    sets = [*TINY, "model.audio.time_shift=0.1", "loss.hard_negatives=false"]
    cfg = load_config(None, sets)
    assert cfg.data.hard_fraction > 0
    build_model(cfg.model, cfg.data, cfg.loss)
    l3 = load_config(None, [*sets, "model.method=l3"])
    with pytest.raises(ConfigError, match="time_shift > 0 with data.hard_fraction > 0"):
        build_model(l3.model, l3.data, l3.loss)


def test_a_frame_too_large_for_memory_is_not_called_too_small(monkeypatch):
    cfg = load_config(None, TINY)
    model = build_model(cfg.model, cfg.data, cfg.loss).eval()

    def fail(frames):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] . DefaultCPUAllocator: can't allocate"
        )

    monkeypatch.setattr(model, "embed_visual", fail)
    with pytest.raises(ConfigError, match="too large for this machine's memory"):
        embedding_dims(model, cfg.data)


def test_weights_that_are_not_finite_stop_the_run_before_a_checkpoint(tmp_path):
    # under bf16 the loss can stay finite while the first audio weights are NaN
    cfg = load_config(None, TINY)
    model = build_model(cfg.model, cfg.data, cfg.loss)
    scores = {"pos": np.zeros(3), "easy": np.zeros(3)}
    check_validation([model], scores, 5, tmp_path, True)
    name, param = next(iter(model.named_parameters()))
    with torch.no_grad():
        param.view(-1)[0] = float("nan")
    with pytest.raises(TrainingError, match=f"^{name} holds NaN or inf at step 5; stopped"):
        check_validation([model], scores, 5, tmp_path, True)
    with pytest.raises(TrainingError, match="the validation scores are not finite at step 5"):
        check_validation([], {"pos": np.array([np.nan]), "easy": np.zeros(1)}, 5, tmp_path, True)


def test_resume_refuses_another_validation_set(tiny_train_args, tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main([*tiny_train_args("train.steps=2", "train.eval_every=2"), "--run-dir",
                       str(run)]) == 0  # fmt: skip
    capsys.readouterr()
    for item, key in (("train.val_windows=1", "train.val_windows"),
                      ("data.synthetic.n_val=5", "data.synthetic"),
                      ("data.min_shift=0.5", "data.min_shift"),
                      ("data.unseen_negatives=true", "data.unseen_negatives")):  # fmt: skip
        argv = ["--resume", str(run), "--set", "train.steps=3", "--set", item, "--no-progress"]
        assert train.main(argv) == 2
        assert _one_error(capsys).startswith(f"error: {key}: cannot be changed on resume")


def test_clips_too_large_to_preload_are_refused_before_decoding(tiny_train_args, tmp_path, capsys,
                                                                monkeypatch):  # fmt: skip
    # data.fps 1000 on the default world needed about 30 GiB: the process was killed silently
    from avssl.train import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device: 2 * 2**20)  # the model fits
    run = tmp_path / "run"
    assert train.main([*tiny_train_args(), "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "the training and validation clips decoded into memory need about" in err
    assert "data.preload=false" in err and not run.exists()
    assert train.main([*tiny_train_args("data.preload=false", "train.steps=1"), "--run-dir",
                       str(run)]) == 0  # fmt: skip


def test_a_checkpoint_trained_before_a_check_still_evaluates(tiny_train_args, tmp_path, capsys):
    # the training-only checks apply to a new or resumed run, not to a stored config: a model
    # trained with a mask wider than its spectrogram (allowed then) can still be evaluated
    import evaluate
    from avssl.train.checkpoint import load_checkpoint, save_checkpoint

    assert train.main(tiny_train_args("train.steps=2", "train.eval_every=2")) == 0
    run = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_dir"]
    state = load_checkpoint(f"{run}/best.pt")
    state["config"]["model"]["audio"].update(time_mask=60, noise_snr=[0.0, 150.0])
    state["config"]["data"]["prefetch"] = 100
    old = tmp_path / "old" / "best.pt"
    old.parent.mkdir()
    save_checkpoint(old, {k: v for k, v in state.items() if k not in ("format", "path")})
    assert evaluate.main(["avc", "--checkpoint", str(old), "--no-progress"]) == 0
    argv = ["--resume", str(old), "--set", "train.steps=3", "--no-progress"]
    assert train.main(argv) == 2  # training with them again is refused
    assert "data.prefetch: must be at most 64" in capsys.readouterr().err


def test_a_mask_made_too_wide_by_an_override_does_not_blame_the_file():
    from pathlib import Path

    config = Path(__file__).resolve().parents[1] / "configs" / "avdigits-contrastive.yaml"
    with pytest.raises(ConfigError) as err:
        load_config(config, ["data.window=0.3"])  # 28 frames under the config's 30-frame mask
    assert str(err.value).startswith("model.audio.time_mask: 30 is wider than the spectrogram's 28")
    load_config(config, ["data.window=0.3", "model.audio.spec_masks=0"])  # no mask: no limit


def test_the_frame_count_matches_the_front_end():
    from avssl.features import build_audio_frontend
    from avssl.training_checks import spectrogram_shape

    odd = ["model.audio.center=true", "model.audio.n_fft=401", "model.audio.win_length=400"]
    for sets in ([], ["model.audio.center=true"], odd, ["model.audio.win_length=400"]):
        cfg = load_config(None, sets)
        front = build_audio_frontend(cfg.model.audio, cfg.data.sample_rate).eval()
        n = round(cfg.data.window * cfg.data.sample_rate)
        assert spectrogram_shape(cfg) == tuple(front(torch.zeros(1, n)).shape[2:]), sets


@pytest.mark.parametrize(
    ("sets", "deciders"),
    [
        # data.window against one STFT frame: win_length uncentred, n_fft // 2 + 1 centred
        (["data.window=0.01"],
         ["data.sample_rate", "model.audio.win_length", "model.audio.center"]),
        (["data.window=0.01", "model.audio.center=true"],
         ["data.sample_rate", "model.audio.n_fft", "model.audio.center"]),
        # a jittered positive reaches jitter x half the window
        (["data.positive_jitter=0.5", "data.min_shift=0.2"],
         ["data.positive_jitter", "data.window"]),
        (["model.audio.n_mels=600"],
         ["model.audio.kind", "model.audio.n_fft", "data.sample_rate"]),
        (["model.audio.freq_mask=41"],
         ["model.audio.kind", "model.audio.n_mels", "model.audio.spec_masks"]),
        (["model.audio.time_mask=1000"],
         ["data.window", "data.sample_rate", "model.audio.win_length", "model.audio.hop_length",
          "model.audio.center", "model.audio.spec_masks"]),
        (["train.weight_decay=500"], ["train.lr", "train.optimizer"]),
    ],
)  # fmt: skip
def test_a_training_refusal_names_every_key_that_decides_it(sets, deciders, tmp_path):
    """So that a ``--set`` of any of them, over the file, names no file; the file that sets the
    refused values is named."""
    data: dict = {}
    for item in sets:
        key, value = item.split("=")
        *sections, name = key.split(".")
        reduce(lambda d, s: d.setdefault(s, {}), sections, data)[name] = yaml.safe_load(value)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: "), message
    key, reason = message[len(f"{path}: ") :].split(": ", 1)
    refused = Config()  # the refused config, unchecked
    for item in sets:
        apply_override(refused, item)
    for k in deciders:
        assert _named(k, reason), (k, reason)
        value = json.dumps(reduce(getattr, k.split("."), refused))
        with pytest.raises(ConfigError) as err:
            load_config(path, [f"{k}={value}"])  # the same value, given by --set
        assert str(err.value) == f"{key}: {reason}", k
