"""AV-Digits preparation: IDX parsing, canvases, splits and their disjointness, determinism."""

import gzip
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from avssl.data.manifest import SPLITS, read_manifest
from avssl.errors import AvsslError, ManifestError
from avssl.prep import avdigits
from avssl.prep.mnist import fixed_length, read_idx, read_mnist

REPO = Path(__file__).resolve().parents[1]


def load_script(name: str):
    """Import ``datasets/<name>/prepare.py`` (not a package) as a module."""
    spec = importlib.util.spec_from_file_location(
        f"prep_{name}", REPO / f"datasets/{name}/prepare.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_idx(path: Path, array: np.ndarray, magic: int) -> Path:
    header = np.array([magic, *array.shape], dtype=">u4").tobytes()
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())
    return path


def digit_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random 28x28 images, each with a unique bright marker, and labels cycling 0-9."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 100, size=(n, 28, 28)).astype(np.uint8)
    return x, np.arange(n) % 10


@pytest.fixture
def tiny(tmp_path):
    """A tiny FSDD folder (speakers amy, bob, cat; 0.6-s and 1.4-s takes; cat's recording device
    adds a DC offset of 0.05) and IDX files."""
    rec = tmp_path / "fsdd"
    rec.mkdir()
    for speaker in ("amy", "bob", "cat"):
        for digit in range(10):
            for take in range(3):
                seconds = 0.6 if take % 2 else 1.4
                t = np.arange(int(seconds * 8000)) / 8000
                wave = 0.3 * np.sin(2 * np.pi * (200 + 50 * digit) * t) + 0.05 * (speaker == "cat")
                sf.write(rec / f"{digit}_{speaker}_{take}.wav", wave, 8000, subtype="PCM_16")
    (rec / "README.wav").write_bytes(b"not a recording")
    x, y = digit_images(200, 0)
    xt, yt = digit_images(60, 1)
    return {
        "fsdd": rec,
        "images": write_idx(tmp_path / "img.gz", x, 2051),
        "labels": write_idx(tmp_path / "lab.gz", y, 2049),
        "test_images": write_idx(tmp_path / "timg.gz", xt, 2051),
        "test_labels": write_idx(tmp_path / "tlab.gz", yt, 2049),
        "x": x,
        "xt": xt,
    }


def run(tiny, out: Path, *extra: str) -> int:
    args = ["--fsdd", str(tiny["fsdd"]), "--mnist-images", str(tiny["images"])]
    args += ["--mnist-labels", str(tiny["labels"]), "--out", str(out), "--gallery-per-class", "2"]
    return avdigits.main([*args, *extra])


def load(out: Path):
    items = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()]
    return read_manifest(out / "manifest.jsonl"), items


def assert_disjoint(rows, items, gallery_rows):
    by_split: dict[str, set] = {}
    for item in items:
        by_split.setdefault(item["split"], set()).update(map(tuple, item["mnist"]))
    splits = list(by_split)
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            assert not by_split[a] & by_split[b], (a, b)
    test_speakers = {i["speaker"] for i in items if i["split"] == "test"}
    assert not test_speakers & {i["speaker"] for i in items if i["split"] != "test"}
    assert len({r.id for r in rows}) == len(rows)  # each recording in exactly one split
    for g in gallery_rows:
        src, idx = g.id.removeprefix("gallery_").split("_")
        assert (src, int(idx)) not in by_split.get("train", set()) | by_split.get("val", set())


def test_idx_known_answer_and_errors(tmp_path):
    x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / "a.gz", x, 2051)
    np.testing.assert_array_equal(read_idx(path, 2051), x)
    raw = tmp_path / "raw"  # not gzipped
    raw.write_bytes(np.array([2049, 3], ">u4").tobytes() + bytes([1, 2, 9]))
    assert read_idx(raw, 2049).tolist() == [1, 2, 9]
    with pytest.raises(ManifestError, match="magic 2051, expected 2049"):
        read_idx(path, 2049)
    raw.write_bytes(np.array([2049, 5], ">u4").tobytes() + bytes([1, 2]))
    with pytest.raises(ManifestError, match="truncated"):
        read_idx(raw, 2049)
    with pytest.raises(ManifestError, match="2 labels for 3 images"):
        read_mnist(write_idx(tmp_path / "i.gz", np.zeros((3, 2, 2)), 2051),
                   write_idx(tmp_path / "l.gz", np.zeros(2), 2049))  # fmt: skip
    # a header whose sizes multiply past 2**64 (numpy's product wrapped to 0) is truncated
    raw.write_bytes(np.array([2051, 2**22, 2**21, 2**21], ">u4").tobytes() + bytes(16))
    with pytest.raises(ManifestError, match="truncated"):
        read_idx(raw, 2051)
    with pytest.raises(ManifestError, match="images of 0x0 pixels"):
        read_mnist(write_idx(tmp_path / "z.gz", np.zeros((3, 0, 0)), 2051),
                   write_idx(tmp_path / "l3.gz", np.zeros(3), 2049))  # fmt: skip


def test_never_writes_into_its_inputs(tiny, tmp_path):
    """``--fsdd OUT/audio --out OUT`` would rewrite the recordings it reads: refused, --force or
    not, before anything is written."""
    out = tmp_path / "out"
    (out / "audio").mkdir(parents=True)
    for wav in sorted(tiny["fsdd"].iterdir()):
        (out / "audio" / wav.name).write_bytes(wav.read_bytes())
    before = {f.name: f.read_bytes() for f in (out / "audio").iterdir()}
    argv = ["--mnist-images", str(tiny["images"]), "--mnist-labels", str(tiny["labels"])]
    argv += ["--fsdd", str(out / "audio"), "--out", str(out)]
    for force in ([], ["--force"]):
        with pytest.raises(AvsslError, match="audio: holds an input of this run"):
            avdigits.main([*argv, *force])
    assert {f.name: f.read_bytes() for f in (out / "audio").iterdir()} == before
    assert sorted(f.name for f in out.iterdir()) == ["audio"]


def test_fixed_length_pads_centred_and_keeps_the_loudest_stretch():
    assert fixed_length(np.arange(1, 4.0), 7).tolist() == [0, 0, 1, 2, 3, 0, 0]
    assert fixed_length(np.arange(10.0), 4, centre_trim=True).tolist() == [3, 4, 5, 6]
    # equally loud windows (about the mean; starts 0 and 1 here): the most central one
    word = np.zeros(12)
    word[1:3] = 5.0
    assert fixed_length(word, 4).tolist() == [5, 5, 0, 0]
    flat = np.zeros(10)
    flat[[3, 6]] = 1.0
    assert fixed_length(flat, 4).tolist() == [1, 0, 0, 1]
    # a word at the start of a long recording is kept whole, not cut by a centred window
    rng = np.random.default_rng(0)
    wave = np.concatenate([rng.normal(0, 0.3, 300), 1e-3 * rng.normal(size=900)])
    kept = fixed_length(wave, 400)
    assert np.sum(kept**2) >= 0.99 * np.sum(wave**2) - 1e-9
    assert np.sum(fixed_length(wave, 400, centre_trim=True) ** 2) < 0.01 * np.sum(wave**2)
    # brute force: no window of 400 samples holds more energy about the mean
    x = wave - wave.mean()
    best = max(np.sum(x[i : i + 400] ** 2) for i in range(len(x) - 399))
    assert np.sum((kept - wave.mean()) ** 2) >= best * (1 - 1e-3)
    # the recording's mean goes before padding: silence continues at zero
    assert fixed_length(np.arange(1, 4.0), 7, remove_dc=True).tolist() == [0, 0, -1, 0, 1, 0, 0]


def test_dc_offset_removed_unless_kept(tiny, tmp_path, capsys):
    for flag, out in (("", tmp_path / "dc"), ("--keep-dc", tmp_path / "keep")):
        assert run(tiny, out, "--test-speakers", "cat", *([flag] if flag else [])) == 0
        report = json.loads((out / "prepare_report.json").read_text())
        assert report["dc_offset_removed"] is (flag == "")
        offsets = report["dc_offset_max_abs"]
        assert offsets["cat"] == pytest.approx(0.05, abs=2e-3) and offsets["amy"] < 2e-3
        short, _ = sf.read(out / "audio/3_cat_1.wav")  # 0.6 s: 0.2 s of padding each side
        assert np.abs(short[:1500]).max() == 0
        inside = short[1700:6300].mean()
        assert abs(inside - (0.05 if flag else 0.0)) < 2e-3


def test_tiny_set_splits_canvases_audio(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(tiny, out, "--test-speakers", "cat") == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["written"] == 90 and summary["unreadable"] == 1  # README.wav
    assert summary["splits"] == {"test": 30, "train": 40, "val": 20}  # takes 0 -> val
    rows, items = load(out)
    gallery = read_manifest(out / "gallery.jsonl")
    assert len(gallery) == 20 and {g.split for g in gallery} == {"test"}
    assert_disjoint(rows, items, gallery)
    g_img = np.asarray(Image.open(out / gallery[0].image))[:, :, 0]  # one digit at cell scale
    g_idx = int(gallery[0].id.rsplit("_", 1)[1])
    np.testing.assert_array_equal(g_img[14:42, 14:42], tiny["x"][g_idx])
    assert g_img.sum() == tiny["x"][g_idx].astype(int).sum()
    by_id = {i["id"]: i for i in items}
    for row in rows[::7]:
        item = by_id[row.id]
        assert row.start == 0.0 and row.end == 1.0 and row.labels == [row.id[0]]
        assert item["digits"][item["source_cell"]] == int(row.labels[0])
        others = [d for k, d in enumerate(item["digits"]) if k != item["source_cell"]]
        assert int(row.labels[0]) not in others and len(set(others)) == 3
        assert row.boxes["sources"] == [avdigits.cell_box(item["source_cell"], 2)]
        assert len(row.boxes["distractors"]) == 3
        wave, sr = sf.read(out / row.audio)
        assert sr == 8000 and wave.shape == (8000,)
        img = np.asarray(Image.open(out / row.image))
        assert img.shape == (56, 56, 3)
        # the source box shows the chosen MNIST image at its own 28x28 size
        src, idx = item["mnist"][item["source_cell"]]
        x0, y0, x1, y1 = (int(v * 56) for v in row.boxes["sources"][0])
        np.testing.assert_array_equal(img[y0:y1, x0:x1, 0], tiny["x"][idx])
        assert row.frame_labels == [str(d) for d in item["digits"]]
    # a 0.6-s take is centred in silence, a 1.4-s take trimmed
    short, _ = sf.read(out / "audio/3_amy_1.wav")
    assert (
        np.abs(short[:1500]).max() == 0
        and np.abs(short[1700:6300]).min() < 0.3 < np.abs(short[1700:6300]).max()
    )
    assert np.abs(short[6500:]).max() == 0


def test_deterministic_and_refuses_overwrite(tiny, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run(tiny, a, "--max-takes", "2") == 0
    assert run(tiny, b, "--max-takes", "2") == 0
    for name in ("manifest.jsonl", "items.jsonl", "gallery.jsonl"):
        assert (a / name).read_text() == (b / name).read_text().replace(str(b), str(a))
    assert (a / "images/4_bob_1.png").read_bytes() == (b / "images/4_bob_1.png").read_bytes()
    report = json.loads((a / "prepare_report.json").read_text())
    assert report["speakers"]["test"] == ["cat"] and "cat" in report["notes"][0]  # fallback
    before = (a / "manifest.jsonl").read_text()
    args = ["--fsdd", str(tiny["fsdd"]), "--mnist-images", str(tiny["images"]),
            "--mnist-labels", str(tiny["labels"]), "--out", str(a), "--seed", "1"]  # fmt: skip
    capsys.readouterr()
    assert load_script("avdigits").main(args) == 2  # the thin script: one-line error, status 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "already exists" in err and len(err.splitlines()) == 1
    assert (a / "manifest.jsonl").read_text() == before
    assert run(tiny, a, "--max-takes", "2", "--seed", "1", "--force") == 0
    assert (a / "manifest.jsonl").read_text() != before


def test_test_mnist_files_and_val_speaker(tiny, tmp_path):
    out = tmp_path / "out"
    extra = ["--test-mnist-images", str(tiny["test_images"]),
             "--test-mnist-labels", str(tiny["test_labels"]),
             "--test-speakers", "bob", "--val-speaker", "amy"]  # fmt: skip
    assert run(tiny, out, *extra) == 0
    rows, items = load(out)
    gallery = read_manifest(out / "gallery.jsonl")
    assert_disjoint(rows, items, gallery)
    for item in items:
        assert item["split"] == {"bob": "test", "amy": "val", "cat": "train"}[item["speaker"]]
        sources = {src for src, _ in item["mnist"]}
        assert sources == ({"test"} if item["split"] == "test" else {"main"})
    assert all(g.id.startswith("gallery_test_") for g in gallery)
    # the validation gallery: validation images only, for evaluations that choose anything
    val_gallery = read_manifest(out / "gallery_val.jsonl")
    val_images = {tuple(c) for it in items if it["split"] == "val" for c in it["mnist"]}
    pools = json.loads((out / "prepare_report.json").read_text())["mnist_images"]
    assert val_gallery and {g.split for g in val_gallery} == {"val"}
    assert {g.labels[0] for g in val_gallery} == {str(d) for d in range(10)}
    for g in val_gallery:
        src, idx = g.id.removeprefix("gallery_").split("_")
        assert src == "main" and (src, int(idx)) not in {
            tuple(c) for it in items if it["split"] != "val" for c in it["mnist"]
        } and (out / g.image).is_file()  # fmt: skip
    assert len(val_gallery) <= pools["val"] and val_images  # drawn from the val pool


@pytest.mark.parametrize(
    "named,why",
    [
        ("bob,nobody", "no recordings of nobody"),
        ("bobb", "no recordings of bobb"),
        (",", "names no speaker"),
    ],
)
def test_a_named_test_speaker_must_be_present(tiny, tmp_path, named, why):
    # a typo must not silently test on another voice; nothing is written
    out = tmp_path / "out"
    with pytest.raises(AvsslError) as err:
        run(tiny, out, "--test-speakers", named)
    assert str(err.value).startswith(f"--test-speakers {named}: {why}")
    assert str(err.value).endswith("(speakers present: amy, bob, cat)") and not out.exists()


def test_corrupt_recording_counted_and_strict(tiny, tmp_path):
    (tiny["fsdd"] / "5_amy_2.wav").write_bytes(b"RIFF0000WAVEjunk")
    out = tmp_path / "out"
    assert run(tiny, out, "--max-takes", "3") == 0
    report = json.loads((out / "prepare_report.json").read_text())
    bad = dict(map(tuple, report["unreadable_items"]))
    assert set(bad) == {"README.wav", "5_amy_2"} and report["written"] == 89
    from avssl.errors import AvsslError

    with pytest.raises(AvsslError, match="--strict"):
        run(tiny, tmp_path / "strict", "--strict")


def test_shared_data_subset_trains(shared_data, tmp_path, tiny_train_args, capsys):
    out = tmp_path / "avd"
    mnist = shared_data / "mnist"
    args = ["--fsdd", str(shared_data / "fsdd/recordings"), "--out", str(out),
            "--mnist-images", str(mnist / "images-idx3-ubyte.gz"),
            "--mnist-labels", str(mnist / "labels-idx1-ubyte.gz"),
            "--max-takes", "1", "--val-speaker", "lucas"]  # fmt: skip
    assert avdigits.main(args) == 0
    rows, items = load(out)
    assert len(rows) == 40  # 4 speakers x 10 digits x take 0
    speakers = {s: {i["speaker"] for i in items if i["split"] == s} for s in SPLITS}
    assert speakers == {"train": {"george", "jackson"}, "val": {"lucas"}, "test": {"nicolas"}}
    assert_disjoint(rows, items, read_manifest(out / "gallery.jsonl"))
    capsys.readouterr()
    import train

    sets = ["data.root=" + str(out), "model.channels=[8,16]", "model.embed_dim=16",
            "train.batch_size=8", "train.steps=1", "train.eval_every=1",
            "train.log_every=1"]  # fmt: skip
    targs = ["--config", str(REPO / "configs/avdigits-contrastive.yaml"), *tiny_train_args()]
    targs += [a for s in sets for a in ("--set", s)]
    assert train.main(targs) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["val"]["accuracy"] == res["val"]["accuracy_easy"]  # no hard negatives


def test_canvases_per_recording_multiplies_training_pairs_only(tiny, tmp_path, capsys):
    one, three = tmp_path / "one", tmp_path / "three"
    assert run(tiny, one, "--test-speakers", "cat") == 0
    assert run(tiny, three, "--test-speakers", "cat", "--canvases-per-recording", "3") == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["splits"] == {"test": 30, "train": 120, "val": 20}
    rows1, _ = load(one)
    rows3, items3 = load(three)
    assert_disjoint(rows3, items3, read_manifest(three / "gallery.jsonl"))
    # the first canvas of every recording is the same as without the option
    assert [r.to_json() for r in rows3 if "-c" not in r.id] == [r.to_json() for r in rows1]
    train = [r for r in rows3 if r.split == "train"]
    by_audio: dict[str, list] = {}
    for r in train:
        by_audio.setdefault(r.audio, []).append(r)
    assert len(by_audio) == 40 and {len(v) for v in by_audio.values()} == {3}
    for group in by_audio.values():
        assert len({r.image for r in group}) == 3 and len({r.labels[0] for r in group}) == 1
        canvases = [np.asarray(Image.open(three / r.image)) for r in group]
        assert not np.array_equal(canvases[0], canvases[1])
    for k in ("0", "1001"):  # a billion would start writing them
        with pytest.raises(AvsslError, match=f"between 1 and 1000, got {k}"):
            run(tiny, tmp_path / "bad", "--canvases-per-recording", k)
    assert not (tmp_path / "bad").exists()
    # takes 0 are the validation split: --max-takes 1 leaves no training recording
    with pytest.raises(AvsslError, match="no recording falls in the train split"):
        run(tiny, tmp_path / "bad", "--max-takes", "1")
    assert not (tmp_path / "bad").exists()


def test_canvases_feed_frame_labels_and_unseen_negatives(tiny, tmp_path):
    """The data layer reads each canvas's digits; ``data.unseen_negatives`` then never pairs a
    canvas with a spoken digit it shows as a negative."""
    from avssl.config import load_config
    from avssl.data.source import load_split

    out = tmp_path / "out"
    assert run(tiny, out, "--canvases-per-recording", "3", "--canvas-size", "56") == 0
    sets = [f"data.root={out}", "data.fps=1", "data.frame_size=56", "data.load_size=56"]
    sets += ["data.sample_rate=8000", "data.hard_fraction=0", "data.augment=false"]
    for unseen in (False, True):
        cfg = load_config(None, [*sets, f"data.unseen_negatives={unseen}"])
        ds = load_split(cfg.data, "train", True, progress=False)
        rows = ds.store.rows
        shown = 0
        for i in range(len(ds)):
            item = ds[i]
            clip, easy = ds.sampler.sample(i).clip, ds.sampler.sample(i).easy_clip
            digits = set(rows[clip].frame_labels)
            assert {str(d) for d in np.flatnonzero(item["frame_labels"])} == digits
            shown += rows[easy].labels[0] in digits
        assert (shown == 0) if unseen else (shown > 0)


def test_audio_proxy_benchmark_holds_out_training_speakers_only(tiny, tmp_path, capsys):
    """benchmarks/avdigits_audio.py: a fold per training speaker; the test speaker is read only by
    --ceiling."""
    assert run(tiny, tmp_path / "set") == 0  # test speaker: cat (alphabetically last)
    spec = importlib.util.spec_from_file_location(
        "avd_audio", REPO / "benchmarks/avdigits_audio.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    capsys.readouterr()
    small = ["--set", "model.channels=[4,8]", "--set", "model.audio.n_mels=16"]
    # 10 steps: a one-cycle warm-up of a tenth of them once divided by zero
    argv = ["--data", str(tmp_path / "set/manifest.jsonl"), "--steps", "10", "--batch-size", "8"]
    assert bench.main([*argv, *small]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(out["held_out"]) == {"amy", "bob"}
    assert all(0.0 <= acc <= 1.0 for acc in out["held_out"].values())
    waves, digits, speakers = bench.load_recordings(tmp_path / "set/manifest.jsonl", 8000, 1.0)
    assert "cat" not in set(speakers) and len(waves) == len(digits) == 2 * 10 * 3
    # --ceiling: trained on both training speakers, tested on the test speaker's recordings
    waves, digits, speakers = bench.load_recordings(
        tmp_path / "set/manifest.jsonl", 8000, 1.0, test=True
    )
    assert set(speakers) == {"cat"} and len(waves) == len(digits) == 10 * 3
    assert bench.main([*argv, *small, "--ceiling"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["train_speakers"] == ["amy", "bob"] and set(out["test_speakers"]) == {"cat"}
    assert 0.0 <= out["ceiling"] == out["test_speakers"]["cat"] <= 1.0 and "held_out" not in out


def test_val_speaker_writes_a_heldout_voice_manifest(tiny, tmp_path):
    out, plain = tmp_path / "out", tmp_path / "plain"
    extra = ["--test-speakers", "bob", "--val-speaker", "amy", "--canvases-per-recording", "3"]
    assert run(tiny, out, *extra) == 0
    rows, items = load(out)
    held = read_manifest(out / "heldout.jsonl")
    speaker = {i["id"]: i["speaker"] for i in items}
    # one row per training or validation recording, the first canvas of each
    assert len({r.audio for r in held}) == len(held)
    assert {r.audio for r in held} == {r.audio for r in rows if r.split != "test"}
    assert all("-c" not in r.id for r in held)
    for r in held:
        assert r.split == {"amy": "test", "cat": "train"}[speaker[r.id]]
        original = next(x for x in rows if x.id == r.id)
        assert r.image == original.image and r.boxes == original.boxes
    assert (out / r.image).is_file()  # paths resolve from the manifest's folder
    # without --val-speaker there is no held-out voice; an existing file is never overwritten
    assert run(tiny, plain, "--test-speakers", "bob") == 0
    assert not (plain / "heldout.jsonl").exists()
    (plain / "manifest.jsonl").unlink()
    (plain / "gallery.jsonl").unlink()
    (plain / "heldout.jsonl").write_text("mine\n")
    with pytest.raises(AvsslError, match="already exists.*heldout.jsonl"):
        run(tiny, plain, "--test-speakers", "bob", "--val-speaker", "amy")
    assert (plain / "heldout.jsonl").read_text() == "mine\n"
    # nor without --val-speaker; and with --force the earlier run's file, whose boxes describe
    # canvases this run replaces, goes
    with pytest.raises(AvsslError, match="already exists.*heldout.jsonl"):
        run(tiny, out, "--test-speakers", "bob")
    assert run(tiny, out, "--test-speakers", "bob", "--grid", "3", "--canvas-size", "84",
               "--force") == 0  # fmt: skip
    assert not (out / "heldout.jsonl").exists()


def test_a_force_rerun_stopped_part_way_leaves_no_stale_manifest(tiny, tmp_path, monkeypatch):
    # the old manifest stayed beside canvases the new run had already redrawn: its boxes then
    # pointed at the wrong cells
    out = tmp_path / "out"
    assert run(tiny, out, "--max-takes", "2") == 0
    real, calls = avdigits.render_canvas, []

    def fail_late(*args):
        calls.append(1)
        if len(calls) == 20:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(avdigits, "render_canvas", fail_late)
    with pytest.raises(KeyboardInterrupt):
        run(tiny, out, "--max-takes", "2", "--seed", "5", "--force")
    for name in ("manifest.jsonl", "prepare_report.json", "items.jsonl", "gallery.jsonl"):
        assert not (out / name).exists(), name


def test_a_sigterm_removes_what_the_run_made(tiny, tmp_path, capsys, monkeypatch):
    import signal

    from bad_media import sigterm_at_call

    sigterm_at_call(monkeypatch, avdigits, "read_recording", 5)
    out = tmp_path / "new" / "out"
    args = ["--fsdd", str(tiny["fsdd"]), "--mnist-images", str(tiny["images"]),
            "--mnist-labels", str(tiny["labels"]), "--out", str(out)]  # fmt: skip
    assert load_script("avdigits").main(args) == 128 + signal.SIGTERM
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: terminated (SIGTERM)"
    assert not (tmp_path / "new").exists()


def test_recordings_named_twice_cut_short_or_with_other_digits(tiny, tmp_path):
    fsdd = tiny["fsdd"]
    (fsdd / "\u0663_amy_2.wav").write_bytes((fsdd / "0_amy_0.wav").read_bytes())  # Arabic 3
    (fsdd / "4_bob_01.wav").write_bytes((fsdd / "0_bob_0.wav").read_bytes())  # is 4_bob_1
    (fsdd / "7_cat_1.wav").write_bytes((fsdd / "7_cat_1.wav").read_bytes()[:3000])
    out = tmp_path / "out"
    assert run(tiny, out, "--max-takes", "3") == 0
    report = json.loads((out / "prepare_report.json").read_text())
    bad = dict(map(tuple, report["unreadable_items"]))
    assert bad["\u0663_amy_2.wav"] == "name is not {digit}_{speaker}_{take}.wav"
    assert bad["4_bob_1.wav"] == "the same recording as 4_bob_01.wav"
    assert bad["7_cat_1"].startswith("truncated: header declares")
    rows, items = load(out)
    assert len(rows) == len(items) == 90 - 1  # 4_bob_1 once, 7_cat_1 not at all
    heard = sf.read(out / "audio" / "4_bob_1.wav")[0]
    assert len({r.audio for r in rows}) == len(rows) and len(heard)


def test_an_upper_case_wav_extension_is_an_fsdd_recording(tiny, tmp_path):
    fsdd = tiny["fsdd"]
    (fsdd / "2_amy_1.wav").rename(fsdd / "2_amy_1.WAV")  # as some copies and zips spell it
    out = tmp_path / "out"
    assert run(tiny, out, "--max-takes", "3") == 0
    report = json.loads((out / "prepare_report.json").read_text())
    assert [name for name, _ in report["unreadable_items"]] == ["README.wav"]  # the fixture's
    rows, _ = load(out)
    assert len(rows) == 90 and any(r.audio == "audio/2_amy_1.wav" for r in rows)


def test_test_mnist_files_that_repeat_training_handwriting(tiny, tmp_path):
    # the same file given twice is refused; an overlap is left out of training and validation
    with pytest.raises(AvsslError, match="holds every image of"):
        run(tiny, tmp_path / "same", "--test-mnist-images", str(tiny["images"]),
            "--test-mnist-labels", str(tiny["labels"]))  # fmt: skip
    assert not (tmp_path / "same").exists()
    x, y = digit_images(200, 0)
    xt, yt = digit_images(60, 1)
    xt[:7], yt[:7] = x[:7], y[:7]  # seven training images among the test ones
    timg = write_idx(tmp_path / "t.gz", xt, 2051)
    tlab = write_idx(tmp_path / "tl.gz", yt, 2049)
    out = tmp_path / "out"
    assert run(tiny, out, "--test-mnist-images", str(timg), "--test-mnist-labels", str(tlab)) == 0
    rows, items = load(out)
    pixels = {"main": x, "test": xt}
    seen = {split: {pixels[s][i].tobytes() for it in items if it["split"] == split
                    for s, i in it["mnist"]} for split in ("train", "val", "test")}  # fmt: skip
    assert not (seen["train"] | seen["val"]) & seen["test"]
    report = json.loads((out / "prepare_report.json").read_text())
    assert any(note.startswith("7 images of") for note in report["notes"])


def test_a_test_file_without_a_digit_is_named_and_a_damaged_gzip_is_one_line(tiny, tmp_path):
    xt, yt = digit_images(60, 1)
    yt[yt == 9] = 8
    timg = write_idx(tmp_path / "t.gz", xt, 2051)
    tlab = write_idx(tmp_path / "tl.gz", yt, 2049)
    with pytest.raises(AvsslError, match=f"^{timg}: the test images hold no digit 9$"):
        run(tiny, tmp_path / "o", "--test-mnist-images", str(timg), "--test-mnist-labels",
            str(tlab))  # fmt: skip
    damaged = bytearray(tiny["labels"].read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    (tmp_path / "bad.gz").write_bytes(bytes(damaged))
    with pytest.raises(ManifestError, match=f"^{tmp_path / 'bad.gz'}: cannot read"):
        read_idx(tmp_path / "bad.gz", 2049)


def test_unreadable_test_speaker_is_refused_naming_an_example(tiny, tmp_path):
    """A test speaker whose every recording is unreadable leaves no test split: refused in one
    line with an example of what was wrong, not written as a manifest without a test split."""
    for path in tiny["fsdd"].glob("*_cat_*.wav"):  # cat: the default test speaker here
        path.write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    out = tmp_path / "out"
    with pytest.raises(AvsslError, match=r"test speaker cat could be read .*e\.g\. \d_cat_\d: "):
        run(tiny, out)
    assert not (out / "manifest.jsonl").exists()


def test_no_readable_training_recording_names_an_example(tiny, tmp_path):
    for path in tiny["fsdd"].glob("*_*_*.wav"):
        path.write_bytes(b"junk")
    with pytest.raises(AvsslError, match=r"no training recording could be read .*; e\.g\. "):
        run(tiny, tmp_path / "out", "--test-speakers", "cat")


def test_a_gallery_short_of_gallery_per_class_is_noted(tiny, tmp_path):
    """The tiny validation pool holds 2 images of each digit: --gallery-per-class 3 cannot be
    met there (gallery_val.jsonl) but can in test (4 per digit), and the report says so."""
    out = tmp_path / "out"
    run(tiny, out, "--gallery-per-class", "3")
    notes = json.loads((out / "prepare_report.json").read_text())["notes"]
    short = [n for n in notes if "fewer than --gallery-per-class 3" in n]
    assert len(short) == 1 and short[0].startswith("gallery_val.jsonl: 2 images per digit")


def test_a_test_speaker_named_twice_is_listed_once(tiny, tmp_path):
    out = tmp_path / "out"
    run(tiny, out, "--test-speakers", "cat, cat")
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["speakers"]["test"] == ["cat"] and report["splits"]["test"] == 30


def test_a_file_given_for_a_folder_or_a_folder_for_a_file_is_one_line(tiny, tmp_path, capsys):
    # --fsdd naming a file said "no such FSDD recordings folder"; --mnist-images naming a
    # folder said "cannot read ([Errno 21] Is a directory: ...)"
    args = ["--mnist-images", str(tiny["images"]), "--mnist-labels", str(tiny["labels"])]
    args += ["--out", str(tmp_path / "out")]
    script = load_script("avdigits")
    assert script.main(["--fsdd", str(tiny["images"]), *args]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {tiny['images']}: not a folder (--fsdd is the FSDD recordings folder)"
    )
    for flag in ("--mnist-images", "--mnist-labels"):
        argv = ["--fsdd", str(tiny["fsdd"]), *args]
        argv[argv.index(flag) + 1] = str(tmp_path)
        assert script.main(argv) == 2
        assert capsys.readouterr().err.strip() == (
            f"error: {tmp_path}: a folder, not an MNIST IDX file (name the file)"
        )
    assert not (tmp_path / "out").exists()


def test_speakers_named_in_two_cases_are_refused(tiny, tmp_path, capsys):
    # 3_Cat_5.wav made a speaker "Cat" beside the test voice "cat": one voice in two splits
    fsdd = tiny["fsdd"]
    (fsdd / "3_Cat_5.wav").write_bytes((fsdd / "3_cat_1.wav").read_bytes())
    out = tmp_path / "out"
    argv = ["--fsdd", str(fsdd), "--mnist-images", str(tiny["images"]), "--mnist-labels"]
    assert load_script("avdigits").main([*argv, str(tiny["labels"]), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {fsdd}: speakers Cat and cat differ only in case (e.g. 3_Cat_5.wav and "
        "0_cat_0.wav): one voice could fall in two splits; rename the files to one spelling"
    )
    assert not out.exists()


def test_a_default_test_speaker_that_cannot_be_read_leaves_the_other(tiny, tmp_path):
    """By default theo and yweweler test: theo unreadable leaves yweweler, with a note whose
    example is a file that could not be read (not a second file of a take); named with
    ``--test-speakers``, theo unreadable is refused."""
    for speaker, new in (("bob", "yweweler"), ("cat", "theo")):
        for path in tiny["fsdd"].glob(f"*_{speaker}_*.wav"):
            path.rename(path.with_name(path.name.replace(f"_{speaker}_", f"_{new}_")))
    for path in tiny["fsdd"].glob("*_theo_*.wav"):
        path.write_bytes(b"junk")
    (tiny["fsdd"] / "0_theo_01.wav").write_bytes(b"junk")  # listed first: "the same recording"
    out = tmp_path / "out"
    assert run(tiny, out) == 0
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["speakers"]["test"] == ["yweweler"]
    note = next(n for n in report["notes"] if n.startswith("default test speaker theo"))
    assert "testing on yweweler; e.g. " in note and "the same recording" not in note, note
    rows, _ = load(out)
    assert {r.id.split("_")[1] for r in rows if r.split == "test"} == {"yweweler"}
    with pytest.raises(AvsslError, match=r"test speaker theo could be read .*e\.g\. \d_theo_\d"):
        run(tiny, tmp_path / "named", "--test-speakers", "theo,yweweler")


def test_a_speaker_spelt_in_another_case_only_in_takes_left_out_is_not_refused(tiny, tmp_path):
    # 3_Cat_45.wav is not read under --max-takes 3: no voice can fall in two splits
    fsdd = tiny["fsdd"]
    (fsdd / "3_Cat_45.wav").write_bytes((fsdd / "3_cat_1.wav").read_bytes())
    assert run(tiny, tmp_path / "out", "--max-takes", "3") == 0
    rows, _ = load(tmp_path / "out")
    assert {r.domain for r in rows} == {"amy", "bob", "cat"}
    with pytest.raises(AvsslError, match="speakers Cat and cat differ only in case"):
        run(tiny, tmp_path / "all")


def test_no_training_recording_read_gives_a_recording_as_example(tiny, tmp_path):
    # the example was README.wav: "name is not {digit}_{speaker}_{take}.wav", no recording
    for path in tiny["fsdd"].glob("*_*_*.wav"):
        path.write_bytes(b"junk")
    with pytest.raises(AvsslError, match=r"no training recording could be read .*e\.g\. 0_amy_0:"):
        run(tiny, tmp_path / "out")


@pytest.mark.parametrize("takes", ["0", "-2"])
def test_max_takes_below_one_is_refused_naming_the_flag(tiny, tmp_path, capsys, takes):
    """--max-takes 0 used to say "FSDD: no FSDD recordings" of a folder full of them."""
    with pytest.raises(SystemExit) as stop:
        run(tiny, tmp_path / "out", "--max-takes", takes)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--max-takes" in err and "must be at least 1" in err
    assert "no FSDD recordings" not in err and not (tmp_path / "out").exists()
