"""AVOL-Net: Arandjelovic & Zisserman, Objects that Sound (ECCV 2018)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from avssl.config import DataConfig, LossConfig, ModelConfig
from avssl.errors import ConfigError
from avssl.losses import false_negatives, mil_logistic, pair_logistic
from avssl.models.base import PairClassifier, full_precision
from avssl.models.stats import threshold_stats
from avssl.models.towers import Projection, VGGTower, audio_tower, global_max_pool


class AVOLNet(PairClassifier):
    """AVOL-Net, https://arxiv.org/abs/1712.06651.

    The vision tower keeps a spatial map (conv1 stride 2, no last max-pool: 14x14 at 224 input),
    embedded per location by ``1x1 conv -> ReLU -> 1x1 conv embed_dim`` (no L2). The audio
    embedding (tower, global max-pool, ``FC -> ReLU -> FC embed_dim``) is compared with every
    location by a scalar product, calibrated by a learnt ``a * x + b`` (``a > 0``) and squashed by
    a sigmoid: the localisation heatmap. The max over locations (multiple-instance learning) is the
    match logit, trained with a logistic loss. In training, ``cfg.mil_pool="lse"`` replaces the max
    by a soft maximum (a hard max can stall at chance); evaluation always uses the max.

    The negatives are each clip's sampled ``audio_neg`` (the paper), or with
    ``loss.pair_negatives="batch"`` every other sound of the batch against every frame (see
    :meth:`loss`).
    """

    paper = "https://arxiv.org/abs/1712.06651"
    has_map = True
    supports_batch_pairs = True

    @classmethod
    def hard_negative_setting(
        cls, model: ModelConfig, data: DataConfig, loss: LossConfig
    ) -> str | None:
        """``data.hard_fraction``'s, unless the negatives come from the batch (none is hard)."""
        if loss.pair_negatives == "batch":
            return None
        return super().hard_negative_setting(model, data, loss)

    def __init__(self, cfg: ModelConfig, data: DataConfig, loss: LossConfig | None = None):
        super().__init__(cfg, data, loss)
        self.vision = VGGTower(3, cfg.channels, cfg.conv1_stride, cfg.vision_pool_last)
        self.audio = audio_tower(cfg)
        self.vision_head = Projection(
            self.vision.out_dim, cfg.head_hidden, cfg.embed_dim, True, cfg.head_bn
        )
        self.audio_head = Projection(
            self.audio.out_dim, cfg.head_hidden, cfg.embed_dim, bn=cfg.head_bn
        )
        if not cfg.avol_scale_init > 0:
            raise ConfigError(f"model.avol_scale_init must be > 0, got {cfg.avol_scale_init}")
        # a = exp(log_scale) > 0
        self.log_scale = nn.Parameter(torch.tensor(math.log(cfg.avol_scale_init)))
        self.bias = nn.Parameter(torch.zeros(()))

    def _encode_visual(self, frames: Tensor) -> Tensor:
        return self.vision_head(self.vision(self.frame_norm(frames)))  # [B, D, h, w]

    def audio_embedding(self, pooled: Tensor) -> Tensor:
        """Pooled audio tower ``[B, C]`` -> audio embedding ``[B, embed_dim]`` (not normalised)."""
        return self.audio_head(pooled)

    def _logit_map(self, v: Tensor, a: Tensor) -> Tensor:
        """``[B, D, h, w]``, ``[B, D]`` -> calibrated logits ``[B, h, w]``."""
        with full_precision(v):
            dot = torch.einsum("bdhw,bd->bhw", v.float(), a.float())
            return self.log_scale.exp() * dot + self.bias

    def embed_visual(self, frames: Tensor) -> Tensor:
        """``[B, 3, H, W]`` -> location max of the embedding map ``[B, embed_dim]``."""
        return global_max_pool(self._encode_visual(frames))

    def visual_map(self, frames: Tensor) -> Tensor:
        """``[B, 3, H, W]`` -> embedding map ``[B, embed_dim, h, w]``."""
        return self._encode_visual(frames)

    def heatmap(self, frames: Tensor, wave: Tensor) -> Tensor:
        """Match probability per location ``[B, h, w]`` (the sigmoid of the calibrated logits)."""
        return torch.sigmoid(self._logit_map(self._encode_visual(frames), self._encode_audio(wave)))

    def _pair_output(self, v: Tensor, a: Tensor) -> Tensor:
        return self._logit_map(v, a).flatten(1)  # [B, h * w]

    def _pair_loss(self, out: Tensor, target: Tensor) -> Tensor:
        return mil_logistic(self.pool_locations(out), target.float())

    def _pair_score(self, out: Tensor) -> Tensor:
        return out.amax(dim=1)

    def calibration_parameters(self) -> list[nn.Parameter]:
        """``log_scale`` and ``bias``, the 1x1 calibration of the per-location dot products."""
        return [self.log_scale, self.bias]

    def audio_keys(self) -> tuple[str, ...]:
        """``audio`` alone with ``loss.pair_negatives="batch"``, else also ``audio_neg``."""
        return ("audio",) if self.loss_cfg.pair_negatives == "batch" else super().audio_keys()

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """The logistic loss on sampled pairs (:meth:`PairClassifier.loss`), or on all pairs.

        With ``loss.pair_negatives="batch"`` each of the B frames is scored against each of the B
        sounds (``audio`` only; ``audio_neg`` is not read, so the audio tower runs on B clips, not
        2B): B positives and up to ``B * (B - 1)`` negatives, weighted half and half
        (:func:`avssl.losses.pair_logistic`). With ``loss.mask_same_label`` and ``label`` in the
        batch, a frame that shows a sound's class (``frame_labels``) is no negative for it. The
        negatives come from this process's batch (nothing is gathered across ranks).

        Args:
            batch: with ``"batch"`` pairs reads ``frames`` ``[B, 3, H, W]`` float in ``[0, 1]``,
                ``audio`` ``[B, N]`` and, if present, ``label`` ``[B]`` long with
                ``frame_labels`` ``[B, C]`` bool; else as :meth:`PairClassifier.loss`.

        Returns:
            ``(loss, stats)``: the scalar loss, and as detached 0-d tensors ``loss``;
            ``acc_easy``, the balanced accuracy at ``decision_threshold`` of the positives against
            every counted negative (hard max over locations); ``acc`` over all those pairs.
        """
        if self.loss_cfg.pair_negatives != "batch":
            return super().loss(batch)
        frames, audio = batch["frames"], batch["audio"]
        v, a = self._encode_visual(frames), self._encode_audio(audio)  # [B, D, h, w], [B, D]
        with full_precision(v):
            dot = torch.einsum("bdhw,cd->bchw", v.float(), a.float()).flatten(2)  # [B, B, L]
            logits = self.log_scale.exp() * dot + self.bias
        negatives = torch.ones(logits.shape[:2], dtype=torch.bool, device=logits.device)
        if self.loss_cfg.mask_same_label and "label" in batch:
            negatives &= ~false_negatives(batch["label"], batch.get("frame_labels"))
        negatives.fill_diagonal_(False)
        loss = pair_logistic(self.pool_locations(logits), negatives)
        with torch.no_grad():
            s = logits.amax(dim=2)
            neg = s[negatives]
            hard = torch.zeros(len(neg), dtype=torch.bool, device=neg.device)
            kinds = (len(neg) > 0, False)  # every negative is easy
            stats = threshold_stats(s.diagonal(), neg, hard, self.decision_threshold, kinds)
        stats["loss"] = loss.detach()
        return loss, stats
