"""Containers whose seeking differs from MP4's: MPEG-TS seeks by byte, onto packets that are no
keyframe, so a window reached by seeking must still decode (from the start if need be)."""

from __future__ import annotations

import numpy as np
from bad_media import encode_h264

from avssl.data.video_io import read_frames


def test_mpeg_ts_windows_equal_a_decode_from_the_start(tmp_path):
    images = [np.full((32, 32, 3), (i * 5) % 250, np.uint8) for i in range(150)]
    # a keyframe every 2 s, as cameras and broadcasters write
    path = encode_h264(tmp_path / "camera.ts", images, "mpegts", gop=50)
    whole = read_frames(path, 0.0, 5.96, 25).numpy()
    for k in (5, 20, 45, 60, 110):  # inside the first key interval and later ones
        window = read_frames(path, k / 25, 0.16, 25).numpy()
        np.testing.assert_array_equal(window, whole[k : k + 4])
