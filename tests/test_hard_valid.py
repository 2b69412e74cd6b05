"""Clips without a time-shifted window: their stand-in "hard" sound (another clip's) is left out of
the contrastive loss's hard column and of ``acc_hard``; the temperature's accepted range."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avssl.config import load_config
from avssl.errors import ConfigError
from tests.test_losses import brute_info_nce, tiny, tiny_batch


def test_invalid_rows_leave_the_hard_column_and_acc_hard():
    model = tiny("contrastive", hard_negatives=True, mask_same_label=True).eval()
    ok = torch.tensor([True, False, True, False, True, True])
    batch = dict(tiny_batch(6), hard_valid=ok)
    with torch.no_grad():
        loss, stats = model.loss(batch)
        frames = batch["frames"]
        sim = torch.stack([model.score(frames, a.expand(6, -1)) for a in batch["audio"]], 1)
        hard = model.score(frames, batch["audio_hard"])
        logits = torch.cat([sim, hard[:, None]], 1) / model.temperature
    lab = batch["label"]
    mask = F.pad((lab[:, None] == lab[None]) & (lab[:, None] >= 0), (0, 1))
    mask[:, -1] = ~ok
    assert float(loss) == pytest.approx(float(brute_info_nce(logits, mask)), rel=1e-4)
    tpr = (sim.diagonal() >= 0).float().mean()
    want = 0.5 * (tpr + (hard[ok] < 0).float().mean())
    assert stats["acc_hard"] == pytest.approx(float(want))
    with torch.no_grad():
        _, stats = model.loss(dict(batch, hard_valid=torch.zeros(6, dtype=torch.bool)))
    assert "acc_hard" not in stats and "acc_easy" in stats


@pytest.mark.parametrize("value", ["0.005", "2.0"])
def test_a_temperature_the_model_would_clamp_is_refused(value):
    with pytest.raises(ConfigError, match="model.temperature"):
        load_config("configs/contrastive.yaml", [f"model.temperature={value}"])
