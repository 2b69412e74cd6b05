"""Embedding-speed measurement of ``avssl bench``: sliding 1-s windows of 5-s 44.1 kHz clips
through the paper L3 audio tower (bf16, channels-last), windows sharing their convolutions, with
the error against an fp32 tower run on each window alone."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from avssl.config import Config
from avssl.errors import AvsslError
from avssl.eval.clip_features import load_clip
from avssl.eval.embed import audio_windows, embed_audio
from avssl.eval.sliding import sharing_blocker, sliding_embeddings
from avssl.models import build_model

# OpenL3's mel128 front end (128 mel bands, 2048-sample frames) on the paper L3 audio tower; the
# hop is 240 samples instead of OpenL3's 242 and frames are not centred, so a 0.1-s window hop is
# exactly 20 frames and overlapping windows can share their convolutions (avssl.eval.sliding)
MEL128 = (
    "model.audio.kind=logmel", "model.audio.n_fft=2048", "model.audio.win_length=2048",
    "model.audio.hop_length=240", "model.audio.n_mels=128", "model.audio.center=false",
)  # fmt: skip
CLIP_S, FILE_SR, EMBED_HOP_S = 5.0, 44100, 0.1


def write_clips(folder: Path, n: int) -> list[Path]:
    """``n`` 5-s 44.1 kHz mono noise wavs (the length and rate of ESC-50 clips)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"clip{i}.wav"
        sf.write(path, (0.1 * rng.normal(size=int(CLIP_S * FILE_SR))).astype(np.float32), FILE_SR)
        paths.append(path)
    return paths


def embed_speed(cfg: Config, paths: list[Path], batch_size: int) -> dict[str, float]:
    """Audio seconds per second of bf16 channels-last window embedding, and its max error.

    Returns:
        ``embed_audio_seconds_per_s`` (windows sharing computation), ``embed_max_rel_error``
        (max over windows of ``|e - e_fp32| / |e_fp32|``, the reference run on each window
        alone) and ``embed_audio_seconds_per_s_per_window`` (bf16, each window alone).
    """
    sr, win = cfg.data.sample_rate, cfg.data.window
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.data).eval()
    blocker = sharing_blocker(model, sr, win, EMBED_HOP_S)
    if blocker is not None:  # the shared path would silently be the per-window one
        raise AvsslError(f"bench embedding config cannot share windows: {blocker}")

    def run(precision: str, shared: bool, files=paths) -> tuple[torch.Tensor, float]:
        embs, audio_s = [], 0.0
        for path in files:
            wave = load_clip(path, sr)
            audio_s += wave.shape[0] / sr
            if shared:
                embs.append(sliding_embeddings(model, wave, sr, win, EMBED_HOP_S, "cpu",
                                               precision, batch_size))  # fmt: skip
            else:
                wins = audio_windows(wave, sr, win, EMBED_HOP_S)
                embs.append(embed_audio(model, wins, "cpu", precision, batch_size))
        return torch.cat(embs), audio_s

    ref, _ = run("fp32", shared=False)
    model = model.to(memory_format=torch.channels_last)
    out = {}
    for shared, key in ((False, "embed_audio_seconds_per_s_per_window"),
                        (True, "embed_audio_seconds_per_s")):  # fmt: skip
        run("bf16", shared, paths[:1])  # untimed: oneDNN sets up its bf16 kernels
        t0 = time.perf_counter()
        emb, audio_s = run("bf16", shared)
        out[key] = audio_s / (time.perf_counter() - t0)
    err = (emb - ref).norm(dim=1) / ref.norm(dim=1).clamp_min(1e-12)
    out["embed_max_rel_error"] = float(err.max())
    return out
