"""The tools refuse bad input in one line instead of answering wrongly: a query time past the
decodable video of a truncated file, a damaged shard on resume (redone), a damaged index tensor
file, a file name holding a newline, and a huge number echoed as hundreds of digits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import av
import pytest
import torch
from bad_media import last_json
from conftest import TINY, MediaFactory

import train
from avssl.cli import main as cli
from avssl.cli import one_line
from avssl.config import load_config
from avssl.data import media
from avssl.data.shards import read_index
from avssl.data.source import load_split
from avssl.errors import AvsslError, MediaError
from avssl.tools.index import FORMAT, Index, empty_tensors, load_index, save_index
from avssl.tools.query import query_input
from avssl.tools.stream_io import iter_frames_at

SETS = [a for s in TINY for a in ("--set", s)]


def _one_error(capsys) -> str:
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_cache) -> Path:
    root = tmp_path_factory.mktemp("ckpt")
    sets = [*TINY, "train.steps=2", "train.eval_every=2", f"train.runs_dir={root / 'runs'}"]
    assert train.main([a for s in sets for a in ("--set", s)] + ["--no-progress"]) == 0
    return next((root / "runs").glob("*/last.pt"))


# ------------------------------------------------ 1. a query time past the decodable video


def _cut_faststart(mf: MediaFactory, audio: bool = True) -> Path:
    """A 10-s mp4 with its index first (faststart), cut in half: the header declares 10 s."""
    whole = mf("whole.mp4", duration=10.0, audio=audio)
    fast = mf.folder / "fast.mp4"
    with (
        av.open(str(whole)) as src,
        av.open(str(fast), "w", options={"movflags": "faststart"}) as dst,
    ):
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)
    data = fast.read_bytes()
    cut = mf.folder / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    return cut


def _last_frame(path: Path) -> tuple[int, float]:
    """``(index, time)`` of the last frame that decodes from ``path`` (frame ``i`` at
    ``i / 25`` s shows ``i`` as bars)."""
    with av.open(str(path)) as c:
        last = max(float(f.time) for f in c.decode(video=0))
    return round(last * 25) % 256, last


def test_query_time_after_a_truncated_video_is_refused(media_factory, ckpt, tmp_path, capsys):
    cut = _cut_faststart(media_factory)
    n, last = _last_frame(cut)
    assert last < 6.0 and media.probe(cut).duration == pytest.approx(10.0)
    end = last + 0.04  # the last frame shows for one frame period (25 fps)
    # inside the last frame's display time: the last frame, as before
    frame = next(iter_frames_at(cut, [end - 0.01], asked="--at"))
    assert MediaFactory.frame_index(torch.from_numpy(frame)) == n
    # past it: refused, naming what asked; without `asked` the old padding stays (overlay)
    with pytest.raises(MediaError, match=rf"decodable video ends at {end:.2f} s, before --at 7 s"):
        next(iter_frames_at(cut, [7.0], asked="--at"))
    padded = next(iter_frames_at(cut, [7.0]))
    assert MediaFactory.frame_index(torch.from_numpy(padded)) == n
    cfg = load_config(None, TINY)
    info = media.probe(cut)
    with pytest.raises(MediaError, match="the middle of the file at 5 s"):
        query_input(cfg, cut, "visual", info, 5.0, "the middle of the file at")
    whole = media_factory("whole3.mp4", duration=3.0)  # the end of a whole file still works
    assert query_input(cfg, whole, "visual", media.probe(whole), 3.0).shape == (1, 3, 32, 32)

    # the command: one line, exit 2
    indexed = media_factory("indexed.mp4", duration=2.0)
    idx = tmp_path / "idx"
    assert cli(["index", "--checkpoint", str(ckpt), "--inputs", str(indexed), "--out", str(idx),
                "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    query = [
        "query",
        "--index",
        str(idx),
        "--checkpoint",
        str(ckpt),
        "--image",
        str(cut),
        "-k",
        "1",
    ]
    assert cli([*query, "--at", "7.0", "--json"]) == 2
    line = _one_error(capsys)
    assert (
        line == f"error: {cut}: decodable video ends at {end:.2f} s, before --at 7 s (truncated?)"
    )
    assert cli([*query, "--at", f"{last:.2f}", "--json"]) == 0
    assert last_json(capsys.readouterr().out)["query"]["time"] == pytest.approx(last, abs=0.01)


# ------------------------------------------------------ 2. a damaged shard on resume


def test_resume_redoes_a_truncated_shard(tiny_cache, tmp_path, capsys):
    out = tmp_path / "cache"
    args = ["cache", "--out", str(out), *SETS, "--no-progress", "--shard-size", "5"]
    assert cli(args) == 0
    before = read_index(out)
    shard = out / before["shards"][1]["name"]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # e.g. a cut-short copy
    capsys.readouterr()

    assert cli(args) == 0
    captured = capsys.readouterr()
    summary = last_json(captured.out)
    assert summary["redone_shards"] == 1 and summary["written"] == before["shards"][1]["n"]
    assert summary["resumed"] == before["n_samples"] - summary["written"]
    [warning] = [line for line in captured.err.splitlines() if "shard" in line]
    assert warning.startswith(f"warning: {out}: 1 damaged shard(s) deleted")
    assert f"{shard.name} (" in warning
    after = read_index(out)
    assert sorted(i for s in after["shards"] for i in s["ids"]) == sorted(
        i for s in before["shards"] for i in s["ids"]
    )
    for s in after["shards"]:
        assert (out / s["name"]).stat().st_size == s["bytes"]
    data = load_config(None, [*TINY, f"data.cache={out}"]).data
    assert len(load_split(data, "train", True, progress=False).store) == 12  # reads back
    assert cli(args) == 0 and last_json(capsys.readouterr().out)["redone_shards"] == 0


# ------------------------------------------------------ 3. a damaged index tensor file


def _saved_index(path: Path) -> Path:
    tensors = empty_tensors(8)
    tensors["visual"] = torch.randn(3, 8).half()
    tensors["visual_file"], tensors["visual_time"] = torch.zeros(3, dtype=torch.long), torch.ones(3)
    meta = {"format": FORMAT, "checkpoint": {"path": "c.pt", "sha256": "0" * 64}}
    save_index(Index(path, meta, [{"path": "a.mp4"}], tensors))
    return next(path.glob("embeddings-*.pt"))


def _truncate(t: Path) -> None:
    t.write_bytes(t.read_bytes()[: t.stat().st_size // 2])


@pytest.mark.parametrize(
    "damage,reason",
    [
        (_truncate, r"not a readable tensor file \(truncated\?\): PytorchStreamReader failed"),
        (lambda t: t.write_bytes(bytes(range(256)) * 8), r"not a readable tensor file \(no Py"),
        (lambda t: t.write_bytes(b""), r"empty index tensor file \(truncated\?\)$"),
        (lambda t: torch.save({"f": print}, t), r"tensors: could run code\)$"),
        (lambda t: torch.save(torch.zeros(3), t), r"not an avssl index tensor file \(holds a Ten"),
        (lambda t: torch.save({"audio": torch.zeros(2)}, t), r"index tensor file \(no 'audio_file"),
        (
            lambda t: torch.save({**empty_tensors(4), "audio_file": torch.zeros(1)}, t),
            r"audio_file is not 0 int64 file ids",
        ),
        (
            lambda t: torch.save({**torch.load(t), "visual_file": torch.full((3,), 7)}, t),
            r"visual_file ids outside the 1 files of meta.json",
        ),
        (  # file id 1 of an index of one file: one past the last
            lambda t: torch.save({**torch.load(t), "visual_file": torch.full((3,), 1)}, t),
            r"visual_file ids outside the 1 files of meta.json",
        ),
    ],
)
def test_damaged_index_tensors_say_why(tmp_path, capsys, damage, reason):
    tensors = _saved_index(tmp_path / "idx")
    assert load_index(tmp_path / "idx").count("visual") == 3
    damage(tensors)
    with pytest.raises(AvsslError, match=f"^{re.escape(str(tensors))}: .*{reason}"):
        load_index(tmp_path / "idx")
    # the tools read the index before the checkpoint: one line, no traceback
    assert cli(["query", "--index", str(tmp_path / "idx"), "--checkpoint", "x.pt",
                "--audio", "a.wav"]) == 2  # fmt: skip
    assert re.search(reason, _one_error(capsys))


# ------------------------------------------------------ 4. a file name holding a newline


def test_a_newline_in_a_file_name_keeps_the_error_one_line(media_factory, ckpt, tmp_path, capsys):
    odd = tmp_path / "two\nlines\x1b[2J.mp4"
    assert cli(["inspect", str(odd)]) == 2
    assert _one_error(capsys) == f"error: {tmp_path}/two\\nlines\\x1b[2J.mp4: no such file"
    odd.write_text("this is not a video\n" * 50)
    assert cli(["inspect", str(odd)]) == 2
    assert "two\\nlines" in _one_error(capsys)
    # ordinary names print exactly as before
    plain = tmp_path / "a clip é 名前\u00a0\\x.mp4"
    assert cli(["inspect", str(plain)]) == 2
    assert _one_error(capsys) == f"error: {plain}: no such file"
    for text in ("a clip é 名前.mp4", "back\\slash", "nbsp\u00a0x", ""):
        assert one_line(text) == text
    assert one_line("a\r\nb\tc\x00\x85\u2028") == "a\\r\\nb\\tc\\x00\\x85\\u2028"
    # an index's per-file lines on stderr too
    good = media_factory("good.mp4", duration=2.0)
    argv = ["index", "--checkpoint", str(ckpt), "--inputs", str(odd), str(good),
            "--out", str(tmp_path / "idx")]  # fmt: skip
    assert cli(argv) == 0
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 2, captured.err
    assert json.loads(captured.out.strip().splitlines()[-1])["skipped"][0]["path"] == str(odd)


# ------------------------------------------------------ 5. a huge number echoed in digits


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--start", "1e308"], "window [1e+308, 1e+308) s is beyond the end (duration 2.00 s)"),
        (["--duration", "1e308"], "window of 1e+308 s exceeds the 600 s limit"),
        (["--start", "3"], "window [3.00, 4.00) s is beyond the end (duration 2.00 s)"),
        (["--duration", "601"], "window of 601.0 s exceeds the 600 s limit"),
    ],
)
def test_huge_numbers_are_echoed_compactly(media_factory, capsys, flags, message):
    clip = media_factory("clip.mp4", duration=2.0)
    assert cli(["inspect", str(clip), *flags]) == 2
    line = _one_error(capsys)
    assert line == f"error: {clip}: {message}" and not re.search(r"\d{12}", line)


def test_a_huge_clip_start_is_echoed_compactly(media_factory):
    clip = media_factory("clip.mp4", duration=2.0)
    with pytest.raises(MediaError, match=r"clip start 1e\+308 s is beyond the end \(2.00 s\)$"):
        media.read_clip(clip, 25, 32, 16000, start=1e308)


def test_index_skips_a_silent_video_cut_short_of_its_declared_length(
    media_factory, ckpt, tmp_path, capsys
):
    # with a sound track the cut shows in the sound; without one, the windows past the last
    # decodable frame embedded that frame again and again
    cut = _cut_faststart(media_factory, audio=False)
    whole = media_factory("whole2.mp4", duration=2.0, audio=False)
    idx = tmp_path / "idx"
    argv = ["index", "--checkpoint", str(ckpt), "--inputs", str(cut), str(whole), "--out", str(idx)]
    assert cli([*argv, "--quiet"]) == 0
    summary = last_json(capsys.readouterr().out)
    assert summary["files"] == 1 and summary["n_skipped"] == 1
    skipped = summary["skipped"][0]
    assert skipped["path"] == str(cut)
    assert "decodable video ends at" in skipped["reason"]
    assert skipped["reason"].endswith("(truncated?)")
