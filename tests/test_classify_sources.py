"""Where the probe's clips come from: the source recording of each ESC-50 / UrbanSound8K clip
when the metadata lacks its column (takes of one recording must not straddle a split), and how
much of a video's audio a whole-file read takes."""

import csv

import av
import numpy as np
from test_classify import _tone

from avssl.eval.audio_sets import list_esc50, list_us8k
from avssl.eval.clip_features import LogMelStats, extract, load_clip
from avssl.eval.probe import group_kfold

SR = 16000


def _write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])


def _assert_no_leak(items, field: int):
    """No recording (field ``field`` of the ``-``-separated file names) on both sides of any
    fold of a 3-fold split grouped by source."""
    y = np.array([it.label for it in items])
    rec = np.array([it.path.name.split("-")[field] for it in items])
    for fold in group_kfold(y, np.array([it.source for it in items]), 3, 0):
        assert not set(rec[fold.train]) & set(rec[fold.test])


def test_esc50_without_src_file_takes_the_recording_from_the_file_name(tmp_path):
    # 6 recordings of 2 classes, 3 takes each: fold-src_file-take-target.wav
    names = [f"1-{100 + r}-{take}-{r % 2}.wav" for r in range(6) for take in "ABC"]
    header = ["filename", "fold", "target", "category", "esc10"]
    rows = [[n, 1, n[-5], f"c{n[-5]}", "True"] for n in names]
    _write_csv(tmp_path / "meta" / "esc50.csv", header, rows)
    items = list_esc50(tmp_path)
    assert [it.source for it in items] == [n.split("-")[1] for n in names]
    _assert_no_leak(items, 1)
    # the column wins when present; a name without the pattern is its own source
    rows = [[*row, f"s{i // 3}", "A"] for i, row in enumerate(rows)] + [
        ["odd.wav", 1, 0, "c0", "True", "", ""]
    ]
    _write_csv(tmp_path / "meta" / "esc50.csv", [*header, "src_file", "take"], rows)
    sources = [it.source for it in list_esc50(tmp_path)]
    assert sources == [f"s{i // 3}" for i in range(18)] + ["odd.wav"]


def test_us8k_without_fsid_takes_the_recording_from_the_file_name(tmp_path):
    # 6 recordings of 2 classes, 3 slices each: fsID-classID-occurrence-slice.wav
    names = [f"{1000 + r}-{3 + 4 * (r % 2)}-0-{s}.wav" for r in range(6) for s in range(3)]
    rows = [[n, 1, n.split("-")[1], f"c{n.split('-')[1]}"] for n in names]
    _write_csv(tmp_path / "metadata" / "UrbanSound8K.csv", ["slice_file_name", "fold",
               "classID", "class"], rows)  # fmt: skip
    for n in names:  # the listing without the CSV reads the names of the files themselves
        (tmp_path / "audio" / "fold1").mkdir(parents=True, exist_ok=True)
        (tmp_path / "audio" / "fold1" / n).touch()
    items = list_us8k(tmp_path)
    assert [it.source for it in items] == [n.split("-")[0] for n in names]
    _assert_no_leak(items, 0)
    (tmp_path / "metadata" / "UrbanSound8K.csv").unlink()
    assert sorted(it.source for it in list_us8k(tmp_path)) == sorted(it.source for it in items)


def _video_with_short_audio(path, video_s=3.0, audio_s=2.0):
    """An MP4 whose AAC track stops ``video_s - audio_s`` seconds before its picture."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width = video.height = 64
        video.pix_fmt = "yuv420p"
        audio = out.add_stream("aac", rate=SR)
        audio.layout = "mono"
        for i in range(round(video_s * 25)):
            image = np.full((64, 64, 3), i * 3, np.uint8)
            out.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        t = np.arange(round(audio_s * SR)) / SR
        wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        for k in range(0, wave.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(wave[:, k : k + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = SR, k
            out.mux(audio.encode(frame))
        out.mux(video.encode())
        out.mux(audio.encode())
    return path


def test_whole_file_read_of_a_video_stops_at_the_end_of_its_audio(tmp_path):
    path = _video_with_short_audio(tmp_path / "v.mp4")
    wave = load_clip(path, SR)
    assert abs(wave.shape[0] / SR - 2.0) <= 0.1  # the audio's 2 s, not the picture's 3 s
    assert abs(load_clip(path, SR, start=0.5).shape[0] / SR - 1.5) <= 0.1
    wav = _tone(tmp_path / "a.wav", "low", 1, duration=0.6)  # audio files: unchanged
    assert load_clip(wav, SR).shape[0] == round(0.6 * SR)
    x, kept, skipped, _ = extract([path, wav], LogMelStats(), windows=[(0.0, None)] * 2)
    assert kept == [0, 1] and skipped == [] and x.shape[0] == 2
