"""Containers whose seeking differs from MP4's: MPEG-TS seeks by byte, onto packets that are no
keyframe, so a window reached by seeking must still decode (from the start if need be). Matroska
declares its end time, not its duration, so a file whose timestamps start late must not read
longer than it is."""

from __future__ import annotations

import av
import numpy as np
import pytest
from bad_media import encode_h264

from avssl.data import frame_walk, video_io
from avssl.data.media import probe
from avssl.data.video_io import read_frames
from avssl.tools import stream_io
from avssl.tools.stream_io import iter_frames_at


def test_mpeg_ts_windows_equal_a_decode_from_the_start(tmp_path):
    images = [np.full((32, 32, 3), (i * 5) % 250, np.uint8) for i in range(150)]
    # a keyframe every 2 s, as cameras and broadcasters write
    path = encode_h264(tmp_path / "camera.ts", images, "mpegts", gop=50)
    whole = read_frames(path, 0.0, 5.96, 25).numpy()
    for k in (5, 20, 45, 60, 110):  # inside the first key interval and later ones
        window = read_frames(path, k / 25, 0.16, 25).numpy()
        np.testing.assert_array_equal(window, whole[k : k + 4])
        # the tools' streaming reader seeks to a late first time too, and lands as well
        streamed = list(iter_frames_at(path, (k + np.arange(4)) / 25))
        np.testing.assert_array_equal(np.stack(streamed), whole[k : k + 4])


@pytest.mark.parametrize("fmt", [None, "mpegts"])
def test_streaming_frames_seek_to_a_late_first_time(tmp_path, fmt, monkeypatch):
    """A late first time is reached by seeking (not by decoding every frame before it), with
    the frames of a decode from the start, in a file whose timestamps start late (times count
    from its start) and in MPEG-TS (where a seek lands after the time and is done again a key
    interval earlier, or from the start when that is before the start)."""
    images = [np.full((32, 32, 3), (i * 5) % 250, np.uint8) for i in range(150)]
    name = "late.ts" if fmt else "late.mp4"
    path = encode_h264(tmp_path / name, images, fmt, gop=25, first=10)  # timestamps from 0.4 s
    seeks, overshoots = [], []
    real_seek, real_walk = frame_walk.seek_to, stream_io._walk
    monkeypatch.setattr(frame_walk, "seek_to", lambda *a: seeks.append(a[2]) or real_seek(*a))

    def walk(*args):
        frames = real_walk(*args)
        try:
            first = next(frames)
        except frame_walk.Overshoot:
            overshoots.append(args[5])
            raise
        yield first
        yield from frames

    monkeypatch.setattr(stream_io, "_walk", walk)
    for times in ([4.1, 4.5, 5.0], [0.2, 1.0], [2.03]):
        got = list(iter_frames_at(path, times))
        seeks.append("from 0:")
        want = list(iter_frames_at(path, [0.0, *times]))[1:]  # a first time of 0 never seeks
        assert len(got) == len(want) == len(times)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)
        for t, g in zip(times, got, strict=True):  # the frame showing at t (from the start)
            shown = int(t * 25 + 1e-6)
            assert abs(float(g.mean()) - float(images[shown].mean())) < 3
    if fmt:  # MPEG-TS seeks by byte and lands after each time: one key interval earlier lands
        assert seeks == pytest.approx([4.1, 3.1, "from 0:", 0.2, "from 0:", 2.03, 1.03, "from 0:"])
        assert overshoots == [4.1, 0.2, 2.03]
    else:  # MP4 seeks by time and lands before each time
        assert seeks == [4.1, "from 0:", 0.2, "from 0:", 2.03, "from 0:"]
        assert overshoots == []


def test_mpeg_ts_late_frames_decode_from_a_seek_not_from_the_start(tmp_path, monkeypatch):
    """Near the end of a long MPEG-TS file, both readers decode a few key intervals, not the
    whole file (the first seek overshoots; an earlier one lands), and give the frames of a decode
    from the start."""
    images = [np.full((16, 16, 3), (i * 7) % 250, np.uint8) for i in range(1000)]  # 40 s
    path = encode_h264(tmp_path / "long.ts", images, "mpegts", gop=50)
    decoded = []

    def counting(real):
        def frames(*args):
            for item in real(*args):
                decoded.append(item[1])
                yield item

        return frames

    whole = read_frames(path, 0.0, 40.0, 25).numpy()
    for module in (video_io, stream_io):
        monkeypatch.setattr(module, "decoded_frames", counting(module.decoded_frames))
    window = read_frames(path, 37.3, 0.4, 25).numpy()
    np.testing.assert_array_equal(window, whole[932:942])
    assert 0 < len(decoded) < 150 and min(decoded) > 30, (len(decoded), min(decoded))
    decoded.clear()
    streamed = np.stack(list(iter_frames_at(path, [37.3, 38.0, 39.9])))
    np.testing.assert_array_equal(streamed, whole[[932, 950, 997]])
    assert 0 < len(decoded) < 150 and min(decoded) > 30, (len(decoded), min(decoded))


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
