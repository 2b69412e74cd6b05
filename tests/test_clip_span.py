"""A clip's usable span: where both its picture and its sound exist, the same for every loader.

Tracks of unequal length (in one container or a separate audio file) are trimmed to their
overlap by :func:`avssl.data.media.read_clip` (preload, shard cache) and by on-demand loading.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from bad_media import _vfr

from avssl.config import DataConfig
from avssl.data import shards_cli
from avssl.data.media import clip_end, probe, read_clip, read_frames
from avssl.data.source import load_split
from avssl.data.writer import write_video

FPS, SR = 25, 16000


def _write(media_factory, name: str, video_s: float, audio_s: float | None):
    """A file whose video track lasts ``video_s`` and audio track ``audio_s`` (None: no track)."""
    frames = np.stack([media_factory.bars(i, 48, 64) for i in range(round(video_s * FPS))])
    audio = None
    if audio_s is not None:
        t = np.arange(round(audio_s * SR)) / SR
        audio = media_factory.tone(t, audio_s).astype(np.float32)
    return write_video(media_factory.folder / name, frames, FPS, audio, SR)


@pytest.mark.parametrize("ext", [".mp4", ".webm"])
@pytest.mark.parametrize("video_s,audio_s", [(3.0, 3.5), (3.5, 3.0)])
def test_tracks_of_unequal_length_are_trimmed_to_their_overlap(
    media_factory, ext, video_s, audio_s
):
    path = _write(media_factory, f"clip{ext}", video_s, audio_s)
    assert probe(path).duration == pytest.approx(max(video_s, audio_s), abs=0.05)
    end = clip_end(path)
    assert end == pytest.approx(3.0, abs=0.01)  # Opus declares 8 ms more than it was given
    frames, audio = read_clip(path, FPS, 32, SR)
    assert frames.shape == (75, 32, 32, 3) and audio.shape == (round(end * SR),)
    frames, _ = read_clip(path, FPS, None, SR, start=2.0)
    assert [media_factory.frame_index(f) for f in frames] == list(range(50, 75))


def test_tracks_ending_a_hair_apart_keep_the_container_end(media_factory):
    path = _write(media_factory, "clip.mp4", 2.0, 2.06)  # within TOLERANCE_S: padded as before
    end = probe(path).duration
    assert end == pytest.approx(2.06, abs=0.01) and clip_end(path) == end
    frames, audio = read_clip(path, FPS, 32, SR)
    assert frames.shape[0] == round(end * FPS) and audio.shape == (round(end * SR),)


def test_a_track_declared_short_of_its_last_frame_is_not_trimmed(media_factory):
    path = _vfr(media_factory)  # frames until 1.96 s; the MP4 declares the video 1.56 s long
    assert probe(path).duration == pytest.approx(2.0) and clip_end(path) == pytest.approx(2.0)
    frames, audio = read_clip(path, FPS, 32, SR, start=1.5)
    assert frames.shape == (12, 32, 32, 3) and audio.shape == (8000,)
    assert [media_factory.frame_index(f) for f in frames] == [8] + [9] * 11  # 9 from 1.52 s
    # on demand, a window starting after the declared end reads the frames that are there
    frames = read_frames(path, 1.6, 0.4, FPS, 32)
    assert [media_factory.frame_index(f) for f in frames] == [9] * 9 + [10]  # 10 at 1.96 s


def test_separate_audio_ends_at_the_video_track_not_the_file(media_factory):
    video = _write(media_factory, "clip.mp4", 2.0, 3.5)  # its own sound track is longer
    sound = media_factory("voice.wav", duration=4.0, sample_rate=SR)
    assert probe(video).duration == pytest.approx(3.5, abs=0.02)
    assert clip_end(video, sound) == pytest.approx(2.0, abs=1e-6)
    frames, audio = read_clip(video, FPS, 32, SR, audio_path=sound)
    assert frames.shape == (50, 32, 32, 3) and audio.shape == (32000,)


def test_preload_cache_and_on_demand_agree_on_the_span(media_factory, tmp_path, capsys):
    rows = []
    for i in range(2):  # one mp4 with a longer sound track; a video with a longer wav
        _write(media_factory, f"long{i}.mp4", 3.0, 3.5)
        _write(media_factory, f"sep{i}.mp4", 2.0, None)
        media_factory(f"sep{i}.wav", duration=4.0, sample_rate=SR)
        rows += [
            {"id": f"long{i}", "video": f"long{i}.mp4", "split": "train"},
            {"id": f"sep{i}", "video": f"sep{i}.mp4", "audio": f"sep{i}.wav", "split": "train"},
        ]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cache = tmp_path / "cache"
    argv = ["--out", str(cache), "--data", str(manifest), "--workers", "1", "--no-progress"]
    assert shards_cli.main(argv) == 0
    capsys.readouterr()
    sets = {
        "preload": DataConfig(root=str(manifest)),
        "cache": DataConfig(root=str(manifest), cache=str(cache)),
        "on demand": DataConfig(root=str(manifest), preload=False),
    }
    loaded = {k: load_split(d, "train", True, progress=False) for k, d in sets.items()}
    for name, ds in loaded.items():
        assert ds.skipped == [], name
        assert ds.store.durations == pytest.approx([3.0, 2.0, 3.0, 2.0], abs=1e-3), name
    for epoch in range(5):  # frames and windows drawn anywhere in the span decode
        for ds in loaded.values():
            ds.set_epoch(epoch)
        for i in range(4):
            items = [ds[i] for ds in loaded.values()]
            assert all(item["frames"].shape == (3, 64, 64) for item in items)
            assert torch.equal(items[0]["frames"], items[1]["frames"])
            assert torch.equal(items[0]["audio"], items[1]["audio"])
