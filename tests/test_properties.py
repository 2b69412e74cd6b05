"""Property tests (hypothesis): audio front ends, audio decoding and resampling, the pair
sampler and the manifest reader hold their contracts for any valid input (issue 8)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avssl.config import AudioFeatures
from avssl.data.audio_io import read_audio
from avssl.data.manifest import SPLITS, Row, read_manifest, write_manifest
from avssl.data.pairs import PairSampler
from avssl.features import audio_feature_shape, build_audio_frontend

FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RATES = st.sampled_from([8000, 11025, 16000, 22050, 32000, 44100, 48000])


@st.composite
def features(draw) -> AudioFeatures:
    n_fft = draw(st.sampled_from([64, 128, 256, 512]))
    win = draw(st.integers(16, n_fft))
    return AudioFeatures(
        kind=draw(st.sampled_from(["logmel", "logstft"])),
        n_fft=n_fft,
        win_length=win,
        hop_length=draw(st.integers(4, win)),
        n_mels=draw(st.integers(4, 40)),
        center=draw(st.booleans()),
    )


@pytest.mark.filterwarnings("ignore:At least one mel filterbank has all zero values")
@FEW
@given(
    feat=features(),
    rate=RATES,
    window=st.floats(0.05, 1.5),
    batch=st.integers(1, 3),
    signal=st.sampled_from(["noise", "silence", "loud", "dc"]),
)
def test_front_ends_give_finite_features_of_the_documented_shape(feat, rate, window, batch, signal):
    n = round(window * rate)
    if not feat.center and n < feat.win_length:
        return  # audio_feature_shape documents this as a ConfigError
    gen = torch.Generator().manual_seed(n)
    wave = {
        "noise": torch.randn(batch, n, generator=gen) * 0.1,
        "silence": torch.zeros(batch, n),
        "loud": torch.sign(torch.randn(batch, n, generator=gen)),
        "dc": torch.full((batch, n), 0.5),
    }[signal]
    front = build_audio_frontend(feat, rate)
    out = front(wave)
    assert out.shape == (batch, 1, *audio_feature_shape(feat, rate, window))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


@settings(max_examples=25, deadline=None)
@given(
    src_rate=RATES,
    out_rate=RATES,
    channels=st.integers(1, 6),
    duration=st.floats(0.3, 2.0),
    data=st.data(),
)
def test_read_audio_any_rate_and_channels(src_rate, out_rate, channels, duration, data):
    """Any source rate and channel count: exactly the requested number of finite mono samples,
    and a constant signal stays that constant through resampling (away from the edges)."""
    start = data.draw(st.floats(0.0, duration - 0.2))
    length = data.draw(st.floats(0.05, duration - start))
    n = round(duration * src_rate)
    level = np.linspace(0.1, 0.6, channels, dtype=np.float32)
    samples = np.broadcast_to(level, (n, channels))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x é.wav"
        sf.write(path, samples, src_rate, subtype="FLOAT")
        audio = read_audio(path, start, length, out_rate)
    assert audio.shape == (round(length * out_rate),) and audio.dtype == torch.float32
    assert torch.isfinite(audio).all()
    inner = audio[len(audio) // 4 : 3 * len(audio) // 4]
    if len(inner) and start + length < duration - 0.01:
        assert torch.allclose(inner, torch.tensor(float(level.mean())), atol=2e-3)


@st.composite
def sampler_args(draw):
    window = draw(st.floats(0.2, 2.0))
    durations = draw(st.lists(st.floats(window, window + 8.0), min_size=2, max_size=12))
    return {
        "durations": durations,
        "window": window,
        "min_shift": draw(st.floats(0.05, 4.0)),
        "hard_fraction": draw(st.floats(0.0, 1.0)),
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


@FEW
@given(args=sampler_args(), epoch=st.integers(0, 2**40), start=st.integers(0, 10**6))
def test_pair_sampler_invariants_for_any_dataset(args, epoch, start):
    """Sizes, clip lengths and shift settings drawn at random (tests/test_pairs.py has the
    hand-picked cases): every draw stays inside its clip, is reproducible and well formed."""
    s = PairSampler(**args)
    d, w, m = args["durations"], args["window"], args["min_shift"]
    eps = 1e-9
    for index in range(start, start + 3 * len(d)):
        p = s.sample(index, epoch)
        assert repr(p) == repr(s.sample(index, epoch))  # pure in (seed, epoch, index)
        assert p.clip == index % len(d) and p.easy_clip != p.clip
        assert w / 2 - eps <= p.t <= d[p.clip] - w / 2 + eps
        assert w / 2 - eps <= p.easy_t <= d[p.easy_clip] - w / 2 + eps
        if math.isnan(p.hard_t):
            assert not p.neg_hard
        else:
            assert abs(p.hard_t - p.t) >= m - eps
            assert w / 2 - eps <= p.hard_t <= d[p.clip] - w / 2 + eps
        if d[p.clip] - w >= 2 * m:  # room for a shift whatever t is
            assert not math.isnan(p.hard_t)
        if args["hard_fraction"] == 0.0:
            assert not p.neg_hard


TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1)
PATHS = st.lists(TEXT.filter(lambda x: "/" not in x), min_size=1, max_size=3).map("/".join)
CORNER = st.floats(0, 0.9)  # boxes are normalised to [0, 1]
SIDE = st.floats(1e-3, 0.1)


@st.composite
def rows(draw) -> Row:
    start = draw(st.floats(0, 1e5))
    end = draw(st.none() | st.floats(start + 1e-3, start + 1e5))
    if end is not None and end <= start:
        end = None
    visual = draw(PATHS)
    corner, size = st.tuples(CORNER, CORNER), st.tuples(SIDE, SIDE)
    box = st.tuples(corner, size).map(lambda b: [*b[0], b[0][0] + b[1][0], b[0][1] + b[1][1]])
    boxes = draw(st.none() | st.fixed_dictionaries({"sources": st.lists(box)}))  # x0<x1, y0<y1
    image = draw(st.booleans())
    return Row(
        id=draw(TEXT.filter(str.strip)),  # a blank id is refused (test_train_refusals)
        video=None if image else visual,
        image=visual if image else None,
        audio=draw(st.none() | PATHS),
        start=start,
        end=end,
        labels=draw(st.lists(TEXT, max_size=3)),
        split=draw(st.sampled_from(SPLITS)),
        boxes=boxes,
    )


@FEW
@given(items=st.lists(rows(), max_size=8, unique_by=lambda r: r.id))  # ids are unique
def test_manifest_round_trips_any_valid_rows(items):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m é.jsonl"
        assert write_manifest(path, items) == len(items)
        assert read_manifest(path) == items
        for split in SPLITS:
            assert read_manifest(path, split) == [r for r in items if r.split == split]
