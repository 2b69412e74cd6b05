"""Transductive batch-norm adaptation of the audio side (``evaluate.py ... --adapt-bn``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from bad_media import last_json
from conftest import TINY
from test_models import load, make_batch

import evaluate
import train
from avssl.errors import AvsslError
from avssl.eval.adapt_bn import adapt_on_waves, audio_bn_adaptation, audio_norm_layers

ROOT = Path(__file__).resolve().parents[1]


def _head_bn(name: str):
    cfg, model = load(name)
    if hasattr(model, "audio_head"):  # rebuild with batch norm in the heads, as AV-Digits has
        cfg.model.head_bn = True
        torch.manual_seed(0)
        model = type(model)(cfg.model, cfg.data, cfg.loss)
    return cfg, model.eval()


def _bn_inputs(model, wave) -> list[torch.Tensor]:
    """Reference: one training-mode pass of the audio batch norms over the whole batch (each
    normalises with that batch's statistics), recording what each one receives."""
    layers, seen = audio_norm_layers(model), []
    handles = [m.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach())) for m in layers]
    for m in layers:
        m.train()
    with torch.no_grad():
        model.embed_audio(wave)
    for h in handles:
        h.remove()
    model.eval()
    return seen


@pytest.mark.parametrize("name", ["contrastive", "avolnet"])
def test_one_batch_equals_training_mode_batch_statistics(name):
    cfg, model = _head_bn(name)
    wave = make_batch(cfg, 12)["audio"]
    ref_model = type(model)(cfg.model, cfg.data, cfg.loss).eval()
    ref_model.load_state_dict(model.state_dict())
    inputs = _bn_inputs(ref_model, wave)
    vision_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("vision")}

    info = adapt_on_waves(model, wave, "cpu", batch_size=64)
    layers = audio_norm_layers(model)
    assert info == {"adapt_bn": {"clips": 12, "layers": len(layers)}} and len(inputs) == len(layers)
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in layers)  # the head's are included
    for m, x in zip(layers, inputs, strict=True):
        dims = [0, *range(2, x.dim())]
        torch.testing.assert_close(m.running_mean, x.mean(dims), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(m.running_var, x.var(dims, correction=0), rtol=1e-4, atol=1e-5)
    for k, v in model.state_dict().items():  # the vision side keeps its statistics
        if k in vision_before:
            torch.testing.assert_close(v, vision_before[k])
    assert not model.training and all(not m._forward_pre_hooks for m in layers)


def test_batches_accumulate_over_all_the_audio():
    cfg, model = _head_bn("contrastive")
    wave = make_batch(cfg, 10)["audio"]
    first = audio_norm_layers(model)[0]
    seen = []
    h = first.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach()))
    adapt_on_waves(model, wave, "cpu", batch_size=3)  # batches of 3, 3, 3, 1
    h.remove()
    x = torch.cat(seen)  # what reaches the first norm does not depend on any norm
    assert x.shape[0] == 10
    torch.testing.assert_close(first.running_mean, x.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(first.running_var, x.var((0, 2, 3), correction=0), rtol=1e-4,
                               atol=1e-5)  # fmt: skip
    # after the block the statistics stay put: a further pass changes nothing
    before = first.running_mean.clone()
    with torch.no_grad():
        model.embed_audio(wave[:2])
    torch.testing.assert_close(first.running_mean, before)


def test_adaptation_survives_eval_calls_and_refuses_nothing():
    cfg, model = _head_bn("contrastive")
    with pytest.raises(AvsslError, match="no audio"), audio_bn_adaptation(model):
        pass
    wave = make_batch(cfg, 4)["audio"]
    first = audio_norm_layers(model)[0]
    start = first.running_mean.clone()
    with audio_bn_adaptation(model) as seen:
        model.eval()  # every evaluation entry point calls eval(): the adaptation still counts
        with torch.no_grad():
            model.embed_audio(wave)
    assert seen["samples"] == 4 and not torch.allclose(first.running_mean, start)


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
