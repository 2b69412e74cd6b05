"""A video stored landscape with a display rotation (a phone's portrait video) is read upright by
the training reader, the index/overlay reader and the overlay's output size."""

from __future__ import annotations

import numpy as np
import pytest
from bad_media import encode_h264

from avssl.data.video_io import read_frames
from avssl.tools.stream_io import iter_frames_at, shown_size


@pytest.fixture
def portrait(tmp_path):
    """Stored 320x160, red left half, blue right half, shown turned a quarter clockwise
    (display rotation -90, as ffprobe reports for phone videos): red on top."""
    img = np.zeros((160, 320, 3), np.uint8)
    img[:, :160, 0] = img[:, 160:, 2] = 255
    return encode_h264(tmp_path / "portrait.mp4", [img] * 10, rotation=-90)


def _red_on_top(img: np.ndarray) -> bool:
    h = img.shape[0]
    top, bottom = img[: h // 4].reshape(-1, 3).mean(0), img[-h // 4 :].reshape(-1, 3).mean(0)
    return top[0] > 200 > top[2] and bottom[2] > 200 > bottom[0]


def test_readers_show_a_rotated_video_upright(portrait):
    native = read_frames(portrait, 0.0, 0.08, 25).numpy()
    assert native.shape == (2, 320, 160, 3) and _red_on_top(native[0])
    sized = read_frames(portrait, 0.04, 0.04, 25, (64, 32)).numpy()
    assert sized.shape == (1, 64, 32, 3) and _red_on_top(sized[0])
    streamed = list(iter_frames_at(portrait, [0.0, 0.2], (64, 32)))
    assert all(f.shape == (64, 32, 3) and _red_on_top(f) for f in streamed)
    assert shown_size(portrait, 160, 320) == (320, 160)
