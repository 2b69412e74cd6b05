"""Training streamed from the shard cache (``data.stream``): items, ranks, resume, DDP."""

from pathlib import Path

import numpy as np
import pytest
import torch
from bad_media import last_json

import train
from avssl.config import load_config
from avssl.data import shards_cli
from avssl.data.manifest import Row, write_manifest
from avssl.data.source import load_split, manifest_path
from avssl.data.stream_pairs import StreamPairs
from avssl.errors import TrainingError
from avssl.train.checkpoint import load_checkpoint
from avssl.train.data import stream_loader
from tests.conftest import TINY, torchrun_two_ranks

ROOT = Path(__file__).resolve().parents[1]
SETS = [a for s in TINY for a in ("--set", s)]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cache(tiny_cache, tmp_path_factory) -> Path:
    """The tiny world cached in shards of 5: the train shards hold 5, 5 and 2 train clips."""
    out = tmp_path_factory.mktemp("stream") / "cache"
    assert shards_cli.main(["--out", str(out), *SETS, "--shard-size", "5", "--no-progress"]) == 0
    return out


def _data(cache: Path, *extra: str):
    return load_config(None, [*TINY, f"data.cache={cache}", *extra]).data


def _stream(cache: Path, epoch: int = 0, rank: int = 0, world: int = 1, seed: int = 0):
    data = _data(cache)
    ds = StreamPairs(data, manifest_path(data, False), seed, rank, world)
    ds.set_epoch(epoch)
    return ds


def _offsets(wave: torch.Tensor, window: torch.Tensor) -> list[int]:
    """Sample offsets at which ``window`` occurs in ``wave``."""
    wave, window = wave.numpy(), window.numpy()
    starts = np.flatnonzero(wave[: len(wave) - len(window) + 1] == window[0])
    return [int(i) for i in starts if np.array_equal(wave[i : i + len(window)], window)]


def test_items_are_pair_items_with_other_clip_negatives(cache):
    ref = load_split(_data(cache), "train", True, progress=False)
    waves = [audio for _, audio in ref.store.loaded]
    sr, shift = 16000, 16000  # 1-s window and min_shift at 16 kHz
    items, want = list(_stream(cache)), ref[0]
    assert sorted(int(x["clip"]) for x in items) == list(range(12))  # each clip once
    for x in items:
        assert x.keys() == want.keys()
        for key in want:
            assert (x[key].dtype, x[key].shape) == (want[key].dtype, want[key].shape), key
        c = int(x["clip"])
        assert int(x["label"]) == ref.labels[c] and torch.equal(x["frame_labels"], ref.visible[c])
        at = _offsets(waves[c], x["audio"])
        assert len(at) == 1 and abs(at[0] - (float(x["t"]) - 0.5) * sr) <= 1
        assert _offsets(waves[c], x["audio_easy"]) == []  # never the clip's own audio...
        assert sum(len(_offsets(w, x["audio_easy"])) for w in waves) == 1  # ...but another's
        if x["hard_valid"]:
            (hard,) = _offsets(waves[c], x["audio_hard"])
            assert abs(hard - at[0]) >= shift - 1
        neg = x["audio_hard"] if x["neg_hard"] else x["audio_easy"]
        assert torch.equal(x["audio_neg"], neg)
    assert len({bool(x["neg_hard"]) for x in items}) == 2


def test_a_streamed_item_draws_its_windows_from_the_right_clips_uniformly():
    """``StreamPairs.cut_item`` over clips of unequal lengths (the tiny world's are all alike): the
    hard window comes from the item's own clip, ``min_shift`` or more away, exactly when that
    clip has room for one; the easy one from another clip, anywhere in it. Brute force: each
    draw's probability integral transform under the uniform law on its valid centres is U(0, 1)
    per clip, and every sample is read back from where the window was cut."""
    from test_pairs import KS_1500, ks_uniform, valid_centre_cdf

    from avssl.config import DataConfig
    from avssl.data.stream_pairs import Clip

    sr, fps, w, m, base = 1000, 10.0, 1.0, 1.0, 100_000
    durations = [1.6, 2.6, 4.0, 6.5]  # 1.6: no room for a hard negative
    data = DataConfig(sample_rate=sr, fps=fps, window=w, min_shift=m, frame_size=8,
                      augment=False, hard_fraction=0.5)  # fmt: skip
    clips = [
        Clip(k, torch.zeros(round(d * fps), 8, 8, 3, dtype=torch.uint8),
              k * base + torch.arange(round(d * sr), dtype=torch.float32), d)
        for k, d in enumerate(durations)
    ]  # fmt: skip
    ds = StreamPairs.__new__(StreamPairs)
    ds.data, ds.audio_keys = data, ("audio", "audio_easy", "audio_hard", "audio_neg")
    ds.labels, ds.visible = [0] * 4, torch.zeros(4, 1, dtype=torch.bool)
    ds.not_negatives = lambda frame_clip, audio_clip: False
    n = round(w * sr)

    def where(window):  # the clip a window was cut from, and its centre there
        owner, start = divmod(int(window[0]), base)
        assert torch.equal(window, owner * base + start + torch.arange(n).float())
        return owner, (start + n / 2) / sr

    uh, ue = {k: [] for k in range(4)}, {k: [] for k in range(4)}
    rng = np.random.default_rng(0)
    for k, clip in enumerate(clips):
        for _ in range(1500):
            x = ds.cut_item(clip, clips, rng)
            t, d = float(x["t"]), durations[k]
            assert where(x["audio"]) == (k, pytest.approx(t, abs=1 / sr))
            easy, easy_t = where(x["audio_easy"])
            assert easy != k
            ue[easy].append(valid_centre_cdf(w / 2, durations[easy] - w / 2, np.isfinite, easy_t))
            assert bool(x["hard_valid"]) == (d - w >= m)
            if x["hard_valid"]:
                owner, hard_t = where(x["audio_hard"])
                assert owner == k and abs(hard_t - t) >= m - 1.5 / sr
                ok = lambda g, t=t: np.abs(g - t) >= m  # noqa: E731
                uh[k].append(valid_centre_cdf(w / 2, d - w / 2, ok, hard_t))
            else:
                assert not x["neg_hard"] and torch.equal(x["audio_hard"], x["audio_easy"])
    assert not uh[0] and all(len(uh[k]) == 1500 for k in (1, 2, 3))
    for k in range(4):
        assert len(ue[k]) > 1000 and ks_uniform(ue[k]) < KS_1500, ("easy", k, ks_uniform(ue[k]))
        if uh[k]:
            assert ks_uniform(uh[k]) < KS_1500, ("hard", k, ks_uniform(uh[k]))


@pytest.mark.parametrize("keys", [("audio",), ("audio", "audio_hard"), ("audio", "audio_neg")])
def test_declared_audio_keys_are_the_same_entries_and_nothing_else_is_read(cache, keys):
    from avssl.data.pairs import AUDIO_KEYS

    left_out = set(AUDIO_KEYS) - set(keys)
    full = load_split(_data(cache), "train", True, progress=False)
    part = load_split(_data(cache), "train", True, progress=False)
    part.set_audio_keys(keys)
    reads, audio = [], part.store.audio
    part.store.audio = lambda clip, t: reads.append(t) or audio(clip, t)
    for a, b in [(full[i], part[i]) for i in range(len(full))]:
        assert set(a) - set(b) == left_out and all(torch.equal(a[k], b[k]) for k in b)
    assert len(reads) == len(full) * len(keys)  # one window per key, none for the others
    streamed = _stream(cache)
    streamed.set_audio_keys(keys)
    for a, b in zip(_stream(cache), streamed, strict=True):
        assert set(a) - set(b) == left_out and all(torch.equal(a[k], b[k]) for k in b)


def test_same_seed_and_epoch_give_the_same_items(cache):
    def items(epoch, seed=0):
        return list(_stream(cache, epoch, seed=seed))

    first, again = items(0), items(0)
    assert all(a.keys() == b.keys() for a, b in zip(first, again, strict=True))
    assert all(torch.equal(a[k], b[k]) for a, b in zip(first, again, strict=True) for k in a)
    for other in (items(1), items(0, seed=1)):
        assert not all(
            torch.equal(a["audio"], b["audio"]) for a, b in zip(first, other, strict=True)
        )


@pytest.mark.parametrize("num_workers", [0, 2])
def test_two_ranks_disjoint_clips_same_number_of_batches(cache, num_workers):
    unequal = False
    for epoch in range(3):
        ranks = [_stream(cache, epoch, rank, world=2) for rank in (0, 1)]
        clips = [{int(x["clip"]) for x in ds} for ds in ranks]
        assert not clips[0] & clips[1] and len(clips[0] | clips[1]) == 12
        counts = ranks[0].rank_batches(2, max(1, num_workers))
        assert ranks[1].rank_batches(2, max(1, num_workers)) == counts
        unequal |= counts[0] != counts[1]
        got = [list(stream_loader(ds, 2, epoch, 0, num_workers, CPU)) for ds in ranks]
        assert len(got[0]) == len(got[1]) == min(counts) > 0, (epoch, counts)
        assert all(b["frames"].shape == (2, 3, 32, 32) for b in got[0] + got[1])
        if num_workers:  # the same batches when read again
            again = list(stream_loader(ranks[0], 2, epoch, 0, num_workers, CPU))
            assert all(
                torch.equal(a["audio"], b["audio"]) for a, b in zip(got[0], again, strict=True)
            )
    assert unequal, "the test needs ranks with different shares"


def test_no_full_batch_for_a_rank_is_a_one_line_error(cache):
    ds = _stream(cache, 0, rank=0, world=2)
    counts = ds.rank_batches(6, 1)
    assert min(counts) == 0 < max(counts)
    with pytest.raises(TrainingError, match="gets no full batch") as err:
        stream_loader(ds, 6, 0, 0, 0, CPU)
    assert "\n" not in str(err.value) and "2 process(es) x 1 worker(s) x batch 6" in str(err.value)


def test_skipped_clips_listed_like_the_in_memory_path(media_factory, tmp_path, capsys):
    rows = []
    for i, duration in enumerate([1.2, 1.2, 0.6, 1.2]):  # 0.6 s: shorter than the window
        media_factory(f"c{i}.mp4", duration=duration, size=(32, 32))
        rows.append(Row(id=f"c{i}", video=f"c{i}.mp4", split="train"))
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00not a video" * 50)
    rows += [Row(id="junk", video="corrupt.mp4", split="train")]
    write_manifest(tmp_path / "manifest.jsonl", rows)
    out = tmp_path / "cache"
    args = ["--out", str(out), "--data", str(tmp_path / "manifest.jsonl"), *SETS, "--no-progress"]
    assert shards_cli.main(args) == 0
    data = load_config(None, [*TINY, f"data.root={tmp_path}", f"data.cache={out}"]).data
    write_manifest(tmp_path / "manifest.jsonl", [*rows, Row(id="new", video="c0.mp4")])
    stream = StreamPairs(data, tmp_path / "manifest.jsonl")
    in_memory = load_split(data, "train", True, progress=False)
    assert sorted(stream.skipped) == sorted(in_memory.skipped)
    assert {i for i, _ in stream.skipped} == {"c2", "junk", "new"}
    assert len(stream) == len(in_memory) == 3


def test_stream_training_reads_only_shards(cache, tiny_train_args, capsys, monkeypatch):
    import avssl.train.loop as loop

    loaded, real = [], loop.load_split

    def load_split_logged(data, split, *args, **kwargs):
        loaded.append(split)
        return real(data, split, *args, **kwargs)

    monkeypatch.setattr(loop, "load_split", load_split_logged)
    args = tiny_train_args(
        f"data.cache={cache}", "data.stream=true", "data.num_workers=2", "train.steps=4"
    )
    assert train.main(args) == 0
    summary = last_json(capsys.readouterr().out)
    assert summary["step"] == 4 and summary["n_skipped"] == 0 and loaded == ["val"]
    run = Path(summary["run_dir"])
    assert (run / "last.pt").is_file() and (run / "best.pt").is_file()


@pytest.mark.parametrize("stop,position", [(4, (1, 1)), (6, (1, 3))])  # mid-epoch, at its end
def test_resume_reproduces_the_straight_run(cache, tiny_train_args, capsys, stop, position):
    sets = (f"data.cache={cache}", "data.stream=true", "train.schedule=constant",
            "train.eval_every=2")  # fmt: skip
    assert train.main(tiny_train_args(*sets, "train.steps=8")) == 0
    straight = last_json(capsys.readouterr().out)
    assert train.main(tiny_train_args(*sets, f"train.steps={stop}")) == 0
    half = last_json(capsys.readouterr().out)
    state = load_checkpoint(Path(half["run_dir"]) / "last.pt")
    assert (state["epoch"], state["batch_in_epoch"]) == position  # 3 batches of 4 per epoch
    assert train.main(["--resume", half["run_dir"], "--set", "train.steps=8", "--no-progress"]) == 0
    resumed = last_json(capsys.readouterr().out)
    assert resumed["step"] == 8 and resumed["weights_digest"] == straight["weights_digest"]


def test_ddp_two_processes_from_shards_identical(cache, tiny_train_args, tiny_cache, tmp_path):
    args = tiny_train_args("train.batch_size=2", f"data.cache={cache}", "data.stream=true")
    proc, digests = torchrun_two_ranks(args, tiny_cache, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], proc.stderr[-2000:]
    summary = last_json(proc.stdout)
    assert summary["weights_digest"] == digests["0"] and summary["step"] == 6


def test_stream_without_cache_is_a_one_line_error(tiny_train_args, capsys):
    # refused with the config, before the world is built or a run folder claimed
    assert train.main(tiny_train_args("data.stream=true")) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["error: data.stream: true needs data.cache (a shard cache from avssl cache)"]


def test_resume_with_other_workers_starts_the_next_epoch(cache, tiny_train_args, capsys):
    # each loader worker reads its own shards: the order of a streamed epoch depends on them
    sets = (f"data.cache={cache}", "data.stream=true")
    assert train.main(tiny_train_args(*sets, "train.steps=4")) == 0
    run = last_json(capsys.readouterr().out)["run_dir"]
    args = ["--resume", run, "--set", "train.steps=5", "--set", "data.num_workers=2"]
    assert train.main([*args, "--no-progress"]) == 0
    assert "(workers 1 -> 2)" in capsys.readouterr().err
    state = load_checkpoint(Path(run) / "last.pt")
    assert (state["epoch"], state["batch_in_epoch"]) == (2, 1)


def test_resume_from_a_cache_rebuilt_with_other_shards_starts_the_next_epoch(
    cache, tiny_train_args, capsys, tmp_path
):
    # the same clips in shards of 3 instead of 5: another epoch order, which the run must not
    # take for the one it stopped in (it would see some clips twice and others never)
    sets = (f"data.cache={cache}", "data.stream=true", "train.steps=4")
    assert train.main(tiny_train_args(*sets)) == 0
    run = last_json(capsys.readouterr().out)["run_dir"]
    other = tmp_path / "cache3"
    assert shards_cli.main(["--out", str(other), *SETS, "--shard-size", "3", "--no-progress"]) == 0
    capsys.readouterr()
    args = ["--resume", run, "--set", "train.steps=5", "--set", f"data.cache={other}"]
    assert train.main([*args, "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "its remaining batches are skipped" in err and "shards " in err, err
    state = load_checkpoint(Path(run) / "last.pt")
    assert (state["epoch"], state["batch_in_epoch"]) == (2, 1)


def test_a_checkpoint_without_a_shard_digest_resumes_where_it_stopped():
    # checkpoints of versions that did not record the shard list keep their place
    from avssl.train.resume import resume_position

    saved = {"clips": 12, "batch_size": 4, "world": 1, "workers": 1, "shuffle_buffer": 256}
    state = {"epoch": 1, "batch_in_epoch": 1, "epoch_layout": saved}
    assert resume_position(state, {**saved, "shards": "0123456789ab"}) == (1, 1, None)
    assert resume_position(state, {**saved, "workers": 2, "shards": "x"})[:2] == (2, 0)


def test_a_jittered_positive_is_cut_where_the_sampler_put_it(tiny_cache):
    """``data.positive_jitter``: the streamed item's positive window holds its frame and is read
    from the drawn centre; the in-memory dataset reads each item's ``audio_t`` when training
    and centres evaluation positives on the frame."""
    from avssl.config import DataConfig, load_config
    from avssl.data.source import load_split
    from avssl.data.stream_pairs import Clip

    sr, fps, w, base = 1000, 10.0, 1.0, 100_000
    data = DataConfig(sample_rate=sr, fps=fps, window=w, min_shift=1.0, frame_size=8,
                      augment=False, positive_jitter=1.0)  # fmt: skip
    clips = [Clip(k, torch.zeros(round(3.0 * fps), 8, 8, 3, dtype=torch.uint8),
                   k * base + torch.arange(3 * sr, dtype=torch.float32), 3.0)
             for k in range(2)]  # fmt: skip
    ds = StreamPairs.__new__(StreamPairs)
    ds.data, ds.audio_keys = data, ("audio",)
    ds.labels, ds.visible = [0, 0], torch.zeros(2, 1, dtype=torch.bool)
    ds.not_negatives = lambda frame_clip, audio_clip: False
    rng, offsets = np.random.default_rng(0), []
    for _ in range(300):
        x = ds.cut_item(clips[0], clips, rng)
        start = int(x["audio"][0])
        assert start < base and torch.equal(x["audio"], start + torch.arange(sr).float())
        offsets.append((start + sr / 2) / sr - float(x["t"]))
    assert max(map(abs, offsets)) <= w / 2 + 1e-3 and np.std(offsets) > 0.15

    cfg = load_config(None, [*TINY, "data.positive_jitter=1"])
    for split, training, jitter in (("train", True, 1.0), ("val", False, 0.0)):
        loaded = load_split(cfg.data, split, training, seed=0, progress=False)
        assert loaded.sampler.jitter == jitter
        seen: list[float] = []
        read = loaded.store.audio
        loaded.store.audio = lambda clip, centre, read=read, seen=seen: (
            seen.append(centre) or read(clip, centre)
        )
        loaded.set_audio_keys(("audio",))
        for i in range(6):
            loaded[i]
            pair = loaded.sampler.sample(i, loaded.epoch)
            assert seen[-1] == pair.audio_t and (pair.audio_t != pair.t) == training
