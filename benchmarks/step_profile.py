"""Where a training step's time goes: shares of the CPU time by kind of operator.

Full optimisation steps of ``model.loss`` on a random batch (as
``benchmarks/train_throughput.py`` times them): two warm-up steps, ``--steps`` timed ones (their
median time, and the minor page faults the process took per step: each is a fresh page of memory
the kernel had to zero and map), then one under :mod:`torch.profiler`, and the digest of the
weights after them all (the same seed and steps give the same digest under any allocator
setting). In the profiled step each operator's own time (not its children's) is put in one of
a few kinds, forward and backward together: convolution, batch norm, ReLU, pooling, fill
(zeroing gradients and buffers), other. On a CPU whose matrix
units outrun its memory (AMX), the passes over memory (batch norm, ReLU, pooling) can take more
of the step than the convolutions. With glibc's default malloc, every tensor above 32 MB is
mapped afresh and unmapped when freed, so a paper-size step pays its activations' page faults
again at every step (README, Benchmarks: ``GLIBC_TUNABLES``).

usage: python benchmarks/step_profile.py [--config FILE] [--precision bf16|fp32]
       [--batch-size B] [--steps N]

The last stdout line is one JSON object: ``{"config", "precision", "batch_size", "steps",
"step_s", "minor_faults_per_step", "peak_rss_mb", "shares": {kind: share of the step},
"weights_digest", "glibc_tunables", "machine"}``.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the imports below, then main(), under the one-line error guard
    from avssl.cli import run_script

    sys.exit(run_script(__file__))

import json
import os
import resource
import statistics
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from avssl.cli import ArgumentParser, int_at_least, positive_int
from avssl.config import load_config
from avssl.tools.bench import cpu_name
from avssl.tools.bench_train import peak_rss_mb, train_step
from avssl.train.checkpoint import weights_digest

REPO = Path(__file__).resolve().parents[1]
# (kind, substrings of aten operator names), first match wins
KINDS = (
    ("convolution", ("convolution",)),
    ("batch_norm", ("batch_norm",)),
    ("relu", ("relu", "threshold_backward", "clamp_min")),
    ("pooling", ("pool",)),
    ("fill", ("fill_", "zero_")),
)


def kind_of(name: str) -> str:
    """The kind of an operator name (``aten::convolution_backward`` -> ``convolution``)."""
    if not name.startswith("aten::"):
        return "other"
    return next((kind for kind, keys in KINDS if any(k in name for k in keys)), "other")


def shares(events) -> dict[str, float]:
    """Share of the total own CPU time of each kind, from ``prof.key_averages()``."""
    totals = dict.fromkeys([kind for kind, _ in KINDS] + ["other"], 0.0)
    for e in events:
        totals[kind_of(e.key)] += e.self_cpu_time_total
    whole = sum(totals.values()) or 1.0
    return {kind: round(t / whole, 3) for kind, t in totals.items()}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark the module docstring describes, with the command line ``argv``
    (default ``sys.argv[1:]``); the last stdout line is its JSON result. Returns 0."""
    p = ArgumentParser(prog="benchmarks/step_profile.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(REPO / "configs/l3-paper.yaml"), help="config file")
    p.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument(
        "--steps", type=int_at_least(1, 100_000), default=1, help="timed steps (their median)"
    )
    args = p.parse_args(argv)
    cfg = load_config(args.config)
    step = train_step(cfg, args.precision, args.batch_size)
    step(), step()  # warm-up: kernel selection, allocation
    times = []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    with profile(activities=[ProfilerActivity.CPU], acc_events=True) as prof:
        step()
    result = {
        "config": cfg.name,
        "precision": args.precision,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "step_s": round(statistics.median(times), 3),
        "minor_faults_per_step": round(faults / args.steps),
        "peak_rss_mb": round(peak_rss_mb()),
        "shares": shares(prof.key_averages()),
        "weights_digest": weights_digest(step.model),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "machine": f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }
    print(json.dumps(result))
    return 0
