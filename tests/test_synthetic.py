"""The synthetic AV world: real decodable files, a valid manifest, determinism, and a pulse that
follows the sound (so one frame reveals timing and time-shifted audio is a detectable negative)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import av
import numpy as np
import pytest

from avssl import cli
from avssl.config import SynthConfig
from avssl.data import synth_render as sr
from avssl.data import synthetic
from avssl.data.manifest import read_manifest
from avssl.data.writer import rgb_to_yuv420p, write_video
from avssl.errors import ConfigError

# CLI defaults except the counts and duration, so `avssl synth` can rebuild the same world.
CFG = SynthConfig(n_train=4, n_val=1, n_test=1, duration=2.0)
CLI_ARGS = ["--n-train", "4", "--n-val", "1", "--n-test", "1", "--duration", "2", "--quiet"]


def decode(path):
    """uint8 ``[T, H, W, 3]`` frames, float ``[N]`` mono audio and the audio rate of a file."""
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    with av.open(str(path)) as container:
        rate = container.streams.audio[0].sample_rate
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    return frames, audio, rate


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    return synthetic.build_world(out, CFG, workers=1, progress=False)


def test_world_files_manifest_and_boxes(world):
    rows = read_manifest(world)
    assert [r.split for r in rows] == ["train"] * 4 + ["val", "test"]
    assert rows[0].id == "train-000000" and rows[0].video == "train/000000.mp4"
    info = json.loads((world.parent / "classes.json").read_text())
    assert info["names"] == [c.name for c in sr.class_specs(CFG.n_classes)]
    for row in rows:
        assert row.start == 0.0 and row.end == CFG.duration and row.audio is None
        assert len(row.labels) == 1 and row.labels[0] in info["names"]
        assert len(row.boxes["sources"]) == 1
        assert len(row.boxes["distractors"]) <= CFG.max_distractors
        for x0, y0, x1, y1 in row.boxes["sources"] + row.boxes["distractors"]:
            assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
            assert 0.2 < x1 - x0 < 0.4  # 22-32 % of the width, times the maximum pulse 1.1
        frames, audio, rate = decode(world.parent / row.video)
        assert frames.shape == (50, CFG.size, CFG.size, 3)
        assert rate == CFG.sample_rate and abs(len(audio) - 2 * CFG.sample_rate) <= 1024
        assert 0.3 < np.abs(audio).max() < 0.7  # peak-normalised to 0.5 before AAC
    assert not list(world.parent.rglob("*.tmp*"))


def test_cli_rebuilds_identically_with_two_workers(world, tmp_path, capsys):
    out = tmp_path / "again"
    assert cli.main(["synth", "--out", str(out), "--workers", "2", *CLI_ARGS]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {"manifest": str(out / "manifest.jsonl"), "clips": len(read_manifest(world))}
    assert (out / "manifest.jsonl").read_text() == world.read_text()
    # The rendered pictures and sounds are identical (each clip draws from its own seeded
    # generator; RGB -> YUV is done in numpy) and so are the decoded ones: x264's bytes may
    # differ between builds (about one clip in 100, even single-threaded), but the world is
    # encoded losslessly, so they decode to the same pixels.
    for row in read_manifest(world):
        frames_a, audio_a, _ = decode(world.parent / row.video)
        frames_b, audio_b, _ = decode(out / row.video)
        assert np.array_equal(audio_a, audio_b), row.id
        assert np.array_equal(frames_a, frames_b), row.id


def test_world_video_decodes_to_the_rendered_frames(world):
    """Lossless: the decoded YUV planes are exactly the rendered frames' (a lossy encode is off
    by a few levels on most pixels), which is what makes rebuilt worlds decode identically."""
    classes = sr.class_specs(CFG.n_classes)
    for row in read_manifest(world):
        split, index = row.split, int(row.id.rsplit("-", 1)[1])
        rng = synthetic.clip_rng(CFG.seed, split, index)
        clip = sr.render_clip(CFG, classes, index % CFG.n_classes, rng)
        with av.open(str(world.parent / row.video)) as container:
            planes = [f.to_ndarray(format="yuv420p") for f in container.decode(video=0)]
        assert np.array_equal(np.stack(planes), np.stack([rgb_to_yuv420p(f) for f in clip.frames]))


def test_cli_never_replaces_another_folder_without_force(world, tmp_path, capsys):
    # a world of other settings, and a folder of the user's own files: both refused, unchanged
    other = ["--n-train", "2", "--n-val", "1", "--n-test", "1", "--duration", "2", "--quiet"]
    before = world.read_text()
    assert cli.main(["synth", "--out", str(world.parent), *other]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a world of these settings" in err
    assert world.read_text() == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "manifest.jsonl").write_text("my own\n")
    assert cli.main(["synth", "--out", str(mine), *other]) == 2
    assert (mine / "manifest.jsonl").read_text() == "my own\n"
    assert cli.main(["synth", "--out", str(mine / "manifest.jsonl"), *other]) == 2
    assert "not a folder" in capsys.readouterr().err
    # the same settings reuse the world; --force builds anyway
    assert cli.main(["synth", "--out", str(world.parent), *CLI_ARGS]) == 0
    assert "reused" in capsys.readouterr().err and world.read_text() == before
    assert cli.main(["synth", "--out", str(mine), *other, "--force"]) == 0
    assert len(read_manifest(mine / "manifest.jsonl")) == 4


def test_ensure_world_caches_by_config(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AVSSL_CACHE", str(tmp_path))
    cfg = SynthConfig(n_train=2, n_val=1, n_test=1, duration=1.5, size=48)
    manifest = synthetic.ensure_world(cfg, workers=1, progress=False)
    assert manifest == synthetic.world_dir(cfg) / "manifest.jsonl"
    assert manifest.parent.parent == tmp_path / "synthetic"
    assert "built 4 clips" in capsys.readouterr().err
    stamp = manifest.stat().st_mtime_ns
    assert synthetic.ensure_world(cfg, workers=1, progress=False) == manifest
    assert "reused" in capsys.readouterr().err and manifest.stat().st_mtime_ns == stamp
    # the other ranks of a distributed run reuse it silently (rank 0 says it)
    assert synthetic.ensure_world(cfg, workers=1, progress=False, announce=False) == manifest
    assert capsys.readouterr().err == ""
    assert synthetic.world_dir(dataclasses.replace(cfg, seed=1)) != manifest.parent

    # a clip deleted (or emptied) since: the world is built again, not reused without it
    clip = manifest.parent / read_manifest(manifest)[1].video
    before = clip.read_bytes()
    for damage in (clip.unlink, lambda: clip.write_bytes(b"")):
        damage()
        assert synthetic.ensure_world(cfg, workers=1, progress=False) == manifest
        err = capsys.readouterr().err
        assert "1 clip(s) missing or empty" in err and "built 4 clips" in err
        assert "reused" not in err
        assert clip.read_bytes() == before  # the same world: lossless and seeded


def test_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("AVSSL_CACHE", str(tmp_path / "a"))
    assert synthetic.cache_root() == tmp_path / "a"
    monkeypatch.delenv("AVSSL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert synthetic.cache_root() == tmp_path / "xdg" / "avssl"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert synthetic.cache_root() == tmp_path / "home" / ".cache" / "avssl"


@pytest.mark.parametrize(
    "change",
    [{"n_classes": 1}, {"size": 95}, {"n_val": -1}, {"duration": 1e5}, {"size": 10**6}],
)
def test_bad_config(tmp_path, change):
    with pytest.raises(ConfigError):
        synthetic.build_world(tmp_path, dataclasses.replace(CFG, **change), 1, False)


def test_cli_refuses_a_clip_too_large_to_render_in_one_line(tmp_path, capsys):
    """Rendered whole in memory, a 100,000-s clip would ask numpy for 64 GB of frames (a
    MemoryError traceback before): refused first, and no folder is made."""
    out = tmp_path / "big"
    assert cli.main(["synth", "--out", str(out), "--duration", "1e5", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --duration: a clip of 100000 s needs") and "\n" not in err
    longest = float(err.rsplit("at most ", 1)[1].split()[0])  # the longest clip it renders
    assert cli.main(["synth", "--out", str(out), "--duration", str(longest + 1)]) == 2
    assert synthetic.clip_gib(dataclasses.replace(CFG, duration=longest)) <= synthetic.MAX_CLIP_GIB
    assert not out.exists()


def test_class_specs_distinct():
    specs = sr.class_specs(len(sr.SHAPES))
    for attr in ("name", "rgb", "pitch"):
        assert len({getattr(s, attr) for s in specs}) == len(specs)
    assert specs[0].pitch == 200 and specs[-1].pitch == 1600


@pytest.mark.parametrize("shape", sr.SHAPES)
def test_shape_fills_its_box(shape):
    r = 20
    y, x = np.mgrid[-32:32, -32:32] + 0.5
    cov = sr.coverage(sr.shape_sdf(shape, x, y, r))
    assert cov[np.maximum(abs(x), abs(y)) > r + 1].max() == 0  # nothing outside the box
    assert 0.25 < cov.sum() / (2 * r) ** 2 <= 1.0
    rows, cols = np.nonzero(cov > 0.5)
    assert rows.max() - rows.min() >= 2 * r - 3 and cols.max() - cols.min() >= 2 * r * 0.75


def _rms_at(audio, times, rate, window=0.02):
    """RMS of the ``window`` s of audio ending at each time. ``[len(times)]``."""
    ends = np.round(times * rate).astype(int)
    n = int(window * rate)
    return np.array([np.sqrt(np.mean(audio[max(e - n, 0) : max(e, 1)] ** 2)) for e in ends])


def test_pulse_follows_sound(tmp_path):
    """Decoded sounding-object brightness tracks the audio RMS envelope, not the shifted audio."""
    cfg = SynthConfig(duration=6.0)
    classes = sr.class_specs(cfg.n_classes)
    aligned, shifted = [], []
    for label in range(cfg.n_classes):
        clip = sr.render_clip(cfg, classes, label, np.random.default_rng([7, label]))
        path = write_video(tmp_path / f"{label}.mp4", clip.frames, cfg.fps, clip.audio, 16000)
        frames, audio, rate = decode(path)
        x0, y0, x1, y1 = (np.array(clip.sources[0]) * cfg.size).round().astype(int)
        bright = frames[:, y0:y1, x0:x1].astype(float).mean(axis=(1, 2, 3))
        rms = _rms_at(audio, np.arange(len(frames)) / cfg.fps, rate)
        lag = cfg.fps  # one second
        aligned.append(np.corrcoef(bright, rms)[0, 1])
        shifted.append(np.corrcoef(bright[:-lag], rms[lag:])[0, 1])
    assert min(aligned) > 0.7 and np.mean(aligned) > 0.85, aligned
    assert abs(np.mean(shifted)) < 0.25 and max(shifted) < min(aligned), shifted


def test_concurrent_ensure_builds_once(tmp_path, monkeypatch, capsys):
    """Two callers at once (e.g. two DDP ranks): one builds under the lock, the other reuses."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setenv("AVSSL_CACHE", str(tmp_path))
    cfg = SynthConfig(n_train=2, n_val=1, n_test=1, duration=1.5, size=48)
    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(lambda _: synthetic.ensure_world(cfg, 1, False), range(2)))
    assert paths[0] == paths[1] and len(read_manifest(paths[0])) == 4
    err = capsys.readouterr().err
    assert err.count("built 4 clips") == 1 and err.count("reused") == 1


def test_distractor_boxes_fit_the_drawn_distractors():
    cfg = SynthConfig()
    classes, size = sr.class_specs(cfg.n_classes), cfg.size
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    ratios = []
    for i in range(12):
        label = i % cfg.n_classes
        clip = sr.render_clip(cfg, classes, label, synthetic.clip_rng(0, "train", i))
        frame = clip.frames[0].astype(np.float64) / 255
        for box in clip.distractors:
            x0, y0, x1, y1 = np.asarray(box) * size
            inside = (abs(xx - (x0 + x1) / 2) < (x1 - x0) / 2 + 2) & (
                abs(yy - (y0 + y1) / 2) < (y1 - y0) / 2 + 2
            )
            drawn = max(  # the pixels of the distractor's colour (0.6 of its class colour)
                (inside & (np.abs(frame - 0.6 * np.asarray(c.rgb)).max(-1) < 0.1) for c in classes),
                key=np.sum,
            )
            ys, xs = np.nonzero(drawn)
            ratios.append((x1 - x0) / (xs.max() + 1 - xs.min()))
    assert ratios and min(ratios) > 0.9 and max(ratios) < 1.2  # 1.3-1.6 when drawn at MAX_SCALE


@pytest.mark.parametrize(
    "flags,reason",
    [
        (["--n-train", "1000000000000"], "--n-train: must be at most 1,000,000"),  # memory ran out
        (["--n-val", "-1"], "--n-val: must be at least 0"),
        (["--duration", "1e-9"], "--duration: must be at least 0.08 s (two frames)"),  # traceback
        (["--duration", "0.001"], "--duration: must be at least 0.08 s"),  # a clip without video
        (["--workers", "0"], "--workers: must be at least 1"),
    ],
)
def test_cli_refuses_sizes_it_cannot_build(tmp_path, capsys, flags, reason):
    out = tmp_path / "w"
    try:
        code = cli.main(["synth", "--out", str(out), *flags, "--quiet"])
    except SystemExit as stop:  # argparse's refusals
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {reason}") and "\n" not in err, err
    assert not out.exists()


def test_a_world_of_no_clip_is_refused(tmp_path, capsys):
    out = tmp_path / "w"
    argv = ["synth", "--out", str(out), "--n-train", "0", "--n-val", "0", "--n-test", "0"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --n-train, --n-val, --n-test: a world needs at least one clip"
    assert not out.exists()


def test_an_interrupted_build_is_completed_by_a_rerun(world, tmp_path, capsys):
    # it was refused as "not a world of these settings" (its manifest is written last)
    out = tmp_path / "w"
    shutil.copytree(world.parent, out)
    (out / "manifest.jsonl").unlink()
    (out / "classes.json").unlink()
    next((out / "train").iterdir()).unlink()
    assert cli.main(["synth", "--out", str(out), *CLI_ARGS]) == 0
    assert (out / "manifest.jsonl").read_text() == world.read_text()
    capsys.readouterr()
    (out / "manifest.jsonl").unlink()
    (out / "train" / "notes.txt").write_text("mine")  # not a world's file: still refused
    assert cli.main(["synth", "--out", str(out), *CLI_ARGS]) == 2
    assert "not a world of these settings" in capsys.readouterr().err


@pytest.mark.parametrize("rate", [9000, 20000, 100000, 384000])
def test_a_rate_aac_cannot_encode_is_refused_in_one_line(tmp_path, capsys, rate):
    """The clips' AAC track takes only MPEG-4 audio's rates: any other (20 kHz, or anything past
    96 kHz) was an ``av.error.ArgumentError`` traceback from the first clip's encoder."""
    with pytest.raises(ConfigError, match=rf"^data.synthetic.sample_rate: {rate} Hz"):
        synthetic.build_world(tmp_path / "w", dataclasses.replace(CFG, sample_rate=rate), 1, False)
    runs = ["--set", f"train.runs_dir={tmp_path / 'runs'}", "--no-progress"]
    args = ["train", "--set", f"data.synthetic.sample_rate={rate}", *runs]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: data.synthetic.sample_rate:") and "\n" not in err
    assert not list(tmp_path.glob("runs/*"))  # no run folder left
