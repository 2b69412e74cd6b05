"""``avssl embed``: each row is the model's embedding of its window (against a window-by-window
reference), a second run embeds only what changed, and a folder is never written over unasked."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_media import last_json
from conftest import MediaFactory, media_folder
from test_index_fixes import _checkpoint, _one_line_error

from avssl.cli import main as cli
from avssl.tools.stream_io import iter_frames_at, read_audio_padded
from avssl.train.checkpoint import load_model


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ckpt"), "contrastive")


@pytest.fixture
def media(media_factory: MediaFactory) -> Path:
    folder = media_folder(
        media_factory,
        {"still.png": {}, "tone.wav": {"duration": 2.0}, "clip.mp4": {"duration": 2.0}},
    )
    (folder / "sub").mkdir()
    MediaFactory(folder / "sub")("clip.mp4", duration=1.5)  # the same name in another folder
    return folder


def _embed(ckpt, inputs, out, *extra) -> int:
    inputs = [str(x) for x in (inputs if isinstance(inputs, list) else [inputs])]
    return cli(["embed", "--checkpoint", str(ckpt), "--out", str(out), "--quiet",
                "--inputs", *inputs, *extra])  # fmt: skip


def _rows(out: Path, name: str) -> dict[str, np.ndarray]:
    with np.load(out / f"{name}.npz") as z:
        return {k: z[k] for k in z.files}


def test_rows_are_the_models_embeddings_of_each_window(ckpt, media, tmp_path, capsys):
    out = tmp_path / "emb"
    assert _embed(ckpt, media, out, "--hop", "0.25") == 0
    summary = last_json(capsys.readouterr().out)
    assert (summary["files"], summary["embedded"], summary["n_skipped"]) == (4, 4, 0)
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*.npz"))
    assert names == ["clip.mp4.npz", "still.png.npz", "sub/clip.mp4.npz", "tone.wav.npz"]

    model, cfg, _ = load_model(ckpt)
    d = cfg.data
    clip = _rows(out, "clip.mp4")
    centres = 0.5 + 0.25 * np.arange(5)  # 1-s windows of a 2-s file every 0.25 s
    np.testing.assert_allclose(clip["audio_time"], centres, atol=1e-6)
    np.testing.assert_allclose(clip["visual_time"], centres, atol=1e-6)
    with torch.no_grad():  # the reference: each window decoded and embedded on its own
        waves = torch.stack(
            [
                read_audio_padded(media / "clip.mp4", t - 0.5, 1.0, d.sample_rate, 2.0)
                for t in centres
            ]
        )
        ref_audio = model.embed_audio(waves)
        frames = np.stack(list(iter_frames_at(media / "clip.mp4", centres, (32, 32))))
        pixels = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
        ref_visual = model.embed_visual(pixels)
    np.testing.assert_allclose(clip["audio"], ref_audio.numpy(), atol=1e-4)
    np.testing.assert_allclose(clip["visual"], ref_visual.numpy(), atol=1e-4)
    assert clip["audio"].dtype == np.float32

    still, tone = _rows(out, "still.png"), _rows(out, "tone.wav")
    assert (
        still["audio"].shape == (0, clip["audio"].shape[1]) and np.isnan(still["visual_time"]).all()
    )
    assert tone["visual"].shape[0] == 0 and tone["audio"].shape == clip["audio"].shape
    record = json.loads((out / "embeddings.json").read_text())
    assert record["files"]["sub/clip.mp4"]["audio_windows"] == 3  # 1.5 s: centres 0.5, 0.75, 1
    assert (record["hop"], record["layer"], record["unit"], record["root"]) == (
        0.25, "embedding", False, str(media.resolve()),
    )  # fmt: skip


def test_layers_give_the_towers_features(ckpt, media, tmp_path):
    model, _, _ = load_model(ckpt)
    dims = {}
    for layer in ("embedding", "tower", "grid"):
        out = tmp_path / layer
        assert _embed(ckpt, media / "tone.wav", out, "--layer", layer, "--hop", "0.5") == 0
        rows = _rows(out, "tone.wav")
        dims[layer] = rows["audio"].shape[1]
    assert dims["tower"] == model.audio.out_dim != dims["embedding"]
    assert dims["grid"] == 12 * model.cfg.channels[-1]

    # the tower's rows are not unit vectors (contrastive's embeddings already are): --unit
    # divides each by its length and changes nothing else
    raw = _rows(tmp_path / "tower", "tone.wav")["audio"]
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)
    assert _embed(ckpt, media / "tone.wav", tmp_path / "unit", "--layer", "tower", "--hop", "0.5",
                  "--unit") == 0  # fmt: skip
    rows = _rows(tmp_path / "unit", "tone.wav")["audio"]
    np.testing.assert_allclose(rows, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-5)


def test_a_second_run_embeds_only_new_and_changed_files(ckpt, media, tmp_path, capsys):
    out = tmp_path / "emb"
    assert _embed(ckpt, media, out) == 0
    capsys.readouterr()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.npz")}
    assert _embed(ckpt, media, out) == 0
    assert last_json(capsys.readouterr().out)["unchanged"] == 4
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.npz")} == before
    old = _rows(out, "tone.wav")["audio"]
    MediaFactory(media)("tone.wav", duration=3.0)  # a new recording under the old name
    (out / "sub" / "clip.mp4.npz").unlink()  # a row file deleted by hand is made again
    assert _embed(ckpt, [media / "tone.wav", media / "sub"], out) == 0
    summary = last_json(capsys.readouterr().out)
    assert (summary["embedded"], summary["unchanged"], summary["files"]) == (2, 0, 4)
    assert _rows(out, "tone.wav")["audio"].shape[0] > old.shape[0]
    assert (out / "still.png.npz").stat().st_mtime_ns == before[out / "still.png.npz"]

    (media / "tone.wav").write_bytes(b"not audio any more")  # changed into something unreadable
    assert _embed(ckpt, media, out) == 0
    summary = last_json(capsys.readouterr().out)
    assert (summary["dropped"], summary["n_skipped"], summary["files"]) == (1, 1, 3)
    assert not (out / "tone.wav.npz").exists()
    assert "tone.wav" not in json.loads((out / "embeddings.json").read_text())["files"]


def test_other_settings_are_refused_unless_forced(ckpt, media, tmp_path, capsys):
    out = tmp_path / "emb"
    assert _embed(ckpt, media, out) == 0
    capsys.readouterr()
    kept = (out / "tone.wav.npz").read_bytes()
    assert _embed(ckpt, media, out, "--hop", "0.5") == 2
    assert "other settings (hop 0.1 -> 0.5)" in _one_line_error(capsys)
    assert _embed(ckpt, media, out, "--layer", "tower") == 2
    assert "layer 'embedding' -> 'tower'" in _one_line_error(capsys)
    assert (out / "tone.wav.npz").read_bytes() == kept
    assert _embed(ckpt, media / "tone.wav", out, "--hop", "0.5", "--force") == 0
    summary = last_json(capsys.readouterr().out)
    assert (summary["replaced"], summary["files"]) == (4, 1)
    assert sorted(p.name for p in out.rglob("*.npz")) == ["tone.wav.npz"]
    assert _rows(out, "tone.wav")["audio"].shape[0] == 3  # 2 s at a 0.5-s hop


def test_folders_it_did_not_make_are_never_written(ckpt, media, tmp_path, capsys):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    assert _embed(ckpt, media, theirs) == 2
    assert "not an avssl embed folder" in _one_line_error(capsys)
    assert sorted(os.listdir(theirs)) == ["notes.txt"]
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert _embed(ckpt, media, a_file) == 2
    assert "exists and is not an embed folder" in _one_line_error(capsys)

    out = tmp_path / "emb"
    assert _embed(ckpt, media / "sub", out) == 0
    capsys.readouterr()
    assert _embed(ckpt, media / "tone.wav", out) == 2  # outside the folder's root (media/sub)
    assert "outside" in _one_line_error(capsys)
    assert sorted(os.listdir(out)) == ["clip.mp4.npz", "embeddings.json"]
    assert _embed(ckpt, tmp_path / "nowhere", tmp_path / "new") == 2
    assert "no such file or folder" in _one_line_error(capsys)
    assert not (tmp_path / "new").exists()


def test_unreadable_files_are_skipped_counted_or_strict(ckpt, media, tmp_path, capsys):
    (media / "bad.mp4").write_bytes(b"garbage")
    out = tmp_path / "emb"
    assert _embed(ckpt, media, out) == 0
    summary = last_json(capsys.readouterr().out)
    assert (summary["embedded"], summary["n_skipped"]) == (4, 1)
    assert summary["skipped"][0]["path"].endswith("bad.mp4") and summary["skipped"][0]["reason"]
    assert _embed(ckpt, media, tmp_path / "strict", "--strict") == 2
    assert "bad.mp4" in _one_line_error(capsys)
    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    (only_bad / "x.wav").write_bytes(b"RIFF")
    assert _embed(ckpt, only_bad, tmp_path / "none") == 2
    assert "no usable media file" in _one_line_error(capsys)
    assert not (tmp_path / "none").exists()


def test_the_readmes_python_example_runs(ckpt, media, tmp_path, monkeypatch, capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    (example,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "embed_file" in b]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    os.symlink(ckpt, tmp_path / "runs" / "l3")  # the example's checkpoint: this test's model
    assert _embed(ckpt, media, tmp_path / "runs" / "l3-embeddings") == 0
    capsys.readouterr()
    exec(compile(example, "README.md", "exec"), {})  # its assert compares the two routes
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 4 and all(str(media.resolve()) in line for line in printed)
