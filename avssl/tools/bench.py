"""``avssl bench``: decoding, shard-cache, training and embedding speed of this machine, one run.

Measured on the same process, so the numbers are comparable with each other:

- ``decode_windows_per_s``: 1-s windows (frames at ``data.fps`` and the decode size of their
  split, mono audio at ``data.sample_rate``) decoded from the media of a small synthetic world
  (:func:`avssl.data.synthetic.ensure_world`, under ``$AVSSL_CACHE``), each at a random time
  (the best of three passes, as for the cache);
- ``cache_windows_per_s``: 1-s windows of the same clips read from a shard cache of that world
  (built with ``avssl cache``): sequential passes over the shards cutting one random window
  from each clip, as a training epoch reads them;
- ``train_clips_per_s_fp32`` / ``_bf16``: ``{config name: clips/s}`` of full optimisation steps
  on random batches (the model's cost alone) for the default config and ``configs/l3-paper.yaml``;
- ``model_gflop_per_clip``: forward + backward FLOPs per training clip of the paper config,
  counted by :class:`torch.utils.flop_counter.FlopCounterMode` on one training step;
  ``achieved_gflop_per_s`` = that times the paper config's bf16 clips/s;
  ``matmul_peak_gflop_per_s``: a square bf16 matmul; ``mfu`` = achieved / peak;
- ``embed_audio_seconds_per_s``: the paper L3 audio tower (random weights, 512-d) on a
  ``mel128`` input (128 mel bands x 192 frames: n_fft 2048, hop 240, not centred) of 1-s 48 kHz
  windows every 0.1 s of 5-s 44.1 kHz wav clips, bf16 autocast with channels-last weights,
  decoding, resampling and the spectrogram included, the windows of a clip sharing their
  convolutions (:mod:`avssl.eval.sliding`, what ``classify`` and ``index`` run);
  ``embed_max_rel_error``: the largest ``|e - e_ref| / |e_ref|`` over those window embeddings
  against the fp32 tower run on each window alone; ``embed_audio_seconds_per_s_per_window``:
  the same bf16 tower run on each window alone (no sharing), for comparison;
- ``peak_rss_mb``: the process's peak resident memory.

- ``data_wait_fraction``: the share of step time the real training loop (``train.py``, default
  config, ``data.cache`` on the shard cache above, so the train split is read from the shards
  into memory) spends waiting for its next batch, as its summary reports it;
  ``data_wait_fraction_stream``: the same with ``data.stream=true`` (the train split read shard
  by shard every epoch); ``train_default_peak_rss_mb``: the larger peak resident memory of those
  two training processes (each runs in a fresh child process, so nothing else counts).

usage: avssl bench [--quick]   (the last stdout line is one JSON object)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import multiprocessing
import platform
import random
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.flop_counter import FlopCounterMode

from avssl.config import Config, SynthConfig, load_config
from avssl.data.manifest import Row, read_manifest, resolve
from avssl.data.media import read_audio, read_frames
from avssl.data.shards import iter_shard, read_index, split_size
from avssl.errors import AvsslError
from avssl.eval.clip_features import load_clip
from avssl.eval.embed import audio_windows, embed_audio
from avssl.eval.sliding import sharing_blocker, sliding_embeddings
from avssl.models import build_model
from avssl.train import runtime

REPO = Path(__file__).resolve().parents[2]
PAPER = REPO / "configs" / "l3-paper.yaml"
# OpenL3's mel128 front end (128 mel bands, 2048-sample frames) on the paper L3 audio tower; the
# hop is 240 samples instead of OpenL3's 242 and frames are not centred, so a 0.1-s window hop is
# exactly 20 frames and overlapping windows can share their convolutions (avssl.eval.sliding)
MEL128 = (
    "model.audio.kind=logmel", "model.audio.n_fft=2048", "model.audio.win_length=2048",
    "model.audio.hop_length=240", "model.audio.n_mels=128", "model.audio.center=false",
)  # fmt: skip
WINDOW_S, CLIP_S, FILE_SR, EMBED_HOP_S = 1.0, 5.0, 44100, 0.1
REPS = 3  # timed repeats of the decode and cache-read passes (the best one counts)


@dataclass
class Sizes:
    """How much work each measurement does (``--quick`` or the full run)."""

    world: SynthConfig
    windows: int  # decoded / cached windows
    steps: int  # timed steps, default config
    batch: int
    paper_steps: int
    paper_batch: int
    warmup: int  # untimed steps before each timing
    flop_batch: int  # batch of the FLOP-counted step
    matmul: int  # side of the peak-rate matmul
    embed_clips: int
    embed_batch: int  # windows per forward pass
    wait_steps: int  # steps of the real training run measuring data_wait_fraction
    overrides: tuple[str, ...] = ()  # --set assignments for every config (tests shrink models)


# The training runs measuring data waits need epochs of several batches (an epoch's first batch
# is built before anything can be prefetched): 256 clips are 4 batches of the default 64.
WAIT_WORLD = SynthConfig(n_train=256, n_val=4, n_test=0)
QUICK = Sizes(WAIT_WORLD, 40, 3, 32, 1, 4, 1, 2, 2048, 1, 64, 32)
FULL = Sizes(WAIT_WORLD, 200, 10, 64, 3, 16, 2, 4, 2048, 4, 64, 32)


# ----------------------------------------------------------------------------- training


def random_batch(cfg: Config, batch_size: int) -> dict:
    """A batch as :func:`avssl.train.data.to_device` delivers it (channels-last frames).

    Returns:
        ``frames`` float ``[B, 3, S, S]``, ``audio``/``audio_neg``/``audio_hard`` float
        ``[B, N]``, ``neg_hard`` bool ``[B]``, ``label`` long ``[B]``.
    """
    s, n = cfg.data.frame_size, int(round(cfg.data.window * cfg.data.sample_rate))
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(batch_size, 3, s, s, generator=g)
    if cfg.train.channels_last:
        frames = frames.contiguous(memory_format=torch.channels_last)
    audio = [0.1 * torch.randn(batch_size, n, generator=g) for _ in range(3)]
    return {
        "frames": frames,
        "audio": audio[0],
        "audio_neg": audio[1],
        "audio_hard": audio[2],
        "neg_hard": torch.arange(batch_size) % 2 == 0,
        "label": torch.arange(batch_size) % 4,
    }


def train_step(cfg: Config, precision: str, batch_size: int):
    """A closure running one AdamW step of ``model.loss`` on a fixed random batch."""
    torch.manual_seed(0)
    device = torch.device("cpu")
    model = build_model(cfg.model, cfg.data, cfg.loss).to(device).train()
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = random_batch(cfg, batch_size)
    loss_fn = torch.compile(model.loss) if cfg.train.compile else model.loss

    def step():
        with runtime.autocast(precision, device):
            loss, _ = loss_fn(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def clips_per_second(
    cfg: Config, precision: str, steps: int, batch_size: int, warmup: int = 2
) -> float:
    """Training clips per second over ``steps`` timed steps after ``warmup`` untimed ones."""
    step = train_step(cfg, precision, batch_size)
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - t0)


def train_flop_per_clip(cfg: Config, batch_size: int) -> float:
    """Forward + backward FLOPs of one training step divided by its batch size."""
    step = train_step(cfg, "fp32", batch_size)
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / batch_size


def matmul_gflop_per_s(n: int, reps: int = 5) -> float:
    """GFLOP/s of an ``n x n`` bf16 matmul (best of ``reps`` after one warm-up)."""
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).bfloat16() for _ in range(2))
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


# ----------------------------------------------------------------------------- data


def build_cache(manifest: Path, out: Path, overrides: tuple[str, ...]) -> Path:
    """Run ``avssl cache`` on ``manifest`` into ``out`` (its JSON line is swallowed)."""
    from avssl.data import shards_cli

    sets = [a for s in overrides for a in ("--set", s)]
    with contextlib.redirect_stdout(io.StringIO()):
        shards_cli.main(["--data", str(manifest), "--out", str(out), "--no-progress", *sets])
    return out


def pick_windows(rows: list[Row], n: int, seed: int = 0) -> list[tuple[Row, float]]:
    """``n`` random ``(row, start s into the row)`` 1-s windows of rows of a known length."""
    rng = random.Random(seed)
    rows = [r for r in rows if r.end is not None and r.end - r.start >= WINDOW_S]
    picks = []
    for _ in range(n):
        row = rng.choice(rows)
        picks.append((row, rng.uniform(0.0, row.end - row.start - WINDOW_S)))
    return picks


def best_rate(count_once, reps: int = REPS) -> float:
    """The best of ``reps`` timed calls of ``count_once() -> items done``, in items per second
    (as ``timeit`` advises: the fastest repeat is the least disturbed by the rest of the
    machine; decoding and cache reads are both measured this way)."""
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        n = count_once()
        rates.append(n / (time.perf_counter() - t0))
    return max(rates)


def decode_windows_per_second(manifest: Path, picks, cfg: Config) -> float:
    """Windows per second decoded from the media (after one untimed warm-up window), the best
    of :data:`REPS` passes over ``picks``."""
    d = cfg.data

    def decode(row: Row, t: float):
        visual = resolve(manifest, row.visual)
        audio = resolve(manifest, row.audio) or visual
        frames = read_frames(visual, row.start + t, WINDOW_S, d.fps, split_size(d, row.split))
        wave = read_audio(audio, row.start + t, WINDOW_S, d.sample_rate)
        return frames, wave

    def once() -> int:
        for pick in picks:
            decode(*pick)
        return len(picks)

    decode(*picks[0])
    return best_rate(once)


def cache_windows_per_second(cache: Path, cfg: Config, seed: int = 0) -> float:
    """Windows per second read from a shard cache as a training epoch reads it.

    A sequential pass over every shard; from each clip one random 1-s window (its frames and
    audio) is cut, as :class:`avssl.data.stream_pairs.StreamPairs` cuts one item per clip. The
    best of :data:`REPS` passes.
    """
    d = cfg.data
    rng = random.Random(seed)
    nf, na = int(round(WINDOW_S * d.fps)), int(round(WINDOW_S * d.sample_rate))

    def once() -> int:
        n = 0
        for shard in read_index(cache)["shards"]:
            for sample in iter_shard(cache / shard["name"]):
                frames, audio = sample["frames"], sample["audio"]
                seconds = min(len(frames) / d.fps, len(audio) / d.sample_rate)
                t = rng.uniform(0.0, max(0.0, seconds - WINDOW_S))
                i, j = int(t * d.fps), int(round(t * d.sample_rate))
                window = torch.from_numpy(frames[i : i + nf]), torch.from_numpy(audio[j : j + na])
                assert window[0].shape[0] > 0 and window[1].shape[0] > 0
                n += 1
        return n

    return best_rate(once)


def _train_child(argv: list[str], queue) -> None:
    """Run ``train.py argv`` here (a spawned process); put its summary and peak RSS."""
    from avssl.cli import run_guarded
    from avssl.train.cli import main as train_main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run_guarded(train_main, argv)
    lines = out.getvalue().strip().splitlines()
    summary = json.loads(lines[-1]) if code == 0 and lines else None
    queue.put((summary, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def train_from_cache(
    manifest: Path, cache: Path, steps: int, overrides, runs: Path, stream: bool = False
) -> dict:
    """The default config trained for ``steps`` steps from ``cache`` in a fresh process.

    Returns:
        ``{"data_wait_fraction", "clips_per_s", "peak_rss_mb"}`` of that training run.
    """
    sets = [
        f"data.root={manifest}", f"data.cache={cache}", f"data.stream={str(stream).lower()}",
        f"train.steps={steps}", f"train.eval_every={steps}", f"train.runs_dir={runs}",
        f"name=bench-{'stream' if stream else 'memory'}", *overrides,
    ]  # fmt: skip
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    argv = [a for x in sets for a in ("--set", x)] + ["--no-progress"]
    child = ctx.Process(target=_train_child, args=(argv, queue))
    child.start()
    summary, rss = queue.get()
    child.join()
    if summary is None:
        raise AvsslError("bench: the training run from the shard cache failed (see above)")
    return {
        "data_wait_fraction": summary["data_wait_fraction"],
        "clips_per_s": summary["clips_per_s"],
        "peak_rss_mb": rss,
    }


# ----------------------------------------------------------------------------- embedding


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


# ----------------------------------------------------------------------------- the run


def run(sizes: Sizes, log=None) -> dict:
    """Every measurement of ``sizes``; returns the JSON object's dict (progress: ``log``)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    from avssl.data.synthetic import ensure_world

    configs = {"default": load_config(None, list(sizes.overrides))}
    configs["l3-paper"] = paper = load_config(PAPER, list(sizes.overrides))
    out: dict = {}

    manifest = ensure_world(sizes.world, progress=False)
    rows = read_manifest(manifest)
    picks = pick_windows(rows, sizes.windows)
    out["decode_windows_per_s"] = decode_windows_per_second(manifest, picks, configs["default"])
    with tempfile.TemporaryDirectory() as tmp:
        cache = build_cache(manifest, Path(tmp) / "cache", sizes.overrides)
        out["cache_windows_per_s"] = cache_windows_per_second(cache, configs["default"])
        dec, cac = out["decode_windows_per_s"], out["cache_windows_per_s"]
        log(f"windows/s: decode {dec:.1f}, cache {cac:.1f}")
        runs = {
            stream: train_from_cache(
                manifest, cache, sizes.wait_steps, sizes.overrides, Path(tmp), stream
            )
            for stream in (False, True)
        }
    out["data_wait_fraction"] = runs[False]["data_wait_fraction"]
    out["data_wait_fraction_stream"] = runs[True]["data_wait_fraction"]
    out["train_default_peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs.values())
    for stream, run in runs.items():
        log(
            f"train.py from the cache{' (stream)' if stream else ''}: data wait "
            f"{run['data_wait_fraction']:.3f} of step time, {run['clips_per_s']:.1f} clips/s, "
            f"peak RSS {run['peak_rss_mb']:.0f} MB"
        )

    for precision in ("fp32", "bf16"):
        rates = {}
        for name, cfg in configs.items():
            steps, bs = (sizes.steps, sizes.batch)
            if name == "l3-paper":
                steps, bs = (sizes.paper_steps, sizes.paper_batch)
            rates[name] = clips_per_second(cfg, precision, steps, bs, sizes.warmup)
            log(f"train {name} {precision}: {rates[name]:.2f} clips/s (batch {bs})")
        out[f"train_clips_per_s_{precision}"] = rates

    gflop = train_flop_per_clip(paper, sizes.flop_batch) / 1e9
    achieved = gflop * out["train_clips_per_s_bf16"]["l3-paper"]
    peak = matmul_gflop_per_s(sizes.matmul)
    out.update(
        model_gflop_per_clip=gflop,
        achieved_gflop_per_s=achieved,
        matmul_peak_gflop_per_s=peak,
        mfu=achieved / peak,
    )
    log(f"l3-paper: {gflop:.1f} GFLOP/clip, {achieved:.1f} GFLOP/s, peak {peak:.1f} GFLOP/s")

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_clips(Path(tmp), sizes.embed_clips)
        mel128 = load_config(PAPER, [*MEL128, *sizes.overrides])
        out.update(embed_speed(mel128, paths, sizes.embed_batch))
    log(
        f"embedding: {out['embed_audio_seconds_per_s']:.2f} audio-s/s sharing windows, "
        f"{out['embed_audio_seconds_per_s_per_window']:.2f} window by window, error "
        f"{out['embed_max_rel_error']:.4f}"
    )
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {k: _round(v) for k, v in out.items()}
    out["machine"] = (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, cpu bf16: {runtime.cpu_has_bf16()}"
    )
    out["sizes"] = {k: v for k, v in dataclasses.asdict(sizes).items() if k != "overrides"}
    return out


def _round(value):
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    return float(f"{value:.4g}") if isinstance(value, float) else value


def main(argv: list[str] | None = None) -> int:
    """``avssl bench [--quick]``."""
    from avssl.cli import json_line

    p = argparse.ArgumentParser(prog="avssl bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (under 2 min on 2 cores)")
    args = p.parse_args(argv)
    print(json_line(run(QUICK if args.quick else FULL)))
    return 0
