"""Decoding on demand (``data.preload=false``) gives the items preloading gives.

For the same ``(seed, epoch, index)`` both loading modes must keep and skip the same rows,
measure each clip alike (so the pair sampler draws the same times) and return the same frame
and audio, also where a track ends or starts a little apart from the other.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from avssl.config import DataConfig
from avssl.data.clip_windows import frame_index
from avssl.data.dataset import AVPairDataset, ClipStore
from avssl.data.manifest import Row
from avssl.data.media import read_frames
from avssl.data.writer import write_video
from avssl.errors import MediaError

SR = 16000


def _stores(rows, folder, data, size=32) -> tuple[ClipStore, ClipStore]:
    """The preloaded and the on-demand store of the same rows."""
    return tuple(ClipStore(rows, folder / "manifest.jsonl", data, size, p) for p in (True, False))


def _assert_same_items(stores, data, epochs: int, min_audio_corr: float | None = None) -> None:
    """Every entry of every item equal in ``epochs`` epochs; with ``min_audio_corr``, audio
    only that correlated (the same window, decoded from another point)."""
    sets = [AVPairDataset(s, data, ["a"], train=False, seed=3) for s in stores]
    for epoch in range(epochs):
        for ds in sets:
            ds.set_epoch(epoch)
        for i in range(len(sets[0])):
            pre, ond = (ds[i] for ds in sets)
            assert pre.keys() == ond.keys()
            for key in pre:
                if key.startswith("audio") and min_audio_corr is not None:
                    a, b = pre[key].double(), ond[key].double()
                    corr = float(a @ b / (a.norm() * b.norm()))
                    assert corr > min_audio_corr, (epoch, i, key, corr)
                else:
                    assert torch.equal(ond[key], pre[key]), (epoch, i, key)


def test_rows_ending_off_the_frame_grid_give_the_same_items(media_factory, tmp_path):
    n = 75  # 3 s at 25 fps; frame i shows i
    frames = np.stack([media_factory.bars(i, 48, 64) for i in range(n)])
    t = np.arange(3 * SR) / SR
    write_video(tmp_path / "clip.mp4", frames, 25, media_factory.tone(t, 3.0), SR, crf=0)
    ends = [1.81, 2.21, 2.5, 2.93]  # 45.25, 55.25, 62.5, 73.25 frames: read_clip rounds them
    rows = [Row(id=f"r{i}", video="clip.mp4", start=0.0, end=e) for i, e in enumerate(ends)]
    rows.append(Row(id="late", video="clip.mp4", start=0.37))  # to the file's end: 2.63 s
    data = DataConfig(fps=25.0, sample_rate=SR, window=1.0, augment=False, frame_size=32)
    stores = _stores(rows, tmp_path, data)
    assert stores[1].durations == stores[0].durations
    assert stores[1].skipped == stores[0].skipped == []
    _assert_same_items(stores, data, epochs=3)
    # a time within a frame's slack of the end shows the last frame preloaded, not the next one
    for clip, duration in enumerate(stores[0].durations[:2]):
        t = duration - 5e-4
        assert frame_index(t, data.fps) == round(duration * data.fps)  # one past the last
        assert torch.equal(stores[1].frame(clip, t), stores[0].frame(clip, t))


def test_real_videos_without_an_end_give_the_same_items(shared_data, tmp_path):
    videos = sorted((shared_data / "videos").glob("*.*"))
    rows = [
        Row(id=f"{video.name}@{start}", video=str(video), start=start, labels=["a"])
        for video in videos
        for start in (0.0, 0.77, 1.3)
    ]
    data = DataConfig(fps=25.0, sample_rate=SR, window=1.0, augment=False, frame_size=32)
    stores = _stores(rows, tmp_path, data)
    assert len(stores[0]) == len(rows)
    assert stores[1].durations == stores[0].durations
    assert stores[1].skipped == stores[0].skipped == []
    # sound decoded from a seek is not bit-equal to a sequential decode (the AAC decoder's
    # state, the resampler's start), but on the same output grid it correlates above 0.999 (a
    # resampler phase off by a fraction of a sample fell to 0.96)
    _assert_same_items(stores, data, epochs=2, min_audio_corr=0.999)


def _slideshow(media_factory, name: str) -> None:
    """10 frames at 1 fps (0-10 s) and 10.8 s of sound: clip_end keeps the longer track."""
    frames = np.stack([media_factory.bars(i, 48, 64) for i in range(10)])
    t = np.arange(round(10.8 * SR)) / SR
    write_video(media_factory.folder / name, frames, 1, media_factory.tone(t, 10.8), SR)


def test_sound_outlasting_the_picture_by_under_a_frame_reads_the_last_frame(media_factory):
    _slideshow(media_factory, "slides.mp4")
    path = media_factory.folder / "slides.mp4"
    padded = read_frames(path, 10.28, 0.04, 25, 32)  # after the video's end, within one frame
    assert [media_factory.frame_index(f) for f in padded] == [9]
    assert torch.equal(padded[0], read_frames(path, 0.0, 10.8, 25, 32)[-1])
    with pytest.raises(MediaError, match="beyond the end"):
        read_frames(path, 11.2, 0.04, 25, 32)  # past the padding


def test_on_demand_frames_past_the_picture_are_the_preloaded_ones(media_factory, tmp_path):
    for k in range(2):
        _slideshow(media_factory, f"slides{k}.mp4")
    rows = [Row(id=f"s{k}", video=f"slides{k}.mp4") for k in range(2)]
    data = DataConfig(fps=25.0, sample_rate=SR, window=1.0, augment=False, frame_size=32)
    stores = _stores(rows, media_factory.folder, data)
    assert stores[1].durations == stores[0].durations == [10.8, 10.8]
    for t in np.arange(9.5, 10.8, 0.04):  # the picture ends at 10 s
        assert torch.equal(stores[1].frame(1, t), stores[0].frame(1, t)), t


def _late_video(media_factory, name: str, delay: float = 0.52) -> None:
    """4 s of frames from ``delay`` s, 4.5 s of sound from 0 s."""
    with av.open(str(media_factory.folder / name), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.time_base = Fraction(1, 12800)
        audio = out.add_stream("aac", rate=SR, layout="mono")
        for i in range(100):
            frame = av.VideoFrame.from_ndarray(media_factory.bars(i, 48, 64), format="rgb24")
            frame.pts, frame.time_base = round((delay + i / 25) * 12800), video.time_base
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        wave = media_factory.tone(np.arange(round(4.5 * SR)) / SR, 4.5).astype(np.float32)
        resampler = av.AudioResampler(format=audio.format.name, layout="mono", rate=SR)
        frame = av.AudioFrame.from_ndarray(wave[None], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = SR, 0
        for f in resampler.resample(frame) + resampler.resample(None):
            out.mux(audio.encode(f))
        out.mux(audio.encode(None))


def test_a_video_starting_after_its_sound_is_kept_and_skipped_alike(media_factory, tmp_path):
    _late_video(media_factory, "late.mp4")
    # from 0 s the picture is missing for 0.52 s: refused; from 0.45 s it is within the
    # padding of one frame (0.1 s) before the first; from 0.6 s it is there
    rows = [Row(id=f"from{s}", video="late.mp4", start=s) for s in (0.0, 0.45, 0.6)]
    data = DataConfig(fps=25.0, sample_rate=SR, window=0.5, min_shift=0.5, augment=False)
    stores = _stores(rows, media_factory.folder, data)
    assert stores[1].skipped == stores[0].skipped
    assert [s[0] for s in stores[1].skipped] == ["from0.0"]
    assert "video starts at 0.52 s, after the window start 0.00 s" in stores[1].skipped[0][1]
    assert stores[1].durations == stores[0].durations
    _assert_same_items(stores, data, epochs=4)


def test_sound_at_another_rate_is_cut_on_the_preloaded_sample_grid(media_factory):
    media_factory("clip.mp4", duration=3.0, audio=False)
    media_factory("sound.wav", duration=3.0, sample_rate=48000)  # read at 16 kHz
    rows = [
        Row(id=f"from{start}", video="clip.mp4", audio="sound.wav", start=start)
        for start in (0.0, 0.37, 0.5)
    ]
    data = DataConfig(fps=25.0, sample_rate=SR, window=1.0, augment=False, frame_size=32)
    stores = _stores(rows, media_factory.folder, data)
    assert stores[1].durations == stores[0].durations
    for clip in range(len(rows)):
        for centre in (0.5, 0.61234, 1.00007, stores[0].durations[clip] - 0.5):
            torch.testing.assert_close(
                stores[1].audio(clip, centre), stores[0].audio(clip, centre), atol=1e-4, rtol=0
            )
