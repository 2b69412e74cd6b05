"""Dataset preparation on bad input: cut-short WAV/AIFF under --probe, a run failing part-way,
a validation share leaving no training rows, and the one list of media extensions."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from avssl import cli
from avssl.data import extensions
from avssl.data.audio_header import truncation
from avssl.errors import AvsslError
from avssl.eval import audio_sets
from avssl.prep import avdigits, clips, localization
from avssl.prep.new_outputs import NewOutputs
from avssl.tools import index_media

WAVE = (0.1 * np.sin(np.arange(32000) / 5)).astype(np.float32)  # 2.00 s at 16 kHz


def cut(path: Path, keep: float) -> Path:
    """Keep the first ``keep`` share of the file's bytes, as a download cut short does."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


# -- 1. a cut-short WAV or AIFF reads as a complete shorter file: --probe tells it by its header


@pytest.mark.parametrize(
    "name, fmt, endian",
    [("a.wav", "WAV", "FILE"), ("b.wav", "RF64", "FILE"), ("c.wav", "WAV", "BIG"),
     ("d.wav", "WAVEX", "FILE"), ("e.aiff", "AIFF", "FILE")],
)  # fmt: skip
def test_truncation_from_the_header(tmp_path, name, fmt, endian):
    path = tmp_path / name
    sf.write(path, WAVE, 16000, format=fmt, subtype="PCM_16", endian=endian)
    assert truncation(path) is None
    cut(path, 0.685)
    assert sf.info(str(path)).duration < 1.4  # libsndfile reads the rest as all there is
    assert truncation(path) == "truncated: header declares 2.00 s, file holds 1.37 s"


@pytest.mark.parametrize("size", [0, 0xFFFFFFFF])
def test_streamed_sizes_are_unknown_not_truncated(tmp_path, size):
    path = tmp_path / "streamed.wav"
    sf.write(path, WAVE, 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    assert data[36:40] == b"data"
    data[4:8] = data[40:44] = struct.pack("<I", size)
    path.write_bytes(bytes(data[:30000]))
    assert truncation(path) is None


def test_truncation_ignores_what_it_cannot_judge(tmp_path):
    (tmp_path / "x.wav").write_bytes(b"RIFF")  # the decoders report these
    (tmp_path / "y.mp4").write_bytes(b"\x00" * 64)
    assert truncation(tmp_path / "x.wav") is None and truncation(tmp_path / "y.mp4") is None
    assert truncation(tmp_path / "missing.wav") is None


def test_probe_counts_a_cut_short_wav_unreadable(media_factory, tmp_path, capsys):
    media = tmp_path / "media"
    media.mkdir()
    media_factory.folder = media
    for ytid in ("aaaaaaaaaaa", "bbbbbbbbbbb"):  # picture and sound downloaded apart
        media_factory(f"{ytid}_0.mp4", duration=2.0, size=(32, 32), audio=False)
        sf.write(media / f"{ytid}_0.wav", WAVE, 16000, subtype="PCM_16")
    cut(media / "bbbbbbbbbbb_0.wav", 0.685)
    csv = tmp_path / "balanced_train_segments.csv"
    csv.write_text('aaaaaaaaaaa, 0.000, 2.000, "/m/01"\nbbbbbbbbbbb, 0.000, 2.000, "/m/01"\n')
    out = tmp_path / "out"
    argv = ["prepare", "audioset", "--segments", str(csv), "--media", str(media)]
    assert cli.main([*argv, "--out", str(out), "--val-fraction", "0", "--probe"]) == 0
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["written"] == 1
    [(item, reason)] = report["unreadable_items"]  # the reason names the file cut short
    assert item == "bbbbbbbbbbb_0"
    assert (
        reason == f"{media}/bbbbbbbbbbb_0.wav: truncated: header declares 2.00 s, file holds 1.37 s"
    )


# -- 2. a run failing part-way removes what it created (and only that)


def _idx(path: Path, array: np.ndarray, magic: int) -> Path:
    with gzip.open(path, "wb") as fh:
        fh.write(
            np.array([magic, *array.shape], ">u4").tobytes() + array.astype(np.uint8).tobytes()
        )
    return path


@pytest.fixture
def digits(tmp_path):
    fsdd = tmp_path / "fsdd"
    fsdd.mkdir()
    t = np.arange(8000) / 8000
    for speaker in ("amy", "bob", "cat"):
        for digit, take in np.ndindex(10, 2):  # take 0: val, take 1: train
            wave = 0.3 * np.sin(2 * np.pi * (200 + 50 * digit) * t)
            sf.write(fsdd / f"{digit}_{speaker}_{take}.wav", wave, 8000, subtype="PCM_16")
    x = np.random.default_rng(0).integers(0, 100, (200, 28, 28))
    args = ["--fsdd", str(fsdd), "--mnist-images", str(_idx(tmp_path / "img.gz", x, 2051))]
    good = _idx(tmp_path / "lab.gz", np.arange(200) % 10, 2049)
    bad = _idx(tmp_path / "nine.gz", np.arange(200) % 9, 2049)  # no image of a 9
    return args, good, bad


def _fail_part_way(monkeypatch, args: list[str]) -> int:
    """Run failing at its fifth canvas; returns how many files it had created by then."""
    seen, remove, render, calls = {}, NewOutputs.remove, avdigits.render_canvas, []

    def spy(self):
        seen["files"] = len(self.files)
        remove(self)

    def fail_at_the_fifth(*a):
        calls.append(1)
        if len(calls) == 5:
            raise AvsslError("the disk went away")
        return render(*a)

    monkeypatch.setattr(NewOutputs, "remove", spy)
    monkeypatch.setattr(avdigits, "render_canvas", fail_at_the_fifth)
    with pytest.raises(AvsslError, match="the disk went away"):
        avdigits.main(args)
    monkeypatch.undo()
    return seen["files"]


def tree(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
            for p in sorted(folder.rglob("*"))}  # fmt: skip


def test_failed_avdigits_run_leaves_nothing_and_reruns(digits, tmp_path, monkeypatch):
    args, good, bad = digits
    out = tmp_path / "new" / "out"
    with pytest.raises(AvsslError, match="hold no digit 9"):  # found before anything is made
        avdigits.main([*args, "--mnist-labels", str(bad), "--out", str(out)])
    assert not (tmp_path / "new").exists()
    assert _fail_part_way(monkeypatch, [*args, "--mnist-labels", str(good), "--out", str(out)]) > 0
    assert not (tmp_path / "new").exists()  # the folders it made too
    assert avdigits.main([*args, "--mnist-labels", str(good), "--out", str(out)]) == 0  # no --force


def test_failed_avdigits_run_keeps_what_was_there(digits, tmp_path, monkeypatch):
    args, good, bad = digits
    mine = tmp_path / "mine"
    (mine / "audio").mkdir(parents=True)  # an empty output folder a user made is allowed
    (mine / "notes.txt").write_text("mine")
    before = tree(mine)
    assert _fail_part_way(monkeypatch, [*args, "--mnist-labels", str(good), "--out", str(mine)])
    assert tree(mine) == before
    done = tmp_path / "done"  # a finished run, then failing --force runs over it
    assert avdigits.main([*args, "--mnist-labels", str(good), "--out", str(done)]) == 0
    before = tree(done)
    with pytest.raises(AvsslError, match="hold no digit 9"):  # refused before any write
        avdigits.main([*args, "--mnist-labels", str(bad), "--out", str(done), "--force"])
    assert tree(done) == before
    argv = [*args, "--mnist-labels", str(good), "--out", str(done), "--force", "--seed", "3"]
    assert _fail_part_way(monkeypatch, argv) == 0  # it overwrote, created nothing
    # canvases were redrawn: the old manifests, which no longer describe them, are gone
    assert not (done / "manifest.jsonl").exists() and not (done / "items.jsonl").exists()
    assert {k for k, v in tree(done).items() if v is not None} <= set(before)


# -- 3. a validation share must leave training rows


@pytest.mark.parametrize("dataset, inputs", [("audioset", ["--segments", "s.csv"]),
                                             ("vggsound", ["--csv", "v.csv"])])  # fmt: skip
@pytest.mark.parametrize("share", ["1", "1.0"])
def test_val_fraction_of_one_is_refused(dataset, inputs, share, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["prepare", dataset, *inputs, "--media", "m", "--val-fraction", share]
    with pytest.raises(SystemExit) as stop:
        cli.main([*argv, "--out", str(out)])
    (line,) = capsys.readouterr().err.splitlines()
    assert stop.value.code == 2
    assert line.startswith("error: --val-fraction: must be in [0, 1), got 1"), line
    assert not out.exists()


def test_val_fraction_help_says_half_open(capsys):
    with pytest.raises(SystemExit):
        cli.main(["prepare", "audioset", "--help"])
    assert "[0, 1)" in " ".join(capsys.readouterr().out.split())


# -- 4. one list of media extensions


def test_one_definition_of_media_extensions():
    assert clips.MEDIA_EXTS is extensions.MEDIA_EXTS is audio_sets.MEDIA_EXTS
    assert clips.VIDEO_EXTS is localization.VIDEO_EXTS is extensions.VIDEO_EXTS
    assert localization.AUDIO_EXTS is extensions.AUDIO_EXTS
    assert extensions.INDEXABLE_EXTS == extensions.MEDIA_EXTS | extensions.IMAGE_EXTS
    assert not extensions.MEDIA_EXTS & extensions.IMAGE_EXTS
    assert not extensions.VIDEO_EXTS & extensions.AUDIO_EXTS
    for name in ("VIDEO_EXTS", "AUDIO_EXTS", "MEDIA_EXTS"):
        assert not hasattr(index_media, name)  # its own lists (which had drifted) are gone


def test_every_finder_takes_the_extensions_the_others_did(tmp_path):
    # before: .flv/.3gp only for clips, .m4v/.mpg/.wma only for `avssl index`
    names = ["x_0.flv", "x_1.3gp", "x_2.m4v", "x_3.mpg", "x_4.wma", "x_5.aiff", "x_6.png"]
    for name in names:
        (tmp_path / name).write_bytes(b"\x00")
    found = {c.path.name for c in clips.index_folder(tmp_path, {"x"})["x"]}
    assert found == set(names[:-1])
    paths, _ = index_media.find_media([str(tmp_path)])
    assert {p.name for p in paths} == set(names)


def test_avssl_index_searches_linked_folders_too(tmp_path):
    # rglob does not follow a linked folder: its clips were never indexed
    store = tmp_path / "store"
    store.mkdir()
    (store / "a.wav").write_bytes(b"\x00")
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "disk2").symlink_to(store)
    (store / "loop").symlink_to(tmp_path / "media")  # read once, no loop
    paths, _ = index_media.find_media([str(tmp_path / "media")])
    assert [p.name for p in paths] == ["a.wav"]
