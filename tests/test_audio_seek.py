"""Audio windows reached by seeking a compressed track equal the same samples decoded from the
start of the file (the codec's frames before the window are decoded and dropped, and a frame's
millisecond timestamp is put back on its codec's grid)."""

from __future__ import annotations

import numpy as np
import pytest

from avssl.data.media import read_audio
from avssl.errors import MediaError


def _assert_windows_equal_the_whole(path, rate: int, starts, full_s: float = 3.9) -> None:
    """Each 0.5-s window read by seeking equals the same samples of a decode from the start."""
    full = read_audio(path, 0.0, full_s, rate).numpy()
    rms = float(np.sqrt((full**2).mean()))
    for start in starts:
        window = read_audio(path, start, 0.5, rate).numpy()
        ref = full[round(start * rate) : round(start * rate) + len(window)]
        assert np.abs(window - ref).max() < 0.01 * rms, start


@pytest.mark.parametrize("rate", [8000, 16000])
def test_aac_window_after_a_seek_equals_the_decode_from_the_start(media_factory, rate):
    # the first AAC frame decoded after a seek lacks its overlap (1024 samples: 64 ms at 16 kHz)
    path = media_factory("clip.mp4", duration=4.0, sample_rate=rate)
    _assert_windows_equal_the_whole(path, rate, (0.9, 1.5, 2.2, 3.07))


@pytest.mark.parametrize("rate", [16000, 48000])
def test_opus_in_webm_window_after_a_seek_equals_the_decode_from_the_start(media_factory, rate):
    # WebM's 1-ms timestamps and Opus's 6.5-ms codec delay put a seek's first frame 1 ms late
    path = media_factory("clip.webm", duration=4.0, sample_rate=rate)
    _assert_windows_equal_the_whole(path, rate, (0.9, 1.5, 2.237, 3.07))


def test_a_seek_that_overshoots_decodes_opus_from_a_fresh_start(media_factory, monkeypatch):
    # MPEG-TS seeks by byte and can land after the target; the fallback decodes from the start,
    # which for Opus must not be a seek back to 0 (that drops the codec delay a second time)
    from avssl.data import audio_track

    path = media_factory("clip.webm", duration=3.0, sample_rate=16000)
    full = read_audio(path, 0.0, 2.9, 16000).numpy()
    seek = audio_track.seek_to
    monkeypatch.setattr(audio_track, "seek_to", lambda c, s, t: seek(c, s, t + 0.5 if t else t))
    window = read_audio(path, 1.5, 0.5, 16000).numpy()
    np.testing.assert_allclose(window, full[24000:32000], atol=1e-5)


@pytest.mark.parametrize("name,rate", [("a.mp4", 44100), ("b.mp4", 48000), ("c.wav", 22050),
                                       ("d.wav", 44100), ("e.flac", 11025)])  # fmt: skip
def test_a_resampled_window_is_on_the_whole_files_output_grid(tmp_path, name, rate):
    # windows start on the input grid: read from mid-file, the resampled samples sat up to half
    # an output sample off those of a decode from the start (a whole RMS off at 5 kHz)
    import soundfile as sf

    from avssl.data.writer import write_video

    t = np.arange(5 * rate) / rate
    x = 0.2 * np.sin(2 * np.pi * (300 * t + 400 * t**2)) + 0.1 * np.sin(2 * np.pi * 5000 * t)
    path = tmp_path / name
    if name.endswith(".mp4"):
        write_video(path, None, 25, x.astype(np.float32), rate)  # AAC: a tone, not noise (PNS)
    else:
        sf.write(path, x, rate)
    _assert_windows_equal_the_whole(path, 16000, (0.3137, 1.23456, 2.5001, 3.77), full_s=4.5)


def test_a_track_shorter_than_the_grid_step_is_a_short_track_not_a_crash(tmp_path):
    from avssl.data.audio_io import _resample
    from avssl.data.writer import write_video

    assert _resample(np.zeros(0, np.float32), 44100, 16000).shape == (0,)
    path = write_video(tmp_path / "blip.mp4", None, 25, np.zeros(300, np.float32), 44100)
    with pytest.raises(MediaError, match="shorter|beyond|no audio"):
        read_audio(path, 0.0, 0.5, 16000)


def _vorbis_webm(path, seconds: float = 6.0, rate: int = 44100):
    """A stereo chirp encoded with FFmpeg's own (experimental) Vorbis encoder in WebM."""
    import av

    t = np.arange(round(seconds * rate)) / rate
    x = (0.3 * np.sin(2 * np.pi * 440 * t * (1 + t / seconds))).astype(np.float32)
    samples = np.stack([x, 0.5 * x])
    with av.open(str(path), "w") as out:
        stream = out.add_stream("vorbis", rate=rate)
        stream.codec_context.options = {"strict": "experimental"}
        stream.layout = "stereo"
        for i in range(0, samples.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples[:, i : i + 1024]), format="fltp", layout="stereo"
            )
            frame.sample_rate, frame.pts = rate, i  # timestamps, as a real file has
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def test_vorbis_is_decoded_from_the_start_and_only_the_window_is_kept(tmp_path, monkeypatch):
    # after a seek a Vorbis frame's time is its container's (WebM: whole ms) and seeks in WebM
    # overshot, which decoded the whole file up to the window into memory, once more
    from avssl.data import audio_io, audio_track

    path = _vorbis_webm(tmp_path / "v.webm")
    full = read_audio(path, 0.0, 5.8, 16000).numpy()
    seeks, kept = [], []
    real = audio_io.decode_track
    monkeypatch.setattr(audio_track, "seek_to", lambda *a: seeks.append(a))

    def decode(*args, **kwargs):
        mono, t0, complete = real(*args, **kwargs)
        kept.append(len(mono))
        return mono, t0, complete

    monkeypatch.setattr(audio_io, "decode_track", decode)
    for start in (0.5, 1.337, 2.9, 4.71):
        window = read_audio(path, start, 0.5, 16000).numpy()
        i = round(start * 16000)
        np.testing.assert_array_equal(window, full[i : i + len(window)])
    assert seeks == [] and len(kept) == 4
    assert max(kept) < 0.8 * 44100  # the window and its margins, not the track up to it


def test_vorbis_past_the_end_is_beyond_the_end_not_corrupt(tmp_path):
    path = _vorbis_webm(tmp_path / "v.webm")
    with pytest.raises(MediaError, match=r"window \[6.50, 7.00\) s is beyond the end"):
        read_audio(path, 6.5, 0.5, 16000)


@pytest.mark.parametrize("rate", [22050, 44100])
def test_ogg_vorbis_through_libsndfile_is_read_from_its_start(tmp_path, rate):
    # libsndfile's seek in an Ogg Vorbis file landed up to 61 samples (16 kHz) off
    import soundfile as sf

    t = np.arange(6 * rate) / rate
    x = (0.3 * np.sin(2 * np.pi * 440 * t * (1 + t / 6))).astype(np.float32)
    path = tmp_path / "v.ogg"
    sf.write(path, np.stack([x, 0.5 * x], 1), rate, format="OGG", subtype="VORBIS")
    full = read_audio(path, 0.0, 5.9, 16000).numpy()
    for start in np.random.default_rng(1).uniform(0, 5.3, 12):
        window = read_audio(path, float(start), 0.5, 16000).numpy()
        i = round(start * 16000)
        np.testing.assert_array_equal(window, full[i : i + len(window)])


def _ramp_track(path, seconds: int, pts_of) -> None:
    """A 16-kHz PCM Matroska track whose sample at ``t`` holds ``t / 10``, in frames of 1,024
    samples, frame ``i`` (its first sample's index) stamped ``pts_of(i)`` (None: left out)."""
    from fractions import Fraction

    import av

    sr = 16000
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=sr)
        stream.layout, stream.time_base = "mono", Fraction(1, sr)
        for i in range(0, seconds * sr, 1024):
            if (pts := pts_of(i)) is None:
                continue
            ramp = (i + np.arange(1024)) / sr / 10
            frame = av.AudioFrame.from_ndarray(
                (ramp * 32767).astype(np.int16)[None], format="s16", layout="mono"
            )
            frame.sample_rate, frame.pts, frame.time_base = sr, pts, Fraction(1, sr)
            for packet in stream.encode(frame):
                out.mux(packet)


def test_a_gap_in_the_track_keeps_the_sound_after_it_in_place(tmp_path):
    # 0.5 s of packets lost at 2.0 s: a decode from the start counted samples across the hole
    # (the sound after it came 0.5 s early, and the file was "truncated"), a seeking one did not
    from avssl.data import media

    path, sr = tmp_path / "gap.mka", 16000
    _ramp_track(path, 6, lambda i: None if 2.0 <= i / sr < 2.5 else i)
    whole = media.read_audio(path, 0.0, 6.0, sr).numpy()
    window = media.read_audio(path, 3.0, 1.0, sr).numpy()
    assert whole[3 * sr] == pytest.approx(0.3, abs=1e-3)
    assert window[0] == pytest.approx(0.3, abs=1e-3)
    np.testing.assert_allclose(whole[3 * sr : 4 * sr], window, atol=1e-4)
    assert np.abs(whole[round(2.1 * sr) : round(2.4 * sr)]).max() == 0  # the hole is silence


def test_a_jump_of_hours_in_the_timestamps_makes_no_hours_of_silence(tmp_path):
    # a transport stream's clock can jump: the gap's silence was made whole (20,000 s: 1.2 GB
    # for a 0.45-s window); only what the window needs is made now
    import tracemalloc

    from avssl.data import media

    path, sr = tmp_path / "jump.mka", 16000
    _ramp_track(path, 3, lambda i: i if i < sr else i + 20_000 * sr)  # 20,000 s on from 1.024 s
    tracemalloc.start()
    try:
        window = media.read_audio(path, 0.7, 0.45, sr).numpy()
        inside = media.read_audio(path, 5000.0, 1.0, sr).numpy()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert window[0] == pytest.approx(0.07, abs=1e-3) and not np.abs(inside).max()
    assert peak < 50e6, peak  # was 1.2e9
