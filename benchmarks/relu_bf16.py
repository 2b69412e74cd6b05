"""ReLU passes over one large bf16 map: PyTorch's kernels against :mod:`avssl.models.bf16_relu`.

Times, in ms (the best of ``--repeats``), each pass over a channels-last map of the L3 paper
audio tower's first block at batch 16 (32 x 64 x 257 x 199: positives and negatives, 210 MB in
bf16): the in-place ReLU forward (``clamp_min_``) and its backward (``threshold_backward``), in
bf16 as PyTorch runs them, over the same bits read as ``int16`` (what ``bf16_relu`` runs), and
in fp32 (twice the bytes) for scale. Outputs are written into buffers allocated once, so the
allocator's page faults (README, Benchmarks: ``GLIBC_TUNABLES``) are not counted.

usage: python benchmarks/relu_bf16.py [--shape B C H W] [--repeats N]

The last stdout line is one JSON object: ``{"shape", "mb_bf16", "forward_ms": {"bf16", "int16",
"fp32"}, "backward_ms": {...}, "same_values": bool, "machine"}``.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the imports below, then main(), under the one-line error guard
    from avssl.cli import run_script

    sys.exit(run_script(__file__))

import json
import math
import os
import time

import torch

from avssl.cli import ArgumentParser, int_at_least, positive_int
from avssl.models.bf16_relu import relu_
from avssl.tools.bench import cpu_name

threshold_backward = torch.ops.aten.threshold_backward.grad_input  # into a given buffer


def best_ms(fn, repeats: int) -> float:
    """The fastest of ``repeats`` calls of ``fn`` after one untimed call, in ms."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(min(times) * 1e3, 3)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark the module docstring describes, with the command line ``argv``
    (default ``sys.argv[1:]``); the last stdout line is its JSON result. Returns 0."""
    p = ArgumentParser(prog="benchmarks/relu_bf16.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", type=positive_int, nargs=4, default=[32, 64, 257, 199])
    p.add_argument("--repeats", type=int_at_least(1, 1000), default=5)
    args = p.parse_args(argv)
    need = math.prod(args.shape) * 4 * 6  # fp32 map and gradient, their copies and outputs
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have:
        gb = 2**30
        p.error(f"--shape: needs about {need / gb:.1f} GB, this machine has {have / gb:.1f} GB")
    g = torch.Generator().manual_seed(0)
    x32 = torch.randn(*args.shape, generator=g).contiguous(memory_format=torch.channels_last)
    grad32 = torch.randn(*args.shape, generator=g).contiguous(memory_format=torch.channels_last)
    forward, backward = {}, {}
    for name in ("bf16", "int16", "fp32"):
        x = x32.clone() if name == "fp32" else x32.bfloat16()
        grad = grad32.clone() if name == "fp32" else grad32.bfloat16()
        if name == "int16":
            x, grad = x.view(torch.int16), grad.view(torch.int16)
        out = torch.empty_like(grad)
        forward[name] = best_ms(lambda x=x: x.clamp_min_(0), args.repeats)
        backward[name] = best_ms(
            lambda g=grad, x=x, o=out: threshold_backward(g, x, 0, grad_input=o), args.repeats
        )
    x, grad = x32.bfloat16().requires_grad_(), grad32.bfloat16()
    y = relu_(x * 1)  # what the towers run, forward and backward, against torch's ReLU
    y.backward(grad)
    with torch.no_grad():
        want = torch.relu(x)
        same = torch.equal(y, want) and torch.equal(
            x.grad, torch.ops.aten.threshold_backward(grad, want, 0)
        )
    result = {
        "shape": args.shape,
        "mb_bf16": round(x.numel() * 2 / 1e6, 1),
        "forward_ms": forward,
        "backward_ms": backward,
        "same_values": same,
        "machine": f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }
    print(json.dumps(result))
    return 0
