"""Encoders shared by every method: the L3-Net VGG-style tower and small projection heads."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from avssl.config import ModelConfig
from avssl.models.bf16_relu import ReLU


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        ReLU(),
    ]


class VGGTower(nn.Module):
    """The L3-Net subnetwork (https://arxiv.org/abs/1705.08168): ``len(channels)`` blocks of
    2x(conv3x3+BN+ReLU) then 2x2 max-pool.

    At paper size (``channels=[64, 128, 256, 512]``) a 224x224 frame gives a 14x14 map and a
    257x199 spectrogram a 16x12 map. AVE/AVOL-Net use ``conv1_stride=2`` on the vision side; with
    ``pool_last=False`` AVOL-Net keeps a 14x14 map at 224 input (224 / 2 / 2 / 2 / 2).

    Args:
        in_ch: input channels (3 for frames, 1 for spectrograms).
        channels: output channels of each block.
        conv1_stride: stride of the very first convolution.
        pool_last: whether the last block ends with its max-pool.

    Attributes:
        out_dim: channels of the output map (``channels[-1]``).
    """

    def __init__(
        self, in_ch: int, channels: list[int], conv1_stride: int = 1, pool_last: bool = True
    ):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_ch
        for i, c in enumerate(channels):
            layers += _conv_bn_relu(c_in, c, conv1_stride if i == 0 else 1)
            layers += _conv_bn_relu(c, c)
            if pool_last or i < len(channels) - 1:
                layers.append(nn.MaxPool2d(2))
            c_in = c
        self.body = nn.Sequential(*layers)
        self.out_dim = channels[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in_ch, H, W]`` -> spatial map ``[B, out_dim, h, w]``."""
        return self.body(x)


class RelaxedFreqNorm(nn.Module):
    """Relaxed instance frequency-wise normalisation (RFN, https://arxiv.org/abs/2206.12513).

    ``lam * IFN(x) + (1 - lam) * LN(x)``: IFN standardises each frequency row of one example over
    its channels and time (removing the per-band statistics a device or a voice imposes), LN the
    whole example over channels, frequency and time (keeping a little of what IFN discards).
    No learnt parameters; the same in training and evaluation.

    Args:
        lam: weight of the instance frequency-wise part, in ``[0, 1]``.
        eps: added to the variances.
    """

    def __init__(self, lam: float = 0.5, eps: float = 1e-5):
        super().__init__()
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {lam}")
        self.lam, self.eps = lam, eps

    @staticmethod
    def _standardise(x: Tensor, dims: tuple[int, ...], eps: float) -> Tensor:
        var, mean = torch.var_mean(x, dim=dims, keepdim=True, correction=0)
        return (x - mean) * torch.rsqrt(var + eps)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, F, T]`` -> ``[B, C, F, T]``."""
        ifn = self._standardise(x, (1, 3), self.eps)
        return self.lam * ifn + (1.0 - self.lam) * self._standardise(x, (1, 2, 3), self.eps)

    def extra_repr(self) -> str:
        """``lam=...`` in the module's repr."""
        return f"lam={self.lam}"


class AudioTower(nn.Module):
    """The audio subnetwork: a :class:`VGGTower` on the spectrogram, then max-pooling.

    With ``time_bins=1`` the map is max-pooled globally, as in L3-Net
    (https://arxiv.org/abs/1705.08168) and Objects that Sound (https://arxiv.org/abs/1712.06651).
    The first conv has stride 1 for every method (``model.conv1_stride`` is the vision tower's):
    L3-Net's layout. For Objects that Sound it gives the paper's 16x12 final map at 257x199,
    but public reimplementations of that paper use stride 2 on the audio conv1 as well (the
    same map and weights, about a quarter of the work in the first blocks); the paper text was
    not available to settle it.
    With ``time_bins=k > 1`` it is max-pooled over frequency and into ``k`` equal spans of time,
    and the spans are concatenated: the embedding then knows *when* in the window a sound
    happens, which is what telling a time-shifted (synchronisation) negative from a positive
    needs; a global max is blind to where the onset sits in the window.

    Args:
        channels: output channels of each block.
        time_bins: number of time spans kept (1: global max-pool).
        rfn_blocks: the first ``rfn_blocks`` blocks are each followed by a
            :class:`RelaxedFreqNorm` (0: none, the papers' tower).
        rfn_lambda: the ``lam`` of those :class:`RelaxedFreqNorm`.

    Attributes:
        out_dim: ``channels[-1] * time_bins``.
    """

    def __init__(
        self, channels: list[int], time_bins: int = 1, rfn_blocks: int = 0, rfn_lambda: float = 0.5
    ):
        super().__init__()
        if time_bins < 1:
            raise ValueError(f"time_bins must be >= 1, got {time_bins}")
        if not 0 <= rfn_blocks <= len(channels):
            raise ValueError(f"rfn_blocks must be in [0, {len(channels)}], got {rfn_blocks}")
        self.tower = VGGTower(1, channels)
        if rfn_blocks:
            layers, pools = [], 0
            for m in self.tower.body:
                layers.append(m)
                if isinstance(m, nn.MaxPool2d):
                    pools += 1
                    if pools <= rfn_blocks:
                        layers.append(RelaxedFreqNorm(rfn_lambda))
            self.tower.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveMaxPool2d((1, time_bins))
        self.out_dim = channels[-1] * time_bins

    def forward(self, spec: Tensor) -> Tensor:
        """``[B, 1, F, T]`` -> ``[B, out_dim]``."""
        return self.pool(self.tower(spec)).flatten(1)


def audio_tower(cfg: ModelConfig) -> AudioTower:
    """The :class:`AudioTower` that ``cfg`` (``channels``, ``audio_time_bins``, ``audio_rfn_*``)
    describes; every method builds its audio side with it."""
    return AudioTower(cfg.channels, cfg.audio_time_bins, cfg.audio_rfn_blocks, cfg.audio_rfn_lambda)


def global_max_pool(x: Tensor) -> Tensor:
    """``[B, C, h, w]`` -> ``[B, C]``."""
    return x.amax(dim=(2, 3))


class Projection(nn.Module):
    """Two-layer MLP ``in_dim -> hidden -> ReLU -> out_dim``; per location (1x1 convs) when spatial.

    With ``bn``, batch norm follows the hidden layer and (without affine parameters) the output
    layer, as in MoCo v3's heads (https://arxiv.org/abs/2104.02057): the embeddings of a batch are
    centred, so they do not start out nearly parallel (a freshly built audio head maps most
    clips to almost one direction, mean cosine about 0.9, which leaves InfoNCE little gradient).

    Args:
        in_dim: input features (channels when spatial).
        hidden: hidden width.
        out_dim: output features.
        spatial: take and return maps ``[B, C, h, w]`` instead of vectors ``[B, C]``.
        bn: batch norm after both layers (statistics over the batch, and locations when spatial).
    """

    def __init__(
        self, in_dim: int, hidden: int, out_dim: int, spatial: bool = False, bn: bool = False
    ):
        super().__init__()
        linear, norm = (nn.Conv2d, nn.BatchNorm2d) if spatial else (nn.Linear, nn.BatchNorm1d)
        kernel = (1,) if spatial else ()
        layers = [linear(in_dim, hidden, *kernel)]
        layers += [norm(hidden)] if bn else []
        layers += [nn.ReLU(inplace=True), linear(hidden, out_dim, *kernel)]
        layers += [norm(out_dim, affine=False)] if bn else []
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in_dim]`` -> ``[B, out_dim]``.

        Spatial: ``[B, in_dim, h, w]`` -> ``[B, out_dim, h, w]``.
        """
        return self.net(x)
