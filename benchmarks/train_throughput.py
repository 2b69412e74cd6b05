"""Training throughput (clips/s) of a config in fp32 and bf16, on random inputs.

Each step is a full optimisation step of ``model.loss`` on a random batch shaped as the data
loader makes it (frames at ``data.frame_size``, ``data.window`` seconds of audio at
``data.sample_rate``, a positive, a negative and a hard negative per clip), so the number is the
model's cost alone, without decoding (see ``benchmarks/decode.py`` for that).

usage: python benchmarks/train_throughput.py [--config FILE ...] [--steps N] [--batch-size B]
       [--compile]

The last stdout line is one JSON object:
``{"<config>": {"fp32": clips/s, "bf16": clips/s, "batch_size": B}, ..., "machine": ...}``,
keyed by each config's ``name`` (by the path given where two configs share a name)
(with ``--compile`` also ``fp32_compiled`` / ``bf16_compiled``: ``train.compile=true``).
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the imports below, then main(), under the one-line error guard
    from avssl.cli import run_script

    sys.exit(run_script(__file__))

import json
from pathlib import Path

import torch

from avssl.cli import ArgumentParser, int_at_least, positive_int
from avssl.config import load_config
from avssl.tools.bench import cpu_name
from avssl.tools.bench_train import clips_per_second
from avssl.train import runtime

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark the module docstring describes, with the command line ``argv``
    (default ``sys.argv[1:]``); the last stdout line is its JSON result. Returns 0."""
    p = ArgumentParser(prog="benchmarks/train_throughput.py", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--config",
        nargs="+",
        default=["default", str(REPO / "configs/l3-paper.yaml")],
        help="config files ('default' = the built-in default)",
    )
    p.add_argument("--steps", type=int_at_least(1, 1_000_000), default=10)
    p.add_argument(
        "--batch-size",
        type=positive_int,
        help="default: the config's, capped at 64 (16 at paper sizes)",
    )
    p.add_argument(
        "--compile", action="store_true",
        help="also time each config with train.compile=true (torch.compile; warm-up compiles)",
    )  # fmt: skip
    args = p.parse_args(argv)

    precisions = ["fp32"] + (["bf16"] if runtime.cpu_has_bf16() else [])
    result: dict = {
        "machine": f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }
    if len(set(args.config)) < len(args.config):
        p.error("--config: a config is named twice")
    configs = [(path, load_config(None if path == "default" else path)) for path in args.config]
    names = [cfg.name for _, cfg in configs]
    for path, cfg in configs:
        # two configs of one name (two files without a name: both "default") keep their paths
        key = cfg.name if names.count(cfg.name) == 1 and cfg.name not in result else path
        big = cfg.data.frame_size > 128  # paper sizes: about 1 clip/s, keep the run short
        bs = args.batch_size or min(cfg.train.batch_size, 16 if big else 64)
        steps = max(2, args.steps // 5) if big else args.steps
        rates = {}
        for precision in precisions:
            rates[precision] = round(clips_per_second(cfg, precision, steps, bs), 2)
            print(f"{key} {precision}: {rates[precision]:.1f} clips/s (batch {bs})")
            if args.compile:
                cfg.train.compile = True
                rate = clips_per_second(cfg, precision, steps, bs, warmup=3)
                cfg.train.compile = False
                rates[f"{precision}_compiled"] = round(rate, 2)
                print(f"{key} {precision} compiled: {rate:.1f} clips/s (batch {bs})")
        result[key] = {**rates, "batch_size": bs}
    print(json.dumps(result))
    return 0
