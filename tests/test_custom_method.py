"""A method defined outside avssl: one class, one registry entry (README, "Adding a method").

``Mine`` is the worked example: the shared towers, a linear head per modality onto unit
vectors, and symmetric InfoNCE over the batch. It is registered for the test only
(``monkeypatch`` restores :data:`avssl.models.METHODS`), trained for a few steps by
``train.main`` on the built-in synthetic world, then evaluated by ``evaluate.main``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from bad_media import last_json
from torch import Tensor, nn

import evaluate
import train
from avssl.cli import main as cli
from avssl.config import DataConfig, LossConfig, ModelConfig
from avssl.errors import ConfigError
from avssl.losses import info_nce
from avssl.models import METHODS, AVModel, build_model
from avssl.models.towers import VGGTower, audio_tower, global_max_pool

ROOT = Path(__file__).resolve().parents[1]
TEMPERATURE = 0.1


class Mine(AVModel):
    """Pooled towers, ``Linear -> L2 normalise`` per modality, cosine score, in-batch InfoNCE."""

    paper = "https://example.org/mine"
    needs_calibration = True  # cosine similarities: the threshold is chosen on validation
    unit_audio = True
    batch_negatives = True  # InfoNCE over one pair would be 0

    @classmethod
    def hard_negative_setting(cls, model, data, loss):
        return None  # the loss reads only `audio`: data.hard_fraction makes nothing it reads

    def __init__(self, cfg: ModelConfig, data: DataConfig, loss: LossConfig | None = None):
        super().__init__(cfg, data, loss)
        self.vision = VGGTower(3, cfg.channels, cfg.conv1_stride, cfg.vision_pool_last)
        self.audio = audio_tower(cfg)  # embed_audio runs the front end, then this tower
        self.vision_head = nn.Linear(self.vision.out_dim, cfg.embed_dim)
        self.audio_head = nn.Linear(self.audio.out_dim, cfg.embed_dim)

    def embed_visual(self, frames: Tensor) -> Tensor:  # [B, 3, H, W] -> [B, D]
        pooled = global_max_pool(self.vision(self.frame_norm(frames)))
        return F.normalize(self.vision_head(pooled).float(), dim=1)

    def audio_embedding(self, pooled: Tensor) -> Tensor:  # [B, audio.out_dim] -> [B, D]
        return F.normalize(self.audio_head(pooled).float(), dim=1)

    def visual_codes(self, frames: Tensor) -> Tensor:
        return self.embed_visual(frames)

    def audio_codes(self, wave: Tensor) -> Tensor:
        return self.embed_audio(wave)

    def pair_scores(self, visual: Tensor, audio: Tensor) -> Tensor:  # [B, D], [B, D] -> [B]
        return (visual * audio).sum(dim=1)

    def cross_scores(self, visual: Tensor, audio: Tensor) -> Tensor:  # [F, D], [A, D] -> [A, F]
        return audio @ visual.T

    def audio_keys(self) -> tuple[str, ...]:
        return ("audio",)

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        v, a = self.embed_visual(batch["frames"]), self.embed_audio(batch["audio"])
        logits = v @ a.T / TEMPERATURE
        loss = info_nce(logits)
        top = logits.argmax(dim=1) == torch.arange(len(v), device=v.device)
        # detached 0-d tensors, not float(): a float waits for the device at every step
        return loss, {"loss": loss.detach(), "acc": top.float().mean().detach()}


@pytest.fixture
def mine(monkeypatch):
    """``Mine`` registered as ``model.method: mine`` for one test."""
    monkeypatch.setitem(METHODS, "mine", Mine)
    return "mine"


def test_a_registered_method_trains_and_evaluates(mine, tiny_train_args, capsys):
    args = ["--config", str(ROOT / "configs/avenet.yaml")]  # sizes only; the method is ours
    assert train.main([*args, *tiny_train_args(f"model.method={mine}")]) == 0
    run = Path(last_json(capsys.readouterr().out)["run_dir"])
    for name in ("config.yaml", "metrics.jsonl", "best.pt", "last.pt"):
        assert (run / name).is_file(), name
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r["split"] == "train"]
    assert losses and all(math.isfinite(x) for x in losses)
    assert any(r["split"] == "val" for r in rows)

    base = ["--checkpoint", str(run), "--no-progress"]
    assert evaluate.main(["avc", *base]) == 0
    avc = last_json(capsys.readouterr().out)
    assert avc["n"] == 4 * 4 and avc["split"] == "test"
    for key in ("accuracy", "accuracy_easy", "accuracy_hard"):
        assert 0.0 <= avc[key] <= 1.0, key

    assert evaluate.main(["retrieval", *base]) == 0
    ret = last_json(capsys.readouterr().out)
    recalls = [v for k, v in ret["a2v"].items() if k.startswith("R@")]
    assert recalls and all(0.0 <= r <= 1.0 for r in recalls)
    assert ret["cca"] is False  # a shared space: no CCA
    report = (run / "report.md").read_text()
    assert "AVC accuracy" in report

    # no map: localisation refuses in one line, naming the method
    assert evaluate.main(["localize", *base]) != 0
    assert "method 'mine' has no localisation map" in capsys.readouterr().err

    # the same checkpoint where the method is not registered: the checkpoint is named, and why
    del METHODS[mine]  # the fixture's monkeypatch leaves METHODS as it was after the test
    want = (
        f"error: {run / 'best.pt'}: model.method: unknown method 'mine' (valid: l3, avenet, "
        "avolnet, contrastive); register it (or install its package) before loading this "
        "checkpoint\n"
    )
    assert evaluate.main(["avc", *base]) == 2
    assert capsys.readouterr().err == want
    out = run.parent / "embed"
    assert cli(["embed", "--checkpoint", str(run), "--out", str(out), "--inputs", str(run)]) == 2
    assert capsys.readouterr().err == want
    assert not out.exists()
    for sets in (["train.steps=8"], ["model.method=avenet"]):  # not blamed on the --set
        sets = [a for s in sets for a in ("--set", s)]
        assert train.main(["--resume", str(run), *sets, "--no-progress"]) == 2
        assert capsys.readouterr().err == want.replace("best.pt", "last.pt")
    # registered again, a --set of an unknown method is the --set's error, not the checkpoint's
    METHODS[mine] = Mine
    assert train.main(["--resume", str(run), "--set", "model.method=nope", "--no-progress"]) == 2
    assert capsys.readouterr().err.startswith("error: model.method: unknown method 'nope' (")


def test_a_registered_methods_properties_are_read(mine, tiny_train_args, capsys):
    cfg = ModelConfig(method=mine, channels=[8, 16], embed_dim=16)
    assert isinstance(build_model(cfg, DataConfig()), Mine)
    with pytest.raises(ConfigError, match="views above 1 are for contrastive only"):
        build_model(ModelConfig(method=mine, audio_views=2), DataConfig())
    # batch_negatives: one pair per step is refused before any clip is decoded
    args = ["--config", str(ROOT / "configs/avenet.yaml")]
    one = tiny_train_args(f"model.method={mine}", "train.batch_size=1")
    assert train.main([*args, *one]) != 0
    err = capsys.readouterr().err.strip().splitlines()[-1]  # no setting of contrastive's named
    want = "train.batch_size 1 in one process leaves mine no negative to learn from"
    assert err == f"error: {want}; raise train.batch_size"
