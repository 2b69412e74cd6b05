"""Two agreements between parts that draw or read the same thing: the synthetic world's random
streams are apart from the pair sampler's, and a preloaded clip shows the same frame at a time as
the on-demand reader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avssl.config import DataConfig
from avssl.data import synthetic
from avssl.data.clip_windows import frame_at
from avssl.data.dataset import ClipStore
from avssl.data.manifest import Row
from avssl.data.media import read_clip, read_frames
from avssl.data.pairs import PairSampler
from avssl.data.writer import write_video


def test_training_pairs_are_drawn_apart_from_their_clips():
    # the clip's first draw (its tempo jitter) against the pair's frame time, train seed 0 = the
    # world's seed 0: sharing a stream made epoch 0's times a function of the clip (corr 1.0)
    n = 480
    sampler = PairSampler([4.0] * n, 1.0, 1.0, 0.5, seed=0)
    for split in ("train", "val", "test"):
        first = np.array([synthetic.clip_rng(0, split, i).uniform() for i in range(n)])
        for epoch in range(3):
            t = np.array([sampler.sample(i, epoch=epoch).t for i in range(n)])
            assert abs(np.corrcoef(first, t)[0, 1]) < 0.2, (split, epoch)


def test_preloaded_and_on_demand_frames_agree_next_to_frame_boundaries(tmp_path):
    fps, n = 25, 20
    frames = np.zeros((n, 32, 32, 3), dtype=np.uint8)
    frames[:] = (np.arange(n) * 12)[:, None, None, None]  # frame k is grey level 12 k
    audio = np.zeros(16000 * n // fps, dtype=np.float32)
    path = write_video(tmp_path / "ramp.mp4", frames, fps, audio, 16000, crf=0)
    loaded, _ = read_clip(path, fps, 32, 16000)
    times = [k / fps + d for k in range(1, n - 1) for d in (-0.002, -0.0005, 0.0, 0.0005)]
    for t in times:
        preloaded = frame_at(loaded, t, fps)
        on_demand = read_frames(path, t, 1.0 / fps, fps, 32)[0].permute(2, 0, 1)
        assert torch.equal(preloaded, on_demand), t


@pytest.mark.parametrize("source_fps,start", [(30, 0.013), (24, 0.5), (25, 0.02)])
def test_preloaded_and_on_demand_stores_show_the_same_frame_off_the_grid(
    tmp_path, source_fps, start
):
    n = 3 * source_fps
    frames = np.zeros((n, 32, 32, 3), dtype=np.uint8)
    frames[:] = (np.arange(n) * 2)[:, None, None, None]  # every source frame its own grey
    audio = np.zeros(16000 * n // source_fps, dtype=np.float32)
    write_video(tmp_path / "clip.mp4", frames, source_fps, audio, 16000, crf=0)
    (tmp_path / "manifest.jsonl").write_text("")
    rows = [Row(id="c", video="clip.mp4", start=start, end=start + 2.0)]
    data = DataConfig(fps=25.0, sample_rate=16000, window=0.5)
    stores = [ClipStore(rows, tmp_path / "manifest.jsonl", data, 32, p) for p in (True, False)]
    for t in np.random.default_rng(0).uniform(0, 1.9, 40):
        assert torch.equal(stores[0].frame(0, t), stores[1].frame(0, t)), t


def test_preloaded_and_on_demand_stores_skip_the_same_rows(tmp_path):
    # a row's end past its media: the on-demand store trusted it and failed mid-run
    frames = np.zeros((50, 32, 32, 3), dtype=np.uint8)
    write_video(tmp_path / "clip.mp4", frames, 25, np.zeros(32000, np.float32), 16000)
    rows = [
        Row(id="fits", video="clip.mp4", start=0.0, end=1.8),
        Row(id="past", video="clip.mp4", start=0.0, end=20.0),
        Row(id="open", video="clip.mp4", start=0.5),
    ]
    data = DataConfig(fps=25.0, sample_rate=16000, window=0.5)
    stores = [ClipStore(rows, tmp_path / "m.jsonl", data, 32, p) for p in (True, False)]
    for store in stores:
        assert [r.id for r in store.rows] == ["fits", "open"]
        assert [s[0] for s in store.skipped] == ["past"]
    assert stores[0].durations == pytest.approx(stores[1].durations, abs=0.05)


def test_preloaded_and_on_demand_stores_skip_a_clip_whose_sound_starts_late(tmp_path):
    # decoding on demand kept the row and stopped the run at its first step ("audio starts at
    # 0.30 s, after the window start"), where preloading skipped it
    from bad_media import delay_audio

    frames = np.zeros((50, 32, 32, 3), dtype=np.uint8)
    write_video(tmp_path / "clip.mp4", frames, 25, np.zeros(32000, np.float32), 16000)
    delay_audio(tmp_path / "clip.mp4", tmp_path / "late.mp4", 0.3)
    rows = [
        Row(id="late", video="late.mp4", start=0.0, end=1.5),
        Row(id="after", video="late.mp4", start=0.4, end=1.5),
        Row(id="fine", video="clip.mp4", start=0.0, end=1.5),
    ]
    data = DataConfig(fps=25.0, sample_rate=16000, window=0.5)
    stores = [ClipStore(rows, tmp_path / "m.jsonl", data, 32, p) for p in (True, False)]
    for store in stores:
        assert [r.id for r in store.rows] == ["after", "fine"]
        assert [s[0] for s in store.skipped] == ["late"]
        assert "audio starts at 0.2" in store.skipped[0][1]  # its AAC priming is earlier


def test_on_demand_store_probes_each_media_file_once(tmp_path, monkeypatch):
    from avssl.data import media

    frames = np.zeros((50, 32, 32, 3), dtype=np.uint8)
    write_video(tmp_path / "clip.mp4", frames, 25, np.zeros(32000, np.float32), 16000)
    rows = [Row(id=f"r{i}", video="clip.mp4", start=0.1 * i, end=0.1 * i + 1.0) for i in range(8)]
    calls = []
    real = media.clip_bounds
    monkeypatch.setattr(media, "clip_bounds", lambda *a, **k: calls.append(a) or real(*a, **k))
    data = DataConfig(fps=25.0, sample_rate=16000, window=0.5)
    store = ClipStore(rows, tmp_path / "m.jsonl", data, 32, False)
    assert len(store) == 8 and len(calls) == 1


def test_easy_negatives_never_come_from_a_row_sharing_a_media_file(tmp_path):
    # two segments of one video (or the canvases of one AV-Digits recording): 37 of 100 easy
    # negatives of a segment came from the same file, a matching sound labelled a mismatch
    from avssl.data.dataset import AVPairDataset

    frames = np.zeros((100, 16, 16, 3), dtype=np.uint8)
    for name in ("x.mp4", "y.mp4", "z.mp4"):
        write_video(tmp_path / name, frames, 25, np.zeros(64000, np.float32), 16000)
    rows = [
        Row(id="x_a", video="x.mp4", start=0.0, end=2.0),
        Row(id="x_b", video="./x.mp4", start=2.0, end=4.0),
        Row(id="y", video="y.mp4", start=0.0, end=4.0),
        Row(id="z", video="z.mp4", start=0.0, end=4.0),
    ]
    data = DataConfig(fps=25.0, sample_rate=16000, window=1.0, min_shift=1.0, augment=False)
    store = ClipStore(rows, tmp_path / "m.jsonl", data, 16, True)
    ds = AVPairDataset(store, data, [], train=True, windows_per_clip=50)
    pairs = [ds.sampler.sample(i) for i in range(len(ds))]
    assert all({p.clip, p.easy_clip} != {0, 1} for p in pairs)
    assert {p.easy_clip for p in pairs if p.clip == 0} == {2, 3}
