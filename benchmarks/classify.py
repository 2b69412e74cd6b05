"""Throughput of the sound-classification probe's feature extraction, and a whole probe run.

Embedding extraction: ESC-50-length files (5 s, 44.1 kHz mono wav, written to a temporary
folder) decoded, resampled to 48 kHz and embedded by the L3-Net audio tower at paper size
(``configs/l3-paper.yaml``, random weights: speed does not depend on them), windows of 1 s every
0.5 s, in fp32, in bf16 autocast, and in bf16 with channels-last weights (``bf16_cl``). Then
the wall time of a whole ``evaluate.py classify --dataset esc50 --features logmel`` run on
``../shared/data/esc10`` when present.

usage: python benchmarks/classify.py [--quick] [--clips N] [--batch-size B]

The last stdout line is one JSON object, e.g.
``{"fp32_clips_per_s": 0.4, "bf16_clips_per_s": 1.1, "bf16_speedup": 2.7, ...}``.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the imports below, then main(), under the one-line error guard
    from avssl.cli import run_script

    sys.exit(run_script(__file__))

import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

import torch

from avssl.cli import ArgumentParser, int_at_least, positive_int, run_guarded
from avssl.config import load_config
from avssl.eval.clip_features import WindowEmbedder, extract
from avssl.models import build_model
from avssl.tools.bench_embed import CLIP_S, FILE_SR, write_clips  # 5-s 44.1 kHz, as ESC-50
from avssl.train.runtime import cpu_has_bf16

REPO = Path(__file__).resolve().parents[1]
ESC10 = REPO.parent / "shared" / "data" / "esc10"
HOP_S = 0.5


def embedding_throughput(
    paths: list[Path], precision: str, batch_size: int, channels_last: bool = False
) -> dict:
    """Clips/s and audio-seconds/s of decode + resample + paper-size L3 audio embedding."""
    cfg = load_config(REPO / "configs" / "l3-paper.yaml")
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.data).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    key = precision + ("_cl" if channels_last else "")
    embedder = WindowEmbedder(
        model, cfg.data.sample_rate, cfg.data.window, HOP_S, "mean", "cpu", precision, batch_size
    )
    extract(paths[:1], embedder)  # warm-up (allocator, oneDNN kernels)
    _, kept, _, timing = extract(paths, embedder)
    assert len(kept) == len(paths)
    return {
        f"{key}_clips_per_s": timing["clips_per_s"],
        f"{key}_audio_s_per_s": timing["audio_seconds"] / timing["seconds"],
    }


def classify_run(root: Path) -> dict:
    """Wall time and result of one whole ``evaluate.py classify`` run (log-mel features)."""
    from avssl.eval.cli import main as evaluate

    out = io.StringIO()
    args = ["classify", "--dataset", "esc50", "--root", str(root), "--features", "logmel"]
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out):
        status = run_guarded(evaluate, [*args, "--no-progress"])
    seconds = time.perf_counter() - t0
    if status != 0:
        return {"esc10_classify_error": status}
    res = json.loads(out.getvalue().strip().splitlines()[-1])
    return {
        "esc10_classify_s": seconds,
        "esc10_logmel_accuracy_pooled": res["accuracy_pooled"],
        "esc10_clips": res["n_clips"],
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark the module docstring describes, with the command line ``argv``
    (default ``sys.argv[1:]``); the last stdout line is its JSON result. Returns 0."""
    p = ArgumentParser(prog="benchmarks/classify.py", description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help="2 clips per precision (< 1 min; --clips wins)"
    )
    # each clip is a 5-s 44.1 kHz wav written first (441 kB)
    p.add_argument(
        "--clips", type=int_at_least(1, 10_000), default=None, help="clips (default 8; quick 2)"
    )
    p.add_argument("--batch-size", type=positive_int, default=18, help="windows per forward pass")
    args = p.parse_args(argv)
    # an explicit --clips is never dropped silently, --quick or not
    n = args.clips if args.clips is not None else 2 if args.quick else 8
    result = {
        "config": "l3-paper",
        "clip_s": CLIP_S,
        "file_rate": FILE_SR,
        "windows_per_clip": int((CLIP_S - 1.0) / HOP_S) + 1,
        "clips": n,
        "threads": torch.get_num_threads(),
        "cpu_bf16": cpu_has_bf16(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_clips(Path(tmp), n)
        for precision, cl in (("fp32", False), ("bf16", False), ("bf16", True)):
            result.update(embedding_throughput(paths, precision, args.batch_size, cl))
    for key in ("bf16", "bf16_cl"):
        result[f"{key}_speedup"] = result[f"{key}_clips_per_s"] / result["fp32_clips_per_s"]
    if (ESC10 / "meta" / "esc50.csv").is_file():
        result.update(classify_run(ESC10))
    print(json.dumps(result))
    return 0
