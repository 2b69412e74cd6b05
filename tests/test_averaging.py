"""Weight averaging (train.ema_decay): the update against its formula, checkpoints and resume."""

from pathlib import Path

import pytest
import torch
from bad_media import last_json
from torch import nn

import evaluate
import train
from avssl.errors import ConfigError
from avssl.train.averaging import build_ema, checkpoint_entries, eval_model, restore
from avssl.train.checkpoint import load_checkpoint, load_model, weights_digest


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))


def _steps(model: nn.Module, ema, n: int, seed: int = 0) -> list[dict]:
    """``n`` SGD steps, each followed by an EMA update; the model's states after each step."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    states = []
    for _ in range(n):
        loss = model(torch.randn(8, 3, generator=gen)).pow(2).mean()  # also moves BN statistics
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update_parameters(model)
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    return states


def test_ema_follows_its_formula_over_weights_and_batch_norm_statistics():
    torch.manual_seed(0)
    model, decay = _net(), 0.8
    ema = build_ema(model, decay)
    states = _steps(model, ema, 5)
    ref = dict(states[0])  # the first update copies
    for s in states[1:]:
        ref = {k: decay * ref[k] + (1 - decay) * s[k] if v.is_floating_point() else s[k]
               for k, v in ref.items()}  # fmt: skip
    got = ema.module.state_dict()
    for key, want in ref.items():
        if want.is_floating_point():
            torch.testing.assert_close(got[key], want, msg=key)
    assert not torch.equal(got["1.running_mean"], model.state_dict()["1.running_mean"])
    assert eval_model(model, ema) is ema.module
    entries = checkpoint_entries(model, ema)
    assert set(entries) == {"model", "train_model", "ema_updates"} and entries["ema_updates"] == 5


def test_zero_decay_is_off_and_bad_decays_are_refused():
    model = _net()
    assert build_ema(model, 0.0) is None and eval_model(model, None) is model
    assert set(checkpoint_entries(model, None)) == {"model"}
    for bad in (1.0, -0.1, 2.0):
        with pytest.raises(ConfigError, match=r"train.ema_decay must be in \[0, 1\)"):
            build_ema(model, bad)


def test_restore_round_trip_and_switching_averaging_on_at_resume():
    torch.manual_seed(0)
    model = _net()
    ema = build_ema(model, 0.5)
    _steps(model, ema, 3)
    saved = checkpoint_entries(model, ema)
    model2 = _net()
    ema2 = build_ema(model2, 0.5)
    restore(model2, ema2, saved)
    for key, want in saved["model"].items():
        assert torch.equal(ema2.module.state_dict()[key], want), key
    for key, want in saved["train_model"].items():
        assert torch.equal(model2.state_dict()[key], want), key
    assert int(ema2.n_averaged) == 3
    # a checkpoint written without averaging: the average starts from its weights
    plain = {"model": saved["train_model"]}
    model3 = _net()
    ema3 = build_ema(model3, 0.5)
    restore(model3, ema3, plain)
    for key, want in plain["model"].items():
        assert torch.equal(ema3.module.state_dict()[key], want), key
    assert int(ema3.n_averaged) == 0


def test_training_with_ema_checkpoints_evaluates_and_resumes_exactly(tiny_train_args, capsys):
    common = ("train.schedule=constant", "train.eval_every=4", "train.ema_decay=0.5")
    assert train.main(tiny_train_args("train.steps=8", *common)) == 0
    straight = last_json(capsys.readouterr().out)
    last = load_checkpoint(Path(straight["run_dir"]) / "last.pt")
    assert last["ema_updates"] == 8
    assert any(not torch.equal(v, last["train_model"][k]) for k, v in last["model"].items())
    # the summary names both: the optimiser's weights and the averaged ones that are evaluated
    averaged, _, _ = load_model(Path(straight["run_dir"]) / "last.pt")
    assert straight["averaged_weights_digest"] == weights_digest(averaged)
    averaged.load_state_dict(last["train_model"])
    assert straight["weights_digest"] == weights_digest(averaged)
    assert straight["weights_digest"] != straight["averaged_weights_digest"]
    assert evaluate.main(["avc", "--checkpoint", straight["run_dir"], "--no-progress"]) == 0
    assert last_json(capsys.readouterr().out)["n"] > 0

    assert train.main(tiny_train_args("train.steps=4", *common)) == 0
    half = last_json(capsys.readouterr().out)
    assert train.main(["--resume", half["run_dir"], "--set", "train.steps=8", "--no-progress"]) == 0
    resumed = load_checkpoint(Path(last_json(capsys.readouterr().out)["run_dir"]) / "last.pt")
    for entry in ("model", "train_model"):
        for key, want in last[entry].items():
            torch.testing.assert_close(resumed[entry][key], want, rtol=1e-5, atol=1e-6, msg=key)


def test_bad_decay_is_one_line_and_makes_no_run_dir(tiny_train_args, tmp_path, capsys):
    code = train.main(tiny_train_args("train.ema_decay=1", "name=refused"))
    err = capsys.readouterr().err
    assert code == 2 and err.splitlines() == [
        "error: train.ema_decay must be in [0, 1) (0: off), got 1.0"
    ]
    assert not (tmp_path / "runs" / "refused").exists()
