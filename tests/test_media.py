"""Media decoding: round trips on generated files, bad inputs, and the real shared videos."""

from __future__ import annotations

import json
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from conftest import MediaFactory

from avssl import cli
from avssl.data.media import probe, read_audio, read_clip, read_frames
from avssl.data.writer import write_video
from avssl.errors import MediaError
from avssl.tools.stream_io import iter_frames_at


def _corr(audio: torch.Tensor, media_factory, start: float, rate: int, total: float) -> float:
    t = start + np.arange(len(audio)) / rate
    return float(np.corrcoef(audio.numpy(), media_factory.tone(t, total))[0, 1])


def _rms(x) -> float:
    return float(np.sqrt(np.mean(np.square(np.asarray(x, dtype=np.float64)))))


def test_probe_and_full_decode(media_factory):
    path = media_factory("clip.mp4", duration=2.0, fps=25, size=(48, 64))
    info = probe(path)
    assert (info.kind, info.fps, info.n_frames, info.width, info.height) == (
        "video",
        25,
        50,
        64,
        48,
    )
    assert info.has_audio and info.audio_rate == 16000 and info.audio_channels == 1
    assert info.duration == pytest.approx(2.0, abs=0.05)
    frames = read_frames(path, 0.0, 2.0, 25)
    assert frames.shape == (50, 48, 64, 3) and frames.dtype == torch.uint8
    assert [media_factory.frame_index(f) for f in frames] == list(range(50))


@pytest.mark.parametrize("start,fps", [(0.52, 25), (0.5, 10), (1.0, 50), (0.33, 7.5)])
def test_window_mid_file_returns_the_frames_showing(media_factory, start, fps):
    path = media_factory("clip.mp4", duration=3.0, fps=25)
    frames = read_frames(path, start, 1.0, fps, size=(24, 32))
    assert frames.shape == (round(fps), 24, 32, 3)
    expected = [int(np.floor((start + i / fps) * 25 + 1e-6)) for i in range(len(frames))]
    assert [media_factory.frame_index(f) for f in frames] == expected


def test_variable_frame_rate_uses_timestamps(tmp_path, media_factory):
    times = [0.0, 0.08, 0.12, 0.48, 0.52, 0.6, 1.2, 1.28, 1.4, 1.52]  # on the 1/25 s grid
    path = tmp_path / "vfr.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(media_factory.bars(i, 48, 64), format="rgb24")
            frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    frames = read_frames(path, 0.05, 1.4, 20)
    expected = [int(np.searchsorted(times, 0.05 + i / 20, side="right")) - 1 for i in range(28)]
    assert [media_factory.frame_index(f) for f in frames] == expected


def test_raw_stream_without_duration_or_timestamps(media_factory):
    source = media_factory("clip.mp4", duration=2.0, audio=False)
    path = media_factory.remux_raw(source, source.with_suffix(".h264"), "h264", "video")
    info = probe(path)  # the container declares no duration: frames are counted
    assert info.duration == pytest.approx(2.0) and info.n_frames == 50
    frames = read_frames(path, 1.0, 0.4, 25)
    assert [media_factory.frame_index(f) for f in frames] == list(range(25, 35))
    # the index's and query's frame reader counts frames at the stream's rate too
    frames = iter_frames_at(path, [0.0, 0.5, 1.0, 1.98], None)
    assert [media_factory.frame_index(torch.from_numpy(f)) for f in frames] == [0, 12, 25, 49]


def test_audio_window_is_aligned_and_sized(media_factory):
    path = media_factory("clip.mp4", duration=3.0, sample_rate=16000)
    audio = read_audio(path, 1.25, 1.0, 16000)
    assert audio.shape == (16000,) and audio.dtype == torch.float32
    assert _corr(audio, media_factory, 1.25, 16000, 3.0) > 0.99


@pytest.mark.parametrize(
    "name,channels,rate,exact",
    [
        ("stereo.mp4", 2, 44100, False),
        ("surround.mp4", 6, 48000, False),
        ("stereo.wav", 2, 22050, True),
        ("surround.flac", 6, 48000, True),
    ],
)
def test_channels_are_averaged_to_mono(media_factory, name, channels, rate, exact):
    path = media_factory(name, duration=2.0, sample_rate=rate, channels=channels)
    audio = read_audio(path, 0.5, 1.0, 16000)
    assert audio.shape == (16000,)
    assert _corr(audio, media_factory, 0.5, 16000, 2.0) > 0.99
    t = 0.5 + np.arange(16000) / 16000
    want = _rms(media_factory.tone(t, 2.0)) * (channels + 1) / (2 * channels)
    # AAC low-passes the LFE channel of 5.1, so the lossy files only match roughly
    assert _rms(audio) == pytest.approx(want, rel=0.01 if exact else 0.25)


@pytest.mark.parametrize("src_rate", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_soundfile_resampling(media_factory, src_rate, ext):
    path = media_factory(f"tone.{ext}", duration=2.0, sample_rate=src_rate)
    for rate in (16000, 48000):
        audio = read_audio(path, 0.7, 0.9, rate)
        assert audio.shape == (round(0.9 * rate),)
        t = 0.7 + np.arange(len(audio)) / rate
        assert np.abs(audio.numpy() - media_factory.tone(t, 2.0)).max() < 0.01


def test_png_is_a_one_frame_video(media_factory):
    path = media_factory("still.png", size=(40, 30))
    info = probe(path)
    assert (info.kind, info.n_frames, info.width, info.height) == ("image", 1, 30, 40)
    frames = read_frames(path, 0.0, 0.4, 10, size=16)
    assert frames.shape == (4, 16, 16, 3)
    assert frames[:, 2, 8].tolist() == [[255, 0, 0]] * 4
    assert frames[:, 13, 8].tolist() == [[0, 0, 255]] * 4


def test_a_file_is_a_still_by_its_content_not_its_name(media_factory, tmp_path):
    """A video named ``.png`` was read as one still (its sound ignored); a picture named
    ``.mp4`` is a picture."""
    video = media_factory("clip.mp4", duration=2.0)
    misnamed = tmp_path / "clip-video.png"
    misnamed.write_bytes(video.read_bytes())
    info = probe(misnamed)
    assert (info.kind, info.has_audio) == ("video", True) and info.n_frames > 1
    assert read_frames(misnamed, 1.0, 0.2, 10, size=16).shape == (2, 16, 16, 3)
    still = media_factory("still.png", size=(40, 30))
    renamed = tmp_path / "still-picture.mp4"
    renamed.write_bytes(still.read_bytes())
    info = probe(renamed)
    assert (info.kind, info.n_frames, info.has_audio) == ("image", 1, False)
    torch.testing.assert_close(read_frames(renamed, 0.0, 0.4, 10), read_frames(still, 0.0, 0.4, 10))


def test_an_animated_png_is_its_first_picture(tmp_path):
    """FFmpeg opens an animated PNG with its ``apng`` demuxer: a still, as before."""
    from PIL import Image

    path = tmp_path / "anim.png"
    frames = [Image.new("RGB", (32, 24), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with av.open(str(path)) as container:
        assert container.format.name == "apng"
    assert (probe(path).kind, probe(path).n_frames) == ("image", 1)
    got = read_frames(path, 2.0, 0.4, 10, size=16)  # any time: the one picture
    assert got.shape == (4, 16, 16, 3) and got[:, 8, 8].tolist() == [[255, 0, 0]] * 4


def _photo(path, size=(96, 128)):
    """Write a still of 8-pixel blocks of random colours (the entropy-coded data of a JPEG
    is then most of the file, so a cut falls in it) and return its pixels."""
    from PIL import Image

    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (size[0] // 8, size[1] // 8, 3), dtype=np.uint8)
    pixels = np.kron(blocks, np.ones((8, 8, 1), np.uint8))
    Image.fromarray(pixels).save(path)
    return pixels


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_a_still_cut_short_is_refused(tmp_path, ext):
    """FFmpeg's JPEG decoder showed a JPEG cut to 60% of its bytes whole, its lower part blank;
    it is refused as a PNG cut short always was, by every reader of stills."""
    whole = tmp_path / f"whole{ext}"
    pixels = _photo(whole)
    got = read_frames(whole, 0.0, 0.1, 10)[0].numpy().astype(int)
    assert np.abs(got - pixels).mean() < 8  # the whole file decodes (JPEG: lossy)
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])
    with pytest.raises(MediaError, match="truncated or corrupt") as err:
        read_frames(cut, 0.0, 0.1, 10)
    assert str(err.value).startswith(f"{cut}: ") and "\n" not in str(err.value)
    with pytest.raises(MediaError, match="truncated or corrupt"):
        next(iter_frames_at(cut, [0.0], (32, 32)))  # the tools' reader (index, query, embed)


def test_tiffs_with_common_tags_and_gifs_read_as_before(tmp_path):
    """Strict decoding is for JPEG only: FFmpeg's TIFF decoder refused, under it, the tags most
    real TIFFs carry (resolution unit, orientation). A GIF stays a video, its pictures timed."""
    from PIL import Image

    pixels = _photo(tmp_path / "plain.png")
    tif = tmp_path / "tagged.tif"
    Image.fromarray(pixels).save(tif, dpi=(300, 300), tiffinfo={274: 1})  # 274: orientation
    np.testing.assert_array_equal(read_frames(tif, 0.0, 0.1, 10)[0].numpy(), pixels)
    gif = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (32, 24), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=500, loop=0)
    assert probe(gif).kind == "video"
    got = read_frames(gif, 0.0, 1.0, 2, size=16)
    assert got[:, 8, 8].tolist() == [[255, 0, 0], [0, 0, 255]]


def test_a_jpeg_compressed_tiff_is_refused_not_shown_black(tmp_path):
    """FFmpeg's TIFF decoder shows a TIFF of JPEG strips (as libtiff writes them) black: it is
    refused by its compression tag, by both readers; an LZW one still reads exactly."""
    from PIL import Image

    pixels = np.full((32, 40, 3), 200, np.uint8)
    path = tmp_path / "jpeg-strips.tif"
    Image.fromarray(pixels).save(path, compression="jpeg")
    with pytest.raises(MediaError, match="JPEG-compressed TIFF") as err:
        read_frames(path, 0.0, 0.1, 10)
    assert str(err.value).startswith(f"{path}: ")
    with pytest.raises(MediaError, match="JPEG-compressed TIFF"):
        next(iter_frames_at(path, [0.0], (16, 16)))
    lzw = tmp_path / "lzw.tif"
    Image.fromarray(pixels).save(lzw, compression="tiff_lzw")
    np.testing.assert_array_equal(read_frames(lzw, 0.0, 0.1, 10)[0].numpy(), pixels)


def test_an_animated_png_is_its_first_picture_at_every_time(tmp_path):
    """The tools' reader (index, query, embed) showed an animated PNG's later pictures at later
    times, where training's reader shows its first: both show the first."""
    from PIL import Image

    path = tmp_path / "anim.png"
    frames = [Image.new("RGB", (32, 24), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    got = [f[8, 8].tolist() for f in iter_frames_at(path, [0.0, 0.15, 0.25])]
    assert got == [[255, 0, 0]] * 3
    assert read_frames(path, 0.15, 0.1, 10)[0, 8, 8].tolist() == [255, 0, 0]


def test_webm_vp8_opus(media_factory):
    path = media_factory("clip.webm", duration=2.0)
    info = probe(path)
    assert (info.video_codec, info.audio_codec) == ("vp8", "opus")
    frames = read_frames(path, 1.0, 0.5, 25)
    assert [media_factory.frame_index(f) for f in frames] == list(
        range(25, 37)
    )  # round(12.5) == 12
    audio = read_audio(path, 1.0, 0.5, 16000)
    t = 1.0 + np.arange(8000) / 16000
    # Matroska stores ms timestamps (and Opus a pre-skip): alignment within a few ms only
    assert _rms(audio) == pytest.approx(_rms(media_factory.tone(t, 2.0)), rel=0.05)


def test_read_clip(media_factory):
    video = media_factory("clip.mp4", duration=2.0)
    frames, audio = read_clip(video, 10, 32, 16000)
    assert frames.shape == (20, 32, 32, 3) and audio.shape == (32000,)
    assert [media_factory.frame_index(f) for f in frames] == [i * 5 // 2 for i in range(20)]
    frames, audio = read_clip(video, 25, None, 8000, start=0.4, duration=1.0)
    assert frames.shape == (25, 48, 64, 3) and audio.shape == (8000,)
    assert media_factory.frame_index(frames[0]) == 10
    image = media_factory("still.png", size=(20, 20))
    sound = media_factory("voice.wav", duration=1.5, sample_rate=8000)
    frames, audio = read_clip(image, 4, 8, 16000, audio_path=sound)
    assert frames.shape == (6, 8, 8, 3) and audio.shape == (24000,)


def test_short_streams_are_padded_within_tolerance(media_factory):
    path = media_factory("clip.mp4", duration=2.0)
    frames = read_frames(path, 1.5, 0.56, 25)  # ends 0.06 s after the end of the video
    assert [media_factory.frame_index(f) for f in frames][-3:] == [48, 49, 49]
    audio = read_audio(path, 1.5, 0.56, 16000)
    assert audio.shape == (8960,) and audio[-500:].abs().max() < 1e-3
    with pytest.raises(MediaError, match="shorter than the window"):
        read_frames(path, 1.5, 1.0, 25)
    with pytest.raises(MediaError, match="shorter than the window"):
        read_audio(path, 1.5, 1.0, 16000)


def test_decoding_limits(media_factory):
    path = media_factory("clip.mp4", duration=1.0)
    with pytest.raises(MediaError, match="output size"):
        read_frames(path, 0.0, 1.0, 25, size=(5000, 5000))
    with pytest.raises(MediaError, match="limit"):
        read_audio(path, 0.0, 601.0, 16000)
    with pytest.raises(MediaError, match="sample rate"):
        read_audio(path, 0.0, 1.0, 10**7)


def _truncated(mf, name: str, faststart: bool = False):
    """Half of a generated 2-s file; with ``faststart`` the mp4 index comes first (remuxed)."""
    path = mf(name, duration=2.0)
    if faststart:
        with (
            av.open(str(path)) as src,
            av.open(str(mf.folder / "fs.mp4"), "w", options={"movflags": "faststart"}) as dst,
        ):
            streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
            for packet in src.demux():
                if packet.dts is not None:
                    packet.stream = streams[packet.stream.index]
                    dst.mux(packet)
        path = mf.folder / "fs.mp4"
    data = path.read_bytes()
    cut = path.with_name("cut_" + name)
    cut.write_bytes(data[: len(data) // 2])
    return cut


def _touch(path):
    path.touch()
    return path


def _text(path):
    path.write_text("this is not a video\n" * 50)
    return path


def _frames(path, start=0.0, duration=1.0):
    return read_frames(path, start, duration, 25)


def _audio(path, start=0.0):
    return read_audio(path, start, 1.0, 8000)


# (case, make the file, failing API call, whether `avssl inspect FILE` fails too: False, True
# or the arguments that make it fail; inspect only decodes the streams that exist)
BAD_INPUTS = [
    ("missing", lambda mf: mf.folder / "missing.mp4", _frames, True),
    ("empty", lambda mf: _touch(mf.folder / "empty.mp4"), probe, True),
    ("not media", lambda mf: _text(mf.folder / "notes.mp4"), _audio, True),
    ("truncated mp4", lambda mf: _truncated(mf, "t.mp4"), _frames, True),
    ("truncated faststart mp4", lambda mf: _truncated(mf, "t.mp4", faststart=True),
     lambda p: _frames(p, 0, 2), ["--duration", "2"]),
    ("truncated webm", lambda mf: _truncated(mf, "t.webm"), lambda p: read_clip(p, 25, 8, 8000),
     ["--duration", "2"]),
    ("no audio", lambda mf: mf("mute.mp4", audio=False), _audio, False),
    ("no video (wav)", lambda mf: mf("sound.wav"), _frames, False),
    ("no video (m4a)", lambda mf: mf("sound.m4a", video=False), _frames, False),
    ("beyond end", lambda mf: mf("clip.mp4"), lambda p: _frames(p, 3), ["--start", "3"]),
    ("beyond end (wav)", lambda mf: mf("s.wav"), lambda p: _audio(p, 3), ["--start", "3"]),
]  # fmt: skip


@pytest.mark.parametrize("case,make,call,cli_fails", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_inputs_raise_one_media_error(media_factory, capsys, case, make, call, cli_fails):
    path = make(media_factory)
    with pytest.raises(MediaError) as info:
        call(path)
    assert path.name in str(info.value) and type(info.value) is MediaError
    extra = cli_fails if isinstance(cli_fails, list) else []
    code = cli.main(["inspect", str(path), *extra])
    out, err = capsys.readouterr()
    if cli_fails:
        assert code == 2 and "Traceback" not in err and out == ""
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and path.name in lines[0]
    else:  # inspect only decodes the streams that exist
        assert code == 0 and json.loads(out)["decodable"] is True


def test_inspect_reports_a_window(media_factory, capsys):
    path = media_factory("clip.mp4", duration=0.6)
    assert cli.main(["inspect", str(path), "--size", "32", "--sample-rate", "8000"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "video" and report["decodable"] is True
    assert report["window"] == {
        "start": 0.0,
        "duration": pytest.approx(0.6, abs=0.01),
        "frames": [15, 32, 32, 3],
        "audio_samples": 4800,
    }
    assert report["end_checked"] is None  # the window reaches the end


def test_inspect_decodes_the_end_of_a_download_cut_short(media_factory, capsys):
    whole = media_factory("whole.mkv", duration=4.0, size=(32, 32))
    assert cli.main(["inspect", str(whole)]) == 0
    assert json.loads(capsys.readouterr().out)["end_checked"] == pytest.approx(3.5, abs=0.1)
    short = media_factory("short.mp4", duration=1.3)  # the window ends in the last 0.5 s
    assert cli.main(["inspect", str(short)]) == 0
    assert json.loads(capsys.readouterr().out)["end_checked"] == pytest.approx(0.8, abs=0.05)
    cut = whole.with_name("cut.mkv")  # the header still declares 4 s; the first second decodes
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert cli.main(["inspect", str(cut)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {cut}: truncated or corrupt: ") and len(err.splitlines()) == 1


def test_inspect_refuses_a_wav_cut_short(media_factory, capsys):
    # a WAV cut short decodes as a complete, shorter file: only its header tells
    whole = media_factory("whole.wav", duration=2.0)
    assert cli.main(["inspect", str(whole)]) == 0
    capsys.readouterr()
    cut = whole.with_name("cut.wav")
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    assert cli.main(["inspect", str(cut)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {cut}: truncated: header declares 2.00 s, file holds 1.3")
    assert len(err.splitlines()) == 1


@pytest.mark.shared_data
def test_shared_videos_decode(shared_data, capsys):
    videos = sorted((shared_data / "videos").iterdir())
    assert len(videos) >= 6
    for path in videos:
        assert cli.main(["inspect", str(path)]) == 0, path
        report = json.loads(capsys.readouterr().out)
        assert report["has_video"] and report["has_audio"] and report["duration"] > 4
        # the WebM's first frame is at 3 ms: the seek lands after 1 ms and is retried from 0
        assert read_frames(path, 0.001, 0.2, 25, size=32).shape == (5, 32, 32, 3)
        mid = report["duration"] / 2
        frames = read_frames(path, mid, 1.0, 25, size=224)
        assert frames.shape == (25, 224, 224, 3) and frames.float().mean() > 5, path
        audio = read_audio(path, mid, 1.0, 16000)
        assert audio.shape == (16000,) and 1e-3 < _rms(audio) < 1, path
        start = max(0.0, report["duration"] - 3.0)  # the last 3 s: ends of streams differ
        frames, audio = read_clip(path, 25, 112, 16000, start=start)
        n = round((report["duration"] - start) * 25)
        assert frames.shape == (n, 112, 112, 3) and abs(len(audio) - n * 640) <= 640, path


@pytest.mark.parametrize("picture,sound", [(3.0, 2.0), (2.0, 3.0), (2.0, 1.86)])
def test_inspect_checks_each_stream_from_its_own_end(tmp_path, capsys, picture, sound):
    # a sound that stops before the picture (or after it) is a valid file: its end is decoded
    # from the stream's own end, not the container's
    path = tmp_path / "uneven.mp4"
    frames = np.stack([MediaFactory.bars(i, 32, 32) for i in range(round(picture * 25))])
    t = np.arange(round(sound * 16000)) / 16000
    write_video(path, frames, 25, MediaFactory.tone(t, sound).astype(np.float32), 16000)
    assert cli.main(["inspect", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["end_checked"] == pytest.approx(max(picture, sound) - 0.5, abs=0.05)


def test_inspect_at_a_low_rate_or_near_the_end_reads_a_frame(media_factory, capsys):
    clip = media_factory("clip.mp4", duration=3.0)
    for flags in (["--fps", "1"], ["--fps", "0.5"], ["--start", "2.99"]):
        assert cli.main(["inspect", str(clip), *flags]) == 0, flags
        assert json.loads(capsys.readouterr().out)["window"]["frames"][0] >= 1
    image = media_factory("still.png")
    assert cli.main(["inspect", str(image), "--fps", "0.5"]) == 0
    assert json.loads(capsys.readouterr().out)["window"]["frames"][0] == 1


@pytest.mark.parametrize("start", ["1e15", "1e308"])
def test_inspect_a_start_far_beyond_the_end_names_the_file(media_factory, capsys, start):
    sound = media_factory("sound.m4a", video=False)  # read through FFmpeg's seek
    assert cli.main(["inspect", str(sound), "--start", start]) == 2
    err = capsys.readouterr().err.strip()
    window = f"window [{float(start):g}, {float(start) + 1:g}) s is beyond the end (duration "
    assert err.startswith(f"error: {sound}: {window}")
    assert len(err.splitlines()) == 1
