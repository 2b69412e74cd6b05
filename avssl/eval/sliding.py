"""Exact sliding-window audio embeddings that share the work of overlapping windows.

Embedding every 1-s window every 0.1 s runs the audio tower on each sample ten times. When the
front end works frame by frame (no centring, no per-window normalisation) and the window hop is a
whole number of frames, a window's spectrogram is a slice of the clip's, so the convolutions can
run once over the clip. What differs from the per-window computation is only the zero padding
at each window's edges: per window, the columns within the receptive field of an edge see zeros
where the clip has signal. :func:`sliding_embeddings` therefore keeps, for every window, its own
left and right *edge strips* (the columns its padding reaches, growing by one per 3x3 conv) and
takes every other column from the shared clip map. Max-pooling halves columns, so windows are
split by the parity of their offset at each pool (a shared map per phase). The result equals the
per-window tower up to float rounding (tests compare them); the cost is the clip-level tower,
once per phase from the pool where phases diverge, plus the strips.

The window embedding then is the tower's own pooling and the method's head
(:meth:`~avssl.models.base.AVModel.audio_output`) on each window's rebuilt map.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avssl.eval.embed import audio_windows, embed_audio
from avssl.features import AudioFrontend, LogMel, LogSTFT, audio_feature_shape
from avssl.models.towers import AudioTower, RelaxedFreqNorm
from avssl.train.runtime import autocast

POINTWISE = (nn.BatchNorm2d, nn.ReLU)


def sharing_blocker(model, sample_rate: int, window: float, hop: float) -> str | None:
    """Why windows of ``model`` cannot share computation (``None``: they can).

    Needs overlapping windows (``hop < window``; otherwise there is nothing to share), a
    frame-wise front end (``center=False``, no band normalisation; cepstral liftering is per
    frame), a window hop of a whole number of STFT hops, and an audio tower of 3x3 same
    convolutions, batch norm, ReLU and 2x2 max-pools only (no RFN: it normalises over time).

    Args:
        model: an :class:`~avssl.models.base.AVModel` (speed test-time augmentation and a time
            stretch of the active span also block sharing).
        sample_rate: the model's input rate (Hz).
        window: window length (s).
        hop: hop between window starts (s).
    """
    if hop >= window:
        return "windows do not overlap"
    if getattr(model, "audio_tta", ()):
        return "speed test-time augmentation resamples each window as a whole"
    if getattr(model, "audio_layer", "embedding") == "grid":
        return "the 4 x 3 grid of a window's map is cut from that window alone"
    front = getattr(model, "audio_frontend", None)
    if not isinstance(front, AudioFrontend) or not isinstance(front.spec, LogMel | LogSTFT):
        return "unknown audio front end"
    spec = front.spec.spec
    if spec.center:
        return "centred STFT frames depend on the window edges"
    if front.band_mean:
        return "band normalisation uses the whole window"
    if front.stretch.active:
        return "time normalisation of the active span uses the whole window"
    step = round(hop * sample_rate)
    if step % spec.hop_length or round(window * sample_rate) < spec.win_length:
        return f"window hop of {step} samples is not a multiple of the STFT hop {spec.hop_length}"
    if not isinstance(getattr(model, "audio", None), AudioTower):
        return "no AudioTower"
    for m in model.audio.tower.body:
        if isinstance(m, RelaxedFreqNorm):
            return "frequency-wise normalisation (RFN) uses the whole window"
        if isinstance(m, nn.Conv2d):
            if (m.kernel_size, m.stride, m.padding, m.dilation, m.groups, m.padding_mode) != (
                (3, 3), (1, 1), (1, 1), (1, 1), 1, "zeros"
            ):  # fmt: skip
                return f"unsupported convolution {m}"
        elif isinstance(m, nn.MaxPool2d):
            if (m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode) not in (
                (2, 2, 0, 1, False), ((2, 2), (2, 2), 0, 1, False)
            ):  # fmt: skip
                return f"unsupported pooling {m}"
        elif not isinstance(m, POINTWISE) or (isinstance(m, nn.BatchNorm2d) and m.training):
            return f"unsupported layer {m}"
    return None


@dataclass
class _Branch:
    """Windows that share one clip map (same offset parity at every pool so far).

    ``shared``: ``[1, C, F, Tc]``; ``offsets``: ``[n]`` window starts in ``shared`` columns;
    ``index``: ``[n]`` window numbers; ``left`` / ``right``: ``[n, C, F, a]`` / ``[n, C, F, b]``.
    """

    shared: Tensor
    offsets: Tensor
    index: Tensor
    left: Tensor
    right: Tensor


def _cols(shared: Tensor, start: Tensor, width: int) -> Tensor:
    """Columns ``start_i ... start_i + width`` of ``[1, C, F, T]`` -> ``[n, C, F, width]``."""
    c, f = shared.shape[1:3]
    if width == 0:
        return shared.new_zeros(start.shape[0], c, f, 0)
    idx = (start[:, None] + torch.arange(width, device=start.device)).flatten()
    return shared[0].index_select(2, idx).view(c, f, -1, width).permute(2, 0, 1, 3)


def _conv(m: nn.Conv2d, x: Tensor, pad: tuple[int, int]) -> Tensor:
    """3x3 conv, same in frequency, ``pad = (left, right)`` zero columns in time, valid after."""
    return F.conv2d(F.pad(x, (*pad, 0, 0)), m.weight, m.bias, padding=(1, 0))


def _pool(x: Tensor) -> Tensor:
    """2x2 max-pool that also takes zero-width strips."""
    if x.shape[-1] == 0:
        return x.new_zeros(*x.shape[:2], x.shape[2] // 2, 0)
    return F.max_pool2d(x, 2)


def _step(m: nn.Module, br: _Branch, width: int) -> tuple[list[_Branch], int]:
    """Apply layer ``m`` to a branch whose windows are ``width`` columns wide."""
    a, b = br.left.shape[-1], br.right.shape[-1]
    if isinstance(m, nn.Conv2d):
        lin = torch.cat([br.left, _cols(br.shared, br.offsets + a, 2)], dim=-1)
        rin = torch.cat([_cols(br.shared, br.offsets + width - b - 2, 2), br.right], dim=-1)
        out = _Branch(m(br.shared), br.offsets, br.index, _conv(m, lin, (1, 0)),
                      _conv(m, rin, (0, 1)))  # fmt: skip
        return [out], width
    if isinstance(m, POINTWISE):
        return [_Branch(m(br.shared), br.offsets, br.index, m(br.left), m(br.right))], width
    # 2x2 max-pool: output column j reads columns 2j, 2j + 1; an odd last column is dropped
    half = width // 2
    a2 = (a + 1) // 2
    j0 = max(0, (width - b) // 2)  # first output column that reads the right strip
    lin = torch.cat([br.left, _cols(br.shared, br.offsets + a, 2 * a2 - a)], dim=-1)
    rin = torch.cat([_cols(br.shared, br.offsets + 2 * j0, width - b - 2 * j0), br.right], dim=-1)[
        ..., : 2 * (half - j0)
    ]
    left, right = _pool(lin), _pool(rin)
    out = []
    for phase in (0, 1):
        sel = (br.offsets % 2) == phase
        if bool(sel.any()):
            out.append(_Branch(F.max_pool2d(br.shared[..., phase:], 2),
                               (br.offsets[sel] - phase) // 2, br.index[sel], left[sel],
                               right[sel]))  # fmt: skip
    return out, half


def _rebuild(br: _Branch, width: int) -> Tensor:
    """Each window's map ``[n, C, F, width]`` from its strips and the shared columns."""
    a, b = br.left.shape[-1], br.right.shape[-1]
    mid = _cols(br.shared, br.offsets + a, width - a - b)
    return torch.cat([br.left, mid, br.right], dim=-1)


def tower_windows(tower: AudioTower, spec: Tensor, offsets: Tensor, width: int) -> Tensor:
    """The tower's pooled output for windows of a clip spectrogram, sharing their computation.

    Args:
        tower: an eval-mode :class:`AudioTower` (see :func:`sharing_blocker`).
        spec: clip features ``[1, 1, F, Tc]``.
        offsets: ``[W]`` long, each window's first frame.
        width: frames per window (``offsets + width <= Tc``).

    Returns:
        ``[W, tower.out_dim]``, equal to ``tower(window spectrograms)`` up to float rounding.
    """
    empty = spec.new_zeros(offsets.shape[0], spec.shape[1], spec.shape[2], 0)
    index = torch.arange(offsets.shape[0], device=offsets.device)
    branches = [_Branch(spec, offsets, index, empty, empty)]
    layers = list(tower.tower.body)
    for k, m in enumerate(layers):
        a, b = branches[0].left.shape[-1], branches[0].right.shape[-1]
        if a + b + 4 > width:  # the strips meet: finish each window on its own map
            maps = torch.cat([_rebuild(br, width) for br in branches])
            order = torch.cat([br.index for br in branches])
            out = tower.pool(nn.Sequential(*layers[k:])(maps)).flatten(1)
            return out[order.argsort()]
        nxt = []
        for br in branches:
            done, new_width = _step(m, br, width)
            nxt += done
        branches, width = nxt, new_width
    maps = torch.cat([_rebuild(br, width) for br in branches])
    order = torch.cat([br.index for br in branches])
    return tower.pool(maps).flatten(1)[order.argsort()]


def sliding_embeddings(
    model,
    wave: Tensor,
    sample_rate: int,
    window: float,
    hop: float,
    device="cpu",
    precision: str = "fp32",
    batch_size: int = 64,
) -> Tensor:
    """Embeddings of the windows :func:`~avssl.eval.embed.audio_windows` cuts from ``wave``.

    Shares computation between overlapping windows when :func:`sharing_blocker` allows (exact
    up to float rounding); otherwise embeds each window on its own.

    Args:
        model: an :class:`~avssl.models.base.AVModel` in eval mode.
        wave: mono float ``[N]`` at ``sample_rate``.
        sample_rate: the model's input rate (Hz).
        window: window length (s).
        hop: hop between window starts (s).
        device: where the model runs.
        precision: ``fp32`` or ``bf16`` (autocast).
        batch_size: windows per pass (bounds memory: each pass covers that many windows).

    Returns:
        float32 ``[W, D]`` on the CPU.
    """
    model.eval()
    if sharing_blocker(model, sample_rate, window, hop) is not None:
        return embed_audio(model, audio_windows(wave, sample_rate, window, hop), device,
                           precision, batch_size)  # fmt: skip
    n = int(round(window * sample_rate))
    step = int(round(hop * sample_rate))
    if wave.shape[0] < n:
        wave = F.pad(wave, (0, n - wave.shape[0]))
    count = (wave.shape[0] - n) // step + 1
    frames_per_step = step // model.audio_frontend.spec.spec.hop_length
    frames = audio_feature_shape(model.cfg.audio, sample_rate, window)[1]  # per window
    outs = []
    with torch.no_grad():
        for lo in range(0, count, batch_size):
            hi = min(count, lo + batch_size)
            seg = wave[lo * step : (hi - 1) * step + n].to(device)
            with autocast(precision, torch.device(device)):
                spec = model._spectrogram(seg[None])  # [1, 1, F, Tc]
                offsets = torch.arange(hi - lo, device=spec.device) * frames_per_step
                pooled = tower_windows(model.audio, spec, offsets, frames)
                outs.append(model.audio_output(pooled).float().cpu())
    return torch.cat(outs)
