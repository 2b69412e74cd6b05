"""A model too large to train is refused before it is built (avssl/train/memory.py)."""

from pathlib import Path

import pytest
import torch

import train
from avssl.config import load_config
from avssl.errors import ConfigError
from avssl.models import build_model
from avssl.train import memory

CONFIGS = [None, *sorted(str(p) for p in Path(__file__).parents[1].glob("configs/*.yaml"))]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: Path(p).stem if p else "defaults")
def test_parameters_counted_on_meta_equal_a_real_build(path):
    cfg = load_config(path, ["data.root=."])
    real = build_model(cfg.model, cfg.data, cfg.loss)
    assert memory.count_parameters(cfg) == sum(p.numel() for p in real.parameters())


def test_the_limit_is_the_training_state_of_the_parameters(monkeypatch):
    cfg = load_config(None, [])
    n = memory.count_parameters(cfg)
    need = n * (4 + 4 + 8)  # fp32 weights and gradients, AdamW's two moments
    assert memory.training_bytes(n, cfg) == need
    averaged = load_config(None, ["train.ema_decay=0.999"])
    assert memory.training_bytes(n, averaged) == need + 4 * n
    monkeypatch.setattr(memory, "available_bytes", lambda device: need)
    assert memory.check_model_fits(cfg, torch.device("cpu")) == n
    monkeypatch.setattr(memory, "available_bytes", lambda device: need - 1)
    with pytest.raises(ConfigError, match=r"^model: 1\.3 M parameters need .* free on cpu"):
        memory.check_model_fits(cfg, torch.device("cpu"))
    monkeypatch.setattr(memory, "available_bytes", lambda device: None)  # unknown: not refused
    assert memory.check_model_fits(cfg, torch.device("cpu")) == n


def test_free_memory_is_read_on_the_cpu():
    free = memory.available_bytes(torch.device("cpu"))
    assert free is None or free > 0


def test_train_refuses_a_model_that_cannot_fit_in_one_line(tiny_train_args, tmp_path, capsys):
    # 60,000-wide blocks: about 1.9e11 parameters, some 3 TB to train, never allocated here
    code = train.main(tiny_train_args("model.channels=[32,60000,60000,128]"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: model: ") and "model.channels" in err[0]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "limit,usage,stat,room",
    [
        ("max\n", "5\n", "", None),
        ("9223372036854771712\n", "5\n", "", None),  # cgroup v1's "no limit"
        ("1000\n", "400\n", "", 600),  # no statistics: all of the usage counts
        ("1000\n", "990\n", "active_file 50\ninactive_file 300\n", 310),  # cache given back
    ],
)
def test_a_container_memory_limit_bounds_the_free_memory(
    tmp_path, monkeypatch, limit, usage, stat, room
):
    (tmp_path / "memory.max").write_text(limit)
    (tmp_path / "memory.current").write_text(usage)
    if stat:
        (tmp_path / "memory.stat").write_text(stat)
    monkeypatch.setattr(memory, "CGROUP_ROOT", str(tmp_path))
    assert memory._cgroup_room() == room
    monkeypatch.setattr(memory, "_meminfo_available", lambda: 10**12)
    assert memory.available_bytes(torch.device("cpu")) == (10**12 if room is None else room)


def test_a_small_limit_is_shown_in_mib(monkeypatch):
    cfg = load_config(None, [])
    monkeypatch.setattr(memory, "available_bytes", lambda device: 5 * 2**20)
    with pytest.raises(ConfigError, match=r"need 19\.3 MiB .* more than the 5\.0 MiB free"):
        memory.check_model_fits(cfg, torch.device("cpu"))


def test_processes_sharing_the_cpu_memory_each_need_a_copy(monkeypatch):
    cfg = load_config(None, [])
    n = memory.count_parameters(cfg)
    monkeypatch.setattr(
        memory, "available_bytes", lambda device: memory.training_bytes(n, cfg) * 3 // 2
    )
    assert memory.check_model_fits(cfg, torch.device("cpu")) == n
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun --nproc_per_node 2
    with pytest.raises(ConfigError, match="AdamW moments in 2 processes alone"):
        memory.check_model_fits(cfg, torch.device("cpu"))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "two")  # malformed: counted as one process
    assert memory.check_model_fits(cfg, torch.device("cpu")) == n


def test_a_proc_field_is_read_in_bytes_or_none(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmHWM:\t  1234 kB\nVmRSS:\t 1000 kB\n")
    assert memory.proc_kib_field(str(status), "VmHWM") == 1234 * 1024
    assert memory.proc_kib_field(str(status), "VmSwap") is None
    assert memory.proc_kib_field(str(tmp_path / "absent"), "VmHWM") is None
    status.write_text("VmHWM:\tmany kB\n")
    assert memory.proc_kib_field(str(status), "VmHWM") is None
