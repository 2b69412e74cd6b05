"""What training and the tools do on a CUDA device, checked on the CPU with torch.cuda's answers
patched in (no GPU here): the device chosen, the precision ``auto`` picks, the CUDA generator a
resume restores."""

from __future__ import annotations

import contextlib

import pytest
import torch

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
