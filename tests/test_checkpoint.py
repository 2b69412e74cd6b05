import pickle

import pytest
import torch
from conftest import TINY

from avssl.config import Config, load_config, to_dict
from avssl.errors import CheckpointError
from avssl.models import build_model
from avssl.train.checkpoint import checkpoint_config, load_checkpoint, load_model, save_checkpoint


def test_round_trip_and_config(tmp_path):
    cfg = Config()
    path = save_checkpoint(
        tmp_path / "c.pt", {"model": {"w": torch.ones(2)}, "config": to_dict(cfg)}
    )
    state = load_checkpoint(path)
    assert torch.equal(state["model"]["w"], torch.ones(2))
    assert checkpoint_config(state) == cfg
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def _bad_files(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("hello")
    torch.save({"format": "something-else"}, tmp_path / "foreign.pt")
    torch.save({"format": "avssl-checkpoint-v1", "evil": _Evil()}, tmp_path / "evil.pt")
    with open(tmp_path / "pickle.pt", "wb") as fh:
        pickle.dump(_Evil(), fh)
    good = tmp_path / "good.pt"
    save_checkpoint(good, {"model": {"w": torch.ones(1000)}})
    (tmp_path / "truncated.pt").write_bytes(good.read_bytes()[:300])
    return {
        "missing.pt": "no such file",
        "empty.pt": "empty file",
        "text.pt": "not a PyTorch checkpoint file",
        "foreign.pt": "not an avssl checkpoint",
        "evil.pt": "refused",
        "pickle.pt": "",
        "truncated.pt": "corrupt or truncated checkpoint file",
    }


def test_bad_checkpoints_one_line(tmp_path, capsys):
    cases = _bad_files(tmp_path)
    for name, reason in cases.items():
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(tmp_path / name)
        msg = str(info.value)
        assert name in msg and reason in msg and "\n" not in msg
    assert "code ran" not in capsys.readouterr().out


def test_weights_that_do_not_fit_are_named_in_one_line(tmp_path):
    """Missing, unexpected and misshapen weights are named, not only torch's header line."""
    cfg = load_config(None, TINY)
    weights = build_model(cfg.model, cfg.data, cfg.loss).state_dict()
    del weights["decision_threshold"]
    name = next(k for k, v in weights.items() if v.dim() == 2)
    weights[name] = torch.zeros(3, 5)
    weights["extra.weight"] = torch.zeros(1)
    path = save_checkpoint(tmp_path / "c.pt", {"model": weights, "config": to_dict(cfg)})
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: weights do not fit the model (")
    assert 'Missing key(s) in state_dict: "decision_threshold"' in msg
    assert 'Unexpected key(s) in state_dict: "extra.weight"' in msg
    assert f"size mismatch for {name}: torch.Size([3, 5]) in the checkpoint" in msg
