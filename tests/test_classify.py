"""Sound classification: dataset listings, features and ``evaluate.py classify`` (the probe
protocol itself: test_probe_protocol.py).

Generated datasets use short tones whose frequency is the class, so a probe on log-mel
statistics must be close to perfect; the shared ESC-10 subset checks real audio end to end.
"""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from bad_media import last_json
from conftest import TINY

import evaluate
import train
from avssl.errors import AvsslError
from avssl.eval.adapt_bn import audio_norm_layers
from avssl.eval.audio_sets import list_esc50, list_folder, list_manifest, list_us8k
from avssl.eval.clip_features import LogMelStats, MfccStats, WindowEmbedder
from avssl.eval.embed import audio_windows, embed_audio
from avssl.eval.probe import fixed_split

SR = 16000
FREQS = {"low": 300.0, "mid": 1200.0, "high": 4000.0}
CLASS_ID = {"low": 3, "mid": 7, "high": 9}  # US8K ids: dog_bark, jackhammer, street_music


def _tone(path: Path, label: str, seed: int, duration: float = 0.6) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration * SR)) / SR
    wave = rng.uniform(0.2, 0.5) * np.sin(2 * np.pi * FREQS[label] * t + rng.uniform(0, 6))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (wave + 0.02 * rng.normal(size=t.shape)).astype(np.float32), SR)
    return path


def make_esc50(root: Path, folds=(1, 2, 3, 4), per_fold: int = 2) -> Path:
    rows, seed = [], 0
    for fold in folds:
        for target, label in enumerate(FREQS):
            for _ in range(per_fold):
                seed += 1
                name = f"{fold}-{1000 + seed}-A-{target}.wav"
                _tone(root / "audio" / name, label, seed)
                rows.append([name, fold, target, label, label != "high", 1000 + seed, "A"])
    (root / "meta").mkdir(parents=True, exist_ok=True)
    with open(root / "meta" / "esc50.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        w.writerows(rows)
    return root


def make_us8k(root: Path, with_csv: bool) -> Path:
    rows, seed = [], 0
    for fold in (1, 2, 3):
        for label, cid in CLASS_ID.items():
            for k in range(2):
                seed += 1
                name = f"{500 + seed}-{cid}-0-{k}.wav"
                _tone(root / "audio" / f"fold{fold}" / name, label, seed)
                rows.append([name, 500 + seed, 0.0, 0.6, 1, fold, cid, label])
    if with_csv:
        (root / "metadata").mkdir(parents=True)
        with open(root / "metadata" / "UrbanSound8K.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            header = "slice_file_name,fsID,start,end,salience,fold,classID,class"
            w.writerow(header.split(","))
            w.writerows(rows)
    return root


def make_folder(root: Path, recordings: int = 4, takes: int = 2) -> Path:
    seed = 0
    for label in FREQS:
        for r in range(recordings):
            for t in range(takes):
                seed += 1
                _tone(root / label / f"{label}-rec{r}_take{t}.wav", label, seed)
    return root


# ---------------------------------------------------------------- listings


def test_list_esc50_folds_and_subset(tmp_path):
    root = make_esc50(tmp_path / "esc")
    items = list_esc50(root)
    assert len(items) == 24 and {it.group for it in items} == {"1", "2", "3", "4"}
    assert all(it.path.is_file() and it.path.name.startswith(it.group + "-") for it in items)
    esc10 = list_esc50(root, "esc10")
    assert len(esc10) == 16 and {it.label for it in esc10} == {"low", "mid"}
    assert len({it.source for it in items}) == 24 and all(it.source in it.path.name for it in items)


def test_list_us8k_csv_and_names_agree(tmp_path):
    with_csv = list_us8k(make_us8k(tmp_path / "a", with_csv=True))
    from_names = list_us8k(make_us8k(tmp_path / "b", with_csv=False))
    assert len(with_csv) == len(from_names) == 18
    key = lambda items: sorted((it.path.name, it.group) for it in items)  # noqa: E731
    assert key(with_csv) == key(from_names)
    assert {it.label for it in with_csv} == set(FREQS)
    assert {it.label for it in from_names} == {"dog_bark", "jackhammer", "street_music"}
    assert all(it.path.parent.name == f"fold{it.group}" for it in from_names)
    assert [it.source for it in with_csv] == [it.path.name.split("-")[0] for it in with_csv]


def test_list_folder_groups(tmp_path):
    root = make_folder(tmp_path / "f")
    items = list_folder(root, r"^(.+)_take")
    assert len(items) == 24 and len({it.group for it in items}) == 12
    assert all(it.group == it.path.name.split("_take")[0] == it.source for it in items)
    shared = list_folder(root, r"rec\d+")  # a regex may also group across classes (speakers)
    assert {it.group for it in shared} == {"rec0", "rec1", "rec2", "rec3"}
    assert len({it.group for it in list_folder(root)}) == 24  # no regex: each file alone


# ---------------------------------------------------------------- features


def tiny_model():
    from avssl.config import Config, apply_override
    from avssl.models import build_model

    cfg = Config()
    for s in TINY:
        if s.startswith("model."):
            apply_override(cfg, s)
    torch.manual_seed(0)
    return build_model(cfg.model, cfg.data).eval()


def test_window_embedder_pools_per_window_embeddings():
    model = tiny_model()
    waves = [torch.randn(int(1.7 * SR)), torch.randn(int(0.4 * SR))]
    for pool in ("mean", "max"):
        got = WindowEmbedder(model, SR, 1.0, hop=0.25, pool=pool)(waves)
        for i, w in enumerate(waves):
            e = embed_audio(model, audio_windows(w, SR, 1.0, 0.25))
            ref = e.mean(0) if pool == "mean" else e.max(0).values
            torch.testing.assert_close(got[i], ref, rtol=1e-4, atol=1e-5)
    assert audio_windows(waves[0], SR, 1.0, 0.25).shape[0] == 3


def test_tower_layer_is_the_pooled_tower_before_the_head_with_and_without_tta():
    from avssl.audio_tta import speed_views

    model = tiny_model()
    model.audio_layer = "tower"
    wave = torch.randn(int(1.7 * SR))
    wins = audio_windows(wave, SR, 1.0, 0.25)
    with torch.no_grad():
        pooled = model.audio(model._spectrogram(wins))  # [W, out_dim]
        got = WindowEmbedder(model, SR, 1.0, hop=0.25)([wave])
        torch.testing.assert_close(got[0], pooled.mean(0), rtol=1e-4, atol=1e-5)
        model.audio_tta = (0.9, 1.1)
        views = [model.audio(model._spectrogram(speed_views(wins, (s,)))) for s in (0.9, 1.1)]
        tta = embed_audio(model, wins)  # the mean of the views, not renormalised
        torch.testing.assert_close(tta, (views[0] + views[1]) / 2, rtol=1e-4, atol=1e-5)
        model.audio_layer = "embedding"
        assert embed_audio(model, wins).shape[1] == model.cfg.embed_dim != pooled.shape[1]


def test_grid_layer_is_the_tower_map_on_l3s_4_by_3_grid():
    """``--layer grid``: each of the 4 x 3 cells is the max of its block of the tower's last
    map (brute force over the adaptive pool's cell bounds); windows are embedded one by one."""
    from avssl.eval.sliding import sharing_blocker

    model = tiny_model()
    model.audio_layer = "grid"
    assert sharing_blocker(model, SR, 1.0, 0.25) == (
        "the 4 x 3 grid of a window's map is cut from that window alone"
    )
    wave = torch.randn(int(1.7 * SR))
    wins = audio_windows(wave, SR, 1.0, 0.25)
    with torch.no_grad():
        maps = model.audio.tower(model._spectrogram(wins))  # [W, C, F, T]
        got = embed_audio(model, wins)
        emb = WindowEmbedder(model, SR, 1.0, hop=0.25)([wave])
    w, c, f, t = maps.shape
    cells = [
        maps[
            :, :, (i * f) // 4 : -((-(i + 1) * f) // 4), (j * t) // 3 : -((-(j + 1) * t) // 3)
        ].amax(dim=(2, 3))
        for i in range(4)
        for j in range(3)
    ]  # [W, C] each, row-major over the grid as flatten() lays it out channel by channel
    want = torch.stack(cells, dim=2).reshape(w, c * 12)
    assert got.shape == (w, 12 * c)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(emb[0], want.mean(0), rtol=1e-4, atol=1e-5)


def test_the_grid_is_unchanged_by_a_last_2x2_pool_on_l3s_map():
    """L3's grid is cut from conv4_2's 32 x 24 map; avssl's tower pools it 2 x 2 first."""
    x = torch.randn(2, 5, 32, 24)
    torch.testing.assert_close(
        F.adaptive_max_pool2d(F.max_pool2d(x, 2), (4, 3)), F.adaptive_max_pool2d(x, (4, 3))
    )


def test_logmel_stats_know_the_pitch():
    t = torch.arange(SR) / SR
    feats = LogMelStats()([torch.sin(2 * torch.pi * f * t) for f in (300.0, 1200.0, 4000.0)])
    n_mels = LogMelStats().feat.n_mels
    assert feats.shape == (3, 2 * n_mels)
    peaks = feats[:, :n_mels].argmax(dim=1).tolist()
    assert peaks == sorted(peaks) and len(set(peaks)) == 3
    std_at_peak = feats[torch.arange(3), n_mels + torch.tensor(peaks)]
    assert torch.all(std_at_peak < 0.1)  # steady tones: no spread over time in their band
    gated = torch.sin(2 * torch.pi * 1200.0 * t) * (t < 0.5)  # on for half the clip
    assert LogMelStats()([gated])[0, n_mels + peaks[1]] > 3.0


def test_mfcc_stats_layout_and_zero_crossings():
    sr = MfccStats.sample_rate
    t = torch.arange(sr) / sr
    waves = [torch.sin(2 * torch.pi * f * t) for f in (500.0, 2000.0)]
    waves.append(torch.from_numpy(np.random.default_rng(0).standard_normal(sr // 2)).float())
    feats = MfccStats()(waves)
    assert feats.shape == (3, 26) and feats.dtype == torch.float32
    # column 12 is the mean zero-crossing rate: 2 f / sr crossings per sample for a tone,
    # about one half for white noise; column 25 its spread over frames
    zcr = feats[:, 12].tolist()
    assert zcr[0] == pytest.approx(2 * 500 / sr, rel=0.05)
    assert zcr[1] == pytest.approx(2 * 2000 / sr, rel=0.05)
    assert zcr[2] == pytest.approx(0.5, abs=0.03)
    assert feats[0, 25] < 0.01  # a steady tone: the same rate in every frame
    # columns 0-11 are MFCCs 1-12 (not the 0th, the loudness): a tone and the same tone 20 dB
    # quieter differ only there, and little at that
    quiet = MfccStats()([waves[0] * 0.1])
    assert torch.allclose(quiet[0, :12], feats[0, :12], atol=0.5)
    assert torch.allclose(quiet[0, 12:], feats[0, 12:], atol=1e-3)
    short = MfccStats()([waves[0][:100]])  # shorter than one frame: padded, not an error
    assert short.shape == (1, 26) and torch.isfinite(short).all()


def test_extract_before_sees_every_readable_clip_once_before_any_feature(tmp_path, monkeypatch):
    import avssl.eval.clip_features as cf

    paths = [_tone(tmp_path / f"{k}.wav", label, k) for k, label in enumerate([*FREQS, *FREQS])]
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    paths.insert(2, bad)
    plain, kept, skipped, _ = cf.extract(paths, LogMelStats(), chunk=4)
    decoded, calls, order = [], [], []
    load = cf.load_clip
    monkeypatch.setattr(cf, "load_clip", lambda p, *a: decoded.append(p) or load(p, *a))
    featurise = LogMelStats()

    def extractor(waves):
        order.append("features")
        return featurise(waves)

    extractor.sample_rate = featurise.sample_rate

    def before(waves):
        order.append("before")
        calls.append([w.shape[0] for w in waves])

    x, kept2, skipped2, _ = cf.extract(paths, extractor, chunk=4, before=before)
    assert sorted(map(str, decoded)) == sorted(map(str, paths))  # each file decoded once
    assert order[0] == "before" and order.count("before") == 1 and len(calls[0]) == 6
    assert kept2 == kept == [0, 1, 3, 4, 5, 6] and skipped2 == skipped and len(skipped) == 1
    np.testing.assert_array_equal(x, plain)


# ---------------------------------------------------------------- CLI


def _classify(capsys, *args) -> dict:
    assert evaluate.main(["classify", *args, "--no-progress"]) == 0
    return last_json(capsys.readouterr().out)


def test_cli_esc50_logmel(tmp_path, capsys):
    root = make_esc50(tmp_path / "esc")
    res = _classify(capsys, "--dataset", "esc50", "--root", str(root), "--features", "logmel")
    assert res["n_clips"] == 24 and res["n_classes"] == 3 and len(res["per_fold"]) == 4
    assert res["accuracy_mean"] >= 0.9 and res["features"] == "logmel" and res["n_skipped"] == 0
    assert all("leave-one-fold-out over 3" in r["c_selection"] for r in res["per_fold"])
    res = _classify(capsys, "--dataset", "esc50", "--root", str(root), "--features", "logmel",
                    "--subset", "esc10", "--classifier", "svm")  # fmt: skip
    assert res["n_classes"] == 2 and res["n_clips"] == 16 and res["accuracy_mean"] >= 0.9


def test_cli_esc50_skips_and_lists_malformed_metadata_rows(tmp_path, capsys):
    root = make_esc50(tmp_path / "esc")
    csv_path = root / "meta" / "esc50.csv"
    with open(csv_path, "a") as fh:
        fh.write("x.wav,row,0,low,True,1,A\n")  # a fold that is not a number
        fh.write("y.wav,1\n")  # a short row
    res = _classify(capsys, "--dataset", "esc50", "--root", str(root), "--features", "logmel")
    assert res["n_clips"] == 24 and res["n_skipped"] == 2
    assert [s["path"] for s in res["skipped"]] == [f"{csv_path}:26", f"{csv_path}:27"]
    assert res["skipped"][0]["reason"] == "fold 'row' is not a number"
    missing = "target, category, esc10, src_file, take"
    assert res["skipped"][1]["reason"] == f"missing column(s) {missing}"
    argv = ["classify", "--dataset", "esc50", "--root", str(root), "--features", "logmel"]
    assert evaluate.main([*argv, "--strict", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {csv_path}:26: fold 'row' is not a number"


def test_cli_us8k_from_names(tmp_path, capsys):
    root = make_us8k(tmp_path / "us", with_csv=False)
    res = _classify(capsys, "--dataset", "us8k", "--root", str(root), "--features", "logmel")
    assert [r["fold"] for r in res["per_fold"]] == ["1", "2", "3"]
    assert res["n_clips"] == 18 and res["accuracy_mean"] >= 0.9


def test_cli_folder_skips_bad_files_and_strict(tmp_path, capsys):
    root = make_folder(tmp_path / "f")
    bad = root / "low" / "broken_take0.wav"  # matched by the regex: no note on stderr
    bad.write_bytes(b"RIFF not really a wave file")
    args = ["--dataset", "folder", "--root", str(root), "--features", "logmel", "--folds", "3",
            "--group-regex", r"^(.+)_take"]  # fmt: skip
    res = _classify(capsys, *args)
    assert res["n_clips"] == 24 and res["n_skipped"] == 1
    assert res["skipped"][0]["path"] == str(bad) and res["skipped"][0]["reason"]
    assert res["accuracy_mean"] >= 0.9 and len(res["per_fold"]) == 3
    assert evaluate.main(["classify", *args, "--strict", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {bad}: ") and "\n" not in err


def test_a_strict_error_starts_a_line_below_the_progress_bar(tmp_path, capsys):
    """``--strict`` stops at the first unreadable clip while the features bar is drawn: its
    ``error:`` line starts a line of its own, not after the bar's text."""
    root = make_folder(tmp_path / "f")
    bad = root / "low" / "broken.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    args = ["--dataset", "folder", "--root", str(root), "--features", "logmel", "--folds", "3"]
    assert evaluate.main(["classify", *args, "--strict"]) == 2  # the bar on (no --no-progress)
    err = capsys.readouterr().err
    [line] = [x for x in err.split("\n") if "error:" in x]
    assert "features:" in err and line.startswith(f"error: {bad}: "), repr(err)


def test_cli_errors_are_one_line(tmp_path, capsys):
    argv = ["classify", "--dataset", "esc50", "--root", str(tmp_path), "--features", "mfcc"]
    assert evaluate.main(argv) == 2
    assert "esc50.csv: no such metadata file" in capsys.readouterr().err
    root = make_folder(tmp_path / "f", recordings=1, takes=1)
    assert evaluate.main(["classify", "--dataset", "folder", "--root", str(root)]) == 2
    assert capsys.readouterr().err.strip() == "error: --features model needs --checkpoint"


def test_cli_shared_esc10_logmel(shared_data, capsys):
    root = shared_data / "esc10"
    res = _classify(capsys, "--dataset", "esc50", "--root", str(root), "--features", "logmel")
    assert res["n_clips"] == 83 and res["n_classes"] == 10 and res["n_skipped"] == 0
    assert {r["fold"] for r in res["per_fold"]} == {"3", "4", "5"}
    fold4 = next(r for r in res["per_fold"] if r["fold"] == "4")
    assert len(fold4["unseen_test_classes"]) == 8  # trained on 3 clips of 2 classes
    # chance = the majority class (10 of 83); the ceiling is ~0.22 with fold 4 unseen
    assert res["accuracy_pooled"] > res["chance"] and fold4["accuracy"] > 0.1
    # grouped by source recording instead: a real measurement, far above chance
    res = _classify(capsys, "--dataset", "esc50", "--root", str(root), "--features", "logmel",
                    "--protocol", "kfold", "--folds", "4")  # fmt: skip
    assert res["protocol"] == "stratified group 4-fold" and len(res["per_fold"]) == 4
    assert res["accuracy_mean"] > 3 * res["chance"]
    mfcc = _classify(capsys, "--dataset", "esc50", "--root", str(root), "--features", "mfcc",
                     "--protocol", "kfold", "--folds", "4")  # fmt: skip
    assert mfcc["features"] == "mfcc" and mfcc["feature_dim"] == 26
    assert mfcc["accuracy_mean"] > 3 * mfcc["chance"]


@pytest.fixture(scope="module")
def tiny_ckpt(tiny_cache, tmp_path_factory):
    runs = tmp_path_factory.mktemp("classify-runs")
    sets = [*TINY, "train.steps=2", f"train.runs_dir={runs}"]
    assert train.main([a for s in sets for a in ("--set", s)] + ["--no-progress"]) == 0
    return next(runs.iterdir()) / "last.pt"


def test_cli_model_and_random_features(tiny_ckpt, tmp_path, capsys):
    root = make_us8k(tmp_path / "us", with_csv=True)
    common = ["--dataset", "us8k", "--root", str(root), "--checkpoint", str(tiny_ckpt)]
    res = _classify(capsys, *common, "--features", "model", "--pool", "max", "--hop", "0.25")
    assert res["features"] == "model" and res["checkpoint"] == str(tiny_ckpt)
    assert (res["hop"], res["seed"]) == (0.25, 0)  # two result files of the same model differ
    assert res["n_clips"] == 18 and 0.0 <= res["accuracy_mean"] <= 1.0
    assert res["embed_clips_per_s"] > 0 and res["pool"] == "max"
    rnd = _classify(capsys, *common, "--features", "random")
    assert rnd["features"] == "random" and rnd["n_clips"] == 18
    again = _classify(capsys, *common, "--features", "random")
    assert again["per_fold"] == rnd["per_fold"]  # seeded
    report = (tiny_ckpt.parent / "report.md").read_text()
    assert report.count("Sound classification (us8k") == 3
    assert report.count("## Sound classification (us8k, random, leave-one-fold-out, data=") == 2


def test_cli_logmel_takes_the_checkpoints_front_end(tiny_ckpt, tmp_path, capsys):
    # the baseline must hear what the network hears: an 8-kHz model's log-mel baseline is
    # computed at 8 kHz with its FFT, window, hop and bands (not classify's 16-kHz default)
    state = torch.load(tiny_ckpt, map_location="cpu", weights_only=False)
    state["config"]["data"]["sample_rate"] = 8000
    narrow = {"n_fft": 256, "win_length": 200, "hop_length": 80, "n_mels": 24, "center": False}
    state["config"]["model"]["audio"].update(narrow, lifter=12)  # the network's own, not taken
    ckpt = tmp_path / "narrow.pt"
    torch.save(state, ckpt)
    root = make_us8k(tmp_path / "us", with_csv=True)
    common = ["--dataset", "us8k", "--root", str(root), "--features", "logmel"]
    default = _classify(capsys, *common)
    own = _classify(capsys, *common, "--checkpoint", str(ckpt))
    wide = {"n_fft": 1024, "win_length": 640, "hop_length": 320, "n_mels": 40, "center": False}
    assert (default["sample_rate"], default["frontend"]) == (16000, {**wide, "of": "default"})
    assert (own["sample_rate"], own["frontend"]) == (8000, {**narrow, "of": str(ckpt)})
    assert (default["feature_dim"], own["feature_dim"]) == (80, 48)
    assert own["per_fold"] != default["per_fold"]


# ---------------------------------------------------------------- manifest (fixed split)


def _two_tone(path: Path, first: str, second: str, seed: int) -> Path:
    """2 s of audio: the ``first`` class's tone for 1 s, then the ``second``'s."""
    parts = []
    for k, label in enumerate((first, second)):
        part = _tone(path.with_suffix(f".{k}.wav"), label, seed + k, 1.0)
        parts.append(sf.read(part)[0])
        part.unlink()
    sf.write(path, np.concatenate(parts).astype(np.float32), SR)
    return path


def make_manifest(root: Path, per_split=None) -> Path:
    """Rows cut 1-s windows out of two-tone files: the label depends on the window alone."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(root / "canvas.png")
    names, rows, seed = list(FREQS), [], 0
    for split, n in (per_split or {"train": 9, "val": 3, "test": 6}).items():
        for i in range(n):
            seed += 1
            first, second = names[i % 3], names[(i + 1 + (i // 3) % 2) % 3]  # never equal
            _two_tone(root / "audio" / f"{split}{i}.wav", first, second, 10 * seed)
            for k, lab in enumerate((first, second)):
                if split == "val":
                    lab = "val-only"  # would be an extra class if val reached the probe
                rows.append({"id": f"spk{i % 2}_{split}{i}_{k}", "image": "canvas.png",
                             "audio": f"audio/{split}{i}.wav", "start": float(k),
                             "end": float(k + 1), "labels": [lab], "split": split})  # fmt: skip
    rows.append({"id": "unlabelled", "image": "canvas.png", "audio": "audio/train0.wav"})
    path = root / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_list_manifest_windows_groups_and_video_audio(tmp_path, media_factory):
    path = make_manifest(tmp_path / "m", {"train": 1, "test": 1})
    media_factory("clip.mp4", duration=1.0)
    with open(path, "a") as fh:
        fh.write(json.dumps({"id": "vid", "video": str(tmp_path / "clip.mp4"), "start": 0.2,
                             "labels": ["x", "y"], "split": "test"}) + "\n")  # fmt: skip
    items = list_manifest(path.parent, group_regex=r"^(spk\d)_")
    assert len(items) == 5  # the unlabelled row is left out
    first = items[0]
    assert first.path == path.parent / "audio" / "train0.wav" and first.group == "train"
    assert (first.start, first.duration, first.source, first.label) == (0.0, 1.0, "spk0", "low")
    assert (items[1].start, items[1].duration) == (1.0, 1.0)
    vid = items[-1]  # no audio file: the video's own track, to its end
    assert vid.path == tmp_path / "clip.mp4" and (vid.start, vid.duration) == (0.2, None)
    assert vid.label == "x" and vid.source == "vid" and vid.group == "test"
    # an optional group that matched nothing: the whole match (a traceback before)
    items = list_manifest(path.parent, group_regex=r"(zzz)?spk\d")
    assert items[0].source == "spk0"


def test_a_manifest_of_esc50_or_us8k_clips_keeps_their_sources_together(tmp_path):
    # avssl prepare esc50|us8k keep the clip names: their inner cross-validation mixed the takes
    # of one recording (or the slices of one fsID) across its folds, each row its own source
    from avssl.data.manifest import Row, write_manifest

    ids = ["1-100032-A-0", "2-100032-B-0", "100263-2-0-117", "100263-2-0-121", "0_george_1"]
    rows = [Row(i, video=f"{i}.wav", labels=["c"]) for i in ids[:4]]
    rows.append(Row(ids[4], image="i.png", audio="0_george_1.wav", labels=["c"]))
    # AV-Digits' canvases of one recording (and windows of one video) share its sound: they
    # were each their own source, so the inner folds held one recording on both sides
    rows += [
        Row(f"0_george_1-c{k}", image="i.png", audio="0_george_1.wav", labels=["c"]) for k in (1, 2)
    ]
    write_manifest(tmp_path / "m.jsonl", rows)
    sources = [it.source for it in list_manifest(tmp_path / "m.jsonl")]
    assert sources == ["100032", "100032", "100263", "100263"] + ["0_george_1"] * 3
    sources = [it.source for it in list_manifest(tmp_path / "m.jsonl", r"_(\w+)_")]
    assert sources[4:] == ["george"] * 3  # --group-regex still decides


def test_fixed_split_fold():
    groups = np.array(["train", "val", "test", "train", "test"])
    (fold,) = fixed_split(groups)
    assert fold.name == "test" and fold.train.tolist() == [0, 3] and fold.test.tolist() == [2, 4]
    with pytest.raises(AvsslError, match="no clip in split 'test'"):
        fixed_split(np.array(["train", "val"]))


def test_cli_manifest_probe_trains_on_train_tests_on_test(tmp_path, capsys):
    path = make_manifest(tmp_path / "m")
    res = _classify(capsys, "--dataset", "manifest", "--root", str(path), "--features", "logmel",
                    "--group-regex", r"^(spk\d)_")  # fmt: skip
    (fold,) = res["per_fold"]
    assert (fold["fold"], fold["n_train"], fold["n_test"]) == ("test", 18, 12)
    assert res["n_clips"] == 30 and res["n_classes"] == 3  # val rows and their class left out
    assert res["accuracy_mean"] > 0.9 and res["accuracy_std"] == 0.0  # windows honoured
    assert res["accuracy_pooled"] == res["accuracy_mean"] and res["features"] == "logmel"
    assert "val ignored" in res["protocol"] and res["n_skipped"] == 0
    assert "2-fold" in fold["c_selection"]  # inner CV grouped by the two "speakers"


def test_cli_manifest_source_norm(tmp_path, capsys):
    path = make_manifest(tmp_path / "m")
    args = ["--dataset", "manifest", "--root", str(path), "--features", "logmel"]
    res = _classify(capsys, *args, "--group-regex", r"^(spk\d)_", "--source-norm")
    assert res["source_norm"] is True and "transductive" in res["protocol"]
    assert res["n_clips"] == 30 and res["accuracy_pooled"] > 0.9
    assert _classify(capsys, *args)["source_norm"] is False
    assert evaluate.main(["classify", *args, "--source-norm"]) == 2
    assert "--source-norm needs --dataset manifest or folder and --group-regex" in (
        capsys.readouterr().err
    )
    esc = ["classify", "--dataset", "esc50", "--root", str(tmp_path), "--features", "logmel"]
    assert evaluate.main([*esc, "--group-regex", "x", "--source-norm"]) == 2
    assert "--source-norm needs" in capsys.readouterr().err


def test_cli_manifest_errors_are_one_line(tmp_path, capsys):
    path = make_manifest(tmp_path / "m", {"train": 3})
    args = ["classify", "--dataset", "manifest", "--root", str(path), "--features", "logmel"]
    assert evaluate.main(args) == 2
    assert "no clip in split 'test'" in capsys.readouterr().err
    assert evaluate.main([*args, "--protocol", "kfold"]) == 2
    assert "drop --protocol" in capsys.readouterr().err
    assert evaluate.main([*args[:4], str(tmp_path / "nope.jsonl"), *args[5:]]) == 2
    assert "nope.jsonl: no such manifest" in capsys.readouterr().err


def test_cli_manifest_model_features(tiny_ckpt, tmp_path, capsys):
    path = make_manifest(tmp_path / "m", {"train": 3, "test": 3})
    res = _classify(capsys, "--dataset", "manifest", "--root", str(path),
                    "--checkpoint", str(tiny_ckpt))  # fmt: skip
    assert res["features"] == "model" and res["n_clips"] == 12
    assert 0.0 <= res["accuracy_mean"] <= 1.0 and len(res["per_fold"]) == 1


def test_cli_manifest_model_features_with_audio_tta(tiny_ckpt, tmp_path, capsys):
    path = make_manifest(tmp_path / "m", {"train": 3, "test": 3})
    args = ["--dataset", "manifest", "--root", str(path), "--checkpoint", str(tiny_ckpt)]
    res = _classify(capsys, *args, "--audio-tta", "0.1", "--audio-tta-views", "3")
    assert res["audio_tta"] == pytest.approx([0.9, 1.0, 1.1]) and res["n_clips"] == 12
    assert res["layer"] == "embedding"
    tower = _classify(capsys, *args, "--layer", "tower")
    assert tower["layer"] == "tower" and tower["feature_dim"] != res["feature_dim"]
    grid = _classify(capsys, *args, "--layer", "grid", "--classifier", "svm")
    # the tower keeps the default 3 spans of time (3 x C features), the grid 4 x 3 cells
    assert grid["layer"] == "grid" and grid["feature_dim"] == 4 * tower["feature_dim"]
    assert evaluate.main(["classify", *args, "--features", "logmel", "--layer", "tower"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--layer" in err and "not logmel" in err
    assert evaluate.main(["classify", *args, "--features", "logmel", "--audio-tta", "0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not logmel" in err
    assert evaluate.main(["classify", *args, "--features", "mfcc", "--audio-tta", "0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--audio-tta" in err and "not mfcc" in err


def test_cli_manifest_adapt_bn_keeps_the_training_rows(tiny_ckpt, tmp_path, capsys):
    from types import SimpleNamespace

    from avssl.eval.adapt_bn import extract_adapted
    from avssl.eval.clip_features import extract
    from avssl.train.checkpoint import load_model

    path = make_manifest(tmp_path / "m", {"train": 3, "test": 3})
    args = ["--dataset", "manifest", "--root", str(path), "--checkpoint", str(tiny_ckpt)]
    res = _classify(capsys, *args, "--adapt-bn")
    assert res["adapt_bn"]["clips"] == 6 and res["n_clips"] == 12  # two windows per test file
    assert res["protocol"].endswith("audio batch norm adapted to the clips (transductive)")
    items = [it for it in list_manifest(path) if it.group in ("train", "test")]
    model, cfg, _ = load_model(tiny_ckpt, "cpu")
    embedder = WindowEmbedder(model, cfg.data.sample_rate, cfg.data.window)
    plain, _, _, _ = extract([it.path for it in items], embedder,
                             windows=[(it.start, it.duration) for it in items])  # fmt: skip
    opts = SimpleNamespace(strict=False, no_progress=True)
    x, kept, skipped, _, info = extract_adapted(items, embedder, opts)
    train_rows = [k for k, i in enumerate(kept) if items[i].group == "train"]
    assert kept[: len(train_rows)] == [i for i, it in enumerate(items) if it.group == "train"]
    # the seen domain keeps the checkpoint's statistics; the test rows get their own
    np.testing.assert_allclose(x[train_rows], plain[kept[: len(train_rows)]], rtol=1e-5, atol=1e-6)
    test_rows = list(range(len(train_rows), len(kept)))
    assert not np.allclose(x[test_rows], plain[[kept[k] for k in test_rows]], atol=1e-4)
    assert info == {"adapt_bn": {"clips": 6, "layers": len(audio_norm_layers(model))}}
    assert not skipped
    # windows that share their convolutions adapt to the same statistics as windows embedded
    # alone (the shared pass normalised each window's edges besides the whole clip)
    assert embedder.shared
    stats = []
    for shared in (True, False):
        model, cfg, _ = load_model(tiny_ckpt, "cpu")
        emb = WindowEmbedder(model, cfg.data.sample_rate, cfg.data.window)
        emb.shared = shared
        extract_adapted(items, emb, opts)
        stats.append([(n.running_mean, n.running_var) for n in audio_norm_layers(model)])
    for (m1, v1), (m2, v2) in zip(*stats, strict=True):
        torch.testing.assert_close((m1, v1), (m2, v2))
    assert evaluate.main(["classify", *args, "--features", "logmel", "--adapt-bn"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--adapt-bn needs --dataset manifest" in err


@pytest.mark.parametrize(
    "hop,reason", [("nan", "above 0, got nan"), ("inf", "above 0, got inf"), ("1e-5", "one sample")]
)
def test_a_hop_that_is_no_length_is_one_line(tiny_ckpt, tmp_path, capsys, hop, reason):
    root = make_us8k(tmp_path / "us", with_csv=True)
    args = ["classify", "--dataset", "us8k", "--root", str(root), "--checkpoint", str(tiny_ckpt)]
    try:
        code = evaluate.main([*args, "--features", "model", "--hop", hop, "--no-progress"])
    except SystemExit as stop:  # argparse
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and reason in err, err


def test_init_seed_draws_the_untrained_network_apart_from_the_folds(tiny_ckpt, capsys):
    # one --seed drew both the folds and the random network: network draws could not be varied
    # over fixed folds
    from avssl.eval.classify_cli import build_parser, make_extractor

    def weights(*flags):
        args = build_parser().parse_args(["--dataset", "us8k", "--root", ".", *flags])
        embedder, info = make_extractor(args, torch.device("cpu"))
        params = torch.cat([p.detach().flatten() for p in embedder.model.parameters()])
        return params, info

    base, info = weights("--features", "random")
    assert (info["seed"], info["init_seed"]) == (0, 0)
    same, _ = weights("--features", "random", "--seed", "3", "--init-seed", "0")
    other, info = weights("--features", "random", "--init-seed", "1")
    assert torch.equal(base, same) and not torch.equal(base, other)
    assert (info["seed"], info["init_seed"]) == (0, 1)
    args = ["--dataset", "us8k", "--root", ".", "--features", "model", "--init-seed", "1"]
    assert evaluate.main(["classify", *args, "--checkpoint", str(tiny_ckpt)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --init-seed applies to --features random, not model"
