"""The benchmark scripts' flags: a bad one is one ``error:`` line and exit 2, as every avssl
command's; and decode.py's default manifest, the default synthetic world."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _benchmark(name: str):
    """Import ``benchmarks/NAME.py`` (not a package) as a module."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "name,argv,reason",
    [
        ("decode", ["--windows", "0"], "--windows: must be at least 1, got 0"),
        ("decode", ["--size", "-224"], "--size: must be at least 1, got -224"),
        ("train_throughput", ["--steps", "ten"], "--steps: not an integer: 'ten'"),
        ("train_throughput", ["--batch-size", "0"], "--batch-size: must be at least 1, got 0"),
        ("cache_memory", ["--clips", "256,0"], "--clips: must be at least 1, got 0"),
        ("cache_memory", ["--clips", "256,lots"], "--clips: not an integer: 'lots'"),
        ("cache_memory", ["--workers", "0"], "--workers: must be at least 1, got 0"),
        ("classify", ["--clips", "0"], "--clips: must be at least 1, got 0"),
        ("pair_items", ["--repeats", "0"], "--repeats: must be at least 1, got 0"),
        ("query", ["--queries", "-5"], "--queries: must be at least 1, got -5"),
        ("step_profile", ["--batch-size", "0"], "--batch-size: must be at least 1, got 0"),
        ("step_profile", ["--steps", "0"], "--steps: must be at least 1, got 0"),
        ("relu_bf16", ["--repeats", "0"], "--repeats: must be at least 1, got 0"),
        ("relu_bf16", ["--shape", "1", "2", "3"], "--shape: expected 4 arguments"),
        ("overlay", ["--seconds", "long"], "--seconds: 'long' is not a number"),
        ("late_frame", ["--minutes", "0"], "--minutes: must be a finite number above 0, got 0"),
        ("late_frame", ["--repeats", "0"], "--repeats: must be at least 1, got 0"),
        ("overlay", ["--seconds", "0"], "--seconds: must be a finite number above 0, got 0"),
        ("decode", ["--fps", "nan"], "--fps: must be a finite number above 0, got nan"),
        ("avdigits_audio", [], "the following arguments are required: --data"),
        (
            "avdigits_audio",
            ["--data", "m.jsonl", "--steps", "0"],
            "--steps: must be at least 1, got 0",
        ),
        ("query", ["--bogus"], "unrecognized arguments: --bogus"),
        ("cca_fit", ["--pairs", "1"], "--pairs: must be at least 2, got 1"),
    ],
)
def test_benchmark_bad_flag_is_one_line(name, argv, reason, capsys):
    bench = _benchmark(name)
    with pytest.raises(SystemExit) as stop:
        bench.main(argv)
    out, err = capsys.readouterr()
    assert stop.value.code == 2 and out == ""
    assert err.splitlines() == [f"error: {reason} (benchmarks/{name}.py --help)"], err


def test_benchmark_flags_still_parse():
    assert _benchmark("cache_memory")._sizes("256,2048") == [256, 2048]
    with pytest.raises(SystemExit) as stop:  # --help still prints the usage, exit 0
        _benchmark("decode").main(["--help"])
    assert stop.value.code == 0


def test_cca_fit_times_both_fits_and_compares_their_correlations(capsys):
    argv = ["--pairs", "60", "--dim", "6", "--components", "4", "--nipals"]
    assert _benchmark("cca_fit").main(argv) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert out["pairs"] == 60 and out["components"] == 4 and out["closed_form_s"] > 0
    assert out["nipals_s"] > 0 and 0 <= out["correlation_gap_max"] < 0.05


def test_decode_measures_the_default_world_when_built(tmp_path, monkeypatch, capsys):
    from avssl.config import SynthConfig
    from avssl.data import synthetic

    decode = _benchmark("decode")
    monkeypatch.setattr(decode, "world_dir", lambda cfg: tmp_path / "world")
    argv = ["--windows", "2", "--videos", str(tmp_path / "none"), "--size", "32"]
    decode.main(argv)
    out, err = capsys.readouterr()
    assert json.loads(out.splitlines()[-1]) == {"n_windows": 2}
    assert f"skipping the synthetic world: {tmp_path / 'world' / 'manifest.jsonl'} is absent" in err

    cfg = SynthConfig(n_train=2, n_val=0, n_test=0, duration=1.5)
    synthetic.build_world(tmp_path / "world", cfg, workers=1, progress=False)
    decode.main(argv)
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["synthetic_windows_per_s"] > 0 and result["n_windows"] == 2


def test_query_benchmark_times_a_cold_index(tmp_path):
    res = _benchmark("query").measure(2000, 3, tmp_path)
    assert set(res) == {"load_s", "cold_s", "query_ms"}
    # rounded (to 1 ms and 0.01 ms): a fast machine can time 0.0
    assert math.isfinite(res["load_s"]) and res["load_s"] >= 0
    assert math.isfinite(res["query_ms"]) and res["query_ms"] >= 0
    if hasattr(os, "posix_fadvise"):
        assert isinstance(res["cold_s"], float) and math.isfinite(res["cold_s"])
        assert res["cold_s"] >= 0
    else:
        assert res["cold_s"] is None


def test_step_profile_splits_the_step_by_kind(capsys):
    module = _benchmark("step_profile")
    assert module.kind_of("aten::convolution_backward") == "convolution"
    assert module.kind_of("aten::native_batch_norm_backward") == "batch_norm"
    assert module.kind_of("aten::threshold_backward") == "relu"
    assert module.kind_of("aten::max_pool2d_with_indices") == "pooling"
    assert module.kind_of("aten::addmm") == module.kind_of("Optimizer.step#AdamW.step") == "other"
    config = str(BENCHMARKS.parent / "configs/contrastive.yaml")
    argv = ["--config", config, "--precision", "fp32", "--batch-size", "2", "--steps", "2"]
    assert module.main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(out["shares"]) == {"convolution", "batch_norm", "relu", "pooling", "fill", "other"}
    assert abs(sum(out["shares"].values()) - 1) < 0.01
    assert out["shares"]["convolution"] > 0 and out["shares"]["batch_norm"] > 0
    assert out["step_s"] > 0 and out["batch_size"] == 2 and out["steps"] == 2
    assert out["minor_faults_per_step"] >= 0 and out["peak_rss_mb"] > 0
    assert module.main(argv) == 0  # the same seed and steps: the same weights
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(out["weights_digest"]) == 16 and again["weights_digest"] == out["weights_digest"]


def test_relu_bf16_refuses_a_map_larger_than_memory_in_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        _benchmark("relu_bf16").main(["--shape"] + ["100000"] * 4)
    out, err = capsys.readouterr()
    assert stop.value.code == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith("error: --shape: needs about ") and "this machine has" in err


def test_relu_bf16_times_each_pass_and_checks_the_values(capsys):
    assert _benchmark("relu_bf16").main(["--shape", "2", "8", "16", "12", "--repeats", "2"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["same_values"] is True and out["shape"] == [2, 8, 16, 12]
    for times in (out["forward_ms"], out["backward_ms"]):
        assert set(times) == {"bf16", "int16", "fp32"} and all(v >= 0 for v in times.values())


def test_late_frame_reads_the_same_frames_by_seeking(capsys):
    _benchmark("late_frame").main(["--minutes", "0.4", "--repeats", "1"])
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["at_s"] == pytest.approx(14.0)
    for name in ("mpegts", "mp4"):
        assert result[name]["same_frames"] is True, result
        assert result[name]["read_frames_s"] > 0 and result[name]["iter_frames_at_s"] > 0


@pytest.mark.parametrize(
    "name,argv,reason",
    [
        ("step_profile", ["--config", "none.yaml"], "none.yaml: no such config file"),
        ("train_throughput", ["--config", "none.yaml"], "none.yaml: no such config file"),
        ("decode", ["--manifest", "none.jsonl"], "none.jsonl: no such manifest"),
    ],
)
def test_benchmark_bad_input_is_one_line_from_the_shell(name, argv, reason, tmp_path):
    """Run as a user runs them: an error the command raises is one line, not a traceback."""
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{name}.py"), *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [f"error: {reason}"], done.stderr


GUARD = """import sys

if __name__ == "__main__":  # the imports below, then main(), under the one-line error guard
    from avssl.cli import run_script

    sys.exit(run_script(__file__))
"""


def test_every_benchmark_runs_guarded():
    """Run as a script, a benchmark imports torch (and the rest) under the guard: its first
    statements after the docstring are ``from __future__``, then the guard's call."""
    for path in sorted(BENCHMARKS.glob("*.py")):
        text = path.read_text()
        before, guard, _ = text.partition(GUARD)
        assert guard, path.name
        assert before.endswith('"""\n\nfrom __future__ import annotations\n\n'), path.name
        assert before.count("import") == 1, path.name  # no other import before the guard


@pytest.mark.parametrize("name", sorted(p.stem for p in BENCHMARKS.glob("*.py")))
def test_a_ctrl_c_while_a_benchmark_imports_is_one_line(name, tmp_path):
    """A Ctrl-C during the seconds torch takes to import: ``error: interrupted`` and exit 130,
    not a traceback (here torch, numpy and PyAV stand-ins raise it as they are imported)."""
    for module in ("torch", "numpy", "av"):
        (tmp_path / module).mkdir()
        (tmp_path / module / "__init__.py").write_text("raise KeyboardInterrupt\n")
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{name}.py")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (done.returncode, done.stdout, done.stderr) == (130, "", "error: interrupted\n")


@pytest.mark.parametrize(
    "argv,clips",
    [([], 8), (["--quick"], 2), (["--clips", "1"], 1), (["--quick", "--clips", "1"], 1)],
)
def test_classify_clips_is_never_dropped_by_quick(monkeypatch, argv, clips):
    module = _benchmark("classify")

    class Stop(Exception):
        pass

    def write_clips(folder, n):
        raise Stop(n)

    monkeypatch.setattr(module, "write_clips", write_clips)
    with pytest.raises(Stop) as stop:
        module.main(argv)
    assert stop.value.args == (clips,)
