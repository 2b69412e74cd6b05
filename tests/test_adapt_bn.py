"""Transductive batch-norm adaptation of the audio side (``evaluate.py ... --adapt-bn``)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from bad_media import last_json
from conftest import TINY
from test_models import load, make_batch

import evaluate
import train
from avssl.errors import AvsslError
from avssl.eval.adapt_bn import adapt_on_waves, audio_norm_layers
from avssl.eval.embed import embed_audio

ROOT = Path(__file__).resolve().parents[1]


def _head_bn(name: str):
    """A small model with batch norm in its heads (as AV-Digits has; L3: in its fusion)."""
    cfg, model = load(name)
    cfg.model.head_bn = True
    torch.manual_seed(0)
    return cfg, type(model)(cfg.model, cfg.data, cfg.loss).eval()


def _one_batch(model, wave) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Exact AdaBN by definition: all the audio in one training-mode pass of the audio batch
    norms (on a copy); returns what each norm receives and the embeddings ``[N, D]``."""
    model = copy.deepcopy(model)
    layers, seen = audio_norm_layers(model), []
    handles = [m.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach())) for m in layers]
    for m in layers:
        m.train()
    with torch.no_grad():
        emb = model.embed_audio(wave)
    for h in handles:
        h.remove()
    return seen, emb


def _class_ordered(cfg, n: int = 14) -> torch.Tensor:
    """``[n, samples]`` audio whose loudness grows along the batch, as a class-ordered manifest's
    voices differ: the first batches' statistics are far from the whole's."""
    return make_batch(cfg, n)["audio"] * torch.linspace(0.05, 3.0, n)[:, None]


@pytest.mark.parametrize("name", ["contrastive", "avolnet", "l3"])
def test_one_batch_equals_training_mode_batch_statistics(name):
    cfg, model = _head_bn(name)
    wave = make_batch(cfg, 12)["audio"]
    inputs, _ = _one_batch(model, wave)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    info = adapt_on_waves(model, wave, "cpu", batch_size=64)
    layers = audio_norm_layers(model)
    assert info == {"adapt_bn": {"clips": 12, "layers": len(layers)}} and len(inputs) == len(layers)
    if name != "l3":  # the head's are included
        assert any(isinstance(m, torch.nn.BatchNorm1d) for m in layers)
    for m, x in zip(layers, inputs, strict=True):
        dims = [0, *range(2, x.dim())]
        torch.testing.assert_close(m.running_mean, x.mean(dims), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(m.running_var, x.var(dims, correction=0), rtol=1e-4, atol=1e-5)
    # only the audio norms' statistics change: no weight, no vision norm, not L3's fusion norm
    adapted = {id(t) for m in layers for t in (m.running_mean, m.running_var)}
    state = model.state_dict(keep_vars=True)
    for k, v in before.items():
        if id(state[k]) not in adapted:
            torch.testing.assert_close(state[k].detach(), v, msg=k)
    assert name != "l3" or any("fusion" in k and "running_mean" in k for k in before)
    assert not model.training and all(not m._forward_pre_hooks for m in layers)


@pytest.mark.parametrize("name", ["contrastive", "avolnet"])
def test_any_batches_and_order_give_the_one_batch_statistics(name):
    cfg, model = _head_bn(name)
    wave = _class_ordered(cfg)
    inputs, ref_emb = _one_batch(model, wave)
    perm = torch.randperm(len(wave), generator=torch.Generator().manual_seed(0))
    for batch_size, order in [(1, None), (3, None), (7, None), (3, perm), (5, perm.flip(0))]:
        adapted = copy.deepcopy(model)
        w = wave if order is None else wave[order]
        info = adapt_on_waves(adapted, w, "cpu", batch_size=batch_size)
        assert info["adapt_bn"]["layers"] == len(inputs)
        for m, x in zip(audio_norm_layers(adapted), inputs, strict=True):
            dims = [0, *range(2, x.dim())]
            torch.testing.assert_close(m.running_mean, x.mean(dims), rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(m.running_var, x.var(dims, correction=0), rtol=1e-4,
                                       atol=1e-5)  # fmt: skip
        # each layer was estimated on inputs normalised by the final statistics before it, so
        # the adapted model embeds the audio as the one-batch training-mode pass does
        torch.testing.assert_close(embed_audio(adapted, wave), ref_emb, rtol=1e-4, atol=1e-4)
        assert not adapted.training and all(
            not m._forward_pre_hooks for m in audio_norm_layers(adapted)
        )
    # after the adaptation the statistics stay put: a further pass changes nothing
    first = audio_norm_layers(adapted)[0]
    before = first.running_mean.clone()
    embed_audio(adapted, wave[:2])
    torch.testing.assert_close(first.running_mean, before)


def test_with_audio_tta_every_speed_view_enters_the_statistics():
    from avssl.audio_tta import speed_views

    cfg, model = _head_bn("contrastive")
    wave = _class_ordered(cfg, 9)
    speeds = (0.8, 1.0, 1.2)
    inputs, _ = _one_batch(model, speed_views(wave, speeds))  # all views as one batch
    model.audio_tta = speeds
    adapt_on_waves(model, wave, "cpu", batch_size=4)
    assert model.audio_tta == speeds  # restored
    for m, x in zip(audio_norm_layers(model), inputs, strict=True):
        dims = [0, *range(2, x.dim())]
        torch.testing.assert_close(m.running_mean, x.mean(dims), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(m.running_var, x.var(dims, correction=0), rtol=1e-4, atol=1e-5)


def test_adaptation_refuses_no_audio_and_no_batch_norm():
    cfg, model = _head_bn("contrastive")
    start = [m.running_mean.clone() for m in audio_norm_layers(model)]
    with pytest.raises(AvsslError, match="no audio"):
        adapt_on_waves(model, make_batch(cfg, 1)["audio"][:0], "cpu")
    for m, s in zip(audio_norm_layers(model), start, strict=True):
        torch.testing.assert_close(m.running_mean, s)
    plain = torch.nn.Module()
    plain.audio = torch.nn.Linear(4, 2)
    with pytest.raises(AvsslError, match="no batch norm"):
        adapt_on_waves(plain, torch.zeros(3, 4), "cpu")


def test_evaluate_with_adapt_bn(tiny_train_args, capsys):
    assert train.main(["--config", str(ROOT / "configs/contrastive.yaml"), *tiny_train_args()]) == 0
    run = Path(last_json(capsys.readouterr().out)["run_dir"])
    base = ["--checkpoint", str(run), "--no-progress"]
    plain = {}
    for cmd in ("avc", "retrieval", "localize"):
        assert evaluate.main([cmd, *base]) == 0
        plain[cmd] = last_json(capsys.readouterr().out)
        assert "adapt_bn" not in plain[cmd]
        assert evaluate.main([cmd, *base, "--adapt-bn", "--audio-tta", "0.1"]) == 0
        res = last_json(capsys.readouterr().out)
        assert res["adapt_bn"]["clips"] == 4 and res["adapt_bn"]["layers"] > 0  # the test split
        assert len(res["audio_tta"]) == 9
    # the checkpoint on disk is untouched: a plain evaluation gives the plain result again
    assert evaluate.main(["avc", *base]) == 0
    assert last_json(capsys.readouterr().out)["roc_auc_easy"] == plain["avc"]["roc_auc_easy"]


def test_centre_waves_are_centre_pairs_audio(tiny_cache):
    from avssl.config import load_config
    from avssl.data.source import load_split
    from avssl.eval.adapt_bn import centre_waves
    from avssl.eval.retrieval import centre_pairs

    cfg = load_config(ROOT / "configs/contrastive.yaml", TINY)
    store = load_split(cfg.data, "test", train=False).store
    torch.testing.assert_close(centre_waves(store), centre_pairs(store, cfg.data.frame_size)[1])
