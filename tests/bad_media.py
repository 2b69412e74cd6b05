"""The bad-media cases of issue 8, shared by the reliability tests.

Each :class:`Case` makes one kind of bad or odd input with a :class:`conftest.MediaFactory`;
``errors`` maps a one-file command to the reason it must report (else it must succeed).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from conftest import MediaFactory
from PIL import Image

from avssl.data.writer import write_video

ONE_FILE = ("inspect", "sync", "query_audio", "query_image", "query_video", "overlay")
OK = None

# ---- the cases ----------------------------------------------------------------------------------


def _truncated(mf: MediaFactory) -> Path:
    path = mf("whole.mp4", duration=2.0)
    cut = mf.folder / "truncated.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    path.unlink()
    return cut


def _silence(mf: MediaFactory) -> Path:
    frames = np.stack([mf.bars(i, 48, 64) for i in range(50)])
    return write_video(mf.folder / "silence.mp4", frames, 25, np.zeros(32000, np.float32), 16000)


def _vfr(mf: MediaFactory) -> Path:
    """Frames at irregular times (ms time base) plus a 2-s AAC track."""
    path = mf.folder / "vfr.mp4"
    times = [0.0, 0.08, 0.12, 0.48, 0.52, 0.6, 1.2, 1.28, 1.4, 1.52, 1.96]
    sr = 16000
    wave = mf.tone(np.arange(2 * sr) / sr, 2.0).astype(np.float32)[None]
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.time_base = Fraction(1, 1000)
        audio = out.add_stream("aac", rate=sr, layout="mono")
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(mf.bars(i, 48, 64), format="rgb24")
            frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        resampler = av.AudioResampler(format=audio.format.name, layout="mono", rate=sr)
        frame = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = sr, 0
        for f in resampler.resample(frame) + resampler.resample(None):
            out.mux(audio.encode(f))
        out.mux(audio.encode(None))
    return path


def _raw_h264(mf: MediaFactory) -> Path:
    """An elementary H.264 stream: no container duration, no timestamps (and no sound)."""
    source = mf("raw-source.mp4", duration=2.0, audio=False)
    path = mf.remux_raw(source, mf.folder / "unknown duration.h264", "h264", "video")
    source.unlink()
    return path


def _raw_adts(mf: MediaFactory) -> Path:
    """A raw ADTS AAC stream: audio whose duration is only known by demuxing."""
    source = mf("adts-source.m4a", duration=2.0, video=False)
    path = mf.remux_raw(source, mf.folder / "unknown duration.aac", "adts", "audio")
    source.unlink()
    return path


def _wav(mf: MediaFactory, name: str, samples: np.ndarray) -> Path:
    import soundfile as sf

    sf.write(mf.folder / name, samples, 16000, subtype="FLOAT")
    return mf.folder / name


def _huge_png(mf: MediaFactory) -> Path:
    path = mf.folder / "huge.png"
    Image.new("RGB", (4200, 4200), (40, 80, 120)).save(path, compress_level=1)
    return path


def _text(mf: MediaFactory) -> Path:
    path = mf.folder / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    return path


@dataclass
class Case:
    """One kind of input; ``errors`` maps a command to the reason it must report (else OK)."""

    name: str
    make: Callable[[MediaFactory], Path]
    errors: dict[str, str] = field(default_factory=dict)
    train_ok: bool = False  # a usable training / evaluation clip (video + sound, >= 2 s)


def _all(reason: str) -> dict[str, str]:
    return dict.fromkeys(ONE_FILE, reason)


NO_SOUND = {
    "sync": "no audio stream",
    "query_audio": "without an audio stream",
    "query_video": "without an audio stream",
    "overlay": "no audio stream",
}
NO_PICTURE = {
    "sync": "no video stream",
    "query_image": "without pictures",
    "overlay": "not a video",
}
STILL = {
    "sync": "no audio stream",
    "query_audio": "a still image",
    "query_video": "a still image",
    "overlay": "not a video",
}

CASES = [
    Case("missing", lambda mf: mf.folder / "missing.mp4", _all("no such file")),
    Case("empty", lambda mf: (mf.folder / "empty.mp4").touch() or mf.folder / "empty.mp4",
         _all("empty file")),
    Case("not media", _text, _all("not a media file")),
    Case("truncated mp4", _truncated, _all("truncated or corrupt")),
    Case("no audio stream", lambda mf: mf("mute.mp4", audio=False), NO_SOUND),
    Case("audio file as video", lambda mf: mf("tone.wav", duration=2.0), NO_PICTURE),
    Case("audio-only m4a", lambda mf: mf("tone.m4a", duration=2.0, video=False), NO_PICTURE),
    Case("shorter than a window", lambda mf: mf("short.mp4", duration=0.4),
         {"sync": "too short"}),
    Case("digital silence", _silence, train_ok=True),
    Case("header-only wav", lambda mf: _wav(mf, "header.wav", np.zeros(0, np.float32)),
         {**NO_PICTURE, "inspect": "beyond the end", "query_audio": "zero duration",
          "query_video": "zero duration"}),
    Case("NaN samples", lambda mf: _wav(mf, "nan.wav", np.full(32000, np.nan, np.float32)),
         {**NO_PICTURE, "inspect": "not finite", "query_audio": "not finite",
          "query_video": "not finite"}),
    Case("samples of 1e19", lambda mf: _wav(mf, "loud.wav", np.full(32000, 1e19, np.float32)),
         {**NO_PICTURE, "inspect": "a broken float file", "query_audio": "a broken float file",
          "query_video": "a broken float file"}),
    *[
        Case(f"{rate} Hz", lambda mf, r=rate: mf(f"rate {r}.mp4", sample_rate=r), train_ok=True)
        for rate in (8000, 16000, 22050, 44100, 48000)
    ],
    Case("stereo", lambda mf: mf("stereo.mp4", channels=2, sample_rate=44100), train_ok=True),
    Case("5.1", lambda mf: mf("surround.mp4", channels=6, sample_rate=48000), train_ok=True),
    Case("variable frame rate", _vfr, train_ok=True),
    Case("large video", lambda mf: mf("large.mp4", duration=2.0, fps=3, size=(720, 1280)),
         train_ok=True),
    Case("over the pixel limit", _huge_png,
         {**STILL, "inspect": "outside the limit", "query_image": "outside the limit"}),
    Case("still image", lambda mf: mf("still.png"), STILL),
    Case("unknown duration (h264)", _raw_h264, NO_SOUND),
    Case("unknown duration (adts)", _raw_adts, NO_PICTURE),
    Case("space and unicode", lambda mf: mf("a clip é 名前.mp4"), train_ok=True),
    Case("webm", lambda mf: mf("clip.webm", channels=2), train_ok=True),
]  # fmt: skip


# ---- running the commands -----------------------------------------------------------------------


def run(capsys, fn, argv: list[str]) -> tuple[int, str, str]:
    """``fn(argv)`` in-process: ``(exit status, stdout, stderr)``; a traceback fails the test."""
    code = fn(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out, err
    return code, out, err


def one_line_error(code: int, out: str, err: str, path: Path, reason: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and out == "", (code, out, err)
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {path}:") and reason in lines[0], lines[0]  # or path:N:


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def encode_h264(path: Path, images, fmt: str | None = None, **options) -> Path:
    """Encode RGB ``images`` (uint8 ``[H, W, 3]`` each) as h264 at 25 fps into ``path`` with
    PyAV, for container features writer.write_video does not set: ``fmt`` (e.g. ``mpegts``),
    ``rotation`` (a display rotation in degrees), ``gop`` (frames per key interval),
    ``first`` (the first frame's timestamp, in frames), ``sar`` (a sample aspect ratio:
    non-square pixels), ``crf`` (0: lossless)."""
    images = list(images)
    with av.open(str(path), "w", format=fmt) as out:
        v = out.add_stream("libx264", rate=25)
        v.height, v.width = images[0].shape[:2]
        v.pix_fmt = "yuv420p"
        if "rotation" in options:
            v.set_display_rotation(options["rotation"])
        if "gop" in options:
            v.codec_context.gop_size = options["gop"]
        if "sar" in options:
            v.codec_context.sample_aspect_ratio = options["sar"]
        if "crf" in options:
            v.options = {"crf": str(options["crf"])}
        for i, img in enumerate(images):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i + options.get("first", 0)
            for packet in v.encode(frame):
                out.mux(packet)
        for packet in v.encode(None):
            out.mux(packet)
    return path


def sigterm_at_call(monkeypatch, module, name: str, n: int) -> None:
    """Make the ``n``-th call of ``module.name`` send this process a SIGTERM first (a
    scheduler's kill in the middle of a command's work)."""
    import os
    import signal

    real, calls = getattr(module, name), []

    def then_sigterm(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, then_sigterm)


def delay_audio(src: Path, dst: Path, seconds: float) -> Path:
    """Remux ``src`` with its audio packets' timestamps moved ``seconds`` later."""
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        vs = o.add_stream_from_template(i.streams.video[0])
        aus = o.add_stream_from_template(i.streams.audio[0])
        for packet in i.demux():
            if packet.dts is None:
                continue
            if packet.stream.type == "audio":
                shift = round(seconds / packet.time_base)
                packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
            packet.stream = vs if packet.stream.type == "video" else aus
            o.mux(packet)
    return dst
