import math

import numpy as np
import pytest

from avssl.data.pairs import PairSampler


@pytest.mark.parametrize(
    "durations,window,min_shift",
    [
        ([4.0] * 5, 1.0, 1.0),
        ([10.0, 2.5, 3.0, 6.0], 1.0, 1.0),
        ([2.2, 2.2, 30.0], 0.96, 0.5),
        ([2.0, 2.0, 2.0001, 1.9999], 1.0, 1.0),  # exactly window + min_shift: the two ends
    ],
)
def test_hard_negatives_same_clip_shifted(durations, window, min_shift):
    s = PairSampler(durations, window, min_shift, hard_fraction=0.5, seed=3)
    for epoch in range(3):
        for i in range(200):
            p = s.sample(i, epoch)
            d = durations[p.clip]
            assert p.clip == i % len(durations)
            assert window / 2 - 1e-9 <= p.t <= d - window / 2 + 1e-9
            assert p.easy_clip != p.clip
            de = durations[p.easy_clip]
            assert window / 2 - 1e-9 <= p.easy_t <= de - window / 2 + 1e-9
            if d - window >= min_shift:
                assert not math.isnan(p.hard_t), "a shift was possible but none was drawn"
            if not math.isnan(p.hard_t):
                assert abs(p.hard_t - p.t) >= min_shift - 1e-9
                assert window / 2 - 1e-9 <= p.hard_t <= d - window / 2 + 1e-9
            else:
                assert not p.neg_hard


def test_deterministic_and_epoch_dependent():
    a = PairSampler([4.0] * 6, 1.0, 1.0, 0.5, seed=1)
    b = PairSampler([4.0] * 6, 1.0, 1.0, 0.5, seed=1)
    assert [a.sample(i, 2) for i in range(50)] == [b.sample(i, 2) for i in range(50)]
    assert [a.sample(i, 2) for i in range(50)] != [a.sample(i, 3) for i in range(50)]
    c = PairSampler([4.0] * 6, 1.0, 1.0, 0.5, seed=2)
    assert [a.sample(i, 2) for i in range(50)] != [c.sample(i, 2) for i in range(50)]


def test_hard_fraction_respected():
    s = PairSampler([5.0] * 4, 1.0, 1.0, hard_fraction=0.3, seed=0)
    frac = np.mean([s.sample(i).neg_hard for i in range(4000)])
    assert abs(frac - 0.3) < 0.03


def test_too_short_clip_rejected():
    with pytest.raises(ValueError, match="shorter than the window"):
        PairSampler([4.0, 0.5], 1.0, 1.0)
    with pytest.raises(ValueError, match="at least two clips"):
        PairSampler([4.0], 1.0, 1.0)


def test_easy_negatives_avoid_what_the_frame_shows():
    """With an ``excluded`` predicate an easy negative is never something the frame shows, while
    without it about as many negatives are shown as chance says (so the test can fail)."""
    rng = np.random.default_rng(0)
    label = rng.integers(0, 10, size=200)
    canvas = [set(rng.choice(10, size=4, replace=False)) | {label[i]} for i in range(200)]

    def shown(frame_clip, audio_clip):
        return int(label[audio_clip]) in canvas[frame_clip]

    plain = PairSampler([1.0] * 200, 1.0, 1.0, 0.0, seed=1)
    masked = PairSampler([1.0] * 200, 1.0, 1.0, 0.0, seed=1, excluded=shown)
    hits_plain = sum(shown(p.clip, p.easy_clip) for p in map(plain.sample, range(2000)))
    pairs = [masked.sample(i) for i in range(2000)]
    assert hits_plain > 600  # about 40-50% of random negatives are on the canvas
    assert not any(shown(p.clip, p.easy_clip) for p in pairs)
    assert all(p.easy_clip != p.clip for p in pairs)
    again = [masked.sample(i) for i in range(50)]  # still deterministic
    assert [(p.clip, p.easy_clip, p.easy_t) for p in again] == [
        (p.clip, p.easy_clip, p.easy_t) for p in pairs[:50]
    ]


@pytest.mark.parametrize("hard_valid,neg_hard", [(True, True), (True, False), (False, False)])
def test_pair_audio_reads_each_window_once_and_only_when_a_key_needs_it(hard_valid, neg_hard):
    import itertools

    import torch

    from avssl.data.pairs import AUDIO_KEYS, check_audio_keys, pair_audio

    windows = {"positive": torch.zeros(3), "easy": torch.ones(3), "hard": torch.full((3,), 2.0)}
    # brute force: the entries as the full item defines them
    hard = windows["hard"] if hard_valid else windows["easy"]
    full = {
        "audio": windows["positive"],
        "audio_easy": windows["easy"],
        "audio_hard": hard,
        "audio_neg": hard if neg_hard else windows["easy"],
    }
    others = [k for k in AUDIO_KEYS if k != "audio"]
    for n in range(len(others) + 1):
        for extra in itertools.combinations(others, n):
            keys = check_audio_keys(("audio", *extra))
            reads = []

            def reader(name, reads=reads):
                return lambda: reads.append(name) or windows[name]

            got = pair_audio(keys, *map(reader, windows), hard_valid, neg_hard)
            assert list(got) == list(keys)
            assert all(torch.equal(got[k], full[k]) for k in keys)
            needed = {"positive"} | {
                "easy" if full[k] is windows["easy"] else "hard" for k in extra
            }
            assert sorted(reads) == sorted(needed)  # each needed window once, nothing else
    with pytest.raises(ValueError, match="need 'audio'"):
        check_audio_keys(("audio_hard",))
    with pytest.raises(ValueError, match="need 'audio'"):
        check_audio_keys(("audio", "audio_other"))


def test_the_augmentation_draws_apart_from_the_pair_sampler(monkeypatch):
    # they once shared a stream: epoch e's augmentation drew epoch e + 1's frame times
    from avssl.data.dataset import augment_rng

    seeds, real = [], np.random.default_rng
    monkeypatch.setattr(np.random, "default_rng", lambda s: seeds.append(s) or real(s))
    sampler = PairSampler([3.0] * 5, window=1.0, min_shift=0.2, seed=4)
    for epoch in range(3):
        for index in range(5):
            sampler.sample(index, epoch)
    monkeypatch.undo()
    assert len(seeds) == 15
    draws = [real(s).random(4) for s in seeds]
    for epoch in range(3):
        for index in range(5):
            aug = augment_rng(4, epoch, index).random(4)
            assert not any(np.allclose(aug, d) for d in draws)


def test_a_clip_exactly_window_plus_shift_long_pairs_both_ends():
    s = PairSampler([2.0, 2.0], 1.0, 1.0, hard_fraction=0.5, seed=0)
    pairs = [s.sample(i, e) for e in range(20) for i in range(2)]
    assert {p.t for p in pairs} == {0.5, 1.5}
    assert all({p.t, p.hard_t} == {0.5, 1.5} for p in pairs)
