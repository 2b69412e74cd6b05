"""``avssl embed``: each row is the model's embedding of its window (against a window-by-window
reference), a second run embeds only what changed, and a folder is never written over unasked."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_media import last_json
from conftest import MediaFactory, media_folder
from test_index_fixes import _checkpoint, _one_line_error

from avssl.cli import main as cli
from avssl.eval.sliding import sharing_blocker
from avssl.models import embedding_dims
from avssl.tools.stream_io import iter_frames_at, read_audio_padded
from avssl.train.checkpoint import load_model


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    """contrastive (unit embeddings of equal widths) and l3 (neither)."""
    root = tmp_path_factory.mktemp("ckpt")
    return {m: _checkpoint(root, m) for m in ("contrastive", "l3")}


@pytest.fixture
def ckpt(ckpts) -> Path:
    return ckpts["contrastive"]


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


def _npz_names(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*.npz"))


def _reference(model, cfg, video: Path, centres) -> tuple[np.ndarray, np.ndarray]:
    """Audio and visual embeddings of each window of ``video``, decoded and embedded alone."""
    d = cfg.data
    with torch.no_grad():
        waves = [read_audio_padded(video, t - d.window / 2, d.window, d.sample_rate, 2.0)
                 for t in centres]  # fmt: skip
        size = (d.frame_size, d.frame_size)
        frames = np.stack(list(iter_frames_at(video, centres, size)))
        pixels = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
        return model.embed_audio(torch.stack(waves)).numpy(), model.embed_visual(pixels).numpy()


@pytest.mark.parametrize("method", ["contrastive", "l3"])
def test_rows_are_the_models_embeddings_of_each_window(ckpts, method, media, tmp_path, capsys):
    out = tmp_path / "emb"
    assert _embed(ckpts[method], media, out) == 0  # the default hop, 0.1 s
    summary = last_json(capsys.readouterr().out)
    assert (summary["files"], summary["embedded"], summary["n_skipped"]) == (4, 4, 0)
    assert _npz_names(out) == ["clip.mp4.npz", "still.png.npz", "sub/clip.mp4.npz", "tone.wav.npz"]

    model, cfg, _ = load_model(ckpts[method])
    # the default hop shares the convolutions of overlapping windows: compared with each alone
    assert sharing_blocker(model, cfg.data.sample_rate, cfg.data.window, 0.1) is None
    clip = _rows(out, "clip.mp4")
    centres = 0.5 + 0.1 * np.arange(11)  # 1-s windows of a 2-s file every 0.1 s
    np.testing.assert_allclose(clip["audio_time"], centres, atol=1e-6)
    np.testing.assert_allclose(clip["visual_time"], centres, atol=1e-6)
    ref_audio, ref_visual = _reference(model, cfg, media / "clip.mp4", centres)
    np.testing.assert_allclose(clip["audio"], ref_audio, atol=1e-4)
    np.testing.assert_allclose(clip["visual"], ref_visual, atol=1e-4)
    assert clip["audio"].dtype == np.float32

    # a side a file lacks is empty at its own width (l3's sound and pictures differ)
    da, dv = embedding_dims(model, cfg.data)
    still, tone = _rows(out, "still.png"), _rows(out, "tone.wav")
    assert (still["audio"].shape, still["visual"].shape, tone["visual"].shape) == (
        (0, da), (1, dv), (0, dv),
    )  # fmt: skip
    assert np.isnan(still["visual_time"]).all() and tone["audio"].shape == (11, da)
    record = json.loads((out / "embeddings.json").read_text())
    assert record["files"]["sub/clip.mp4"]["audio_windows"] == 6  # 1.5 s: centres 0.5 to 1
    assert (record["hop"], record["layer"], record["unit"], record["root"]) == (
        0.1, "embedding", False, str(media),
    )  # fmt: skip
    unit = method == "contrastive"  # l3's rows, kept as the model gives them, are not unit
    for rows in (clip["audio"], clip["visual"], still["visual"]):
        assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-3) == unit


def test_layers_give_the_towers_features(ckpt, media, tmp_path):
    model, _, _ = load_model(ckpt)
    dims = {}
    for layer in ("embedding", "tower", "grid"):
        out = tmp_path / layer
        assert _embed(ckpt, media / "tone.wav", out, "--layer", layer, "--hop", "0.5") == 0
        dims[layer] = _rows(out, "tone.wav")["audio"].shape[1]
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
    cut = out / "clip.mp4.npz"  # and so is one cut short
    cut.write_bytes(cut.read_bytes()[:300])
    assert _embed(ckpt, [media / "tone.wav", media / "sub", media / "clip.mp4"], out) == 0
    summary = last_json(capsys.readouterr().out)
    assert (summary["embedded"], summary["unchanged"], summary["files"]) == (3, 0, 4)
    assert _rows(out, "clip.mp4")["audio"].shape[0] > 0
    assert _rows(out, "tone.wav")["audio"].shape[0] > old.shape[0]
    assert (out / "still.png.npz").stat().st_mtime_ns == before[out / "still.png.npz"]

    (media / "tone.wav").write_bytes(b"not audio any more")  # changed into something unreadable
    assert _embed(ckpt, media, out) == 0
    summary = last_json(capsys.readouterr().out)
    assert (summary["dropped"], summary["n_skipped"], summary["files"]) == (1, 1, 3)
    assert not (out / "tone.wav.npz").exists()
    assert "tone.wav" not in json.loads((out / "embeddings.json").read_text())["files"]


def test_a_new_subfolder_of_an_input_folder_is_added(ckpt, tmp_path, capsys):
    clips = tmp_path / "clips"
    (clips / "2024").mkdir(parents=True)
    MediaFactory(clips / "2024")("a.wav", duration=1.0)
    out = tmp_path / "emb"
    assert _embed(ckpt, clips, out) == 0  # the root is the input folder, not 2024/
    (clips / "2025").mkdir()
    MediaFactory(clips / "2025")("b.wav", duration=1.0)
    assert _embed(ckpt, clips, out) == 0
    assert last_json(capsys.readouterr().out)["n_skipped"] == 0
    assert _npz_names(out) == ["2024/a.wav.npz", "2025/b.wav.npz"]


def test_a_linked_file_keeps_its_name(ckpt, media, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    MediaFactory(elsewhere)("real.wav", duration=1.0)
    os.symlink(elsewhere / "real.wav", media / "sub" / "link.wav")
    out = tmp_path / "emb"
    assert _embed(ckpt, media, out) == 0
    assert "sub/link.wav.npz" in _npz_names(out)
    entry = json.loads((out / "embeddings.json").read_text())["files"]["sub/link.wav"]
    assert entry["path"] == str(media / "sub" / "link.wav")


def test_other_settings_are_refused_unless_forced(ckpts, media, tmp_path, capsys):
    ckpt = ckpts["contrastive"]
    out = tmp_path / "emb"
    assert _embed(ckpt, media, out) == 0
    capsys.readouterr()
    kept = (out / "tone.wav.npz").read_bytes()
    for flags, change in [
        (["--hop", "0.5"], "hop 0.1 -> 0.5"),
        (["--layer", "tower"], "layer 'embedding' -> 'tower'"),
        (["--unit"], "unit False -> True"),
    ]:
        assert _embed(ckpt, media, out, *flags) == 2
        assert f"other settings ({change})" in _one_line_error(capsys)
    assert _embed(ckpts["l3"], media, out) == 2  # other weights, another method
    assert "checkpoint_sha256" in _one_line_error(capsys)
    # the same weights with another window give other rows
    window = _checkpoint(tmp_path, "contrastive", "data.window=0.5")
    assert _embed(window, media, out) == 2
    assert "window 1.0 -> 0.5" in _one_line_error(capsys)
    assert (out / "tone.wav.npz").read_bytes() == kept

    assert _embed(ckpt, media / "tone.wav", out, "--hop", "0.5", "--force") == 0
    summary = last_json(capsys.readouterr().out)
    assert (summary["replaced"], summary["files"]) == (4, 1)
    assert _npz_names(out) == ["tone.wav.npz"] and not (out / "sub").exists()
    assert _rows(out, "tone.wav")["audio"].shape[0] == 3  # 2 s at a 0.5-s hop


def test_a_run_that_embeds_nothing_changes_nothing(ckpt, media, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.mp4").write_bytes(b"garbage")
    assert _embed(ckpt, [bad / "a.mp4", media / "tone.wav"], tmp_path / "strict", "--strict") == 2
    assert not (tmp_path / "strict").exists()  # no record left to pin the folder's root
    out = tmp_path / "emb"
    assert _embed(ckpt, media, out) == 0
    capsys.readouterr()
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert _embed(ckpt, bad, out, "--hop", "0.5", "--force") == 2  # forced, then nothing usable
    assert "nothing written" in _one_line_error(capsys)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before


def test_a_stop_keeps_what_was_embedded(ckpt, media, tmp_path, monkeypatch):
    import avssl.tools.index_media as index_media

    real, calls = index_media.embed_file, []

    def stopping(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(index_media, "embed_file", stopping)
    out = tmp_path / "emb"
    assert _embed(ckpt, media, out) == 130
    assert sorted(json.loads((out / "embeddings.json").read_text())["files"]) == [
        "clip.mp4", "still.png",
    ]  # fmt: skip


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
    assert _embed(ckpt, tmp_path / "nowhere", tmp_path / "new") == 2
    assert "no such file or folder" in _one_line_error(capsys)
    assert not (tmp_path / "new").exists()

    out = tmp_path / "emb"
    assert _embed(ckpt, media / "sub", out) == 0
    record = (out / "embeddings.json").read_text()
    for text in ("not json", "[" * 100000 + "]" * 100000, '{"format": "avssl-embeddings-1"}'):
        (out / "embeddings.json").write_text(text)  # edited by hand
        capsys.readouterr()
        assert _embed(ckpt, media / "sub", out) == 2
        assert "embeddings.json" in _one_line_error(capsys)
    (out / "embeddings.json").write_text(record)


def test_unreadable_files_are_skipped_counted_or_strict(ckpt, media, tmp_path, capsys):
    (media / "bad.mp4").write_bytes(b"garbage")
    out = tmp_path / "emb"
    assert _embed(ckpt, media, out) == 0
    summary = last_json(capsys.readouterr().out)
    assert (summary["embedded"], summary["n_skipped"]) == (4, 1)
    assert summary["skipped"][0]["path"].endswith("bad.mp4") and summary["skipped"][0]["reason"]
    assert _embed(ckpt, media, tmp_path / "strict", "--strict") == 2
    assert "bad.mp4" in _one_line_error(capsys)
    (media / "bad.mp4").unlink()
    os.symlink(tmp_path / "gone", media / "lost.wav")  # a link that leads nowhere
    assert _embed(ckpt, media, tmp_path / "strict2", "--strict") == 2
    assert "lost.wav" in _one_line_error(capsys)

    # a file outside the folder's root (its first run's media/sub) is skipped, not refused
    assert _embed(ckpt, media / "sub", tmp_path / "sub_only") == 0
    assert _embed(ckpt, [media / "tone.wav", media / "sub"], tmp_path / "sub_only") == 0
    summary = last_json(capsys.readouterr().out)
    assert summary["n_skipped"] == 1 and "outside" in summary["skipped"][0]["reason"]

    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    (only_bad / "x.wav").write_bytes(b"RIFF")
    assert _embed(ckpt, only_bad, tmp_path / "none") == 2
    assert "no usable media file" in _one_line_error(capsys)
    assert not (tmp_path / "none").exists()


def test_a_name_too_long_for_its_npz_is_skipped(ckpt, media, tmp_path, capsys):
    name = "x" * (255 - len(".wav")) + ".wav"  # the longest name; its .npz is longer
    (media / name).write_bytes((media / "tone.wav").read_bytes())
    out = tmp_path / "emb"
    assert _embed(ckpt, media, out) == 0
    summary = last_json(capsys.readouterr().out)
    assert (summary["embedded"], summary["n_skipped"]) == (4, 1)
    assert "too long" in summary["skipped"][0]["reason"]

    # skipped before the folder changes: a run given only such a file writes nothing, and a
    # forced one keeps the rows it would have replaced
    capsys.readouterr()
    assert _embed(ckpt, media / name, tmp_path / "new") == 2
    assert "nothing written" in _one_line_error(capsys) and not (tmp_path / "new").exists()
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    record = (out / "embeddings.json").read_bytes()
    assert _embed(ckpt, media / name, out, "--hop", "0.5", "--force") == 2
    assert "nothing written" in _one_line_error(capsys)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before
    assert (out / "embeddings.json").read_bytes() == record


def test_a_name_with_dotdot_after_a_link_is_the_file_it_leads_to(ckpt, tmp_path, capsys):
    (tmp_path / "disk" / "clips").mkdir(parents=True)
    (tmp_path / "home").mkdir()
    MediaFactory(tmp_path / "disk")("a.wav", duration=2.0)  # the file disk/clips/../a.wav
    MediaFactory(tmp_path / "home")("a.wav", duration=1.0)  # home/a.wav: another file
    os.symlink(tmp_path / "disk" / "clips", tmp_path / "home" / "clips")
    given = tmp_path / "home" / "clips" / ".." / "a.wav"
    assert _embed(ckpt, given, tmp_path / "emb") == 0
    (entry,) = json.loads((tmp_path / "emb" / "embeddings.json").read_text())["files"].values()
    assert entry["path"] == str(tmp_path / "disk" / "a.wav") and entry["duration"] == 2.0


def test_the_readmes_python_example_runs(ckpts, media, tmp_path, monkeypatch, capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    (example,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "embed_file" in b]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "l3").mkdir(parents=True)  # a run folder, as the example loads
    os.symlink(ckpts["l3"], tmp_path / "runs" / "l3" / "best.pt")  # l3's rows are not unit
    assert _embed(ckpts["l3"], media, tmp_path / "runs" / "l3-embeddings") == 0
    capsys.readouterr()
    exec(compile(example, "README.md", "exec"), {})  # its assert compares the two routes
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 4 and all(str(media) in line for line in printed)


def test_a_run_killed_writing_its_first_record_leaves_a_usable_folder(ckpt, media, tmp_path):
    out = tmp_path / "emb"
    out.mkdir()
    (out / ".embeddings.json.tmp999999").write_text('{"format": "avssl-emb')  # cut short
    assert _embed(ckpt, media / "tone.wav", out) == 0
    (out / "notes.txt").write_text("mine")
    (out / "embeddings.json").unlink()  # now a folder with a file the tool did not write
    assert _embed(ckpt, media / "tone.wav", out) == 2


def test_the_same_weights_read_otherwise_are_other_settings(ckpt, media, tmp_path, capsys):
    """The front end is not in the weights hash; the model's keys of it are recorded as
    ``inputs`` and compared one by one; what the model does not read (``data.fps``) is not."""
    out = tmp_path / "emb"
    assert _embed(ckpt, media / "tone.wav", out) == 0
    other = _checkpoint(tmp_path, "contrastive", "model.audio.hop_length=160")
    capsys.readouterr()
    assert _embed(other, media / "tone.wav", out) == 2
    assert "other settings (model.audio.hop_length 320 -> 160)" in _one_line_error(capsys)
    window = _checkpoint(tmp_path, "contrastive", "data.window=0.5")  # said once, not twice
    assert _embed(window, media / "tone.wav", out) == 2
    assert "other settings (window 1.0 -> 0.5);" in _one_line_error(capsys)
    fps = _checkpoint(tmp_path, "contrastive", "data.fps=30")
    assert _embed(fps, media / "tone.wav", out) == 0
    assert last_json(capsys.readouterr().out)["unchanged"] == 1
    record_path = out / "embeddings.json"
    record = json.loads(record_path.read_text())
    assert record["inputs"]["model.audio.n_fft"] == 1024 and "data.fps" not in record["inputs"]
    del record["inputs"]  # a folder of the first version: what its rows read is not known
    record_path.write_text(json.dumps(record))
    assert _embed(other, media / "tone.wav", out) == 0
    assert last_json(capsys.readouterr().out)["unchanged"] == 1
    assert "inputs" not in json.loads(record_path.read_text())  # not claimed afterwards


def test_a_folder_whose_files_were_all_dropped_takes_other_settings(ckpt, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    wav = MediaFactory(tmp_path / "in")("tone.wav", duration=2.0)
    out = tmp_path / "emb"
    assert _embed(ckpt, wav, out) == 0
    wav.write_bytes(b"not audio")  # unreadable now: its rows are dropped
    assert _embed(ckpt, wav, out) == 0
    assert last_json(capsys.readouterr().out)["dropped"] == 1
    assert json.loads((out / "embeddings.json").read_text())["files"] == {}
    wav.unlink()
    MediaFactory(tmp_path / "in")("tone.wav", duration=2.0)
    assert _embed(ckpt, wav, out, "--hop", "0.5") == 0  # no rows of the old hop to mix with
    assert json.loads((out / "embeddings.json").read_text())["hop"] == 0.5
    assert _rows(out, "tone.wav")["audio"].shape[0] == 3


def test_rows_of_deleted_files_are_kept_and_counted_or_pruned(ckpt, media, tmp_path, capsys):
    out = tmp_path / "emb"
    assert _embed(ckpt, media, out) == 0
    capsys.readouterr()
    (media / "tone.wav").unlink()
    (media / "sub" / "clip.mp4").unlink()
    (media / "sub").rmdir()
    assert _embed(ckpt, media, out) == 0
    captured = capsys.readouterr()
    summary = last_json(captured.out)
    assert (summary["gone"], summary["pruned"], summary["files"]) == (2, 0, 4)
    assert (
        f"note: {out}: keeps the rows of 2 file(s) that no longer exist (--prune drops them)"
        in (captured.err)
    )
    assert len(_npz_names(out)) == 4  # kept unless asked
    changed = media / "clip.mp4"  # a file that changed is embedded again, not pruned
    MediaFactory(media)("clip.mp4", duration=1.0)
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    assert _embed(ckpt, media, out, "--prune") == 0
    captured = capsys.readouterr()
    summary = last_json(captured.out)
    assert (summary["gone"], summary["pruned"], summary["embedded"]) == (0, 2, 1)
    assert summary["files"] == 2 and "note:" not in captured.err
    assert _npz_names(out) == ["clip.mp4.npz", "still.png.npz"]  # sub/ left empty: removed
    assert not (out / "sub").exists()
    assert set(json.loads((out / "embeddings.json").read_text())["files"]) == {
        "clip.mp4",
        "still.png",
    }


def _set_dev(out: Path, name: str, dev) -> None:
    """Write ``dev`` as the device ``name`` was embedded from (None: not recorded, as before)."""
    record = json.loads((out / "embeddings.json").read_text())
    record["files"][name].pop("dev")
    if dev is not None:
        record["files"][name]["dev"] = dev
    (out / "embeddings.json").write_text(json.dumps(record))


def test_prune_keeps_rows_out_of_reach_and_never_empties_the_folder(ckpt, tmp_path, capsys):
    """A file embedded from another device than its nearest folder now (an unmounted disk), or
    under a link leading nowhere, may still exist: its rows stay; a prune that would drop every
    row is refused."""
    disk, ext, lib = tmp_path / "disk", tmp_path / "ext", tmp_path / "lib"
    for folder in (disk, ext, lib):
        folder.mkdir()
    MediaFactory(disk)("a.wav", duration=1.0)
    MediaFactory(ext)("c.wav", duration=1.0)
    MediaFactory(lib)("b.wav", duration=1.0)
    (lib / "linked").symlink_to(ext)
    out = tmp_path / "emb"
    assert _embed(ckpt, [disk, lib], out) == 0
    assert _npz_names(out) == ["disk/a.wav.npz", "lib/b.wav.npz", "lib/linked/c.wav.npz"]
    record = json.loads((out / "embeddings.json").read_text())
    dev = record["files"]["disk/a.wav"]["dev"]
    assert dev == os.stat(disk).st_dev
    _set_dev(out, "disk/a.wav", dev + 1)  # as if disk/ were the mount point of another disk
    capsys.readouterr()
    (disk / "a.wav").unlink()  # the disk "unmounted"
    shutil.rmtree(ext)  # the link now leads nowhere
    assert _embed(ckpt, [lib], out, "--prune") == 0  # disk/ not given again: held all the same
    captured = capsys.readouterr()
    summary = last_json(captured.out)
    assert (summary["gone"], summary["pruned"], summary["unchanged"]) == (2, 0, 1)
    assert "keeps the rows of 2 file(s) that may only be out of reach" in captured.err
    assert len(_npz_names(out)) == 3

    _set_dev(out, "disk/a.wav", dev)  # its own device after all: gone
    (lib / "b.wav").unlink()
    (lib / "linked").unlink()
    (lib / "notes.txt").write_text("not media")
    assert _embed(ckpt, [disk, lib], out) == 0
    assert "every one (under a link" in capsys.readouterr().err
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert _embed(ckpt, [disk, lib], out, "--prune") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: {out}: --prune would drop every row (none of its 3 files")
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before


def test_a_record_entry_without_its_path_is_a_damaged_record(ckpt, media, tmp_path, capsys):
    out = tmp_path / "emb"
    assert _embed(ckpt, media, out) == 0
    record = json.loads((out / "embeddings.json").read_text())
    del record["files"]["tone.wav"]["path"]  # an edit by hand: read by the gone-file check
    (out / "embeddings.json").write_text(json.dumps(record))
    capsys.readouterr()
    assert _embed(ckpt, media, out) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"error: {out / 'embeddings.json'}: damaged record (file 'tone.wav')"


def test_prune_reads_relative_inputs_and_drops_a_clip_folders_only_file(
    ckpt, tmp_path, capsys, monkeypatch
):
    """A link leading nowhere under a relative --inputs still holds its rows (skipped paths
    were compared as given, record paths are absolute); a file deleted from its own folder
    inside the inputs (one clip a folder) is gone, though the folder it leaves is empty."""
    lib, ext = tmp_path / "lib", tmp_path / "ext"
    (lib / "clip1").mkdir(parents=True)
    ext.mkdir()
    MediaFactory(lib)("b.wav", duration=1.0)
    MediaFactory(lib / "clip1")("a.wav", duration=1.0)
    MediaFactory(ext)("c.wav", duration=1.0)
    (lib / "linked").symlink_to(ext)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "emb"
    assert _embed(ckpt, "lib", out) == 0
    assert _npz_names(out) == ["b.wav.npz", "clip1/a.wav.npz", "linked/c.wav.npz"]
    capsys.readouterr()
    shutil.rmtree(ext)
    (lib / "clip1" / "a.wav").unlink()  # lib/clip1 is left empty
    assert _embed(ckpt, "lib", out) == 0
    captured = capsys.readouterr()
    assert last_json(captured.out)["gone"] == 2
    assert "(--prune drops 1 of them; the other 1 may only be out of reach: " in captured.err
    assert _embed(ckpt, "lib", out, "--prune") == 0
    summary = last_json(capsys.readouterr().out)
    assert (summary["gone"], summary["pruned"]) == (1, 1)
    assert sorted(_npz_names(out)) == ["b.wav.npz", "linked/c.wav.npz"]

    # a record without devices (written before them): an emptied folder may be a mount point
    MediaFactory(lib / "clip1")("a.wav", duration=1.0)
    assert _embed(ckpt, "lib", out) == 0
    _set_dev(out, "clip1/a.wav", None)
    (lib / "clip1" / "a.wav").unlink()
    capsys.readouterr()
    assert _embed(ckpt, "lib", out, "--prune") == 0
    assert (last_json(capsys.readouterr().out)["gone"]) == 2  # the dead link's and clip1's
