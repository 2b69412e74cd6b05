"""``avssl overlay``: heatmap video with the original audio, contact sheet, refusals."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from bad_media import delay_audio
from conftest import TINY, MediaFactory
from PIL import Image

from avssl.cli import main as cli
from avssl.config import load_config, to_dict
from avssl.data.media import probe, read_audio
from avssl.errors import ConfigError, MediaError
from avssl.eval.embed import frames_to_input
from avssl.models import build_model
from avssl.tools import overlay as overlay_module
from avssl.tools.overlay import blend, centred_windows, colormap_lut, output_size
from avssl.tools.stream_io import iter_frames_at
from avssl.train.checkpoint import save_checkpoint
from avssl.train.runtime import check_precision


def _ckpt(path: Path, method: str) -> Path:
    cfg = load_config(None, [s for s in TINY if s.startswith(("data.", "model."))])
    cfg.model.method = method
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.data)
    return save_checkpoint(path, {"model": model.state_dict(), "config": to_dict(cfg)})


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("overlay-ckpt")
    return {m: _ckpt(root / f"{m}.pt", m) for m in ("contrastive", "avolnet", "l3")}


def _overlay(video, ckpt, out, *extra) -> int:
    return cli(["overlay", str(video), "--checkpoint", str(ckpt), "-o", str(out), *extra])


def _rms(x: torch.Tensor, parts: int = 4) -> np.ndarray:
    return np.array([float(c.pow(2).mean().sqrt()) for c in x.chunk(parts)])


def test_overlay_video(ckpts, media_factory: MediaFactory, tmp_path, capsys):
    video = media_factory("in 6ch é.mp4", duration=2.0, channels=6)
    out, sheet = tmp_path / "out.mp4", tmp_path / "sheet.png"
    assert _overlay(video, ckpts["contrastive"], out, "--png", str(sheet)) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] == 50 and summary["fps"] == 25.0
    src, got = probe(video), probe(out)
    assert abs(got.duration - src.duration) <= 1 / 25
    assert (got.width, got.height, got.fps, got.n_frames) == (64, 48, 25.0, 50)
    assert got.video_codec == "h264" and got.audio_codec == "aac"
    assert got.audio_channels == 2 and got.audio_rate == src.audio_rate
    assert Image.open(sheet).format == "PNG" and not list(tmp_path.glob(".*tmp*"))

    # an existing output is kept unless --force
    stamp = out.stat().st_mtime_ns
    assert _overlay(video, ckpts["contrastive"], out) == 2
    assert "exists (pass --force" in capsys.readouterr().err and out.stat().st_mtime_ns == stamp


def test_overlay_heatmaps_see_the_frames_evaluation_sees(
    ckpts, media_factory: MediaFactory, tmp_path, capsys, monkeypatch
):
    """The shown frames are resized for people (AREA, at --max-side); the model's input is
    resized as index and query resize it, from the same decoded frame."""
    video = media_factory("seen.mp4", duration=1.0)
    seen = []

    def spy(model, x, *args, **kwargs):
        seen.append(x.clone())
        return real(model, x, *args, **kwargs)

    real = overlay_module.heatmaps
    monkeypatch.setattr(overlay_module, "heatmaps", spy)
    assert _overlay(video, ckpts["contrastive"], tmp_path / "o.mp4", "--fps", "5") == 0
    s = load_config(None, [t for t in TINY if t.startswith("data.")]).data.frame_size
    times = np.arange(5) / 5
    expected = frames_to_input(
        torch.from_numpy(np.stack(list(iter_frames_at(video, times, (s, s))))), s
    )
    torch.testing.assert_close(torch.cat(seen), expected, rtol=0, atol=0)
    area = list(iter_frames_at(video, times, (s, s), interpolation="AREA"))
    assert not torch.equal(frames_to_input(torch.from_numpy(np.stack(area)), s), expected)


def test_overlay_keeps_the_sound(ckpts, media_factory: MediaFactory, tmp_path, capsys):
    video = media_factory("mono.mp4", duration=2.0, size=(40, 60))
    out = tmp_path / "o.mp4"
    assert _overlay(video, ckpts["avolnet"], out, "--fps", "10", "--max-side", "30") == 0
    capsys.readouterr()
    got = probe(out)
    assert (got.width, got.height, got.audio_channels, got.n_frames) == (30, 20, 1, 20)
    a, b = read_audio(video, 0, 1.9, 16000), read_audio(out, 0, 1.9, 16000)
    # the rising 440 Hz ramp survives AAC: same loudness envelope, and it still rises
    np.testing.assert_allclose(_rms(b), _rms(a), rtol=0.15)
    assert np.all(np.diff(_rms(b)) > 0)

    short = tmp_path / "new" / "folder" / "m.mp4"  # the output's folders are made
    assert _overlay(video, ckpts["contrastive"], short, "--max-seconds", "0.6") == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["frames"] == 15
    assert probe(short).duration == pytest.approx(0.6, abs=0.04)


def test_overlay_audio_keeps_its_start_time(ckpts, media_factory: MediaFactory, tmp_path, capsys):
    # a track that starts 0.08 s after the picture stays 0.08 s after it (it was muxed at 0);
    # its AAC priming (1,024 samples at 16 kHz) starts before its first sound
    video = delay_audio(media_factory("v.mp4", duration=2.0), tmp_path / "late.mp4", 0.144)
    with av.open(str(video)) as c:
        first = next(c.decode(audio=0)).time - c.start_time / 1e6
    assert first == pytest.approx(0.08, abs=1e-3)
    out = tmp_path / "o.mp4"
    assert _overlay(video, ckpts["contrastive"], out) == 0
    capsys.readouterr()
    a, b = read_audio(video, 0, 1.8, 16000), read_audio(out, 0, 1.8, 16000)
    assert float(a[:1200].abs().max()) < 1e-3 and float(b[:1200].abs().max()) < 1e-2
    np.testing.assert_allclose(_rms(b[1600:], 8), _rms(a[1600:], 8), rtol=0.15)


def test_overlay_refusals(ckpts, media_factory: MediaFactory, tmp_path, capsys):
    video = media_factory("v.mp4", duration=1.0)
    silent = media_factory("silent.mp4", duration=1.0, audio=False)
    cases = [
        ([video, ckpts["l3"], tmp_path / "a.mp4"], "method 'l3' has no localisation map"),
        ([silent, ckpts["contrastive"], tmp_path / "b.mp4"], "no audio stream"),
        ([video, ckpts["contrastive"], tmp_path / "c.avi"], "output must end in"),
        ([tmp_path / "none.mp4", ckpts["contrastive"], tmp_path / "d.mp4"], "no such file"),
    ]
    for args, reason in cases:
        assert _overlay(*args) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and reason in err and len(err.splitlines()) == 1, err
        assert not args[2].exists()
    # the input video and a second output are never overwritten, --force or not
    before = video.read_bytes()
    assert _overlay(video, ckpts["contrastive"], video, "--force") == 2
    assert "is the input video" in capsys.readouterr().err and video.read_bytes() == before
    assert _overlay(video, ckpts["contrastive"], video) == 2  # not "pass --force"
    assert "is the input video" in capsys.readouterr().err
    for flags in (["-o", ""], ["-o", str(tmp_path / "f.mp4"), "--png", ""]):  # unset variables
        assert cli(["overlay", str(video), "--checkpoint", str(ckpts["contrastive"]), *flags]) == 2
        assert capsys.readouterr().err.strip().endswith(": an empty file name")
    out = tmp_path / "e.mp4"
    assert _overlay(video, ckpts["contrastive"], out, "--png", str(out)) == 2
    assert "name the same file" in capsys.readouterr().err and not out.exists()
    # a frame rate under 1 once declared a 1-s excerpt 1,000 s long; an excerpt shorter than a
    # frame held no sound; a sheet is PNG whatever its name said
    bad = [
        (["--fps", "0.001"], "--fps must be in [1, 120], got 0.001"),
        (["--max-seconds", "1e-9"], "--max-seconds must be at least 0.1"),
        (["--png", str(tmp_path / "s.jpg")], "--png must end in .png"),
        (["--precision", "fp8"], "--precision must be auto|bf16|fp16|fp32, got 'fp8'"),
        (["--precision", "fp16"], "--precision=fp16 needs CUDA"),  # --device cpu
    ]
    for flags, reason in bad:
        assert _overlay(video, ckpts["contrastive"], out, *flags) == 2
        err = capsys.readouterr().err.strip()
        assert reason in err and len(err.splitlines()) == 1 and not out.exists(), err


def test_precision_help_names_what_is_accepted():
    # the help said auto | bf16 | fp32 while a bad value was told auto|bf16|fp16|fp32
    with pytest.raises(ConfigError) as err:
        check_precision("fp8", torch.device("cpu"), "--precision")
    accepted = re.search(r"must be (\S+),", str(err.value)).group(1).split("|")
    action = next(a for a in overlay_module._parser()._actions if "--precision" in a.option_strings)
    named = [w.strip() for w in re.sub(r"\([^)]*\)", "", action.help).split("|")]
    assert named == accepted and "fp16 (CUDA only" in action.help


def test_output_size_and_windows():
    assert output_size(270, 480, 480) == (270, 480)
    assert output_size(1080, 1920, 480) == (270, 480)
    assert output_size(101, 203, 100) == (50, 100)
    assert output_size(48, 64, 480) == (48, 64)
    seg = torch.arange(100).float()
    w = centred_windows(seg, 0.0, np.array([0.0, 0.5, 0.99]), 10, 0.4)  # 4-sample windows
    assert w.tolist() == [[0, 0, 0, 1], [3, 4, 5, 6], [8, 9, 10, 11]]  # clamped at the start


def test_blend_known_answers():
    lut = colormap_lut("gray")
    frames = torch.full((1, 4, 4, 3), 100, dtype=torch.uint8)
    maps = torch.tensor([[[0.0, 1.0], [3.0, 2.0]]])
    assert torch.equal(blend(frames, maps, lut, 0.0), frames)
    full = blend(frames, maps, lut, 1.0)[0, :, :, 0]
    assert full[3, 0] == 255 and full[0, 0] == 0  # hottest / coldest corners after min-max
    assert full[0, 3] < full[3, 3] < full[3, 0]  # the bilinear upsampling keeps the order
    half = blend(frames, maps, lut, 0.5)[0, 3, 0, 0]
    assert half == round(0.5 * 100 + 0.5 * 255)


@pytest.mark.shared_data
def test_overlay_real_videos(shared_data, ckpts, tmp_path, capsys):
    for name in ("big_buck_bunny_0_30.webm", "bigbuckbunny_6ch.mp4", "talking_head_a.mp4"):
        out = tmp_path / f"{name}.mp4"
        assert _overlay(shared_data / "videos" / name, ckpts["contrastive"], out,
                        "--fps", "5", "--max-seconds", "1.5", "--max-side", "160") == 0  # fmt: skip
        capsys.readouterr()
        got = probe(out)
        assert got.duration == pytest.approx(1.5, abs=0.2) and got.n_frames in (7, 8)
        assert max(got.width, got.height) == 160 and got.width % 2 == got.height % 2 == 0
        assert got.has_audio and got.audio_channels in (1, 2)
        rms_in = float(read_audio(shared_data / "videos" / name, 0.2, 1.0, 16000).pow(2).mean())
        rms_out = float(read_audio(out, 0.2, 1.0, 16000).pow(2).mean())
        # the sound is there (a 5.1 -> stereo downmix is louder than avssl's mean of 6 channels)
        assert rms_in > 0 and 0.2 < (rms_out / rms_in) ** 0.5 < 8


def test_unwritable_output_is_refused_before_the_work(ckpts, media_factory, tmp_path, capsys,
                                                      monkeypatch):  # fmt: skip
    # a read-only folder (which mode bits cannot show to root): the probe file cannot be made
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    video = media_factory("v.mp4", duration=1.0)
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    for extra in ([], ["--png", str(tmp_path / "s.png")]):
        out = tmp_path / "o.mp4"
        assert _overlay(video, ckpts["contrastive"], out, *extra) == 2
        err = capsys.readouterr().err
        assert err == f"error: {out}: cannot be written (Read-only file system)\n"
        assert not out.exists()


def test_sound_after_the_last_frame_adds_no_frame(ckpts, tmp_path, capsys):
    # the overlay repeated the last frame for as long as the sound went on
    from avssl.data.writer import write_video

    frames = np.stack([MediaFactory.bars(i, 48, 64) for i in range(50)])  # 2 s at 25 fps
    t = np.arange(40000) / 16000  # 2.5 s of sound
    video = write_video(
        tmp_path / "v.mp4", frames, 25.0, np.sin(440 * t)[None].astype(np.float32), 16000
    )
    out = tmp_path / "out.mp4"
    assert _overlay(video, ckpts["contrastive"], out) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["frames"] == 50
    assert probe(out).n_frames == 50


def test_a_track_starting_late_is_preceded_by_silence(ckpts, media_factory, tmp_path, capsys):
    # audio that starts 0.5 s after the picture was refused ("audio starts at 0.44 s, after the
    # window start") by overlay, and the whole file skipped by index
    from avssl.tools.stream_io import read_audio_padded

    video = delay_audio(media_factory("v.mp4", duration=2.0), tmp_path / "late.mp4", 0.56)
    with pytest.raises(MediaError, match="audio starts at"):
        read_audio(video, 0, 1.0, 16000)  # the training reader still refuses it
    wave = read_audio_padded(video, -0.25, 1.0, 16000, 2.5)
    assert wave.shape == (16000,) and float(wave[:11000].abs().max()) < 1e-3
    assert float(wave[13000:].abs().max()) > 0.05  # the tone, once the track has started
    out = tmp_path / "o.mp4"
    assert _overlay(video, ckpts["contrastive"], out) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["frames"] == 50


def test_the_default_frame_rate_is_at_least_one(ckpts, media_factory, tmp_path, capsys):
    # a 0.5-fps video: each heatmap heard 1 s of every 2 (--fps below 1 is refused)
    video = media_factory("slow.mp4", duration=4.0, fps=0.5)
    assert _overlay(video, ckpts["contrastive"], tmp_path / "o.mp4") == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["fps"] == 1.0 and res["frames"] == 4


def test_the_default_frame_rate_is_at_most_25_and_excerpts_round_to_whole_frames(
    ckpts, media_factory, tmp_path, capsys
):
    video = media_factory("fast.mp4", duration=1.0, fps=50.0)
    assert _overlay(video, ckpts["contrastive"], tmp_path / "o.mp4") == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["fps"] == 25.0 and res["frames"] == 25
    # 0.68 s at 10 fps is 6.8 frames: the nearest whole number, 7
    argv = ["--fps", "10", "--max-seconds", "0.68"]
    assert _overlay(video, ckpts["contrastive"], tmp_path / "p.mp4", *argv) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["frames"] == 7


def test_the_sheet_shows_frames_spread_over_the_whole_video(
    ckpts, media_factory, tmp_path, capsys, monkeypatch
):
    import avssl.tools.overlay_sheet as sheet_module

    shown = []
    monkeypatch.setattr(
        sheet_module, "contact_sheet", lambda path, frames, title: shown.extend(frames)
    )
    video = media_factory("v.mp4", duration=2.0)
    argv = ["--fps", "10", "--png", str(tmp_path / "s.png")]
    assert _overlay(video, ckpts["contrastive"], tmp_path / "o.mp4", *argv) == 0
    times = [round(float(t), 2) for t, _ in shown]
    assert times == [0.0, 0.3, 0.5, 0.8, 1.1, 1.4, 1.6, 1.9]  # 8 of 20 frames, first to last


def test_a_sheet_titled_with_maths_or_bytes_not_utf8(ckpts, media_factory, tmp_path, capsys):
    # matplotlib read "$^$" as maths (a traceback) and could not draw a name that is not UTF-8
    source = media_factory("source.mp4", duration=1.0)
    out, sheet = tmp_path / "o.mp4", tmp_path / "s.png"
    for raw in (b"x$^$.mp4", b"caf\xe9 $a$.mp4"):
        video = tmp_path / os.fsdecode(raw)
        shutil.copy(source, video)
        assert _overlay(video, ckpts["contrastive"], out, "--png", str(sheet), "--force") == 0
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["sheet"] == str(sheet)
        assert Image.open(sheet).format == "PNG"


def test_a_sheet_that_fails_replaces_no_output(ckpts, media_factory, tmp_path, capsys, monkeypatch):
    import avssl.tools.overlay_sheet as sheet_module

    def full_disk(path, *args, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    video = media_factory("v.mp4", duration=1.0)
    out, sheet = tmp_path / "o.mp4", tmp_path / "s.png"
    out.write_bytes(b"the user's video")
    sheet.write_bytes(b"the user's sheet")
    monkeypatch.setattr(sheet_module, "contact_sheet", full_disk)
    assert _overlay(video, ckpts["contrastive"], out, "--png", str(sheet), "--force") == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {sheet}: No space left on device", err
    assert out.read_bytes() == b"the user's video" and sheet.read_bytes() == b"the user's sheet"
    assert not list(tmp_path.glob(".*tmp*"))


def test_non_square_pixels_are_drawn_as_shown(ckpts, tmp_path, capsys):
    # a 96x64 picture of 2:1 pixels is shown 192x64: the overlay came out 96x64, squashed
    from fractions import Fraction

    video = tmp_path / "sar.mp4"
    with av.open(str(video), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 96, 64, "yuv420p"
        vs.codec_context.sample_aspect_ratio = Fraction(2, 1)
        aus = out.add_stream("aac", rate=16000, layout="mono")
        for i in range(25):
            frame = av.VideoFrame.from_ndarray(MediaFactory.bars(i, 64, 96), format="rgb24")
            out.mux(vs.encode(frame))
        t = np.arange(16000) / 16000
        wave = av.AudioFrame.from_ndarray(
            np.sin(440 * t)[None].astype(np.float32), format="fltp", layout="mono"
        )
        wave.sample_rate = 16000
        out.mux(aus.encode(wave))
        out.mux(vs.encode())
        out.mux(aus.encode())
    assert (probe(video).width, probe(video, shown=True).width) == (96, 192)
    o = tmp_path / "o.mp4"
    assert _overlay(video, ckpts["contrastive"], o) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["width"], summary["height"]) == (192, 64)
    assert (probe(o).width, probe(o).height) == (192, 64)
