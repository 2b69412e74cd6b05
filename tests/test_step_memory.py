"""A training step's memory is estimated before the first step (avssl/train/step_memory.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import train
from avssl.config import load_config
from avssl.data.source import load_split
from avssl.models import build_model
from avssl.train import step_memory
from tests.conftest import TINY

ROOT = Path(__file__).parents[1]


class _Toy(nn.Module):
    """A linear layer, a ReLU and a sum: autograd saves the input and the ReLU's output."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 32)

    def loss(self, batch):
        return torch.relu(self.fc(batch["x"])).sum(), {}


@pytest.mark.parametrize("b", [1, 3, 64])
def test_saved_bytes_are_the_tensors_autograd_keeps(b):
    # brute force: addmm keeps its input (for the weight's gradient), relu its output
    model = _Toy()
    assert step_memory.saved_bytes(model, {"x": torch.randn(b, 16)}) == 4 * b * (16 + 32)


def test_the_weights_autograd_keeps_are_not_counted():
    class TwoLayers(_Toy):
        def __init__(self):
            super().__init__()
            self.out = nn.Linear(32, 8)

        def loss(self, batch):
            # the second addmm keeps its weight (its input needs a gradient) and the relu output
            return self.out(torch.relu(self.fc(batch["x"]))).sum(), {}

    model, kept = TwoLayers(), []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        model.loss({"x": torch.randn(5, 16)})
    assert any(t.untyped_storage().data_ptr() == model.out.weight.data_ptr() for t in kept)
    assert step_memory.saved_bytes(model, {"x": torch.randn(5, 16)}) == 4 * 5 * (16 + 32)


def test_a_fit_that_bends_down_is_floored_at_the_largest_measured(tiny_model_and_val, monkeypatch):
    cfg, model, val = tiny_model_and_val
    measured = {2: 100, 4: 180, 8: 200}  # a quadratic through these is negative at 64
    monkeypatch.setattr(step_memory, "saved_bytes", lambda m, b: measured[b["frames"].shape[0]])
    big = load_config(None, [*TINY, "train.batch_size=64"])
    assert step_memory.fit_quadratic(sorted(measured.items()), 64) < 0
    assert step_memory.activation_bytes(model, val, big, torch.device("cpu"), "fp32") == 200


def test_a_view_of_a_saved_tensor_counts_once():
    class Twice(_Toy):
        def loss(self, batch):
            h = torch.relu(self.fc(batch["x"]))
            return (h * h[:, :1]).sum(), {}  # h and a view of h are both saved

    # x kept by addmm; h by relu and both products; h * h[:, :1] saves nothing new
    assert step_memory.saved_bytes(Twice(), {"x": torch.randn(5, 16)}) == 4 * 5 * (16 + 32)


def test_the_quadratic_fit_is_exact_on_a_quadratic():
    def f(x):
        return 1000 + 37 * x + 5 * x * x

    points = [(n, f(n)) for n in step_memory.SIZES]
    for x in (2, 64, 4096):
        assert step_memory.fit_quadratic(points, x) == pytest.approx(f(x))


AUGMENTED = ["model.audio.freq_mask=4", "model.audio.time_mask=4"]  # the loss draws numbers


def _model_and_val(*extra: str):
    cfg = load_config(None, [*TINY, *extra])
    model = build_model(cfg.model, cfg.data, cfg.loss)
    model.train()
    val = load_split(cfg.data, "val", False, windows_per_clip=2, seed=1, progress=False)
    return cfg, model, val


@pytest.fixture
def tiny_model_and_val(tiny_cache):
    return _model_and_val(*AUGMENTED)


def test_the_estimate_leaves_the_weights_statistics_and_generators_as_they_were(
    tiny_model_and_val,
):
    cfg, model, val = tiny_model_and_val
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    out = step_memory.estimate_step_memory(model, val, cfg, torch.device("cpu"), "fp32")
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(rng, torch.get_rng_state())
    assert out["activations_mb"] > 0 and out["optimizer_mb"] > 0
    assert all(p.grad is None for p in model.parameters())


def test_training_is_the_same_with_and_without_the_estimate(tiny_train_args, capsys, monkeypatch):
    def digest() -> str:
        assert train.main(tiny_train_args(*AUGMENTED, "train.steps=4")) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])["weights_digest"]

    estimated = digest()
    monkeypatch.setattr(step_memory, "estimate_step_memory", lambda *a, **k: {})
    assert digest() == estimated


def test_a_small_batch_is_measured_as_it_is_never_larger(tiny_model_and_val, monkeypatch):
    cfg, model, val = tiny_model_and_val
    cpu = torch.device("cpu")
    real, sizes = step_memory.saved_bytes, []

    def recording(model, batch):
        sizes.append(batch["frames"].shape[0])
        return real(model, batch)

    monkeypatch.setattr(step_memory, "saved_bytes", recording)
    for b in (1, 2, 5, 8, 9, 64):
        sizes.clear()
        one = load_config(None, [*TINY, *AUGMENTED, f"train.batch_size={b}"])
        got = step_memory.activation_bytes(model, val, one, cpu, "fp32")
        assert max(sizes) <= b and sizes == ([b] if b <= 8 else [2, 4, 8])
        if b <= 8:
            assert got == real(model, _batch(val, b))


def _batch(val, n):
    from torch.utils.data import default_collate

    from avssl.train.data import to_device

    return to_device(default_collate([val[i % len(val)] for i in range(n)]), "cpu", True)


def test_activations_grow_with_the_batch_and_halve_in_bf16(tiny_model_and_val):
    cfg, model, val = tiny_model_and_val
    cpu = torch.device("cpu")
    small = step_memory.activation_bytes(model, val, cfg, cpu, "fp32")  # batch 4, measured
    large_cfg = load_config(None, [*TINY, f"train.batch_size={cfg.train.batch_size * 4}"])
    large = step_memory.activation_bytes(model, val, large_cfg, cpu, "fp32")  # 16, fitted
    assert 3 * small < large < 5 * small
    half = step_memory.activation_bytes(model, val, large_cfg, cpu, "bf16")
    assert half < 0.75 * large


def test_a_domain_adversary_is_measured(tiny_cache):
    cpu = torch.device("cpu")
    cfg, model, val = _model_and_val()
    plain = step_memory.activation_bytes(model, val, cfg, cpu, "fp32")
    cfg, model, val = _model_and_val("loss.domain_adversary=1.0", "loss.domains=[a,b]")
    assert step_memory.activation_bytes(model, val, cfg, cpu, "fp32") > plain


def test_a_step_that_cannot_fit_is_warned_in_one_line(tiny_model_and_val, monkeypatch, capsys):
    cfg, model, val = tiny_model_and_val
    monkeypatch.setattr(step_memory, "available_bytes", lambda device: 1000)
    step_memory.estimate_step_memory(model, val, cfg, torch.device("cpu"), "fp32")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: a training step at batch 4 ")
    assert "free on cpu" in err[0] and "train.batch_size" in err[0]
    step_memory.estimate_step_memory(model, val, cfg, torch.device("cpu"), "fp32", warn=False)
    assert capsys.readouterr().err == ""  # only rank 0 warns
    monkeypatch.setattr(step_memory, "available_bytes", lambda device: 2**50)
    step_memory.estimate_step_memory(model, val, cfg, torch.device("cpu"), "fp32")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("ema", [0.0, 0.99])
def test_the_optimizer_share_is_gradients_and_moments_and_the_average(tiny_cache, ema):
    cfg, model, val = _model_and_val(f"train.ema_decay={ema}")
    n = sum(p.numel() for p in model.parameters())
    out = step_memory.estimate_step_memory(model, val, cfg, torch.device("cpu"), "fp32")
    per_parameter = 4 + 8 + (4 if ema else 0)  # the weights themselves are allocated already
    assert out["optimizer_mb"] == round(n * per_parameter / 2**20, 1)


def test_processes_on_one_machine_share_its_memory(tiny_model_and_val, monkeypatch, capsys):
    cfg, model, val = tiny_model_and_val
    one = step_memory.estimate_step_memory(model, val, cfg, torch.device("cpu"), "fp32")
    need = (one["activations_mb"] + one["optimizer_mb"]) * 2**20
    monkeypatch.setattr(step_memory, "available_bytes", lambda device: int(need * 1.5))
    step_memory.estimate_step_memory(model, val, cfg, torch.device("cpu"), "fp32")
    assert capsys.readouterr().err == ""  # one process fits
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    step_memory.estimate_step_memory(model, val, cfg, torch.device("cpu"), "fp32")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "in each of 2 processes" in err[0]


@pytest.mark.parametrize("batch", [2, 4])
def test_the_estimate_is_a_lower_bound_of_the_measured_peak(tiny_train_args, tmp_path, batch):
    # a fresh process, so the peak resident set is this run's alone
    args = tiny_train_args("train.steps=4", "train.eval_every=2", f"train.batch_size={batch}")
    out = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    memory = json.loads(out.stdout.strip().splitlines()[-1])["memory_mb"]
    assert set(memory) == {"activations_mb", "optimizer_mb", "estimated_peak_mb", "peak_mb"}
    assert 0 < memory["estimated_peak_mb"] <= memory["peak_mb"]
