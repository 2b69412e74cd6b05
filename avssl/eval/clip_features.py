"""Clip-level audio features for the linear probe: decode whole files, then embed them.

Two extractors share one call shape, ``extractor(waves) -> [C, D]`` on a list of mono waveforms
at ``extractor.sample_rate``:

* :class:`WindowEmbedder`: a model's audio tower on windows of ``window`` s every ``hop`` s,
  mean- or max-pooled over the clip (L3-Net, https://arxiv.org/abs/1705.08168, Sec. 4.2);
  overlapping windows share their convolutions where the model allows
  (:mod:`avssl.eval.sliding`, exact up to float rounding);
* :class:`LogMelStats`: the mean and standard deviation over time of each log-mel band, the
  usual hand-crafted baseline (on a checkpoint's front end: :func:`logmel_extractor`);
* :class:`MfccStats`: the feature set of the ESC-50 paper's baselines (MFCCs and zero-crossing
  rate, their mean and standard deviation over frames), computed with librosa.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from avssl.config import AudioFeatures
from avssl.data.audio_header import truncation
from avssl.data.media import audio_end, read_audio
from avssl.errors import MediaError
from avssl.eval.embed import audio_windows, embed_audio
from avssl.eval.sliding import sharing_blocker, sliding_embeddings
from avssl.features import LogMel, one_frame

POOLS = ("mean", "max")
DEFAULT_POOL = "mean"  # classify's --pool
DEFAULT_HOP = 0.5  # classify's --hop (s)


class WindowEmbedder:
    """Pooled per-window audio embeddings of a model.

    Args:
        model: an :class:`~avssl.models.base.AVModel` (its ``embed_audio`` is used).
        sample_rate: the model's input rate (Hz).
        window: the model's window (s).
        hop: hop between windows (s).
        pool: ``mean`` or ``max`` over the windows of a clip.
        device: where the model runs.
        precision: ``fp32`` or ``bf16`` (autocast).
        batch_size: windows per forward pass.
    """

    def __init__(self, model, sample_rate, window, hop=DEFAULT_HOP, pool=DEFAULT_POOL, device="cpu",
                 precision="fp32", batch_size=64):  # fmt: skip
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.model, self.sample_rate, self.window, self.hop = model, sample_rate, window, hop
        self.pool, self.device, self.precision, self.batch_size = (
            pool,
            device,
            precision,
            batch_size,
        )
        self.shared = sharing_blocker(model, sample_rate, window, hop) is None

    def __call__(self, waves: list[Tensor]) -> Tensor:
        """Waveforms (each float ``[N_i]``) -> clip embeddings ``[C, D]``."""
        if self.shared:  # overlapping windows of a clip share their convolutions
            parts = [
                sliding_embeddings(self.model, w, self.sample_rate, self.window, self.hop,
                                   self.device, self.precision, self.batch_size)
                for w in waves
            ]  # fmt: skip
        else:
            wins = [audio_windows(w, self.sample_rate, self.window, self.hop) for w in waves]
            emb = embed_audio(
                self.model, torch.cat(wins), self.device, self.precision, self.batch_size
            )
            parts = emb.split([w.shape[0] for w in wins])
        if self.pool == "max":
            return torch.stack([p.amax(dim=0) for p in parts])
        return torch.stack([p.mean(dim=0) for p in parts])


class LogMelStats:
    """Mean and standard deviation over time of log-mel bands: ``[C, 2 * n_mels]``."""

    def __init__(self, sample_rate: int = 16000, feat: AudioFeatures | None = None):
        self.feat = feat or AudioFeatures(kind="logmel")
        self.sample_rate = sample_rate
        self.frontend = LogMel(self.feat, sample_rate)

    def __call__(self, waves: list[Tensor]) -> Tensor:
        """Waveforms (each float ``[N_i]``) -> ``[C, 2 * n_mels]``."""
        out = []
        with torch.no_grad():
            for w in waves:
                if w.shape[0] < one_frame(self.feat):  # a clip shorter than one frame
                    w = F.pad(w, (0, one_frame(self.feat) - w.shape[0]))
                spec = self.frontend(w[None])[0, 0]  # [n_mels, T]
                out.append(torch.cat([spec.mean(dim=1), spec.std(dim=1, unbiased=False)]))
        return torch.stack(out)


def logmel_extractor(checkpoint: str | None):
    """Log-mel statistics on a checkpoint's audio front end, or on the default config's.

    Only the spectrogram's shape is taken (sample rate, ``n_fft``, window, hop, ``n_mels``,
    ``center``): the front end's normalisation, liftering and training augmentations belong to
    the network, not to the baseline. A ``logstft`` front end gives its STFT with ``n_mels``
    mel bands.

    Args:
        checkpoint: a checkpoint or run directory, or ``None``.

    Returns:
        ``(LogMelStats, info)``; ``info`` holds ``features``, ``sample_rate`` and ``frontend``
        (the STFT and band settings, and ``of``: the checkpoint's path or ``"default"``).
    """
    from avssl.config import Config
    from avssl.train.checkpoint import checkpoint_config, load_checkpoint

    state = load_checkpoint(checkpoint) if checkpoint else None
    cfg = checkpoint_config(state) if state is not None else Config()
    a = cfg.model.audio
    shape = {"n_fft": a.n_fft, "win_length": a.win_length, "hop_length": a.hop_length,
             "n_mels": a.n_mels, "center": a.center}  # fmt: skip
    extractor = LogMelStats(cfg.data.sample_rate, AudioFeatures(kind="logmel", **shape))
    of = state["path"] if state is not None else "default"
    info = {
        "features": "logmel",
        "sample_rate": cfg.data.sample_rate,
        "frontend": {**shape, "of": of},
    }
    return extractor, info


class MfccStats:
    """MFCC and zero-crossing-rate statistics: ``[C, 26]``.

    The hand-crafted features of the ESC-50 paper's baselines (Piczak, "ESC: Dataset for
    Environmental Sound Classification", ACM MM 2015, https://doi.org/10.1145/2733373.2806390):
    the first 12 MFCCs without the 0th and the zero-crossing rate of each frame, summarised by
    their mean and standard deviation over the clip. Computed with librosa at 22,050 Hz and its
    default frames (2,048-sample window, hop 512, 128 mel bands), the paper's tool; the paper's
    own frame settings may differ, and its classifiers (k-NN, random forest, SVM) are not the
    probe's.
    """

    sample_rate = 22050

    def __call__(self, waves: list[Tensor]) -> Tensor:
        """Waveforms (each float ``[N_i]``) -> ``[C, 26]``."""
        import librosa  # its import takes seconds: only when these features are asked for

        out = []
        for w in waves:
            y = w.numpy().astype(np.float32)
            if len(y) < 2048:
                y = np.pad(y, (0, 2048 - len(y)))
            mfcc = librosa.feature.mfcc(y=y, sr=self.sample_rate, n_mfcc=13)[1:]  # [12, T]
            zcr = librosa.feature.zero_crossing_rate(y)  # [1, T]
            frames = np.concatenate([mfcc, zcr])
            out.append(np.concatenate([frames.mean(axis=1), frames.std(axis=1)]))
        return torch.from_numpy(np.stack(out)).float()


def load_clip(
    path: str | Path, sample_rate: int, start: float = 0.0, duration: float | None = None
) -> Tensor:
    """The audio of a file from ``start`` for ``duration`` s (``None``: to the end), mono float
    ``[N]`` at ``sample_rate``.

    Args:
        path: an audio file or a video with an audio track.
        sample_rate: output rate in Hz.
        start: window start in seconds.
        duration: window length in seconds; ``None`` reads to the end of the audio.

    Raises:
        MediaError: unreadable, no audio stream, empty, a window beyond the audio, or a WAV or
            AIFF file cut short (its header declares more than it holds; decoders would read
            it as a complete shorter clip).
    """
    if (cut := truncation(path)) is not None:
        raise MediaError(path, cut)
    if duration is None:
        end = audio_end(path)
        if not end:
            raise MediaError(path, "empty or unknown-length audio")
        if end <= start:
            raise MediaError(path, f"start {start:.2f} s is after the audio's end ({end:.2f} s)")
        duration = end - start
    return read_audio(path, start, duration, sample_rate)


def extract(
    paths: list[Path],
    extractor,
    strict: bool = False,
    chunk: int = 16,
    progress: bool = False,
    windows: list[tuple[float, float | None]] | None = None,
    before=None,
) -> tuple[np.ndarray, list[int], list[dict], dict]:
    """Decode and featurise every file; unreadable ones are skipped (or raise when ``strict``).

    Args:
        paths: media files.
        windows: optional ``(start, duration)`` per file (seconds; duration ``None``: to the
            end); by default each whole file.
        extractor: a :class:`WindowEmbedder`, :class:`LogMelStats` or :class:`MfccStats`.
        strict: raise the first :class:`MediaError` instead of skipping.
        chunk: clips featurised together (the model batches their windows).
        progress: show a progress bar on stderr.
        before: optional ``before(waves)``, called once on every readable clip's waveform
            before any is featurised (e.g. to adapt the model to them); the waveforms are then
            held in memory together rather than a chunk at a time.

    Returns:
        ``(features [K, D] float32, kept indices into paths, skipped [{"path", "reason"}],
        timing {"seconds", "audio_seconds", "clips_per_s"})``.
    """
    sr = extractor.sample_rate
    feats, kept, skipped, audio_s = [], [], [], 0.0
    t0 = time.perf_counter()

    spans = windows if windows is not None else [(0.0, None)] * len(paths)
    if len(spans) != len(paths):
        raise ValueError(f"{len(spans)} windows for {len(paths)} files")

    def decode(i):
        try:
            return load_clip(paths[i], sr, *spans[i])
        except MediaError as err:
            return err

    chunks = []  # (indices, waves); featurised as they come unless `before` needs them all

    def featurise(idx, batch):
        feats.append(extractor(batch).float().numpy())
        kept.extend(idx)

    bar = tqdm(total=len(paths), desc="features", disable=not progress, file=sys.stderr)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for lo in range(0, len(paths), chunk):
            batch, idx = [], []
            waves = pool.map(decode, range(lo, min(lo + chunk, len(paths))))
            for i, wave in enumerate(waves, lo):
                if isinstance(wave, MediaError):
                    if strict:
                        raise wave
                    skipped.append({"path": str(paths[i]), "reason": wave.reason})
                    continue
                batch.append(wave)
                idx.append(i)
                audio_s += wave.shape[0] / sr
            if batch and before is None:
                featurise(idx, batch)
            elif batch:
                chunks.append((idx, batch))
            bar.update(min(chunk, len(paths) - lo))
    bar.close()
    if before is not None:
        before([w for _, batch in chunks for w in batch])
        for idx, batch in chunks:
            featurise(idx, batch)
    seconds = time.perf_counter() - t0
    x = np.concatenate(feats) if feats else np.zeros((0, 0), np.float32)
    timing = {
        "seconds": seconds,
        "audio_seconds": audio_s,
        "clips_per_s": len(kept) / seconds if seconds > 0 else 0.0,
    }
    return x, kept, skipped, timing
