"""Containers whose seeking differs from MP4's: MPEG-TS seeks by byte, onto packets that are no
keyframe, so a window reached by seeking must still decode (from the start if need be). Matroska
declares its end time, not its duration, so a file whose timestamps start late must not read
longer than it is."""

from __future__ import annotations

import av
import numpy as np
import pytest
from bad_media import encode_h264

from avssl.data.media import probe
from avssl.data.video_io import read_frames


def test_mpeg_ts_windows_equal_a_decode_from_the_start(tmp_path):
    images = [np.full((32, 32, 3), (i * 5) % 250, np.uint8) for i in range(150)]
    # a keyframe every 2 s, as cameras and broadcasters write
    path = encode_h264(tmp_path / "camera.ts", images, "mpegts", gop=50)
    whole = read_frames(path, 0.0, 5.96, 25).numpy()
    for k in (5, 20, 45, 60, 110):  # inside the first key interval and later ones
        window = read_frames(path, k / 25, 0.16, 25).numpy()
        np.testing.assert_array_equal(window, whole[k : k + 4])


def test_matroska_starting_late_reports_its_own_duration(tmp_path):
    images = [np.full((32, 32, 3), i * 20, np.uint8) for i in range(10)]
    for name in ("late.mkv", "late.webm"):
        fmt = "webm" if name.endswith("webm") else None
        if fmt:  # WebM carries VP8/VP9 only
            path = tmp_path / name
            with av.open(str(path), "w", format="webm") as out:
                v = out.add_stream("libvpx", rate=25)
                v.height = v.width = 32
                v.pix_fmt = "yuv420p"
                for i, img in enumerate(images):
                    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                    frame.pts = i + 75
                    for packet in v.encode(frame):
                        out.mux(packet)
                for packet in v.encode(None):
                    out.mux(packet)
        else:  # timestamps from 3 s on, as a cut from a longer recording keeps them
            path = encode_h264(tmp_path / name, images, first=75)
        info = probe(path)
        assert info.duration == pytest.approx(0.4, abs=0.05), name  # 3.4 s before the fix
        assert info.n_frames == 10
        frames = read_frames(path, 0.0, 0.4, 25).numpy()
        assert [round(float(f.mean()) / 20) for f in frames] == list(range(10))
