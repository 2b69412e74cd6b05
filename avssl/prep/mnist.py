"""Readers of the MNIST IDX files and the Free Spoken Digit Dataset file names.

IDX format (http://yann.lecun.com/exdb/mnist/): a big-endian header, magic 2051 then image
count, rows and columns for images; magic 2049 then the count for labels; then one unsigned
byte per pixel or label. Files may be gzipped (the usual ``*-idx3-ubyte.gz``).
FSDD (https://github.com/Jakobovski/free-spoken-digit-dataset): ``{digit}_{speaker}_{take}.wav``,
and the fixed-length clips AV-Digits makes of them.
"""

from __future__ import annotations

import gzip
import math
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avssl.data.audio_header import truncation
from avssl.errors import ManifestError, MediaError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
# ASCII digits only: \d takes other scripts' digits too (an Arabic-Indic 3 read as 3)
FSDD_NAME = re.compile(r"^([0-9])_([A-Za-z0-9-]+)_([0-9]+)\.(?i:wav)$")  # .WAV too


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such file") from None
    except IsADirectoryError:  # a folder named where its images or labels file was meant
        raise ManifestError(f"{path}: a folder, not an MNIST IDX file (name the file)") from None
    except (OSError, EOFError, zlib.error) as err:  # zlib: a damaged gzip stream
        raise ManifestError(f"{path}: cannot read ({err})") from None


def read_idx(path: str | os.PathLike, magic: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes.

    Args:
        path: the (optionally gzipped) file.
        magic: expected magic number: 2051 for images, 2049 for labels.

    Returns:
        uint8 ``[N, rows, cols]`` for images, ``[N]`` for labels.

    Raises:
        ManifestError: wrong magic number, or fewer bytes than the header promises.
    """
    path = Path(path)
    data = _read_bytes(path)
    ndim = 3 if magic == IMAGES_MAGIC else 1
    header = 4 * (1 + ndim)
    if len(data) < header:
        raise ManifestError(f"{path}: too short for an IDX header")
    values = np.frombuffer(data[:header], dtype=">u4")
    if int(values[0]) != magic:
        kind = "images" if magic == IMAGES_MAGIC else "labels"
        raise ManifestError(f"{path}: magic {int(values[0])}, expected {magic} (IDX {kind})")
    shape = tuple(int(v) for v in values[1:])
    size = math.prod(shape)  # Python integers: np.prod wraps around on a corrupt header
    if len(data) - header < size:
        raise ManifestError(f"{path}: truncated ({len(data) - header} of {size} data bytes)")
    return np.frombuffer(data, dtype=np.uint8, count=size, offset=header).reshape(shape)


def read_mnist(
    images: str | os.PathLike, labels: str | os.PathLike
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 ``[N, 28, 28]`` and labels uint8 ``[N]`` (0-9) of one MNIST part.

    Raises:
        ManifestError: unreadable files, mismatched counts or labels outside 0-9.
    """
    x = read_idx(images, IMAGES_MAGIC)
    if len(x) and min(x.shape[1:]) < 1:
        raise ManifestError(f"{images}: images of {x.shape[1]}x{x.shape[2]} pixels")
    y = read_idx(labels, LABELS_MAGIC)
    if len(x) != len(y):
        raise ManifestError(f"{labels}: {len(y)} labels for {len(x)} images in {images}")
    if len(y) and y.max() > 9:
        raise ManifestError(f"{labels}: label {int(y.max())} is not a digit")
    return x, y


@dataclass(frozen=True)
class Recording:
    """One FSDD utterance."""

    path: Path
    digit: int
    speaker: str
    take: int

    @property
    def id(self) -> str:
        """``DIGIT_SPEAKER_TAKE``, the FSDD file's stem."""
        return f"{self.digit}_{self.speaker}_{self.take}"


def list_fsdd(folder: str | os.PathLike) -> tuple[list[Recording], list[str]]:
    """FSDD recordings of ``folder`` sorted by (speaker, digit, take), and unrecognised names.

    Raises:
        ManifestError: the folder does not exist or is a file.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ManifestError(f"{folder}: not a folder (--fsdd is the FSDD recordings folder)")
    if not folder.is_dir():
        raise ManifestError(f"{folder}: no such FSDD recordings folder")
    found, other = [], []
    for p in sorted(folder.iterdir()):
        m = FSDD_NAME.match(p.name)
        if m:
            found.append(Recording(p, int(m[1]), m[2], int(m[3])))
        elif p.suffix.lower() == ".wav":
            other.append(p.name)
    found.sort(key=lambda r: (r.speaker, r.digit, r.take))
    return found, other


def fixed_length(
    wave: np.ndarray, n: int, remove_dc: bool = False, centre_trim: bool = False
) -> np.ndarray:
    """``wave`` ``[M]`` in ``n`` samples: zero-padded on both sides, or its loudest stretch kept.

    A shorter recording is centred in silence. A longer one keeps the ``n`` consecutive samples
    of most energy (the mean removed), the most central of equally loud ones: the word is seldom
    in the middle of a long recording (one FSDD development take kept 39 % of its energy in its
    middle second). ``centre_trim`` keeps the middle ``n`` samples instead (data prepared before
    2026-12-05).

    With ``remove_dc`` the recording's mean is subtracted first. Some recording devices add a
    constant offset (one of FSDD's voices sits at about -0.007 of full scale, the others near
    0); zero padding would then step away from that voice's silence at both ends of every
    utterance and raise its lowest mel band, a cue of the device, not of the word. Speech
    front ends remove it by default (e.g. Kaldi's ``remove_dc_offset``).
    """
    m = len(wave)
    if remove_dc and m:
        wave = wave - wave.mean()
    if m >= n:
        lo = (m - n) // 2 if centre_trim else _loudest_start(wave, n)
        return wave[lo : lo + n]
    lo = (n - m) // 2
    return np.pad(wave, (lo, n - m - lo))


def _loudest_start(wave: np.ndarray, n: int) -> int:
    """Start of the ``n``-sample window of ``wave`` ``[M >= n]`` with the most energy about the
    recording's mean; among windows within a thousandth of it, the one nearest the centre."""
    x = np.asarray(wave, np.float64)
    x = x - x.mean()
    cum = np.concatenate([[0.0], np.cumsum(x * x)])
    energy = cum[n:] - cum[:-n]
    near = np.flatnonzero(energy >= energy.max() * (1 - 1e-3))
    centre = (len(wave) - n) // 2
    return int(near[np.argmin(np.abs(near - centre))])


def read_recording(path: Path, sample_rate: int) -> np.ndarray:
    """The whole recording resampled to ``sample_rate``, float32 ``[N]``.

    Raises:
        MediaError: not media, no audio stream (e.g. an image named ``.wav``), no samples, a
            file cut short (its header declares more), or a file that does not decode.
    """
    from avssl.data import media  # torch: only when recordings are read

    if (cut := truncation(path)) is not None:  # decoders read what is there, silently
        raise MediaError(path, cut)
    info = media.probe(path)
    if not info.has_audio:
        what = info.video_codec or info.container or "unknown format"
        raise MediaError(path, f"not an audio file ({info.kind}, {what}; no audio stream)")
    if not info.duration:
        raise MediaError(path, "no audio samples" if info.duration == 0 else "unknown duration")
    return media.read_audio(path, 0.0, info.duration, sample_rate).numpy()
