"""Streaming H.264 + AAC writer for overlays: frames arrive in chunks, the source's own audio
track is decoded, downmixed (any layout -> mono or stereo) and re-encoded to AAC alongside.

Audio is muxed up to the time of the video written so far, so packets stay interleaved and
memory does not grow with the length of the video. It keeps its place on avssl's time line
(:func:`~avssl.data.stream_times.origin_s`), where the frames and heatmaps were computed: a
track that starts after the container's origin is preceded by silence, one that starts before
it loses its lead.
"""

from __future__ import annotations

import contextlib
import math
import os
from fractions import Fraction

import av
import numpy as np

from avssl.data.media_checks import guard, open_container
from avssl.data.stream_times import origin_s

AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)


class OverlayWriter:
    """Write RGB frames to an MP4 (H.264, yuv420p) with the audio of ``audio_src`` (AAC).

    Args:
        path: output file (``.mp4``, ``.mov``, ``.mkv`` or ``.m4v``).
        width: frame width (even).
        height: frame height (even).
        fps: frame rate.
        audio_src: file whose first audio track is copied (re-encoded), or None for no audio.
        max_seconds: audio beyond this time is dropped (None: the whole track).
        crf: x264 constant rate factor.
    """

    def __init__(self, path, width, height, fps, audio_src=None, max_seconds=None, crf=23):
        self.fps = fps
        self.n_frames = 0
        self.out = av.open(str(path), mode="w")
        self.video = self.out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self.video.width, self.video.height, self.video.pix_fmt = width, height, "yuv420p"
        self.video.options = {"crf": str(crf), "preset": "veryfast"}
        self.audio = self.src = None
        if audio_src is not None:
            self.src_path = audio_src
            self.src = open_container(audio_src)
            stream = self.src.streams.audio[0]
            in_rate = stream.codec_context.sample_rate or 48000
            self.rate = in_rate if in_rate in AAC_RATES else 48000
            layout = "mono" if stream.codec_context.channels == 1 else "stereo"
            self.audio = self.out.add_stream("aac", rate=self.rate, layout=layout)
            self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=self.rate)
            self.layout = layout
            self.frames_in = self.src.decode(stream)
            self.pts = 0
            self.drop = None  # samples of the track before time 0: known at its first frame
            self.limit = math.inf if max_seconds is None else round(max_seconds * self.rate)
            self.exhausted = False

    def write(self, frames: np.ndarray) -> None:
        """Append uint8 ``[B, H, W, 3]`` RGB frames, then the audio up to their end."""
        for img in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            self.out.mux(self.video.encode(frame))
        self.n_frames += len(frames)
        if self.audio is not None:
            self._audio_until(self.n_frames / self.fps)

    def _align(self, first) -> None:
        """Place the track's first decoded frame at its own time: silence before it, or drop
        what precedes time 0."""
        lead = round(((first.time or 0.0) - origin_s(self.src)) * self.rate)
        self.drop = max(0, -lead)
        if lead > 0:
            channels = 1 if self.layout == "mono" else 2
            silence = av.AudioFrame.from_ndarray(
                np.zeros((channels, lead), np.float32), format="fltp", layout=self.layout
            )
            silence.sample_rate = self.rate
            self._mux_audio(silence)

    def _mux_audio(self, frame) -> None:
        lo = min(self.drop or 0, frame.samples)  # None: no frame of the track decoded yet
        self.drop = (self.drop or 0) - lo
        n = min(frame.samples - lo, self.limit - self.pts)
        if n <= 0:
            return
        if lo or n < frame.samples:  # before time 0, or the last block before --max-seconds
            data = np.ascontiguousarray(frame.to_ndarray()[:, lo : lo + n])
            frame = av.AudioFrame.from_ndarray(data, format="fltp", layout=self.layout)
            frame.sample_rate = self.rate
        frame.pts, frame.time_base = self.pts, Fraction(1, self.rate)  # sample-count timestamps
        self.pts += frame.samples
        self.out.mux(self.audio.encode(frame))

    def _audio_until(self, seconds: float) -> None:
        with guard(self.src_path):
            while not self.exhausted and self.pts < min(seconds * self.rate, self.limit):
                frame = next(self.frames_in, None)
                if frame is None:  # end of the track: the resampler's flush follows
                    self.exhausted = True
                elif self.drop is None:
                    self._align(frame)
                for out in self.resampler.resample(frame):
                    self._mux_audio(out)

    def close(self) -> None:
        """Flush the encoders and close the files."""
        try:
            self.out.mux(self.video.encode(None))
            if self.audio is not None:
                self._audio_until(math.inf)
                self.out.mux(self.audio.encode(None))
        finally:
            self.out.close()
            if self.src is not None:
                self.src.close()

    def abort(self, path) -> None:
        """Close without flushing and remove the partial file."""
        for c in (self.out, self.src):
            if c is not None:
                with contextlib.suppress(av.FFmpegError):
                    c.close()
        if os.path.exists(path):
            os.remove(path)
