"""L3-Net: Arandjelovic & Zisserman, Look, Listen and Learn (ICCV 2017)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from avssl.config import DataConfig, LossConfig, ModelConfig
from avssl.losses import pair_cross_entropy
from avssl.models.base import PairClassifier
from avssl.models.towers import VGGTower, audio_tower, global_max_pool


class L3Net(PairClassifier):
    """L3-Net, https://arxiv.org/abs/1705.08168.

    Vision and audio VGG towers, each globally max-pooled (512-d at paper size), concatenated and
    fused by ``FC fusion_hidden -> ReLU -> FC 2``; cross-entropy on match / no match. There is no
    shared embedding space: :meth:`embed_audio` / :meth:`embed_visual` return the pooled tower
    outputs (evaluation relates them with CCA or linear probes).

    ``model.head_bn`` (not in the paper; off by default) puts batch norm after the hidden fusion
    layer, as the other methods' heads have it.
    """

    paper = "https://arxiv.org/abs/1705.08168"
    shared_space = False

    def __init__(self, cfg: ModelConfig, data: DataConfig, loss: LossConfig | None = None):
        super().__init__(cfg, data, loss)
        self.vision = VGGTower(3, cfg.channels, cfg.conv1_stride, cfg.vision_pool_last)
        self.audio = audio_tower(cfg)
        layers = [nn.Linear(self.vision.out_dim + self.audio.out_dim, cfg.fusion_hidden)]
        layers += [nn.BatchNorm1d(cfg.fusion_hidden)] if cfg.head_bn else []
        layers += [nn.ReLU(inplace=True), nn.Linear(cfg.fusion_hidden, 2)]
        self.fusion = nn.Sequential(*layers)

    def _encode_visual(self, frames: Tensor) -> Tensor:
        return global_max_pool(self.vision(self.frame_norm(frames)))

    def embed_visual(self, frames: Tensor) -> Tensor:
        """``[B, 3, H, W]`` -> pooled vision tower ``[B, channels[-1]]``."""
        return self._encode_visual(frames)

    def _pair_output(self, v: Tensor, a: Tensor) -> Tensor:
        return self.fusion(torch.cat([v, a], dim=1))  # [B, 2] logits

    def _pair_loss(self, out: Tensor, target: Tensor) -> Tensor:
        return pair_cross_entropy(out, target)

    def _pair_score(self, out: Tensor) -> Tensor:
        return out[:, 1] - out[:, 0]
