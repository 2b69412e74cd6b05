"""Models: shapes at small and paper sizes, the shared interface, front ends, calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchaudio

from avssl.config import AudioFeatures, DataConfig, LossConfig, ModelConfig, load_config
from avssl.errors import ConfigError
from avssl.features import LogMel, LogSTFT, audio_feature_shape, build_audio_frontend
from avssl.frame_norm import FrameNorm
from avssl.losses import lse_pool, mil_logistic
from avssl.models import METHODS, AVModel, build_model
from avssl.models.stats import stats_floats

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SMALL = ["l3", "avenet", "avolnet", "contrastive"]


def make_batch(cfg, b: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    n = round(cfg.data.sample_rate * cfg.data.window)
    s = cfg.data.frame_size
    return {
        "frames": torch.rand(b, 3, s, s, generator=g),
        "audio": 0.1 * torch.randn(b, n, generator=g),
        "audio_neg": 0.1 * torch.randn(b, n, generator=g),
        "neg_hard": torch.arange(b) % 2 == 0,
        "audio_hard": 0.1 * torch.randn(b, n, generator=g),
        "label": torch.arange(b) % 2,
    }


def load(name: str):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    torch.manual_seed(0)
    return cfg, build_model(cfg.model, cfg.data, cfg.loss)


@pytest.mark.parametrize("name", SMALL)
def test_small_config_shapes_and_loss(name):
    cfg, model = load(name)
    assert cfg.model.method == name and cfg.data.frame_size == 64
    batch = make_batch(cfg, 4)
    loss, stats = model.loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and {"loss", "acc", "acc_easy", "acc_hard"} <= set(stats)
    assert all(isinstance(v, float) for v in stats_floats(stats).values())  # as logged
    model.eval()
    with torch.no_grad():
        frames, audio = batch["frames"], batch["audio"]
        assert model.score(frames, audio).shape == (4,)
        # l3 has no projection head: its embeddings are the towers' pooled maps (the audio's
        # one channel block per time span); the other methods project to model.embed_dim
        if name == "l3":
            a_dim = cfg.model.channels[-1] * cfg.model.audio_time_bins
            v_dim = cfg.model.channels[-1]
        else:
            a_dim = v_dim = cfg.model.embed_dim
        assert model.embed_audio(audio).shape == (4, a_dim)
        assert model.embed_visual(frames).shape == (4, v_dim)
        vmap, heat = model.visual_map(frames), model.heatmap(frames, audio)
    if model.has_map:
        assert vmap.shape == (4, cfg.model.embed_dim, 4, 4) and heat.shape == (4, 4, 4)
    else:
        assert vmap is None and heat is None


@pytest.mark.parametrize("name", SMALL)
def test_paper_config_shapes(name):
    cfg, model = load(f"{name}-paper")
    assert (cfg.data.frame_size, cfg.data.sample_rate, cfg.model.channels[-1]) == (224, 48000, 512)
    model.eval()
    batch = make_batch(cfg, 1)
    with torch.no_grad():
        spec = model.audio_frontend(batch["audio"])
        assert spec.shape == (1, 1, 257, 199)
        assert audio_feature_shape(cfg.model.audio, 48000, 1.0) == (257, 199)
        vis = model.vision(model.frame_norm(batch["frames"]))
        side = 7 if name == "avenet" else 14  # conv1 stride 2 with / without the last pool
        assert vis.shape == (1, 512, side, side)
        assert model.audio.tower(spec).shape == (1, 512, 16, 12)
        assert model.audio(spec).shape == (1, 512)  # global max-pool (audio_time_bins 1)
    if model.has_map:
        assert model.visual_map(batch["frames"]).shape[-2:] == (14, 14)


def test_interface_is_the_same_for_every_method():
    data = DataConfig()
    for name, cls in METHODS.items():
        model = build_model(ModelConfig(method=name), data)
        assert isinstance(model, cls) and isinstance(model, AVModel)
        assert cls.paper.startswith("https://arxiv.org/abs/")
        assert cls.__doc__ and cls.paper in cls.__doc__
        state = model.state_dict()
        assert float(state["decision_threshold"]) == 0.0
        assert not any(k.startswith(("audio_frontend", "frame_norm")) for k in state)
        for p in model.calibration_parameters():
            assert any(p is q for q in model.parameters())


def test_unknown_method_is_a_config_error():
    with pytest.raises(ConfigError, match="'nope'.*l3, avenet, avolnet, contrastive"):
        build_model(ModelConfig(method="nope"), DataConfig())


def test_time_shift_is_refused_beside_time_shifted_negatives():
    shifted = AudioFeatures(time_shift=0.1)
    for method in METHODS:  # every method: hard negatives in the pairs
        what = "loss.hard_negatives" if method == "contrastive" else "data.hard_fraction"
        with pytest.raises(ConfigError, match=f"time_shift.*{what}"):
            build_model(ModelConfig(method=method, audio=shifted), DataConfig(hard_fraction=0.5))
    batch_pairs = LossConfig(pair_negatives="batch")  # AVOL-Net's negatives from the batch
    build_model(ModelConfig(method="avolnet", audio=shifted), DataConfig(), batch_pairs)
    with pytest.raises(ConfigError, match="time_shift.*loss.hard_negatives"):
        build_model(ModelConfig(audio=shifted), DataConfig(hard_fraction=0.0), LossConfig())
    cfg = load_config(CONFIGS / "avdigits-contrastive.yaml")  # shift, no hard negatives
    assert cfg.model.audio.time_shift > 0
    build_model(cfg.model, cfg.data, cfg.loss)


def test_audio_views_repeat_a_deterministic_sound_to_the_one_view_loss():
    cfg, model = load("contrastive")  # no audio augmentation: every view is the same
    batch = make_batch(cfg, 6)
    one, _ = model.loss(batch)
    model.cfg.audio_views = 3
    three, stats = model.loss(batch)
    assert torch.allclose(one, three, atol=1e-5)
    assert stats["loss"] == pytest.approx(float(three.detach()))


def test_audio_views_loss_is_the_mean_of_each_views_infonce():
    cfg, model = load("avdigits-contrastive")  # labels masked, no time-shifted negatives
    b, views = 6, 2
    batch = make_batch(cfg, b)
    batch.pop("audio_hard")
    batch["frame_labels"] = torch.rand(b, 10, generator=torch.Generator().manual_seed(1)) < 0.3
    codes = F.normalize(torch.randn(views * b, cfg.model.embed_dim), dim=1)
    model.embed_audio = lambda wave: codes[: wave.shape[0]]
    model.cfg.audio_views = views
    both, _ = model.loss(batch)
    per_view = []
    model.cfg.audio_views = 1
    for v in range(views):
        model.embed_audio = lambda wave, v=v: codes[v * b : (v + 1) * b]
        per_view.append(model.loss(batch)[0])
    assert not torch.allclose(per_view[0], per_view[1])
    assert torch.allclose(both, torch.stack(per_view).mean(), atol=1e-6)


def test_stats_only_pass_over_shifted_audio_leaves_batch_norm_statistics_alone():
    # with loss.hard_negatives false the time-shifted sounds are embedded for acc_hard only
    cfg = load_config(CONFIGS / "contrastive.yaml", ["loss.hard_negatives=false"])
    batch = make_batch(cfg, 4)
    running, reported = [], []
    for b in (batch, {k: v for k, v in batch.items() if k != "audio_hard"}):
        torch.manual_seed(0)
        model = build_model(cfg.model, cfg.data, cfg.loss)
        reported.append("acc_hard" in model.loss(b)[1])
        running.append({k: v.clone() for k, v in model.state_dict().items() if "running" in k})
    assert reported == [True, False]
    assert running[0].keys() == running[1].keys() and running[0]
    for k in running[0]:
        torch.testing.assert_close(running[0][k], running[1][k], msg=k)


def test_audio_views_are_checked():
    with pytest.raises(ConfigError, match="audio_views: 0"):
        build_model(ModelConfig(audio_views=0), DataConfig())
    with pytest.raises(ConfigError, match="audio_views: 2.*contrastive only"):
        build_model(ModelConfig(method="avolnet", audio_views=2), DataConfig())


@pytest.mark.parametrize("name", ["l3", "avenet", "avolnet"])
def test_pair_stats_follow_score_in_eval(name):
    cfg, model = load(name)
    batch = make_batch(cfg, 4, seed=1)
    model.eval()
    with torch.no_grad():
        loss, stats = model.loss(batch)
        pos = model.score(batch["frames"], batch["audio"])
        neg = model.score(batch["frames"], batch["audio_neg"])
    acc = torch.cat([pos >= 0, neg < 0]).float().mean()
    assert stats["acc"] == pytest.approx(float(acc))
    if name == "avolnet":  # eval pools with the hard max, which is score()
        target = torch.cat([torch.ones(4), torch.zeros(4)])
        assert float(loss) == pytest.approx(float(mil_logistic(torch.cat([pos, neg]), target)))


def test_avenet_calibration_starts_with_small_distance_meaning_match():
    _, model = load("avenet")
    probs = torch.softmax(model.calibration(torch.tensor([[0.0], [2.0]])), dim=1)[:, 1]
    assert probs[0] > 0.5 > probs[1]
    v = F.normalize(torch.randn(3, 128), dim=1)
    assert (model._pair_score(model._pair_output(v, v)) > 0).all()
    assert (model._pair_score(model._pair_output(v, -v)) < 0).all()


def test_mil_pooling_is_soft_in_training_and_hard_in_eval():
    cfg, model = load("avolnet")
    x = torch.randn(5, 16)
    model.train()
    assert torch.allclose(model.pool_locations(x), lse_pool(x, cfg.model.lse_sharpness))
    assert (model.pool_locations(x) < x.amax(1)).all()
    model.eval()
    assert torch.equal(model.pool_locations(x), x.amax(1))
    model.train()
    model.cfg.mil_pool = "max"
    assert torch.equal(model.pool_locations(x), x.amax(1))


@pytest.mark.parametrize("name", ["avolnet", "contrastive"])
def test_score_is_the_max_of_the_heatmap(name):
    cfg, model = load(name)
    batch = make_batch(cfg, 3)
    model.eval()
    with torch.no_grad():
        score = model.score(batch["frames"], batch["audio"])
        peak = model.heatmap(batch["frames"], batch["audio"]).flatten(1).amax(1)
    expected = torch.sigmoid(score) if name == "avolnet" else score
    assert torch.allclose(peak, expected, atol=1e-5)


@pytest.mark.parametrize("name", ["avolnet", "contrastive"])
def test_heatmap_at_y_x_is_that_locations_score(name):
    # orientation: on a non-square map, heat[b, y, x] scores visual_map[b, :, y, x]
    cfg, model = load(name)
    batch = make_batch(cfg, 2)
    frames = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    model.eval()
    with torch.no_grad():
        if name == "avolnet":  # a calibration other than the identity
            model.log_scale.fill_(0.5)
            model.bias.fill_(-0.25)
        vmap, a = model.visual_map(frames), model.embed_audio(batch["audio"][:2])
        heat = model.heatmap(frames, batch["audio"][:2])
    h, w = vmap.shape[-2:]
    assert h != w and heat.shape == (2, h, w)
    for b in range(2):
        for y in range(h):
            for x in range(w):
                dot = sum(float(vmap[b, d, y, x]) * float(a[b, d]) for d in range(a.shape[1]))
                want = 1 / (1 + np.exp(-(np.exp(0.5) * dot - 0.25))) if name == "avolnet" else dot
                assert float(heat[b, y, x]) == pytest.approx(want, abs=1e-5), (b, y, x)


@pytest.mark.parametrize("name", ["avenet", "avolnet", "contrastive"])
def test_head_batch_norm_centres_the_embeddings_in_training_and_is_fixed_in_eval(name):
    cfg = load_config(CONFIGS / f"{name}.yaml", ["model.head_bn=true"])
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.data, cfg.loss)
    norms = [m for m in model.audio_head.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(norms) == 2 and norms[-1].weight is None  # the output norm has no affine part
    spatial = [m for m in model.vision_head.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(spatial) == (2 if model.has_map else 0)
    batch = make_batch(cfg, 8)
    model.train()
    pooled = model.audio(model.audio_frontend(batch["audio"]))
    out = model.audio_head(pooled)
    assert torch.allclose(out.mean(0), torch.zeros(out.shape[1]), atol=1e-5)  # batch-centred
    model.loss(batch)  # a training forward: the running statistics move away from their start
    model.eval()
    with torch.no_grad():  # eval: one clip's embedding does not depend on its batch
        alone = model.embed_audio(batch["audio"][:1])
        together = model.embed_audio(batch["audio"])[:1]
    assert torch.allclose(alone, together, atol=1e-5)
    assert not torch.equal(norms[-1].running_mean, torch.zeros_like(norms[-1].running_mean))


def test_l3_head_batch_norm_sits_in_the_fusion_and_is_fixed_in_eval():
    base = load_config(CONFIGS / "l3.yaml")
    plain = build_model(base.model, base.data)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in plain.fusion.modules())
    cfg = load_config(CONFIGS / "l3.yaml", ["model.head_bn=true"])
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.data, cfg.loss)
    norms = [m for m in model.fusion.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(norms) == 1 and norms[0].num_features == cfg.model.fusion_hidden
    batch = make_batch(cfg, 8)
    model.train()
    loss, _ = model.loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and norms[0].weight.grad is not None
    model.eval()
    with torch.no_grad():  # eval: one pair's score does not depend on its batch
        alone = model.score(batch["frames"][:1], batch["audio"][:1])
        together = model.score(batch["frames"], batch["audio"])[:1]
    torch.testing.assert_close(alone, together, atol=1e-5, rtol=1e-5)


def test_bf16_autocast_and_channels_last_forward_is_finite():
    cfg, model = load("contrastive")
    batch = make_batch(cfg, 4)
    model = model.to(memory_format=torch.channels_last)
    batch["frames"] = batch["frames"].contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, stats = model.loss(batch)
        model.eval()
        with torch.no_grad():
            score = model.score(batch["frames"], batch["audio"])
            spec = model.audio_frontend(batch["audio"])
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(score).all()
    assert spec.dtype == torch.float32  # the front end opts out of autocast
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_log_stft_matches_torchaudio_with_paper_framing():
    feat = AudioFeatures(kind="logstft", n_fft=512, win_length=480, hop_length=240, center=False)
    wave = torch.randn(2, 48000)
    ours = LogSTFT(feat)(wave)
    assert ours.shape == (2, 1, 257, 199)
    ref = torchaudio.transforms.Spectrogram(512, 480, 240, power=1, center=False)
    expected = torch.log(ref(F.pad(wave, (16, 16))) + 1e-6).unsqueeze(1)
    assert torch.allclose(ours, expected, atol=1e-4)


def test_log_mel_matches_torchaudio():
    feat = AudioFeatures(kind="logmel", n_fft=400, win_length=400, hop_length=160, n_mels=40)
    wave = torch.randn(2, 16000)
    ref = torchaudio.transforms.MelSpectrogram(16000, 400, 400, 160, n_mels=40, center=False)
    assert torch.allclose(
        LogMel(feat, 16000)(wave), torch.log(ref(wave) + 1e-6).unsqueeze(1), atol=1e-3
    )


def _numpy_log_spectrogram(wave, sr, n_fft, win, hop, center, n_mels=None) -> np.ndarray:
    """Brute force, frame by frame in float64: ``win`` samples times a periodic Hann window,
    zero-padded to ``n_fft`` (``center``: the wave reflected by ``n_fft // 2`` at both ends and
    frames of ``n_fft`` with the window in their middle), ``|rfft|``; log-mel: HTK triangles on
    the power spectrum; then ``log(x + 1e-6)``. ``[F, T]``."""
    x = np.asarray(wave, dtype=np.float64)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    if center:
        x = np.pad(x, n_fft // 2, mode="reflect")
        frame, at = np.zeros(n_fft), (n_fft - win) // 2
        frame[at : at + win] = hann
        cols = [x[k : k + n_fft] * frame for k in range(0, len(x) - n_fft + 1, hop)]
    else:
        cols = [x[k : k + win] * hann for k in range(0, len(x) - win + 1, hop)]
    mag = np.abs(np.stack([np.fft.rfft(c, n_fft) for c in cols], axis=1))  # [n_fft // 2 + 1, T]
    if n_mels is None:
        return np.log(mag + 1e-6)
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    edges = 700 * (10 ** (np.linspace(0, mel(sr / 2), n_mels + 2) / 2595) - 1)
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    fb = np.zeros((n_mels, len(freqs)))
    for m in range(n_mels):
        lo, mid, hi = edges[m : m + 3]
        fb[m] = np.maximum(0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))
    return np.log(fb @ mag**2 + 1e-6)


@pytest.mark.parametrize("kind", ["logstft", "logmel"])
@pytest.mark.parametrize("center", [False, True])
def test_log_front_ends_match_a_numpy_loop_through_silence_and_quiet_sound(kind, center):
    """Loud noise, exact silence and noise at -100 dB: the log offset shows where the
    spectrum is near zero (silence is exactly ``log(1e-6)``), which loud noise alone hides."""
    sr, n_fft, win, hop, n_mels = 8000, 256, 200, 80, 24
    rng = np.random.default_rng(0)
    wave = np.concatenate([rng.normal(size=1200), np.zeros(1600), 1e-5 * rng.normal(size=1200)])
    feat = AudioFeatures(kind=kind, n_fft=n_fft, win_length=win, hop_length=hop, n_mels=n_mels,
                         center=center)  # fmt: skip
    front = (LogMel if kind == "logmel" else LogSTFT)(feat, sr)
    got = front(torch.from_numpy(wave).float()[None])[0, 0].double().numpy()
    want = _numpy_log_spectrogram(
        wave, sr, n_fft, win, hop, center, n_mels if kind == "logmel" else None
    )
    assert got.shape == want.shape == (front(torch.zeros(1, 4000)).shape[2:])
    np.testing.assert_allclose(got, want, atol=2e-3, rtol=0)
    silent = want[:, np.all(want == np.log(1e-6), axis=0)]
    assert silent.shape[1] >= 5  # the silent frames were scored


@pytest.mark.parametrize("kind", ["logstft", "logmel"])
@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("window", [0.5, 1.0, 0.96])
def test_audio_feature_shape_is_analytic(kind, center, window):
    feat = AudioFeatures(kind=kind, n_fft=512, win_length=400, hop_length=160, center=center)
    out = build_audio_frontend(feat, 16000)(torch.zeros(1, round(16000 * window)))
    assert out.shape[2:] == audio_feature_shape(feat, 16000, window)


def test_unknown_front_end_is_a_config_error():
    with pytest.raises(ConfigError, match="logstft, logmel"):
        build_audio_frontend(AudioFeatures(kind="mfcc"), 16000)


def test_frame_norm_takes_unit_floats_or_bytes():
    norm = FrameNorm()
    grey = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    assert torch.allclose(norm(grey), torch.zeros(2, 3, 4, 4), atol=1e-6)
    u8 = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    assert torch.allclose(norm(u8), norm(u8.float() / 255))


def test_frame_norm_scales_each_channel_by_its_own_imagenet_std():
    """Brute force with the published constants: channel c (R, G, B) of a random frame becomes
    ``(x - mean_c) / std_c`` (the grey-frame check above pins the means, not the scales)."""
    x = torch.rand(2, 3, 5, 4)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    want = torch.stack([(x[:, c] - mean[c]) / std[c] for c in range(3)], dim=1)
    torch.testing.assert_close(FrameNorm()(x), want, atol=1e-6, rtol=0)


def test_avol_scale_init_sets_the_calibration_and_rejects_non_positive():
    cfg = load_config(CONFIGS / "avolnet.yaml")
    cfg.model.avol_scale_init = 0.25
    model = build_model(cfg.model, cfg.data, cfg.loss)
    assert float(model.log_scale.detach().exp()) == pytest.approx(0.25)
    batch = make_batch(cfg, 2)
    with torch.no_grad():  # the map's logits scale with a at a fixed bias
        v, a = model._encode_visual(batch["frames"]), model._encode_audio(batch["audio"])
        quarter = model._logit_map(v, a)
        model.log_scale.fill_(0.0)
        torch.testing.assert_close(quarter, 0.25 * model._logit_map(v, a))
    cfg.model.avol_scale_init = 0.0
    with pytest.raises(ConfigError, match="avol_scale_init must be > 0"):
        build_model(cfg.model, cfg.data, cfg.loss)
