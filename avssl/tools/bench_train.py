"""Training-speed measurements of ``avssl bench``: optimisation steps on random batches (the
model's cost alone), their FLOPs, the machine's matmul peak, and the real training loop run from a
shard cache in a fresh process (its data waits and peak memory)."""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from avssl.config import Config
from avssl.errors import AvsslError
from avssl.models import build_model
from avssl.train import runtime


def random_batch(cfg: Config, batch_size: int) -> dict:
    """A batch as :func:`avssl.train.data.to_device` delivers it (channels-last frames).

    A config with ``data.hard_fraction`` 0 (AV-Digits: 1-s clips in 1-s windows) is taken to have
    no time-shifted windows: ``hard_valid`` is False, as the loader makes it there, so a model
    skips what it computes only for them (the contrastive statistics' extra audio pass).

    Returns:
        ``frames`` float ``[B, 3, S, S]``, ``audio``/``audio_neg``/``audio_hard`` float
        ``[B, N]``, ``neg_hard``/``hard_valid`` bool ``[B]``, ``label`` long ``[B]``.
    """
    s, n = cfg.data.frame_size, int(round(cfg.data.window * cfg.data.sample_rate))
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(batch_size, 3, s, s, generator=g)
    if cfg.train.channels_last:
        frames = frames.contiguous(memory_format=torch.channels_last)
    audio = [0.1 * torch.randn(batch_size, n, generator=g) for _ in range(3)]
    hard_valid = torch.full((batch_size,), cfg.data.hard_fraction > 0)
    return {
        "frames": frames,
        "audio": audio[0],
        "audio_neg": audio[1],
        "audio_hard": audio[2],
        "neg_hard": (torch.arange(batch_size) % 2 == 0) & hard_valid,
        "hard_valid": hard_valid,
        "label": torch.arange(batch_size) % 4,
    }


def train_step(cfg: Config, precision: str, batch_size: int):
    """A closure running one AdamW step of ``model.loss`` on a fixed random batch (the model it
    trains is its ``model`` attribute)."""
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

    step.model = model
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


def clips_per_second_paired(
    cfg: Config, precisions: tuple[str, ...], steps: int, batch_size: int, warmup: int = 2
) -> dict[str, float]:
    """:func:`clips_per_second` of each precision, their timed steps taken in turn (fp32, bf16,
    fp32, ...): a drift of the machine's speed over the measurement (another process, clock
    changes) then weighs on each precision alike instead of on whichever runs last.

    Returns:
        ``{precision: clips per second}``.
    """
    steps_of = {p: train_step(cfg, p, batch_size) for p in precisions}
    for _ in range(warmup):
        for step in steps_of.values():
            step()
    seconds = dict.fromkeys(precisions, 0.0)
    for _ in range(steps):
        for p, step in steps_of.items():
            t0 = time.perf_counter()
            step()
            seconds[p] += time.perf_counter() - t0
    return {p: steps * batch_size / seconds[p] for p in precisions}


def train_flop_per_clip(cfg: Config, batch_size: int) -> float:
    """Forward + backward FLOPs of one training step divided by its batch size."""
    step = train_step(cfg, "fp32", batch_size)
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / batch_size


def _best_seconds(fn, reps: int) -> float:
    fn()  # warm-up: kernel selection, allocation
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_gflop_per_s(n: int, reps: int = 5) -> float:
    """GFLOP/s of an ``n x n`` bf16 matmul (best of ``reps`` after one warm-up)."""
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).bfloat16() for _ in range(2))
    return 2 * n**3 / _best_seconds(lambda: torch.mm(a, b), reps) / 1e9


def matmul_peak_gflop_per_s(sides: tuple[int, ...], reps: int = 5) -> float:
    """The best bf16 matmul rate over square ``sides`` (one size can miss the CPU's best
    blocking: 1,024-4,096 differ by up to 10 % here)."""
    return max(matmul_gflop_per_s(n, reps) for n in sides)


def conv_gflop_per_s(reps: int = 3) -> float:
    """GFLOP/s of a bf16 channels-last 3x3 convolution the size of the L3 tower's third block
    (16 x 256 x 56 x 56, 256 -> 256): oneDNN's conv kernels can beat its matmul."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 256, 56, 56, generator=g).bfloat16()
    x = x.contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).bfloat16()
    conv = conv.to(memory_format=torch.channels_last)
    flops = 2 * 16 * 256 * 56 * 56 * 256 * 9
    with torch.no_grad():
        return flops / _best_seconds(lambda: conv(x), reps) / 1e9


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (MiB), read as
    :func:`avssl.train.step_memory.peak_rss_bytes` reads it."""
    from avssl.train.step_memory import peak_rss_bytes

    return (peak_rss_bytes() or 0) / 2**20


def _train_child(argv: list[str], queue) -> None:
    """Run ``train.py argv`` here (a spawned process); put its summary and peak RSS."""
    import threading

    from tqdm import tqdm

    from avssl.cli import run_guarded
    from avssl.train.cli import main as train_main

    # tqdm's default lock is a process semaphore: this child, killed when the bench is stopped,
    # would leave it to the resource tracker's "leaked semaphore" warning after the error line
    tqdm.set_lock(threading.RLock())

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run_guarded(train_main, argv)
    lines = out.getvalue().strip().splitlines()
    summary = json.loads(lines[-1]) if code == 0 and lines else None
    queue.put((summary, peak_rss_mb()))


def _result(child, queue, poll_s: float = 5.0):
    """The child's ``(summary, rss)``; ``(None, 0.0)`` if it died without sending them (killed
    for memory, a crash), where a bare ``queue.get()`` would wait for ever."""
    import queue as queue_module

    while True:
        try:
            return queue.get(timeout=poll_s)
        except queue_module.Empty:
            if not child.is_alive():
                try:  # it may have sent them just before it ended
                    return queue.get(timeout=poll_s)
                except queue_module.Empty:
                    return None, 0.0


def train_from_cache(
    manifest: Path, cache: Path, steps: int, overrides, runs: Path, stream: bool = False
) -> dict:
    """The default config trained for ``steps`` steps from ``cache`` in a fresh process.

    Returns:
        ``{"data_wait_fraction", "clips_per_s", "peak_rss_mb", "estimated_peak_mb"}`` of that
        training run (the last, its summary's estimate of its peak before the first step).
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
    try:
        summary, rss = _result(child, queue)
        child.join()
    except BaseException:  # Ctrl-C, SIGTERM: the throwaway run must not write on into the
        child.kill()  # temporary folder being removed, nor outlive this process
        child.join()
        raise
    if summary is None:
        raise AvsslError("bench: the training run from the shard cache failed (see above)")
    return {
        "data_wait_fraction": summary["data_wait_fraction"],
        "clips_per_s": summary["clips_per_s"],
        "peak_rss_mb": rss,
        "estimated_peak_mb": summary["memory_mb"]["estimated_peak_mb"],
    }
