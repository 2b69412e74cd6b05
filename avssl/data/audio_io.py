"""Audio decoding: a window of any audio file or track as mono float32 at a requested rate.

wav/flac/ogg are read with soundfile (seeking to the window); every other container, and any
file soundfile cannot open, goes through PyAV. Resampling is libswresample's (via
``av.AudioResampler``), which handles any rate pair and keeps sample 0 aligned.
"""

from __future__ import annotations

import math
import os

import av
import numpy as np
import soundfile as sf
import torch

from avssl.data.audio_track import decode_track
from avssl.data.media_checks import (
    SOUNDFILE_EXTS,
    TOLERANCE_S,
    check_coverage,
    check_file,
    check_rate,
    check_window,
    decoder_of,
    guard,
    open_container,
    secs,
)
from avssl.data.opus_timing import OPUS_PREROLL_S, codec_delay_s, on_opus_grid
from avssl.data.stream_times import stream_end_s
from avssl.errors import LateAudioError, MediaError

# Decoded on both sides of a window so that the resampling filter has context at its edges.
MARGIN_S = 0.02
# Decoded before a window reached by seeking a compressed track: the first frame decoded after
# a seek lacks the previous frame's overlap (AAC, Vorbis, MP3), so it is wrong for up to a frame
# (64 ms of 16 kHz AAC). At least this much, and at least two of the codec's frames, are decoded
# and dropped; Opus needs more (avssl.data.opus_timing.OPUS_PREROLL_S).
SEEK_PREROLL_S = 0.08
# Codecs whose frames carry no sample-exact time after a seek: Vorbis's first packet after one
# gives no output and the frames then take their container's times (Ogg interpolates them
# between pages, WebM rounds them to milliseconds), so a window read after a seek landed up to
# 2 ms off a decode from the start (and seeks in WebM overshot). Such tracks are decoded from
# their start, keeping only the window: exact, in a window's memory, at a cost that grows with
# the window's position (about 4 s to reach 18 minutes into a 44.1-kHz stereo track).
UNSEEKABLE_CODECS = frozenset({"vorbis"})
# The same through libsndfile (1.2): a seek in an Ogg Vorbis file landed up to 61 samples (at
# 16 kHz) off the decode from the start at 44.1 and 22.05 kHz, so those files are read from
# their start as well.
UNSEEKABLE_SUBTYPES = frozenset({"VORBIS"})
_BLOCK = 1 << 16

MAX_SAMPLE = 1e4  # float files may pass full scale a little; 80 dB over it is damage


def read_audio(
    path: str | os.PathLike,
    start: float,
    duration: float,
    sample_rate: int,
    silent_before: bool = False,
) -> torch.Tensor:
    """Decode ``[start, start + duration)`` seconds of audio, mixed to mono and resampled.

    Args:
        path: an audio file (wav, flac, ogg, ...) or a container with an audio track.
        start: window start in seconds (from the start of the file).
        duration: window length in seconds.
        sample_rate: output rate in Hz.
        silent_before: a track that starts after ``start`` (a container whose first audio
            packet comes late) is preceded by zeros instead of refused.

    Returns:
        float32 ``[N]`` with ``N = round(duration * sample_rate)``: the mean of all channels.
        A track ending at most ``TOLERANCE_S`` short of the window is zero-padded.

    Raises:
        MediaError: missing/corrupt file, no (decodable) audio stream, a window beyond the
            audio, or samples that are not finite.
    """
    p = check_file(path)
    check_window(p, start, duration, sample_rate, "sample rate")
    sample_rate = int(sample_rate)
    wave = None
    if p.suffix.lower() in SOUNDFILE_EXTS:
        try:
            handle = sf.SoundFile(str(p))
        except (RuntimeError, TypeError, ValueError):
            handle = None  # mislabelled or a codec libsndfile lacks: let FFmpeg try
        if handle is not None:
            with handle, guard(p):
                wave = _read_soundfile(p, handle, start, duration, sample_rate)
    if wave is None:
        wave = _read_av(p, start, duration, sample_rate, silent_before)
    # one pass for both checks (max propagates NaN)
    peak = float(wave.abs().max()) if wave.numel() else 0.0
    if not math.isfinite(peak):  # float wav files can hold NaN: it would poison a model
        raise MediaError(p, "audio samples that are not finite numbers (NaN or infinity)")
    if peak > MAX_SAMPLE:  # its power spectrum would overflow to inf, then NaN features
        raise MediaError(
            p, f"audio samples up to {peak:.3g} (full scale is 1): a broken float file"
        )
    return wave


def _read_soundfile(p, handle: sf.SoundFile, start, duration, sample_rate) -> torch.Tensor:
    sr, total = handle.samplerate, handle.frames
    check_rate(p, sr, handle.channels)
    check_coverage(p, "audio", start, duration, total / sr, None)
    # Start the read where the input and output grids meet (a multiple of grid_step input
    # samples from the file's start) before the window, so that the resampled window holds
    # exactly the samples a decode of the whole file holds there.
    step = grid_step(sr, sample_rate)
    first = max(0, math.floor((start - MARGIN_S) * sr / step)) * step
    stop = min(total, math.ceil((start + duration + MARGIN_S) * sr))
    if handle.subtype in UNSEEKABLE_SUBTYPES:
        reached = _skip(handle, first)
        if reached < first:  # the samples end before the window: say where they do
            check_coverage(p, "audio", start, duration, reached / sr, total / sr)
    else:
        handle.seek(first)
    chunks, n = [], 0
    while n < stop - first:
        block = handle.read(min(_BLOCK, stop - first - n), dtype="float32", always_2d=True)
        if len(block) == 0:
            break
        chunks.append(block.mean(axis=1))
        n += len(block)
    if first + n < stop:  # the header promised more samples than the data holds
        check_coverage(p, "audio", start, duration, (first + n) / sr, total / sr)
    mono = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if sr != sample_rate:
        mono = _resample(mono, sr, sample_rate)
    offset = round(start * sample_rate - first * sample_rate / sr)
    return _cut(mono, offset, round(duration * sample_rate))


def _skip(handle: sf.SoundFile, frames: int) -> int:
    """Read and drop the first ``frames`` sample frames of ``handle`` (a block at a time);
    returns how many there were (fewer where the file ends sooner than its header says)."""
    done = 0
    while done < frames:
        got = len(handle.read(min(_BLOCK, frames - done), dtype="float32", always_2d=True))
        if got == 0:
            break
        done += got
    return done


def _read_av(p, start, duration, sample_rate, silent_before=False) -> torch.Tensor:
    container = open_container(p)
    with container, guard(p):
        if not container.streams.audio:
            raise MediaError(p, "no audio stream")
        stream = container.streams.audio[0]
        cc = decoder_of(p, stream)
        check_rate(p, cc.sample_rate, cc.channels)
        declared = stream_end_s(container, stream)
        sr = cc.sample_rate or sample_rate
        meet_s = grid_step(sr, sample_rate) / sr  # at most this much is dropped to meet the grid
        lo, hi = max(0.0, start - _preroll_s(stream) - meet_s), start + duration + MARGIN_S
        seek = lo > 0 and cc.name not in UNSEEKABLE_CODECS
        mono, t0, complete = decode_track(container, stream, lo, hi, sr, seek=seek, keep_from=lo)
        if t0 is not None and seek and cc.name == "opus":
            t0 = on_opus_grid(p, t0)
        if t0 is not None and seek and t0 > lo + 1e-3 + codec_delay_s(stream):
            # the seek overshot: decode from the start of a fresh demuxer (a seek back to 0
            # would drop Opus's codec delay a second time)
            with open_container(p) as fresh:
                first = fresh.streams.audio[0]
                mono, t0, complete = decode_track(fresh, first, lo, hi, sr, False, keep_from=lo)
        if not complete:
            end = None if t0 is None else t0 + len(mono) / sr
            check_coverage(p, "audio", start, duration, end, declared)
        if t0 > start + TOLERANCE_S and not silent_before:
            raise LateAudioError(
                p, f"audio starts at {secs(t0)} s, after the window start {secs(start)} s"
            )
        if sr != sample_rate:
            mono, t0 = _on_output_grid(mono, t0, sr, sample_rate)
        offset = round((start - t0) * sample_rate)
        return _cut(mono, offset, round(duration * sample_rate))


def _preroll_s(stream) -> float:
    """Seconds decoded (and dropped) before a window of ``stream`` reached by seeking."""
    cc = stream.codec_context
    frame_s = 2 * cc.frame_size / cc.sample_rate if cc.frame_size and cc.sample_rate else 0.0
    opus = OPUS_PREROLL_S if cc.name == "opus" else 0.0
    return max(MARGIN_S, SEEK_PREROLL_S, frame_s, opus) + codec_delay_s(stream)


def grid_step(sr: int, rate: int) -> int:
    """Input samples (at ``sr``) between the times where the input grid and the grid of a
    resampling to ``rate`` meet (``sr / gcd(sr, rate)``: 441 from 44.1 to 16 kHz, 10 ms); 1 when
    they meet more than 80 ms apart, where windows are left on the input grid."""
    step = sr // math.gcd(sr, rate)
    return step if step <= 4 * MARGIN_S * sr else 1


def _on_output_grid(mono: np.ndarray, t0: float, sr: int, rate: int) -> tuple[np.ndarray, float]:
    """Decoded mono ``[n]`` at ``sr`` whose first sample shows at ``t0`` s, resampled to
    ``rate`` on the grid of a decode of the whole file: input samples are dropped up to the next
    time both grids share (:func:`grid_step`), so output sample ``k`` shows at a whole multiple
    of ``1 / rate``. Returns the resampled wave and the time of its first sample."""
    i0 = round(t0 * sr)
    drop = -i0 % grid_step(sr, rate)
    return _resample(mono[drop:], sr, rate), (i0 + drop) / sr


def _resample(mono: np.ndarray, sr: int, rate: int) -> np.ndarray:
    """Resample mono float32 ``[n]`` from ``sr`` to ``rate`` Hz (output sample 0 aligned)."""
    if len(mono) == 0:  # FFmpeg refuses an empty frame
        return np.zeros(0, np.float32)
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(mono[None]), format="fltp", layout="mono"
    )
    frame.sample_rate, frame.pts = sr, 0
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=rate)
    outs = resampler.resample(frame) + resampler.resample(None)
    return np.concatenate([o.to_ndarray()[0] for o in outs] or [np.zeros(0, np.float32)])


def _cut(mono: np.ndarray, offset: int, n: int) -> torch.Tensor:
    """``mono[offset : offset + n]`` as a tensor, zeros where ``mono`` does not reach."""
    out = np.zeros(n, dtype=np.float32)
    src = mono[max(0, offset) : max(0, offset + n)]
    dst = max(0, -offset)
    m = min(len(src), n - dst)
    if m > 0:
        out[dst : dst + m] = src[:m]
    return torch.from_numpy(out)
