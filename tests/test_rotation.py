"""A video stored landscape with a display rotation (a phone's portrait video) is read upright by
the training reader and the index/overlay reader, and shown upright by the overlay's output size,
`avssl inspect` and the query page's thumbnails."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from bad_media import encode_h264
from PIL import Image

from avssl.data.media import probe
from avssl.data.video_io import read_frames
from avssl.tools.inspect import inspect_file
from avssl.tools.query_cli import _media
from avssl.tools.stream_io import iter_frames_at


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
    stored, shown = probe(portrait), probe(portrait, shown=True)
    assert (stored.height, stored.width) == (160, 320) and (shown.height, shown.width) == (320, 160)


def test_inspect_and_thumbnails_give_the_shown_size(portrait):
    report = inspect_file(portrait)
    assert (report["height"], report["width"]) == tuple(report["window"]["frames"][1:3])
    thumb = _media(str(portrait), "visual", 0.0, None)["image"]
    img = Image.open(io.BytesIO(base64.b64decode(thumb.split(",", 1)[1])))
    assert img.height > img.width and _red_on_top(np.asarray(img.convert("RGB")))
