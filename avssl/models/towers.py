"""Encoders shared by every method: the L3-Net VGG-style tower and small projection heads."""

from __future__ import annotations

from torch import Tensor, nn


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class VGGTower(nn.Module):
    """The L3-Net subnetwork: ``len(channels)`` blocks of 2x(conv3x3+BN+ReLU) then 2x2 max-pool.

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


class AudioTower(nn.Module):
    """The audio subnetwork: a :class:`VGGTower` on the spectrogram, then max-pooling.

    With ``time_bins=1`` the map is max-pooled globally, as in L3-Net and Objects that Sound.
    With ``time_bins=k > 1`` it is max-pooled over frequency and into ``k`` equal spans of time,
    and the spans are concatenated: the embedding then knows *when* in the window a sound
    happens, which is what telling a time-shifted (synchronisation) negative from a positive
    needs; a global max is blind to where the onset sits in the window.

    Args:
        channels: output channels of each block.
        time_bins: number of time spans kept (1: global max-pool).

    Attributes:
        out_dim: ``channels[-1] * time_bins``.
    """

    def __init__(self, channels: list[int], time_bins: int = 1):
        super().__init__()
        if time_bins < 1:
            raise ValueError(f"time_bins must be >= 1, got {time_bins}")
        self.tower = VGGTower(1, channels)
        self.pool = nn.AdaptiveMaxPool2d((1, time_bins))
        self.out_dim = channels[-1] * time_bins

    def forward(self, spec: Tensor) -> Tensor:
        """``[B, 1, F, T]`` -> ``[B, out_dim]``."""
        return self.pool(self.tower(spec)).flatten(1)


def global_max_pool(x: Tensor) -> Tensor:
    """``[B, C, h, w]`` -> ``[B, C]``."""
    return x.amax(dim=(2, 3))


class Projection(nn.Module):
    """Two-layer MLP ``in_dim -> hidden -> ReLU -> out_dim``; per location (1x1 convs) when spatial.

    Args:
        in_dim: input features (channels when spatial).
        hidden: hidden width.
        out_dim: output features.
        spatial: take and return maps ``[B, C, h, w]`` instead of vectors ``[B, C]``.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, spatial: bool = False):
        super().__init__()
        if spatial:
            layers = [
                nn.Conv2d(in_dim, hidden, 1),
                nn.ReLU(inplace=True),
                nn.Conv2d(hidden, out_dim, 1),
            ]
        else:
            layers = [nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in_dim]`` -> ``[B, out_dim]``.

        Spatial: ``[B, in_dim, h, w]`` -> ``[B, out_dim, h, w]``.
        """
        return self.net(x)
