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
