"""Encode frames and audio into a container with PyAV (video + audio muxed in one file)."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

_AUDIO_CODECS = {".mp4": "aac", ".m4a": "aac", ".mkv": "aac", ".webm": "libopus", ".mov": "aac"}
_VIDEO_CODECS = {".webm": "libvpx"}


def _to_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]`` (H, W even) -> planar yuv420p ``[H * 3 // 2, W]``, BT.601 limited
    range, chroma averaged over 2x2 blocks.

    Done here rather than by FFmpeg's swscale, whose result was seen to vary from run to run in
    the last bit (and so the encoded bytes), which broke the synthetic world's determinism.
    """
    x = rgb.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    cb = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    cr = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    h, w = y.shape

    def down(c: np.ndarray) -> np.ndarray:
        return c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)).reshape(h // 4, w)

    planes = [y, down(cb), down(cr)]
    return np.concatenate([np.clip(np.rint(c), 0, 255).astype(np.uint8) for c in planes])


def write_video(
    path: str | os.PathLike,
    frames,
    fps: float,
    audio=None,
    sample_rate: int | None = None,
    *,
    video_codec: str | None = None,
    audio_codec: str | None = None,
    crf: int = 23,
) -> Path:
    """Write a video file, optionally with an audio track.

    Args:
        path: output file; the codec follows the extension (``.mp4``: h264 + aac,
            ``.webm``: vp8 + opus) unless given.
        frames: uint8 ``[T, H, W, 3]`` RGB frames (H and W even for h264), or ``None`` for an
            audio-only file.
        fps: frame rate (may be fractional, e.g. 29.97).
        audio: float ``[N]`` (mono) or ``[C, N]`` samples in [-1, 1], or ``None`` for no track.
        sample_rate: audio sample rate (required with ``audio``).
        video_codec: override the video codec name.
        audio_codec: override the audio codec name.
        crf: x264 constant rate factor (lower is better quality).

    Returns:
        The written path. The file is written in place; callers wanting atomicity write to a
        temporary name and rename.
    """
    path = Path(path)
    ext = path.suffix.lower()
    container = av.open(str(path), mode="w")
    try:
        vstream = astream = None
        if frames is not None:
            frames = _to_numpy(frames)
            codec = video_codec or _VIDEO_CODECS.get(ext, "libx264")
            rate = Fraction(fps).limit_denominator(1001)
            vstream = container.add_stream(codec, rate=rate)
            vstream.height, vstream.width = int(frames.shape[1]), int(frames.shape[2])
            vstream.pix_fmt = "yuv420p"
            if codec == "libx264":
                # One thread: multi-threaded x264 output differs between runs more often. Even
                # single-threaded, about one clip in 100 is encoded into other bytes from the
                # same frames; only crf 0 (lossless) decodes to the same pixels every time.
                vstream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
        if audio is not None:
            if sample_rate is None:
                raise ValueError("sample_rate is required with audio")
            audio = _to_numpy(audio).astype(np.float32)
            if audio.ndim == 1:
                audio = audio[None]
            layout = {1: "mono", 2: "stereo", 6: "5.1"}.get(audio.shape[0])
            if layout is None:
                raise ValueError(f"unsupported channel count {audio.shape[0]}")
            codec = audio_codec or _AUDIO_CODECS.get(ext, "aac")
            astream = container.add_stream(codec, rate=int(sample_rate), layout=layout)
        if vstream is not None:
            for img in frames:
                frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(img), format="yuv420p")
                container.mux(vstream.encode(frame))
            container.mux(vstream.encode(None))
        if astream is not None:
            _encode_audio(container, astream, audio, int(sample_rate))
    finally:
        container.close()
    return path


def _encode_audio(container, stream, audio: np.ndarray, sample_rate: int) -> None:
    """Feed planar float samples through an AudioResampler to the codec's sample format."""
    layout = stream.layout.name
    resampler = av.AudioResampler(format=stream.format.name, layout=layout, rate=sample_rate)
    chunk = 1024 * 8
    pts = 0
    for i in range(0, audio.shape[1], chunk):
        block = np.ascontiguousarray(np.clip(audio[:, i : i + chunk], -1, 1))
        frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = pts
        pts += block.shape[1]
        for out in resampler.resample(frame):
            container.mux(stream.encode(out))
    for out in resampler.resample(None):
        container.mux(stream.encode(out))
    container.mux(stream.encode(None))
