"""Bad media at every entry point (issue 8).

Commands about one file (``inspect``, ``evaluate sync --video``, ``query --audio/--image/--video``,
``overlay``) must answer each case with a correct result or one ``error: FILE: reason`` line and
exit status 2. Commands over a dataset (``train``, ``evaluate avc/retrieval/localize/sync/
classify``, ``index``, ``prepare``) must skip, count and list each bad item with its reason in
their JSON summary and go on; ``--strict`` (where it exists) turns the first one into an error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import TINY, MediaFactory
from PIL import Image

import evaluate
import train
from avssl.cli import main as cli
from avssl.data.manifest import Row, write_manifest
from avssl.data.writer import write_video
from avssl.eval.audio_sets import MEDIA_EXTS

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


def _run(capsys, fn, argv: list[str]) -> tuple[int, str, str]:
    """``fn(argv)`` in-process: ``(exit status, stdout, stderr)``; a traceback fails the test."""
    code = fn(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out, err
    return code, out, err


def _one_line_error(code: int, out: str, err: str, path: Path, reason: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and out == "", (code, out, err)
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {path}: ") and reason in lines[0], lines[0]


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def ckpt(tiny_cache, tmp_path_factory) -> Path:
    """One tiny trained contrastive checkpoint (spatial map, shared space) for the module."""
    runs = tmp_path_factory.mktemp("rel-runs")
    sets = [*TINY, "train.steps=2", "train.eval_every=2", f"train.runs_dir={runs}"]
    assert train.main([a for s in sets for a in ("--set", s)] + ["--no-progress"]) == 0
    return next(runs.glob("*/last.pt"))


@pytest.fixture(scope="module")
def world(tmp_path_factory, ckpt) -> dict:
    """Every case written once, and an index of one good video to query."""
    root = tmp_path_factory.mktemp("rel-media")
    mf = MediaFactory(root)
    paths = {c.name: c.make(mf) for c in CASES}
    good = MediaFactory(tmp_path_factory.mktemp("rel-good"))("good.mp4", duration=2.0)
    index = root / "index"
    argv = ["index", "--checkpoint", str(ckpt), "--inputs", str(good), "--out", str(index)]
    assert cli([*argv, "--quiet"]) == 0
    return {"root": root, "paths": paths, "index": index}


def _commands(ckpt: Path, index: Path, path: str, out: Path) -> dict[str, tuple]:
    query = ["query", "--index", str(index), "--checkpoint", str(ckpt), "--json", "-k", "1"]
    return {
        "inspect": (cli, ["inspect", path]),
        "sync": (evaluate.main, ["sync", "--checkpoint", str(ckpt), f"--video={path}",
                                 "--max-offset", "0.2", "--times", "2", "--no-progress"]),
        "query_audio": (cli, [*query, f"--audio={path}"]),
        "query_image": (cli, [*query, f"--image={path}"]),
        "query_video": (cli, [*query, f"--video={path}"]),
        "overlay": (cli, ["overlay", "--checkpoint", str(ckpt), "-o", str(out), "--fps", "5",
                          "--max-seconds", "1", "--max-side", "64", "--force", "--", path]),
    }  # fmt: skip


def _check_result(command: str, out: str, overlay: Path) -> None:
    """A successful run printed a sensible JSON result."""
    res = _last_json(out)
    if command == "inspect":
        assert res["decodable"] is True and (res["has_video"] or res["has_audio"])
    elif command == "sync":
        assert abs(res["offset_s"]) <= 0.2 + 1e-9 and np.isfinite(res["confidence"])
        assert np.isfinite(res["curve"]).all()
    elif command.startswith("query"):
        assert len(res["results"]) == 1 and np.isfinite(res["results"][0]["score"])
    else:
        assert res["frames"] >= 1 and overlay.is_file() and overlay.stat().st_size > 0


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_one_file_commands(case: Case, ckpt, world, tmp_path, capsys):
    path = world["paths"][case.name]
    overlay = tmp_path / "overlay.mp4"
    for command, (fn, argv) in _commands(ckpt, world["index"], str(path), overlay).items():
        overlay.unlink(missing_ok=True)
        code, out, err = _run(capsys, fn, argv)
        reason = case.errors.get(command, OK)
        if reason is OK:
            assert code == 0, (command, err)
            _check_result(command, out, overlay)
        else:
            _one_line_error(code, out, err, path, reason)
            assert not overlay.exists(), command


def test_leading_dash_names(ckpt, world, tmp_path, capsys, monkeypatch):
    """A relative name starting with a dash, given after ``--`` or as ``--flag=NAME``."""
    MediaFactory(tmp_path)("-dash é.mp4")
    monkeypatch.chdir(tmp_path)
    for command, (fn, argv) in _commands(
        ckpt, world["index"], "-dash é.mp4", tmp_path / "o.mp4"
    ).items():
        if command == "inspect":
            argv = ["inspect", "--", "-dash é.mp4"]
        code, out, err = _run(capsys, fn, argv)
        assert code == 0, (command, err)
        _check_result(command, out, tmp_path / "o.mp4")
    code, out, err = _run(capsys, cli, ["inspect", "--", "-missing.mp4"])
    _one_line_error(code, out, err, Path("-missing.mp4"), "no such file")


@pytest.mark.parametrize(
    "args,reason",
    [
        (["--sample-rate", str(10**7)], "invalid sample rate"),
        (["--duration", "601"], "exceeds the 600 s limit"),
        (["--size", "5000"], "output size 5000x5000 outside the limit"),
        (["--fps", "5000"], "invalid fps"),
        (["--start", "-1"], "invalid window start"),
    ],
)
def test_decoding_limits_through_inspect(media_factory, capsys, args, reason):
    path = media_factory("clip.mp4", duration=1.0)
    code, out, err = _run(capsys, cli, ["inspect", str(path), *args])
    _one_line_error(code, out, err, path, reason)


@pytest.mark.shared_data
def test_shared_videos_through_one_file_commands(shared_data, ckpt, world, tmp_path, capsys):
    """The real oddities (6-channel AAC, VP8/Vorbis WebM, odd sizes) give correct results."""
    videos = sorted((shared_data / "videos").iterdir())
    for path in videos:
        overlay = tmp_path / f"{path.stem}.mp4"
        for command, (fn, argv) in _commands(ckpt, world["index"], str(path), overlay).items():
            code, out, err = _run(capsys, fn, argv)
            assert code == 0, (path.name, command, err)
            _check_result(command, out, overlay)


# ---- commands over a dataset --------------------------------------------------------------------

BOX = {"sources": [[0.25, 0.25, 0.75, 0.75]]}


@pytest.fixture(scope="module")
def mixed(world) -> dict:
    """A manifest of the good clips spread over the splits plus every bad case in each split."""
    paths = world["paths"]
    good = [c for c in CASES if c.train_ok]
    bad = [c for c in CASES if not c.train_ok]
    splits = ["train"] * 5 + ["val"] * 3 + ["test"] * (len(good) - 8)
    rows = []
    for c, split in zip(good, splits, strict=True):
        box = BOX if split == "test" else None
        rows.append(Row(c.name, video=paths[c.name].name, split=split, labels=["a"], boxes=box))
    for split in ("train", "val", "test"):
        for c in bad:
            key = "image" if paths[c.name].suffix == ".png" else "video"
            box = BOX if split == "test" else None
            rows.append(Row(f"{split}/{c.name}", **{key: paths[c.name].name}, split=split,
                            labels=["a"], boxes=box))  # fmt: skip
    manifest = world["root"] / "mixed.jsonl"
    write_manifest(manifest, rows)
    return {"manifest": manifest, "bad": [c.name for c in bad], "n_test": splits.count("test")}


def _ids(items: list[dict], prefix: str = "") -> set[str]:
    return {item["id"].removeprefix(prefix) for item in items}


def test_train_skips_lists_and_strict(mixed, tmp_path, capsys):
    sets = [*TINY, "train.steps=2", "train.eval_every=2", "train.batch_size=2",
            f"train.runs_dir={tmp_path}", f"data.root={mixed['manifest']}"]  # fmt: skip
    argv = [a for s in sets for a in ("--set", s)] + ["--no-progress"]
    code, out, err = _run(capsys, train.main, argv)
    assert code == 0, err
    summary = _last_json(out)
    assert summary["step"] == 2 and summary["n_skipped"] == 2 * len(mixed["bad"])
    for split in ("train", "val"):
        items = [s for s in summary["skipped"] if s["split"] == split]
        assert _ids(items, f"{split}/") == set(mixed["bad"])
    reasons = {s["id"]: s["reason"] for s in summary["skipped"]}
    assert "no such file" in reasons["train/missing"]
    assert "no audio stream" in reasons["train/no audio stream"]
    assert "shorter than the 1-s window" in reasons["val/shorter than a window"]
    code, out, err = _run(capsys, train.main, [*argv, "--strict"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--strict" in err, err
    assert err.startswith("error: ") and "missing.mp4: no such file" in err


@pytest.mark.parametrize("sub", ["avc", "retrieval", "localize", "sync"])
def test_evaluate_skips_lists_and_strict(sub, ckpt, mixed, capsys):
    argv = [sub, "--checkpoint", str(ckpt), "--data", str(mixed["manifest"]), "--no-progress"]
    if sub == "sync":
        argv += ["--max-offset", "0.2", "--times", "2"]
    code, out, err = _run(capsys, evaluate.main, argv)
    assert code == 0, err
    res = _last_json(out)
    items = res["skipped"] if sub == "sync" else res["skipped_items"]
    count = res["n_skipped"] if sub == "sync" else res["skipped"]
    assert count == len(mixed["bad"]) and _ids(items, "test/") == set(mixed["bad"])
    assert all(item["reason"] for item in items)
    assert res["n"] == (mixed["n_test"] * 4 if sub == "avc" else mixed["n_test"])
    code, out, err = _run(capsys, evaluate.main, [*argv, "--strict"])
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ") and "missing.mp4: no such file" in err


UNDECODABLE = {"empty", "not media", "truncated mp4", "over the pixel limit"}


def test_index_skips_lists_and_strict(ckpt, world, tmp_path, capsys):
    argv = ["index", "--checkpoint", str(ckpt), "--inputs", str(world["root"]), "--quiet"]
    code, out, err = _run(capsys, cli, [*argv, "--out", str(tmp_path / "a")])
    assert code == 0, err
    summary = _last_json(out)
    listed = {Path(s["path"]).name for s in summary["skipped_files"]}
    want = {world["paths"][name].name for name in UNDECODABLE}
    assert listed == want and summary["skipped"] == len(want)
    code, out, err = _run(capsys, cli, [*argv, "--out", str(tmp_path / "b"), "--strict"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err


def test_classify_skips_lists_and_strict(world, tmp_path, capsys):
    """A folder dataset whose classes hold good and bad files (log-mel features: no model)."""
    root = tmp_path / "sounds"
    for k, path in enumerate(world["paths"].values()):
        folder = root / ("a" if k % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        if path.exists():
            (folder / path.name).symlink_to(path)
    argv = ["classify", "--dataset", "folder", "--root", str(root), "--features", "logmel",
            "--folds", "2", "--no-progress"]  # fmt: skip
    code, out, err = _run(capsys, evaluate.main, argv)
    assert code == 0, err
    res = _last_json(out)
    listed = {Path(s["path"]).name for s in res["skipped"]}
    # listed by extension (images and raw .h264 are not sound files); then skipped when undecodable
    # or without an audio stream
    bad = {"empty", "not media", "truncated mp4", "no audio stream"}
    assert listed == {world["paths"][n].name for n in bad}
    n_listed = sum(p.suffix in MEDIA_EXTS for p in world["paths"].values() if p.exists())
    assert res["n_skipped"] == len(bad) and res["n_clips"] == n_listed - len(bad)
    code, out, err = _run(capsys, evaluate.main, [*argv, "--strict"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err


def test_prepare_skips_lists_and_strict(world, tmp_path, capsys):
    """``avssl prepare vggss --probe`` test-decodes every row and reports the bad ones."""
    media = tmp_path / "media"
    media.mkdir()
    for path in world["paths"].values():
        if path.exists():
            (media / path.name).symlink_to(path)
    entries = [{"file": p.stem, "class": "a", "bbox": [[0.1, 0.1, 0.5, 0.5]]}
               for p in world["paths"].values()]  # fmt: skip
    ann = tmp_path / "vggss.json"
    ann.write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")
    argv = ["prepare", "vggss", "--annotations", str(ann), "--media", str(media), "--probe"]
    code, out, err = _run(capsys, cli, [*argv, "--out", str(tmp_path / "out")])
    assert code == 0, err
    report = _last_json(out)
    full = json.loads((tmp_path / "out" / "prepare_report.json").read_text(encoding="utf-8"))
    # items with no video (and no image + sound pair) are "missing"; bad files "unreadable"
    missing = {item for item, _ in full["missing_items"]}
    assert missing == {"missing", "tone", "huge", "still", "unknown duration"}
    unreadable = {item: reason for item, reason in full["unreadable_items"]}
    assert unreadable.keys() == {"empty", "notes", "truncated", "mute"}
    assert unreadable["mute"] == "no audio stream" and unreadable["empty"] == "empty file"
    assert (report["missing"], report["unreadable"]) == (len(full["missing_items"]), 4)
    assert report["written"] + report["missing"] + report["unreadable"] == len(entries)
    code, out, err = _run(capsys, cli, [*argv, "--out", str(tmp_path / "s"), "--strict"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--strict" in err, err


def test_cache_skips_lists_and_strict(mixed, tmp_path, capsys):
    sets = [*TINY, f"data.root={mixed['manifest']}"]
    argv = ["cache", "--no-progress"] + [a for s in sets for a in ("--set", s)]
    code, out, err = _run(capsys, cli, [*argv, "--out", str(tmp_path / "shards")])
    assert code == 0, err
    summary = _last_json(out)
    n_rows = len(mixed["manifest"].read_text().splitlines())
    assert summary["written"] + summary["n_skipped"] == n_rows
    skipped = {s["id"] for s in summary["skipped"]}
    for split in ("train", "val", "test"):  # what cannot be decoded is skipped in every split
        mine = {i.removeprefix(f"{split}/") for i in skipped if i.startswith(f"{split}/")}
        assert mine and mine <= set(mixed["bad"]) and "missing" in mine
    assert all(s["reason"] for s in summary["skipped"])
    # training from the cache skips exactly what training from the media skips
    train_sets = [*sets, "train.steps=2", "train.eval_every=2", "train.batch_size=2"]
    runs = {}
    for name, extra in (("media", []), ("cache", [f"data.cache={tmp_path / 'shards'}"])):
        targs = [*train_sets, *extra, f"train.runs_dir={tmp_path / name}"]
        code, out, err = _run(capsys, train.main, [a for s in targs for a in ("--set", s)])
        assert code == 0, err
        runs[name] = {(s["split"], s["id"]) for s in _last_json(out)["skipped"]}
    assert runs["media"] == runs["cache"]
    code, out, err = _run(capsys, cli, [*argv, "--out", str(tmp_path / "strict"), "--strict"])
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ")
