"""AVE-Net: Arandjelovic & Zisserman, Objects that Sound (ECCV 2018)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avssl.config import DataConfig, LossConfig, ModelConfig
from avssl.losses import pair_cross_entropy
from avssl.models.base import PairClassifier, full_precision
from avssl.models.towers import Projection, VGGTower, audio_tower, global_max_pool

# Initial calibration: logit(match) - logit(no match) = 2 * SLOPE * (BOUNDARY - d). Unrelated
# embeddings are about orthogonal (d = sqrt 2) and start on the boundary; closer pairs are matches.
INIT_SLOPE = 2.0
INIT_BOUNDARY = math.sqrt(2.0)


class AVENet(PairClassifier):
    """AVE-Net, https://arxiv.org/abs/1712.06651.

    L3 towers (conv1 stride 2 on the vision side), global max-pool, then per modality
    ``FC -> ReLU -> FC embed_dim -> L2 normalise``. The Euclidean distance d of the two embeddings
    goes through a tiny ``FC(1 -> 2)`` initialised so that a small distance means "match";
    cross-entropy on match / no match. The embeddings live in one space, so cross-modal retrieval
    uses :meth:`embed_visual` / :meth:`embed_audio` directly.
    """

    paper = "https://arxiv.org/abs/1712.06651"
    unit_audio = True

    def __init__(self, cfg: ModelConfig, data: DataConfig, loss: LossConfig | None = None):
        super().__init__(cfg, data, loss)
        self.vision = VGGTower(3, cfg.channels, cfg.conv1_stride, cfg.vision_pool_last)
        self.audio = audio_tower(cfg)
        self.vision_head = Projection(
            self.vision.out_dim, cfg.head_hidden, cfg.embed_dim, bn=cfg.head_bn
        )
        self.audio_head = Projection(
            self.audio.out_dim, cfg.head_hidden, cfg.embed_dim, bn=cfg.head_bn
        )
        self.calibration = nn.Linear(1, 2)
        with torch.no_grad():
            self.calibration.weight.copy_(torch.tensor([[INIT_SLOPE], [-INIT_SLOPE]]))
            bias = INIT_SLOPE * INIT_BOUNDARY
            self.calibration.bias.copy_(torch.tensor([-bias, bias]))

    def _encode_visual(self, frames: Tensor) -> Tensor:
        x = global_max_pool(self.vision(self.frame_norm(frames)))
        return F.normalize(self.vision_head(x).float(), dim=1)

    def audio_embedding(self, pooled: Tensor) -> Tensor:
        """Pooled audio tower ``[B, C]`` -> unit-norm embedding ``[B, embed_dim]``."""
        return F.normalize(self.audio_head(pooled).float(), dim=1)

    def embed_visual(self, frames: Tensor) -> Tensor:
        """``[B, 3, H, W]`` -> unit-norm embedding ``[B, embed_dim]``."""
        return self._encode_visual(frames)

    def _pair_output(self, v: Tensor, a: Tensor) -> Tensor:
        with full_precision(v):
            # clamp: the gradient of sqrt is infinite at 0
            d = (v.float() - a.float()).pow(2).sum(dim=1, keepdim=True).clamp_min(1e-12).sqrt()
            return self.calibration(d)  # [B, 2] logits

    def _pair_loss(self, out: Tensor, target: Tensor) -> Tensor:
        return pair_cross_entropy(out, target)

    def _pair_score(self, out: Tensor) -> Tensor:
        return out[:, 1] - out[:, 0]

    def calibration_parameters(self) -> list[nn.Parameter]:
        """The weight and bias of the distance's FC(1 -> 2) calibration."""
        return list(self.calibration.parameters())
