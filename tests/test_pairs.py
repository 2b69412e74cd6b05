import math

import numpy as np
import pytest

from avssl.data.pairs import PairSampler


@pytest.mark.parametrize(
    "durations,window,min_shift",
    [([4.0] * 5, 1.0, 1.0), ([10.0, 2.5, 3.0, 6.0], 1.0, 1.0), ([2.2, 2.2, 30.0], 0.96, 0.5)],
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
