"""Where ``avssl index`` takes its windows and frames from: each stream's own span, and frames
resized as training and evaluation resize them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from bad_media import encode_h264
from conftest import TINY, MediaFactory

from avssl.config import load_config
from avssl.data.media import probe, read_frames
from avssl.data.writer import write_video
from avssl.eval.embed import embed_visual, frames_to_input
from avssl.models import build_model
from avssl.tools.index_media import embed_file, window_centres
from avssl.tools.query import embed_query
from avssl.tools.stream_io import iter_frame_views, iter_frames_at

FPS, SR, HOP = 25, 16000, 0.5


@pytest.fixture(scope="module")
def tiny():
    """A random-weight tiny model and its config (window 1 s)."""
    torch.manual_seed(0)
    cfg = load_config(None, [s for s in TINY if s.startswith(("data.", "model."))])
    return build_model(cfg.model, cfg.data).eval(), cfg


def _write(path, picture_s: float, sound_s: float):
    frames = np.stack([MediaFactory.bars(i, 48, 64) for i in range(round(picture_s * FPS))])
    t = np.arange(round(sound_s * SR)) / SR
    write_video(path, frames, FPS, MediaFactory.tone(t, sound_s).astype(np.float32), SR)
    return path


def _times(x: torch.Tensor) -> list[float]:
    return [round(v, 3) for v in x.tolist()]


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
@pytest.mark.parametrize(("picture_s", "sound_s"), [(4.0, 2.0), (2.0, 4.0)])
def test_windows_stay_within_their_own_stream(tiny, tmp_path, ext, picture_s, sound_s):
    model, cfg = tiny
    path = _write(tmp_path / f"uneven{ext}", picture_s, sound_s)
    emb = embed_file(model, cfg, path, HOP)
    w = cfg.data.window
    # no window of silence after the sound stops, none of a frozen frame after the picture does
    assert _times(emb.audio_time) == _times(torch.tensor(window_centres(sound_s, w, HOP)))
    assert _times(emb.visual_time) == _times(torch.tensor(window_centres(picture_s, w, HOP)))
    assert emb.audio.shape[0] == len(emb.audio_time) and emb.visual.shape[0] == len(emb.visual_time)
    assert emb.duration == pytest.approx(probe(path).duration)


@pytest.mark.parametrize("name", ["even.mp4", "even.webm"])
def test_equal_tracks_keep_the_file_windows(tiny, media_factory, name):
    model, cfg = tiny
    path = media_factory(name, duration=3.0)
    emb = embed_file(model, cfg, path, HOP)
    expected = _times(torch.tensor(window_centres(probe(path).duration, cfg.data.window, HOP)))
    assert _times(emb.audio_time) == expected and _times(emb.visual_time) == expected


def test_a_sound_ending_just_before_the_picture_keeps_the_file_windows(tiny, tmp_path):
    # within what decoders pad of the file's end a stream counts as lasting the whole file
    model, cfg = tiny
    path = _write(tmp_path / "near.mp4", 3.0, 2.95)  # the sound ends at 2.95 s
    emb = embed_file(model, cfg, path, HOP)
    expected = _times(torch.tensor(window_centres(probe(path).duration, cfg.data.window, HOP)))
    assert len(expected) == 5 and _times(emb.audio_time) == expected


def _noise_video(path, rotation: int = 0):
    """Frames of coarse random blocks (resizing filters disagree on every edge), stored 48x64
    and shown turned by ``rotation`` degrees."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (round(2 * FPS), 12, 16, 3), dtype=np.uint8)
    frames = blocks.repeat(4, axis=1).repeat(4, axis=2)
    if rotation:
        return encode_h264(path, list(frames), rotation=rotation)  # at 25 fps, as FPS
    write_video(path, frames, FPS, crf=0)
    return path


@pytest.mark.parametrize("size", [(32, 32), (20, 36), (56, 72), None])
@pytest.mark.parametrize("rotation", [0, -90])
def test_frames_for_the_model_are_resized_as_read_frames_does(tmp_path, size, rotation):
    path = _noise_video(tmp_path / "noise.mp4", rotation)
    times = [0.3, 1.02, 1.5]
    streamed = list(iter_frames_at(path, times, size))
    for t, frame in zip(times, streamed, strict=True):
        expected = read_frames(path, t, 1 / FPS, FPS, size)[0].numpy()
        np.testing.assert_array_equal(frame, expected)
    if size is not None:  # display pictures may still ask for another filter, and then differ
        area = next(iter_frames_at(path, [times[0]], size, interpolation="AREA"))
        assert area.shape == streamed[0].shape and not np.array_equal(area, streamed[0])
    # both at once from one decoding pass (the overlay): each view as its own pass gives it
    views = [(size, "AREA"), ((32, 24), None), (size, None)]
    both = list(iter_frame_views(path, times, views))
    for k, view in enumerate(views):
        alone = list(iter_frames_at(path, times, *view))
        assert len(both) == len(alone) == len(times)
        for pair, frame in zip(both, alone, strict=True):
            np.testing.assert_array_equal(pair[k], frame)


def test_index_and_query_embed_the_frame_evaluation_sees(tiny, tmp_path):
    model, cfg = tiny
    s = cfg.data.frame_size
    path = _noise_video(tmp_path / "noise.mp4")
    emb = embed_file(model, cfg, path, HOP)
    t = float(emb.visual_time[1])
    frame = read_frames(path, t, 1 / FPS, FPS, s)
    expected = F.normalize(embed_visual(model, frames_to_input(frame, s)), dim=1)[0]
    torch.testing.assert_close(emb.visual[1], expected)
    query = embed_query(model, cfg, path, "visual", probe(path), t)
    torch.testing.assert_close(query, expected)
