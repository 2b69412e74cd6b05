"""A still image beside a sound file of no samples: the error names the sound file.

Found by preparing VGG-SS and Flickr-SoundNet from image + audio items: a zero-length WAV beside
its frame was skipped by ``evaluate.py localize`` with ``FRAME.jpg: clip start 0.00 s is beyond
the end (0.00 s)``, naming the picture (which is fine) rather than the empty sound.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from avssl.data import media
from avssl.data.on_demand import probe_pairs
from avssl.errors import MediaError


@pytest.fixture
def pair(tmp_path):
    """``(image, wav)``: a good 32x32 PNG and a WAV of no samples."""
    image, wav = tmp_path / "item.png", tmp_path / "item.wav"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    sf.write(wav, np.zeros(0, np.float32), 16000)
    return image, wav


def test_read_clip_names_the_empty_sound_file(pair):
    image, wav = pair
    with pytest.raises(MediaError) as err:
        media.read_clip(image, fps=10, size=16, sample_rate=16000, audio_path=wav)
    assert err.value.path == str(wav), str(err.value)
    assert "empty" in err.value.reason


def test_probed_pair_names_the_empty_sound_file(pair):
    found = probe_pairs([pair], progress=False)[pair]
    assert isinstance(found, MediaError) and found.path == str(pair[1]), found
