"""What training and the tools do on a CUDA device, checked on the CPU with torch.cuda's answers
patched in (no GPU here): the device chosen, the precision ``auto`` picks, the CUDA generator a
resume restores, cuDNN's autotuner and TF32."""

from __future__ import annotations

import contextlib
import warnings

import pytest
import torch

import train
from avssl.config import TrainConfig, load_config
from avssl.errors import ConfigError
from avssl.train import rng, runtime


@pytest.fixture
def two_gpus(monkeypatch):
    """torch.cuda says two devices are visible."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("LOCAL_RANK", raising=False)


def test_cuda_without_index_is_the_local_rank_s_device(two_gpus, monkeypatch):
    # torch.cuda.set_device(torch.device("cuda")) raises ValueError, and DDP's device_ids=[None]
    # would put every rank on the current device
    assert runtime.resolve_device("cuda") == torch.device("cuda", 0)
    assert runtime.resolve_device("auto") == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert runtime.resolve_device("cuda") == torch.device("cuda", 1)
    assert runtime.resolve_device("auto") == torch.device("cuda", 1)
    assert runtime.resolve_device("cuda:0") == torch.device("cuda", 0)  # as asked
    assert runtime.resolve_device("cpu") == torch.device("cpu")


def test_a_device_beyond_the_visible_ones_is_refused(two_gpus, monkeypatch):
    with pytest.raises(ConfigError, match=r"--device: cuda:2, but 2 CUDA device\(s\) are visible"):
        runtime.resolve_device("cuda:2", "--device")
    monkeypatch.setenv("LOCAL_RANK", "2")  # torchrun with more processes than GPUs
    with pytest.raises(ConfigError, match=r"cuda:2 \(from auto: LOCAL_RANK\), but 2 CUDA"):
        runtime.resolve_device("auto")


def test_without_cuda_nothing_changes(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        runtime.resolve_device("cuda")


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_asks_for_native_bf16_on_the_device_itself(monkeypatch, native):
    entered, asked = [], []

    @contextlib.contextmanager
    def on_device(device):
        entered.append(device)
        yield

    def supported(including_emulation=True):
        asked.append(including_emulation)
        return native or including_emulation  # a V100 / T4: emulated only

    monkeypatch.setattr(torch.cuda, "device", on_device)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    device = torch.device("cuda", 1)
    assert runtime.resolve_precision("auto", device) == ("bf16" if native else "fp32")
    assert entered == [device] and asked == [False]


def test_resume_of_an_earlier_checkpoint_restores_the_cuda_generator_rank_0_drew_from(
    monkeypatch,
):
    saved = [torch.full((16,), i, dtype=torch.uint8) for i in range(2)]
    set_one, set_all = [], []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: saved)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, d: set_one.append((s, d)))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", set_all.append)

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)  # rank 0 writes the checkpoint
    state = rng.rng_states()  # what earlier versions saved: no per-rank states
    assert state["rng_cuda"] is saved and state["rng_cuda_device"] == 0

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)  # rank 1 resumes on cuda:1
    rng.restore_rng(state, rank=1)
    assert len(set_one) == 1 and set_one[0][0] is saved[0] and set_one[0][1] == 1
    assert set_all == []

    set_one.clear()  # a checkpoint of an older version still: device by device, as before
    rng.restore_rng({k: v for k, v in state.items() if k != "rng_cuda_device"}, rank=1)
    assert set_one == [] and set_all == [saved]


def test_each_rank_resumes_the_cuda_generator_it_drew_from(monkeypatch):
    # two ranks on cuda:0 and cuda:1 save their own device's state; resumed on the same devices
    states = {d: torch.full((16,), 10 + d, dtype=torch.uint8) for d in range(2)}
    device, set_one = {"now": 0}, []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: device["now"])
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: list(states.values()))
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda d: states[d])
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, d: set_one.append((s, d)))
    ranks = []
    for d in range(2):  # what all_gather_object collects from the ranks
        device["now"] = d
        ranks += rng.gather_states()[rng.RANKS_KEY]
    assert [e["rng_cuda"] for e in ranks] == [states[0], states[1]]
    checkpoint = {"rng_cpu": ranks[0]["rng_cpu"], rng.RANKS_KEY: ranks, "step": 3}
    for d in range(2):
        device["now"] = d
        rng.restore_rng(checkpoint, rank=d)
    assert [(s is states[d], d2) for d, (s, d2) in enumerate(set_one)] == [(True, 0), (True, 1)]


B = torch.backends
# torch's TF32 settings, old and new, and cuDNN's autotuner: what configure_cuda may change
PER_BACKEND = (B.cuda.matmul, B.cudnn.conv, B.cudnn.rnn, B.cudnn, B.mkldnn.matmul, B)


def settings() -> dict:
    """Every setting, read through every getter: torch refuses (a RuntimeError) to read its
    older flags once they disagree with the per-backend ``fp32_precision`` settings, as
    ``torch.backends.cudnn.flags``, ``torch.export`` and inductor's autotuning read them."""
    return {
        "benchmark": B.cudnn.benchmark,
        "matmul_allow_tf32": B.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": B.cudnn.allow_tf32,
        "matmul_precision": torch.get_float32_matmul_precision(),
        **{f"fp32_precision{i}": s.fp32_precision for i, s in enumerate(PER_BACKEND)},
    }


@pytest.fixture
def cuda_settings(monkeypatch):
    """torch.cuda.set_device records its device (the list yielded) instead of asking a GPU;
    cuDNN's autotuner and the TF32 settings, the whole process's, are restored afterwards."""
    saved = settings()
    devices = []
    monkeypatch.setattr(torch.cuda, "set_device", devices.append)
    yield devices
    B.cudnn.benchmark = saved["benchmark"]
    B.cuda.matmul.allow_tf32 = saved["matmul_allow_tf32"]
    B.cudnn.allow_tf32 = saved["cudnn_allow_tf32"]
    for i, s in reversed(list(enumerate(PER_BACKEND))):  # a parent's setting reaches its children
        s.fp32_precision = saved[f"fp32_precision{i}"]
    assert settings() == saved


def test_a_cpu_run_keeps_torch_s_cuda_settings(cuda_settings):
    before = settings()
    runtime.configure_cuda(torch.device("cpu"), TrainConfig(tf32=True))
    assert settings() == before and cuda_settings == []


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("tf32", [False, True])
def test_cuda_autotunes_unless_deterministic_and_keeps_fp32_unless_tf32(
    cuda_settings, deterministic, tf32
):
    device = torch.device("cuda", 1)
    torch.backends.cudnn.benchmark = deterministic  # the opposite of what the run asks
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch 2.11 warns of neither setting
        runtime.configure_cuda(device, TrainConfig(deterministic=deterministic, tf32=tf32))
    now = settings()  # every getter, the older flags' too, still answers
    assert now["benchmark"] is not deterministic
    assert now["matmul_allow_tf32"] is tf32 and now["cudnn_allow_tf32"] is tf32
    assert now["matmul_precision"] == ("high" if tf32 else "highest")
    # the per-backend settings agree: cuBLAS's and cuDNN's convolutions' are TF32 or not
    assert (B.cuda.matmul.fp32_precision, B.cudnn.conv.fp32_precision == "tf32") == (
        "tf32" if tf32 else "ieee",
        tf32,
    )
    with torch.backends.cudnn.flags(enabled=None):  # as torch.export uses it
        pass
    assert cuda_settings == [device]


def test_the_defaults_autotune_in_ieee_float32(cuda_settings):
    runtime.configure_cuda(torch.device("cuda", 0), load_config(None).train)
    now = settings()
    assert (now["benchmark"], now["matmul_allow_tf32"], now["cudnn_allow_tf32"]) == (
        True,
        False,
        False,
    )
    assert B.cuda.matmul.fp32_precision == "ieee" and B.cudnn.conv.fp32_precision != "tf32"


def test_training_applies_its_cuda_settings_before_joining_the_process_group(
    tiny_train_args, monkeypatch
):
    calls, join = [], runtime.init_distributed
    monkeypatch.setattr(runtime, "configure_cuda", lambda *args: calls.append(args))
    monkeypatch.setattr(runtime, "init_distributed", lambda d: calls.append("join") or join(d))
    assert train.main(tiny_train_args("train.steps=1", "train.tf32=true")) == 0
    (device, cfg), joined = calls
    assert (device.type, cfg.tf32, cfg.deterministic, joined) == ("cpu", True, True, "join")
