"""Offset search (grid, sign convention, confidence) and the ``evaluate.py sync`` CLI."""

import json
import re

import numpy as np
import pytest
import torch
from bad_media import last_json
from conftest import TINY

import evaluate
import train
from avssl.eval.sync import (
    best_offset,
    frame_times,
    offset_grid,
    shift_audio,
    sync_curve,
    window_at,
)

FPS = 25.0


def test_offset_grid_steps_one_frame():
    grid = offset_grid(0.5, FPS)
    assert len(grid) == 25 and grid[0] == pytest.approx(-0.48) and grid[-1] == pytest.approx(0.48)
    np.testing.assert_allclose(np.diff(grid), 1 / FPS)
    assert 0.0 in grid
    assert len(offset_grid(0.52, FPS)) == 27  # 13 frames either side
    assert len(offset_grid(0.03, FPS)) == 1  # less than a frame: only zero
    assert len(offset_grid(0.1, 30.0)) == 7


def test_frame_times_keep_every_window_inside():
    times = frame_times(duration=3.0, fps=FPS, window=1.0, margin=0.4, n=6)
    assert times is not None and len(times) == 6
    assert np.all(times - 0.4 - 0.5 >= -1e-9) and np.all(times + 0.4 + 0.5 <= 3.0 + 1e-9)
    np.testing.assert_allclose(times * FPS - 0.5, np.round(times * FPS - 0.5), atol=1e-9)
    assert frame_times(duration=1.7, fps=FPS, window=1.0, margin=0.4) is None


def test_frame_times_span_every_frame_whose_windows_fit_against_a_loop():
    """Brute force: list every decoded frame whose middle ``(i + 0.5) / fps`` keeps the audio
    windows shifted by up to ``margin`` inside the clip; the times are ``min(n, count)`` of
    those middles, the run's first and (``n > 1``) last included, not a frame in from either
    end, each of ``n`` evenly spread points within half a frame of one; None when none fits."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        fps = float(rng.choice([10.0, 24.0, 25.0, 29.97, 30.0]))
        window = float(rng.choice([rng.uniform(0.2, 1.5), rng.uniform(0.001, 0.05)]))
        margin = float(rng.choice([0.0, rng.uniform(0.0, 1.0)]))
        duration, n = float(rng.uniform(0.5, 6.0)), int(rng.integers(1, 12))
        mids = (np.arange(round(duration * fps)) + 0.5) / fps
        reach = margin + window / 2
        ok = np.flatnonzero((mids - reach >= -1e-9) & (mids + reach <= duration + 1e-9))
        got = frame_times(duration, fps, window, margin, n)
        if len(ok) == 0:
            assert got is None, (duration, fps, window, margin)
            continue
        case = (duration, fps, window, margin, n)
        assert got is not None and len(got) == min(n, len(ok)), case
        assert np.all(np.diff(got) > 0) and np.isin(got.round(9), mids[ok].round(9)).all(), case
        assert got[0] == pytest.approx(mids[ok[0]])  # one time: the first
        assert n == 1 or got[-1] == pytest.approx(mids[ok[-1]]), case
        spread = np.linspace(mids[ok[0]], mids[ok[-1]], n)
        assert np.abs(spread[:, None] - got[None]).min(axis=1).max() <= 0.5 / fps + 1e-9, case


@pytest.mark.parametrize("true", [0.0, 0.01, -0.012, 0.12])
def test_a_scorer_trained_as_the_pairs_are_drawn_finds_a_sub_frame_offset(true):
    # training shows frame floor(t * fps) with audio centred on t: frame i matches best the audio
    # centred on the middle of its interval, (i + 0.5) / fps, plus the true offset
    def trained(tf, ta):
        return -np.abs(ta - (np.floor(tf * FPS + 1e-6) + 0.5) / FPS - true)

    times = frame_times(4.0, FPS, 1.0, margin=0.5, n=8)
    offsets = offset_grid(0.5, FPS)
    offset, _ = best_offset(sync_curve(trained, times, offsets), offsets)
    assert abs(offset - true) <= 0.5 / FPS + 1e-9  # the nearest grid step


def test_sync_curve_matches_brute_force():
    rng = np.random.default_rng(0)
    table = {}

    def scorer(tf, ta):  # any deterministic function of the pair
        return np.array(
            [
                table.setdefault((round(a, 6), round(b, 6)), rng.normal())
                for a, b in zip(tf, ta, strict=True)
            ]
        )

    times, offsets = np.array([1.0, 1.4, 2.0]), offset_grid(0.2, FPS)
    curve = sync_curve(scorer, times, offsets)
    for k, d in enumerate(offsets):
        brute = np.mean([scorer(np.array([t]), np.array([t + d]))[0] for t in times])
        assert curve[k] == pytest.approx(brute)


@pytest.mark.parametrize("true", [0.12, -0.2, 0.0])
def test_search_finds_known_peak(true):
    def scorer(tf, ta):  # peaks where the audio time is the frame time plus `true`
        return -np.abs(ta - tf - true)

    offsets = offset_grid(0.5, FPS)
    curve = sync_curve(scorer, np.array([1.0, 1.5, 2.0]), offsets)
    offset, confidence = best_offset(curve, offsets)
    assert offset == pytest.approx(true)
    assert confidence == pytest.approx(curve.max() - np.median(curve)) and confidence > 0.2


def test_ties_go_to_the_offset_nearest_0_then_to_the_negative():
    offsets = offset_grid(0.5, FPS)
    assert best_offset(np.zeros(len(offsets)), offsets)[0] == 0.0
    d = offsets[offsets > 0][1]  # two frames
    two = np.where(np.isclose(np.abs(offsets), d), 1.0, 0.0)  # -d and +d tie at the maximum
    assert best_offset(two, offsets)[0] == pytest.approx(-d)


def test_flat_curve_has_zero_confidence():
    offsets = offset_grid(0.5, FPS)
    _, confidence = best_offset(np.zeros(len(offsets)), offsets)
    assert confidence == 0.0


def test_shift_audio_positive_delays():
    wave = torch.arange(1, 11, dtype=torch.float32)
    late = shift_audio(wave, 0.3, sample_rate=10)
    assert late.tolist() == [0, 0, 0, 1, 2, 3, 4, 5, 6, 7]
    early = shift_audio(wave, -0.2, sample_rate=10)
    assert early.tolist() == [3, 4, 5, 6, 7, 8, 9, 10, 0, 0]
    assert shift_audio(wave, 2.0, 10).abs().sum() == 0


@pytest.mark.parametrize("true", [0.2, -0.16])
def test_sign_convention_end_to_end(true):
    """Audio delayed by ``true`` s (it lags the video) is estimated as offset ``+true``."""
    sr, window = 400, 0.5
    wave = torch.from_numpy(np.random.default_rng(1).normal(size=4 * sr).astype(np.float32))
    shifted = shift_audio(wave, true, sr)

    def oracle(tf, ta):  # knows what the audio under frame t sounded like before the shift
        pairs = zip(tf, ta, strict=True)
        diffs = [
            window_at(shifted, a, window, sr) - window_at(wave, f, window, sr) for f, a in pairs
        ]
        return np.array([-float(d.pow(2).mean()) for d in diffs])

    times = frame_times(4.0, FPS, window, margin=0.6, n=5)
    offsets = offset_grid(0.3, FPS)
    offset, confidence = best_offset(sync_curve(oracle, times, offsets), offsets)
    assert offset == pytest.approx(true) and confidence > 0


@pytest.fixture(scope="module")
def tiny_ckpt(tiny_cache, tmp_path_factory):
    runs = tmp_path_factory.mktemp("sync-runs")
    sets = [*TINY, "train.steps=2", f"train.runs_dir={runs}"]
    assert train.main([a for s in sets for a in ("--set", s)] + ["--no-progress"]) == 0
    return next(runs.iterdir()) / "last.pt"


def test_cli_manifest(tiny_ckpt, capsys):
    args = ["sync", "--checkpoint", str(tiny_ckpt), "--max-offset", "0.12", "--no-progress"]
    assert evaluate.main([*args, "--times", "2"]) == 0
    res = last_json(capsys.readouterr().out)
    assert res["n"] + res["n_skipped"] == 4 and res["n"] >= 1
    assert 0.0 <= res["offset_accuracy"] <= 1.0 and res["exact_accuracy"] <= res["offset_accuracy"]
    assert 0.0 <= res["mean_abs_error_s"] <= 0.24 + 1e-6
    assert res["n_offsets"] == 7 and res["step_s"] == pytest.approx(0.04)
    assert res["chance_accuracy"] == pytest.approx(19 / 49)
    # too long a search for 2.5-s clips: every clip is skipped, which leaves nothing to score,
    # an error (as in the other evaluations) rather than a result of nulls
    assert evaluate.main([*args[:3], "--max-offset", "0.5", "--no-progress"]) == 2
    cap = capsys.readouterr()
    err = cap.err.strip().splitlines()[-1]  # after the world's "reused" note
    assert cap.out == "" and err.startswith("error: ") and "Traceback" not in cap.err
    # the reason names the flag to lower (it gave a length alone, "shorter than 3.00 s")
    assert re.search(
        r"has no usable clip of its 4 \(first: shorter than \d+\.\d\d s, the least "
        r"--max-offset 0\.5 needs\)$",
        err,
    ), err


def test_cli_video(tiny_ckpt, media_factory, capsys, tmp_path):
    video = media_factory("clip.mp4", duration=2.0, size=(48, 64))
    out = tmp_path / "sync.json"
    args = ["sync", "--checkpoint", str(tiny_ckpt), "--video", str(video), "--max-offset", "0.3"]
    assert evaluate.main([*args, "--times", "3", "--out", str(out)]) == 0
    res = last_json(capsys.readouterr().out)
    assert json.loads(out.read_text()) == res
    assert {"offset_s", "confidence", "n_offsets", "curve", "offsets_s"} <= set(res)
    assert res["n_offsets"] == 15 == len(res["curve"])
    assert abs(res["offset_s"]) <= 0.3 + 1e-9 and res["offset_s"] in res["offsets_s"]
    assert res["confidence"] >= 0 and res["n_times"] >= 1
    assert res["at_edge"] == (abs(res["offset_s"]) == max(map(abs, res["offsets_s"])))


def test_an_offset_at_the_edge_of_the_search_is_noted(
    tiny_ckpt, media_factory, monkeypatch, capsys
):
    from avssl.eval import sync_cli

    video = media_factory("edge.mp4", duration=2.0, size=(48, 64))
    monkeypatch.setattr(sync_cli.ClipSync, "estimate",
                        lambda self, f, w, m: (0.12, 0.5, np.zeros(7), 3))  # fmt: skip
    args = ["sync", "--checkpoint", str(tiny_ckpt), "--video", str(video), "--max-offset", "0.12"]
    assert evaluate.main(args) == 0
    cap = capsys.readouterr()
    assert last_json(cap.out)["at_edge"] is True
    assert "note: the best offset, +0.12 s, is at the edge of the search" in cap.err


def test_cli_bad_video(tiny_ckpt, tmp_path, media_factory, capsys):
    missing = tmp_path / "nope.mp4"
    assert evaluate.main(["sync", "--checkpoint", str(tiny_ckpt), "--video", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {missing}: no such file"
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"definitely not a video" * 10)
    assert evaluate.main(["sync", "--checkpoint", str(tiny_ckpt), "--video", str(junk)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {junk}: ") and "\n" not in err
    silent = media_factory("silent.mp4", audio=False)
    assert evaluate.main(["sync", "--checkpoint", str(tiny_ckpt), "--video", str(silent)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {silent}: no audio stream"
    short = media_factory("short.mp4", duration=1.2)
    assert evaluate.main(["sync", "--checkpoint", str(tiny_ckpt), "--video", str(short)]) == 2
    assert "too short" in capsys.readouterr().err


@pytest.mark.parametrize(
    "fps,margin,window", [(25.0, 0.5, 1.0), (30.0, 1.0, 1.0), (24.0, 0.3, 0.5)]
)
def test_min_duration_is_where_frame_times_begin(fps, margin, window):
    from types import SimpleNamespace

    from avssl.eval.sync_cli import ClipSync

    need = ClipSync.min_duration(
        SimpleNamespace(data=SimpleNamespace(fps=fps, window=window)), margin
    )
    assert frame_times(need + 1e-9, fps, window, margin) is not None
    assert frame_times(need - 2e-3, fps, window, margin) is None


def test_a_tie_picks_the_offset_nearest_zero():
    offsets = np.array([-0.08, -0.04, 0.0, 0.04, 0.08])
    assert best_offset(np.zeros(5), offsets) == (0.0, 0.0)  # flat: silent sound, no evidence
    curve = np.array([0.0, 1.0, 0.0, 0.0, 1.0])  # equal peaks at -0.04 and +0.08
    assert best_offset(curve, offsets)[0] == pytest.approx(-0.04)
    assert best_offset(curve[::-1], offsets)[0] == pytest.approx(0.04)


def test_a_long_video_is_decoded_around_its_scored_times_only(
    tiny_ckpt, media_factory, monkeypatch, capsys
):
    # the whole file was decoded for 8 frame times: memory grew with its length, and a video
    # over 10 minutes was refused as "a window of 605 s"
    import argparse

    from avssl.data import media
    from avssl.eval import sync_long
    from avssl.eval.sync import frame_times, model_pair_scorer
    from avssl.eval.sync_cli import ClipSync
    from avssl.train.checkpoint import load_model

    model, cfg, _ = load_model(tiny_ckpt, "cpu")
    args = argparse.Namespace(max_offset=0.2, times=4, precision="fp32", batch_size=64)
    sync = ClipSync(model, cfg, args, "cpu")
    video = media_factory("mid.mp4", duration=9.0, size=(32, 32))
    duration = media.probe(video).duration
    offset, confidence, curve, n = sync_long.segmented_estimate(sync, video, duration, 0.2)
    d = cfg.data
    frames, wave = sync.decode(video)
    times = frame_times(duration - 1 / d.fps, d.fps, d.window, 0.2, 4)
    scorer = model_pair_scorer(model, frames, wave, d.fps, d.sample_rate, d.window, d.frame_size)
    np.testing.assert_allclose(curve, sync_curve(scorer, times, sync.offsets), atol=1e-6)
    assert n == len(times) == 4 and (offset, confidence) == best_offset(curve, sync.offsets)

    long = media_factory("long.mp4", duration=605.0, fps=1.0, size=(16, 16), sample_rate=8000)
    spans = []
    real = media.read_clip

    def read_clip(*a):
        spans.append(a[6])  # the duration decoded
        return real(*a)

    monkeypatch.setattr(media, "read_clip", read_clip)
    run = ["sync", "--checkpoint", str(tiny_ckpt), "--video", str(long), "--max-offset", "0.2"]
    assert evaluate.main(run) == 0
    res = last_json(capsys.readouterr().out)
    assert res["n_times"] == 8 and len(spans) == 8 and max(spans) < 2.0


@pytest.mark.parametrize("video_s,audio_s", [(70.0, 68.0), (68.0, 70.0)])
def test_a_long_video_whose_tracks_differ_in_length_is_scored(
    tiny_ckpt, tmp_path, monkeypatch, capsys, video_s, audio_s
):
    # the times were spread to the container's end, past the shorter track
    from avssl.data.writer import write_video

    frames = np.zeros((round(video_s), 16, 16, 3), np.uint8)
    t = np.arange(round(audio_s * 8000)) / 8000
    path = write_video(tmp_path / "v.mp4", frames, 1.0, np.sin(t)[None].astype(np.float32), 8000)
    run = ["sync", "--checkpoint", str(tiny_ckpt), "--video", str(path), "--max-offset", "0.2"]
    assert evaluate.main(run) == 0
    assert last_json(capsys.readouterr().out)["n_times"] == 8


def _tie_reference(curve, offsets, true, step):
    """Brute force: every offset at the maximum drawn in turn, its hits averaged."""
    top = [o for c, o in zip(curve, offsets, strict=True) if c == max(curve)]
    hits = [(abs(o - true) <= step + 1e-6, abs(o - true) <= step / 2, abs(o - true)) for o in top]
    return tuple(float(np.mean([h[i] for h in hits])) for i in range(3))


def test_tied_maxima_score_their_share_and_a_flat_curve_scores_chance():
    from avssl.eval.sync import tie_scores

    offsets = offset_grid(0.2, FPS)  # 11 offsets
    k, step = len(offsets), 1 / FPS
    rng = np.random.default_rng(0)
    for _ in range(50):
        curve = rng.integers(0, 3, k).astype(float)  # many ties
        true = float(rng.choice(offsets))
        assert tie_scores(curve, offsets, true, step) == pytest.approx(
            _tie_reference(curve, offsets, true, step)
        )
    flat = np.mean([tie_scores(np.zeros(k), offsets, t, step)[0] for t in offsets])
    assert flat == pytest.approx((3 * k - 2) / k**2)  # what chance_accuracy states
    # the estimate's own tie rule (nearest 0) would have scored the flat curve 3/k
    assert best_offset(np.zeros(k), offsets)[0] == 0.0 and 3 / k > flat


def test_a_curve_scored_nan_is_skipped_or_one_line(tiny_ckpt, media_factory, monkeypatch, capsys):
    from avssl.eval import sync_cli
    from avssl.eval.sync import NonFiniteCurve

    with pytest.raises(NonFiniteCurve, match="not finite .* at 1 of 3 offsets"):
        best_offset(np.array([np.nan, 1.0, 2.0]), np.array([-0.04, 0.0, 0.04]))
    real = sync_cli.ClipSync.estimate
    calls = []

    def poisoned(self, frames, wave, margin):  # the first clip overflows, the others do not
        calls.append(1)
        if len(calls) == 1:
            best_offset(np.full(len(self.offsets), np.nan), self.offsets)
        return real(self, frames, wave, margin)

    monkeypatch.setattr(sync_cli.ClipSync, "estimate", poisoned)
    args = ["sync", "--checkpoint", str(tiny_ckpt), "--max-offset", "0.12", "--no-progress"]
    assert evaluate.main([*args, "--times", "2"]) == 0
    res = last_json(capsys.readouterr().out)
    assert res["n_skipped"] >= 1 and res["ties"] == "share"
    reasons = [s["reason"] for s in res["skipped"]]
    assert sum(r.startswith("the model's scores are not finite (NaN") for r in reasons) == 1
    calls.clear()
    video = media_factory("clip.mp4", duration=2.0, size=(48, 64))
    assert evaluate.main([*args[:3], "--video", str(video), "--max-offset", "0.12"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {video}: the model's scores are not finite") and "\n" not in err


@pytest.mark.parametrize(
    "flags,reason",
    [
        (["--seed", "3"], "--seed: read for a manifest only"),
        (["--split", "val", "--strict"], "--split, --strict: read for a manifest only"),
    ],
)
def test_manifest_flags_are_refused_with_video(tiny_ckpt, media_factory, capsys, flags, reason):
    video = media_factory("clip.mp4", duration=2.0, size=(48, 64))
    argv = ["sync", "--checkpoint", str(tiny_ckpt), "--video", str(video), *flags]
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and reason in err and len(err.splitlines()) == 1


def test_a_search_too_large_in_all_is_refused_before_scoring(tiny_ckpt, capsys):
    argv = ["sync", "--checkpoint", str(tiny_ckpt), "--times", "10000", "--max-offset", "100"]
    assert evaluate.main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "error: --times 10000 x 5001 offsets (--max-offset): 50010000 pairs to score per clip, "
        "more than 1000000; lower --times or --max-offset"
    )


def test_a_long_video_stretch_beyond_one_decode_names_the_flag():
    from types import SimpleNamespace

    from avssl.errors import AvsslError
    from avssl.eval.sync_long import segmented_estimate

    sync = SimpleNamespace(
        data=SimpleNamespace(fps=1.0, window=1.0), args=SimpleNamespace(times=8), offsets=None
    )
    with pytest.raises(AvsslError, match=r"^--max-offset 400: a long video is read 803 s .* "
                       r"it must be at most 298.5 s$"):  # fmt: skip
        segmented_estimate(sync, "film.mp4", 5000.0, 400.0)
