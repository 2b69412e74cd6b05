"""A clip shorter than the window is skipped with a reason that names its files and length.

Found scoring a localisation manifest of image + audio items: an item whose sound lasted 0.3 s
was skipped as ``shorter than the 1-s window``, and a manifest of only such items stopped with
``split 'test' has no usable clip of its 1 (first: shorter than the 1-s window)``, naming no
file.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from avssl.config import DataConfig
from avssl.data.dataset import ClipStore
from avssl.data.manifest import Row


@pytest.mark.parametrize("preload", [True, False])
def test_short_sound_beside_an_image_is_named(tmp_path, preload):
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "x.png")
    sf.write(tmp_path / "x.wav", np.zeros(4800, np.float32), 16000)  # 0.3 s
    rows = [Row(id="x", image="x.png", audio="x.wav", split="test")]
    store = ClipStore(rows, tmp_path / "m.jsonl", DataConfig(), 16, preload)
    ((item, reason),) = store.skipped
    assert item == "x"
    assert str(tmp_path / "x.wav") in reason and "0.30 s" in reason, reason
    assert reason.endswith("shorter than the 1-s window"), reason


def test_a_length_just_short_of_the_window_is_not_shown_as_the_window():
    # 0.999 s was shown rounded, "x.wav: 1.00 s, shorter than the 1-s window"
    from avssl.data.clip_windows import too_short

    row = Row(id="x", image="x.png", audio="x.wav", split="test")
    for seconds, shown in [(0.999, "0.99"), (0.996, "0.99"), (0.994, "0.99"), (0.3, "0.30")]:
        reason = too_short("m.jsonl", row, seconds, 1.0)
        assert reason.endswith(f"x.wav: {shown} s, shorter than the 1-s window"), reason
