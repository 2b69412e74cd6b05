"""Audio windows reached by seeking a compressed track equal the same samples decoded from the
start of the file (the codec's frames before the window are decoded and dropped)."""

from __future__ import annotations

import numpy as np
import pytest

from avssl.data.media import read_audio


@pytest.mark.parametrize("rate", [8000, 16000])
def test_aac_window_after_a_seek_equals_the_decode_from_the_start(media_factory, rate):
    # the first AAC frame decoded after a seek lacks its overlap (1024 samples: 64 ms at 16 kHz)
    path = media_factory("clip.mp4", duration=4.0, sample_rate=rate)
    full = read_audio(path, 0.0, 3.9, rate).numpy()
    rms = float(np.sqrt((full**2).mean()))
    for start in (0.9, 1.5, 2.2, 3.07):
        window = read_audio(path, start, 0.5, rate).numpy()
        ref = full[round(start * rate) : round(start * rate) + len(window)]
        assert np.abs(window - ref).max() < 0.01 * rms, start
