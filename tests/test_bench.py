"""``avssl bench`` on tiny sizes: every key present, rates positive, MFU a fraction."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest
import torch
from conftest import TINY

from avssl.cli import COMMANDS
from avssl.config import load_config
from avssl.tools import bench, bench_train

# the tiny sizes of conftest.TINY for every config, without its world and schedule
SHRINK = tuple(
    s for s in TINY if s.startswith(("data.frame_size", "data.load_size", "model.", "train.batch"))
)
KEYS = {
    "decode_windows_per_s",
    "cache_windows_per_s",
    "train_clips_per_s_fp32",
    "train_clips_per_s_bf16",
    "model_gflop_per_clip",
    "achieved_gflop_per_s",
    "matmul_peak_gflop_per_s",
    "mfu",
    "conv_gflop_per_s",
    "mfu_best_kernel",
    "peak_rss_mb",
    "embed_audio_seconds_per_s",
    "embed_max_rel_error",
    "embed_audio_seconds_per_s_per_window",
    "data_wait_fraction",
    "data_wait_fraction_stream",
    "train_default_peak_rss_mb",
    "train_default_estimated_peak_mb",
}


@pytest.fixture
def tiny_sizes(tiny_cache):
    world = load_config(None, [s for s in TINY if s.startswith("data.synthetic")]).data.synthetic
    return bench.Sizes(world, 6, 1, 4, 1, 2, 0, 2, (128, 256), 1, 41, 2, SHRINK)  # 2 windows a pass


def test_bench_quick_json(tiny_sizes, monkeypatch, capsys):
    monkeypatch.setattr(bench, "QUICK", tiny_sizes)
    # the reported figures are the streamed run's peak memory (made the larger), the load at
    # the start and at the end, and MFU against the faster kernel (made the convolution)
    real_train, real_conv = bench.train_from_cache, bench.conv_gflop_per_s
    streamed = []

    def train_from_cache(*args):
        run = real_train(*args)
        if args[-1]:
            run = {**run, "peak_rss_mb": run["peak_rss_mb"] + 10_000}
            streamed.append(run)
        return run

    monkeypatch.setattr(bench, "train_from_cache", train_from_cache)
    monkeypatch.setattr(bench, "conv_gflop_per_s", lambda: real_conv() + 1e6)
    loads = iter([0.5, 1.5])
    monkeypatch.setattr(bench, "_load_average", lambda: next(loads))
    # read, not applied: glibc takes it at process start, so the bench only reports it
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_max=0")
    assert COMMANDS["bench"][0] == "avssl.tools.bench:main"
    assert bench.main(["--quick"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(out) >= KEYS
    assert out["glibc_tunables"] == "glibc.malloc.mmap_max=0"
    assert out["load_average"] == {"start": 0.5, "end": 1.5}
    assert out["train_default_peak_rss_mb"] == pytest.approx(streamed[0]["peak_rss_mb"], rel=1e-3)
    measured = datetime.fromisoformat(out["date"])  # a saved bench JSON can be dated
    assert measured.tzinfo is not None and abs(datetime.now(UTC) - measured).total_seconds() < 600
    for key in KEYS:
        values = out[key].values() if isinstance(out[key], dict) else [out[key]]
        assert all(isinstance(v, float | int) and math.isfinite(v) and v > 0 for v in values), key
    for key in ("train_clips_per_s_fp32", "train_clips_per_s_bf16"):
        assert set(out[key]) == {"default", "l3-paper"}
    # at these toy sizes a 256x256 matmul is no stable peak, so MFU is only checked as a ratio
    assert out["mfu"] == pytest.approx(
        out["achieved_gflop_per_s"] / out["matmul_peak_gflop_per_s"], rel=1e-2
    )
    best = max(out["matmul_peak_gflop_per_s"], out["conv_gflop_per_s"])
    assert out["mfu_best_kernel"] == pytest.approx(out["achieved_gflop_per_s"] / best, rel=1e-2)
    assert 0 < out["data_wait_fraction"] < 1 and 0 < out["data_wait_fraction_stream"] < 1
    assert out["achieved_gflop_per_s"] == pytest.approx(
        out["model_gflop_per_clip"] * out["train_clips_per_s_bf16"]["l3-paper"], rel=1e-2
    )
    assert out["embed_max_rel_error"] < 0.1  # bf16 rounding, not a broken model
    assert out["train_default_estimated_peak_mb"] <= out["train_default_peak_rss_mb"]


def test_flops_per_clip_do_not_depend_on_batch():
    cfg = load_config(bench.PAPER, list(SHRINK))
    one, four = bench.train_flop_per_clip(cfg, 2), bench.train_flop_per_clip(cfg, 4)
    assert one > 0 and four == pytest.approx(one, rel=0.05)


def test_flop_counter_known_answer():
    # A linear layer's training step: 2*B*I*O forward, twice that backward (input and weight).
    counter = torch.utils.flop_counter.FlopCounterMode(display=False)
    lin = torch.nn.Linear(8, 4)
    with counter:
        lin(torch.randn(3, 8, requires_grad=True)).sum().backward()
    assert counter.get_total_flops() == 3 * 2 * 3 * 8 * 4


def test_matmul_peak_is_the_best_size_and_peak_rss_is_this_process(monkeypatch):
    rates = {128: 3.0, 256: 5.0, 512: 4.0}
    monkeypatch.setattr(bench_train, "matmul_gflop_per_s", lambda n, reps=5: rates[n])
    assert bench_train.matmul_peak_gflop_per_s((128, 256, 512)) == 5.0
    # VmHWM of this process: at least its current resident size, and in MB, not KB or bytes
    with open("/proc/self/status") as fh:
        rss = next(int(x.split()[1]) for x in fh if x.startswith("VmRSS:")) / 1024
    assert rss <= bench_train.peak_rss_mb() < 64 * 1024


def test_paired_timing_alternates_precisions(monkeypatch):
    calls = []

    def fake_step(cfg, precision, batch_size):
        return lambda: calls.append(precision)

    monkeypatch.setattr(bench_train, "train_step", fake_step)
    rates = bench_train.clips_per_second_paired(None, ("fp32", "bf16"), 3, 4, warmup=1)
    assert calls == ["fp32", "bf16"] * 4  # one warm-up round, then three timed rounds in turn
    assert set(rates) == {"fp32", "bf16"} and all(r > 0 for r in rates.values())


def test_machine_names_the_cpu_and_its_bf16_units(tmp_path):
    from avssl.tools.bench import cpu_name

    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n"
        "flags\t\t: fpu avx512f avx512_bf16 amx_tile amx_bf16\n\n"
        "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu\n"
    )
    assert cpu_name(info) == "Intel(R) Xeon(R) Processor (avx512_bf16, amx_bf16)"
    info.write_text("model name\t: AMD EPYC 9R14\nflags\t\t: fpu avx512f\n")
    assert cpu_name(info) == "AMD EPYC 9R14 (no bf16 units)"
    assert cpu_name(tmp_path / "missing")  # the platform's name


def test_an_interrupted_bench_kills_its_training_child(tmp_path, monkeypatch):
    # the child went on saving last.pt into the temporary folder the parent was removing
    children = []

    def interrupted(child, queue, poll_s=5.0):
        children.append(child)
        raise KeyboardInterrupt

    monkeypatch.setattr(bench_train, "_result", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bench_train.train_from_cache(tmp_path / "m.jsonl", tmp_path / "c", 2, [], tmp_path)
    [child] = children
    assert not child.is_alive() and child.exitcode is not None
