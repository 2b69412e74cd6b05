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
  on random batches (the model's cost alone) for the default config and ``configs/l3-paper.yaml``,
  the two precisions' timed steps taken in turn;
- ``model_gflop_per_clip``: forward + backward FLOPs per training clip of the paper config,
  counted by :class:`torch.utils.flop_counter.FlopCounterMode` on one training step;
  ``achieved_gflop_per_s`` = that times the paper config's bf16 clips/s;
  ``matmul_peak_gflop_per_s``: the best square bf16 matmul rate over a few sizes; ``mfu`` =
  achieved / that peak; ``conv_gflop_per_s``: a bf16 channels-last 3x3 convolution of the
  tower's size, which can run faster than the matmul; ``mfu_best_kernel`` = achieved / the
  faster of the two;
- ``embed_audio_seconds_per_s``: the paper L3 audio tower (random weights, 512-d) on a
  ``mel128`` input (128 mel bands x 192 frames: n_fft 2048, hop 240, not centred) of 1-s 48 kHz
  windows every 0.1 s of 5-s 44.1 kHz wav clips, bf16 autocast with channels-last weights,
  decoding, resampling and the spectrogram included, the windows of a clip sharing their
  convolutions (:mod:`avssl.eval.sliding`, what ``classify`` and ``index`` run);
  ``embed_max_rel_error``: the largest ``|e - e_ref| / |e_ref|`` over those window embeddings
  against the fp32 tower run on each window alone; ``embed_audio_seconds_per_s_per_window``:
  the same bf16 tower run on each window alone (no sharing), for comparison;
- ``peak_rss_mb``: the bench process's own peak resident memory (the training runs are
  children, measured apart);
- ``glibc_tunables``: the ``GLIBC_TUNABLES`` the bench ran under (``""``: glibc's own malloc
  settings), which move the paper config's speed and memory (README, Benchmarks).

- ``data_wait_fraction``: the share of step time the real training loop (``train.py``, default
  config, ``data.cache`` on the shard cache above, so the train split is read from the shards
  into memory) spends waiting for its next batch, as its summary reports it;
  ``data_wait_fraction_stream``: the same with ``data.stream=true`` (the train split read shard
  by shard every epoch); ``train_default_peak_rss_mb``: the larger peak resident memory of those
  two training processes (each runs in a fresh child process, so nothing else counts);
  ``train_default_estimated_peak_mb``: that run's own lower-bound estimate of it, made before
  its first step (:mod:`avssl.train.step_memory`).

usage: avssl bench [--quick]   (the last stdout line is one JSON object)
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from avssl.cli import ArgumentParser
from avssl.config import SynthConfig, load_config
from avssl.data.manifest import read_manifest
from avssl.eval.provenance import utc_now
from avssl.tools.bench_data import (
    build_cache,
    cache_windows_per_second,
    decode_windows_per_second,
    pick_windows,
)
from avssl.tools.bench_embed import MEL128, embed_speed, write_clips
from avssl.tools.bench_train import (
    clips_per_second_paired,
    conv_gflop_per_s,
    matmul_peak_gflop_per_s,
    peak_rss_mb,
    train_flop_per_clip,
    train_from_cache,
)
from avssl.train import runtime

REPO = Path(__file__).resolve().parents[2]
PAPER = REPO / "configs" / "l3-paper.yaml"


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
    matmul: tuple[int, ...]  # sides of the bf16 matmuls whose best rate is the peak
    embed_clips: int
    embed_batch: int  # windows per forward pass
    wait_steps: int  # steps of the real training run measuring data_wait_fraction
    overrides: tuple[str, ...] = ()  # --set assignments for every config (tests shrink models)


# The training runs measuring data waits read epochs of several batches (until 2026-12-05 each
# epoch's first batch was built while the step waited; the prefetch thread now runs on into the
# next epoch): 256 clips are 4 batches of the default 64.
WAIT_WORLD = SynthConfig(n_train=256, n_val=4, n_test=0)
QUICK = Sizes(WAIT_WORLD, 40, 3, 32, 1, 4, 1, 2, (1024, 2048), 1, 64, 32)
FULL = Sizes(WAIT_WORLD, 200, 10, 64, 3, 16, 2, 4, (1024, 2048, 4096), 4, 64, 32)


def run(sizes: Sizes, log=None) -> dict:
    """Every measurement of ``sizes``; returns the JSON object's dict (progress: ``log``)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    load_start = _load_average()
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
    worst = max(runs.values(), key=lambda r: r["peak_rss_mb"])
    out["train_default_peak_rss_mb"] = worst["peak_rss_mb"]
    out["train_default_estimated_peak_mb"] = worst["estimated_peak_mb"]
    for stream, run in runs.items():
        log(
            f"train.py from the cache{' (stream)' if stream else ''}: data wait "
            f"{run['data_wait_fraction']:.3f} of step time, {run['clips_per_s']:.1f} clips/s, "
            f"peak RSS {run['peak_rss_mb']:.0f} MB"
        )

    precisions = ("fp32", "bf16")
    rates = {p: {} for p in precisions}
    for name, cfg in configs.items():
        steps, bs = (sizes.steps, sizes.batch)
        if name == "l3-paper":
            steps, bs = (sizes.paper_steps, sizes.paper_batch)
        paired = clips_per_second_paired(cfg, precisions, steps, bs, sizes.warmup)
        for precision, rate in paired.items():
            rates[precision][name] = rate
            log(f"train {name} {precision}: {rate:.2f} clips/s (batch {bs})")
    for precision in precisions:
        out[f"train_clips_per_s_{precision}"] = rates[precision]

    gflop = train_flop_per_clip(paper, sizes.flop_batch) / 1e9
    achieved = gflop * out["train_clips_per_s_bf16"]["l3-paper"]
    peak = matmul_peak_gflop_per_s(sizes.matmul)
    conv = conv_gflop_per_s()
    out.update(
        model_gflop_per_clip=gflop,
        achieved_gflop_per_s=achieved,
        matmul_peak_gflop_per_s=peak,
        mfu=achieved / peak,
        conv_gflop_per_s=conv,
        mfu_best_kernel=achieved / max(peak, conv),
    )
    log(
        f"l3-paper: {gflop:.1f} GFLOP/clip, {achieved:.1f} GFLOP/s, matmul peak {peak:.1f}, "
        f"conv {conv:.1f} GFLOP/s"
    )

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_clips(Path(tmp), sizes.embed_clips)
        mel128 = load_config(PAPER, [*MEL128, *sizes.overrides])
        out.update(embed_speed(mel128, paths, sizes.embed_batch))
    log(
        f"embedding: {out['embed_audio_seconds_per_s']:.2f} audio-s/s sharing windows, "
        f"{out['embed_audio_seconds_per_s_per_window']:.2f} window by window, error "
        f"{out['embed_max_rel_error']:.4f}"
    )
    out["peak_rss_mb"] = peak_rss_mb()
    out = {k: _round(v) for k, v in out.items()}
    out["machine"] = (
        f"{cpu_name()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, cpu bf16: {runtime.cpu_has_bf16()}"
    )
    out["date"] = utc_now()  # when the figures were measured, as README figures are quoted
    out["glibc_tunables"] = os.environ.get("GLIBC_TUNABLES", "")
    # other work on the machine slows every figure: runs under load are not comparable
    out["load_average"] = {"start": load_start, "end": _load_average()}
    out["sizes"] = {k: v for k, v in dataclasses.asdict(sizes).items() if k != "overrides"}
    return out


def _load_average() -> float | None:
    """The 1-minute load average (runnable processes), or None where the platform has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name and its bf16 units (AMX's tiles multiply bf16 several times faster
    than AVX-512's, which moves the matmul peak ``mfu`` divides by), e.g. ``Intel(R) Xeon(R)
    Processor (avx512_bf16, amx_bf16)``; the platform's name where ``cpuinfo`` is missing."""
    try:
        text = cpuinfo.read_text(encoding="ascii", errors="ignore")
    except OSError:
        return platform.processor() or platform.machine()
    lines = text.splitlines()
    name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    flags = next(
        (set(ln.split(":", 1)[1].split()) for ln in lines if ln.startswith("flags")), set()
    )
    units = [u for u in ("avx512_bf16", "amx_bf16") if u in flags]
    return f"{name or platform.machine()} ({', '.join(units) or 'no bf16 units'})"


def _round(value):
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    return float(f"{value:.4g}") if isinstance(value, float) else value


def main(argv: list[str] | None = None) -> int:
    """``avssl bench [--quick]``."""
    from avssl.cli import json_line

    p = ArgumentParser(prog="avssl bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (under 2 min on 2 cores)")
    args = p.parse_args(argv)
    from avssl.sigterm import terminated_as_interrupt

    with terminated_as_interrupt():  # a SIGTERM too removes the temporary folders on its way out
        print(json_line(run(QUICK if args.quick else FULL)))
    return 0
