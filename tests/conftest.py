"""Shared fixtures: the developers' real data (``../shared/data``) and small generated media.

Generated media are deterministic and structured so tests can tell which frame or moment came
back: frame ``i`` of a video shows ``i`` in binary as 8 vertical bars (white = 1, left = bit 0),
and the audio is a 440 Hz tone whose amplitude ramps up linearly, channel ``c`` of ``C``
scaled by ``(c + 1) / C``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import settings

from avssl.data.writer import write_video

REPO = Path(__file__).resolve().parents[1]
N_BARS = 8
TONE_HZ = 440.0

if os.environ.get("CI"):
    # CI tests a fresh clone: the same examples on every run, none saved between runs. Recent
    # hypothesis versions load such a "ci" profile themselves (this one then inherits the rest
    # of theirs); setup.cfg also allows older ones.
    settings.register_profile("ci", derandomize=True, database=None)
    settings.load_profile("ci")


def pytest_collection_modifyitems(items):
    """Every test that reads ``../shared/data`` carries the ``shared_data`` marker, so
    ``-m "not shared_data"`` leaves out all of them, however they were written."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.shared_data)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` next to the repository (developers and CI only)."""
    path = REPO.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip("../shared/data is absent (it exists for developers and CI only)")
    return path


class MediaFactory:
    """Writes small test media into a folder; call it like :meth:`__call__`."""

    def __init__(self, folder: Path):
        self.folder = folder

    @staticmethod
    def bars(index: int, height: int, width: int) -> np.ndarray:
        """uint8 ``[H, W, 3]`` frame showing ``index`` (mod 256) as binary bars."""
        cols = np.minimum(np.arange(width) * N_BARS // width, N_BARS - 1)
        on = ((index % 2**N_BARS) >> cols) & 1
        row = np.where(on, 235, 16).astype(np.uint8)
        return np.broadcast_to(row[None, :, None], (height, width, 3)).copy()

    @staticmethod
    def frame_index(frame: torch.Tensor) -> int:
        """Read back the index of a decoded uint8 ``[H, W, 3]`` frame made by :meth:`bars`."""
        width = frame.shape[1]
        column = frame.float().mean(dim=(0, 2))
        index = 0
        for bit in range(N_BARS):
            lo, hi = bit * width // N_BARS, (bit + 1) * width // N_BARS
            margin = max(1, (hi - lo) // 4)  # ignore the blurred edges between bars
            if column[lo + margin : hi - margin].mean() > 128:
                index |= 1 << bit
        return index

    @staticmethod
    def tone(t: np.ndarray, duration: float) -> np.ndarray:
        """The mono test signal at times ``t`` (s) of a file lasting ``duration`` s."""
        return 0.5 * np.sin(2 * np.pi * TONE_HZ * t) * (0.2 + 0.8 * t / duration)

    @staticmethod
    def remux_raw(source: Path, path: Path, fmt: str, kind: str) -> Path:
        """Copy the first ``kind`` ("video" or "audio") stream of ``source`` into a raw
        elementary stream of format ``fmt`` (e.g. "h264", "adts"): no container duration and
        no timestamps, so readers must demux to learn the length."""
        import av

        with av.open(str(source)) as src, av.open(str(path), "w", format=fmt) as dst:
            stream = dst.add_stream_from_template(getattr(src.streams, kind)[0])
            for packet in src.demux(**{kind: 0}):
                if packet.dts is not None:
                    packet.stream = stream
                    dst.mux(packet)
        return path

    def __call__(
        self,
        name: str,
        duration: float = 2.0,
        fps: float = 25.0,
        size: tuple[int, int] = (48, 64),
        sample_rate: int = 16000,
        channels: int = 1,
        video: bool = True,
        audio: bool = True,
    ) -> Path:
        """Write ``name`` (its extension picks the kind) and return its path.

        Args:
            name: file name; ``.png/.jpg/.bmp/.webp`` make an image (red top half, blue bottom
                half), ``.wav/.flac/.ogg`` an audio file, anything else a video via
                :func:`avssl.data.writer.write_video`.
            duration: seconds of video and audio.
            fps: video frame rate.
            size: ``(H, W)`` of the frames (even, for h264).
            sample_rate: audio rate in Hz.
            channels: audio channels (1, 2 or 6 for videos).
            video: include a video stream.
            audio: include an audio stream.
        """
        path = self.folder / name
        h, w = size
        ext = path.suffix.lower()
        if ext in (".png", ".jpg", ".jpeg", ".bmp", ".webp"):
            from PIL import Image

            img = np.zeros((h, w, 3), np.uint8)
            img[: h // 2, :, 0] = 255
            img[h // 2 :, :, 2] = 255
            Image.fromarray(img).save(path)
            return path
        t = np.arange(round(duration * sample_rate)) / sample_rate
        gains = (np.arange(channels) + 1) / channels
        samples = (gains[:, None] * self.tone(t, duration)[None]).astype(np.float32)
        if ext in (".wav", ".flac", ".ogg"):
            sf.write(path, samples.T, sample_rate)
            return path
        frames = None
        if video:
            frames = np.stack([self.bars(i, h, w) for i in range(round(duration * fps))])
        write_video(path, frames, fps, samples if audio else None, sample_rate)
        return path


@pytest.fixture
def media_factory(tmp_path: Path) -> MediaFactory:
    """A :class:`MediaFactory` writing into this test's ``tmp_path``."""
    return MediaFactory(tmp_path)


def media_folder(factory: MediaFactory, files: dict[str, dict]) -> Path:
    """A new ``media`` folder beside ``factory``'s files holding ``{name: MediaFactory
    keyword arguments}``."""
    folder = factory.folder / "media"
    folder.mkdir()
    make = MediaFactory(folder)
    for name, kwargs in files.items():
        make(name, **kwargs)
    return folder


TINY = [
    "data.synthetic.n_train=12",
    "data.synthetic.n_val=4",
    "data.synthetic.n_test=4",
    "data.synthetic.duration=2.5",
    "data.synthetic.size=48",
    "data.frame_size=32",
    "data.load_size=36",
    "model.channels=[8,16]",
    "model.embed_dim=16",
    "model.fusion_hidden=16",
    "train.batch_size=4",
    "train.steps=6",
    "train.warmup_steps=0",
    "train.eval_every=3",
    "train.log_every=2",
    "train.val_windows=2",
    "train.precision=fp32",
    "train.deterministic=true",
]


def torchrun_two_ranks(args: list[str], avssl_cache, cwd, script: Path | None = None):
    """``train.py args`` (or ``script args``) under ``torchrun --standalone --nproc_per_node 2``
    (a rendezvous on a free port; gloo on CPU, one thread each).

    Returns:
        ``(completed process, {rank: weights digest})`` from the ranks' stderr lines.
    """
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "AVSSL_CACHE": str(avssl_cache)}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(script or Path(__file__).resolve().parents[1] / "train.py"), *args,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=cwd)
    # The ranks share one stderr pipe, so their lines can interleave mid-line: match, not split.
    digests = dict(re.findall(r"rank (\d+): weights digest ([0-9a-f]{16})", proc.stderr))
    return proc, digests


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """A session-wide AVSSL_CACHE so the tiny synthetic world is generated once."""
    path = tmp_path_factory.mktemp("avssl-cache")
    old = os.environ.get("AVSSL_CACHE")
    os.environ["AVSSL_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("AVSSL_CACHE", None)
    else:
        os.environ["AVSSL_CACHE"] = old


@pytest.fixture
def tiny_train_args(tiny_cache, tmp_path):
    """``--set`` arguments of a seconds-long training run into ``tmp_path/runs``."""

    def make(*extra: str) -> list[str]:
        sets = [*TINY, f"train.runs_dir={tmp_path / 'runs'}", *extra]
        return [a for s in sets for a in ("--set", s)] + ["--no-progress"]

    return make


def poison_loss(monkeypatch, at_call: int, side_effect=None) -> None:
    """The ``at_call``-th training step's loss is NaN (the run stops there), after
    ``side_effect()``. The memory estimate's passes before the first step are not counted."""
    from avssl.models.contrastive import ContrastiveAV
    from avssl.train import step_memory

    real, calls, estimating = ContrastiveAV.loss, {"n": 0}, []
    measure = step_memory.activation_bytes

    def marked(*args, **kwargs):
        estimating.append(True)
        try:
            return measure(*args, **kwargs)
        finally:
            estimating.pop()

    def poisoned(self, batch):
        loss, stats = real(self, batch)
        if estimating:
            return loss, stats
        calls["n"] += 1
        if calls["n"] != at_call:
            return loss, stats
        if side_effect is not None:
            side_effect()
        return loss * float("nan"), stats

    monkeypatch.setattr(step_memory, "activation_bytes", marked)
    monkeypatch.setattr(ContrastiveAV, "loss", poisoned)
