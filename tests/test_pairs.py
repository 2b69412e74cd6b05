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


def valid_centre_cdf(lo: float, hi: float, ok, x: float, points: int = 4001) -> float:
    """Brute force: the CDF at ``x`` of the uniform law on the centres of ``[lo, hi]`` that
    ``ok`` (a vectorised predicate) admits, counted on a fine grid."""
    grid = np.linspace(lo, hi, points)
    good = ok(grid)
    return np.count_nonzero(good & (grid <= x)) / np.count_nonzero(good)


def ks_uniform(u) -> float:
    """Kolmogorov-Smirnov distance of the sample ``u`` from U(0, 1)."""
    u = np.sort(np.asarray(u, dtype=np.float64))
    n = len(u)
    return float(max(np.max(np.arange(1, n + 1) / n - u), np.max(u - np.arange(n) / n)))


# 1500 draws a clip: a uniform sample exceeds this KS distance with probability about 1e-4
KS_1500 = 0.06


def test_frame_hard_and_easy_times_are_uniform_over_their_valid_centres():
    """Each draw's probability integral transform under the uniform law on its valid centres,
    counted on a grid (``t``: every centre with a partner ``min_shift`` away; ``hard_t``: the
    centres ``min_shift`` or more from ``t``; ``easy_t``: the easy clip's centres), is U(0, 1)
    per clip. The range checks of the other tests hold for a skewed draw too."""
    durations, w, m = [4.0, 2.6, 3.3, 6.0], 1.0, 1.0  # 2.6: valid t are two separate spans
    s = PairSampler(durations, w, m, hard_fraction=0.5, seed=5)
    ut, uh, ue = ({c: [] for c in range(4)} for _ in range(3))
    for i in range(4 * 1500):
        p = s.sample(i)
        lo, hi = w / 2, durations[p.clip] - w / 2
        has_partner = lambda g, lo=lo, hi=hi: (g - lo >= m) | (hi - g >= m)  # noqa: E731
        ut[p.clip].append(valid_centre_cdf(lo, hi, has_partner, p.t))
        shifted = lambda g, t=p.t: np.abs(g - t) >= m  # noqa: E731
        uh[p.clip].append(valid_centre_cdf(lo, hi, shifted, p.hard_t))
        elo, ehi = w / 2, durations[p.easy_clip] - w / 2
        ue[p.easy_clip].append(valid_centre_cdf(elo, ehi, np.isfinite, p.easy_t))
    for c in range(4):
        assert len(ut[c]) == 1500
        assert ks_uniform(ut[c]) < KS_1500, ("t", c, ks_uniform(ut[c]))
        assert ks_uniform(uh[c]) < KS_1500, ("hard_t", c, ks_uniform(uh[c]))
        assert ks_uniform(ue[c]) < KS_1500, ("easy_t", c, ks_uniform(ue[c]))


def test_easy_negatives_are_uniform_over_the_other_admitted_clips():
    """Brute force: every other clip (every admitted one, with ``excluded``) is an easy negative
    of each clip equally often."""
    n, draws = 5, 6000
    for excluded in (None, lambda frame, audio: audio == (frame + 1) % n):
        s = PairSampler([3.0] * n, 1.0, 1.0, seed=2, excluded=excluded)
        counts = np.zeros((n, n))
        for i in range(draws):
            p = s.sample(i)
            counts[p.clip, p.easy_clip] += 1
        for c in range(n):
            allowed = [e for e in range(n) if e != c and not (excluded and excluded(c, e))]
            expected = counts[c].sum() / len(allowed)
            assert counts[c][[e for e in range(n) if e not in allowed]].sum() == 0
            # 300-400 draws a cell: 20 % is over 3.5 standard deviations
            assert np.all(np.abs(counts[c][allowed] - expected) < 0.2 * expected), counts[c]


def _shares_or_shows(rows, labels, visible, unseen, a: int, b: int) -> bool:
    """Brute force of NotNegatives: the two rows share a file (paths normalised; a row's sound is
    its audio file, else its video), or ``b``'s class is one ``a``'s picture shows."""
    import os

    def sound(r):
        return os.path.normpath(r.audio or r.visual)

    if os.path.normpath(rows[a].visual) == os.path.normpath(rows[b].visual):
        return True
    if sound(rows[a]) == sound(rows[b]):
        return True
    return unseen and labels[b] != -1 and bool(visible[a][labels[b]])


def test_not_negatives_and_label_table_match_a_brute_force_rule():
    from avssl.data.clip_windows import NotNegatives, label_table
    from avssl.data.manifest import Row

    rows = [
        Row("a0", video="v/a.mp4", labels=["dog"]),  # two segments of one video
        Row("a1", video="v/./a.mp4", start=10.0, labels=["cat", "dog"]),
        Row("c0", image="c/0.png", audio="r/one.wav", labels=["one"], frame_labels=["one", "two"]),
        Row("c1", image="c/1.png", audio="r/one.wav", labels=["one"], frame_labels=["one", "cat"]),
        Row("c2", image="c/2.png", audio="r/two.wav", labels=["two"], frame_labels=["two", "dog"]),
        Row("s0", image="c/0.png", audio="r/three.wav", labels=["bird"]),  # c0's picture
        Row("b0", video="v/b.mp4", labels=["cat", "dog"]),
        Row("n0", video="v/n.mp4", labels=[]),
        Row("u0", video="v/u.mp4", labels=["unknown", "dog"], frame_labels=["zebra", "cat"]),
    ]
    classes = ["bird", "cat", "dog", "one", "two"]
    labels, visible = label_table(rows, classes)
    # brute force: the first label's index; shown: frame_labels, else the first label alone
    for i, r in enumerate(rows):
        first = r.labels[0] if r.labels else None
        assert labels[i] == (classes.index(first) if first in classes else -1), r.id
        names = r.frame_labels if r.frame_labels is not None else r.labels[:1]
        want = [c in names for c in classes]
        assert visible[i].tolist() == want, r.id
    for unseen in (False, True):
        rule = NotNegatives(rows, labels, visible, unseen)
        for a in range(len(rows)):
            for b in range(len(rows)):
                if a != b:
                    want = _shares_or_shows(rows, labels, visible, unseen, a, b)
                    assert rule(a, b) == want, (rows[a].id, rows[b].id, unseen)
    # the pairs that make the rule: a shared video, a shared sound, a shared picture
    rule = NotNegatives(rows, labels, visible, False)
    assert rule(0, 1) and rule(2, 3) and rule(2, 5) and not rule(0, 6) and not rule(2, 4)


def test_audio_window_is_the_window_nearest_its_centre():
    """Brute force: the cut is the ``round(window * rate)`` samples whose middle lies nearest the
    centre, among those inside the wave (not one sample early, nor late)."""
    import torch

    from avssl.data.clip_windows import audio_window

    rate, window = 1000, 0.25
    wave = torch.arange(1700, dtype=torch.float32)
    n = round(window * rate)
    rng = np.random.default_rng(0)
    for centre in [*rng.uniform(-0.1, 1.8, 400), 0.1, 1.6]:
        got = audio_window(wave, float(centre), window, rate)
        starts = np.arange(len(wave) - n + 1)
        want = int(starts[np.argmin(np.abs((starts + n / 2) / rate - centre))])
        assert got.tolist() == list(range(want, want + n)), centre


@pytest.mark.parametrize("jitter", [0.5, 1.0])
def test_positive_jitter_holds_the_frame_and_changes_no_other_draw(jitter):
    """Each positive window holds its frame, ``jitter * window / 2`` or less from it, uniform
    over those inside the clip (KS against the law clipped at the clip's ends); every other
    draw, and the positive of ``jitter`` 0, is the centred sampler's."""
    durations, w, m = [4.0, 1.3, 2.6], 1.0, 1.0  # 1.3: the clip's ends clip most windows
    base = PairSampler(durations, w, m, hard_fraction=0.5, seed=4)
    moved = PairSampler(durations, w, m, hard_fraction=0.5, seed=4, jitter=jitter)
    u = {c: [] for c in range(3)}
    for i in range(3 * 1500):
        p, q = base.sample(i, 1), moved.sample(i, 1)
        assert p.audio_t == p.t
        assert (q.clip, q.t, q.easy_clip, q.easy_t, q.neg_hard) == (
            p.clip, p.t, p.easy_clip, p.easy_t, p.neg_hard
        )  # fmt: skip
        assert q.hard_t == p.hard_t or (math.isnan(q.hard_t) and math.isnan(p.hard_t))
        lo = max(w / 2, q.t - jitter * w / 2)
        hi = min(durations[q.clip] - w / 2, q.t + jitter * w / 2)
        assert lo - 1e-9 <= q.audio_t <= hi + 1e-9
        assert abs(q.audio_t - q.t) <= w / 2 + 1e-9  # the window holds the frame
        u[q.clip].append((q.audio_t - lo) / (hi - lo))
    for c in range(3):
        assert ks_uniform(u[c]) < KS_1500, (c, ks_uniform(u[c]))
    assert np.std([moved.sample(i).audio_t - moved.sample(i).t for i in range(0, 600, 3)]) > 0.1


def test_no_jitter_draws_nothing():
    """The streamed path shares one generator across an item's draws (and its frame's
    augmentation after them): a draw at jitter 0 would move every later one."""
    from avssl.data.pairs import positive_time

    rng = np.random.default_rng(7)
    before = rng.bit_generator.state
    assert positive_time(rng, 1.3, 4.0, 1.0, 0.0) == 1.3
    assert rng.bit_generator.state == before
    positive_time(rng, 1.3, 4.0, 1.0, 0.5)
    assert rng.bit_generator.state != before
