"""What an audit of the benchmark scripts found: a traceback (leave-one-speaker-out with one
speaker), a result silently dropped (two configs of one name), a folder of videos stopped by
one file it cannot read or by two files of one stem, errors naming a temporary file instead of
the flag, a failed child reported as a bare exit 1, and flags without an upper bound that ran for
ever (``--repeats 1e23``) or filled the disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_bench_flags import _benchmark

from avssl.cli import run_guarded
from avssl.data.manifest import read_manifest
from avssl.errors import AvsslError
from avssl.tools.bench_data import folder_videos


@pytest.mark.parametrize(
    "name, argv, reason",
    [
        ("decode", ["--fps", "0.5"], "--fps: must be at least 1 (frames in a 1-s window), got 0.5"),
        ("decode", ["--windows", "10000000"], "--windows: must be at most 1,000,000"),
        ("overlay", ["--seconds", "0.01"], "--seconds: must be in [1, 600] s, got 0.01"),
        ("overlay", ["--seconds", "1e7"], "--seconds: must be in [1, 600] s, got 1e7"),
        ("late_frame", ["--minutes", "0.001"], "--minutes: must be in [0.01, 600], got 0.001"),
        ("late_frame", ["--minutes", "1e308"], "--minutes: must be in [0.01, 600], got 1e308"),
        ("late_frame", ["--repeats", "1001"], "--repeats: must be at most 1,000, got 1001"),
        ("relu_bf16", ["--repeats", "1" + "0" * 23], "--repeats: must be at most 1,000"),
        ("pair_items", ["--items", "2000000"], "--items: must be at most 1,000,000"),
        ("pair_items", ["--repeats", "5000"], "--repeats: must be at most 1,000"),
        ("query", ["--queries", "10000000000"], "--queries: must be at most 100,000"),
        ("classify", ["--clips", "100000000"], "--clips: must be at most 10,000"),
        ("cache_memory", ["--clips", "2,1000000000000"], "--clips: must be at most 100,000"),
        ("step_profile", ["--steps", "100000000000"], "--steps: must be at most 100,000"),
        ("train_throughput", ["--steps", "1" + "0" * 9], "--steps: must be at most 1,000,000"),
        ("avdigits_audio", ["--data", "m.jsonl", "--seed", str(2**70)], "--seed: must be at most"),
        ("avdigits_audio", ["--data", "m.jsonl", "--seed", "-1"], "--seed: must be at least 0"),
    ],
)
def test_out_of_range_flags_are_one_line_before_the_work(name, argv, reason, capsys):
    with pytest.raises(SystemExit) as stop:
        _benchmark(name).main(argv)
    out, err = capsys.readouterr()
    assert stop.value.code == 2 and out == ""
    (line,) = err.splitlines()
    assert line.startswith(f"error: {reason}") and line.endswith(f"(benchmarks/{name}.py --help)")


def test_train_throughput_keeps_both_configs_of_one_name(tmp_path, monkeypatch, capsys):
    module = _benchmark("train_throughput")
    monkeypatch.setattr(module, "clips_per_second", lambda cfg, p, steps, bs, **kw: 1.0)
    a, b = tmp_path / "a" / "c.yaml", tmp_path / "b" / "c.yaml"
    for path, text in ((a, "train:\n  lr: 0.001\n"), (b, "model:\n  embed_dim: 8\n")):
        path.parent.mkdir()
        path.write_text(text)  # neither sets a name: both are "default"
    assert module.main(["--config", str(a), str(b), "--steps", "1", "--batch-size", "2"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {str(a), str(b)} <= set(result) and "default" not in result
    with pytest.raises(SystemExit) as stop:  # the same file twice: one key, refused
        module.main(["--config", str(a), str(a)])
    assert stop.value.code == 2 and "a config is named twice" in capsys.readouterr().err


def test_a_folder_of_videos_skips_what_it_cannot_read(media_factory, tmp_path, capsys):
    good = media_factory("clip.mp4", duration=3.0)  # pair_items takes clips of 3 s
    media_factory("clip.webm", duration=3.0)  # the same stem
    (tmp_path / "README.md").write_text("not a video")
    (tmp_path / "empty.mp4").touch()
    (tmp_path / "sub").mkdir()
    found = folder_videos(tmp_path, 1.0)
    assert [p.name for p, _ in found] == ["clip.mp4", "clip.webm"]
    err = capsys.readouterr().err
    assert "skipping " in err and "README.md" in err and "empty.mp4" in err
    with pytest.raises(AvsslError, match="not a folder of videos"):
        folder_videos(good, 1.0)
    # pair_items once named rows by stem: clip.mp4 and clip.webm were one id twice
    manifest = _benchmark("pair_items").video_manifest(tmp_path, tmp_path / "m.jsonl")
    assert sorted(r.id for r in read_manifest(manifest)) == ["clip.mp4", "clip.webm"]


@pytest.mark.parametrize("name, count", [("decode", "--windows"), ("pair_items", "--items")])
def test_videos_naming_a_file_is_refused(name, count, media_factory, monkeypatch, capsys):
    module = _benchmark(name)
    if name == "decode":  # no default world to measure first
        monkeypatch.setattr(module, "world_dir", lambda cfg: media_factory.folder / "no-world")
    path = media_factory("clip.mp4", duration=1.5)
    assert run_guarded(module.main, ["--videos", str(path), count, "1"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"error: {path}: not a folder of videos"


def _fsdd_manifest(folder: Path, image: Path, speakers: list[str]) -> Path:
    rows = []
    for i, speaker in enumerate(speakers * 2):
        wav = folder / f"{i % 10}_{speaker}_{i}.wav"
        sf.write(wav, np.random.default_rng(i).normal(0, 0.1, 8000).astype(np.float32), 8000)
        rows.append({"id": f"r{i}", "image": str(image), "audio": str(wav), "split": "train"})
    path = folder / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_avdigits_audio_with_one_speaker_is_one_line_not_a_traceback(media_factory, capsys):
    manifest = _fsdd_manifest(media_factory.folder, media_factory("canvas.png"), ["george"])
    argv = ["--data", str(manifest), "--steps", "1", "--batch-size", "2"]
    assert run_guarded(_benchmark("avdigits_audio").main, argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {manifest}: train/val recordings of 1 speaker(s)")


def test_cache_memory_reports_a_failed_cache_in_one_line(tmp_path):
    build = _benchmark("cache_memory").build
    with pytest.raises(AvsslError) as err:  # was SystemExit: exit 1 and the child's stderr
        build(tmp_path / "none.jsonl", tmp_path / "cache", 1)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'cache'}: avssl cache failed: ")
    assert "none.jsonl" in message and "\n" not in message
